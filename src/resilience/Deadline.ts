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
 * - {@link bind} publishes the same deadline and races nothing: each phase
 *   bounds its own wait by the time left instead ({@link timeoutWithin} for a
 *   timed phase, {@link phaseBound} for a phase with its own timer such as the
 *   limiter's queue, {@link fits} for a pause, {@link enforce} for an opaque
 *   step), and fails with {@link expired} when the deadline is what bound it.
 *   A call that waits holds no fiber and no timer of its own for its deadline.
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
 *
 * // Without a race: the phases inside `call` bound themselves by the time left.
 * const bound = <A>(call: Effect.Effect<A, ElevenLabsError>) =>
 *   call.pipe(Deadline.bind("30 seconds", { operation: "textToSpeech.convert" }))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect } from "effect"
import { ElevenLabsError, isElevenLabsError, Timeout } from "../client/Errors.ts"

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
  /** The operation named by {@link expired} when no attempt failed before; set by {@link bind}. */
  readonly operation?: string | undefined
}

/** The deadline of the current call, or `undefined` outside {@link withDeadline} and {@link bind}. */
export const CurrentDeadline = Context.Reference<CallDeadline | undefined>(
  "elevenlabs-resilience/Deadline/CurrentDeadline",
  { defaultValue: () => undefined }
)

/** Options of {@link withDeadline}. */
export interface DeadlineOptions {
  /** Operation named in the `Timeout` reason when no attempt failed before expiry. Default `"call"`. */
  readonly operation?: string | undefined
}

/** Time left before `deadline` at `now`, in milliseconds (zero once passed). */
export const leftMillis = (deadline: CallDeadline, now: number): number => Math.max(0, deadline.at - now)

/** Time left before the current deadline (zero once passed), or `undefined` when there is none. */
export const remaining: Effect.Effect<Duration.Duration | undefined> = Effect.withFiber((fiber) => {
  const deadline = fiber.getRef(CurrentDeadline)
  return Effect.succeed(
    deadline === undefined
      ? undefined
      : Duration.millis(leftMillis(deadline, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()))
  )
})

/**
 * Whether a sleep of `delay` starting now would end strictly before the
 * current deadline (always true when there is none). The retry loop asks this
 * before every backoff sleep, so it never sleeps into a deadline it cannot
 * meet. Strictly: a sleep ending exactly at the deadline would leave the next
 * attempt no time at all.
 */
export const fits = (delay: Duration.Input): Effect.Effect<boolean> =>
  Effect.map(
    remaining,
    (left) => left === undefined || Duration.toMillis(Duration.fromInputUnsafe(delay)) < Duration.toMillis(left)
  )

/** Records a failure and the attempt count on the current deadline, for its expiry message. */
export const note = (error: ElevenLabsError, attempts: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    const deadline = yield* CurrentDeadline
    if (deadline !== undefined) {
      deadline.lastError = error
      deadline.attempts = Math.max(deadline.attempts, attempts)
    }
  })

/**
 * The `ElevenLabsError` a deadline fails with: reason `Timeout`, phase `"deadline"`, `after` the total.
 * Its `operation` is the last error's, else `operation`, else the deadline's own (see {@link bind}), else
 * `"call"`.
 */
