/**
 * The one request pipeline: the policies, built once from the options, and the
 * one way a call of each response kind runs through them. Both doors are thin
 * adapters over it: `Resilient` (this library's own client) and
 * `WithResilience` (the official SDK, or any effect or promise). Neither
 * builds a policy nor orders one; this is the one place the order is written
 * (docs/design.md section 4, docs/architecture.md).
 *
 * **Details**
 *
 * Outer to inner, for one logical call:
 *
 * ```text
 *  caller
 *    │ 1. validate locally ─────────────── InvalidRequest, no network, no credits   (the adapter checks; plan.invalid)
 *    │ 9. fallback (opt-in) ────────────── on a terminal failure, cached audio, meta.fallback
 *    │ 2. coalesce ─────────────────────── identical calls in flight share one upstream call
 *    │ 3. quota guard ──────────────────── reserve ceil(chars x multiplier); commit / release
 *    │ 4. deadline ─────────────────────── the whole call, queueing and retries included
 *    │ 5. retry (+ budget) ─────────────── per error class; requeue / exponential / linear
 *    │ 6. breaker (per pool) ───────────── fails fast when open, with retryAfter
 *    │ 7. limiter (per key and pool) ───── permit per attempt, lanes, bounded queue, AIMD
 *    │      + the distributed permit when `RedisPermits` is in context
 *    │ 8. attempt timeouts + the attempt ─ the client's own bounds, or the SDK's
 *    ▼
 * ```
 *
 * - Three kinds of call: {@link Pipeline.buffered} (the whole body inside the
 *   permit: TTS convert, STT, music, any SDK call with a pool),
 *   {@link Pipeline.streamed} (the permit and the reservation live in the
 *   caller's scope until the last byte; no coalescing, no fallback) and
 *   {@link Pipeline.readOnly} (user, voices, models, SDK calls without a pool:
 *   validation, coalescing when a key is given, the deadline and retries; no
 *   limiter, breaker or quota, so an exhausted account never refuses them).
 * - Two kinds of attempt ({@link Attempt}): `"client"` attempts report their
 *   headers as they arrive through `ElevenLabs.OnResponseHeaders`; `"opaque"`
 *   attempts (a promise) are learnt from after they end, from `metaOf(value)`.
 * - Shared state: a `CircuitBreakerStore` in context (Redis, from
 *   {@link layerShared} or `SharedState.layerRedis`) holds the breaker's
 *   circuits, else they live in memory; `RedisPermits` in context adds the
 *   distributed permit after the local one; `RedisQuota` in context makes the
 *   quota guard's account shared (the guard reads it itself).
 * - Every call fails with `ElevenLabsError`; the policies' refusals are
 *   mapped by `Refusals.ts`. A deadline that is not a finite duration of 0 or
 *   more is `InvalidRequest` (field `deadline`); a deadline that runs out in
 *   the limiter's queue fails as the deadline (`Timeout`, phase `deadline`).
 * - Gauges follow the policies: concurrency and queue depth per pool (also
 *   when a caller joins the queue), the breaker state (half-open once the
 *   open time is over), quota used.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, Layer, Option, PubSub, Scope, Stream } from "effect"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { CircuitBreaker, KeyValueStore, type Redis } from "effect/persistence"
import * as Client from "../client/ElevenLabs.ts"
import * as Endpoints from "../client/Endpoints.ts"
import { ElevenLabsError, InvalidRequest, QuotaExhausted, SharedStateUnavailable } from "../client/Errors.ts"
import { audioSecondsOf } from "../client/Models.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as RedisPermits from "../distributed/RedisPermits.ts"
import * as SharedState from "../distributed/SharedState.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import * as Breaker from "./Breaker.ts"
import * as Coalescer from "./Coalescer.ts"
import * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import * as Deadline from "./Deadline.ts"
import * as Fallback from "./Fallback.ts"
import type { Pool } from "./Plans.ts"
import * as QuotaGuard from "./QuotaGuard.ts"
import { fail, fromBreaker, fromDistributed, fromLimiter, fromQuota } from "./Refusals.ts"
import { type PolicyOptions, type RedisSettings, stackDefaults } from "./ResilientOptions.ts"
import * as RetryBudget from "./RetryBudget.ts"
import * as RetryPolicy from "./RetryPolicy.ts"

// ============================================================================
// Per-call options
// ============================================================================

/** What one call may choose. */
export interface CallOptions {
  /** Priority lane in the limiter. Default `"default"`. */
  readonly lane?: ConcurrencyLimiter.Lane | undefined
  /** Total bound of this call (overrides the stack's `deadline`). */
  readonly deadline?: Duration.Input | undefined
  /** `false` when repeating the call could duplicate work: `Timeout` and `Transport` are then not retried. */
  readonly idempotent?: boolean | undefined
}

