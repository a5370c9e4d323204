/**
 * The Prometheus metrics of elevenlabs-resilience, as Effect `Metric`s, and
 * small typed helpers that record into them.
 *
 * **Details**
 *
 * - The names are those of the ElevenLabs production-deployment guide, exactly
 *   (docs/design.md section 6; see docs/observability.md for the table): `elevenlabs_requests_total`, `elevenlabs_requests_duration_seconds`,
 *   `elevenlabs_concurrent_requests`, `elevenlabs_queue_depth`,
 *   `elevenlabs_errors_total`, `elevenlabs_retries_total`,
 *   `elevenlabs_circuit_breaker_state`, `elevenlabs_characters_generated`,
 *   `elevenlabs_audio_duration_seconds`, `elevenlabs_quota_used_percentage`.
 * - Requests, errors and retries count *logical calls* (one per call the user
 *   made, whatever the attempts): so `errors / requests` is the share of calls
 *   that failed, and `retries / requests` the retries per call.
 * - `elevenlabs_characters_generated` and `elevenlabs_audio_duration_seconds`
 *   are histograms (per call) rather than counters: Prometheus requires a
 *   counter's name to end in `_total` (`promtool check metrics` rejects it
 *   otherwise), and the guide's names do not. A histogram keeps the exact name
 *   and still gives the total (`_sum`) and its rate.
 * - Labels are low-cardinality only: operation, pool, model, lane, status,
 *   reason. Never a voice id, text or key.
 * - The gauges also have synchronous setters (`set*Unsafe`, given the
 *   `Context` captured when the stack was built), for callbacks that run
 *   outside a fiber: {@link occupancyGauges} is the limiter's `onOccupancy`.
 *
 * **Example** (Recording a finished call)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Metrics } from "elevenlabs-resilience/telemetry"
 *
 * const program = Effect.all([
 *   Metrics.recordRequest({ operation: "textToSpeech.convert", pool: "standard", model: "eleven_multilingual_v2", status: "success", durationSeconds: 0.42 }),
 *   Metrics.recordCharacters("eleven_multilingual_v2", 120)
 * ])
 * ```
 *
 * @since 0.1.0
 */
import { type Context, Effect, Metric } from "effect"
import { reasonPolicies, type ReasonTag } from "../client/Errors.ts"
import type { Lane, Occupancy, OccupancyChange } from "../resilience/ConcurrencyLimiter.ts"
import { type Pool, pools } from "../resilience/Plans.ts"

// ==== Names =================================================================

/** The exact exposed metric names (the production-deployment guide's). */
export const names = {
  requests: "elevenlabs_requests_total",
  requestDuration: "elevenlabs_requests_duration_seconds",
  concurrent: "elevenlabs_concurrent_requests",
  queueDepth: "elevenlabs_queue_depth",
  errors: "elevenlabs_errors_total",
  retries: "elevenlabs_retries_total",
  breakerState: "elevenlabs_circuit_breaker_state",
  characters: "elevenlabs_characters_generated",
  audioDuration: "elevenlabs_audio_duration_seconds",
  quotaUsed: "elevenlabs_quota_used_percentage"
} as const

/** Every metric family name, for checks (dashboards, alert rules). */
export const metricNames: ReadonlyArray<string> = Object.values(names)

/** The label names the metrics may carry (all low-cardinality). */
export const labelNames = ["operation", "pool", "model", "lane", "status", "reason"] as const
export type LabelName = (typeof labelNames)[number]

// ==== Boundaries ============================================================

/**
 * Latency buckets in seconds. 2 s is a boundary so the p95 > 2 s alert is
 * read off a bucket edge rather than interpolated across a wide bucket.
 */
export const durationBoundaries: ReadonlyArray<number> = [
  0.05,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  1.5,
  2,
  3,
  5,
  10,
  20,
  30,
  60,
  120
]

/** Characters per call; the per-request limits of the models (5k, 10k, 40k) are edges. */
export const characterBoundaries: ReadonlyArray<number> = [
  50,
  100,
  250,
  500,
  1000,
  2500,
  5000,
  10000,
  40000
]

/** Seconds of audio per call. */
export const audioBoundaries: ReadonlyArray<number> = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]

// ==== Metrics ===============================================================
//
// Each labelled family is a constructor: called without attributes it is the
// exported metric, called with them (through `labelled` below) one series of it.

