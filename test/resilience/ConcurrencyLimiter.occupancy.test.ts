/**
 * `onOccupancy`: the limiter reports every change of a (key, pool)'s in-flight and queued counts, synchronously,
 * so gauges can follow it without a snapshot per attempt or a subscriber fiber.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Metric, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as CL from "../../src/resilience/ConcurrencyLimiter.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"

const K = "key-occ"

interface Seen {
  readonly key: string
  readonly pool: string
  readonly change: CL.OccupancyChange
  readonly lane: CL.Lane
  readonly inFlight: number
  readonly queued: { readonly [L in CL.Lane]: number }
  readonly queueDepth: number
}

/** Records every callback as a copy, and checks that each one follows from the previous by its change. */
const recorder = () => {
  const seen: Array<Seen> = []
  const violations: Array<string> = []
  const last = new Map<string, Seen>()
  const onOccupancy = (o: CL.Occupancy, change: CL.OccupancyChange, lane: CL.Lane) => {
    const now: Seen = {
      key: o.key,
      pool: o.pool,
      change,
      lane,
      inFlight: o.inFlight,
      queued: { ...o.queued },
      queueDepth: o.queueDepth
    }
    const id = `${o.key}/${o.pool}`
    const before = last.get(id) ?? { inFlight: 0, queued: { interactive: 0, default: 0, batch: 0 } }
    const dIn = change === "granted" || change === "dispatched" ? 1 : change === "released" ? -1 : 0
    const dLane = change === "queued" ? 1 : change === "granted" || change === "released" ? 0 : -1
    const expected = { ...before.queued, [lane]: before.queued[lane] + dLane }
    if (now.inFlight !== before.inFlight + dIn) {
      violations.push(`${change}: inFlight ${before.inFlight} -> ${now.inFlight}`)
    }
    if (JSON.stringify(now.queued) !== JSON.stringify(expected)) {
      violations.push(`${change} ${lane}: queued ${JSON.stringify(before.queued)} -> ${JSON.stringify(now.queued)}`)
    }
    if (now.queueDepth !== now.queued.interactive + now.queued.default + now.queued.batch) violations.push("depth")
    last.set(id, now)
    seen.push(now)
  }
  /** The last counts seen for (key, pool) equal the limiter's snapshot. */
  const matches = (limiter: CL.ConcurrencyLimiter, key: string, pool: CL.Snapshot["pool"]) =>
    Effect.map(limiter.snapshot(key, pool), (snap) => {
      const l = last.get(`${key}/${pool}`) ?? { inFlight: 0, queued: { interactive: 0, default: 0, batch: 0 } }
      return l.inFlight === snap.inFlight && JSON.stringify(l.queued) === JSON.stringify(snap.queued)
        ? undefined
        : `seen ${JSON.stringify([l.inFlight, l.queued])} vs snapshot ${JSON.stringify([snap.inFlight, snap.queued])}`
    })
  return { seen, violations, onOccupancy, matches }
}

