/**
 * What keeps a Node process alive for a Promise-facing runtime (`ResilientFetch`,
 * `WithResilience.makeResilientRunner`): the callers' work, not the policies'
 * background fibers.
 *
 * A pending promise does not keep Node running; a timer or a socket does. The
 * policies sleep in the background (the quota guard's refresh every minute,
 * the limiter's queue timer, the breaker gauge's half-open wait), so with the
 * default clock a process that made one call would never exit unless it
 * closed the runtime. With {@link unrefClock} no sleep keeps the process
 * alive; {@link make}'s counter holds one ref'd handle while at least one call
 * is under way (its own sleeps included: a backoff pause, a queue wait), and
 * drops it when the last one ends.
 *
 * @internal
 */
import { Clock, Duration, Effect } from "effect"

const MAX_TIMER_MILLIS = 2 ** 31 - 1

const sleepMillis = (millis: number): Effect.Effect<void> => {
  if (millis <= 0) return Effect.yieldNow
  if (!Number.isFinite(millis)) return Effect.never
  return Effect.callback<void>((resume) => {
    const rest = millis > MAX_TIMER_MILLIS ? sleepMillis(millis - MAX_TIMER_MILLIS) : Effect.void
    const handle = setTimeout(() => resume(rest), Math.min(millis, MAX_TIMER_MILLIS))
    // Unref'd: a sleep alone never holds the process (see the module doc).
    handle.unref?.()
    return Effect.sync(() => clearTimeout(handle))
  })
}

/** The default clock, whose sleeps do not keep the process alive. */
export const unrefClock: Clock.Clock = (() => {
  const base = Clock.Clock.defaultValue()
  return {
    currentTimeMillisUnsafe: () => base.currentTimeMillisUnsafe(),
    currentTimeMillis: base.currentTimeMillis,
    currentTimeNanosUnsafe: () => base.currentTimeNanosUnsafe(),
    currentTimeNanos: base.currentTimeNanos,
    monotonicTimeNanosUnsafe: () => base.monotonicTimeNanosUnsafe(),
    monotonicTimeNanos: base.monotonicTimeNanos,
    sleep: (duration) => sleepMillis(Duration.toMillis(duration))
  } satisfies Clock.Clock
})()

/** Counts the calls under way; holds the process alive while there is one. */
export interface Liveness {
  readonly enter: () => void
  readonly leave: () => void
  readonly active: () => number
}

export const make = (): Liveness => {
  let active = 0
  let handle: ReturnType<typeof setInterval> | undefined
  return {
    enter: () => {
      if (active++ === 0) handle = setInterval(() => {}, MAX_TIMER_MILLIS)
    },
    leave: () => {
      if (active === 0) return
      if (--active === 0) {
        clearInterval(handle)
        handle = undefined
      }
    },
    active: () => active
  }
}
