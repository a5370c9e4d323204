/**
 * The limiter's state per (key, pool) and the permits it grants: a cell with its adaptive limit, hard cap,
 * lanes, counts and learned service time; its live occupancy view; a held permit. Also the checked options
 * ({@link Settings}) the cells are sized from, read at `make` and again at each `reconfigure`.
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as AdaptiveLimit from "./AdaptiveLimit.ts"
import type { Impl } from "./ConcurrencyLimiterImpl.ts"
import {
  defaultMaxQueue,
  type Lane,
  lanes,
  type Occupancy,
  type Options,
  type Permit,
  type PlanSpec
} from "./ConcurrencyLimiterModel.ts"
import { LaneQueue } from "./ConcurrencyLimiterQueue.ts"
import type { PlanLimits, PlanName, Pool } from "./Plans.ts"
import { deploymentGuidePlans, isPlanName, limitsOf, pools } from "./Plans.ts"

/** Milliseconds of a non-negative duration; `undefined` when it is not one. */
export const positiveMillis = (input: Duration.Input): number | undefined => {
  const d = Duration.fromInput(input)
  if (d._tag === "None") return undefined
  const ms = Duration.toMillis(d.value)
  return ms >= 0 && !Number.isNaN(ms) ? ms : undefined
}

/** Every option but `onOccupancy`, `onLimitChanged` and `eventBuffer` (fixed at `make`), checked and with its default. */
export interface Settings {
  readonly config: AdaptiveLimit.AdaptiveLimitConfig
  /** Aging offset per lane index, in milliseconds. */
  readonly aging: ReadonlyArray<number>
  readonly queueTimeoutMillis: number
  readonly planOf: (key: string) => PlanSpec
  readonly table: { readonly [P in PlanName]: PlanLimits }
  readonly initialLimit: number
  readonly maxQueueOf: (pool: Pool) => number
  readonly capOf: (pool: Pool) => number | undefined
}

const agingDefaults: Record<Lane, Duration.Input> = { interactive: 0, default: "5 seconds", batch: "30 seconds" }

/** Checks the options; throws (a defect: a configuration bug) on the first invalid one, before using any. */
export const settingsOf = (options: Options): Settings => {
  const num = (n: number | undefined, dflt: number, ok: (n: number) => boolean, name: string) => {
    if (n === undefined) return dflt
    if (typeof n !== "number" || !ok(n)) throw new Error(`ConcurrencyLimiter: invalid ${name}: ${String(n)}`)
    return n
  }
  const minLimit = num(options.minLimit, 1, (n) => Number.isInteger(n) && n >= 1, "minLimit")
  const config: AdaptiveLimit.AdaptiveLimitConfig = {
    minLimit,
    maxLimit: num(options.maxLimit, AdaptiveLimit.defaultConfig.maxLimit, (n) => n >= minLimit, "maxLimit"),
    decreaseFactor: num(
      options.decreaseFactor,
      AdaptiveLimit.defaultConfig.decreaseFactor,
      (n) => n > 0 && n < 1,
      "decreaseFactor"
    ),
    additiveIncrease: num(
      options.additiveIncrease,
      AdaptiveLimit.defaultConfig.additiveIncrease,
      (n) => n >= 0 && Number.isFinite(n),
      "additiveIncrease"
    )
  }
  const initialLimit = num(options.initialLimit, 2, (n) => n >= 1 && Number.isFinite(n), "initialLimit")
  const aging = lanes.map((lane) => {
    const ms = positiveMillis(options.laneAging?.[lane] ?? agingDefaults[lane])
    if (ms === undefined || !Number.isFinite(ms)) throw new Error(`ConcurrencyLimiter: invalid laneAging.${lane}`)
    return ms
  })
  const queueTimeoutMillis = positiveMillis(options.queueTimeout ?? "120 seconds")
  if (queueTimeoutMillis === undefined) throw new Error("ConcurrencyLimiter: invalid queueTimeout")
  const checkPools = (value: object, name: string, ok: (n: number) => boolean) => {
    for (const [pool, n] of Object.entries(value)) {
      if (!(pools as ReadonlyArray<string>).includes(pool)) {
        throw new Error(`ConcurrencyLimiter: unknown pool in ${name}: ${pool}`)
      }
      num(n as number | undefined, 0, ok, `${name}.${pool}`)
    }
  }
  // Records are copied: a caller mutating its object later must not change the limits behind `reconfigure`.
  const mq = typeof options.maxQueue === "object" ? { ...options.maxQueue } : options.maxQueue ?? defaultMaxQueue
  if (typeof mq === "number") num(mq, 0, (n) => n >= 0, "maxQueue")
  else checkPools(mq, "maxQueue", (n) => n >= 0)
  if (options.caps !== undefined && (typeof options.caps !== "object" || options.caps === null)) {
    throw new Error("ConcurrencyLimiter: invalid caps: not a record")
  }
  const caps = options.caps === undefined ? undefined : { ...options.caps }
  if (caps !== undefined) checkPools(caps, "caps", (n) => Number.isInteger(n) && n >= 1)
  const plan = options.plan ?? "unknown"
  return {
    config,
    aging,
    queueTimeoutMillis,
    planOf: typeof plan === "function" ? plan : () => plan,
    table: options.table ?? deploymentGuidePlans,
    initialLimit,
    maxQueueOf: (pool) => (typeof mq === "number" ? mq : mq[pool] ?? defaultMaxQueue),
    capOf: (pool) => caps?.[pool]
  }
}

