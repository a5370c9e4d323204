import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, PubSub, Random, Ref, Result, Schedule, Schema } from "effect"
import { TestClock } from "effect/testing"
import {
  ConcurrencyLimited,
  ElevenLabsError,
  type ElevenLabsErrorReason,
  NotFound,
  RateLimited,
  ServerError,
  SystemBusy,
  Timeout,
  Transport
} from "../../src/client/Errors.ts"
import * as Jitter from "../../src/resilience/Jitter.ts"
import * as RetryBudget from "../../src/resilience/RetryBudget.ts"
import * as RetryPolicy from "../../src/resilience/RetryPolicy.ts"

const op = { operation: "textToSpeech.convert", message: "test" }
const fail = (reason: ElevenLabsErrorReason) => new ElevenLabsError({ reason })
const busy = (retryAfterMs?: number) =>
  fail(
    new SystemBusy({
      ...op,
      status: 429,
      ...(retryAfterMs === undefined ? {} : { retryAfter: Duration.millis(retryAfterMs) })
    })
  )
const concurrency = () => fail(new ConcurrencyLimited({ ...op, status: 429 }))
const notFound = () => fail(new NotFound({ ...op, status: 404 }))
const transport = () => fail(new Transport(op))
const timeout = () => fail(new Timeout({ ...op, phase: "headers", after: Duration.seconds(10) }))

/** All delays of a schedule for one input, until it ends (at most `limit`). */
const delaysOf = (schedule: RetryPolicy.RetrySchedule, input: ElevenLabsError, limit = 50) =>
  Effect.gen(function*() {
    const step = yield* Schedule.toStep(schedule)
    const out: Array<number> = []
    let now = 0
    for (let i = 0; i < limit; i++) {
      const r = yield* Effect.result(step(now, input))
      if (Result.isFailure(r)) break
      const ms = Duration.toMillis(r.success[1])
      out.push(ms)
      now += ms
    }
    return out
  })

/** An effect that fails with `errors[i]` on the i-th attempt, then succeeds with the attempt count. */
const scripted = (errors: ReadonlyArray<ElevenLabsError>, attempts: Ref.Ref<number>) =>
  Effect.flatMap(Ref.updateAndGet(attempts, (n) => n + 1), (n) => {
    const e = errors[n - 1]
    return e === undefined ? Effect.succeed(n) : Effect.fail(e)
  })

const collect = () => {
  const events: Array<RetryPolicy.RetryEvent> = []
  return { events, onRetry: (e: RetryPolicy.RetryEvent) => Effect.sync(() => void events.push(e)) }
}

