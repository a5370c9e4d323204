import { NodeHttpClient } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

const scaled = (scale: number): Simulator.LatencyModel => {
  const d = Simulator.defaultLatency
  const s = (p: Simulator.LatencyProfile) => ({ ttfbMs: p.ttfbMs * scale, msPerUnit: p.msPerUnit * scale, jitter: p.jitter })
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
  it.live("three stacks sized for the whole plan share it: the server never sees more than the limit", () =>
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
            c.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text: `${name} ${i} `.repeat(8), modelId: "eleven_flash_v2_5" })
          ).pipe(Effect.match({ onSuccess: () => "ok", onFailure: (e) => e.reason._tag })), { concurrency: "unbounded" }).pipe(
            Effect.provide(stack())
          )
      const outcomes = (yield* Effect.all([worker("a"), worker("b"), worker("c")], { concurrency: "unbounded" })).flat()
      const stats = yield* simulator.stats
      assert.deepStrictEqual(outcomes.filter((o) => o !== "ok"), [])
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      assert.isAtMost(stats.pools.flash.maxInFlight, 10)
      assert.isAtLeast(stats.pools.flash.maxInFlight, 8, "the pool is kept busy")
    }), 60_000)
})
