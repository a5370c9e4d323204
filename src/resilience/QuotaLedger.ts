/**
 * The credit ledger of one account as pure functions: a {@link Ledger} value
 * in, the next one out, with the events the change makes and, for a
 * reservation, the refusal. No clock, no effects: the time is an argument. A
 * store keeps one ledger and applies these functions in one synchronous step
 * each (the memory store's own ledger, or the Redis store's view of the shared
 * numbers), so concurrent calls can never interleave halfway through a change.
 *
 * **Details**
 *
 * - Reserve: a call fits when `cost <= (limit - used) / share - reserved` and,
 *   for a capped key, `cost <= cap - keyUsed - keyReserved`; `share` is 1
 *   except in a shared store's fallback. While exhausted nothing fits; with no
 *   reading yet, `whenUnknown` decides.
 * - Settle: a commit adds to `used` (and the key's usage, and the `committed`
 *   counter); a release only gives the reservation back. Settling once per
 *   reservation is the holder's job (see `QuotaStore`).
 * - Period rollover: once `now` passes the reset time, usage starts from 0,
 *   key usage resets and the exhausted state ends.
 * - Readings: a reading adds the commits made while it was fetched (the
 *   `committed` counter against its {@link Token}), and ends the exhausted
 *   state only when no mark came after its start (the `marks` counter).
 * - Thresholds: {@link crossings} announces each crossing once and re-arms
 *   when usage falls back below it.
 *
 * @since 0.1.0
 */
import { Duration } from "effect"
import {
  type ExhaustionInfo,
  InsufficientQuota,
  type QuotaEvent,
  QuotaExhausted,
  type QuotaGuardErrorReason,
  type QuotaSnapshot,
  QuotaUnknown,
  type Threshold
} from "./QuotaModel.ts"

// ==== Models

/** One key's usage this period. */
export interface KeyUsage {
  readonly used: number
  /** Held by this process's reservations. */
  readonly reserved: number
  /** Held in a shared store by every process, at its last reading (0 in memory). */
  readonly sharedReserved: number
}

/** The exhausted state: since when, and until when if known. */
export interface Exhaustion {
  readonly since: number
  readonly resetAt: number | undefined
}

/** Everything known about the account's credits. */
export interface Ledger {
  readonly used: number | undefined
  readonly limit: number | undefined
  readonly resetAt: number | undefined
  /** Held by this process's reservations. */
  readonly reserved: number
  /** Held in a shared store by every process, at its last reading (0 in memory). */
  readonly sharedReserved: number
  readonly keys: ReadonlyMap<string, KeyUsage>
  readonly exhausted: Exhaustion | undefined
  /** Credits committed so far; only grows. A reading adds what was committed after it started. */
  readonly committed: number
  /** Exhausted marks so far; only grows. A reading started before the latest mark cannot end it. */
  readonly marks: number
}

/** What a reading remembers of the ledger when its fetch starts. */
export interface Token {
  readonly committed: number
  readonly marks: number
}

/** A reading wanted by a change: after a rollover at once, to re-seed a shared store throttled. */
export type Fetch = "period" | "reseed" | undefined

/** The outcome of an operation: its value, the events it made (in order) and a reading it wants. */
export interface Step<A> {
  readonly value: A
  readonly events: ReadonlyArray<QuotaEvent>
  readonly fetch: Fetch
}

/** A {@link Step} with the ledger it leaves. */
export interface Change<A> extends Step<A> {
  readonly ledger: Ledger
}

/** A reading of a shared store, as the local view takes it (`RedisQuota`'s status fits). */
export interface SharedReading {
  readonly used: number | undefined
  readonly limit: number | undefined
  readonly resetAt: number | undefined
  readonly reserved: number
  readonly keys: ReadonlyArray<{ readonly keyId: string; readonly used: number; readonly reserved: number }>
  readonly exhausted: { readonly until: number | undefined } | undefined
}

/** What a reservation decision needs besides the ledger (the guard's settings and refresh state). */
export interface Rules {
  readonly whenUnknown: "allow" | "deny"
  /** When the next subscription check is due (unix ms): no exhaustion is reported to last past it. */
  readonly nextRefreshAt: number
  /** The last refresh error, for the `QuotaUnknown` message. */
  readonly lastError: string | undefined
}

/** Which thresholds were announced (and not cleared since). */
export interface Announced {
  readonly warning: boolean
  readonly alert: boolean
}

// ==== Constructors and helpers

