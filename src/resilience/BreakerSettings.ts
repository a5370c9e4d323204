/**
 * The breaker's options and their checked form, {@link BreakerSettings}: what
 * `Breaker.make` builds with and `Breaker.reconfigure` swaps in. Every option
 * is checked at once, before anything changes; a bad one throws a
 * `RangeError` (a programming error: configuration files are validated
 * before, by `ResilienceConfig`).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Exit, Schedule } from "effect"
import { CircuitBreaker } from "effect/persistence"

/** Options of `Breaker.make` and `Breaker.reconfigure`; every field has a default. */
export interface BreakerOptions {
  /**
   * When a closed circuit opens. Default `{ _tag: "consecutive", failures: 5 }`
   * (the production-deployment guide's). `rate`: `threshold` in `[0, 1]` (default 0.5), over the last
   * `size` recorded calls (default 20), once `minimumCalls` are recorded
   * (default 10).
   */
  readonly policy?:
    | { readonly _tag: "consecutive"; readonly failures?: number | undefined }
    | {
      readonly _tag: "rate"
      readonly threshold?: number | undefined
      readonly size?: number | undefined
      readonly minimumCalls?: number | undefined
    }
    | undefined
  /** How long an opening lasts (the first one, when `growth` is set). Default 60 seconds. */
  readonly openDuration?: Duration.Input | undefined
  /** Consecutive openings last `openDuration × factor^(n−1)`, capped at `max`. Default: no growth. */
  readonly growth?: { readonly factor?: number | undefined; readonly max?: Duration.Input | undefined } | undefined
  /** Largest `Retry-After` that may lengthen an opening. Default 5 minutes. */
  readonly maxRetryAfter?: Duration.Input | undefined
  /** The `retryAfter` hint of a half-open rejection. Default 1 second. */
  readonly halfOpenRetryAfter?: Duration.Input | undefined
  /**
   * Prefix of every circuit key (for example an account id). Default `"elevenlabs:"`. It names the circuits:
   * `reconfigure` takes it absent or unchanged only.
   */
  readonly keyPrefix?: string | undefined
  /** When the store fails: `"allow"` runs the call unrecorded (default), `"fail"` rejects it. */
  readonly onStoreError?: "allow" | "fail" | undefined
}

/** A duration option, checked: a valid `Duration.Input`, not negative. */
const durationOption = (name: string, input: Duration.Input): Duration.Duration => {
  const parsed = Duration.fromInput(input)
  if (parsed._tag === "None" || !(Duration.toMillis(parsed.value) >= 0)) {
    throw new RangeError(`Breaker: ${name} must be a non-negative duration, got ${String(input)}`)
  }
  return parsed.value
}

const tripPolicyOf = (policy: BreakerOptions["policy"]): CircuitBreaker.TripPolicy => {
  if (policy === undefined || policy._tag === "consecutive") return CircuitBreaker.consecutive(policy?.failures ?? 5)
  if (policy._tag !== "rate") {
    throw new RangeError(`Breaker: unknown policy ${String((policy as { readonly _tag: unknown })._tag)}`)
  }
  const size = policy.size ?? 20
  return CircuitBreaker.rate({
    threshold: policy.threshold ?? 0.5,
    size,
    minimumCalls: policy.minimumCalls ?? Math.min(10, size)
  })
}

/**
 * The open-duration value handed to `CircuitBreaker.make`: a fixed duration,
 * or, with `growth`, `base × factor^(n−1)` capped at `max` as a `Schedule`
 * (the breaker replays it to find the n-th opening's length).
 */
export const openDurationOf = (
  options: Pick<BreakerOptions, "openDuration" | "growth">
): Duration.Duration | Schedule.Schedule<unknown, number, never, never> => {
  const base = durationOption("openDuration", options.openDuration ?? "60 seconds")
  if (options.growth === undefined) return base
  const factor = options.growth.factor ?? 2
  const max = durationOption("growth.max", options.growth.max ?? "10 minutes")
  if (!(factor >= 1)) throw new RangeError(`Breaker: growth.factor must be >= 1, got ${factor}`)
  return Schedule.exponential(base, factor).pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, max))),
    Schedule.setInputType<number>()
  )
}

/**
 * The open-duration of the n-th opening, as Effect's breaker computes it: a fixed duration, or the schedule
 * replayed n steps against a simulated clock.
 */
const openDurationFor = (
  openDuration: Duration.Duration | Schedule.Schedule<unknown, number, never, never>
): (consecutiveOpenings: number) => Effect.Effect<Duration.Duration> => {
  if (!Schedule.isSchedule(openDuration)) {
    const duration = Effect.succeed(openDuration)
    return () => duration
  }
  return (consecutiveOpenings) =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(openDuration)
      let now = yield* Clock.currentTimeMillis
      let delay = Duration.zero
      for (let attempt = 1; attempt <= consecutiveOpenings; attempt++) {
        const result = yield* Effect.exit(step(now, attempt))
        if (Exit.isFailure(result)) break
        delay = result.value[1]
        now += Duration.toMillis(delay)
      }
      return delay
    })
}

/** {@link BreakerOptions}, checked, with their defaults: what `Breaker.make` builds with and `reconfigure` swaps in. */
export interface BreakerSettings {
  readonly keyPrefix: string
  readonly tripPolicy: CircuitBreaker.TripPolicy
  readonly openDuration: Duration.Duration | Schedule.Schedule<unknown, number, never, never>
  /** The length of the n-th consecutive opening. */
  readonly openDurationFor: (consecutiveOpenings: number) => Effect.Effect<Duration.Duration>
  readonly maxOpenDuration: Duration.Duration
  readonly halfOpenRetryAfter: Duration.Duration
  readonly onStoreError: "allow" | "fail"
  /** Whether "in a row" is judged in start order (the consecutive policy). */
  readonly startOrder: boolean
}

/** Checks every option at once; bad options throw a `RangeError` (a programming error). */
export const settingsOf = (options?: BreakerOptions): BreakerSettings => {
  const keyPrefix = options?.keyPrefix ?? "elevenlabs:"
  if (typeof keyPrefix !== "string") throw new RangeError(`Breaker: keyPrefix must be a string`)
  const onStoreError = options?.onStoreError ?? "allow"
  if (onStoreError !== "allow" && onStoreError !== "fail") {
    throw new RangeError(`Breaker: onStoreError must be "allow" or "fail", got ${String(onStoreError)}`)
  }
  const tripPolicy = tripPolicyOf(options?.policy)
  const openDuration = openDurationOf(options ?? {})
  return {
    keyPrefix,
    tripPolicy,
    openDuration,
    openDurationFor: openDurationFor(openDuration),
    maxOpenDuration: durationOption("maxRetryAfter", options?.maxRetryAfter ?? "5 minutes"),
    halfOpenRetryAfter: durationOption("halfOpenRetryAfter", options?.halfOpenRetryAfter ?? "1 second"),
    onStoreError,
    startOrder: tripPolicy._tag === "Consecutive"
  }
}
