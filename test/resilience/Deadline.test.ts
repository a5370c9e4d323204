import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Random, Ref, Schema } from "effect"
import { TestClock } from "effect/testing"
import { ElevenLabsError, SystemBusy, Transport } from "../../src/client/Errors.ts"
import * as Deadline from "../../src/resilience/Deadline.ts"
import * as Jitter from "../../src/resilience/Jitter.ts"
import * as RetryPolicy from "../../src/resilience/RetryPolicy.ts"

const op = { operation: "textToSpeech.convert", message: "busy" }
const busy = () => new ElevenLabsError({ reason: new SystemBusy({ ...op, status: 429 }) })

describe("Deadline", () => {
  it.effect("a hung call fails with Timeout phase deadline at the deadline", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.never.pipe(
        Deadline.withDeadline("5 seconds", { operation: "speechToText.convert" }),
        Effect.flip,
        Effect.forkChild
      )
      yield* TestClock.adjust("4999 millis")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "Timeout")
      if (error.reason._tag !== "Timeout") return
      assert.strictEqual(error.reason.phase, "deadline")
      assert.strictEqual(error.reason.operation, "speechToText.convert")
      assert.strictEqual(Duration.toMillis(error.reason.after), 5000)
    }))

  it.effect("a fast call is untouched", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Effect.succeed(1).pipe(Deadline.withDeadline("1 second")), 1)
      assert.isUndefined(yield* Deadline.remaining)
    }))

  it.effect("remaining and fits read the current deadline; nested deadlines never extend the outer one", () =>
    Effect.gen(function*() {
      const inner = Effect.gen(function*() {
        yield* Effect.sleep("2 seconds")
        return [
          Duration.toMillis((yield* Deadline.remaining)!),
          yield* Deadline.fits("2999 millis"),
          yield* Deadline.fits("3 seconds")
        ] as const
      }).pipe(Deadline.withDeadline("1 minute"), Deadline.withDeadline("5 seconds"))
      const fiber = yield* Effect.forkChild(inner)
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(yield* Fiber.join(fiber), [3000, true, false])
    }))

  it.effect("bounds a call with retries: no sleep starts that would end past the deadline", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const sleeps: Array<readonly [number, number]> = []
      const start = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.andThen(Ref.update(attempts, (n) => n + 1), Effect.fail(busy())).pipe(
        RetryPolicy.retry({
          exponential: { jitter: Jitter.none },
          onRetry: (e) => Effect.sync(() => void sleeps.push([e.at - start, e.at - start + Duration.toMillis(e.delay)]))
        }),
        Deadline.withDeadline("10 seconds"),
        Effect.flip,
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      // Attempts at 0, 1, 3 and 7 s; the next sleep (8 s) would end at 15 s > 10 s: fail at 7 s with the last error.
      assert.deepStrictEqual(sleeps, [[0, 1000], [1000, 3000], [3000, 7000]])
      assert.isTrue(sleeps.every(([, end]) => end <= 10_000))
      assert.strictEqual(error.reason._tag, "SystemBusy")
      assert.strictEqual(error.attempts, 4)
      assert.strictEqual(yield* Ref.get(attempts), 4)
    }))

  it.effect.prop(
    "for any seed, jitter and deadline, no backoff sleep ends past the deadline",
    [
      Schema.Int,
      Schema.Literals(["none", "full", "equal", "decorrelated", "proportional", "additive"]),
      Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 1, maximum: 120 })))
    ],
    ([seed, jitter, seconds]) =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        const ends: Array<number> = []
        const fiber = yield* Effect.fail(busy()).pipe(
          RetryPolicy.retry({
            exponential: { jitter: Jitter.byName[jitter], maxRetries: 10 },
            onRetry: (e) => Effect.sync(() => void ends.push(e.at + Duration.toMillis(e.delay) - start))
          }),
          Deadline.withDeadline(Duration.seconds(seconds)),
          Effect.flip,
          Effect.forkChild
        )
        yield* TestClock.adjust("1 hour")
        const error = yield* Fiber.join(fiber)
        // Attempts are instantaneous here, so the call always ends with its own last error, never the deadline's.
        return ends.every((t) => t < seconds * 1000) && error.reason._tag === "SystemBusy" &&
          error.attempts === ends.length + 1
      }).pipe(Random.withSeed(seed)),
    { arbitrary: { runs: 50 } }
  )

  it.effect("expiry during an attempt after failures keeps the last error's information", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const flakyThenHung = Effect.flatMap(Ref.updateAndGet(attempts, (n) => n + 1), (n) =>
        n === 1
          ? Effect.fail(new ElevenLabsError({ reason: new Transport({ ...op, message: "ECONNRESET" }) }))
          : Effect.never)
      const fiber = yield* flakyThenHung.pipe(
        RetryPolicy.retry(),
        Deadline.withDeadline("3 seconds"),
        Effect.flip,
        Effect.forkChild
      )
      yield* TestClock.adjust("3 seconds")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.strictEqual(error.reason.operation, "textToSpeech.convert")
      assert.strictEqual(error.attempts, 1)
      assert.include(error.reason.message, "Transport: ECONNRESET")
      assert.strictEqual(yield* Ref.get(attempts), 2)
    }))

  it.effect("an inner deadline's Timeout is not retried by an outer retry", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const fiber = yield* Ref.update(attempts, (n) => n + 1).pipe(
        Effect.andThen(Effect.never),
        Deadline.withDeadline("2 seconds"),
        RetryPolicy.retry(),
        Effect.flip,
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      assert.isTrue(error.reason._tag === "Timeout" && error.reason.phase === "deadline")
      assert.strictEqual(yield* Ref.get(attempts), 1)
      assert.strictEqual(error.attempts, 1)
    }))

  it.effect("a negative deadline is a programming error", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.succeed(1).pipe(Deadline.withDeadline(-5)))
      assert.isTrue(exit._tag === "Failure")
    }))
})
