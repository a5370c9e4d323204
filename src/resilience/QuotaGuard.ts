/**
 * The credit-aware quota guard: every call reserves what it will cost before
 * it is sent, and fails at once, with no request, when the credits are not
 * there or the account is known to be out of quota.
 *
 * **Details**
 *
 * - Policy and storage are apart, as in Effect's `CircuitBreaker`: the guard
 *   holds the policy (thresholds, key caps, `whenUnknown`, the refresh
 *   schedule, events); a `QuotaStore` (src/resilience/QuotaStore.ts) holds
 *   the ledger and decides reservations. The store is the `QuotaStore` in
 *   context if any; else a Redis store when `RedisQuota` is in context
 *   (`SharedState.layerRedis` provides it); else a memory store of its own.
 * - Subscription cache: `used`, `limit` and the reset time come from a
 *   {@link SubscriptionSource} (the composition adapts `/v1/user/subscription`
 *   to it with {@link snapshotFromSubscription}), read every `refreshInterval`
 *   (60 s) and by {@link QuotaGuard.refresh}, one reading at a time
 *   (src/resilience/QuotaRefresh.ts). A failed refresh keeps the last
 *   snapshot and reports its age.
 * - Reservations: a call reserves its cost against `limit - used - reserved`
 *   (and against its key's cap, when it names a key that has one). Success
 *   commits the `character-cost` header's value, or the estimate; failure and
 *   interruption release. Every change is one synchronous step on the store's
 *   ledger (src/resilience/QuotaLedger.ts), so concurrent reservations can
 *   never overspend. Before the first snapshot a reservation waits once for
 *   the reading in flight, bounded by the call's deadline.
 * - Thresholds: crossing `warningPercent` (80) logs at Warning and publishes
 *   an event; crossing `alertPercent` (90) logs at Error and publishes an
 *   event. Each is announced once per crossing and re-armed when usage falls
 *   back below it (a new period).
 * - Exhausted state: after a `quota_exceeded` answer ({@link QuotaGuard.markExhausted},
 *   which {@link QuotaGuard.guard} calls by itself) every call fails fast with
 *   `QuotaExhausted` until the reset time passes or a subscription fetched
 *   after the mark shows credits left.
 * - Per-key budgets: an optional cap per API key id (never the key itself),
 *   counted against the key's usage in the store, reset with the period.
 * - Shared across processes: with the Redis store (src/distributed/RedisQuotaStore.ts)
 *   reservations, commits, per-key usage and the exhausted state live in
 *   Redis; thresholds, events and `status` work from this process's view of
 *   the shared numbers. Redis unreachable: `local-fallback` decides on that
 *   view (this process's share), `fail-closed` fails with
 *   `QuotaUnknown { redisUnavailable: true }`.
 *
 * **Gotchas**
 *
 * - Commits made while a refresh is in flight are added on top of the fetched
 *   `used`: the server may already count them, so `used` can be over-estimated
 *   until the next refresh. That errs on the side of not overspending.
 * - In memory, per-key usage is what this guard committed; spending of the
 *   same key by other processes is seen only with the Redis store.
 * - On a memory store `guard` reserves and settles inside the call's one exit
 *   frame, with no scope and no mask: what a waiting call holds is that frame
 *   and one small reservation object. Other stores take the scoped path.
 *
 * **Changing it live** ({@link QuotaGuard.reconfigure})
 *
 * - New thresholds, key caps, `whenUnknown`, refresh interval and multipliers
 *   apply from now on; the store (ledger, reservations, the last snapshot,
 *   the exhausted state) is not touched. A threshold moved past the current
 *   usage is announced (or cleared) at once; the next reading is due one new
 *   interval after the last one started. `keyCaps` become exactly the new
 *   ones (a cap set by `setKeyCap` and absent from them is removed); absent
 *   `multipliers` keep the current table (`/v1/models` may have set it).
 * - The store and the account come from context, not options: nothing to
 *   change there. `eventBuffer` sizes the events' `PubSub`: leave it out or
 *   give the same value.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { QuotaGuard } from "elevenlabs-resilience/resilience"
 *
 * const source = QuotaGuard.layerSource(Effect.succeed({ used: 0, limit: 10_000 }))
 * const program = Effect.gen(function*() {
 *   const guard = yield* QuotaGuard.QuotaGuard
 *   const cost = guard.costOf(1200, "eleven_flash_v2_5") // 600
 *   return yield* guard.guard(cost, callTts, { actualCost: (r) => r.meta.characterCost })
 * }).pipe(Effect.provide(QuotaGuard.layer().pipe(Layer.provide(source))))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Exit, Fiber, Layer, Option, type PubSub, type Scope, type Stream } from "effect"
import { type ElevenLabsError, isElevenLabsError } from "../client/Errors.ts"
import * as RedisQuotaStore from "../distributed/RedisQuotaStore.ts"
import * as Cost from "./Cost.ts"
import * as QuotaEvents from "./QuotaEvents.ts"
import * as Ledger from "./QuotaLedger.ts"
import {
  type ExhaustionInfo,
  type GuardOptions,
  InvalidInput,
  type KeyStatus,
  type Options,
  type QuotaEvent,
  QuotaGuardError,
  type QuotaGuardErrorReason,
  type QuotaSnapshot,
  type QuotaState,
  type QuotaStatus,
  type Reservation,
  type ReserveOptions,
  type Settings,
  settingsOf,
  SubscriptionSource
} from "./QuotaModel.ts"
import * as QuotaRefresh from "./QuotaRefresh.ts"
import { type Held, makeMemory, QuotaStore } from "./QuotaStore.ts"

export * from "./QuotaModel.ts"
export { layerMemory as layerStoreMemory, QuotaStore } from "./QuotaStore.ts"

// ==== Service

/** The quota guard service. */
export interface QuotaGuard {
  /** The credits `characters` characters cost on `modelId`, with the current multipliers. */
  readonly costOf: (characters: number, modelId: string) => number
  /** Replace the `/v1/models` multipliers (see `Cost.multipliersFromModels`). */
  readonly setMultipliers: (multipliers: Cost.Multipliers) => Effect.Effect<void>
  /**
   * Reserve `cost` credits for one call. Fails at once with `InsufficientQuota`,
   * `QuotaExhausted`, `QuotaUnknown` or `InvalidInput`. Closing the scope
   * releases what was not committed, so interruption leaks nothing.
   */
  readonly reserve: (cost: number, options?: ReserveOptions) => Effect.Effect<Reservation, QuotaGuardError, Scope.Scope>
  /**
   * Run `effect` under a reservation of `cost`: commit on success (with
   * `actualCost` when given), release on failure or interruption, and mark
   * the account exhausted when it fails with `ElevenLabsError` `QuotaExceeded`.
   */
  readonly guard: <A, E, R>(
    cost: number,
    effect: Effect.Effect<A, E, R>,
    options?: GuardOptions<A>
  ) => Effect.Effect<A, E | QuotaGuardError, R>
  /**
   * `guard` built once around `effect` for a caller that keeps one record per call (a {@link QuotaSlot}, read
   * from the fiber by `slotOf`): the cost is the slot's, and on the memory store the reservation is kept in
   * the slot, so a call holds no closure or frame of its own while `effect` waits (a pipeline with thousands
   * of calls queued). Other stores take `guard`'s path. The slot must be the call's own, from start to end.
   */
  readonly guardWith: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    slotOf: (fiber: Fiber.Fiber<unknown, unknown>) => QuotaSlot<A>
  ) => Effect.Effect<A, E | QuotaGuardError, R>
  /** Fetch the subscription now (joining a fetch already in flight). On failure the last snapshot is kept. */
  readonly refresh: Effect.Effect<QuotaSnapshot, ElevenLabsError>
  /** Enter the exhausted state after a `quota_exceeded` answer. */
  readonly markExhausted: (info?: ExhaustionInfo) => Effect.Effect<void>
  /** Set (or with `undefined`, remove) a key's cap. */
  readonly setKeyCap: (keyId: string, cap: number | undefined) => Effect.Effect<void, QuotaGuardError>
  /** Everything the guard knows, for health and metrics. */
  readonly status: Effect.Effect<QuotaStatus>
  /** `used / limit` in percent, `undefined` before the first snapshot. */
  readonly percentUsed: Effect.Effect<number | undefined>
  /** The current {@link QuotaState}. */
  readonly state: Effect.Effect<QuotaState>
  /** Threshold crossings, exhaustion, recovery and refreshes, from the moment the stream is run. */
  readonly events: Stream.Stream<QuotaEvent>
  /** A subscription to the same events, open as long as its scope (deterministic for tests). */
  readonly subscribe: Effect.Effect<PubSub.Subscription<QuotaEvent>, never, Scope.Scope>
  /**
   * Applies new options from now on, keeping reservations, the ledger and the last snapshot (see the module
   * doc, "Changing it live"). Dies, changing nothing, on invalid options or a different `eventBuffer`.
   */
  readonly reconfigure: (options: Options) => Effect.Effect<void>
}

