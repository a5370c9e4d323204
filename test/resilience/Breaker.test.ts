import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Ref, Stream } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { TestClock } from "effect/testing"
import {
  ConcurrencyLimited,
  ElevenLabsError,
  type ElevenLabsErrorReason,
  InvalidRequest,
  NotFound,
  QuotaExceeded,
  RateLimited,
  ServerError,
  SystemBusy,
  Timeout
} from "../../src/client/Errors.ts"
import * as Breaker from "../../src/resilience/Breaker.ts"
import * as Deadline from "../../src/resilience/Deadline.ts"
import * as Jitter from "../../src/resilience/Jitter.ts"
import * as RetryPolicy from "../../src/resilience/RetryPolicy.ts"

const op = { operation: "textToSpeech.convert", message: "test" }
const failWith = (reason: ElevenLabsErrorReason) => Effect.fail(new ElevenLabsError({ reason }))
const busy = failWith(new SystemBusy({ ...op, status: 429 }))
const serverError = failWith(new ServerError({ ...op, status: 500 }))
const ok = Effect.succeed("audio")

/** Runs an attempt through the breaker, counting how many attempts actually ran. */
const through =
  (breaker: Breaker.Breaker["Service"], ran: Ref.Ref<number>, pool = "standard") =>
  <A, E>(attempt: Effect.Effect<A, E>) =>
    Ref.update(ran, (n) => n + 1).pipe(Effect.andThen(attempt), breaker.execute(pool), Effect.result)

/**
 * The suite runs on both paths: Effect's `CircuitBreaker.execute` (any store; here Effect's memory store
 * provided directly) and the fast path (the memory store of `Breaker.layerStoreMemory`). Same contract.
 */
const stores = [
  ["Effect's execute", () => CircuitBreaker.layerStoreMemory()],
  ["fast path", () => Breaker.layerStoreMemory()]
] as const

