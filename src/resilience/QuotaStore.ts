/**
 * Where the quota guard keeps its ledger: the `QuotaStore` service, as
 * Effect's `CircuitBreakerStore` is the breaker's. The guard holds the policy
 * (thresholds, caps, `whenUnknown`, the refresh schedule, events); the store
 * holds the numbers and decides reservations against them.
 *
 * **Details**
 *
 * - Two kinds, told apart by `_tag`. `"Memory"` ({@link layerMemory},
 *   {@link makeMemory}): the ledger in this process, changed by the pure
 *   functions of `QuotaLedger` in one synchronous step each; it also offers
 *   `reserveUnsafe`/`settleUnsafe`, which `QuotaGuard.guardWith` uses to reserve
 *   and settle inside the call's one exit frame (no scope, no mask).
 *   `"Shared"`: the numbers live elsewhere (`RedisQuotaStore` in
 *   src/distributed), and `reserve` asks there; `ledger` is this process's
 *   view of them (for status, thresholds and a fallback).
 * - Every operation answers a `Step`: its value, the events it made and
 *   whether it wants a subscription reading. The guard publishes the events,
 *   adds its threshold announcements and starts the reading.
 * - Every decision gets the guard's {@link Policy} (as the breaker's store
 *   gets the trip policy): settings and refresh state, read, never kept.
 *
 * **Gotchas**
 *
 * - A store provided as a layer is shared by every guard built over it (one
 *   account); by default each guard builds its own memory store.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Exit, Layer, type Scope } from "effect"
import type { ElevenLabsError } from "../client/Errors.ts"
import * as Ledger from "./QuotaLedger.ts"
import type { ExhaustionInfo, QuotaGuardErrorReason, QuotaSnapshot } from "./QuotaModel.ts"

// ==== Models

/** What a reservation asks for: `cost` credits, counted against `keyId`'s `cap` too when both are set. */
export interface Request {
  readonly cost: number
  readonly keyId: string | undefined
  readonly cap: number | undefined
}

/** What the guard passes with every decision: its settings and what it knows of its readings. */
export type Policy = Ledger.Rules

/** A reservation a store holds. */
export interface Held {
  readonly _tag: "Held"
  readonly cost: number
  readonly keyId: string | undefined
  /** Commits `committed` credits or, with `undefined`, gives them back; only the first call settles. */
  readonly settle: (committed: number | undefined) => Effect.Effect<Ledger.Step<void>>
}

interface StoreCommon {
  /** This process's ledger: the memory store's own, a shared store's view of the shared numbers. */
  readonly ledger: () => Ledger.Ledger
  /** Rolls this process's view over once `now` passes its reset time. */
  readonly observe: (now: number) => Ledger.Step<void>
  /** Reserves for the scope's lifetime (a shared store's lease lives there); the value is a refusal or the hold. */
  readonly reserve: (
    request: Request,
    policy: Policy
  ) => Effect.Effect<Ledger.Step<Held | QuotaGuardErrorReason>, never, Scope.Scope>
  /**
   * Runs one subscription `fetch` and takes its reading, keeping what changed since `token` (the ledger's
   * counters when the reading was asked for: commits since then are added, a mark since then stays).
   */
  readonly read: (
    fetch: Effect.Effect<QuotaSnapshot, ElevenLabsError>,
    token: Ledger.Token,
    policy: Policy
  ) => Effect.Effect<Ledger.Step<Exit.Exit<QuotaSnapshot, ElevenLabsError>>>
  /** Enters the exhausted state after a `quota_exceeded` answer. */
  readonly markExhausted: (info: ExhaustionInfo | undefined, policy: Policy) => Effect.Effect<Ledger.Step<void>>
  /** Brings this process's view up to date (a shared store reads the shared numbers; memory: nothing to do). */
  readonly pull: (policy: Policy) => Effect.Effect<Ledger.Step<void>>
}

/** The ledger in this process's memory. */
export interface MemoryStore extends StoreCommon {
  readonly _tag: "Memory"
  /** Reserves at `now` in one synchronous step; the value is the refusal, or `undefined` when held. */
  readonly reserveUnsafe: (
    now: number,
    request: Request,
    policy: Policy
  ) => Ledger.Step<QuotaGuardErrorReason | undefined>
  /** Ends a reservation made by `reserveUnsafe` (once: the caller keeps count). */
  readonly settleUnsafe: (cost: number, keyId: string | undefined, committed: number | undefined) => void
}

