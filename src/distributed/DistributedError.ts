/**
 * The typed errors of the Redis-backed stores: one wrapper,
 * {@link DistributedError}, with a `reason` per cause.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** Redis could not be reached (or did not answer in time) and the trouble mode is `fail-closed`. */
export class RedisUnavailable
  extends Schema.Error<RedisUnavailable>("elevenlabs-resilience/distributed/RedisUnavailable")({
    _tag: Schema.tag("RedisUnavailable"),
    /** What was being done (`acquire`, `release`, `reserve`, ...). */
    operation: Schema.String,
    message: Schema.String
  })
{}

/** Redis answered with an error (a script or data error, not an outage). */
export class RedisCommandFailed extends Schema.Error<RedisCommandFailed>(
  "elevenlabs-resilience/distributed/RedisCommandFailed"
)({
  _tag: Schema.tag("RedisCommandFailed"),
  operation: Schema.String,
  message: Schema.String
}) {}

/** No distributed permit became free before the caller's timeout. */
export class AcquireTimeout extends Schema.Error<AcquireTimeout>("elevenlabs-resilience/distributed/AcquireTimeout")({
  _tag: Schema.tag("AcquireTimeout"),
  key: Schema.String,
  pool: Schema.String,
  waitedMillis: Schema.Number
}) {
  override get message(): string {
    return `no distributed permit for ${this.key}/${this.pool} within ${this.waitedMillis} ms`
  }
}

/** Bad input (empty key, negative cost, ...). */
export class InvalidDistributedRequest extends Schema.Error<InvalidDistributedRequest>(
  "elevenlabs-resilience/distributed/InvalidDistributedRequest"
)({
  _tag: Schema.tag("InvalidDistributedRequest"),
  field: Schema.String,
  message: Schema.String
}) {}

/**
 * A compare-and-set lost: the current version of an account was not the one
 * the caller expected (another deploy or rollback won). Versions are 1, 2, ...;
 * 0 means "none published yet".
 */
export class VersionConflict
  extends Schema.Error<VersionConflict>("elevenlabs-resilience/distributed/VersionConflict")({
    _tag: Schema.tag("VersionConflict"),
    account: Schema.String,
    expected: Schema.Number,
    actual: Schema.Number
  })
{
  override get message(): string {
    return `the current version of ${this.account} is ${this.actual}, not the expected ${this.expected}`
  }
}

/** Every reason of a {@link DistributedError}. */
export type DistributedErrorReason =
  | RedisUnavailable
  | RedisCommandFailed
  | AcquireTimeout
  | InvalidDistributedRequest
  | VersionConflict
export const DistributedErrorReason = Schema.Union([
  RedisUnavailable,
  RedisCommandFailed,
  AcquireTimeout,
  InvalidDistributedRequest,
  VersionConflict
])

/** A failure of a Redis-backed store. Never carries an API key: keys are ids chosen by the caller. */
export class DistributedError
  extends Schema.Error<DistributedError>("elevenlabs-resilience/distributed/DistributedError")({
    _tag: Schema.tag("DistributedError"),
    reason: DistributedErrorReason
  })
{
  override get message(): string {
    return this.reason.message
  }
}

/** Guard for {@link DistributedError}. */
export const isDistributedError = (u: unknown): u is DistributedError =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "DistributedError"

/** Shorthands. */
export const unavailable = (operation: string, message: string): DistributedError =>
  new DistributedError({ reason: new RedisUnavailable({ operation, message }) })
export const invalid = (field: string, message: string): DistributedError =>
  new DistributedError({ reason: new InvalidDistributedRequest({ field, message }) })

/** Validates an identifier used inside a Redis key (an API-key id, a pool, an account id). */
export const checkId = (field: string, value: unknown): DistributedError | undefined =>
  typeof value !== "string" || value.length === 0 || value.length > 200 || /[\s{}]/.test(value)
    ? invalid(field, "must be a non-empty string of at most 200 characters without spaces or braces")
    : undefined
