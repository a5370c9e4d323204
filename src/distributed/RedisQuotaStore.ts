/**
 * The quota guard's store in Redis: a `QuotaStore` (`_tag: "Shared"`) over
 * {@link RedisQuota}, so every process using the account decides against the
 * same `limit − used − reserved`. The Lua scripts are RedisQuota's; this
 * module maps its answers to the guard's decisions and keeps this process's
 * view of the shared numbers (for thresholds, `status` and the fallback).
 *
 * **Details**
 *
 * - Reservations, commits, key usage and the exhausted state live in Redis
 *   (leased: a crashed process's reservations expire). The view follows
 *   every answer: an `Exhausted` answer enters the exhausted state locally
 *   (one event), a `Reserved` one ends it.
 * - Readings: the shared counters are read before the fetch and given back
 *   with the reading (`sync`), so commits made meanwhile by any process stay
 *   counted and only a fetch started after the latest mark ends it; Redis's
 *   answer becomes the view.
 * - `Unknown` (Redis holds no reading: first start, or restarted empty): the
 *   call is decided on the view, and the step asks for a reading to re-seed
 *   Redis (the guard throttles it).
 * - Redis unreachable (`RedisMode` not `shared`): `local-fallback` decides on
 *   the view against this process's share, `(limit − used) / expectedProcesses
 *   − reserved here`; a commit made once Redis is back is added there too.
 *   `fail-closed` refuses with `QuotaUnknown { redisUnavailable: true }`.
 *
 * Provided by {@link layer}; `QuotaGuard.make` also builds it by itself when
 * `RedisQuota` is in its context ({@link fromContext}), which is how
 * `SharedState.layerRedis` shares the guard.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Option, Result } from "effect"
import * as Ledger from "../resilience/QuotaLedger.ts"
import {
  InsufficientQuota,
  InvalidInput,
  QuotaExhausted,
  type QuotaGuardErrorReason,
  QuotaUnknown
} from "../resilience/QuotaModel.ts"
import * as QuotaStore from "../resilience/QuotaStore.ts"
import type { DistributedError } from "./DistributedError.ts"
import { RedisMode } from "./RedisMode.ts"
import { RedisQuota, type ReserveResult, type SharedReservation } from "./RedisQuota.ts"

type Decision = Ledger.Step<QuotaStore.Held | QuotaGuardErrorReason>

/** A reservation held in Redis: settled there (failures left to its lease), commits counted in the view too. */
const heldShared = (
  view: QuotaStore.LedgerCell,
  reservation: SharedReservation,
  keyId: string | undefined
): QuotaStore.Held => {
  let settled = false
  return {
    _tag: "Held",
    cost: reservation.cost,
    keyId,
    settle: (committed) =>
      Effect.gen(function*() {
        if (settled) return Ledger.none
        settled = true
        const unrecorded = (e: DistributedError) =>
          Effect.logDebug(
            `Shared quota: ${
              committed === undefined ? "release" : "commit"
            } not recorded (${e.message}); left to the lease`
          )
        if (committed === undefined) {
          yield* Effect.catch(reservation.release, unrecorded)
          return Ledger.none
        }
        // A commit that cannot reach Redis is lost there until the next reading writes the server's number.
        yield* Effect.catch(reservation.commit(committed), unrecorded)
        view.set(Ledger.settle(view.get(), 0, keyId, committed))
        return Ledger.none
      })
  }
}

