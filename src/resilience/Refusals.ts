/**
 * The policies' refusals as `ElevenLabsError` reasons, in one place. Used alone,
 * each policy fails with its own error (`ConcurrencyLimiterError`,
 * `BreakerError`, `QuotaGuardError`, `DistributedError`); composed (the
 * `Resilient` layer, `WithResilience`), every call fails with one error type,
 * so these map the refusals to the reasons `QueueFull`, `QueueTimeout`,
 * `CircuitOpen`, `InsufficientQuota`, `QuotaExhausted` and
 * `SharedStateUnavailable`.
 *
 * @since 0.1.0
 */
import { Duration, Effect } from "effect"
import {
  CircuitOpen,
  ElevenLabsError,
  type ElevenLabsErrorReason,
  InsufficientQuota,
  InvalidRequest,
  QueueFull,
  QueueTimeout,
  QuotaExhausted,
  SharedStateUnavailable
} from "../client/Errors.ts"
import type { DistributedError } from "../distributed/DistributedError.ts"
import type { BreakerError } from "./Breaker.ts"
import type { ConcurrencyLimiterError } from "./ConcurrencyLimiter.ts"
import type { Pool } from "./Plans.ts"
import type { QuotaGuardError } from "./QuotaGuard.ts"

/** Fails with an `ElevenLabsError` of `reason`. */
export const fail = (reason: ElevenLabsErrorReason): Effect.Effect<never, ElevenLabsError> =>
  Effect.fail(new ElevenLabsError({ reason }))

/** A limiter refusal: `QueueFull` or `QueueTimeout`. */
export const fromLimiter =
  (operation: string) => (error: ConcurrencyLimiterError): Effect.Effect<never, ElevenLabsError> => {
    const r = error.reason
    switch (r._tag) {
      case "QueueFull":
        return fail(
          new QueueFull({
            operation,
            message: r.message,
            pool: r.pool,
            lane: r.lane,
            depth: r.depth,
            ...(r.predictedWait === undefined ? {} : { predictedWait: r.predictedWait }),
            ...(r.retryAfter === undefined ? {} : { retryAfter: r.retryAfter })
          })
        )
      case "QueueTimeout":
        return fail(new QueueTimeout({ operation, message: r.message, pool: r.pool, lane: r.lane, waited: r.waited }))
      case "InvalidPermitRequest":
        return fail(new InvalidRequest({ operation, message: r.message, field: "lane" }))
    }
  }

/** A breaker refusal: `CircuitOpen` (half-open when its probe is running), with `retryAfter`. */
export const fromBreaker =
  (operation: string, pool: Pool) => (error: BreakerError): Effect.Effect<never, ElevenLabsError> =>
    fail(
      new CircuitOpen({
        operation,
        message: error.reason.message,
        pool,
        halfOpen: error.reason._tag === "CircuitHalfOpen",
        ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter })
      })
    )

/** A quota refusal: `InsufficientQuota` or `QuotaExhausted`. */
export const fromQuota = (operation: string) => (error: QuotaGuardError): Effect.Effect<never, ElevenLabsError> => {
  const r = error.reason
  switch (r._tag) {
    case "InsufficientQuota":
      return fail(
        new InsufficientQuota({
          operation,
          message: r.message,
          needed: r.needed,
          remaining: r.remaining,
          percentUsed: r.percentUsed
        })
      )
    case "QuotaExhausted":
      return fail(
        new QuotaExhausted({
          operation,
          message: r.message,
          ...(r.resetAt === undefined ? {} : { resetAt: r.resetAt }),
          ...(r.retryAfter === undefined ? {} : { retryAfter: r.retryAfter })
        })
      )
    case "QuotaUnknown":
      // Shared quota unreachable in `fail-closed` mode: transient, like the shared permits.
      return r.redisUnavailable === true
        ? fail(new SharedStateUnavailable({ operation, message: r.message }))
        : fail(new InvalidRequest({ operation, message: r.message }))
    case "InvalidInput":
      return fail(new InvalidRequest({ operation, message: r.message }))
  }
}

/** A shared-state refusal: a distributed permit not had in time, or Redis unreachable in `fail-closed` mode. */
export const fromDistributed =
  (operation: string, pool: Pool, lane: string) => (error: DistributedError): Effect.Effect<never, ElevenLabsError> => {
    const r = error.reason
    switch (r._tag) {
      case "AcquireTimeout":
        return fail(
          new QueueTimeout({ operation, message: r.message, pool, lane, waited: Duration.millis(r.waitedMillis) })
        )
      // A configuration version conflict never comes from the permits; mapped for completeness.
      case "InvalidDistributedRequest":
      case "VersionConflict":
        return fail(new InvalidRequest({ operation, message: r.message }))
      case "RedisUnavailable":
      case "RedisCommandFailed":
        return fail(new SharedStateUnavailable({ operation, message: r.message }))
    }
  }
