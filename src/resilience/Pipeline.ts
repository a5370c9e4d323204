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
 *   reads the call from there, and the policies keep their per-call state in
 *   it too (the inline flight, the quota reservation, the breaker's admission:
 *   `Coalescer.inlineWith`, `QuotaGuard.guardWith`, `Breaker.executeWith`),
 *   settled by exit frames built once. A call waiting in the queue so holds
 *   its state, its span, its fiber and the limiter's waiter, and no closure,
 *   mask or frame of its own per policy.
 * - Every call fails with `ElevenLabsError`; the policies' refusals are
 *   mapped by `Refusals.ts`. A deadline that is not a finite duration of 0 or
 *   more is `InvalidRequest` (field `deadline`); a deadline that runs out in
 *   the limiter's queue fails as the deadline (`Timeout`, phase `deadline`).
 * - Gauges follow the policies: concurrency and queue depth per pool (from
 *   the limiter's `onOccupancy`, synchronously), the breaker state, quota used.
 *
 * @since 0.1.0
 */
import { Effect, Exit, Scope } from "effect"
import * as Client from "../client/ElevenLabs.ts"
import type { ElevenLabsError } from "../client/Errors.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import { makeAround } from "./PipelineAround.ts"
import { makeAttempts, type Stack } from "./PipelineAttempts.ts"
import {
  type Attempt,
  attemptAttributes,
  type CallPlan,
  current,
  CurrentCallOptions,
  isPooled,
  type PooledPlan
} from "./PipelineCall.ts"
import { makeEntry } from "./PipelineEntry.ts"
import * as PipelinePolicies from "./PipelinePolicies.ts"
import { fromQuota } from "./Refusals.ts"
import type { PolicyOptions } from "./ResilientOptions.ts"

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
  /**
   * Applies new policy options in place, for the calls from now on; the policies keep their state (a lower
   * limit drains, it cancels nothing). See `PipelinePolicies.reconfigure`; the live configuration
   * (`LiveConfig.ts`) validates the options first.
   */
  readonly reconfigure: (options: PolicyOptions) => Effect.Effect<void>
  /**
   * Pooled calls ended and those that failed, cumulative (a deploy's watch reads their rate). The caller's own
   * mistakes (`InvalidRequest`) and interruptions are not failures here.
   */
  readonly outcomes: { readonly calls: number; readonly errors: number }
  /** The settings a live configuration changes besides the policies (the deadline, the queue's bound, retries). */
  readonly live: Readonly<PipelinePolicies.LiveSettings>
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
    const { keyId, limiter, quota } = policies
    // Read at each call: a live configuration changes them (`reconfigure`).
    const live = PipelinePolicies.liveSettingsOf(options)
    const staticAttemptOf = attemptAttributes(options.baseUrl ?? Client.defaultBaseUrl)
    // The metrics go to the registry of the context the stack is built in, as its gauges do: read from a call's
    // own context, each update would look the registry up through that call's overlays.
    const metricsContext = yield* Effect.context<never>()

    const { enter, finishPooled, finishReadOnly, outcomes, programsOf } = makeEntry({ keyId, live, metricsContext })

    const stack: Stack = { policies, options, live, staticAttemptOf, metricsContext }
    const { admitted, limited, queueRefused, readAttempt, requestOf, sendOne, sharedPermit, teachCurrent } =
      makeAttempts(stack)
    const { coalesceAround, fallbackAround, markIfExceeded, quotaAround, retriedAround } = makeAround(stack)

    // ---- the three kinds of call ---------------------------------------------------

    /** The buffered pipeline, built once. */
    const bufferedProgram = programsOf(
      fallbackAround(coalesceAround(quotaAround(retriedAround(limited, true)))),
      finishPooled
    )

    /** The read-only pipeline, built once: coalescing (with a key), the deadline and retries; no metrics. */
    const readOnlyProgram = programsOf(coalesceAround(retriedAround(readAttempt, false)), finishReadOnly)

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
          const exit = yield* Effect.exit(
            Scope.provide(child)(Effect.withFiber((fiber) => {
              const call = current(fiber)
              const request = requestOf(fiber, call, plan.pool)
              call.request = request
              return Effect.flatMap(
                Effect.catchTag(limiter.acquire(request), "ConcurrencyLimiterError", queueRefused),
                (permit) =>
                  Effect.andThen(
                    sharedPermit(call, request),
                    Effect.map(sendOne(call, permit, admitted(fiber, call, permit)), (s) =>
                      release(s as S, permit.release))
                  )
              )
            }))
          )
          if (Exit.isFailure(exit)) yield* Scope.close(child, exit)
          return yield* exit
        })
        const reservation = quota === undefined || plan.cost === undefined
          ? undefined
          : yield* quota.reserve(plan.cost, { keyId }).pipe(
            Effect.catchTag("QuotaGuardError", fromQuota(plan.operation))
          )
        const opened = yield* retriedAround(oneAttempt, true).pipe(
          Effect.tapError(markIfExceeded),
          // Released at once on failure: the caller's scope may live long (a connection, a batch loop), and
          // credits held for a call that failed would refuse the calls after it.
          Effect.onError(() => reservation === undefined ? Effect.void : reservation.release)
        )
        if (reservation !== undefined) yield* reservation.commit(opened.meta.characterCost)
        return opened
      })
      return enter(full, open, true, programsOf(body, finishPooled)) as Effect.Effect<
        S,
        ElevenLabsError,
        Scope.Scope
      >
    }

    const run = <A, R = never>(plan: CallPlan<A>, one: Attempt<A, R>): Effect.Effect<A, ElevenLabsError, R> =>
      isPooled(plan) ? buffered(plan, one) : readOnly(plan, one)

    const reconfigure = (next: PolicyOptions) => PipelinePolicies.reconfigure(policies, live, next)

    return {
      policies,
      buffered,
      streamed,
      readOnly,
      run,
      onResponseHeaders: teachCurrent,
      reconfigure,
      outcomes,
      live
    } satisfies Pipeline
  }
)
