/**
 * The cross-field checks of a decoded configuration (what the schema cannot
 * see field by field: `minLimit` above `maxLimit`, a cap below its base, a
 * field another choice makes moot) and, with `strict`, the risky settings.
 *
 * **Details**
 *
 * - Errors and warnings are always reported; the risky settings only in strict
 *   mode, as warnings (`validate-config --strict` counts them as errors).
 * - Problems come in section order: concurrency, timeouts, retry, budget,
 *   breaker, quota, cache, redis.
 *
 * @since 0.1.0
 */
import { defaults } from "./ConfigDefaults.ts"
import { type DurationValue, millisOf } from "./ConfigDuration.ts"
import { type Problem, problem } from "./ConfigProblem.ts"
import type { ResilienceConfig } from "./ConfigSchema.ts"
import {
  deprecatedPlanTableNames,
  isDeprecatedPlanTableName,
  limitsOf,
  type PlanLimits,
  planTableOf,
  type Pool,
  pools
} from "./Plans.ts"

/** Options of {@link check} and `validate`. */
export interface CheckOptions {
  /** Also flag risky settings, and treat a key in the file as an error. Default `false`. */
  readonly strict?: boolean | undefined
}

/** Where the checks of a section put what they find. */
interface Report {
  readonly error: (path: string, message: string, fix: string) => void
  readonly warning: (path: string, message: string, fix: string) => void
  /** A risky setting: a warning in strict mode, nothing otherwise. */
  readonly risky: (path: string, message: string, fix: string) => void
}

const ms = (d: DurationValue | undefined, fallback: DurationValue): number => millisOf(d ?? fallback) ?? NaN
const show = (d: DurationValue): string => (typeof d === "number" ? `${d} ms` : d)

/**
 * Cross-field checks of a decoded configuration, and with `strict` the risky
 * settings (as warnings; `validate-config --strict` counts them as errors).
 */
export const check = (config: ResilienceConfig, options?: CheckOptions | undefined): Array<Problem> => {
  const out: Array<Problem> = []
  const report: Report = {
    error: (path, message, fix) => out.push(problem("error", path, message, fix)),
    warning: (path, message, fix) => out.push(problem("warning", path, message, fix)),
    risky: (path, message, fix) => {
      if (options?.strict === true) out.push(problem("warning", path, message, fix))
    }
  }
  for (const section of [concurrency, timeouts, retry, budgetAndBreaker, quota, cacheAndRedis]) section(config, report)
  return out
}