/** Numbers shared with other processes (Redis): reservations are decided there. */
export interface SharedStore extends StoreCommon {
  readonly _tag: "Shared"
}

/** A quota store. */
/** What a store is: the memory store or the shared one (a `_tag` union). */
export type Store = MemoryStore | SharedStore

/** The store service. */
export class QuotaStore extends Context.Service<QuotaStore, Store>()(
  "elevenlabs-resilience/QuotaGuard/QuotaStore"
) {}

// ==== Memory

/** A ledger in a cell, replaced in one synchronous step per change. */
export interface LedgerCell {
  readonly get: () => Ledger.Ledger
  /** Keeps the change's ledger; returns its step. */
  readonly apply: <A>(change: Ledger.Change<A>) => Ledger.Step<A>
  readonly set: (ledger: Ledger.Ledger) => void
}

/** A fresh {@link LedgerCell}, empty. */
export const makeCell = (): LedgerCell => {
  let ledger = Ledger.empty
  return {
    get: () => ledger,
    apply: (change) => {
      ledger = change.ledger
      return change
    },
    set: (next) => void (ledger = next)
  }
}

/** A reservation in a cell, settled once; `onCommit` runs after the (first) commit. */
export const heldIn = (
  cell: LedgerCell,
  cost: number,
  keyId: string | undefined,
  onCommit?: (committed: number) => Effect.Effect<void>
): Held => {
  let settled = false
  return {
    _tag: "Held",
    cost,
    keyId,
    settle: (committed) =>
      Effect.suspend(() => {
        if (settled) return Effect.succeed(Ledger.none)
        settled = true
        cell.set(Ledger.settle(cell.get(), cost, keyId, committed))
        return committed === undefined || onCommit === undefined
          ? Effect.succeed(Ledger.none)
          : Effect.as(onCommit(committed), Ledger.none)
      })
  }
}

/**
 * A reading on a cell: `fetch`, then its reading applied against `token`, or its failure. `shared` (a
 * shared store's answer after being given the reading) replaces the local arithmetic.
 */
export const readInto = (
  cell: LedgerCell,
  fetch: Effect.Effect<QuotaSnapshot, ElevenLabsError>,
  token: Ledger.Token,
  policy: Policy,
  shared?: (snap: QuotaSnapshot) => Effect.Effect<Ledger.SharedReading | undefined>
): Effect.Effect<Ledger.Step<Exit.Exit<QuotaSnapshot, ElevenLabsError>>> =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(fetch)
    if (Exit.isFailure(exit)) return Ledger.step(exit)
    const synced = shared === undefined ? undefined : yield* shared(exit.value)
    const now = yield* Clock.currentTimeMillis
    const { events } = cell.apply(Ledger.applyReading(cell.get(), now, exit.value, token, policy.nextRefreshAt, synced))
    return Ledger.step(exit, events)
  })

/** A memory store: the ledger lives in this process. */
export const makeMemory = (): MemoryStore => {
  const cell = makeCell()
  const reserveUnsafe = (now: number, request: Request, policy: Policy) =>
    cell.apply(Ledger.reserve(cell.get(), now, request, policy))
  return {
    _tag: "Memory",
    ledger: cell.get,
    observe: (now) => cell.apply(Ledger.rollover(cell.get(), now)),
    reserveUnsafe,
    settleUnsafe: (cost, keyId, committed) => cell.set(Ledger.settle(cell.get(), cost, keyId, committed)),
    reserve: (request, policy) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const decided = reserveUnsafe(now, request, policy)
        return Ledger.step(decided.value ?? heldIn(cell, request.cost, request.keyId), decided.events, decided.fetch)
      }),
    read: (fetch, token, policy) => readInto(cell, fetch, token, policy),
    markExhausted: (info, policy) =>
      Effect.map(
        Clock.currentTimeMillis,
        (now) => cell.apply(Ledger.markExhausted(cell.get(), now, info, policy.nextRefreshAt))
      ),
    pull: () => Effect.succeed(Ledger.none)
  }
}

/** A memory store as a layer: guards built over it share one ledger (one account, one process). */
export const layerMemory = (): Layer.Layer<QuotaStore> => Layer.sync(QuotaStore, makeMemory)
