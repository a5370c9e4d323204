/**
 * Retries per error class (docs/design.md section 4): one `Schedule` per retry
 * class, picked from the `ElevenLabsError`'s reason, under a per-client retry
 * budget and the call's deadline.
 *
 * **Details**
 *
 * - Classes come from `retryClassOf` in `client/Errors.ts` (the one place the
 *   error table lives): `requeue` (ConcurrencyLimited), `exponential`
 *   (SystemBusy, RateLimited, ServerError), `linear` (Transport, Timeout),
 *   `never` (everything else).
 * - Each class's schedule is a value, `Schedule<Duration, ElevenLabsError>`:
 *   its input is the error, its output the delay. The three built-ins are
 *   {@link requeue}, {@link exponential} and {@link linear}; any of them can be
 *   replaced through {@link RetryOptions.schedules}.
 * - Counters are **per class**: each class's schedule counts its own retries,
 *   so a call that was requeued 3 times and then meets `system_busy` starts its
 *   exponential backoff at the base delay, and the caps add up. A shared cap
 *   on all attempts is {@link RetryOptions.maxAttempts}.
 * - Before every backoff sleep the loop (1) asks the class's schedule for the
 *   delay (its end means the class's retries are spent), (2) checks that the
 *   sleep ends before the call's deadline (`Deadline.CurrentDeadline`) and
 *   otherwise fails at once with the last error, (3) asks the retry budget,
 *   and otherwise fails with the last error marked `budgetExhausted: true`,
 *   (4) publishes a {@link RetryEvent}.
 * - The backoff sleep happens here, outside the limiter (the request path
 *   puts retry outside breaker and limiter), so a sleeping call holds no
 *   concurrency permit. For `requeue` the composition re-enters the limiter
 *   after the pause, which puts the attempt back in its lane's queue.
 * - A `Timeout` with phase `"deadline"` is never retried (the call's time is up).
 * - The final `ElevenLabsError` carries `attempts` (attempts made, first
 *   included). Errors other than `ElevenLabsError`, defects and interruption
 *   pass through untouched and are never retried.
 * - All randomness is from `Random`, all time from `Clock`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Jitter, RetryPolicy } from "elevenlabs-resilience/resilience"
 *
 * const retried = call.pipe(
 *   RetryPolicy.retry({ exponential: { jitter: Jitter.equal }, budget, onRetry: (e) => Effect.logInfo("retry", e) })
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Duration, Effect, Fiber, PubSub, Result, Schedule } from "effect"
import {
  ElevenLabsError,
  type ElevenLabsErrorReason,
  isElevenLabsError,
  type ReasonTag,
  type RetryClass,
  retryClassOf
} from "../client/Errors.ts"
import * as Mask from "../internal/Mask.ts"
import * as Deadline from "./Deadline.ts"
import * as Jitter from "./Jitter.ts"
import type { RetryBudget } from "./RetryBudget.ts"

// ============================================================================
// Schedules
// ============================================================================

/** A retry schedule: input the error that failed the attempt, output the delay before the next one. */
export type RetrySchedule = Schedule.Schedule<Duration.Duration, ElevenLabsError>

/** Options of {@link requeue}. */
export interface RequeueOptions {
  /** Pause per requeue: the n-th requeue waits `n × step`. Default 50 ms (the rate-limits guide's). */
  readonly step?: Duration.Input | undefined
  /** Longest pause. Default 1 second. */
  readonly maxDelay?: Duration.Input | undefined
  /** Requeues allowed per call. Default 20 (the deadline is the real bound). */
  readonly maxRetries?: number | undefined
}

/** Options of {@link exponential}. */
export interface ExponentialOptions {
  /** First delay. Default 1 second. */
  readonly base?: Duration.Input | undefined
  /** Growth per retry. Default 2. */
  readonly factor?: number | undefined
  /** Longest backoff before jitter is applied (and the cap of decorrelated, proportional and additive). Default 32 seconds. */
  readonly cap?: Duration.Input | undefined
  /** Retries allowed per call. Default 5. */
  readonly maxRetries?: number | undefined
  /** Jitter kind. Default full jitter (`Jitter.full`). */
  readonly jitter?: Jitter.Jitter | undefined
  /** Largest `Retry-After` honoured as a floor; longer hints are clamped to it. Default 60 seconds. */
  readonly retryAfterMax?: Duration.Input | undefined
  /** Whether a `Retry-After` hint is a floor on the delay. Default true. */
  readonly honorRetryAfter?: boolean | undefined
}