const concurrency = (config: ResilienceConfig, { error, risky, warning }: Report): void => {
  const c = config.concurrency ?? {}
  const minLimit = c.minLimit ?? defaults.concurrency.minLimit
  const maxLimit = c.maxLimit ?? defaults.concurrency.maxLimit
  if (minLimit > maxLimit) {
    error("concurrency.minLimit", `minLimit (${minLimit}) is above maxLimit (${maxLimit})`, "make minLimit <= maxLimit")
  }
  const initial = c.initialLimit ?? defaults.concurrency.initialLimit
  if (initial < minLimit || initial > maxLimit) {
    error(
      "concurrency.initialLimit",
      `initialLimit (${initial}) is outside [minLimit ${minLimit}, maxLimit ${maxLimit}]`,
      "choose an initialLimit between minLimit and maxLimit"
    )
  }
  const decrease = c.decreaseFactor ?? defaults.concurrency.decreaseFactor
  if (!(decrease > 0 && decrease < 1)) {
    error(
      "concurrency.decreaseFactor",
      `decreaseFactor (${decrease}) must be in (0, 1)`,
      "use e.g. 0.9 (shrink by 10 %)"
    )
  }
  const plan = c.plan ?? defaults.concurrency.plan
  if (c.planTable !== undefined && isDeprecatedPlanTableName(c.planTable)) {
    const current = deprecatedPlanTableNames[c.planTable]
    warning(
      "concurrency.planTable",
      `"${c.planTable}" is the deprecated name of the "${current}" plan table`,
      `write "planTable": "${current}" (same numbers)`
    )
  }
  const table = planTableOf(c.planTable ?? defaults.concurrency.planTable)
  const planLimits: PlanLimits | undefined = plan === "unknown" ? undefined : limitsOf(plan, table)
  const inUse = new Set<Pool>(c.poolsInUse ?? [])
  for (const pool of pools) {
    const custom = c.pools?.[pool]
    const effective = custom ?? planLimits?.[pool]
    if (effective === 0 && inUse.has(pool)) {
      error(
        `concurrency.pools.${pool}`,
        `pool "${pool}" is in use (poolsInUse) but its limit is 0${
          custom === undefined ? ` on plan "${plan}"` : ""
        }: every call to it would wait until the queue timeout`,
        custom === undefined
          ? `upgrade the plan, or remove "${pool}" from poolsInUse`
          : `set concurrency.pools.${pool} to at least 1`
      )
    } else if (custom === 0 && c.poolsInUse === undefined) {
      warning(
        `concurrency.pools.${pool}`,
        `pool "${pool}" has limit 0: calls to it can never run`,
        `set it to at least 1, or list the pools you call in concurrency.poolsInUse`
      )
    }
    if (custom !== undefined && planLimits !== undefined && custom > planLimits[pool]) {
      risky(
        `concurrency.pools.${pool}`,
        `limit ${custom} is above the "${plan}" plan's ${
          planLimits[pool]
        } for "${pool}": expect too_many_concurrent_requests`,
        `use ${planLimits[pool]} or less, or set the plan you actually have`
      )
    }
  }
  const maxQueue = c.maxQueue ?? defaults.concurrency.maxQueue
  const queues = typeof maxQueue === "number"
    ? [["concurrency.maxQueue", maxQueue] as const]
    : Object.entries(maxQueue).map(([p, n]) => [`concurrency.maxQueue.${p}`, n] as const)
  // The bound is a memory guard (admission is by predicted wait): warn where a full queue takes gigabytes.
  for (const [path, n] of queues) {
    if (n !== undefined && n > 200_000) {
      risky(
        path,
        `queue bound ${n} can hold about ${
          Math.round(n * 6.4 / 1000)
        } MB of heap in one pool (about 6.4 KB a waiting call)`,
        `keep the memory guard at 200,000 or less (default ${defaults.concurrency.maxQueue})`
      )
    }
  }
  if (ms(c.queueTimeout, defaults.concurrency.queueTimeout) === Infinity) {
    risky(
      "concurrency.queueTimeout",
      "the queue has no deadline: callers may wait forever",
      `use a finite timeout (default ${defaults.concurrency.queueTimeout})`
    )
  }
}

const timeouts = (config: ResilienceConfig, { error, risky }: Report): void => {
  const queueTimeout = config.concurrency?.queueTimeout ?? defaults.concurrency.queueTimeout
  const queueMs = ms(queueTimeout, defaults.concurrency.queueTimeout)
  const t = config.timeouts ?? {}
  const deadline = ms(t.deadline, defaults.timeouts.deadline)
  if (queueMs > deadline && queueMs !== Infinity) {
    risky(
      "concurrency.queueTimeout",
      `the queue deadline (${show(queueTimeout)}) is longer than the total deadline (${
        show(t.deadline ?? defaults.timeouts.deadline)
      }): the queue bound never applies`,
      "make concurrency.queueTimeout shorter than timeouts.deadline"
    )
  }
  const headers = ms(t.headers, defaults.timeouts.headers)
  if (headers > deadline) {
    risky(
      "timeouts.headers",
      `the headers timeout is longer than the total deadline`,
      "make timeouts.headers shorter than timeouts.deadline"
    )
  }
  const idle = ms(t.idle, defaults.timeouts.idle)
  if (idle === Infinity) {
    risky(
      "timeouts.idle",
      "the idle timeout is off: a stalled stream holds its permit until the deadline",
      `use a finite idle timeout (default ${defaults.timeouts.idle})`
    )
  } else if (idle > 120_000) {
    risky(
      "timeouts.idle",
      `the idle timeout (${show(t.idle ?? "")}) is very long: a stalled stream holds its permit that long`,
      "use 2 minutes or less (default 30 seconds)"
    )
  }
  if (headers === 0 || idle === 0) {
    error(
      headers === 0 ? "timeouts.headers" : "timeouts.idle",
      "a timeout of 0 fails every attempt",
      "use a positive duration, or \"Infinity\" to switch it off"
    )
  }
  if (deadline === 0) {
    error("timeouts.deadline", "a deadline of 0 fails every call", "use a positive duration (default 180 seconds)")
  }
}

