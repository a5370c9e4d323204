/**
 * The Effect `Schema` of the configuration's file form (the JSON file, and the
 * environment written into it): every section, every field, its type and range.
 *
 * **Details**
 *
 * - Every key is optional; an absent key takes the default of `ConfigDefaults`.
 * - Decoding keeps what was written (durations included, see `ConfigDuration`);
 *   `false` switches a policy off.
 * - Unknown keys are refused by the decoder's `onExcessProperty: "error"`
 *   (`ConfigValidation`), not here, so the schema stays usable for a plain decode.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { DurationOrInfinity, FiniteDuration } from "./ConfigDuration.ts"
import { acceptedPlanTableNames, planNames, pools } from "./Plans.ts"

const PositiveInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const PositiveNumber = Schema.Finite.check(Schema.isGreaterThan(0))
const opt = Schema.optionalKey

/** Jitter kinds by name (`Jitter.byName`). */
export const jitterNames = ["none", "full", "equal", "decorrelated", "proportional", "additive"] as const
export type JitterKind = (typeof jitterNames)[number]

const PoolNumbers = Schema.Struct({
  standard: opt(NonNegativeInt),
  flash: opt(NonNegativeInt),
  stt: opt(NonNegativeInt),
  music: opt(NonNegativeInt)
})

/** Plan, pools, lanes, queue and the adaptive (AIMD) limit. Feeds `ConcurrencyLimiter`. */
export const ConcurrencySection = Schema.Struct({
  plan: opt(Schema.Literals([...planNames, "unknown"])),
  // `seeds` and `docs` are the deprecated names of `deployment-guide` and `models-page` (a warning says so).
  planTable: opt(Schema.Literals(acceptedPlanTableNames)),
  pools: opt(PoolNumbers),
  // Hard caps: no header or plan lifts a pool above them (a reserve, an incident's lower limit).
  caps: opt(Schema.Struct({
    standard: opt(PositiveInt),
    flash: opt(PositiveInt),
    stt: opt(PositiveInt),
    music: opt(PositiveInt)
  })),
  poolsInUse: opt(Schema.Array(Schema.Literals(pools))),
  initialLimit: opt(PositiveInt),
  minLimit: opt(PositiveInt),
  maxLimit: opt(PositiveInt),
  decreaseFactor: opt(Schema.Finite),
  additiveIncrease: opt(PositiveNumber),
  maxQueue: opt(Schema.Union([
    PositiveInt,
    Schema.Struct({
      standard: opt(PositiveInt),
      flash: opt(PositiveInt),
      stt: opt(PositiveInt),
      music: opt(PositiveInt)
    })
  ])),
  queueTimeout: opt(DurationOrInfinity),
  laneAging: opt(Schema.Struct({
    interactive: opt(FiniteDuration),
    default: opt(FiniteDuration),
    batch: opt(FiniteDuration)
  }))
})

/** Retry schedules per error class. Feeds `RetryPolicy`. */
export const RetrySection = Schema.Struct({
  maxAttempts: opt(PositiveInt),
  requeue: opt(Schema.Struct({
    step: opt(FiniteDuration),
    maxDelay: opt(FiniteDuration),
    maxRetries: opt(NonNegativeInt)
  })),
  exponential: opt(Schema.Struct({
    base: opt(FiniteDuration),
    factor: opt(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(1))),
    cap: opt(FiniteDuration),
    maxRetries: opt(NonNegativeInt),
    jitter: opt(Schema.Literals(jitterNames)),
    jitterRatio: opt(Schema.Finite),
    jitterMax: opt(FiniteDuration),
    retryAfterMax: opt(FiniteDuration),
    honorRetryAfter: opt(Schema.Boolean)
  })),
  linear: opt(Schema.Struct({
    step: opt(FiniteDuration),
    maxDelay: opt(FiniteDuration),
    maxRetries: opt(NonNegativeInt)
  }))
})

/** Retry budget. Feeds `RetryBudget`. */
export const BudgetSection = Schema.Struct({
  ratio: opt(Schema.Finite),
  window: opt(FiniteDuration),
  minRetriesInFlight: opt(NonNegativeInt)
})

