import { assert, describe, it } from "@effect/vitest"
import { closest, editDistance } from "../../src/internal/Closest.ts"

describe("Closest", () => {
  it("edit distance, ignoring case", () => {
    assert.strictEqual(editDistance("retyr", "retry"), 2)
    assert.strictEqual(editDistance("Pro", "pro"), 0)
    assert.strictEqual(editDistance("", "abc"), 3)
    assert.strictEqual(editDistance("eleven_flash_v25", "eleven_flash_v2_5"), 1)
  })

  it("the nearest choice when it is close enough to be a typo, else none", () => {
    assert.strictEqual(closest("simulat", ["simulate", "simulator"]), "simulate")
    assert.strictEqual(closest("retyr", ["retry", "budget"]), "retry")
    assert.strictEqual(
      closest("eleven_flash_v25", ["eleven_multilingual_v2", "eleven_flash_v2_5"]),
      "eleven_flash_v2_5"
    )
    assert.isUndefined(closest("xyz", ["simulate"]))
    assert.isUndefined(closest("nope", ["21m00Tcm4TlvDq8ikWAM"]))
    assert.isUndefined(closest("anything", []))
  })
})
