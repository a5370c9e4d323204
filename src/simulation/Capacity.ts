/**
 * Capacity planning: how many simultaneous broadcasts a plan sustains within
 * a target p95 latency, found by simulation in virtual time.
 *
 * **The broadcast model**
 *
 * A broadcast is one listener loop: ask for the next segment of `chars`
 * characters (one TTS `convert` through the strategy, the resilient stack by
 * default), wait until all of it is there, play it (`chars / charsPerSecond`
 * seconds of speech; the simulator speaks 15 characters a second), then ask
 * for the next one. The latency of a segment, from asking to its last byte,
 * is the silence a listener hears between two segments. Streams start at
 * random offsets within one segment's playing time (seeded), so they do not
 * ask in lock-step.
 *
 * A probe runs `n` broadcasts for `durationMs` of virtual time against the
 * in-process simulator (the plan's limits, latencies and faults) and takes the
 * p95 of every segment's latency. `n` is **sustained** when that p95 is within
 * the target and at most `maxFailureShare` of the segments failed.
 *
 * **The search**: probe 1, 2, 4, ... (doubling) until a probe is not
 * sustained (or `maxStreams`), then bisect between the last sustained and the
 * first failing count down to one stream. p95 grows with `n` (more streams,
 * longer queues), which is what makes the bisection sound; a noisy edge moves
 * the answer by a stream or two.
 *
 * Each probe runs under its own `TestClock`, like the virtual-time runner:
 * the clock jumps from one wake-up to the next, so five minutes of a hundred
 * broadcasts take a second or two.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Fiber, Random, Redacted, Schema } from "effect"
import { HttpClient } from "effect/http"
import { TestClock } from "effect/testing"
import { limitsOf, type PlanName, type Pool, poolOfModel } from "../resilience/Plans.ts"
import * as InProcess from "../simulator/InProcess.ts"
import * as Simulator from "../simulator/Simulator.ts"
import * as LoadTest from "./LoadTest.ts"
import * as Recorder from "./Recorder.ts"
import * as Report from "./Report.ts"
import * as Strategies from "./Strategies.ts"
import type { Strategy } from "./Strategies.ts"

/** Bad options, or a probe that could not finish. */
export class CapacityError extends Schema.Error<CapacityError>("elevenlabs-resilience/CapacityError")({
  _tag: Schema.tag("CapacityError"),
  message: Schema.String
}) {}

/** What to plan for. Every field has a default. */
export interface CapacityOptions {
  /** Default `pro`. */
  readonly plan?: PlanName | undefined
  /** Default `eleven_multilingual_v2`. */
  readonly model?: string | undefined
  /** Characters per segment. Default 250 (about 17 s of speech). */
  readonly chars?: number | undefined
  /** Target p95 segment latency, ms. Default 2000. */
  readonly targetP95Ms?: number | undefined
  /** Virtual span of each probe, ms. Default 5 minutes. */
  readonly durationMs?: number | undefined
  /** Largest share of failed segments a sustained probe may have. Default 0.01. */
  readonly maxFailureShare?: number | undefined
  /** Fault probability per request in the simulator. Default 0. */
  readonly failureRate?: number | undefined
  /** Most streams the search tries. Default 10,000. */
  readonly maxStreams?: number | undefined
  /** Characters of text per second of speech (the simulator's). Default 15. */
  readonly charsPerSecond?: number | undefined
  /** Default 1. */
  readonly seed?: number | undefined
  /** How segments are requested. Default the resilient stack ({@link Strategies.resilient}). */
  readonly strategy?: Strategy | undefined
  /** Parsed config JSON for the resilient strategy. */
  readonly config?: unknown
  /**
   * Largest step of the virtual-clock driver, ms. Default one hour: the clock
   * jumps from one scheduled wake-up to the next (`TestClock.adjust` runs
   * them in order). A small step (e.g. 10) is only needed for a strategy
   * that waits on I/O the test clock cannot see (a real promise): a large
   * step would let the clock run on to the next timer while it waits.
   */
  readonly stepMs?: number | undefined
}

/** The result of one probe. */
export interface Probe {
  readonly streams: number
  readonly segments: number
  readonly failed: number
  readonly latencyMs: Report.Percentiles
  /** Mean latency of the successful segments. */
  readonly meanMs: number
  readonly maxInFlight: number
  readonly tooManyConcurrent: number
  readonly sustained: boolean
  /** Which step of the search ran it. */
  readonly phase: "doubling" | "bisection"
}

/** The answer of a search. */
export interface CapacityResult {
  readonly plan: PlanName
  readonly model: string
  readonly pool: Pool
  readonly limit: number
  readonly chars: number
  readonly targetP95Ms: number
  readonly durationMs: number
  /** Playing time of one segment, ms. */
  readonly playMs: number
  /** Most broadcasts sustained (0 when even one is not). */
  readonly streams: number
  /** Whether the search stopped at `maxStreams` while still sustained. */
  readonly capped: boolean
  /** Mean segment latency with one broadcast (no queueing): the service time. */
  readonly serviceMs: number
  /** Little's law bound at full utilization: `limit x (play + service) / service`. */
  readonly utilizationBound: number
  readonly probes: ReadonlyArray<Probe>
}

