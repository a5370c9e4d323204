import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Option, References, Schema } from "effect"
import * as CapacityCli from "../../src/cli/capacity.ts"
import { ttsModelIds } from "../../src/client/Models.ts"
import { limitsOf, type PlanName, poolOfModel } from "../../src/resilience/Plans.ts"
import * as Capacity from "../../src/simulation/Capacity.ts"
import type { Strategy } from "../../src/simulation/Strategies.ts"
import * as Generation from "../../src/simulator/Generation.ts"

const quiet = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provideService(self, References.MinimumLogLevel, "Error")

// free: 2 concurrent Multilingual requests. 150-char segments play 10 s and take 300 + 150 x 4 = 900 ms to
// generate: the pool is busy all the time from 2 x (10 + 0.9) / 0.9 = 24 broadcasts, and a 2 s p95 allows at most
// 2 x (10 + 2) / 0.9 / 0.99 = 26.
const small: Capacity.CapacityOptions = { plan: "free", chars: 150, targetP95Ms: 2000, seed: 2 }

/** Little's law's bound, computed here from the plan table and the simulator's latency model. */
const expectedBound = (o: { plan: PlanName; model: string; chars: number; targetP95Ms: number }) => {
  const pool = poolOfModel(o.model)
  const limit = limitsOf(o.plan)[pool]
  const profile = Generation.profileOf(Generation.defaultLatency, pool, o.model)
  const serviceMs = profile.ttfbMs + o.chars * profile.msPerUnit
  const playMs = Math.round((o.chars / 15) * 1000)
  return { limit, serviceMs, playMs, exact: (limit * (playMs + o.targetP95Ms)) / (serviceMs * 0.99) }
}

/**
 * What every search must satisfy, whatever the plan, model, length and target: the answer is within Little's
 * bound, the bound holds in the simulation (nothing above it was sustained), the answer is the edge (sustained,
 * one more not), the probes agree with Little's law and with the bound's premises, and the search is short.
 */
const checkSearch = (
  r: Capacity.CapacityResult,
  o: { plan: PlanName; model: string; chars: number; targetP95Ms: number }
) => {
  const label = `${o.plan} ${o.model} ${o.chars} chars, p95 ${o.targetP95Ms} ms`
  const expected = expectedBound(o)
  assert.strictEqual(r.limit, expected.limit, label)
  assert.strictEqual(r.bound.serviceMs, expected.serviceMs, label)
  assert.closeTo(r.bound.exact, expected.exact, 1e-9, label)
  assert.strictEqual(r.bound.streams, Math.floor(expected.exact), label)
  // The invariant.
  assert.isAtMost(r.streams, r.bound.streams, `${label}: the answer exceeds the bound`)
  assert.isTrue(r.withinBound, label)
  // The bound is real: no level above it was sustained.
  for (const p of r.probes) if (p.streams > r.bound.streams) assert.isFalse(p.sustained, `${label}: ${p.streams}`)
  // The answer is the edge: sustained, and one more is not (or the cap).
  assert.strictEqual(r.probes[0]!.streams, 1, label)
  assert.strictEqual(r.probes[0]!.phase, "single", label)
  if (r.streams > 0) {
    assert.isTrue(r.probes.some((p) => p.streams === r.streams && p.sustained), label)
    if (!r.capped) assert.isTrue(r.probes.some((p) => p.streams === r.streams + 1 && !p.sustained), label)
  }
  // The one-broadcast probe measures the bound's service time (the simulator's mean) within its noise.
  if (r.measuredServiceMs > 0) assert.closeTo(r.measuredServiceMs, r.serviceMs, r.serviceMs * 0.03, label)
  for (const p of r.probes) {
    // Every broadcast asks during the warm-up, which the measured segments exclude.
    assert.isAbove(p.segments, 0, label)
    assert.isAtLeast(p.warmupSegments, p.streams, label)
    // The pool serves at most limit / service (the bound's throughput), within the limit, without a 429.
    assert.isAtMost(p.utilization, 1.02, `${label}: ${p.streams}`)
    assert.isAtMost(p.maxInFlight, r.limit, label)
    assert.strictEqual(p.tooManyConcurrent, 0, label)
    // The bound's premise: a sustained level's mean latency is within its p95.
    if (p.sustained) assert.isAtMost(p.meanMs, p.latencyMs.p95, `${label}: ${p.streams}`)
    // Little's law over the closed loop: n = throughput x (play + mean latency), at saturation.
    if (p.utilization >= 0.95 && p.failed === 0) {
      const littles = (p.throughputPerS * (r.playMs + p.meanMs)) / 1000
      assert.closeTo(littles, p.streams, p.streams * 0.03, `${label}: Little's law at ${p.streams}`)
    }
  }
  // The bound makes the search short: at most about twice a bisection from 1 to the bound.
  assert.isAtMost(r.probes.length, 3 + 2 * Math.ceil(Math.log2(Math.max(2, r.bound.streams))), label)
}