/** The options of the current call (empty outside {@link withCallOptions}). */
export const CurrentCallOptions = Context.Reference<CallOptions>("elevenlabs-resilience/Resilient/CallOptions", {
  defaultValue: () => ({})
})

/**
 * The pause the retry policy took before the current attempt (set per attempt
 * by `retried`, read for the attempt span).
 */
const RetryDelay = Context.Reference<Duration.Duration | undefined>("elevenlabs-resilience/Resilient/RetryDelay", {
  defaultValue: () => undefined
})

/**
 * Sets the lane, deadline or idempotency of the calls inside `effect`
 * (merged over any outer call options).
 */
export const withCallOptions = (options: CallOptions) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.updateService(effect, CurrentCallOptions, (outer) => ({ ...outer, ...options }))

// ============================================================================
// Options, policies, plans
// ============================================================================

/** What {@link make} builds the policies from. */
export interface PipelineOptions extends PolicyOptions {
  /** The API-key id used in limiter, breaker and quota keys (a fingerprint, never the key). */
  readonly keyId: string
  /** Reads the period's credits for the quota guard; none: no guard (the server still enforces its quota). */
  readonly subscription?: Effect.Effect<QuotaGuard.QuotaSnapshot, ElevenLabsError> | undefined
  /** Reads the first snapshot while the policies are built, bounded by this (the SDK door: 5 s). Default: not read. */
  readonly prefetchQuota?: Duration.Input | undefined
  /** Where the attempts go, for the attempt span's `server.address` and `server.port`. Default `https://api.elevenlabs.io`. */
  readonly baseUrl?: string | undefined
}

/** Every policy of a pipeline, for health checks, metrics and tests. */
export interface Policies {
  /** The API-key id used in limiter and breaker keys (a fingerprint, never the key). */
  readonly keyId: string
  readonly limiter: ConcurrencyLimiter.ConcurrencyLimiter
  /** On the `CircuitBreakerStore` in context (Redis), else on a memory store. */
  readonly breaker: Breaker.BreakerService | undefined
  readonly quota: QuotaGuard.QuotaGuard | undefined
  readonly budget: RetryBudget.RetryBudgetService | undefined
  readonly coalescer: Coalescer.Coalescer | undefined
  readonly cache: Fallback.AudioCache | undefined
  /** The distributed permits, when `RedisPermits` is in context. */
  readonly distributed: RedisPermits.RedisPermitsService | undefined
  /** Every retry the pipeline schedules (subscribe with `Stream.fromPubSub`). */
  readonly retries: PubSub.PubSub<RetryPolicy.RetryEvent>
}

/** One logical call, described for the pipeline. */
export interface CallPlan<A> {
  /** The name in errors, spans and metrics, e.g. `textToSpeech.convert`. */
  readonly operation: string
  /** The concurrency pool; `undefined` for a read-only call. */
  readonly pool?: Pool | undefined
  readonly model?: string | undefined
  readonly voiceId?: string | undefined
  /** Billed characters (metrics; never the text). */
  readonly characters?: number | undefined
  /** Credits to reserve; `undefined` reserves none (an exhausted account still fails fast). */
  readonly cost?: number | undefined
  /** Step 1, done by the adapter: a refusal fails the call before anything else. */
  readonly invalid?: InvalidRequest | undefined
  /** Identical calls in flight with this key share one attempt loop. */
  readonly coalesceKey?: string | undefined
  /** Cached-audio fallback (used only when the pipeline has a cache). */
  readonly fallback?: { readonly key: string; readonly codec: Fallback.FallbackCodec<A> } | undefined
  /** The audio format of the result, for the audio-seconds metric. */
  readonly outputFormat?: string | undefined
  readonly metaOf: (a: A) => ResponseMeta | undefined
  /** A copy of `a` with stack marks (`coalesced`, `fallback`) added to its metadata. */
  readonly mark: (a: A, meta: Partial<ResponseMeta>) => A
}

