import { assert, describe, it } from "@effect/vitest"
import { Effect, Random, Schema } from "effect"
import * as Jitter from "../../src/resilience/Jitter.ts"

const input = (attempt: number, previous = 1000) => ({ base: 1000, factor: 2, cap: 32_000, attempt, previous })

describe("Jitter", () => {
  it("the formulas at known draws", () => {
    assert.strictEqual(Jitter.ceiling(input(1)), 1000)
    assert.strictEqual(Jitter.ceiling(input(6)), 32_000)
    assert.strictEqual(Jitter.ceiling(input(9)), 32_000)
    assert.strictEqual(Jitter.delayFor(Jitter.none, input(3), 0.5), 4000)
    assert.strictEqual(Jitter.delayFor(Jitter.full, input(3), 0.25), 1000)
    assert.strictEqual(Jitter.delayFor(Jitter.equal, input(3), 0.5), 3000)
    // random_between(base, previous x 3): previous 2000 gives [1000, 6000).
    assert.strictEqual(Jitter.delayFor(Jitter.decorrelated, input(2, 2000), 0.5), 3500)
    assert.strictEqual(Jitter.delayFor(Jitter.decorrelated, input(9, 30_000), 0.9), 32_000)
    assert.strictEqual(Jitter.delayFor(Jitter.proportional(0.2), input(3), 0), 3200)
    assert.strictEqual(Jitter.delayFor(Jitter.proportional(0.2), input(3), 0.5), 4000)
    assert.strictEqual(Jitter.delayFor(Jitter.additive("500 millis"), input(3), 0.5), 4250)
    assert.strictEqual(Jitter.delayFor(Jitter.additive("500 millis"), input(6), 0.5), 32_000)
    assert.throws(() => Jitter.proportional(1.5))
  })

  it.effect("apply draws from Random: a seed reproduces it", () =>
    Effect.gen(function*() {
      const draw = Jitter.apply(Jitter.full, input(4))
      const a = yield* draw.pipe(Random.withSeed("s"))
      const b = yield* draw.pipe(Random.withSeed("s"))
      assert.strictEqual(a, b)
      assert.isTrue(a >= 0 && a < 8000)
      assert.strictEqual(yield* Jitter.apply(Jitter.none, input(4)), 8000)
    }))

  it.prop(
    "every jitter kind stays within its formula's bounds, for any draw and attempt",
    [
      Schema.Number.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMaximum: true }))),
      Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 1, maximum: 40 }))),
      Schema.Number.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 100_000 })))
    ],
    ([r, attempt, previous]) => {
      const input = { base: 1000, factor: 2, cap: 32_000, attempt, previous: Math.max(1000, previous) }
      const top = Math.min(32_000, 1000 * 2 ** (attempt - 1))
      for (const jitter of Object.values(Jitter.byName)) {
        const d = Jitter.delayFor(jitter, input, r)
        const [lo, hi] = Jitter.boundsOf(jitter, input)
        if (!(d >= lo && d <= hi && d <= 32_000 + 1e-9 && d >= 0)) return false
      }
      // The formulas themselves.
      const full = Jitter.delayFor(Jitter.full, input, r)
      const equal = Jitter.delayFor(Jitter.equal, input, r)
      const prop = Jitter.delayFor(Jitter.proportional(0.2), input, r)
      return full >= 0 && full <= top && equal >= top / 2 && equal <= top &&
        prop >= Math.min(32_000, top * 0.8) && prop <= Math.min(32_000, top * 1.2)
    }
  )
})