describe("RetryPolicy schedules", () => {
  it.effect("exponential without jitter: 1, 2, 4, 8, 16 s then done", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(
        yield* delaysOf(RetryPolicy.exponential({ jitter: Jitter.none }), busy()),
        [1000, 2000, 4000, 8000, 16000]
      )
      assert.deepStrictEqual(
        yield* delaysOf(RetryPolicy.exponential({ jitter: Jitter.none, maxRetries: 8 }), busy()),
        [1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000]
      )
    }))

  it.effect("requeue: 50 ms x attempt, capped, 20 requeues", () =>
    Effect.gen(function*() {
      const d = yield* delaysOf(RetryPolicy.requeue(), concurrency())
      assert.strictEqual(d.length, 20)
      assert.deepStrictEqual(d.slice(0, 4), [50, 100, 150, 200])
      assert.strictEqual(d[19], 1000)
      assert.deepStrictEqual(
        yield* delaysOf(RetryPolicy.requeue({ maxDelay: "120 millis", maxRetries: 3 }), concurrency()),
        [
          50,
          100,
          120
        ]
      )
    }))

  it.effect("linear: 1 s x attempt, 3 retries; capped", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* delaysOf(RetryPolicy.linear(), transport()), [1000, 2000, 3000])
      assert.deepStrictEqual(
        yield* delaysOf(RetryPolicy.linear({ maxDelay: "2500 millis", maxRetries: 4 }), transport()),
        [1000, 2000, 2500, 2500]
      )
    }))

  it.effect("never: no retry", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* delaysOf(RetryPolicy.never, notFound()), [])
    }))

  it.effect("jittered delays are reproducible with a seed and differ across seeds", () =>
    Effect.gen(function*() {
      for (
        const jitter of [Jitter.full, Jitter.equal, Jitter.decorrelated, Jitter.proportional(0.2), Jitter.additive()]
      ) {
        const run = delaysOf(RetryPolicy.exponential({ jitter }), busy())
        const a = yield* run.pipe(Random.withSeed(42))
        const b = yield* run.pipe(Random.withSeed(42))
        const c = yield* run.pipe(Random.withSeed(43))
        assert.strictEqual(a.length, 5)
        assert.deepStrictEqual(a, b, jitter._tag)
        assert.isFalse(a.every((x, i) => x === c[i]), jitter._tag)
      }
    }))

  it.effect("the exact full-jitter delays for seed 42 are the draws times the ceilings", () =>
    Effect.gen(function*() {
      const draws = yield* Effect.all(Array.from({ length: 5 }, () => Random.next)).pipe(Random.withSeed(42))
      const delays = yield* delaysOf(RetryPolicy.exponential({ jitter: Jitter.full }), busy()).pipe(Random.withSeed(42))
      assert.strictEqual(delays.length, 5)
      // Durations keep nanosecond precision, hence the tolerance.
      delays.forEach((d, i) => assert.closeTo(d, draws[i]! * 1000 * 2 ** i, 1e-5))
    }))

  it.effect("Retry-After is a floor, clamped to retryAfterMax", () =>
    Effect.gen(function*() {
      const none = { jitter: Jitter.none }
      assert.deepStrictEqual((yield* delaysOf(RetryPolicy.exponential(none), busy(5000))).slice(0, 4), [
        5000,
        5000,
        5000,
        8000
      ])
      assert.deepStrictEqual((yield* delaysOf(RetryPolicy.exponential(none), busy(500))).slice(0, 2), [1000, 2000])
      assert.deepStrictEqual((yield* delaysOf(RetryPolicy.exponential(none), busy(120_000))).slice(0, 2), [
        60_000,
        60_000
      ])
      assert.deepStrictEqual(
        (yield* delaysOf(RetryPolicy.exponential({ ...none, retryAfterMax: "10 seconds" }), busy(120_000))).slice(0, 1),
        [10_000]
      )
      // Full jitter can draw near zero: the hint still holds as a floor.
      const full = yield* delaysOf(RetryPolicy.exponential(), busy(3000)).pipe(Random.withSeed(1))
      assert.isTrue(full.every((d) => d >= 3000))
      // A 429 other than system_busy is honoured the same way.
      const rl = fail(new RateLimited({ ...op, status: 429, retryAfter: Duration.seconds(7) }))
      assert.deepStrictEqual((yield* delaysOf(RetryPolicy.exponential(none), rl)).slice(0, 1), [7000])
      // honorRetryAfter: false ignores it.
      assert.deepStrictEqual(
        (yield* delaysOf(RetryPolicy.exponential({ ...none, honorRetryAfter: false }), busy(5000))).slice(0, 1),
        [1000]
      )
    }))

  it.effect.prop(
    "the exponential schedule stays within bounds for any seed",
    [Schema.Int, Schema.Literals(["none", "full", "equal", "decorrelated", "proportional", "additive"])],
    ([seed, name]) =>
      Effect.gen(function*() {
        const jitter = Jitter.byName[name]
        const delays = yield* delaysOf(RetryPolicy.exponential({ jitter, maxRetries: 10 }), busy()).pipe(
          Random.withSeed(seed)
        )
        let previous = 1000
        for (let i = 0; i < delays.length; i++) {
          const [lo, hi] = Jitter.boundsOf(jitter, { base: 1000, factor: 2, cap: 32_000, attempt: i + 1, previous })
          const d = delays[i]!
          if (!(d >= lo && d <= hi)) return false
          previous = d
        }
        return delays.length === 10
      })
  )
})

