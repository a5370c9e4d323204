/**
 * The shared limit's Lua (`src/distributed/RedisPermitsLua.ts`) and the pure
 * rules of `AdaptiveLimit` are the same AIMD written twice: driven with the
 * same signals they must find the same limits, to the last bit of the
 * estimate.
 *
 * How the Redis side maps onto `AdaptiveLimit`'s inputs (by design, see
 * docs/distributed.md "The shared adaptive limit"):
 * - `ours` is every permit held in Redis, across all processes;
 * - `saturated` is `held ≥ permits or tickets queued`, judged on the permits
 *   before the response moves them (as `ConcurrencyLimiter` does);
 * - a pair left idle for `idleTimeToLive` is forgotten: it starts over from
 *   `initialLimit` without a ceiling, where a local limiter keeps its state.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schedule, Schema } from "effect"
import { Redis } from "effect/persistence"
import { afterAll, beforeAll } from "vitest"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
import { keysOf } from "../../src/distributed/RedisPermitsLua.ts"
import * as AdaptiveLimit from "../../src/resilience/AdaptiveLimit.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"
import { layerAll } from "./layers.ts"

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
})

// RedisPermits' defaults are AdaptiveLimit's.
const config = AdaptiveLimit.defaultConfig
const prefix = "agreement:"
const pool = "standard"
const idleMillis = 60_000
const initials = new Map<string, number>()
let n = 0

const layer = (idleTimeToLive: number) =>
  Layer.unwrap(Effect.sync(() =>
    layerAll(server.url, {
      permits: { prefix, idleTimeToLive, initialLimit: (key) => initials.get(key) ?? 1 }
    })
  ))

/** A fresh pair of the given initial limit. */
const freshPair = (initial: number) => {
  const key = `agree-${++n}`
  initials.set(key, initial)
  const [holders, queue, , , limit] = keysOf(prefix, key, pool)
  return { key, holders, queue, limit }
}

// Permits held (leases that never lapse) and tickets queued (without heartbeats, so purge leaves them).
const occupy = `
redis.call("DEL", KEYS[1], KEYS[2])
for i = 1, tonumber(ARGV[1]) do redis.call("ZADD", KEYS[1], "+inf", "h" .. i) end
for i = 1, tonumber(ARGV[2]) do redis.call("ZADD", KEYS[2], i, "q" .. i) end
`

const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
// Small ranges, so held often meets the limit while ceilings move around it. -1 and 0 are nonsense
// headers both sides must ignore.
const Header = Int(-1, 24)
const Step = Schema.Union([
  Schema.TaggedStruct("Response", {
    maximum: Schema.optionalKey(Header),
    current: Schema.optionalKey(Int(0, 32)),
    held: Int(0, 24),
    queued: Int(0, 2)
  }),
  Schema.TaggedStruct("ConcurrencyLimited", { limit: Schema.optionalKey(Header) }),
  Schema.TaggedStruct("SetLimit", { ceiling: Int(1, 24) })
])

const stateOf = (s: AdaptiveLimit.AdaptiveState): RedisPermits.SharedLimit => ({
  estimate: s.estimate,
  ceiling: s.ceiling,
  others: s.others,
  limit: AdaptiveLimit.permitsOf(s, config)
})

