/**
 * The limiter's wait queue: a waiter per queued call (an intrusive list node, so removal is O(1) and memory
 * small), one FIFO list per lane, and the heap of queue deadlines (one timer for all of them).
 *
 * @internal
 */
import type { Effect } from "effect"
import type { Cell, PermitImpl } from "./ConcurrencyLimiterCell.ts"
import type { ConcurrencyLimiterError } from "./ConcurrencyLimiterModel.ts"

export const WAITING = 0
export const GRANTED = 1
export const GONE = 2
/** Made for a call, not yet queued or granted (its exit frame has nothing to give back). */
export const NEW = 3

/**
 * A call's place at the limiter: made before the call's one exit frame, then granted at once or queued (an
 * intrusive list node, so removal is O(1) and memory small). The exit frame reads its state to give back
 * what the call holds, so no mask is needed around the enqueue.
 */
export class Waiter {
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
  /** A front-of-lane requeue: never refused by predicted wait. */
  front = false
  /** Why it left the queue when it was refused there (its predicted wait stopped fitting); else a timeout. */
  refused: ConcurrencyLimiterError | undefined = undefined
}

export class LaneQueue {
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
export class DeadlineHeap {
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
