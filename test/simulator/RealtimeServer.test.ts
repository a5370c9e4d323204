/**
 * The real-time TTS endpoints over the simulator's HTTP server: a real
 * WebSocket upgrade on the server's port, talked to by real clients (Node's
 * global `WebSocket` through `NodeSocket.layerWebSocketConstructor`, and the
 * `ws` package through `NodeWS.layerWebSocketConstructor`) with Effect's
 * `Socket.makeWebSocket`, in real time.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeWS from "@effect/platform-node/NodeWS"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope, Semaphore } from "effect"
import { Socket } from "effect/socket"
import * as Realtime from "../../src/client/Realtime.ts"
import * as Server from "../../src/simulator/Server.ts"
import { type Conversation, converse as play, send, spoken, type Step, words } from "./realtimeScript.ts"

/** The server tests poll their waits every 5 ms of real time. */
const converse = (url: string, headers: Record<string, string> | undefined, steps: ReadonlyArray<Step>) =>
  play(url, headers, steps, 5)

const voice = "21m00Tcm4TlvDq8ikWAM"
const key = { "xi-api-key": "sim-key" }

/** Fast latencies, so a test of many generations takes a fraction of a second. */
const fast = {
  flash: { ttfbMs: 5, msPerUnit: 0.2, jitter: 0.2 },
  standard: { ttfbMs: 10, msPerUnit: 0.5, jitter: 0.2 }
}

/** Waits for the server to close the socket. */
const untilClosed: Step = { until: () => false }

/** A server on a free port, and the URL of an endpoint on it. */
const serve = (options: Server.Options = {}) =>
  Effect.map(Server.serve({ port: 0, latency: fast, ...options }), (running) => ({
    ...running,
    ws: (kind: Realtime.Kind, query: Realtime.Query = {}, voiceId = voice) =>
      `ws://127.0.0.1:${running.port}${Realtime.pathOf(kind, voiceId)}?${Realtime.queryString(query)}`,
    stats: Effect.promise(() => fetch(`${running.url}/_simulator/stats`).then((r) => r.json() as Promise<any>)),
    config: (patch: unknown) =>
      Effect.promise(() =>
        fetch(`${running.url}/_simulator/config`, { method: "POST", body: JSON.stringify(patch) }).then((r) => r.status)
      )
  }))

