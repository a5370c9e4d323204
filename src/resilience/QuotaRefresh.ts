/**
 * The quota guard's subscription readings: one fetch at a time, on demand
 * and on a schedule, each taken by the guard's store.
 *
 * **Details**
 *
 * - Single flight: the reading in flight is a `Deferred` that every caller in
 *   the meantime (periodic, on demand, a reservation waiting for the first
 *   snapshot) awaits; the next call after it ends starts another. It counts
 *   as in flight from the moment it is asked for, before its fiber runs, and
 *   runs in the guard's scope, so a caller that gives up waiting does not
 *   cancel it for the others. (Not `Effect.cachedWithTTL(fetch, 0)`: that
 *   registers a run only once its fiber starts, so a reading asked for at
 *   start-up and a `refresh` right after would both fetch.)
 * - Schedule: a reading every `interval`, counted from the start of the last
 *   one (an on-demand reading pushes the next periodic one back), and a wake
 *   at the reset time so the period rolls over on time: `Effect.repeat` on a
 *   `Schedule` whose delay is the time left to the earlier of the two.
 * - The first snapshot, one rule ({@link Refresher.beforeFirstSnapshot}): a
 *   reservation made while no reading ever succeeded and one is in flight
 *   waits for it once, bounded by the call's deadline (`Deadline.enforce`;
 *   past it the call goes on and fails at its own bound), then decides.
 * - A failed reading keeps the last snapshot; `lastError` and `fetchedAt` say
 *   how stale it is and a `RefreshFailed` event carries the age.
 * - The state object doubles as the store's `Policy`: the next check bounds a
 *   reported exhaustion, the last error explains an unknown quota.
 * - A new interval ({@link Refresher.reconfigure}) moves the next reading to
 *   one new interval after the last one started (at once when that is past),
 *   and restarts the schedule, which was sleeping until the old due time.
 *
 * @since 0.1.0
 */
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Schedule, type Scope, Semaphore } from "effect"
import { ElevenLabsError, InvalidResponse } from "../client/Errors.ts"
import * as Deadline from "./Deadline.ts"
import * as Ledger from "./QuotaLedger.ts"
import type { QuotaEvent, QuotaSnapshot } from "./QuotaModel.ts"
import type { Store } from "./QuotaStore.ts"

/** What the guard knows of its readings. */
export interface RefreshState extends Ledger.Rules {
  whenUnknown: "allow" | "deny"
  nextRefreshAt: number
  lastError: string | undefined
  /** When the last reading succeeded. */
  fetchedAt: number | undefined
  /** When a reading was last started to re-seed a shared store that knows nothing. */
  reseedAt: number
}

/** The guard's readings. */
export interface Refresher {
  readonly state: Readonly<RefreshState>
  /** A reading now, or the one in flight. */
  readonly refresh: Effect.Effect<QuotaSnapshot, ElevenLabsError>
  /** Starts a reading in the background unless one is in flight. */
  readonly start: Effect.Effect<void>
  /** The reading a store step wants, if it is to start now (a re-seed at most every `min(interval, 5 s)`). */
  readonly wanted: (fetch: Ledger.Fetch, now: number) => Effect.Effect<void> | undefined
  /** `next`, after waiting once for the reading in flight when no snapshot was ever read (decided when called). */
  readonly beforeFirstSnapshot: <A, E, R>(next: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * The background schedule, forked in the guard's scope: at every due time (the next reading, or `wakeAt()`
   * when earlier), `observe` (which answers whether the period rolled over), then a reading when one is due.
   */
  readonly schedule: (observe: Effect.Effect<boolean>, wakeAt: () => number) => Effect.Effect<void>
  /** A new interval and `whenUnknown` from now on (see the module doc). */
  readonly reconfigure: (
    options: { readonly interval: number; readonly whenUnknown: "allow" | "deny" }
  ) => Effect.Effect<void>
}

const validSnapshot = (snap: QuotaSnapshot): boolean =>
  Ledger.isAmount(snap.used) && Ledger.isAmount(snap.limit) &&
  (snap.resetAt === undefined || Number.isFinite(snap.resetAt))

/** A snapshot out of range is a failed reading. */
const validated = (fetch: Effect.Effect<QuotaSnapshot, ElevenLabsError>) =>
  Effect.flatMap(fetch, (snap) =>
    validSnapshot(snap) ? Effect.succeed(snap) : Effect.fail(
      new ElevenLabsError({
        reason: new InvalidResponse({
          operation: "quotaGuard.refresh",
          message: `subscription snapshot out of range: used=${snap.used} limit=${snap.limit}`
        })
      })
    ))