const retry = (config: ResilienceConfig, { error, risky, warning }: Report): void => {
  if (config.retry === false) return
  const r = config.retry ?? {}
  const e = r.exponential ?? {}
  const d = defaults.retry
  if (ms(e.cap, d.exponential.cap) < ms(e.base, d.exponential.base)) {
    error(
      "retry.exponential.cap",
      `cap (${show(e.cap ?? d.exponential.cap)}) is below base (${show(e.base ?? d.exponential.base)})`,
      "make cap >= base"
    )
  }
  const jitter = e.jitter ?? d.exponential.jitter
  if (e.jitterRatio !== undefined && !(e.jitterRatio >= 0 && e.jitterRatio <= 1)) {
    error("retry.exponential.jitterRatio", `jitterRatio (${e.jitterRatio}) must be in [0, 1]`, "use e.g. 0.2 (±20 %)")
  } else if (e.jitterRatio !== undefined && jitter !== "proportional") {
    warning(
      "retry.exponential.jitterRatio",
      `jitterRatio is only used by proportional jitter, not "${jitter}"`,
      `remove it, or set jitter to "proportional"`
    )
  }
  if (e.jitterMax !== undefined && jitter !== "additive") {
    warning(
      "retry.exponential.jitterMax",
      `jitterMax is only used by additive jitter, not "${jitter}"`,
      `remove it, or set jitter to "additive"`
    )
  }
  if (jitter === "none") {
    risky(
      "retry.exponential.jitter",
      `jitter "none": every caller retries at the same instant (retry storms)`,
      `use "full" (the default) or "decorrelated"`
    )
  }
  const retries = e.maxRetries ?? d.exponential.maxRetries
  if (retries > 10) {
    risky(
      "retry.exponential.maxRetries",
      `${retries} retries per call: a long outage multiplies the load`,
      "use 10 or fewer (default 5)"
    )
  }
  const l = r.linear ?? {}
  if (ms(l.maxDelay, d.linear.maxDelay) < ms(l.step, d.linear.step)) {
    error("retry.linear.maxDelay", "maxDelay is below step", "make maxDelay >= step")
  }
  if ((l.maxRetries ?? d.linear.maxRetries) > 10) {
    risky(
      "retry.linear.maxRetries",
      `${l.maxRetries} retries per call on transport errors`,
      "use 10 or fewer (default 3)"
    )
  }
  const q = r.requeue ?? {}
  if (ms(q.maxDelay, d.requeue.maxDelay) < ms(q.step, d.requeue.step)) {
    error("retry.requeue.maxDelay", "maxDelay is below step", "make maxDelay >= step")
  }
  if ((q.maxRetries ?? d.requeue.maxRetries) > 100) {
    risky(
      "retry.requeue.maxRetries",
      `${q.maxRetries} requeues per call`,
      "use 100 or fewer (default 20); the deadline bounds the rest"
    )
  }
  if (r.maxAttempts !== undefined && r.maxAttempts > 50) {
    risky("retry.maxAttempts", `${r.maxAttempts} attempts per call is no cap`, "use a few dozen at most, or remove it")
  }
}

