/**
 * The one request pipeline: the one way a call of each response kind runs
 * through the policies (built by `PipelinePolicies.ts`). Both doors are thin
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
 *   headers as they arrive through the client's `onResponseHeaders` option
 *   ({@link Pipeline.onResponseHeaders}); `"opaque"`
 *   attempts (a promise) are learnt from after they end, from `metaOf(value)`.
 * - Built once, run per call: the buffered and read-only pipelines are
 *   effects built once per stack. A call is one state object ({@link Call}:
 *   the plan, the attempt, the deadline, the lane, the permit in flight, the
 *   call span), published with the span in one context overlay; every step
 *   reads the call from there. A call waiting in the queue so holds its state,
 *   its span, its policies' own records and the limiter's waiter, and no
 *   chain of closures of its own.
 * - Every call fails with `ElevenLabsError`; the policies' refusals are
 *   mapped by `Refusals.ts`. A deadline that is not a finite duration of 0 or
 *   more is `InvalidRequest` (field `deadline`); a deadline that runs out in
 *   the limiter's queue fails as the deadline (`Timeout`, phase `deadline`).
 * - Gauges follow the policies: concurrency and queue depth per pool (from
 *   the limiter's `onOccupancy`, synchronously), the breaker state, quota used.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Exit, type Fiber, Scope, Tracer } from "effect"
import * as Client from "../client/ElevenLabs.ts"
import { ElevenLabsError, InvalidRequest, QuotaExhausted } from "../client/Errors.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as RedisPermits from "../distributed/RedisPermits.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import type * as Coalescer from "./Coalescer.ts"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import * as Deadline from "./Deadline.ts"
import * as Fallback from "./Fallback.ts"
import {
  type Attempt,
  attemptAttributes,
  type BoundRequest,
  Call,
  callDeadlineOf,
  callOf,
  type CallPlan,
  current,
  CurrentCallOptions,
  invalidDeadline,
  isPooled,
  outcomeOf,
  type PooledPlan,
  recordCall,
  running,
  spanOptionsOf
} from "./PipelineCall.ts"
import * as PipelinePolicies from "./PipelinePolicies.ts"
import type { Pool } from "./Plans.ts"
import { fail, fromBreaker, fromDistributed, fromLimiter, fromQuota } from "./Refusals.ts"
import { stackDefaults } from "./ResilientOptions.ts"
import * as RetryPolicy from "./RetryPolicy.ts"

export type { Policies } from "./PipelinePolicies.ts"
export { layerShared } from "./PipelinePolicies.ts"

export {
  type Attempt,
  type CallOptions,
  type CallPlan,
  CurrentCallOptions,
  type PooledPlan,
  withCallOptions
} from "./PipelineCall.ts"

// ============================================================================
// Options and the pipeline
// ============================================================================

/** What {@link make} builds the policies from. */
export interface PipelineOptions extends PipelinePolicies.PolicyBuildOptions {
  /** Where the attempts go, for the attempt span's `server.address` and `server.port`. Default `https://api.elevenlabs.io`. */
  readonly baseUrl?: string | undefined
}

/** The one request pipeline. */
export interface Pipeline {
  readonly policies: PipelinePolicies.Policies
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
  /**
   * The headers hook for this library's client (its `onResponseHeaders` option): it feeds the adaptive limit
   * of the permit the current call's attempt holds, and does nothing outside a call.
   */
  readonly onResponseHeaders: (meta: ResponseMeta) => Effect.Effect<void>
  /** {@link Pipeline.buffered} when the plan has a pool, else {@link Pipeline.readOnly}. */
  readonly run: <A, R = never>(plan: CallPlan<A>, attempt: Attempt<A, R>) => Effect.Effect<A, ElevenLabsError, R>
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
    const policies = yield* PipelinePolicies.make(options)
    const { breaker, budget, cache, coalescer, distributed, keyId, limiter, quota, retries } = policies
    const deadline = Duration.fromInputUnsafe(options.deadline ?? stackDefaults.deadline)
    const queueTimeout = Duration.fromInputUnsafe(options.limiter?.queueTimeout ?? "120 seconds")
    const queueTimeoutMillis = Duration.toMillis(queueTimeout)
    const retrySettings = options.retry === false ? undefined : (options.retry ?? {})
    const staticAttemptOf = attemptAttributes(options.baseUrl ?? Client.defaultBaseUrl)
    // The metrics go to the registry of the context the stack is built in, as its gauges do: read from a call's
    // own context, each update would look the registry up through that call's overlays.
    const metricsContext = yield* Effect.context<never>()

