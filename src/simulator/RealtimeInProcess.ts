/**
 * The in-process face of the real-time endpoints: a `Socket.WebSocketConstructor`
 * whose sockets are connected, in memory, to the simulator's real-time engine
 * (`Realtime.ts`). `Socket.makeWebSocket(url, { headers })` works with it
 * unchanged, and runs in the time of the `Clock` the layer was built with, so
 * under `TestClock` a conversation of minutes takes milliseconds and a seed gives
 * one run.
 *
 * **Details**
 *
 * - The URL may have any scheme and host (`wss://api.elevenlabs.io/...` works):
 *   its path and query are what count. A path that is neither endpoint fails as
 *   a refused handshake does (an `error` event, then `close` with 1006, never
 *   `open`).
 * - Handshake headers come from the constructor's options
 *   (`WebSocketClientOptions.headers`, which `Socket.makeWebSocket` passes):
 *   `xi-api-key` authenticates.
 * - Events are asynchronous, as on a real socket: every event and every
 *   message in either direction is delivered in a later microtask, in order.
 *   The socket opens (`readyState` 1, the `open` event) once a listener for
 *   `open` is attached, so no client can miss it.
 * - A close by the client is echoed with its code and reason; a close by the
 *   server carries the protocol's code and reason (`wasClean: true`); a drop
 *   fault is a `close` with 1006 and no reason (`wasClean: false`).
 *
 * @example
 * ```ts
 * const socket = yield* Socket.makeWebSocket(
 *   "wss://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input?model_id=eleven_flash_v2_5",
 *   { headers: { "xi-api-key": "sim-key" } }
 * ) // with RealtimeInProcess.layerSimulated({ seed: 7 }) provided
 * ```
 *
 * @since 0.2.0
 */
import { Effect, FiberSet, Layer, Queue } from "effect"
import type { HttpClient } from "effect/http"
import { Socket } from "effect/socket"
import * as InProcess from "./InProcess.ts"
import type * as Realtime from "./Realtime.ts"
import * as Simulator from "./Simulator.ts"

type EventType = "open" | "message" | "error" | "close"
type Listener = (event: Socket.WebSocketEvent) => void

const CONNECTING = 0
const OPEN = 1
const CLOSING = 2
const CLOSED = 3

/** Runs a session fiber in the face's scope and context. */
type Runner = (effect: Effect.Effect<unknown>) => void

/** A socket connected in memory to the engine. */
class InProcessWebSocket implements Socket.WebSocketLike {
  readyState: number = CONNECTING
  readonly url: string
  private readonly listeners = new Map<EventType, Array<{ readonly fn: Listener; readonly once: boolean }>>()
  private readonly headers: Readonly<Record<string, string>>
  private opening = false
  private inbound: Queue.Queue<Realtime.Inbound> | undefined
  private readonly engine: Realtime.Engine
  private readonly runner: Runner

  constructor(
    engine: Realtime.Engine,
    runner: Runner,
    url: string,
    headers: Readonly<Record<string, string>> | undefined
  ) {
    this.engine = engine
    this.runner = runner
    this.url = url
    const lower: Record<string, string> = {}
    for (const [name, value] of Object.entries(headers ?? {})) lower[name.toLowerCase()] = value
    this.headers = lower
  }

  addEventListener(type: EventType, fn: Listener, options?: { readonly once?: boolean }): void {
    const list = this.listeners.get(type) ?? []
    list.push({ fn, once: options?.once === true })
    this.listeners.set(type, list)
    if (type === "open" && !this.opening && this.readyState === CONNECTING) {
      this.opening = true
      queueMicrotask(() => this.start())
    }
  }

  removeEventListener(type: EventType, fn: Listener): void {
    const list = this.listeners.get(type)
    if (list === undefined) return
    const i = list.findIndex((l) => l.fn === fn)
    if (i >= 0) list.splice(i, 1)
  }

  send(data: string | Uint8Array<ArrayBuffer>): void {
    if (this.readyState === CONNECTING) throw new Error("InvalidStateError: the WebSocket is still connecting")
    if (this.readyState !== OPEN) return
    const event: Realtime.Inbound = typeof data === "string" ? { _tag: "Text", data } : { _tag: "Binary" }
    queueMicrotask(() => this.deliver(event))
  }

