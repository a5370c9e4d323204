/**
 * Jitter for exponential backoff: the formulas of the AWS Architecture Blog
 * study "Exponential Backoff And Jitter", plus two proportional kinds.
 *
 * **Details**
 *
 * With `ceiling = min(cap, base × factor^(n−1))` for the n-th retry (n ≥ 1) and
 * `r` a uniform draw in `[0, 1)` from `Random`:
 *
 * - `none`: `ceiling` (every caller sleeps the same; synchronised retries).
 * - `full`: `r × ceiling` (AWS "Full Jitter"; the least total work in the study).
 * - `equal`: `ceiling / 2 + r × ceiling / 2` (AWS "Equal Jitter").
 * - `decorrelated`: `min(cap, base + r × (3 × previous − base))`, `previous`
 *   starting at `base` (AWS "Decorrelated Jitter": `random_between(base, sleep × 3)`).
 * - `proportional`: `min(cap, ceiling × (1 + ratio × (2r − 1)))`, that is ±`ratio`
 *   around the ceiling (like `Schedule.jittered`'s ±20 %, but with a chosen ratio).
 * - `additive`: `min(cap, ceiling + r × max)`, the rate-limits guide's `delay + random × 500 ms`.
 *
 * These are pure functions of the draw, so the bounds can be tested for any
 * draw; `Jitter.apply` takes the draw from `Random`, so a seed reproduces a run.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Random } from "effect"

/** How the exponential ceiling is randomised. */
export type Jitter =
  | { readonly _tag: "None" }
  | { readonly _tag: "Full" }
  | { readonly _tag: "Equal" }
  | { readonly _tag: "Decorrelated" }
  | { readonly _tag: "Proportional"; readonly ratio: number }
  | { readonly _tag: "Additive"; readonly max: Duration.Duration }

/** No jitter: the ceiling itself. */
export const none: Jitter = { _tag: "None" }
/** Full jitter: uniform in `[0, ceiling)`. */
export const full: Jitter = { _tag: "Full" }
/** Equal jitter: uniform in `[ceiling/2, ceiling)`. */
export const equal: Jitter = { _tag: "Equal" }
/** Decorrelated jitter: uniform in `[base, 3 × previous)`, capped. */
export const decorrelated: Jitter = { _tag: "Decorrelated" }

/**
 * Proportional jitter: uniform in `ceiling × [1 − ratio, 1 + ratio)`, capped.
 * Throws a `RangeError` when `ratio` is not in `[0, 1]`.
 */
export const proportional = (ratio = 0.2): Jitter => {
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`Jitter.proportional: ratio must be in [0, 1], got ${ratio}`)
  return { _tag: "Proportional", ratio }
}

/** Additive jitter (the rate-limits guide's style): `ceiling + uniform [0, max)`, capped. Default `max` 500 ms. */
export const additive = (max: Duration.Input = "500 millis"): Jitter => ({
  _tag: "Additive",
  max: Duration.fromInputUnsafe(max)
})

/** The jitter kinds by name, for configuration files and the CLI. */
export const byName = {
  none,
  full,
  equal,
  decorrelated,
  proportional: proportional(),
  additive: additive()
} as const satisfies Record<string, Jitter>

/** Name of a jitter kind, as accepted by {@link byName}. */
export type JitterName = keyof typeof byName

/** Inputs of one backoff computation, all in milliseconds. */
export interface BackoffInput {
  readonly base: number
  readonly factor: number
  readonly cap: number
  /** The retry number, starting at 1. */
  readonly attempt: number
  /** The previous delay (decorrelated jitter only); `base` for the first retry. */
  readonly previous: number
}

/** The un-jittered exponential ceiling `min(cap, base × factor^(attempt−1))`, in milliseconds. */
export const ceiling = (input: BackoffInput): number =>
  Math.min(input.cap, input.base * Math.pow(input.factor, input.attempt - 1))

/**
 * The delay in milliseconds for a draw `r` in `[0, 1)`: the formula of the
 * jitter kind, with no randomness of its own (so bounds are testable).
 */
export const delayFor = (jitter: Jitter, input: BackoffInput, r: number): number => {
  const top = ceiling(input)
  switch (jitter._tag) {
    case "None":
      return top
    case "Full":
      return r * top
    case "Equal":
      return top / 2 + (r * top) / 2
    case "Decorrelated": {
      // random_between(base, previous × 3), capped; never below base unless cap is.
      const upper = Math.max(input.base, input.previous * 3)
      return Math.min(input.cap, input.base + r * (upper - input.base))
    }
    case "Proportional":
      return Math.min(input.cap, top * (1 + jitter.ratio * (2 * r - 1)))
    case "Additive":
      return Math.min(input.cap, top + r * Duration.toMillis(jitter.max))
  }
}

/** The inclusive bounds `[lo, hi]` of {@link delayFor} over all draws, in milliseconds. */
export const boundsOf = (jitter: Jitter, input: BackoffInput): readonly [number, number] => {
  const top = ceiling(input)
  switch (jitter._tag) {
    case "None":
      return [top, top]
    case "Full":
      return [0, top]
    case "Equal":
      return [top / 2, top]
    case "Decorrelated":
      return [Math.min(input.cap, input.base), Math.min(input.cap, Math.max(input.base, input.previous * 3))]
    case "Proportional":
      return [Math.min(input.cap, top * (1 - jitter.ratio)), Math.min(input.cap, top * (1 + jitter.ratio))]
    case "Additive":
      return [Math.min(input.cap, top), Math.min(input.cap, top + Duration.toMillis(jitter.max))]
  }
}

/** The delay for the next retry, with the draw taken from `Random` (only when the kind needs one). */
export const apply = (jitter: Jitter, input: BackoffInput): Effect.Effect<number> =>
  jitter._tag === "None" ? Effect.succeed(ceiling(input)) : Effect.map(Random.next, (r) => delayFor(jitter, input, r))
