/**
 * Steps 6, 5, 3, 2 and 9 of the pipeline (`Pipeline.ts`), each wrapped around the one inside it: the breaker
 * and the retries (one pair per idempotency and pool), the quota reservation, coalescing, the fallback cache.
 *
 * @internal
 */
import { Clock, Duration, Effect } from "effect"
import { ElevenLabsError, QuotaExhausted } from "../client/Errors.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import type * as Coalescer from "./Coalescer.ts"
import * as Deadline from "./Deadline.ts"
import * as Fallback from "./Fallback.ts"
import { callOf, type CallPlan, current } from "./PipelineCall.ts"
import type { Pool } from "./Plans.ts"
import { fail, fromBreaker, fromQuota } from "./Refusals.ts"
import * as RetryPolicy from "./RetryPolicy.ts"

import type { Stack } from "./PipelineAttempts.ts"

/**
 * The retry policies of the current settings, built once per version of them (their schedules are values;
 * their state lives in each run): a live change builds them again at the next call.
 */
const liveRetryPolicies = (stack: Stack, onRetry: (event: RetryPolicy.RetryEvent) => Effect.Effect<void>) => {
  const { live, policies: { budget, retries } } = stack
  const build = () =>
    live.retry === undefined ? undefined : {
      idempotent: RetryPolicy.retry({ ...live.retry, idempotent: true, budget, events: retries, onRetry }),
      notIdempotent: RetryPolicy.retry({ ...live.retry, idempotent: false, budget, events: retries, onRetry })
    }
  let built = build()
  let generation = live.generation
  return () => {
    if (generation !== live.generation) {
      built = build()
      generation = live.generation
    }
    return built
  }
}

/** The policies around the attempts. */
export const makeAround = (stack: Stack) => {
  const { live, metricsContext, options, policies } = stack
  const { breaker, cache, coalescer, quota } = policies

  // ---- steps 6, 5, 3, 2, 9: breaker, retries, quota, coalescing, fallback ----

  /** Before every backoff pause: the pause for the next attempt's span, the retries metric, the span event, a log line. */
  const onRetry = (event: RetryPolicy.RetryEvent): Effect.Effect<void> =>
    Effect.withFiber((fiber) => {
      const call = callOf(fiber)
      if (call !== undefined) {
        call.delay = event.delay
        if (call.pool !== undefined) {
          Metrics.recordRetryUnsafe({ reason: event.reason, pool: call.pool }, metricsContext)
        }
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

  const currentRetryPolicies = liveRetryPolicies(stack, onRetry)

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
    const built = [
      new Map<Pool | undefined, Effect.Effect<A, ElevenLabsError, R>>(),
      new Map<Pool | undefined, Effect.Effect<A, ElevenLabsError, R>>()
    ]
    let builtFor = live.generation
    const pick = (idempotent: boolean, pool: Pool | undefined) => {
      if (builtFor !== live.generation) {
        built[0]!.clear()
        built[1]!.clear()
        builtFor = live.generation
      }
      const retryPolicies = currentRetryPolicies()
      const byPool = built[idempotent ? 0 : 1]!
      let chosen = byPool.get(pool)
      if (chosen === undefined) {
        const behind = guarded && breaker !== undefined && pool !== undefined
          ? breaker.executeWith(pool, current)(inner).pipe(
            Effect.catchTag(
              "BreakerError",
              (e) => Effect.withFiber((fiber) => fromBreaker(current(fiber).operation, pool)(e))
            )
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
        : Effect.provideService(
          chosen,
          Deadline.CurrentDeadline,
          call.again(fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
        )
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
    // Built once: the reservation is kept in the call (`Call.quotaHeld`). A coalesced call handed over runs
    // this again on another fiber with the starter's `Call`: safe because coalescing wraps this step, so the
    // starter's reservation was settled (and the field cleared) before the hand-over starts.
    const reserved = Effect.catchTag(quota.guardWith(inner, current), "QuotaGuardError", quotaRefused)
    return Effect.withFiber((fiber) => current(fiber).plan.cost === undefined ? unreserved : reserved)
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
    // The common case, an idempotent call on an inline flight, is built once: its flight is kept in the call.
    const inline = joinOptions.idempotent.flight === "inline"
      ? coalescer.inlineWith(inner, current, joinOptions.idempotent)
      : undefined
    return Effect.withFiber((fiber) => {
      const call = current(fiber)
      const key = call.plan.coalesceKey
      if (key === undefined) return inner
      if (call.idempotent) {
        return inline ?? Effect.map(coalescer.coalesce(key, inner, joinOptions.idempotent), valueOf)
      }
      return Effect.map(coalescer.coalesce(`${key}|once`, inner, joinOptions.notIdempotent), valueOf)
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

  return { coalesceAround, fallbackAround, markIfExceeded, quotaAround, retriedAround }
}
