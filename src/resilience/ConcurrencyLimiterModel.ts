/**
 * The limiter's models, options and errors (re-exported by `ConcurrencyLimiter.ts`, the module users import).
 *
 * @since 0.1.0
 */
import { Duration, type Effect, Schema } from "effect"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import type * as AdaptiveLimit from "./AdaptiveLimit.ts"
import type { PlanLimits, PlanName, Pool } from "./Plans.ts"
import { pools } from "./Plans.ts"

// ==== Models

/** Priority lanes, highest first. */
export const lanes = ["interactive", "default", "batch"] as const
/** A priority lane, chosen per call. */
export type Lane = (typeof lanes)[number]

/** What a (key, pool) is sized from: a plan name, `"unknown"` (learn it), or custom numbers per pool (Enterprise). */
export type PlanSpec = PlanName | "unknown" | Partial<PlanLimits>

/** Which permit a call wants. Give `pool`, or `model` (and `concurrencyGroup`) to derive it with `poolOfModel`. */
export type PermitRequest =
  & {
    /** API-key id (a fingerprint), never the key itself. */
    readonly key: string
    /** Default `"default"`. */
    readonly lane?: Lane | undefined
    /**
     * Go to the front of the lane (a requeue after `too_many_concurrent_requests`, which already waited).
     * Such a requeue is never refused with `QueueFull`.
     */
    readonly front?: boolean | undefined
    /** Queue deadline for this call; default the limiter's `queueTimeout`. */
    readonly timeout?: Duration.Input | undefined
  }
  & (
    | { readonly pool: Pool }
    | { readonly model: string; readonly concurrencyGroup?: string | undefined }
  )

/** A held permit. Release is idempotent; it also happens when the scope / effect ends. */
export interface Permit {
  readonly key: string
  readonly pool: Pool
  readonly lane: Lane
  /** How long this call queued, in milliseconds (0 on the fast path). */
  readonly waitedMillis: number
  /** Returns the permit now (e.g. a body finished before the scope closes). */
  readonly release: Effect.Effect<void>
  /** Feeds the response headers to the adaptive limit (exact own count for shared-key detection). */
  readonly onResponse: (meta: ResponseMeta) => Effect.Effect<void>
  /**
   * Reports a 429 `too_many_concurrent_requests` for this attempt. Cuts the
   * limit once per congestion event: an attempt admitted before the last cut
   * does not cut again.
   */
  readonly onConcurrencyLimited: (limitFromServer?: number | undefined) => Effect.Effect<void>
}

/** The state of one (key, pool). */
export interface Snapshot {
  readonly key: string
  readonly pool: Pool
  /** Permits handed out at most now. */
  readonly limit: number
  /** The AIMD estimate behind `limit` (real number). */
  readonly estimate: number
  /** The plan's limit for the pool, when known. */
  readonly ceiling: number | undefined
  /** The hard cap of the pool (option `caps`), when set: `limit` never exceeds it. */
  readonly cap: number | undefined
  /** Requests other clients run on the same key (latest observation). */
  readonly others: number
  readonly inFlight: number
  readonly queued: { readonly [L in Lane]: number }
  readonly queueDepth: number
  readonly maxQueue: number
  /**
   * The mean time a permit is held, learned from the permits returned (an exponentially weighted mean);
   * `undefined` until the first one returns. Admission predicts waits with it.
   */
  readonly serviceMillis: number | undefined
}

/**
 * A live, read-only view of one (key, pool)'s counts, handed to {@link Options.onOccupancy}. It reads the
 * limiter's state as it is when read: read it during the callback (copy what you keep).
 */
export interface Occupancy {
  readonly key: string
  readonly pool: Pool
  /** Permits held now. */
  readonly inFlight: number
  /** Callers queued now, per lane. */
  readonly queued: { readonly [L in Lane]: number }
  /** Callers queued now, all lanes. */
  readonly queueDepth: number
  /** Permits handed out at most now. */
  readonly limit: number
}

/**
 * What just changed, for {@link Options.onOccupancy}: `granted` (a permit on the fast path: in-flight +1),
 * `queued` (a caller joined the queue: its lane +1), `dispatched` (a queued caller got a permit: its lane −1,
 * in-flight +1), `released` (a permit returned: in-flight −1), `abandoned` (a queued caller left, interrupted
 * or shut down: its lane −1), `expired` (a queued caller's queue deadline passed: its lane −1), `refused` (a
 * queued caller was refused because its predicted wait no longer fits: its lane −1).
 */
