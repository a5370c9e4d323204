/**
 * The Redis source in one process, against a real redis-server: versions applied as they are published, the
 * "back to the start configuration" version (a null document), and the source refused without a redis entry.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as RedisConfig from "../../src/distributed/RedisConfig.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import { partitionOfApiKey } from "../../src/resilience/FallbackKey.ts"
import type * as LiveConfig from "../../src/resilience/LiveConfig.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

const apiKey = Redacted.make("sim-key")
const account = partitionOfApiKey(apiKey)

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedisServer()
})
afterAll(async () => {
  await redis?.close()
})

const until = (live: LiveConfig.Live, check: (s: LiveConfig.Status) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 250; i++) {
      if (check(yield* live.status)) return yield* live.status
      yield* Effect.sleep("20 millis")
    }
    return assert.fail(`status never matched: ${JSON.stringify(yield* live.status)}`)
  })

describe("LiveConfig, Redis source", () => {
  it.live("applies each published version, and a null document restores the start configuration", () =>
    Effect.gen(function*() {
      const built = yield* Layer.build(
        Resilient.layer({
          apiKey,
          limiter: { plan: "pro" },
          quota: false,
          redis: { url: redis.url },
          live: { source: { _tag: "redis", poll: "200 millis" }, env: false }
        }).pipe(Layer.provideMerge(InProcess.layerSimulated({ plan: "pro" })))
      )
      const resilience = Context.get(built, Resilient.Resilience)
      const store = Context.get(
        yield* Layer.build(RedisConfig.layer().pipe(Layer.provide(SharedState.layerConnection(redis.url)))),
        RedisConfig.RedisConfigStore
      )
      const limit = Effect.map(resilience.limiter.snapshot(resilience.keyId, "flash"), (s) => s.limit)
      assert.strictEqual(yield* limit, 20, "the start configuration: plan pro")

      const v1 = yield* store.publish(account, {
        document: { concurrency: { plan: "pro", caps: { flash: 2 } } },
        author: "test",
        kind: "deploy",
        reason: "lower"
      })
      yield* until(resilience.live!, (s) => s.version === v1.version)
      assert.strictEqual(yield* limit, 2)
      // The shared limit holds the cap for every process of the account.
      assert.strictEqual((yield* resilience.distributed!.snapshot(resilience.keyId, "flash")).cap, 2)

      const v2 = yield* store.publish(account, {
        document: null,
        author: "test",
        kind: "rollback",
        reason: "back to the start"
      })
      const back = yield* until(resilience.live!, (s) => s.version === v2.version)
      assert.deepStrictEqual(back.pendingRestart, [])
      assert.strictEqual(yield* limit, 20)
      assert.isUndefined((yield* resilience.distributed!.snapshot(resilience.keyId, "flash")).cap)
    }).pipe(Effect.scoped))

  it.effect("the Redis source without a redis entry is refused when the stack is built", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(
          Resilient.layer({ apiKey, live: { source: { _tag: "redis" } } }).pipe(
            Layer.provideMerge(InProcess.layerSimulated({}))
          )
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      const reason = (error as { error: { reason: { _tag: string; field?: string } } } | undefined)?.error.reason
      assert.strictEqual(reason?._tag, "InvalidRequest")
      assert.strictEqual(reason?.field, "live")
    }).pipe(Effect.scoped))
})