/** Builds the readings of one guard; the first starts at once. */
export const make = Effect.fnUntraced(function*(options: {
  readonly interval: number
  readonly whenUnknown: "allow" | "deny"
  readonly fetch: Effect.Effect<QuotaSnapshot, ElevenLabsError>
  readonly store: Store
  /** Publishes a step's events (with the guard's threshold announcements). */
  readonly publish: (events: ReadonlyArray<QuotaEvent>, now: number) => Effect.Effect<void>
}) {
  const { publish, store } = options
  let interval = options.interval
  const scope: Scope.Scope = yield* Effect.scope
  // The guard's context (its Clock, logger, references): a restarted schedule runs in it, not the caller's.
  const context = yield* Effect.context<never>()
  const fetch = validated(options.fetch)
  const state: RefreshState = {
    whenUnknown: options.whenUnknown,
    nextRefreshAt: yield* Clock.currentTimeMillis,
    lastError: undefined,
    fetchedAt: undefined,
    reseedAt: Number.NEGATIVE_INFINITY
  }

  let inflight: Deferred.Deferred<QuotaSnapshot, ElevenLabsError> | undefined

  const reading = (done: Deferred.Deferred<QuotaSnapshot, ElevenLabsError>, token: Ledger.Token) =>
    Effect.gen(function*() {
      const { events, value: exit } = yield* store.read(fetch, token, state)
      const now = yield* Clock.currentTimeMillis
      const out = [...events]
      if (Exit.isSuccess(exit)) {
        state.fetchedAt = now
        state.lastError = undefined
      } else {
        const error = Exit.findErrorOption(exit)
        state.lastError = error._tag === "Some" ? error.value.message : "interrupted"
        const age = state.fetchedAt === undefined ? undefined : now - state.fetchedAt
        out.push({ _tag: "RefreshFailed", at: now, error: state.lastError, snapshotAgeMillis: age })
      }
      inflight = undefined
      yield* Deferred.done(done, exit)
      yield* publish(out, now)
    }).pipe(
      Effect.onInterrupt(() =>
        Effect.andThen(Effect.sync(() => void (inflight = undefined)), Deferred.interrupt(done))
      ),
      // The reading serves every caller: not bound by the deadline of the one whose fiber started it.
      Effect.provideService(Deadline.CurrentDeadline, undefined)
    )

  /**
   * Starts a reading unless one is in flight; either way, the one to wait on. Registered in one synchronous
   * step, so the reading counts from the moment it is asked for, before its fiber runs: callers join it, and
   * its token (commits made since are added, a mark made since stays) is the ledger's at this moment.
   */
  const begin = Effect.withFiber((fiber) => {
    if (inflight !== undefined) return Effect.succeed(inflight)
    const done = Deferred.makeUnsafe<QuotaSnapshot, ElevenLabsError>()
    inflight = done
    state.nextRefreshAt = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe() + interval
    // In the guard's scope: a caller that gives up waiting does not cancel the reading for the others.
    return Effect.as(Effect.forkIn(reading(done, Ledger.tokenOf(store.ledger())), scope), done)
  })

  const refresh = Effect.flatMap(begin, Deferred.await)
  const start = Effect.asVoid(begin)

  /** The background schedule, once `schedule` started it: its loop, to start again, and its fiber. */
  let scheduled: { readonly loop: Effect.Effect<void>; fiber: Fiber.Fiber<void> } | undefined
  /** One restart at a time: two at once would leave a second loop running. */
  const restarting = Semaphore.makeUnsafe(1)

  yield* start
  return {
    state,
    refresh,
    start,
    wanted: (want, now) => {
      if (want === "period") return start
      if (want !== "reseed" || inflight !== undefined || now - state.reseedAt < Math.min(interval, 5_000)) {
        return undefined
      }
      state.reseedAt = now
      return start
    },
    beforeFirstSnapshot: (next) =>
      state.fetchedAt === undefined && inflight !== undefined
        ? Effect.andThen(Effect.exit(Deadline.enforce({ operation: "quota" })(Deferred.await(inflight))), next)
        : next,
    schedule: (observe, wakeAt) => {
      // Not cut in half by a restart (`reconfigure`): a rollover observed is a rollover announced.
      const tick = Effect.flatMap(
        Effect.uninterruptible(observe),
        (rolled) =>
          Effect.flatMap(
            Clock.currentTimeMillis,
            (now) => rolled || now >= state.nextRefreshAt ? Effect.asVoid(Effect.exit(refresh)) : Effect.void
          )
      )
      const untilDue = Schedule.forever.pipe(
        Schedule.modifyDelay(() =>
          Effect.map(
            Clock.currentTimeMillis,
            (now) => Duration.millis(Math.max(1, Math.min(state.nextRefreshAt, wakeAt()) - now))
          )
        )
      )
      const loop = Effect.asVoid(Effect.repeat(tick, untilDue)).pipe(Effect.provideContext(context))
      return Effect.map(Effect.forkIn(loop, scope), (fiber) => void (scheduled = { loop, fiber }))
    },
    reconfigure: (next) =>
      Effect.suspend(() => {
        state.whenUnknown = next.whenUnknown
        if (next.interval === interval) return Effect.void
        state.nextRefreshAt += next.interval - interval
        interval = next.interval
        const running = scheduled
        if (running === undefined) return Effect.void
        // Sleeping until the old due time: started again, it computes the new one (its first tick reads at
        // once when that is past). The reading in flight runs in the guard's scope and is not interrupted.
        return Effect.andThen(
          Fiber.interrupt(running.fiber),
          // Started at once: a reading due now is registered (in flight) before `reconfigure` returns.
          Effect.map(
            Effect.forkIn(running.loop, scope, { startImmediately: true }),
            (fiber) => void (running.fiber = fiber)
          )
        ).pipe(Effect.uninterruptible, restarting.withPermits(1))
      })
  } satisfies Refresher
})
