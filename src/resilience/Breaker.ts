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
 *   Effect's `CircuitBreaker.execute`.
 *
 * @example
 * ```ts
 * const breaker = yield* Breaker.Breaker
 * const audio = yield* attempt.pipe(breaker.execute("standard"))
 * ```
 *
 * @since 0.1.0
 */
import {
  Cause,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Layer,
  PubSub,
  References,
  Schedule,
  Schema,
  Scope,
  Stream
} from "effect"
import { CircuitBreaker } from "effect/persistence"
import type * as Take from "effect/Take"
import { countsForBreaker, type ElevenLabsErrorReason, isElevenLabsError } from "../client/Errors.ts"

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

/** Options of {@link make}; every field has a default. */
export interface BreakerOptions {
  /**
   * When a closed circuit opens. Default `{ _tag: "consecutive", failures: 5 }`
   * (the production-deployment guide's). `rate`: `threshold` in `[0, 1]` (default 0.5), over the last
   * `size` recorded calls (default 20), once `minimumCalls` are recorded
   * (default 10).
   */
  readonly policy?:
    | { readonly _tag: "consecutive"; readonly failures?: number | undefined }
    | {
      readonly _tag: "rate"
      readonly threshold?: number | undefined
      readonly size?: number | undefined
      readonly minimumCalls?: number | undefined
    }
    | undefined
  /** How long an opening lasts (the first one, when `growth` is set). Default 60 seconds. */
  readonly openDuration?: Duration.Input | undefined
  /** Consecutive openings last `openDuration × factor^(n−1)`, capped at `max`. Default: no growth. */
  readonly growth?: { readonly factor?: number | undefined; readonly max?: Duration.Input | undefined } | undefined
  /** Largest `Retry-After` that may lengthen an opening. Default 5 minutes. */
  readonly maxRetryAfter?: Duration.Input | undefined
  /** The `retryAfter` hint of a half-open rejection. Default 1 second. */
  readonly halfOpenRetryAfter?: Duration.Input | undefined
  /** Prefix of every circuit key (for example an account id). Default `"elevenlabs:"`. */
  readonly keyPrefix?: string | undefined
  /** When the store fails: `"allow"` runs the call unrecorded (default), `"fail"` rejects it. */
  readonly onStoreError?: "allow" | "fail" | undefined
}

/** Service tag of the client's {@link Breaker["Service"]}. */
/** The breaker of one client: one circuit per pool. */
export class Breaker extends Context.Service<Breaker, {
  /**
   * Runs one attempt through the pool's circuit, recording its outcome.
   * Fails with {@link BreakerError} when the circuit rejects it.
   */
  readonly execute: (
    pool: string
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BreakerError, R>
  /** The pool's state (an Open circuit past its open time reads Open until the next call). */
  readonly state: (pool: string) => Effect.Effect<CircuitBreaker.State, BreakerError>
  /** The pool's gauge value: 0 closed, 1 half-open, 2 open. */
  readonly gauge: (pool: string) => Effect.Effect<GaugeValue, BreakerError>
  /** Every transition of every circuit of this breaker. */
  readonly transitions: Stream.Stream<BreakerTransition>
  /** The circuit key of a pool. */
  readonly keyOf: (pool: string) => string
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

const tripPolicyOf = (policy: BreakerOptions["policy"]): CircuitBreaker.TripPolicy => {
  if (policy === undefined || policy._tag === "consecutive") return CircuitBreaker.consecutive(policy?.failures ?? 5)
  const size = policy.size ?? 20
  return CircuitBreaker.rate({
    threshold: policy.threshold ?? 0.5,
    size,
    minimumCalls: policy.minimumCalls ?? Math.min(10, size)
  })
}

/**
 * The open-duration value handed to `CircuitBreaker.make`: a fixed duration,
 * or, with `growth`, `base × factor^(n−1)` capped at `max` as a `Schedule`
 * (the breaker replays it to find the n-th opening's length).
 */
export const openDurationOf = (
  options: Pick<BreakerOptions, "openDuration" | "growth">
): Duration.Duration | Schedule.Schedule<unknown, number, never, never> => {
  const base = Duration.fromInputUnsafe(options.openDuration ?? "60 seconds")
  if (options.growth === undefined) return base
  const factor = options.growth.factor ?? 2
  const max = Duration.fromInputUnsafe(options.growth.max ?? "10 minutes")
  if (!(factor >= 1)) throw new RangeError(`Breaker: growth.factor must be >= 1, got ${factor}`)
  return Schedule.exponential(base, factor).pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, max))),
    Schedule.setInputType<number>()
  )
}

