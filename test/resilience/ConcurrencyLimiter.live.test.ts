/**
 * Live configuration of the limiter: hard caps (option `caps`) and `reconfigure` on a running limiter.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as CL from "../../src/resilience/ConcurrencyLimiter.ts"

const K = "key-live"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

const isDie = <A, E>(exit: Exit.Exit<A, E>) => Exit.isFailure(exit) && exit.cause.reasons.some((r) => r._tag === "Die")

const reasonTag = <A, E>(exit: Exit.Exit<A, E>) => {
  if (Exit.isSuccess(exit)) return "ok"
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return failure?._tag === "Fail" && failure.error instanceof CL.ConcurrencyLimiterError
    ? failure.error.reason._tag
    : "other"
}

/**
 * Callers that each hold a permit until their own gate opens, counting how many run at once. `start` forks one
 * (it runs at once or queues); `open(i)` lets caller i finish.
 */
const crowd = (limiter: CL.ConcurrencyLimiter, request: CL.PermitRequest) => {
  const gates: Array<Deferred.Deferred<void>> = []
  const fibers: Array<Fiber.Fiber<Exit.Exit<void, CL.ConcurrencyLimiterError>>> = []
  const running = new Set<number>()
  const state = { max: 0 }
  const start = Effect.gen(function*() {
    const i = gates.length
    const gate = yield* Deferred.make<void>()
    gates.push(gate)
    const body = Effect.gen(function*() {
      running.add(i)
      state.max = Math.max(state.max, running.size)
      yield* Deferred.await(gate)
      running.delete(i)
    })
    fibers.push(yield* Effect.forkChild(Effect.exit(limiter.withPermit(request)(body)), { startImmediately: true }))
    return i
  })
  const open = (i: number) => Deferred.succeed(gates[i]!, undefined)
  const openAll = Effect.forEach(gates, (g) => Deferred.succeed(g, undefined), { discard: true })
  return { start, open, openAll, running, state, fibers }
}

describe("ConcurrencyLimiter caps", () => {
  it.effect("a cap holds below the plan, the server's maximum, a 429's number and additive increase", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "pro", caps: { standard: 3 } })
      const start = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([start.limit, start.ceiling, start.cap], [3, 10, 3])
      assert.strictEqual((yield* limiter.snapshot(K, "flash")).limit, 20) // other pools are not capped
      const c = crowd(limiter, { key: K, pool: "standard" })
      for (let i = 0; i < 5; i++) yield* c.start
      yield* settle
      assert.strictEqual(c.running.size, 3)
      // Saturated responses announcing a bigger plan: the estimate learns, the permits stay at the cap.
      for (let i = 0; i < 50; i++) yield* limiter.onResponse(K, "standard", { maximumConcurrentRequests: 40 })
      yield* settle
      const learned = yield* limiter.snapshot(K, "standard")
      assert.strictEqual(learned.ceiling, 40)
      assert.isAbove(learned.estimate, 30)
      assert.strictEqual(learned.limit, 3)
      assert.strictEqual(learned.queueDepth, 2)
      assert.strictEqual(c.running.size, 3)
      // A 429 carrying a higher number does not lift it either; it cuts from the permits in force (3 × 0.9).
      yield* limiter.onConcurrencyLimited(K, "standard", 50)
      const cut = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([cut.ceiling, cut.limit], [50, 2])
      yield* c.openAll
      yield* settle
      assert.strictEqual(c.state.max, 3)
      // The cap wins over minLimit.
      const tight = yield* CL.make({ plan: "pro", minLimit: 2, caps: { flash: 1 } })
      assert.strictEqual((yield* tight.snapshot(K, "flash")).limit, 1)
    }))

  it.effect("invalid caps are a defect at make", () =>
    Effect.gen(function*() {
      for (const caps of [{ standard: 0 }, { standard: 2.5 }, { standard: Number.NaN }, { nope: 3 }]) {
        const exit = yield* Effect.exit(Effect.scoped(CL.make({ caps: caps as CL.Options["caps"] })))
        assert.isTrue(isDie(exit), JSON.stringify(caps))
      }
    }))
})