export const expired = (deadline: CallDeadline, operation?: string | undefined): ElevenLabsError => {
  const last = deadline.lastError
  const seconds = Duration.toMillis(deadline.total) / 1000
  const message = last === undefined
    ? `call deadline of ${seconds}s passed`
    : `call deadline of ${seconds}s passed after ${deadline.attempts} attempt(s); last error: ${last.reason._tag}: ${last.reason.message}`
  return new ElevenLabsError({
    reason: new Timeout({
      operation: last?.reason.operation ?? operation ?? deadline.operation ?? "call",
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
export const withDeadline =
  (total: Duration.Input, options?: DeadlineOptions) =>
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

/** Whether `u` is a deadline expiry: an `ElevenLabsError` whose reason is `Timeout` with phase `"deadline"`. */
export const isExpiry = (u: unknown): u is ElevenLabsError =>
  isElevenLabsError(u) && u.reason._tag === "Timeout" && u.reason.phase === "deadline"

const invalidTotal = (name: string) =>
  Effect.die(new RangeError(`Deadline.${name}: total must be a finite duration >= 0`))

/**
 * Publishes a total deadline of `total`, starting now, through {@link CurrentDeadline}, and races nothing:
 * `self` runs as it is, and nothing fails when the time is up unless a phase inside bounds itself by the
 * time left. That is the contract: every wait inside must be bounded by {@link timeoutWithin},
 * {@link phaseBound}, {@link fits} or {@link enforce}, and fail with {@link expired} when the deadline is
 * what bound it. Compared with {@link withDeadline}, a call forks no fiber and holds no timer for its
 * deadline, and an expiry is a failure of the phase that was running (so that phase's own cleanup and
 * telemetry see it), not an interruption from outside.
 *
 * Nested deadlines never extend an outer one. Bad input (a negative or non-finite duration) dies with a
 * `RangeError`, as with {@link withDeadline}.
 */
export const bind = (total: Duration.Input, options?: DeadlineOptions) => {
  // Parsed once per `bind(...)`, not per run; unparseable input dies when run, as negative input does.
  const parsed = Duration.fromInput(total)
  const totalDuration = parsed._tag === "Some" ? parsed.value : Duration.zero
  const totalMillis = Duration.toMillis(totalDuration)
  const valid = parsed._tag === "Some" && totalMillis >= 0 && Number.isFinite(totalMillis)
  const operation = options?.operation
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiber((fiber) => {
      if (!valid) return invalidTotal("bind")
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const outer = fiber.getRef(CurrentDeadline)
      const at = outer === undefined ? now + totalMillis : Math.min(outer.at, now + totalMillis)
      const deadline: CallDeadline = { at, total: totalDuration, lastError: undefined, attempts: 0, operation }
      return Effect.provideService(self, CurrentDeadline, deadline)
    })
}

/** The bound of one phase: its own timeout or the time left before the call's deadline, whichever is shorter. */
export interface PhaseBound {
  /** How long the phase may last, in milliseconds (may be `Infinity`). */
  readonly millis: number
  /**
   * The call's deadline when it, not the phase's own timeout, is what bounds the phase (strictly shorter):
   * a phase that runs out should then fail with `expired(deadline, operation)`. `undefined` otherwise.
   */
  readonly deadline: CallDeadline | undefined
}

/** {@link PhaseBound} of a phase whose own timeout is `ownMillis`, at `now` (pure). */
export const boundOf = (ownMillis: number, deadline: CallDeadline | undefined, now: number): PhaseBound => {
  if (deadline === undefined) return { millis: ownMillis, deadline: undefined }
  const left = leftMillis(deadline, now)
  return left < ownMillis ? { millis: left, deadline } : { millis: ownMillis, deadline: undefined }
}

/**
 * The bound of a phase whose own timeout is `own` (`undefined`: none), read from the current deadline and
 * clock. For a phase with its own timer: the limiter's queue takes `millis` as its timeout and, when it
 * times out with `deadline` set, the call fails with `expired(deadline, operation)` rather than the
 * phase's own error.
 */
export const phaseBound = (own?: Duration.Input | undefined): Effect.Effect<PhaseBound> =>
  Effect.withFiber((fiber) =>
    Effect.succeed(boundOf(
      own === undefined ? Number.POSITIVE_INFINITY : Duration.toMillis(Duration.fromInputUnsafe(own)),
      fiber.getRef(CurrentDeadline),
      fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
    ))
  )

/** Options of {@link timeoutWithin}. */
export interface TimeoutWithinOptions<A2, E2, R2> {
  /** The phase's own timeout. */
  readonly duration: Duration.Input
  /** What the phase's own timeout gives (as in `Effect.timeoutOrElse`). */
  readonly orElse: () => Effect.Effect<A2, E2, R2>
  /** Named by the deadline's `Timeout` when the deadline bound the phase. */
  readonly operation: string
}

/**
 * `Effect.timeoutOrElse`, bounded by the time the call has left too: `self` gets
 * `min(duration, time left)`. When the own timeout is the shorter (or there is no deadline), expiry runs
 * `orElse`, as `Effect.timeoutOrElse` does; when the deadline is strictly shorter, expiry fails with
 * {@link expired}; when the deadline has already passed, `self` does not run at all. The bound is read
 * each time the effect runs, so an effect built once and run per pull (a body read) is bounded per run.
 */
export const timeoutWithin = <A2, E2, R2>(options: TimeoutWithinOptions<A2, E2, R2>) => {
  const ownMillis = Duration.toMillis(Duration.fromInputUnsafe(options.duration))
  const own = { duration: options.duration, orElse: options.orElse }
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A | A2, E | E2 | ElevenLabsError, R | R2> =>
    Effect.withFiber<A | A2, E | E2 | ElevenLabsError, R | R2>((fiber) => {
      const deadline = fiber.getRef(CurrentDeadline)
      if (deadline === undefined) return Effect.timeoutOrElse(self, own)
      const bound = boundOf(ownMillis, deadline, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
      if (bound.deadline === undefined) return Effect.timeoutOrElse(self, own)
      if (bound.millis <= 0) return Effect.fail(expired(deadline, options.operation))
      return Effect.timeoutOrElse(self, {
        duration: Duration.millis(bound.millis),
        orElse: () => Effect.fail(expired(deadline, options.operation))
      })
    })
}

/**
 * Bounds `self` by the time the call has left, and by nothing else: a race only when there is a deadline
 * (none at all without one), failing with {@link expired}. For a step that cannot bound its own waits
 * (an SDK promise), run while it holds a permit so that only calls in flight race.
 */
export const enforce =
  (options: { readonly operation: string }) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | ElevenLabsError, R> =>
    Effect.withFiber<A, E | ElevenLabsError, R>((fiber) => {
      const deadline = fiber.getRef(CurrentDeadline)
      if (deadline === undefined) return self
      const left = leftMillis(deadline, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
      if (!Number.isFinite(left)) return self
      if (left <= 0) return Effect.fail(expired(deadline, options.operation))
      return Effect.timeoutOrElse(self, {
        duration: Duration.millis(left),
        orElse: () => Effect.fail(expired(deadline, options.operation))
      })
    })