export type OccupancyChange = "granted" | "queued" | "dispatched" | "released" | "abandoned" | "expired" | "refused"

/** Observable events, for telemetry. */
export type ConcurrencyEvent =
  | {
    readonly _tag: "LimitChanged"
    readonly key: string
    readonly pool: Pool
    readonly from: number
    readonly to: number
    readonly estimate: number
    readonly ceiling: number | undefined
    /** The hard cap of the pool (option `caps`), when set. */
    readonly cap: number | undefined
    readonly others: number
    /** The first reason; `reasons` has them all in the order applied. */
    readonly reason: AdaptiveLimit.LimitChangeReason
    readonly reasons: ReadonlyArray<AdaptiveLimit.LimitChangeReason>
  }
  | {
    readonly _tag: "QueueFull"
    readonly key: string
    readonly pool: Pool
    readonly lane: Lane
    readonly depth: number
    /** Set when refused by predicted wait (not by the count bound). */
    readonly predictedWaitMillis?: number | undefined
  }
  | {
    readonly _tag: "QueueTimeout"
    readonly key: string
    readonly pool: Pool
    readonly lane: Lane
    readonly waitedMillis: number
  }
  | {
    readonly _tag: "Waited"
    readonly key: string
    readonly pool: Pool
    readonly lane: Lane
    readonly waitedMillis: number
  }
  /** A caller joined the queue (`depth` counts it); it leaves with `Waited`, `QueueTimeout` or interruption. */
  | { readonly _tag: "Queued"; readonly key: string; readonly pool: Pool; readonly lane: Lane; readonly depth: number }

// ==== Errors

const PoolSchema = Schema.Literals(pools)
const LaneSchema = Schema.Literals(lanes)

/**
 * Refused at once: the caller's predicted wait does not fit the time it may wait (`predictedWait` and
 * `retryAfter` set), or the queue of the (key, pool) holds `maxQueue` callers already (the memory guard).
 */
export class QueueFull extends Schema.Error<QueueFull>("elevenlabs-resilience/ConcurrencyLimiter/QueueFull")({
  _tag: Schema.tag("QueueFull"),
  key: Schema.String,
  pool: PoolSchema,
  lane: LaneSchema,
  depth: Schema.Number,
  maxQueue: Schema.Number,
  /** The wait predicted for this caller: its place in the queue over the limit, times the learned service time. */
  predictedWait: Schema.optional(Schema.DurationFromMillis),
  /** What the caller could wait (the smaller of its queue timeout and the time its call has left). */
  budget: Schema.optional(Schema.DurationFromMillis),
  /** When the queue ahead should have drained enough for the same wait to fit, if nothing else arrives. */
  retryAfter: Schema.optional(Schema.DurationFromMillis)
}) {
  override get message(): string {
    if (this.predictedWait !== undefined && this.budget !== undefined) {
      return `Predicted wait ${Duration.format(this.predictedWait)} for a ${this.pool} permit exceeds the ${
        Duration.format(this.budget)
      } this call may wait (${this.depth} queued, lane ${this.lane})`
    }
    return `Concurrency queue full for pool ${this.pool} (${this.depth}/${this.maxQueue}, lane ${this.lane})`
  }
}

/** The call waited past its queue deadline. */
export class QueueTimeout extends Schema.Error<QueueTimeout>("elevenlabs-resilience/ConcurrencyLimiter/QueueTimeout")({
  _tag: Schema.tag("QueueTimeout"),
  key: Schema.String,
  pool: PoolSchema,
  lane: LaneSchema,
  waited: Schema.DurationFromMillis
}) {
  override get message(): string {
    return `Waited ${Duration.format(this.waited)} for a ${this.pool} permit (lane ${this.lane})`
  }
}

/** The permit request is malformed (empty key, unknown lane or pool, bad timeout). */
export class InvalidPermitRequest
  extends Schema.Error<InvalidPermitRequest>("elevenlabs-resilience/ConcurrencyLimiter/InvalidPermitRequest")({
    _tag: Schema.tag("InvalidPermitRequest"),
    message: Schema.String
  })
{}

