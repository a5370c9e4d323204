import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as AdaptiveLimit from "../../src/resilience/AdaptiveLimit.ts"

const config = AdaptiveLimit.defaultConfig

describe("AdaptiveLimit", () => {
  it("starts at the plan number, clamped to [minLimit, ceiling or maxLimit]", () => {
    assert.strictEqual(AdaptiveLimit.make({ initial: 5, ceiling: 5, config }).estimate, 5)
    assert.strictEqual(AdaptiveLimit.make({ initial: 0, ceiling: undefined, config }).estimate, 1)
    assert.strictEqual(AdaptiveLimit.make({ initial: 5000, ceiling: undefined, config }).estimate, 1000)
  })

  it("learns the first ceiling at once, adds a raise, clamps a cut", () => {
    const s = AdaptiveLimit.make({ initial: 2, ceiling: undefined, config })
    assert.deepStrictEqual(AdaptiveLimit.onResponse(s, { maximum: 10, ours: 1, saturated: false }, config), ["ceiling"])
    assert.strictEqual(s.estimate, 10)
    AdaptiveLimit.onConcurrencyLimited(s, undefined, config) // 9
    AdaptiveLimit.onResponse(s, { maximum: 15, ours: 1, saturated: false }, config) // plan upgrade: +5
    assert.strictEqual(s.estimate, 14)
    AdaptiveLimit.onResponse(s, { maximum: 5, ours: 1, saturated: false }, config)
    assert.strictEqual(s.estimate, 5)
    assert.isFalse(AdaptiveLimit.setCeiling(s, 0, config)) // nonsense headers are ignored
    assert.isFalse(AdaptiveLimit.setCeiling(s, Number.NaN, config))
  })

  it("shared key: the share is ceiling - (current - ours)", () => {
    const s = AdaptiveLimit.make({ initial: 10, ceiling: 10, config })
    assert.deepStrictEqual(AdaptiveLimit.onResponse(s, { current: 9, ours: 2, saturated: false }, config), ["shared"])
    assert.strictEqual(s.others, 7)
    assert.strictEqual(AdaptiveLimit.permitsOf(s, config), 3)
    // Others beyond the ceiling still leave us the minimum.
    AdaptiveLimit.onResponse(s, { current: 30, ours: 1, saturated: false }, config)
    assert.strictEqual(AdaptiveLimit.permitsOf(s, config), 1)
  })

  it.prop(
    "the estimate stays within [minLimit, cap] under any signal sequence",
    [
      Schema.Array(Schema.Struct({
        kind: Schema.Literals(["response", "limited"]),
        maximum: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: -1, maximum: 40 }))),
        current: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 60 }))),
        ours: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 40 })),
        saturated: Schema.Boolean
      })).check(Schema.isMaxLength(60))
    ],
    ([signals]) => {
      const s = AdaptiveLimit.make({ initial: 2, ceiling: undefined, config })
      for (const sig of signals) {
        if (sig.kind === "limited") AdaptiveLimit.onConcurrencyLimited(s, sig.maximum, config)
        else {AdaptiveLimit.onResponse(s, {
            maximum: sig.maximum,
            current: sig.current,
            ours: sig.ours,
            saturated: sig.saturated
          }, config)}
        const cap = AdaptiveLimit.capOf(s, config)
        if (s.estimate < config.minLimit || s.estimate > cap + 1e-9) return false
        if (AdaptiveLimit.permitsOf(s, config) < 1) return false
      }
      return true
    },
    { arbitrary: { runs: 300 } }
  )
})