describe("ConcurrencyLimiter.reconfigure", () => {
  it.effect("lowering a cap from 10 to 3 cancels nothing and grants nothing until in-flight is below 3", () =>
    Effect.gen(function*() {
      const grants: Array<readonly [number, number]> = []
      const limiter = yield* CL.make({
        plan: { standard: 10 },
        caps: { standard: 10 },
        onOccupancy: (o, change) => {
          if (change === "granted" || change === "dispatched") grants.push([o.inFlight, o.limit])
        }
      })
      const c = crowd(limiter, { key: K, pool: "standard" })
      for (let i = 0; i < 30; i++) yield* c.start
      yield* settle
      assert.strictEqual(c.running.size, 10)
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 20)
      yield* limiter.reconfigure({ plan: { standard: 10 }, caps: { standard: 3 } })
      yield* settle
      const lowered = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([lowered.limit, lowered.cap, lowered.inFlight, lowered.queueDepth], [3, 3, 10, 20])
      assert.strictEqual(c.running.size, 10) // every permit in flight still runs
      grants.length = 0
      // Releases down to 3 in flight grant nothing.
      for (let i = 0; i < 7; i++) {
        yield* c.open(i)
        yield* settle
        assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 20, `after release ${i}`)
      }
      assert.strictEqual(grants.length, 0)
      // From then on, each release hands one permit on, and never more than 3 run.
      let finished = 7
      while (finished < 30) {
        const next = Math.min(...c.running)
        yield* c.open(next)
        yield* settle
        finished++
        const snap = yield* limiter.snapshot(K, "standard")
        assert.isAtMost(snap.inFlight, 3)
        assert.isAtMost(c.running.size, 3)
      }
      assert.strictEqual(grants.length, 20)
      for (const [inFlight, limit] of grants) assert.isAtMost(inFlight, limit)
      for (const f of c.fibers) assert.strictEqual(reasonTag(yield* Fiber.join(f)), "ok")
      const end = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([end.inFlight, end.queueDepth], [0, 0])
    }))

  it.effect("raising or removing a cap hands permits to queued callers at once", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 10 }, caps: { standard: 2 } })
      const c = crowd(limiter, { key: K, pool: "standard" })
      for (let i = 0; i < 12; i++) yield* c.start
      yield* settle
      assert.strictEqual(c.running.size, 2)
      yield* limiter.reconfigure({ plan: { standard: 10 }, caps: { standard: 5 } })
      yield* settle
      assert.strictEqual(c.running.size, 5) // no release, no clock: the raise alone dispatched them
      const raised = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([raised.limit, raised.inFlight, raised.queueDepth], [5, 5, 7])
      yield* limiter.reconfigure({ plan: { standard: 10 } })
      yield* settle
      const free = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([free.limit, free.cap, free.inFlight, free.queueDepth], [10, undefined, 10, 2])
      yield* c.openAll
      for (const f of c.fibers) assert.strictEqual(reasonTag(yield* Fiber.join(f)), "ok")
    }))

  it.effect("invalid options die and change nothing: limits, caps, queue timeout", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "pro", caps: { standard: 4 }, queueTimeout: "10 seconds" })
      const before = yield* limiter.snapshot(K, "standard")
      const invalid: ReadonlyArray<CL.Options> = [
        { plan: "free", caps: { standard: 0 } },
        { plan: "free", caps: { standard: 2.5 } },
        { plan: "free", caps: { bogus: 2 } as CL.Options["caps"] },
        { plan: "free", caps: { standard: 2 }, decreaseFactor: 1.5 },
        { plan: "free", caps: { standard: 2 }, queueTimeout: "1 second", minLimit: 0 },
        { plan: "free", caps: { standard: 2 }, queueTimeout: "1 second", maxQueue: -1 },
        // A plan function that throws for one key: the keys before it must not have moved either.
        {
          plan: (key) => {
            if (key === "other") throw new Error("boom")
            return "free"
          },
          caps: { standard: 2 }
        }
      ]
      yield* limiter.snapshot("other", "standard")
      for (const options of invalid) {
        const exit = yield* Effect.exit(limiter.reconfigure(options))
        assert.isTrue(isDie(exit), JSON.stringify(options))
        assert.deepStrictEqual(yield* limiter.snapshot(K, "standard"), before)
      }
      // The queue timeout is still 10 s.
      const c = crowd(limiter, { key: K, pool: "standard" })
      for (let i = 0; i < 5; i++) yield* c.start
      yield* settle
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(reasonTag(yield* Fiber.join(c.fibers[4]!)), "QueueTimeout")
      yield* c.openAll
    }))

  it.effect("publishes LimitChanged with reason config; the same options again change nothing", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: "pro" })
      yield* limiter.snapshot(K, "standard")
      yield* limiter.snapshot(K, "flash")
      const collected = yield* Effect.forkChild(Stream.runCollect(Stream.take(limiter.events, 3)))
      yield* settle
      yield* limiter.reconfigure({ plan: "pro" }) // nothing moves: no event
      yield* limiter.reconfigure({ plan: "pro", caps: { standard: 4 } }) // standard 10 -> 4
      yield* limiter.reconfigure({ plan: "creator", caps: { standard: 4 } }) // flash 20 -> 10 (standard stays 4)
      const events = Array.from(yield* Fiber.join(collected)).map((e) =>
        e._tag === "LimitChanged" ? [e.pool, e.from, e.to, e.ceiling, e.cap, e.reason, e.reasons] : [e._tag]
      )
      assert.deepStrictEqual(events, [
        ["standard", 10, 4, 10, 4, "config", ["config"]],
        ["standard", 4, 4, 5, 4, "config", ["config"]], // the ceiling moved (pro 10 -> creator 5)
        ["flash", 20, 10, 10, undefined, "config", ["config"]]
      ])
    }))

  it.effect("plan changes: a raise adds the difference, a cut clamps, unknown and unchanged plans keep what was learned", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 5 } })
      yield* limiter.onConcurrencyLimited(K, "standard") // 4.5: 4 permits
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 4)
      yield* limiter.reconfigure({ plan: { standard: 8 } }) // +3
      assert.closeTo((yield* limiter.snapshot(K, "standard")).estimate, 7.5, 1e-9)
      yield* limiter.reconfigure({ plan: "unknown" })
      const kept = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([kept.limit, kept.ceiling], [7, 8])
      yield* limiter.reconfigure({ plan: { standard: 3 } })
      assert.deepStrictEqual((yield* limiter.snapshot(K, "standard")).limit, 3)
      // The server said 12 (an upgrade): the same plan number again does not undo it.
      yield* limiter.onResponse(K, "standard", { maximumConcurrentRequests: 12 })
      yield* limiter.reconfigure({ plan: { standard: 3 }, queueTimeout: "30 seconds" })
      const taught = yield* limiter.snapshot(K, "standard")
      assert.deepStrictEqual([taught.limit, taught.ceiling], [12, 12])
      // A pool the plan gives no number keeps learning; new bounds hold at once; initialLimit is for new cells.
      yield* limiter.reconfigure({ plan: "unknown", initialLimit: 50 })
      assert.strictEqual((yield* limiter.snapshot("fresh", "stt")).limit, 50)
      yield* limiter.reconfigure({ plan: "unknown", initialLimit: 50, maxLimit: 20 })
      assert.strictEqual((yield* limiter.snapshot("fresh", "stt")).limit, 20)
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).limit, 12) // a known ceiling is not maxLimit's
    }))

  it.effect("queueTimeout and maxQueue apply to callers queued afterwards; queued callers keep their deadline", () =>
    Effect.gen(function*() {
      const limiter = yield* CL.make({ plan: { standard: 1 }, queueTimeout: "10 seconds" })
      const c = crowd(limiter, { key: K, pool: "standard" })
      yield* c.start // runs
      yield* c.start // queued under the 10 s timeout
      yield* c.start
      yield* settle
      yield* limiter.reconfigure({ plan: { standard: 1 }, queueTimeout: "2 seconds", maxQueue: 2 })
      yield* c.start // refused: the queue holds 2, the new bound (the two queued before stay)
      yield* settle
      assert.strictEqual(reasonTag(yield* Fiber.join(c.fibers[3]!)), "QueueFull")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 2)
      yield* limiter.reconfigure({ plan: { standard: 1 }, queueTimeout: "2 seconds", maxQueue: 3 })
      yield* c.start // queued under the 2 s timeout
      yield* settle
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(reasonTag(yield* Fiber.join(c.fibers[4]!)), "QueueTimeout")
      assert.strictEqual((yield* limiter.snapshot(K, "standard")).queueDepth, 2)
      yield* TestClock.adjust(Duration.seconds(8))
      assert.strictEqual(reasonTag(yield* Fiber.join(c.fibers[1]!)), "QueueTimeout")
      assert.strictEqual(reasonTag(yield* Fiber.join(c.fibers[2]!)), "QueueTimeout")
      yield* c.openAll
    }))

  const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
  const Op = Schema.Union([
    Schema.TaggedStruct("Acquire", { lane: Int(0, 2), count: Int(1, 4) }),
    Schema.TaggedStruct("Release", { pick: Int(0, 1000) }),
    Schema.TaggedStruct("Reconfigure", {
      cap: Schema.optionalKey(Int(1, 5)),
      plan: Schema.optionalKey(Int(1, 6)),
      maxQueue: Int(0, 8)
    }),
    Schema.TaggedStruct("Response", { maximum: Int(1, 8), current: Schema.optionalKey(Int(0, 10)) }),
    Schema.TaggedStruct("Limited", { limit: Schema.optionalKey(Int(1, 8)) }),
    Schema.TaggedStruct("Tick", { seconds: Int(1, 3) })
  ])

  it.effect.prop(
    "under any reconfigures, grants, releases and signals, no grant finds in-flight at the permits, nor the permits above the cap",
    [Schema.Array(Op).check(Schema.isMaxLength(50))],
    ([ops]) =>
      Effect.scoped(Effect.gen(function*() {
        let cap: number | undefined = undefined
        const violations: Array<string> = []
        const limiter = yield* CL.make({
          plan: { standard: 3 },
          queueTimeout: "5 seconds",
          onOccupancy: (o, change) => {
            if (change !== "granted" && change !== "dispatched") return
            if (o.inFlight > o.limit) violations.push(`${change}: inFlight ${o.inFlight} > limit ${o.limit}`)
            if (cap !== undefined && o.limit > cap) violations.push(`${change}: limit ${o.limit} > cap ${cap}`)
          }
        })
        const laned = CL.lanes.map((lane) => crowd(limiter, { key: K, pool: "standard", lane }))
        for (const op of ops) {
          switch (op._tag) {
            case "Acquire":
              for (let i = 0; i < op.count; i++) yield* laned[op.lane]!.start
              break
            case "Release": {
              const running = laned.flatMap((c) => Array.from(c.running, (i) => [c, i] as const))
              const picked = running[op.pick % Math.max(1, running.length)]
              if (picked !== undefined) yield* picked[0].open(picked[1])
              break
            }
            case "Reconfigure":
              cap = op.cap
              yield* limiter.reconfigure({
                plan: op.plan === undefined ? "unknown" : { standard: op.plan },
                queueTimeout: "5 seconds",
                maxQueue: op.maxQueue,
                ...(op.cap === undefined ? {} : { caps: { standard: op.cap } })
              })
              break
            case "Response":
              yield* limiter.onResponse(K, "standard", {
                maximumConcurrentRequests: op.maximum,
                currentConcurrentRequests: op.current
              })
              break
            case "Limited":
              yield* limiter.onConcurrencyLimited(K, "standard", op.limit)
              break
            case "Tick":
              yield* TestClock.adjust(Duration.seconds(op.seconds))
          }
          yield* settle
          const snap = yield* limiter.snapshot(K, "standard")
          if (cap !== undefined && snap.limit > cap) violations.push(`limit ${snap.limit} > cap ${cap}`)
          const running = laned.reduce((n, c) => n + c.running.size, 0)
          if (running > snap.inFlight) violations.push(`running ${running} > inFlight ${snap.inFlight}`)
        }
        for (const c of laned) yield* c.openAll
        for (const c of laned) for (const f of c.fibers) yield* Fiber.join(f)
        const end = yield* limiter.snapshot(K, "standard")
        assert.deepStrictEqual([end.inFlight, end.queueDepth], [0, 0])
        assert.deepStrictEqual(violations, [])
      })),
    { arbitrary: { runs: 150 } }
  )
})