    // ---- the entry: one state object and one context overlay per call --------

    /**
     * Starts a call: its span, its state, the overlay (span, state, and the headers hook for this library's
     * client), then `program`, built once, which reads the call from the overlay. A plan refused by the
     * adapter or a deadline that is not one fails here, recorded as any failed call.
     */
    const enter = <A, E, R>(
      plan: CallPlan<any>,
      attempt: Attempt<any, any>,
      pooled: boolean,
      program: Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | ElevenLabsError, R> =>
      Effect.useSpan(Spans.callSpanName(plan.operation), spanOptionsOf(plan, pooled), (span) =>
        Effect.withFiber<A, E | ElevenLabsError, R>((fiber) => {
          const call = fiber.getRef(CurrentCallOptions)
          const lane = call.lane ?? "default"
          if (pooled) span.attribute(Spans.callAttributes.lane, lane)
          const total = call.deadline === undefined ? deadline : callDeadlineOf(call.deadline)
          const refused = plan.invalid !== undefined
            ? new ElevenLabsError({ reason: plan.invalid })
            : total === undefined
            ? invalidDeadline(plan.operation, call)
            : undefined
          if (refused !== undefined || total === undefined) {
            const exit = Exit.fail(refused!)
            Spans.setCallAttributes(span, pooled ? recordCall(plan as PooledPlan<any>, exit, 0, metricsContext) : outcomeOf(exit))
            return exit
          }
          const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
          const outer = fiber.getRef(Deadline.CurrentDeadline)
          const end = now + Duration.toMillis(total)
          // Nested deadlines never extend an outer one.
          const at = outer === undefined ? end : Math.min(outer.at, end)
          const state = new Call(plan, attempt, total, at, now, lane, call.idempotent !== false, span, keyId)
          const context = Context.add(Context.add(fiber.context, Tracer.ParentSpan, span), Deadline.CurrentDeadline, state)
          return Effect.updateContext(program, () => context as Context.Context<R>)
        }))

    /** The end of a pooled call: metrics and the call span's outcome (synchronously). */
    const finishPooled = (exit: Exit.Exit<unknown, ElevenLabsError>): Effect.Effect<void> => {
      const fiber = running()
      const call = current(fiber)
      const seconds = (fiber.getRef(Clock.Clock).currentTimeMillisUnsafe() - call.start) / 1000
      Spans.setCallAttributes(call.span, recordCall(call.plan as PooledPlan<any>, exit, seconds, metricsContext))
      return Effect.void
    }

    /** The end of a read-only call: the span's outcome. */
    const finishReadOnly = (exit: Exit.Exit<unknown, ElevenLabsError>): Effect.Effect<void> => {
      Spans.setCallAttributes(current(running()).span, outcomeOf(exit))
      return Effect.void
    }

    // ---- the adaptive limit, taught by the answers ----------------------------

    /** Feeds the adaptive limit (and the shared one) from an answer's headers. */
    const teach = (permit: ConcurrencyLimiter.Permit, meta: ResponseMeta): Effect.Effect<void> =>
      distributed === undefined
        ? permit.onResponse(meta)
        : Effect.andThen(permit.onResponse(meta), distributed.onResponse(keyId, permit.pool, RedisPermits.signalOf(meta)))

    /** The client's headers hook: teaches the permit of the current call's attempt. */
    const teachCurrent = (meta: ResponseMeta): Effect.Effect<void> =>
      Effect.withFiber((fiber) => {
        const permit = callOf(fiber)?.permit
        return permit === undefined ? Effect.void : teach(permit, meta)
      })

    /** Feeds the adaptive limit (and the shared one) from a concurrency 429. */
    const teachLimited = (permit: ConcurrencyLimiter.Permit, limit: number | undefined): Effect.Effect<void> =>
      distributed === undefined
        ? permit.onConcurrencyLimited(limit)
        : Effect.andThen(permit.onConcurrencyLimited(limit), distributed.onConcurrencyLimited(keyId, permit.pool, limit))

    // ---- step 8: one attempt ----------------------------------------------------

    /**
     * One attempt and its span, annotated with its answer (status and request id, or the error's status,
     * detail and reason); with a permit, the adaptive limit is fed. A client attempt reports its headers as
     * they arrive (`teachCurrent`) and bounds its own waits; an opaque one (a promise) is learnt from once it
     * ends and is raced against the time left here, inside the permit, so only calls in flight race.
     */
    const sendOne = (call: Call, permit: ConcurrencyLimiter.Permit | undefined, attempt: number) => {
      const { operation, plan } = call
      const client = call.attempt.kind === "client"
      const send: Effect.Effect<unknown, ElevenLabsError, unknown> = client
        ? call.attempt.send
        : Deadline.enforce({ operation })(call.attempt.send)
      return send.pipe(
        Effect.tap((a) => {
          const meta = plan.metaOf(a)
          // Only 2xx answers succeed, and every ElevenLabs success is a 200.
          const annotated = Spans.annotateAttempt({ statusCode: 200, requestId: meta?.requestId })
          return permit === undefined || client || meta === undefined ? annotated : Effect.andThen(annotated, teach(permit, meta))
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
        }),
        Spans.withAttemptSpan(operation, {
          ...staticAttemptOf(operation),
          attempt,
          retryDelayMs: call.delay === undefined ? undefined : Duration.toMillis(call.delay)
        })
      )
    }

    /** A read-only attempt (no permit). */
    const readAttempt = Effect.withFiber((fiber) => {
      const call = current(fiber)
      const attempt = fiber.getRef(RetryPolicy.CurrentAttempt).attempt
      Spans.setCallAttributes(call.span, { attempts: attempt })
      return sendOne(call, undefined, attempt)
    })

    // ---- step 7: the permits ----------------------------------------------------

    /**
     * The queue wait is bounded by the time the call has left. When that bound, not the queue timeout, ran
     * out, the call's deadline expired while it waited, and it fails as the deadline does; else `orElse`.
     */
    const expiredInQueue = (operation: string, bound: Deadline.PhaseBound, orElse: Effect.Effect<never, ElevenLabsError>) =>
      bound.deadline === undefined ? orElse : Effect.fail(Deadline.expired(bound.deadline, operation))

    /**
     * The permit request of the current attempt. Its queue timeout is the limiter's, or the time the call has
     * left when that is shorter (`bound.deadline` is then set: the queue's expiry is the deadline's).
     */
    const requestOf = (fiber: Fiber.Fiber<unknown, unknown>, call: Call, pool: Pool): BoundRequest => {
      const bound = Deadline.boundOf(queueTimeoutMillis, call, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
      return {
        key: keyId,
        pool,
        lane: call.lane,
        front: fiber.getRef(RetryPolicy.CurrentAttempt).previous !== undefined,
        timeout: bound.millis,
        bound
      }
    }

    /**
     * The distributed permit, taken after the local one (so the local lanes order callers first) and held
     * in the current scope. Its wait has the same bound as the local queue's (the time left, when shorter).
     */
    const sharedPermit = (call: Call, request: BoundRequest): Effect.Effect<void, ElevenLabsError, Scope.Scope> =>
      distributed === undefined ? Effect.void : Effect.flatMap(Deadline.phaseBound(queueTimeout), (bound) =>
        distributed.acquire({ key: keyId, pool: request.pool, timeout: Duration.millis(bound.millis) }).pipe(
          Effect.catchTag("DistributedError", (error) => {
            const refused = fromDistributed(call.operation, request.pool, request.lane ?? "default")(error)
            return error.reason._tag === "AcquireTimeout" ? expiredInQueue(call.operation, bound, refused) : refused
          }),
          Effect.asVoid
        ))

    /** The permit's bookkeeping on the call and its span; returns the attempt's number. */
    const admitted = (fiber: Fiber.Fiber<unknown, unknown>, call: Call, permit: ConcurrencyLimiter.Permit): number => {
      call.permit = permit
      call.queueWaitMs += permit.waitedMillis
      const attempt = fiber.getRef(RetryPolicy.CurrentAttempt).attempt
      Spans.setCallAttributes(call.span, { attempts: attempt, queueWaitMs: call.queueWaitMs })
      return attempt
    }

    /** The attempt, once the permit is granted (after the wait: allocating here costs a waiting call nothing). */
    const underPermit = (permit: ConcurrencyLimiter.Permit) => {
      const fiber = running()
      const call = current(fiber)
      const sent = sendOne(call, permit, admitted(fiber, call, permit))
      return distributed === undefined ? sent : Effect.scoped(Effect.andThen(sharedPermit(call, call.request!), sent))
    }

    /** A limiter refusal: `QueueFull`, `QueueTimeout`, or the deadline when it ran out in the queue. */
    const queueRefused = (error: ConcurrencyLimiter.ConcurrencyLimiterError) =>
      Effect.withFiber<never, ElevenLabsError>((fiber) => {
        const call = current(fiber)
        const refused = fromLimiter(call.operation)(error)
        return error.reason._tag === "QueueTimeout" ? expiredInQueue(call.operation, call.request!.bound, refused) : refused
      })

    /** Step 7-8: the attempt under a permit of the call's pool. */
    const limited = Effect.catchTag(
      Effect.withFiber((fiber) => {
        const call = current(fiber)
        const request = requestOf(fiber, call, call.pool!)
        call.request = request
        return limiter.usePermit(request, underPermit)
      }),
      "ConcurrencyLimiterError",
      queueRefused
    )

    // ---- steps 6, 5, 3, 2, 9: breaker, retries, quota, coalescing, fallback ----

    /** Before every backoff pause: the pause for the next attempt's span, the retries metric, the span event, a log line. */
    const onRetry = (event: RetryPolicy.RetryEvent): Effect.Effect<void> =>
      Effect.withFiber((fiber) => {
        const call = callOf(fiber)
        if (call !== undefined) {
          call.delay = event.delay
          if (call.pool !== undefined) Metrics.recordRetryUnsafe({ reason: event.reason, pool: call.pool }, metricsContext)
        }
        const delayMs = Duration.toMillis(event.delay)
        const spanned = Spans.retryEvent({ attempt: event.attempt - 1, reason: event.reason, delayMs })
        // Debug, not Warning: a retry is the stack doing its job (a busy minute makes hundreds);
        // the retries metric and span events count them, and a give-up surfaces as the call's error.
        return event.retryClass === "requeue" ? spanned : Effect.andThen(
          spanned,
          Effect.logDebug("elevenlabs retry", {
            operation: call?.operation ?? event.operation,
            reason: event.reason,
            attempt: event.attempt,
            delayMs
          })
        )
      })

    // The retry policies, built once per stack (their schedules are values; their state lives in each run).
    const retryPolicies = retrySettings === undefined ? undefined : {
      idempotent: RetryPolicy.retry({ ...retrySettings, idempotent: true, budget, events: retries, onRetry }),
      notIdempotent: RetryPolicy.retry({ ...retrySettings, idempotent: false, budget, events: retries, onRetry })
    }

    /**
     * Steps 4-6: the retried attempts, each behind the breaker of the call's pool (when `guarded`), chosen in
     * one step from the call: the retry policy by its idempotency, the breaker by its pool (each pair built
     * once). The deadline is the call's state (see `enter`): it races nothing, as each wait inside bounds
     * itself by the time left (the queue, the headers and body, the backoff pause). A coalesced call handed
     * over to its joiners runs this again on another fiber, with a fresh state: its starter's deadline,
     * attempts and last error were spent by the run that was interrupted.
     */
    const retriedAround = <A, R>(
      inner: Effect.Effect<A, ElevenLabsError, R>,
      guarded: boolean
    ): Effect.Effect<A, ElevenLabsError, R> => {
      const built = [new Map<Pool | undefined, Effect.Effect<A, ElevenLabsError, R>>(), new Map<Pool | undefined, Effect.Effect<A, ElevenLabsError, R>>()]
      const pick = (idempotent: boolean, pool: Pool | undefined) => {
        const byPool = built[idempotent ? 0 : 1]!
        let chosen = byPool.get(pool)
        if (chosen === undefined) {
          const behind = guarded && breaker !== undefined && pool !== undefined
            ? breaker.execute(pool)(inner).pipe(
              Effect.catchTag("BreakerError", (e) => Effect.withFiber((fiber) => fromBreaker(current(fiber).operation, pool)(e)))
            )
            : inner
          chosen = retryPolicies === undefined
            ? behind
            : (idempotent ? retryPolicies.idempotent : retryPolicies.notIdempotent)(behind)
          byPool.set(pool, chosen)
        }
        return chosen
      }
      return Effect.withFiber((fiber) => {
        const call = current(fiber)
        const chosen = pick(call.idempotent, call.pool)
        return call.runs++ === 0
          ? chosen
          : Effect.provideService(chosen, Deadline.CurrentDeadline, call.again(fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()))
      })
    }

    /** The `quota_exceeded` answer stops the other calls too. */
    const markIfExceeded = (e: ElevenLabsError) =>
      e.reason._tag === "QuotaExceeded" && quota !== undefined ? quota.markExhausted(e.reason) : Effect.void

    const quotaRefused = (e: Parameters<ReturnType<typeof fromQuota>>[0]) =>
      Effect.withFiber<never, ElevenLabsError>((fiber) => fromQuota(current(fiber).operation)(e))

    /** Step 3: the call's credits reserved around `inner` (committed or released as it ends). */
    const quotaAround = <A, R>(inner: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> => {
      if (quota === undefined) return inner
      // Nothing to reserve (billed by time, or the cost is not known), but an exhausted account still fails
      // fast, and a `quota_exceeded` answer here stops the other calls as it does for TTS.
      const unreserved = Effect.flatMap(quota.state, (state) =>
        state === "exhausted"
          ? Effect.flatMap(quota.status, (s) =>
            Effect.withFiber((fiber) =>
              fail(
                new QuotaExhausted({
                  operation: current(fiber).operation,
                  message: "The account's credits are spent; calls resume after the reset.",
                  ...(s.resetAt === undefined ? {} : { resetAt: s.resetAt })
                })
              )
            ))
          : Effect.tapError(inner, markIfExceeded))
      return Effect.withFiber((fiber) => {
        const call = current(fiber)
        const cost = call.plan.cost
        return cost === undefined
          ? unreserved
          : Effect.catchTag(quota.guard(cost, inner, call), "QuotaGuardError", quotaRefused)
      })
    }

    /**
     * A joiner's wait for a shared call, bounded by its own deadline (a `Deferred.await` cannot bound itself),
     * and its copy of the result marked `coalesced`.
     */
    const boundJoin = (wait: Effect.Effect<any, ElevenLabsError>) =>
      Effect.withFiber((fiber) => {
        const call = current(fiber)
        return Effect.map(
          Deadline.withDeadline(call.total, { operation: call.operation })(wait),
          (value) => call.plan.mark(value, { coalesced: true })
        )
      })
    // Where a flight runs, unless the stack's options chose: an idempotent call on its starter's fiber (no fork
    // per call; a starter interrupted while others wait hands a fresh run over to them, a repeat of the kind a
    // retry makes), a call marked `idempotent: false` in a fiber of its own (its one request goes on for the
    // joiners whatever happens to its starter). docs/coalescing.md.
    const chosen = options.coalesce === false ? undefined : options.coalesce?.flight
    const joinOptions = {
      idempotent: { boundJoin, flight: chosen ?? "inline" },
      notIdempotent: { boundJoin, flight: chosen ?? "detached" }
    } satisfies Record<string, Coalescer.CoalesceOptions<any, ElevenLabsError>>

    const valueOf = <A>(shared: Coalescer.Coalesced<A>): A => shared.value

    /**
     * Step 2: identical calls in flight (same key) share one run of `inner`. Calls marked `idempotent: false`
     * share only among themselves (their key is marked): an idempotent starter's flight may be handed over,
     * that is sent again, and a caller who said a repeat could duplicate work must not be a joiner of it.
     */
    const coalesceAround = <A, R>(inner: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> => {
      if (coalescer === undefined) return inner
      return Effect.withFiber((fiber) => {
        const call = current(fiber)
        const key = call.plan.coalesceKey
        if (key === undefined) return inner
        return Effect.map(
          call.idempotent
            ? coalescer.coalesce(key, inner, joinOptions.idempotent)
            : coalescer.coalesce(`${key}|once`, inner, joinOptions.notIdempotent),
          valueOf
        )
      })
    }

    /** Step 9: on a terminal failure, the cached audio of the same request (when the stack has a cache). */
    const fallbackAround = <A, R>(inner: Effect.Effect<A, ElevenLabsError, R>): Effect.Effect<A, ElevenLabsError, R> => {
      if (cache === undefined) return inner
      return Effect.withFiber((fiber) => {
        const plan = current(fiber).plan as CallPlan<A>
        const fallback = plan.fallback
        return fallback === undefined ? inner : inner.pipe(
          Fallback.withFallback({ key: fallback.key, ...fallback.codec }),
          Effect.provideService(Fallback.AudioCache, cache),
          Effect.map((served) => served.fallback ? plan.mark(served.value, { fallback: true }) : served.value)
        )
      })
    }

    // ---- the three kinds of call ---------------------------------------------------

    /** The buffered pipeline, built once. */
    const bufferedProgram = Effect.onExit(
      fallbackAround(coalesceAround(quotaAround(retriedAround(limited, true)))),
      finishPooled
    )

    /** The read-only pipeline, built once: coalescing (with a key), the deadline and retries; no metrics. */
    const readOnlyProgram = Effect.onExit(coalesceAround(retriedAround(readAttempt, false)), finishReadOnly)

    const buffered = <A, R = never>(plan: PooledPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      enter(plan, one, true, bufferedProgram) as Effect.Effect<A, ElevenLabsError, R>

    const readOnly = <A, R = never>(plan: CallPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      enter(plan, one, false, readOnlyProgram) as Effect.Effect<A, ElevenLabsError, R>

    /**
     * A streamed call: the permit and the reservation live in the caller's scope; an attempt that fails closes
     * its own sub-scope at once. Built per call (a stream is long; its attempts hold the caller's scope).
     */
    const streamed = <S extends { readonly meta: ResponseMeta }>(
      plan: Omit<PooledPlan<S>, "metaOf" | "mark" | "coalesceKey" | "fallback">,
      open: Attempt<S, Scope.Scope>,
      release: (s: S, release: Effect.Effect<void>) => S
    ): Effect.Effect<S, ElevenLabsError, Scope.Scope> => {
      const full: PooledPlan<S> = { ...plan, metaOf: (s) => s.meta, mark: (s) => s }
      const body = Effect.gen(function*() {
        const outer = yield* Effect.scope
        const oneAttempt = Effect.gen(function*() {
          const child = yield* Scope.fork(outer)
          const exit = yield* Effect.exit(Scope.provide(child)(Effect.withFiber((fiber) => {
            const call = current(fiber)
            const request = requestOf(fiber, call, plan.pool)
            call.request = request
            return Effect.flatMap(
              Effect.catchTag(limiter.acquire(request), "ConcurrencyLimiterError", queueRefused),
              (permit) =>
                Effect.andThen(
                  sharedPermit(call, request),
                  Effect.map(sendOne(call, permit, admitted(fiber, call, permit)), (s) => release(s as S, permit.release))
                )
            )
          })))
          if (Exit.isFailure(exit)) yield* Scope.close(child, exit)
          return yield* exit
        })
        const reservation = quota === undefined || plan.cost === undefined
          ? undefined
          : yield* quota.reserve(plan.cost, { keyId }).pipe(Effect.catchTag("QuotaGuardError", fromQuota(plan.operation)))
        const opened = yield* retriedAround(oneAttempt, true).pipe(
          Effect.tapError(markIfExceeded),
          // Released at once on failure: the caller's scope may live long (a connection, a batch loop), and
          // credits held for a call that failed would refuse the calls after it.
          Effect.onError(() => reservation === undefined ? Effect.void : reservation.release)
        )
        if (reservation !== undefined) yield* reservation.commit(opened.meta.characterCost)
        return opened
      })
      return enter(full, open, true, Effect.onExit(body, finishPooled)) as Effect.Effect<S, ElevenLabsError, Scope.Scope>
    }

    const run = <A, R = never>(plan: CallPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      isPooled(plan) ? buffered(plan, one) : readOnly(plan, one)

    return { policies, buffered, streamed, readOnly, run, onResponseHeaders: teachCurrent } satisfies Pipeline
  }
)

