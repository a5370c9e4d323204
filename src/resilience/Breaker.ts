/**
 * The circuit breaker per pool (docs/design.md section 4, step 6), on
 * `effect/persistence`'s `CircuitBreaker`: this module adds the ElevenLabs
 * classification, the defaults of the production-deployment guide, typed rejections, a growing open
 * duration and a numeric state for the gauge. It does not re-implement the
 * state machine.
 *
 * **Details**
 *
 * - One circuit per key; the key is `keyPrefix + pool` (`keyPrefix` lets
 *   several API keys share one store without sharing circuits).
 * - Only reasons for which `countsForBreaker` holds are failures (SystemBusy,
 *   RateLimited, ServerError, Transport, Timeout, InvalidResponse). Every other
 *   reason (4xx, QuotaExceeded, ConcurrencyLimited), every error that is not
 *   an `ElevenLabsError` (limiter queue timeouts, for example), defects and
 *   interruption are `ignored`: they say nothing about ElevenLabs' health.
 *   So is a `Timeout` with phase `"deadline"`: the caller's own deadline ran
 *   out during the attempt (`Deadline.bind`), which is the caller's bound,
 *   not the server's failure.
 * - A failure's `Retry-After` can lengthen an opening (capped by
 *   `maxRetryAfter`), never shorten it.
 * - Trip policies: `consecutive` failures (default 5) or failure `rate` over
 *   the last `size` recorded calls with a `minimumCalls` volume (the window of
 *   Effect's breaker counts calls, not seconds).
 * - "In a row" is judged in the order attempts started, not the order they
 *   ended (consecutive policy, closed circuit): a failure that ends while an
 *   attempt that started before it is still running is `ignored`. Without
 *   this, fast failures (a `system_busy` answers at once) overtake slow
 *   successes (a generation takes seconds), and a burst with 10 % transient
 *   failures opens the circuit on its first wave.
 * - Open duration: 60 s by default; with `growth` the n-th consecutive
 *   opening lasts `openDuration × factor^(n−1)`, capped at `max`; the count
 *   resets once the circuit stays closed as long as its last opening.
 * - One probe while half-open; other calls are rejected.
 * - Rejections fail with {@link BreakerError}: `CircuitOpen` (with the time
 *   left open as `retryAfter`) or `CircuitHalfOpen` (with a short
 *   `retryAfter` hint). The store is a Layer: memory now, Redis later.
 * - On the memory store of {@link layerStoreMemory} (which {@link layerMemory}
 *   uses), `execute` takes a fast path: the same admit, classify and record
 *   on the same store, without the `Scope` Effect's breaker opens per call
 *   for the Redis store's probe lease. Any other store (Redis, or Effect's
 *   `CircuitBreaker.layerStoreMemory()` provided directly) goes through
 *   Effect's `CircuitBreaker.execute` (src/resilience/BreakerFastPath.ts has
 *   the fast path, src/resilience/BreakerSettings.ts the options).
 *
 * **Changing it live** (`reconfigure`)
 *
 * - New thresholds, open duration, growth, `maxRetryAfter`,
 *   `halfOpenRetryAfter` and `onStoreError` apply to every circuit from the
 *   next admission or record on. The circuits' state is the store's and is
 *   not touched: an open circuit stays open until its current opening ends
 *   (the next opening takes the new duration, with `growth` the n-th of the
 *   new schedule), and the counts recorded so far are kept. The store's
 *   counts go on under the new policy: a consecutive streak already past a
 *   lower threshold opens the circuit at its next failure; a rate window of
 *   another size is trimmed to its newest `size` calls at the next record
 *   (or grows up to the larger size); the streak is kept by both policies,
 *   and a rate window not updated while the policy was consecutive resumes.
 * - Effect's breaker takes its options once: on a store other than the fast
 *   path's, `reconfigure` builds a new one on the same store (calls already
 *   admitted finish under the old options). Transitions of every path go to
 *   one `PubSub` of this breaker, so `transitions` is the same stream before
 *   and after.
 * - `keyPrefix` names the circuits: it cannot change live (leave it out or
 *   give the same). Bad options die, changing nothing.
 *
 * @example
 * ```ts
 * const breaker = yield* Breaker.Breaker
 * const audio = yield* attempt.pipe(breaker.execute("standard"))
 * ```
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, type Fiber, Layer, PubSub, Schema, Scope, Stream } from "effect"
import { CircuitBreaker } from "effect/persistence"
import type * as Take from "effect/Take"
import { countsForBreaker, type ElevenLabsErrorReason, isElevenLabsError } from "../client/Errors.ts"
import * as BreakerFastPath from "./BreakerFastPath.ts"
import { type BreakerOptions, type BreakerSettings, settingsOf } from "./BreakerSettings.ts"

export { type BreakerOptions, type BreakerSettings, openDurationOf, settingsOf } from "./BreakerSettings.ts"

// ============================================================================
// Errors
// ============================================================================

/** The pool's circuit is open: calls fail fast until `retryAfter` has passed. */
export class CircuitOpen extends Schema.Error<CircuitOpen>("elevenlabs-resilience/Breaker/CircuitOpen")({
  _tag: Schema.tag("CircuitOpen"),
  /** The circuit key (`keyPrefix + pool`). */
  key: Schema.String,
  /** Time left open. */
  retryAfter: Schema.DurationFromMillis
}) {
  override get message(): string {
    return `circuit ${this.key} open; retry after ${Duration.toMillis(this.retryAfter)} ms`
  }
}

