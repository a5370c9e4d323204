/**
 * The real-time session's accounting at the edges a review found: what `close` waits for, what an abandoned
 * context keeps, when a whitespace tail lets the permit go, per-context voice settings, keep-alives after the
 * end and an idle multi-context socket, whitespace-only sends, the read-idle bound, and the inactivity
 * timeout a failure reports. Against the in-process simulator under TestClock; every check is read from the
 * simulator's record or the policies' state.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Option, Ref, Scope, Stream } from "effect"
import { Socket } from "effect/socket"
import * as Realtime from "../../src/client/Realtime.ts"
import * as RealtimeSession from "../../src/resilience/RealtimeSession.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import type { ResilientOptions } from "../../src/resilience/ResilientOptions.ts"
import * as RealtimeInProcess from "../../src/simulator/RealtimeInProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { runVirtual } from "../utils/virtualTime.ts"
import {
  apiKey,
  assertNothingHeld,
  drain,
  failureOf,
  flash,
  sentences,
  sentOf,
  speak,
  spoken,
  stack,
  until,
  voice
} from "./realtimeFixtures.ts"

/** A simulator whose one key has `flash` slots of the Flash pool, and a limiter of the same size. */
const flashOf = (flash: number, sim: Simulator.Options = {}, options: Omit<ResilientOptions, "apiKey"> = {}) =>
  stack(
    { seed: 21, ...sim, apiKeys: [{ key: "sim-key", limits: { flash } }] },
    { limiter: { plan: { flash } }, ...options }
  )

type Listener = (event: Socket.WebSocketEvent) => void

/** A socket whose audio frames leave trailing whitespace out of their alignment (as a server may). */
class TrailingUnaligned implements Socket.WebSocketLike {
  private readonly inner: Socket.WebSocketLike
  private readonly wrapped = new Map<Listener, Listener>()
  constructor(inner: Socket.WebSocketLike) {
    this.inner = inner
  }
  get readyState() {
    return this.inner.readyState
  }
  addEventListener(type: "open" | "message" | "error" | "close", listener: Listener, options?: { once?: boolean }) {
    if (type !== "message") return this.inner.addEventListener(type, listener, options)
    const strip: Listener = (event) => {
      const frame = JSON.parse(String(event.data))
      if (frame.alignment != null) {
        const chars: Array<string> = frame.alignment.chars
        while (chars.length > 0 && /^\s+$/.test(chars[chars.length - 1]!)) chars.pop()
        frame.normalizedAlignment = frame.alignment
      }
      listener({ type: "message", data: JSON.stringify(frame) })
    }
    this.wrapped.set(listener, strip)
    this.inner.addEventListener(type, strip, options)
  }
  removeEventListener(type: "open" | "message" | "error" | "close", listener: Listener) {
    this.inner.removeEventListener(type, this.wrapped.get(listener) ?? listener)
  }
  close(code?: number, reason?: string) {
    this.inner.close(code, reason)
  }
  send(data: string | Uint8Array<ArrayBuffer>) {
    this.inner.send(data)
  }
}

/** The stack over in-process sockets whose server never aligns a trailing space. */
const unalignedTails = (sim: Simulator.Options) =>
  RealtimeSession.layer({ apiKey }).pipe(
    Layer.provideMerge(Resilient.layer({ apiKey })),
    Layer.provideMerge(Layer.effect(
      Socket.WebSocketConstructor,
      Effect.gen(function*() {
        const inner = yield* RealtimeInProcess.makeWebSocketConstructor(yield* Simulator.Simulator)
        return (url: string, options?: Socket.WebSocketConstructorOptions) => new TrailingUnaligned(inner(url, options))
      })
    )),
    Layer.provideMerge(RealtimeInProcess.layerSimulated(sim))
  )

