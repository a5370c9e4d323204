import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as RedisQuota from "../../src/distributed/RedisQuota.ts"
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
/** Each test its own account; `processes` stores on it, as separate processes would have. */
const withStores = <A, E>(
  processes: number,
  f: (stores: ReadonlyArray<RedisQuota.RedisQuota["Service"]>) => Effect.Effect<A, E, Scope.Scope>
) => {
  const account = `acct-${++n}`
  const one = Effect.gen(function*() {
    return yield* RedisQuota.RedisQuota
  })
  return Effect.gen(function*() {
    const stores: Array<RedisQuota.RedisQuota["Service"]> = []
    for (let i = 0; i < processes; i++) {
      const context = yield* Layer.build(layerAll(server.url, { quota: { account } }))
      stores.push(yield* Effect.provide(one, context))
    }
    return yield* f(stores)
  }).pipe(Effect.scoped)
}

/** Polls `check` on the real clock until it holds (or fails the test after `within`). */
const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, within = 5_000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < within; waited += 25) {
      if (yield* check) return
      yield* Effect.sleep("25 millis")
    }
    return assert.fail(`not within ${within} ms: ${what}`)
  })

/** Waits until Redis's own clock (what leases and reset times are judged by) reaches `at`. */
const untilRedisTime = (store: RedisQuota.RedisQuota["Service"], at: number) =>
  eventually(`Redis time ${at}`, Effect.map(store.status, (s) => s.now >= at))

