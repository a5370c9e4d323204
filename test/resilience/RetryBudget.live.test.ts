/**
 * `RetryBudget.reconfigure`: new ratio, window and floor from now on; the counts recorded so far are kept.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { TestClock } from "effect/testing"
import * as RetryBudget from "../../src/resilience/RetryBudget.ts"

describe("RetryBudget.reconfigure", () => {
  it.effect("a lower ratio refuses retries the old one allowed; the counts are kept", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ ratio: 0.5, minRetriesInFlight: 0 })
      for (let i = 0; i < 10; i++) yield* budget.request
      for (let i = 0; i < 3; i++) assert.isTrue(yield* budget.acquire)
      // At 0.5 a 4th retry would fit (4 <= 5 of 10 requests); at 0.2 it does not (4 > 2).
      yield* budget.reconfigure({ ratio: 0.2, minRetriesInFlight: 0 })
      assert.isFalse(yield* budget.acquire)
      assert.deepStrictEqual(yield* budget.snapshot, {
        requestsInWindow: 10,
        retriesInWindow: 3,
        retriesInFlight: 3,
        refusedTotal: 1
      })
      // Back to 0.5: the same counts allow two more.
      yield* budget.reconfigure({ ratio: 0.5, minRetriesInFlight: 0 })
      assert.isTrue(yield* budget.acquire)
      assert.isTrue(yield* budget.acquire)
      assert.isFalse(yield* budget.acquire)
      assert.strictEqual((yield* budget.snapshot).refusedTotal, 2)
    }))

  it.effect("a shorter window drops what is older than it; a lower floor binds the retries already in flight", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ window: "10 seconds", minRetriesInFlight: 3 })
      const call = Effect.andThen(budget.request, budget.settle)
      for (let i = 0; i < 5; i++) yield* call
      yield* TestClock.adjust("5 seconds")
      for (let i = 0; i < 5; i++) yield* call
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* budget.snapshot).requestsInWindow, 10)
      yield* budget.reconfigure({ window: "4 seconds", minRetriesInFlight: 3 })
      assert.strictEqual((yield* budget.snapshot).requestsInWindow, 5, "the calls that ended 6 s ago left")
      // The ratio's one (20 % of 5) and the floor's: three in flight; with the floor lowered to 1, a retry
      // still in flight is enough to refuse the next (under a floor of 3 it would have been granted: 4 <= 1 + 3).
      for (let i = 0; i < 3; i++) assert.isTrue(yield* budget.acquire)
      yield* budget.release
      yield* budget.release
      yield* budget.reconfigure({ window: "4 seconds", minRetriesInFlight: 1 })
      assert.isFalse(yield* budget.acquire, "one retry still in flight: the new floor of 1 is reached")
      assert.strictEqual((yield* budget.snapshot).retriesInFlight, 1)
    }))

  it.effect("invalid options die and change nothing", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ ratio: 0.5, minRetriesInFlight: 0 })
      const invalid: ReadonlyArray<RetryBudget.RetryBudgetOptions> = [
        // A valid ratio next to an invalid window: neither applies.
        { ratio: 0.1, window: "0 seconds" },
        { ratio: 1.5 },
        { ratio: Number.NaN },
        { minRetriesInFlight: -1 },
        { minRetriesInFlight: 1.5 },
        { window: "whenever" as "1 second" }
      ]
      for (const options of invalid) {
        const exit = yield* Effect.exit(budget.reconfigure(options))
        assert.isTrue(Exit.hasDies(exit), `dies on ${JSON.stringify(options)}`)
      }
      for (let i = 0; i < 10; i++) yield* budget.request
      const granted: Array<boolean> = []
      for (let i = 0; i < 6; i++) granted.push(yield* budget.acquire)
      assert.deepStrictEqual(granted, [true, true, true, true, true, false], "still 0.5 with no floor")
    }))
})
