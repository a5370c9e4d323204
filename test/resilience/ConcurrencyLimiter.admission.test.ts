import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as CL from "../../src/resilience/ConcurrencyLimiter.ts"

const K = "key-1a2b"

const reasonOf = <A, E>(exit: Exit.Exit<A, E>): CL.ConcurrencyLimiterErrorReason | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  return error?._tag === "Fail" && error.error instanceof CL.ConcurrencyLimiterError ? error.error.reason : undefined
}

const millis = (d: Duration.Duration | undefined) => (d === undefined ? undefined : Duration.toMillis(d))

/** A call that holds its permit `serviceMs` of virtual time; it records when it ended. */
const call = (
  limiter: CL.ConcurrencyLimiter,
  serviceMs: number,
  request: Partial<CL.PermitRequest> = {},
  ended?: Array<number>
) =>
  limiter.withPermit({ key: K, pool: "flash", ...request } as CL.PermitRequest)(
    Effect.sleep(Duration.millis(serviceMs))
  )
    .pipe(Effect.ensuring(Effect.clockWith((c) => Effect.sync(() => ended?.push(c.currentTimeMillisUnsafe())))))

/** Forks `n` calls at the current instant, in order. */
const burst = (n: number, make: (i: number) => Effect.Effect<void, CL.ConcurrencyLimiterError>) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => Effect.forkChild(make(i)))

/** `n` calls run to their end together, so the limiter learns the service time (it predicts after min(limit, 10)). */
const learn = (limiter: CL.ConcurrencyLimiter, serviceMs: number, n = 1) =>
  Effect.gen(function*() {
    const fibers = yield* burst(n, () => call(limiter, serviceMs))
    yield* TestClock.adjust(Duration.millis(serviceMs))
    yield* Effect.forEach(fibers, Fiber.join)
  })

const outcomes = <E>(exits: ReadonlyArray<Exit.Exit<void, E>>) => {
  const count = { ok: 0, QueueFull: 0, QueueTimeout: 0, other: 0 }
  for (const exit of exits) {
    const reason = reasonOf(exit)
    if (Exit.isSuccess(exit)) count.ok++
    else if (reason?._tag === "QueueFull" || reason?._tag === "QueueTimeout") count[reason._tag]++
    else count.other++
  }
  return count
}

