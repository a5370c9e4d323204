import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { afterAll, beforeAll } from "vitest"
import * as RedisMode from "../../src/distributed/RedisMode.ts"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
})

const getMode = Effect.gen(function*() {
  return yield* RedisMode.RedisMode
})

const withProvider = (provider: ConfigProvider.ConfigProvider) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provideService(self, ConfigProvider.ConfigProvider, provider)

describe("SharedState", () => {
  it.live("layerRedisConfig reads redis.url and the redis section", () =>
    Effect.gen(function*() {
      const mode = yield* RedisMode.RedisMode
      assert.strictEqual(mode.mode, "fail-closed")
      assert.strictEqual(mode.expectedProcesses, 3)
      yield* CircuitBreaker.CircuitBreakerStore
      const permits = yield* RedisPermits.RedisPermits
      const permit = yield* Effect.scoped(permits.acquire({ key: "cfg", pool: "stt" }))
      assert.strictEqual(permit.source, "shared")
    }).pipe(
      Effect.provide(SharedState.layerRedisConfig().pipe(Layer.fresh)),
      withProvider(
        ConfigProvider.fromUnknown({ redis: { url: server.url, onUnavailable: "fail-closed", expectedProcesses: 3 } })
      )
    ))

  it.live("layerRedisConfig reads ELEVENLABS_REDIS_URL; without a URL it fails with a ConfigError", () =>
    Effect.gen(function*() {
      const mode = yield* Effect.provide(getMode, SharedState.layerRedisConfig().pipe(Layer.fresh)).pipe(
        withProvider(ConfigProvider.fromEnv({ env: { ELEVENLABS_REDIS_URL: server.url } }))
      )
      assert.strictEqual(mode.mode, "local-fallback")
      const error = yield* Effect.flip(
        Effect.provide(getMode, SharedState.layerRedisConfig().pipe(Layer.fresh)).pipe(
          withProvider(ConfigProvider.fromEnv({ env: {} }))
        )
      )
      assert.strictEqual(error._tag, "ConfigError")
    }))

  it.live("a Redis that is down at start-up fails the layer with a RedisError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.provide(
          Effect.void,
          SharedState.layerRedis({ url: "redis://127.0.0.1:1", connectTimeout: "300 millis" }).pipe(Layer.fresh)
        )
      )
      assert.strictEqual(error._tag, "RedisError")
    }))

  it("optionsFromSettings maps the configuration's redis section", () => {
    const o = SharedState.optionsFromSettings({
      url: "redis://h:1",
      onUnavailable: "fail-closed",
      expectedProcesses: 4,
      leaseTime: "30 seconds"
    })
    assert.strictEqual(o.mode?.mode, "fail-closed")
    assert.strictEqual(o.mode?.expectedProcesses, 4)
    assert.strictEqual(o.permits?.lease, "30 seconds")
    assert.strictEqual(o.quota?.lease, "30 seconds")
  })
})
