/**
 * The simulator's in-process face: an `HttpClient` answered by the model,
 * with no sockets. All time comes from the calling fiber's `Clock`, so under
 * `TestClock` a thousand requests take milliseconds and a seed gives one run.
 *
 * **Details**
 *
 * - The request is handed to {@link Simulator.Service.handle} as a light
 *   {@link Simulator.IncomingRequest} (JSON and empty bodies; a Web `Request`
 *   only for form data and streamed bodies); the answer is an `HttpClientResponse`
 *   whose body is the model's own Effect `Stream`. Not a Web `Response`: a Web
 *   stream is read through promises, which `TestClock` cannot see, so virtual
 *   time would run ahead of a body being read (idle timeouts would fire
 *   spuriously), and the promises cost as much as the rest of the model.
 * - A streaming body holds its concurrency slot until its last chunk is read,
 *   or until the reader stops or is interrupted.
 * - Faults map to what a transport produces: a reset is an `HttpClientError`
 *   with a `TransportError` reason; a hang never answers (until interrupted);
 *   a stream cut makes reading the body fail half-way.
 * - Request bodies follow the model's size rule, as on the server face: a
 *   body in memory past its limit is answered `413` at once (form data once
 *   encoded); a streamed body is counted as it is read and refused once past
 *   the limit (a declared `content-length` past it is refused before reading).
 * - Relative URLs (`/v1/models`) are resolved against `baseUrl`
 *   (default `http://elevenlabs.simulator`), so a client configured with any
 *   base URL works unchanged.
 *
 * @since 0.1.0
 */
import { Effect, Inspectable, Layer, Option, Result, Stream } from "effect"
import {
  Cookies,
  Headers,
  HttpClient,
  HttpClientError,
  HttpClientRequest,
  HttpClientResponse,
  HttpIncomingMessage,
  Url,
  UrlParams
} from "effect/http"
import { pipeArguments } from "effect/Pipeable"
import type { Socket } from "effect/socket"
import { concat, toArrayBuffer } from "../internal/Bytes.ts"
import * as Simulator from "./Simulator.ts"

const collect = <E>(stream: Stream.Stream<Uint8Array, E>): Effect.Effect<ArrayBuffer, E> =>
  Stream.runFold(stream, () => [] as Array<Uint8Array>, (acc, c) => {
    acc.push(c)
    return acc
  }).pipe(Effect.map((chunks) => toArrayBuffer(concat(chunks))))

/** A response whose body is an Effect stream, read in the caller's fiber. */
class SimulatedResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId] = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId] = HttpClientResponse.TypeId
  readonly headers: Headers.Headers
  readonly cookies: Cookies.Cookies = Cookies.empty
  readonly remoteAddress: Option.Option<string> = Option.none()
  readonly stream: Stream.Stream<Uint8Array, HttpClientError.HttpClientError>
  readonly arrayBuffer: Effect.Effect<ArrayBuffer, HttpClientError.HttpClientError>
  readonly request: HttpClientRequest.HttpClientRequest
  readonly url: string
  readonly status: number

  constructor(
    request: HttpClientRequest.HttpClientRequest,
    url: string,
    status: number,
    headers: Headers.Headers | Readonly<Record<string, string>>,
    body: Stream.Stream<Uint8Array, Simulator.StreamCut> | Uint8Array
  ) {
    super()
    this.request = request
    this.url = url
    this.status = status
    this.headers = Headers.isHeaders(headers) ? headers : Headers.fromInput(headers)
    if (body instanceof Uint8Array) {
      // A body already in memory: no stream to read once, no copy.
      this.stream = Stream.succeed(body)
      this.arrayBuffer = Effect.sync(() => body.slice().buffer)
      return
    }
    this.stream = Stream.mapError(body, (cause) => this.decodeError(cause))
    // The body can be read once; `arrayBuffer` (and `text`, `json`) share one read.
    // Built on first use only, as many bodies are streamed or drained instead.
    let read: Effect.Effect<ArrayBuffer, HttpClientError.HttpClientError> | undefined
    this.arrayBuffer = Effect.suspend(() => read ??= Effect.runSync(Effect.cached(collect(this.stream))))
  }

  private decodeError(cause: unknown) {
    return new HttpClientError.HttpClientError({
      reason: new HttpClientError.DecodeError({ request: this.request, response: this, cause })
    })
  }

  get text(): Effect.Effect<string, HttpClientError.HttpClientError> {
    return Effect.map(this.arrayBuffer, (b) => new TextDecoder().decode(b))
  }

  get json(): Effect.Effect<any, HttpClientError.HttpClientError> {
    return Effect.flatMap(
      this.text,
      (text) =>
        Effect.try({ try: () => (text === "" ? null : JSON.parse(text)), catch: (cause) => this.decodeError(cause) })
    )
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.HttpClientError> {
    return Effect.map(this.text, (text) => UrlParams.fromInput(new URLSearchParams(text)))
  }

  get formData(): Effect.Effect<FormData, HttpClientError.HttpClientError> {
    return Effect.fail(this.decodeError(new Error("the simulator does not answer with form data")))
  }

  get upgrade(): Effect.Effect<Socket.Socket, HttpClientError.HttpClientError> {
    return Effect.fail(this.decodeError(new Error("the simulator does not upgrade connections")))
  }

  toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, { _id: "HttpClientResponse", status: this.status, url: this.url })
  }

  pipe() {
    return pipeArguments(this, arguments)
  }
}