/** A call's record for {@link QuotaGuard.guardWith}: its cost, its options, and the credits it holds. */
export interface QuotaSlot<A> extends GuardOptions<A> {
  readonly cost: number
  /** Credits reserved and not settled yet (set and cleared by `guardWith`). */
  quotaHeld: number | undefined
}

/** The tag of {@link QuotaGuard}. */
export const QuotaGuard = Context.Service<QuotaGuard>("elevenlabs-resilience/QuotaGuard")

// ==== Constructor

const fail = (reason: QuotaGuardErrorReason) => Effect.fail(new QuotaGuardError({ reason }))

const invalid = (field: string, message: string) => fail(new InvalidInput({ field, message }))

const invalidCost = (cost: number) => invalid("cost", `cost must be a non-negative number, got ${cost}`)

/** `guard`'s slot on a memory store: the cost, the caller's options (their reader called as their method). */
class GuardSlot<A> implements QuotaSlot<A> {
  quotaHeld: number | undefined = undefined
  readonly cost: number
  readonly options: GuardOptions<A> | undefined
  constructor(cost: number, options: GuardOptions<A> | undefined) {
    this.cost = cost
    this.options = options
  }
  get keyId(): string | undefined {
    return this.options?.keyId
  }
  actualCost(a: A): number | undefined {
    return actualOf(this.options, a)
  }
}

