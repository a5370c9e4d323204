import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Duration, Effect, Fiber, Random, Ref, Schema } from "effect"
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

  describe("bind: the deadline without a race", () => {
    const hung = (own: Duration.Input) =>
      Effect.never.pipe(
        Deadline.timeoutWithin({
          duration: own,
          orElse: () => Effect.fail(new ElevenLabsError({ reason: new Transport({ ...op, message: "own timeout" }) })),
          operation: "textToSpeech.convert"
        })
      )

    it.effect("publishes the deadline and races nothing: an unbounded step is not cut", () =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        const seen = yield* Deadline.CurrentDeadline.pipe(Deadline.bind("5 seconds", { operation: "user.get" }))
        assert.strictEqual(seen?.at, start + 5000)
        assert.strictEqual(seen?.operation, "user.get")
        assert.isUndefined(yield* Deadline.CurrentDeadline)
        const fiber = yield* Effect.never.pipe(Deadline.bind("1 second"), Effect.forkChild)
        yield* TestClock.adjust("1 minute")
        assert.isUndefined(fiber.pollUnsafe())
        yield* Fiber.interrupt(fiber)
      }))

    it.effect("a phase bounded by the time left fails at the deadline with the error withDeadline gives", () =>
      Effect.gen(function*() {
        const viaBind = yield* hung("30 seconds").pipe(
          Deadline.bind("5 seconds", { operation: "speechToText.convert" }),
          Effect.flip,
          Effect.forkChild
        )
        const viaRace = yield* Effect.never.pipe(
          Deadline.withDeadline("5 seconds", { operation: "textToSpeech.convert" }),
          Effect.flip,
          Effect.forkChild
        )
        yield* TestClock.adjust("4999 millis")
        assert.isUndefined(viaBind.pollUnsafe())
        yield* TestClock.adjust("1 millis")
        const [a, b] = [yield* Fiber.join(viaBind), yield* Fiber.join(viaRace)]
        assert.isTrue(Deadline.isExpiry(a) && Deadline.isExpiry(b))
        // The phase names its own operation.
        assert.deepStrictEqual(a, b)
        assert.isFalse(Deadline.isExpiry(new ElevenLabsError({ reason: new Transport({ ...op }) })))
      }))

    it.effect("the phase's own timeout wins when it is the shorter, and without a deadline it is all there is", () =>
      Effect.gen(function*() {
        const own = yield* hung("1 second").pipe(Deadline.bind("5 seconds"), Effect.flip, Effect.forkChild)
        const alone = yield* hung("2 seconds").pipe(Effect.flip, Effect.forkChild)
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(own)).reason.message, "own timeout")
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Fiber.join(alone)).reason.message, "own timeout")
      }))

    it.effect("a phase starting after the deadline does not run; nested binds never extend the outer one", () =>
      Effect.gen(function*() {
        const ran = yield* Ref.make(0)
        const phase = Ref.update(ran, (n) => n + 1).pipe(
          Deadline.timeoutWithin({ duration: "1 minute", orElse: () => Effect.die("own"), operation: "music.compose" })
        )
        const fiber = yield* Effect.sleep("3 seconds").pipe(
          Effect.andThen(phase),
          Deadline.bind("1 minute"),
          Deadline.bind("2 seconds"),
          Effect.flip,
          Effect.forkChild
        )
        yield* TestClock.adjust("3 seconds")
        const error = yield* Fiber.join(fiber)
        assert.isTrue(Deadline.isExpiry(error))
        assert.strictEqual(error.reason.operation, "music.compose")
        assert.strictEqual(yield* Ref.get(ran), 0)
      }))

    it.effect("phaseBound: the shorter of the phase's timeout and the time left, naming the deadline only when it binds", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* Deadline.phaseBound("2 minutes"), { millis: 120_000, deadline: undefined })
        const [queue, long, none] = yield* Effect.all([
          Deadline.phaseBound("2 minutes"),
          Deadline.phaseBound("10 seconds"),
          Deadline.phaseBound()
        ]).pipe(Deadline.bind("10 seconds"))
        assert.strictEqual(queue.millis, 10_000)
        assert.isDefined(queue.deadline)
        // A tie is the phase's own bound.
        assert.deepStrictEqual(long, { millis: 10_000, deadline: undefined })
        assert.strictEqual(none.millis, 10_000)
        assert.isDefined(none.deadline)
      }))

    it.effect("enforce races only when there is a deadline", () =>
      Effect.gen(function*() {
        const free = yield* Effect.sleep("1 hour").pipe(
          Effect.as("done"),
          Deadline.enforce({ operation: "sdk" }),
          Effect.forkChild
        )
        const bounded = yield* Effect.never.pipe(
          Deadline.enforce({ operation: "sdk" }),
          Deadline.bind("3 seconds"),
          Effect.flip,
          Effect.forkChild
        )
        yield* TestClock.adjust("3 seconds")
        const error = yield* Fiber.join(bounded)
        assert.isTrue(Deadline.isExpiry(error))
        assert.strictEqual(error.reason.operation, "sdk")
        yield* TestClock.adjust("1 hour")
        assert.strictEqual(yield* Fiber.join(free), "done")
      }))

    it.effect("with retries: expiry in an attempt names the last error; the deadline's Timeout is not retried", () =>
      Effect.gen(function*() {
        const attempts = yield* Ref.make(0)
        const flakyThenHung = Effect.flatMap(Ref.updateAndGet(attempts, (n) => n + 1), (n) =>
          n === 1
            ? Effect.fail(new ElevenLabsError({ reason: new Transport({ ...op, message: "ECONNRESET" }) }))
            : hung("30 seconds"))
        const fiber = yield* flakyThenHung.pipe(
          RetryPolicy.retry(),
          Deadline.bind("3 seconds"),
          Effect.flip,
          Effect.forkChild
        )
        yield* TestClock.adjust("3 seconds")
        const error = yield* Fiber.join(fiber)
        assert.isTrue(Deadline.isExpiry(error))
        assert.strictEqual(error.reason.operation, "textToSpeech.convert")
        assert.include(error.reason.message, "Transport: ECONNRESET")
        // The attempt that ran out counts (withDeadline's race, which interrupts it, reports 1).
        assert.strictEqual(error.attempts, 2)
        assert.strictEqual(yield* Ref.get(attempts), 2)
      }))

    it.effect("a bad total is a programming error, as with withDeadline", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Effect.succeed(1).pipe(Deadline.bind(-5)))
        assert.isTrue(exit._tag === "Failure" && Cause.hasDies(exit.cause))
        // Unparseable input dies when run too, not when the pipeline is built.
        const bogus = Deadline.bind("soon" as Duration.Input)
        const exit2 = yield* Effect.exit(Effect.succeed(1).pipe(bogus))
        assert.isTrue(exit2._tag === "Failure" && Cause.hasDies(exit2.cause))
      }))

    it.effect.prop(
      "phases bounded by the time left end when and how withDeadline's race ends them",
      [
        Schema.Array(Schema.Struct({
          // Even milliseconds (in units of 2), 0 = hangs; the deadline is odd, so no bound ties with it.
          took: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 40 })),
          own: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 40 }))
        })).check(Schema.isMinLength(1), Schema.isMaxLength(6)),
        Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 60 }))
      ],
      ([phases, d]) =>
        Effect.gen(function*() {
          const total = 2 * d + 1
          const ownTimeout = (i: number) =>
            Effect.fail(new ElevenLabsError({ reason: new Transport({ ...op, message: `own ${i}` }) }))
          const step = (i: number, p: { readonly took: number; readonly own: number }) =>
            p.took === 0 ? Effect.never : Effect.sleep(Duration.millis(2 * p.took))
          const raced = Effect.forEach(phases, (p, i) =>
            step(i, p).pipe(Effect.timeoutOrElse({
              duration: Duration.millis(2 * p.own),
              orElse: () => ownTimeout(i)
            })), {
            discard: true
          }).pipe(Deadline.withDeadline(Duration.millis(total), { operation: "tts" }))
          const bound = Effect.forEach(phases, (p, i) =>
            step(i, p).pipe(
              Deadline.timeoutWithin({
                duration: Duration.millis(2 * p.own),
                orElse: () => ownTimeout(i),
                operation: "tts"
              })
            ), { discard: true }).pipe(Deadline.bind(Duration.millis(total), { operation: "tts" }))
          const timed = <E>(self: Effect.Effect<void, E>) =>
            Effect.forkChild(Effect.flatMap(Clock.currentTimeMillis, (t0) =>
              Effect.map(Effect.exit(self), (exit) =>
                [exit, 0] as const).pipe(
                  Effect.flatMap(([exit]) =>
                    Effect.map(Clock.currentTimeMillis, (t1) => ({ exit, at: t1 - t0 }))
                  )
                )))
          const a = yield* timed(raced)
          const b = yield* timed(bound)
          yield* TestClock.adjust(Duration.millis(1000))
          const [ra, rb] = [yield* Fiber.join(a), yield* Fiber.join(b)]
          assert.strictEqual(rb.at, ra.at)
          assert.deepStrictEqual(rb.exit, ra.exit)
        }),
      { arbitrary: { runs: 100 } }
    )
  })
})
