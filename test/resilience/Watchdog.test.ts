import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { ElevenLabsError, Transport } from "../../src/client/Errors.ts"
import * as Deadline from "../../src/resilience/Deadline.ts"
import * as Watchdog from "../../src/resilience/Watchdog.ts"

const phase = (name: string, millis: number): Watchdog.Phase<string> => ({ millis, expired: () => name })
const options = (first: Watchdog.Phase<string>, poll = first.millis) => ({ operation: "tts", first, poll })

/** Runs `body` watched, forked, with the exit's failure (or success) as a string. */
const watch = (
  opts: Watchdog.WatchedOptions<string>,
  body: (w: Watchdog.Watch<string>) => Effect.Effect<string>
) =>
  Watchdog.watched(opts, body).pipe(
    Effect.match({
      onSuccess: (a) => `ok:${a}`,
      onFailure: (e) => typeof e === "string" ? e : Deadline.isExpiry(e) ? "deadline" : "other"
    }),
    Effect.forkChild
  )

/** `fiber` is still running `millis` - 1 ms from now, and ends with `expected` exactly `millis` from now. */
const endsAfter = (fiber: Fiber.Fiber<string>, millis: number, expected: string) =>
  Effect.gen(function*() {
    yield* TestClock.adjust(Duration.millis(millis - 1))
    assert.isUndefined(fiber.pollUnsafe())
    yield* TestClock.adjust("1 millis")
    assert.strictEqual(yield* Fiber.join(fiber), expected)
  })

