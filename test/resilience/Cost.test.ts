import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Cost from "../../src/resilience/Cost.ts"

describe("Cost", () => {
  it("uses the built-in table: 0.5 for Flash and Turbo, 1 for the others, rounded up", () => {
    assert.strictEqual(Cost.estimate(1001, "eleven_flash_v2_5"), 501)
    assert.strictEqual(Cost.estimate(1000, "eleven_turbo_v2"), 500)
    assert.strictEqual(Cost.estimate(1001, "eleven_multilingual_v2"), 1001)
    assert.strictEqual(Cost.estimate(3, "eleven_v3"), 3)
    assert.strictEqual(Cost.estimate(0, "eleven_v3"), 0)
  })

  it("prefers valid /v1/models multipliers", () => {
    const multipliers = Cost.multipliersFromModels([
      { model_id: "eleven_multilingual_v2", model_rates: { character_cost_multiplier: 2 } },
      { model_id: "eleven_flash_v2_5", model_rates: { character_cost_multiplier: 0.3 } },
      { model_id: "eleven_v3", model_rates: null },
      { model_id: "broken", model_rates: { character_cost_multiplier: -1 } }
    ])
    assert.deepStrictEqual(multipliers, { eleven_multilingual_v2: 2, eleven_flash_v2_5: 0.3 })
    assert.strictEqual(Cost.estimate(10, "eleven_multilingual_v2", multipliers), 20)
    assert.strictEqual(Cost.estimate(10, "eleven_flash_v2_5", multipliers), 3)
    assert.strictEqual(Cost.estimate(10, "eleven_v3", multipliers), 10)
    assert.strictEqual(Cost.multiplierOf("broken", { broken: Number.NaN }), 1)
  })

  it("counts text as the library does everywhere: code points", () => {
    assert.strictEqual(Cost.charactersOf("héllo"), 5)
    // One code point: the library's one count (docs/conventions.md), not JavaScript's two UTF-16 units.
    assert.strictEqual(Cost.charactersOf("👋"), 1)
    assert.strictEqual(Cost.estimateText("hello world", "eleven_flash_v2_5"), 6)
  })

  it.effect.prop(
    "the estimate is never below characters x multiplier",
    [
      Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100_000 })),
      Schema.Literals(["eleven_flash_v2_5", "eleven_v3"])
    ],
    ([characters, model]) =>
      Effect.sync(() => {
        const cost = Cost.estimate(characters, model)
        const exact = characters * Cost.multiplierOf(model)
        assert.isTrue(Number.isInteger(cost) && cost >= exact && cost < exact + 1)
      })
  )
})
