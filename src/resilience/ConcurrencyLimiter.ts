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
 * - Admission by predicted wait: once the pool's service time is learned
 *   (from the permits returned), a caller whose predicted wait (its place
 *   over the limit, in rounds of the service time) does not fit the smaller
 *   of its `timeout` and the queue timeout is refused at once with
 *   `QueueFull` carrying `predictedWait` and `retryAfter`; so are callers
 *   already queued that cannot fit when the first prediction is made. A wait
 *   longer than `queueTimeout` (default 120 s) fails with `QueueTimeout`.
 *   `maxQueue` (default 50,000) is only a memory guard (docs/concurrency.md).
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
 * - `caps` (option) is a hard upper bound per pool: no plan number, header,
 *   429 message or additive increase lifts the permits above it; the
 *   adaptive estimate keeps learning below it (permits = min(adaptive, cap)),
 *   and a 429 under it cuts from the permits in force.
 * - {@link ConcurrencyLimiter.reconfigure} applies new options to the running
 *   limiter, all or nothing: invalid options die and change nothing. Known
 *   (key, pool)s take the new plan number (when it changed), cap and
 *   `maxQueue` at once (`LimitChanged`, reason `"config"`); a raised limit
 *   hands permits to waiters at once; a lower one cancels nothing (in-flight
 *   above it finishes, waiters wait until in-flight drops below it).
 *   `queueTimeout` and `laneAging` apply to callers queued afterwards; queued
 *   callers keep their deadline (docs/concurrency.md).
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
 * **Example** (An operator caps a pool during an incident, then lifts the cap)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ConcurrencyLimiter } from "elevenlabs-resilience/resilience"
 *
 * const incident = Effect.gen(function*() {
 *   const limiter = yield* ConcurrencyLimiter.ConcurrencyLimiter
 *   yield* limiter.reconfigure({ plan: "pro", caps: { standard: 3 } }) // in-flight above 3 finishes
 *   // ... later
 *   yield* limiter.reconfigure({ plan: "pro" }) // waiters get the permits back at once
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Exit, Layer, PubSub, Scope, Stream } from "effect"
import type * as Take from "effect/Take"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import { Impl } from "./ConcurrencyLimiterImpl.ts"
import type {
  ConcurrencyEvent,
  ConcurrencyLimiterError,
  Options,
  Permit,
  PermitRequest,
  Snapshot
} from "./ConcurrencyLimiterModel.ts"
import { GONE, Waiter } from "./ConcurrencyLimiterQueue.ts"
import type { Pool } from "./Plans.ts"

export * from "./ConcurrencyLimiterModel.ts"

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
  /**
   * Applies new options to the running limiter: every option but `onOccupancy`, `onLimitChanged` and `eventBuffer` (those stay
   * as built). Invalid options die with a defect and change nothing. Every known (key, pool) takes the new
   * plan number (when it changed), cap and `maxQueue` at once, with a `LimitChanged` (reason `"config"`) when
   * its permits or ceiling move; a raised limit hands permits to waiters at once, a lower one cancels nothing.
   * `queueTimeout` and `laneAging` apply to callers queued afterwards.
   */
  readonly reconfigure: (options: Options) => Effect.Effect<void>
  /** The state of a (key, pool). */
  readonly snapshot: (key: string, pool: Pool) => Effect.Effect<Snapshot>
  /** Limit changes, queue full / timeouts, and waits with their durations. Ends when the limiter's scope closes. */
  readonly events: Stream.Stream<ConcurrencyEvent>
}

/** The service tag. */
export const ConcurrencyLimiter: Context.Service<ConcurrencyLimiter, ConcurrencyLimiter> = Context.Service<
  ConcurrencyLimiter
>(TypeId)

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
            Effect.onExitPrimitive(restore(impl.enter(request, waiter)), (exit) =>
              Exit.isFailure(exit) ? impl.settle(waiter) : undefined),
            (permit) => {
              waiter.state = GONE
              return Effect.as(
                Effect.addFinalizer(() =>
                  permit.release
                ),
                permit as Permit
              )
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
      // Effect.sync turns a throw of the option checks into a defect; they run before anything changes.
      reconfigure: (next) =>
        Effect.flatMap(Effect.sync(() => impl.reconfigure(next)), (events) => impl.publish(events)),
      snapshot: (key, pool) => Effect.sync(() => impl.snapshot(key, pool)),
      events: Stream.fromPubSubTake(pubsub)
    })
  })

/** The limiter as a layer. */
export const layer = (options: Options = {}): Layer.Layer<ConcurrencyLimiter> =>
  Layer.effect(ConcurrencyLimiter, make(options))