/** The user's `actualCost` reading; a throwing or missing reader means "use the estimate". */
const actualOf = <A>(options: GuardOptions<A> | undefined, a: A): number | undefined => {
  if (options?.actualCost === undefined) return undefined
  try {
    // Called as a method: the options may be an object whose reader uses `this`.
    return options.actualCost(a)
  } catch {
    return undefined
  }
}

/** What the guard's parts share. */
interface Parts {
  readonly store: QuotaStore["Service"]
  readonly refresher: QuotaRefresh.Refresher
  readonly announcer: QuotaEvents.Announcer
  /** The key caps, changed in place (`setKeyCap`, `reconfigure`); a removed cap stays listed as `undefined`. */
  readonly caps: Map<string, number | undefined>
  /** The settings, read when used; replaced whole by `reconfigure`. */
  readonly live: { settings: Settings }
}

/** A step's events (with the threshold crossings) and the reading it wants, as one effect; `undefined` if none. */
const afterStep = (parts: Parts, step: Ledger.Step<unknown>, now: number): Effect.Effect<void> | undefined => {
  const published = parts.announcer.announce(step.events, now)
  const fetch = step.fetch === undefined ? undefined : parts.refresher.wanted(step.fetch, now)
  return published === undefined ? fetch : fetch === undefined ? published : Effect.andThen(published, fetch)
}

const publishStep = (parts: Parts) => (step: Ledger.Step<unknown>): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => afterStep(parts, step, now) ?? Effect.void)

