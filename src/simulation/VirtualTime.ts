/**
 * Virtual time for long simulations: a `Clock` whose sleeps wait for the driver, and a `Scheduler` whose
 * tasks the driver runs itself, so a simulated day runs as fast as its own work allows.
 *
 * **Details**
 *
 * - {@link run} runs `body` under this clock and scheduler. The driver wakes one sleeper at a time, in time
 *   order (equal times in the order they were registered), moves the clock to its time, and runs every task
 *   that wake causes (resumed fibers, forks, yields) to the end before it wakes the next: the semantics of
 *   `TestClock.adjust`, which the simulations used before.
 * - Why not `TestClock`: it is built for tests. Each of its sleeps takes a semaphore (the "not advancing"
 *   warning) and an `acquireUseRelease`, each wake races a real timer (the "still running" warning), and
 *   every resumed fiber waits for its own `setImmediate` turn. In a simulated day of 100,000 requests
 *   those were about a third of the run loop's steps. Here a sleep is one callback in a heap, and the
 *   driver runs the woken work in place, one event-loop turn per wake.
 * - One event-loop turn per wake: work that resumes from outside the scheduler (a promise, a socket) gets
 *   its turn before time moves on. A turn that finds such work runs it and wakes nobody.
 * - A body that waits on nothing the clock can wake is given `stepMs` of virtual time per idle turn, as
 *   `TestClock.adjust` loops gave it. Nothing is woken past `horizonMs`: the body is interrupted there, the
 *   driver goes on until its finalizers are done (they may sleep), and the run fails with `tooLong`. A caller
 *   who interrupts the run waits the same way. An infinite sleep never ends, as on the live clock.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Fiber, Scheduler } from "effect"

interface Sleeper {
  readonly at: number
  readonly order: number
  /** Cleared when the sleep is interrupted: the heap drops it when it comes up. */
  wake: (() => void) | undefined
}

const before = (a: Sleeper, b: Sleeper) => a.at < b.at || (a.at === b.at && a.order < b.order)

/** The clock, its sleepers (a binary heap by time, then registration) and the tasks the driver runs. */
class VirtualTime implements Clock.Clock, Scheduler.Scheduler, Scheduler.SchedulerDispatcher {
  readonly executionMode = "async" as const
  private readonly yielding = new Scheduler.MixedScheduler()
  private readonly heap: Array<Sleeper> = []
  private order = 0
  private tasks: Array<readonly [number, () => void]> = []
  now = 0

  // ---- Clock ---------------------------------------------------------------
  currentTimeMillisUnsafe(): number {
    return this.now
  }
  readonly currentTimeMillis = Effect.sync(() => this.now)
  currentTimeNanosUnsafe(): bigint {
    return BigInt(Math.round(this.now * 1_000_000))
  }
  readonly currentTimeNanos = Effect.sync(() => this.currentTimeNanosUnsafe())
  monotonicTimeNanosUnsafe(): bigint {
    return this.currentTimeNanosUnsafe()
  }
  readonly monotonicTimeNanos = Effect.sync(() => this.currentTimeNanosUnsafe())
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const millis = Duration.toMillis(duration)
    if (!(millis > 0)) return Effect.void
    // As the live clock and TestClock: an infinite sleep never ends (and the clock never reaches Infinity).
    if (!Number.isFinite(millis)) return Effect.never
    return Effect.callback<void>((resume) => {
      const sleeper: Sleeper = { at: this.now + millis, order: this.order++, wake: () => resume(Effect.void) }
      this.push(sleeper)
      return Effect.sync(() => {
        sleeper.wake = undefined
      })
    })
  }

  // ---- Scheduler: one dispatcher for every fiber, drained by the driver ------
  shouldYield(fiber: Fiber.Fiber<unknown, unknown>): boolean {
    return this.yielding.shouldYield(fiber)
  }
  makeDispatcher(): Scheduler.SchedulerDispatcher {
    return this
  }
  scheduleTask(task: () => void, priority: number): void {
    this.tasks.push([priority, task])
  }
  flush(): void {
    this.drain()
  }
  /** Runs queued tasks, and those they queue, until none is left (by priority within each round, as Effect's). */
  drain(): boolean {
    let ran = false
    while (this.tasks.length > 0) {
      const round = this.tasks
      this.tasks = []
      if (round.some(([p]) => p !== round[0]![0])) round.sort((a, b) => a[0] - b[0])
      for (const [, task] of round) task()
      ran = true
    }
    return ran
  }

  // ---- sleepers --------------------------------------------------------------
  private push(sleeper: Sleeper): void {
    const heap = this.heap
    let i = heap.push(sleeper) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(heap[i]!, heap[parent]!)) break
      ;[heap[i], heap[parent]] = [heap[parent]!, heap[i]!]
      i = parent
    }
  }
  private pop(): Sleeper | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) return top
    heap[0] = last
    let i = 0
    while (true) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < heap.length && before(heap[l]!, heap[m]!)) m = l
      if (r < heap.length && before(heap[r]!, heap[m]!)) m = r
      if (m === i) break
      ;[heap[i], heap[m]] = [heap[m]!, heap[i]!]
      i = m
    }
    return top
  }
  /** The earliest sleeper still waiting, removed from the heap. */
  next(): Sleeper | undefined {
    let s = this.pop()
    while (s !== undefined && s.wake === undefined) s = this.pop()
    return s
  }
}