/** A plan with its pool: a call that takes a permit. */
export type PooledPlan<A> = CallPlan<A> & { readonly pool: Pool }

/**
 * One attempt. `"client"`: this library's client, which reports the headers
 * as they arrive through `ElevenLabs.OnResponseHeaders` and bounds its own
 * waits. `"opaque"` (a promise): learnt from after it ends, from
 * `plan.metaOf(value)`.
 */
export interface Attempt<A, R = never> {
  readonly send: Effect.Effect<A, ElevenLabsError, R>
  readonly kind: "client" | "opaque"
}

/** The one request pipeline. */
export interface Pipeline {
  readonly policies: Policies
  /** A call whose whole answer is read inside the permit. */
  readonly buffered: <A, R = never>(plan: PooledPlan<A>, attempt: Attempt<A, R>) => Effect.Effect<A, ElevenLabsError, R>
  /**
   * A streamed call: the permit and the reservation live in the caller's
   * scope; `onRelease` attaches the permit's release to the stream's end.
   */
  readonly streamed: <S extends { readonly meta: ResponseMeta }>(
    plan: Omit<PooledPlan<S>, "metaOf" | "mark" | "coalesceKey" | "fallback">,
    attempt: Attempt<S, Scope.Scope>,
    onRelease: (s: S, release: Effect.Effect<void>) => S
  ) => Effect.Effect<S, ElevenLabsError, Scope.Scope>
  /** A call that takes no permit: validation, coalescing (with a key), deadline and retries. */
  readonly readOnly: <A, R = never>(plan: CallPlan<A>, attempt: Attempt<A, R>) => Effect.Effect<A, ElevenLabsError, R>
  /** {@link Pipeline.buffered} when the plan has a pool, else {@link Pipeline.readOnly}. */
  readonly run: <A, R = never>(plan: CallPlan<A>, attempt: Attempt<A, R>) => Effect.Effect<A, ElevenLabsError, R>
}

// ============================================================================
// Helpers
// ============================================================================

const toDuration = (input: Duration.Input): Duration.Duration => Duration.fromInputUnsafe(input)

/** A call's own deadline, or `undefined` when it is not a finite duration of 0 or more. */
const callDeadlineOf = (input: Duration.Input): Duration.Duration | undefined => {
  // Effect decodes NaN as zero; here it is a bug in the caller's arithmetic, not "no time left".
  const decoded = Number.isNaN(input) ? undefined : Option.getOrUndefined(Duration.fromInput(input))
  const millis = decoded === undefined ? Number.NaN : Duration.toMillis(decoded)
  return millis >= 0 && Number.isFinite(millis) ? decoded : undefined
}

