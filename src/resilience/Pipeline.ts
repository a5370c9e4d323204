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
 *    │ 4. deadline ─────────────────────── the whole call, queueing and retries included; no race:
 *    │                                      each wait below bounds itself by the time left
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
 * - Gauges follow the policies: concurrency and queue depth per pool (from
 *   the limiter's `onOccupancy`, synchronously, also when a caller joins the
 *   queue), the breaker state (half-open once the open time is over), quota
 *   used.
 * - Per call: one state object (deadline, lane, the pause before the current
 *   attempt, the permit in flight) published as the `CurrentDeadline`, with
 *   the call's `OnResponseHeaders`, in one context overlay; the retry policy
 *   is built once; the only fiber a call forks is the coalescer's detached
 *   flight (none with `coalesce: { flight: "inline" }` or `coalesce: false`).
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Exit, type Fiber, Layer, Option, PubSub, Scope, Stream, Tracer } from "effect"
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
 * The state of one call, made once per call by the pipeline and provided as
 * the call's deadline (`Deadline.CurrentDeadline`), so that one context
 * overlay carries the deadline, the lane, the pause before the current
 * attempt and the permit the attempt holds.
 */
interface CallState extends Deadline.CallDeadline {
  readonly [CallStateId]: true
  readonly lane: ConcurrencyLimiter.Lane
  readonly pool: Pool | undefined
  /** The pause the retry policy took before the current attempt (for the attempt span). */
  delay: Duration.Duration | undefined
  /** The queue waits of the call's attempts so far. */
  queueWaitMs: number
  /** The permit of the attempt in flight, for the headers it reports (`ElevenLabs.OnResponseHeaders`). */
  permit: ConcurrencyLimiter.Permit | undefined
}

const CallStateId = Symbol.for("elevenlabs-resilience/Pipeline/CallState")

/** The current call's state, when the current deadline is one (it is inside the pipeline's own steps). */
const callStateOf = (fiber: Fiber.Fiber<unknown, unknown>): CallState | undefined => {
  const deadline = fiber.getRef(Deadline.CurrentDeadline)
  return deadline !== undefined && CallStateId in deadline ? deadline as CallState : undefined
}

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

