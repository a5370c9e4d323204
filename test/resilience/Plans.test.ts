import { assert, describe, it } from "@effect/vitest"
import { limitsOf, planNames, poolOfModel, pools, seedPlans } from "../../src/resilience/Plans.ts"

describe("Plans", () => {
  it("maps models to pools", () => {
    assert.strictEqual(poolOfModel("eleven_flash_v2_5"), "flash")
    assert.strictEqual(poolOfModel("eleven_turbo_v2"), "flash")
    assert.strictEqual(poolOfModel("eleven_multilingual_v2"), "standard")
    assert.strictEqual(poolOfModel("eleven_v3"), "standard")
    assert.strictEqual(poolOfModel("scribe_v1"), "stt")
    assert.strictEqual(poolOfModel("music_v1"), "music")
  })

  it("lets concurrency_group override the model id", () => {
    assert.strictEqual(poolOfModel("eleven_v3", "turbo"), "flash")
    assert.strictEqual(poolOfModel("eleven_flash_v2_5", "standard_eleven_multilingual_v2"), "standard")
  })

  it("has the seeds' table, flash twice standard on every plan", () => {
    assert.deepStrictEqual(limitsOf("pro"), { standard: 10, flash: 20, stt: 40, music: 2 })
    for (const plan of planNames) {
      assert.strictEqual(seedPlans[plan].flash, seedPlans[plan].standard * 2)
      for (const pool of pools) assert.isAtLeast(seedPlans[plan][pool], 0)
    }
  })
})
