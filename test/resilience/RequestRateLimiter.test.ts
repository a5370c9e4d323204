import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as RRL from "../../src/resilience/RequestRateLimiter.ts"

const withLimiter = <A, E>(
  options: RRL.Options,
  f: (limiter: RRL.RequestRateLimiter) => Effect.Effect<A, E>
): Effect.Effect<A, E> => RRL.RequestRateLimiter.use(f).pipe(Effect.provide(RRL.layerMemory(options)))

const retryAfterOf = <A>(exit: Exit.Exit<A, unknown>) => {
  const fail = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
  const error = fail?._tag === "Fail" ? fail.error : undefined
  return error && typeof error === "object" && "reason" in error && (error as any).reason._tag === "RateLimitExceeded"
    ? Duration.toMillis((error as any).reason.retryAfter)
    : undefined
}

describe("RequestRateLimiter", () => {
  it("rejects nonsense rules", () => {
    assert.throws(() => RRL.tokenBucket({ rate: 0 }))
    assert.throws(() => RRL.tokenBucket({ rate: 1, burst: 0 }))
    assert.throws(() => RRL.slidingWindow({ limit: 0, window: "1 second" }))
    assert.throws(() => RRL.slidingWindow({ limit: 1, window: 0 }))
  })

  it.effect("token bucket: a burst passes, then one call per refill interval (fail mode)", () =>
    withLimiter(
      { rules: [RRL.tokenBucket({ rate: 2, burst: 3 })], onExceeded: "fail" },
      (rate) =>
        Effect.gen(function*() {
          for (let i = 0; i < 3; i++) yield* rate.take("k")
          const exit = yield* Effect.exit(rate.take("k"))
          assert.strictEqual(retryAfterOf(exit), 500)
          yield* TestClock.adjust("500 millis")
          yield* rate.take("k")
          assert.strictEqual(retryAfterOf(yield* Effect.exit(rate.take("k"))), 500)
          // Other keys have their own bucket.
          yield* rate.take("other")
        })
    ))

  it.effect("token bucket: delay mode spaces calls at the rate", () =>
    withLimiter({ rules: [RRL.tokenBucket({ rate: 10, burst: 1 })] }, (rate) =>
      Effect.gen(function*() {
        const times: Array<number> = []
        const fiber = yield* Effect.forkChild(Effect.forEach(
          [1, 2, 3, 4],
          () =>
            Effect.andThen(
              rate.take("k"),
              Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => times.push(t)))
            ),
          { concurrency: "unbounded" }
        ))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(fiber)
        assert.deepStrictEqual(times, [0, 100, 200, 300])
      })))

  it.effect("sliding window: never more than the limit in any window, and no double burst at the edge", () =>
    withLimiter(
      { rules: [RRL.slidingWindow({ limit: 2, window: "10 seconds" })], onExceeded: "fail" },
      (rate) =>
        Effect.gen(function*() {
          yield* rate.take("k")
          yield* TestClock.adjust("4900 millis")
          yield* rate.take("k")
          assert.strictEqual(retryAfterOf(yield* Effect.exit(rate.take("k"))), 5100)
          yield* TestClock.adjust("5100 millis") // t = 10 s: the first call left the window
          yield* rate.take("k")
          // A fixed window would allow a second call here; the window (4.9 s, 14.9 s] already has two.
          assert.strictEqual(retryAfterOf(yield* Effect.exit(rate.take("k"))), 4900)
        })
    ))

  it.effect("sliding window: delay mode reserves slots so waiters spread out", () =>
    withLimiter({ rules: [RRL.slidingWindow({ limit: 2, window: "1 second" })] }, (rate) =>
      Effect.gen(function*() {
        const waits = yield* Effect.forkChild(
          Effect.forEach([1, 2, 3, 4, 5], () => rate.take("k"), { concurrency: "unbounded" })
        )
        yield* TestClock.adjust("3 seconds")
        assert.deepStrictEqual((yield* Fiber.join(waits)).map(Duration.toMillis), [0, 0, 1000, 1000, 2000])
      })))

  it.effect("rules combine: the slot is the latest any rule allows", () =>
    withLimiter({
      rules: [RRL.tokenBucket({ rate: 100, burst: 100 }), RRL.slidingWindow({ limit: 1, window: "1 second" })]
    }, (rate) =>
      Effect.gen(function*() {
        yield* rate.take("k")
        const second = yield* Effect.forkChild(rate.take("k"))
        yield* TestClock.adjust("1 second")
        assert.strictEqual(Duration.toMillis(yield* Fiber.join(second)), 1000)
      })))

  it.effect.prop(
    "sliding window (delay): admission times never put more than `limit` calls in any window",
    [
      Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3000 }))).check(Schema.isMaxLength(30)),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 }))
    ],
    ([arrivals, limit]) =>
      withLimiter({ rules: [RRL.slidingWindow({ limit, window: "1 second" })] }, (rate) =>
        Effect.gen(function*() {
          const admitted: Array<number> = []
          const fibers = yield* Effect.forEach(arrivals, (at) =>
            Effect.forkChild(
              Effect.sleep(Duration.millis(at)).pipe(
                Effect.andThen(rate.withRateLimit("k")(Clock.currentTimeMillis)),
                Effect.tap((t) => Effect.sync(() => admitted.push(t)))
              )
            ))
          yield* TestClock.adjust("200 seconds")
          yield* Fiber.joinAll(fibers)
          admitted.sort((a, b) => a - b)
          for (let i = limit; i < admitted.length; i++) {
            assert.isAtLeast(admitted[i]! - admitted[i - limit]!, 1000)
          }
        })),
    { arbitrary: { runs: 60 } }
  )
})
