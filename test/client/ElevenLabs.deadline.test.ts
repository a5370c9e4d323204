/**
 * The client's own waits (headers, the gaps between body chunks) bounded by the call's deadline (`Deadline.bind`), which
 * races nothing itself: a phase ends at `min(own timeout, time left)` and fails with the deadline's error
 * when the deadline was the shorter.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import * as ElevenLabs from "../../src/client/ElevenLabs.ts"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as Deadline from "../../src/resilience/Deadline.ts"
import { audio, chunked, json, mock } from "./mockTransport.ts"

const voiceId = "JBFqnCBsd6RMkjVDRZzb"
const run = <A, R>(
  m: { readonly layer: Layer.Layer<ElevenLabs.ElevenLabs> },
  f: (el: ElevenLabs.ElevenLabs) => Effect.Effect<A, ElevenLabsError, R>
) => Effect.flatMap(ElevenLabs.ElevenLabs, f).pipe(Effect.provide(m.layer))

/** Lets the web stream's promises run (real event-loop turns) so the body pull is under way before the clock moves. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(
  Effect.repeat({ times: 20 })
)

const phaseOf = (error: ElevenLabsError) => error.reason._tag === "Timeout" ? error.reason.phase : error.reason._tag

describe("ElevenLabs client under a call deadline (Deadline.bind)", () => {
  it.effect("no headers: the deadline, when shorter than the headers timeout, ends the attempt with its own error", () =>
    Effect.gen(function*() {
      const m = mock(() => Effect.never)
      const fiber = yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
        Deadline.bind("5 seconds"),
        Effect.flip,
        Effect.forkChild
      )
      yield* TestClock.adjust("4999 millis")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(fiber)
      assert.isTrue(Deadline.isExpiry(error))
      assert.strictEqual(error.reason.operation, "textToSpeech.convert")
      if (error.reason._tag === "Timeout") assert.deepStrictEqual(error.reason.after, Duration.seconds(5))
      // The request was given up (its scope closed), as on the headers timeout.
      assert.isTrue(m.requests[0]!.signal.aborted)
    }))

  it.effect("no headers: the headers timeout, when shorter than the time left, is still the reason", () =>
    Effect.gen(function*() {
      const m = mock(() => Effect.never, { headersTimeout: "2 seconds" })
      const fiber = yield* run(m, (el) => el.user.get()).pipe(Deadline.bind("1 minute"), Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(phaseOf(yield* Fiber.join(fiber)), "headers")
    }))

  it.effect("a buffered body that stalls: the gap between chunks gets min(idle timeout, time left)", () =>
    Effect.gen(function*() {
      const m = mock(() => audio(chunked(["abc"], { stall: true })), { idleTimeout: "5 seconds" })
      // 3 s left: the deadline binds the pull.
      const short = yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
        Deadline.bind("3 seconds"),
        Effect.flip,
        Effect.forkChild
      )
      // 60 s left: the idle timeout binds it.
      const long = yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
        Deadline.bind("60 seconds"),
        Effect.flip,
        Effect.forkChild
      )
      yield* settle
      yield* TestClock.adjust("3 seconds")
      assert.isTrue(Deadline.isExpiry(yield* Fiber.join(short)))
      assert.isUndefined(long.pollUnsafe())
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(phaseOf(yield* Fiber.join(long)), "idle")
    }))

  it.effect("an error body that stalls past the deadline reports the deadline, not the status", () =>
    Effect.gen(function*() {
      const m = mock(() => Effect.succeed(new Response(chunked(["{\"detail\":"], { stall: true }), { status: 500 })))
      const fiber = yield* run(m, (el) => el.user.get()).pipe(Deadline.bind("2 seconds"), Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(Deadline.isExpiry(yield* Fiber.join(fiber)))
    }))

  it.effect("a deadline already passed sends nothing", () =>
    Effect.gen(function*() {
      const m = mock(() => json({}))
      const error = yield* run(m, (el) => Effect.andThen(Effect.sleep("2 seconds"), el.user.get())).pipe(
        Deadline.bind("1 second"),
        Effect.flip,
        Effect.forkChild,
        Effect.tap(() => TestClock.adjust("2 seconds")),
        Effect.flatMap(Fiber.join)
      )
      assert.isTrue(Deadline.isExpiry(error))
      assert.strictEqual(m.requests.length, 0)
    }))

  it.effect("without a deadline nothing changes; a fast call under one is untouched", () =>
    Effect.gen(function*() {
      const m = mock(() => audio("abc"))
      const a = yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" }))
      const b = yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(Deadline.bind("1 second"))
      assert.deepStrictEqual([new TextDecoder().decode(a.audio), new TextDecoder().decode(b.audio)], ["abc", "abc"])
    }))
})