/** Reasons of {@link ConcurrencyLimiterError}. */
export type ConcurrencyLimiterErrorReason = QueueFull | QueueTimeout | InvalidPermitRequest
export const ConcurrencyLimiterErrorReason = Schema.Union([QueueFull, QueueTimeout, InvalidPermitRequest])

/** The limiter's one error, with a `reason`. */
export class ConcurrencyLimiterError extends Schema.Error<ConcurrencyLimiterError>(
  "elevenlabs-resilience/ConcurrencyLimiterError"
)({
  _tag: Schema.tag("ConcurrencyLimiterError"),
  reason: ConcurrencyLimiterErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
}

/** The memory guard's default (see {@link Options.maxQueue}). */
export const defaultMaxQueue = 50_000

/**
 * Options of {@link make}; every one has a default. `reconfigure` re-reads all of them but `onOccupancy`, `onLimitChanged` and
 * `eventBuffer` (see docs/concurrency.md, "Caps and live reconfiguration").
 */
export interface Options {
  /** Plan of every key, or per key id. Default `"unknown"`. */
  readonly plan?: PlanSpec | ((key: string) => PlanSpec) | undefined
  /** Plan table for plan names. Default `deploymentGuidePlans`. */
  readonly table?: { readonly [P in PlanName]: PlanLimits } | undefined
  /** Start limit of a pool whose plan number is unknown. Default 2. */
  readonly initialLimit?: number | undefined
  /** Lowest limit. Default 1. */
  readonly minLimit?: number | undefined
  /** Growth cap while no ceiling is known. Default 1000. */
  readonly maxLimit?: number | undefined
  /** Multiplicative decrease on `too_many_concurrent_requests`. Default 0.9. */
  readonly decreaseFactor?: number | undefined
  /** Permits gained per window of saturated successes. Default 1. */
  readonly additiveIncrease?: number | undefined
  /**
   * Memory guard: the most callers queued per (key, pool), all lanes together; a number or per pool. Default
   * 50,000 (about 320 MB of heap at the benchmarked ~6.4 KB per waiting call). Admission is by predicted wait;
   * this bound only stops a runaway producer before the first permit returns (when nothing predicts yet).
   */
  readonly maxQueue?: number | Partial<Record<Pool, number>> | undefined
  /**
   * Hard upper bound on the permits of a pool (integers >= 1), for every key: no plan number, header, 429
   * message or additive increase lifts the permits above it, and it wins over `minLimit`. The adaptive
   * estimate keeps learning below it (permits = min(adaptive permits, cap)). Default: none.
   */
  readonly caps?: Partial<Record<Pool, number>> | undefined
  /** Queue deadline. Default 120 seconds (the rate-limits guide's). */
  readonly queueTimeout?: Duration.Input | undefined
  /** Aging offset per lane (virtual deadline = arrival + offset). Default 0 s / 5 s / 30 s. */
  readonly laneAging?: Partial<Record<Lane, Duration.Input>> | undefined
  /** Buffered events per subscriber (sliding). Default 1024. */
  readonly eventBuffer?: number | undefined
  /**
   * Called synchronously whenever a (key, pool)'s in-flight or queued counts change, after the change, with
   * a live view of the counts, what changed, and the lane of the caller it concerns. For gauges
   * (`Metrics.occupancyGauges`): no snapshot per attempt, no subscriber fiber. It runs inside the limiter's
   * bookkeeping, so keep it short and synchronous; it must not throw (a throw is swallowed, so that the
   * limiter's state stays consistent).
   */
  readonly onOccupancy?: ((occupancy: Occupancy, change: OccupancyChange, lane: Lane) => void) | undefined
  /**
   * Run for every `LimitChanged` event, in the fiber whose call changed the limit, after the event is
   * published, uninterruptibly; a failure or defect of the hook is ignored (for a log line: no subscriber
   * fiber pulling every `Queued` event to find the rare change). Fixed at `make`, like `onOccupancy`.
   */
  readonly onLimitChanged?:
    | ((event: Extract<ConcurrencyEvent, { _tag: "LimitChanged" }>) => Effect.Effect<void>)
    | undefined
}
