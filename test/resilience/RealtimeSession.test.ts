/**
 * The real-time session against the simulator's in-process WebSocket face, under TestClock: the resilient
 * stack's policies (`Resilient.layer`) and `RealtimeSession.layer` over `RealtimeInProcess.layerSimulated`.
 * Every check is read from the simulator's own record (what the server saw) or the policies' state.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as RealtimeSession from "../../src/resilience/RealtimeSession.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
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
  voice
} from "./realtimeFixtures.ts"

describe("RealtimeSession", () => {
  describe("a session", () => {
    it.effect("speaks its text with audio and alignment, gets isFinal, and closes cleanly", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        const texts = ["Hello there, this is a test of the real-time session.", "It speaks every word once. "]
        const { chunks, reconnects, stats } = yield* runVirtual(speak(texts))
        assert.isAbove(chunks.length, 1)
        for (const c of chunks) assert.isAbove(c.audio.byteLength, 0)
        assert.strictEqual(spoken(chunks), sentOf(texts))
        assert.deepStrictEqual(stats, {
          sent: [...sentOf(texts)].length,
          answered: [...sentOf(texts)].length,
          resent: 0
        })
        assert.strictEqual(reconnects, 0)
        const rt = sim.realtime.stats()
        assert.strictEqual(rt.frames.final, 1)
        assert.deepStrictEqual(rt.sessions.closedByCode, { "1000": 1 })
        assert.deepStrictEqual(rt.errors, {})
        yield* assertNothingHeld
      }).pipe(Effect.provide(stack({ seed: 1, plan: "creator" }, { limiter: { plan: "creator" } }))))

    it.effect("refuses bad options before connecting: InvalidRequest, nothing sent", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        const realtime = yield* RealtimeSession.RealtimeTts
        const open = (options: Partial<RealtimeSession.SessionOptions>) =>
          failureOf(Effect.scoped(realtime.open({ voiceId: voice, modelId: flash, ...options })))
        assert.strictEqual((yield* open({ modelId: "eleven_v3" })).reason._tag, "InvalidRequest")
        const inactivity = (yield* open({ inactivityTimeout: "181 seconds" })).reason
        assert.strictEqual(inactivity._tag === "InvalidRequest" && inactivity.field, "inactivity_timeout")
        const schedule = (yield* open({ chunkSchedule: [40] })).reason
        assert.strictEqual(schedule._tag === "InvalidRequest" && schedule.field, "chunk_length_schedule")
        const { keyId, limiter } = yield* Resilient.Resilience
        const badUrl = RealtimeSession.make({ apiKey, baseUrl: "not a url" }, yield* Resilient.Resilience)
        const url = (yield* failureOf(Effect.scoped(badUrl.open({ voiceId: voice })))).reason
        assert.strictEqual(url._tag === "InvalidRequest" && url.field, "baseUrl")
        assert.strictEqual(sim.realtime.stats().sessions.opened, 0)
        assert.strictEqual((yield* limiter.snapshot(keyId, "flash")).inFlight, 0)
      }).pipe(Effect.provide(stack({ seed: 1 }))))
  })

  describe("concurrency", () => {
    const burst = Effect.forEach(
      Array.from({ length: 20 }, (_, i) => i),
      (i) => Effect.exit(speak(sentences(4, `s${i}-`))),
      { concurrency: "unbounded" }
    )

    it.effect("20 sessions on creator never exceed the Flash pool at the server; every one speaks all its text", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        const exits = yield* runVirtual(burst, { stepMillis: 50 })
        assert.deepStrictEqual(exits.filter(Exit.isFailure), [])
        exits.forEach((exit, i) => {
          if (Exit.isSuccess(exit)) assert.strictEqual(spoken(exit.value.chunks), sentOf(sentences(4, `s${i}-`)))
        })
        const stats = yield* sim.stats
        assert.isAtMost(stats.pools.flash.maxInFlight, 10)
        assert.isAtLeast(stats.pools.flash.maxInFlight, 5, "the sessions did run side by side")
        assert.strictEqual(stats.realtime?.generations.refused, 0)
        assert.deepStrictEqual(stats.realtime?.errors, {})
        yield* assertNothingHeld
      }).pipe(Effect.provide(stack({ seed: 2, plan: "creator" }, { limiter: { plan: "creator" } }))))

    it.effect("control: with permits above the plan, the server refuses generations (the check above can fail)", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        yield* runVirtual(burst, { stepMillis: 50 })
        const stats = yield* sim.stats
        assert.isAbove(stats.realtime?.errors["too_many_concurrent_requests"] ?? 0, 0)
      }).pipe(Effect.provide(stack({ seed: 2, plan: "creator" }, { limiter: { plan: { flash: 40 } } }))))
  })

  describe("reconnects", () => {
    for (const fault of ["drop", "close1011"] as const) {
      it.effect(`a ${fault} mid-utterance is reconnected: every character is spoken exactly once`, () =>
        Effect.gen(function*() {
          const sim = yield* Simulator.Simulator
          sim.realtime.configure({ next: [fault] })
          const texts = sentences(6)
          const { chunks, reconnects, stats } = yield* runVirtual(speak(texts))
          const rt = sim.realtime.stats()
          assert.strictEqual(rt.faults[fault], 1, "the fault happened")
          assert.strictEqual(reconnects, 1)
          assert.strictEqual(spoken(chunks), sentOf(texts))
          assert.isAbove(stats.resent, 0, "the unanswered text was sent again")
          assert.strictEqual(rt.sessions.opened, 2)
          assert.strictEqual(rt.sessions.closedByCode[fault === "drop" ? "1006" : "1011"], 1)
          yield* assertNothingHeld
        }).pipe(Effect.provide(stack({ seed: 3, plan: "pro" }, { limiter: { plan: "pro" } }))))
    }

    it.effect("a failure that may not be retried ends the session at once, as one typed failure", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        yield* sim.setCredits(20)
        const error = yield* runVirtual(failureOf(speak(sentences(6))))
        assert.strictEqual(error.reason._tag, "QuotaExceeded")
        assert.strictEqual(sim.realtime.stats().sessions.opened, 1)
        yield* assertNothingHeld
      }).pipe(Effect.provide(stack({ seed: 4, plan: "pro" }, { quota: false }))))
  })

  describe("keep-alive", () => {
    const pause = (keepAlive: boolean) =>
      Effect.scoped(Effect.gen(function*() {
        const realtime = yield* RealtimeSession.RealtimeTts
        const session = yield* realtime.open({ voiceId: voice, modelId: flash, keepAlive })
        const audio = yield* Effect.forkChild(Stream.runCollect(session.audio))
        yield* session.send("Before the pause.")
        yield* session.flush
        yield* Effect.sleep("60 seconds")
        yield* session.send("After the pause.")
        yield* session.end
        return { chunks: yield* Fiber.join(audio), reconnects: yield* session.reconnects }
      }))

    it.effect("a silent caller survives a 60 s pause (inactivity timeout 20 s): keep-alives, no reconnect", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        const { chunks, reconnects } = yield* runVirtual(pause(true), { stepMillis: 500 })
        assert.strictEqual(spoken(chunks), "Before the pause. After the pause. ")
        assert.strictEqual(reconnects, 0)
        const rt = sim.realtime.stats()
        assert.deepStrictEqual(rt.errors, {})
        assert.strictEqual(rt.sessions.opened, 1)
        // init, two texts, a flush, the end: the rest are keep-alives (one per 10 s of silence).
        assert.isAtLeast(rt.frames.received - 5, 5)
      }).pipe(Effect.provide(stack({ seed: 5 }))))

    it.effect("control: without keep-alives the server closes for inactivity (and the session reconnects)", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        const { chunks, reconnects } = yield* runVirtual(pause(false), { stepMillis: 500 })
        assert.isAtLeast(sim.realtime.stats().errors["input_timeout_exceeded"] ?? 0, 1)
        assert.isAtLeast(reconnects, 1)
        assert.strictEqual(spoken(chunks), "Before the pause. After the pause. ")
      }).pipe(Effect.provide(stack({ seed: 5 }))))
  })

  describe("interruption", () => {
    it.effect("interrupting the caller leaves no permit, no reservation, no open socket", () =>
      Effect.gen(function*() {
        const { quota } = yield* Resilient.Resilience
        const sim = yield* Simulator.Simulator
        const fiber = yield* Effect.forkChild(speak(sentences(8)))
        // Until a generation runs at the server: the session then holds a permit and a reservation.
        for (let i = 0; i < 200 && sim.realtime.stats().generations.inFlight.flash === 0; i++) {
          yield* TestClock.adjust(10)
        }
        assert.strictEqual(sim.realtime.stats().generations.inFlight.flash, 1)
        const { keyId, limiter } = yield* Resilient.Resilience
        assert.strictEqual((yield* limiter.snapshot(keyId, "flash")).inFlight, 1)
        assert.isAbove((yield* quota!.status).reserved, 0)
        yield* Fiber.interrupt(fiber)
        yield* assertNothingHeld
      }).pipe(Effect.provide(stack({ seed: 6, plan: "pro" }, { limiter: { plan: "pro" } }))))

    it.effect("closing the scope of an open session closes its socket", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        const scope = yield* Scope.make()
        const realtime = yield* RealtimeSession.RealtimeTts
        const session = yield* runVirtual(realtime.open({ voiceId: voice, modelId: flash }).pipe(Scope.provide(scope)))
        yield* session.send("Some text that waits for more.")
        yield* drain
        assert.strictEqual(sim.realtime.stats().sessions.open, 1)
        yield* Scope.close(scope, Exit.void)
        yield* assertNothingHeld
        // The session's steps now fail with its ending.
        assert.strictEqual((yield* failureOf(session.send("more"))).reason._tag, "InvalidRequest")
      }).pipe(Effect.provide(stack({ seed: 7 }))))
  })

  describe("multi-context", () => {
    it.effect("contexts speak side by side on one socket, each its own text, and close cleanly", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        const result = yield* runVirtual(Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: flash })
          const run = (id: string, texts: ReadonlyArray<string>) =>
            Effect.scoped(Effect.gen(function*() {
              const ctx = yield* multi.openContext(id)
              const audio = yield* Effect.forkChild(Stream.runCollect(ctx.audio))
              for (const t of texts) yield* ctx.send(t)
              yield* ctx.end
              const chunks = yield* Fiber.join(audio)
              for (const c of chunks) assert.strictEqual(c.contextId, id)
              return spoken(chunks)
            }))
          const both = yield* Effect.all([run("a", sentences(3, "a")), run("b", sentences(2, "b"))], {
            concurrency: "unbounded"
          })
          yield* multi.close
          return both
        })))
        assert.deepStrictEqual(result, [sentOf(sentences(3, "a")), sentOf(sentences(2, "b"))])
        const rt = sim.realtime.stats()
        assert.strictEqual(rt.sessions.opened, 1)
        assert.strictEqual(rt.contexts.opened, 2)
        assert.deepStrictEqual(rt.sessions.closedByCode, { "1000": 1 })
        yield* assertNothingHeld
      }).pipe(Effect.provide(stack({ seed: 8 }))))

    it.effect("a drop re-opens every open context on the new socket; each speaks its text exactly once", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        sim.realtime.configure({ next: ["drop"] })
        const result = yield* runVirtual(Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: flash })
          const run = (id: string) =>
            Effect.scoped(Effect.gen(function*() {
              const ctx = yield* multi.openContext(id)
              const audio = yield* Effect.forkChild(Stream.runCollect(ctx.audio))
              for (const t of sentences(4, id)) yield* ctx.send(t)
              yield* ctx.end
              return spoken(yield* Fiber.join(audio))
            }))
          const both = yield* Effect.all([run("a"), run("b")], { concurrency: "unbounded" })
          yield* multi.close
          return { both, reconnects: yield* multi.reconnects }
        })))
        assert.strictEqual(sim.realtime.stats().faults.drop, 1)
        assert.strictEqual(result.reconnects, 1)
        assert.deepStrictEqual(result.both, [sentOf(sentences(4, "a")), sentOf(sentences(4, "b"))])
        assert.strictEqual(sim.realtime.stats().contexts.opened, 4, "both contexts opened on each socket")
        yield* assertNothingHeld
      }).pipe(Effect.provide(stack({ seed: 12 }))))

    it.effect("a sixth open context is InvalidRequest (field context_id), with nothing sent", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        yield* runVirtual(Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const multi = yield* realtime.openMulti({ voiceId: voice, modelId: flash })
          for (let i = 0; i < 5; i++) yield* multi.openContext()
          yield* drain
          const before = sim.realtime.stats()
          assert.strictEqual(before.contexts.open, 5)
          const error = yield* failureOf(multi.openContext("sixth"))
          assert.strictEqual(error.reason._tag, "InvalidRequest")
          assert.strictEqual(error.reason._tag === "InvalidRequest" && error.reason.field, "context_id")
          yield* drain
          assert.strictEqual(sim.realtime.stats().frames.received, before.frames.received, "nothing was sent")
          assert.deepStrictEqual(yield* multi.contexts, ["ctx-1", "ctx-2", "ctx-3", "ctx-4", "ctx-5"])
        })))
        assert.deepStrictEqual(sim.realtime.stats().errors, {})
      }).pipe(Effect.provide(stack({ seed: 9 }))))
  })

  describe("errors", () => {
    it.effect("quota_exceeded reaches the caller as QuotaExceeded (end and audio), and stops the next session", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        // The guard reads the account (plenty of credits) for a first session; the credits then run out at the
        // server, which the guard learns only from the next session's quota_exceeded.
        yield* runVirtual(speak(["A first line."]))
        yield* sim.setCredits(30)
        const outcome = yield* runVirtual(Effect.scoped(Effect.gen(function*() {
          const realtime = yield* RealtimeSession.RealtimeTts
          const session = yield* realtime.open({ voiceId: voice, modelId: flash })
          const audio = yield* Effect.forkChild(Effect.exit(Stream.runDrain(session.audio)))
          yield* session.send(sentences(4).join(" "))
          const end = yield* failureOf(session.end)
          return { end, audio: yield* Fiber.join(audio) }
        })))
        assert.strictEqual(outcome.end.reason._tag, "QuotaExceeded")
        assert.isTrue(Exit.isFailure(outcome.audio))
        const next = yield* runVirtual(failureOf(speak(["Another line."])))
        assert.strictEqual(next.reason._tag, "QuotaExhausted")
        yield* assertNothingHeld
      }).pipe(Effect.provide(stack({ seed: 10, plan: "pro" }))))

    it.effect("a failed session is one breaker failure; an open circuit refuses the next session", () =>
      Effect.gen(function*() {
        const sim = yield* Simulator.Simulator
        sim.realtime.configure({ next: ["close1011"] })
        const failed = yield* runVirtual(failureOf(speak(sentences(4))))
        assert.strictEqual(failed.reason._tag, "ServerError")
        const refused = yield* runVirtual(failureOf(speak(["Hello."])))
        assert.strictEqual(refused.reason._tag, "CircuitOpen")
        assert.strictEqual(sim.realtime.stats().sessions.opened, 1, "the refused session never connected")
      }).pipe(Effect.provide(
        stack({ seed: 11 }, { retry: false, breaker: { policy: { _tag: "consecutive", failures: 1 } } })
      )))
  })
})
