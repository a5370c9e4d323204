/**
 * The one public error of the ElevenLabs client: `ElevenLabsError`, a wrapper
 * whose `reason` says what went wrong, in the vocabulary of the error table in
 * the design (docs/errors.md; docs/design.md section 4).
 *
 * **Details**
 *
 * - Every reason carries the `operation` (for example `textToSpeech.convert`),
 *   the HTTP `status` and the ElevenLabs `detail.status` code when there was an
 *   answer, and the `x-trace-id` header when the server sent one.
 * - What each policy does with a reason (retry class, breaker, quota) is
 *   written once, in {@link reasonPolicies}, and read through
 *   {@link retryClassOf}, {@link isRetryable}, {@link countsForBreaker} and
 *   {@link quotaEffectOf}.
 * - Which response becomes which reason is decided in one place:
 *   `Classify.ts`.
 *
 * **Gotchas**
 *
 * - `ConcurrencyLimited` (429 `too_many_concurrent_requests`) is not a server
 *   failure: it goes back to the limiter's queue, never to exponential backoff
 *   or the breaker.
 * - The API key never appears here: requests are not stored on the error.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ElevenLabsError } from "elevenlabs-resilience/client"
 *
 * const onBusy = (call: Effect.Effect<Uint8Array, ElevenLabsError>) =>
 *   call.pipe(Effect.catchReason("ElevenLabsError", "SystemBusy", () => Effect.succeed(new Uint8Array())))
 * ```
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** Fields every reason carries. */
const common = {
  /** The client operation, for example `textToSpeech.convert`. */
  operation: Schema.String,
  /** Human-readable text: the server's `message` where it sent one. */
  message: Schema.String,
  /** HTTP status of the answer, when there was one. */
  status: Schema.optional(Schema.Number),
  /** The ElevenLabs `detail.status` code (or top-level `status`/`error`), when the body had one. */
  detailStatus: Schema.optional(Schema.String),
  /** The `x-trace-id` response header, when sent. */
  traceId: Schema.optional(Schema.String)
}

/** Hint from a `Retry-After` header (or equivalent), in milliseconds. */
const retryAfter = Schema.optional(Schema.DurationFromMillis)

/** 429 `too_many_concurrent_requests`: the plan's concurrency for this pool is used up. */
export class ConcurrencyLimited extends Schema.Error<ConcurrencyLimited>("elevenlabs-resilience/ConcurrencyLimited")({
  _tag: Schema.tag("ConcurrencyLimited"),
  ...common,
  /** The plan's limit, from the message ("a maximum of N concurrent requests") or the `maximum-concurrent-requests` header. */
  limit: Schema.optional(Schema.Number),
  retryAfter
}) {}

/** 429 `system_busy`: ElevenLabs is under heavy load. */
export class SystemBusy extends Schema.Error<SystemBusy>("elevenlabs-resilience/SystemBusy")({
  _tag: Schema.tag("SystemBusy"),
  ...common,
  retryAfter
}) {}

/** Any other 429. */
export class RateLimited extends Schema.Error<RateLimited>("elevenlabs-resilience/RateLimited")({
  _tag: Schema.tag("RateLimited"),
  ...common,
  retryAfter
}) {}

/** 401 `quota_exceeded`: the request would go over the period's credits. */
export class QuotaExceeded extends Schema.Error<QuotaExceeded>("elevenlabs-resilience/QuotaExceeded")({
  _tag: Schema.tag("QuotaExceeded"),
  ...common,
  /** The period's quota, from "exceeds your quota of N". */
  quota: Schema.optional(Schema.Number),
  /** Credits left, from "You have N credits remaining". */
  remaining: Schema.optional(Schema.Number),
  /** Credits the request needed, from "N credits are required". */
  required: Schema.optional(Schema.Number)
}) {}

/** 401 `invalid_api_key`. */
export class InvalidApiKey extends Schema.Error<InvalidApiKey>("elevenlabs-resilience/InvalidApiKey")({
  _tag: Schema.tag("InvalidApiKey"),
  ...common
}) {}

/** 401 `missing_permissions`: the key lacks a permission (for example `user_read`). */
export class MissingPermissions extends Schema.Error<MissingPermissions>("elevenlabs-resilience/MissingPermissions")({
  _tag: Schema.tag("MissingPermissions"),
  ...common,
  /** The permission named in the message, when it names one. */
  permission: Schema.optional(Schema.String)
}) {}

