/**
 * The quota guard's vocabulary: where subscription snapshots come from, the
 * errors it refuses calls with, its events and status, what a reservation
 * is, and its options with their checked form ({@link settingsOf}). `QuotaGuard` re-exports all of it; the ledger and the
 * stores (memory, Redis) speak it too, which is why it lives apart from the
 * guard.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, Schema } from "effect"
import type { ElevenLabsError } from "../client/Errors.ts"
import * as Cost from "./Cost.ts"

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
export class InsufficientQuota
  extends Schema.Error<InsufficientQuota>("elevenlabs-resilience/QuotaGuard/InsufficientQuota")({
    _tag: Schema.tag("InsufficientQuota"),
    /** Credits the call needs. */
    needed: Schema.Number,
    /** Credits left (limit - used - reserved), on the account or on the key when `key` is set. */
    remaining: Schema.Number,
    /** Percent of the limit used (committed), one decimal. */
    percentUsed: Schema.Number,
    /** The key id whose cap refused the call; absent when the account's limit did. */
    key: Schema.optional(Schema.String)
  })
{
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
  | {
    readonly _tag: "ThresholdCrossed"
    readonly at: number
    readonly threshold: Threshold
    readonly percentUsed: number
  }
  | {
    readonly _tag: "ThresholdCleared"
    readonly at: number
    readonly threshold: Threshold
    readonly percentUsed: number
  }
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
  readonly exhausted: {
    readonly since: number
    readonly resetAt: number | undefined
    readonly retryAfterMillis: number
  } | undefined
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

/** Options of `QuotaGuard.make`; every one has a default. */
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

// ==== Settings

/** {@link Options}, checked, with their defaults: what `QuotaGuard.make` builds with and `reconfigure` applies. */
export interface Settings {
  /** `refreshInterval`, in ms. */
  readonly interval: number
  readonly warningPercent: number
  readonly alertPercent: number
  readonly whenUnknown: "allow" | "deny"
  readonly eventBuffer: number
  readonly caps: ReadonlyMap<string, number>
  /** `undefined` when not given (`make`: the built-in table; `reconfigure`: keep the current ones). */
  readonly multipliers: Cost.Multipliers | undefined
}

/** A credit amount: finite, not negative (`QuotaLedger.isAmount`, which imports this module). */
const isAmount = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n) && n >= 0

const invalid = (field: string, message: string) =>
  Effect.fail(new QuotaGuardError({ reason: new InvalidInput({ field, message }) }))

/** Checks every option at once: the first one out of range fails with `InvalidInput`. */
export const settingsOf = (options: Options): Effect.Effect<Settings, QuotaGuardError> =>
  Effect.suspend(() => {
    const intervalInput = Duration.fromInput(options.refreshInterval ?? "60 seconds")
    const interval = intervalInput._tag === "Some" ? Duration.toMillis(intervalInput.value) : Number.NaN
    const warningPercent = options.warningPercent ?? 80
    const alertPercent = options.alertPercent ?? 90
    if (!(interval > 0)) return invalid("refreshInterval", "must be a positive duration")
    if (!isAmount(warningPercent) || !isAmount(alertPercent) || warningPercent > alertPercent) {
      return invalid("warningPercent", "thresholds must be non-negative numbers with warningPercent <= alertPercent")
    }
    const whenUnknown = options.whenUnknown ?? "allow"
    if (whenUnknown !== "allow" && whenUnknown !== "deny") return invalid("whenUnknown", "must be allow or deny")
    const caps = new Map<string, number>()
    for (const [keyId, cap] of Object.entries(options.keyCaps ?? {})) {
      if (!isAmount(cap)) return invalid(`keyCaps.${keyId}`, "a cap must be a non-negative number")
      caps.set(keyId, cap)
    }
    for (const [modelId, m] of Object.entries(options.multipliers ?? {})) {
      if (!Cost.isValidMultiplier(m)) return invalid(`multipliers.${modelId}`, "must be a non-negative number")
    }
    const eventBuffer = options.eventBuffer ?? 256
    if (!Number.isInteger(eventBuffer) || eventBuffer < 1) return invalid("eventBuffer", "must be a positive integer")
    return Effect.succeed({
      interval,
      warningPercent,
      alertPercent,
      whenUnknown,
      eventBuffer,
      caps,
      multipliers: options.multipliers
    })
  })
