/**
 * The credit-aware quota guard: every call reserves what it will cost before
 * it is sent, and fails at once, with no request, when the credits are not
 * there or the account is known to be out of quota.
 *
 * **Details**
 *
 * - Subscription cache: `used`, `limit` and the reset time come from a
 *   {@link SubscriptionSource} (the composition adapts `/v1/user/subscription`
 *   to it with {@link snapshotFromSubscription}). A background fiber refreshes
 *   it every `refreshInterval` (60 s); {@link QuotaGuard.refresh} refreshes on
 *   demand. Only one fetch runs at a time: concurrent callers join it. A
 *   failed refresh keeps the last snapshot and reports its age.
 * - Reservations: a call reserves its cost against `limit - used - reserved`
 *   (and against its key's cap, when it names a key that has one). Success
 *   commits the `character-cost` header's value, or the estimate; failure and
 *   interruption release. Every change is one synchronous step on the guard's
 *   state, so concurrent reservations can never overspend.
 * - Thresholds: crossing `warningPercent` (80) logs at Warning and publishes
 *   an event; crossing `alertPercent` (90) logs at Error and publishes an
 *   event. Each is announced once per crossing and re-armed when usage falls
 *   back below it (a new period).
 * - Exhausted state: after a `quota_exceeded` answer ({@link QuotaGuard.markExhausted},
 *   which {@link QuotaGuard.guard} calls by itself) every call fails fast with
 *   `QuotaExhausted` until the reset time passes or a subscription fetched
 *   after the mark shows credits left.
 * - Per-key budgets: an optional cap per API key id (never the key itself),
 *   counted locally from the commits of this guard and reset with the period.
 * - Shared across processes: when `RedisQuota` (src/distributed/RedisQuota.ts)
 *   is in the context `make` runs in (`SharedState.layerRedis` provides it,
 *   with `RedisMode`), reservations, commits, per-key usage and the exhausted
 *   state live in Redis (leased, so a crashed process's reservations expire);
 *   refreshes `sync` their reading there, and thresholds, events and `status`
 *   work from the local view of the shared numbers. Redis unreachable:
 *   `local-fallback` decides on that local view (this process's share),
 *   `fail-closed` fails with `QuotaUnknown { redisUnavailable: true }`.
 *
 * **Gotchas**
 *
 * - Commits made while a refresh is in flight are added on top of the fetched
 *   `used`: the server may already count them, so `used` can be over-estimated
 *   until the next refresh. That errs on the side of not overspending.
 * - In memory, per-key usage is what this guard committed; spending of the
 *   same key by other processes is seen only with the Redis store.
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
import { Clock, Context, Deferred, Duration, Effect, Exit, Layer, Option, PubSub, Schema, Scope, Stream } from "effect"
import { ElevenLabsError, InvalidResponse, isElevenLabsError } from "../client/Errors.ts"
import type { DistributedError } from "../distributed/DistributedError.ts"
import { RedisMode } from "../distributed/RedisMode.ts"
import { RedisQuota, type SharedQuotaStatus, type SharedReservation } from "../distributed/RedisQuota.ts"
import * as Cost from "./Cost.ts"
import * as Deadline from "./Deadline.ts"

// ==== Subscription source

/**
 * What the guard needs to know about the account: credits used and allowed in
 * the current period, and when the period resets (unix milliseconds).
 */
export interface QuotaSnapshot {
  readonly used: number
  readonly limit: number
  readonly resetAt?: number | undefined
}

/**
 * Where snapshots come from. The composition adapts the client's
 * `/v1/user/subscription` to it; tests give a scripted effect.
 */
export class SubscriptionSource extends Context.Service<
  SubscriptionSource,
  { readonly fetch: Effect.Effect<QuotaSnapshot, ElevenLabsError> }
>()("elevenlabs-resilience/QuotaGuard/SubscriptionSource") {}

/** A {@link SubscriptionSource} layer from an effect that fetches a snapshot. */
export const layerSource = (fetch: Effect.Effect<QuotaSnapshot, ElevenLabsError>): Layer.Layer<SubscriptionSource> =>
  Layer.succeed(SubscriptionSource, SubscriptionSource.of({ fetch }))

/** The fields of `/v1/user/subscription` the guard reads (snake_case, as on the wire). */
export interface SubscriptionFields {
  readonly character_count: number
  readonly character_limit: number
  /** Unix seconds. */
  readonly next_character_count_reset_unix?: number | null | undefined
}

/** Adapts a `/v1/user/subscription` answer to a {@link QuotaSnapshot} (the reset time from seconds to ms). */
export const snapshotFromSubscription = (s: SubscriptionFields): QuotaSnapshot => ({
  used: s.character_count,
  limit: s.character_limit,
  resetAt: s.next_character_count_reset_unix == null ? undefined : s.next_character_count_reset_unix * 1000
})

// ==== Errors

/** The call costs more than is left, on the account or on its key's cap. No request was made. */
export class InsufficientQuota extends Schema.Error<InsufficientQuota>("elevenlabs-resilience/QuotaGuard/InsufficientQuota")({
  _tag: Schema.tag("InsufficientQuota"),
  /** Credits the call needs. */
  needed: Schema.Number,
  /** Credits left (limit - used - reserved), on the account or on the key when `key` is set. */
  remaining: Schema.Number,
  /** Percent of the limit used (committed), one decimal. */
  percentUsed: Schema.Number,
  /** The key id whose cap refused the call; absent when the account's limit did. */
  key: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const where = this.key === undefined ? "" : ` on key ${this.key}`
    return `Insufficient quota${where}: need ${this.needed} credits, ${this.remaining} remaining (${this.percentUsed}% used)`
  }
}

/** The account is out of quota (ElevenLabs said `quota_exceeded`); calls resume at `resetAt` or after `retryAfter`. */
export class QuotaExhausted extends Schema.Error<QuotaExhausted>("elevenlabs-resilience/QuotaGuard/QuotaExhausted")({
  _tag: Schema.tag("QuotaExhausted"),
  /** When the period resets (unix ms), when known. */
  resetAt: Schema.optional(Schema.Number),
  /** How long until calls may resume: until `resetAt`, or until the next subscription check. */
  retryAfter: Schema.optional(Schema.DurationFromMillis)
}) {
  override get message(): string {
    const after = this.retryAfter === undefined ? "" : ` Calls resume in ${Duration.format(this.retryAfter)}`
    const at = this.resetAt === undefined ? "" : ` (reset at ${new Date(this.resetAt).toISOString()})`
    return `Quota exhausted.${after}${at}`.trim()
  }
}

