/**
 * The simulator's in-process face: an `HttpClient` answered by the model,
 * with no sockets. All time comes from the calling fiber's `Clock`, so under
 * `TestClock` a thousand requests take milliseconds and a seed gives one run.
 *
 * **Details**
 *
 * - The request is turned into a Web `Request` and handed to
 *   {@link Simulator.Service.handle}; the answer becomes a Web `Response`
 *   whose body is the model's stream, read through `HttpClientResponse.fromWeb`.
 * - A streaming body holds its concurrency slot until its last chunk is read,
 *   or until the reader cancels it or the request's abort signal fires.
 * - Faults map to what a transport produces: a reset is an `HttpClientError`
 *   with a `TransportError` reason; a hang never answers (until interrupted);
 *   a stream cut makes reading the body fail half-way.
 * - Relative URLs (`/v1/models`) are resolved against `baseUrl`
 *   (default `http://elevenlabs.simulator`), so a client configured with any
 *   base URL works unchanged.
 *
 * @since 0.1.0
 */
import { Effect, Layer, Stream } from "effect"
import { HttpClient, HttpClientError, HttpClientRequest, HttpClientResponse } from "effect/http"
import * as Simulator from "./Simulator.ts"

/** Options of the in-process face. */
export interface Options {
  /** Base for relative request URLs. Default `http://elevenlabs.simulator`. */
  readonly baseUrl?: string | undefined
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
    return HttpClient.make((request, url, signal) =>
      Effect.gen(function*() {
        const web = yield* HttpClientRequest.toWeb(HttpClientRequest.setUrl(request, url.toString())).pipe(
          Effect.mapError((cause) =>
            new HttpClientError.HttpClientError({
              reason: new HttpClientError.EncodeError({ request, cause, description: "Cannot build the request" })
            })
          )
        )
        const outcome = yield* simulator.handle(web)
        if (outcome._tag === "Reset") {
          return yield* Effect.fail(
            new HttpClientError.HttpClientError({
              reason: new HttpClientError.TransportError({
                request,
                cause: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
                description: "The connection was reset by the simulator"
              })
            })
          )
        }
        // The body runs with the caller's services, so its sleeps follow the caller's Clock.
        const context = yield* Effect.context<never>()
        const readable = Stream.toReadableStreamWith(outcome.body, context, { signal })
        return HttpClientResponse.fromWeb(
          request,
          new Response(readable, { status: outcome.status, headers: outcome.headers })
        )
      })
    ).pipe(
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