/** Any other 401 (`needs_authorization`, `detected_unusual_activity`, `unauthorized`, ...). */
export class Unauthorized extends Schema.Error<Unauthorized>("elevenlabs-resilience/Unauthorized")({
  _tag: Schema.tag("Unauthorized"),
  ...common
}) {}

/** 403, for example `output_format_not_allowed` or `only_for_creator+`. */
export class Forbidden extends Schema.Error<Forbidden>("elevenlabs-resilience/Forbidden")({
  _tag: Schema.tag("Forbidden"),
  ...common
}) {}

/** 404, for example `voice_not_found`. */
export class NotFound extends Schema.Error<NotFound>("elevenlabs-resilience/NotFound")({
  _tag: Schema.tag("NotFound"),
  ...common
}) {}

/**
 * 400 from the server (`max_character_limit_exceeded`, ...), any other 4xx
 * without a reason of its own, or a request refused locally before any network
 * call (then `status` is absent and `field` names what to change).
 */
export class InvalidRequest extends Schema.Error<InvalidRequest>("elevenlabs-resilience/InvalidRequest")({
  _tag: Schema.tag("InvalidRequest"),
  ...common,
  /** The request field at fault, for local validation (for example `text` or `voiceSettings.stability`). */
  field: Schema.optional(Schema.String)
}) {}

/** One item of a FastAPI 422 `detail` array. */
export const ValidationIssue = Schema.Struct({
  loc: Schema.Array(Schema.Union([Schema.String, Schema.Number])),
  msg: Schema.String,
  type: Schema.String
})
export type ValidationIssue = typeof ValidationIssue.Type

/** 422 with a FastAPI `detail` array. */
export class ValidationFailed extends Schema.Error<ValidationFailed>("elevenlabs-resilience/ValidationFailed")({
  _tag: Schema.tag("ValidationFailed"),
  ...common,
  issues: Schema.Array(ValidationIssue)
}) {}

/** 5xx, whatever the body (JSON, HTML, empty). */
export class ServerError extends Schema.Error<ServerError>("elevenlabs-resilience/ServerError")({
  _tag: Schema.tag("ServerError"),
  ...common,
  retryAfter
}) {}

/** The connection failed: refused, reset, DNS, or the body was cut mid-way. */
export class Transport extends Schema.Error<Transport>("elevenlabs-resilience/Transport")({
  _tag: Schema.tag("Transport"),
  ...common
}) {}

/**
 * No headers within the attempt timeout, the body stalled past the idle timeout, the call's deadline passed,
 * or (real-time sockets) the server closed the input after its inactivity timeout.
 */
export class Timeout extends Schema.Error<Timeout>("elevenlabs-resilience/Timeout")({
  _tag: Schema.tag("Timeout"),
  ...common,
  /** Which bound was hit. */
  phase: Schema.Literals(["headers", "idle", "deadline", "inactivity"]),
  /** The bound that was hit. */
  after: Schema.DurationFromMillis
}) {}

/** A success answer whose body does not decode (wrong JSON, wrong content). */
export class InvalidResponse extends Schema.Error<InvalidResponse>("elevenlabs-resilience/InvalidResponse")({
  _tag: Schema.tag("InvalidResponse"),
  ...common
}) {}

// ----------------------------------------------------------------------------
// Refusals by the resilient stack itself: no request was sent (or no more).
// The policies have their own errors when used alone; the `Resilient` layer
// maps them here so that every call fails with one error type.
// ----------------------------------------------------------------------------

/**
 * Refused at once by the limiter, no request sent: the call's predicted wait in the queue does not fit the
 * time it may wait (`predictedWait`, and `retryAfter`: when the same wait should fit), or the pool's queue
 * holds the memory guard's count of callers already (neither set).
 */
export class QueueFull extends Schema.Error<QueueFull>("elevenlabs-resilience/QueueFull")({
  _tag: Schema.tag("QueueFull"),
  ...common,
  pool: Schema.String,
  lane: Schema.String,
  /** Callers waiting in the pool when this one was refused. */
  depth: Schema.Number,
  /** The wait predicted for this call: its place in the queue over the limit, times the learned service time. */
  predictedWait: Schema.optional(Schema.DurationFromMillis),
  retryAfter
}) {}