/** Annotates the current attempt span with the answer: status and request id, or the error's status, detail and reason. */
const annotateAnswer = <A>(metaOf: (a: A) => ResponseMeta | undefined) =>
<R>(self: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> =>
  self.pipe(
    // Only 2xx answers succeed, and every ElevenLabs success is a 200.
    Effect.tap((a) => Spans.annotateAttempt({ statusCode: 200, requestId: metaOf(a)?.requestId })),
    Effect.tapError((e) =>
      Spans.annotateAttempt({ statusCode: e.reason.status, detailStatus: e.reason.detailStatus, errorType: e.reason._tag })
    )
  )

const isPooled = <A>(plan: CallPlan<A>): plan is PooledPlan<A> => plan.pool !== undefined

const bytesOf = (value: unknown): number | undefined => {
  if (typeof value !== "object" || value === null || !("audio" in value)) return undefined
  const audio = value.audio
  return audio instanceof Uint8Array ? audio.byteLength : undefined
}

// ============================================================================
// Constructor
// ============================================================================

/**
 * Builds the policies and the pipeline over them. Needs a `Scope` (the
 * policies' fibers and caches live as long as it). Reads the optional
 * `CircuitBreakerStore` and `RedisPermits` (and, through the quota guard,
 * `RedisQuota`) from the context.
 */
export const make: (options: PipelineOptions) => Effect.Effect<Pipeline, never, Scope.Scope> = Effect.fnUntraced(
  function*(options: PipelineOptions) {
    const keyId = options.keyId
    const server = new URL(options.baseUrl ?? Client.defaultBaseUrl)
    const serverAddress = server.hostname
    const serverPort = server.port === "" ? (server.protocol === "http:" ? 80 : 443) : Number(server.port)
    /** The span of one attempt: its number and the pause before it. */
    const attemptSpan = (
      operation: string,
      info: RetryPolicy.AttemptInfo,
      delay: Duration.Duration | undefined
    ) =>
      Spans.withAttemptSpan(operation, {
        // From the endpoint table; an operation not in it (an SDK call named freely) gets neither.
        method: Endpoints.byName.get(operation)?.method,
        urlTemplate: Endpoints.byName.get(operation)?.path,
        serverAddress,
        serverPort,
        attempt: info.attempt,
        retryDelayMs: delay === undefined ? undefined : Duration.toMillis(delay)
      })
    const deadline = toDuration(options.deadline ?? stackDefaults.deadline)
    const queueTimeout = toDuration(options.limiter?.queueTimeout ?? "120 seconds")

    const limiter = yield* ConcurrencyLimiter.make({ plan: "unknown", ...options.limiter })
    const budget = options.budget === false || options.retry === false
      ? undefined
      : yield* RetryBudget.make(options.budget)
    // Shared state, when a Redis layer is in context (SharedState.layerRedis): distributed permits
    // behind the local lanes, and the breaker's circuits in Redis.
    const distributed = Option.getOrUndefined(yield* Effect.serviceOption(RedisPermits.RedisPermits))
    const sharedStore = yield* Effect.serviceOption(CircuitBreaker.CircuitBreakerStore)
    const breaker = options.breaker === false
      ? undefined
      : yield* Breaker.make({ keyPrefix: `elevenlabs:${keyId}:`, ...options.breaker }).pipe(
        Option.isSome(sharedStore)
          ? Effect.provideService(CircuitBreaker.CircuitBreakerStore, sharedStore.value)
          : Effect.provide(CircuitBreaker.layerStoreMemory())
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
    const retrySettings = options.retry === false ? undefined : (options.retry ?? {})

    // ---- gauges and logs, from the policies' own event streams ---------------

    if (breaker !== undefined) {
      // Effect's breaker turns half-open lazily, on the first call after the open time. Without traffic the gauge
      // would read open (and its alert fire) for ever; so once the open time is over, a circuit still open with
      // nothing left to wait reads half-open, as the readiness check reads it. A store on another clock (Redis
      // TIME) may still have a moment to go: that is waited too.
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
      yield* breaker.transitions.pipe(
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
    if (quota !== undefined) {
      yield* quota.events.pipe(
        Stream.runForEach(() =>
          Effect.flatMap(quota.percentUsed, (pct) => pct === undefined ? Effect.void : Metrics.setQuotaUsed(pct))
        ),
        Effect.forkScoped
      )
    }
    const observePool = (pool: Pool) =>
      Effect.flatMap(limiter.snapshot(keyId, pool), (s) =>
        Effect.andThen(
          Metrics.setConcurrent(pool, s.inFlight),
          Effect.forEach(ConcurrencyLimiter.lanes, (lane) => Metrics.setQueueDepth(pool, lane, s.queued[lane]), {
            discard: true
          })
        ))

    yield* limiter.events.pipe(
      Stream.runForEach((e) =>
        e._tag === "LimitChanged"
          ? Effect.logInfo("elevenlabs concurrency limit", { pool: e.pool, from: e.from, to: e.to, reason: e.reason })
          // Grants and releases update the gauges on the caller's path; a caller joining the queue does not, and
          // a pool whose permits are all held by slow calls would show no queue at all.
          : e._tag === "Queued" && e.key === keyId
          ? observePool(e.pool)
          : Effect.void
      ),
      Effect.forkScoped
    )

    // ---- step 7: the permits -------------------------------------------------

    const permitRequest = Effect.fnUntraced(function*(pool: Pool) {
      const call = yield* CurrentCallOptions
      const attempt = yield* RetryPolicy.CurrentAttempt
      const left = yield* Deadline.remaining
      const timeout = left === undefined ? queueTimeout : Duration.min(left, queueTimeout)
      return {
        key: keyId,
        pool,
        lane: call.lane ?? "default",
        front: attempt.previous !== undefined,
        timeout
      } satisfies ConcurrencyLimiter.PermitRequest
    })

    /**
     * Feeds the adaptive limit (and the shared one) from an attempt: a client
     * attempt's headers as they arrive, an opaque attempt's metadata once it
     * ends; and concurrency 429s.
     */
    const learn = <A>(permit: ConcurrencyLimiter.Permit, kind: Attempt<A>["kind"], metaOf: (a: A) => ResponseMeta | undefined) =>
    <R>(self: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> => {
      const onResponse = (meta: ResponseMeta) =>
        distributed === undefined
          ? permit.onResponse(meta)
          : Effect.andThen(
            permit.onResponse(meta),
            distributed.onResponse(keyId, permit.pool, RedisPermits.signalOf(meta))
          )
      const taught = kind === "client"
        ? Effect.provideService(self, Client.OnResponseHeaders, onResponse)
        : Effect.tap(self, (a) => {
          const meta = metaOf(a)
          return meta === undefined ? Effect.void : onResponse(meta)
        })
      return Effect.tapError(taught, (e) =>
        e.reason._tag !== "ConcurrencyLimited"
          ? Effect.void
          : distributed === undefined
          ? permit.onConcurrencyLimited(e.reason.limit)
          : Effect.andThen(
            permit.onConcurrencyLimited(e.reason.limit),
            distributed.onConcurrencyLimited(keyId, permit.pool, e.reason.limit)
          ))
    }

    /**
     * The queue wait is bounded by the time the call has left. When that bound, not the queue timeout, ran
     * out, the call's deadline expired while it waited, and it fails as the deadline does; else `orElse`.
     */
    const expiredInQueue = (
      operation: string,
      request: ConcurrencyLimiter.PermitRequest,
      orElse: Effect.Effect<never, ElevenLabsError>
    ): Effect.Effect<never, ElevenLabsError> =>
      request.timeout !== undefined && Duration.toMillis(request.timeout) < Duration.toMillis(queueTimeout)
        ? Effect.flatMap(
          Deadline.CurrentDeadline,
          (deadline) => deadline === undefined ? orElse : Effect.fail(Deadline.expired(deadline, operation))
        )
        : orElse

    /**
     * The distributed permit, taken after the local one (so the local lanes
     * order callers first) and held while `self` runs, in the current scope.
     */
    const sharedPermit = (request: ConcurrencyLimiter.PermitRequest & { readonly pool: Pool }, operation: string) =>
      distributed === undefined
        ? Effect.void
        : distributed.acquire({ key: keyId, pool: request.pool, timeout: request.timeout }).pipe(
          Effect.catchTag("DistributedError", (error) => {
            const refused = fromDistributed(operation, request.pool, request.lane ?? "default")(error)
            return error.reason._tag === "AcquireTimeout" ? expiredInQueue(operation, request, refused) : refused
          }),
          Effect.asVoid
        )

    /** `self` holding the distributed permit, when there is one (a scope only then). */
    const withSharedPermit = <A, R>(
      request: ConcurrencyLimiter.PermitRequest & { readonly pool: Pool },
      operation: string,
      self: Effect.Effect<A, ElevenLabsError, R>
    ): Effect.Effect<A, ElevenLabsError, R> =>
      distributed === undefined ? self : Effect.scoped(Effect.andThen(sharedPermit(request, operation), self))

    /** A limiter refusal: `QueueFull`, `QueueTimeout`, or the deadline when it ran out in the queue. */
    const fromQueue = (operation: string, request: ConcurrencyLimiter.PermitRequest) =>
    (error: ConcurrencyLimiter.ConcurrencyLimiterError): Effect.Effect<never, ElevenLabsError> =>
      error.reason._tag === "QueueTimeout"
        ? expiredInQueue(operation, request, fromLimiter(operation)(error))
        : fromLimiter(operation)(error)

    /** Steps 6-8 for one attempt of a buffered call. */
    const attemptOf = <A, R>(plan: PooledPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> => {
      const pool = plan.pool
      // Built once per call: the queue waits of all its attempts add up here.
      let queueWaitMs = 0
      const limited = Effect.flatMap(
        Effect.all([permitRequest(pool), RetryPolicy.CurrentAttempt, RetryDelay]),
        ([request, info, delay]) =>
          limiter.usePermit(request, (permit) => {
            queueWaitMs += permit.waitedMillis
            return Effect.andThen(
              // Outside the attempt span, so these land on the call span.
              Effect.andThen(observePool(pool), Spans.annotateCall({ attempts: info.attempt, queueWaitMs })),
              withSharedPermit(
                request,
                plan.operation,
                one.send.pipe(
                  annotateAnswer(plan.metaOf),
                  learn(permit, one.kind, plan.metaOf),
                  attemptSpan(plan.operation, info, delay)
                )
              )
            )
          }).pipe(
            Effect.catchTag("ConcurrencyLimiterError", fromQueue(plan.operation, request)),
            Effect.ensuring(observePool(pool))
          )
      )
      return breaker === undefined
        ? limited
        : breaker.execute(pool)(limited).pipe(Effect.catchTag("BreakerError", fromBreaker(plan.operation, pool)))
    }

    // ---- steps 4-5: deadline, retries ----------------------------------------

    /** `self` under the call's deadline (its own, else the stack's); a deadline that is not one is InvalidRequest. */
    const bounded = <A, R>(operation: string, call: CallOptions, self: Effect.Effect<A, ElevenLabsError, R>) => {
      const total = call.deadline === undefined ? deadline : callDeadlineOf(call.deadline)
      return total === undefined
        ? fail(
          new InvalidRequest({
            operation,
            field: "deadline",
            message: `The call's deadline ${
              JSON.stringify(String(call.deadline))
            } is not a finite duration of 0 or more (for example "30 seconds").`
          })
        )
        : Deadline.withDeadline(total, { operation })(self)
    }

    /** Steps 4-5: the deadline around the retried attempts. */
    const retried = <A, R>(
      operation: string,
      pool: Pool | undefined,
      self: Effect.Effect<A, ElevenLabsError, R>
    ): Effect.Effect<A, ElevenLabsError, R> =>
      Effect.flatMap(Effect.service(CurrentCallOptions), (call) => {
        // The pause before the next attempt, handed to it (and so to its span) through RetryDelay.
        let delay: Duration.Duration | undefined = undefined
        const attempt = Effect.suspend(() => Effect.provideService(self, RetryDelay, delay))
        const withRetry = retrySettings === undefined ? self : attempt.pipe(
          RetryPolicy.retry({
            ...retrySettings,
            idempotent: call.idempotent,
            budget,
            events: retries,
            onRetry: (event) =>
              Effect.all([
                Effect.sync(() => {
                  delay = event.delay
                }),
                Spans.retryEvent({
                  attempt: event.attempt - 1,
                  reason: event.reason,
                  delayMs: Duration.toMillis(event.delay)
                }),
                pool === undefined ? Effect.void : Metrics.recordRetry({ reason: event.reason, pool }),
                // Debug, not Warning: a retry is the stack doing its job (a busy minute makes hundreds);
                // the retries metric and span events count them, and a give-up surfaces as the call's error.
                event.retryClass === "requeue"
                  ? Effect.void
                  : Effect.logDebug("elevenlabs retry", {
                    operation,
                    reason: event.reason,
                    attempt: event.attempt,
                    delayMs: Duration.toMillis(event.delay)
                  })
              ], { discard: true })
          })
        )
        return bounded(operation, call, withRetry)
      })

    // ---- steps 2-3, 9: coalescing, quota, fallback -----------------------------

    const withQuota = <A, R>(plan: CallPlan<A>, self: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> => {
      if (quota === undefined) return self
      if (plan.cost === undefined) {
        // Nothing to reserve (billed by time, or the cost is not known), but an exhausted account still fails
        // fast, and a `quota_exceeded` answer here stops the other calls as it does for TTS.
        return Effect.flatMap(quota.state, (state) =>
          state === "exhausted"
            ? Effect.flatMap(quota.status, (s) =>
              fail(
                new QuotaExhausted({
                  operation: plan.operation,
                  message: "The account's credits are spent; calls resume after the reset.",
                  ...(s.resetAt === undefined ? {} : { resetAt: s.resetAt })
                })
              ))
            : Effect.tapError(self, (e) => e.reason._tag === "QuotaExceeded" ? quota.markExhausted(e.reason) : Effect.void))
      }
      return quota.guard(plan.cost, self, {
        keyId,
        actualCost: (a) => plan.metaOf(a)?.characterCost
      }).pipe(Effect.catchTag("QuotaGuardError", fromQuota(plan.operation)))
    }

    const withCoalescing = <A, R>(plan: CallPlan<A>, self: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> =>
      coalescer === undefined || plan.coalesceKey === undefined
        ? self
        : Effect.map(
          // The shared call runs under its starter's deadline; a joiner (on its own fiber) is held to its own too.
          coalescer.coalesce(plan.coalesceKey, self, {
            boundJoin: (wait) =>
              Effect.flatMap(Effect.service(CurrentCallOptions), (call) => bounded(plan.operation, call, wait))
          }),
          ({ coalesced, value }) => coalesced ? plan.mark(value, { coalesced: true }) : value
        )

    const withFallback = <A, R>(plan: CallPlan<A>, self: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> =>
      cache === undefined || plan.fallback === undefined ? self : self.pipe(
        Fallback.withFallback({ key: plan.fallback.key, ...plan.fallback.codec }),
        Effect.provideService(Fallback.AudioCache, cache),
        Effect.map((served) => served.fallback ? plan.mark(served.value, { fallback: true }) : served.value)
      )

    // ---- the call span and the request metrics -------------------------------

    const instrument = <A, R>(
      plan: Omit<PooledPlan<A>, "mark">,
      self: Effect.Effect<A, ElevenLabsError, R>
    ): Effect.Effect<A, ElevenLabsError, R> =>
      Effect.flatMap(Effect.service(CurrentCallOptions), (call) =>
        Effect.timed(Effect.exit(self)).pipe(
          Effect.flatMap(([elapsed, exit]) => {
            const durationSeconds = Duration.toSeconds(elapsed)
            const model = plan.model ?? "unknown"
            const labels = { operation: plan.operation, pool: plan.pool, model }
            if (Exit.isSuccess(exit)) {
              const meta = plan.metaOf(exit.value)
              const fallback = meta?.fallback === true
              // Usage is what ElevenLabs generated: a joiner of a coalesced call and a cached answer add none.
              const generated = !fallback && meta?.coalesced !== true
              const audio = meta === undefined || !generated ? undefined : bytesOf(exit.value)
              const seconds = audio === undefined || plan.outputFormat === undefined
                ? undefined
                : audioSecondsOf(plan.outputFormat, audio)
              return Effect.all([
                Metrics.recordRequest({ ...labels, status: fallback ? "fallback" : "success", durationSeconds }),
                plan.characters === undefined || !generated
                  ? Effect.void
                  : Metrics.recordCharacters(model, plan.characters),
                seconds === undefined ? Effect.void : Metrics.recordAudioSeconds(model, seconds),
                Spans.annotateCall({
                  outcome: fallback ? "fallback" : "success",
                  fallbackUsed: fallback,
                  coalesced: meta?.coalesced === true
                })
              ], { discard: true }).pipe(Effect.andThen(exit))
            }
            const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
            const error = failure?._tag === "Fail" ? failure.error : undefined
            return Effect.all([
              Metrics.recordRequest({ ...labels, status: "error", durationSeconds }),
              error === undefined ? Effect.void : Metrics.recordError({ reason: error.reason._tag, pool: plan.pool }),
              Spans.annotateCall({
                outcome: "error",
                ...(error === undefined ? {} : { errorReason: error.reason._tag, attempts: error.attempts })
              })
            ], { discard: true }).pipe(Effect.andThen(exit))
          }),
          Spans.withCallSpan(plan.operation, {
            model: plan.model,
            voiceId: plan.voiceId,
            characters: plan.characters,
            lane: call.lane ?? "default",
            pool: plan.pool
          })
        ))

    // ---- the three kinds of call ---------------------------------------------

    /** The whole pipeline of a buffered call, with its span and metrics. */
    const buffered = <A, R = never>(plan: PooledPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      instrument(
        plan,
        plan.invalid !== undefined
          ? fail(plan.invalid)
          : withFallback(plan, withCoalescing(plan, withQuota(plan, retried(plan.operation, plan.pool, attemptOf(plan, one)))))
      )

    /**
     * The pipeline of a streamed call: the permit and the reservation live in
     * the caller's scope; an attempt that fails closes its own sub-scope at once.
     */
    const streamed = <S extends { readonly meta: ResponseMeta }>(
      plan: Omit<PooledPlan<S>, "metaOf" | "mark" | "coalesceKey" | "fallback">,
      open: Attempt<S, Scope.Scope>,
      release: (s: S, release: Effect.Effect<void>) => S
    ): Effect.Effect<S, ElevenLabsError, Scope.Scope> =>
      Effect.gen(function*() {
        if (plan.invalid !== undefined) return yield* fail(plan.invalid)
        const outer = yield* Effect.scope
        let queueWaitMs = 0
        const oneAttempt = Effect.gen(function*() {
          const child = yield* Scope.fork(outer)
          const exit = yield* Effect.exit(Scope.provide(child)(Effect.gen(function*() {
            const request = yield* permitRequest(plan.pool)
            const permit = yield* limiter.acquire(request).pipe(
              Effect.catchTag("ConcurrencyLimiterError", fromQueue(plan.operation, request))
            )
            yield* sharedPermit(request, plan.operation)
            const info = yield* RetryPolicy.CurrentAttempt
            const delay = yield* RetryDelay
            queueWaitMs += permit.waitedMillis
            yield* Spans.annotateCall({ attempts: info.attempt, queueWaitMs })
            yield* observePool(plan.pool)
            yield* Scope.addFinalizer(child, observePool(plan.pool))
            const opened = yield* open.send.pipe(
              annotateAnswer((s: S) => s.meta),
              learn(permit, open.kind, (s: S) => s.meta),
              attemptSpan(plan.operation, info, delay)
            )
            return release(opened, Effect.andThen(permit.release, observePool(plan.pool)))
          })))
          if (Exit.isFailure(exit)) yield* Scope.close(child, exit)
          return yield* exit
        })
        const guarded = breaker === undefined
          ? oneAttempt
          : breaker.execute(plan.pool)(oneAttempt).pipe(
            Effect.catchTag("BreakerError", fromBreaker(plan.operation, plan.pool))
          )
        const reservation = quota === undefined || plan.cost === undefined
          ? undefined
          : yield* quota.reserve(plan.cost, { keyId }).pipe(Effect.catchTag("QuotaGuardError", fromQuota(plan.operation)))
        const opened = yield* retried(plan.operation, plan.pool, guarded).pipe(
          Effect.tapError((e) =>
            e.reason._tag === "QuotaExceeded" && quota !== undefined ? quota.markExhausted(e.reason) : Effect.void
          ),
          // Released at once on failure: the caller's scope may live long (a connection, a batch loop), and
          // credits held for a call that failed would refuse the calls after it.
          Effect.onError(() => reservation === undefined ? Effect.void : reservation.release)
        )
        if (reservation !== undefined) yield* reservation.commit(opened.meta.characterCost)
        return opened
      }).pipe((self) => instrument<S, Scope.Scope>({ ...plan, metaOf: (s) => s.meta }, self))

    /**
     * Read-only calls: validation, coalescing (when the plan has a key), the
     * deadline and retries; no limiter, breaker or quota (they spend no
     * credits, so an exhausted account does not refuse them), no metrics.
     */
    const readOnly = <A, R = never>(plan: CallPlan<A>, send: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> => {
      if (plan.invalid !== undefined) {
        return fail(plan.invalid).pipe(
          Effect.tapError((e) => Spans.annotateCall({ outcome: "error", errorReason: e.reason._tag })),
          Spans.withCallSpan(plan.operation)
        )
      }
      const one = Effect.flatMap(Effect.all([RetryPolicy.CurrentAttempt, RetryDelay]), ([info, delay]) =>
        Effect.andThen(
          Spans.annotateCall({ attempts: info.attempt }),
          send.send.pipe(annotateAnswer(plan.metaOf), attemptSpan(plan.operation, info, delay))
        ))
      return withCoalescing(plan, retried(plan.operation, undefined, one)).pipe(
        Effect.tap(() => Spans.annotateCall({ outcome: "success" })),
        Effect.tapError((e) =>
          Spans.annotateCall({ outcome: "error", errorReason: e.reason._tag, attempts: e.attempts })
        ),
        Spans.withCallSpan(plan.operation)
      )
    }

    const run = <A, R = never>(plan: CallPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      isPooled(plan) ? buffered(plan, one) : readOnly(plan, one)

    const policies: Policies = { keyId, limiter, breaker, quota, budget, coalescer, cache, distributed, retries }
    return { policies, buffered, streamed, readOnly, run } satisfies Pipeline
  }
)

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
): Layer.Layer<SharedState.Services, ElevenLabsError> =>
  SharedState.layerRedis(SharedState.optionsFromSettings(redis, { quota: { account } })).pipe(
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
