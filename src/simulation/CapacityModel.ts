/**
 * The capacity planner's model: its options, the shape of a probe and of an
 * answer, and the bound Little's law puts on the answer before any probe runs.
 *
 * **The bound**
 *
 * A broadcast is a closed loop: it asks for a segment, waits `latency` for it,
 * plays it for `play`, and asks again. Little's law over the loop says
 * `n = throughput × (play + mean latency)`. The pool serves at most
 * `limit / service` segments a second (`service`: the mean time one segment
 * holds a slot), and a level whose p95 latency is within the target has a
 * mean latency within the target too (mean ≤ p95 for these latencies: a wait
 * in a FIFO queue plus a service time of ±20 %). So
 *
 * `n ≤ limit × (play + target) / service`,
 *
 * divided by `1 − maxFailureShare` because a failed segment (at most that
 * share of a sustained level) may hold no slot at all. The level where the
 * pool first becomes busy all the time, `limit × (play + service) / service`
 * (each broadcast's cycle with no wait), is *not* a bound: past it the extra
 * broadcasts wait in the queue, and the target allows each to wait up to
 * `target − service`.
 *
 * The service time is the simulator's own mean for the model
 * ({@link serviceOf}: time to first byte plus generation per character; the
 * noise around it has mean 1), known before any probe, so the bound is the
 * top of the search from the start.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import { limitsOf, type PlanName, type Pool, poolOfModel } from "../resilience/Plans.ts"
import * as Generation from "../simulator/Generation.ts"
import type * as Report from "./Report.ts"
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
  /**
   * Measured virtual span of each probe, ms, after its warm-up (one cycle of
   * `play + target`). Default: enough cycles for {@link minMeasuredSegments}
   * segments (at least one cycle).
   */
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

/** Which step of the search ran a probe. */
export type Phase =
  /** One broadcast: is the target reachable at all; the service time as a client sees it. */
  | "single"
  /** The top of the search: the bound (or `maxStreams` when lower). */
  | "bound"
  /** A level Little's law predicts from the last saturated probe, inside the bracket. */
  | "prediction"
  /** The midpoint of the bracket. */
  | "bisection"
  /** The level just above the bound, probed only when the bound itself was sustained (and on, if that is too). */
  | "above bound"

/** The result of one probe. */
export interface Probe {
  readonly streams: number
  /** Segments asked within the measured span (the warm-up's are not counted anywhere). */
  readonly segments: number
  /** Segments asked during the warm-up, not measured. */
  readonly warmupSegments: number
  readonly failed: number
  /** The measured failures by reason (`Defect` is a bug of the strategy, not a busy pool). */
  readonly failedByReason: Readonly<Record<string, number>>
  readonly latencyMs: Report.Percentiles
  /** Mean latency of the measured successful segments. */
  readonly meanMs: number
  /** Virtual span of the warm-up and of the measured part, ms. */
  readonly warmupMs: number
  readonly measuredMs: number
  /** Measured segments per second. */
  readonly throughputPerS: number
  /** Share of the pool's slot time the measured segments needed: `throughput × service / limit`. */
  readonly utilization: number
  readonly maxInFlight: number
  readonly tooManyConcurrent: number
  readonly sustained: boolean
  readonly phase: Phase
}

/** What Little's law's bound is computed from. */
export interface BoundInput {
  /** The pool's concurrency limit for the model (the plan table's, which the simulator enforces). */
  readonly limit: number
  /** Mean time one segment holds a slot: the simulator's mean for the model and length. */
  readonly serviceMs: number
  /** Time to first byte and generation time per character behind `serviceMs`. */
  readonly ttfbMs: number
  readonly msPerChar: number
  readonly playMs: number
  readonly targetP95Ms: number
  readonly maxFailureShare: number
}

/** Little's law's bound on the answer, and what it is computed from. */
export interface Bound extends BoundInput {
  /** `floor(limit × (play + target) / (service × (1 − maxFailureShare)))`: no more broadcasts are sustainable. */
  readonly streams: number
  /** The same before `floor`. */
  readonly exact: number
  /** Most segments a second the pool serves: `limit / service`. */
  readonly maxThroughputPerS: number
  /**
   * `floor(limit × (play + service) / service)`: the level from which the pool
   * is busy all the time (no broadcast waits below it). Not a bound.
   */
  readonly saturationStreams: number
}