/** Options of {@link run}. */
export interface RunOptions<E2> {
  /** Virtual time given per event-loop turn in which the body waits on nothing the clock can wake. */
  readonly stepMs: number
  /** Past this much virtual time the body is interrupted. */
  readonly horizonMs: number
  /** What the run fails with then. */
  readonly tooLong: () => E2
}

/**
 * Runs `body` in virtual time from time zero (see the module's notes).
 *
 * @example
 * ```ts
 * const done = yield* VirtualTime.run(Effect.as(Effect.sleep("30 days"), "done"), {
 *   stepMs: 3_600_000,
 *   horizonMs: 31 * 86_400_000,
 *   tooLong: () => new Error("too long")
 * })
 * // => "done", in a few milliseconds
 * ```
 */
export const run = <A, E, E2>(body: Effect.Effect<A, E>, options: RunOptions<E2>): Effect.Effect<A, E | E2> =>
  Effect.suspend(() => {
    const time = new VirtualTime()
    const provided = body.pipe(
      Effect.provideService(Clock.Clock, time),
      Effect.provideService(Scheduler.Scheduler, time)
    )
    // Started at once, so that its first steps run before the first turn looks for sleepers.
    return Effect.flatMap(
      Effect.forkChild(provided, { startImmediately: true }),
      (fiber) =>
        Effect.callback<A, E | E2>((resume) => {
          // Once stopping (past the horizon, or the caller interrupted), the driver goes on turning until the
          // body, interrupted, has run its finalizers (some may sleep): only then does the run end.
          let stopping: { readonly done: () => void } | undefined
          const stop = (done: () => void) => {
            let called = false
            stopping = {
              done: () => {
                if (called) return
                called = true
                done()
              }
            }
            fiber.interruptUnsafe()
            time.drain()
          }
          const tooLong = () => stop(() => resume(Effect.fail(options.tooLong())))
          const turn = () => {
            // Work that arrived from outside since the last turn (a promise, a socket) runs before time moves.
            if (!time.drain()) {
              const sleeper = time.next()
              if (sleeper === undefined) time.now += options.stepMs
              // Nothing is woken past the horizon.
              else if (stopping === undefined && sleeper.at > options.horizonMs) tooLong()
              else {
                time.now = Math.max(time.now, sleeper.at)
                sleeper.wake!()
                time.drain()
              }
            }
            const exit = fiber.pollUnsafe()
            if (exit !== undefined) return stopping === undefined ? resume(exit) : stopping.done()
            if (stopping === undefined && time.now > options.horizonMs) tooLong()
            setImmediate(turn)
          }
          setImmediate(turn)
          // The caller interrupted: the body is interrupted, and the caller waits until it is done.
          return Effect.callback<void>((done) => {
            if (fiber.pollUnsafe() !== undefined) return done(Effect.void)
            stop(() => done(Effect.void))
            if (fiber.pollUnsafe() !== undefined) stopping?.done()
          })
        })
    )
  })