/** The call waited in the limiter's queue past the queue deadline. */
export class QueueTimeout extends Schema.Error<QueueTimeout>("elevenlabs-resilience/QueueTimeout")({
  _tag: Schema.tag("QueueTimeout"),
  ...common,
  pool: Schema.String,
  lane: Schema.String,
  waited: Schema.DurationFromMillis
}) {}

/** The pool's circuit breaker is open (or half-open with its probe running): failed fast. */
export class CircuitOpen extends Schema.Error<CircuitOpen>("elevenlabs-resilience/CircuitOpen")({
  _tag: Schema.tag("CircuitOpen"),
  ...common,
  pool: Schema.String,
  halfOpen: Schema.Boolean,
  retryAfter
}) {}

/** The quota guard found too few credits for this call: refused, no request sent. */
export class InsufficientQuota extends Schema.Error<InsufficientQuota>("elevenlabs-resilience/InsufficientQuota")({
  _tag: Schema.tag("InsufficientQuota"),
  ...common,
  needed: Schema.Number,
  remaining: Schema.Number,
  percentUsed: Schema.Number
}) {}

/** The account's credits are spent (a `quota_exceeded` was seen): every call fails fast until the reset. */
export class QuotaExhausted extends Schema.Error<QuotaExhausted>("elevenlabs-resilience/QuotaExhausted")({
  _tag: Schema.tag("QuotaExhausted"),
  ...common,
  /** When the period resets (epoch ms), when known. */
  resetAt: Schema.optional(Schema.Number),
  retryAfter
}) {}

/** The shared state (Redis) is unreachable and the stack is configured `fail-closed`: no request sent. */
export class SharedStateUnavailable extends Schema.Error<SharedStateUnavailable>(
  "elevenlabs-resilience/SharedStateUnavailable"
)({
  _tag: Schema.tag("SharedStateUnavailable"),
  ...common
}) {}

/** Every reason an ElevenLabs call can fail with. */
export type ElevenLabsErrorReason =
  | ConcurrencyLimited
  | SystemBusy
  | RateLimited
  | QuotaExceeded
  | InvalidApiKey
  | MissingPermissions
  | Unauthorized
  | Forbidden
  | NotFound
  | InvalidRequest
  | ValidationFailed
  | ServerError
  | Transport
  | Timeout
  | InvalidResponse
  | QueueFull
  | QueueTimeout
  | CircuitOpen
  | InsufficientQuota
  | QuotaExhausted
  | SharedStateUnavailable

/** Schema of {@link ElevenLabsErrorReason}. */
export const ElevenLabsErrorReason = Schema.Union([
  ConcurrencyLimited,
  SystemBusy,
  RateLimited,
  QuotaExceeded,
  InvalidApiKey,
  MissingPermissions,
  Unauthorized,
  Forbidden,
  NotFound,
  InvalidRequest,
  ValidationFailed,
  ServerError,
  Transport,
  Timeout,
  InvalidResponse,
  QueueFull,
  QueueTimeout,
  CircuitOpen,
  InsufficientQuota,
  QuotaExhausted,
  SharedStateUnavailable
])

/** The `_tag` of every reason. */
export type ReasonTag = ElevenLabsErrorReason["_tag"]

/**
 * How a reason is retried:
 * - `requeue`: back to the limiter's queue in the same lane after a short, linear pause (never exponential);
 * - `exponential`: exponential backoff with jitter, `Retry-After` as a floor;
 * - `linear`: linear backoff (transport trouble and timeouts);
 * - `never`: not retried.
 */
export type RetryClass = "requeue" | "exponential" | "linear" | "never"

/** What a reason does to a quota reservation: give it back, or mark the account exhausted. */
export type QuotaEffect = "release" | "mark-exhausted"

/** What each policy does with a reason. */
export interface ReasonPolicy {
  readonly retryClass: RetryClass
  /** Whether the breaker counts it as a failure (otherwise it is ignored). */
  readonly breakerFailure: boolean
  readonly quota: QuotaEffect
}

