/**
 * Request-rate limiting for users' own rules ("at most 100 calls a minute on
 * this key", "10 a second with bursts of 20"). ElevenLabs itself publishes no
 * requests-per-minute limit (it limits concurrency, see
 * {@link ConcurrencyLimiter}); this is for contracts, budgets and fairness
 * between tenants of one key.
 *
 * **Details**
 *
 * - Rules: {@link tokenBucket} (rate, burst) and {@link slidingWindow}
 *   (limit per window, exact). A call must satisfy every rule.
 * - Token buckets reuse `effect/persistence`'s `RateLimiter` (token-bucket
 *   algorithm), so its memory or Redis store works, and `TestClock` drives it.
 * - The sliding window is written here: `RateLimiter`'s `fixed-window`
 *   resets its counter only once the whole budget has drained, which lets up
 *   to twice the limit through in some windows (e.g. 2 per 10 s: calls at
 *   4.9 s, 10 s, 10 s). This one keeps the last `limit` admission times in a
 *   ring per key: a call goes at `max(now, oldest + window)`, so no window
 *   ever holds more than `limit` calls. It is process-local.
 * - `onExceeded: "delay"` (default) waits for the slot, reserving it first so
 *   concurrent waiters spread out; `"fail"` fails at once with Effect's
 *   `RateLimiterError` (`RateLimitExceeded` with `retryAfter`).
 * - Compose outside the permit: wait for the rate slot first, then take the
 *   concurrency permit, so a rate wait never holds a permit.
 *
 * **Example**
 *
 * ```ts
 * import { Effect } from "effect"
 * import { RequestRateLimiter } from "elevenlabs-resilience/resilience"
 *
 * const program = Effect.gen(function*() {
 *   const rate = yield* RequestRateLimiter.RequestRateLimiter
 *   yield* rate.withRateLimit("tenant-a")(Effect.log("call"))
 * }).pipe(Effect.provide(RequestRateLimiter.layerMemory({
 *   rules: [RequestRateLimiter.tokenBucket({ rate: 10, burst: 20 }), RequestRateLimiter.slidingWindow({ limit: 100, window: "1 minute" })]
 * })))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Layer } from "effect"
import { RateLimiter } from "effect/persistence"

/** A token bucket: `rate` calls per `per`, bursts up to `burst`. */
export interface TokenBucketRule {
  readonly _tag: "TokenBucket"
  readonly rate: number
  readonly per: Duration.Duration
  readonly burst: number
}

/** At most `limit` calls in any window of length `window`. */
export interface SlidingWindowRule {
  readonly _tag: "SlidingWindow"
  readonly limit: number
  readonly window: Duration.Duration
}

export type Rule = TokenBucketRule | SlidingWindowRule

const invalid = (message: string): never => {
  throw new Error(`RequestRateLimiter: ${message}`)
}

/** A token bucket rule. `per` defaults to 1 second, `burst` to `ceil(rate)`. Throws on nonsense numbers. */
export const tokenBucket = (options: {
  readonly rate: number
  readonly per?: Duration.Input | undefined
  readonly burst?: number | undefined
}): TokenBucketRule => {
  const per = Duration.fromInputUnsafe(options.per ?? "1 second")
  const burst = options.burst ?? Math.ceil(options.rate)
  if (!(options.rate > 0) || !Number.isFinite(options.rate)) invalid(`rate must be positive: ${options.rate}`)
  if (!Number.isInteger(burst) || burst < 1) invalid(`burst must be an integer >= 1: ${burst}`)
  if (!(Duration.toMillis(per) > 0) || !Duration.isFinite(per)) invalid("per must be a positive finite duration")
  return { _tag: "TokenBucket", rate: options.rate, per, burst }
}

/** A sliding window rule. Throws on nonsense numbers. */
export const slidingWindow = (
  options: { readonly limit: number; readonly window: Duration.Input }
): SlidingWindowRule => {
  const window = Duration.fromInputUnsafe(options.window)
  if (!Number.isInteger(options.limit) || options.limit < 1) invalid(`limit must be an integer >= 1: ${options.limit}`)
  if (!(Duration.toMillis(window) > 0) || !Duration.isFinite(window)) {
    invalid("window must be a positive finite duration")
  }
  return { _tag: "SlidingWindow", limit: options.limit, window }
}

export const TypeId = "~elevenlabs-resilience/RequestRateLimiter" as const
export type TypeId = typeof TypeId

