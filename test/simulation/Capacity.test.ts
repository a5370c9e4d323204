import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, References } from "effect"
import * as CapacityCli from "../../src/cli/capacity.ts"
import * as Capacity from "../../src/simulation/Capacity.ts"

// free: 2 concurrent Multilingual requests. 150-char segments play 10 s and take ~0.9 s to generate,
// so at full utilization Little's law allows about 2 x (10 + 0.9) / 0.9 ~ 24 broadcasts.
const small: Capacity.CapacityOptions = { plan: "free", chars: 150, targetP95Ms: 2000, durationMs: 60_000, seed: 2 }

const quiet = <A, E>(self: Effect.Effect<A, E>) => Effect.provideService(self, References.MinimumLogLevel, "Error")

describe("Capacity", () => {
  it.live(
    "the search finds the edge: the answer is sustained, one more is not, and it stays under Little's bound",
    () =>
      Effect.gen(function*() {
        const seen: Array<Capacity.Probe> = []
        const result = yield* quiet(Capacity.search(small, (p) => Effect.sync(() => void seen.push(p))))
        assert.deepStrictEqual(seen, result.probes)
        assert.strictEqual(result.limit, 2)
        assert.strictEqual(result.playMs, 10_000)
        assert.isFalse(result.capped)
        assert.isAbove(result.streams, 2)
        assert.isAtMost(result.streams, result.utilizationBound + 1)
        const at = result.probes.find((p) => p.streams === result.streams)
        const above = result.probes.find((p) => p.streams === result.streams + 1)
        assert.isTrue(at?.sustained)
        assert.isFalse(above?.sustained)
        assert.isAtMost(at!.latencyMs.p95, 2000)
        assert.isAbove(above!.latencyMs.p95, 2000)
        // Doubling first (1, 2, 4, ...), then bisection between the last good and the first bad.
        const doubling = result.probes.filter((p) => p.phase === "doubling").map((p) => p.streams)
        assert.deepStrictEqual(doubling, doubling.map((_, i) => 2 ** i))
        // The resilient stack keeps every probe within the plan's limit, without a concurrency 429.
        for (const p of result.probes) {
          assert.isAtMost(p.maxInFlight, 2)
          assert.strictEqual(p.tooManyConcurrent, 0)
          assert.strictEqual(p.failed, 0)
        }
        const five = Capacity.perFive(result)
        assert.closeTo(five.broadcasts, (result.streams * 5) / 2, 1e-9)
        assert.closeTo(five.ratio, five.broadcasts / 100, 1e-9)
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a probe is deterministic for a seed, and a tighter target carries fewer broadcasts",
    () =>
      Effect.gen(function*() {
        const a = yield* quiet(Capacity.probe(small, 6))
        const b = yield* quiet(Capacity.probe(small, 6))
        assert.deepStrictEqual(a, b)
        assert.isAbove(a.segments, 6 * 4)
        const strict = yield* quiet(Capacity.search({ ...small, targetP95Ms: 1000, maxStreams: 64 }))
        const loose = yield* quiet(Capacity.search({ ...small, targetP95Ms: 5000, maxStreams: 64 }))
        assert.isBelow(strict.streams, loose.streams)
      }),
    { timeout: 60_000 }
  )

  it.live("a target below the service time sustains nothing; max streams caps the search", () =>
    Effect.gen(function*() {
      const none = yield* quiet(Capacity.search({ ...small, targetP95Ms: 100 }))
      assert.strictEqual(none.streams, 0)
      assert.lengthOf(none.probes, 1)
      const capped = yield* quiet(Capacity.search({ ...small, maxStreams: 3 }))
      assert.strictEqual(capped.streams, 3)
      assert.isTrue(capped.capped)
    }))

  it.effect("bad options are clear errors", () =>
    Effect.gen(function*() {
      assert.include(
        (yield* Effect.flip(Capacity.resolve({ chars: 0 }))).message,
        "chars must be an integer within 1..10000"
      )
      assert.include((yield* Effect.flip(Capacity.resolve({ targetP95Ms: -1 }))).message, "target p95 must be positive")
      assert.include(
        (yield* Effect.flip(Capacity.resolve({ failureRate: 2 }))).message,
        "failure rate must be within 0..1"
      )
      assert.include(
        (yield* Effect.flip(Capacity.resolve({ plan: "free", model: "music_v1" }))).message,
        "has no music concurrency"
      )
    }))

  it.effect("the command's flags: bad values are one clear message; the result compares with the production-deployment guide's figure", () =>
    Effect.gen(function*() {
      const input: CapacityCli.CapacityInput = { ...CapacityCli.defaults, config: Option.none(), json: false }
      const plan = yield* Effect.flip(CapacityCli.toOptions({ ...input, plan: "gold" }, undefined))
      assert.include(plan.message, "--plan must be one of free, starter, creator, pro, scale, business; got \"gold\"")
      const target = yield* Effect.flip(CapacityCli.toOptions({ ...input, targetP95: "fast" }, undefined))
      assert.include(target.message, "--target-p95 must be a number of seconds")
      // Each refusal names its flag (the library's own messages name its options).
      const refused = (patch: Partial<CapacityCli.CapacityInput>) =>
        Effect.map(Effect.flip(CapacityCli.toOptions({ ...input, ...patch }, undefined)), (e) => e.message)
      assert.strictEqual(yield* refused({ chars: -1 }), "--chars must be within 1..10000, got -1")
      assert.strictEqual(yield* refused({ failureRate: 2 }), "--failure-rate must be within 0..1, got 2")
      assert.strictEqual(yield* refused({ maxStreams: 0 }), "--max-streams must be a positive integer, got 0")
      assert.match(yield* refused({ duration: "500ms" }), /^--duration must be at least 1s/)
      const ok = yield* CapacityCli.toOptions({ ...input, plan: "creator", targetP95: "1500ms" }, undefined)
      assert.strictEqual(ok.targetP95Ms, 1500)
      const text = CapacityCli.resultText({
        plan: "creator",
        model: "eleven_multilingual_v2",
        pool: "standard",
        limit: 5,
        chars: 250,
        targetP95Ms: 2000,
        durationMs: 300_000,
        playMs: 16_667,
        streams: 67,
        capped: false,
        serviceMs: 1330,
        utilizationBound: 67,
        probes: []
      })
      assert.include(text, "answer: 67 simultaneous broadcasts within p95 2000 ms on creator (limit 5).")
      assert.include(text, "ours:  67 on a limit of 5 = 67 per 5 slots, 67 % of that figure")
    }))
})