describe("Watchdog", () => {
  it.effect("a phase that makes no progress fails with its own error at its end, not before", () =>
    Effect.gen(function*() {
      const fiber = yield* watch(options(phase("headers", 5_000)), () => Effect.never)
      yield* endsAfter(fiber, 5000, "headers")
    }))

  it.effect("progress within a phase counts its time again: a body that trickles outlives its idle timeout", () =>
    Effect.gen(function*() {
      // A chunk every 4 s for 20 s under a 5 s idle timeout: never 5 s without progress.
      const fiber = yield* watch(options(phase("idle", 5_000)), (w) =>
        Effect.gen(function*() {
          for (let i = 0; i < 5; i++) {
            yield* Effect.sleep("4 seconds")
            w.mark()
          }
          return "read"
        }))
      yield* TestClock.adjust("20 seconds")
      assert.strictEqual(yield* Fiber.join(fiber), "ok:read")
      // ...and a stall after the last chunk fails 5 s after it.
      const stalled = yield* watch(
        options(phase("idle", 5_000)),
        (w) => Effect.andThen(Effect.sleep("4 seconds"), Effect.sync(() => w.mark())).pipe(Effect.andThen(Effect.never))
      )
      yield* endsAfter(stalled, 9000, "idle")
    }))

  /** Enters a 5 s idle phase `enterAfter` into a first phase of `firstMillis`; fails "idle" exactly 5 s later. */
  const idleEnteredAfter = (firstMillis: number, enterAfter: Duration.Input) =>
    Effect.gen(function*() {
      const fiber = yield* watch(options(phase("headers", firstMillis), 5_000), (w) =>
        Effect.andThen(
          Effect.sleep(enterAfter),
          Effect.sync(() => w.enter(phase("idle", 5_000)))
        ).pipe(
          Effect.andThen(Effect.never)
        ))
      yield* endsAfter(fiber, Duration.toMillis(Duration.fromInputUnsafe(enterAfter)) + 5_000, "idle")
    })

  it.effect("entering a phase switches its timeout and error, counted from the switch", () =>
    idleEnteredAfter(30_000, "10 seconds"))

  it.effect("an unbounded first phase is polled, so a bounded phase entered later is still enforced", () =>
    idleEnteredAfter(Infinity, "7 seconds"))

  it.effect("a zero timeout among the phases does not make the watchdog spin", () =>
    Effect.gen(function*() {
      // The clock's sleeps counted: the watchdog sleeps at least 1 ms at a time, not 0 in a loop.
      const clock = yield* Clock.Clock
      let sleeps = 0
      const counting: Clock.Clock = { ...clock, sleep: (d) => (sleeps++, clock.sleep(d)) }
      const fiber = yield* watch(options(phase("headers", 30_000), 0), (w) =>
        Effect.andThen(
          Effect.sleep("10 millis"),
          Effect.sync(() => w.enter(phase("idle", 0)))
        ).pipe(
          Effect.andThen(Effect.never)
        )).pipe(Effect.provideService(Clock.Clock, counting))
      yield* TestClock.adjust("10 millis")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "idle")
      assert.isAtMost(sleeps, 20)
    }))

  it.effect("nothing to bound (no finite timeout, no deadline): the exchange runs as it is", () =>
    Effect.gen(function*() {
      const fiber = yield* watch(options(phase("headers", Infinity), Infinity), () => Effect.never)
      yield* TestClock.adjust("365 days")
      assert.isUndefined(fiber.pollUnsafe())
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(
        yield* watch(options(phase("h", Infinity), Infinity), () => Effect.succeed("x")).pipe(
          Effect.flatMap(Fiber.join)
        ),
        "ok:x"
      )
    }))

  it.effect("the call's deadline ends a phase when strictly earlier (its error); at a tie the phase's own", () =>
    Effect.gen(function*() {
      const short = yield* watch(options(phase("headers", 5_000)), () => Effect.never).pipe(Deadline.bind("3 seconds"))
      const tie = yield* watch(options(phase("headers", 5_000)), () => Effect.never).pipe(Deadline.bind("5 seconds"))
      const long = yield* watch(options(phase("headers", 5_000)), () => Effect.never).pipe(Deadline.bind("1 minute"))
      yield* TestClock.adjust("3 seconds")
      assert.strictEqual(yield* Fiber.join(short), "deadline")
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* Fiber.join(tie), "headers")
      assert.strictEqual(yield* Fiber.join(long), "headers")
    }))

  it.effect("progress does not outlive the deadline: a trickling body ends at the deadline", () =>
    Effect.gen(function*() {
      const fiber = yield* watch(
        options(phase("idle", 5_000)),
        (w) => Effect.forever(Effect.andThen(Effect.sleep("1 second"), Effect.sync(() => w.mark())))
      ).pipe(
        Deadline.bind("12 seconds")
      )
      yield* endsAfter(fiber, 12000, "deadline")
    }))

  it.effect("a deadline already passed: the exchange does not run", () =>
    Effect.gen(function*() {
      let ran = false
      const exit = yield* Watchdog.watched(options(phase("headers", 5_000)), () => Effect.sync(() => (ran = true)))
        .pipe(
          Effect.delay("2 seconds"),
          Deadline.bind("1 second"),
          Effect.exit,
          Effect.forkChild,
          Effect.tap(() => TestClock.adjust("2 seconds")),
          Effect.flatMap(Fiber.join)
        )
      assert.isFalse(ran)
      assert.isTrue(Exit.isFailure(exit))
    }))

  it.effect("the exchange's own outcome wins, and the watchdog is gone with it (interrupted, no timer left)", () =>
    Effect.gen(function*() {
      const failure = new ElevenLabsError({ reason: new Transport({ operation: "tts", message: "reset" }) })
      const exit = yield* Watchdog.watched(options(phase("headers", 5_000)), () => Effect.fail(failure)).pipe(
        Effect.exit
      )
      assert.deepStrictEqual(exit, Exit.fail(failure))
      // The watchdog did not outlive the exchange: past the phase's end, its error is never made.
      let expiries = 0
      const counted: Watchdog.Phase<string> = { millis: 5_000, expired: () => (expiries++, "headers") }
      const ok = yield* Watchdog.watched(options(counted), () => Effect.as(Effect.sleep("1 second"), "done")).pipe(
        Effect.forkChild
      )
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(ok), "done")
      yield* TestClock.adjust(Duration.minutes(1))
      assert.strictEqual(expiries, 0)
    }))
})