/** Circuit breaker per pool. Feeds `Breaker`. */
export const BreakerSection = Schema.Struct({
  policy: opt(Schema.Literals(["consecutive", "rate"])),
  failures: opt(PositiveInt),
  threshold: opt(Schema.Finite),
  size: opt(PositiveInt),
  minimumCalls: opt(PositiveInt),
  openDuration: opt(FiniteDuration),
  growth: opt(Schema.Struct({
    factor: opt(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(1))),
    max: opt(FiniteDuration)
  })),
  maxRetryAfter: opt(FiniteDuration),
  halfOpenRetryAfter: opt(FiniteDuration),
  keyPrefix: opt(Schema.String),
  onStoreError: opt(Schema.Literals(["allow", "fail"]))
})

/** Credit quota guard. Feeds `QuotaGuard`. */
export const QuotaSection = Schema.Struct({
  refreshInterval: opt(FiniteDuration),
  warningPercent: opt(Schema.Finite),
  alertPercent: opt(Schema.Finite),
  keyCaps: opt(Schema.Record(Schema.String, NonNegativeInt)),
  whenUnknown: opt(Schema.Literals(["allow", "deny"]))
})

/** Per-attempt timeouts and the total deadline of a call. Feed the client and `Deadline`. */
export const TimeoutsSection = Schema.Struct({
  headers: opt(DurationOrInfinity),
  idle: opt(DurationOrInfinity),
  deadline: opt(FiniteDuration)
})

/** Coalescing of identical in-flight requests. Feeds `Coalescer`. */
export const CoalesceSection = Schema.Struct({
  onAllWaitersGone: opt(Schema.Literals(["interrupt", "finish"]))
})

/** Cached-audio fallback. Feeds `Fallback` (`AudioCache`). */
export const CacheSection = Schema.Struct({
  store: opt(Schema.Literals(["memory", "file"])),
  directory: opt(Schema.String),
  maxEntries: opt(PositiveInt),
  maxBytes: opt(PositiveInt),
  ttl: opt(DurationOrInfinity),
  prefix: opt(Schema.String)
})

/** Log levels of `effect`'s logger. */
export const logLevels = ["All", "Trace", "Debug", "Info", "Warn", "Error", "Fatal", "None"] as const

/** Logs, metrics server and OTLP. Feeds `Telemetry.layer` (see `toTelemetryOptions`). */
export const TelemetrySection = Schema.Struct({
  logLevel: opt(Schema.Literals(logLevels)),
  metricsPort: opt(
    Schema.Union([Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 })), Schema.Literal(false)])
  ),
  metricsHost: opt(Schema.String),
  otlp: opt(Schema.Boolean)
})

/** Shared state over Redis. Feeds the distributed stores. */
export const RedisSection = Schema.Struct({
  url: Schema.String.check(
    Schema.makeFilter((s: string) => /^rediss?:\/\/\S+$/.test(s) ? undefined : "Expected a redis:// or rediss:// URL", {
      expected: "a redis:// or rediss:// URL"
    })
  ),
  onUnavailable: opt(Schema.Literals(["fail-closed", "local-fallback"])),
  expectedProcesses: opt(PositiveInt),
  leaseTime: opt(FiniteDuration)
})

/**
 * The file / environment form of the whole stack. See docs/configuration.md
 * for every field, its default and the policy it feeds. `false` switches a
 * policy off.
 */
export const ResilienceConfig = Schema.Struct({
  /** JSON-schema reference for editors; ignored. */
  $schema: opt(Schema.String),
  baseUrl: opt(
    Schema.String.check(
      Schema.makeFilter((s: string) => /^https?:\/\/\S+$/.test(s) ? undefined : "Expected an http:// or https:// URL", {
        expected: "an http:// or https:// URL"
      })
    )
  ),
  characterLimits: opt(Schema.Record(Schema.String, PositiveInt)),
  concurrency: opt(ConcurrencySection),
  retry: opt(Schema.Union([RetrySection, Schema.Literal(false)])),
  budget: opt(Schema.Union([BudgetSection, Schema.Literal(false)])),
  breaker: opt(Schema.Union([BreakerSection, Schema.Literal(false)])),
  quota: opt(Schema.Union([QuotaSection, Schema.Literal(false)])),
  timeouts: opt(TimeoutsSection),
  coalesce: opt(Schema.Union([CoalesceSection, Schema.Boolean])),
  cache: opt(Schema.Union([CacheSection, Schema.Literal(false)])),
  telemetry: opt(TelemetrySection),
  redis: opt(RedisSection)
})

/** The decoded configuration. */
export type ResilienceConfig = typeof ResilienceConfig.Type