/** Nothing known yet. */
export const empty: Ledger = {
  used: undefined,
  limit: undefined,
  resetAt: undefined,
  reserved: 0,
  sharedReserved: 0,
  keys: new Map(),
  exhausted: undefined,
  committed: 0,
  marks: 0
}

const noEvents: ReadonlyArray<QuotaEvent> = []

/** A step with no events and no reading wanted. */
export const step = <A>(value: A, events: ReadonlyArray<QuotaEvent> = noEvents, fetch: Fetch = undefined): Step<A> => ({
  value,
  events,
  fetch
})

/** The step that did nothing. */
export const none: Step<void> = step(undefined)

/** `first`'s events and reading, then `second`'s. */
export const andThen = <A>(first: Step<unknown>, second: Step<A>): Step<A> =>
  first.events.length === 0 && first.fetch === undefined
    ? second
    : step(second.value, [...first.events, ...second.events], first.fetch ?? second.fetch)

const change = <A>(
  ledger: Ledger,
  value: A,
  events: ReadonlyArray<QuotaEvent> = noEvents,
  fetch: Fetch = undefined
): Change<A> => ({
  ledger,
  value,
  events,
  fetch
})

/** A finite number >= 0. */
export const isAmount = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n) && n >= 0

export const round1 = (n: number): number => Math.round(n * 10) / 10

/** Percent of the limit used; a limit of 0 allows nothing, so it reads as fully used. */
export const percentOf = (used: number, limit: number): number => (limit > 0 ? (used / limit) * 100 : 100)

/** How long an exhaustion will be reported to last: until its reset time or the next check, whichever is first. */
export const retryAfterMillis = (now: number, ex: Exhaustion, nextRefreshAt: number): number =>
  Math.max(0, (ex.resetAt !== undefined ? Math.min(ex.resetAt, nextRefreshAt) : nextRefreshAt) - now)

/** `used / limit` in percent, when both are known. */
export const percentUsed = (l: Ledger): number | undefined =>
  l.used === undefined || l.limit === undefined ? undefined : percentOf(l.used, l.limit)

/** The token a reading takes when its fetch starts. */
export const tokenOf = (l: Ledger): Token => ({ committed: l.committed, marks: l.marks })

const keyOf = (l: Ledger, keyId: string): KeyUsage => l.keys.get(keyId) ?? { used: 0, reserved: 0, sharedReserved: 0 }

const withKey = (keys: ReadonlyMap<string, KeyUsage>, keyId: string, key: KeyUsage): ReadonlyMap<string, KeyUsage> =>
  new Map(keys).set(keyId, key)

const mapKeys = (keys: ReadonlyMap<string, KeyUsage>, f: (k: KeyUsage) => KeyUsage): ReadonlyMap<string, KeyUsage> => {
  const out = new Map<string, KeyUsage>()
  for (const [keyId, k] of keys) out.set(keyId, f(k))
  return out
}

const exhaustedEvent = (now: number, ex: Exhaustion, nextRefreshAt: number): QuotaEvent => ({
  _tag: "Exhausted",
  at: now,
  resetAt: ex.resetAt,
  retryAfterMillis: retryAfterMillis(now, ex, nextRefreshAt)
})

// ==== Transitions

/** The reset time that ends the period (or the exhaustion), once `now` reaches it. */
const dueAt = (l: Ledger): number | undefined => l.exhausted?.resetAt ?? l.resetAt

/**
 * Rolls the period over once `now` passes the reset time: usage from 0 (until a reading says otherwise), key
 * usage reset, the exhausted state ended. Wants a reading to learn the new numbers.
 */
export const rollover = (l: Ledger, now: number): Change<void> => {
  const resetAt = dueAt(l)
  if (resetAt === undefined || now < resetAt) return change(l, undefined)
  const events: Array<QuotaEvent> = [{ _tag: "PeriodReset", at: now, resetAt }]
  if (l.exhausted !== undefined) events.push({ _tag: "Recovered", at: now, by: "reset-time" })
  const ledger: Ledger = {
    ...l,
    used: l.used === undefined ? undefined : 0,
    resetAt: undefined,
    keys: mapKeys(l.keys, (k) => ({ ...k, used: 0 })),
    exhausted: undefined
  }
  return change(ledger, undefined, events, "period")
}

