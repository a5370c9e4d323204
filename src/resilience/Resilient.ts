/**
 * The resilient ElevenLabs client: one `Layer` that provides the same
 * `ElevenLabs` service as the plain client, with every policy applied in the
 * order of the design (docs/design.md section 4). This is the one place that order
 * is written.
 *
 * **Details**
 *
 * Outer to inner, for one logical call:
 *
 * ```text
 *  caller
 *    │ 1. validate locally ─────────────── InvalidRequest, no network, no credits
 *    │ 9. fallback (opt-in) ────────────── on a terminal failure, cached audio, meta.fallback
 *    │ 2. coalesce ─────────────────────── identical calls in flight share one upstream call
 *    │ 3. quota guard ──────────────────── reserve ceil(chars x multiplier); commit / release
 *    │ 4. deadline ─────────────────────── the whole call, queueing and retries included
 *    │ 5. retry (+ budget) ─────────────── per error class; requeue / exponential / linear
 *    │ 6. breaker (per pool) ───────────── fails fast when open, with retryAfter
 *    │ 7. limiter (per key and pool) ───── permit per attempt, lanes, bounded queue, AIMD
 *    │ 8. attempt timeouts + HTTP ──────── time to headers, idle between body bytes
 *    ▼
 *  ElevenLabs
 * ```
 *
 * - A permit is held only while an attempt is on the wire (streams: until the
 *   last byte or the end of the caller's scope); a backoff sleep holds none.
 * - `too_many_concurrent_requests` shrinks the limit and goes back to the
 *   queue (front of its lane); it never feeds exponential backoff, the budget
 *   or the breaker.
 * - Every call fails with `ElevenLabsError`: the policies' refusals become the
 *   reasons `QueueFull`, `QueueTimeout`, `CircuitOpen`, `InsufficientQuota`
 *   and `QuotaExhausted`.
 * - Per call, {@link withCallOptions} sets the priority lane, the deadline and
 *   whether retries may repeat work (`idempotent`).
 * - Streams are not coalesced and have no fallback; their deadline covers the
 *   time to headers (the body is bounded by the idle timeout). STT and music
 *   bill by time, so they reserve no credits (they still fail fast once the
 *   account is exhausted). The read-only calls get the deadline and retries.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { FetchHttpClient } from "effect/http"
 * import { ElevenLabs, Resilient } from "elevenlabs-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* ElevenLabs.ElevenLabs
 *   const { audio } = yield* client.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text: "Hello" }).pipe(
 *     Resilient.withCallOptions({ lane: "interactive" })
 *   )
 *   return audio.byteLength
 * }).pipe(Effect.provide(Resilient.layer({ apiKey: Redacted.make("sk_..."), limiter: { plan: "pro" } })))
 * ```
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, Layer, Option, PubSub, Scope, Stream } from "effect"
import type { HttpClient } from "effect/http"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { CircuitBreaker, KeyValueStore, type Redis } from "effect/persistence"
import * as Client from "../client/ElevenLabs.ts"
import * as RedisPermits from "../distributed/RedisPermits.ts"
import * as SharedState from "../distributed/SharedState.ts"
import {
  ElevenLabsError,
  InvalidRequest,
  QuotaExhausted,
  SharedStateUnavailable
} from "../client/Errors.ts"
import { audioSecondsOf, defaultOutputFormat, defaultTtsModel } from "../client/Models.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as Validation from "../client/Validation.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import * as Breaker from "./Breaker.ts"
import * as Coalescer from "./Coalescer.ts"
import * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import * as Deadline from "./Deadline.ts"
import * as Fallback from "./Fallback.ts"
import { type Pool, poolOfModel } from "./Plans.ts"
import * as QuotaGuard from "./QuotaGuard.ts"
import type { ResilientOptions } from "./ResilientOptions.ts"
import { stackDefaults } from "./ResilientOptions.ts"
import * as RetryBudget from "./RetryBudget.ts"
import { fail, fromBreaker, fromDistributed, fromLimiter, fromQuota } from "./Refusals.ts"
import * as RetryPolicy from "./RetryPolicy.ts"

export type { ResilientOptions } from "./ResilientOptions.ts"

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
// The policies, for observation
// ============================================================================

/** The policies behind a resilient client, for health checks, metrics and tests. */
export interface Resilience {
  /** The API-key id used in limiter and breaker keys (a fingerprint, never the key). */
  readonly keyId: string
  readonly limiter: ConcurrencyLimiter.ConcurrencyLimiter
  readonly breaker: Breaker.BreakerService | undefined
  readonly quota: QuotaGuard.QuotaGuard | undefined
  readonly budget: RetryBudget.RetryBudgetService | undefined
  readonly cache: Fallback.AudioCache | undefined
  /** Every retry the stack schedules (subscribe with `Stream.fromPubSub`). */
  readonly retries: PubSub.PubSub<RetryPolicy.RetryEvent>
}

