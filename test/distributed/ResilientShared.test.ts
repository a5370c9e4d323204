import { NodeHttpClient } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as RedisMode from "../../src/distributed/RedisMode.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

const scaled = (scale: number): Simulator.LatencyModel => {
  const d = Simulator.defaultLatency
  const s = (p: Simulator.LatencyProfile) => ({
    ttfbMs: p.ttfbMs * scale,
    msPerUnit: p.msPerUnit * scale,
    jitter: p.jitter
  })
  return { standard: s(d.standard), v3: s(d.v3), flash: s(d.flash), stt: s(d.stt), music: s(d.music) }
}

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedisServer()
})
afterAll(async () => {
  await redis?.close()
})

describe("Resilient with shared state over Redis", () => {
  it.live("the redis entry with Redis down at start-up: a typed SharedStateUnavailable, no credentials in it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(
        Effect.void,
        Resilient.layer({
          apiKey: Redacted.make("sim-key"),
          limiter: { plan: "creator" },
          // Nothing listens on port 1: the connection is refused at once.
          redis: { url: "redis://user:s3cret-pass@127.0.0.1:1" }
        }).pipe(Layer.provide(NodeHttpClient.layerUndici), Layer.fresh)
      ))
      assert.strictEqual(error._tag, "ElevenLabsError")
      assert.strictEqual(error.reason._tag, "SharedStateUnavailable")
      assert.strictEqual(error.reason.operation, "startup")
      assert.include(error.message, "Redis could not be reached at start-up")
      assert.notInclude(JSON.stringify(error), "s3cret-pass")
      assert.notInclude(error.message, "s3cret-pass")
    }))

  it.live(
    "three stacks sized for the whole plan share it: the server never sees more than the limit",
    () =>
      Effect.gen(function*() {
        const { simulator, url } = yield* Server.serve({ port: 0, plan: "creator", seed: 3, latency: scaled(0.3) })
        // Each stack believes it has the whole plan (10 Flash); only the shared permits keep the sum at 10.
        const stack = () =>
          Resilient.layer({
            apiKey: Redacted.make("sim-key"),
            baseUrl: url,
            limiter: { plan: "creator" },
            quota: false,
            redis: { url: redis.url, leaseTime: "5 seconds" }
          }).pipe(Layer.provide(NodeHttpClient.layerUndici), Layer.fresh)
        const worker = (name: string) =>
          Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
            Client.ElevenLabs.use((c) =>
              c.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", {
                text: `${name} ${i} `.repeat(8),
                modelId: "eleven_flash_v2_5"
              })
            ).pipe(Effect.match({
              onSuccess: () =>
                "ok",
              onFailure: (e) => e.reason._tag
            })), { concurrency: "unbounded" }).pipe(
              Effect.provide(stack())
            )
        const outcomes = (yield* Effect.all([worker("a"), worker("b"), worker("c")], { concurrency: "unbounded" }))
          .flat()
        const stats = yield* simulator.stats
        assert.deepStrictEqual(
          outcomes.filter((o) =>
            o !== "ok"
          ),
          []
        )
        assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
        assert.isAtMost(stats.pools.flash.maxInFlight, 10)
        assert.isAtLeast(stats.pools.flash.maxInFlight, 8, "the pool is kept busy")
      }),
    60_000
  )

  it.live(
    "Redis stopped mid-run: local-fallback loses no call; fail-closed fails typed; a restart restores sharing",
    () =>
      Effect.gen(function*() {
        const { simulator, url } = yield* Server.serve({ port: 0, plan: "creator", seed: 4, latency: scaled(0.3) })
        const run = (mode: "local-fallback" | "fail-closed", tag: string) =>
          Effect.zip(
            Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (i) =>
              Client.ElevenLabs.use((c) =>
                c.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", {
                  text: `${tag} ${i} `.repeat(8),
                  modelId: "eleven_flash_v2_5"
                })
              ).pipe(
                Effect.match({
                  onSuccess: () => "ok",
                  onFailure: (e) => e.reason._tag
                }),
                // Stop Redis while the batch is running.
                Effect.tap(() => i === 5 ? Effect.promise(() => redis.stop()) : Effect.void)
              ), { concurrency: 4 }),
            RedisMode.RedisMode.use((m) =>
              m.state
            )
          ).pipe(
            Effect.provide(
              Resilient.layer({
                apiKey: Redacted.make("sim-key"),
                baseUrl: url,
                limiter: { plan: "creator" },
                quota: false
              })
                .pipe(
                  Layer.provideMerge(SharedState.layerRedis({
                    url: redis.url,
                    mode: { mode, commandTimeout: "300 millis", pingInterval: "100 millis", expectedProcesses: 2 },
                    permits: { lease: "2 seconds" }
                  })),
                  Layer.provide(NodeHttpClient.layerUndici),
                  Layer.fresh
                )
            )
          )
        const [fallback, fallbackState] = yield* run("local-fallback", "fb")
        assert.strictEqual(fallbackState, "local-fallback")
        assert.deepStrictEqual(
          fallback.filter((o) => o !== "ok"),
          [],
          "local-fallback: every call succeeds"
        )
        yield* Effect.promise(() => redis.start())
        const [closed, closedState] = yield* run("fail-closed", "fc")
        assert.strictEqual(closedState, "unavailable")
        assert.isAbove(closed.filter((o) => o === "ok").length, 0)
        assert.isAbove(closed.filter((o) => o === "SharedStateUnavailable").length, 0, "fail-closed: typed errors")
        for (const o of closed) assert.include(["ok", "SharedStateUnavailable"], o)
        yield* Effect.promise(() => redis.start())
        // Redis back: a fresh stack shares again (the batch stops Redis once more at call 5, so look at the
        // state through the mode before that: the first calls were granted by Redis).
        const [again] = yield* run("local-fallback", "again")
        assert.deepStrictEqual(again.filter((o) => o !== "ok"), [])
        assert.strictEqual((yield* simulator.stats).byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      }),
    60_000
  )
})