const mapError =
  (key: string, halfOpenRetryAfter: Duration.Duration) => (error: CircuitBreaker.CircuitBreakerError): BreakerError => {
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

/** Whether an attempt numbered below `n` is still running. */
const startedBefore = (started: ReadonlySet<number>, n: number): boolean => {
  for (const s of started) if (s < n) return true
  return false
}

const isCircuitBreakerError = (u: unknown): u is CircuitBreaker.CircuitBreakerError =>
  typeof u === "object" && u !== null && CircuitBreaker.ErrorTypeId in u

/** Stores built by {@link layerStoreMemory}: their `admit` needs no scope, which the fast path relies on. */
const memoryStores = new WeakSet<object>()

/**
 * The open-duration of the n-th opening, as Effect's breaker computes it: a fixed duration, or the schedule
 * replayed n steps against a simulated clock.
 */
const openDurationFor = (
  openDuration: Duration.Duration | Schedule.Schedule<unknown, number, never, never>
): (consecutiveOpenings: number) => Effect.Effect<Duration.Duration> => {
  if (!Schedule.isSchedule(openDuration)) {
    const duration = Effect.succeed(openDuration)
    return () => duration
  }
  return (consecutiveOpenings) =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(openDuration)
      let now = yield* Clock.currentTimeMillis
      let delay = Duration.zero
      for (let attempt = 1; attempt <= consecutiveOpenings; attempt++) {
        const result = yield* Effect.exit(step(now, attempt))
        if (Exit.isFailure(result)) break
        delay = result.value[1]
        now += Duration.toMillis(delay)
      }
      return delay
    })
}

/** Per circuit key: the start number of every admitted attempt still running (for the start-order rule). */
type Running = Map<string, { next: number; readonly started: Set<number> }>

const trackedOf = (running: Running, key: string) => {
  let attempts = running.get(key)
  if (attempts === undefined) running.set(key, attempts = { next: 0, started: new Set() })
  return attempts
}

/**
 * `execute` on a store whose `admit` uses no scope (the memory store of {@link layerStoreMemory}). The
 * steps of Effect's `CircuitBreaker.execute` on the same store (admit, run, classify, the outcome's open
 * duration, record, transitions), with the start-order rule folded in, but no `scopedWith` and one exit
 * frame per attempt: what a waiting attempt holds is the mask, that frame and its admission. A memory
 * store never fails, so `onStoreError` has nothing to decide; a failing `record` is reported and
 * swallowed as Effect's breaker does.
 */