/** The answer of a search. */
export interface CapacityResult {
  readonly plan: PlanName
  readonly model: string
  readonly pool: Pool
  readonly limit: number
  readonly chars: number
  readonly targetP95Ms: number
  /** The measured span asked for (`undefined`: automatic, per probe in `probes`). */
  readonly durationMs: number | undefined
  readonly maxFailureShare: number
  /** Playing time of one segment, ms. */
  readonly playMs: number
  /** Most broadcasts sustained (0 when even one is not). */
  readonly streams: number
  /** Whether the search stopped at `maxStreams` while still sustained. */
  readonly capped: boolean
  /** The mean service time the bound uses (the simulator's). */
  readonly serviceMs: number
  /** Mean latency of one broadcast alone (no queueing): the service time as the client saw it. */
  readonly measuredServiceMs: number
  readonly bound: Bound
  /** `streams ≤ bound.streams`. False would mean the bound's reasoning failed: the search then went past it. */
  readonly withinBound: boolean
  readonly probes: ReadonlyArray<Probe>
}

/** The production-deployment guide's figure: a concurrency of 5 carries about 100 broadcasts. */
export const guideFigure = { concurrency: 5, broadcasts: 100 } as const

/** Our number scaled to the guide's concurrency of 5, and its ratio to its 100. */
export const perFive = (r: CapacityResult): { readonly broadcasts: number; readonly ratio: number } => {
  const broadcasts = r.limit === 0 ? 0 : (r.streams * guideFigure.concurrency) / r.limit
  return { broadcasts, ratio: broadcasts / guideFigure.broadcasts }
}

/** Segments a probe measures at least when its span is automatic. */
export const minMeasuredSegments = 500

/** The options with their defaults, checked. */
export interface Resolved {
  readonly plan: PlanName
  readonly model: string
  readonly pool: Pool
  readonly limit: number
  readonly chars: number
  readonly targetP95Ms: number
  readonly durationMs: number | undefined
  readonly maxFailureShare: number
  readonly failureRate: number
  readonly maxStreams: number
  readonly charsPerSecond: number
  readonly playMs: number
  readonly seed: number
  readonly strategy: Strategy
  readonly config: unknown
  readonly stepMs: number
  /** The simulator's latency model, also what {@link Bound.serviceMs} comes from. */
  readonly latency: Generation.LatencyModel
  readonly bound: Bound
}

/** Playing time of a segment of `chars` characters, ms. */
export const playMsOf = (chars: number, charsPerSecond = 15): number => Math.round((chars / charsPerSecond) * 1000)

/** The simulator's mean service time of one TTS segment: time to first byte plus generation. */
export const serviceOf = (
  latency: Generation.LatencyModel,
  pool: Pool,
  model: string,
  chars: number
): { readonly serviceMs: number; readonly ttfbMs: number; readonly msPerChar: number } => {
  const profile = Generation.profileOf(latency, pool, model)
  return {
    serviceMs: profile.ttfbMs + chars * profile.msPerUnit,
    ttfbMs: profile.ttfbMs,
    msPerChar: profile.msPerUnit
  }
}

/** Little's law's bound (see the module's documentation). */
export const boundOf = (input: BoundInput): Bound => {
  const { limit, maxFailureShare, playMs, serviceMs, targetP95Ms } = input
  const exact = (limit * (playMs + targetP95Ms)) / (serviceMs * (1 - maxFailureShare))
  return {
    ...input,
    streams: Math.floor(exact),
    exact,
    maxThroughputPerS: (limit * 1000) / serviceMs,
    saturationStreams: Math.floor((limit * (playMs + serviceMs)) / serviceMs)
  }
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
      maxFailureShare >= 0 && maxFailureShare < 1,
      `the failure share must be within 0..1 (1 excluded), got ${maxFailureShare}`
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
    const latency = Generation.defaultLatency
    const playMs = playMsOf(chars, cps)
    const cycleMs = playMs + targetP95Ms
    yield* check(
      o.durationMs === undefined || (Number.isFinite(o.durationMs) && o.durationMs >= cycleMs),
      `the probe duration must be at least one cycle (play + target = ${cycleMs} ms), so that every broadcast is measured, got ${o.durationMs} ms`
    )
    const service = serviceOf(latency, pool, model, chars)
    return {
      plan,
      model,
      pool,
      limit,
      chars,
      targetP95Ms,
      durationMs: o.durationMs,
      maxFailureShare,
      failureRate,
      maxStreams,
      charsPerSecond: cps,
      playMs,
      seed: o.seed ?? 1,
      strategy: o.strategy ?? Strategies.resilient,
      config: o.config,
      stepMs: o.stepMs ?? 3_600_000,
      latency,
      bound: boundOf({ limit, ...service, playMs, targetP95Ms, maxFailureShare })
    }
  })