/** The service. */
export interface RequestRateLimiter {
  readonly [TypeId]: TypeId
  /** Takes one call slot for `key` under every rule; returns how long it waited. */
  readonly take: (key: string) => Effect.Effect<Duration.Duration, RateLimiter.RateLimiterError>
  /** Runs `effect` after taking a slot for `key`. */
  readonly withRateLimit: (
    key: string
  ) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimiter.RateLimiterError, R>
}

/** The service tag. */
export const RequestRateLimiter: Context.Service<RequestRateLimiter, RequestRateLimiter> = Context.Service<
  RequestRateLimiter
>(TypeId)

export interface Options {
  readonly rules: ReadonlyArray<Rule>
  /** Wait for the slot (`"delay"`, default) or fail at once (`"fail"`). */
  readonly onExceeded?: "delay" | "fail" | undefined
  /** Prefix of the keys in the `RateLimiter` store. Default `"elevenlabs-resilience"`. */
  readonly prefix?: string | undefined
}

/** The last `limit` admission times of a key, oldest at `next`. */
class Ring {
  readonly times: Float64Array
  next = 0
  constructor(limit: number) {
    this.times = new Float64Array(limit).fill(Number.NEGATIVE_INFINITY)
  }
  /** The earliest time a new call may go. */
  earliest(window: number): number {
    return this.times[this.next]! + window
  }
  push(t: number) {
    this.times[this.next] = t
    this.next = (this.next + 1) % this.times.length
  }
}

/** Builds the limiter over Effect's `RateLimiter` (for the token buckets). */
export const make = (options: Options): Effect.Effect<RequestRateLimiter, never, RateLimiter.RateLimiter> =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.RateLimiter
    const onExceeded = options.onExceeded ?? "delay"
    const prefix = options.prefix ?? "elevenlabs-resilience"
    const buckets = options.rules.flatMap((rule, i) => (rule._tag === "TokenBucket" ? [{ rule, i }] : []))
    const windows = options.rules.flatMap((rule, i) =>
      rule._tag === "SlidingWindow"
        ? [{ rule, i, rings: new Map<string, Ring>(), ms: Duration.toMillis(rule.window) }]
        : []
    )

    const take = (key: string): Effect.Effect<Duration.Duration, RateLimiter.RateLimiterError> =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        // Sliding windows first, without committing: in "fail" mode nothing is taken from them on failure.
        let at = now
        for (const w of windows) {
          let ring = w.rings.get(key)
          if (ring === undefined) {
            ring = new Ring(w.rule.limit)
            w.rings.set(key, ring)
          }
          at = Math.max(at, ring.earliest(w.ms))
        }
        if (onExceeded === "fail" && at > now) {
          const w = windows.find((w) => w.rings.get(key)!.earliest(w.ms) > now)!
          return yield* new RateLimiter.RateLimiterError({
            reason: new RateLimiter.RateLimitExceeded({
              key,
              retryAfter: Duration.millis(w.rings.get(key)!.earliest(w.ms) - now),
              limit: w.rule.limit,
              remaining: 0
            })
          })
        }
        for (const b of buckets) {
          const result = yield* limiter.consume({
            algorithm: "token-bucket",
            onExceeded,
            key: `${prefix}:${b.i}:${key}`,
            limit: b.rule.burst,
            window: Duration.times(b.rule.per, b.rule.burst / b.rule.rate)
          })
          at = Math.max(at, now + Duration.toMillis(result.delay))
        }
        // Commit the windows at the time the call really goes (going later never breaks a bucket).
        for (const w of windows) w.rings.get(key)!.push(at)
        const waited = Duration.millis(at - now)
        if (at > now) yield* Effect.sleep(waited)
        return waited
      })

    return RequestRateLimiter.of({
      [TypeId]: TypeId,
      take,
      withRateLimit: (key) => (effect) => Effect.andThen(take(key), effect)
    })
  })

/** The limiter as a layer; needs Effect's `RateLimiter` (memory or Redis store). */
export const layer = (options: Options): Layer.Layer<RequestRateLimiter, never, RateLimiter.RateLimiter> =>
  Layer.effect(RequestRateLimiter, make(options))

/** The limiter with Effect's in-memory `RateLimiter` store. */
export const layerMemory = (options: Options): Layer.Layer<RequestRateLimiter> =>
  layer(options).pipe(Layer.provide(RateLimiter.layer), Layer.provide(RateLimiter.layerStoreMemory))
