/**
 * The policies of one pipeline, built once from its options: the limiter,
 * the retry budget, the breaker (on the Redis store when one is in context,
 * else in memory), the quota guard, the coalescer, the fallback cache, the
 * distributed permits, and the watchers that turn their events into gauges
 * and log lines. `Pipeline.ts` orders them; this module only builds them.
 *
 * @since 0.1.0
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Duration, Effect, Layer, Option, PubSub, type Scope, Stream } from "effect"
import { CircuitBreaker, KeyValueStore, type Redis } from "effect/persistence"
import type { ElevenLabsError as ElevenLabsErrorType } from "../client/Errors.ts"
import { ElevenLabsError, SharedStateUnavailable } from "../client/Errors.ts"
import * as RedisConfig from "../distributed/RedisConfig.ts"
import * as RedisPermits from "../distributed/RedisPermits.ts"
import * as SharedState from "../distributed/SharedState.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Breaker from "./Breaker.ts"
import * as Coalescer from "./Coalescer.ts"
import * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import * as LimiterSettings from "./ConcurrencyLimiterCell.ts"
import * as Fallback from "./Fallback.ts"
import { type Pool, pools } from "./Plans.ts"
import * as QuotaGuard from "./QuotaGuard.ts"
import { type PolicyOptions, type RedisSettings, type RetrySettings, stackDefaults } from "./ResilientOptions.ts"
import * as RetryBudget from "./RetryBudget.ts"
import type * as RetryPolicy from "./RetryPolicy.ts"

/** What the policies are built from. */
export interface PolicyBuildOptions extends PolicyOptions {
  /** The API-key id used in limiter, breaker and quota keys (a fingerprint, never the key). */
  readonly keyId: string
  /** Reads the period's credits for the quota guard; none: no guard (the server still enforces its quota). */
  readonly subscription?: Effect.Effect<QuotaGuard.QuotaSnapshot, ElevenLabsErrorType> | undefined
  /** Reads the first snapshot while the policies are built, bounded by this (the SDK door: 5 s). Default: not read. */
  readonly prefetchQuota?: Duration.Input | undefined
}

/** Every policy of a pipeline, for health checks, metrics and tests. */
export interface Policies {
  /** The API-key id used in limiter and breaker keys (a fingerprint, never the key). */
  readonly keyId: string
  readonly limiter: ConcurrencyLimiter.ConcurrencyLimiter
  /** On the `CircuitBreakerStore` in context (Redis), else on a memory store. */
  readonly breaker: Breaker.Breaker["Service"] | undefined
  readonly quota: QuotaGuard.QuotaGuard | undefined
  readonly budget: RetryBudget.RetryBudget | undefined
  readonly coalescer: Coalescer.Coalescer | undefined
  readonly cache: Fallback.AudioCache | undefined
  /** The distributed permits, when `RedisPermits` is in context. */
  readonly distributed: RedisPermits.RedisPermits["Service"] | undefined
  /** Every retry the pipeline schedules (subscribe with `Stream.fromPubSub`). */
  readonly retries: PubSub.PubSub<RetryPolicy.RetryEvent>
  /**
   * The retry settings the pipeline's schedules are built from (`false`: no retries), for a door that
   * retries on its own terms with the same schedules (the real-time sessions' reconnects).
   */
  readonly retry: RetrySettings | false
}

/**
 * What a live configuration changes beside the policies' own settings, read by the pipeline at each call
 * (docs/deployment.md): the deadline, the queue's bound on an attempt's wait, the retry schedules.
 */
export interface LiveSettings {
  deadline: Duration.Duration
  queueTimeout: Duration.Duration
  queueTimeoutMillis: number
  /** `undefined`: no retries. */
  retry: RetrySettings | undefined
  /** Bumped by each change: the retry steps built for an older one are built again on their next call. */
  generation: number
}

/** The {@link LiveSettings} of `options`. */
export const liveSettingsOf = (options: PolicyOptions, generation = 0): LiveSettings => {
  const queueTimeout = Duration.fromInputUnsafe(options.limiter?.queueTimeout ?? "120 seconds")
  return {
    deadline: Duration.fromInputUnsafe(options.deadline ?? stackDefaults.deadline),
    queueTimeout,
    queueTimeoutMillis: Duration.toMillis(queueTimeout),
    retry: options.retry === false ? undefined : (options.retry ?? {}),
    generation
  }
}

/** The prefix of the breaker's circuits: the API-key id, so that stacks of two keys never share a circuit. */
const breakerPrefix = (keyId: string) => `elevenlabs:${keyId}:`

/**
 * The shared caps of `caps` in Redis (a pool left out has its cap removed). A Redis error is logged, not
 * raised: the local caps hold anyway, and the next change or start sets them again.
 */
const setSharedCaps = (
  distributed: RedisPermits.RedisPermits["Service"],
  keyId: string,
  caps: Partial<Record<Pool, number>> | undefined
): Effect.Effect<void> =>
  Effect.forEach(pools, (pool) =>
    distributed.setCap(keyId, pool, caps?.[pool]).pipe(
      Effect.catch((error) => Effect.logWarning("elevenlabs shared cap not set", { pool, error: error.message }))
    ), { discard: true })