describe("ConcurrencyLimiter onOccupancy", () => {
  it.effect("reports grant, enqueue, dispatch, release, abandon and expiry, each after the change", () =>
    Effect.gen(function*() {
      const r = recorder()
      const limiter = yield* CL.make({ plan: { standard: 1 }, queueTimeout: "10 seconds", onOccupancy: r.onOccupancy })
      const gate = yield* Deferred.make<void>()
      const runner = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "standard" })(Deferred.await(gate)), {
        startImmediately: true
      })
      const waiter = yield* Effect.forkChild(
        limiter.withPermit({ key: K, pool: "standard", lane: "batch" })(Effect.void),
        {
          startImmediately: true
        }
      )
      const quitter = yield* Effect.forkChild(
        limiter.withPermit({ key: K, pool: "standard", lane: "interactive" })(Effect.void),
        {
          startImmediately: true
        }
      )
      const expiring = yield* Effect.forkChild(
        limiter.withPermit({ key: K, pool: "standard", timeout: "1 second" })(Effect.void),
        { startImmediately: true }
      )
      assert.isUndefined(yield* r.matches(limiter, K, "standard"))
      yield* Fiber.interrupt(quitter)
      yield* TestClock.adjust("1 second")
      assert.isTrue(Exit.isFailure(yield* Fiber.await(expiring)))
      assert.isUndefined(yield* r.matches(limiter, K, "standard"))
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(runner)
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(r.seen.map((s) => [s.change, s.lane, s.inFlight, s.queueDepth]), [
        ["granted", "default", 1, 0],
        ["queued", "batch", 1, 1],
        ["queued", "interactive", 1, 2],
        ["queued", "default", 1, 3],
        ["abandoned", "interactive", 1, 2],
        ["expired", "default", 1, 1],
        ["released", "default", 0, 1],
        ["dispatched", "batch", 1, 0],
        ["released", "batch", 0, 0]
      ])
      assert.deepStrictEqual(r.violations, [])
      // QueueFull and a snapshot change nothing, so they report nothing.
      const count = r.seen.length
      yield* limiter.snapshot(K, "standard")
      assert.strictEqual(r.seen.length, count)
    }))

  it.effect("a raised limit dispatches queued callers, reported one by one", () =>
    Effect.gen(function*() {
      const r = recorder()
      const limiter = yield* CL.make({ plan: "unknown", initialLimit: 1, onOccupancy: r.onOccupancy })
      const gate = yield* Deferred.make<void>()
      const fibers = yield* Effect.forEach(
        [0, 1, 2],
        () =>
          Effect.forkChild(limiter.withPermit({ key: K, pool: "flash" })(Deferred.await(gate)), {
            startImmediately: true
          })
      )
      yield* limiter.onResponse(K, "flash", { maximumConcurrentRequests: 3 })
      assert.deepStrictEqual(r.seen.map((s) => s.change), ["granted", "queued", "queued", "dispatched", "dispatched"])
      assert.isUndefined(yield* r.matches(limiter, K, "flash"))
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(fibers, Fiber.join)
      assert.isUndefined(yield* r.matches(limiter, K, "flash"))
      assert.deepStrictEqual(r.violations, [])
    }))

  it.effect("closing the limiter's scope reports the queued callers it drops", () =>
    Effect.gen(function*() {
      const r = recorder()
      yield* Effect.scoped(Effect.gen(function*() {
        const limiter = yield* CL.make({ plan: { music: 1 }, onOccupancy: r.onOccupancy })
        yield* Effect.forkDetach(limiter.withPermit({ key: K, pool: "music" })(Effect.never), {
          startImmediately: true
        })
        yield* Effect.forkDetach(limiter.withPermit({ key: K, pool: "music" })(Effect.void), { startImmediately: true })
      }))
      assert.deepStrictEqual(r.seen.map((s) => s.change), ["granted", "queued", "abandoned"])
    }))

  it.effect("a callback that throws does not break the limiter", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({
        plan: { stt: 1 },
        onOccupancy: () => {
          throw new Error("gauge bug")
        }
      })
      const gate = yield* Deferred.make<void>()
      const a = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "stt" })(Deferred.await(gate)), {
        startImmediately: true
      })
      const b = yield* Effect.forkChild(limiter.withPermit({ key: K, pool: "stt" })(Effect.succeed("b")), {
        startImmediately: true
      })
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(a)
      assert.strictEqual(yield* Fiber.join(b), "b")
      const snap = yield* limiter.snapshot(K, "stt")
      assert.deepStrictEqual([snap.inFlight, snap.queueDepth], [0, 0])
    }))

  it.effect("Metrics.occupancyGauges keeps the concurrency and queue gauges, for its key only", () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const limiter = yield* CL.make({
        plan: { standard: 2 },
        onOccupancy: Metrics.occupancyGauges(context, { key: K })
      })
      const gauge = (metric: Metric.Metric<number, Metric.GaugeState<number>>, attributes: Record<string, string>) =>
        Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (s) => Number(s.value))
      const read = Effect.all([
        gauge(Metrics.concurrentRequests, { pool: "standard" }),
        gauge(Metrics.queueDepth, { pool: "standard", lane: "interactive" }),
        gauge(Metrics.queueDepth, { pool: "standard", lane: "default" }),
        gauge(Metrics.queueDepth, { pool: "standard", lane: "batch" })
      ])
      const gate = yield* Deferred.make<void>()
      const fibers = yield* Effect.forEach(
        ["default", "default", "interactive", "batch", "batch"] as const,
        (lane) =>
          Effect.forkChild(limiter.withPermit({ key: K, pool: "standard", lane })(Deferred.await(gate)), {
            startImmediately: true
          })
      )
      assert.deepStrictEqual(yield* read, [2, 1, 0, 2])
      // Another key's traffic leaves these gauges alone.
      yield* limiter.withPermit({ key: "other", pool: "standard" })(Effect.void)
      assert.deepStrictEqual(yield* read, [2, 1, 0, 2])
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(yield* read, [0, 0, 0, 0])
    }))
})