describe("ConcurrencyLimiter admission by predicted wait", () => {
  it.effect("a 2,000-call burst at 20 permits and 175 ms a call all completes with the defaults", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "pro" })
      const fibers = yield* burst(2000, () => call(limiter, 175))
      yield* TestClock.adjust("30 seconds")
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      assert.deepStrictEqual(outcomes(exits), { ok: 2000, QueueFull: 0, QueueTimeout: 0, other: 0 })
      const s = yield* limiter.snapshot(K, "flash")
      assert.strictEqual(s.serviceMillis, 175)
      assert.strictEqual(s.maxQueue, 50_000)
    }))

  it.effect("a burst ten times what the queue timeout holds: the part that cannot fit is refused at the first return", () =>
    Effect.gen(function*() {
      // 5 permits, 100 ms a call, 2,050 ms to wait: about 100 callers fit; 1,000 arrive at once. The first five
      // return together at 100 ms, the next five start, and (5 samples: the limit) the limiter predicts.
      const limiter = yield* CL.make({ plan: { flash: 5 }, queueTimeout: "2050 millis" })
      const ended: Array<number> = []
      const fibers = yield* burst(1000, () => call(limiter, 100, {}, ended))
      yield* TestClock.adjust("100 millis")
      const early = (yield* Effect.forEach(fibers, (f) => Effect.succeed(f.pollUnsafe()))).filter((e) =>
        e !== undefined
      )
      // At the first return (t = 100 ms) the first five ended and the ones that cannot fit were told.
      assert.strictEqual(early.length, 5 + 895)
      yield* TestClock.adjust("5 seconds")
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      assert.deepStrictEqual(outcomes(exits), { ok: 105, QueueFull: 895, QueueTimeout: 0, other: 0 })
      const refused = exits.map(reasonOf).filter((r): r is CL.QueueFull => r?._tag === "QueueFull")
      for (const r of refused) {
        // 95 kept ahead of it: round 95 / 5 + 1 = 20, 2,000 ms, against 2,050 - 100 = 1,950 ms left.
        assert.strictEqual(millis(r.predictedWait), 2000)
        assert.strictEqual(millis(r.budget), 1950)
        assert.strictEqual(millis(r.retryAfter), 50)
        assert.match(r.message, /Predicted wait 2s .* exceeds the 1s 950ms/)
      }
      // The last one kept got its permit at 2,000 ms, inside its 2,050 ms queue deadline.
      assert.strictEqual(Math.max(...ended), 2100)
      const s = yield* limiter.snapshot(K, "flash")
      assert.deepStrictEqual([s.inFlight, s.queueDepth], [0, 0])
    }))

  it.effect("once the service time is known a newcomer that cannot fit is refused at once, and fits after retryAfter", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { flash: 2 }, queueTimeout: "1050 millis" })
      yield* learn(limiter, 200, 2)
      // 2 permits, 200 ms: a caller with n ahead waits (⌊n / 2⌋ + 1) x 200 ms; the 10th queued (9 ahead, 1 s) fits.
      const fibers = yield* burst(12, () => call(limiter, 200))
      yield* Effect.yieldNow
      const refused = yield* Effect.exit(call(limiter, 200))
      const r = reasonOf(refused)
      assert.strictEqual(r?._tag, "QueueFull")
      if (r?._tag !== "QueueFull") return
      assert.strictEqual(r.depth, 10)
      assert.strictEqual(millis(r.predictedWait), 1200)
      assert.strictEqual(millis(r.retryAfter), 150)
      // A shorter deadline of the caller's own is its budget.
      const hurried = reasonOf(yield* Effect.exit(call(limiter, 200, { timeout: "300 millis" })))
      assert.strictEqual(hurried?._tag, "QueueFull")
      assert.strictEqual(hurried?._tag === "QueueFull" ? millis(hurried.budget) : -1, 300)
      // The hint counts whole rounds from now, but rounds end at fixed times (every 200 ms here): coming back
      // after retryAfter plus one service time, with nothing else arrived, the same wait fits.
      yield* TestClock.adjust(Duration.sum(r.retryAfter!, Duration.millis(200)))
      const back = yield* Effect.forkChild(call(limiter, 200))
      yield* TestClock.adjust("5 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(back)))
      assert.deepStrictEqual(outcomes(yield* Effect.forEach(fibers, Fiber.await)).ok, 12)
    }))

  it.effect("lanes and aging count: an interactive caller is not behind default callers that queued less than 5 s ago", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { flash: 1 }, queueTimeout: "1050 millis" })
      yield* learn(limiter, 100)
      const fibers = yield* burst(11, () => call(limiter, 100)) // 1 running, 10 queued: 1 s ahead of a newcomer
      yield* Effect.yieldNow
      assert.strictEqual(reasonOf(yield* Effect.exit(call(limiter, 100)))?._tag, "QueueFull")
      assert.strictEqual(reasonOf(yield* Effect.exit(call(limiter, 100, { lane: "batch" })))?._tag, "QueueFull")
      const urgent = yield* Effect.forkChild(call(limiter, 100, { lane: "interactive" }))
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(urgent)))
      yield* TestClock.adjust("2 seconds")
      // Admission cannot foresee a caller of a faster lane cutting in: the last default caller, admitted at the
      // edge (1 s predicted), then waits 1.1 s, past its 1.05 s, and times out.
      assert.deepStrictEqual(outcomes(yield* Effect.forEach(fibers, Fiber.await)), {
        ok: 10,
        QueueFull: 0,
        QueueTimeout: 1,
        other: 0
      })
    }))

  it.effect("a front-of-lane requeue is never refused by predicted wait", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { flash: 1 }, queueTimeout: "300 millis" })
      yield* learn(limiter, 100)
      const fibers = yield* burst(4, () => call(limiter, 100))
      yield* Effect.yieldNow
      assert.strictEqual(reasonOf(yield* Effect.exit(call(limiter, 100)))?._tag, "QueueFull")
      const requeued = yield* Effect.forkChild(call(limiter, 100, { front: true }))
      yield* TestClock.adjust("1 second")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(requeued)))
      yield* Effect.forEach(fibers, Fiber.await)
    }))

  it.effect("the count bound stays as a memory guard before anything predicts", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { flash: 1 }, maxQueue: 3 })
      const fibers = yield* burst(4, () => call(limiter, 100))
      yield* Effect.yieldNow
      const r = reasonOf(yield* Effect.exit(call(limiter, 100)))
      assert.strictEqual(r?._tag, "QueueFull")
      if (r?._tag === "QueueFull") {
        assert.deepStrictEqual([r.depth, r.maxQueue, r.predictedWait, r.retryAfter], [3, 3, undefined, undefined])
      }
      yield* TestClock.adjust("1 second")
      yield* Effect.forEach(fibers, Fiber.await)
    }))

  const Arrival = Schema.Struct({
    at: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2000 })),
    service: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 400 })),
    lane: Schema.Literals(CL.lanes),
    timeout: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3000 })),
    front: Schema.Boolean
  })

  it.effect.prop(
    "every caller ends once; in flight never passes the limit; refusals are early and say when to come back",
    [
      Schema.Array(Arrival).check(Schema.isMaxLength(120)),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 }))
    ],
    ([arrivals, limit]) =>
      Effect.gen(function*() {
        let peak = 0
        const limiter = yield* CL.make({
          plan: { flash: limit },
          onOccupancy: (o) => {
            peak = Math.max(peak, o.inFlight)
          }
        })
        const sorted = [...arrivals].sort((a, b) => a.at - b.at)
        const started: Array<{ at: number; timeout: number; fiber: Fiber.Fiber<void, CL.ConcurrencyLimiterError> }> = []
        let now = 0
        for (const a of sorted) {
          if (a.at > now) yield* TestClock.adjust(Duration.millis(a.at - now))
          now = a.at
          const fiber = yield* Effect.forkChild(
            call(limiter, a.service, { lane: a.lane, timeout: Duration.millis(a.timeout), front: a.front })
          )
          started.push({ at: a.at, timeout: a.timeout, fiber })
        }
        yield* TestClock.adjust("10 minutes")
        for (const s of started) {
          const exit = yield* Fiber.await(s.fiber)
          const r = reasonOf(exit)
          assert.isTrue(Exit.isSuccess(exit) || r?._tag === "QueueFull" || r?._tag === "QueueTimeout")
          if (r?._tag === "QueueFull" && r.predictedWait !== undefined) {
            assert.isAbove(millis(r.predictedWait)!, millis(r.budget)!)
            assert.isAtLeast(millis(r.retryAfter)!, 1)
            assert.isAtMost(millis(r.budget)!, s.timeout)
          }
        }
        assert.isAtMost(peak, limit)
        const snap = yield* limiter.snapshot(K, "flash")
        assert.deepStrictEqual([snap.inFlight, snap.queueDepth], [0, 0])
      }),
    { arbitrary: { runs: 60 } }
  )
})