describe("RealtimeSession: review regressions", () => {
  it.effect("close waits for text a reconnect has not resent yet: everything is spoken before close succeeds", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const { keyId, limiter } = yield* Resilient.Resilience
      const texts = sentences(4)
      const result = yield* runVirtual(
        Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: flash })
          const ctx = yield* multi.openContext("a")
          const audio = yield* Effect.forkChild(Stream.runCollect(ctx.audio))
          sim.realtime.configure({ next: ["drop"] })
          for (const t of texts) yield* ctx.send(t)
          yield* ctx.flush
          yield* until(() => sim.realtime.stats().faults.drop === 1)
          // The reconnect's pause holds no permit: someone else takes the only one.
          const holder = yield* Scope.make()
          yield* limiter.acquire({ key: keyId, pool: "flash" }).pipe(Scope.provide(holder))
          const closing = yield* Effect.forkChild(multi.close)
          yield* Effect.sleep("5 seconds")
          const early = closing.pollUnsafe()
          yield* Scope.close(holder, Exit.void)
          yield* Fiber.join(closing)
          return { early, chunks: yield* Fiber.join(audio), stats: yield* ctx.stats }
        })),
        { stepMillis: 10 }
      )
      assert.isUndefined(result.early, "close did not end while text waited for its permit")
      assert.strictEqual(spoken(result.chunks), sentOf(texts))
      assert.strictEqual(result.stats.answered, result.stats.sent)
      assert.strictEqual(sim.realtime.stats().characters.generated, [...sentOf(texts)].length)
      yield* assertNothingHeld
    }).pipe(Effect.provide(flashOf(1))))

  it.effect("an abandoned context keeps its permit while the server still generates it", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const { keyId, limiter } = yield* Resilient.Resilience
      const observed = yield* runVirtual(
        Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: flash })
          yield* Effect.scoped(Effect.gen(function*() {
            const ctx = yield* multi.openContext("long")
            for (const t of sentences(30)) yield* ctx.send(t)
            yield* ctx.flush
            yield* until(() => sim.realtime.stats().generations.inFlight.flash === 1)
          }))
          yield* drain
          const held = (yield* limiter.snapshot(keyId, "flash")).inFlight
          const generating = sim.realtime.stats().generations.inFlight.flash
          const next = yield* speak(sentences(3, "next"))
          yield* multi.close
          return { held, generating, next }
        })),
        { stepMillis: 10 }
      )
      assert.strictEqual(observed.generating, 1, "the server still generates the abandoned context")
      assert.strictEqual(observed.held, 1, "so the client still holds its permit")
      assert.strictEqual(spoken(observed.next.chunks), sentOf(sentences(3, "next")))
      assert.deepStrictEqual(sim.realtime.stats().errors, {})
      yield* assertNothingHeld
    }).pipe(Effect.provide(flashOf(1))))

  it.effect("a whitespace tail keeps the permit until the server is done: 10 sessions never exceed the pool", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const exits = yield* runVirtual(
        Effect.forEach(
          Array.from({ length: 10 }, (_, i) => i),
          (i) => Effect.exit(speak(sentences(4, `s${i}-`))),
          { concurrency: "unbounded" }
        ),
        { stepMillis: 50 }
      )
      assert.deepStrictEqual(exits.filter(Exit.isFailure), [])
      assert.deepStrictEqual(sim.realtime.stats().errors, {})
      assert.strictEqual(sim.realtime.stats().generations.refused, 0)
      yield* assertNothingHeld
    }).pipe(Effect.provide(flashOf(2, { seed: 1, chunkSeconds: 0.01 }))))

  it.effect("a whitespace tail the server never aligns: the permit goes back once no frame follows for a second", () =>
    Effect.gen(function*() {
      const { keyId, limiter } = yield* Resilient.Resilience
      const result = yield* runVirtual(
        Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const session = yield* realtime.open({ voiceId: voice, modelId: flash })
          const heard = yield* Ref.make("")
          const audio = yield* Effect.forkChild(
            Stream.runForEach(session.audio, (c) => Ref.update(heard, (h) => h + (c.alignment?.chars.join("") ?? "")))
          )
          yield* session.send("Hello there.")
          yield* session.flush
          yield* until(() => Ref.getUnsafe(heard).endsWith("there."))
          const atLastFrame = (yield* limiter.snapshot(keyId, "flash")).inFlight
          const stats = yield* session.stats
          yield* Effect.sleep("1500 millis")
          const afterQuiet = (yield* limiter.snapshot(keyId, "flash")).inFlight
          yield* session.end
          yield* Fiber.join(audio)
          return { atLastFrame, afterQuiet, stats, end: yield* session.stats }
        })),
        { stepMillis: 10 }
      )
      assert.strictEqual(result.atLastFrame, 1, "held while the tail may still come")
      assert.deepStrictEqual(result.stats, { sent: 13, answered: 12, resent: 0 })
      assert.strictEqual(result.afterQuiet, 0, "given back after a quiet second")
      assert.deepStrictEqual(result.end, { sent: 13, answered: 13, resent: 0 }, "the final answers the tail")
      yield* assertNothingHeld
    }).pipe(Effect.provide(unalignedTails({ seed: 27 }))))

  it.effect("contexts with their own voice settings speak side by side on one socket", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const result = yield* runVirtual(Effect.scoped(Effect.gen(function*() {
        const realtime = yield* RealtimeSession.RealtimeTts
        const multi = yield* realtime.openMulti({
          voiceId: voice,
          modelId: flash,
          voiceSettings: { stability: 0.5, similarity_boost: 0.75 }
        })
        const run = (id: string, voiceSettings: Realtime.VoiceSettings | undefined) =>
          Effect.scoped(Effect.gen(function*() {
            const ctx = yield* multi.openContext(id, { voiceSettings })
            const audio = yield* Effect.forkChild(Stream.runCollect(ctx.audio))
            for (const t of sentences(2, id)) yield* ctx.send(t)
            yield* ctx.end
            return spoken(yield* Fiber.join(audio))
          }))
        const both = yield* Effect.all([run("a", undefined), run("b", { stability: 0.9, speed: 1.1 })], {
          concurrency: "unbounded"
        })
        yield* multi.close
        return { both, reconnects: yield* multi.reconnects }
      })))
      assert.deepStrictEqual(result.both, [sentOf(sentences(2, "a")), sentOf(sentences(2, "b"))])
      assert.strictEqual(result.reconnects, 0)
      assert.deepStrictEqual(sim.realtime.stats().errors, {})
      assert.deepStrictEqual(sim.realtime.stats().sessions.closedByCode, { "1000": 1 })
      yield* assertNothingHeld
    }).pipe(Effect.provide(stack({ seed: 22 }))))

  it.effect("a context that ended keeps the socket alive while a long generation runs (keep-alives after end)", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      // About 24 s of generation on the standard pool, longer than the 20 s inactivity timeout.
      const text = sentences(90).join(" ").slice(0, 5_889)
      const result = yield* runVirtual(
        Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: "eleven_multilingual_v2" })
          const ctx = yield* multi.openContext("long")
          const audio = yield* Effect.forkChild(Stream.runCollect(ctx.audio))
          yield* ctx.send(text)
          yield* drain
          const before = sim.realtime.stats().frames.received
          yield* ctx.end
          const during = sim.realtime.stats().frames.received - before
          yield* multi.close
          return {
            chunks: yield* Fiber.join(audio),
            reconnects: yield* multi.reconnects,
            during,
            stats: yield* ctx.stats
          }
        })),
        { stepMillis: 50 }
      )
      assert.strictEqual(result.reconnects, 0)
      assert.strictEqual(result.stats.resent, 0)
      assert.strictEqual(spoken(result.chunks), Realtime.normalizeText(text))
      assert.deepStrictEqual(sim.realtime.stats().errors, {})
      // flush and close_context, then a keep-alive per 10 s of silence while the audio comes.
      assert.isAtLeast(result.during, 2 + 2)
      yield* assertNothingHeld
    }).pipe(Effect.provide(stack({ seed: 23 }))))

  it.effect("an idle multi-context socket with no context is not a failure: it reconnects when a context opens", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const result = yield* runVirtual(
        Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: flash })
          yield* Effect.sleep("10 minutes")
          const idle = { reconnects: yield* multi.reconnects, opened: sim.realtime.stats().sessions.opened }
          const said = yield* Effect.scoped(Effect.gen(function*() {
            const ctx = yield* multi.openContext("later")
            const audio = yield* Effect.forkChild(Stream.runCollect(ctx.audio))
            yield* ctx.send("After a long quiet.")
            yield* ctx.end
            return spoken(yield* Fiber.join(audio))
          }))
          yield* multi.close
          return { idle, said }
        })),
        { stepMillis: 500 }
      )
      assert.deepStrictEqual(result.idle, { reconnects: 0, opened: 1 })
      assert.strictEqual(result.said, "After a long quiet. ")
      assert.strictEqual(sim.realtime.stats().sessions.opened, 2)
      yield* assertNothingHeld
      // Closed while idle, with no context: a clean end, no connection made for it.
      yield* runVirtual(
        Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: flash })
          yield* Effect.sleep("1 minute")
          yield* multi.close
          assert.strictEqual(yield* multi.reconnects, 0)
        })),
        { stepMillis: 500 }
      )
      assert.strictEqual(sim.realtime.stats().sessions.opened, 3)
      yield* assertNothingHeld
    }).pipe(Effect.provide(stack({ seed: 24 }))))

  it.effect("a whitespace-only send takes no permit and no reservation", () =>
    Effect.gen(function*() {
      const { keyId, limiter, quota } = yield* Resilient.Resilience
      const result = yield* runVirtual(Effect.scoped(Effect.gen(function*() {
        const realtime = yield* RealtimeSession.RealtimeTts
        const session = yield* realtime.open({ voiceId: voice, modelId: flash })
        // Every permit taken elsewhere: a send that wanted one would wait.
        const holder = yield* Scope.make()
        yield* limiter.acquire({ key: keyId, pool: "flash" }).pipe(Scope.provide(holder))
        const sent = yield* Effect.timeoutOption(session.send("   \n"), "2 seconds")
        const reserved = (yield* quota!.status).reserved
        const stats = yield* session.stats
        yield* Scope.close(holder, Exit.void)
        yield* session.end
        return { sent, reserved, stats }
      })))
      assert.isTrue(Option.isSome(result.sent), "the send returned at once")
      assert.strictEqual(result.reserved, 0)
      assert.strictEqual(result.stats.sent, 0)
      yield* assertNothingHeld
    }).pipe(Effect.provide(flashOf(1))))

  it.effect("a server that stalls after the end is given up after idleTimeout: reconnect, resend, all spoken", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      sim.realtime.configure({ next: ["stall"], stallMs: 600_000 })
      const texts = sentences(6)
      const { chunks, reconnects, stats } = yield* runVirtual(speak(texts), { stepMillis: 500 })
      assert.strictEqual(sim.realtime.stats().faults.stall, 1)
      assert.strictEqual(reconnects, 1)
      assert.isAbove(stats.resent, 0)
      assert.strictEqual(spoken(chunks), sentOf(texts))
      yield* assertNothingHeld
    }).pipe(Effect.provide(stack({ seed: 25 }))))

  it.effect("idleTimeout must be a positive duration or false: InvalidRequest before connecting", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const realtime = yield* RealtimeSession.RealtimeTts
      const error = yield* failureOf(Effect.scoped(realtime.open({ voiceId: voice, idleTimeout: "0 seconds" })))
      assert.strictEqual(error.reason._tag === "InvalidRequest" && error.reason.field, "idleTimeout")
      assert.strictEqual(sim.realtime.stats().sessions.opened, 0)
      const { stats } = yield* runVirtual(speak(["Without a read bound."], { idleTimeout: false }))
      assert.strictEqual(stats.answered, stats.sent)
    }).pipe(Effect.provide(stack({ seed: 28 }))))

  it.effect("input_timeout_exceeded reports the inactivity timeout the session asked for", () =>
    Effect.gen(function*() {
      const error = yield* runVirtual(Effect.scoped(Effect.gen(function*() {
        const realtime = yield* RealtimeSession.RealtimeTts
        const session = yield* realtime.open({
          voiceId: voice,
          modelId: flash,
          inactivityTimeout: "5 seconds",
          keepAlive: false
        })
        yield* session.send("Then nothing more.")
        return yield* failureOf(Effect.andThen(Effect.sleep("1 minute"), session.end))
      })))
      const reason = error.reason
      assert.strictEqual(reason._tag, "Timeout")
      if (reason._tag === "Timeout") {
        assert.strictEqual(reason.phase, "inactivity")
        assert.strictEqual(Duration.toSeconds(reason.after), 5)
      }
    }).pipe(Effect.provide(stack({ seed: 26 }, { retry: false }))))
})
