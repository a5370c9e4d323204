/**
 * The simulator's HTTP server face: the same model behind a real socket, on
 * `NodeHttpServer` with `effect/http`'s router, in real time (the live
 * `Clock`). Point the official SDK at it with `baseUrl`.
 *
 * **Details**
 *
 * - Routes: the rows of the endpoint table (`client/Endpoints.ts`: TTS x4,
 *   speech to text, music and its stream, speech to speech, sound effects,
 *   text to dialogue, audio isolation, user, subscription, voices, models)
 *   and the control routes `GET /_simulator/stats`, `POST /_simulator/reset`,
 *   `POST /_simulator/config`. A known path with another method gets
 *   FastAPI's `405 {"detail":"Method Not Allowed"}`; anything else
 *   `404 {"detail":"Not Found"}`.
 * - Faults act on the connection: a reset sends a TCP RST before any byte; a
 *   hang never answers (the slot is released when the client goes away); a
 *   stream cut flushes the bytes written so far and ends the connection
 *   half-way through the body.
 * - Request bodies are read under the model's size rule
 *   ({@link Simulator.BodyLimits}): a declared `Content-Length` past the limit
 *   gets its `413` before a byte of the body is read (and before any
 *   `100 Continue`); a body of unknown length (chunked) is counted as it
 *   arrives and refused once past the limit. The `413` carries
 *   `Connection: close`, and the Node adapter closes the connection without
 *   reading the rest.
 * - Real-time TTS: `GET /v1/text-to-speech/{voice_id}/stream-input` and
 *   `.../multi-stream-input` with `Upgrade: websocket` are WebSocket upgrades
 *   on the same port, served by the model's real-time engine
 *   (`RealtimeServer.ts`, `Realtime.ts`); without `Upgrade` they are the
 *   model's `404`.
 * - Port 0 binds a free port; {@link serve} returns the real one.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Context, Effect, Layer, Stream } from "effect"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "effect/http"
import { createServer } from "node:http"
import * as Endpoints from "../client/Endpoints.ts"
import * as RealtimeServer from "./RealtimeServer.ts"
import * as Simulator from "./Simulator.ts"

/** Options of the server face: the model's options plus where to listen. */
export interface Options extends Simulator.Options {
  /** TCP port; 0 picks a free one. Default 8787. */
  readonly port?: number | undefined
  /** Interface to bind. Default `127.0.0.1`. */
  readonly host?: string | undefined
}

/** The control routes of the simulator. */
export const controlRoutes: ReadonlyArray<readonly ["GET" | "POST", `/${string}`]> = [
  ["GET", "/_simulator/stats"],
  ["POST", "/_simulator/reset"],
  ["POST", "/_simulator/config"]
]

/**
 * The routes the server registers (all answered by the model): one per row of
 * the endpoint table (`client/Endpoints.ts`, in the router's `:voice_id`
 * syntax), then the control routes.
 */
export const routes: ReadonlyArray<readonly ["GET" | "POST", `/${string}`]> = [
  ...Endpoints.all.map((e) => [e.method, Endpoints.routerPath(e)] as const),
  ...controlRoutes
]

/** A connection reset: RST where the platform can (ECONNRESET at the client), else a plain destroy. */
const resetSocket = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.sync(() => {
    const socket = NodeHttpServerRequest.toServerResponse(request).socket as
      | (import("node:net").Socket & { resetAndDestroy?: () => void })
      | null
    if (socket?.resetAndDestroy !== undefined) socket.resetAndDestroy()
    else socket?.destroy()
  })

/** A cut: what was written so far is flushed, then the connection ends mid-body. */
const endSocket = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.sync(() => {
    NodeHttpServerRequest.toServerResponse(request).socket?.end()
  })

/** Answers one server request with the model. */
export const handler = (simulator: Simulator.Service) => (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const method = request.method.toUpperCase()
    const node = NodeHttpServerRequest.toIncomingMessage(request)
    const isMultipart = (node.headers["content-type"] ?? "").startsWith("multipart/")
    const url = `http://simulator.local${request.url}`
    let raw: Uint8Array | undefined
    if (method !== "GET" && method !== "HEAD") {
      // The size rule: past the limit, the 413 goes out before the body is read (Content-Length)
      // or once the count passes it; the adapter then closes the connection, unread.
      const head: Simulator.BodyHead = {
        method,
        url,
        headers: { get: (name) => headerValue(node.headers[name.toLowerCase()]) }
      }
      const read = yield* simulator.readBody(head, request.stream).pipe(
        Effect.orElseSucceed((): Simulator.BodyRead => ({ _tag: "Body", bytes: new Uint8Array(0) }))
      )
      if (read._tag === "Refused") return yield* respond(request, read.outcome)
      raw = read.bytes
    }
    // A Web Request is built only for multipart bodies (binary, parsed by formData); the rest
    // go as the model's light text request over the Node headers, which saves the harness a
    // Headers copy and a body stream per request. The multipart body goes as a stream of the
    // bytes read: a Web Request copies a byte array it is given (one copy of an upload fewer).
    const incoming: Simulator.IncomingRequest = isMultipart
      ? new Request(url, {
        method,
        headers: node.headers as Record<string, string>,
        ...(raw === undefined ? {} : { body: streamOf(raw), duplex: "half" } as RequestInit)
      })
      : Simulator.textRequest({
        method,
        url,
        header: (name) => headerValue(node.headers[name]),
        bodyText: raw === undefined ? "" : decoder.decode(raw)
      })
    return yield* respond(request, yield* simulator.handle(incoming))
  })

