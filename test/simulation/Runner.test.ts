import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema, Tracer } from "effect"
import * as Patterns from "../../src/simulation/Patterns.ts"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"

const small: Record<Patterns.PatternName, Patterns.TrafficOptions> = {
  steady: { pattern: "steady", rps: 4, requests: 40 },
  "ramp-up": { pattern: "ramp-up", startRps: 1, endRps: 8, durationMs: 10_000 },
  burst: { pattern: "burst", requests: 30, bursts: 2, durationMs: 20_000 },
  chaos: { pattern: "chaos", rps: 4, requests: 40 },
  diurnal: { pattern: "diurnal", requests: 60, durationMs: 3_600_000 }
}

const cases = Patterns.patternNames.flatMap((p) => Strategies.registry.map((s) => [p, s.name] as const))

describe("Runner", () => {
  it.effect.each(cases)(
    "%s through %s: every call ends once (succeeded + failed = requests)",
    ([pattern, name]) =>
      Effect.gen(function*() {
        const strategy = Strategies.find(name)!
        const report = yield* Runner.run({
          traffic: { ...small[pattern], chars: { min: 50, max: 400 } },
          strategy,
          plan: "free"
        })
        const s = report.summary
        assert.strictEqual(s.succeeded + s.failed, s.requests)
        assert.strictEqual(Object.values(s.failedByReason).reduce((a, b) => a + b, 0), s.failed)
        assert.isTrue(s.attempts >= s.requests - (s.failedByReason["QueueTimeout"] ?? 0))
        assert.isTrue(s.virtualDurationMs > 0)
        if (pattern === "chaos") assert.strictEqual(s.failureRate, Runner.chaosDefaultFailureRate)
      })
  )

  it.effect.prop(
    "property: any pattern, strategy, seed, size and fault rate: succeeded + failed = requests",
    {
      pattern: Schema.Literals(Patterns.patternNames),
      strategy: Schema.Literals(["naive", "p-queue-recipe"]),
      seed: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1_000_000 })),
      requests: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 25 })),
      failurePercent: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 60 }))
    },
    ({ failurePercent, pattern, requests, seed, strategy }) =>
      Effect.gen(function*() {
        const report = yield* Runner.run({
          traffic: {
            pattern,
            requests,
            seed,
            chars: { min: 20, max: 300 },
            ...(pattern === "diurnal" ? { durationMs: 600_000 } : {})
          },
          strategy: Strategies.find(strategy)!,
          plan: "starter",
          failureRate: failurePercent / 100
        })
        const s = report.summary
        assert.strictEqual(s.requests, requests)
        assert.strictEqual(s.succeeded + s.failed, requests)
        assert.strictEqual(Object.values(s.failedByReason).reduce((a, b) => a + b, 0), s.failed)
        assert.isTrue(s.maxInFlight <= s.limit, "the simulator never admits past the limit")
      }),
    { arbitrary: { runs: 12 } }
  )

  it.effect.each(Strategies.registry.map((s) => s.name))(
    "%s: same seed, identical reports except wallMs; another seed differs",
    (name) =>
      Effect.gen(function*() {
        const options: Runner.RunOptions = {
          traffic: { pattern: "chaos", rps: 5, requests: 60, seed: 42 },
          strategy: Strategies.find(name)!,
          plan: "free",
          failureRate: 0.3
        }
        const a = yield* Runner.run(options)
        const b = yield* Runner.run(options)
        const c = yield* Runner.run({ ...options, traffic: { ...options.traffic, seed: 43 } })
        assert.deepStrictEqual({ ...a.summary, wallMs: 0 }, { ...b.summary, wallMs: 0 })
        assert.deepStrictEqual(a.series, b.series)
        assert.notDeepEqual({ ...a.summary, wallMs: 0, seed: 0 }, { ...c.summary, wallMs: 0, seed: 0 })
      })
  )

  it.effect("tracing is off by default (no spans) and changes nothing in the report when on", () =>
    Effect.gen(function*() {
      const names: Array<string> = []
      const tracer = Tracer.make({
        span: (options) => {
          names.push(options.name)
          return new Tracer.NativeSpan(options)
        }
      })
      const options: Runner.RunOptions = {
        traffic: { pattern: "chaos", rps: 4, requests: 30, chars: { min: 50, max: 200 } },
        strategy: Strategies.resilient,
        plan: "free"
      }
      const off = yield* Runner.run(options).pipe(Effect.withTracer(tracer))
      assert.strictEqual(names.length, 0)
      const on = yield* Runner.run({ ...options, tracing: true }).pipe(Effect.withTracer(tracer))
      assert.isTrue(names.includes("elevenlabs.textToSpeech.convert"), names.slice(0, 5).join())
      assert.deepStrictEqual({ ...on.summary, wallMs: 0 }, { ...off.summary, wallMs: 0 })
    }))

  it.effect("a burst past the limit: naive meets too_many_concurrent_requests, the rate-limits guide's queue keeps under it", () =>
    Effect.gen(function*() {
      const traffic: Patterns.TrafficOptions = { pattern: "burst", requests: 20, chars: { min: 100, max: 100 } }
      const naive = (yield* Runner.run({ traffic, strategy: Strategies.naive, plan: "free" })).summary
      assert.isTrue(naive.http429.tooManyConcurrentRequests > 0)
      assert.isTrue(naive.retries > 0)
      assert.isTrue(naive.attempts <= 3 * naive.requests, "the SDK makes at most 3 attempts")
      assert.strictEqual(naive.maxInFlight, 2)
      assert.strictEqual(naive.limit, 2)
      const seed = (yield* Runner.run({ traffic, strategy: Strategies.pQueueRecipe, plan: "free" })).summary
      assert.strictEqual(seed.succeeded, 20)
      assert.strictEqual(seed.http429.tooManyConcurrentRequests, 0)
      assert.isTrue(seed.maxInFlight <= 2)
      assert.isTrue(seed.queueWaitMs.max > 0)
      // 100 characters at 1 credit each
      assert.strictEqual(seed.creditsUsed, 2000)
      assert.isTrue(seed.utilization > 0.5 && seed.utilization <= 1.05, `utilization ${seed.utilization}`)
    }))

  it.effect("--concurrency caps the callers", () =>
    Effect.gen(function*() {
      const report = yield* Runner.run({
        traffic: { pattern: "burst", requests: 12 },
        strategy: Strategies.naive,
        plan: "pro",
        concurrency: 3
      })
      assert.isTrue(report.summary.maxInFlight <= 3)
      assert.strictEqual(report.summary.succeeded, 12)
    }))

  it.effect("credits run out: quota_exceeded failures, nothing lost", () =>
    Effect.gen(function*() {
      const report = yield* Runner.run({
        traffic: { pattern: "steady", rps: 2, requests: 10, chars: { min: 100, max: 100 } },
        strategy: Strategies.pQueueRecipe,
        plan: "pro",
        credits: 450
      })
      const s = report.summary
      assert.strictEqual(s.succeeded, 4)
      assert.strictEqual(s.failedByReason["QuotaExceeded"], 6)
      assert.strictEqual(s.creditsUsed, 400)
    }))

  it.effect("a day of diurnal traffic runs in virtual time", () =>
    Effect.gen(function*() {
      const report = yield* Runner.run({
        traffic: { pattern: "diurnal", requests: 300, chars: { min: 20, max: 60 } },
        strategy: Strategies.pQueueRecipe,
        plan: "pro"
      })
      assert.strictEqual(report.summary.succeeded, 300)
      assert.isTrue(report.summary.virtualDurationMs > 23 * 3_600_000)
      assert.strictEqual(report.series.inFlight.length, 120)
    }))

  it.effect("bad run options are typed errors", () =>
    Effect.gen(function*() {
      const e1 = yield* Effect.flip(
        Runner.run({ traffic: { pattern: "steady" }, strategy: Strategies.naive, failureRate: 2 })
      )
      assert.strictEqual(e1._tag, "SimulationError")
      const e2 = yield* Effect.flip(
        Runner.run({ traffic: { pattern: "steady" }, strategy: Strategies.naive, concurrency: 0 })
      )
      assert.include(e2.message, "concurrency")
      const e3 = yield* Effect.flip(Runner.run({ traffic: { pattern: "steady", rps: 0 }, strategy: Strategies.naive }))
      assert.strictEqual(e3._tag, "InvalidTraffic")
    }))
})