/** The production-deployment guide's figure: a concurrency of 5 carries about 100 broadcasts. */
export const guideFigure = { concurrency: 5, broadcasts: 100 } as const

/** Our number scaled to the guide's concurrency of 5, and its ratio to its 100. */
export const perFive = (r: CapacityResult): { readonly broadcasts: number; readonly ratio: number } => {
  const broadcasts = r.limit === 0 ? 0 : (r.streams * guideFigure.concurrency) / r.limit
  return { broadcasts, ratio: broadcasts / guideFigure.broadcasts }
}

interface Resolved {
  readonly plan: PlanName
  readonly model: string
  readonly pool: Pool
  readonly limit: number
  readonly chars: number
  readonly targetP95Ms: number
  readonly durationMs: number
  readonly maxFailureShare: number
  readonly failureRate: number
  readonly maxStreams: number
  readonly playMs: number
  readonly seed: number
  readonly strategy: Strategy
  readonly config: unknown
  readonly stepMs: number
}

const check = (ok: boolean, message: string): Effect.Effect<void, CapacityError> =>
  ok ? Effect.void : Effect.fail(new CapacityError({ message }))

/** Fills in defaults and checks the options. */
export const resolve = (o: CapacityOptions): Effect.Effect<Resolved, CapacityError> =>
  Effect.gen(function*() {
    const plan = o.plan ?? "pro"
    const model = o.model ?? "eleven_multilingual_v2"
    const pool = poolOfModel(model)
    const limit = limitsOf(plan)[pool]
    const chars = o.chars ?? 250
    const targetP95Ms = o.targetP95Ms ?? 2000
    const durationMs = o.durationMs ?? 300_000
    const maxFailureShare = o.maxFailureShare ?? 0.01
    const failureRate = o.failureRate ?? 0
    const maxStreams = o.maxStreams ?? 10_000
    const cps = o.charsPerSecond ?? 15
    yield* check(
      Number.isInteger(chars) && chars >= 1 && chars <= 10_000,
      `chars must be an integer within 1..10000, got ${chars}`
    )
    yield* check(Number.isFinite(targetP95Ms) && targetP95Ms > 0, `the target p95 must be positive, got ${targetP95Ms}`)
    yield* check(
      Number.isFinite(durationMs) && durationMs >= 1000,
      `the probe duration must be at least 1 s, got ${durationMs} ms`
    )
    yield* check(
      maxFailureShare >= 0 && maxFailureShare <= 1,
      `the failure share must be within 0..1, got ${maxFailureShare}`
    )
    yield* check(failureRate >= 0 && failureRate <= 1, `the failure rate must be within 0..1, got ${failureRate}`)
    yield* check(
      Number.isInteger(maxStreams) && maxStreams >= 1,
      `max streams must be a positive integer, got ${maxStreams}`
    )
    yield* check(Number.isFinite(cps) && cps > 0, `chars per second must be positive, got ${cps}`)
    yield* check(
      o.stepMs === undefined || (Number.isFinite(o.stepMs) && o.stepMs > 0),
      `the clock step must be positive, got ${o.stepMs}`
    )
    yield* check(limit > 0, `plan ${plan} has no ${pool} concurrency (model ${model})`)
    return {
      plan,
      model,
      pool,
      limit,
      chars,
      targetP95Ms,
      durationMs,
      maxFailureShare,
      failureRate,
      maxStreams,
      playMs: Math.round((chars / cps) * 1000),
      seed: o.seed ?? 1,
      strategy: o.strategy ?? Strategies.resilient,
      config: o.config,
      stepMs: o.stepMs ?? 3_600_000
    }
  })

