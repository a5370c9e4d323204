/**
 * Plan-aware concurrency limiter: permits per (API key id, pool), three
 * priority lanes, a bounded queue with a deadline, and an adaptive (AIMD)
 * limit that learns from the ElevenLabs concurrency headers and from
 * `too_many_concurrent_requests`.
 *
 * **Details**
 *
 * - A permit is held while a request is on the wire (until its last body
 *   byte): {@link ConcurrencyLimiter.withPermit} for one effect,
 *   {@link ConcurrencyLimiter.acquire} for a scope (streamed bodies).
 * - Keys are API-key *ids* (a fingerprint the caller computes), never keys.
 * - Lanes `interactive`, `default`, `batch`; FIFO inside a lane. Across lanes
 *   the waiter with the earliest *virtual deadline* `arrival + aging[lane]`
 *   goes first (ties: higher lane). So a waiter can only be overtaken by a
 *   waiter that arrived less than `aging[its lane] − aging[their lane]` after
 *   it: nothing starves (default aging 0 s / 5 s / 30 s).
 * - The queue of a (key, pool) is bounded (`maxQueue`, default 1000): a full
 *   queue fails at once with `QueueFull`; a wait longer than `queueTimeout`
 *   (default 120 s) fails with `QueueTimeout`.
 * - Interrupting a waiter removes it from the queue; interrupting a runner
 *   returns its permit. A shrinking limit cancels nothing: new permits wait
 *   until in-flight drops below it.
 * - A front-of-lane requeue (after `too_many_concurrent_requests`) is never
 *   refused with `QueueFull`.
 * - All queue deadlines share one heap and one timer fiber (on `Clock`, so
 *   `TestClock` drives them): about 1.8 KB per queued caller, fiber included.
 * - `onOccupancy` (option) is called synchronously on every change of a
 *   (key, pool)'s in-flight or queued counts: grant, release, enqueue, a
 *   queued caller leaving or timing out, a waiter handed a permit. Gauges fed
 *   from it need no snapshot per attempt and no subscriber fiber.
 * - The limit rules live in {@link AdaptiveLimit}. State per (key, pool) is
 *   kept for the limiter's lifetime (a few keys × 4 pools).
 *
 * **Example** (A TTS call holding a permit)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ConcurrencyLimiter } from "elevenlabs-resilience/resilience"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* ConcurrencyLimiter.ConcurrencyLimiter
 *   return yield* limiter.usePermit({ key: "key-1a2b", pool: "standard", lane: "interactive" }, (permit) =>
 *     Effect.succeed("audio").pipe(Effect.tap(() => permit.onResponse({ maximumConcurrentRequests: 10 }))))
 * })
 * // provide ConcurrencyLimiter.layer({ plan: "pro" })
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Exit, Fiber, Layer, PubSub, Schema, Scope, Stream } from "effect"
import type * as Take from "effect/Take"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as AdaptiveLimit from "./AdaptiveLimit.ts"
import type { PlanLimits, PlanName, Pool } from "./Plans.ts"
import { isPlanName, limitsOf, poolOfModel, pools, deploymentGuidePlans } from "./Plans.ts"

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
  /** Requests other clients run on the same key (latest observation). */
  readonly others: number
  readonly inFlight: number
  readonly queued: { readonly [L in Lane]: number }
  readonly queueDepth: number
  readonly maxQueue: number
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
 * or shut down: its lane −1), `expired` (a queued caller's queue deadline passed: its lane −1).
 */
export type OccupancyChange = "granted" | "queued" | "dispatched" | "released" | "abandoned" | "expired"

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
    readonly others: number
    /** The first reason; `reasons` has them all in the order applied. */
    readonly reason: AdaptiveLimit.LimitChangeReason
    readonly reasons: ReadonlyArray<AdaptiveLimit.LimitChangeReason>
  }
  | { readonly _tag: "QueueFull"; readonly key: string; readonly pool: Pool; readonly lane: Lane; readonly depth: number }
  | {
    readonly _tag: "QueueTimeout"
    readonly key: string
    readonly pool: Pool
    readonly lane: Lane
    readonly waitedMillis: number
  }
  | { readonly _tag: "Waited"; readonly key: string; readonly pool: Pool; readonly lane: Lane; readonly waitedMillis: number }
  /** A caller joined the queue (`depth` counts it); it leaves with `Waited`, `QueueTimeout` or interruption. */
  | { readonly _tag: "Queued"; readonly key: string; readonly pool: Pool; readonly lane: Lane; readonly depth: number }

