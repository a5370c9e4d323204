/**
 * Admission by predicted wait: the service time a (key, pool) learns from the permits returned, the wait it
 * predicts for a caller from its place in the queue, and the refusal of a caller whose wait cannot fit. Pure
 * rules over a cell; the limiter (`ConcurrencyLimiterImpl.ts`) applies them. Why and how: docs/concurrency.md.
 *
 * @internal
 */
import { Duration } from "effect"
import type { Cell } from "./ConcurrencyLimiterCell.ts"
import { ConcurrencyLimiterError, type Lane, QueueFull } from "./ConcurrencyLimiterModel.ts"
import type { Waiter } from "./ConcurrencyLimiterQueue.ts"

/**
 * The learned service time is the mean of the first `warmUp` hold times, then weighs the newest by 1/`warmUp`
 * (about the last 10 count). Waits are predicted once min(limit, `warmUp`) permits have returned: one hold
 * time alone is too noisy to refuse callers on (the simulator's answers vary by ±20 %).
 */
const warmUp = 10

/**
 * Learns a permit's hold time. True when this return starts the predictions: the caller then checks the
 * callers already queued ({@link unfit}).
 */
export const learn = (cell: Cell, heldMillis: number): boolean => {
  cell.samples++
  cell.serviceMillis += (heldMillis - cell.serviceMillis) / Math.min(cell.samples, warmUp)
  if (cell.predicting || cell.samples < Math.min(cell.permits, warmUp)) return false
  cell.predicting = true
  return true
}

/**
 * The wait predicted for a caller with `ahead` callers before it (and those that must first bring in-flight
 * under a lowered limit): it gets a permit in round ⌊ahead / limit⌋ + 1, a round being a service time. This
 * counts every round whole, as if the permits in flight had just been granted: a burst, whose permits
 * return together, waits that long; a steady flow a little less. So an admitted caller fits unless the
 * service slows, at the price of refusing up to `limit` callers at the edge that might have fitted.
 */
export const predictWait = (cell: Cell, ahead: number): number => {
  const limit = Math.max(1, cell.permits)
  return (Math.floor((Math.max(0, cell.inFlight - limit) + ahead) / limit) + 1) * cell.serviceMillis
}

/**
 * How many queued callers go before a newcomer of lane `laneIndex` with virtual deadline `order` (counting
 * stops past `cap`). Its own lane is FIFO, and a lane that ages no slower goes first entirely; of a lane
 * that ages slower, only the callers that queued long enough ago to be due first.
 */
export const ahead = (
  cell: Cell,
  aging: ReadonlyArray<number>,
  laneIndex: number,
  order: number,
  cap: number
): number => {
  let n = 0
  for (let i = 0; i < cell.lanes.length && n <= cap; i++) {
    const queue = cell.lanes[i]!
    if (i === laneIndex || aging[i]! <= aging[laneIndex]!) n += queue.size
    else for (let w = queue.head; w !== undefined && w.order <= order && n <= cap; w = w.next) n++
  }
  return n
}

/**
 * The wait predicted for a newcomer, when it does not fit `budget` (ms); `undefined` when it fits or when
 * nothing predicts yet. The count of callers ahead stops where the wait is sure not to fit.
 */
export const overBudget = (
  cell: Cell,
  aging: ReadonlyArray<number>,
  laneIndex: number,
  order: number,
  budget: number
): number | undefined => {
  if (!cell.predicting || !Number.isFinite(budget)) return undefined
  const cap = Math.ceil(budget * Math.max(1, cell.permits) / Math.max(cell.serviceMillis, 1e-9))
  const predicted = predictWait(cell, ahead(cell, aging, laneIndex, order, cap))
  return predicted > budget ? predicted : undefined
}

/** A queued caller that no longer fits, with its prediction and what it had left to wait. */
export interface Unfit {
  readonly waiter: Waiter
  readonly predicted: number
  readonly budget: number
}

/**
 * The queued callers (front-of-lane requeues excepted) whose predicted wait does not fit the time they have
 * left, walking the queue in the order it is served; a caller's place counts only the callers kept before it.
 */
export const unfit = (cell: Cell, now: number): Array<Unfit> => {
  const heads = cell.lanes.map((queue) => queue.head)
  const out: Array<Unfit> = []
  let kept = 0
  for (;;) {
    let best = -1
    for (let i = 0; i < heads.length; i++) {
      const head = heads[i]
      if (head !== undefined && (best < 0 || head.order < heads[best]!.order)) best = i
    }
    if (best < 0) return out
    const waiter = heads[best]!
    heads[best] = waiter.next
    const predicted = predictWait(cell, kept)
    const budget = waiter.deadline - now
    if (waiter.front || predicted <= budget) kept++
    else out.push({ waiter, predicted, budget })
  }
}

/** The refusal of a caller whose predicted wait does not fit its `budget` (ms). */
export const refusal = (cell: Cell, lane: Lane, predicted: number, budget: number): ConcurrencyLimiterError =>
  new ConcurrencyLimiterError({
    reason: new QueueFull({
      key: cell.key,
      pool: cell.pool,
      lane,
      depth: cell.queued,
      maxQueue: cell.maxQueue,
      predictedWait: Duration.millis(Math.ceil(predicted)),
      budget: Duration.millis(budget),
      retryAfter: Duration.millis(Math.ceil(predicted - budget))
    })
  })