/** `reserve`, `guard` and `markExhausted`. */
const reservations = (parts: Parts) => {
  const { caps, refresher, store } = parts
  const policy = refresher.state
  const capOf = (keyId: string | undefined) => (keyId === undefined ? undefined : caps.get(keyId))
  const published = publishStep(parts)

  const markExhausted = (info?: ExhaustionInfo): Effect.Effect<void> =>
    Effect.flatMap(store.markExhausted(info, policy), published)

  const settleHeld = (held: Held, committed: number | undefined) => Effect.flatMap(held.settle(committed), published)

  /** A store reservation, for the scope's lifetime (released at its close unless settled before). */
  const acquire = (cost: number, keyId: string | undefined): Effect.Effect<Reservation, QuotaGuardError, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.flatMap(store.reserve({ cost, keyId, cap: capOf(keyId) }, policy), (step) =>
        Effect.withFiber((fiber) => {
          const before = afterStep(parts, step, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
          const held = step.value
          const result: Effect.Effect<Reservation, QuotaGuardError> = held._tag !== "Held" ?
            fail(held) :
            Effect.succeed({
              cost: held.cost,
              keyId: held.keyId,
              commit: (actual?: number | undefined) => settleHeld(held, Ledger.isAmount(actual) ? actual : held.cost),
              release: settleHeld(held, undefined)
            })
          return before === undefined ? result : Effect.andThen(before, result)
        })),
      (r) => r.release
    )

  const reserve = (cost: number, options?: ReserveOptions): Effect.Effect<Reservation, QuotaGuardError, Scope.Scope> =>
    Effect.suspend(() =>
      Ledger.isAmount(cost) ? refresher.beforeFirstSnapshot(acquire(cost, options?.keyId)) : invalidCost(cost)
    )

  /** Other stores: a reservation in a scope (a Redis one lives there: its lease), settled when the call ends. */
  const guardScoped = <A, E, R>(cost: number, effect: Effect.Effect<A, E, R>, options: GuardOptions<A> | undefined) => {
    const tapped = Effect.tapError(
      effect,
      (e) => isElevenLabsError(e) && e.reason._tag === "QuotaExceeded" ? markExhausted(e.reason) : Effect.void
    )
    // Settled in a finalizer: once the call succeeded its credits are spent, even if the caller is
    // interrupted right after.
    const settled = (reservation: Reservation) =>
      Effect.onExit((exit: Exit.Exit<A, E>) =>
        Exit.isSuccess(exit) ? reservation.commit(actualOf(options, exit.value)) : reservation.release
      )
    return Effect.scoped(
      Effect.flatMap(acquire(cost, options?.keyId), (reservation) => tapped.pipe(settled(reservation)))
    )
  }

  const memory = store._tag === "Memory" ? store : undefined

  /**
   * On a memory store: `guardWith` with the call's own slot, one object (which a waiting call holds). The
   * exit frame is pushed before the step that reserves, so it settles what the slot holds however the call
   * ends, nothing if it never got as far as reserving, and no mask or scope is needed. Once the call
   * succeeded its credits are spent, even if the caller is interrupted right after; the `quota_exceeded` mark
   * is taken in the same frame, before the release.
   */
  const guard = <A, E, R>(
    cost: number,
    effect: Effect.Effect<A, E, R>,
    options?: GuardOptions<A>
  ): Effect.Effect<A, E | QuotaGuardError, R> =>
    Effect.suspend(() => {
      if (!Ledger.isAmount(cost)) return invalidCost(cost)
      if (memory === undefined) return refresher.beforeFirstSnapshot(guardScoped(cost, effect, options))
      const slot = new GuardSlot(cost, options)
      return guardWith(effect, () => slot)
    })

  /** Settles what `slot` holds, once: committed on success, released otherwise (and the exhaustion marked). */
  const settleSlot = <A>(slot: QuotaSlot<A>, exit: Exit.Exit<A, unknown>): Effect.Effect<void> | undefined => {
    const held = slot.quotaHeld
    if (held === undefined) return undefined
    slot.quotaHeld = undefined
    const fiber = Fiber.getCurrent()!
    if (Exit.isSuccess(exit)) {
      const actual = actualOf(slot, exit.value)
      memory!.settleUnsafe(held, slot.keyId, Ledger.isAmount(actual) ? actual : held)
      return parts.announcer.announce([], fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
    }
    const release = () => memory!.settleUnsafe(held, slot.keyId, undefined)
    const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
    const error = failure?._tag === "Fail" ? failure.error : undefined
    if (isElevenLabsError(error) && error.reason._tag === "QuotaExceeded") {
      return Effect.andThen(markExhausted(error.reason), Effect.sync(release))
    }
    release()
    return undefined
  }

  // As `guard` on a memory store, with the reservation in the slot: the exit frame is pushed before the step
  // that reserves, so it settles whatever the slot holds however the call ends.
  const guardWith = <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    slotOf: (fiber: Fiber.Fiber<unknown, unknown>) => QuotaSlot<A>
  ): Effect.Effect<A, E | QuotaGuardError, R> => {
    if (memory === undefined) {
      return Effect.withFiber((fiber) => {
        const slot = slotOf(fiber)
        return guard(slot.cost, effect, slot)
      })
    }
    const reserved = Effect.withFiber((fiber): Effect.Effect<A, E | QuotaGuardError, R> => {
      const slot = slotOf(fiber)
      const { cost, keyId } = slot
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const decided = memory.reserveUnsafe(now, { cost, keyId, cap: capOf(keyId) }, policy)
      if (decided.value === undefined) slot.quotaHeld = cost
      // Events to publish or a reading to start first: rare (a threshold crossed, a period rolled over).
      const before = afterStep(parts, decided, now)
      const next: Effect.Effect<A, E | QuotaGuardError, R> = decided.value === undefined ? effect : fail(decided.value)
      return before === undefined ? next : Effect.andThen(before, next)
    })
    return Effect.onExitPrimitive(
      Effect.withFiber((fiber) => {
        const cost = slotOf(fiber).cost
        return Ledger.isAmount(cost) ? refresher.beforeFirstSnapshot(reserved) : invalidCost(cost)
      }),
      (exit) => settleSlot(slotOf(Fiber.getCurrent()!), exit)
    )
  }

  return { reserve, guard, guardWith, markExhausted }
}