/** Sends the model's answer (or acts on the connection for a reset or a cut). */
const respond = (request: HttpServerRequest.HttpServerRequest, outcome: Simulator.Outcome) =>
  Effect.gen(function*() {
    if (outcome._tag === "Reset") {
      yield* resetSocket(request)
      return HttpServerResponse.empty({ status: 500 })
    }
    const { "content-length": contentLength, "content-type": contentType, ...rest } = outcome.headers
    if (outcome.whole !== undefined) {
      // One unpaced buffer: headers and body leave in one write (running the body releases the slot).
      yield* Stream.runDrain(outcome.body).pipe(Effect.orDie)
      return HttpServerResponse.uint8Array(outcome.whole, {
        status: outcome.status,
        headers: rest,
        ...(contentType === undefined ? {} : { contentType })
      })
    }
    // A cut ends the connection half-way; the request fiber is then interrupted by the close.
    const stream = outcome.body.pipe(
      Stream.catchTag("StreamCut", () => Stream.fromEffectDrain(Effect.andThen(endSocket(request), Effect.never)))
    )
    return HttpServerResponse.stream(stream, {
      status: outcome.status,
      headers: rest,
      ...(contentType === undefined ? {} : { contentType }),
      ...(contentLength === undefined ? {} : { contentLength: Number(contentLength) })
    })
  })

const decoder = new TextDecoder()

/** A body stream of one chunk, `bytes` itself (not a copy). */
const streamOf = (bytes: Uint8Array): ReadableStream<Uint8Array> =>
  new ReadableStream({
    start(controller) {
      controller.enqueue(bytes)
      controller.close()
    }
  })

const headerValue = (value: string | ReadonlyArray<string> | undefined): string | null =>
  value === undefined ? null : typeof value === "string" ? value : value.join(", ")

/** The real-time routes: WebSocket upgrades of `stream-input` and `multi-stream-input` (`GET`). */
export const realtimeRoutes = RealtimeServer.routes

/**
 * The router layer: every ElevenLabs and control route, the real-time upgrades, plus a catch-all, to the
 * model.
 */
export const layerRoutes: Layer.Layer<never, never, HttpRouter.HttpRouter | Simulator.Simulator> = HttpRouter.use(
  (router) =>
    Effect.gen(function*() {
      const simulator = yield* Simulator.Simulator
      const handle = handler(simulator)
      for (const [method, path] of routes) yield* router.add(method, path, handle)
      for (const [method, path] of realtimeRoutes) {
        yield* router.add(
          method,
          path,
          (request) =>
            RealtimeServer.isUpgrade(request) ? RealtimeServer.serveSocket(simulator, request) : handle(request)
        )
      }
      yield* router.add("*", "/*", handle)
    })
)

/**
 * The whole server as a layer: model, routes and a Node HTTP server.
 * Also provides the {@link Simulator.Simulator}, the `HttpServer` (its address)
 * and the Node platform services the server uses.
 */
export const layerServer = (options: Options = {}) =>
  layerRealtimeShutdown.pipe(
    Layer.provideMerge(HttpRouter.serve(layerRoutes, { disableLogger: true, disableListenLog: true })),
    Layer.provideMerge(NodeHttpServer.layer(() => createServer(), {
      port: options.port ?? 8787,
      host: options.host ?? "127.0.0.1"
    })),
    Layer.provideMerge(Simulator.layer(options))
  )

/**
 * Ends the open WebSocket sessions (close 1001) when the server stops, before its graceful shutdown, which
 * would otherwise wait for each socket to close by itself (an idle one only at its inactivity timeout).
 */
const layerRealtimeShutdown: Layer.Layer<never, never, Simulator.Simulator> = Layer.effectDiscard(
  Effect.gen(function*() {
    const simulator = yield* Simulator.Simulator
    yield* Effect.addFinalizer(() => simulator.realtime.closeAll)
  })
)

/** A running server. */
export interface Running {
  /** The base URL to give clients, e.g. `http://127.0.0.1:8787`. */
  readonly url: string
  readonly port: number
  readonly simulator: Simulator.Service
}

/**
 * Starts the server in the current scope and returns where it listens.
 *
 * @example
 * ```ts
 * const { url } = yield* Server.serve({ port: 0, plan: "free" })
 * const client = new ElevenLabsClient({ apiKey: "sim-key", baseUrl: url })
 * ```
 */
export const serve = (options: Options = {}) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(layerServer(options))
    const server = Context.get(context, HttpServer.HttpServer)
    const simulator = Context.get(context, Simulator.Simulator)
    const address = server.address
    const host = options.host ?? "127.0.0.1"
    const port = address._tag === "UnixPathAddress" ? 0 : address.port
    return { url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`, port, simulator } satisfies Running
  })