/** Redis's answer as the guard's decision; `local` decides on the view when Redis knows nothing. */
const decide = (
  view: QuotaStore.LedgerCell,
  now: number,
  result: SharedReservation | Exclude<ReserveResult, { _tag: "Reserved" }>,
  request: QuotaStore.Request,
  policy: QuotaStore.Policy,
  local: () => Decision
): Decision => {
  const l = view.get()
  switch (result._tag) {
    case "Reserved": {
      // Redis gave credits: the shared state ended an exhaustion (another process's reading).
      const { events } = view.apply(Ledger.recoveredElsewhere(l, now))
      return Ledger.step(heldShared(view, result, request.keyId), events)
    }
    case "Insufficient":
      return Ledger.step(
        new InsufficientQuota({
          needed: request.cost,
          remaining: Math.max(0, result.available),
          percentUsed: Ledger.round1(Ledger.percentOf(l.used ?? 0, l.limit ?? 0))
        })
      )
    case "KeyCapExceeded":
      return Ledger.step(
        new InsufficientQuota({
          needed: request.cost,
          remaining: Math.max(0, result.remaining),
          percentUsed: Ledger.round1(Ledger.percentOf(l.keys.get(result.keyId)?.used ?? 0, request.cap ?? 0)),
          key: result.keyId
        })
      )
    case "Exhausted": {
      // Marked by another process: the view takes it too (state, status, one event).
      const resetAt = result.retryAfterMillis === undefined ? l.resetAt : now + result.retryAfterMillis
      const { events, value: ex } = view.apply(Ledger.exhaustedElsewhere(l, now, resetAt, policy.nextRefreshAt))
      const retryAfter = result.retryAfterMillis ?? Ledger.retryAfterMillis(now, ex, policy.nextRefreshAt)
      return Ledger.step(
        new QuotaExhausted({ resetAt: ex.resetAt ?? l.resetAt, retryAfter: Duration.millis(retryAfter) }),
        events
      )
    }
    case "Unknown":
      // Redis knows nothing about the account: decide on the view, and re-seed Redis with a reading.
      return Ledger.andThen(Ledger.step(undefined, [], "reseed"), local())
  }
}