  close(code?: number, reason?: string): void {
    if (this.readyState === CONNECTING) {
      // Closed before the handshake completed: the browser's answer, 1006.
      this.readyState = CLOSED
      queueMicrotask(() => this.dispatch("close", { type: "close", code: 1006, reason: "" }))
      return
    }
    if (this.readyState !== OPEN) return
    this.readyState = CLOSING
    const event: Realtime.Inbound = { _tag: "Closed", code, reason: reason ?? "" }
    queueMicrotask(() => this.deliver(event))
  }

  private deliver(event: Realtime.Inbound) {
    if (this.inbound !== undefined) Queue.offerUnsafe(this.inbound, event)
  }

  private dispatch(type: EventType, event: Socket.WebSocketEvent) {
    const list = this.listeners.get(type)
    if (list === undefined) return
    for (const listener of list.slice()) {
      if (listener.once) this.removeEventListener(type, listener.fn)
      listener.fn(event)
    }
  }

  /** The end of the handshake: refused (a path that is no endpoint), or open and served. */
  private start() {
    if (this.readyState !== CONNECTING) return
    if (!this.engine.accepts(this.url)) {
      this.readyState = CLOSED
      this.dispatch("error", { type: "error" })
      this.dispatch("close", { type: "close", code: 1006, reason: "" })
      return
    }
    this.readyState = OPEN
    this.dispatch("open", { type: "open" })
    const later = (f: () => void) => Effect.sync(() => queueMicrotask(f))
    const ended = (event: Socket.WebSocketEvent) =>
      later(() => {
        if (this.readyState === CLOSED) return
        this.readyState = CLOSED
        this.dispatch("close", event)
      })
    const peer: Realtime.Peer = {
      send: (frame) =>
        later(() => {
          if (this.readyState !== CLOSED) this.dispatch("message", { type: "message", data: frame })
        }),
      close: (code, reason) => ended({ type: "close", code, reason, wasClean: true } as Socket.WebSocketEvent),
      drop: ended({ type: "close", code: 1006, reason: "", wasClean: false } as Socket.WebSocketEvent)
    }
    const handshake: Realtime.Handshake = { url: this.url, header: (name) => this.headers[name] ?? null }
    this.runner(Effect.gen({ self: this }, function*() {
      const inbound = yield* Queue.unbounded<Realtime.Inbound>()
      this.inbound = inbound
      yield* this.engine.serve(handshake, peer, inbound)
    }))
  }
}

const headersOf = (options: Socket.WebSocketConstructorOptions | undefined) =>
  options === undefined || typeof options === "string" || Array.isArray(options) ? undefined : options.headers

/**
 * A `WebSocketConstructor` over a simulator, in the current scope: its sessions run on the Clock of the
 * fiber that builds it and are interrupted when the scope closes.
 *
 * @example
 * ```ts
 * const construct = yield* RealtimeInProcess.makeWebSocketConstructor(simulator)
 * const ws = construct("ws://x/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input", { headers: { "xi-api-key": "sim-key" } })
 * ```
 */
export const makeWebSocketConstructor = Effect.fnUntraced(function*(simulator: Simulator.Service) {
  const run = yield* FiberSet.makeRuntime<never>()
  const runner: Runner = (effect) => {
    run(effect)
  }
  return (url: string, options?: Socket.WebSocketConstructorOptions): Socket.WebSocketLike =>
    new InProcessWebSocket(simulator.realtime, runner, url, headersOf(options))
})

/**
 * The in-process `Socket.WebSocketConstructor`, over a {@link Simulator.Simulator}.
 *
 * @example
 * ```ts
 * const Sockets = RealtimeInProcess.layerWebSocketConstructor.pipe(Layer.provideMerge(Simulator.layer({ seed: 7 })))
 * ```
 */
export const layerWebSocketConstructor: Layer.Layer<Socket.WebSocketConstructor, never, Simulator.Simulator> = Layer
  .effect(
    Socket.WebSocketConstructor,
    Effect.flatMap(Simulator.Simulator, makeWebSocketConstructor)
  )

/** A simulator with both in-process faces: its `HttpClient` and its `WebSocketConstructor`. */
export const layerSimulated = (
  options: Simulator.Options & InProcess.Options = {}
): Layer.Layer<Socket.WebSocketConstructor | HttpClient.HttpClient | Simulator.Simulator> =>
  Layer.mergeAll(layerWebSocketConstructor, InProcess.layer(options)).pipe(
    Layer.provideMerge(Simulator.layer(options))
  )
