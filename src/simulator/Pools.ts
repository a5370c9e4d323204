/**
 * The simulator's concurrency pools: one per (key, pool), each with its limit,
 * its in-flight count, the optional server-side FIFO queue in front of it, and
 * the record of what it saw (maxima, admissions, rejections, samples).
 *
 * **Details**
 *
 * - {@link Pools.admit} takes a slot when one is free and no one waits, else
 *   waits in the queue (at most `queue.depth` waiters, each at most
 *   `queue.maxWaitMs`), else answers `false` (the handler's `429
 *   too_many_concurrent_requests`).
 * - A slot is handed to the first waiter as soon as one frees
 *   ({@link Pools.drain}, also run when a limit is raised). A waiter
 *   interrupted in the same instant as its grant gives the slot back.
 * - The system capacity is shared by every pool of every key: past it the
 *   model answers `429 system_busy` ({@link Pools.full}).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect } from "effect"

/** One sample of a pool's in-flight count. */
export interface Sample {
  readonly t: number
  readonly inFlight: number
}

/** The record of one (key, pool). */
export interface PoolStats {
  readonly inFlight: number
  readonly maxInFlight: number
  readonly limit: number
  readonly queued: number
  readonly maxQueued: number
  readonly admitted: number
  readonly rejected: number
  readonly samples: ReadonlyArray<Sample>
}

/** The server-side queue in front of each (key, pool). */
export interface QueueOptions {
  /** Requests that may wait per (key, pool) once the limit is reached. Default 0 (no queue). */
  readonly depth: number
  /** How long a queued request waits for a slot before its 429. Default 0. */
  readonly maxWaitMs: number
}

interface Waiter {
  granted: boolean
  resume: (() => void) | undefined
}

/** One (key, pool): its limit, its slots and waiters, and its record. */
export interface PoolState {
  limit: number
  inFlight: number
  maxInFlight: number
  queue: Array<Waiter>
  maxQueued: number
  admitted: number
  rejected: number
  samples: Array<Sample>
}

/** The pools of one model. */
export interface Pools {
  /** A new pool with `limit` slots, counted in the system's load. */
  readonly open: (limit: number) => PoolState
  /** Takes a slot, waits in the queue, or answers `false` (a 429). */
  readonly admit: (state: PoolState) => Effect.Effect<boolean>
  /** Gives a slot back (and hands it to the first waiter). */
  readonly release: (state: PoolState) => Effect.Effect<void>
  /** Hands free slots to waiters, first come first served. */
  readonly drain: (state: PoolState, now: number) => void
  /** Whether the shared system capacity is used up. */
  readonly full: () => boolean
  /** Changes the queue or the system capacity (`null`: unlimited). */
  readonly configure: (patch: {
    readonly queue?: Partial<QueueOptions> | undefined
    readonly systemCapacity?: number | null | undefined
  }) => void
}

/** The record of one pool. */
export const stats = (s: PoolState): PoolStats => ({
  inFlight: s.inFlight,
  maxInFlight: s.maxInFlight,
  limit: s.limit,
  queued: s.queue.length,
  maxQueued: s.maxQueued,
  admitted: s.admitted,
  rejected: s.rejected,
  samples: s.samples.slice()
})

/** The record of several pools (of one pool, over all keys): `maxInFlight` and `limit` are the largest. */
export const summary = (states: ReadonlyArray<PoolState>): Omit<PoolStats, "samples"> => ({
  inFlight: states.reduce((n, s) => n + s.inFlight, 0),
  maxInFlight: Math.max(0, ...states.map((s) => s.maxInFlight)),
  limit: Math.max(0, ...states.map((s) => s.limit)),
  queued: states.reduce((n, s) => n + s.queue.length, 0),
  maxQueued: Math.max(0, ...states.map((s) => s.maxQueued)),
  admitted: states.reduce((n, s) => n + s.admitted, 0),
  rejected: states.reduce((n, s) => n + s.rejected, 0)
})

