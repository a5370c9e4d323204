import { assert, describe, it } from "@effect/vitest"
import { Duration, Schema } from "effect"
import { durationInput, DurationOrInfinity, FiniteDuration, millisOf } from "../../src/resilience/ConfigDuration.ts"

describe("ConfigDuration", () => {
  it("reads both written forms through Effect's codecs", () => {
    assert.deepStrictEqual(
      [750, "30 seconds", " 2 minutes ", "1.5 seconds", "1 week", "500 micros", "0 millis"].map(millisOf),
      [750, 30_000, 120_000, 1500, 604_800_000, 0.5, 0]
    )
    assert.strictEqual(millisOf("Infinity"), Infinity)
  })

  it("refuses what Duration.fromInput does not read, negatives, and numbers that are no count", () => {
    for (const bad of ["30", "30 secs", "1.5seconds", "soon", "-1 seconds", "-Infinity", -5, NaN, Infinity, ""]) {
      assert.isUndefined(millisOf(bad), String(bad))
    }
  })

  it("the schemas keep what was written; only the bounds that may be switched off take Infinity", () => {
    assert.strictEqual(Schema.decodeUnknownSync(FiniteDuration)(" 3 seconds "), " 3 seconds ")
    assert.strictEqual(Schema.decodeUnknownSync(DurationOrInfinity)("Infinity"), "Infinity")
    assert.isTrue(Schema.is(DurationOrInfinity)("Infinity"))
    assert.isFalse(Schema.is(FiniteDuration)("Infinity"))
  })

  it("durationInput hands the policies what Duration reads", () => {
    assert.strictEqual(Duration.toMillis(Duration.fromInputUnsafe(durationInput(" 3 seconds "))), 3000)
    assert.strictEqual(durationInput(250), 250)
  })
})
