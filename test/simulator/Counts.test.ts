import { assert, describe, it } from "@effect/vitest"
import * as Counts from "../../src/simulator/Counts.ts"

describe("Counts", () => {
  it("bump adds one; clear empties the same object (the model's parts hold it)", () => {
    const counts = Counts.make()
    Counts.bump(counts.byStatus, "200")
    Counts.bump(counts.byStatus, "200")
    Counts.bump(counts.faults, "hang")
    counts.requests = 3
    counts.creditsCharged = 40
    assert.deepStrictEqual([counts.byStatus, counts.faults["hang"]], [{ "200": 2 }, 1])
    const held = counts
    Counts.clear(counts)
    assert.strictEqual(held, counts)
    assert.deepStrictEqual(counts, Counts.make())
    assert.deepStrictEqual(Object.keys(counts.faults), [
      "systemBusy",
      "systemBusyLoad",
      "serverError",
      "internalServerError",
      "serviceUnavailable",
      "connectionReset",
      "hang",
      "streamCut"
    ])
  })
})