type Attributes = Record<string, string>
const withAttributes = (attributes: Attributes | undefined) => (attributes === undefined ? {} : { attributes })

const requests = (attributes?: Attributes) =>
  Metric.counter(names.requests, {
    description: "ElevenLabs calls finished, by status (success, error, fallback).",
    incremental: true,
    ...withAttributes(attributes)
  })
/** Logical calls finished, by `operation`, `pool`, `model`, `status`. */
export const requestsTotal = requests()

const requestDurations = (attributes?: Attributes) =>
  Metric.histogram(names.requestDuration, {
    description: "Duration of an ElevenLabs call in seconds, queueing and retries included.",
    boundaries: durationBoundaries,
    ...withAttributes(attributes)
  })
/** Duration of a logical call in seconds (queueing and retries included), by `operation`, `pool`, `model`. */
export const requestDuration = requestDurations()

const concurrent = (attributes?: Attributes) =>
  Metric.gauge(names.concurrent, {
    description: "ElevenLabs requests in flight now (permits held), by pool.",
    ...withAttributes(attributes)
  })
/** Requests on the wire now (permits held), by `pool`. */
export const concurrentRequests = concurrent()

const queueDepths = (attributes?: Attributes) =>
  Metric.gauge(names.queueDepth, {
    description: "ElevenLabs requests waiting for a concurrency permit, by pool and lane.",
    ...withAttributes(attributes)
  })
/** Requests waiting for a permit, by `pool` and `lane`. */
export const queueDepth = queueDepths()

const errors = (attributes?: Attributes) =>
  Metric.counter(names.errors, {
    description: "ElevenLabs calls that ended in a failure, by error reason.",
    incremental: true,
    ...withAttributes(attributes)
  })
/** Calls that ended in a typed failure, by `reason` and `pool`. */
export const errorsTotal = errors()

const retries = (attributes?: Attributes) =>
  Metric.counter(names.retries, {
    description: "Retry attempts made after a failed attempt, by the reason of that failure.",
    incremental: true,
    ...withAttributes(attributes)
  })
/** Retry attempts (each re-attempt after a failed attempt), by `reason` and `pool`. */
export const retriesTotal = retries()

const breakerStates = (attributes?: Attributes) =>
  Metric.gauge(names.breakerState, {
    description: "Circuit breaker state by pool: 0 closed, 1 half-open, 2 open.",
    ...withAttributes(attributes)
  })
/** Breaker state by `pool`: 0 closed, 1 half-open, 2 open. */
export const circuitBreakerState = breakerStates()

const characters = (attributes?: Attributes) =>
  Metric.histogram(names.characters, {
    description: "Characters generated per call, by model (the _sum is the total).",
    boundaries: characterBoundaries,
    ...withAttributes(attributes)
  })
/** Characters sent for generation per successful call, by `model`. */
export const charactersGenerated = characters()

const audioDurations = (attributes?: Attributes) =>
  Metric.histogram(names.audioDuration, {
    description: "Seconds of audio generated per call, by model (the _sum is the total).",
    boundaries: audioBoundaries,
    ...withAttributes(attributes)
  })
/** Seconds of audio produced per successful call, by `model`. */
export const audioDurationSeconds = audioDurations()

/** Share of the period's credits used, 0 to 100. */
export const quotaUsedPercentage = Metric.gauge(names.quotaUsed, {
  description: "Share of the subscription period's credits used, in percent (0-100)."
})

// ==== Recording helpers ======================================================

/**
 * The metric with `attributes`, built once per label set. `Metric.withAttributes`
 * re-derives the series key (sorted entries, JSON) on every update, which costs
 * more than the update itself on the request path; a metric built with its
 * attributes computes that key once. Same series either way: the key is made
 * of the type, name, description and attributes. Labels are low-cardinality,
 * so the cache stays small.
 */
const labelled = <M extends Metric.Metric<any, any>>(
  labels: ReadonlyArray<LabelName>,
  make: (attributes: Attributes) => M
): (...values: ReadonlyArray<string>) => M => {
  const cache = new Map<string, M>()
  // The last label values and their metric: a stack's calls mostly repeat them (no key string per update).
  let lastValues: ReadonlyArray<string> = []
  let last: M | undefined
  return (...values) => {
    if (last !== undefined && values.length === lastValues.length && values.every((v, i) => v === lastValues[i])) {
      return last
    }
    const key = values.join("\u0000")
    let metric = cache.get(key)
    if (metric === undefined) {
      const attributes: Attributes = {}
      labels.forEach((label, i) => (attributes[label] = values[i] ?? ""))
      metric = make(attributes)
      cache.set(key, metric)
    }
    lastValues = values
    last = metric
    return metric
  }
}