/** Why `cost` does not fit, if it does not. */
const refusal = (
  l: Ledger,
  now: number,
  cost: number,
  keyId: string | undefined,
  cap: number | undefined,
  rules: Rules,
  share: number
): QuotaGuardErrorReason | undefined => {
  const ex = l.exhausted
  if (ex !== undefined) {
    return new QuotaExhausted({
      resetAt: ex.resetAt ?? l.resetAt,
      retryAfter: Duration.millis(retryAfterMillis(now, ex, rules.nextRefreshAt))
    })
  }
  if (l.used === undefined || l.limit === undefined) {
    if (rules.whenUnknown === "deny") {
      const detail = rules.lastError === undefined ? "" : ` (${rules.lastError})`
      return new QuotaUnknown({ message: `No subscription snapshot yet${detail}` })
    }
  } else {
    const remaining = (l.limit - l.used) / share - l.reserved
    if (cost > remaining) {
      return new InsufficientQuota({
        needed: cost,
        remaining: Math.max(0, remaining),
        percentUsed: round1(percentOf(l.used, l.limit))
      })
    }
  }
  if (keyId !== undefined && cap !== undefined) {
    const key = keyOf(l, keyId)
    const remaining = cap - key.used - key.reserved
    if (cost > remaining) {
      return new InsufficientQuota({
        needed: cost,
        remaining: Math.max(0, remaining),
        percentUsed: round1(percentOf(key.used, cap)),
        key: keyId
      })
    }
  }
  return undefined
}

/**
 * Reserves `cost` credits (against `keyId`'s `cap` too, when given), after rolling the period over if due.
 * The value is the refusal, or `undefined` when the credits are now held. `share` divides what is left
 * between the processes of a shared store in fallback (1 otherwise).
 */
export const reserve = (
  l: Ledger,
  now: number,
  request: { readonly cost: number; readonly keyId: string | undefined; readonly cap: number | undefined },
  rules: Rules,
  share = 1
): Change<QuotaGuardErrorReason | undefined> => {
  const rolled = rollover(l, now)
  const current = rolled.ledger
  const { cap, cost, keyId } = request
  const refused = refusal(current, now, cost, keyId, cap, rules, share)
  if (refused !== undefined) return change(current, refused, rolled.events, rolled.fetch)
  const key = keyId === undefined ? undefined : keyOf(current, keyId)
  const ledger: Ledger = {
    ...current,
    reserved: current.reserved + cost,
    keys: key === undefined ? current.keys : withKey(current.keys, keyId!, { ...key, reserved: key.reserved + cost })
  }
  return change(ledger, undefined, rolled.events, rolled.fetch)
}

/**
 * Ends a reservation of `cost` credits: `committed` of them spent, or none (`undefined`, a release). A
 * reservation held elsewhere (a shared store) settles with `cost` 0: only the commit is counted here.
 */
export const settle = (l: Ledger, cost: number, keyId: string | undefined, committed: number | undefined): Ledger => {
  const spent = committed ?? 0
  const key = keyId === undefined ? undefined : l.keys.get(keyId)
  return {
    ...l,
    reserved: l.reserved - cost,
    used: l.used === undefined ? undefined : l.used + spent,
    committed: l.committed + spent,
    keys: key === undefined
      ? l.keys
      : withKey(l.keys, keyId!, { ...key, reserved: key.reserved - cost, used: key.used + spent })
  }
}

/**
 * Enters the exhausted state after a `quota_exceeded` answer (announced once: marking again while
 * exhausted publishes nothing). The server's own quota and remaining credits, when given, replace the numbers.
 */
export const markExhausted = (
  l: Ledger,
  now: number,
  info: ExhaustionInfo | undefined,
  nextRefreshAt: number
): Change<void> => {
  const fromServer = isAmount(info?.quota) && isAmount(info?.remaining)
  const exhausted: Exhaustion = {
    since: now,
    resetAt: info?.resetAt !== undefined && Number.isFinite(info.resetAt) ? info.resetAt : l.resetAt
  }
  const ledger: Ledger = {
    ...l,
    limit: fromServer ? info!.quota : l.limit,
    used: fromServer ? Math.max(0, info!.quota! - info!.remaining!) : l.used,
    exhausted,
    marks: l.marks + 1
  }
  return change(
    ledger,
    undefined,
    l.exhausted === undefined ? [exhaustedEvent(now, exhausted, nextRefreshAt)] : noEvents
  )
}

/**
 * A shared store says the account is exhausted (a mark by another process): the local view follows, and
 * announces it once. The value is the exhaustion now in force.
 */
export const exhaustedElsewhere = (
  l: Ledger,
  now: number,
  resetAt: number | undefined,
  nextRefreshAt: number
): Change<Exhaustion> => {
  if (l.exhausted !== undefined) return change(l, l.exhausted)
  const exhausted: Exhaustion = { since: now, resetAt }
  return change({ ...l, exhausted, marks: l.marks + 1 }, exhausted, [exhaustedEvent(now, exhausted, nextRefreshAt)])
}

