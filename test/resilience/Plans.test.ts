import { assert, describe, it } from "@effect/vitest"
import {
  canonicalPlanTableName,
  deploymentGuidePlans,
  docsPlans,
  isPlanTableName,
  limitsOf,
  modelsPagePlans,
  planNames,
  planTableNames,
  planTableOf,
  poolOfModel,
  pools,
  seedPlans
} from "../../src/resilience/Plans.ts"

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

  it("has the default table (the production-deployment guide's), flash twice standard on every plan", () => {
    assert.deepStrictEqual(limitsOf("pro"), { standard: 10, flash: 20, stt: 40, music: 2 })
    for (const plan of planNames) {
      assert.strictEqual(deploymentGuidePlans[plan].flash, deploymentGuidePlans[plan].standard * 2)
      for (const pool of pools) assert.isAtLeast(deploymentGuidePlans[plan][pool], 0)
    }
  })

  it("names the tables deployment-guide (the default) and models-page; seeds and docs are deprecated aliases", () => {
    assert.deepStrictEqual(planTableNames, ["deployment-guide", "models-page"])
    assert.strictEqual(planTableOf(undefined), deploymentGuidePlans)
    assert.strictEqual(planTableOf("deployment-guide"), deploymentGuidePlans)
    assert.strictEqual(planTableOf("models-page"), modelsPagePlans)
    assert.strictEqual(planTableOf("seeds"), deploymentGuidePlans)
    assert.strictEqual(planTableOf("docs"), modelsPagePlans)
    assert.strictEqual(canonicalPlanTableName("seeds"), "deployment-guide")
    assert.strictEqual(canonicalPlanTableName("docs"), "models-page")
    assert.isTrue(isPlanTableName("docs"))
    assert.isFalse(isPlanTableName("guide"))
    // The old export names stay, as the same tables.
    assert.strictEqual(seedPlans, deploymentGuidePlans)
    assert.strictEqual(docsPlans, modelsPagePlans)
    assert.strictEqual(modelsPagePlans.pro.stt, 50)
  })
})