/** Clears a pool's record; its in-flight requests and waiters stay. */
export const resetStats = (s: PoolState, now: number): void => {
  s.maxInFlight = s.inFlight
  s.maxQueued = s.queue.length
  s.admitted = 0
  s.rejected = 0
  s.samples = [{ t: now, inFlight: s.inFlight }]
}

/** The pools of a model. */
export const make = (options: {
  /** In-flight samples kept per pool. */
  readonly maxSamples: number
  readonly queue: QueueOptions
  readonly systemCapacity: number | undefined
  /** The time of the first sample. */
  readonly startMs: number
}): Pools => {
  const { maxSamples, startMs } = options
  let queue = options.queue
  let systemCapacity = options.systemCapacity
  const all: Array<PoolState> = []

  const sample = (state: PoolState, now: number) => {
    if (state.inFlight > state.maxInFlight) state.maxInFlight = state.inFlight
    const last = state.samples[state.samples.length - 1]
    if (last !== undefined && last.t === now) {
      state.samples[state.samples.length - 1] = { t: now, inFlight: state.inFlight }
    } else state.samples.push({ t: now, inFlight: state.inFlight })
    if (state.samples.length > maxSamples) state.samples.splice(0, state.samples.length - maxSamples)
  }

  const drain = (state: PoolState, now: number) => {
    while (state.queue.length > 0 && state.inFlight < state.limit) {
      const waiter = state.queue.shift()!
      waiter.granted = true
      state.inFlight++
      state.admitted++
      sample(state, now)
      waiter.resume?.()
    }
  }

  const release = (state: PoolState) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        state.inFlight--
        sample(state, now)
        drain(state, now)
      }))

  /** Waits for a slot (at most `maxWaitMs`): `true` once one is handed over. */
  const wait = (state: PoolState): Effect.Effect<boolean> => {
    const waiter: Waiter = { granted: false, resume: undefined }
    state.queue.push(waiter)
    if (state.queue.length > state.maxQueued) state.maxQueued = state.queue.length
    const granted = Effect.callback<boolean>((resume) => {
      waiter.resume = () => resume(Effect.succeed(true))
      // Interrupted (or timed out) while queued: leave no place behind, and give back a slot
      // that was handed over in the same instant.
      return Effect.suspend(() => {
        const i = state.queue.indexOf(waiter)
        if (i >= 0) state.queue.splice(i, 1)
        return waiter.granted ? release(state) : Effect.void
      })
    })
    return granted.pipe(
      Effect.timeoutOption(Duration.millis(queue.maxWaitMs)),
      Effect.map((o) => {
        if (o._tag === "Some") return true
        state.rejected++
        return false
      })
    )
  }

  const admit = (state: PoolState): Effect.Effect<boolean> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (state.inFlight < state.limit && state.queue.length === 0) {
        state.inFlight++
        state.admitted++
        sample(state, now)
        return Effect.succeed(true)
      }
      if (state.queue.length >= queue.depth || queue.maxWaitMs <= 0) {
        state.rejected++
        return Effect.succeed(false)
      }
      return wait(state)
    })

  return {
    open: (limit) => {
      const state: PoolState = {
        limit,
        inFlight: 0,
        maxInFlight: 0,
        queue: [],
        maxQueued: 0,
        admitted: 0,
        rejected: 0,
        samples: [{ t: startMs, inFlight: 0 }]
      }
      all.push(state)
      return state
    },
    admit,
    release,
    drain,
    full: () => systemCapacity !== undefined && all.reduce((n, s) => n + s.inFlight, 0) >= systemCapacity,
    configure: (patch) => {
      if (patch.queue !== undefined) queue = { ...queue, ...patch.queue }
      if (patch.systemCapacity !== undefined) systemCapacity = patch.systemCapacity ?? undefined
    }
  }
}