for (const [path, storeLayer] of stores) {
  const withStore = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.provide(self, storeLayer())

  describe(`Breaker (${path})`, () => {
    it.effect("consecutive is judged in start order: fast failures that overtake a slow attempt do not open it", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make()
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        // A slow attempt (a generation) starts first and is still running...
        const release = yield* Deferred.make<void>()
        const slow = yield* run(Effect.andThen(Deferred.await(release), ok)).pipe(Effect.forkChild)
        yield* Effect.yieldNow
        // ...while eight attempts that started after it fail at once (system_busy answers without a slot).
        for (let i = 0; i < 8; i++) yield* run(busy)
        assert.strictEqual(
          yield* breaker.gauge("standard"),
          0,
          "failures that overtook a running attempt are not in a row"
        )
        yield* Deferred.succeed(release, undefined)
        assert.strictEqual((yield* Fiber.join(slow))._tag, "Success")
        // Nothing earlier is running now: five failures in a row open it, as before.
        for (let i = 0; i < 5; i++) yield* run(busy)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
      })))

    it.effect("an outage under concurrency still opens it: attempts that fail in the order they started count", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make()
        const ran = yield* Ref.make(0)
        // Twenty attempts at once; the i-th fails after i ms (an outage answering in order).
        const fibers = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i) =>
            through(breaker, ran)(Effect.andThen(Effect.sleep(Duration.millis(i + 1)), serverError)).pipe(
              Effect.forkChild
            )
        )
        yield* Effect.yieldNow
        yield* TestClock.adjust("50 millis")
        yield* Fiber.joinAll(fibers)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
      })))

    it.effect("the rate policy counts every failure, in whatever order they end", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ policy: { _tag: "rate", threshold: 0.5, size: 10, minimumCalls: 6 } })
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        const release = yield* Deferred.make<void>()
        yield* run(Effect.andThen(Deferred.await(release), ok)).pipe(Effect.forkChild)
        yield* Effect.yieldNow
        for (let i = 0; i < 6; i++) yield* run(busy)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
      })))

    it.effect("closed -> open -> half-open -> closed, with the right rejections in between", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make()
        const transitions: Array<Breaker.BreakerTransition> = []
        yield* breaker.transitions.pipe(
          Stream.runForEach((t) => Effect.sync(() => void transitions.push(t))),
          Effect.forkScoped({ startImmediately: true })
        )
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)

        for (let i = 0; i < 4; i++) yield* run(busy)
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
        yield* run(serverError) // the 5th consecutive failure opens it
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
        assert.strictEqual(yield* Ref.get(ran), 5)

        // Open: rejected without running, with the time left as retryAfter.
        yield* TestClock.adjust("20 seconds")
        const rejected = yield* run(ok)
        assert.isTrue(rejected._tag === "Failure")
        if (rejected._tag !== "Failure") return
        const error = rejected.failure
        assert.isTrue(Breaker.isBreakerError(error))
        if (!Breaker.isBreakerError(error)) return
        assert.strictEqual(error.reason._tag, "CircuitOpen")
        assert.strictEqual(Duration.toMillis(error.retryAfter!), 40_000)
        assert.strictEqual(error.reason.key, "elevenlabs:standard")
        assert.strictEqual(yield* Ref.get(ran), 5)
        // Other pools are not affected.
        assert.strictEqual((yield* through(breaker, ran, "flash")(ok))._tag, "Success")
        assert.strictEqual(yield* breaker.gauge("flash"), 0)

        // After 60 s: one probe goes through; others are rejected as half-open.
        yield* TestClock.adjust("40 seconds")
        const release = yield* Deferred.make<void>()
        const probe = yield* run(Effect.andThen(Deferred.await(release), ok)).pipe(Effect.forkChild)
        yield* Effect.yieldNow
        assert.strictEqual(yield* breaker.gauge("standard"), 1)
        const during = yield* run(ok)
        assert.isTrue(
          during._tag === "Failure" && Breaker.isBreakerError(during.failure) &&
            during.failure.reason._tag === "CircuitHalfOpen" && Duration.toMillis(during.failure.retryAfter!) === 1000
        )
        yield* Deferred.succeed(release, undefined)
        assert.strictEqual((yield* Fiber.join(probe))._tag, "Success")
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
        assert.strictEqual((yield* run(ok))._tag, "Success")

        yield* Effect.yieldNow
        assert.deepStrictEqual(
          transitions.map((t) => [t.key, t.from, t.to, t.gauge]),
          [
            ["elevenlabs:standard", "Closed", "Open", 2],
            ["elevenlabs:standard", "Open", "HalfOpen", 1],
            ["elevenlabs:standard", "HalfOpen", "Closed", 0]
          ]
        )
        assert.strictEqual(Duration.toMillis(transitions[0]!.openFor!), 60_000)
      })))

    it.effect("a half-open probe whose caller is interrupted frees the probe: the next call probes at once", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make()
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        for (let i = 0; i < 5; i++) yield* run(serverError)
        yield* TestClock.adjust("60 seconds")
        const probe = yield* run(Effect.never).pipe(Effect.forkChild)
        yield* Effect.yieldNow
        assert.strictEqual(yield* breaker.gauge("standard"), 1)
        yield* Fiber.interrupt(probe)
        // Still half-open (the probe proved nothing), but nobody holds the probe any more.
        assert.strictEqual(yield* breaker.gauge("standard"), 1)
        assert.strictEqual((yield* run(ok))._tag, "Success")
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
        assert.strictEqual(yield* Ref.get(ran), 7)
      })))

    it.effect("ConcurrencyLimited, 4xx and quota never open it, nor reset the streak", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make()
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        const ignoredReasons: Array<ElevenLabsErrorReason> = [
          new ConcurrencyLimited({ ...op, status: 429 }),
          new NotFound({ ...op, status: 404 }),
          new InvalidRequest({ ...op, status: 400 }),
          new QuotaExceeded({ ...op, status: 401 })
        ]
        for (let i = 0; i < 50; i++) yield* run(failWith(ignoredReasons[i % ignoredReasons.length]!))
        yield* run(Effect.fail("limiter queue timeout"))
        const died = yield* Effect.die("bug").pipe(breaker.execute("standard"), Effect.exit)
        assert.strictEqual(died._tag, "Failure")
        assert.strictEqual((yield* breaker.state("standard"))._tag, "Closed")
        // Ignored outcomes do not break a failure streak either.
        for (let i = 0; i < 4; i++) {
          yield* run(busy)
          yield* run(failWith(new ConcurrencyLimited({ ...op, status: 429 })))
        }
        yield* run(busy)
        assert.strictEqual((yield* breaker.state("standard"))._tag, "Open")
      })))

    it.effect("a success resets the consecutive streak", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 3 } })
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        yield* run(busy)
        yield* run(busy)
        yield* run(ok)
        yield* run(busy)
        yield* run(busy)
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
        yield* run(busy)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
      })))

    it.effect("rate policy: opens when the failure share of the last calls reaches the threshold, after the minimum", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ policy: { _tag: "rate", threshold: 0.5, size: 10, minimumCalls: 6 } })
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        // Alternating: 1 failure in 2 calls. Not before 6 recorded calls.
        for (let i = 0; i < 5; i++) yield* run(i % 2 === 0 ? busy : ok)
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
        yield* run(busy) // 6 calls, 4 failures... (f, s, f, s, f, f)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)

        // Mostly successes never open it.
        const other = through(breaker, ran, "flash")
        for (let i = 0; i < 40; i++) yield* other(i % 3 === 0 ? busy : ok)
        assert.strictEqual(yield* breaker.gauge("flash"), 0)
      })))

    it.effect("growing open duration: 60 s, then 120 s after a failed probe, capped", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({
          policy: { _tag: "consecutive", failures: 1 },
          growth: { factor: 2, max: "3 minutes" }
        })
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        const retryAfterNow = Effect.map(
          breaker.state("standard"),
          (s) => s._tag === "Open" ? Duration.toMillis(s.retryAfter) : -1
        )

        yield* run(busy)
        assert.strictEqual(yield* retryAfterNow, 60_000)
        yield* TestClock.adjust("60 seconds")
        yield* run(busy) // failed probe
        assert.strictEqual(yield* retryAfterNow, 120_000)
        yield* TestClock.adjust("120 seconds")
        yield* run(busy)
        assert.strictEqual(yield* retryAfterNow, 180_000) // 240 s capped at 3 minutes
        yield* TestClock.adjust("180 seconds")
        yield* run(ok) // the probe succeeds: closed
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
      })))

    it.effect("a Retry-After on the failure lengthens the opening, up to maxRetryAfter", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({
          policy: { _tag: "consecutive", failures: 1 },
          openDuration: "10 seconds",
          maxRetryAfter: "2 minutes"
        })
        const ran = yield* Ref.make(0)
        yield* through(breaker, ran)(
          failWith(new RateLimited({ ...op, status: 429, retryAfter: Duration.seconds(30) }))
        )
        const s1 = yield* breaker.state("standard")
        assert.isTrue(s1._tag === "Open" && Duration.toMillis(s1.retryAfter) === 30_000)
        yield* through(breaker, ran, "stt")(
          failWith(new RateLimited({ ...op, status: 429, retryAfter: Duration.hours(1) }))
        )
        const s2 = yield* breaker.state("stt")
        assert.isTrue(s2._tag === "Open" && Duration.toMillis(s2.retryAfter) === 120_000)
      })))

    it.effect("layerMemory provides the service; the store is one Layer", () =>
      Effect.gen(function*() {
        const breaker = yield* Breaker.Breaker
        assert.strictEqual(yield* Effect.succeed(1).pipe(breaker.execute("music")), 1)
        assert.strictEqual(breaker.keyOf("music"), "acct-1:music")
      }).pipe(Effect.provide(Breaker.layerMemory({ keyPrefix: "acct-1:" }))))

    it.effect("two breakers on one shared store share circuits (as with Redis)", () =>
      Effect.gen(function*() {
        const a = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 2 } })
        const b = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 2 } })
        const ran = yield* Ref.make(0)
        yield* through(a, ran)(busy)
        yield* through(b, ran)(busy)
        assert.strictEqual(yield* a.gauge("standard"), 2)
        assert.strictEqual(yield* b.gauge("standard"), 2)
      }).pipe(Effect.provide(Layer.fresh(storeLayer()))))

    it.effect("retry outside the breaker: each attempt is an outcome; once open, the call fails fast with BreakerError", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 3 } })
        const ran = yield* Ref.make(0)
        const fiber = yield* Ref.update(ran, (n) => n + 1).pipe(
          Effect.andThen(busy),
          breaker.execute("standard"),
          RetryPolicy.retry({ exponential: { jitter: Jitter.none } }),
          Effect.flip,
          Effect.forkChild
        )
        yield* TestClock.adjust("1 minute")
        const error = yield* Fiber.join(fiber)
        // Attempts 1-3 fail and open the circuit; the 4th is rejected without a request and not retried.
        assert.strictEqual(yield* Ref.get(ran), 3)
        assert.isTrue(Breaker.isBreakerError(error) && error.reason._tag === "CircuitOpen")
      })))

    it.effect("a caller's deadline running out in an attempt is ignored; the attempt's own timeouts count", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make()
        const ran = yield* Ref.make(0)
        const run = through(breaker, ran)
        const deadline = failWith(new Timeout({ ...op, phase: "deadline", after: Duration.seconds(1) }))
        assert.strictEqual(Breaker.classify(yield* Effect.exit(deadline))._tag, "Ignored")
        // A burst of short client deadlines (bound inside the attempt, Deadline.bind) opens nothing...
        const hung = Effect.never.pipe(
          Deadline.timeoutWithin({ duration: "30 seconds", orElse: () => Effect.die("headers"), operation: "tts" })
        )
        for (let i = 0; i < 10; i++) {
          const fiber = yield* run(hung).pipe(Deadline.bind("100 millis"), Effect.forkChild)
          yield* TestClock.adjust("100 millis")
          const result = yield* Fiber.join(fiber)
          assert.isTrue(result._tag === "Failure" && Deadline.isExpiry(result.failure))
        }
        assert.strictEqual((yield* breaker.state("standard"))._tag, "Closed")
        // ...nor breaks a streak; the attempt's own timeouts (headers, idle) are failures.
        const headers = failWith(new Timeout({ ...op, phase: "headers", after: Duration.seconds(30) }))
        for (let i = 0; i < 4; i++) {
          yield* run(headers)
          yield* run(deadline)
        }
        yield* run(headers)
        assert.strictEqual((yield* breaker.state("standard"))._tag, "Open")
      })))

    it("gaugeOf maps states to 0, 1, 2", () => {
      assert.deepStrictEqual([Breaker.gaugeOf("Closed"), Breaker.gaugeOf("HalfOpen"), Breaker.gaugeOf("Open")], [
        0,
        1,
        2
      ])
    })
  })
}
