/**
 * The concurrency pools and the server-side queue: at the module (`Pools.make`),
 * and through the model (`Simulator.handle`, virtual time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Pools from "../../src/simulator/Pools.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { call, runAll, ttsRequest } from "./support.ts"

describe("Pools", () => {
  const make = (options: Partial<{ maxSamples: number; queue: Pools.QueueOptions; systemCapacity: number }> = {}) =>
    Pools.make({
      maxSamples: options.maxSamples ?? 100,
      queue: options.queue ?? { depth: 0, maxWaitMs: 0 },
      systemCapacity: options.systemCapacity,
      startMs: 0
    })

  it.effect("admit takes a free slot, refuses past the limit without a queue, and release gives the slot back", () =>
    Effect.gen(function*() {
      const pools = make()
      const pool = pools.open(1)
      assert.isTrue(yield* pools.admit(pool))
      assert.isFalse(yield* pools.admit(pool))
      yield* pools.release(pool)
      assert.isTrue(yield* pools.admit(pool))
      const { samples: _, ...record } = Pools.stats(pool)
      assert.deepStrictEqual(record, {
        inFlight: 1,
        maxInFlight: 1,
        limit: 1,
        queued: 0,
        maxQueued: 0,
        admitted: 2,
        rejected: 1
      })
    }))

  it.effect("waiters get freed slots first come first served, and give up after maxWaitMs", () =>
    Effect.gen(function*() {
      const pools = make({ queue: { depth: 2, maxWaitMs: 1000 } })
      const pool = pools.open(1)
      assert.isTrue(yield* pools.admit(pool))
      const first = yield* Effect.forkChild(pools.admit(pool))
      yield* TestClock.adjust(1)
      const second = yield* Effect.forkChild(pools.admit(pool))
      yield* TestClock.adjust(1)
      assert.isFalse(yield* pools.admit(pool)) // the queue is full
      assert.deepStrictEqual([pool.queue.length, pool.maxQueued], [2, 2])
      yield* pools.release(pool)
      assert.isTrue(yield* Fiber.join(first))
      yield* TestClock.adjust(1000)
      assert.isFalse(yield* Fiber.join(second))
      assert.deepStrictEqual([pool.inFlight, pool.queue.length, pool.admitted, pool.rejected], [1, 0, 2, 2])
    }))

  it.effect("a raised limit hands free slots to the waiters at once (drain)", () =>
    Effect.gen(function*() {
      const pools = make({ queue: { depth: 5, maxWaitMs: 60_000 } })
      const pool = pools.open(1)
      yield* pools.admit(pool)
      const waiters = yield* Effect.forEach([1, 2], () => Effect.forkChild(pools.admit(pool)))
      yield* TestClock.adjust(1)
      pool.limit = 3
      pools.drain(pool, 1)
      assert.deepStrictEqual(yield* Effect.forEach(waiters, Fiber.join), [true, true])
      assert.strictEqual(pool.inFlight, 3)
    }))

  it.effect("samples: one per instant, the last maxSamples kept", () =>
    Effect.gen(function*() {
      const pools = make({ maxSamples: 3 })
      const pool = pools.open(10)
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust(10)
        yield* pools.admit(pool)
      }
      yield* pools.admit(pool) // the same instant: the last sample is replaced
      assert.deepStrictEqual(pool.samples, [{ t: 30, inFlight: 3 }, { t: 40, inFlight: 4 }, { t: 50, inFlight: 6 }])
      Pools.resetStats(pool, 60)
      assert.deepStrictEqual([pool.samples, pool.admitted, pool.maxInFlight], [[{ t: 60, inFlight: 6 }], 0, 6])
    }))

  it.effect("the system capacity counts every pool's in-flight; null lifts it; summary takes sums and maxima", () =>
    Effect.gen(function*() {
      const pools = make({ systemCapacity: 2 })
      const a = pools.open(3)
      const b = pools.open(5)
      yield* pools.admit(a)
      assert.isFalse(pools.full())
      yield* pools.admit(b)
      assert.isTrue(pools.full())
      pools.configure({ systemCapacity: null })
      assert.isFalse(pools.full())
      yield* pools.admit(b)
      assert.deepStrictEqual(Pools.summary([a, b]), {
        inFlight: 3,
        maxInFlight: 2,
        limit: 5,
        queued: 0,
        maxQueued: 0,
        admitted: 3,
        rejected: 0
      })
    }))
})

describe("Pools in the model", () => {
  it.effect.prop(
    "without a queue, in-flight per pool never exceeds the limit; every request gets 200 or 429",
    [
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 })),
      Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 400 }))).check(Schema.isMaxLength(20)),
      Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 }))
    ],
    ([limit, lengths, seed]) =>
      Effect.gen(function*() {
        const sim = yield* Simulator.make({ seed, apiKeys: [{ key: "sim-key", limits: { standard: limit } }] })
        const answers = yield* runAll(
          lengths.map((n, i) =>
            Effect.flatMap(Effect.sleep((i * 13) % 200), () => call(sim, ttsRequest("a".repeat(n))))
          ),
          20
        )
        const stats = yield* sim.stats
        const pool = stats.accounts["key1"]!.pools.standard
        assert.isTrue(pool.maxInFlight <= limit)
        for (const s of pool.samples) assert.isTrue(s.inFlight <= limit)
        assert.strictEqual(pool.inFlight, 0)
        for (const a of answers) assert.include([200, 429], a.status)
        assert.strictEqual(answers.filter((a) => a.status === 200).length, pool.admitted)
      }),
    { arbitrary: { runs: 40 } }
  )
  it.effect.prop(
    "with a queue and callers that give up at random, no slot or queue place is left behind",
    [
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 3 })),
      Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 4 })),
      Schema.Array(Schema.Struct({
        chars: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 300 })),
        at: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2000 })),
        giveUpAfter: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4000 }))
      })).check(Schema.isMaxLength(16))
    ],
    ([limit, depth, calls]) =>
      Effect.gen(function*() {
        const sim = yield* Simulator.make({
          apiKeys: [{ key: "sim-key", limits: { standard: limit } }],
          queue: { depth, maxWaitMs: 1500 },
          faults: { hang: 0.1, streamCut: 0.1 }
        })
        yield* runAll(
          calls.map((c) =>
            call(sim, ttsRequest("p".repeat(c.chars))).pipe(
              Effect.delay(c.at),
              Effect.timeoutOption(c.at + c.giveUpAfter)
            )
          ),
          25
        )
        const pool = (yield* sim.stats).accounts["key1"]!.pools.standard
        assert.strictEqual(pool.inFlight, 0)
        assert.strictEqual(pool.queued, 0)
        assert.isTrue(pool.maxInFlight <= limit)
        assert.isTrue(pool.maxQueued <= depth)
      }),
    { arbitrary: { runs: 40 } }
  )
  it.effect("a queue holds requests past the limit until a slot frees, then times out to a 429", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        apiKeys: [{ key: "sim-key", limits: { standard: 1 } }],
        queue: { depth: 2, maxWaitMs: 5_000 },
        latency: { standard: { ttfbMs: 100, msPerUnit: 10, jitter: 0 } }
      })
      // 100 chars: 100 + 1000 ms each. Four at once: one runs, two queue, one is refused.
      const answers = yield* runAll(Array.from({ length: 4 }, () => call(sim, ttsRequest("q".repeat(100)))), 10)
      assert.deepStrictEqual(answers.map((a) => a.status).sort(), [200, 200, 200, 429])
      let stats = yield* sim.stats
      assert.strictEqual(stats.pools.standard.maxQueued, 2)
      assert.strictEqual(stats.pools.standard.maxInFlight, 1)
      // 4000 chars take 40 s: the queued ones give up after 5 s.
      const slow = yield* runAll([
        call(sim, ttsRequest("s".repeat(4000))),
        Effect.flatMap(Effect.sleep(10), () => call(sim, ttsRequest("t"))),
        Effect.flatMap(Effect.sleep(10), () => call(sim, ttsRequest("u")))
      ], 100)
      assert.deepStrictEqual(slow.map((a) => a.status), [200, 429, 429])
      stats = yield* sim.stats
      assert.strictEqual(stats.pools.standard.queued, 0)
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"], 3)
    }))
  it.effect("an interrupted queued request leaves no place behind", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        apiKeys: [{ key: "sim-key", limits: { standard: 1 } }],
        queue: { depth: 5, maxWaitMs: 60_000 }
      })
      const holder = yield* Effect.forkChild(call(sim, ttsRequest("h".repeat(1000))))
      yield* TestClock.adjust(1)
      const waiter = yield* Effect.forkChild(call(sim, ttsRequest("w")))
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* sim.stats).pools.standard.queued, 1)
      yield* Fiber.interrupt(waiter)
      assert.strictEqual((yield* sim.stats).pools.standard.queued, 0)
      yield* TestClock.adjust(60_000)
      const done = yield* Fiber.join(holder)
      assert.strictEqual(done.status, 200)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 0)
    }))
  it.effect("a limit lowered mid-run (20 -> 10) refuses new requests until in-flight drops below it", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ latency: { flash: { ttfbMs: 10, msPerUnit: 10, jitter: 0 } } })
      const streams = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () =>
          sim.handle(ttsRequest("f".repeat(100), { model: "eleven_flash_v2_5", path: "/stream" })).pipe(
            Effect.forkChild
          )
      )
      yield* TestClock.adjust(20)
      const outcomes = yield* Effect.forEach(streams, Fiber.join)
      assert.strictEqual((yield* sim.stats).pools.flash.inFlight, 20)
      yield* sim.setLimit("flash", 10)
      const [refused] = yield* runAll([call(sim, ttsRequest("r", { model: "eleven_flash_v2_5" }))])
      assert.strictEqual(refused!.status, 429)
      assert.match(refused!.json.detail.message, /maximum of 10 concurrent requests/)
      // Drain the held bodies: the slots come back, and new requests get in again.
      yield* runAll(
        outcomes.map((o) => o._tag === "Respond" ? Stream.runDrain(o.body).pipe(Effect.orDie) : Effect.void),
        100
      )
      const [ok] = yield* runAll([call(sim, ttsRequest("r", { model: "eleven_flash_v2_5" }))])
      assert.strictEqual(ok!.status, 200)
      assert.strictEqual(ok!.headers["maximum-concurrent-requests"], "10")
    }))
})
