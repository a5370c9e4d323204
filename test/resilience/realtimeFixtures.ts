/**
 * What the real-time session tests share (no tests here): the stack over the in-process simulator, a session
 * that speaks texts, what the audio said, and the check that a test left nothing behind.
 */
import { assert } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Redacted, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as Realtime from "../../src/client/Realtime.ts"
import * as RealtimeSession from "../../src/resilience/RealtimeSession.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import type { ResilientOptions } from "../../src/resilience/ResilientOptions.ts"
import * as RealtimeInProcess from "../../src/simulator/RealtimeInProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"

export const voice = "21m00Tcm4TlvDq8ikWAM"
export const flash = "eleven_flash_v2_5"
export const apiKey = Redacted.make("sim-key")

/** The stack: the realtime connector over the resilient policies, over the in-process simulator. */
export const stack = (sim: Simulator.Options, options: Omit<ResilientOptions, "apiKey"> = {}) =>
  RealtimeSession.layer({ apiKey }).pipe(
    Layer.provideMerge(Resilient.layer({ apiKey, ...options })),
    Layer.provideMerge(RealtimeInProcess.layerSimulated(sim))
  )

/** The characters the audio spoke, joined (the alignment). */
export const spoken = (chunks: Iterable<RealtimeSession.AudioChunk>) =>
  [...chunks].map((c) => c.alignment?.chars.join("") ?? "").join("")

/** A text of `n` sentences (long enough for the chunk schedule to cut several generations). */
export const sentences = (n: number, tag = "") =>
  Array.from({ length: n }, (_, i) => `Sentence ${tag}${i} says a few more words about the weather today.`)

/** What the server speaks of `texts` (normalized as the session sends them). */
export const sentOf = (texts: ReadonlyArray<string>) => texts.map(Realtime.normalizeText).join("")

/** Opens a session, sends `texts`, ends it; the audio received, the session's stats and reconnects. */
export const speak = (texts: ReadonlyArray<string>, options: Partial<RealtimeSession.SessionOptions> = {}) =>
  Effect.scoped(Effect.gen(function*() {
    const realtime = yield* RealtimeSession.RealtimeTts
    const session = yield* realtime.open({ voiceId: voice, modelId: flash, ...options })
    const audio = yield* Effect.forkChild(Stream.runCollect(session.audio))
    for (const t of texts) yield* session.send(t)
    yield* session.end
    return { chunks: yield* Fiber.join(audio), stats: yield* session.stats, reconnects: yield* session.reconnects }
  }))

/** Lets the in-process sockets deliver what they queued (their events go out in microtasks). */
export const drain = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) {
    yield* Effect.yieldNow
    yield* TestClock.adjust(0)
  }
})

/** Nothing left behind: no permit, no reservation, no open socket or generation at the server. */
export const assertNothingHeld = Effect.gen(function*() {
  yield* drain
  const { keyId, limiter, quota } = yield* Resilient.Resilience
  const sim = yield* Simulator.Simulator
  for (const pool of ["flash", "standard"] as const) {
    assert.strictEqual((yield* limiter.snapshot(keyId, pool)).inFlight, 0, `permits held in ${pool}`)
  }
  if (quota !== undefined) assert.strictEqual((yield* quota.status).reserved, 0, "credits still reserved")
  const rt = sim.realtime.stats()
  assert.strictEqual(rt.sessions.open, 0, "sockets still open at the server")
  assert.strictEqual(rt.generations.inFlight.flash, 0, "generations still running at the server")
})

/** The typed failure of `self` (a success is a defect of the test). */
export const failureOf = <A, R>(self: Effect.Effect<A, ElevenLabsError, R>) =>
  Effect.flatMap(Effect.exit(self), (exit) =>
    Exit.isFailure(exit)
      ? Effect.succeed(exit.cause.reasons.find((r) => r._tag === "Fail")?.error as ElevenLabsError)
      : Effect.die(new Error("expected a failure")))

/** Sleeps (virtual time, moved by `runVirtual`) until `check` holds. */
export const until = (check: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000 && !check(); i++) yield* Effect.sleep(Duration.millis(5))
    assert.isTrue(check(), "the awaited state came")
  })
