import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Ref, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as CL from "../../src/resilience/ConcurrencyLimiter.ts"

const K = "key-1a2b"

/** Holds a permit until `gate` opens; resolves `started` once running. */
const hold = (limiter: CL.ConcurrencyLimiter, request: CL.PermitRequest, gate: Deferred.Deferred<void>) =>
  Effect.forkChild(limiter.withPermit(request)(Deferred.await(gate)))

const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

const reasonOf = <A, E>(exit: Exit.Exit<A, E>): CL.ConcurrencyLimiterErrorReason | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  return error?._tag === "Fail" && error.error instanceof CL.ConcurrencyLimiterError ? error.error.reason : undefined
}

describe("ConcurrencyLimiter", () => {
  it.effect("sizes permits from the plan table, per pool", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "pro" })
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 10)
      assert.strictEqual((yield* limiter.snapshot(K, "flash")).limit, 20)
      assert.strictEqual((yield* limiter.snapshot(K, "stt")).ceiling, 40)
      const custom = yield* CL.make({ plan: (key) => (key === "ent" ? { standard: 50 } : "free"), initialLimit: 3 })
      assert.strictEqual((yield* custom.snapshot("ent", "standard")).limit, 50)
      assert.strictEqual((yield* custom.snapshot("ent", "flash")).limit, 3) // not given: learn from 3
      assert.strictEqual((yield* custom.snapshot("ent", "flash")).ceiling, undefined)
      assert.strictEqual((yield* custom.snapshot("other", "standard")).limit, 2)
    }))

  it.effect("derives the pool from the model, with the concurrency_group override", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "creator" })
      const pool = yield* limiter.usePermit({ key: K, model: "eleven_flash_v2_5" }, (p) => Effect.succeed(p.pool))
      assert.strictEqual(pool, "flash")
      const grouped = yield* limiter.usePermit(
        { key: K, model: "eleven_flash_v2_5", concurrencyGroup: "standard" },
        (p) => Effect.succeed(p.pool)
      )
      assert.strictEqual(grouped, "standard")
    }))

  it.effect("rejects malformed requests with InvalidPermitRequest", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make()
      const exit = yield* Effect.exit(limiter.withPermit({ key: "", pool: "standard" })(Effect.void))
      assert.strictEqual(reasonOf(exit)?._tag, "InvalidPermitRequest")
      const lane = yield* Effect.exit(
        limiter.withPermit({ key: K, pool: "standard", lane: "vip" as CL.Lane })(Effect.void)
      )
      assert.strictEqual(reasonOf(lane)?._tag, "InvalidPermitRequest")
    }))

  it.effect("fails at once with QueueFull when the queue is full", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 }, maxQueue: 1 })
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const waiter = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.void))
      yield* settle
      const exit = yield* Effect.exit(limiter.withPermit({ key: K, pool: "standard", lane: "batch" })(Effect.void))
      const reason = reasonOf(exit)
      assert.strictEqual(reason?._tag, "QueueFull")
      // A front-of-lane requeue is admitted past the bound.
      const requeue = yield* Effect.forkChild(
        limiter.withPermit({ key: K, pool: "standard", front: true })(Effect.void)
      )
      yield* settle
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 2)
      if (reason?._tag === "QueueFull") {
        assert.strictEqual(reason.depth, 1)
        assert.strictEqual(reason.lane, "batch")
      }
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(waiter)
      yield* Fiber.join(requeue)
      const snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.inFlight, 0)
      assert.strictEqual(snap.queueDepth, 0)
    }))

  it.effect("fails with QueueTimeout after the queue deadline (TestClock)", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 }, queueTimeout: "10 seconds" })
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const waiter = yield* Effect.forkChild(Effect.exit(limiter.withPermit({ key: K, pool: "standard" })(Effect.void)))
      yield* settle
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 1)
      yield* TestClock.adjust("1 second")
      const reason = reasonOf(yield* Fiber.join(waiter))
      assert.strictEqual(reason?._tag, "QueueTimeout")
      if (reason?._tag === "QueueTimeout") assert.strictEqual(Duration.toMillis(reason.waited), 10_000)
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 0)
      // A per-call timeout wins over the default.
      const short = yield* Effect.forkChild(
        Effect.exit(limiter.withPermit({ key: K, pool: "standard", timeout: "2 seconds" })(Effect.void))
      )
      yield* settle
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(reasonOf(yield* Fiber.join(short))?._tag, "QueueTimeout")
      yield* Deferred.succeed(gate, undefined)
    }))

  it.effect("an earlier per-call deadline arriving later still fires on time (one shared timer)", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 }, queueTimeout: "10 seconds" })
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const request = (timeout: Duration.Input) =>
        Effect.forkChild(Effect.exit(limiter.withPermit({ key: K, pool: "standard", timeout })(Effect.void)))
      const long = yield* request("10 seconds")
      yield* settle
      yield* TestClock.adjust("1 second")
      const short = yield* request("2 seconds")
      const interrupted = yield* request("1 second")
      yield* settle
      yield* Fiber.interrupt(interrupted) // leaves the heap: its deadline must not fire anything
      yield* TestClock.adjust("2 seconds")
      const shortReason = reasonOf(yield* Fiber.join(short))
      assert.strictEqual(shortReason?._tag, "QueueTimeout")
      if (shortReason?._tag === "QueueTimeout") assert.strictEqual(Duration.toMillis(shortReason.waited), 2000)
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 1)
      yield* TestClock.adjust("6999 millis")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 1)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(reasonOf(yield* Fiber.join(long))?._tag, "QueueTimeout")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 0)
      yield* Deferred.succeed(gate, undefined)
    }))

  it.effect("interrupting a waiter removes it; interrupting a runner returns its permit", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 } })
      const runner = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.never))
      yield* settle
      const waiter = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.void))
      yield* settle
      assert.deepStrictEqual((yield* limiter.snapshot(K, "standard")).queued, { interactive: 0, default: 1, batch: 0 })
      yield* Fiber.interrupt(waiter)
      let snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.queueDepth, 0)
      assert.strictEqual(snap.inFlight, 1)
      const next = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.succeed("ran")))
      yield* settle
      yield* Fiber.interrupt(runner)
      assert.strictEqual(yield* Fiber.join(next), "ran")
      snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.inFlight, 0)
      assert.strictEqual(snap.queueDepth, 0)
    }))

  it.effect("a waiter granted a permit and interrupted before it resumes gives the permit back", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 } })
      const scope = yield* Scope.make()
      yield* limiter.acquire({ key: K, pool: "standard" }).pipe(Scope.provide(scope))
      let ran = false
      const waiter = yield* Effect.forkChild(
        limiter.withPermit({ key: K, pool: "standard" })(Effect.sync(() => void (ran = true)))
      )
      yield* settle
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 1)
      // The release hands the permit to the waiter; the interruption lands before the waiter runs again.
      yield* Scope.close(scope, Exit.void)
      yield* Fiber.interrupt(waiter)
      yield* settle
      const snap = yield* limiter.snapshot(K, "standard")
      assert.isFalse(ran)
      assert.strictEqual(snap.inFlight, 0)
      assert.strictEqual(snap.queueDepth, 0)
      assert.strictEqual(yield* limiter.usePermit({ key: K, pool: "standard" }, () => Effect.succeed("next")), "next")
    }))

  it.effect("acquire holds the permit until the scope closes; release is idempotent", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 2 } })
      yield* Effect.scoped(Effect.gen(function*() {
        const permit = yield* limiter.acquire({ key: K, pool: "standard" })
        assert.strictEqual((yield* limiter.snapshot(K, "standard")).inFlight, 1)
        yield* permit.release
        yield* permit.release
        assert.strictEqual((yield* limiter.snapshot(K, "standard")).inFlight, 0)
        yield* limiter.acquire({ key: K, pool: "standard" })
        assert.strictEqual((yield* limiter.snapshot(K, "standard")).inFlight, 1)
      }))
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).inFlight, 0)
    }))

  it.effect("serves higher lanes first, FIFO within a lane, and a front requeue first in its lane", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 } })
      const order = yield* Ref.make<Array<string>>([])
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const enqueue = (name: string, lane: CL.Lane, front?: boolean) =>
        Effect.gen(function*() {
          const f = yield* Effect.forkChild(
            limiter.withPermit({ key: K, pool: "standard", lane, front })(Ref.update(order, (o) => [...o, name]))
          )
          yield* settle
          return f
        })
      const fibers = [
        yield* enqueue("b1", "batch"),
        yield* enqueue("d1", "default"),
        yield* enqueue("d2", "default"),
        yield* enqueue("i1", "interactive"),
        yield* enqueue("d0", "default", true)
      ]
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll(fibers)
      assert.deepStrictEqual(yield* Ref.get(order), ["i1", "d0", "d1", "d2", "b1"])
    }))

  it.effect("ages lower lanes: a batch waiter older than its offset goes before a fresh interactive one", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 }, laneAging: { batch: "30 seconds" } })
      const order = yield* Ref.make<Array<string>>([])
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const run = (name: string, lane: CL.Lane) =>
        Effect.forkChild(limiter.withPermit({ key: K, pool: "standard", lane })(Ref.update(order, (o) => [...o, name])))
      const b = yield* run("batch", "batch")
      yield* settle
      yield* TestClock.adjust("31 seconds")
      const i = yield* run("interactive", "interactive")
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll([b, i])
      assert.deepStrictEqual(yield* Ref.get(order), ["batch", "interactive"])
    }))

  it.effect("learns the ceiling from maximum-concurrent-requests (unknown plan)", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ initialLimit: 2 })
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 2)
      yield* limiter.usePermit({ key: K, pool: "standard" }, (p) =>
        p.onResponse({ maximumConcurrentRequests: 10, currentConcurrentRequests: 1 }))
      const snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.ceiling, 10)
      assert.strictEqual(snap.limit, 10)
      assert.strictEqual(snap.others, 0)
    }))

  it.effect("AIMD: cuts by the factor on too_many_concurrent_requests, grows back additively to the ceiling", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 10 }, decreaseFactor: 0.5 })
      yield* limiter.onConcurrencyLimited(K, "standard")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 5)
      yield* limiter.onConcurrencyLimited(K, "standard")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 2) // 2.5
      yield* limiter.onConcurrencyLimited(K, "standard")
      yield* limiter.onConcurrencyLimited(K, "standard")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 1) // min 1
      // Saturated successes: +1/limit each, so about +1 per window of successes.
      let successes = 0
      while ((yield* limiter.snapshot(K, "standard")).limit < 10) {
        // A full window: as many in flight as the limit, each answering.
        const { limit } = yield* limiter.snapshot(K, "standard")
        yield* Effect.scoped(Effect.gen(function*() {
          const permits = yield* Effect.forEach(
            Array.from({ length: limit }),
            () => limiter.acquire({ key: K, pool: "standard" })
          )
          for (const p of permits) {
            yield* p.onResponse({})
            successes++
          }
        }))
        assert.isBelow(successes, 200)
      }
      assert.isAtLeast(successes, 40) // from 1 to 10 takes about sum(1..9) = 45 saturated successes
      yield* Effect.scoped(Effect.gen(function*() {
        const permits = yield* Effect.forEach(
          Array.from({ length: 10 }),
          () => limiter.acquire({ key: K, pool: "standard" })
        )
        for (const p of permits) yield* p.onResponse({})
      }))
      const snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.limit, 10)
      assert.strictEqual(snap.estimate, 10) // capped at the ceiling
    }))

  it.effect("does not grow while the pool is not saturated", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "unknown", initialLimit: 4 })
      for (let i = 0; i < 50; i++) {
        yield* limiter.usePermit({ key: K, pool: "flash" }, (p) => p.onResponse({}))
      }
      assert.strictEqual((yield* limiter.snapshot(K, "flash")).estimate, 4)
    }))

  it.effect("a 429 carrying the plan limit sets the ceiling", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "pro" })
      yield* limiter.onConcurrencyLimited(K, "standard", 5)
      const snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.ceiling, 5)
      assert.strictEqual(snap.limit, 5) // min(10 x 0.9, 5)
    }))

  it.effect("one cut per congestion event: attempts admitted before the cut do not cut again", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 10 } })
      yield* Effect.scoped(Effect.gen(function*() {
        const permits = yield* Effect.forEach([1, 2, 3, 4], () => limiter.acquire({ key: K, pool: "standard" }))
        for (const p of permits) yield* p.onConcurrencyLimited()
        assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 9)
        yield* Effect.forEach(permits, (p) => p.release)
        const later = yield* limiter.acquire({ key: K, pool: "standard" })
        yield* later.onConcurrencyLimited()
        assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 8) // 8.1
      }))
    }))

  it.effect("detects another client on the key from current-concurrent-requests and shrinks to its share", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 10 } })
      yield* Effect.scoped(Effect.gen(function*() {
        const permits = yield* Effect.forEach([1, 2, 3], () => limiter.acquire({ key: K, pool: "standard" }))
        // The server sees 8 in flight; 3 are ours: someone else runs 5.
        yield* permits[0]!.onResponse({ currentConcurrentRequests: 8, maximumConcurrentRequests: 10 })
        let snap = yield* limiter.snapshot(K, "standard")
        assert.strictEqual(snap.others, 5)
        assert.strictEqual(snap.limit, 5)
        // The other client leaves: the cap rises and successes grow the limit back.
        yield* permits[1]!.onResponse({ currentConcurrentRequests: 3, maximumConcurrentRequests: 10 })
        snap = yield* limiter.snapshot(K, "standard")
        assert.strictEqual(snap.others, 0)
        assert.strictEqual(snap.limit, 5)
      }))
      // The keyed form counts in-flight at call time.
      yield* limiter.onResponse(K, "standard", { currentConcurrentRequests: 4 })
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).others, 4)
    }))

  it.effect("a limit shrunk below in-flight cancels nothing; new permits wait until in-flight drops below it", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 5 } })
      const gates = yield* Effect.forEach([0, 1, 2, 3, 4], () => Deferred.make<void>())
      const runners = yield* Effect.forEach(gates, (g) => hold(limiter, { key: K, pool: "standard" }, g))
      yield* settle
      yield* limiter.onConcurrencyLimited(K, "standard", 2)
      let snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.limit, 2)
      assert.strictEqual(snap.inFlight, 5)
      const started = yield* Ref.make(false)
      const waiter = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Ref.set(started, true)))
      yield* settle
      for (const i of [0, 1, 2]) {
        yield* Deferred.succeed(gates[i]!, undefined)
        yield* Fiber.join(runners[i]!)
        yield* settle
        assert.isFalse(yield* Ref.get(started))
      }
      yield* Deferred.succeed(gates[3]!, undefined) // in-flight 1 < 2
      yield* Fiber.join(waiter)
      assert.isTrue(yield* Ref.get(started))
      yield* Deferred.succeed(gates[4]!, undefined)
      yield* Fiber.joinAll(runners)
      snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.inFlight, 0)
    }))

  it.effect("a raised limit lets queued callers in at once", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ initialLimit: 1 })
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "stt" }, gate)
      yield* settle
      const waiter = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "stt" })(Effect.succeed(1)))
      yield* settle
      yield* limiter.onResponse(K, "stt", { maximumConcurrentRequests: 8 })
      assert.strictEqual(yield* Fiber.join(waiter), 1)
      yield* Deferred.succeed(gate, undefined)
    }))

  it.effect("onLimitChanged runs for each limit change, in the caller's fiber, and for nothing else", () =>
    Effect.gen(function*() {
      const seen: Array<[number, number, string, number]> = []
      const limiter = yield* CL.make({
        plan: { standard: 1 },
        maxQueue: 1,
        onLimitChanged: (e) =>
          Effect.withFiber((fiber) => Effect.sync(() => void seen.push([e.from, e.to, e.reason, fiber.id])))
      })
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const queued = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.void))
      yield* settle // Queued: not a change
      assert.deepStrictEqual(seen, [])
      const self = yield* Effect.withFiber((fiber) => Effect.succeed(fiber.id))
      yield* limiter.onResponse(K, "standard", { maximumConcurrentRequests: 3 }) // ceiling: 1 -> 3
      yield* limiter.onConcurrencyLimited(K, "standard") // 3 -> 2
      assert.deepStrictEqual(seen.map(([from, to, reason]) => [from, to, reason]), [
        [1, 3, "ceiling"],
        [3, 2, "concurrency-limited"]
      ])
      assert.deepStrictEqual(seen.map((s) => s[3]), [self, self])
      yield* Fiber.interrupt(queued)
    }))

  it.effect("a failing or dying onLimitChanged neither fails the call nor stops the event", () =>
    Effect.gen(function*() {
      for (const broken of [Effect.die("hook bug"), Effect.fail("hook failure")]) {
        let calls = 0
        const limiter = yield* CL.make({
          plan: { standard: 4 },
          onLimitChanged: () => {
            calls++
            return broken as unknown as Effect.Effect<void>
          }
        })
        const collected = yield* Effect.forkChild(Stream.runCollect(Stream.take(limiter.events, 1)))
        yield* settle
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(limiter.onConcurrencyLimited(K, "standard"))))
        const events = Array.from(yield* Fiber.join(collected))
        assert.deepStrictEqual(events.map((e) => e._tag), ["LimitChanged"])
        assert.strictEqual(calls, 1)
      }
    }))

  it.effect("publishes limit changes, queue full / timeouts and waits as events", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 }, maxQueue: 1, queueTimeout: "5 seconds" })
      const collected = yield* Effect.forkChild(Stream.runCollect(Stream.take(limiter.events, 5)))
      yield* settle
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const waiter = yield* Effect.forkChild(Effect.exit(limiter.withPermit({ key: K, pool: "standard" })(Effect.void)))
      yield* settle
      yield* Effect.exit(limiter.withPermit({ key: K, pool: "standard" })(Effect.void)) // QueueFull
      yield* TestClock.adjust("5 seconds") // QueueTimeout
      yield* Fiber.join(waiter)
      yield* limiter.onResponse(K, "standard", { maximumConcurrentRequests: 3 }) // LimitChanged (ceiling)
      const second = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.void))
      yield* Fiber.join(second)
      yield* limiter.onConcurrencyLimited(K, "standard") // 2.7 -> 2
      const events = Array.from(yield* Fiber.join(collected))
      assert.deepStrictEqual(events.map((e) => e._tag), [
        "Queued",
        "QueueFull",
        "QueueTimeout",
        "LimitChanged",
        "LimitChanged"
      ])
      assert.deepStrictEqual(events[0], { _tag: "Queued", key: K, pool: "standard", lane: "default", depth: 1 })
      const last = events[4]
      assert.deepStrictEqual(last && last._tag === "LimitChanged" ? [last.from, last.to, last.reason] : [], [
        3,
        2,
        "concurrency-limited"
      ])
      const change = events.find((e) => e._tag === "LimitChanged")
      assert.deepStrictEqual(
        change && change._tag === "LimitChanged" ? [change.from, change.to, change.reason, change.ceiling] : [],
        [1, 3, "ceiling", 3]
      )
      yield* Deferred.succeed(gate, undefined)
    }))

  it.effect("reports the wait of a queued caller in the permit and a Waited event", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 } })
      const collected = yield* Effect.forkChild(Stream.runCollect(Stream.take(limiter.events, 2)))
      yield* settle
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const waiter = yield* Effect.forkChild(
        limiter.usePermit({ key: K, pool: "standard", lane: "interactive" }, (p) => Effect.succeed(p.waitedMillis))
      )
      yield* settle
      yield* TestClock.adjust("3 seconds")
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Fiber.join(waiter), 3000)
      const [queued, event] = Array.from(yield* Fiber.join(collected))
      assert.deepStrictEqual(queued, { _tag: "Queued", key: K, pool: "standard", lane: "interactive", depth: 1 })
      assert.deepStrictEqual(event, {
        _tag: "Waited",
        key: K,
        pool: "standard",
        lane: "interactive",
        waitedMillis: 3000
      })
    }))

  it.effect("a long release chain (5,000 queued callers) drains without growing the stack", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 }, maxQueue: 10_000 })
      const gate = yield* Deferred.make<void>()
      yield* hold(limiter, { key: K, pool: "standard" }, gate)
      yield* settle
      const fibers = yield* Effect.forEach(
        Array.from({ length: 5000 }),
        () => Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.void))
      )
      yield* settle
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 5000)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll(fibers)
      const snap = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(snap.inFlight, 0)
      assert.strictEqual(snap.queueDepth, 0)
    }))

  it.effect("closing the limiter's scope interrupts queued callers and ends events", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const limiter = yield* CL.make({ plan: { standard: 1 } }).pipe(Effect.provideService(Scope.Scope, scope))
      const events = yield* Effect.forkChild(Stream.runCollect(limiter.events))
      yield* settle
      yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.never))
      yield* settle
      const waiter = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Effect.void))
      yield* settle
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Fiber.await(waiter)
      assert.isTrue(Exit.hasInterrupts(exit))
      yield* Fiber.join(events)
    }))
})

