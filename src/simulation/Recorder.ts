/**
 * The simulation recorder: an append-only log of what happened during a run,
 * stamped with virtual time. The runner records calls and attempts (it wraps
 * the strategy's `HttpClient`); strategies record what only they know: queue
 * places and waits, retries and breaker transitions. {@link Report} turns the
 * log into the summary and the chart series.
 *
 * Plain arrays behind `Effect.sync`: a run is one JavaScript thread, and
 * 100,000 requests make a few hundred thousand small records.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer } from "effect"
import type { Lane } from "./Patterns.ts"

/** How an attempt was answered, as the runner saw it on the wire. */
export type AttemptKind =
  | "ok"
  | "too_many_concurrent_requests"
  | "system_busy"
  | "rate_limited"
  | "server_error"
  | "client_error"
  | "transport"
  | "timeout"

/** Breaker states, as strategies report them. */
export type BreakerState = "closed" | "open" | "half-open"

export interface AttemptRecord {
  readonly startMs: number
  readonly endMs: number
  readonly status: number
  readonly kind: AttemptKind
}

export interface CallRecord {
  readonly index: number
  readonly lane: Lane
  readonly arrivalMs: number
  readonly endMs: number
  /** `undefined` for a success, else the failure's reason tag. */
  readonly failure: string | undefined
  readonly credits: number
}

/** The record of a call that arrived as `arrival` and ended at `endMs` with `outcome`. */
export const callRecord = (
  arrival: { readonly index: number; readonly lane: Lane; readonly atMs: number },
  outcome: { readonly _tag: "Success"; readonly credits: number } | {
    readonly _tag: "Failure"
    readonly reason: string
  },
  endMs: number
): CallRecord => ({
  index: arrival.index,
  lane: arrival.lane,
  arrivalMs: arrival.atMs,
  endMs,
  failure: outcome._tag === "Success" ? undefined : outcome.reason,
  credits: outcome._tag === "Success" ? outcome.credits : 0
})

/** The whole log of a run. Times are ms since the start of the run. */
export interface Log {
  readonly calls: Array<CallRecord>
  readonly attempts: Array<AttemptRecord>
  /** In-flight changes as seen by the client: `[t, inFlight]`. */
  readonly inFlight: Array<readonly [number, number]>
  /** Queue depth changes per lane: `[t, depth]`. */
  readonly queueDepth: Record<Lane, Array<readonly [number, number]>>
  /** Queue waits, with the time the wait ended: `[t, waitedMs]`. */
  readonly queueWaits: Array<readonly [number, number]>
  /** Retries scheduled: `[t, reason]`. */
  readonly retries: Array<readonly [number, string]>
  /** Breaker transitions: `[t, state]`. */
  readonly breaker: Array<readonly [number, BreakerState]>
}

/** What strategies and the runner write into. */
export interface Recorder {
  /** Virtual ms since the run started. */
  readonly now: () => number
  readonly log: Log
  /** A request joined (`+1`) or left (`-1`) a strategy's queue. */
  readonly queue: (lane: Lane, delta: 1 | -1) => Effect.Effect<void>
  /** A request got its slot after waiting `waitedMs` in a strategy's queue. */
  readonly queueWait: (lane: Lane, waitedMs: number) => Effect.Effect<void>
  /** A strategy decided to retry after a failure of `reason`. */
  readonly retry: (reason: string) => Effect.Effect<void>
  /** A breaker moved to `state`. */
  readonly breakerState: (state: BreakerState) => Effect.Effect<void>
}

/** The recorder service tag. */
export const Recorder = Context.Service<Recorder>("elevenlabs-resilience/simulation/Recorder")

/** An empty log. */
export const emptyLog = (): Log => ({
  calls: [],
  attempts: [],
  inFlight: [],
  queueDepth: { interactive: [], batch: [] },
  queueWaits: [],
  retries: [],
  breaker: []
})

/**
 * A recorder whose time zero is the current `Clock` time (the runner builds
 * it under the test clock, at the start of the run).
 */
export const make: Effect.Effect<Recorder> = Effect.gen(function*() {
  const clock = yield* Clock.Clock
  const t0 = clock.currentTimeMillisUnsafe()
  const now = () => clock.currentTimeMillisUnsafe() - t0
  const log = emptyLog()
  const depth: Record<Lane, number> = { interactive: 0, batch: 0 }
  return {
    now,
    log,
    queue: (lane, delta) =>
      Effect.sync(() => {
        depth[lane] += delta
        log.queueDepth[lane].push([now(), depth[lane]])
      }),
    queueWait: (_lane, waitedMs) => Effect.sync(() => void log.queueWaits.push([now(), waitedMs])),
    retry: (reason) => Effect.sync(() => void log.retries.push([now(), reason])),
    breakerState: (state) => Effect.sync(() => void log.breaker.push([now(), state]))
  } satisfies Recorder
})

/** A layer of a fresh recorder. */
export const layer: Layer.Layer<Recorder> = Layer.effect(Recorder, make)
