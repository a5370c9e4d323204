import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Patterns from "../../src/simulation/Patterns.ts"

const arrivalsOf = (o: Patterns.TrafficOptions) =>
  Effect.gen(function*() {
    const traffic = yield* Patterns.resolve(o)
    return { traffic, arrivals: yield* Patterns.schedule(traffic) }
  })

/** Counts of arrivals per bucket of `bucketMs` over `[0, spanMs)`. */
const histogram = (arrivals: ReadonlyArray<Patterns.Arrival>, spanMs: number, buckets: number) => {
  const out = new Array<number>(buckets).fill(0)
  for (const a of arrivals) out[Math.min(buckets - 1, Math.floor((a.atMs / spanMs) * buckets))]!++
  return out
}

const near = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.isTrue(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} not within ${tolerance} of ${expected}`)

describe("Patterns", () => {
  it.effect("steady: the same count in every bucket", () =>
    Effect.gen(function*() {
      const { arrivals, traffic } = yield* arrivalsOf({ pattern: "steady", rps: 10, requests: 600 })
      assert.strictEqual(traffic.durationMs, 60_000)
      assert.strictEqual(arrivals.length, 600)
      for (const count of histogram(arrivals, 60_000, 6)) near(count, 100, 1, "steady bucket")
      for (let i = 1; i < arrivals.length; i++) assert.isTrue(arrivals[i]!.atMs >= arrivals[i - 1]!.atMs)
    }))

  it.effect("steady: requests from rps x duration", () =>
    Effect.gen(function*() {
      const t = yield* Patterns.resolve({ pattern: "steady", rps: 5, durationMs: 20_000 })
      assert.strictEqual(t.requests, 100)
    }))

  it.effect("ramp-up: bucket counts follow the linear rate", () =>
    Effect.gen(function*() {
      const { arrivals, traffic } = yield* arrivalsOf({
        pattern: "ramp-up",
        startRps: 2,
        endRps: 20,
        durationMs: 100_000
      })
      // mean rate 11/s over 100 s
      assert.strictEqual(traffic.requests, 1100)
      const buckets = histogram(arrivals, 100_000, 10)
      buckets.forEach((count, k) => {
        // integral of 2 + 18 t/100 over [10k, 10k+10] seconds
        const expected = 2 * 10 + (18 / 100) * ((10 * k + 10) ** 2 - (10 * k) ** 2) / 2
        near(count, expected, 2, `ramp bucket ${k}`)
      })
      assert.isTrue(buckets[9]! > 5 * buckets[0]!)
    }))

  it.effect("burst: all at once, or split evenly over several bursts", () =>
    Effect.gen(function*() {
      const one = yield* arrivalsOf({ pattern: "burst", requests: 50 })
      assert.isTrue(one.arrivals.every((a) => a.atMs === 0))
      const three = yield* arrivalsOf({ pattern: "burst", requests: 90, bursts: 3, durationMs: 30_000 })
      const at = new Map<number, number>()
      for (const a of three.arrivals) at.set(a.atMs, (at.get(a.atMs) ?? 0) + 1)
      assert.deepStrictEqual([...at.entries()], [[0, 30], [10_000, 30], [20_000, 30]])
    }))

  it.effect("diurnal: a day curve, trough at 04:00, peak at 16:00", () =>
    Effect.gen(function*() {
      const { arrivals, traffic } = yield* arrivalsOf({ pattern: "diurnal", requests: 24_000 })
      assert.strictEqual(traffic.durationMs, 86_400_000)
      const hours = histogram(arrivals, 86_400_000, 24)
      hours.forEach((count, h) => {
        // mean of the shape over the hour, times requests / (0.55 * 24)
        let integral = 0
        for (let s = 0; s < 100; s++) integral += Patterns.diurnalShape((h + (s + 0.5) / 100) / 24) / 100
        near(count, (integral * 24_000) / (0.55 * 24), 3, `hour ${h}`)
      })
      const min = hours.indexOf(Math.min(...hours))
      const max = hours.indexOf(Math.max(...hours))
      assert.isTrue(min === 3 || min === 4, `trough at ${min}`)
      assert.isTrue(max === 15 || max === 16, `peak at ${max}`)
    }))

  it.effect("diurnal: --rps is the peak", () =>
    Effect.gen(function*() {
      const t = yield* Patterns.resolve({ pattern: "diurnal", rps: 2, durationMs: 3_600_000 })
      assert.strictEqual(t.requests, Math.round(0.55 * 2 * 3600))
      near(Patterns.rateAt(t, (16 / 24) * 3_600_000), 2, 1e-9, "peak rate")
    }))

  it.effect("chaos: the steady shape", () =>
    Effect.gen(function*() {
      const { arrivals } = yield* arrivalsOf({ pattern: "chaos", rps: 4, requests: 400 })
      for (const count of histogram(arrivals, 100_000, 4)) near(count, 100, 1, "chaos bucket")
    }))

  it.effect.each(Patterns.patternNames)(
    "%s: same seed, same schedule; another seed, other texts",
    (pattern) =>
      Effect.gen(function*() {
        const a = yield* arrivalsOf({ pattern, requests: 300, seed: 7, chars: { min: 10, max: 2000 } })
        const b = yield* arrivalsOf({ pattern, requests: 300, seed: 7, chars: { min: 10, max: 2000 } })
        const c = yield* arrivalsOf({ pattern, requests: 300, seed: 8, chars: { min: 10, max: 2000 } })
        assert.deepStrictEqual(a.arrivals, b.arrivals)
        assert.notDeepEqual(a.arrivals.map((x) => x.chars), c.arrivals.map((x) => x.chars))
        for (const x of a.arrivals) assert.isTrue(x.chars >= 10 && x.chars <= 2000)
        const interactive = a.arrivals.filter((x) => x.lane === "interactive").length
        near(interactive, 60, 25, "interactive share")
      })
  )

  it.effect("parseChars: N and a-b; bad values are clear errors", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Patterns.parseChars("250"), { min: 250, max: 250 })
      assert.deepStrictEqual(yield* Patterns.parseChars("100-900"), { min: 100, max: 900 })
      const bad = yield* Effect.flip(Patterns.parseChars("9-3"))
      assert.include(bad.message, "--chars")
      const junk = yield* Effect.flip(Patterns.parseChars("lots"))
      assert.include(junk.message, "N or a-b")
    }))

  it.effect("inconsistent options are typed errors", () =>
    Effect.gen(function*() {
      const e1 = yield* Effect.flip(Patterns.resolve({ pattern: "steady", requests: 10, rps: 1, durationMs: 5000 }))
      assert.strictEqual(e1._tag, "InvalidTraffic")
      const e2 = yield* Effect.flip(Patterns.resolve({ pattern: "diurnal", requests: 10, rps: 1 }))
      assert.include(e2.message, "not both")
      const e3 = yield* Effect.flip(Patterns.resolve({ pattern: "steady", rps: -1 }))
      assert.include(e3.message, "rps")
      const e4 = yield* Effect.flip(Patterns.resolve({ pattern: "burst", requests: 2, bursts: 3 }))
      assert.include(e4.message, "burst")
    }))
})
