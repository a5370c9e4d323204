/**
 * The adaptive (AIMD) concurrency limit of one (API key, pool): pure rules,
 * no effects, so the limiter and its tests share one definition.
 *
 * **Details**
 *
 * - `estimate` is a real number; the permits actually handed out are
 *   `permitsOf(state) = max(minLimit, floor(estimate))`.
 * - `ceiling` is the plan's limit for the pool: from the plan table, then from
 *   each `maximum-concurrent-requests` header or the number in a
 *   `too_many_concurrent_requests` message (the server is the truth).
 * - `others` is the latest estimate of requests other clients run on the
 *   same key: `max(0, current-concurrent-requests − ours)`. Our share is
 *   `cap = max(minLimit, ceiling − others)`; the estimate never exceeds it.
 * - Multiplicative decrease: a `too_many_concurrent_requests` sets
 *   `estimate = max(minLimit, min(estimate × decreaseFactor, cap))`, unless
 *   the number in its message is a lower ceiling that already clamped the
 *   estimate (the 429 is then explained by a plan smaller than we thought).
 * - Additive increase: a success while the pool is saturated (our in-flight
 *   reached the permits, or callers are queued) adds
 *   `additiveIncrease / estimate`, i.e. about +`additiveIncrease` per full
 *   window of successes (TCP congestion avoidance), up to `cap`.
 * - Learning: the first ceiling of an unknown pool sets the estimate to the
 *   share at once; a later higher ceiling (plan upgrade) adds the difference.
 *
 * @since 0.1.0
 */

/** Tuning of the AIMD rule. */
export interface AdaptiveLimitConfig {
  /** Lowest limit ever used. Default 1. */
  readonly minLimit: number
  /** Growth cap while no ceiling is known. Default 1000. */
  readonly maxLimit: number
  /** Multiplier applied on `too_many_concurrent_requests`. Default 0.9. */
  readonly decreaseFactor: number
  /** Permits added per full window of saturated successes. Default 1. */
  readonly additiveIncrease: number
}

/** Default AIMD tuning (see docs/concurrency.md for the reasons). */
export const defaultConfig: AdaptiveLimitConfig = {
  minLimit: 1,
  maxLimit: 1000,
  decreaseFactor: 0.9,
  additiveIncrease: 1
}

/** The mutable limit state of one (key, pool). */
export interface AdaptiveState {
  estimate: number
  ceiling: number | undefined
  others: number
}

/** Why a limit moved. */
export type LimitChangeReason =
  | "ceiling" // a header or 429 message gave the plan limit
  | "shared" // `current-concurrent-requests` showed other clients on the key
  | "concurrency-limited" // multiplicative decrease after a 429 too_many_concurrent_requests
  | "increase" // additive increase after saturated successes
  | "config" // the limiter was reconfigured (plan, caps, bounds); set by ConcurrencyLimiter, not by these rules

/** A new state with `estimate` and `ceiling`. */
export const make = (options: {
  readonly initial: number
  readonly ceiling: number | undefined
  readonly config: AdaptiveLimitConfig
}): AdaptiveState => ({
  estimate: clamp(options.initial, options.config.minLimit, options.ceiling ?? options.config.maxLimit),
  ceiling: options.ceiling,
  others: 0
})

const clamp = (n: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, n))

/** The permits this state hands out. */
export const permitsOf = (state: AdaptiveState, config: AdaptiveLimitConfig): number =>
  Math.max(config.minLimit, Math.floor(state.estimate + 1e-9))

/** The highest estimate allowed now: our share of the ceiling, or `maxLimit` when none is known. */
export const capOf = (state: AdaptiveState, config: AdaptiveLimitConfig): number =>
  state.ceiling === undefined
    ? config.maxLimit
    : Math.max(config.minLimit, state.ceiling - state.others)

const isPositiveInt = (n: number | undefined): n is number => n !== undefined && Number.isFinite(n) && n >= 1

/**
 * Sets the ceiling (plan limit). Returns whether it changed. The first ceiling
 * of an unknown pool moves the estimate to the share; a raise adds the
 * difference; a cut clamps.
 */
export const setCeiling = (state: AdaptiveState, ceiling: number, config: AdaptiveLimitConfig): boolean => {
  if (!isPositiveInt(ceiling)) return false
  const next = Math.floor(ceiling)
  const previous = state.ceiling
  if (previous === next) return false
  state.ceiling = next
  const cap = capOf(state, config)
  if (previous === undefined) state.estimate = cap
  else state.estimate = clamp(state.estimate + Math.max(0, next - previous), config.minLimit, cap)
  return true
}

/** What one successful response said. */
export interface ResponseSignal {
  /** `maximum-concurrent-requests`. */
  readonly maximum?: number | undefined
  /** `current-concurrent-requests` (includes this request). */
  readonly current?: number | undefined
  /** Our own in-flight requests on the key and pool, this one included. */
  readonly ours: number
  /** Whether the pool was saturated (in-flight at the permits, or queued callers). */
  readonly saturated: boolean
}

/**
 * Applies a successful response. Returns the reasons of the changes it made,
 * in order (empty when nothing moved).
 */
export const onResponse = (
  state: AdaptiveState,
  signal: ResponseSignal,
  config: AdaptiveLimitConfig
): Array<LimitChangeReason> => {
  const reasons: Array<LimitChangeReason> = []
  if (signal.maximum !== undefined && setCeiling(state, signal.maximum, config)) reasons.push("ceiling")
  if (signal.current !== undefined && Number.isFinite(signal.current) && state.ceiling !== undefined) {
    const others = Math.max(0, Math.floor(signal.current) - signal.ours)
    if (others !== state.others) {
      state.others = others
      const cap = capOf(state, config)
      if (state.estimate > cap) {
        state.estimate = cap
        reasons.push("shared")
      }
    }
  }
  if (signal.saturated) {
    const cap = capOf(state, config)
    if (state.estimate < cap) {
      state.estimate = Math.min(cap, state.estimate + config.additiveIncrease / Math.max(1, state.estimate))
      reasons.push("increase")
    }
  }
  return reasons
}

/**
 * Applies a 429 `too_many_concurrent_requests`: the server's number (if any)
 * becomes the ceiling, then the estimate is cut multiplicatively.
 */
export const onConcurrencyLimited = (
  state: AdaptiveState,
  limitFromServer: number | undefined,
  config: AdaptiveLimitConfig
): Array<LimitChangeReason> => {
  const reasons: Array<LimitChangeReason> = []
  const before = state.estimate
  if (limitFromServer !== undefined && setCeiling(state, limitFromServer, config)) {
    reasons.push("ceiling")
    // A lower ceiling explains the 429 by itself (we believed in a bigger plan): no extra cut.
    if (state.estimate < before) return reasons
  }
  const next = Math.max(config.minLimit, Math.min(state.estimate * config.decreaseFactor, capOf(state, config)))
  if (next !== state.estimate) {
    state.estimate = next
    reasons.push("concurrency-limited")
  }
  return reasons
}