describe("RetryPolicy.retry", () => {
  it.effect("retries system_busy with exponential backoff, then succeeds; events carry the retries", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const { events, onRetry } = collect()
      const fiber = yield* scripted([busy(), busy(), busy()], attempts).pipe(
        RetryPolicy.retry({ exponential: { jitter: Jitter.none }, onRetry }),
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Fiber.join(fiber), 4)
      assert.deepStrictEqual(events.map((e) => [e.attempt, e.classAttempt, Duration.toMillis(e.delay), e.at]), [
        [2, 1, 1000, 0],
        [3, 2, 2000, 1000],
        [4, 3, 4000, 3000]
      ])
      assert.isTrue(events.every((e) => e.reason === "SystemBusy" && e.retryClass === "exponential"))
    }))

  it.effect("gives up after 5 retries; the final error carries attempts", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const pubsub = yield* PubSub.unbounded<RetryPolicy.RetryEvent>()
      const sub = yield* PubSub.subscribe(pubsub)
      const fiber = yield* scripted(
        Array.from({ length: 100 }, () => fail(new ServerError({ ...op, status: 503 }))),
        attempts
      )
        .pipe(RetryPolicy.retry({ events: pubsub }), Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("10 minutes")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "ServerError")
      assert.strictEqual(error.attempts, 6)
      assert.strictEqual(error.budgetExhausted, undefined)
      assert.strictEqual(yield* Ref.get(attempts), 6)
      assert.strictEqual((yield* PubSub.takeAll(sub)).length, 5)
    }))

  it.effect("never retries 4xx; attempts is 1", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const error = yield* scripted([notFound()], attempts).pipe(RetryPolicy.retry(), Effect.flip)
      assert.strictEqual(error.reason._tag, "NotFound")
      assert.strictEqual(error.attempts, 1)
      assert.strictEqual(yield* Ref.get(attempts), 1)
    }))

  it.effect("requeues concurrency 429s with short linear pauses, counters per class", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const { events, onRetry } = collect()
      const fiber = yield* scripted([concurrency(), concurrency(), busy(), concurrency()], attempts).pipe(
        RetryPolicy.retry({ exponential: { jitter: Jitter.none }, onRetry }),
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Fiber.join(fiber), 5)
      assert.deepStrictEqual(events.map((e) => [e.retryClass, e.classAttempt, Duration.toMillis(e.delay)]), [
        ["requeue", 1, 50],
        ["requeue", 2, 100],
        ["exponential", 1, 1000],
        ["requeue", 3, 150]
      ])
    }))

  it.effect("linear backoff for transport errors and timeouts; idempotent: false does not retry them", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const { events, onRetry } = collect()
      const fiber = yield* scripted([transport(), timeout()], attempts).pipe(
        RetryPolicy.retry({ onRetry }),
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Fiber.join(fiber), 3)
      assert.deepStrictEqual(events.map((e) => [e.reason, Duration.toMillis(e.delay)]), [["Transport", 1000], [
        "Timeout",
        2000
      ]])

      const once = yield* Ref.make(0)
      const error = yield* scripted([timeout()], once).pipe(RetryPolicy.retry({ idempotent: false }), Effect.flip)
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.strictEqual(error.attempts, 1)
      // A refused answer (429) is still retried when not idempotent.
      const twice = yield* Ref.make(0)
      const fiber2 = yield* scripted([busy()], twice).pipe(
        RetryPolicy.retry({ idempotent: false }),
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Fiber.join(fiber2), 2)
    }))

  it.effect("each attempt sees its number and the failure that led to it", () =>
    Effect.gen(function*() {
      const seen: Array<RetryPolicy.AttemptInfo> = []
      const attempts = yield* Ref.make(0)
      const fiber = yield* Effect.gen(function*() {
        seen.push(yield* RetryPolicy.CurrentAttempt)
        return yield* scripted([concurrency(), busy()], attempts)
      }).pipe(
        RetryPolicy.retry(),
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Fiber.join(fiber), 3)
      assert.deepStrictEqual(seen, [
        { attempt: 1 },
        { attempt: 2, previous: { reason: "ConcurrencyLimited", retryClass: "requeue" } },
        { attempt: 3, previous: { reason: "SystemBusy", retryClass: "exponential" } }
      ])
    }))

  it.effect("maxAttempts caps attempts across classes", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const fiber = yield* scripted([concurrency(), busy(), transport(), busy()], attempts).pipe(
        RetryPolicy.retry({ maxAttempts: 3 }),
        Effect.flip,
        Effect.forkChild
      )
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "Transport")
      assert.strictEqual(error.attempts, 3)
    }))

  it.effect("other errors and defects pass through unretried", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const error = yield* Ref.update(attempts, (n) => n + 1).pipe(
        Effect.andThen(Effect.fail("not ours" as const)),
        RetryPolicy.retry(),
        Effect.flip
      )
      assert.strictEqual(error, "not ours")
      assert.strictEqual(yield* Ref.get(attempts), 1)
    }))

  it.effect("100 callers failing at the same instant: full jitter spreads their retries, none synchronises them", () =>
    Effect.gen(function*() {
      const firstRetryTimes = (jitter: Jitter.Jitter) =>
        Effect.gen(function*() {
          const times: Array<number> = []
          const onRetry = (e: RetryPolicy.RetryEvent) =>
            Effect.sync(() => {
              if (e.classAttempt === 1) times.push(e.at + Duration.toMillis(e.delay))
            })
          const start = yield* Clock.currentTimeMillis
          const fibers = yield* Effect.forEach(Array.from({ length: 100 }), () =>
            Effect.fail(busy()).pipe(
              RetryPolicy.retry({ exponential: { jitter, maxRetries: 1 }, onRetry }),
              Effect.ignore,
              Effect.forkChild
            ))
          yield* TestClock.adjust("1 minute")
          yield* Fiber.joinAll(fibers)
          return times.map((t) => t - start)
        })
      const stats = (xs: ReadonlyArray<number>) => {
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length
        const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length)
        return { distinct: new Set(xs).size, sd, min: Math.min(...xs), max: Math.max(...xs) }
      }
      const full = stats(yield* firstRetryTimes(Jitter.full).pipe(Random.withSeed(7)))
      const none = stats(yield* firstRetryTimes(Jitter.none))
      // Uniform on [0, 1000): standard deviation about 289 ms.
      assert.isAtLeast(full.distinct, 95)
      assert.isAbove(full.sd, 200)
      assert.isAtLeast(full.min, 0)
      assert.isAtMost(full.max, 1000)
      assert.deepStrictEqual(none, { distinct: 1, sd: 0, min: 1000, max: 1000 })
    }))
})