/** Options of {@link linear}. */
export interface LinearOptions {
  /** The n-th retry waits `n × step`. Default 1 second. */
  readonly step?: Duration.Input | undefined
  /** Longest delay. Default 10 seconds. */
  readonly maxDelay?: Duration.Input | undefined
  /** Retries allowed per call. Default 3. */
  readonly maxRetries?: number | undefined
}

const millisOf = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

const checkRetries = (name: string, n: number): number => {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`RetryPolicy.${name}: maxRetries must be an integer >= 0, got ${n}`)
  }
  return n
}

/** The `Retry-After` hint of a reason, in milliseconds, when it has one. */
export const retryAfterOf = (reason: ElevenLabsErrorReason): number | undefined =>
  "retryAfter" in reason && reason.retryAfter !== undefined ? Duration.toMillis(reason.retryAfter) : undefined

/**
 * The `requeue` schedule (ConcurrencyLimited): the n-th requeue waits
 * `min(maxDelay, n × step)`. Never exponential, no jitter: the limiter's queue
 * does the spacing, the pause only lets a permit come free.
 */
export const requeue = (options?: RequeueOptions): RetrySchedule => {
  const step = millisOf(options?.step ?? "50 millis")
  const maxDelay = millisOf(options?.maxDelay ?? "1 second")
  const maxRetries = checkRetries("requeue", options?.maxRetries ?? 20)
  return Schedule.fromStepWithMetadata(Effect.succeed((meta: Schedule.InputMetadata<ElevenLabsError>) => {
    if (meta.attempt > maxRetries) return Cause.done(Duration.zero)
    const delay = Duration.millis(Math.min(maxDelay, step * meta.attempt))
    return Effect.succeed([delay, delay] as [Duration.Duration, Duration.Duration])
  }))
}

/**
 * The `exponential` schedule (SystemBusy, RateLimited, ServerError): the n-th
 * retry waits the jittered `min(cap, base × factor^(n−1))` (see `Jitter`),
 * then, when the reason carries `Retry-After`, at least
 * `min(retryAfter, retryAfterMax)`.
 */
export const exponential = (options?: ExponentialOptions): RetrySchedule => {
  const base = millisOf(options?.base ?? "1 second")
  const factor = options?.factor ?? 2
  const cap = millisOf(options?.cap ?? "32 seconds")
  const maxRetries = checkRetries("exponential", options?.maxRetries ?? 5)
  const jitter = options?.jitter ?? Jitter.full
  const retryAfterMax = millisOf(options?.retryAfterMax ?? "60 seconds")
  const honor = options?.honorRetryAfter ?? true
  if (!(factor >= 1)) throw new RangeError(`RetryPolicy.exponential: factor must be >= 1, got ${factor}`)
  if (!(base >= 0 && cap >= 0)) throw new RangeError(`RetryPolicy.exponential: base and cap must be >= 0`)
  // The state (previous delay, for decorrelated jitter) is created per run of the schedule.
  return Schedule.fromStepWithMetadata(Effect.sync(() => {
    let previous = base
    return (meta: Schedule.InputMetadata<ElevenLabsError>) => {
      if (meta.attempt > maxRetries) return Cause.done(Duration.zero)
      return Effect.map(
        Jitter.apply(jitter, { base, factor, cap, attempt: meta.attempt, previous }),
        (jittered) => {
          previous = jittered
          const hint = honor ? retryAfterOf(meta.input.reason) : undefined
          const millis = hint === undefined ? jittered : Math.max(jittered, Math.min(hint, retryAfterMax))
          const delay = Duration.millis(millis)
          return [delay, delay] as [Duration.Duration, Duration.Duration]
        }
      )
    }
  }))
}