/** Runs `streams` broadcasts for the probe's span in virtual time. */
const runProbe = (r: Resolved, streams: number, phase: Probe["phase"]): Effect.Effect<Probe, CapacityError> => {
  const body = Effect.gen(function*() {
    // Start inside a clock wake-up (see the runner: `adjust` waits for fibers it wakes).
    yield* Effect.sleep(Duration.millis(1))
    const simulator = yield* Simulator.make({
      seed: r.seed,
      plan: r.plan,
      apiKeys: [{ key: "sim-key", name: "sim", plan: r.plan, characterLimit: 1e15 }],
      faults: r.failureRate > 0 ? Simulator.faultMix(r.failureRate) : Simulator.noFaults,
      maxSamples: 16
    })
    const recorder = yield* Recorder.make
    const client = yield* InProcess.makeHttpClient(simulator)
    const call = yield* r.strategy.make({
      plan: r.plan,
      model: r.model,
      pool: r.pool,
      limit: r.limit,
      voiceId: LoadTest.defaultVoiceId,
      baseUrl: InProcess.defaultBaseUrl,
      inProcess: true,
      apiKey: Redacted.make("sim-key"),
      jitter: "full",
      config: r.config,
      recorder
    }).pipe(Effect.provideService(HttpClient.HttpClient, client), Effect.provideService(Recorder.Recorder, recorder))
    const latencies: Array<number> = []
    let okSum = 0
    let okCount = 0
    let failed = 0
    const listener = (stream: number) =>
      Effect.gen(function*() {
        const offset = Math.floor((yield* Random.next) * r.playMs)
        if (offset > 0) yield* Effect.sleep(Duration.millis(offset))
        for (let k = 0; recorder.now() < r.durationMs; k++) {
          const t0 = recorder.now()
          const outcome = yield* call({
            index: stream,
            atMs: t0,
            chars: r.chars,
            lane: "interactive",
            text: LoadTest.textOf(r.chars, stream * 100_000 + k)
          }).pipe(Effect.catchCause(() => Effect.succeed({ _tag: "Failure", reason: "Defect" } as const)))
          const latency = recorder.now() - t0
          latencies.push(latency)
          if (outcome._tag === "Success") {
            okSum += latency
            okCount++
          } else failed++
          yield* Effect.sleep(Duration.millis(r.playMs))
        }
      })
    yield* Effect.forEach(Array.from({ length: streams }, (_, i) => i), listener, {
      concurrency: "unbounded",
      discard: true
    })
    const stats = yield* simulator.stats
    const latencyMs = Report.percentiles(latencies)
    const segments = latencies.length
    return {
      streams,
      segments,
      failed,
      latencyMs,
      meanMs: okCount === 0 ? 0 : Math.round(okSum / okCount),
      maxInFlight: stats.pools[r.pool].maxInFlight,
      tooManyConcurrent: stats.byDetailStatus["too_many_concurrent_requests"] ?? 0,
      sustained: segments > 0 && latencyMs.p95 <= r.targetP95Ms && failed <= r.maxFailureShare * segments,
      phase
    } satisfies Probe
  }).pipe(Effect.scoped, Random.withSeed(r.seed + streams))

  // A bound on virtual time: a probe whose calls never settle must not spin.
  const horizonMs = r.durationMs + 24 * 3_600_000
  const stepMs = r.stepMs
  return Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(body)
    let advanced = 0
    while (fiber.pollUnsafe() === undefined) {
      if (advanced > horizonMs) {
        yield* Fiber.interrupt(fiber)
        return yield* new CapacityError({
          message: `the probe of ${streams} streams did not finish within a virtual day`
        })
      }
      yield* TestClock.adjust(Duration.millis(stepMs))
      advanced += stepMs
    }
    return yield* Fiber.join(fiber)
  }).pipe(Effect.provide(TestClock.layer({ warningDelay: "1 hour" })))
}

/** One probe: `streams` broadcasts, sustained or not. */
export const probe = (options: CapacityOptions, streams: number): Effect.Effect<Probe, CapacityError> =>
  Effect.flatMap(resolve(options), (r) => runProbe(r, streams, "doubling"))

/**
 * Searches the most broadcasts the plan sustains: doubling from 1, then
 * bisection. `onProbe` sees each probe as it finishes (for printing).
 *
 * @example
 * ```ts
 * const result = yield* Capacity.search({ plan: "creator", chars: 250, targetP95Ms: 2000 })
 * result.streams // => the number of broadcasts
 * ```
 */
export const search = (
  options: CapacityOptions,
  onProbe?: ((probe: Probe) => Effect.Effect<void>) | undefined
): Effect.Effect<CapacityResult, CapacityError> =>
  Effect.gen(function*() {
    const r = yield* resolve(options)
    const probes: Array<Probe> = []
    const run = (n: number, phase: Probe["phase"]) =>
      Effect.tap(runProbe(r, n, phase), (p) =>
        Effect.andThen(Effect.sync(() => void probes.push(p)), onProbe === undefined ? Effect.void : onProbe(p)))
    const first = yield* run(1, "doubling")
    let lo = 0
    let hi: number | undefined
    if (first.sustained) {
      lo = 1
      for (let n = 2; hi === undefined; n *= 2) {
        const m = Math.min(n, r.maxStreams)
        if (m <= lo) {
          break
        }
        const p = yield* run(m, "doubling")
        if (p.sustained) {
          lo = m
        } else hi = m
        if (m === r.maxStreams) {
          break
        }
      }
      while (hi !== undefined && hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2)
        const p = yield* run(mid, "bisection")
        if (p.sustained) {
          lo = mid
        } else hi = mid
      }
    } else hi = 1
    const serviceMs = first.meanMs
    return {
      plan: r.plan,
      model: r.model,
      pool: r.pool,
      limit: r.limit,
      chars: r.chars,
      targetP95Ms: r.targetP95Ms,
      durationMs: r.durationMs,
      playMs: r.playMs,
      streams: lo,
      capped: hi === undefined,
      serviceMs,
      utilizationBound: serviceMs === 0 ? 0 : Math.floor((r.limit * (r.playMs + serviceMs)) / serviceMs),
      probes
    } satisfies CapacityResult
  })
