/**
 * The real-time session over the simulator's HTTP server, with Node's own WebSocket
 * (`NodeSocket.layerWebSocketConstructor`, the production constructor): a real handshake with the key in the
 * `xi-api-key` header, real frames, real closes and a real dropped TCP connection. Real time, so the latency
 * model is fast and the reconnect pause short.
 */
import { NodeHttpClient } from "@effect/platform-node"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Redacted, Stream } from "effect"
import * as Realtime from "../../src/client/Realtime.ts"
import * as RealtimeSession from "../../src/resilience/RealtimeSession.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as Server from "../../src/simulator/Server.ts"
import type * as Simulator from "../../src/simulator/Simulator.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const flash = "eleven_flash_v2_5"
const apiKey = Redacted.make("sim-key")
const fast: Simulator.Options["latency"] = { flash: { ttfbMs: 5, msPerUnit: 0.2, jitter: 0 } }

/** The stack against the server at `baseUrl`: HTTP through undici, sockets through Node's WebSocket. */
const stack = (baseUrl: string) =>
  RealtimeSession.layer({ apiKey, baseUrl }).pipe(
    Layer.provideMerge(
      Resilient.layer({ apiKey, baseUrl, limiter: { plan: "pro" }, retry: { linear: { step: "20 millis" } } })
    ),
    Layer.provideMerge(Layer.mergeAll(NodeHttpClient.layerUndici, NodeSocket.layerWebSocketConstructor))
  )

const spoken = (chunks: Iterable<RealtimeSession.AudioChunk>) =>
  [...chunks].map((c) => c.alignment?.chars.join("") ?? "").join("")

const sentences = (n: number) =>
  Array.from({ length: n }, (_, i) => `Sentence ${i} says a few more words about the weather today.`)

const speak = (texts: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const realtime = yield* RealtimeSession.RealtimeTts
    const session = yield* realtime.open({ voiceId: voice, modelId: flash })
    const audio = yield* Effect.forkChild(Stream.runCollect(session.audio))
    for (const t of texts) yield* session.send(t)
    yield* session.end
    return { chunks: yield* Fiber.join(audio), reconnects: yield* session.reconnects }
  }))

/** Waits (real time, bounded) until `check` holds. */
const eventually = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200 && !check(); i++) yield* Effect.sleep(Duration.millis(10))
    assert.isTrue(check(), what)
  })

describe("RealtimeSession over the simulator's HTTP server", () => {
  it.live("a session speaks its text with audio and alignment, gets isFinal and a clean close", () =>
    Effect.gen(function*() {
      const { simulator, url } = yield* Server.serve({ port: 0, latency: fast })
      const texts = sentences(3)
      const { chunks, reconnects } = yield* speak(texts).pipe(Effect.provide(stack(url)))
      assert.strictEqual(spoken(chunks), texts.map(Realtime.normalizeText).join(""))
      assert.strictEqual(reconnects, 0)
      yield* eventually(() => simulator.realtime.stats().sessions.open === 0, "the socket is closed")
      const rt = simulator.realtime.stats()
      assert.strictEqual(rt.frames.final, 1)
      assert.deepStrictEqual(rt.sessions.closedByCode, { "1000": 1 })
    }).pipe(Effect.scoped))

  it.live("a dropped connection mid-utterance is reconnected: every character spoken exactly once", () =>
    Effect.gen(function*() {
      const { simulator, url } = yield* Server.serve({ port: 0, latency: fast })
      simulator.realtime.configure({ next: ["drop"] })
      const texts = sentences(6)
      const { chunks, reconnects } = yield* speak(texts).pipe(Effect.provide(stack(url)))
      assert.strictEqual(simulator.realtime.stats().faults.drop, 1)
      assert.strictEqual(reconnects, 1)
      assert.strictEqual(spoken(chunks), texts.map(Realtime.normalizeText).join(""))
    }).pipe(Effect.scoped))

  it.live("interrupting the caller closes the socket at the server and returns the permit", () =>
    Effect.gen(function*() {
      const { simulator, url } = yield* Server.serve({
        port: 0,
        latency: { flash: { ttfbMs: 5, msPerUnit: 20, jitter: 0 } }
      })
      yield* Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(speak(sentences(6)))
        yield* eventually(() => simulator.realtime.stats().generations.inFlight.flash === 1, "a generation runs")
        const { keyId, limiter } = yield* Resilient.Resilience
        assert.strictEqual((yield* limiter.snapshot(keyId, "flash")).inFlight, 1)
        yield* Fiber.interrupt(fiber)
        assert.strictEqual((yield* limiter.snapshot(keyId, "flash")).inFlight, 0)
        yield* eventually(() => simulator.realtime.stats().sessions.open === 0, "the socket is closed at the server")
        assert.strictEqual(simulator.realtime.stats().generations.inFlight.flash, 0)
      }).pipe(Effect.provide(stack(url)))
    }).pipe(Effect.scoped))
})