/** A permit request with the bound its queue timeout came from. */
type BoundRequest = ConcurrencyLimiter.PermitRequest & {
  readonly pool: Pool
  readonly bound: Deadline.PhaseBound
}

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
    // The address only labels spans: a base URL that does not parse (the SDK's, passed for information)
    // leaves them unlabelled rather than failing the stack. Resilient refuses it before it gets here.
    const base = options.baseUrl ?? Client.defaultBaseUrl
    const server = URL.canParse(base) ? new URL(base) : undefined
    const serverAddress = server?.hostname
    const serverPort = server === undefined
      ? undefined
      : server.port === "" ? (server.protocol === "http:" ? 80 : 443) : Number(server.port)
    /** The static attributes of an operation's attempt span, from the endpoint table (an SDK call named freely gets neither). */
    const staticAttempt = new Map<string, Spans.AttemptAttributes>()
    const staticAttemptOf = (operation: string): Spans.AttemptAttributes => {
      const cached = staticAttempt.get(operation)
      if (cached !== undefined) return cached
      const row = Endpoints.byName.get(operation)
      const attrs = { method: row?.method, urlTemplate: row?.path, serverAddress, serverPort }
      // Only the table's operations are kept: an SDK caller may name its calls freely, and without bound.
      if (row !== undefined) staticAttempt.set(operation, attrs)
      return attrs
    }
    /** The span of one attempt: its number and the pause before it. */
    const attemptSpan = (operation: string, attempt: number, delay: Duration.Duration | undefined) =>
      Spans.withAttemptSpan(operation, {
        ...staticAttemptOf(operation),
        attempt,
        retryDelayMs: delay === undefined ? undefined : Duration.toMillis(delay)
      })
    const deadline = toDuration(options.deadline ?? stackDefaults.deadline)
    const queueTimeout = toDuration(options.limiter?.queueTimeout ?? "120 seconds")

    // The concurrency and queue-depth gauges follow the limiter's own changes, synchronously (no snapshot per
    // attempt, no subscriber): in the context the stack is built in, so on the same metric registry.
    const gauges = Metrics.occupancyGauges(yield* Effect.context<never>(), { key: keyId })
    const own = options.limiter?.onOccupancy
    const limiter = yield* ConcurrencyLimiter.make({
      plan: "unknown",
      ...options.limiter,
      onOccupancy: own === undefined ? gauges : (occupancy, change, lane) => {
        gauges(occupancy, change, lane)
        own(occupancy, change, lane)
      }
    })
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
    // Detached by default: the coalesced calls are billed, and an inline flight's hand-over would send a
    // second request when its starter is interrupted (docs/coalescing.md); "inline" is the caller's opt-in.
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
    yield* limiter.events.pipe(
      Stream.runForEach((e) =>
        e._tag === "LimitChanged"
          ? Effect.logInfo("elevenlabs concurrency limit", { pool: e.pool, from: e.from, to: e.to, reason: e.reason })
          : Effect.void
      ),
      Effect.forkScoped
    )

    // ---- step 7: the permits -------------------------------------------------

    const queueTimeoutMillis = Duration.toMillis(queueTimeout)
    /**
     * The permit request of the current attempt. Its queue timeout is the limiter's, or the time the call has
     * left when that is shorter (`bound.deadline` is then set: the queue's expiry is the deadline's).
     */
    const requestOf = (fiber: Fiber.Fiber<unknown, unknown>, pool: Pool): BoundRequest => {
      const bound = Deadline.boundOf(
        queueTimeoutMillis,
        fiber.getRef(Deadline.CurrentDeadline),
        fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      )
      return {
        key: keyId,
        pool,
        lane: callStateOf(fiber)?.lane ?? fiber.getRef(CurrentCallOptions).lane ?? "default",
        front: fiber.getRef(RetryPolicy.CurrentAttempt).previous !== undefined,
        timeout: Duration.millis(bound.millis),
        bound
      }
    }
    const permitRequest = (pool: Pool) => Effect.withFiber((fiber) => Effect.succeed(requestOf(fiber, pool)))

    /** Feeds the adaptive limit (and the shared one) from an answer's headers. */
    const teach = (permit: ConcurrencyLimiter.Permit, meta: ResponseMeta): Effect.Effect<void> =>
      distributed === undefined
        ? permit.onResponse(meta)
        : Effect.andThen(permit.onResponse(meta), distributed.onResponse(keyId, permit.pool, RedisPermits.signalOf(meta)))

    /** Feeds the adaptive limit (and the shared one) from a concurrency 429. */
    const teachLimited = (permit: ConcurrencyLimiter.Permit, limit: number | undefined): Effect.Effect<void> =>
      distributed === undefined
        ? permit.onConcurrencyLimited(limit)
        : Effect.andThen(permit.onConcurrencyLimited(limit), distributed.onConcurrencyLimited(keyId, permit.pool, limit))

    /**
     * One attempt's answer: the attempt span annotated (status and request id, or the error's status, detail
     * and reason), and, with a permit, the adaptive limit fed. A client attempt reports its headers as they
     * arrive (through the call's `OnResponseHeaders`, to `state.permit`); an opaque one once it ends, from
     * `metaOf`; both report concurrency 429s.
     */
    const answered = <A, R>(
      send: Effect.Effect<A, ElevenLabsError, R>,
      permit: ConcurrencyLimiter.Permit | undefined,
      kind: Attempt<A>["kind"],
      metaOf: (a: A) => ResponseMeta | undefined
    ): Effect.Effect<A, ElevenLabsError, R> =>
      send.pipe(
        Effect.tap((a) => {
          const meta = metaOf(a)
          // Only 2xx answers succeed, and every ElevenLabs success is a 200.
          const annotated = Spans.annotateAttempt({ statusCode: 200, requestId: meta?.requestId })
          return permit === undefined || kind === "client" || meta === undefined
            ? annotated
            : Effect.andThen(annotated, teach(permit, meta))
        }),
        Effect.tapError((e) => {
          const annotated = Spans.annotateAttempt({
            statusCode: e.reason.status,
            detailStatus: e.reason.detailStatus,
            errorType: e.reason._tag
          })
          return permit === undefined || e.reason._tag !== "ConcurrencyLimited"
            ? annotated
            : Effect.andThen(annotated, teachLimited(permit, e.reason.limit))
        })
      )

    /**
     * The queue wait is bounded by the time the call has left. When that bound, not the queue timeout, ran
     * out, the call's deadline expired while it waited, and it fails as the deadline does; else `orElse`.
     */
    const expiredInQueue = (
      operation: string,
      request: BoundRequest,
      orElse: Effect.Effect<never, ElevenLabsError>
    ): Effect.Effect<never, ElevenLabsError> =>
      request.bound.deadline === undefined ? orElse : Effect.fail(Deadline.expired(request.bound.deadline, operation))

    /**
     * The distributed permit, taken after the local one (so the local lanes
     * order callers first) and held while `self` runs, in the current scope.
     * Its wait has the same bound as the local queue's (the time left, when shorter).
     */
    const sharedPermit = (request: BoundRequest, operation: string) =>
      distributed === undefined
        ? Effect.void
        : Effect.flatMap(Deadline.phaseBound(queueTimeout), (bound) =>
          distributed.acquire({ key: keyId, pool: request.pool, timeout: Duration.millis(bound.millis) }).pipe(
            Effect.catchTag("DistributedError", (error) => {
              const refused = fromDistributed(operation, request.pool, request.lane ?? "default")(error)
              return error.reason._tag === "AcquireTimeout"
                ? expiredInQueue(operation, { ...request, bound }, refused)
                : refused
            }),
            Effect.asVoid
          ))

    /** `self` holding the distributed permit, when there is one (a scope only then). */
    const withSharedPermit = <A, R>(
      request: BoundRequest,
      operation: string,
      self: Effect.Effect<A, ElevenLabsError, R>
    ): Effect.Effect<A, ElevenLabsError, R> =>
      distributed === undefined ? self : Effect.scoped(Effect.andThen(sharedPermit(request, operation), self))

    /** A limiter refusal: `QueueFull`, `QueueTimeout`, or the deadline when it ran out in the queue. */
    const fromQueue = (operation: string, request: BoundRequest) =>
    (error: ConcurrencyLimiter.ConcurrencyLimiterError): Effect.Effect<never, ElevenLabsError> =>
      error.reason._tag === "QueueTimeout"
        ? expiredInQueue(operation, request, fromLimiter(operation)(error))
        : fromLimiter(operation)(error)

    /**
     * An attempt of its kind: a client attempt bounds its own waits by the time left (headers, body);
     * an opaque one (a promise) is raced against it, inside the permit, so only calls in flight race.
     */
    const sendOf = <A, R>(operation: string, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      one.kind === "client" ? one.send : Deadline.enforce({ operation })(one.send)

    /** The current attempt's number and the call's state. */
    const attemptNow = Effect.withFiber((fiber) =>
      Effect.succeed({ attempt: fiber.getRef(RetryPolicy.CurrentAttempt).attempt, state: callStateOf(fiber) })
    )

    /** Steps 6-8 for one attempt of a buffered call. */
    const attemptOf = <A, R>(plan: PooledPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> => {
      const pool = plan.pool
      const operation = plan.operation
      const send = sendOf(operation, one)
      // Used when the call runs outside the pipeline's own state (never through `buffered`).
      let queueWaitMs = 0
      const limited = Effect.withFiber((fiber) => {
        const request = requestOf(fiber, pool)
        const state = callStateOf(fiber)
        const attempt = fiber.getRef(RetryPolicy.CurrentAttempt).attempt
        return limiter.usePermit(request, (permit) => {
          let waited: number
          if (state === undefined) waited = queueWaitMs += permit.waitedMillis
          else {
            state.permit = permit
            waited = state.queueWaitMs += permit.waitedMillis
          }
          return Effect.andThen(
            // Outside the attempt span, so these land on the call span.
            Spans.annotateCall({ attempts: attempt, queueWaitMs: waited }),
            withSharedPermit(
              request,
              operation,
              answered(send, permit, one.kind, plan.metaOf).pipe(attemptSpan(operation, attempt, state?.delay))
            )
          )
        }).pipe(Effect.catchTag("ConcurrencyLimiterError", fromQueue(operation, request)))
      })
      return breaker === undefined
        ? limited
        : breaker.execute(pool)(limited).pipe(Effect.catchTag("BreakerError", fromBreaker(operation, pool)))
    }

    // ---- steps 4-5: deadline, retries ----------------------------------------

    /** A call's deadline that is not one: InvalidRequest. */
    const invalidDeadline = (operation: string, call: CallOptions) =>
      fail(
        new InvalidRequest({
          operation,
          field: "deadline",
          message: `The call's deadline ${
            JSON.stringify(String(call.deadline))
          } is not a finite duration of 0 or more (for example "30 seconds").`
        })
      )

    /** The call's total bound: its own deadline, else the stack's (`undefined`: not a deadline). */
    const totalOf = (call: CallOptions): Duration.Duration | undefined =>
      call.deadline === undefined ? deadline : callDeadlineOf(call.deadline)

    /** A joiner's wait for a shared call, raced against the joiner's own deadline (a `Deferred.await` cannot bound itself). */
    const raced = <A, R>(operation: string, call: CallOptions, wait: Effect.Effect<A, ElevenLabsError, R>) => {
      const total = totalOf(call)
      return total === undefined ? invalidDeadline(operation, call) : Deadline.withDeadline(total, { operation })(wait)
    }

    /** Before every backoff pause: the pause for the next attempt's span, the retries metric, the span event, a log line. */
    const onRetry = (event: RetryPolicy.RetryEvent): Effect.Effect<void> =>
      Effect.withFiber((fiber) => {
        const state = callStateOf(fiber)
        if (state !== undefined) {
          state.delay = event.delay
          if (state.pool !== undefined) Metrics.recordRetryUnsafe({ reason: event.reason, pool: state.pool }, fiber.context)
        }
        const delayMs = Duration.toMillis(event.delay)
        const spanned = Spans.retryEvent({ attempt: event.attempt - 1, reason: event.reason, delayMs })
        // Debug, not Warning: a retry is the stack doing its job (a busy minute makes hundreds);
        // the retries metric and span events count them, and a give-up surfaces as the call's error.
        return event.retryClass === "requeue" ? spanned : Effect.andThen(
          spanned,
          Effect.logDebug("elevenlabs retry", {
            operation: state?.operation ?? event.operation,
            reason: event.reason,
            attempt: event.attempt,
            delayMs
          })
        )
      })

    // The retry policy, built once per stack (its schedules are values; their state lives in each call's run).
    const retryPolicies = retrySettings === undefined ? undefined : {
      idempotent: RetryPolicy.retry({ ...retrySettings, idempotent: true, budget, events: retries, onRetry }),
      notIdempotent: RetryPolicy.retry({ ...retrySettings, idempotent: false, budget, events: retries, onRetry })
    }

    /**
     * Steps 4-5: the call's deadline (its own, else the stack's; one that is not one is InvalidRequest) around
     * the retried attempts. The deadline races nothing: each wait inside bounds itself by the time left
     * (the queue, the headers and body, the backoff pause; an opaque attempt is raced inside its permit).
     * The call's state rides on the deadline: one context overlay per call, with the call's
     * `OnResponseHeaders` when its attempts are this library's client's (`hook`).
     */
    const retried = <A, R>(
      operation: string,
      pool: Pool | undefined,
      self: Effect.Effect<A, ElevenLabsError, R>,
      hook: boolean
    ): Effect.Effect<A, ElevenLabsError, R> =>
      Effect.withFiber((fiber) => {
        const call = fiber.getRef(CurrentCallOptions)
        const total = totalOf(call)
        if (total === undefined) return invalidDeadline(operation, call)
        const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
        const outer = fiber.getRef(Deadline.CurrentDeadline)
        const end = now + Duration.toMillis(total)
        const state: CallState = {
          [CallStateId]: true,
          // Nested deadlines never extend an outer one.
          at: outer === undefined ? end : Math.min(outer.at, end),
          total,
          lastError: undefined,
          attempts: 0,
          operation,
          lane: call.lane ?? "default",
          pool,
          delay: undefined,
          queueWaitMs: 0,
          permit: undefined
        }
        const policy = retryPolicies === undefined
          ? self
          : (call.idempotent === false ? retryPolicies.notIdempotent : retryPolicies.idempotent)(self)
        let context = Context.add(fiber.context, Deadline.CurrentDeadline, state as Deadline.CallDeadline)
        if (hook) {
          context = Context.add(
            context,
            Client.OnResponseHeaders,
            (meta: ResponseMeta) => state.permit === undefined ? Effect.void : teach(state.permit, meta)
          )
        }
        return Effect.updateContext(policy, () => context as Context.Context<R>)
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
              Effect.flatMap(Effect.service(CurrentCallOptions), (call) => raced(plan.operation, call, wait))
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

    /** Records a call that ended (synchronously: metric updates need no step each) and returns its call-span attributes. */
    const recordCall = <A>(
      plan: Omit<PooledPlan<A>, "mark">,
      exit: Exit.Exit<A, ElevenLabsError>,
      durationSeconds: number,
      context: Context.Context<never>
    ): Spans.CallAttributes => {
      const model = plan.model ?? "unknown"
      if (Exit.isSuccess(exit)) {
        const meta = plan.metaOf(exit.value)
        const fallback = meta?.fallback === true
        // Usage is what ElevenLabs generated: a joiner of a coalesced call and a cached answer add none.
        const generated = !fallback && meta?.coalesced !== true
        const audio = meta === undefined || !generated ? undefined : bytesOf(exit.value)
        const seconds = audio === undefined || plan.outputFormat === undefined
          ? undefined
          : audioSecondsOf(plan.outputFormat, audio)
        const status = fallback ? "fallback" : "success"
        Metrics.recordRequestUnsafe({ operation: plan.operation, pool: plan.pool, model, status, durationSeconds }, context)
        if (plan.characters !== undefined && generated) Metrics.recordCharactersUnsafe(model, plan.characters, context)
        if (seconds !== undefined) Metrics.recordAudioSecondsUnsafe(model, seconds, context)
        return { outcome: status, fallbackUsed: fallback, coalesced: meta?.coalesced === true }
      }
      const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
      const error = failure?._tag === "Fail" ? failure.error : undefined
      Metrics.recordRequestUnsafe({ operation: plan.operation, pool: plan.pool, model, status: "error", durationSeconds }, context)
      if (error !== undefined) Metrics.recordErrorUnsafe({ reason: error.reason._tag, pool: plan.pool }, context)
      return { outcome: "error", ...(error === undefined ? {} : { errorReason: error.reason._tag, attempts: error.attempts }) }
    }

    const instrument = <A, R>(
      plan: Omit<PooledPlan<A>, "mark">,
      self: Effect.Effect<A, ElevenLabsError, R>
    ): Effect.Effect<A, ElevenLabsError, R> =>
      Effect.withFiber((fiber) => {
        const call = fiber.getRef(CurrentCallOptions)
        const clock = fiber.getRef(Clock.Clock)
        const context = fiber.context
        const start = clock.currentTimeMillisUnsafe()
        return Effect.onExit(self, (exit) =>
          Spans.annotateCall(
            recordCall(plan, exit, (clock.currentTimeMillisUnsafe() - start) / 1000, context)
          )).pipe(
            Spans.withCallSpan(plan.operation, {
              model: plan.model,
              voiceId: plan.voiceId,
              characters: plan.characters,
              lane: call.lane ?? "default",
              pool: plan.pool
            })
          )
      })

    // ---- the three kinds of call ---------------------------------------------

    /** The whole pipeline of a buffered call, with its span and metrics. */
    const buffered = <A, R = never>(plan: PooledPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      instrument(
        plan,
        plan.invalid !== undefined
          ? fail(plan.invalid)
          : withFallback(plan, withCoalescing(plan, withQuota(plan, retried(plan.operation, plan.pool, attemptOf(plan, one), one.kind === "client"))))
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
            const { attempt, state } = yield* attemptNow
            if (state !== undefined) state.permit = permit
            queueWaitMs += permit.waitedMillis
            yield* Spans.annotateCall({ attempts: attempt, queueWaitMs })
            const opened = yield* answered(sendOf(plan.operation, open), permit, open.kind, (s: S) => s.meta).pipe(
              attemptSpan(plan.operation, attempt, state?.delay)
            )
            return release(opened, permit.release)
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
        const opened = yield* retried(plan.operation, plan.pool, guarded, open.kind === "client").pipe(
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
      const sent = sendOf(plan.operation, send)
      const one = Effect.flatMap(attemptNow, ({ attempt, state }) =>
        Effect.andThen(
          Spans.annotateCall({ attempts: attempt }),
          answered(sent, undefined, send.kind, plan.metaOf).pipe(attemptSpan(plan.operation, attempt, state?.delay))
        ))
      return withCoalescing(plan, retried(plan.operation, undefined, one, false)).pipe(
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
