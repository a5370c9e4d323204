import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Schedule, Schema, Scope } from "effect"
import { Redis } from "effect/persistence"
import { afterAll, beforeAll } from "vitest"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
import { keysOf } from "../../src/distributed/RedisPermitsLua.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"
import { layerAll } from "./layers.ts"

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
})

let n = 0
const freshKey = () => `acct-${++n}`

/** Polls `read` until `done` holds; fails after 10 seconds. */
const eventually = <A, E, R>(read: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  read.pipe(Effect.repeat({ schedule: Schedule.spaced("5 millis"), until: done }), Effect.timeout("10 seconds"))

const withPermits = <A, E>(
  f: (p: RedisPermits.RedisPermits["Service"]) => Effect.Effect<A, E, Scope.Scope | Redis.Redis>
) =>
  Effect.gen(function*() {
    const permits = yield* RedisPermits.RedisPermits
    return yield* f(permits)
  }).pipe(Effect.scoped, Effect.provide(layerAll(server.url)))

describe("RedisPermits", () => {
  it.live("N fibers never exceed the shared limit, and every permit comes back", () =>
    withPermits((permits) =>
      Effect.gen(function*() {
        const key = freshKey()
        yield* permits.setLimit(key, "standard", 3)
        let inFlight = 0
        let max = 0
        const one = Effect.scoped(Effect.gen(function*() {
          const permit = yield* permits.acquire({ key, pool: "standard", timeout: "10 seconds" })
          assert.strictEqual(permit.source, "shared")
          inFlight++
          max = Math.max(max, inFlight)
          yield* Effect.sleep("15 millis")
          inFlight--
        }))
        yield* Effect.all(Array.from({ length: 24 }, () => one), { concurrency: "unbounded", discard: true })
        assert.strictEqual(max, 3)
        const snap = yield* permits.snapshot(key, "standard")
        assert.strictEqual(snap.held, 0)
        assert.strictEqual(snap.queued, 0)
        assert.strictEqual(snap.limit, 3)
      })
    ))

  it.live("a timeout fails typed and leaves no ticket; interruption leaves no ticket", () =>
    withPermits((permits) =>
      Effect.gen(function*() {
        const key = freshKey()
        yield* permits.setLimit(key, "flash", 1)
        const scope = yield* Scope.make()
        yield* permits.acquire({ key, pool: "flash" }).pipe(Scope.provide(scope))
        const error = yield* Effect.flip(Effect.scoped(permits.acquire({ key, pool: "flash", timeout: "100 millis" })))
        assert.strictEqual(error.reason._tag, "AcquireTimeout")
        assert.strictEqual((yield* permits.snapshot(key, "flash")).queued, 0)

        const waiter = yield* Effect.forkChild(
          Effect.scoped(permits.acquire({ key, pool: "flash", timeout: "10 seconds" }))
        )
        yield* eventually(permits.snapshot(key, "flash"), (s) => s.queued === 1)
        yield* Fiber.interrupt(waiter)
        const snap = yield* permits.snapshot(key, "flash")
        assert.strictEqual(snap.queued, 0)
        assert.strictEqual(snap.held, 1)
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual((yield* permits.snapshot(key, "flash")).held, 0)
      })
    ))

  it.live("waiters are served first come, first served", () =>
    withPermits((permits) =>
      Effect.gen(function*() {
        const key = freshKey()
        yield* permits.setLimit(key, "stt", 1)
        const order: Array<number> = []
        const holder = yield* Scope.make()
        yield* permits.acquire({ key, pool: "stt" }).pipe(Scope.provide(holder))
        const fibers: Array<Fiber.Fiber<void, unknown>> = []
        for (let i = 0; i < 5; i++) {
          fibers.push(
            yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
              yield* permits.acquire({ key, pool: "stt", timeout: "10 seconds" })
              order.push(i)
              yield* Effect.sleep("5 millis")
            })))
          )
          // Each one is queued before the next arrives.
          yield* eventually(permits.snapshot(key, "stt"), (s) => s.queued === i + 1)
        }
        yield* Scope.close(holder, Exit.void)
        yield* Fiber.joinAll(fibers)
        assert.deepStrictEqual(order, [0, 1, 2, 3, 4])
      })
    ))

  it.live("a permit held longer than its lease is renewed, not lost", () =>
    withPermits((permits) =>
      Effect.gen(function*() {
        const key = freshKey()
        yield* permits.setLimit(key, "music", 1)
        const redis = yield* Redis.Redis
        const [holders] = keysOf("elevenlabs-resilience:permits:", key, "music")
        const redisNow = Effect.map(redis.send<[string, string]>("TIME"), ([s, us]) =>
          Number(s) * 1000 + Math.floor(Number(us) / 1000))
        yield* Effect.scoped(Effect.gen(function*() {
          const permit = yield* permits.acquire({ key, pool: "music" })
          // Wait (on Redis's clock) until the first lease (1.5 s) is over: only renewals keep the permit.
          const firstExpiry = Number(yield* redis.send<string>("ZSCORE", holders, permit.id))
          yield* eventually(redisNow, (now) =>
            now > firstExpiry)
          assert.strictEqual((yield* permits.snapshot(key, "music")).held, 1)
          assert.isAbove(Number(yield* redis.send<string>("ZSCORE", holders, permit.id)), firstExpiry)
          const other = yield* Effect.flip(Effect.scoped(permits.acquire({ key, pool: "music", timeout: "50 millis" })))
          assert.strictEqual(other.reason._tag, "AcquireTimeout")
        }))
        assert.strictEqual((yield* permits.snapshot(key, "music")).held, 0)
      })
    ))

  it.live("the shared AIMD limit: concurrent decreases and increases are atomic", () =>
    withPermits((permits) =>
      Effect.gen(function*() {
        const key = freshKey()
        const set = yield* permits.setLimit(key, "standard", 100)
        assert.strictEqual(set.limit, 100)
        yield* Effect.all(Array.from({ length: 10 }, () => permits.onConcurrencyLimited(key, "standard")), {
          concurrency: "unbounded",
          discard: true
        })
        const after = yield* permits.limit(key, "standard")
        assert.closeTo(after.estimate, 100 * 0.9 ** 10, 1e-6)
        assert.strictEqual(after.limit, 34)
        // The server's number becomes the ceiling (a lower plan explains the 429 without an extra cut).
        yield* permits.onConcurrencyLimited(key, "standard", 10)
        assert.strictEqual((yield* permits.limit(key, "standard")).limit, 10)
        // Additive increase only while saturated: with nothing held and nobody queued, a response changes nothing.
        yield* permits.onConcurrencyLimited(key, "standard")
        const cut = yield* permits.limit(key, "standard")
        assert.closeTo(cut.estimate, 9, 1e-9)
        yield* permits.onResponse(key, "standard", { maximum: 10 })
        assert.closeTo((yield* permits.limit(key, "standard")).estimate, 9, 1e-9)
        // Saturated: 9 permits held; 20 concurrent responses add 1/estimate each, capped at the ceiling.
        yield* Effect.scoped(Effect.gen(function*() {
          for (let i = 0; i < 9; i++) yield* permits.acquire({ key, pool: "standard" })
          yield* Effect.all(
            Array.from({ length: 20 }, () => permits.onResponse(key, "standard", { maximum: 10, current: 9 })),
            {
              concurrency: "unbounded",
              discard: true
            }
          )
        }))
        const grown = yield* permits.limit(key, "standard")
        assert.strictEqual(grown.estimate, 10)
        // Someone else on the key: current-concurrent-requests above what all our processes hold.
        yield* permits.onResponse(key, "standard", { maximum: 10, current: 4 })
        const shared = yield* permits.limit(key, "standard")
        assert.strictEqual(shared.others, 4)
        assert.strictEqual(shared.limit, 6)
      })
    ))

  it.live.prop(
    "property: any limit, callers, holds and give-ups: never above the limit, nothing left behind",
    [
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 })),
      Schema.Array(Schema.Struct({
        holdMillis: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 8 })),
        giveUpMillis: Schema.NullOr(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 30 })))
      })).check(Schema.isMaxLength(10))
    ],
    ([limit, callers]) =>
      withPermits((permits) =>
        Effect.gen(function*() {
          const key = freshKey()
          yield* permits.setLimit(key, "standard", limit)
          let inFlight = 0
          let max = 0
          const one = (holdMillis: number, giveUpMillis: number | null) => {
            const call = Effect.scoped(Effect.gen(function*() {
              yield* permits.acquire({ key, pool: "standard", timeout: "10 seconds" })
              max = Math.max(max, ++inFlight)
              yield* Effect.sleep(holdMillis).pipe(Effect.ensuring(Effect.sync(() => inFlight--)))
            }))
            // A caller that gives up (interruption) while queued or holding.
            return giveUpMillis === null ? call : Effect.ignore(Effect.timeout(call, giveUpMillis))
          }
          yield* Effect.all(callers.map((c) => one(c.holdMillis, c.giveUpMillis)), {
            concurrency: "unbounded",
            discard: true
          })
          assert.isAtMost(max, limit)
          const snap = yield* permits.snapshot(key, "standard")
          assert.strictEqual(snap.held, 0)
          assert.strictEqual(snap.queued, 0)
        })
      ),
    { timeout: 30_000, arbitrary: { runs: 15 } }
  )

  it.live("bad input is a typed error", () =>
    withPermits((permits) =>
      Effect.gen(function*() {
        const e1 = yield* Effect.flip(Effect.scoped(permits.acquire({ key: "", pool: "standard" })))
        assert.strictEqual(e1.reason._tag, "InvalidDistributedRequest")
        const e2 = yield* Effect.flip(permits.setLimit("k", "standard", 0))
        assert.strictEqual(e2.reason._tag, "InvalidDistributedRequest")
      })
    ))
})
