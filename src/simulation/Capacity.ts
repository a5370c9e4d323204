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
 * is the silence a listener hears between two segments.
 *
 * A probe ({@link CapacityProbe}) runs `n` broadcasts against the in-process
 * simulator (the plan's limits, latencies and faults): a warm-up cycle, then
 * a measured span. `n` is **sustained** when the p95 latency of the measured
 * segments is within the target and at most `maxFailureShare` of them failed.
 *
 * **The bound** ({@link CapacityModel}): Little's law over the closed loop,
 * `n ≤ limit × (play + target) / service` (divided by `1 − maxFailureShare`),
 * known before any probe.
 *
 * **The search**: one broadcast first (if even one is not sustained, the
 * answer is 0; it also shows the service time as a client sees it), then the
 * bound itself, then bisection between the highest level sustained and the
 * lowest not, each split where Little's law puts the edge seen from the last
 * saturated probe ({@link nextSplit}: its p95 grows by `service / limit` per
 * broadcast), never past the midpoint. p95 grows with `n` (more streams,
 * longer queues), which is what makes the bisection sound. The answer is
 * never clamped: if the bound itself is sustained, the level above it is
 * probed, and if that is sustained too the search goes on past the bound and
 * says so (`withinBound: false`).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import {
  type CapacityError,
  type CapacityOptions,
  type CapacityResult,
  type Probe,
  resolve,
  type Resolved
} from "./CapacityModel.ts"
import * as CapacityProbe from "./CapacityProbe.ts"

export {
  type Bound,
  boundOf,
  CapacityError,
  type CapacityOptions,
  type CapacityResult,
  guideFigure,
  minMeasuredSegments,
  perFive,
  type Phase,
  playMsOf,
  type Probe,
  resolve,
  type Resolved,
  serviceOf
} from "./CapacityModel.ts"
export { spanOf } from "./CapacityProbe.ts"

/** One probe: `streams` broadcasts, sustained or not. */
export const probe = (options: CapacityOptions, streams: number): Effect.Effect<Probe, CapacityError> =>
  Effect.flatMap(resolve(options), (r) => CapacityProbe.run(r, streams, "bisection"))

/** Pool utilization from which a probe counts as saturated: its p95 then grows by `service / limit` per broadcast. */
export const saturatedFrom = 0.9

/**
 * The level where Little's law puts the edge, seen from a saturated probe:
 * its p95 plus `service / limit` per broadcast added, the most that stays
 * within the target. `undefined` for a probe below saturation (its p95 says
 * little about the edge).
 */
export const predictEdge = (r: Resolved, p: Probe | undefined): number | undefined =>
  p === undefined || p.segments === 0 || p.utilization < saturatedFrom
    ? undefined
    : p.streams + Math.floor(((r.targetP95Ms - p.latencyMs.p95) * r.limit) / r.bound.serviceMs)

/** A step of the bisection: where, why, and which way from the last probe. */
export interface Split {
  readonly streams: number
  readonly phase: "prediction" | "bisection"
  readonly direction: "up" | "down"
  /** Steps in a row in this direction: the previous ones did not cross the edge. */
  readonly streak: number
}

/**
 * The next level to probe in the bracket `(lo, hi)` (`lo` sustained, `hi`
 * not; `last` is one of them): the edge {@link predictEdge} sees from `last`,
 * but at least `2^k` levels away after `k` steps in a row that went the same
 * way without crossing the edge (a gallop, for a p95 that grows slower than
 * predicted near saturation), and never past the midpoint; the midpoint when
 * there is no prediction. So a search takes at most about twice a plain
 * bisection's probes, and two or three when the prediction is right.
 */
export const nextSplit = (
  r: Resolved,
  lo: number,
  hi: number,
  last: Probe | undefined,
  previous: Split | undefined
): Split => {
  const direction = last?.sustained === true ? "up" : "down"
  const streak = previous !== undefined && previous.direction === direction ? previous.streak + 1 : 0
  const predicted = predictEdge(r, last)
  if (predicted === undefined || last === undefined) {
    return { streams: Math.floor((lo + hi) / 2), phase: "bisection", direction, streak }
  }
  if (direction === "up") {
    const step = Math.max(predicted - last.streams, 2 ** streak)
    const mid = Math.ceil((lo + hi) / 2)
    return lo + step < mid
      ? { streams: lo + step, phase: "prediction", direction, streak }
      : { streams: mid, phase: "bisection", direction, streak }
  }
  const step = Math.max(last.streams - predicted, 2 ** streak)
  const mid = Math.floor((lo + hi) / 2)
  return hi - step > mid
    ? { streams: hi - step, phase: "prediction", direction, streak }
    : { streams: mid, phase: "bisection", direction, streak }
}

/**
 * Searches the most broadcasts the plan sustains: one broadcast, then the
 * bound (the top), then bisection between the last sustained level and the
 * first one not sustained, each split where Little's law predicts the edge
 * ({@link nextSplit}). `onProbe` sees each probe as it finishes (for printing).
 *
 * @example
 * ```ts
 * const result = yield* Capacity.search({ plan: "creator", chars: 250, targetP95Ms: 2000 })
 * result.streams // => the number of broadcasts
 * result.bound.streams // => Little's law's bound on it
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
      Effect.tap(CapacityProbe.run(r, n, phase), (p) =>
        Effect.andThen(Effect.sync(() => void probes.push(p)), onProbe === undefined ? Effect.void : onProbe(p)))
    // lo: the highest level sustained so far; hi: the lowest one known not to be.
    let lo = 0
    let hi: number | undefined = 1
    const settle = (p: Probe) => {
      if (p.sustained) {
        lo = p.streams
      } else hi = p.streams
    }
    const bisect = Effect.gen(function*() {
      let previous: Split | undefined
      while (hi !== undefined && hi - lo > 1) {
        previous = nextSplit(r, lo, hi, probes[probes.length - 1], previous)
        settle(yield* run(previous.streams, previous.phase))
      }
    })
    const bound = r.bound.streams
    settle(yield* run(1, "single"))
    const top = Math.min(bound, r.maxStreams)
    if (lo === 1 && top > 1) {
      hi = undefined
      settle(yield* run(top, "bound"))
      if (hi === undefined) {
        hi = top + 1
      }
      yield* bisect
    }
    // The bound reached (or passed, were it below 1): the level above it is probed, never assumed.
    if (lo > 0 && lo >= bound && lo < r.maxStreams) {
      hi = undefined
      for (let n = lo + 1; hi === undefined && lo < r.maxStreams; n = 2 * lo) {
        settle(yield* run(Math.min(n, r.maxStreams), "above bound"))
      }
      yield* bisect
    }
    const single = probes[0]!
    return {
      plan: r.plan,
      model: r.model,
      pool: r.pool,
      limit: r.limit,
      chars: r.chars,
      targetP95Ms: r.targetP95Ms,
      durationMs: r.durationMs,
      maxFailureShare: r.maxFailureShare,
      playMs: r.playMs,
      streams: lo,
      capped: lo > 0 && lo === r.maxStreams,
      serviceMs: r.bound.serviceMs,
      measuredServiceMs: single.meanMs,
      bound: r.bound,
      withinBound: lo <= bound,
      probes
    } satisfies CapacityResult
  })