/** Every plan, every pool and latency family (Multilingual, Flash, Turbo, v3, v1), short to long segments. */
const grid: ReadonlyArray<{ plan: PlanName; model: string; chars: number; targetP95Ms: number }> = [
  { plan: "free", model: "eleven_multilingual_v2", chars: 150, targetP95Ms: 2000 },
  { plan: "free", model: "eleven_multilingual_v2", chars: 1000, targetP95Ms: 2000 },
  { plan: "starter", model: "eleven_v3", chars: 60, targetP95Ms: 2000 },
  { plan: "creator", model: "eleven_flash_v2_5", chars: 200, targetP95Ms: 2000 },
  { plan: "creator", model: "eleven_turbo_v2_5", chars: 1000, targetP95Ms: 2000 },
  { plan: "pro", model: "eleven_multilingual_v2", chars: 250, targetP95Ms: 2000 },
  { plan: "pro", model: "eleven_flash_v2", chars: 50, targetP95Ms: 1000 },
  { plan: "scale", model: "eleven_monolingual_v1", chars: 400, targetP95Ms: 3000 },
  { plan: "business", model: "eleven_multilingual_v1", chars: 100, targetP95Ms: 1500 },
  { plan: "business", model: "eleven_flash_v2_5", chars: 200, targetP95Ms: 2000 }
]

describe("Capacity: the answer never exceeds Little's bound", () => {
  for (const o of grid) {
    it.live(
      `${o.plan} ${o.model}, ${o.chars} chars, p95 ${o.targetP95Ms} ms`,
      () => Effect.map(quiet(Capacity.search(o)), (r) => checkSearch(r, o)),
      { timeout: 120_000 }
    )
  }

  it.live.prop(
    "property: any plan, model, length, target and seed",
    [
      Schema.Literals(["free", "starter", "creator"]),
      Schema.Literals(ttsModelIds),
      Schema.Int.check(Schema.isBetween({ minimum: 20, maximum: 400 })),
      Schema.Int.check(Schema.isBetween({ minimum: 600, maximum: 4000 })),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 }))
    ],
    ([plan, model, chars, targetP95Ms, seed]) =>
      Effect.map(
        quiet(Capacity.search({ plan, model, chars, targetP95Ms, seed })),
        (r) => checkSearch(r, { plan, model, chars, targetP95Ms })
      ),
    { timeout: 300_000, arbitrary: { runs: 6, seed: 7 } }
  )
})