describe("RetryPolicy.retry with a budget", () => {
  it.effect("an outage: 100 callers failing with system_busy retry at most 20 % of requests + 3", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ ratio: 0.2, window: "10 minutes", minRetriesInFlight: 3 })
      const attempts = yield* Ref.make(0)
      const { events, onRetry } = collect()
      const fibers = yield* Effect.forEach(
        Array.from({ length: 100 }),
        () =>
          Effect.andThen(Ref.update(attempts, (n) => n + 1), Effect.fail(busy())).pipe(
            RetryPolicy.retry({ budget, onRetry }),
            Effect.flip,
            Effect.forkChild
          )
      )
      yield* TestClock.adjust("5 minutes")
      const errors = yield* Fiber.joinAll(fibers)
      const retries = events.length
      assert.strictEqual(yield* Ref.get(attempts), 100 + retries)
      assert.isAtMost(retries, 0.2 * 100 + 3)
      assert.isAtLeast(retries, 20)
      const exhausted = errors.filter((e) => e.budgetExhausted === true)
      assert.isAtLeast(exhausted.length, 100 - retries)
      assert.isTrue(errors.every((e) => e.reason._tag === "SystemBusy" && (e.attempts ?? 0) >= 1))
      const snap = yield* budget.snapshot
      assert.strictEqual(snap.requestsInWindow, 100)
      assert.strictEqual(snap.retriesInWindow, retries)
      assert.strictEqual(snap.retriesInFlight, 0)
      assert.isAtLeast(snap.refusedTotal, exhausted.length)
    }))

  it.effect("without a budget the same outage retries every caller 5 times", () =>
    Effect.gen(function*() {
      const { events, onRetry } = collect()
      const fibers = yield* Effect.forEach(Array.from({ length: 20 }), () =>
        Effect.fail(busy()).pipe(RetryPolicy.retry({ onRetry }), Effect.flip, Effect.forkChild))
      yield* TestClock.adjust("10 minutes")
      yield* Fiber.joinAll(fibers)
      assert.strictEqual(events.length, 100)
    }))

  it.effect("an interrupted caller gives its in-flight retry back", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make()
      const fiber = yield* Effect.fail(busy()).pipe(
        RetryPolicy.retry({ budget, exponential: { jitter: Jitter.none } }),
        Effect.forkChild
      )
      yield* TestClock.adjust("100 millis") // in its 1 s backoff sleep
      assert.strictEqual((yield* budget.snapshot).retriesInFlight, 1)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual((yield* budget.snapshot).retriesInFlight, 0)
    }))
})