/** The ceiling the settings' plan gives a (key, pool); `undefined` when it gives none (learn it). */
export const plannedCeiling = (settings: Settings, key: string, pool: Pool): number | undefined => {
  const spec = settings.planOf(key)
  const planned = spec === "unknown"
    ? undefined
    : typeof spec === "string"
    ? (isPlanName(spec) ? limitsOf(spec, settings.table)[pool] : undefined)
    : spec[pool]
  // A plan number of 0 (music on Free) is clamped to the minimum: the server stays the judge.
  return planned === undefined || !Number.isFinite(planned)
    ? undefined
    : Math.max(settings.config.minLimit, Math.floor(planned))
}

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
  /** Permits handed out at most now: {@link limitOf}, kept here so a grant reads one field. */
  permits: number
  readonly lanes = [new LaneQueue(), new LaneQueue(), new LaneQueue()] as const
  readonly key: string
  readonly pool: Pool
  readonly adaptive: AdaptiveLimit.AdaptiveState
  maxQueue: number
  /** The hard cap (option `caps`): nothing lifts the permits above it; the estimate learns on below. */
  cap: number | undefined
  /** The ceiling the options' plan gave; a reconfigure moves the ceiling only when this number changes. */
  planned: number | undefined
  /** The mean time a permit is held: the plain mean of the first samples, then exponentially weighted. */
  serviceMillis = 0
  samples = 0
  /** Set once enough permits returned for `serviceMillis` to predict waits (see `releaseUnsafe`). */
  predicting = false
  /** Made on the first change when `onOccupancy` is set. */
  view: OccupancyView | undefined = undefined
  constructor(key: string, pool: Pool, settings: Settings) {
    this.key = key
    this.pool = pool
    this.planned = plannedCeiling(settings, key, pool)
    this.adaptive = AdaptiveLimit.make({
      initial: this.planned ?? settings.initialLimit,
      ceiling: this.planned,
      config: settings.config
    })
    this.maxQueue = settings.maxQueueOf(pool)
    this.cap = settings.capOf(pool)
    this.permits = limitOf(this, settings.config)
  }
}

/** The permits a cell hands out: its adaptive limit's, never above its hard cap (which wins over `minLimit`). */
export const limitOf = (cell: Cell, config: AdaptiveLimit.AdaptiveLimitConfig): number => {
  const permits = AdaptiveLimit.permitsOf(cell.adaptive, config)
  return cell.cap !== undefined && cell.cap < permits ? cell.cap : permits
}

/**
 * A 429 `too_many_concurrent_requests` for a cell: `AdaptiveLimit.onConcurrencyLimited`, except that under a cap
 * the cut starts from the permits in force. The estimate learns on above the cap; once the server's number is
 * taken, it is brought down to the cap before the cut, else cuts would be absorbed above the cap and change no
 * permit.
 */
export const concurrencyLimited = (
  cell: Cell,
  limitFromServer: number | undefined,
  config: AdaptiveLimit.AdaptiveLimitConfig
): Array<AdaptiveLimit.LimitChangeReason> => {
  const adaptive = cell.adaptive
  if (cell.cap === undefined) return AdaptiveLimit.onConcurrencyLimited(adaptive, limitFromServer, config)
  const reasons: Array<AdaptiveLimit.LimitChangeReason> = []
  const before = adaptive.estimate
  if (limitFromServer !== undefined && AdaptiveLimit.setCeiling(adaptive, limitFromServer, config)) {
    reasons.push("ceiling")
    // A lower ceiling explains the 429 by itself, as in AdaptiveLimit.
    if (adaptive.estimate < before) return reasons
  }
  if (adaptive.estimate > cell.cap) adaptive.estimate = cell.cap
  return [...reasons, ...AdaptiveLimit.onConcurrencyLimited(adaptive, undefined, config)]
}

/**
 * Moves a cell to new settings (`planned`: their plan's ceiling for it, computed beforehand); the caller then
 * recomputes its permits with {@link limitOf}. Only a changed plan number moves the ceiling, as a plan change
 * does (a raise adds the difference, a cut clamps): an unchanged one keeps what the server's headers taught,
 * and a plan that no longer gives a number keeps the learned state.
 */
export const reconfigure = (cell: Cell, settings: Settings, planned: number | undefined) => {
  const { config } = settings
  if (planned !== undefined && planned !== cell.planned) AdaptiveLimit.setCeiling(cell.adaptive, planned, config)
  cell.planned = planned
  // New bounds (minLimit, maxLimit while no ceiling is known) hold at once, not from the next signal.
  const adaptive = cell.adaptive
  adaptive.estimate = Math.max(config.minLimit, Math.min(AdaptiveLimit.capOf(adaptive, config), adaptive.estimate))
  cell.cap = settings.capOf(cell.pool)
  cell.maxQueue = settings.maxQueueOf(cell.pool)
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