describe("Capacity", () => {
  it.live(
    "the command of the bug report: past the level where the pool saturates, within the bound, in a few probes",
    () =>
      Effect.gen(function*() {
        const o = { plan: "creator", model: "eleven_flash_v2_5", chars: 200, targetP95Ms: 2000 } as const
        const seen: Array<Capacity.Probe> = []
        const r = yield* quiet(Capacity.search(o, (p) => Effect.sync(() => void seen.push(p))))
        assert.deepStrictEqual(seen, r.probes)
        checkSearch(r, o)
        // The old "bound" was the level where the pool becomes busy all the time (no broadcast waits yet):
        // the p95 target lets broadcasts wait, so the answer is past it. That is not a bound.
        assert.strictEqual(
          r.bound.saturationStreams,
          Math.floor((r.limit * (r.playMs + r.serviceMs)) / r.serviceMs)
        )
        assert.isAbove(r.streams, r.bound.saturationStreams)
        // The search: one broadcast, the bound, then splits where Little's law puts the edge.
        assert.deepStrictEqual(r.probes.slice(0, 2).map((p) => [p.phase, p.streams]), [
          ["single", 1],
          ["bound", r.bound.streams]
        ])
        assert.isAtMost(r.probes.length, 6)
        assert.isTrue(r.probes.slice(2).every((p) => p.phase === "prediction" || p.phase === "bisection"))
      }),
    { timeout: 120_000 }
  )

  it.live("same inputs, same answer; a tighter target carries fewer broadcasts", () =>
    Effect.gen(function*() {
      const a = yield* quiet(Capacity.search(small))
      const b = yield* quiet(Capacity.search(small))
      assert.deepStrictEqual(a, b)
      assert.deepStrictEqual(yield* quiet(Capacity.probe(small, 6)), yield* quiet(Capacity.probe(small, 6)))
      const strict = yield* quiet(Capacity.search({ ...small, targetP95Ms: 1200 }))
      const loose = yield* quiet(Capacity.search({ ...small, targetP95Ms: 5000 }))
      assert.isBelow(strict.streams, a.streams)
      assert.isAbove(loose.streams, a.streams)
      assert.isBelow(strict.bound.streams, a.bound.streams)
    }), { timeout: 120_000 })

  it.live("a probe measures after its warm-up, over the span asked for", () =>
    Effect.gen(function*() {
      const r = yield* Capacity.resolve({ ...small, durationMs: 60_000 })
      const span = Capacity.spanOf(r, 6)
      assert.strictEqual(span.warmupMs, r.playMs + r.targetP95Ms)
      assert.strictEqual(span.measuredMs, 60_000)
      const auto = Capacity.spanOf(yield* Capacity.resolve(small), 6)
      const cycles = Math.ceil(Capacity.minMeasuredSegments / 6)
      assert.strictEqual(auto.measuredMs, cycles * (r.playMs + r.targetP95Ms))
      const p = yield* quiet(Capacity.probe({ ...small, durationMs: 60_000 }, 6))
      // 6 broadcasts, each a segment per cycle of play + latency (~10.9 s here): ~33 measured in 60 s.
      assert.closeTo(p.segments, (6 * 60_000) / (r.playMs + p.meanMs), 6)
      assert.isAtLeast(p.warmupSegments, 6)
      assert.strictEqual(p.warmupMs, span.warmupMs)
    }))

  it.live(
    "a target below the service time sustains nothing; max streams caps the search",
    () =>
      Effect.gen(function*() {
        const none = yield* quiet(Capacity.search({ ...small, targetP95Ms: 100 }))
        assert.strictEqual(none.streams, 0)
        assert.lengthOf(none.probes, 1)
        assert.isTrue(none.withinBound)
        const capped = yield* quiet(Capacity.search({ ...small, maxStreams: 3 }))
        assert.strictEqual(capped.streams, 3)
        assert.isTrue(capped.capped)
        assert.isTrue(capped.probes.every((p) => p.streams <= 3))
      }),
    { timeout: 60_000 }
  )

  it.live(
    "the answer is never clamped: where the bound's premise fails, the search goes past it and says so",
    () =>
      Effect.gen(function*() {
        // A strategy that answers at once without the simulator: no slot is held, so the pool's limit does not
        // bound anything, and Little's bound (computed from the simulator's service time) is wrong for it.
        const instant: Strategy = {
          name: "instant",
          description: "answers at once",
          make: () => Effect.succeed(() => Effect.succeed({ _tag: "Success", credits: 0 } as const))
        }
        const bound = (yield* Capacity.resolve(small)).bound.streams
        const r = yield* quiet(Capacity.search({ ...small, strategy: instant, maxStreams: bound + 7 }))
        assert.strictEqual(r.streams, bound + 7)
        assert.isTrue(r.capped)
        assert.isFalse(r.withinBound)
        assert.isTrue(r.probes.some((p) => p.phase === "above bound" && p.streams === bound + 1 && p.sustained))
        assert.include(CapacityCli.resultText(r), "ABOVE the bound")
      }),
    { timeout: 60_000 }
  )

  it.effect("the next split: Little's prediction inside the bracket, never past its midpoint, galloping", () =>
    Effect.gen(function*() {
      const r = yield* Capacity.resolve({ plan: "creator", model: "eleven_flash_v2_5", chars: 200, targetP95Ms: 2000 })
      // 10 slots, 275 ms a segment: at saturation the p95 grows by 27.5 ms per broadcast.
      const at = (streams: number, p95: number, utilization = 1): Capacity.Probe => ({
        streams,
        segments: 1000,
        warmupSegments: streams,
        failed: 0,
        failedByReason: {},
        latencyMs: { p50: p95, p95, p99: p95, max: p95 },
        meanMs: p95,
        warmupMs: 0,
        measuredMs: 1,
        throughputPerS: 1,
        utilization,
        maxInFlight: 10,
        tooManyConcurrent: 0,
        sustained: p95 <= 2000,
        phase: "bisection"
      })
      // 290 ms over the target at 563: 290 / 27.5 = 10.5 broadcasts too many.
      assert.strictEqual(Capacity.predictEdge(r, at(563, 2290)), 552)
      assert.deepStrictEqual(Capacity.nextSplit(r, 1, 563, at(563, 2290), undefined), {
        streams: 552,
        phase: "prediction",
        direction: "down",
        streak: 0
      })
      // Below saturation the p95 says nothing of the edge: the midpoint.
      assert.deepStrictEqual(Capacity.nextSplit(r, 1, 563, at(563, 2290, 0.5), undefined).streams, 282)
      // A prediction far off stops at the midpoint.
      assert.deepStrictEqual(Capacity.nextSplit(r, 1, 563, at(563, 60_000), undefined), {
        streams: 282,
        phase: "bisection",
        direction: "down",
        streak: 0
      })
      // Upwards from a sustained probe, within the bracket.
      assert.strictEqual(Capacity.nextSplit(r, 540, 563, at(540, 1800), undefined).streams, 547)
      // A prediction 1 away, after a step down that did not cross: the step is at least 2, then 4.
      const first = Capacity.nextSplit(r, 1, 563, at(563, 2290), undefined)
      const second = Capacity.nextSplit(r, 1, 552, at(552, 2010), first)
      assert.deepStrictEqual([second.streams, second.streak], [550, 1])
      const third = Capacity.nextSplit(r, 1, 550, at(550, 2010), second)
      assert.deepStrictEqual([third.streams, third.streak], [546, 2])
    }))

  it.effect("bad options are clear errors", () =>
    Effect.gen(function*() {
      const message = (o: Capacity.CapacityOptions) => Effect.map(Effect.flip(Capacity.resolve(o)), (e) => e.message)
      assert.include(yield* message({ chars: 0 }), "chars must be an integer within 1..10000")
      assert.include(yield* message({ targetP95Ms: -1 }), "target p95 must be positive")
      assert.include(yield* message({ failureRate: 2 }), "failure rate must be within 0..1")
      assert.include(yield* message({ plan: "free", model: "music_v1" }), "has no music concurrency")
      assert.include(yield* message({ chars: 150, durationMs: 5000 }), "at least one cycle (play + target = 12000 ms)")
    }))
})