// ==== Errors

const PoolSchema = Schema.Literals(pools)
const LaneSchema = Schema.Literals(lanes)

/** The queue of the (key, pool) is full: answered at once. */
export class QueueFull extends Schema.Error<QueueFull>("elevenlabs-resilience/ConcurrencyLimiter/QueueFull")({
  _tag: Schema.tag("QueueFull"),
  key: Schema.String,
  pool: PoolSchema,
  lane: LaneSchema,
  depth: Schema.Number,
  maxQueue: Schema.Number
}) {
  override get message(): string {
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

// ==== Service

export const TypeId = "~elevenlabs-resilience/ConcurrencyLimiter" as const
export type TypeId = typeof TypeId

/** The limiter service. */
export interface ConcurrencyLimiter {
  readonly [TypeId]: TypeId
  /** Runs `effect` holding a permit; the permit returns when it ends, however it ends. */
  readonly withPermit: (
    options: PermitRequest
  ) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ConcurrencyLimiterError, R>
  /** Like `withPermit`, giving the permit to `f` (to feed `onResponse` / `onConcurrencyLimited`). */
  readonly usePermit: <A, E, R>(
    options: PermitRequest,
    f: (permit: Permit) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | ConcurrencyLimiterError, R>
  /** A permit released when the scope closes (streamed bodies hold it until the last byte). */
  readonly acquire: (options: PermitRequest) => Effect.Effect<Permit, ConcurrencyLimiterError, Scope.Scope>
  /** Feeds response headers. Call while the permit is still held (it counts as ours). */
  readonly onResponse: (key: string, pool: Pool, meta: ResponseMeta) => Effect.Effect<void>
  /** Feeds a 429 `too_many_concurrent_requests`; the server's number (if any) becomes the ceiling. Always cuts. */
  readonly onConcurrencyLimited: (key: string, pool: Pool, limitFromServer?: number | undefined) => Effect.Effect<void>
  /** The state of a (key, pool). */
  readonly snapshot: (key: string, pool: Pool) => Effect.Effect<Snapshot>
  /** Limit changes, queue full / timeouts, and waits with their durations. Ends when the limiter's scope closes. */
  readonly events: Stream.Stream<ConcurrencyEvent>
}

/** The service tag. */
export const ConcurrencyLimiter: Context.Service<ConcurrencyLimiter, ConcurrencyLimiter> = Context.Service<
  ConcurrencyLimiter
>(TypeId)

/** Options of {@link make}; every one has a default. */
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
  /** Queue bound per (key, pool), all lanes together; a number or per pool. Default 1000. */
  readonly maxQueue?: number | Partial<Record<Pool, number>> | undefined
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
}

// ==== Internals

const WAITING = 0
const GRANTED = 1
const GONE = 2
/** Made for a call, not yet queued or granted (its exit frame has nothing to give back). */
const NEW = 3

/**
 * A call's place at the limiter: made before the call's one exit frame, then granted at once or queued (an
 * intrusive list node, so removal is O(1) and memory small). The exit frame reads its state to give back
 * what the call holds, so no mask is needed around the enqueue.
 */
class Waiter {
  prev: Waiter | undefined = undefined
  next: Waiter | undefined = undefined
  state = NEW
  resume: ((effect: Effect.Effect<PermitImpl, ConcurrencyLimiterError>) => void) | undefined = undefined
  permit: PermitImpl | undefined = undefined
  /** Position in the limiter's deadline heap, -1 when not in it. */
  heapIndex = -1
  cell!: Cell
  lane = 0
  order = 0
  enqueuedAt = 0
  deadline = 0
}

class LaneQueue {
  head: Waiter | undefined = undefined
  tail: Waiter | undefined = undefined
  size = 0
  pushBack(w: Waiter) {
    w.prev = this.tail
    if (this.tail) this.tail.next = w
    else this.head = w
    this.tail = w
    this.size++
  }
  pushFront(w: Waiter) {
    w.next = this.head
    if (this.head) this.head.prev = w
    else this.tail = w
    this.head = w
    this.size++
  }
  remove(w: Waiter) {
    if (w.prev) w.prev.next = w.next
    else this.head = w.next
    if (w.next) w.next.prev = w.prev
    else this.tail = w.prev
    w.prev = w.next = undefined
    this.size--
  }
}

/**
 * Queue deadlines of all waiters: one binary min-heap and one timer fiber for
 * the whole limiter, instead of a racing timer per waiter (which costs about
 * 3 KB each; see bench/limiter.ts).
 */
class DeadlineHeap {
  readonly items: Array<Waiter> = []
  get size() {
    return this.items.length
  }
  peek(): Waiter | undefined {
    return this.items[0]
  }
  push(w: Waiter) {
    w.heapIndex = this.items.length
    this.items.push(w)
    this.up(w.heapIndex)
  }
  remove(w: Waiter) {
    const i = w.heapIndex
    if (i < 0) return
    const last = this.items.pop()!
    w.heapIndex = -1
    if (last !== w) {
      this.items[i] = last
      last.heapIndex = i
      this.up(i)
      this.down(last.heapIndex)
    }
  }
  private swap(i: number, j: number) {
    const a = this.items[i]!
    const b = this.items[j]!
    this.items[i] = b
    this.items[j] = a
    a.heapIndex = j
    b.heapIndex = i
  }
  private up(i: number) {
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (this.items[parent]!.deadline <= this.items[i]!.deadline) return
      this.swap(i, parent)
      i = parent
    }
  }
  private down(i: number) {
    const n = this.items.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < n && this.items[l]!.deadline < this.items[m]!.deadline) m = l
      if (r < n && this.items[r]!.deadline < this.items[m]!.deadline) m = r
      if (m === i) return
      this.swap(i, m)
      i = m
    }
  }
}