/** `status`, `state`, `percentUsed`, and the rollover the background schedule runs. */
const readings = (parts: Parts) => {
  const { caps, live, refresher, store } = parts
  const policy = refresher.state

  /** Applies a due rollover first, so reads after the reset time see the new period. */
  const observe = <A>(read: (now: number, l: Ledger.Ledger) => A): Effect.Effect<A> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const step = store.observe(now)
      const a = read(now, store.ledger())
      const after = afterStep(parts, step, now)
      return after === undefined ? Effect.succeed(a) : Effect.as(after, a)
    })

  // A shared store's `pull` reads it first (one script), so `status` and `state` show every process's
  // reservations and a mark made elsewhere; `percentUsed` stays on the local view (no round trip).
  const pull = Effect.flatMap(store.pull(policy), publishStep(parts))

  const stateOf = (l: Ledger.Ledger): QuotaState => {
    if (l.exhausted !== undefined) return "exhausted"
    const pct = Ledger.percentUsed(l)
    if (pct === undefined) return "unknown"
    const { alertPercent, warningPercent } = live.settings
    return pct >= alertPercent ? "alert" : pct >= warningPercent ? "warning" : "ok"
  }

  const keysOf = (l: Ledger.Ledger): Array<KeyStatus> =>
    Array.from(new Set([...caps.keys(), ...l.keys.keys()]), (keyId) => {
      const k = l.keys.get(keyId)
      const cap = caps.get(keyId)
      const used = k?.used ?? 0
      const reserved = (k?.reserved ?? 0) + (k?.sharedReserved ?? 0)
      return {
        keyId,
        cap,
        used,
        reserved,
        remaining: cap === undefined ? undefined : Math.max(0, cap - used - reserved)
      }
    })

  const statusOf = (now: number, l: Ledger.Ledger): QuotaStatus => {
    const reserved = l.reserved + l.sharedReserved
    const known = l.used !== undefined && l.limit !== undefined
    return {
      state: stateOf(l),
      used: l.used,
      limit: l.limit,
      reserved,
      remaining: known ? Math.max(0, l.limit! - l.used! - reserved) : undefined,
      percentUsed: Ledger.percentUsed(l),
      resetAt: l.resetAt,
      fetchedAt: policy.fetchedAt,
      snapshotAgeMillis: policy.fetchedAt === undefined ? undefined : now - policy.fetchedAt,
      lastRefreshError: policy.lastError,
      nextRefreshAt: policy.nextRefreshAt,
      exhausted: l.exhausted === undefined ? undefined : {
        since: l.exhausted.since,
        resetAt: l.exhausted.resetAt,
        retryAfterMillis: Ledger.retryAfterMillis(now, l.exhausted, policy.nextRefreshAt)
      },
      keys: keysOf(l)
    }
  }

  return {
    status: Effect.andThen(pull, observe(statusOf)),
    state: Effect.andThen(pull, observe((_, l) => stateOf(l))),
    percentUsed: observe((_, l) => Ledger.percentUsed(l)),
    /** Whether the period rolled over (a reading is then due). */
    rolled: Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const step = store.observe(now)
      const after = afterStep(parts, step, now)
      return Effect.as(after ?? Effect.void, step.fetch !== undefined)
    }),
    /** The reset time, when the schedule must wake to roll the period over. */
    wakeAt: () => {
      const l = store.ledger()
      return l.exhausted?.resetAt ?? l.resetAt ?? Number.POSITIVE_INFINITY
    }
  }
}