describe("RedisQuota", () => {
  it.live("concurrent reservations from several stores never overspend", () =>
    withStores(3, (stores) =>
      Effect.gen(function*() {
        yield* stores[0]!.sync({ used: 0, limit: 1000 })
        const results = yield* Effect.all(
          Array.from({ length: 90 }, (_, i) => stores[i % 3]!.reserve({ cost: 30 })),
          { concurrency: "unbounded" }
        )
        const reserved = results.filter((r) => r._tag === "Reserved")
        assert.strictEqual(reserved.length, 33) // floor(1000 / 30)
        assert.isTrue(results.filter((r) => r._tag !== "Reserved").every((r) => r._tag === "Insufficient"))
        const status = yield* stores[1]!.status
        assert.strictEqual(status.reserved, 990)
        assert.strictEqual(status.remaining, 10)
        // Commit half (actual cost 20), release the rest: used = 16 * 20 + ..., reserved back to 0.
        yield* Effect.forEach(reserved, (r, i) =>
          r._tag === "Reserved"
            ? (i % 2 === 0 ? stores[i % 3]!.commit(r.id, 20) : stores[i % 3]!.release(r.id))
            : Effect.void, {
          concurrency: "unbounded"
        })
        const after = yield* stores[2]!.status
        assert.strictEqual(after.reserved, 0)
        assert.strictEqual(after.reservations, 0)
        assert.strictEqual(after.used, 17 * 20)
      })))

  it.live("scoped reservations: released at scope close, committed once, renewed while held", () =>
    withStores(1, ([store]) =>
      Effect.gen(function*() {
        yield* store!.sync({ used: 100, limit: 200 })
        const scope = yield* Scope.make()
        const r = yield* store!.reserveScoped({ cost: 50 }).pipe(Scope.provide(scope))
        assert.strictEqual(r._tag, "Reserved")
        // Held past its first lease (1.5 s from the reservation, by Redis time): the renewal keeps it.
        const reservedBy = (yield* store!.status).now
        yield* untilRedisTime(store!, reservedBy + 1500 + 100)
        assert.strictEqual((yield* store!.status).reserved, 50)
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual((yield* store!.status).reserved, 0)

        yield* Effect.scoped(Effect.gen(function*() {
          const c = yield* store!.reserveScoped({ cost: 40 })
          if (c._tag !== "Reserved") return assert.fail(c._tag)
          yield* c.commit(35)
          yield* c.commit(35) // the first one wins
        }))
        const s = yield* store!.status
        assert.strictEqual(s.used, 135)
        assert.strictEqual(s.reserved, 0)
      })))

  it.live("a reservation whose holder died expires with its lease", () =>
    withStores(1, ([store]) =>
      Effect.gen(function*() {
        yield* store!.sync({ used: 0, limit: 100 })
        // A raw reservation with nobody renewing it: as if its process crashed.
        const r = yield* store!.reserve({ cost: 100 })
        assert.strictEqual(r._tag, "Reserved")
        assert.strictEqual((yield* store!.reserve({ cost: 1 }))._tag, "Insufficient")
        yield* eventually("the lapsed reservation dropped", Effect.map(store!.status, (s) => s.reserved === 0))
        assert.strictEqual((yield* store!.status).reserved, 0)
        assert.strictEqual((yield* store!.reserve({ cost: 1 }))._tag, "Reserved")
        // A late commit still counts what was spent.
        const held = yield* store!.commit(r._tag === "Reserved" ? r.id : "", 100)
        assert.isFalse(held)
        assert.strictEqual((yield* store!.status).used, 100)
      })))

  it.live("the exhausted state is shared, and ends by a reading that started after the mark", () =>
    withStores(2, ([a, b]) =>
      Effect.gen(function*() {
        yield* a!.sync({ used: 10, limit: 100 })
        const before = (yield* b!.status).markSeq
        yield* a!.markExhausted()
        const r = yield* b!.reserve({ cost: 1 })
        assert.strictEqual(r._tag, "Exhausted")
        // A reading from a fetch that started before the mark does not end it.
        yield* b!.sync({ used: 10, limit: 100, markSeqAtStart: before })
        assert.strictEqual((yield* b!.reserve({ cost: 1 }))._tag, "Exhausted")
        // One that started after does.
        const seq = (yield* b!.status).markSeq
        yield* b!.sync({ used: 10, limit: 100, markSeqAtStart: seq })
        assert.strictEqual((yield* a!.reserve({ cost: 1 }))._tag, "Reserved")
        // With a reset time, it ends there.
        const status = yield* a!.status
        yield* a!.markExhausted({ resetAt: status.now + 300 })
        const ex = yield* b!.reserve({ cost: 1 })
        assert.strictEqual(ex._tag, "Exhausted")
        if (ex._tag === "Exhausted") assert.isAtMost(ex.retryAfterMillis ?? 0, 300)
        yield* eventually("the mark's reset time passed", Effect.map(b!.status, (s) => s.exhausted === undefined))
        assert.strictEqual((yield* b!.reserve({ cost: 1 }))._tag, "Reserved")
        // The answer's own numbers replace the shared ones.
        yield* b!.markExhausted({ used: 95, limit: 100 })
        const marked = yield* a!.status
        assert.strictEqual(marked.used, 95)
        assert.isDefined(marked.exhausted)
      })))

  it.live("per-key caps, unknown quota, rollover at resetAt, bad input", () =>
    withStores(1, ([store]) =>
      Effect.gen(function*() {
        assert.strictEqual((yield* store!.reserve({ cost: 1 }))._tag, "Unknown")
        const now = (yield* store!.status).now
        yield* store!.sync({ used: 0, limit: 1000, resetAt: now + 500 })
        const r1 = yield* store!.reserve({ cost: 60, keyId: "k1", keyCap: 100 })
        assert.strictEqual(r1._tag, "Reserved")
        const r2 = yield* store!.reserve({ cost: 50, keyId: "k1", keyCap: 100 })
        assert.strictEqual(r2._tag, "KeyCapExceeded")
        if (r1._tag === "Reserved") yield* store!.commit(r1.id, 60)
        assert.deepStrictEqual((yield* store!.status).keys, [{ keyId: "k1", used: 60, reserved: 0 }])
        yield* untilRedisTime(store!, now + 500)
        const rolled = yield* store!.status
        assert.strictEqual(rolled.used, 0)
        assert.strictEqual(rolled.resetAt, undefined)
        assert.strictEqual((yield* store!.reserve({ cost: 90, keyId: "k1", keyCap: 100 }))._tag, "Reserved")
        const bad = yield* Effect.flip(store!.reserve({ cost: -1 }))
        assert.strictEqual(bad.reason._tag, "InvalidDistributedRequest")
        const badSync = yield* Effect.flip(store!.sync({ used: Number.NaN, limit: 1 }))
        assert.strictEqual(badSync.reason._tag, "InvalidDistributedRequest")
      })))

  it.live("an interrupted scoped reservation leaves nothing reserved", () =>
    withStores(1, ([store]) =>
      Effect.gen(function*() {
        yield* store!.sync({ used: 0, limit: 100 })
        const fiber = yield* Effect.forkChild(
          Effect.scoped(Effect.andThen(store!.reserveScoped({ cost: 10 }), Effect.never))
        )
        yield* eventually("the reservation held", Effect.map(store!.status, (s) => s.reserved === 10))
        assert.strictEqual((yield* store!.status).reserved, 10)
        yield* Fiber.interrupt(fiber)
        assert.strictEqual((yield* store!.status).reserved, 0)
      })))
})