/**
 * The guard cannot know what is left: no subscription snapshot could be fetched
 * yet and the guard is configured with `whenUnknown: "deny"`, or (with
 * `redisUnavailable: true`) the shared quota is in Redis, Redis cannot be
 * reached and the trouble mode is `fail-closed`.
 */
export class QuotaUnknown extends Schema.Error<QuotaUnknown>("elevenlabs-resilience/QuotaGuard/QuotaUnknown")({
  _tag: Schema.tag("QuotaUnknown"),
  message: Schema.String,
  /** Set when the cause is the shared store: Redis unreachable in `fail-closed` mode (a transient condition). */
  redisUnavailable: Schema.optional(Schema.Boolean)
}) {}

/** A cost, cap or option that cannot be used (negative, not a number, thresholds out of order). */
export class InvalidInput extends Schema.Error<InvalidInput>("elevenlabs-resilience/QuotaGuard/InvalidInput")({
  _tag: Schema.tag("InvalidInput"),
  field: Schema.String,
  message: Schema.String
}) {}

/** Every reason the guard refuses a call. */
export type QuotaGuardErrorReason = InsufficientQuota | QuotaExhausted | QuotaUnknown | InvalidInput

/** Schema of {@link QuotaGuardErrorReason}. */
export const QuotaGuardErrorReason = Schema.Union([InsufficientQuota, QuotaExhausted, QuotaUnknown, InvalidInput])

/** Runtime type identifier of {@link QuotaGuardError}. */
export const ErrorTypeId = "~elevenlabs-resilience/QuotaGuardError" as const
export type ErrorTypeId = typeof ErrorTypeId

/** The one error of the guard: a call refused before any request was made. */
export class QuotaGuardError extends Schema.Error<QuotaGuardError>("elevenlabs-resilience/QuotaGuardError")({
  _tag: Schema.tag("QuotaGuardError"),
  reason: QuotaGuardErrorReason
}) {
  readonly [ErrorTypeId]: ErrorTypeId = ErrorTypeId

  override get message(): string {
    return this.reason.message
  }

  /** When calls may resume, for `QuotaExhausted`. */
  get retryAfter(): Duration.Duration | undefined {
    return this.reason._tag === "QuotaExhausted" ? this.reason.retryAfter : undefined
  }
}

/** Guard for {@link QuotaGuardError}. */
export const isQuotaGuardError = (u: unknown): u is QuotaGuardError =>
  typeof u === "object" && u !== null && ErrorTypeId in u

const fail = (reason: QuotaGuardErrorReason) => Effect.fail(new QuotaGuardError({ reason }))

// ==== Models

/** Health of the quota, for telemetry: `unknown` until the first snapshot. */
export type QuotaState = "unknown" | "ok" | "warning" | "alert" | "exhausted"

/** The two thresholds. */
export type Threshold = "warning" | "alert"

/** What happened to the quota; published on {@link QuotaGuard.events}. Times are unix ms. */
export type QuotaEvent =
  | { readonly _tag: "Refreshed"; readonly at: number; readonly snapshot: QuotaSnapshot }
  | {
    readonly _tag: "RefreshFailed"
    readonly at: number
    readonly error: string
    /** Age of the snapshot kept, when there is one. */
    readonly snapshotAgeMillis: number | undefined
  }
  | { readonly _tag: "ThresholdCrossed"; readonly at: number; readonly threshold: Threshold; readonly percentUsed: number }
  | { readonly _tag: "ThresholdCleared"; readonly at: number; readonly threshold: Threshold; readonly percentUsed: number }
  | {
    readonly _tag: "Exhausted"
    readonly at: number
    readonly resetAt: number | undefined
    readonly retryAfterMillis: number | undefined
  }
  | { readonly _tag: "Recovered"; readonly at: number; readonly by: "reset-time" | "refresh" }
  | { readonly _tag: "PeriodReset"; readonly at: number; readonly resetAt: number | undefined }

/** One key's budget, as reported by {@link QuotaGuard.status}. */
export interface KeyStatus {
  readonly keyId: string
  readonly cap: number | undefined
  readonly used: number
  readonly reserved: number
  /** `cap - used - reserved`, when there is a cap. */
  readonly remaining: number | undefined
}

/** A point-in-time view of the guard, for health checks and metrics. */
export interface QuotaStatus {
  readonly state: QuotaState
  /** Credits used this period: the last snapshot plus what this guard committed since. */
  readonly used: number | undefined
  readonly limit: number | undefined
  /** Credits held by calls in flight. */
  readonly reserved: number
  /** `limit - used - reserved`, never below 0. */
  readonly remaining: number | undefined
  /** `used / limit` in percent (can pass 100 with usage-based billing). */
  readonly percentUsed: number | undefined
  readonly resetAt: number | undefined
  /** When the last successful refresh happened. */
  readonly fetchedAt: number | undefined
  /** How old the snapshot is, in ms. */
  readonly snapshotAgeMillis: number | undefined
  /** The last refresh error since the last success. */
  readonly lastRefreshError: string | undefined
  readonly nextRefreshAt: number
  readonly exhausted: { readonly since: number; readonly resetAt: number | undefined; readonly retryAfterMillis: number } | undefined
  readonly keys: ReadonlyArray<KeyStatus>
}

/**
 * What the server said with its `quota_exceeded` answer. The `QuotaExceeded`
 * reason of `ElevenLabsError` fits this shape as it is.
 */
export interface ExhaustionInfo {
  /** The period's quota. */
  readonly quota?: number | undefined
  /** Credits left. */
  readonly remaining?: number | undefined
  /** Credits the refused request needed. */
  readonly required?: number | undefined
  /** When the period resets (unix ms), if known from elsewhere. */
  readonly resetAt?: number | undefined
}

/** Options of {@link QuotaGuard.reserve} and {@link QuotaGuard.guard}. */
export interface ReserveOptions {
  /** The API key's id (never the key), to count against its cap. */
  readonly keyId?: string | undefined
}

