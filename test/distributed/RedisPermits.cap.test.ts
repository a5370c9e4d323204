/**
 * The shared hard cap of `RedisPermits` (`setCap`), against a real redis-server: every process respects it,
 * removing it restores the adaptive limit, and the local share of an outage stays under it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as RedisMode from "../../src/distributed/RedisMode.ts"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
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
const freshKey = () => `cap-${++n}`

/** A client of its own (connections, process id), as another process would have. */
const client = (options?: Parameters<typeof layerAll>[1]) =>
  Effect.map(Layer.build(layerAll(server.url, options)), (context) => ({
    permits: Context.get(context, RedisPermits.RedisPermits),
    mode: Context.get(context, RedisMode.RedisMode)
  }))

/** Runs `calls` acquire-hold-release calls on each client at once; returns the most held at once across all. */
const crowd = (clients: ReadonlyArray<RedisPermits.RedisPermits["Service"]>, key: string, calls: number) =>
  Effect.gen(function*() {
    let inFlight = 0
    let max = 0
    const limits: Array<number> = []
    const one = (permits: RedisPermits.RedisPermits["Service"]) =>
      Effect.scoped(Effect.gen(function*() {
        const permit = yield* permits.acquire({ key, pool: "standard", timeout: "20 seconds" })
        limits.push(permit.limit)
        max = Math.max(max, ++inFlight)
        yield* Effect.sleep("20 millis").pipe(Effect.ensuring(Effect.sync(() => inFlight--)))
      }))
    yield* Effect.all(clients.flatMap((c) => Array.from({ length: calls }, () => one(c))), {
      concurrency: "unbounded",
      discard: true
    })
    return { max, limits }
  })

describe("RedisPermits.setCap", () => {
  it.live("two clients share a cap of 2: never more than 2 held across both; removing it restores the limit", () =>
    Effect.gen(function*() {
      const a = (yield* client()).permits
      const b = (yield* client()).permits
      const key = freshKey()
      yield* a.setLimit(key, "standard", 5)
      const capped = yield* a.setCap(key, "standard", 2)
      assert.deepStrictEqual(capped, { estimate: 5, ceiling: 5, others: 0, limit: 2, cap: 2 })
      assert.deepStrictEqual(yield* b.limit(key, "standard"), capped)

      const first = yield* crowd([a, b], key, 8)
      assert.strictEqual(first.max, 2)
      assert.isTrue(first.limits.every((l) => l === 2))

      // A bigger plan announced by the server moves the ceiling and the estimate, not the permits.
      yield* b.onResponse(key, "standard", { maximum: 12 })
      const learned = yield* a.limit(key, "standard")
      assert.deepStrictEqual([learned.ceiling, learned.estimate, learned.limit, learned.cap], [12, 12, 2, 2])
      assert.isAtMost((yield* crowd([a, b], key, 6)).max, 2)

      // Removed (by the other client): the learned limit is back, for both.
      const free = yield* b.setCap(key, "standard", undefined)
      assert.deepStrictEqual(free, { estimate: 12, ceiling: 12, others: 0, limit: 12 })
      assert.deepStrictEqual(yield* a.limit(key, "standard"), free)
      const second = yield* crowd([a, b], key, 8)
      assert.isAbove(second.max, 2)
      assert.isAtMost(second.max, 12)
      const snap = yield* a.snapshot(key, "standard")
      assert.deepStrictEqual([snap.held, snap.queued], [0, 0])
    }).pipe(Effect.scoped))

  it.live("under a cap a 429 cuts from the permits in force; bad caps are typed errors", () =>
    Effect.gen(function*() {
      const { permits } = yield* client()
      const key = freshKey()
      yield* permits.setLimit(key, "standard", 10)
      yield* permits.setCap(key, "standard", 3)
      // A number above the cap moves the ceiling; the cut starts from the 3 permits in force (2.7).
      yield* permits.onConcurrencyLimited(key, "standard", 20)
      const cut = yield* permits.limit(key, "standard")
      assert.deepStrictEqual([cut.ceiling, cut.limit, cut.cap], [20, 2, 3])
      assert.closeTo(cut.estimate, 2.7, 1e-9)
      for (const bad of [0, 2.5, Number.NaN, -1]) {
        const error = yield* Effect.flip(permits.setCap(key, "standard", bad))
        assert.strictEqual(error.reason._tag, "InvalidDistributedRequest", String(bad))
      }
      assert.strictEqual((yield* permits.limit(key, "standard")).cap, 3)
    }).pipe(Effect.scoped))

  it.live("the local share of an outage stays under the last cap seen, a configured share included", () =>
    Effect.gen(function*() {
      const { mode, permits } = yield* client({ permits: { localShare: 5 }, mode: { mode: "local-fallback" } })
      const key = freshKey()
      yield* permits.setLimit(key, "standard", 8)
      assert.strictEqual((yield* permits.snapshot(key, "standard")).localShare, 5)
      yield* permits.setCap(key, "standard", 2)
      assert.strictEqual((yield* permits.snapshot(key, "standard")).localShare, 2)

      yield* Effect.promise(() => server.stop())
      let inFlight = 0
      let max = 0
      const sources: Array<string> = []
      const one = Effect.scoped(Effect.gen(function*() {
        const permit = yield* permits.acquire({ key, pool: "standard", timeout: "10 seconds" })
        sources.push(permit.source)
        max = Math.max(max, ++inFlight)
        yield* Effect.sleep("30 millis").pipe(Effect.ensuring(Effect.sync(() => inFlight--)))
      }))
      yield* Effect.all(Array.from({ length: 8 }, () => one), { concurrency: "unbounded", discard: true })
      assert.isTrue(sources.every((s) => s === "local-fallback"))
      assert.strictEqual(max, 2)
      assert.notStrictEqual(yield* mode.state, "shared")

      // Back in Redis (empty: persistence is off), the cap must be set again; without it the share is 5 again.
      yield* Effect.promise(() => server.start())
      yield* Effect.sleep("50 millis").pipe(
        Effect.repeat({ until: () => mode.stateUnsafe() === "shared", times: 200 })
      )
      const back = yield* permits.setCap(key, "standard", undefined)
      assert.strictEqual(back.cap, undefined)
      assert.strictEqual((yield* permits.snapshot(key, "standard")).localShare, 5)
    }).pipe(
      Effect.scoped,
      Effect.ensuring(Effect.promise(() => (server.running() ? Promise.resolve() : server.start())))
    ))
})