/** The `linear` schedule (Transport, Timeout): the n-th retry waits `min(maxDelay, n × step)`. */
export const linear = (options?: LinearOptions): RetrySchedule => {
  const step = millisOf(options?.step ?? "1 second")
  const maxDelay = millisOf(options?.maxDelay ?? "10 seconds")
  const maxRetries = checkRetries("linear", options?.maxRetries ?? 3)
  return Schedule.fromStepWithMetadata(Effect.succeed((meta: Schedule.InputMetadata<ElevenLabsError>) => {
    if (meta.attempt > maxRetries) return Cause.done(Duration.zero)
    const delay = Duration.millis(Math.min(maxDelay, step * meta.attempt))
    return Effect.succeed([delay, delay] as [Duration.Duration, Duration.Duration])
  }))
}

/** The `never` schedule: ends at once. */
export const never: RetrySchedule = Schedule.fromStep(
  Effect.succeed((_now: number, _input: ElevenLabsError) => Cause.done(Duration.zero))
)

// ============================================================================
// Idempotency
// ============================================================================

/**
 * Whether retrying after this reason could duplicate billed work: the request
 * reached the server and may have been generated (and charged) even though we
 * saw no answer. ElevenLabs bills generations that time out client-side
 * (docs/api-facts.md section 7), and a connection cut mid-body is a
 * `Transport` after the work was done. So: `Timeout` (any phase) and
 * `Transport`. The 429s and 5xx are answers that say no work was done.
 */
export const mayDuplicateWork = (reason: ElevenLabsErrorReason): boolean =>
  reason._tag === "Timeout" || reason._tag === "Transport"

// ============================================================================
// Events
// ============================================================================

/** Published before every backoff sleep. */
export interface RetryEvent {
  /** The retry's attempt number (the first attempt is 1, so the first retry is 2). */
  readonly attempt: number
  /** The retry's number within its class (1 for the class's first retry). */
  readonly classAttempt: number
  /** The pause before the attempt. */
  readonly delay: Duration.Duration
  /** The reason that failed the previous attempt. */
  readonly reason: ReasonTag
  readonly retryClass: RetryClass
  readonly operation: string
  /** Clock time at which the sleep starts, epoch milliseconds. */
  readonly at: number
}

// ============================================================================
// The current attempt
// ============================================================================

/**
 * What an attempt knows about itself, provided by {@link retry} to each run of
 * the retried effect: its number and, for a retry, what failed the previous
 * attempt. The composition reads it to put a retried attempt at the front of
 * its lane and to annotate spans (`retry.attempt`, `retry.class`).
 */
export interface AttemptInfo {
  /** 1 for the first attempt. */
  readonly attempt: number
  /** The failure that led to this retry, absent on the first attempt. */
  readonly previous?: { readonly reason: ReasonTag; readonly retryClass: RetryClass } | undefined
}

/** The current attempt, `{ attempt: 1 }` outside {@link retry}. */
export const CurrentAttempt = Context.Reference<AttemptInfo>("elevenlabs-resilience/RetryPolicy/CurrentAttempt", {
  defaultValue: () => ({ attempt: 1 })
})

// ============================================================================
// The policy
// ============================================================================

/** Options of {@link retry}; every field has a default. */
export interface RetryOptions {
  /** Options of the `requeue` class's schedule. */
  readonly requeue?: RequeueOptions | undefined
  /** Options of the `exponential` class's schedule. */
  readonly exponential?: ExponentialOptions | undefined
  /** Options of the `linear` class's schedule. */
  readonly linear?: LinearOptions | undefined
  /** Replaces a class's schedule (wins over the options above). `never` cannot be replaced. */
  readonly schedules?: Partial<Record<"requeue" | "exponential" | "linear", RetrySchedule>> | undefined
  /** Cap on all attempts of the call, first included, across classes. Default: no shared cap. */
  readonly maxAttempts?: number | undefined
  /**
   * Whether the call may be repeated safely. When `false`, reasons for which
   * {@link mayDuplicateWork} holds (`Timeout`, `Transport`) are not retried.
   * Default `true`.
   */
  readonly idempotent?: boolean | undefined
  /** The client's retry budget. Default: none (only the schedules bound retries). */
  readonly budget?: RetryBudget | undefined
  /** Called before every backoff sleep. */
  readonly onRetry?: ((event: RetryEvent) => Effect.Effect<void>) | undefined
  /** Every event is also published here (subscribe with `Stream.fromPubSub`). */
  readonly events?: PubSub.PubSub<RetryEvent> | undefined
}