/** A shared store says there are credits: an exhaustion the local view still holds has ended. */
export const recoveredElsewhere = (l: Ledger, now: number): Change<void> =>
  l.exhausted === undefined
    ? change(l, undefined)
    : change({ ...l, exhausted: undefined }, undefined, [{ _tag: "Recovered", at: now, by: "refresh" }])

/**
 * Takes a shared store's reading as the local view: numbers, every process's reservations, key usage, and
 * the exhausted state (entered or ended, with its event). A reading that knows nothing changes nothing.
 */
export const adopt = (l: Ledger, now: number, s: SharedReading, nextRefreshAt: number): Change<void> => {
  // A store that knows nothing (restarted without persistence) says nothing about the account.
  if (s.used === undefined || s.limit === undefined) return change(l, undefined)
  const keys = new Map<string, KeyUsage>(mapKeys(l.keys, (k) => ({ ...k, sharedReserved: 0 })))
  for (const k of s.keys) keys.set(k.keyId, { ...keyOf(l, k.keyId), used: k.used, sharedReserved: k.reserved })
  const resetAt = s.resetAt ?? l.resetAt
  const next: Ledger = { ...l, used: s.used, limit: s.limit, resetAt, sharedReserved: s.reserved, keys }
  const ended = s.exhausted === undefined
    ? recoveredElsewhere(next, now)
    : exhaustedElsewhere(next, now, s.exhausted.until ?? resetAt, nextRefreshAt)
  return change(ended.ledger, undefined, ended.events)
}

/**
 * A subscription reading, taken at `now` by a fetch that started at `token`. A later reset time starts a
 * new period. Without `shared`, the reading's `used` plus the commits made since the token becomes `used`,
 * and it ends the exhausted state when no mark came after the token and it shows credits left (or a new
 * period began). With `shared` (what a shared store answered after being given the reading), that becomes
 * the local view instead.
 */
export const applyReading = (
  l: Ledger,
  now: number,
  snap: QuotaSnapshot,
  token: Token,
  nextRefreshAt: number,
  shared?: SharedReading | undefined
): Change<void> => {
  // A reset time already past says nothing about the next one (and would roll the period over on every tick).
  const resetAt = snap.resetAt !== undefined && snap.resetAt > now ? snap.resetAt : undefined
  const newPeriod = l.resetAt !== undefined && resetAt !== undefined && resetAt > l.resetAt
  const events: Array<QuotaEvent> = newPeriod ? [{ _tag: "PeriodReset", at: now, resetAt: l.resetAt }] : []
  events.push({ _tag: "Refreshed", at: now, snapshot: snap })
  const keys = newPeriod ? mapKeys(l.keys, (k) => ({ ...k, used: 0 })) : l.keys
  const base: Ledger = { ...l, resetAt, keys }
  if (shared !== undefined) {
    const adopted = adopt(base, now, shared, nextRefreshAt)
    return change(adopted.ledger, undefined, [...events, ...adopted.events])
  }
  const used = snap.used + (l.committed - token.committed)
  const recovers = l.exhausted !== undefined && (newPeriod || (token.marks === l.marks && snap.limit - used > 0))
  if (recovers) events.push({ _tag: "Recovered", at: now, by: "refresh" })
  return change({ ...base, used, limit: snap.limit, exhausted: recovers ? undefined : l.exhausted }, undefined, events)
}

// ==== Thresholds

/**
 * Re-evaluates both thresholds against the ledger: each crossing is announced once, and a threshold is
 * re-armed (`ThresholdCleared`) when usage falls back below it. `undefined` when nothing changed.
 */
export const crossings = (
  announced: Announced,
  l: Ledger,
  now: number,
  percents: { readonly warning: number; readonly alert: number }
): { readonly announced: Announced; readonly events: ReadonlyArray<QuotaEvent> } | undefined => {
  const pct = percentUsed(l)
  if (pct === undefined) return undefined
  const warning = pct >= percents.warning
  const alert = pct >= percents.alert
  if (warning === announced.warning && alert === announced.alert) return undefined
  const events: Array<QuotaEvent> = []
  const check = (threshold: Threshold, above: boolean, was: boolean) => {
    if (above !== was) {
      events.push({ _tag: above ? "ThresholdCrossed" : "ThresholdCleared", at: now, threshold, percentUsed: pct })
    }
  }
  check("warning", warning, announced.warning)
  check("alert", alert, announced.alert)
  return { announced: { warning, alert }, events }
}