const budgetAndBreaker = (config: ResilienceConfig, { error, risky, warning }: Report): void => {
  if (config.budget === false) {
    risky(
      "budget",
      "the retry budget is off: under a sustained outage retries multiply the load",
      `remove "budget": false (default ratio 0.2)`
    )
  } else if (config.budget?.ratio !== undefined && !(config.budget.ratio >= 0 && config.budget.ratio <= 1)) {
    error(
      "budget.ratio",
      `ratio (${config.budget.ratio}) must be in [0, 1]`,
      "use e.g. 0.2 (at most 20 % of requests retried)"
    )
  }
  const b = config.breaker
  if (b === false) {
    risky("breaker", "the circuit breaker is off: a failing pool keeps taking full traffic", `remove "breaker": false`)
    return
  }
  if (b === undefined) return
  const policy = b.policy ?? defaults.breaker.policy
  if (b.threshold !== undefined && !(b.threshold > 0 && b.threshold <= 1)) {
    error(
      "breaker.threshold",
      `threshold (${b.threshold}) must be in (0, 1]`,
      "use e.g. 0.5 (half the recent calls failed)"
    )
  }
  if ((b.minimumCalls ?? defaults.breaker.minimumCalls) > (b.size ?? defaults.breaker.size)) {
    error(
      "breaker.minimumCalls",
      "minimumCalls is above size: the rate policy could never trip",
      "make minimumCalls <= size"
    )
  }
  const moot = policy === "consecutive"
    ? (["threshold", "size", "minimumCalls"] as const).filter((k) => b[k] !== undefined)
    : (["failures"] as const).filter((k) => b[k] !== undefined)
  for (const k of moot) {
    warning(
      `breaker.${k}`,
      `${k} is not used by the "${policy}" policy`,
      `remove it, or set policy to "${policy === "consecutive" ? "rate" : "consecutive"}"`
    )
  }
  if (b.growth?.max !== undefined && ms(b.growth.max, 0) < ms(b.openDuration, defaults.breaker.openDuration)) {
    error("breaker.growth.max", "growth.max is below openDuration", "make growth.max >= openDuration")
  }
}

const quota = (config: ResilienceConfig, { error, risky }: Report): void => {
  const q = config.quota
  if (q === false) {
    risky(
      "quota",
      "the quota guard is off: calls are sent until the server answers quota_exceeded",
      `remove "quota": false`
    )
    return
  }
  if (q === undefined) return
  const warning = q.warningPercent ?? defaults.quota.warningPercent
  const alert = q.alertPercent ?? defaults.quota.alertPercent
  for (const [k, v] of [["warningPercent", warning], ["alertPercent", alert]] as const) {
    if (!(v >= 0 && v <= 100)) {
      error(`quota.${k}`, `${k} (${v}) must be in [0, 100]`, "use a percentage of the quota used")
    }
  }
  if (alert < warning) {
    error(
      "quota.alertPercent",
      `alertPercent (${alert}) is below warningPercent (${warning})`,
      "make alertPercent >= warningPercent (defaults 90 and 80)"
    )
  }
  if (ms(q.refreshInterval, defaults.quota.refreshInterval) === 0) {
    error("quota.refreshInterval", "a refresh interval of 0 would poll without pause", "use e.g. \"60 seconds\"")
  }
}

const cacheAndRedis = (config: ResilienceConfig, { error, risky, warning }: Report): void => {
  const k = config.cache
  if (k !== undefined && k !== false) {
    if ((k.store ?? defaults.cache.store) === "file" && (k.directory === undefined || k.directory.trim() === "")) {
      error("cache.directory", `the file store needs a directory`, `add "directory": "/var/cache/elevenlabs"`)
    }
    if (k.store !== "file" && k.directory !== undefined) {
      warning("cache.directory", "directory is only used by the file store", `set "store": "file", or remove it`)
    }
  }
  const redis = config.redis
  if (redis === undefined) return
  const processes = redis.expectedProcesses ?? defaults.redis.expectedProcesses
  if ((redis.onUnavailable ?? defaults.redis.onUnavailable) === "local-fallback" && processes > 1) {
    risky(
      "redis.onUnavailable",
      `local-fallback with ${processes} processes: while Redis is down each process uses its local share only if the share is honoured; check expectedProcesses matches reality`,
      `use "fail-closed" if exceeding the account limit is worse than failing`
    )
  }
}
