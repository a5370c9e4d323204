/**
 * The HTTP server face of the real-time endpoints: a WebSocket upgrade of
 * `GET /v1/text-to-speech/{voice_id}/stream-input` and `.../multi-stream-input`
 * on the simulator's port (`HttpServerRequest.upgrade` on `NodeHttpServer`),
 * bridged to the engine (`Realtime.ts`). `Server.ts` registers the routes.
 *
 * **Details**
 *
 * - The handshake always succeeds for these paths (the sources report that a bad
 *   key is refused after it, with 1008); a plain `GET` without `Upgrade` is the
 *   model's `404 {"detail":"Not Found"}`, as a WebSocket route of a FastAPI
 *   service answers it.
 * - Frames are passed as they arrive; a close by the client is echoed by the
 *   `ws` server itself; a drop fault destroys the TCP connection with no close
 *   frame (the client sees 1006).
 * - After the session's close the handler waits (at most 2 s) for the close
 *   handshake to finish, so the close frame leaves before the request ends.
 *
 * @since 0.2.0
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Duration, Effect, Fiber, Queue } from "effect"
import { type HttpServerRequest, HttpServerResponse } from "effect/http"
import { Socket } from "effect/socket"
import * as Realtime from "../client/Realtime.ts"
import type * as RealtimeEngine from "./Realtime.ts"
import type * as Simulator from "./Simulator.ts"

/** The router paths of the two endpoints (`:voice_id`), for `GET` with `Upgrade: websocket`. */
export const routes: ReadonlyArray<readonly ["GET", `/${string}`]> = [
  ["GET", Realtime.endpoints.single.path.replace("{voice_id}", ":voice_id") as `/${string}`],
  ["GET", Realtime.endpoints.multi.path.replace("{voice_id}", ":voice_id") as `/${string}`]
]

/** Whether a request asks for a WebSocket upgrade. */
export const isUpgrade = (request: HttpServerRequest.HttpServerRequest): boolean =>
  (request.headers["upgrade"] ?? "").toLowerCase() === "websocket"

/** Reads the client's frames into `inbound` until the socket closes (its code, or 1006). */
const pump = (reader: Socket.Reader, inbound: Queue.Queue<RealtimeEngine.Inbound>, closed: { value: boolean }) =>
  Effect.gen(function*() {
    while (true) {
      const pulled = yield* Effect.result(reader.pull)
      if (pulled._tag === "Failure") {
        const reason = pulled.failure.reason
        closed.value = true
        Queue.offerUnsafe(inbound, {
          _tag: "Closed",
          code: reason._tag === "SocketCloseError" ? reason.code : 1006,
          reason: reason._tag === "SocketCloseError" ? reason.closeReason ?? "" : ""
        })
        return
      }
      for (const frame of pulled.success) {
        Queue.offerUnsafe(
          inbound,
          typeof frame === "string" ? { _tag: "Text", data: frame } : { _tag: "Binary" }
        )
      }
    }
  })

/** Serves one upgrade request with the engine, until the session and its close handshake end. */
export const serveSocket = (simulator: Simulator.Service, request: HttpServerRequest.HttpServerRequest) =>
  Effect.scoped(Effect.gen(function*() {
    const node = NodeHttpServerRequest.toIncomingMessage(request)
    const socket = yield* request.upgrade
    // Acquiring the reader completes the handshake (the 101).
    const reader = yield* socket.reader
    const writer = yield* socket.writer
    const inbound = yield* Queue.unbounded<RealtimeEngine.Inbound>()
    const closed = { value: false }
    const reading = yield* Effect.forkScoped(pump(reader, inbound, closed))
    const peer: RealtimeEngine.Peer = {
      send: (frame) => Effect.ignore(writer.write(frame)),
      // After the client's own close, the `ws` server has echoed it already.
      close: (code, reason) =>
        closed.value ? Effect.void : Effect.ignore(writer.write(new Socket.CloseEvent(code, reason))),
      drop: Effect.sync(() => {
        node.socket.destroy()
      })
    }
    const handshake: RealtimeEngine.Handshake = {
      url: node.url ?? request.url,
      header: (name) => {
        const value = node.headers[name]
        return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value
      }
    }
    yield* simulator.realtime.serve(handshake, peer, inbound)
    yield* Fiber.await(reading).pipe(Effect.timeoutOption(Duration.seconds(2)))
    return HttpServerResponse.empty()
  })).pipe(
    // An upgrade that cannot complete (the client went away during the handshake).
    Effect.catch(() => Effect.succeed(HttpServerResponse.empty({ status: 400 })))
  )