/** The tag of {@link Resilience}. */
export class ResilienceService extends Context.Service<ResilienceService, Resilience>()(
  "elevenlabs-resilience/Resilient/Resilience"
) {}

// ============================================================================
// Mapping the policies' refusals into ElevenLabsError
// ============================================================================

// ============================================================================
// Constructor
// ============================================================================

/** One logical call, described for the pipeline. */
interface CallPlan<A> {
  readonly operation: string
  readonly pool: Pool
  readonly model: string
  readonly voiceId?: string | undefined
  readonly characters?: number | undefined
  /** Credits to reserve; `undefined` reserves none. */
  readonly cost?: number | undefined
  readonly coalesceKey?: string | undefined
  readonly fallback?: { readonly key: string; readonly codec: Fallback.FallbackCodec<A> } | undefined
  readonly outputFormat?: string | undefined
  readonly metaOf: (a: A) => ResponseMeta | undefined
  readonly mark: (a: A, meta: Partial<ResponseMeta>) => A
  /** One attempt. */
  readonly send: Effect.Effect<A, ElevenLabsError>
}

const toDuration = (input: Duration.Input): Duration.Duration => Duration.fromInputUnsafe(input)

/** A call's own deadline, or `undefined` when it is not a finite duration of 0 or more. */
const callDeadlineOf = (input: Duration.Input): Duration.Duration | undefined => {
  // Effect decodes NaN as zero; here it is a bug in the caller's arithmetic, not "no time left".
  const decoded = Number.isNaN(input) ? undefined : Option.getOrUndefined(Duration.fromInput(input))
  const millis = decoded === undefined ? Number.NaN : Duration.toMillis(decoded)
  return millis >= 0 && Number.isFinite(millis) ? decoded : undefined
}

/** `url.template` of each operation's attempt span: the path with its parameters as names (no voice id). */
const urlTemplates: Readonly<Record<string, string>> = {
  "textToSpeech.convert": "/v1/text-to-speech/{voice_id}",
  "textToSpeech.convertWithTimestamps": "/v1/text-to-speech/{voice_id}/with-timestamps",
  "textToSpeech.stream": "/v1/text-to-speech/{voice_id}/stream",
  "textToSpeech.streamWithTimestamps": "/v1/text-to-speech/{voice_id}/stream/with-timestamps",
  "speechToText.convert": "/v1/speech-to-text",
  "music.compose": "/v1/music",
  "user.get": "/v1/user",
  "user.subscription": "/v1/user/subscription",
  "voices.list": "/v1/voices",
  "voices.get": "/v1/voices/{voice_id}",
  "voices.search": "/v2/voices",
  "models.list": "/v1/models"
}