/** The pool's circuit is half-open and its one probe is running: come back shortly. */
export class CircuitHalfOpen extends Schema.Error<CircuitHalfOpen>("elevenlabs-resilience/Breaker/CircuitHalfOpen")({
  _tag: Schema.tag("CircuitHalfOpen"),
  key: Schema.String,
  /** A hint: the probe's outcome is usually known by then (option `halfOpenRetryAfter`). */
  retryAfter: Schema.DurationFromMillis
}) {
  override get message(): string {
    return `circuit ${this.key} half-open (probe running); retry after ${Duration.toMillis(this.retryAfter)} ms`
  }
}

/** The breaker's store failed and `onStoreError` is `"fail"`. */
export class BreakerStoreUnavailable extends Schema.Error<BreakerStoreUnavailable>(
  "elevenlabs-resilience/BreakerStoreUnavailable"
)({
  _tag: Schema.tag("BreakerStoreUnavailable"),
  key: Schema.String,
  message: Schema.String
}) {}

/** Every reason a breaker rejects a call with. */
export const BreakerErrorReason = Schema.Union([CircuitOpen, CircuitHalfOpen, BreakerStoreUnavailable])
export type BreakerErrorReason = CircuitOpen | CircuitHalfOpen | BreakerStoreUnavailable

/** A call the breaker did not let through. No request was sent. */
export class BreakerError extends Schema.Error<BreakerError>("elevenlabs-resilience/BreakerError")({
  _tag: Schema.tag("BreakerError"),
  reason: BreakerErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
  /** When to try again, for every reason that has a hint. */
  get retryAfter(): Duration.Duration | undefined {
    return this.reason._tag === "BreakerStoreUnavailable" ? undefined : this.reason.retryAfter
  }
}

/** Guard for {@link BreakerError}. */
export const isBreakerError = (u: unknown): u is BreakerError =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "BreakerError"

// ============================================================================
// State for the gauge
// ============================================================================

/** The numeric state for the `elevenlabs_circuit_breaker_state` gauge: 0 closed, 1 half-open, 2 open. */
export type GaugeValue = 0 | 1 | 2

/** The gauge value of a state. */
export const gaugeOf = (state: CircuitBreaker.State | "Closed" | "HalfOpen" | "Open"): GaugeValue => {
  const tag = typeof state === "string" ? state : state._tag
  return tag === "Closed" ? 0 : tag === "HalfOpen" ? 1 : 2
}

/**
 * The state as the next call finds it: an open circuit whose open time is over is `HalfOpen` (Effect's
 * breaker moves there lazily, on that call; until then `state` reads `Open` with `retryAfter` 0).
 */
export const stateNow = (state: CircuitBreaker.State): "Closed" | "HalfOpen" | "Open" =>
  state._tag === "Open" && Duration.toMillis(state.retryAfter) <= 0 ? "HalfOpen" : state._tag

/** A transition, with the pool and the gauge value it leads to. */
export interface BreakerTransition {
  readonly key: string
  readonly from: "Closed" | "Open" | "HalfOpen"
  readonly to: "Closed" | "Open" | "HalfOpen"
  readonly gauge: GaugeValue
  /** How long it opens for (on transitions to `Open`). */
  readonly openFor?: Duration.Duration | undefined
  /** Openings since the backoff last reset, this one included (on transitions to `Open`). */
  readonly consecutiveOpenings?: number | undefined
}

// ============================================================================
// Service
// ============================================================================

/** The breaker of one client: one circuit per pool. */
export class Breaker extends Context.Service<Breaker, {
  /**
   * Runs one attempt through the pool's circuit, recording its outcome.
   * Fails with {@link BreakerError} when the circuit rejects it.
   */
  readonly execute: (
    pool: string
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BreakerError, R>
  /**
   * `execute`, built once around `self` for a caller that keeps one record per call (a
   * {@link BreakerFastPath.Slot}, read from the fiber by `slotOf`): on the memory store the attempt's
   * admission is kept in the slot, so an attempt holds no closure or frame of its own while `self` waits (a
   * pipeline with thousands of calls queued). Other stores run `execute`. One attempt per slot at a time.
   */
  readonly executeWith: (
    pool: string,
    slotOf: (fiber: Fiber.Fiber<unknown, unknown>) => BreakerFastPath.Slot
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BreakerError, R>
  /** The pool's state (an Open circuit past its open time reads Open until the next call). */
  readonly state: (pool: string) => Effect.Effect<CircuitBreaker.State, BreakerError>
  /** The pool's gauge value: 0 closed, 1 half-open, 2 open. */
  readonly gauge: (pool: string) => Effect.Effect<GaugeValue, BreakerError>
  /** Every transition of every circuit of this breaker (the same stream before and after a `reconfigure`). */
  readonly transitions: Stream.Stream<BreakerTransition>
  /** The circuit key of a pool. */
  readonly keyOf: (pool: string) => string
  /**
   * Applies new options to every circuit from now on, keeping their state (see the module doc, "Changing it
   * live"). Dies, changing nothing, on invalid options or a `keyPrefix` other than the current one.
   */
  readonly reconfigure: (options: BreakerOptions) => Effect.Effect<void>
}>()("elevenlabs-resilience/Breaker") {}

/** @deprecated The shape of {@link Breaker}: use `Breaker["Service"]` (one name per service, Effect's convention). */
export type BreakerService = Breaker["Service"]

/** The breaker's outcome for an attempt's exit (see the module doc). */
export const classify = <A, E>(exit: Exit.Exit<A, E>): CircuitBreaker.Outcome => {
  if (Exit.isSuccess(exit)) return CircuitBreaker.success
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (error === undefined || error._tag !== "Fail" || !isElevenLabsError(error.error)) return CircuitBreaker.ignored
  const reason: ElevenLabsErrorReason = error.error.reason
  if (!countsForBreaker(reason)) return CircuitBreaker.ignored
  // The caller's deadline ran out during the attempt: a short deadline is the caller's choice, not a server
  // failure (under `Deadline.withDeadline` the race interrupted the attempt, which is ignored too).
  if (reason._tag === "Timeout" && reason.phase === "deadline") return CircuitBreaker.ignored
  const hint = "retryAfter" in reason ? reason.retryAfter : undefined
  return CircuitBreaker.failure(hint === undefined ? undefined : { retryAfter: hint })
}

// ============================================================================
// Constructor
// ============================================================================

const toBreakerError = (
  key: string,
  halfOpenRetryAfter: Duration.Duration,
  error: CircuitBreaker.CircuitBreakerError
): BreakerError => {
  const r = error.reason
  switch (r._tag) {
    case "CircuitOpen":
      return new BreakerError({ reason: new CircuitOpen({ key, retryAfter: r.retryAfter }) })
    case "CircuitHalfOpen":
      return new BreakerError({ reason: new CircuitHalfOpen({ key, retryAfter: halfOpenRetryAfter }) })
    case "CircuitBreakerStoreError":
      return new BreakerError({ reason: new BreakerStoreUnavailable({ key, message: r.message }) })
  }
}

const isCircuitBreakerError = (u: unknown): u is CircuitBreaker.CircuitBreakerError =>
  typeof u === "object" && u !== null && CircuitBreaker.ErrorTypeId in u

/** Stores built by {@link layerStoreMemory}: their `admit` needs no scope, which the fast path relies on. */
const memoryStores = new WeakSet<object>()

const toTransition = (t: CircuitBreaker.Transition): BreakerTransition =>
  t.to === "Open"
    ? {
      key: t.key,
      from: t.from,
      to: t.to,
      gauge: 2,
      openFor: t.retryAfter,
      consecutiveOpenings: t.consecutiveOpenings
    }
    : { key: t.key, from: t.from, to: t.to, gauge: gaugeOf(t.to) }

/**
 * Builds a breaker on the current `CircuitBreakerStore`. Needs a `Scope`
 * (the transitions stream ends with it). Bad options throw a `RangeError`.
 */
export const make = (options?: BreakerOptions): Effect.Effect<
  Breaker["Service"],
  never,
  CircuitBreaker.CircuitBreakerStore | Scope.Scope
> =>
  Effect.gen(function*() {
    const initial = settingsOf(options)
    const { keyPrefix } = initial
    const keyOf = (pool: string) => `${keyPrefix}${pool}`
    const store = yield* CircuitBreaker.CircuitBreakerStore
    const scope = yield* Scope.Scope
    // The breaker's own transitions: both paths publish here, so the stream outlives every reconfigure.
    const pubsub = yield* PubSub.sliding<Take.Take<CircuitBreaker.Transition>>(128)
    yield* Scope.addFinalizer(scope, PubSub.end(pubsub, Exit.void))
    const publish = (transition: CircuitBreaker.Transition | undefined): Effect.Effect<void> =>
      transition === undefined ? Effect.void : Effect.asVoid(PubSub.publish(pubsub, [transition]))
    /** Read at every step that needs a setting; replaced whole by `reconfigure`. */
    const live: { settings: BreakerSettings } = { settings: initial }
    /** The new settings, all checked before anything changes; `keyPrefix` names the circuits: it stays. */
    const checked = (next: BreakerOptions): BreakerSettings => {
      const settings = settingsOf({ ...next, keyPrefix: next.keyPrefix ?? keyPrefix })
      if (settings.keyPrefix !== keyPrefix) {
        throw new RangeError(
          `Breaker.reconfigure: keyPrefix cannot change live (it names the circuits): ${keyPrefix} -> ${settings.keyPrefix}`
        )
      }
      return settings
    }
    const state = (pool: string) => {
      const key = keyOf(pool)
      return store.state(key).pipe(
        Effect.mapError((error) => toBreakerError(key, live.settings.halfOpenRetryAfter, error))
      )
    }
    const service = (
      execute: Breaker["Service"]["execute"],
      reconfigure: Breaker["Service"]["reconfigure"],
      executeWith: Breaker["Service"]["executeWith"] = (pool) => execute(pool)
    ) =>
      Breaker.of({
        execute,
        executeWith,
        state,
        gauge: (pool) => Effect.map(state(pool), gaugeOf),
        keyOf,
        transitions: Stream.map(Stream.fromPubSubTake(pubsub), toTransition),
        reconfigure
      })

    if (memoryStores.has(store)) {
      const fast = BreakerFastPath.make({ store, live, publish, classify, toBreakerError })
      return service(
        (pool) => fast(keyOf(pool)).execute,
        (next) => Effect.sync(() => void (live.settings = checked(next))),
        (pool, slotOf) => (self) => fast(keyOf(pool)).executeWith(self, slotOf)
      )
    }

    // Effect's breaker takes its options once: each settings gets its own, on the same store (the state), built
    // over a view of the store that publishes the transitions to this breaker's stream.
    const publishing = CircuitBreaker.CircuitBreakerStore.of({
      admit: (key) => Effect.tap(store.admit(key), (admission) => publish(admission.transition)),
      record: (outcome) => Effect.tap(store.record(outcome), publish),
      state: store.state
    })
    const build = (settings: BreakerSettings) =>
      CircuitBreaker.make({
        tripPolicy: settings.tripPolicy,
        openDuration: settings.openDuration,
        maxOpenDuration: settings.maxOpenDuration,
        onStoreError: settings.onStoreError
      }).pipe(
        Effect.provideService(CircuitBreaker.CircuitBreakerStore, publishing),
        Effect.provideService(Scope.Scope, scope),
        Effect.map((breaker) => ({ settings, breaker }))
      )
    let current = yield* build(initial)
    // The latest call to `reconfigure` wins, even if an earlier one finishes building after it.
    let version = 0
    const running: BreakerFastPath.Running = new Map()

    const execute =
      (pool: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | BreakerError, R> => {
        const key = keyOf(pool)
        // Read when the attempt runs: the same effect can be run again (a retry) after a reconfigure.
        return Effect.suspend(() => {
          const { breaker, settings } = current
          const recorded = !settings.startOrder
            ? breaker.execute(self, { key, classify })
            : Effect.suspend(() => {
              const tracked = BreakerFastPath.trackedOf(running, key)
              let started = -1
              // Numbered once admitted (a rejected attempt never starts), released however it ends.
              const admitted = Effect.suspend(() => {
                started = tracked.next++
                tracked.started.add(started)
                return self
              }).pipe(Effect.ensuring(Effect.sync(() => tracked.started.delete(started))))
              return breaker.execute(admitted, {
                key,
                classify: (exit) => {
                  const outcome = classify(exit)
                  if (outcome._tag !== "Failure" || !BreakerFastPath.startedBefore(tracked.started, started)) {
                    return outcome
                  }
                  // Overtook an earlier attempt: not a failure "in a row" while the circuit is closed.
                  return Effect.map(
                    store.state(key).pipe(Effect.orElseSucceed(() => undefined)),
                    (state) => state?._tag === "Closed" ? CircuitBreaker.ignored : outcome
                  )
                }
              })
            })
          return recorded.pipe(
            // Only the breaker's own rejections are mapped; the attempt's errors pass through.
            Effect.mapError((e) =>
              (isCircuitBreakerError(e) ? toBreakerError(key, settings.halfOpenRetryAfter, e) : e) as E | BreakerError
            )
          )
        })
      }
    const reconfigure = (next: BreakerOptions): Effect.Effect<void> =>
      Effect.suspend(() => {
        const settings = checked(next)
        const mine = ++version
        return Effect.map(build(settings), (built) => {
          if (mine === version) current = built
        })
      })
    return service(execute, reconfigure)
  })

/** Provides {@link Breaker} on the current `CircuitBreakerStore` (swap the store to share state). */
export const layer = (options?: BreakerOptions): Layer.Layer<Breaker, never, CircuitBreaker.CircuitBreakerStore> =>
  Layer.effect(Breaker, make(options))

/**
 * Effect's in-memory `CircuitBreakerStore` (`CircuitBreaker.layerStoreMemory`), marked so that a breaker built
 * on it takes the fast path (see the module doc). Share it between breakers as any store.
 */
export const layerStoreMemory = (
  options?: { readonly idleTimeToLive?: Duration.Input | undefined }
): Layer.Layer<CircuitBreaker.CircuitBreakerStore> =>
  CircuitBreaker.layerStoreMemory(
    options?.idleTimeToLive === undefined ? undefined : { idleTimeToLive: options.idleTimeToLive }
  ).pipe(
    Layer.tap((context) =>
      Effect.sync(() => void memoryStores.add(Context.get(context, CircuitBreaker.CircuitBreakerStore)))
    )
  )

/** {@link layer} with an in-memory store (one process), on the fast path. */
export const layerMemory = (
  options?: BreakerOptions & { readonly idleTimeToLive?: Duration.Input | undefined }
): Layer.Layer<Breaker> => layer(options).pipe(Layer.provide(layerStoreMemory(options)))