// ==== Properties (TestClock; random arrivals, durations, lanes, interruptions, limit changes)

const Caller = Schema.Struct({
  arrive: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20 })),
  lane: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2 })),
  duration: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 6 })),
  /** Interrupt at `interrupt + 0.5` s, when set. */
  interrupt: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 40 })))
})
type Caller = typeof Caller.Type

const Signal = Schema.Struct({
  at: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 40 })),
  kind: Schema.Literals(["limited", "response"]),
  value: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 6 })),
  current: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 10 }))
})
type Signal = typeof Signal.Type

const AGING = [0, 5_000, 30_000] as const
const QUEUE_TIMEOUT = 10_250

interface Record {
  readonly caller: Caller
  arrival?: number
  start?: number
  startSeq?: number
  leave?: number
  outcome?: "ran" | "QueueFull" | "QueueTimeout" | "InvalidPermitRequest" | "interrupted"
}

/**
 * Runs the callers (and signals) against one limiter under TestClock. Times:
 * arrivals on whole seconds, releases 1 ms after whole seconds (durations
 * are k s + 1 ms), interruptions on .500, signals on .750, queue timeouts on
 * .250: events of different kinds never share an instant.
 */
const simulate = (callers: ReadonlyArray<Caller>, signals: ReadonlyArray<Signal>, limit: number, maxQueue: number) =>
  Effect.gen(function*() {
    const limiter = yield* CL.make({
      plan: { standard: limit },
      maxQueue,
      queueTimeout: Duration.millis(QUEUE_TIMEOUT),
      laneAging: {
        interactive: Duration.millis(AGING[0]),
        default: Duration.millis(AGING[1]),
        batch: Duration.millis(AGING[2])
      }
    })
    const records: Array<Record> = callers.map((caller) => ({ caller }))
    const violations: Array<string> = []
    let running = 0
    let seq = 0
    const now = Clock.currentTimeMillis
    const fibers = yield* Effect.forEach(records, (rec) =>
      Effect.forkChild(
        Effect.gen(function*() {
          yield* Effect.sleep(Duration.seconds(rec.caller.arrive))
          rec.arrival = yield* now
          const exit = yield* Effect.exit(limiter.usePermit(
            { key: K, pool: "standard", lane: CL.lanes[rec.caller.lane]! },
            () =>
              Effect.gen(function*() {
                rec.start = yield* now
                rec.startSeq = seq++
                running++
                const snap = yield* limiter.snapshot(K, "standard")
                if (snap.inFlight > snap.limit) violations.push(`inFlight ${snap.inFlight} > limit ${snap.limit}`)
                // Granted callers may not have started yet, so only `running <= inFlight` is exact.
                if (running > snap.inFlight) violations.push(`running ${running} > inFlight ${snap.inFlight}`)
                yield* Effect.sleep(Duration.millis(rec.caller.duration * 1000 + 1)).pipe(
                  Effect.ensuring(Effect.sync(() => void running--))
                )
              })
          ))
          if (Exit.isSuccess(exit)) rec.outcome = "ran"
          else {
            const reason = reasonOf(exit)
            rec.outcome = reason?._tag ?? "interrupted"
            rec.leave = yield* now
          }
        }).pipe(Effect.onInterrupt(() =>
          Effect.sync(() => {
            if (rec.arrival !== undefined && rec.outcome === undefined) rec.outcome = "interrupted"
          })
        ))
      ))
    yield* Effect.forEach(records, (rec, i) =>
      rec.caller.interrupt === undefined ? Effect.void : Effect.forkChild(
        Effect.sleep(Duration.millis(rec.caller.interrupt * 1000 + 500)).pipe(
          Effect.andThen(Effect.suspend(() => {
            if (rec.outcome === undefined && rec.start === undefined && rec.arrival !== undefined) {
              rec.leave = rec.caller.interrupt! * 1000 + 500
            }
            return Fiber.interrupt(fibers[i]!)
          }))
        )
      ))
    yield* Effect.forEach(
      signals,
      (s) =>
        Effect.forkChild(
          Effect.sleep(Duration.millis(s.at * 1000 + 750)).pipe(Effect.andThen(
            s.kind === "limited"
              ? limiter.onConcurrencyLimited(K, "standard", s.value <= 3 ? undefined : s.value)
              : limiter.onResponse(K, "standard", {
                maximumConcurrentRequests: s.value + 2,
                currentConcurrentRequests: s.current
              })
          ))
        )
    )
    for (let t = 0; t < 400; t++) {
      yield* TestClock.adjust("1 second")
      const snap = yield* limiter.snapshot(K, "standard")
      if (snap.inFlight > Math.max(snap.limit, running)) violations.push(`tick ${t}: inFlight ${snap.inFlight}`)
      if (snap.queueDepth > maxQueue) violations.push(`tick ${t}: queue ${snap.queueDepth} > ${maxQueue}`)
    }
    const exits = yield* Effect.forEach(fibers, Fiber.await)
    return { limiter, records, violations, exits }
  })

