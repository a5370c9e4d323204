/**
 * The breaker's `execute` on a store whose `admit` uses no scope (the memory
 * store of `Breaker.layerStoreMemory`): the steps of Effect's
 * `CircuitBreaker.execute` on the same store (admit, run, classify, the
 * outcome's open duration, record, transitions), with the start-order rule
 * folded in, but no `scopedWith` and one exit frame per attempt. What a
 * waiting attempt holds is the mask, that frame and its admission.
 *
 * **Details**
 *
 * - The settings are read from `live.settings` when they are needed (the
 *   start-order rule at admission, the trip policy and open duration at
 *   record), so `Breaker.reconfigure` applies to every circuit from the next
 *   admission or record on, through per-key closures built once.
 * - A memory store never fails, so `onStoreError` has nothing to decide; a
 *   failing `record` is reported and swallowed as Effect's breaker does.
 *
 * @since 0.1.0
 */
import { Cause, Duration, Effect, Exit, Fiber, References } from "effect"
import { CircuitBreaker } from "effect/persistence"
import * as Mask from "../internal/Mask.ts"
import type { BreakerError, BreakerSettings } from "./Breaker.ts"

/** An attempt's record for `executeWith`: its admission while it runs, and its start number (-1: untracked). */
export interface Slot {
  admission: CircuitBreaker.Admission | undefined
  started: number
}

/** Whether an attempt numbered below `n` is still running. */
export const startedBefore = (started: ReadonlySet<number>, n: number): boolean => {
  for (const s of started) if (s < n) return true
  return false
}

/** Per circuit key: the start number of every admitted attempt still running (for the start-order rule). */
export type Running = Map<string, { next: number; readonly started: Set<number> }>

/** The running attempts of `key`, made on first use. */
export const trackedOf = (running: Running, key: string) => {
  let attempts = running.get(key)
  if (attempts === undefined) running.set(key, attempts = { next: 0, started: new Set() })
  return attempts
}

const reportRecordFailure = (cause: Cause.Cause<unknown>) =>
  Effect.withFiber((fiber) => {
    const level = fiber.getRef(References.UnhandledLogLevel)
    return level === undefined
      ? Effect.void
      : Effect.logWithLevel(level)("CircuitBreaker failed to record an outcome", cause)
  })

/** Whether recording `outcome` may open the circuit, and so needs the open duration (none for most calls). */
const mayOpen = (
  outcome: CircuitBreaker.Outcome,
  admission: CircuitBreaker.Admission,
  tripPolicy: CircuitBreaker.TripPolicy
): boolean =>
  !(outcome._tag === "Ignored" ||
    (outcome._tag === "Success" && (admission.probe || tripPolicy._tag === "Consecutive")))

/** The open duration of the opening `outcome` may cause, with its `Retry-After` hint capped. */
const openFor = (
  settings: BreakerSettings,
  outcome: CircuitBreaker.Outcome,
  admission: CircuitBreaker.Admission
): Effect.Effect<Duration.Duration> =>
  Effect.map(
    settings.openDurationFor(admission.consecutiveOpenings + 1),
    (delay) =>
      outcome._tag === "Failure" && outcome.retryAfter !== undefined
        ? Duration.max(delay, Duration.min(outcome.retryAfter, settings.maxOpenDuration))
        : delay
  )

