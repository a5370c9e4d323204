/**
 * A decoded configuration as the options of the stack: `ResilientOptions`
 * (the `Resilient` layer, `ResilientFetch`, `WithResilience`) and the options
 * of `Telemetry.layer`. Every default is written out, so what runs is what
 * docs/configuration.md says.
 *
 * @since 0.1.0
 */
import type { Redacted } from "effect"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import { defaults } from "./ConfigDefaults.ts"
import { durationInput as dur, type DurationValue } from "./ConfigDuration.ts"
import type { JitterKind, logLevels, ResilienceConfig } from "./ConfigSchema.ts"
import * as Jitter from "./Jitter.ts"
import { limitsOf, planTableOf, type Pool, pools } from "./Plans.ts"
import type { ResilientOptions } from "./ResilientOptions.ts"

const jitterOf = (
  e: { readonly jitter?: JitterKind; readonly jitterRatio?: number; readonly jitterMax?: DurationValue }
): Jitter.Jitter => {
  const kind = e.jitter ?? defaults.retry.exponential.jitter
  switch (kind) {
    case "proportional":
      return Jitter.proportional(e.jitterRatio ?? defaults.retry.exponential.jitterRatio)
    case "additive":
      return Jitter.additive(dur(e.jitterMax ?? defaults.retry.exponential.jitterMax))
    default:
      return Jitter.byName[kind]
  }
}

const planSpec = (c: NonNullable<ResilienceConfig["concurrency"]>): ConcurrencyLimiter.PlanSpec => {
  const plan = c.plan ?? defaults.concurrency.plan
  const table = planTableOf(c.planTable ?? defaults.concurrency.planTable)
  if (c.pools === undefined || Object.keys(c.pools).length === 0) return plan
  // Custom numbers override the named plan pool by pool; pools left out keep the plan's number
  // (or are learned, when the plan is unknown).
  const custom: Partial<Record<Pool, number>> = {}
  for (const pool of pools) {
    const n = c.pools[pool] ?? (plan === "unknown" ? undefined : limitsOf(plan, table)[pool])
    if (n !== undefined) custom[pool] = n
  }
  return custom
}

/**
 * The options of the `Resilient` layer from a decoded configuration and the
 * API key (from `ELEVENLABS_API_KEY`, never from the file). Every default is
 * written out, so what runs is what docs/configuration.md says.
 */
export const toResilientOptions = (config: ResilienceConfig, apiKey: Redacted.Redacted<string>): ResilientOptions => ({
  apiKey,
  ...toStackOptions(config)
})

/**
 * {@link toResilientOptions} without the key: for `ResilientFetch.make`, which reads each request's key from
 * its headers, and for `WithResilience`.
 */