const scheduleFor = (options: RetryOptions | undefined, retryClass: RetryClass): RetrySchedule => {
  switch (retryClass) {
    case "requeue":
      return options?.schedules?.requeue ?? requeue(options?.requeue)
    case "exponential":
      return options?.schedules?.exponential ?? exponential(options?.exponential)
    case "linear":
      return options?.schedules?.linear ?? linear(options?.linear)
    case "never":
      return never
  }
}

const firstAttempt: AttemptInfo = { attempt: 1 }

type Step = (now: number, input: ElevenLabsError) => Effect.Effect<[Duration.Duration, Duration.Duration], unknown>

/**
 * Retries `self` by the class of each `ElevenLabsError` it fails with; see the
 * module documentation for the order of checks.
 *
 * @example
 * ```ts
 * const audio = yield* tts(request).pipe(RetryPolicy.retry({ budget, idempotent: false }))
 * ```
 */
export const retry = (options?: RetryOptions) => {
  // Build the schedules once per policy (they are values; their state lives in each run).
  const schedules = {
    requeue: scheduleFor(options, "requeue"),
    exponential: scheduleFor(options, "exponential"),
    linear: scheduleFor(options, "linear"),
    never
  } satisfies Record<RetryClass, RetrySchedule>
  const idempotent = options?.idempotent ?? true
  const maxAttempts = options?.maxAttempts
  if (maxAttempts !== undefined && (!Number.isInteger(maxAttempts) || maxAttempts < 1)) {
    throw new RangeError(`RetryPolicy.retry: maxAttempts must be an integer >= 1, got ${maxAttempts}`)
  }
  const budget = options?.budget

  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    // The first attempt runs outside the loop and its state: most calls succeed at once, and
    // their cost is one provide and one catch. Only a failed `ElevenLabsError` enters the loop.
    // The first attempt's `CurrentAttempt` is the default one unless an outer retry set another: only then is
    // it provided (an overlay per call otherwise, held for as long as the attempt waits).
    const first = Effect.withFiber<A, E, R>((fiber) => {
      const outer = fiber.getRef(CurrentAttempt)
      return outer.attempt === 1 && outer.previous === undefined
        ? self
        : Effect.provideService(self, CurrentAttempt, firstAttempt)
    })
    const retried = Effect.catch(
      first,
      (failure) => isElevenLabsError(failure) ? retryAfter(self, failure as ElevenLabsError) : Effect.fail(failure)
    )
    // The call counts as a request of the budget while it runs and for one window after it ends.
    if (budget === undefined) return retried
    const { requestUnsafe, settleUnsafe } = budget
    if (requestUnsafe === undefined || settleUnsafe === undefined) {
      return Effect.uninterruptibleMask((restore) =>
        Effect.andThen(budget.request, Effect.ensuring(restore(retried), budget.settle))
      )
    }
    // Counted and settled without an effect each: under the mask, with the fiber's clock. Both steps are
    // built once (the settling reads the clock when it runs), so a call holds no closure of its own for them.
    const settleOnExit = (): undefined => {
      settleUnsafe(Fiber.getCurrent()!.getRef(Clock.Clock).currentTimeMillisUnsafe())
      return undefined
    }
    const requested = (body: Effect.Effect<A, E, R>) =>
      Effect.withFiber<A, E, R>(() => {
        requestUnsafe()
        return body
      })
    // Counted in one step under the mask, settled by an exit frame the next step pushes.
    return Mask.builtOnce((restore) => requested(Effect.onExitPrimitive(restore(retried), settleOnExit)))
  }

  /** The retries of a call whose first attempt failed with `firstError`. */
  function retryAfter<A, E, R>(self: Effect.Effect<A, E, R>, firstError: ElevenLabsError): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      // A granted retry stays in flight until its attempt ends, however it ends
      // (interruption included): the flag is set atomically with the grant and
      // cleared (with a release) when the attempt is over.
      let holdsRetry = false
      const releaseHeld = Effect.suspend(() => {
        if (!holdsRetry || budget === undefined) return Effect.void
        holdsRetry = false
        return budget.release
      })
      return Effect.ensuring(
        loop(self, firstError, (held) => {
          holdsRetry = held
        }, releaseHeld),
        releaseHeld
      )
    })
  }

  function loop<A, E, R>(
    self: Effect.Effect<A, E, R>,
    firstError: ElevenLabsError,
    setHeld: (held: boolean) => void,
    releaseHeld: Effect.Effect<void>
  ): Effect.Effect<A, E, R> {
    return Effect.gen(function*() {
      const steps = new Map<RetryClass, { readonly step: Step; count: number }>()
      const stepOf = Effect.fnUntraced(function*(retryClass: RetryClass) {
        const existing = steps.get(retryClass)
        if (existing !== undefined) return existing
        const created = { step: (yield* Schedule.toStep(schedules[retryClass])) as Step, count: 0 }
        steps.set(retryClass, created)
        return created
      })

      let attempts = 1
      let error = firstError

      // The final error: the last one, with the attempt count (and the budget mark).
      const finish = (error: ElevenLabsError, budgetExhausted: boolean) =>
        Effect.fail(
          new ElevenLabsError({
            reason: error.reason,
            attempts,
            ...(budgetExhausted || error.budgetExhausted === true ? { budgetExhausted: true } : {})
          }) as unknown as E
        )

      while (true) {
        yield* Deadline.note(error, attempts)

        // A deadline's Timeout is final: the call's time is up, whatever the table says about timeouts.
        const isDeadline = error.reason._tag === "Timeout" && error.reason.phase === "deadline"
        const retryClass = isDeadline ? "never" : retryClassOf(error.reason)
        if (retryClass === "never" || (!idempotent && mayDuplicateWork(error.reason))) {
          return yield* finish(error, false)
        }
        if (maxAttempts !== undefined && attempts >= maxAttempts) return yield* finish(error, false)

        const state = yield* stepOf(retryClass)
        const now = yield* Clock.currentTimeMillis
        const next = yield* Effect.result(state.step(now, error))
        // The schedule ended (its `Done`): the class's retries are spent.
        if (Result.isFailure(next)) return yield* finish(error, false)
        state.count++
        const nextDelay = next.success[1]

        // Never start a sleep that would end past the call's deadline.
        if (!(yield* Deadline.fits(nextDelay))) return yield* finish(error, false)

        // Requeues after `too_many_concurrent_requests` do not spend the budget: the
        // limiter's AIMD is what bounds them (they multiply no server work).
        if (budget !== undefined && retryClass !== "requeue") {
          const granted = yield* Effect.uninterruptible(Effect.map(budget.acquire, (ok) => {
            if (ok) setHeld(true)
            return ok
          }))
          if (!granted) return yield* finish(error, true)
        }

        const event: RetryEvent = {
          attempt: attempts + 1,
          classAttempt: state.count,
          delay: nextDelay,
          reason: error.reason._tag,
          retryClass,
          operation: error.reason.operation,
          at: now
        }
        if (options?.onRetry !== undefined) yield* options.onRetry(event)
        if (options?.events !== undefined) yield* PubSub.publish(options.events, event)

        attempts++
        const info: AttemptInfo = { attempt: attempts, previous: { reason: error.reason._tag, retryClass } }
        const result = yield* Effect.result(
          Effect.andThen(Effect.sleep(nextDelay), Effect.provideService(self, CurrentAttempt, info))
        )
        yield* releaseHeld
        if (Result.isSuccess(result)) return result.success
        if (!isElevenLabsError(result.failure)) return yield* Effect.fail(result.failure)
        error = result.failure as ElevenLabsError
      }
    })
  }
}
