/**
 * The limiter's state per (key, pool) and the permits it grants: a cell with its adaptive limit, lanes,
 * counts and learned service time; its live occupancy view; a held permit.
 *
 * @internal
 */
import { Effect } from "effect"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as AdaptiveLimit from "./AdaptiveLimit.ts"
import type { Impl } from "./ConcurrencyLimiterImpl.ts"
import type { Lane, Occupancy, Permit } from "./ConcurrencyLimiterModel.ts"
import { LaneQueue } from "./ConcurrencyLimiterQueue.ts"
import type { Pool } from "./Plans.ts"

export class OccupancyView implements Occupancy {
  readonly cell: Cell
  readonly queued: { readonly [L in Lane]: number }
  constructor(cell: Cell) {
    this.cell = cell
    const [interactive, dflt, batch] = cell.lanes
    this.queued = {
      get interactive() {
        return interactive.size
      },
      get default() {
        return dflt.size
      },
      get batch() {
        return batch.size
      }
    }
  }
  get key() {
    return this.cell.key
  }
  get pool() {
    return this.cell.pool
  }
  get inFlight() {
    return this.cell.inFlight
  }
  get queueDepth() {
    return this.cell.queued
  }
  get limit() {
    return this.cell.permits
  }
}

export class Cell {
  inFlight = 0
  queued = 0
  issued = 0
  lastCut = 0
  permits: number
  readonly lanes = [new LaneQueue(), new LaneQueue(), new LaneQueue()] as const
  readonly key: string
  readonly pool: Pool
  readonly adaptive: AdaptiveLimit.AdaptiveState
  readonly maxQueue: number
  /** The mean time a permit is held: the plain mean of the first samples, then exponentially weighted. */
  serviceMillis = 0
  samples = 0
  /** Set once enough permits returned for `serviceMillis` to predict waits (see `releaseUnsafe`). */
  predicting = false
  /** Made on the first change when `onOccupancy` is set. */
  view: OccupancyView | undefined = undefined
  constructor(
    key: string,
    pool: Pool,
    adaptive: AdaptiveLimit.AdaptiveState,
    maxQueue: number,
    config: AdaptiveLimit.AdaptiveLimitConfig
  ) {
    this.key = key
    this.pool = pool
    this.adaptive = adaptive
    this.maxQueue = maxQueue
    this.permits = AdaptiveLimit.permitsOf(adaptive, config)
  }
}

export class PermitImpl implements Permit {
  released = false
  readonly cell: Cell
  readonly seq: number
  readonly lane: Lane
  readonly waitedMillis: number
  readonly grantedAt: number
  readonly limiter: Impl
  constructor(cell: Cell, seq: number, lane: Lane, waitedMillis: number, grantedAt: number, limiter: Impl) {
    this.cell = cell
    this.seq = seq
    this.lane = lane
    this.waitedMillis = waitedMillis
    this.grantedAt = grantedAt
    this.limiter = limiter
  }
  get key() {
    return this.cell.key
  }
  get pool() {
    return this.cell.pool
  }
  get release(): Effect.Effect<void> {
    return Effect.suspend(() => this.limiter.publish(this.limiter.releaseUnsafe(this)))
  }
  onResponse(meta: ResponseMeta): Effect.Effect<void> {
    return Effect.suspend(() =>
      this.limiter.publish(this.limiter.responseUnsafe(this.cell, meta, this.cell.inFlight + (this.released ? 1 : 0)))
    )
  }
  onConcurrencyLimited(limitFromServer?: number | undefined): Effect.Effect<void> {
    return Effect.suspend(() => this.limiter.publish(this.limiter.limitedUnsafe(this.cell, limitFromServer, this.seq)))
  }
}
