/**
 * The limiter's state and rules: a cell per (key, pool) with its adaptive limit, lanes and counts, the permits
 * it grants, and the bookkeeping of grants, releases, queue expiries and limit changes.
 *
 * @internal
 */
import { Clock, Context, Duration, Effect, Fiber, PubSub } from "effect"
import type * as Take from "effect/Take"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as AdaptiveLimit from "./AdaptiveLimit.ts"
import * as Admission from "./ConcurrencyLimiterAdmission.ts"
import {
  Cell,
  concurrencyLimited,
  limitOf,
  OccupancyView,
  PermitImpl,
  plannedCeiling,
  positiveMillis,
  reconfigure as reconfigureCell,
  type Settings,
  settingsOf
} from "./ConcurrencyLimiterCell.ts"
import {
  type ConcurrencyEvent,
  ConcurrencyLimiterError,
  type ConcurrencyLimiterErrorReason,
  InvalidPermitRequest,
  type Lane,
  lanes,
  type Occupancy,
  type OccupancyChange,
  type Options,
  type PermitRequest,
  QueueFull,
  QueueTimeout,
  type Snapshot
} from "./ConcurrencyLimiterModel.ts"
import { DeadlineHeap, GONE, GRANTED, Waiter, WAITING } from "./ConcurrencyLimiterQueue.ts"
import type { Pool } from "./Plans.ts"
import { poolOfModel, pools } from "./Plans.ts"

const fail = (reason: ConcurrencyLimiterErrorReason) => Effect.fail(new ConcurrencyLimiterError({ reason }))