const requestsOf = labelled(["operation", "pool", "model", "status"], requests)
const requestDurationOf = labelled(["operation", "pool", "model"], requestDurations)
const concurrentOf = labelled(["pool"], concurrent)
const queueDepthOf = labelled(["pool", "lane"], queueDepths)
const errorsOf = labelled(["reason", "pool"], errors)
const retriesOf = labelled(["reason", "pool"], retries)
const breakerStateOf = labelled(["pool"], breakerStates)
const charactersOf = labelled(["model"], characters)
const audioSecondsOf = labelled(["model"], audioDurations)

/** How a logical call ended: answered, failed, or answered from the fallback cache after a failure. */
export type RequestStatus = "success" | "error" | "fallback"

/** Breaker states as exposed: 0 closed, 1 half-open, 2 open. */
export type BreakerStateValue = 0 | 1 | 2

/** Numeric value of a breaker state name. */
export const breakerStateValue = (state: "Closed" | "HalfOpen" | "Open"): BreakerStateValue =>
  state === "Closed" ? 0 : state === "HalfOpen" ? 1 : 2

const nonNegative = (n: number): number => (Number.isFinite(n) && n > 0 ? n : 0)

/**
 * Records one finished logical call: `elevenlabs_requests_total` +1 and its
 * duration in `elevenlabs_requests_duration_seconds`.
 */
export const recordRequest = (options: {
  readonly operation: string
  readonly pool: Pool
  readonly model: string
  readonly status: RequestStatus
  readonly durationSeconds: number
}): Effect.Effect<void> => {
  return Effect.andThen(
    Metric.update(requestsOf(options.operation, options.pool, options.model, options.status), 1),
    Metric.update(
      requestDurationOf(options.operation, options.pool, options.model),
      nonNegative(options.durationSeconds)
    )
  )
}

/** Records a call that ended in failure (`elevenlabs_errors_total` +1). */
export const recordError = (options: {
  readonly reason: string
  readonly pool: Pool
}): Effect.Effect<void> => Metric.update(errorsOf(options.reason, options.pool), 1)

/** Records one retry attempt (`elevenlabs_retries_total` +1) for the reason of the failed attempt. */
export const recordRetry = (options: {
  readonly reason: string
  readonly pool: Pool
}): Effect.Effect<void> => Metric.update(retriesOf(options.reason, options.pool), 1)

/** Sets the number of requests in flight for a pool. */
export const setConcurrent = (pool: Pool, n: number): Effect.Effect<void> =>
  Metric.update(concurrentOf(pool), nonNegative(n))

/** Sets the number of queued requests for a pool and lane. */
export const setQueueDepth = (pool: Pool, lane: string, n: number): Effect.Effect<void> =>
  Metric.update(queueDepthOf(pool, lane), nonNegative(n))

/** Sets the breaker state of a pool: 0 closed, 1 half-open, 2 open. */
export const setBreakerState = (pool: Pool, state: BreakerStateValue): Effect.Effect<void> =>
  Metric.update(breakerStateOf(pool), state)

/** Records the characters of one generation for a model. */
export const recordCharacters = (model: string, n: number): Effect.Effect<void> =>
  Metric.update(charactersOf(model), nonNegative(n))

/** Records the seconds of audio of one generation for a model. */
export const recordAudioSeconds = (model: string, seconds: number): Effect.Effect<void> =>
  Metric.update(audioSecondsOf(model), nonNegative(seconds))

/** Sets the share of the period's credits used, clamped to 0..100. */
export const setQuotaUsed = (percentage: number): Effect.Effect<void> =>
  Metric.update(quotaUsedPercentage, Math.min(100, nonNegative(percentage)))

// ==== Synchronous setters ====================================================
//
// For callbacks that run inside a policy's bookkeeping rather than on a fiber (the limiter's `onOccupancy`).
// `context` is the one the stack was built in (`yield* Effect.context()`), so the same metric registry is
// used as by the effectful setters above.