const makeFastExecute = (options: {
  readonly store: CircuitBreaker.CircuitBreakerStore["Service"]
  readonly scope: Scope.Scope
  readonly tripPolicy: CircuitBreaker.TripPolicy
  readonly openDuration: Duration.Duration | Schedule.Schedule<unknown, number, never, never>
  readonly maxOpenDuration: Duration.Duration
  readonly pubsub: PubSub.PubSub<Take.Take<CircuitBreaker.Transition>>
  readonly startOrder: boolean
  readonly halfOpenRetryAfter: Duration.Duration
}) => {
  const { halfOpenRetryAfter, maxOpenDuration, pubsub, startOrder, store, tripPolicy } = options
  const durationOf = openDurationFor(options.openDuration)
  const running: Running = new Map()
  const publish = (transition: CircuitBreaker.Transition | undefined) =>
    transition === undefined ? Effect.void : PubSub.publish(pubsub, [transition])
  /** Whether recording `outcome` may open the circuit, and so needs the open duration (none for most calls). */
  const mayOpen = (outcome: CircuitBreaker.Outcome, admission: CircuitBreaker.Admission): boolean =>
    !(outcome._tag === "Ignored" ||
      (outcome._tag === "Success" && (admission.probe || tripPolicy._tag === "Consecutive")))
  const openFor = (
    outcome: CircuitBreaker.Outcome,
    admission: CircuitBreaker.Admission
  ): Effect.Effect<Duration.Duration> =>
    Effect.map(
      durationOf(admission.consecutiveOpenings + 1),
      (delay) =>
        outcome._tag === "Failure" && outcome.retryAfter !== undefined
          ? Duration.max(delay, Duration.min(outcome.retryAfter, maxOpenDuration))
          : delay
    )
  const reportRecordFailure = (cause: Cause.Cause<unknown>) =>
    Effect.withFiber((fiber) => {
      const level = fiber.getRef(References.UnhandledLogLevel)
      return level === undefined
        ? Effect.void
        : Effect.logWithLevel(level)("CircuitBreaker failed to record an outcome", cause)
    })

  /** The per-key part, built once per key. */
  const forKey = (key: string) => {
    const toBreakerError = mapError(key, halfOpenRetryAfter)
    // A memory store's admit reads no scope (see `memoryStores`): no scope overlay per attempt.
    const admit = Effect.mapError(
      store.admit(key) as Effect.Effect<CircuitBreaker.Admission, CircuitBreaker.CircuitBreakerError>,
      toBreakerError
    )
    const tracked = startOrder ? trackedOf(running, key) : undefined
    const state = store.state(key).pipe(Effect.orElseSucceed(() => undefined))
    const record = (outcome: CircuitBreaker.Outcome, admission: CircuitBreaker.Admission): Effect.Effect<void> =>
      // A success of a closed consecutive circuit (most calls) opens nothing: no duration to compute first.
      (mayOpen(outcome, admission)
        ? Effect.flatMap(openFor(outcome, admission), (openFor) =>
          store.record({ key, generation: admission.generation, outcome: outcome._tag, tripPolicy, openFor }))
        : store.record({
          key,
          generation: admission.generation,
          outcome: outcome._tag,
          tripPolicy,
          openFor: Duration.zero
        })).pipe(
          Effect.flatMap(publish),
          Effect.catch((error) =>
            reportRecordFailure(Cause.fail(error))
          )
        )
    /** Classifies and records an attempt that ended; `started` is its start number (start-order rule). */
    const settle = (exit: Exit.Exit<unknown, unknown>, admission: CircuitBreaker.Admission, started: number) => {
      if (tracked !== undefined) tracked.started.delete(started)
      // An interruption says nothing about the server (Effect's breaker ignores it before classifying).
      const outcome = Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
        ? CircuitBreaker.ignored
        : classify(exit)
      if (tracked === undefined || outcome._tag !== "Failure" || !startedBefore(tracked.started, started)) {
        return record(outcome, admission)
      }
      // Overtook an earlier attempt: not a failure "in a row" while the circuit is closed.
      return Effect.flatMap(state, (s) => record(s?._tag === "Closed" ? CircuitBreaker.ignored : outcome, admission))
    }
    return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | BreakerError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(admit, (admission) => {
          // Numbered once admitted (a rejected attempt never starts), released however it ends.
          const started = tracked === undefined ? -1 : tracked.next++
          if (tracked !== undefined) tracked.started.add(started)
          const run = Effect.onExit(restore(self), (exit) => settle(exit, admission, started))
          return admission.transition === undefined ? run : Effect.andThen(publish(admission.transition), run)
        })
      )
  }
  const byKey = new Map<string, ReturnType<typeof forKey>>()
  return (key: string) => {
    let execute = byKey.get(key)
    if (execute === undefined) byKey.set(key, execute = forKey(key))
    return execute
  }
}

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
    const keyPrefix = options?.keyPrefix ?? "elevenlabs:"
    const halfOpenRetryAfter = Duration.fromInputUnsafe(options?.halfOpenRetryAfter ?? "1 second")
    const tripPolicy = tripPolicyOf(options?.policy)
    const openDuration = openDurationOf(options ?? {})
    const maxOpenDuration = options?.maxRetryAfter ?? "5 minutes"
    const keyOf = (pool: string) => `${keyPrefix}${pool}`
    const startOrder = options?.policy === undefined || options.policy._tag === "consecutive"
    const store = yield* CircuitBreaker.CircuitBreakerStore
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
    const service = (
      execute: Breaker["Service"]["execute"],
      stateOf: (key: string) => Effect.Effect<CircuitBreaker.State, CircuitBreaker.CircuitBreakerError>,
      transitions: Stream.Stream<CircuitBreaker.Transition>
    ) => {
      const state = (pool: string) => {
        const key = keyOf(pool)
        return stateOf(key).pipe(Effect.mapError(mapError(key, halfOpenRetryAfter)))
      }
      return Breaker.of({
        execute,
        state,
        gauge: (pool) => Effect.map(state(pool), gaugeOf),
        keyOf,
        transitions: Stream.map(transitions, toTransition)
      })
    }

    if (memoryStores.has(store)) {
      const scope = yield* Scope.Scope
      const pubsub = yield* PubSub.sliding<Take.Take<CircuitBreaker.Transition>>(128)
      yield* Scope.addFinalizer(scope, PubSub.end(pubsub, Exit.void))
      const fast = makeFastExecute({
        store,
        scope,
        tripPolicy,
        openDuration,
        maxOpenDuration: Duration.fromInputUnsafe(maxOpenDuration),
        pubsub,
        startOrder,
        halfOpenRetryAfter
      })
      return service((pool) => fast(keyOf(pool)), store.state, Stream.fromPubSubTake(pubsub))
    }

    const breaker = yield* CircuitBreaker.make({
      tripPolicy,
      openDuration,
      maxOpenDuration,
      onStoreError: options?.onStoreError ?? "allow"
    })
    const running: Running = new Map()

    const execute =
      (pool: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | BreakerError, R> => {
        const key = keyOf(pool)
        const toBreakerError = mapError(key, halfOpenRetryAfter)
        const recorded = !startOrder
          ? breaker.execute(self, { key, classify })
          : Effect.suspend(() => {
            const tracked = trackedOf(running, key)
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
                if (outcome._tag !== "Failure" || !startedBefore(tracked.started, started)) return outcome
                // Overtook an earlier attempt: not a failure "in a row" while the circuit is closed.
                return Effect.map(
                  breaker.state(key).pipe(Effect.orElseSucceed(() => undefined)),
                  (state) => state?._tag === "Closed" ? CircuitBreaker.ignored : outcome
                )
              }
            })
          })
        return recorded.pipe(
          // Only the breaker's own rejections are mapped; the attempt's errors pass through.
          Effect.mapError((e) => (isCircuitBreakerError(e) ? toBreakerError(e) : e) as E | BreakerError)
        )
      }
    return service(execute, breaker.state, breaker.transitions)
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