/**
 * A response of the in-process kind over a body already in memory: what a
 * wrapper hands on after reading a simulated answer (the simulation runner
 * does), without a Web `Response` and its promise-read stream.
 *
 * @example
 * ```ts
 * const copy = InProcess.fromBytes(response.request, response.status, response.headers, new Uint8Array(0))
 * ```
 */
export const fromBytes = (
  request: HttpClientRequest.HttpClientRequest,
  status: number,
  headers: Headers.Headers | Readonly<Record<string, string>>,
  body: Uint8Array
): HttpClientResponse.HttpClientResponse => new SimulatedResponse(request, request.url, status, headers, body)

const decoder = new TextDecoder()

/** What the model is handed: a request to answer, or the answer already decided (a `413`). */
type Incoming = Simulator.IncomingRequest | Simulator.Outcome

const isOutcome = (u: Incoming): u is Simulator.Outcome => "_tag" in u

/**
 * The request as the model reads it, under the model's body-size rule
 * ({@link Simulator.Service.checkBody}, {@link Simulator.Service.readBody}), so
 * a body past its limit gets the same `413` as from the server face. JSON, text
 * and empty bodies go as a light object (the body decoded once, up front); form
 * data (encoded, then measured) and streamed bodies (read while counting) are
 * handed over as a Web `Request`, which parses them.
 */
const incoming = (
  simulator: Simulator.Service,
  request: HttpClientRequest.HttpClientRequest,
  url: URL
): Incoming | Effect.Effect<Incoming, HttpClientError.HttpClientError> => {
  const body = request.body
  const bodyless = request.method === "GET" || request.method === "HEAD"
  if (bodyless || body._tag === "Empty" || body._tag === "Uint8Array") {
    const headers = request.headers
    const header = (name: string) => headers[name] ?? null
    const href = url.toString()
    const refused = bodyless || body._tag !== "Uint8Array"
      ? undefined
      : simulator.checkBody({
        method: request.method,
        url: href,
        headers: { get: (name) => header(name.toLowerCase()) }
      }, body.body.byteLength)
    // Returned as is (not in an effect): one step less per request.
    return refused ?? Simulator.textRequest({
      method: request.method,
      url: href,
      header,
      bodyText: bodyless || body._tag !== "Uint8Array" ? "" : decoder.decode(body.body)
    })
  }
  const failed = (cause: unknown, description: string, encode: boolean) =>
    new HttpClientError.HttpClientError({
      reason: encode
        ? new HttpClientError.EncodeError({ request, cause, description })
        : new HttpClientError.TransportError({ request, cause, description })
    })
  const headers = request.headers
  const head: Simulator.BodyHead = {
    method: request.method,
    url: url.toString(),
    headers: { get: (name) => headers[name.toLowerCase()] ?? null }
  }
  const toRequest = (
    bytes: Uint8Array,
    init: { readonly url: string; readonly headers: Headers | Readonly<Record<string, string>> }
  ) => new Request(init.url, { method: request.method, headers: init.headers, body: bytes })
  if (body._tag === "Stream") {
    // Read in this fiber, counting; a declared length past the limit is refused before a pull.
    return simulator.readBody(head, body.stream).pipe(
      Effect.mapError((cause) => failed(cause, "The request body failed", false)),
      Effect.map((read) => read._tag === "Refused" ? read.outcome : toRequest(read.bytes, { url: head.url, headers }))
    )
  }
  return HttpClientRequest.toWeb(HttpClientRequest.setUrl(request, head.url)).pipe(
    Effect.mapError((cause) => failed(cause, "Cannot build the request", true)),
    Effect.flatMap((web): Effect.Effect<Incoming, HttpClientError.HttpClientError> => {
      const stream = web.body
      if (stream === null) return Effect.succeed(web)
      if (body._tag === "FormData") {
        // Encoded whole (a reader stopping early makes undici's form encoder throw), then measured:
        // the caller holds the parts in memory already, so there is nothing to guard before.
        return Effect.tryPromise({
          try: () => web.arrayBuffer(),
          catch: (cause) => failed(cause, "Cannot encode the form data", true)
        }).pipe(Effect.map((buffer) => {
          const bytes = new Uint8Array(buffer)
          return simulator.checkBody(web, bytes.byteLength) ?? toRequest(bytes, web)
        }))
      }
      const bytes = Stream.fromReadableStream({
        evaluate: () => stream,
        onError: (cause) => failed(cause, "The request body failed", false)
      })
      return Effect.map(
        simulator.readBody(web, bytes),
        (read) => read._tag === "Refused" ? read.outcome : toRequest(read.bytes, web)
      )
    })
  )
}

