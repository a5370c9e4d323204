/**
 * One timer for every timed phase of an exchange: the time to response headers, each gap between two body
 * chunks, bounded too by the time the call has left ({@link Deadline.CurrentDeadline}).
 *
 * **Details**
 *
 * - {@link watched} runs the exchange beside one watchdog fiber. The exchange says where it is through its
 *   {@link Watch}: {@link Watch.enter} a new phase (headers received: the body's idle timeout from now),
 *   {@link Watch.mark} progress within it (a chunk arrived: the idle time counts from now again). These are
 *   plain writes; the watchdog reads them when it wakes, so a chunk costs no timer, race or fiber.
 * - The watchdog sleeps until the current phase's end: its own timeout from its last progress, or the
 *   call's deadline when that is strictly earlier (`Deadline.boundOf`, the rule `Deadline.timeoutWithin`
 *   applies per phase), but never longer than the shortest phase timeout (`poll`), so a shorter phase
 *   entered meanwhile is not checked late. Waking to find that progress moved the end, it sleeps again;
 *   otherwise it fails the exchange with the phase's own error, or with `Deadline.expired` when the
 *   deadline bound it.
 * - Why not `Effect.timeoutOrElse` per phase (as `Deadline.timeoutWithin` does): each race forks two
 *   fibers and registers a timer, per phase and per body pull. One watchdog per exchange does the same
 *   bounding with one race. A call whose deadline has already passed fails without running.
 * - Time from the fiber's `Clock`, so `TestClock` drives it.
 *
 * @example
 * ```ts
 * const read = Watchdog.watched({ operation: "tts", first: headers, poll: 30_000 }, (watch) =>
 *   Effect.flatMap(send, (response) => {
 *     watch.enter(idle)
 *     return Stream.runForEachArray(response.stream, (chunks) => Effect.sync(() => watch.mark()))
 *   })
 * )
 * ```
 *
 * @internal
 */
import { Clock, Duration, Effect } from "effect"
import type { ElevenLabsError } from "../client/Errors.ts"
import * as Deadline from "./Deadline.ts"

/** A timed phase: how long it may go without progress (`Infinity`: unbounded), and its failure when it does. */
export interface Phase<E> {
  readonly millis: number
  readonly expired: () => E
}

/** Where an exchange is: its phase and the time of its last progress. Written by the exchange, read by its watchdog. */
export class Watch<E> {
  readonly clock: Clock.Clock
  phase: Phase<E>
  since: number
  constructor(clock: Clock.Clock, phase: Phase<E>, since: number) {
    this.clock = clock
    this.phase = phase
    this.since = since
  }
  /** Enters `phase`, its time counted from now. */
  enter(phase: Phase<E>): void {
    this.phase = phase
    this.since = this.clock.currentTimeMillisUnsafe()
  }
  /** Progress within the phase: its time counts from now again. */
  mark(): void {
    this.since = this.clock.currentTimeMillisUnsafe()
  }
}

/** Options of {@link watched}. */
export interface WatchedOptions<E> {
  /** Named by the deadline's `Timeout` when the deadline bound a phase. */
  readonly operation: string
  /** The phase the exchange starts in. */
  readonly first: Phase<E>
  /**
   * The longest the watchdog sleeps at once: the shortest finite timeout among the exchange's phases
   * (`Infinity` when none is finite). A phase entered while the watchdog sleeps is then seen before it can
   * end, even when it is shorter than the phase the watchdog was sleeping on (or that one was unbounded).
   */
  readonly poll: number
}

const sleepFor = <E>(watch: Watch<E>, millis: number, next: Effect.Effect<never, E | ElevenLabsError>) =>
  Effect.andThen(watch.clock.sleep(Duration.millis(millis)), next)

/** The watchdog of `watch`: fails when its phase ends without progress, else never ends. */
const watchdog = <E>(
  watch: Watch<E>,
  deadline: Deadline.CallDeadline | undefined,
  options: WatchedOptions<E>
): Effect.Effect<never, E | ElevenLabsError> => {
  const check: Effect.Effect<never, E | ElevenLabsError> = Effect.suspend(() => {
    const { phase, since } = watch
    const bound = Deadline.boundOf(phase.millis, deadline, since)
    const end = since + bound.millis
    const now = watch.clock.currentTimeMillisUnsafe()
    if (now < end) {
      // At least 1 ms: a zero timeout among the phases (the configuration allows it) must not make it spin.
      const millis = Math.min(end - now, Math.max(options.poll, 1))
      return Number.isFinite(millis) ? sleepFor(watch, millis, check) : Effect.never
    }
    return Effect.fail(
      bound.deadline === undefined ? phase.expired() : Deadline.expired(bound.deadline, options.operation)
    )
  })
  return check
}

/**
 * Runs `exchange` bounded by its phases (see the module's notes): one race with one watchdog fiber, or no
 * race at all when nothing can bound it (no finite timeout and no deadline).
 */
export const watched = <A, E, R, E2>(
  options: WatchedOptions<E2>,
  exchange: (watch: Watch<E2>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | E2 | ElevenLabsError, R> =>
  Effect.withFiber((fiber) => {
    const clock = fiber.getRef(Clock.Clock)
    const deadline = fiber.getRef(Deadline.CurrentDeadline)
    const now = clock.currentTimeMillisUnsafe()
    if (deadline !== undefined && deadline.at <= now) return Effect.fail(Deadline.expired(deadline, options.operation))
    const watch = new Watch(clock, options.first, now)
    const unbounded = deadline === undefined || !Number.isFinite(deadline.at)
    if (unbounded && !Number.isFinite(options.first.millis) && !Number.isFinite(options.poll)) return exchange(watch)
    return Effect.raceFirst(exchange(watch), watchdog(watch, unbounded ? undefined : deadline, options))
  })