/** Builds the fast `execute` per circuit key (one closure set per key, built on its first call). */
export const make = (options: {
  readonly store: CircuitBreaker.CircuitBreakerStore["Service"]
  /** The current settings: read, never kept. */
  readonly live: { readonly settings: BreakerSettings }
  readonly publish: (transition: CircuitBreaker.Transition | undefined) => Effect.Effect<unknown>
  readonly classify: (exit: Exit.Exit<unknown, unknown>) => CircuitBreaker.Outcome
  readonly toBreakerError: (
    key: string,
    halfOpenRetryAfter: Duration.Duration,
    error: CircuitBreaker.CircuitBreakerError
  ) => BreakerError
}) => {
  const { classify, live, publish, store, toBreakerError } = options
  const running: Running = new Map()

  /** The per-key part, built once per key. */
  const forKey = (key: string) => {
    // A memory store's admit reads no scope (see `Breaker.layerStoreMemory`): no scope overlay per attempt.
    const admit = Effect.mapError(
      store.admit(key) as Effect.Effect<CircuitBreaker.Admission, CircuitBreaker.CircuitBreakerError>,
      (error) => toBreakerError(key, live.settings.halfOpenRetryAfter, error)
    )
    const tracked = trackedOf(running, key)
    const state = store.state(key).pipe(Effect.orElseSucceed(() => undefined))
    const record = (outcome: CircuitBreaker.Outcome, admission: CircuitBreaker.Admission): Effect.Effect<void> => {
      const settings = live.settings
      const { tripPolicy } = settings
      // A success of a closed consecutive circuit (most calls) opens nothing: no duration to compute first.
      return (mayOpen(outcome, admission, tripPolicy)
        ? Effect.flatMap(
          openFor(settings, outcome, admission),
          (openFor) =>
            store.record({ key, generation: admission.generation, outcome: outcome._tag, tripPolicy, openFor })
        )
        : store.record({
          key,
          generation: admission.generation,
          outcome: outcome._tag,
          tripPolicy,
          openFor: Duration.zero
        })).pipe(
          Effect.flatMap(publish),
          Effect.catch((error) => reportRecordFailure(Cause.fail(error)))
        )
    }
    /** Classifies and records an attempt that ended; `started` is its start number, -1 when untracked. */
    const settle = (exit: Exit.Exit<unknown, unknown>, admission: CircuitBreaker.Admission, started: number) => {
      if (started >= 0) tracked.started.delete(started)
      // An interruption says nothing about the server (Effect's breaker ignores it before classifying).
      const outcome = Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
        ? CircuitBreaker.ignored
        : classify(exit)
      if (
        started < 0 || !live.settings.startOrder || outcome._tag !== "Failure" ||
        !startedBefore(tracked.started, started)
      ) {
        return record(outcome, admission)
      }
      // Overtook an earlier attempt: not a failure "in a row" while the circuit is closed.
      return Effect.flatMap(state, (s) => record(s?._tag === "Closed" ? CircuitBreaker.ignored : outcome, admission))
    }
    /**
     * An admitted attempt's start number (a rejected attempt never starts), released however it ends; -1 when
     * the policy is not one the start-order rule applies to.
     */
    const numbered = (): number => {
      if (!live.settings.startOrder) return -1
      const started = tracked.next++
      tracked.started.add(started)
      return started
    }
    /** `run`, after publishing the transition the admission made (if any). */
    const afterTransition = <A, E, R>(admission: CircuitBreaker.Admission, run: Effect.Effect<A, E, R>) =>
      admission.transition === undefined ? run : Effect.andThen(publish(admission.transition), run)
    const execute = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | BreakerError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(admit, (admission) => {
          const started = numbered()
          return afterTransition(admission, Effect.onExit(restore(self), (exit) => settle(exit, admission, started)))
        })
      )
    /** `execute` with the admission in the caller's slot: everything built once (`Mask.builtOnce`). */
    const executeWith = <A, E, R>(
      self: Effect.Effect<A, E, R>,
      slotOf: (fiber: Fiber.Fiber<unknown, unknown>) => Slot
    ): Effect.Effect<A, E | BreakerError, R> => {
      const settled = (exit: Exit.Exit<A, E>) => {
        const slot = slotOf(Fiber.getCurrent()!)
        const admission = slot.admission
        if (admission === undefined) return undefined
        slot.admission = undefined
        return settle(exit, admission, slot.started)
      }
      return Mask.builtOnce((restore) => {
        const run = Effect.onExitPrimitive(restore(self), settled)
        // Under the mask: the admission is in the slot before the frame that settles it is pushed, and nothing
        // can interrupt in between.
        return Effect.flatMap(admit, (admission) => {
          const slot = slotOf(Fiber.getCurrent()!)
          slot.admission = admission
          slot.started = numbered()
          return afterTransition(admission, run)
        })
      })
    }
    return { execute, executeWith }
  }
  const byKey = new Map<string, ReturnType<typeof forKey>>()
  return (key: string) => {
    let execute = byKey.get(key)
    if (execute === undefined) byKey.set(key, execute = forKey(key))
    return execute
  }
}