/** The error table of docs/errors.md (docs/design.md section 4), in one place. */
export const reasonPolicies: { readonly [K in ReasonTag]: ReasonPolicy } = {
  ConcurrencyLimited: { retryClass: "requeue", breakerFailure: false, quota: "release" },
  SystemBusy: { retryClass: "exponential", breakerFailure: true, quota: "release" },
  RateLimited: { retryClass: "exponential", breakerFailure: true, quota: "release" },
  QuotaExceeded: { retryClass: "never", breakerFailure: false, quota: "mark-exhausted" },
  InvalidApiKey: { retryClass: "never", breakerFailure: false, quota: "release" },
  MissingPermissions: { retryClass: "never", breakerFailure: false, quota: "release" },
  Unauthorized: { retryClass: "never", breakerFailure: false, quota: "release" },
  Forbidden: { retryClass: "never", breakerFailure: false, quota: "release" },
  NotFound: { retryClass: "never", breakerFailure: false, quota: "release" },
  InvalidRequest: { retryClass: "never", breakerFailure: false, quota: "release" },
  ValidationFailed: { retryClass: "never", breakerFailure: false, quota: "release" },
  ServerError: { retryClass: "exponential", breakerFailure: true, quota: "release" },
  Transport: { retryClass: "linear", breakerFailure: true, quota: "release" },
  Timeout: { retryClass: "linear", breakerFailure: true, quota: "release" },
  InvalidResponse: { retryClass: "never", breakerFailure: true, quota: "release" },
  QueueFull: { retryClass: "never", breakerFailure: false, quota: "release" },
  QueueTimeout: { retryClass: "never", breakerFailure: false, quota: "release" },
  CircuitOpen: { retryClass: "never", breakerFailure: false, quota: "release" },
  InsufficientQuota: { retryClass: "never", breakerFailure: false, quota: "release" },
  QuotaExhausted: { retryClass: "never", breakerFailure: false, quota: "release" },
  SharedStateUnavailable: { retryClass: "never", breakerFailure: false, quota: "release" }
}

/** The retry class of a reason. */
export const retryClassOf = (reason: ElevenLabsErrorReason): RetryClass => reasonPolicies[reason._tag].retryClass

/** Whether a reason may be retried at all. */
export const isRetryable = (reason: ElevenLabsErrorReason): boolean => retryClassOf(reason) !== "never"

/** Whether the breaker counts a reason as a failure. */
export const countsForBreaker = (reason: ElevenLabsErrorReason): boolean => reasonPolicies[reason._tag].breakerFailure

/** What a reason does to a quota reservation. */
export const quotaEffectOf = (reason: ElevenLabsErrorReason): QuotaEffect => reasonPolicies[reason._tag].quota

/** Runtime type identifier of {@link ElevenLabsError}. */
export const ErrorTypeId = "~elevenlabs-resilience/ElevenLabsError" as const
export type ErrorTypeId = typeof ErrorTypeId

/**
 * The error of every ElevenLabs call: a `reason` from the error table, plus
 * how many attempts were made and whether the retry budget cut retries short.
 */
export class ElevenLabsError extends Schema.Error<ElevenLabsError>("ElevenLabsError")({
  _tag: Schema.tag("ElevenLabsError"),
  reason: ElevenLabsErrorReason,
  /** Attempts made before giving up, when a retry policy ran. */
  attempts: Schema.optional(Schema.Number),
  /** True when the reason was retryable but the retry budget was spent. */
  budgetExhausted: Schema.optional(Schema.Boolean)
}) {
  readonly [ErrorTypeId]: ErrorTypeId = ErrorTypeId

  override get message(): string {
    const r = this.reason
    const status = r.status === undefined
      ? ""
      : ` (${r.status}${r.detailStatus === undefined ? "" : ` ${r.detailStatus}`})`
    return `${r.operation}: ${r._tag}${status}: ${r.message}`
  }

  /** The operation that failed. */
  get operation(): string {
    return this.reason.operation
  }

  /** Whether the reason may be retried. */
  get retryable(): boolean {
    return isRetryable(this.reason)
  }

  /** The retry class of the reason. */
  get retryClass(): RetryClass {
    return retryClassOf(this.reason)
  }
}

/** Guard for {@link ElevenLabsError}. */
export const isElevenLabsError = (u: unknown): u is ElevenLabsError =>
  typeof u === "object" && u !== null && ErrorTypeId in u