describe("capacity (the command)", () => {
  const input: CapacityCli.CapacityInput = { ...CapacityCli.defaults, config: Option.none(), json: false }
  const refused = (patch: Partial<CapacityCli.CapacityInput>) =>
    Effect.map(Effect.flip(CapacityCli.toOptions({ ...input, ...patch }, undefined)), (e) => e.message)

  it.effect("bad flags are one clear message naming the flag", () =>
    Effect.gen(function*() {
      assert.include(
        yield* refused({ plan: "gold" }),
        "--plan must be one of free, starter, creator, pro, scale, business; got \"gold\""
      )
      assert.include(yield* refused({ targetP95: "fast" }), "--target-p95 must be a number of seconds")
      assert.strictEqual(yield* refused({ chars: -1 }), "--chars must be within 1..10000, got -1")
      assert.strictEqual(yield* refused({ failureRate: 2 }), "--failure-rate must be within 0..1, got 2")
      assert.strictEqual(yield* refused({ maxStreams: 0 }), "--max-streams must be a positive integer, got 0")
      assert.include(yield* refused({ duration: "often" }), "--duration must be a number of seconds")
      // 250 chars play 16.7 s; with the 2 s target a cycle is 18.7 s.
      assert.strictEqual(
        yield* refused({ duration: "10s" }),
        "--duration must be \"auto\" or at least one cycle, play + target = 18.7 s here (each broadcast must ask at least once while measured), got \"10s\""
      )
      const ok = yield* CapacityCli.toOptions({ ...input, plan: "creator", targetP95: "1500ms" }, undefined)
      assert.strictEqual(ok.targetP95Ms, 1500)
      assert.isUndefined(ok.durationMs)
      const fixed = yield* CapacityCli.toOptions({ ...input, duration: "1m" }, undefined)
      assert.strictEqual(fixed.durationMs, 60_000)
    }))

  it.live(
    "the output explains the method, the bound and its computation, the search and the answer",
    () =>
      Effect.gen(function*() {
        const r = yield* quiet(Capacity.search(small))
        const b = r.bound
        const method = CapacityCli.methodText(yield* Capacity.resolve(small))
        assert.include(method, `${b.streams} broadcasts at most, by Little's law`)
        assert.include(method, `${b.limit} x (${b.playMs} + ${b.targetP95Ms}) / ${b.serviceMs} / 0.99 = `)
        assert.include(method, `${b.serviceMs} ms a segment, the simulator's mean for eleven_multilingual_v2`)
        assert.include(method, `From ${b.saturationStreams} broadcasts`)
        assert.include(method, "warm-up cycle")
        const text = CapacityCli.resultText(r)
        assert.include(text, `answer: ${r.streams} simultaneous broadcasts within p95 2000 ms on free`)
        assert.include(text, `${r.streams} <= ${b.streams}: ${b.streams - r.streams} below the bound`)
        assert.include(text, "by Little's law")
        const lines = r.probes.map((p, i) => CapacityCli.probeLine(p, i === 0))
        assert.match(lines[0]!, /^phase\s+streams\s+measured/)
        assert.match(lines[1]!, /^bound\s+\d+/)
        // --json: one document, with the result, the probes and the same explanation in words.
        const printed: Array<string> = []
        yield* CapacityCli.execute(
          { ...input, plan: "free", chars: 150, seed: 2, json: true },
          (line) => Effect.sync(() => void printed.push(line))
        ).pipe(Effect.provide(FileSystem.layerNoop({})), quiet)
        assert.lengthOf(printed, 1)
        const json = JSON.parse(printed[0]!)
        assert.strictEqual(json.streams, r.streams)
        assert.strictEqual(json.bound.streams, b.streams)
        assert.strictEqual(json.durationMs, "auto")
        assert.deepStrictEqual(json.probes.map((p: Capacity.Probe) => p.streams), r.probes.map((p) => p.streams))
        assert.include(json.explanation.bound, "Little's law")
        assert.include(json.explanation.search, "bisection")
        assert.include(json.explanation.position, `${r.streams} <= ${b.streams}`)
      }),
    { timeout: 60_000 }
  )
})