/** {@link recordRequest}, synchronously. */
export const recordRequestUnsafe = (
  options: {
    readonly operation: string
    readonly pool: Pool
    readonly model: string
    readonly status: RequestStatus
    readonly durationSeconds: number
  },
  context: Context.Context<never>
): void => {
  requestsOf(options.operation, options.pool, options.model, options.status).updateUnsafe(1, context)
  requestDurationOf(options.operation, options.pool, options.model).updateUnsafe(
    nonNegative(options.durationSeconds),
    context
  )
}

/** {@link recordError}, synchronously. */
export const recordErrorUnsafe = (
  options: { readonly reason: string; readonly pool: Pool },
  context: Context.Context<never>
): void => errorsOf(options.reason, options.pool).updateUnsafe(1, context)

/**
 * Creates, at 0, the error and retry series of every pool for the reasons that signal trouble at the server
 * (those the breaker counts as failures). Prometheus' `rate()` needs a
 * series' previous sample: a counter that first appears at 1 has its first increment lost, so without this
 * the first burst of an outage would not count in the error-rate and retry-rate alerts (seen in
 * test/telemetry/AlertsEndToEnd.test.ts). Called once when a stack is built, in its context.
 */
export const initializeSeriesUnsafe = (context: Context.Context<never>): void => {
  const reasons = (Object.keys(reasonPolicies) as Array<ReasonTag>).filter((r) => reasonPolicies[r].breakerFailure)
  for (const pool of pools) {
    for (const reason of reasons) {
      errorsOf(reason, pool).updateUnsafe(0, context)
      retriesOf(reason, pool).updateUnsafe(0, context)
    }
  }
}

/** {@link recordRetry}, synchronously. */
export const recordRetryUnsafe = (
  options: { readonly reason: string; readonly pool: Pool },
  context: Context.Context<never>
): void => retriesOf(options.reason, options.pool).updateUnsafe(1, context)

/** {@link recordCharacters}, synchronously. */
export const recordCharactersUnsafe = (model: string, n: number, context: Context.Context<never>): void =>
  charactersOf(model).updateUnsafe(nonNegative(n), context)

/** {@link recordAudioSeconds}, synchronously. */
export const recordAudioSecondsUnsafe = (model: string, seconds: number, context: Context.Context<never>): void =>
  audioSecondsOf(model).updateUnsafe(nonNegative(seconds), context)

/** {@link setConcurrent}, synchronously. */
export const setConcurrentUnsafe = (pool: Pool, n: number, context: Context.Context<never>): void =>
  concurrentOf(pool).updateUnsafe(nonNegative(n), context)

/** {@link setQueueDepth}, synchronously. */
export const setQueueDepthUnsafe = (pool: Pool, lane: string, n: number, context: Context.Context<never>): void =>
  queueDepthOf(pool, lane).updateUnsafe(nonNegative(n), context)

/** {@link setBreakerState}, synchronously. */
export const setBreakerStateUnsafe = (pool: Pool, state: BreakerStateValue, context: Context.Context<never>): void =>
  breakerStateOf(pool).updateUnsafe(state, context)

/** {@link setQuotaUsed}, synchronously. */
export const setQuotaUsedUnsafe = (percentage: number, context: Context.Context<never>): void =>
  quotaUsedPercentage.updateUnsafe(Math.min(100, nonNegative(percentage)), context)

/**
 * A `ConcurrencyLimiter` `onOccupancy` callback that keeps `elevenlabs_concurrent_requests` and
 * `elevenlabs_queue_depth` up to date from the limiter's own changes: in-flight on a grant or release, the
 * lane's queue depth when a caller joins or leaves the queue, both when a queued caller gets its permit.
 * With `key`, only that API-key id's changes are recorded (the gauges are labelled by pool, not by key).
 *
 * @example
 * ```ts
 * const context = yield* Effect.context<never>()
 * const limiter = yield* ConcurrencyLimiter.make({
 *   plan: "pro",
 *   onOccupancy: Metrics.occupancyGauges(context, { key: keyId })
 * })
 * ```
 */
export const occupancyGauges = (
  context: Context.Context<never>,
  options?: { readonly key?: string | undefined }
): (occupancy: Occupancy, change: OccupancyChange, lane: Lane) => void => {
  const only = options?.key
  return (occupancy, change, lane) => {
    if (only !== undefined && occupancy.key !== only) return
    if (change !== "queued" && change !== "abandoned" && change !== "expired" && change !== "refused") {
      setConcurrentUnsafe(occupancy.pool, occupancy.inFlight, context)
    }
    if (change !== "granted" && change !== "released") {
      setQueueDepthUnsafe(occupancy.pool, lane, occupancy.queued[lane], context)
    }
  }
}