/**
 * Applies new policy options to running policies, in place: the limiter's limits, caps, lanes and queue bounds
 * (a lower limit drains, it cancels nothing), the retry budget, the breaker's thresholds, the quota's
 * thresholds, and the {@link LiveSettings}. The policies keep their state (permits, queued calls, circuits,
 * reservations). A policy switched off at build stays off and one that was on stays on (switching needs a
 * restart; the live configuration reports it); options are validated before (`ResilienceConfig`).
 */
export const reconfigure = (
  policies: Policies,
  live: LiveSettings,
  options: PolicyOptions
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { breaker, budget, distributed, keyId, limiter, quota } = policies
    // The circuits' names are not live: the running prefix stays (a new one is reported as needing a restart).
    const { keyPrefix: _prefix, ...breakerOptions } = options.breaker === false ? {} : options.breaker ?? {}
    // Every policy's options checked before any policy changes: a change is all or nothing.
    yield* Effect.try({
      try: () => {
        LimiterSettings.settingsOf({ plan: "unknown", ...options.limiter })
        if (options.budget !== false) RetryBudget.settingsOf(options.budget)
        if (options.breaker !== false) Breaker.settingsOf(breakerOptions)
      },
      catch: (e) => e
    }).pipe(Effect.orDie)
    if (quota !== undefined && options.quota !== false) yield* Effect.orDie(QuotaGuard.settingsOf(options.quota ?? {}))
    yield* limiter.reconfigure({ plan: "unknown", ...options.limiter })
    if (distributed !== undefined) yield* setSharedCaps(distributed, keyId, options.limiter?.caps)
    if (budget !== undefined && options.budget !== false) yield* budget.reconfigure(options.budget ?? {})
    if (breaker !== undefined && options.breaker !== false) yield* breaker.reconfigure(breakerOptions)
    if (quota !== undefined && options.quota !== false) yield* quota.reconfigure(options.quota ?? {})
    // Retries stay on or off as they started (a stack built without them has no budget); their numbers are live.
    const retry = live.retry === undefined ? undefined : options.retry === false ? live.retry : (options.retry ?? {})
    Object.assign(live, liveSettingsOf({ ...options, retry: retry ?? false }, live.generation + 1))
    if (retry !== undefined) (policies as { retry: RetrySettings | false }).retry = retry
  })

/**
 * Builds the policies in the current scope, and forks the watchers that feed
 * the breaker and quota gauges and log limit changes. Reads the optional
 * `CircuitBreakerStore` and `RedisPermits` from the context.
 */
export const make: (options: PolicyBuildOptions) => Effect.Effect<Policies, never, Scope.Scope> = Effect.fnUntraced(
  function*(options: PolicyBuildOptions) {
    const keyId = options.keyId
    // The concurrency and queue-depth gauges follow the limiter's own changes, synchronously (no snapshot per
    // attempt, no subscriber): in the context the stack is built in, so on the same metric registry.
    const context = yield* Effect.context<never>()
    const gauges = Metrics.occupancyGauges(context, { key: keyId })
    Metrics.initializeSeriesUnsafe(context)
    const own = options.limiter?.onOccupancy
    const limiter = yield* ConcurrencyLimiter.make({
      plan: "unknown",
      ...options.limiter,
      onOccupancy: own === undefined ? gauges : (occupancy, change, lane) => {
        gauges(occupancy, change, lane)
        own(occupancy, change, lane)
      },
      // A log line per change, in the fiber that changed it (no subscriber pulling every event).
      onLimitChanged: (e) => {
        const logged = Effect.logInfo("elevenlabs concurrency limit", {
          pool: e.pool,
          from: e.from,
          to: e.to,
          reason: e.reason
        })
        const own = options.limiter?.onLimitChanged
        return own === undefined ? logged : Effect.andThen(logged, own(e))
      }
    })
    const budget = options.budget === false || options.retry === false
      ? undefined
      : yield* RetryBudget.make(options.budget)
    // Shared state, when a Redis layer is in context (SharedState.layerRedis): distributed permits
    // behind the local lanes, and the breaker's circuits in Redis.
    const distributed = Option.getOrUndefined(yield* Effect.serviceOption(RedisPermits.RedisPermits))
    if (distributed !== undefined && options.limiter?.caps !== undefined) {
      yield* setSharedCaps(distributed, keyId, options.limiter.caps)
    }
    const sharedStore = yield* Effect.serviceOption(CircuitBreaker.CircuitBreakerStore)
    const breaker = options.breaker === false
      ? undefined
      : yield* Breaker.make({ ...options.breaker, keyPrefix: options.breaker?.keyPrefix ?? breakerPrefix(keyId) }).pipe(
        Option.isSome(sharedStore)
          ? Effect.provideService(CircuitBreaker.CircuitBreakerStore, sharedStore.value)
          // Marked as a memory store: the breaker's fast path (no scope per attempt).
          : Effect.provide(Breaker.layerStoreMemory())
      )
    const subscription = options.subscription
    const quota = options.quota === false || subscription === undefined
      ? undefined
      : yield* QuotaGuard.make(options.quota).pipe(
        Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch: subscription })),
        // Bad quota options are a programming error.
        Effect.orDie
      )
    // The first snapshot read now (bounded), so that the very first calls are already guarded.
    if (quota !== undefined && options.prefetchQuota !== undefined) {
      yield* Effect.exit(Effect.timeoutOption(quota.refresh, options.prefetchQuota))
    }
    // The flight of each call is chosen by the pipeline, unless these options name one (docs/coalescing.md).
    const coalescer = options.coalesce === false ? undefined : yield* Coalescer.make(options.coalesce)
    const cache = options.cache === undefined || options.cache === false
      ? undefined
      : yield* Fallback.make(options.cache).pipe(
        Effect.provide(
          options.cache.store?._tag === "file"
            ? KeyValueStore.layerFileSystem(options.cache.store.directory).pipe(Layer.provide(NodeServices.layer))
            : KeyValueStore.layerMemory
        ),
        Effect.orDie
      )
    const retries = yield* PubSub.unbounded<RetryPolicy.RetryEvent>()
    if (breaker !== undefined) yield* watchBreaker(breaker)
    if (quota !== undefined) {
      yield* quota.events.pipe(
        Stream.runForEach(() =>
          Effect.flatMap(quota.percentUsed, (pct) => pct === undefined ? Effect.void : Metrics.setQuotaUsed(pct))
        ),
        Effect.forkScoped
      )
    }
    const retry = options.retry ?? {}
    return { keyId, limiter, breaker, quota, budget, coalescer, cache, distributed, retries, retry } satisfies Policies
  }
)

