import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"

describe("Strategies", () => {
  it("naive: the SDK's delays (1 s x 2^i +-10 %, Retry-After seconds capped at 60 s, no jitter)", () => {
    assert.strictEqual(Strategies.sdkRetryDelayMs(0, undefined, 0.5), 1000)
    assert.closeTo(Strategies.sdkRetryDelayMs(0, undefined, 0), 900, 1e-9)
    assert.closeTo(Strategies.sdkRetryDelayMs(1, undefined, 0.999999), 2200, 0.01)
    assert.strictEqual(Strategies.sdkRetryDelayMs(7, undefined, 0.5), 60_000)
    assert.strictEqual(Strategies.sdkRetryDelayMs(0, "3", 0.9), 3000)
    assert.strictEqual(Strategies.sdkRetryDelayMs(0, "600", 0.9), 60_000)
    assert.strictEqual(Strategies.sdkRetryDelayMs(1, "0", 0.5), 2000)
  })

  it("seed-template: withBackoff's delays and the plan table it sizes its queue from", () => {
    assert.strictEqual(Strategies.seedBackoffMs(0, 0), 1000)
    assert.strictEqual(Strategies.seedBackoffMs(2, 1), 4500)
    assert.strictEqual(Strategies.seedBackoffMs(5, 0.5), 32_000)
    assert.strictEqual(Strategies.seedConcurrencyOf("free"), 2)
    assert.strictEqual(Strategies.seedConcurrencyOf("pro"), 10)
    assert.strictEqual(Strategies.seedConcurrencyOf("business"), 15)
  })

  it("detailStatusOf reads detail.status of JSON bodies only", () => {
    const enc = new TextEncoder()
    assert.strictEqual(Strategies.detailStatusOf(enc.encode(`{"detail":{"status":"system_busy"}}`)), "system_busy")
    assert.strictEqual(Strategies.detailStatusOf(enc.encode("<html>503</html>")), undefined)
    assert.strictEqual(Strategies.detailStatusOf(enc.encode(`{"detail":[{"msg":"x"}]}`)), undefined)
  })

  it("the registry: resilient, naive and seed-template", () => {
    assert.deepStrictEqual(Strategies.registry.map((s) => s.name), ["resilient", "naive", "seed-template"])
    assert.include(Strategies.strategyNames, "resilient")
    assert.strictEqual(Strategies.find("nope"), undefined)
  })

  it.effect("naive under faults: at most 3 attempts per call; resets and hangs are not retried", () =>
    Effect.gen(function*() {
      const s = (yield* Runner.run({
        traffic: { pattern: "chaos", rps: 2, requests: 80, seed: 3 },
        strategy: Strategies.naive,
        plan: "pro",
        failureRate: 0.5
      })).summary
      assert.isTrue(s.attempts <= 3 * s.requests)
      assert.isTrue(s.http429.systemBusy > 0)
      assert.isTrue(s.failed > 0)
      const reasons = Object.keys(s.failedByReason)
      assert.isTrue(reasons.every((r) => ["SystemBusy", "ServerError", "Transport", "Timeout"].includes(r)), reasons.join())
      assert.strictEqual(s.succeeded + s.failed, 80)
    }))

  it.effect("seed-template under faults: at most 6 attempts per call, retries recorded", () =>
    Effect.gen(function*() {
      const s = (yield* Runner.run({
        traffic: { pattern: "chaos", rps: 2, requests: 60, seed: 5 },
        strategy: Strategies.seedTemplate,
        plan: "pro",
        failureRate: 0.4
      })).summary
      assert.isTrue(s.attempts <= 6 * s.requests)
      assert.isTrue(s.retries > 0)
      assert.isTrue(s.succeeded > 40, `succeeded ${s.succeeded}`)
      assert.strictEqual(s.succeeded + s.failed, 60)
    }))
})