// ==== Real-time sessions =====================================================
//
// The WebSocket sessions of `RealtimeSession` (docs/realtime.md). Kept apart from `names` and `metricNames`,
// which are the production-deployment guide's families exactly (the alert rules and the dashboard are checked
// against them); these appear once a session has run.

/** The metric names of the real-time sessions. */
export const realtimeNames = {
  sessionsActive: "elevenlabs_realtime_sessions_active",
  sessions: "elevenlabs_realtime_sessions_total",
  reconnects: "elevenlabs_realtime_reconnects_total",
  charactersResent: "elevenlabs_realtime_characters_resent_total"
} as const

const sessionsActive = (attributes?: Attributes) =>
  Metric.gauge(realtimeNames.sessionsActive, {
    description: "ElevenLabs real-time TTS sessions open now, by pool.",
    ...withAttributes(attributes)
  })
const sessionsEnded = (attributes?: Attributes) =>
  Metric.counter(realtimeNames.sessions, {
    description: "ElevenLabs real-time TTS sessions ended, by status (success, error, interrupted) and reason.",
    incremental: true,
    ...withAttributes(attributes)
  })
const reconnects = (attributes?: Attributes) =>
  Metric.counter(realtimeNames.reconnects, {
    description: "Reconnects of ElevenLabs real-time TTS sessions, by the reason of the ending they followed.",
    incremental: true,
    ...withAttributes(attributes)
  })
const charactersResent = (attributes?: Attributes) =>
  Metric.counter(realtimeNames.charactersResent, {
    description: "Characters sent again after a reconnect (the unanswered suffix), by pool.",
    incremental: true,
    ...withAttributes(attributes)
  })

const sessionsActiveOf = labelled(["pool"], sessionsActive)
const sessionsEndedOf = labelled(["pool", "status", "reason"], sessionsEnded)
const reconnectsOf = labelled(["pool", "reason"], reconnects)
const charactersResentOf = labelled(["pool"], charactersResent)

/** How a real-time session ended. */
export type SessionStatus = "success" | "error" | "interrupted"

/** Adds `delta` (+1 when a session opens, -1 when it ends) to `elevenlabs_realtime_sessions_active`. */
export const addActiveSession = (pool: Pool, delta: number): Effect.Effect<void> =>
  Metric.modify(sessionsActiveOf(pool), delta)

/** Records a session's end (`elevenlabs_realtime_sessions_total` +1); `reason` is the failure's tag, or "". */
export const recordSessionEnd = (options: {
  readonly pool: Pool
  readonly status: SessionStatus
  readonly reason: string
}): Effect.Effect<void> => Metric.update(sessionsEndedOf(options.pool, options.status, options.reason), 1)

/** Records one reconnect of a session after an ending of `reason`. */
export const recordReconnect = (options: { readonly pool: Pool; readonly reason: string }): Effect.Effect<void> =>
  Metric.update(reconnectsOf(options.pool, options.reason), 1)

/** Records characters sent again after a reconnect. */
export const recordCharactersResent = (pool: Pool, n: number): Effect.Effect<void> =>
  n > 0 ? Metric.update(charactersResentOf(pool), n) : Effect.void

// ==== Live configuration ====================================================

/** The live configuration's metric names (`LiveConfig`), beside the production-deployment guide's. */
export const configNames = {
  version: "elevenlabs_config_version",
  changes: "elevenlabs_config_changes_total"
} as const

const configVersion = Metric.gauge(configNames.version, {
  description: "The configuration version this process runs (0: its start configuration)."
})
const configChanges = (attributes?: Attributes) =>
  Metric.counter(configNames.changes, {
    description: "Configuration versions applied or refused by this process, by result.",
    incremental: true,
    ...withAttributes(attributes)
  })
const configChangesApplied = configChanges({ result: "applied" })
const configChangesRefused = configChanges({ result: "refused" })

/** Sets `elevenlabs_config_version`. */
export const setConfigVersion = (version: number): Effect.Effect<void> => Metric.update(configVersion, version)

/** Counts a version applied or refused (`elevenlabs_config_changes_total`). */
export const recordConfigChange = (result: "applied" | "refused"): Effect.Effect<void> =>
  Metric.update(result === "applied" ? configChangesApplied : configChangesRefused, 1)