export const toStackOptions = (config: ResilienceConfig): Omit<ResilientOptions, "apiKey"> => {
  const c = config.concurrency ?? {}
  const t = config.timeouts ?? {}
  const aging = { ...defaults.concurrency.laneAging, ...c.laneAging }
  const r = config.retry
  const e = r === false ? {} : r?.exponential ?? {}
  const b = config.breaker
  const q = config.quota
  const k = config.cache
  return {
    baseUrl: config.baseUrl ?? defaults.baseUrl,
    headersTimeout: dur(t.headers ?? defaults.timeouts.headers),
    idleTimeout: dur(t.idle ?? defaults.timeouts.idle),
    characterLimits: config.characterLimits,
    deadline: dur(t.deadline ?? defaults.timeouts.deadline),
    limiter: {
      plan: planSpec(c),
      table: planTableOf(c.planTable ?? defaults.concurrency.planTable),
      caps: c.caps,
      initialLimit: c.initialLimit ?? defaults.concurrency.initialLimit,
      minLimit: c.minLimit ?? defaults.concurrency.minLimit,
      maxLimit: c.maxLimit ?? defaults.concurrency.maxLimit,
      decreaseFactor: c.decreaseFactor ?? defaults.concurrency.decreaseFactor,
      additiveIncrease: c.additiveIncrease ?? defaults.concurrency.additiveIncrease,
      maxQueue: c.maxQueue ?? defaults.concurrency.maxQueue,
      queueTimeout: dur(c.queueTimeout ?? defaults.concurrency.queueTimeout),
      laneAging: { interactive: dur(aging.interactive), default: dur(aging.default), batch: dur(aging.batch) }
    },
    retry: r === false ? false : {
      maxAttempts: r?.maxAttempts,
      requeue: {
        step: dur(r?.requeue?.step ?? defaults.retry.requeue.step),
        maxDelay: dur(r?.requeue?.maxDelay ?? defaults.retry.requeue.maxDelay),
        maxRetries: r?.requeue?.maxRetries ?? defaults.retry.requeue.maxRetries
      },
      exponential: {
        base: dur(e.base ?? defaults.retry.exponential.base),
        factor: e.factor ?? defaults.retry.exponential.factor,
        cap: dur(e.cap ?? defaults.retry.exponential.cap),
        maxRetries: e.maxRetries ?? defaults.retry.exponential.maxRetries,
        jitter: jitterOf(e),
        retryAfterMax: dur(e.retryAfterMax ?? defaults.retry.exponential.retryAfterMax),
        honorRetryAfter: e.honorRetryAfter ?? defaults.retry.exponential.honorRetryAfter
      },
      linear: {
        step: dur(r?.linear?.step ?? defaults.retry.linear.step),
        maxDelay: dur(r?.linear?.maxDelay ?? defaults.retry.linear.maxDelay),
        maxRetries: r?.linear?.maxRetries ?? defaults.retry.linear.maxRetries
      }
    },
    budget: config.budget === false ? false : {
      ratio: config.budget?.ratio ?? defaults.budget.ratio,
      window: dur(config.budget?.window ?? defaults.budget.window),
      minRetriesInFlight: config.budget?.minRetriesInFlight ?? defaults.budget.minRetriesInFlight
    },
    breaker: b === false ? false : {
      policy: (b?.policy ?? defaults.breaker.policy) === "rate"
        ? {
          _tag: "rate",
          threshold: b?.threshold ?? defaults.breaker.threshold,
          size: b?.size ?? defaults.breaker.size,
          minimumCalls: b?.minimumCalls ?? defaults.breaker.minimumCalls
        }
        : { _tag: "consecutive", failures: b?.failures ?? defaults.breaker.failures },
      openDuration: dur(b?.openDuration ?? defaults.breaker.openDuration),
      growth: b?.growth === undefined
        ? undefined
        : { factor: b.growth.factor, max: b.growth.max === undefined ? undefined : dur(b.growth.max) },
      maxRetryAfter: dur(b?.maxRetryAfter ?? defaults.breaker.maxRetryAfter),
      halfOpenRetryAfter: dur(b?.halfOpenRetryAfter ?? defaults.breaker.halfOpenRetryAfter),
      // Absent: the composition's own prefix (`elevenlabs:<key id>:`), which keeps keys apart.
      keyPrefix: b?.keyPrefix,
      onStoreError: b?.onStoreError ?? defaults.breaker.onStoreError
    },
    quota: q === false ? false : {
      refreshInterval: dur(q?.refreshInterval ?? defaults.quota.refreshInterval),
      warningPercent: q?.warningPercent ?? defaults.quota.warningPercent,
      alertPercent: q?.alertPercent ?? defaults.quota.alertPercent,
      keyCaps: q?.keyCaps,
      whenUnknown: q?.whenUnknown ?? defaults.quota.whenUnknown
    },
    coalesce: config.coalesce === false
      ? false
      : {
        onAllWaitersGone: (config.coalesce === true ? undefined : config.coalesce?.onAllWaitersGone) ??
          defaults.coalesce.onAllWaitersGone
      },
    cache: k === undefined || k === false ? false : {
      maxEntries: k.maxEntries ?? defaults.cache.maxEntries,
      maxBytes: k.maxBytes ?? defaults.cache.maxBytes,
      ttl: k.ttl === undefined ? undefined : dur(k.ttl),
      prefix: k.prefix ?? defaults.cache.prefix,
      store: (k.store ?? defaults.cache.store) === "file"
        ? { _tag: "file", directory: k.directory ?? "" }
        : { _tag: "memory" }
    },
    redis: config.redis === undefined ? undefined : {
      url: config.redis.url,
      onUnavailable: config.redis.onUnavailable ?? defaults.redis.onUnavailable,
      expectedProcesses: config.redis.expectedProcesses ?? defaults.redis.expectedProcesses,
      leaseTime: dur(config.redis.leaseTime ?? defaults.redis.leaseTime)
    }
  }
}

/** The telemetry part, in the shape of `Telemetry.Options` (not part of `ResilientOptions`). */
export interface TelemetrySettings {
  readonly logs: { readonly minimumLevel: (typeof logLevels)[number] }
  readonly otlp: "env" | false
  readonly server: { readonly port: number; readonly host?: string | undefined } | false
}

/**
 * The options of `Telemetry.layer` from a decoded configuration. Pass the
 * API key to `logs.redact` yourself (`{ ...toTelemetryOptions(c), logs: { ..., redact: [apiKey] } }`).
 */
export const toTelemetryOptions = (config: ResilienceConfig): TelemetrySettings => {
  const t = config.telemetry ?? {}
  const port = t.metricsPort ?? defaults.telemetry.metricsPort
  return {
    logs: { minimumLevel: t.logLevel ?? defaults.telemetry.logLevel },
    otlp: (t.otlp ?? defaults.telemetry.otlp) ? "env" : false,
    server: port === false ? false : { port, ...(t.metricsHost === undefined ? {} : { host: t.metricsHost }) }
  }
}