const keyOf = (rec: Record) => rec.arrival! + AGING[rec.caller.lane]!

describe("ConcurrencyLimiter properties", () => {
  it.effect.prop(
    "fixed limit: in-flight never exceeds the limit, permits all return, lane order and the aging bound hold",
    [
      Schema.Array(Caller).check(Schema.isMaxLength(24)),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 })),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 12 }))
    ],
    ([callers, limit, maxQueue]) =>
      Effect.gen(function*() {
        const { exits, limiter, records, violations } = yield* simulate(callers, [], limit, maxQueue)
        assert.deepStrictEqual(violations, [])
        assert.strictEqual(exits.length, callers.length) // every call ended exactly once
        for (const exit of exits) {
          if (Exit.isFailure(exit)) assert.isTrue(Exit.hasInterrupts(exit), "only interruptions")
        }
        // Whoever arrived before its interruption ended with an outcome; callers that never met one ran.
        assert.strictEqual(
          records.filter((r) => r.caller.interrupt === undefined && r.outcome === undefined).length,
          0
        )
        const snap = yield* limiter.snapshot(K, "standard")
        assert.strictEqual(snap.inFlight, 0)
        assert.strictEqual(snap.queueDepth, 0)
        for (const rec of records) {
          if (rec.arrival === undefined) continue
          assert.isDefined(rec.outcome)
          if (rec.outcome === "QueueTimeout") assert.strictEqual(rec.leave! - rec.arrival, QUEUE_TIMEOUT)
        }
        // Grants from the queue: a is granted while b waits => a's virtual deadline is not later than b's.
        const queued = records.filter((r) =>
          r.arrival !== undefined && r.outcome !== "QueueFull" && (r.start === undefined || r.start > r.arrival)
        )
        for (const a of queued) {
          if (a.start === undefined) continue
          for (const b of queued) {
            if (b === a || b.arrival! >= a.start) continue
            const waiting = b.start !== undefined ? b.startSeq! > a.startSeq! : b.leave! > a.start
            if (!waiting) continue
            const ka = keyOf(a)
            const kb = keyOf(b)
            const ok = ka < kb || (ka === kb && a.caller.lane <= b.caller.lane)
            if (!ok) {
              assert.fail(
                `lane order: ${JSON.stringify(a)} granted before waiting ${JSON.stringify(b)} (keys ${ka} vs ${kb})`
              )
            }
            // The starvation bound, stated directly: b is never overtaken by a waiter that
            // arrived more than aging[b.lane] - aging[a.lane] after it.
            assert.isAtMost(a.arrival! - b.arrival!, AGING[b.caller.lane]! - AGING[a.caller.lane]!)
          }
        }
      }),
    { timeout: 120_000, arbitrary: { runs: 150 } }
  )

  it.effect.prop(
    "changing limit: permits all return, nothing is lost, new permits only below the current limit",
    [
      Schema.Array(Caller).check(Schema.isMaxLength(24)),
      Schema.Array(Signal).check(Schema.isMaxLength(12)),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 6 }))
    ],
    ([callers, signals, limit]) =>
      Effect.gen(function*() {
        const { exits, limiter, records, violations } = yield* simulate(callers, signals, limit, 1000)
        assert.deepStrictEqual(violations, [])
        assert.strictEqual(exits.length, callers.length)
        const snap = yield* limiter.snapshot(K, "standard")
        assert.strictEqual(snap.inFlight, 0)
        assert.strictEqual(snap.queueDepth, 0)
        assert.isAtLeast(snap.limit, 1)
        for (const rec of records) if (rec.arrival !== undefined) assert.isDefined(rec.outcome)
      }),
    { timeout: 120_000, arbitrary: { runs: 100 } }
  )
})