/** The {@link Occupancy} view of a cell: getters over its counts, made once per cell. */
class OccupancyView implements Occupancy {
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

class Cell {
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

class PermitImpl implements Permit {
  released = false
  readonly cell: Cell
  readonly seq: number
  readonly lane: Lane
  readonly waitedMillis: number
  readonly limiter: Impl
  constructor(cell: Cell, seq: number, lane: Lane, waitedMillis: number, limiter: Impl) {
    this.cell = cell
    this.seq = seq
    this.lane = lane
    this.waitedMillis = waitedMillis
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


const fail = (reason: ConcurrencyLimiterErrorReason) => Effect.fail(new ConcurrencyLimiterError({ reason }))

const positiveMillis = (input: Duration.Input): number | undefined => {
  const d = Duration.fromInput(input)
  if (d._tag === "None") return undefined
  const ms = Duration.toMillis(d.value)
  return ms >= 0 && !Number.isNaN(ms) ? ms : undefined
}

class Impl {
  readonly cells = new Map<string, Cell>()
  readonly config: AdaptiveLimit.AdaptiveLimitConfig
  readonly aging: ReadonlyArray<number>
  readonly queueTimeoutMillis: number
  readonly planOf: (key: string) => PlanSpec
  readonly table: { readonly [P in PlanName]: PlanLimits }
  readonly initialLimit: number
  readonly maxQueueOf: (pool: Pool) => number
  readonly onOccupancy: ((occupancy: Occupancy, change: OccupancyChange, lane: Lane) => void) | undefined

  readonly clock: Clock.Clock
  readonly pubsub: PubSub.PubSub<Take.Take<ConcurrencyEvent>>
  readonly context: Context.Context<never>
  readonly deadlines = new DeadlineHeap()
  timer: Fiber.Fiber<void> | undefined = undefined
  timerAt = Number.POSITIVE_INFINITY
  timerGeneration = 0
  closed = false

  constructor(
    options: Options,
    clock: Clock.Clock,
    pubsub: PubSub.PubSub<Take.Take<ConcurrencyEvent>>,
    context: Context.Context<never>
  ) {
    this.clock = clock
    this.pubsub = pubsub
    this.context = context
    this.onOccupancy = options.onOccupancy
    const num = (n: number | undefined, dflt: number, ok: (n: number) => boolean, name: string) => {
      if (n === undefined) return dflt
      if (!ok(n)) throw new Error(`ConcurrencyLimiter: invalid ${name}: ${n}`)
      return n
    }
    const minLimit = num(options.minLimit, 1, (n) => Number.isInteger(n) && n >= 1, "minLimit")
    this.config = {
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
    this.initialLimit = num(options.initialLimit, 2, (n) => n >= 1 && Number.isFinite(n), "initialLimit")
    const agingDefaults: Record<Lane, Duration.Input> = { interactive: 0, default: "5 seconds", batch: "30 seconds" }
    this.aging = lanes.map((lane) => {
      const ms = positiveMillis(options.laneAging?.[lane] ?? agingDefaults[lane])
      if (ms === undefined || !Number.isFinite(ms)) throw new Error(`ConcurrencyLimiter: invalid laneAging.${lane}`)
      return ms
    })
    const qt = positiveMillis(options.queueTimeout ?? "120 seconds")
    if (qt === undefined) throw new Error("ConcurrencyLimiter: invalid queueTimeout")
    this.queueTimeoutMillis = qt
    const plan = options.plan ?? "unknown"
    this.planOf = typeof plan === "function" ? plan : () => plan
    this.table = options.table ?? deploymentGuidePlans
    const mq = options.maxQueue ?? 1000
    this.maxQueueOf = (pool) => (typeof mq === "number" ? mq : mq[pool] ?? 1000)
  }

  /** The cell each pool last gave: a stack calls with one key, so most lookups need no map and no key string. */
  readonly lastCell: Partial<Record<Pool, Cell>> = {}

  cell(key: string, pool: Pool): Cell {
    const last = this.lastCell[pool]
    if (last !== undefined && last.key === key) return last
    const id = `${pool}\u0000${key}`
    let cell = this.cells.get(id)
    if (cell === undefined) {
      const spec = this.planOf(key)
      const planned = spec === "unknown"
        ? undefined
        : typeof spec === "string"
        ? (isPlanName(spec) ? limitsOf(spec, this.table)[pool] : undefined)
        : spec[pool]
      // A plan number of 0 (music on Free) is clamped to the minimum: the server stays the judge.
      const ceiling = planned === undefined || !Number.isFinite(planned)
        ? undefined
        : Math.max(this.config.minLimit, Math.floor(planned))
      const adaptive = AdaptiveLimit.make({ initial: ceiling ?? this.initialLimit, ceiling, config: this.config })
      cell = new Cell(key, pool, adaptive, this.maxQueueOf(pool), this.config)
      this.cells.set(id, cell)
    }
    this.lastCell[pool] = cell
    return cell
  }

  /** Tells `onOccupancy` (if any) that `cell`'s counts just changed. */
  occupancy(cell: Cell, change: OccupancyChange, lane: Lane) {
    const f = this.onOccupancy
    if (f === undefined) return
    try {
      f(cell.view ??= new OccupancyView(cell), change, lane)
    } catch {
      // A gauge callback must not break the limiter's bookkeeping (see Options.onOccupancy).
    }
  }

  /**
   * Publishes now, synchronously, when the buffer takes the events (no effect to run); through
   * `PubSub.publish` (which slides the oldest out) only when it does not. Call it when the events happen.
   */
  publish(events: ReadonlyArray<ConcurrencyEvent>): Effect.Effect<void> {
    if (events.length === 0) return Effect.void
    const take = events as unknown as Take.Take<ConcurrencyEvent>
    return PubSub.publishUnsafe(this.pubsub, take) ? Effect.void : Effect.asVoid(PubSub.publish(this.pubsub, take))
  }

  /** Hands free permits to waiters in lane order (earliest virtual deadline, ties to the higher lane). */
  dispatch(cell: Cell, events: Array<ConcurrencyEvent>) {
    while (cell.queued > 0 && cell.inFlight < cell.permits) {
      let best: Waiter | undefined
      for (const lane of cell.lanes) {
        const head = lane.head
        if (head !== undefined && (best === undefined || head.order < best.order)) best = head
      }
      if (best === undefined) return
      cell.lanes[best.lane]!.remove(best)
      this.deadlines.remove(best)
      cell.queued--
      const waited = Math.max(0, this.clock.currentTimeMillisUnsafe() - best.enqueuedAt)
      const permit = this.grant(cell, lanes[best.lane]!, waited)
      best.state = GRANTED
      best.permit = permit
      this.occupancy(cell, "dispatched", lanes[best.lane]!)
      events.push({ _tag: "Waited", key: cell.key, pool: cell.pool, lane: lanes[best.lane]!, waitedMillis: waited })
      const resume = best.resume
      best.resume = undefined
      // Resumed fibers may run inline: yield first, so a release chain never grows the stack.
      resume?.(Effect.as(Effect.yieldNow, permit))
    }
  }

  grant(cell: Cell, lane: Lane, waited: number): PermitImpl {
    cell.inFlight++
    return new PermitImpl(cell, ++cell.issued, lane, waited, this)
  }

  releaseUnsafe(permit: PermitImpl): Array<ConcurrencyEvent> {
    const events: Array<ConcurrencyEvent> = []
    if (permit.released) return events
    permit.released = true
    permit.cell.inFlight--
    this.occupancy(permit.cell, "released", permit.lane)
    this.dispatch(permit.cell, events)
    return events
  }

  applyChange(cell: Cell, reasons: ReadonlyArray<AdaptiveLimit.LimitChangeReason>, before: number, ceilingBefore: number | undefined, events: Array<ConcurrencyEvent>) {
    const after = AdaptiveLimit.permitsOf(cell.adaptive, this.config)
    cell.permits = after
    const first = reasons[0]
    if (first !== undefined && (after !== before || cell.adaptive.ceiling !== ceilingBefore)) {
      events.push({
        _tag: "LimitChanged",
        key: cell.key,
        pool: cell.pool,
        from: before,
        to: after,
        estimate: cell.adaptive.estimate,
        ceiling: cell.adaptive.ceiling,
        others: cell.adaptive.others,
        reason: first,
        reasons
      })
    }
    if (after > before) this.dispatch(cell, events)
  }

  responseUnsafe(cell: Cell, meta: ResponseMeta, ours: number): Array<ConcurrencyEvent> {
    const events: Array<ConcurrencyEvent> = []
    const before = cell.permits
    const ceilingBefore = cell.adaptive.ceiling
    const reasons = AdaptiveLimit.onResponse(cell.adaptive, {
      maximum: meta.maximumConcurrentRequests,
      current: meta.currentConcurrentRequests,
      ours,
      saturated: cell.queued > 0 || ours >= cell.permits
    }, this.config)
    this.applyChange(cell, reasons, before, ceilingBefore, events)
    return events
  }

  limitedUnsafe(cell: Cell, limitFromServer: number | undefined, seq: number | undefined): Array<ConcurrencyEvent> {
    const events: Array<ConcurrencyEvent> = []
    const before = cell.permits
    const ceilingBefore = cell.adaptive.ceiling
    let reasons: Array<AdaptiveLimit.LimitChangeReason>
    if (seq !== undefined && seq <= cell.lastCut) {
      // Admitted before the last cut: that cut already answered this congestion.
      reasons = limitFromServer !== undefined && AdaptiveLimit.setCeiling(cell.adaptive, limitFromServer, this.config)
        ? ["ceiling"]
        : []
    } else {
      reasons = AdaptiveLimit.onConcurrencyLimited(cell.adaptive, limitFromServer, this.config)
      cell.lastCut = cell.issued
    }
    this.applyChange(cell, reasons, before, ceilingBefore, events)
    return events
  }

  /**
   * Checks the request, then grants `waiter` a permit at once or queues it and waits. Synchronous up to the
   * wait; it runs inside the caller's exit frame (`settle`), which gives back whatever `waiter` holds by then.
   */
  enter(options: PermitRequest, waiter: Waiter): Effect.Effect<PermitImpl, ConcurrencyLimiterError> {
    return Effect.suspend(() => {
      const lane = options.lane ?? "default"
      const laneIndex = lanes.indexOf(lane)
      if (laneIndex < 0) return fail(new InvalidPermitRequest({ message: `unknown lane: ${String(lane)}` }))
      if (typeof options.key !== "string" || options.key.length === 0) {
        return fail(new InvalidPermitRequest({ message: "the key id must be a non-empty string" }))
      }
      const pool = "pool" in options ? options.pool : poolOfModel(options.model, options.concurrencyGroup)
      if (!(pools as ReadonlyArray<string>).includes(pool)) {
        return fail(new InvalidPermitRequest({ message: `unknown pool: ${String(pool)}` }))
      }
      const timeoutMillis = options.timeout === undefined ? this.queueTimeoutMillis : positiveMillis(options.timeout)
      if (timeoutMillis === undefined) {
        return fail(new InvalidPermitRequest({ message: "the queue timeout must be a non-negative duration" }))
      }
      const cell = this.cell(options.key, pool)
      // Fast path: a free permit and nobody waiting.
      if (cell.queued === 0 && cell.inFlight < cell.permits) {
        const permit = this.grant(cell, lane, 0)
        waiter.state = GRANTED
        waiter.permit = permit
        this.occupancy(cell, "granted", lane)
        return Effect.succeed(permit)
      }
      // A front-of-lane requeue was admitted once already: it may exceed the bound (by at most the
      // number in flight), rather than turning a 429 requeue into a QueueFull.
      if (cell.queued >= cell.maxQueue && options.front !== true) {
        const depth = cell.queued
        return Effect.andThen(
          this.publish([{ _tag: "QueueFull", key: cell.key, pool, lane, depth }]),
          fail(new QueueFull({ key: cell.key, pool, lane, depth, maxQueue: cell.maxQueue }))
        )
      }
      const now = this.clock.currentTimeMillisUnsafe()
      const queue = cell.lanes[laneIndex]!
      let order = now + this.aging[laneIndex]!
      let front = false
      if (options.front === true) {
        front = true
        if (queue.head !== undefined) order = Math.min(order, queue.head.order)
      } else if (queue.tail !== undefined) {
        order = Math.max(order, queue.tail.order) // keeps each lane sorted even if the clock steps back
      }
      const deadline = now + timeoutMillis
      waiter.cell = cell
      waiter.lane = laneIndex
      waiter.order = order
      waiter.enqueuedAt = now
      waiter.deadline = deadline
      waiter.state = WAITING
      if (front) queue.pushFront(waiter)
      else queue.pushBack(waiter)
      cell.queued++
      this.occupancy(cell, "queued", lane)
      if (Number.isFinite(deadline)) {
        this.deadlines.push(waiter)
        if (deadline < this.timerAt) this.startTimer(deadline)
      }
      // No canceller: an interrupted wait ends in the caller's exit frame (`settle`), which leaves the queue.
      const wait = Effect.callback<PermitImpl, ConcurrencyLimiterError>((resume) => {
        if (waiter.state === GRANTED) resume(Effect.succeed(waiter.permit!))
        else if (waiter.state === WAITING) waiter.resume = resume
        else resume(this.timeoutOf(waiter)) // expired before this fiber got here
      })
      const queued = this.publish([{ _tag: "Queued", key: cell.key, pool, lane, depth: cell.queued }])
      return Effect.andThen(queued, wait)
    })
  }

  /**
   * What a call's exit gives back: its permit when it was granted one (used, or granted while the caller was
   * being interrupted), its queue place when it still waits; nothing when it never got that far.
   */
  settle(waiter: Waiter): Effect.Effect<void> | undefined {
    if (waiter.state === GRANTED) {
      waiter.state = GONE
      return waiter.permit!.release
    }
    if (waiter.state === WAITING) this.abandon(waiter.cell, waiter)
    return undefined
  }

  timeoutOf(waiter: Waiter): Effect.Effect<never, ConcurrencyLimiterError> {
    const cell = waiter.cell
    const lane = lanes[waiter.lane]!
    const waited = Math.max(0, waiter.deadline - waiter.enqueuedAt)
    return fail(new QueueTimeout({ key: cell.key, pool: cell.pool, lane, waited: Duration.millis(waited) }))
  }

  /** (Re)starts the one timer fiber so it wakes at `at`. */
  startTimer(at: number) {
    if (this.closed) return
    const previous = this.timer
    this.timerAt = at
    const generation = ++this.timerGeneration
    const self = this
    this.timer = Effect.runForkWith(this.context)(Effect.gen(function*() {
      for (;;) {
        const now = self.clock.currentTimeMillisUnsafe()
        if (self.timerAt > now) yield* Effect.sleep(Duration.millis(self.timerAt - now))
        // A newer timer took over (an earlier deadline arrived): leave the state to it.
        if (generation !== self.timerGeneration) return
        const events = self.expire()
        yield* self.publish(events)
        if (generation !== self.timerGeneration) return
        const next = self.deadlines.peek()
        if (next === undefined) {
          self.timerAt = Number.POSITIVE_INFINITY
          self.timer = undefined
          return
        }
        self.timerAt = next.deadline
      }
    }))
    previous?.interruptUnsafe()
  }

  /** Fails every waiter whose deadline has passed. */
  expire(): Array<ConcurrencyEvent> {
    const events: Array<ConcurrencyEvent> = []
    const now = this.clock.currentTimeMillisUnsafe()
    for (let w = this.deadlines.peek(); w !== undefined && w.deadline <= now; w = this.deadlines.peek()) {
      const resume = w.resume
      this.abandon(w.cell, w, "expired")
      events.push({
        _tag: "QueueTimeout",
        key: w.cell.key,
        pool: w.cell.pool,
        lane: lanes[w.lane]!,
        waitedMillis: Math.max(0, w.deadline - w.enqueuedAt)
      })
      resume?.(this.timeoutOf(w))
    }
    return events
  }

  /** Removes a waiter that is still queued (interrupt, timeout). */
  abandon(cell: Cell, waiter: Waiter, change: "abandoned" | "expired" = "abandoned") {
    if (waiter.state !== WAITING) return
    waiter.state = GONE
    waiter.resume = undefined
    cell.lanes[waiter.lane]!.remove(waiter)
    this.deadlines.remove(waiter)
    cell.queued--
    this.occupancy(cell, change, lanes[waiter.lane]!)
  }

  snapshot(key: string, pool: Pool): Snapshot {
    const cell = this.cell(key, pool)
    return {
      key,
      pool,
      limit: cell.permits,
      estimate: cell.adaptive.estimate,
      ceiling: cell.adaptive.ceiling,
      others: cell.adaptive.others,
      inFlight: cell.inFlight,
      queued: { interactive: cell.lanes[0].size, default: cell.lanes[1].size, batch: cell.lanes[2].size },
      queueDepth: cell.queued,
      maxQueue: cell.maxQueue
    }
  }

  /** Fails every queued caller with an interruption (the limiter's scope closed). */
  shutdown() {
    this.closed = true
    this.timer?.interruptUnsafe()
    this.timer = undefined
    for (const cell of this.cells.values()) {
      for (const queue of cell.lanes) {
        for (let w = queue.head; w !== undefined; w = queue.head) {
          const resume = w.resume
          this.abandon(cell, w)
          resume?.(Effect.interrupt)
        }
      }
    }
  }
}

/**
 * Builds a limiter. Needs a `Scope`: closing it ends `events` and interrupts
 * queued callers. Throws a defect on invalid options (a configuration bug).
 */
export const make = (options: Options = {}): Effect.Effect<ConcurrencyLimiter, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const scope = yield* Scope.Scope
    const pubsub = yield* PubSub.sliding<Take.Take<ConcurrencyEvent>>(options.eventBuffer ?? 1024)
    const context = yield* Effect.context<never>()
    const impl = yield* Effect.sync(() => new Impl(options, clock, pubsub, context))
    yield* Scope.addFinalizer(scope, Effect.andThen(Effect.sync(() => impl.shutdown()), PubSub.end(pubsub, Exit.void)))

    // One exit frame per call, and no mask: the waiter is made before the frame, so an interruption at any
    // point finds in it what the call holds (nothing yet, a queue place, or a permit), and `settle` gives it back.
    const usePermit = <A, E, R>(
      request: PermitRequest,
      f: (permit: Permit) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | ConcurrencyLimiterError, R> =>
      Effect.suspend(() => {
        const waiter = new Waiter()
        return Effect.onExitPrimitive(Effect.flatMap(impl.enter(request, waiter), f), () => impl.settle(waiter))
      })

    return ConcurrencyLimiter.of({
      [TypeId]: TypeId,
      usePermit,
      withPermit: (request) => (effect) => usePermit(request, () => effect),
      // The permit outlives this effect: once granted (under the mask) its release is the scope's.
      acquire: (request) =>
        Effect.uninterruptibleMask((restore) => {
          const waiter = new Waiter()
          return Effect.flatMap(
            Effect.onExitPrimitive(restore(impl.enter(request, waiter)), (exit) => Exit.isFailure(exit) ? impl.settle(waiter) : undefined),
            (permit) => {
              waiter.state = GONE
              return Effect.as(Effect.addFinalizer(() => permit.release), permit as Permit)
            }
          )
        }),
      onResponse: (key, pool, meta) =>
        Effect.suspend(() => {
          const cell = impl.cell(key, pool)
          return impl.publish(impl.responseUnsafe(cell, meta, cell.inFlight))
        }),
      onConcurrencyLimited: (key, pool, limitFromServer) =>
        Effect.suspend(() => impl.publish(impl.limitedUnsafe(impl.cell(key, pool), limitFromServer, undefined))),
      snapshot: (key, pool) => Effect.sync(() => impl.snapshot(key, pool)),
      events: Stream.fromPubSubTake(pubsub)
    })
  })

/** The limiter as a layer. */
export const layer = (options: Options = {}): Layer.Layer<ConcurrencyLimiter> =>
  Layer.effect(ConcurrencyLimiter, make(options))
