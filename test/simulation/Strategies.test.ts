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

  it("p-queue-recipe: withBackoff's delays and the plan table it sizes its queue from", () => {
    assert.strictEqual(Strategies.recipeBackoffMs(0, 0), 1000)
    assert.strictEqual(Strategies.recipeBackoffMs(2, 1), 4500)
    assert.strictEqual(Strategies.recipeBackoffMs(5, 0.5), 32_000)
    assert.strictEqual(Strategies.recipeConcurrencyOf("free"), 2)
    assert.strictEqual(Strategies.recipeConcurrencyOf("pro"), 10)
    assert.strictEqual(Strategies.recipeConcurrencyOf("business"), 15)
  })

  it("detailStatusOf reads detail.status of JSON bodies only", () => {
    const enc = new TextEncoder()
    assert.strictEqual(Strategies.detailStatusOf(enc.encode(`{"detail":{"status":"system_busy"}}`)), "system_busy")
    assert.strictEqual(Strategies.detailStatusOf(enc.encode("<html>503</html>")), undefined)
    assert.strictEqual(Strategies.detailStatusOf(enc.encode(`{"detail":[{"msg":"x"}]}`)), undefined)
  })

  it("the registry: resilient, naive and p-queue-recipe", () => {
    assert.deepStrictEqual(Strategies.registry.map((s) => s.name), ["resilient", "naive", "p-queue-recipe"])
    assert.include(Strategies.strategyNames, "resilient")
    assert.strictEqual(Strategies.find("nope"), undefined)
  })

  it("seed-template is the deprecated name of p-queue-recipe: still found, under its new name", () => {
    assert.strictEqual(Strategies.find("seed-template"), Strategies.pQueueRecipe)
    assert.strictEqual(Strategies.find("p-queue-recipe"), Strategies.pQueueRecipe)
    assert.isTrue(Strategies.isStrategyName("seed-template"))
    assert.isFalse(Strategies.isStrategyName("seeds"))
    assert.strictEqual(Strategies.canonicalStrategyName("seed-template"), "p-queue-recipe")
    assert.notInclude(Strategies.strategyNames as ReadonlyArray<string>, "seed-template")
    // The old export names stay, as the same values.
    assert.strictEqual(Strategies.seedTemplate, Strategies.pQueueRecipe)
    assert.strictEqual(Strategies.seedBackoffMs, Strategies.recipeBackoffMs)
    assert.strictEqual(Strategies.seedConcurrencyOf, Strategies.recipeConcurrencyOf)
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
      assert.isTrue(
        reasons.every((r) => ["SystemBusy", "ServerError", "Transport", "Timeout"].includes(r)),
        reasons.join()
      )
      assert.strictEqual(s.succeeded + s.failed, 80)
    }))

  it.effect("p-queue-recipe under faults: at most 6 attempts per call, retries recorded", () =>
    Effect.gen(function*() {
      const s = (yield* Runner.run({
        traffic: { pattern: "chaos", rps: 2, requests: 60, seed: 5 },
        strategy: Strategies.pQueueRecipe,
        plan: "pro",
        failureRate: 0.4
      })).summary
      assert.isTrue(s.attempts <= 6 * s.requests)
      assert.isTrue(s.retries > 0)
      assert.isTrue(s.succeeded > 40, `succeeded ${s.succeeded}`)
      assert.strictEqual(s.succeeded + s.failed, 60)
    }))
})