export class Impl {
  readonly cells = new Map<string, Cell>()
  // The settings `reconfigure` replaces, kept as plain fields so the hot path reads one field each.
  settings: Settings
  config: AdaptiveLimit.AdaptiveLimitConfig
  aging: ReadonlyArray<number>
  queueTimeoutMillis: number
  readonly onOccupancy: ((occupancy: Occupancy, change: OccupancyChange, lane: Lane) => void) | undefined
  readonly onLimitChanged: Options["onLimitChanged"]

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
    this.onLimitChanged = options.onLimitChanged
    this.settings = settingsOf(options)
    this.config = this.settings.config
    this.aging = this.settings.aging
    this.queueTimeoutMillis = this.settings.queueTimeoutMillis
  }

  /**
   * Applies new options to the limiter and to every (key, pool) it knows. All-or-nothing: the options and the
   * plan of every known key are read first, so an invalid option (a defect) or a throwing `plan` function
   * changes nothing. A lower limit cancels nothing; a higher one hands permits to waiters at once.
   */
  reconfigure(options: Options): Array<ConcurrencyEvent> {
    const next = settingsOf(options)
    const cells = Array.from(this.cells.values())
    const planned = cells.map((cell) => plannedCeiling(next, cell.key, cell.pool))
    this.settings = next
    this.config = next.config
    this.aging = next.aging
    this.queueTimeoutMillis = next.queueTimeoutMillis
    const events: Array<ConcurrencyEvent> = []
    cells.forEach((cell, i) => {
      const before = cell.permits
      const ceilingBefore = cell.adaptive.ceiling
      reconfigureCell(cell, next, planned[i])
      this.applyChange(cell, ["config"], before, ceilingBefore, events)
    })
    return events
  }

  /** The cell each pool last gave: a stack calls with one key, so most lookups need no map and no key string. */
  readonly lastCell: Partial<Record<Pool, Cell>> = {}

  cell(key: string, pool: Pool): Cell {
    const last = this.lastCell[pool]
    if (last !== undefined && last.key === key) return last
    const id = `${pool}\u0000${key}`
    let cell = this.cells.get(id)
    if (cell === undefined) {
      cell = new Cell(key, pool, this.settings)
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
    const published = PubSub.publishUnsafe(this.pubsub, take)
      ? Effect.void
      : Effect.asVoid(PubSub.publish(this.pubsub, take))
    const hook = this.onLimitChanged
    if (hook === undefined) return published
    let after: Effect.Effect<void> | undefined
    for (const e of events) {
      if (e._tag !== "LimitChanged") continue
      // After the publish, whole, and never the caller's failure: a hook that fails or dies is ignored.
      const run = Effect.uninterruptible(Effect.catchCause(Effect.suspend(() => hook(e)), () => Effect.void))
      after = after === undefined ? run : Effect.andThen(after, run)
    }
    return after === undefined ? published : Effect.andThen(published, after)
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
      const now = this.clock.currentTimeMillisUnsafe()
      const permit = this.grant(cell, lanes[best.lane]!, Math.max(0, now - best.enqueuedAt), now)
      best.state = GRANTED
      best.permit = permit
      this.occupancy(cell, "dispatched", lanes[best.lane]!)
      events.push({
        _tag: "Waited",
        key: cell.key,
        pool: cell.pool,
        lane: lanes[best.lane]!,
        waitedMillis: permit.waitedMillis
      })
      const resume = best.resume
      best.resume = undefined
      // Resumed fibers may run inline: yield first, so a release chain never grows the stack.
      resume?.(Effect.as(Effect.yieldNow, permit))
    }
  }

  grant(cell: Cell, lane: Lane, waited: number, now: number): PermitImpl {
    cell.inFlight++
    return new PermitImpl(cell, ++cell.issued, lane, waited, now, this)
  }

  releaseUnsafe(permit: PermitImpl): Array<ConcurrencyEvent> {
    const events: Array<ConcurrencyEvent> = []
    if (permit.released) return events
    permit.released = true
    const cell = permit.cell
    cell.inFlight--
    this.occupancy(cell, "released", permit.lane)
    const held = Math.max(0, this.clock.currentTimeMillisUnsafe() - permit.grantedAt)
    const first = Admission.learn(cell, held)
    this.dispatch(cell, events)
    // The first prediction: the callers a burst queued before it that cannot fit are told now, not when their
    // queue deadlines pass.
    if (first && cell.queued > 0) this.refuseUnfit(cell, events)
    return events
  }

  /** Refuses the queued callers (front-of-lane requeues excepted) whose predicted wait no longer fits. */
  refuseUnfit(cell: Cell, events: Array<ConcurrencyEvent>) {
    for (const { waiter, predicted, budget } of Admission.unfit(cell, this.clock.currentTimeMillisUnsafe())) {
      const lane = lanes[waiter.lane]!
      const refused = Admission.refusal(cell, lane, predicted, budget)
      const resume = waiter.resume
      this.abandon(cell, waiter, "refused")
      waiter.refused = refused
      events.push({
        _tag: "QueueFull",
        key: cell.key,
        pool: cell.pool,
        lane,
        depth: cell.queued,
        predictedWaitMillis: predicted
      })
      resume?.(Effect.fail(refused))
    }
  }

  applyChange(
    cell: Cell,
    reasons: ReadonlyArray<AdaptiveLimit.LimitChangeReason>,
    before: number,
    ceilingBefore: number | undefined,
    events: Array<ConcurrencyEvent>
  ) {
    const after = limitOf(cell, this.config)
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
        cap: cell.cap,
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
      reasons = concurrencyLimited(cell, limitFromServer, this.config)
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
        const permit = this.grant(cell, lane, 0, this.clock.currentTimeMillisUnsafe())
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
      const front = options.front === true
      if (front) {
        if (queue.head !== undefined) order = Math.min(order, queue.head.order)
      } else {
        if (queue.tail !== undefined) order = Math.max(order, queue.tail.order) // sorted even if the clock steps back
        // Admission by predicted wait (once permits have returned: before that nothing predicts).
        const predicted = Admission.overBudget(cell, this.aging, laneIndex, order, timeoutMillis)
        if (predicted !== undefined) {
          const event = {
            _tag: "QueueFull",
            key: cell.key,
            pool,
            lane,
            depth: cell.queued,
            predictedWaitMillis: predicted
          } as const
          return Effect.andThen(
            this.publish([event]),
            Effect.fail(Admission.refusal(cell, lane, predicted, timeoutMillis))
          )
        }
      }
      const deadline = now + timeoutMillis
      waiter.cell = cell
      waiter.lane = laneIndex
      waiter.order = order
      waiter.enqueuedAt = now
      waiter.deadline = deadline
      waiter.front = front
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
        else resume(waiter.refused === undefined ? this.timeoutOf(waiter) : Effect.fail(waiter.refused)) // left before this fiber got here
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
    // oxlint-disable-next-line typescript-eslint/no-this-alias -- the timer is a generator, which cannot be an arrow
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
  abandon(cell: Cell, waiter: Waiter, change: "abandoned" | "expired" | "refused" = "abandoned") {
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
      cap: cell.cap,
      others: cell.adaptive.others,
      inFlight: cell.inFlight,
      queued: { interactive: cell.lanes[0].size, default: cell.lanes[1].size, batch: cell.lanes[2].size },
      queueDepth: cell.queued,
      maxQueue: cell.maxQueue,
      serviceMillis: cell.samples > 0 ? cell.serviceMillis : undefined
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