/**
 * The breaker-state gauge and a warning per transition. Effect's breaker turns half-open lazily, on the first
 * call after the open time. Without traffic the gauge would read open (and its alert fire) for ever; so once
 * the open time is over, a circuit still open with nothing left to wait reads half-open, as the readiness check
 * reads it. A store on another clock (Redis TIME) may still have a moment to go: that is waited too.
 */
const watchBreaker = (breaker: Breaker.Breaker["Service"]) => {
  const halfOpenWhenDue = (pool: Pool, wait: Duration.Duration): Effect.Effect<void> =>
    Effect.sleep(wait).pipe(
      Effect.andThen(breaker.state(pool)),
      Effect.flatMap((s) =>
        s._tag !== "Open"
          ? Effect.void
          : Breaker.stateNow(s) === "HalfOpen"
          ? Metrics.setBreakerState(pool, 1)
          : halfOpenWhenDue(pool, s.retryAfter)
      ),
      Effect.ignore
    )
  return breaker.transitions.pipe(
    Stream.runForEach((t) => {
      // Circuit keys end with the pool, whatever prefix the user chose.
      const pool = t.key.slice(t.key.lastIndexOf(":") + 1) as Pool
      return Metrics.setBreakerState(pool, t.gauge).pipe(
        Effect.andThen(Effect.logWarning("elevenlabs circuit breaker", { circuit: t.key, from: t.from, to: t.to })),
        Effect.andThen(
          t.to === "Open" && t.openFor !== undefined ? Effect.forkChild(halfOpenWhenDue(pool, t.openFor)) : Effect.void
        )
      )
    }),
    Effect.forkScoped
  )
}

// ============================================================================
// Shared state over Redis
// ============================================================================

/**
 * The Redis connection and the shared stores (permits, quota account,
 * breaker circuits) for a `redis` entry. One shared credit account per
 * `account` (the API-key id). Fails at build with an `ElevenLabsError` of
 * reason `SharedStateUnavailable` (operation `"startup"`) when Redis cannot be
 * reached, or when the optional peer dependency `redis` is not installed.
 */
export const layerShared = (
  redis: RedisSettings,
  account: string
): Layer.Layer<SharedState.Services | RedisConfig.RedisConfigStore, ElevenLabsError> =>
  // The versioned configuration a live stack may follow (`LiveConfig`) is on the same connection.
  RedisConfig.layer().pipe(
    Layer.provideMerge(SharedState.layerRedis(SharedState.optionsFromSettings(redis, { quota: { account } }))),
    Layer.catchTag("RedisError", (error) => Layer.effectContext(Effect.fail(redisUnreachable(error)))),
    Layer.catchTag("MissingPeerDependency", (error) =>
      Layer.effectContext(Effect.fail(
        new ElevenLabsError({ reason: new SharedStateUnavailable({ operation: "startup", message: error.message }) })
      )))
  )

/**
 * The start-up failure of a `redis` entry. The message names the socket error
 * code only: a Redis URL may carry credentials, and node-redis messages may
 * quote the address.
 */
const redisUnreachable = (error: Redis.RedisError): ElevenLabsError => {
  const code = (error.cause as { readonly code?: unknown } | undefined)?.code
  return new ElevenLabsError({
    reason: new SharedStateUnavailable({
      operation: "startup",
      message: `Redis could not be reached at start-up${typeof code === "string" ? ` (${code})` : ""}; ` +
        "the shared limits need it. Check redis.url, or leave the redis entry out to run on local state."
    })
  })
}