describe("RedisPermits' Lua and AdaptiveLimit agree", () => {
  it.layer(layer(idleMillis), { timeout: "30 seconds", excludeTestServices: true })((it) => {
    it.effect.prop(
      "the same signals give the same limits after every step; idle periods start over",
      // Episodes of signals, separated by idle periods longer than idleTimeToLive.
      [Int(0, 24), Schema.Array(Schema.Array(Step).check(Schema.isMaxLength(40))).check(Schema.isMaxLength(4))],
      ([initial, episodes]) =>
        Effect.gen(function*() {
          const permits = yield* RedisPermits.RedisPermits
          const redis = yield* Redis.Redis
          const pair = freshPair(initial)
          const { key } = pair
          for (const [e, steps] of episodes.entries()) {
            if (e > 0) {
              // An idle period: the pair's TTL runs out. Its length is checked; DEL stands for the wait
              // (the idle test below waits for a real one).
              const ttl = yield* redis.send<number>("PTTL", pair.limit)
              assert.isTrue(
                ttl === -2 || (ttl > 0 && ttl <= idleMillis),
                `the limit must expire when idle (PTTL ${ttl})`
              )
              yield* redis.send("DEL", pair.limit)
            }
            const model = AdaptiveLimit.make({ initial, ceiling: undefined, config })
            for (const [i, step] of steps.entries()) {
              switch (step._tag) {
                case "Response": {
                  const saturated = step.queued > 0 || step.held >= AdaptiveLimit.permitsOf(model, config)
                  AdaptiveLimit.onResponse(model, { ...step, ours: step.held, saturated }, config)
                  yield* redis.send(
                    "EVAL",
                    occupy,
                    "2",
                    pair.holders,
                    pair.queue,
                    String(step.held),
                    String(step.queued)
                  )
                  yield* permits.onResponse(key, pool, step)
                  break
                }
                case "ConcurrencyLimited": {
                  AdaptiveLimit.onConcurrencyLimited(model, step.limit, config)
                  yield* permits.onConcurrencyLimited(key, pool, step.limit)
                  break
                }
                case "SetLimit": {
                  AdaptiveLimit.setCeiling(model, step.ceiling, config)
                  yield* permits.setLimit(key, pool, step.ceiling)
                }
              }
              assert.deepStrictEqual(
                yield* permits.limit(key, pool),
                stateOf(model),
                `episode ${e}, step ${i}: ${JSON.stringify(step)}`
              )
            }
          }
        }),
      { arbitrary: { runs: 200, size: 40 } }
    )

    // Found by the property: the Lua judged saturation on the permits after the response had raised them.
    it.effect("a saturated response that raises the ceiling also grows the estimate", () =>
      Effect.gen(function*() {
        const permits = yield* RedisPermits.RedisPermits
        const redis = yield* Redis.Redis
        const pair = freshPair(5)
        const model = AdaptiveLimit.make({ initial: 5, ceiling: undefined, config })
        AdaptiveLimit.setCeiling(model, 8, config)
        AdaptiveLimit.onConcurrencyLimited(model, undefined, config) // 7.2: 7 permits
        AdaptiveLimit.onResponse(model, { maximum: 10, ours: 7, saturated: true }, config)
        yield* permits.setLimit(pair.key, pool, 8)
        yield* permits.onConcurrencyLimited(pair.key, pool)
        yield* redis.send("EVAL", occupy, "2", pair.holders, pair.queue, "7", "0")
        yield* permits.onResponse(pair.key, pool, { maximum: 10 })
        const shared = yield* permits.limit(pair.key, pool)
        assert.deepStrictEqual(shared, stateOf(model))
        assert.closeTo(shared.estimate, 9.2 + 1 / 9.2, 1e-9)
      }))
  })

  it.live("by design: an idle pair is forgotten in Redis (back to its initial limit), a local AdaptiveLimit keeps its state", () =>
    Effect.gen(function*() {
      const permits = yield* RedisPermits.RedisPermits
      const pair = freshPair(3)
      const model = AdaptiveLimit.make({ initial: 3, ceiling: undefined, config })
      AdaptiveLimit.setCeiling(model, 10, config)
      AdaptiveLimit.onConcurrencyLimited(model, undefined, config)
      yield* permits.setLimit(pair.key, pool, 10)
      yield* permits.onConcurrencyLimited(pair.key, pool)
      assert.deepStrictEqual(yield* permits.limit(pair.key, pool), stateOf(model))
      // Reads do not keep a pair alive: poll until its idle TTL (1 s) has run out.
      const initial = stateOf(AdaptiveLimit.make({ initial: 3, ceiling: undefined, config }))
      const forgotten = yield* permits.limit(pair.key, pool).pipe(
        Effect.repeat({ until: (l) => l.ceiling === undefined, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout("10 seconds")
      )
      assert.deepStrictEqual(forgotten, initial)
      assert.deepStrictEqual(stateOf(model), { estimate: 9, ceiling: 10, others: 0, limit: 9 })
    }).pipe(Effect.provide(layer(1000))))
})