/**
 * Build a guard. Needs a {@link SubscriptionSource} and a `Scope` (the
 * background refresher lives as long as it); fails with `InvalidInput` on
 * options out of range.
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const source = yield* SubscriptionSource
  const settings = yield* settingsOf(options)
  const store = Option.getOrUndefined(yield* Effect.serviceOption(QuotaStore)) ??
    (yield* RedisQuotaStore.fromContext) ??
    makeMemory()
  const announcer = yield* QuotaEvents.make({
    buffer: settings.eventBuffer,
    ledger: store.ledger,
    warningPercent: settings.warningPercent,
    alertPercent: settings.alertPercent
  })
  // The first reading starts now, so the first reservation can wait for it.
  const refresher = yield* QuotaRefresh.make({
    interval: settings.interval,
    whenUnknown: settings.whenUnknown,
    fetch: source.fetch,
    store,
    publish: announcer.publish
  })
  const caps = new Map<string, number | undefined>(settings.caps)
  const parts: Parts = { store, refresher, announcer, caps, live: { settings } }
  const { guard, guardWith, markExhausted, reserve } = reservations(parts)
  const { percentUsed, rolled, state, status, wakeAt } = readings(parts)
  yield* refresher.schedule(rolled, wakeAt)
  let multipliers: Cost.Multipliers = { ...options.multipliers }

  const setKeyCap = (keyId: string, cap: number | undefined): Effect.Effect<void, QuotaGuardError> =>
    Effect.suspend(() => {
      if (cap !== undefined && !Ledger.isAmount(cap)) {
        return invalid(`keyCaps.${keyId}`, "a cap must be a non-negative number")
      }
      // Removing a cap keeps the key listed in `status`.
      if (cap !== undefined || caps.has(keyId)) caps.set(keyId, cap)
      return Effect.void
    })

  const reconfigure = (options: Options): Effect.Effect<void> =>
    Effect.flatMap(Effect.orDie(settingsOf(options)), (next) =>
      Effect.withFiber((fiber) => {
        // Everything checked before anything changes. The event buffer is the PubSub's size: it stays.
        const { eventBuffer } = parts.live.settings
        if (options.eventBuffer !== undefined && next.eventBuffer !== eventBuffer) {
          return Effect.die(
            new RangeError(
              `QuotaGuard.reconfigure: eventBuffer cannot change live (${eventBuffer} -> ${next.eventBuffer})`
            )
          )
        }
        parts.live.settings = { ...next, eventBuffer }
        for (const keyId of caps.keys()) if (!next.caps.has(keyId)) caps.set(keyId, undefined)
        for (const [keyId, cap] of next.caps) caps.set(keyId, cap)
        // Absent: keep what `setMultipliers` (the `/v1/models` answer) or an earlier configuration set.
        if (next.multipliers !== undefined) multipliers = { ...next.multipliers }
        announcer.setPercents(next.warningPercent, next.alertPercent)
        // A threshold moved past the current usage is announced (or cleared) now, not at the next change.
        const crossed = announcer.announce([], fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
        const refreshing = refresher.reconfigure({ interval: next.interval, whenUnknown: next.whenUnknown })
        return crossed === undefined ? refreshing : Effect.andThen(crossed, refreshing)
      }))

  return QuotaGuard.of({
    costOf: (characters, modelId) => Cost.estimate(characters, modelId, multipliers),
    setMultipliers: (next) => Effect.sync(() => void (multipliers = { ...next })),
    reserve,
    guard,
    guardWith,
    refresh: refresher.refresh,
    markExhausted,
    setKeyCap,
    status,
    percentUsed,
    state,
    events: announcer.events,
    subscribe: announcer.subscribe,
    reconfigure
  })
})

// ==== Layers

/** The guard as a layer; needs a {@link SubscriptionSource}. */
export const layer = (options?: Options): Layer.Layer<QuotaGuard, QuotaGuardError, SubscriptionSource> =>
  Layer.effect(QuotaGuard, make(options))