/** The store over `shared`; `mode` (optional) says when Redis is away and what to do then. */
export const makeWith = (
  shared: RedisQuota["Service"],
  mode: RedisMode["Service"] | undefined
): QuotaStore.SharedStore => {
  const view = QuotaStore.makeCell()
  const failClosed = mode?.mode === "fail-closed"
  const share = Math.max(1, mode?.expectedProcesses ?? 1)
  let fallbackSeq = 0
  /** Whether to ask Redis: the trouble mode does not say it is gone (no command per call during an outage). */
  const up = (): boolean => mode === undefined || mode.stateUnsafe() === "shared"

  /** Decided on the view (the fallback, or a Redis that knows nothing). */
  const reserveLocal = (now: number, request: QuotaStore.Request, policy: QuotaStore.Policy): Decision => {
    const decided = view.apply(Ledger.reserve(view.get(), now, request, policy, share))
    if (decided.value !== undefined) return Ledger.step(decided.value, decided.events, decided.fetch)
    // Spent while Redis was away: if it is back, count the credits there too (a commit of an id Redis does
    // not hold adds to `used`; best effort, the next reading corrects it).
    const onCommit = (committed: number) =>
      up() ? Effect.ignore(shared.commit(`fallback-${++fallbackSeq}`, committed)) : Effect.void
    return Ledger.step(QuotaStore.heldIn(view, request.cost, request.keyId, onCommit), decided.events, decided.fetch)
  }

  const trouble = (now: number, request: QuotaStore.Request, policy: QuotaStore.Policy, detail: string): Decision =>
    failClosed
      ? Ledger.step(
        new QuotaUnknown({
          message: `Shared quota unavailable (Redis unreachable, fail-closed): ${detail}`,
          redisUnavailable: true
        })
      )
      : reserveLocal(now, request, policy)

  const shareReading = (start: { readonly markSeq: number; readonly committed: number } | undefined) =>
  (snap: {
    readonly used: number
    readonly limit: number
    readonly resetAt?: number | undefined
  }) =>
    up()
      ? Effect.map(
        Effect.option(shared.sync({
          used: snap.used,
          limit: snap.limit,
          resetAt: snap.resetAt,
          markSeqAtStart: start?.markSeq,
          committedAtStart: start?.committed
        })),
        (o) => (o._tag === "Some" && o.value.used !== undefined ? o.value : undefined)
      )
      : Effect.succeed(undefined)

  return {
    _tag: "Shared",
    ledger: view.get,
    observe: (now) => view.apply(Ledger.rollover(view.get(), now)),
    reserve: (request, policy) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const rolled = view.apply(Ledger.rollover(view.get(), now))
        if (!up()) {
          return Ledger.andThen(rolled, trouble(now, request, policy, `Redis ${mode?.stateUnsafe() ?? "unavailable"}`))
        }
        const answer = yield* Effect.result(
          shared.reserveScoped({ cost: request.cost, keyId: request.keyId, keyCap: request.cap })
        )
        if (Result.isSuccess(answer)) {
          return Ledger.andThen(
            rolled,
            decide(view, now, answer.success, request, policy, () => reserveLocal(now, request, policy))
          )
        }
        const reason = answer.failure.reason
        return Ledger.andThen(
          rolled,
          reason._tag === "InvalidDistributedRequest"
            ? Ledger.step(new InvalidInput({ field: reason.field, message: reason.message }))
            : trouble(now, request, policy, answer.failure.message)
        )
      }),
    read: (fetch, token, policy) =>
      Effect.gen(function*() {
        // The shared counters before the fetch: a mark or commits after this point are newer than the reading.
        const start = up() ? Option.getOrUndefined(yield* Effect.option(shared.status)) : undefined
        return yield* QuotaStore.readInto(view, fetch, token, policy, shareReading(start))
      }),
    markExhausted: (info, policy) =>
      Effect.gen(function*() {
        if (up()) {
          // Every process fails fast from now on; if Redis cannot be told, this process still does.
          const fromServer = Ledger.isAmount(info?.quota) && Ledger.isAmount(info?.remaining)
          yield* shared.markExhausted({
            resetAt: info?.resetAt !== undefined && Number.isFinite(info.resetAt) ? info.resetAt : view.get().resetAt,
            used: fromServer ? Math.max(0, info!.quota! - info!.remaining!) : undefined,
            limit: fromServer ? info!.quota : undefined
          }).pipe(Effect.catch((e) => Effect.logDebug(`Shared quota: exhausted mark not recorded (${e.message})`)))
        }
        const now = yield* Clock.currentTimeMillis
        return view.apply(Ledger.markExhausted(view.get(), now, info, policy.nextRefreshAt))
      }),
    // When Redis cannot answer, the view stays.
    pull: (policy) =>
      !up() ? Effect.succeed(Ledger.none) : Effect.flatMap(Effect.option(shared.status), (s) =>
        s._tag === "None"
          ? Effect.succeed(Ledger.none)
          : Effect.map(Clock.currentTimeMillis, (now) =>
            view.apply(Ledger.adopt(view.get(), now, s.value, policy.nextRefreshAt))))
  }
}

/** The store over the `RedisQuota` (and, if there, `RedisMode`) in context. */
export const make: Effect.Effect<QuotaStore.SharedStore, never, RedisQuota> = Effect.gen(function*() {
  const shared = yield* RedisQuota
  return makeWith(shared, Option.getOrUndefined(yield* Effect.serviceOption(RedisMode)))
})

/** The store over the `RedisQuota` in context, when there is one (what `QuotaGuard.make` falls back to). */
export const fromContext: Effect.Effect<QuotaStore.SharedStore | undefined> = Effect.gen(function*() {
  const shared = yield* Effect.serviceOption(RedisQuota)
  return shared._tag === "None"
    ? undefined
    : makeWith(shared.value, Option.getOrUndefined(yield* Effect.serviceOption(RedisMode)))
})

/** Provides `QuotaStore` in Redis over `RedisQuota` (`SharedState.layerRedis` provides it, with `RedisMode`). */
export const layer: Layer.Layer<QuotaStore.QuotaStore, never, RedisQuota> = Layer.effect(QuotaStore.QuotaStore, make)