// ==== Property: the callback sees every change (TestClock; random arrivals, lanes, interruptions, timeouts,
// front requeues, a bounded queue and limit changes)

const Caller = Schema.Struct({
  arrive: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20 })),
  lane: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2 })),
  duration: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 6 })),
  front: Schema.Boolean,
  pool: Schema.Literals(["standard", "flash"]),
  interrupt: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 40 }))),
  timeout: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 15 })))
})
const Signal = Schema.Struct({
  at: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 40 })),
  kind: Schema.Literals(["limited", "response"]),
  value: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 6 }))
})

describe("ConcurrencyLimiter onOccupancy properties", () => {
  it.effect.prop(
    "every change is reported: each callback follows from the last by its change, and matches snapshot",
    [
      Schema.Array(Caller).check(Schema.isMaxLength(24)),
      Schema.Array(Signal).check(Schema.isMaxLength(8)),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 })),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 10 }))
    ],
    ([callers, signals, limit, maxQueue]) =>
      Effect.gen(function*() {
        const r = recorder()
        const limiter = yield* CL.make({
          plan: { standard: limit, flash: limit + 1 },
          maxQueue,
          queueTimeout: "10 seconds",
          onOccupancy: r.onOccupancy
        })
        const mismatches: Array<string> = []
        const check = (when: string) =>
          Effect.forEach(["standard", "flash"] as const, (pool) =>
            Effect.map(r.matches(limiter, K, pool), (m) => {
              if (m !== undefined) mismatches.push(`${when} ${pool}: ${m}`)
            }), { discard: true })
        const fibers = yield* Effect.forEach(callers, (c) =>
          Effect.forkChild(
            Effect.sleep(Duration.seconds(c.arrive)).pipe(
              Effect.andThen(
                limiter.withPermit({
                  key: K,
                  pool: c.pool,
                  lane: CL.lanes[c.lane]!,
                  front: c.front,
                  ...(c.timeout === undefined ? {} : { timeout: Duration.millis(c.timeout * 1000 + 250) })
                })(Effect.andThen(check("in permit"), Effect.sleep(Duration.millis(c.duration * 1000 + 1))))
              ),
              Effect.exit
            )
          ))
        yield* Effect.forEach(callers, (c, i) =>
          c.interrupt === undefined ? Effect.void : Effect.forkChild(
            Effect.sleep(Duration.millis(c.interrupt * 1000 + 500)).pipe(Effect.andThen(Fiber.interrupt(fibers[i]!)))
          ), { discard: true })
        yield* Effect.forEach(signals, (s) =>
          Effect.forkChild(
            Effect.sleep(Duration.millis(s.at * 1000 + 750)).pipe(Effect.andThen(
              s.kind === "limited"
                ? limiter.onConcurrencyLimited(K, "standard", undefined)
                : limiter.onResponse(K, "standard", {
                  maximumConcurrentRequests: s.value + 2,
                  currentConcurrentRequests: 0
                })
            ))
          ), { discard: true })
        for (let t = 0; t < 120; t++) {
          yield* TestClock.adjust("500 millis")
          yield* check(`tick ${t}`)
        }
        yield* Effect.forEach(fibers, Fiber.await, { discard: true })
        yield* check("end")
        assert.deepStrictEqual(r.violations, [])
        assert.deepStrictEqual(mismatches, [])
        for (const pool of ["standard", "flash"] as const) {
          const snap = yield* limiter.snapshot(K, pool)
          assert.deepStrictEqual([snap.inFlight, snap.queueDepth], [0, 0])
        }
      }),
    { timeout: 120_000, arbitrary: { runs: 120 } }
  )
})