/** Options of {@link QuotaGuard.guard}. */
export interface GuardOptions<A> extends ReserveOptions {
  /** The credits actually charged, read from the result (the `character-cost` header); the estimate when `undefined`. */
  readonly actualCost?: ((a: A) => number | undefined) | undefined
}

/**
 * Credits held for one call. Commit once the call succeeded; release (or let
 * the scope close) otherwise. Both are idempotent: only the first settles.
 */
export interface Reservation {
  readonly cost: number
  readonly keyId: string | undefined
  /** Count the call as spent: `actual` (the `character-cost` header) when valid, else the reserved estimate. */
  readonly commit: (actual?: number | undefined) => Effect.Effect<void>
  /** Give the credits back. */
  readonly release: Effect.Effect<void>
}

/** Options of {@link make}; every one has a default. */
export interface Options {
  /** How often the subscription is refreshed. Default 60 seconds. */
  readonly refreshInterval?: Duration.Input | undefined
  /** Warning threshold, percent used. Default 80. */
  readonly warningPercent?: number | undefined
  /** Alert threshold, percent used. Default 90. */
  readonly alertPercent?: number | undefined
  /** Credit multipliers per model id (from `/v1/models`). Default none: the built-in table. */
  readonly multipliers?: Cost.Multipliers | undefined
  /** Credit caps per API key id. Default none. */
  readonly keyCaps?: Readonly<Record<string, number>> | undefined
  /**
   * What to do while no snapshot was ever fetched (the first fetch failed, or
   * the key lacks `user_read`): `"allow"` lets calls through (the server still
   * enforces its quota; key caps still apply), `"deny"` fails them with
   * `QuotaUnknown`. Default `"allow"`.
   */
  readonly whenUnknown?: "allow" | "deny" | undefined
  /** Events kept for a slow subscriber before the oldest are dropped. Default 256. */
  readonly eventBuffer?: number | undefined
}

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
}

/** The tag of {@link QuotaGuard}. */
export const QuotaGuard = Context.Service<QuotaGuard>("elevenlabs-resilience/QuotaGuard")

// ==== Constructor

interface KeyBudget {
  cap: number | undefined
  used: number
  /** Held by this guard's local reservations (memory mode, or Redis fallback). */
  reserved: number
  /** Held in Redis by every process, at the last shared reading. */
  sharedReserved: number
}

interface Exhaustion {
  since: number
  resetAt: number | undefined
  /** The fetch sequence number at the mark: only a fetch started later may end it. */
  fetchSeqAtMark: number
}

interface State {
  used: number | undefined
  limit: number | undefined
  resetAt: number | undefined
  fetchedAt: number | undefined
  lastError: string | undefined
  reserved: number
  keys: Map<string, KeyBudget>
  exhausted: Exhaustion | undefined
  announced: { warning: boolean; alert: boolean }
  inflight: Deferred.Deferred<QuotaSnapshot, ElevenLabsError> | undefined
  fetchSeq: number
  commitsDuringFetch: number
  nextRefreshAt: number
  multipliers: Cost.Multipliers
  /** Credits held in Redis by every process, at the last shared reading (0 in memory mode). */
  sharedReserved: number
  /** When a fetch was last started to re-seed a Redis that knows nothing (after a Redis restart). */
  reseedAt: number
}

const isAmount = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n) && n >= 0

const round1 = (n: number): number => Math.round(n * 10) / 10

/** Percent of the limit used; a limit of 0 allows nothing, so it reads as fully used. */
const percentOf = (used: number, limit: number): number => (limit > 0 ? (used / limit) * 100 : 100)

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

/**
 * A reservation in this process's memory: one object, settled once (its `settle` is the guard's). A class
 * rather than closures: a call waiting in a queue holds it.
 */
class LocalReservation implements Reservation {
  /** Nothing (more) to give back: true until the credits are reserved, and again once settled. */
  settled = true
  readonly cost: number
  readonly keyId: string | undefined
  readonly settle: (r: LocalReservation, committed: number | undefined) => Effect.Effect<void>
  constructor(
    cost: number,
    keyId: string | undefined,
    settle: (r: LocalReservation, committed: number | undefined) => Effect.Effect<void>
  ) {
    this.cost = cost
    this.keyId = keyId
    this.settle = settle
  }
  commit(actual?: number | undefined): Effect.Effect<void> {
    return this.settle(this, isAmount(actual) ? actual : this.cost)
  }
  get release(): Effect.Effect<void> {
    return this.settle(this, undefined)
  }
}

const invalid = (field: string, message: string) => fail(new InvalidInput({ field, message }))

