import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Schedule, Scope, Stream } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as RedisMode from "../../src/distributed/RedisMode.ts"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
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

const stop = Effect.promise(() => server.stop())
const start = Effect.promise(() => (server.running() ? Promise.resolve() : server.start()))

/** Waits (real time) until the mode reads `state`. */
const waitFor = (mode: RedisMode.RedisMode["Service"], state: RedisMode.RedisState) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      if ((yield* mode.state) === state) return
      yield* Effect.sleep("100 millis")
    }
    assert.fail(`state never became ${state} (is ${yield* mode.state})`)
  })

const services = (options: Parameters<typeof layerAll>[1]) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(layerAll(server.url, options))
    return {
      permits: Context.get(context, RedisPermits.RedisPermits),
      mode: Context.get(context, RedisMode.RedisMode),
      quota: Context.get(context, RedisQuota.RedisQuota)
    }
  })

describe("Redis trouble", () => {
  it.live("fail-closed: typed RedisUnavailable while down, in-flight calls finish, shared again after restart", () =>
    Effect.gen(function*() {
      const { mode, permits, quota } = yield* services({ mode: { mode: "fail-closed" } })
      const changes: Array<RedisMode.RedisStateChange> = []
      // Started at once, so it has subscribed before Redis goes away.
      yield* mode.changes.pipe(
        Stream.runForEach((c) => Effect.sync(() => void changes.push(c))),
        Effect.forkScoped({ startImmediately: true })
      )
      yield* permits.setLimit("acct", "standard", 3)
      const inFlight = yield* Scope.make()
      const held = yield* permits.acquire({ key: "acct", pool: "standard" }).pipe(Scope.provide(inFlight))
      assert.strictEqual(held.source, "shared")

      yield* stop
      const error = yield* Effect.flip(
        Effect.scoped(permits.acquire({ key: "acct", pool: "standard", timeout: "5 seconds" }))
      )
      assert.strictEqual(error.reason._tag, "RedisUnavailable")
      assert.strictEqual(yield* mode.state, "unavailable")
      assert.strictEqual(yield* mode.gaugeValue, 2)
      const quotaError = yield* Effect.flip(quota.reserve({ cost: 1 }))
      assert.strictEqual(quotaError.reason._tag, "RedisUnavailable")
      // The in-flight call finishes: its release cannot reach Redis and is left to the lease, without an error.
      yield* Scope.close(inFlight, Exit.void)

      yield* start
      yield* waitFor(mode, "shared")
      const again = yield* Effect.scoped(permits.acquire({ key: "acct", pool: "standard", timeout: "5 seconds" }))
      assert.strictEqual(again.source, "shared")
      yield* Effect.sync(() => changes.length).pipe(
        Effect.repeat({ schedule: Schedule.spaced("5 millis"), until: (n) => n >= 2 }),
        Effect.timeout("5 seconds")
      )
      assert.deepStrictEqual(changes.map((c) => c.to), ["unavailable", "shared"])
    }).pipe(Effect.scoped, Effect.ensuring(start)))

  it.live("local-fallback: Redis dies mid-run, no call is lost, the local share holds, shared again after restart", () =>
    Effect.gen(function*() {
      const { mode, permits } = yield* services({ mode: { mode: "local-fallback", expectedProcesses: 2 } })
      yield* permits.setLimit("acct2", "flash", 4)
      let localInFlight = 0
      let localMax = 0
      let sharedInFlight = 0
      let sharedMax = 0
      let sharedDone = 0
      const sources: Array<string> = []
      // Some done, 4 in flight, the rest queued in Redis: the moment to stop it.
      const busy = yield* Deferred.make<void>()
      const call = Effect.scoped(Effect.gen(function*() {
        const permit = yield* permits.acquire({ key: "acct2", pool: "flash", timeout: "20 seconds" })
        sources.push(permit.source)
        if (permit.source === "local-fallback") {
          localMax = Math.max(localMax, ++localInFlight)
        } else {
          sharedMax = Math.max(sharedMax, ++sharedInFlight)
          if (sharedDone > 0 && sharedInFlight === 4) yield* Deferred.succeed(busy, undefined)
        }
        yield* Effect.sleep("120 millis")
        if (permit.source === "local-fallback") localInFlight--
        else {
          sharedInFlight--
          sharedDone++
        }
        return "done"
      }))
      const calls = yield* Effect.forkChild(
        Effect.all(Array.from({ length: 16 }, () => call), { concurrency: "unbounded" })
      )
      yield* Deferred.await(busy).pipe(Effect.timeout("10 seconds"))
      yield* stop
      const results = yield* Fiber.join(calls)
      assert.strictEqual(results.length, 16)
      assert.isTrue(results.every((r) => r === "done"))
      assert.strictEqual(yield* mode.state, "local-fallback")
      assert.strictEqual(yield* mode.gaugeValue, 1)
      assert.isAtMost(sharedMax, 4)
      assert.strictEqual(localMax, 2) // limit 4 / 2 expected processes
      assert.isTrue(sources.includes("shared"))
      assert.isTrue(sources.includes("local-fallback"))
      const snap = yield* Effect.flip(permits.snapshot("acct2", "flash"))
      assert.strictEqual(snap.reason._tag, "RedisUnavailable")

      yield* start
      yield* waitFor(mode, "shared")
      const back = yield* Effect.scoped(permits.acquire({ key: "acct2", pool: "flash", timeout: "5 seconds" }))
      assert.strictEqual(back.source, "shared")
    }).pipe(Effect.scoped, Effect.ensuring(start)))
})
