import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as RetryBudget from "../../src/resilience/RetryBudget.ts"

describe("RetryBudget", () => {
  it.effect("allows 20 % of requests, and 3 retries in flight even past that (at most 3 extra per window)", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make()
      for (let i = 0; i < 10; i++) yield* budget.request
      // 2 from the ratio (20 % of 10), and a third because fewer than 3 are in flight.
      const granted: Array<boolean> = []
      for (let i = 0; i < 6; i++) granted.push(yield* budget.acquire)
      assert.deepStrictEqual(granted, [true, true, true, false, false, false])
      assert.deepStrictEqual(yield* budget.snapshot, {
        requestsInWindow: 10,
        retriesInWindow: 3,
        retriesInFlight: 3,
        refusedTotal: 3
      })
      // Once they end, the floor allows more, up to 2 + 3 retries in this window.
      yield* budget.release
      yield* budget.release
      yield* budget.release
      assert.isTrue(yield* budget.acquire)
      assert.isTrue(yield* budget.acquire)
      yield* budget.release
      yield* budget.release
      assert.isFalse(yield* budget.acquire)
      assert.strictEqual((yield* budget.snapshot).retriesInWindow, 5)
    }))

  it.effect("with no traffic, at most 3 retries at once", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make()
      yield* budget.request
      assert.isTrue(yield* budget.acquire)
      assert.isTrue(yield* budget.acquire)
      assert.isTrue(yield* budget.acquire)
      assert.isFalse(yield* budget.acquire)
    }))

  it.effect("the window slides: requests that ended and old retries stop counting", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ window: "10 seconds", minRetriesInFlight: 0 })
      const call = Effect.andThen(budget.request, budget.settle)
      for (let i = 0; i < 5; i++) yield* call
      assert.isTrue(yield* budget.acquire)
      assert.isFalse(yield* budget.acquire)
      yield* budget.release
      yield* TestClock.adjust("5 seconds")
      for (let i = 0; i < 5; i++) yield* call
      assert.isTrue(yield* budget.acquire) // 10 requests, 1 retry in window: 2 allowed
      yield* budget.release
      assert.isFalse(yield* budget.acquire)
      yield* TestClock.adjust("5 seconds") // the first 5 requests and the first retry leave the window
      const snap = yield* budget.snapshot
      assert.strictEqual(snap.requestsInWindow, 5)
      assert.strictEqual(snap.retriesInWindow, 1)
      assert.isFalse(yield* budget.acquire) // 1 retry already for 5 requests
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual((yield* budget.snapshot).requestsInWindow, 0)
    }))

  it.effect("ended calls are counted per slice of 100 ms: a slice leaves the window when its start does", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ window: "10 seconds", minRetriesInFlight: 0 })
      const call = Effect.andThen(budget.request, budget.settle)
      const inWindow = Effect.map(budget.snapshot, (s) => s.requestsInWindow)
      yield* call // t = 0: a new slice
      yield* TestClock.adjust(99)
      yield* call // t = 99: the same slice
      yield* TestClock.adjust(1)
      yield* call // t = 100: a new slice
      yield* TestClock.adjust(9_899)
      assert.strictEqual(yield* inWindow, 3) // t = 9,999
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* inWindow, 1, "t = 10,000: the slice [0, 100) left, its call at 99 ms early")
      yield* TestClock.adjust(99)
      assert.strictEqual(yield* inWindow, 1)
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* inWindow, 0)
      // A window of 200 ms has slices of 20 ms.
      yield* budget.reconfigure({ window: "200 millis", minRetriesInFlight: 0 })
      yield* call
      yield* TestClock.adjust(20)
      yield* call
      yield* TestClock.adjust(180)
      assert.strictEqual(yield* inWindow, 1)
    }))

  it.effect("a running call counts however long it runs: a batch longer than the window keeps its retries", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ window: "10 seconds", minRetriesInFlight: 0 })
      // 100 calls queued at once; 20 s later 90 are still running (queued or on the wire).
      for (let i = 0; i < 100; i++) yield* budget.request
      for (let i = 0; i < 10; i++) yield* budget.settle
      yield* TestClock.adjust("20 seconds")
      assert.strictEqual((yield* budget.snapshot).requestsInWindow, 90)
      // 20 % of the 90 running calls.
      const granted: Array<boolean> = []
      for (let i = 0; i < 19; i++) granted.push(yield* budget.acquire)
      assert.strictEqual(granted.filter((g) => g).length, 18)
      // Once they all end, they count for one more window, then not at all.
      for (let i = 0; i < 90; i++) yield* budget.settle
      assert.strictEqual((yield* budget.snapshot).requestsInWindow, 90)
      yield* TestClock.adjust("11 seconds")
      assert.strictEqual((yield* budget.snapshot).requestsInWindow, 0)
    }))

  it.effect.prop(
    "at every grant, the window's retries are at most ratio x its requests + minRetriesInFlight",
    [Schema.Array(Schema.Literals(["request", "settle", "acquire", "release", "tick"]))],
    ([ops]) =>
      Effect.gen(function*() {
        const budget = yield* RetryBudget.make({ ratio: 0.2, window: "10 seconds", minRetriesInFlight: 3 })
        let inFlight = 0
        let running = 0
        for (const op of ops) {
          if (op === "request") {
            running++
            yield* budget.request
          } else if (op === "settle") {
            if (running > 0) {
              running--
              yield* budget.settle
            }
          } else if (op === "acquire") {
            if (yield* budget.acquire) {
              inFlight++
              const s = yield* budget.snapshot
              if (s.retriesInWindow > 0.2 * s.requestsInWindow + 3) return false
            }
          } else if (op === "release") {
            if (inFlight > 0) {
              inFlight--
              yield* budget.release
            }
          } else yield* TestClock.adjust("3 seconds")
          if ((yield* budget.snapshot).retriesInFlight !== inFlight) return false
        }
        return true
      })
  )

  it("rejects bad options", () => {
    assert.throws(() => RetryBudget.makeUnsafe({ ratio: 2 }))
    assert.throws(() => RetryBudget.makeUnsafe({ window: 0 }))
    assert.throws(() => RetryBudget.makeUnsafe({ minRetriesInFlight: -1 }))
  })
})