/** Options of the in-process face. */
export interface Options {
  /** Base for relative request URLs. Default `http://elevenlabs.simulator`. */
  readonly baseUrl?: string | undefined
  /**
   * Whether the client is built with `HttpClient.make`, which gives each request an
   * `http.client` span and abort bookkeeping (an `AbortController`, a finalization
   * registration). Default `true`. With `false` the requests carry neither: nothing
   * in-process needs an abort signal (interruption stops the model's fiber), and a
   * long simulation has no use for a transport span per attempt. The simulation
   * runner turns it off.
   */
  readonly transportSpans?: boolean | undefined
}

/** The default base URL of the in-process face. */
export const defaultBaseUrl = "http://elevenlabs.simulator"

/**
 * An `HttpClient` backed by a simulator.
 *
 * @example
 * ```ts
 * const client = yield* InProcess.makeHttpClient(sim)
 * const res = yield* client.get("/v1/models", { headers: { "xi-api-key": "sim-key" } })
 * ```
 */
export const makeHttpClient = (
  simulator: Simulator.Service,
  options: Options = {}
): Effect.Effect<HttpClient.HttpClient> =>
  Effect.sync(() => {
    const base = options.baseUrl ?? defaultBaseUrl
    const answer = (
      request: HttpClientRequest.HttpClientRequest,
      url: URL
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError> => {
      const light = incoming(simulator, request, url)
      const handle = (x: Incoming) => isOutcome(x) ? Effect.succeed(x) : simulator.handle(x)
      const handled = Effect.isEffect(light) ? Effect.flatMap(light, handle) : handle(light)
      return Effect.flatMap(handled, (outcome) => {
        if (outcome._tag === "Reset") {
          return Effect.fail(
            new HttpClientError.HttpClientError({
              reason: new HttpClientError.TransportError({
                request,
                cause: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
                description: "The connection was reset by the simulator"
              })
            })
          )
        }
        // The body is read in the caller's fiber, so its sleeps follow the caller's Clock.
        return Effect.succeed(
          new SimulatedResponse(request, url.toString(), outcome.status, outcome.headers, outcome.body)
        )
      })
    }
    const client: HttpClient.HttpClient = options.transportSpans === false
      ? HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
        (effect) =>
          Effect.flatMap(effect, (request) => {
            const url = Url.make(request.url, request.urlParams, Option.getOrUndefined(request.hash))
            return Result.isFailure(url)
              ? Effect.fail(
                new HttpClientError.HttpClientError({
                  reason: new HttpClientError.InvalidUrlError({ request, cause: url.failure })
                })
              )
              : answer(request, url.success)
          }),
        (request) => Effect.succeed(request)
      )
      : HttpClient.make((request, url) => answer(request, url))
    return client.pipe(
      HttpClient.mapRequest((request) =>
        /^[a-z][a-z0-9+.-]*:/i.test(request.url) ? request : HttpClientRequest.prependUrl(request, base)
      )
    )
  })

/**
 * The in-process face as the `HttpClient` layer, over a {@link Simulator.Simulator}.
 *
 * @example
 * ```ts
 * const TestHttp = InProcess.layer().pipe(Layer.provideMerge(Simulator.layer({ plan: "free" })))
 * ```
 */
export const layer = (options: Options = {}): Layer.Layer<HttpClient.HttpClient, never, Simulator.Simulator> =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function*() {
      return yield* makeHttpClient(yield* Simulator.Simulator, options)
    })
  )

/** A simulator and its in-process `HttpClient` together. */
export const layerSimulated = (
  options: Simulator.Options & Options = {}
): Layer.Layer<HttpClient.HttpClient | Simulator.Simulator> =>
  layer(options).pipe(Layer.provideMerge(Simulator.layer(options)))