/** Annotates the current attempt span with the answer: status and request id, or the error's status, detail and reason. */
const annotateAnswer = <A>(metaOf: (a: A) => ResponseMeta | undefined) =>
<R>(self: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> =>
  self.pipe(
    // The client returns only 2xx answers, and every ElevenLabs success is a 200.
    Effect.tap((a) => Spans.annotateAttempt({ statusCode: 200, requestId: metaOf(a)?.requestId })),
    Effect.tapError((e) =>
      Spans.annotateAttempt({ statusCode: e.reason.status, detailStatus: e.reason.detailStatus, errorType: e.reason._tag })
    )
  )

/**
 * Builds the resilient `ElevenLabs` service and its policies. Needs an
 * `HttpClient` (the transport) and a `Scope` (the policies' fibers and
 * caches live as long as it).
 */
export const make = Effect.fnUntraced(function*(options: ResilientOptions) {
  const raw = yield* Client.make({
    apiKey: options.apiKey,
    baseUrl: options.baseUrl,
    headersTimeout: options.headersTimeout,
    idleTimeout: options.idleTimeout,
    characterLimits: options.characterLimits,
    scopedRequests: options.scopedRequests
  })
  const keyId = Fallback.partitionOfApiKey(options.apiKey)
  const server = new URL(options.baseUrl ?? Client.defaultBaseUrl)
  const serverAddress = server.hostname
  const serverPort = server.port === "" ? (server.protocol === "http:" ? 80 : 443) : Number(server.port)
  /** The span of one attempt: its number and the pause before it. */
  const attemptSpan = (
    operation: string,
    method: string,
    info: RetryPolicy.AttemptInfo,
    delay: Duration.Duration | undefined
  ) =>
    Spans.withAttemptSpan(operation, {
      method,
      urlTemplate: urlTemplates[operation],
      serverAddress,
      serverPort,
      attempt: info.attempt,
      retryDelayMs: delay === undefined ? undefined : Duration.toMillis(delay)
    })
  const validation: Validation.ValidationOptions = { characterLimits: options.characterLimits }
  const deadline = toDuration(options.deadline ?? stackDefaults.deadline)
  const queueTimeout = toDuration(options.limiter?.queueTimeout ?? "120 seconds")

  const limiter = yield* ConcurrencyLimiter.make({ plan: "unknown", ...options.limiter })
  const budget = options.budget === false || options.retry === false
    ? undefined
    : yield* RetryBudget.make(options.budget)
  // Shared state, when a Redis layer is in context (SharedState.layerRedis): distributed permits
  // behind the local lanes, and the breaker's circuits in Redis.
  const shared = yield* Effect.serviceOption(RedisPermits.RedisPermits)
  const distributed = Option.getOrUndefined(shared)
  const sharedStore = yield* Effect.serviceOption(CircuitBreaker.CircuitBreakerStore)
  const breaker = options.breaker === false
    ? undefined
    : yield* Breaker.make({ keyPrefix: `elevenlabs:${keyId}:`, ...options.breaker }).pipe(
      Option.isSome(sharedStore)
        ? Effect.provideService(CircuitBreaker.CircuitBreakerStore, sharedStore.value)
        : Effect.provide(CircuitBreaker.layerStoreMemory())
    )
  const quota = options.quota === false
    ? undefined
    : yield* QuotaGuard.make(options.quota).pipe(
      Effect.provideService(
        QuotaGuard.SubscriptionSource,
        QuotaGuard.SubscriptionSource.of({
          fetch: Effect.map(raw.user.subscription(), (s) =>
            QuotaGuard.snapshotFromSubscription({
              character_count: s.characterCount,
              character_limit: s.characterLimit,
              next_character_count_reset_unix: s.nextCharacterCountResetUnix
            }))
        })
      ),
      Effect.orDie
    )
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

  // Gauges follow the policies' own event streams.
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

  /** Feeds the adaptive limit from an attempt: the headers as they arrive, and concurrency 429s. */
  const learn = (permit: ConcurrencyLimiter.Permit) =>
  <A, R>(self: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> =>
    self.pipe(
      Effect.provideService(Client.OnResponseHeaders, (meta) =>
        distributed === undefined
          ? permit.onResponse(meta)
          : Effect.andThen(
            permit.onResponse(meta),
            distributed.onResponse(keyId, permit.pool, RedisPermits.signalOf(meta))
          )),
      Effect.tapError((e) =>
        e.reason._tag !== "ConcurrencyLimited"
          ? Effect.void
          : distributed === undefined
          ? permit.onConcurrencyLimited(e.reason.limit)
          : Effect.andThen(
            permit.onConcurrencyLimited(e.reason.limit),
            distributed.onConcurrencyLimited(keyId, permit.pool, e.reason.limit)
          )
      )
    )

  /**
   * The distributed permit, taken after the local one (so the local lanes
   * order callers first) and held while `self` runs, in the current scope.
   */
  const sharedPermit = (request: ConcurrencyLimiter.PermitRequest & { readonly pool: Pool }, operation: string) =>
    distributed === undefined
      ? Effect.void
      : distributed.acquire({ key: keyId, pool: request.pool, timeout: request.timeout }).pipe(
        Effect.catchTag("DistributedError", fromDistributed(operation, request.pool, request.lane ?? "default")),
        Effect.asVoid
      )

  /**
   * A limiter refusal. The queue wait is bounded by the time the call has left; when that bound, not the
   * queue timeout, ran out, the call's deadline expired in the queue, and it fails as the deadline does.
   */
  const fromQueue = (operation: string, request: ConcurrencyLimiter.PermitRequest) =>
  (error: ConcurrencyLimiter.ConcurrencyLimiterError): Effect.Effect<never, ElevenLabsError> =>
    error.reason._tag === "QueueTimeout" && request.timeout !== undefined &&
      Duration.toMillis(request.timeout) < Duration.toMillis(queueTimeout)
      ? Effect.flatMap(
        Deadline.CurrentDeadline,
        (deadline) => deadline === undefined ? fromLimiter(operation)(error) : Effect.fail(Deadline.expired(deadline, operation))
      )
      : fromLimiter(operation)(error)

  /** Steps 6-8 for one attempt of a buffered call. */
  const attempt = <A>(plan: CallPlan<A>): Effect.Effect<A, ElevenLabsError> => {
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
            Effect.scoped(Effect.andThen(
              sharedPermit(request, plan.operation),
              plan.send.pipe(annotateAnswer(plan.metaOf), learn(permit), attemptSpan(plan.operation, "POST", info, delay))
            ))
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

  /** `self` under the call's deadline (its own, else the stack's); a deadline that is not one is InvalidRequest. */
  const bounded = <A, R>(operation: string, call: CallOptions, self: Effect.Effect<A, ElevenLabsError, R>) => {
    const total = call.deadline === undefined ? deadline : callDeadlineOf(call.deadline)
    return total === undefined
      ? fail(new InvalidRequest({
        operation,
        field: "deadline",
        message: `The call's deadline ${JSON.stringify(String(call.deadline))} is not a finite duration of 0 or more (for example "30 seconds").`
      }))
      : Deadline.withDeadline(total, { operation })(self)
  }

  /** The whole pipeline of a buffered call, with its span and metrics. */
  const run = <A>(plan: CallPlan<A>, validate: InvalidRequest | undefined): Effect.Effect<A, ElevenLabsError> => {
    const withQuota = (self: Effect.Effect<A, ElevenLabsError>): Effect.Effect<A, ElevenLabsError> => {
      if (quota === undefined) return self
      if (plan.cost === undefined) {
        // Nothing to reserve (billed by time), but an exhausted account still fails fast, and a
        // `quota_exceeded` answer here stops the other calls as it does for TTS.
        return Effect.flatMap(quota.state, (state) =>
          state === "exhausted"
            ? Effect.flatMap(quota.status, (s) =>
              fail(new QuotaExhausted({
                operation: plan.operation,
                message: "The account's credits are spent; calls resume after the reset.",
                ...(s.resetAt === undefined ? {} : { resetAt: s.resetAt })
              })))
            : Effect.tapError(self, (e) => e.reason._tag === "QuotaExceeded" ? quota.markExhausted(e.reason) : Effect.void))
      }
      return quota.guard(plan.cost, self, {
        keyId,
        actualCost: (a) => plan.metaOf(a)?.characterCost
      }).pipe(Effect.catchTag("QuotaGuardError", fromQuota(plan.operation)))
    }
    const withCoalescing = (self: Effect.Effect<A, ElevenLabsError>): Effect.Effect<A, ElevenLabsError> =>
      coalescer === undefined || plan.coalesceKey === undefined
        ? self
        : Effect.map(
          // The shared call runs under its starter's deadline; a joiner (on its own fiber) is held to its own too.
          coalescer.coalesce(plan.coalesceKey, self, {
            boundJoin: (wait) => Effect.flatMap(Effect.service(CurrentCallOptions), (call) => bounded(plan.operation, call, wait))
          }),
          ({ coalesced, value }) => coalesced ? plan.mark(value, { coalesced: true }) : value
        )
    const withFallback = (self: Effect.Effect<A, ElevenLabsError>): Effect.Effect<A, ElevenLabsError> =>
      cache === undefined || plan.fallback === undefined ? self : self.pipe(
        Fallback.withFallback({ key: plan.fallback.key, ...plan.fallback.codec }),
        Effect.provideService(Fallback.AudioCache, cache),
        Effect.map((served) => served.fallback ? plan.mark(served.value, { fallback: true }) : served.value)
      )

    const pipeline = validate !== undefined
      ? fail(validate)
      : withFallback(withCoalescing(withQuota(retried(plan.operation, plan.pool, attempt(plan)))))
    return instrument(plan, pipeline)
  }

  /** The call span and the request metrics. */
  const instrument = <A, R>(
    plan: Omit<CallPlan<A>, "send">,
    self: Effect.Effect<A, ElevenLabsError, R>
  ): Effect.Effect<A, ElevenLabsError, R> =>
    Effect.flatMap(Effect.service(CurrentCallOptions), (call) =>
      Effect.timed(Effect.exit(self)).pipe(
        Effect.flatMap(([elapsed, exit]) => {
          const durationSeconds = Duration.toSeconds(elapsed)
          const labels = { operation: plan.operation, pool: plan.pool, model: plan.model }
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
                : Metrics.recordCharacters(plan.model, plan.characters),
              seconds === undefined ? Effect.void : Metrics.recordAudioSeconds(plan.model, seconds),
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

  /**
   * The pipeline of a streamed call: the permit and the reservation live in
   * the caller's scope; an attempt that fails closes its own sub-scope at once.
   */
  const runStream = <S extends { readonly meta: ResponseMeta }>(
    plan: Omit<CallPlan<S>, "send" | "metaOf" | "mark">,
    validate: InvalidRequest | undefined,
    open: Effect.Effect<S, ElevenLabsError, Scope.Scope>,
    release: (s: S, release: Effect.Effect<void>) => S
  ): Effect.Effect<S, ElevenLabsError, Scope.Scope> =>
    Effect.gen(function*() {
      if (validate !== undefined) return yield* fail(validate)
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
          const opened = yield* open.pipe(
            annotateAnswer((s: S) => s.meta),
            learn(permit),
            attemptSpan(plan.operation, "POST", info, delay)
          )
          return release(opened, Effect.andThen(permit.release, observePool(plan.pool)))
        })))
        if (Exit.isFailure(exit)) yield* Scope.close(child, exit)
        return yield* exit
      })
      const guarded = breaker === undefined
        ? oneAttempt
        : breaker.execute(plan.pool)(oneAttempt).pipe(Effect.catchTag("BreakerError", fromBreaker(plan.operation, plan.pool)))
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
    }).pipe((self) => instrument<S, Scope.Scope>({ ...plan, metaOf: (s) => s.meta, mark: (s) => s }, self))

  // ---- the operations -------------------------------------------------------

  const ttsPlan = (
    operation: string,
    voiceId: string,
    request: { readonly text: string; readonly modelId?: string | undefined; readonly outputFormat?: string | undefined }
  ) => {
    const model = request.modelId ?? defaultTtsModel
    const characters = Validation.characterCount(request.text)
    return {
      operation,
      pool: poolOfModel(model),
      model,
      voiceId,
      characters,
      cost: quota?.costOf(characters, model),
      outputFormat: request.outputFormat ?? defaultOutputFormat
    }
  }

  const markMeta = <A extends { readonly meta: ResponseMeta }>(a: A, meta: Partial<ResponseMeta>): A => ({
    ...a,
    meta: { ...a.meta, ...meta }
  })

  const service: Client.ElevenLabs = {
    [Client.TypeId]: Client.TypeId,
    textToSpeech: {
      convert: (voiceId, request) => {
        const operation = "textToSpeech.convert"
        // The key (canonical JSON and SHA-256) only when a coalescer or a cache will read it.
        const key = coalescer === undefined && cache === undefined
          ? undefined
          : Fallback.requestKey({ voiceId, ...request }, { operation, partition: keyId })
        return run<Client.AudioResult>({
          ...ttsPlan(operation, voiceId, request),
          coalesceKey: key,
          fallback: key === undefined ? undefined : {
            key,
            codec: {
              encode: (a) => ({ audio: a.audio, contentType: a.contentType }),
              decode: (cached) => ({ audio: cached.audio, contentType: cached.contentType, meta: {} })
            }
          },
          metaOf: (a) => a.meta,
          mark: markMeta,
          send: raw.textToSpeech.convert(voiceId, request)
        }, Validation.checkTextToSpeech(operation, "convert", voiceId, request, validation))
      },
      convertWithTimestamps: (voiceId, request) => {
        const operation = "textToSpeech.convertWithTimestamps"
        return run<Client.TimestampsResult>({
          ...ttsPlan(operation, voiceId, request),
          outputFormat: undefined,
          coalesceKey: coalescer === undefined
            ? undefined
            : Fallback.requestKey({ voiceId, ...request }, { operation, partition: keyId }),
          metaOf: (a) => a.meta,
          mark: markMeta,
          send: raw.textToSpeech.convertWithTimestamps(voiceId, request)
        }, Validation.checkTextToSpeech(operation, "convert", voiceId, request, validation))
      },
      stream: (voiceId, request) => {
        const operation = "textToSpeech.stream"
        return runStream(
          ttsPlan(operation, voiceId, request),
          Validation.checkTextToSpeech(operation, "stream", voiceId, request, validation),
          raw.textToSpeech.stream(voiceId, request),
          (s, release) => ({ ...s, audio: Stream.ensuring(s.audio, release) })
        )
      },
      streamWithTimestamps: (voiceId, request) => {
        const operation = "textToSpeech.streamWithTimestamps"
        return runStream(
          ttsPlan(operation, voiceId, request),
          Validation.checkTextToSpeech(operation, "stream", voiceId, request, validation),
          raw.textToSpeech.streamWithTimestamps(voiceId, request),
          (s, release) => ({ ...s, chunks: Stream.ensuring(s.chunks, release) })
        )
      }
    },
    speechToText: {
      convert: (request) => {
        const operation = "speechToText.convert"
        const model = request.modelId ?? "scribe_v1"
        return run<Client.TranscriptResult>({
          operation,
          pool: "stt",
          model,
          metaOf: (a) => a.meta,
          mark: markMeta,
          send: raw.speechToText.convert(request)
        }, Validation.checkSpeechToText(operation, request))
      }
    },
    music: {
      compose: (request) => {
        const operation = "music.compose"
        return run<Client.MusicResult>({
          operation,
          pool: "music",
          model: request.modelId ?? "music_v1",
          outputFormat: request.outputFormat === "auto" ? undefined : request.outputFormat,
          metaOf: (a) => a.meta,
          mark: markMeta,
          send: raw.music.compose(request)
        }, Validation.checkMusic(operation, request))
      }
    },
    user: {
      get: () => readOnly("user.get", raw.user.get()),
      subscription: () => readOnly("user.subscription", raw.user.subscription())
    },
    voices: {
      list: (listOptions) => readOnly("voices.list", raw.voices.list(listOptions)),
      get: (voiceId) =>
        Effect.andThen(
          Validation.orFail(Validation.checkVoiceId("voices.get", voiceId)).pipe(
            Effect.mapError((reason) => new ElevenLabsError({ reason }))
          ),
          readOnly("voices.get", raw.voices.get(voiceId))
        ),
      search: (search) =>
        Effect.andThen(
          Validation.orFail(Validation.checkVoiceSearch("voices.search", search ?? {})).pipe(
            Effect.mapError((reason) => new ElevenLabsError({ reason }))
          ),
          readOnly("voices.search", raw.voices.search(search))
        )
    },
    models: {
      list: () =>
        readOnly("models.list", raw.models.list()).pipe(
          // The models list carries the real credit multipliers: teach the quota guard.
          Effect.tap((models) =>
            quota === undefined ? Effect.void : quota.setMultipliers(
              Object.fromEntries(
                models.flatMap((m) =>
                  m.modelRates?.characterCostMultiplier === undefined
                    ? []
                    : [[m.modelId, m.modelRates.characterCostMultiplier] as const]
                )
              )
            )
          )
        )
    }
  }

  /** Read-only calls: deadline and retries, no limiter, breaker or quota. */
  function readOnly<A>(operation: string, self: Effect.Effect<A, ElevenLabsError>): Effect.Effect<A, ElevenLabsError> {
    const one = Effect.flatMap(Effect.all([RetryPolicy.CurrentAttempt, RetryDelay]), ([info, delay]) =>
      Effect.andThen(
        Spans.annotateCall({ attempts: info.attempt }),
        self.pipe(annotateAnswer(() => undefined), attemptSpan(operation, "GET", info, delay))
      ))
    return retried(operation, undefined, one).pipe(
      Effect.tap(() => Spans.annotateCall({ outcome: "success" })),
      Effect.tapError((e) => Spans.annotateCall({ outcome: "error", errorReason: e.reason._tag, attempts: e.attempts })),
      Spans.withCallSpan(operation)
    )
  }

  const resilience: Resilience = { keyId, limiter, breaker, quota, budget, cache, retries }
  return { service, resilience }
})

const bytesOf = (value: unknown): number | undefined => {
  if (typeof value !== "object" || value === null || !("audio" in value)) return undefined
  const audio = value.audio
  return audio instanceof Uint8Array ? audio.byteLength : undefined
}

/**
 * The resilient `ElevenLabs` service (and the {@link ResilienceService} behind
 * it). The transport (`HttpClient`) is left as a requirement: provide
 * `NodeHttpClient.layerUndici`, `FetchHttpClient.layer`, or the simulator's
 * in-process client.
 *
 * With a `redis` entry the layer also connects to Redis (the same as providing
 * `SharedState.layerRedis` yourself). If Redis cannot be reached at start-up,
 * building the layer fails with an `ElevenLabsError` of reason
 * `SharedStateUnavailable` (operation `"startup"`); the process does not start
 * in the trouble mode; the same reason, naming `npm install redis`, when the
 * optional peer dependency `redis` is not installed. Without `redis` the
 * layer cannot fail.
 */
export function layer(
  options: ResilientOptions & { readonly redis?: undefined }
): Layer.Layer<Client.ElevenLabs | ResilienceService, never, HttpClient.HttpClient>
export function layer(
  options: ResilientOptions
): Layer.Layer<Client.ElevenLabs | ResilienceService, ElevenLabsError, HttpClient.HttpClient>
export function layer(
  options: ResilientOptions
): Layer.Layer<Client.ElevenLabs | ResilienceService, ElevenLabsError, HttpClient.HttpClient> {
  const stack = Layer.effectContext(
    Effect.map(make(options), ({ resilience, service }) =>
      Context.make(Client.ElevenLabs, service).pipe(Context.add(ResilienceService, resilience)))
  )
  if (options.redis === undefined) return stack
  const shared = SharedState.layerRedis(SharedState.optionsFromSettings(options.redis, {
    // One shared credit account per API key.
    quota: { account: Fallback.partitionOfApiKey(options.apiKey) }
  })).pipe(
    Layer.catchTag("RedisError", (error) => Layer.effectDiscard(Effect.fail(redisUnreachable(error)))),
    Layer.catchTag("MissingPeerDependency", (error) =>
      Layer.effectDiscard(Effect.fail(
        new ElevenLabsError({ reason: new SharedStateUnavailable({ operation: "startup", message: error.message }) })
      )))
  )
  return stack.pipe(Layer.provide(shared))
}

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