describe("Realtime over the server, Node's WebSocket", () => {
  it.live("stream-input: audio whose alignment reproduces the text, isFinal, a clean 1000; credits per character", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const chunks = ["Over a real socket, ", "the simulator speaks — ", "with ümlauts and 🎙️ too. ", words(30)]
      const run = yield* converse(server.ws("single", { modelId: "eleven_flash_v2_5" }), key, [
        send(Realtime.init({ chunkSchedule: [50, 120] })),
        send(Realtime.keepAlive()),
        ...chunks.map((c) => send(Realtime.text(c))),
        send(Realtime.endOfInput)
      ])
      assert.deepStrictEqual(run.close, { code: 1000, reason: "" })
      const text = chunks.join("")
      assert.strictEqual(spoken(run.frames), text)
      for (const f of run.frames.slice(0, -1)) {
        assert.isNull(f.isFinal)
        assert.strictEqual(f.alignment.chars.length, f.alignment.charStartTimesMs.length)
        assert.deepStrictEqual(f.normalizedAlignment, f.alignment)
      }
      assert.deepStrictEqual(run.frames[run.frames.length - 1], { isFinal: true })
      const stats = yield* server.stats
      const characters = Array.from(text).length
      assert.strictEqual(stats.realtime.creditsCharged, Math.ceil(characters * 0.5))
      assert.strictEqual(stats.accounts.key1.characterCount, Math.ceil(characters * 0.5))
      assert.strictEqual(stats.realtime.characters.generated, characters)
      assert.isAtLeast(stats.realtime.generations.started, 2)
      assert.deepStrictEqual(stats.realtime.sessions.closedByCode, { "1000": 1 })
      assert.strictEqual(stats.pools.flash.maxInFlight, 1)
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("authentication: by header and by first message; a bad key gets an error frame and 1008", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const ok = (headers: Record<string, string> | undefined, first: Record<string, unknown>) =>
        converse(server.ws("single"), headers, [
          JSON.stringify({ text: " ", ...first }),
          send(Realtime.text("Hello. ")),
          send(Realtime.endOfInput)
        ])
      for (
        const run of [
          yield* ok(key, {}),
          yield* ok(undefined, { xi_api_key: "sim-key" }),
          yield* ok(undefined, { "xi-api-key": "sim-key" })
        ]
      ) {
        assert.strictEqual(spoken(run.frames), "Hello. ")
        assert.strictEqual(run.close.code, 1000)
      }
      const bad = yield* converse(server.ws("single"), { "xi-api-key": "not-a-key" }, [])
      assert.deepStrictEqual(bad.frames, [{ message: "Invalid API key", error: "invalid_api_key", code: 1008 }])
      assert.deepStrictEqual(bad.close, { code: 1008, reason: "Invalid API key" })
      const none = yield* converse(server.ws("multi"), undefined, [send(Realtime.init({ contextId: "a" }))])
      assert.strictEqual(none.frames[0].error, "needs_authorization")
      assert.strictEqual(none.close.code, 1008)
      const stats = yield* server.stats
      assert.notInclude(JSON.stringify(stats), "not-a-key")
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("inactivity: input_timeout_exceeded with the documented message, then 1008", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const run = yield* converse(server.ws("single", { inactivityTimeout: 1 }), key, [send(Realtime.init({}))])
      const message = Realtime.serverMessages.inputTimeout(1)
      assert.deepStrictEqual(run.frames, [{ message, error: "input_timeout_exceeded", code: 1008 }])
      assert.deepStrictEqual(run.close, { code: 1008, reason: Realtime.closeReason(message) })
      assert.isAtLeast(run.times[0]!, 900)
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("multi-stream-input: tagged frames, close_context with its isFinal, close_socket, the 6th context refused", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const run = yield* converse(server.ws("multi"), key, [
        send(Realtime.init({ contextId: "one" })),
        send(Realtime.init({ contextId: "two" })),
        send(Realtime.text("First context. ", "one", true)),
        send(Realtime.text("Second context. ", "two", true)),
        send(Realtime.closeContext("one")),
        { until: (frames) => frames.some((f) => f.isFinal === true && f.contextId === "one") },
        send(Realtime.closeSocket)
      ])
      assert.strictEqual(spoken(run.frames, "one"), "First context. ")
      assert.strictEqual(spoken(run.frames, "two"), "Second context. ")
      for (const f of run.frames) assert.include(["one", "two"], f.contextId)
      assert.deepStrictEqual(run.close, { code: 1000, reason: "" })
      const six = yield* converse(
        server.ws("multi"),
        key,
        [1, 2, 3, 4, 5, 6].map((i) => send(Realtime.init({ contextId: `c${i}` })))
      )
      assert.deepStrictEqual(six.frames, [{
        message: Realtime.serverMessages.maxActiveConversations,
        error: "max_active_conversations",
        code: 1008,
        contextId: "c6"
      }])
      assert.deepStrictEqual(six.close, {
        code: 1008,
        reason: Realtime.closeReason(Realtime.serverMessages.maxActiveConversations)
      })
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("eleven_v3 is refused; a changed voice_settings is refused with the sources' message", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const v3 = yield* converse(server.ws("multi", { modelId: "eleven_v3" }), key, [])
      assert.strictEqual(v3.frames[0].error, "unsupported_model")
      assert.strictEqual(v3.close.code, 1008)
      const changed = yield* converse(server.ws("single"), key, [
        send(Realtime.init({ voiceSettings: { stability: 0.3 } })),
        JSON.stringify({ text: "Changed. ", voice_settings: { stability: 0.7 } })
      ])
      assert.deepStrictEqual(changed.close, { code: 1008, reason: Realtime.serverMessages.voiceSettingsChanged })
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("stopping the server closes the open sockets at once (1001) rather than waiting for their timeout", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* Scope.provide(serve(), scope)
      const talking = yield* Effect.forkChild(
        converse(server.ws("single"), key, [send(Realtime.init({})), untilClosed])
      )
      yield* Effect.sleep(200)
      const stopping = Date.now()
      yield* Scope.close(scope, Exit.void)
      assert.isBelow(Date.now() - stopping, 5_000)
      const run = yield* Fiber.join(talking)
      assert.deepStrictEqual(run.close, { code: 1001, reason: "The server is shutting down." })
      assert.deepStrictEqual((yield* server.simulator.stats).realtime!.sessions.closedByCode, { "1001": 1 })
    }).pipe(Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("a plain GET of the endpoint (no Upgrade) is FastAPI's 404", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const response = yield* Effect.promise(() => fetch(`${server.url}${Realtime.pathOf("single", voice)}`))
      assert.strictEqual(response.status, 404)
      assert.deepStrictEqual(yield* Effect.promise(() => response.json()), { detail: "Not Found" })
    }).pipe(Effect.scoped))
})

describe("Realtime over the server: concurrency", () => {
  /** One utterance on its own socket, text sent (holding `permit`, if any) once `go` is done. */
  const utterance = (
    url: string,
    text: string,
    options: { readonly permit?: Semaphore.Semaphore; readonly go?: Deferred.Deferred<void> }
  ) =>
    converse(url, key, [
      send(Realtime.init({})),
      ...(options.go === undefined ? [] : [{ effect: Deferred.await(options.go) }]),
      ...(options.permit === undefined ? [] : [{ effect: Effect.asVoid(options.permit.take(1)) }]),
      send(Realtime.text(text, undefined, true)),
      { until: (frames: ReadonlyArray<any>) => spoken(frames).length === text.length },
      ...(options.permit === undefined ? [] : [{ effect: Effect.asVoid(options.permit.release(1)) }]),
      send(Realtime.endOfInput)
    ])

  it.live("a client that keeps within the pool never sees the server above it", () =>
    Effect.gen(function*() {
      const server = yield* serve({ plan: "free", latency: { standard: { ttfbMs: 30, msPerUnit: 1, jitter: 0.2 } } })
      const permit = yield* Semaphore.make(2) // the free plan's standard limit
      const texts = Array.from({ length: 8 }, (_, i) => words(10, i * 20))
      const runs = yield* Effect.all(texts.map((t) => utterance(server.ws("single"), t, { permit })), {
        concurrency: "unbounded"
      })
      runs.forEach((run, i) => {
        assert.strictEqual(spoken(run.frames), texts[i])
        assert.strictEqual(run.close.code, 1000)
      })
      const stats = yield* server.stats
      assert.strictEqual(stats.pools.standard.maxInFlight, 2)
      assert.strictEqual(stats.pools.standard.rejected, 0)
      assert.strictEqual(stats.realtime.generations.completed, 8)
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("a client past the pool gets too_many_concurrent_requests, then 1008", () =>
    Effect.gen(function*() {
      const server = yield* serve({ plan: "free", latency: { standard: { ttfbMs: 300, msPerUnit: 2, jitter: 0 } } })
      const go = yield* Deferred.make<void>()
      const fibers: Array<Fiber.Fiber<Conversation, Socket.SocketError>> = []
      for (const i of [0, 1, 2]) {
        fibers.push(yield* Effect.forkChild(utterance(server.ws("single"), words(10, i * 20), { go })))
      }
      yield* Effect.sleep(300) // all three open and initialised
      yield* Deferred.succeed(go, undefined)
      const runs = yield* Fiber.joinAll(fibers)
      const refused = runs.filter((r) => r.close.code === 1008)
      assert.strictEqual(refused.length, 1)
      assert.strictEqual(refused[0]!.frames[0].error, "too_many_concurrent_requests")
      assert.include(refused[0]!.frames[0].message, "maximum of 2 concurrent requests")
      const stats = yield* server.stats
      assert.strictEqual(stats.pools.standard.maxInFlight, 2)
      assert.strictEqual(stats.realtime.errors.too_many_concurrent_requests, 1)
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))
})

describe("Realtime over the server: faults through POST /_simulator/config", () => {
  const long = words(40)

  it.live("drop: the connection ends with no close frame; the ws client sees 1006", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      assert.strictEqual(yield* server.config({ realtime: { next: ["drop"] } }), 200)
      const run = yield* converse(server.ws("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text(long, undefined, true)),
        untilClosed
      ])
      assert.deepStrictEqual(run.close, { code: 1006, reason: "" })
      const heard = spoken(run.frames)
      assert.isAbove(heard.length, 0)
      assert.isBelow(heard.length, long.length)
      const stats = yield* server.stats
      assert.strictEqual(stats.realtime.faults.drop, 1)
      assert.strictEqual(stats.realtime.sessions.closedByCode["1006"], 1)
      assert.strictEqual(stats.pools.standard.inFlight, 0)
    }).pipe(Effect.scoped, Effect.provide(NodeWS.layerWebSocketConstructor)))

  it.live("drop with Node's WebSocket: an error event before the 1006 (the WHATWG abnormal closure)", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      yield* server.config({ realtime: { next: ["drop"] } })
      const run = yield* converse(server.ws("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text(long, undefined, true)),
        untilClosed
      ])
      assert.deepStrictEqual(run.close, { code: -1, reason: "SocketReadError" })
      assert.isAbove(spoken(run.frames).length, 0)
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("close1011: some audio, then 1011", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      yield* server.config({ realtime: { next: ["close1011"] } })
      const run = yield* converse(server.ws("multi"), key, [
        send(Realtime.init({ contextId: "x" })),
        send(Realtime.text(long, "x", true)),
        untilClosed
      ])
      assert.strictEqual(run.close.code, 1011)
      const heard = spoken(run.frames, "x")
      assert.isAbove(heard.length, 0)
      assert.isBelow(heard.length, long.length)
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("stall: the audio stops for stallMs, then everything arrives", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      yield* server.config({ realtime: { next: ["stall"], stallMs: 400 } })
      const run = yield* converse(server.ws("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text(long, undefined, true)),
        { until: (frames) => spoken(frames).length === long.length },
        send(Realtime.endOfInput)
      ])
      assert.strictEqual(spoken(run.frames), long)
      assert.strictEqual(run.close.code, 1000)
      const gaps = run.times.slice(1).map((t, i) => t - run.times[i]!)
      assert.isAtLeast(Math.max(...gaps), 380)
      const stats = yield* server.stats
      assert.strictEqual(stats.realtime.faults.stall, 1)
    }).pipe(Effect.scoped, Effect.provide(NodeSocket.layerWebSocketConstructor)))

  it.live("a bad realtime patch is refused with 400 invalid_config", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      assert.strictEqual(yield* server.config({ realtime: { faults: { drop: 2 } } }), 400)
      assert.strictEqual(yield* server.config({ realtime: { next: ["explode"] } }), 400)
    }).pipe(Effect.scoped))
})
