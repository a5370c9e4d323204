/**
 * The total deadline of one logical call: queueing, attempts and backoff
 * sleeps included (docs/design.md section 4, step 4).
 *
 * **Details**
 *
 * - {@link withDeadline} bounds an effect and publishes the deadline through
 *   the {@link CurrentDeadline} reference, so inner policies (the retry loop,
 *   the limiter's queue) can see how much time is left.
 * - On expiry the effect is interrupted (which releases its permit and queue
 *   place) and the call fails with `ElevenLabsError` whose reason is `Timeout`
 *   with `phase: "deadline"`. Its message names the last error the retry loop
 *   saw, its `operation` is that error's, and `attempts` is carried over.
 * - Nested deadlines never extend an outer one: the inner deadline is the
 *   earlier of the two.
 * - Time comes from `Clock`, so `TestClock` drives it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Deadline } from "elevenlabs-resilience/resilience"
 *
 * const bounded = <A>(call: Effect.Effect<A, ElevenLabsError>) =>
 *   call.pipe(Deadline.withDeadline("30 seconds", { operation: "textToSpeech.convert" }))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect } from "effect"
import { ElevenLabsError, Timeout } from "../client/Errors.ts"

/**
 * The deadline of the current call. `lastError` and `attempts` are written by
 * the retry loop so that a deadline expiry can say what was going on.
 */
export interface CallDeadline {
  /** Epoch milliseconds (from `Clock`) at which the call must be over. */
  readonly at: number
  /** The total bound the caller asked for. */
  readonly total: Duration.Duration
  /** The last failure seen inside the call, if any. */
  lastError: ElevenLabsError | undefined
  /** Attempts started inside the call so far. */
  attempts: number
}

/** The deadline of the current call, or `undefined` outside {@link withDeadline}. */
export const CurrentDeadline = Context.Reference<CallDeadline | undefined>(
  "elevenlabs-resilience/Deadline/CurrentDeadline",
  { defaultValue: () => undefined }
)

/** Options of {@link withDeadline}. */
export interface DeadlineOptions {
  /** Operation named in the `Timeout` reason when no attempt failed before expiry. Default `"call"`. */
  readonly operation?: string | undefined
}

/** Time left before the current deadline (zero once passed), or `undefined` when there is none. */
export const remaining: Effect.Effect<Duration.Duration | undefined> = Effect.gen(function*() {
  const deadline = yield* CurrentDeadline
  if (deadline === undefined) return undefined
  const now = yield* Clock.currentTimeMillis
  return Duration.millis(Math.max(0, deadline.at - now))
})

/**
 * Whether a sleep of `delay` starting now would end strictly before the
 * current deadline (always true when there is none). The retry loop asks this
 * before every backoff sleep, so it never sleeps into a deadline it cannot
 * meet. Strictly: a sleep ending exactly at the deadline would leave the next
 * attempt no time at all.
 */
export const fits = (delay: Duration.Input): Effect.Effect<boolean> =>
  Effect.map(remaining, (left) =>
    left === undefined || Duration.toMillis(Duration.fromInputUnsafe(delay)) < Duration.toMillis(left))

/** Records a failure and the attempt count on the current deadline, for its expiry message. */
export const note = (error: ElevenLabsError, attempts: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    const deadline = yield* CurrentDeadline
    if (deadline !== undefined) {
      deadline.lastError = error
      deadline.attempts = Math.max(deadline.attempts, attempts)
    }
  })

/** The `ElevenLabsError` a deadline fails with: reason `Timeout`, phase `"deadline"`. */
export const expired = (deadline: CallDeadline, operation: string): ElevenLabsError => {
  const last = deadline.lastError
  const seconds = Duration.toMillis(deadline.total) / 1000
  const message = last === undefined
    ? `call deadline of ${seconds}s passed`
    : `call deadline of ${seconds}s passed after ${deadline.attempts} attempt(s); last error: ${last.reason._tag}: ${last.reason.message}`
  return new ElevenLabsError({
    reason: new Timeout({
      operation: last?.reason.operation ?? operation,
      message,
      phase: "deadline",
      after: deadline.total,
      ...(last?.reason.status === undefined ? {} : { status: last.reason.status }),
      ...(last?.reason.traceId === undefined ? {} : { traceId: last.reason.traceId })
    }),
    ...(deadline.attempts > 0 ? { attempts: deadline.attempts } : {})
  })
}

/**
 * Bounds `self` by a total deadline of `total`, starting now. On expiry `self`
 * is interrupted and the call fails with a `Timeout` reason, phase `"deadline"`.
 *
 * Bad input (a negative or non-finite duration) dies with a `RangeError`,
 * since it is a programming error rather than a call failure.
 */
export const withDeadline = (total: Duration.Input, options?: DeadlineOptions) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | ElevenLabsError, R> =>
  Effect.gen(function*() {
    const totalDuration = Duration.fromInputUnsafe(total)
    const totalMillis = Duration.toMillis(totalDuration)
    if (!(totalMillis >= 0) || !Number.isFinite(totalMillis)) {
      return yield* Effect.die(new RangeError(`Deadline.withDeadline: total must be a finite duration >= 0`))
    }
    const now = yield* Clock.currentTimeMillis
    const outer = yield* CurrentDeadline
    const at = outer === undefined ? now + totalMillis : Math.min(outer.at, now + totalMillis)
    const deadline: CallDeadline = { at, total: totalDuration, lastError: undefined, attempts: 0 }
    const operation = options?.operation ?? "call"
    return yield* self.pipe(
      Effect.provideService(CurrentDeadline, deadline),
      Effect.timeoutOrElse({
        duration: Duration.millis(at - now),
        orElse: () => Effect.fail(expired(deadline, operation))
      })
    )
  })