/**
 * Build a guard. Needs a {@link SubscriptionSource} and a `Scope` (the
 * background refresher lives as long as it); fails with `InvalidInput` on
 * options out of range.
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const source = yield* SubscriptionSource
  const scope = yield* Effect.scope
  // The shared store, when the Redis layer is in context: reservations, commits and the exhausted state live there.
  const shared = Option.getOrUndefined(yield* Effect.serviceOption(RedisQuota))
  const redisMode = Option.getOrUndefined(yield* Effect.serviceOption(RedisMode))
  const failClosed = redisMode?.mode === "fail-closed"
  // In fallback each process takes this share of what was left at the last shared reading.
  const share = Math.max(1, redisMode?.expectedProcesses ?? 1)
  let fallbackSeq = 0
  const intervalInput = Duration.fromInput(options.refreshInterval ?? "60 seconds")
  const interval = intervalInput._tag === "Some" ? Duration.toMillis(intervalInput.value) : Number.NaN
  const warningPercent = options.warningPercent ?? 80
  const alertPercent = options.alertPercent ?? 90
  const whenUnknown = options.whenUnknown ?? "allow"
  if (!(interval > 0)) return yield* invalid("refreshInterval", "must be a positive duration")
  if (!isAmount(warningPercent) || !isAmount(alertPercent) || warningPercent > alertPercent) {
    return yield* invalid("warningPercent", "thresholds must be non-negative numbers with warningPercent <= alertPercent")
  }
  const keys = new Map<string, KeyBudget>()
  for (const [keyId, cap] of Object.entries(options.keyCaps ?? {})) {
    if (!isAmount(cap)) return yield* invalid(`keyCaps.${keyId}`, "a cap must be a non-negative number")
    keys.set(keyId, { cap, used: 0, reserved: 0, sharedReserved: 0 })
  }
  const eventBuffer = options.eventBuffer ?? 256
  if (!Number.isInteger(eventBuffer) || eventBuffer < 1) {
    return yield* invalid("eventBuffer", "must be a positive integer")
  }
  const pubsub = yield* PubSub.sliding<QuotaEvent>(eventBuffer)
  const now0 = yield* Clock.currentTimeMillis

  // All state lives here and is changed only inside synchronous steps, so two
  // fibers can never interleave halfway through a reservation.
  const st: State = {
    used: undefined,
    limit: undefined,
    resetAt: undefined,
    fetchedAt: undefined,
    lastError: undefined,
    reserved: 0,
    keys,
    exhausted: undefined,
    announced: { warning: false, alert: false },
    inflight: undefined,
    fetchSeq: 0,
    commitsDuringFetch: 0,
    nextRefreshAt: now0,
    multipliers: { ...(options.multipliers ?? {}) },
    sharedReserved: 0,
    reseedAt: Number.NEGATIVE_INFINITY
  }

  const emit = (events: ReadonlyArray<QuotaEvent>): Effect.Effect<void> =>
    events.length === 0
      ? Effect.void
      : Effect.forEach(events, (e) => Effect.andThen(logEvent(e), PubSub.publish(pubsub, e)), { discard: true })

  const logEvent = (e: QuotaEvent): Effect.Effect<void> => {
    switch (e._tag) {
      case "ThresholdCrossed": {
        const text = `ElevenLabs quota ${e.threshold}: ${round1(e.percentUsed)}% used (${st.used ?? "?"} of ${
          st.limit ?? "?"
        } credits)`
        return e.threshold === "alert" ? Effect.logError(text) : Effect.logWarning(text)
      }
      case "Exhausted":
        return Effect.logError(
          `ElevenLabs quota exhausted; calls fail fast${
            e.retryAfterMillis === undefined ? "" : ` for ${Duration.format(Duration.millis(e.retryAfterMillis))}`
          }`
        )
      case "RefreshFailed":
        return Effect.logWarning(
          `ElevenLabs subscription refresh failed (${e.error}); keeping a snapshot ${
            e.snapshotAgeMillis === undefined ? "(none yet)" : `${e.snapshotAgeMillis} ms old`
          }`
        )
      case "Recovered":
        return Effect.logInfo(`ElevenLabs quota available again (${e.by})`)
      default:
        return Effect.void
    }
  }

  /** Re-evaluates both thresholds; announces each crossing once and re-arms when usage falls back. */
  const thresholdEvents = (now: number): Array<QuotaEvent> => {
    if (st.used === undefined || st.limit === undefined) return []
    const pct = percentOf(st.used, st.limit)
    const out: Array<QuotaEvent> = []
    for (const [threshold, at] of [["warning", warningPercent], ["alert", alertPercent]] as const) {
      if (pct >= at && !st.announced[threshold]) {
        st.announced[threshold] = true
        out.push({ _tag: "ThresholdCrossed", at: now, threshold, percentUsed: pct })
      } else if (pct < at && st.announced[threshold]) {
        st.announced[threshold] = false
        out.push({ _tag: "ThresholdCleared", at: now, threshold, percentUsed: pct })
      }
    }
    return out
  }

  const resetKeys = () => {
    for (const k of st.keys.values()) k.used = 0
  }

  /**
   * Rolls the period over once the clock passes the reset time: usage starts
   * from 0 (until a refresh says otherwise), key budgets reset, the exhausted
   * state ends. Returns whether a refresh should be started to learn the new numbers.
   */
  const rolloverStep = (now: number, out: Array<QuotaEvent>): boolean => {
    const resetAt = st.exhausted?.resetAt ?? st.resetAt
    if (resetAt === undefined || now < resetAt) return false
    if (st.used !== undefined) st.used = 0
    st.resetAt = undefined
    resetKeys()
    out.push({ _tag: "PeriodReset", at: now, resetAt })
    if (st.exhausted !== undefined) {
      st.exhausted = undefined
      out.push({ _tag: "Recovered", at: now, by: "reset-time" })
    }
    out.push(...thresholdEvents(now))
    return true
  }

  const retryAfterMillis = (now: number, ex: Exhaustion): number =>
    Math.max(0, (ex.resetAt !== undefined ? Math.min(ex.resetAt, st.nextRefreshAt) : st.nextRefreshAt) - now)

  // ---- the shared store (Redis), when present

  /** Whether to ask Redis: there is a store and the trouble mode does not say Redis is gone. */
  const sharedUp = (): boolean => shared !== undefined && (redisMode === undefined || redisMode.stateUnsafe() === "shared")

  /** Takes a shared reading as the local view (for thresholds, events, `status`, and the fallback). */
  const applyShared = (s: SharedQuotaStatus, now: number, out: Array<QuotaEvent>): void => {
    // A Redis that knows nothing (restarted without persistence) says nothing about the account.
    if (s.used === undefined || s.limit === undefined) return
    st.used = s.used
    st.limit = s.limit
    if (s.resetAt !== undefined) st.resetAt = s.resetAt
    st.sharedReserved = s.reserved
    for (const k of st.keys.values()) k.sharedReserved = 0
    for (const k of s.keys) {
      const key = st.keys.get(k.keyId) ?? { cap: undefined, used: 0, reserved: 0, sharedReserved: 0 }
      key.used = k.used
      key.sharedReserved = k.reserved
      st.keys.set(k.keyId, key)
    }
    if (s.exhausted !== undefined && st.exhausted === undefined) {
      st.exhausted = { since: now, resetAt: s.exhausted.until ?? st.resetAt, fetchSeqAtMark: st.fetchSeq }
      out.push({ _tag: "Exhausted", at: now, resetAt: st.exhausted.resetAt, retryAfterMillis: retryAfterMillis(now, st.exhausted) })
    } else if (s.exhausted === undefined && st.exhausted !== undefined) {
      st.exhausted = undefined
      out.push({ _tag: "Recovered", at: now, by: "refresh" })
    }
    out.push(...thresholdEvents(now))
  }

  /** Reads the shared status into the local view; when Redis cannot answer, the local view stays. */
  const pullShared: Effect.Effect<void> = Effect.suspend(() => {
    if (shared === undefined || !sharedUp()) return Effect.void
    return Effect.flatMap(Effect.option(shared.status), (s) =>
      s._tag === "None" ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const out: Array<QuotaEvent> = []
        applyShared(s.value, now, out)
        return emit(out)
      }))
  })

  // ---- refresh (single-flight)

  const validSnapshot = (snap: QuotaSnapshot): boolean =>
    isAmount(snap.used) && isAmount(snap.limit) && (snap.resetAt === undefined || Number.isFinite(snap.resetAt))

  const settleFetch = (seq: number, start: SharedQuotaStatus | undefined, exit: Exit.Exit<QuotaSnapshot, ElevenLabsError>) =>
    Effect.gen(function*() {
      // With a shared store the reading goes to Redis first; the answer (which adds the commits made
      // meanwhile by every process, and keeps a newer exhausted mark) becomes the local view.
      let synced: SharedQuotaStatus | undefined
      if (shared !== undefined && Exit.isSuccess(exit) && validSnapshot(exit.value) && sharedUp()) {
        const snap = exit.value
        const r = yield* Effect.option(shared.sync({
          used: snap.used,
          limit: snap.limit,
          resetAt: snap.resetAt,
          markSeqAtStart: start?.markSeq,
          committedAtStart: start?.committed
        }))
        if (r._tag === "Some" && r.value.used !== undefined) synced = r.value
      }
      const now = yield* Clock.currentTimeMillis
      const out: Array<QuotaEvent> = []
      let result: Exit.Exit<QuotaSnapshot, ElevenLabsError> = exit
      if (Exit.isSuccess(exit)) {
        const snap = exit.value
        if (!validSnapshot(snap)) {
          result = Exit.fail(
            new ElevenLabsError({
              reason: new InvalidResponse({
                operation: "quotaGuard.refresh",
                message: `subscription snapshot out of range: used=${snap.used} limit=${snap.limit}`
              })
            })
          )
        } else {
          // A reset time already past says nothing about the next one (and would roll the period over on every tick).
          const resetAt = snap.resetAt !== undefined && snap.resetAt > now ? snap.resetAt : undefined
          const newPeriod = st.resetAt !== undefined && resetAt !== undefined && resetAt > st.resetAt
          if (newPeriod) {
            resetKeys()
            out.push({ _tag: "PeriodReset", at: now, resetAt: st.resetAt })
          }
          st.resetAt = resetAt
          st.fetchedAt = now
          st.lastError = undefined
          if (synced !== undefined) {
            out.push({ _tag: "Refreshed", at: now, snapshot: snap })
            applyShared(synced, now, out)
          } else {
            st.used = snap.used + st.commitsDuringFetch
            st.limit = snap.limit
            out.push({ _tag: "Refreshed", at: now, snapshot: snap })
            const ex = st.exhausted
            if (ex !== undefined && (newPeriod || (seq > ex.fetchSeqAtMark && st.limit - st.used > 0))) {
              st.exhausted = undefined
              out.push({ _tag: "Recovered", at: now, by: "refresh" })
            }
            out.push(...thresholdEvents(now))
          }
        }
      }
      if (Exit.isFailure(result)) {
        const error = Exit.findErrorOption(result)
        st.lastError = error._tag === "Some" ? error.value.message : "interrupted"
        out.push({
          _tag: "RefreshFailed",
          at: now,
          error: st.lastError,
          snapshotAgeMillis: st.fetchedAt === undefined ? undefined : now - st.fetchedAt
        })
      }
      const d = st.inflight
      st.inflight = undefined
      st.commitsDuringFetch = 0
      if (d !== undefined) yield* Deferred.done(d, result)
      yield* emit(out)
    })

  /** Starts a fetch unless one is in flight; either way returns the one to wait on. */
  const startFetch = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    if (st.inflight !== undefined) return st.inflight
    const d = Deferred.makeUnsafe<QuotaSnapshot, ElevenLabsError>()
    st.inflight = d
    st.fetchSeq += 1
    st.commitsDuringFetch = 0
    st.nextRefreshAt = now + interval
    const seq = st.fetchSeq
    // The fetch runs in the guard's scope, so a caller that gives up waiting
    // does not cancel it for the others.
    const fetch = Effect.gen(function*() {
      // The shared counters before the fetch: a mark or commits after this point are newer than the reading.
      const start = shared !== undefined && sharedUp() ? Option.getOrUndefined(yield* Effect.option(shared.status)) : undefined
      const exit = yield* Effect.exit(source.fetch)
      yield* settleFetch(seq, start, exit)
    })
    yield* fetch.pipe(
      Effect.onInterrupt(() => Effect.andThen(Effect.sync(() => void (st.inflight = undefined)), Deferred.interrupt(d))),
      // The fetch serves every caller: not bound by the deadline of the one whose fiber forked it.
      Effect.provideService(Deadline.CurrentDeadline, undefined),
      Effect.forkIn(scope)
    )
    return d
  })

  const refresh: Effect.Effect<QuotaSnapshot, ElevenLabsError> = Effect.flatMap(startFetch, Deferred.await)

  // The first fetch starts now, so the first reservation can wait for it.
  yield* startFetch

  // Background refresher: wakes at the next refresh time or the reset time.
  const tick = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const out: Array<QuotaEvent> = []
    const rolled = rolloverStep(now, out)
    yield* emit(out)
    if (rolled || now >= st.nextRefreshAt) {
      yield* Effect.exit(refresh)
      return
    }
    const wakeAt = Math.min(st.nextRefreshAt, st.exhausted?.resetAt ?? st.resetAt ?? Number.POSITIVE_INFINITY)
    yield* Effect.sleep(Duration.millis(Math.max(1, wakeAt - now)))
  })
  yield* Effect.forkIn(Effect.forever(tick), scope)

  // ---- reservations

  const settle = (r: { cost: number; keyId: string | undefined; settled: boolean }, committed: number | undefined) =>
    // On every call's path: one step (the clock read from the fiber), no generator.
    Effect.withFiber((fiber): Effect.Effect<void> => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      if (r.settled) return Effect.void
      r.settled = true
      st.reserved -= r.cost
      const key = r.keyId === undefined ? undefined : st.keys.get(r.keyId)
      if (key !== undefined) key.reserved -= r.cost
      if (committed === undefined) return Effect.void
      if (st.used !== undefined) st.used += committed
      if (key !== undefined) key.used += committed
      if (st.inflight !== undefined) st.commitsDuringFetch += committed
      const crossed = thresholdEvents(now)
      const events = crossed.length === 0 ? Effect.void : emit(crossed)
      // A fallback reservation spent while Redis was away: if it is back, count the credits there too
      // (a commit of an id Redis does not hold adds to `used`; best effort, the next refresh corrects it).
      return shared !== undefined && sharedUp()
        ? Effect.andThen(events, Effect.ignore(shared.commit(`fallback-${++fallbackSeq}`, committed)))
        : events
    })

  /**
   * A reservation in this process's memory, taken synchronously at `now`: the reservation (or the refusal), and
   * what must run before the call (events to publish, a fetch to start after a period rolled over), if anything.
   */
  const reserveLocalUnsafe = (
    now: number,
    cost: number,
    keyId: string | undefined,
    holder?: LocalReservation
  ): {
    readonly reservation: Reservation | undefined
    readonly decision: QuotaGuardErrorReason | undefined
    readonly before: Effect.Effect<void> | undefined
  } => {
    {
      const out: Array<QuotaEvent> = []
      const rolled = rolloverStep(now, out)
      const decision = ((): QuotaGuardErrorReason | undefined => {
        const ex = st.exhausted
        if (ex !== undefined) {
          return new QuotaExhausted({
            resetAt: ex.resetAt ?? st.resetAt,
            retryAfter: Duration.millis(retryAfterMillis(now, ex))
          })
        }
        if (st.used === undefined || st.limit === undefined) {
          if (whenUnknown === "deny") {
            return new QuotaUnknown({
              message: `No subscription snapshot yet${st.lastError === undefined ? "" : ` (${st.lastError})`}`
            })
          }
        } else {
          // In the Redis fallback, this process's share of what was left at the last shared reading.
          const remaining = shared === undefined ? st.limit - st.used - st.reserved : (st.limit - st.used) / share - st.reserved
          if (cost > remaining) {
            return new InsufficientQuota({
              needed: cost,
              remaining: Math.max(0, remaining),
              percentUsed: round1(percentOf(st.used, st.limit))
            })
          }
        }
        const key = keyId === undefined ? undefined : st.keys.get(keyId)
        if (key?.cap !== undefined) {
          const remaining = key.cap - key.used - key.reserved
          if (cost > remaining) {
            return new InsufficientQuota({
              needed: cost,
              remaining: Math.max(0, remaining),
              percentUsed: round1(percentOf(key.used, key.cap)),
              key: keyId
            })
          }
        }
        return undefined
      })()
      if (decision === undefined) {
        st.reserved += cost
        if (keyId !== undefined) {
          const key = st.keys.get(keyId) ?? { cap: undefined, used: 0, reserved: 0, sharedReserved: 0 }
          key.reserved += cost
          st.keys.set(keyId, key)
        }
      }
      let reservation: LocalReservation | undefined = undefined
      if (decision === undefined) {
        reservation = holder ?? new LocalReservation(cost, keyId, settle)
        reservation.settled = false
      }
      let before: Effect.Effect<void> | undefined = rolled ? Effect.asVoid(startFetch) : undefined
      if (out.length > 0) before = before === undefined ? emit(out) : Effect.andThen(emit(out), before)
      return { reservation, decision, before }
    }
  }

  /** Reservations in this process's memory: the memory mode, and the Redis fallback. */
  const reserveLocal = (cost: number, keyId: string | undefined): Effect.Effect<Reservation, QuotaGuardError> =>
    Effect.withFiber((fiber) => {
      const { before, decision, reservation } = reserveLocalUnsafe(
        fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(),
        cost,
        keyId
      )
      // A plain object for callers of `reserve`: its `commit` may be passed around without its object.
      const result: Effect.Effect<Reservation, QuotaGuardError> = reservation === undefined
        ? fail(decision!)
        : Effect.succeed({
          cost: reservation.cost,
          keyId: reservation.keyId,
          commit: (actual?: number | undefined) => reservation.commit(actual),
          release: reservation.release
        })
      return before === undefined ? result : Effect.andThen(before, result)
    })

  /** Redis unreachable: `fail-closed` refuses the call, `local-fallback` reserves locally. */
  const inTrouble = (cost: number, keyId: string | undefined, detail: string) =>
    failClosed
      ? fail(
        new QuotaUnknown({ message: `Shared quota unavailable (Redis unreachable, fail-closed): ${detail}`, redisUnavailable: true })
      )
      : reserveLocal(cost, keyId)

  const settleShared = (
    r: { settled: boolean },
    reservation: SharedReservation,
    keyId: string | undefined,
    committed: number | undefined
  ) =>
    Effect.gen(function*() {
      if (r.settled) return
      r.settled = true
      const unrecorded = (e: DistributedError) =>
        Effect.logDebug(`Shared quota: ${committed === undefined ? "release" : "commit"} not recorded (${e.message}); left to the lease`)
      if (committed === undefined) return yield* Effect.catch(reservation.release, unrecorded)
      // A commit that cannot reach Redis is lost there until the next refresh writes the server's number.
      yield* Effect.catch(reservation.commit(committed), unrecorded)
      const now = yield* Clock.currentTimeMillis
      if (st.used !== undefined) st.used += committed
      const key = keyId === undefined ? undefined : st.keys.get(keyId)
      if (key !== undefined) key.used += committed
      yield* emit(thresholdEvents(now))
    })

  /** A reservation in Redis: one script decides against every process's reservations and the shared exhausted state. */
  const reserveShared = (store: RedisQuota["Service"], cost: number, keyId: string | undefined) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const out: Array<QuotaEvent> = []
      const rolled = rolloverStep(now, out)
      yield* emit(out)
      if (rolled) yield* Effect.asVoid(startFetch)
      if (!sharedUp()) return yield* inTrouble(cost, keyId, `Redis ${redisMode?.stateUnsafe() ?? "unavailable"}`)
      const key = keyId === undefined ? undefined : st.keys.get(keyId)
      const answer = yield* store.reserveScoped({ cost, keyId, keyCap: key?.cap }).pipe(
        Effect.map((result) => ({ result, error: undefined })),
        Effect.catch((error) => Effect.succeed({ result: undefined, error }))
      )
      if (answer.error !== undefined) {
        const reason = answer.error.reason
        if (reason._tag === "InvalidDistributedRequest") {
          return yield* fail(new InvalidInput({ field: reason.field, message: reason.message }))
        }
        return yield* inTrouble(cost, keyId, answer.error.message)
      }
      const result = answer.result
      switch (result._tag) {
        case "Reserved": {
          if (st.exhausted !== undefined) {
            // Redis says there are credits: the shared state ended the exhaustion (another process's refresh).
            st.exhausted = undefined
            yield* emit([{ _tag: "Recovered", at: now, by: "refresh" }])
          }
          const r = { settled: false }
          const reservation: Reservation = {
            cost,
            keyId,
            commit: (actual) => settleShared(r, result, keyId, isAmount(actual) ? actual : cost),
            release: settleShared(r, result, keyId, undefined)
          }
          return reservation
        }
        case "Insufficient":
          return yield* fail(
            new InsufficientQuota({
              needed: cost,
              remaining: Math.max(0, result.available),
              percentUsed: round1(percentOf(st.used ?? 0, st.limit ?? 0))
            })
          )
        case "KeyCapExceeded":
          return yield* fail(
            new InsufficientQuota({
              needed: cost,
              remaining: Math.max(0, result.remaining),
              percentUsed: round1(percentOf(key?.used ?? 0, key?.cap ?? 0)),
              key: result.keyId
            })
          )
        case "Exhausted": {
          let ex = st.exhausted
          if (ex === undefined) {
            // Marked by another process: take it as the local view too (state, status, one event).
            ex = {
              since: now,
              resetAt: result.retryAfterMillis === undefined ? st.resetAt : now + result.retryAfterMillis,
              fetchSeqAtMark: st.fetchSeq
            }
            st.exhausted = ex
            yield* emit([{ _tag: "Exhausted", at: now, resetAt: ex.resetAt, retryAfterMillis: retryAfterMillis(now, ex) }])
          }
          return yield* fail(
            new QuotaExhausted({
              resetAt: ex.resetAt ?? st.resetAt,
              retryAfter: Duration.millis(result.retryAfterMillis ?? retryAfterMillis(now, ex))
            })
          )
        }
        case "Unknown": {
          // Redis knows nothing about the account (first start, or restarted empty): re-seed it with a
          // fetch (at most every few seconds) and decide locally meanwhile.
          if (st.inflight === undefined && now - st.reseedAt >= Math.min(interval, 5_000)) {
            st.reseedAt = now
            yield* Effect.asVoid(startFetch)
          }
          return yield* reserveLocal(cost, keyId)
        }
      }
    })

  /** Checks the cost and, before the first snapshot, waits for the fetch in flight (interruptibly); then `next`. */
  const beforeReserving = <A, E, R>(cost: number, next: Effect.Effect<A, E, R>): Effect.Effect<A, E | QuotaGuardError, R> =>
    Effect.suspend((): Effect.Effect<A, E | QuotaGuardError, R> => {
      if (!isAmount(cost)) return invalid("cost", `cost must be a non-negative number, got ${cost}`)
      return st.fetchedAt === undefined && st.inflight !== undefined
        ? Effect.andThen(Effect.exit(Deferred.await(st.inflight)), next)
        : next
    })

  const reserve = (cost: number, options?: ReserveOptions): Effect.Effect<Reservation, QuotaGuardError, Scope.Scope> =>
    beforeReserving(
      cost,
      Effect.acquireRelease(
        Effect.suspend(() =>
          shared === undefined ? reserveLocal(cost, options?.keyId) : reserveShared(shared, cost, options?.keyId)
        ),
        (r) => r.release
      )
    )

  const markExhausted = (info?: ExhaustionInfo): Effect.Effect<void> =>
    Effect.gen(function*() {
      if (shared !== undefined && sharedUp()) {
        // Every process fails fast from now on; if Redis cannot be told, this process still does.
        const fromServer = isAmount(info?.quota) && isAmount(info?.remaining)
        yield* shared.markExhausted({
          resetAt: info?.resetAt !== undefined && Number.isFinite(info.resetAt) ? info.resetAt : st.resetAt,
          used: fromServer ? Math.max(0, info!.quota! - info!.remaining!) : undefined,
          limit: fromServer ? info!.quota : undefined
        }).pipe(Effect.catch((e) => Effect.logDebug(`Shared quota: exhausted mark not recorded (${e.message})`)))
      }
      const now = yield* Clock.currentTimeMillis
      // The server's own numbers are fresher than any snapshot.
      if (isAmount(info?.quota) && isAmount(info?.remaining)) {
        st.limit = info.quota
        st.used = Math.max(0, info.quota - info.remaining)
      }
      const resetAt = info?.resetAt !== undefined && Number.isFinite(info.resetAt) ? info.resetAt : st.resetAt
      const wasExhausted = st.exhausted !== undefined
      st.exhausted = { since: now, resetAt, fetchSeqAtMark: st.fetchSeq }
      const out: Array<QuotaEvent> = wasExhausted ? [] : [{
        _tag: "Exhausted",
        at: now,
        resetAt,
        retryAfterMillis: retryAfterMillis(now, st.exhausted)
      }]
      out.push(...thresholdEvents(now))
      yield* emit(out)
    })

  const guard = <A, E, R>(
    cost: number,
    effect: Effect.Effect<A, E, R>,
    options?: GuardOptions<A>
  ): Effect.Effect<A, E | QuotaGuardError, R> => {
    // Redis reservations live in a scope (their lease); they take the general path.
    if (shared !== undefined) {
      const tapped = Effect.tapError(effect, (e) =>
        isElevenLabsError(e) && e.reason._tag === "QuotaExceeded" ? markExhausted(e.reason) : Effect.void
      )
      // Settled in a finalizer: once the call succeeded its credits are spent,
      // even if the caller is interrupted right after.
      const settled = (reservation: Reservation) =>
        Effect.onExit((exit: Exit.Exit<A, E>) =>
          Exit.isSuccess(exit) ? reservation.commit(actualOf(options, exit.value)) : reservation.release
        )
      return Effect.scoped(Effect.flatMap(reserve(cost, options), (reservation) => tapped.pipe(settled(reservation))))
    }
    // In memory no scope is needed: the reservation is taken and settled in one exit frame, which is
    // what `acquireRelease` in a `scoped` would do, at a fraction of the cost on every call.
    return guardLocal(cost, effect, options)
  }

  /**
   * The in-memory guard: checked, reserved and run in one step inside one exit frame, and no mask: the
   * reservation is made (unreserved) before the frame, so the frame settles what it holds however the call
   * ends, nothing if it never got as far as reserving. Once the call succeeded its credits are spent, even if
   * the caller is interrupted right after; the `quota_exceeded` mark is taken in the same frame as the
   * release. Before the first snapshot it waits once for the fetch in flight, then starts again.
   */
  const guardLocal = <A, E, R>(
    cost: number,
    effect: Effect.Effect<A, E, R>,
    options: GuardOptions<A> | undefined,
    waited = false
  ): Effect.Effect<A, E | QuotaGuardError, R> =>
    Effect.suspend(() => {
      if (!isAmount(cost)) return invalid("cost", `cost must be a non-negative number, got ${cost}`)
      if (!waited && st.fetchedAt === undefined && st.inflight !== undefined) {
        // Once, bounded by the call's time left. A call whose deadline passed here fails at its queue.
        const first = Deadline.enforce({ operation: "quota" })(Deferred.await(st.inflight))
        return Effect.andThen(Effect.exit(first), guardLocal(cost, effect, options, true))
      }
      const holder = new LocalReservation(cost, options?.keyId, settle)
      return Effect.onExitPrimitive(
        Effect.withFiber((fiber): Effect.Effect<A, E | QuotaGuardError, R> => {
          const { before, decision, reservation } = reserveLocalUnsafe(
            fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(),
            cost,
            options?.keyId,
            holder
          )
          if (reservation === undefined) return before === undefined ? fail(decision!) : Effect.andThen(before, fail(decision!))
          // Events to publish or a fetch to start first: rare (a threshold crossed, a period rolled over).
          return before === undefined ? effect : Effect.andThen(before, effect)
        }),
        (exit) => {
          if (holder.settled) return undefined
          if (Exit.isSuccess(exit)) return holder.commit(actualOf(options, exit.value))
          const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
          const error = failure?._tag === "Fail" ? failure.error : undefined
          return isElevenLabsError(error) && error.reason._tag === "QuotaExceeded"
            ? Effect.andThen(markExhausted(error.reason), holder.release)
            : holder.release
        }
      )
    })

  const setKeyCap = (keyId: string, cap: number | undefined): Effect.Effect<void, QuotaGuardError> =>
    Effect.suspend(() => {
      if (cap !== undefined && !isAmount(cap)) return invalid(`keyCaps.${keyId}`, "a cap must be a non-negative number")
      const key = st.keys.get(keyId)
      if (key !== undefined) key.cap = cap
      else if (cap !== undefined) st.keys.set(keyId, { cap, used: 0, reserved: 0, sharedReserved: 0 })
      return Effect.void
    })

  const stateOf = (): QuotaState => {
    if (st.exhausted !== undefined) return "exhausted"
    if (st.used === undefined || st.limit === undefined) return "unknown"
    const pct = percentOf(st.used, st.limit)
    return pct >= alertPercent ? "alert" : pct >= warningPercent ? "warning" : "ok"
  }

  /** Applies a due rollover first, so reads after the reset time see the new period. */
  const observe = <A>(read: (now: number) => A): Effect.Effect<A> =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const out: Array<QuotaEvent> = []
      const rolled = rolloverStep(now, out)
      const a = read(now)
      yield* emit(out)
      if (rolled) yield* Effect.asVoid(startFetch)
      return a
    })

  // With a shared store, `status` and `state` read Redis first (one script), so they show every process's
  // reservations and a mark made elsewhere; `percentUsed` stays on the local view (no round trip).
  const reservedNow = () => st.reserved + (shared === undefined ? 0 : st.sharedReserved)

  const status: Effect.Effect<QuotaStatus> = Effect.andThen(pullShared, observe((now) => ({
    state: stateOf(),
    used: st.used,
    limit: st.limit,
    reserved: reservedNow(),
    remaining: st.used === undefined || st.limit === undefined ? undefined : Math.max(0, st.limit - st.used - reservedNow()),
    percentUsed: st.used === undefined || st.limit === undefined ? undefined : percentOf(st.used, st.limit),
    resetAt: st.resetAt,
    fetchedAt: st.fetchedAt,
    snapshotAgeMillis: st.fetchedAt === undefined ? undefined : now - st.fetchedAt,
    lastRefreshError: st.lastError,
    nextRefreshAt: st.nextRefreshAt,
    exhausted: st.exhausted === undefined ? undefined : {
      since: st.exhausted.since,
      resetAt: st.exhausted.resetAt,
      retryAfterMillis: retryAfterMillis(now, st.exhausted)
    },
    keys: Array.from(st.keys, ([keyId, k]) => ({
      keyId,
      cap: k.cap,
      used: k.used,
      reserved: k.reserved + k.sharedReserved,
      remaining: k.cap === undefined ? undefined : Math.max(0, k.cap - k.used - k.reserved - k.sharedReserved)
    }))
  })))

  return QuotaGuard.of({
    costOf: (characters, modelId) => Cost.estimate(characters, modelId, st.multipliers),
    setMultipliers: (multipliers) => Effect.sync(() => void (st.multipliers = { ...multipliers })),
    reserve,
    guard,
    refresh,
    markExhausted,
    setKeyCap,
    status,
    percentUsed: observe(() =>
      st.used === undefined || st.limit === undefined ? undefined : percentOf(st.used, st.limit)
    ),
    state: Effect.andThen(pullShared, observe(stateOf)),
    events: Stream.fromPubSub(pubsub),
    subscribe: PubSub.subscribe(pubsub)
  })
})

// ==== Layers

/** The guard as a layer; needs a {@link SubscriptionSource}. */
export const layer = (options?: Options): Layer.Layer<QuotaGuard, QuotaGuardError, SubscriptionSource> =>
  Layer.effect(QuotaGuard, make(options))
