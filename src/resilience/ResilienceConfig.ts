/**
 * One configuration for the whole stack: the JSON file / environment form of
 * {@link ResilientOptions}, its checks, and its loaders.
 *
 * **Details**
 *
 * - {@link ResilienceConfig} is an Effect `Schema` of the file form. Every key
 *   is optional; an absent key takes the default of {@link defaults} (the
 *   guides' numbers, docs/design.md section 6). Unknown keys are errors, so a typo never passes silently.
 * - Durations are written either as a string `"<n> <unit>"` (`"30 seconds"`,
 *   `"500 millis"`, `"2 minutes"`; units nanos … weeks) or as a number of
 *   milliseconds. Timeouts that may be switched off also take `"Infinity"`.
 * - The API key is not part of the file form: it comes from
 *   `ELEVENLABS_API_KEY` and is handed to {@link toResilientOptions} as a
 *   `Redacted`. A field named like a key (`apiKey`, `api_key`,
 *   `xi-api-key`, …), a string shaped like one (`sk_` + hex) or any other
 *   long secret-looking string is reported (an error in strict mode, a
 *   warning otherwise) by its path and a redacted form; the value itself is
 *   never printed.
 * - {@link validate} runs everything on raw JSON: the secret scan, the schema
 *   (problems carry the path from the Schema issue tree) and {@link check}
 *   (cross-field errors; with `strict`, the risky settings too).
 * - Loaders: {@link fromJsonFile}, {@link fromEnv} (Effect `Config`, see
 *   {@link envVariables}) and {@link load} (the environment overrides the
 *   file). They fail with one {@link ConfigError} listing every problem.
 *
 * **Example** (A service configured from a file and the environment)
 *
 * ```ts
 * import { Config, Effect } from "effect"
 * import { ResilienceConfig } from "elevenlabs-resilience/resilience"
 *
 * const options = Effect.gen(function*() {
 *   const config = yield* ResilienceConfig.load({ file: "elevenlabs.json" })
 *   const apiKey = yield* Config.Redacted("ELEVENLABS_API_KEY")
 *   return ResilienceConfig.toResilientOptions(config, apiKey)
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Config, Duration, Effect, FileSystem, Option, Redacted, Result, Schema, SchemaAST, SchemaIssue } from "effect"
import { closest } from "../internal/Closest.ts"
import * as Jitter from "./Jitter.ts"
import {
  acceptedPlanTableNames,
  type AcceptedPlanTableName,
  deprecatedPlanTableNames,
  isDeprecatedPlanTableName,
  limitsOf,
  type PlanLimits,
  type PlanName,
  planNames,
  planTableOf,
  type Pool,
  pools
} from "./Plans.ts"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import type { ResilientOptions } from "./ResilientOptions.ts"

// ==== Field schemas

const durationPattern = /^\s*-?\d+(\.\d+)?\s+[a-z]+\s*$/

/**
 * Milliseconds of a written duration, `undefined` when it is not one (or is
 * negative). `"Infinity"` gives `Infinity`.
 */
export const millisOf = (value: DurationValue): number | undefined => {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined
  const s = value.trim()
  if (s === "Infinity") return Infinity
  if (!durationPattern.test(s)) return undefined
  const d = Duration.fromInput(s as Duration.Input)
  if (Option.isNone(d)) return undefined
  const ms = Duration.toMillis(d.value)
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined
}

/** A duration as written in the file: `"30 seconds"`, `"500 millis"` or a number of milliseconds. */
export type DurationValue = number | string

const durationMessage = `a duration such as "30 seconds", "500 millis" or a number of milliseconds (>= 0)`

/** A finite, non-negative duration. */
export const FiniteDuration = Schema.Union([Schema.Number, Schema.String]).check(
  Schema.makeFilter((u: number | string) => {
    const ms = millisOf(u)
    return ms !== undefined && Number.isFinite(ms) ? undefined : `Expected ${durationMessage}`
  }, { expected: durationMessage })
)

/** A non-negative duration, or `"Infinity"` to switch the bound off. */
export const DurationOrInfinity = Schema.Union([Schema.Number, Schema.String]).check(
  Schema.makeFilter((u: number | string) =>
    millisOf(u) !== undefined ? undefined : `Expected ${durationMessage}, or "Infinity"`, {
    expected: `${durationMessage}, or "Infinity"`
  })
)

const PositiveInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const PositiveNumber = Schema.Finite.check(Schema.isGreaterThan(0))
const opt = Schema.optionalKey

// ==== The schema

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
  poolsInUse: opt(Schema.Array(Schema.Literals(pools))),
  initialLimit: opt(PositiveInt),
  minLimit: opt(PositiveInt),
  maxLimit: opt(PositiveInt),
  decreaseFactor: opt(Schema.Finite),
  additiveIncrease: opt(PositiveNumber),
  maxQueue: opt(Schema.Union([PositiveInt, Schema.Struct({
    standard: opt(PositiveInt),
    flash: opt(PositiveInt),
    stt: opt(PositiveInt),
    music: opt(PositiveInt)
  })])),
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

/** Logs, metrics server and OTLP. Feeds `Telemetry.layer` (see {@link toTelemetryOptions}). */
export const TelemetrySection = Schema.Struct({
  logLevel: opt(Schema.Literals(logLevels)),
  metricsPort: opt(Schema.Union([Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 })), Schema.Literal(false)])),
  metricsHost: opt(Schema.String),
  otlp: opt(Schema.Boolean)
})

/** Shared state over Redis. Feeds the distributed stores. */
export const RedisSection = Schema.Struct({
  url: Schema.String.check(Schema.makeFilter((s: string) =>
    /^rediss?:\/\/\S+$/.test(s) ? undefined : "Expected a redis:// or rediss:// URL", {
    expected: "a redis:// or rediss:// URL"
  })),
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
  baseUrl: opt(Schema.String.check(Schema.makeFilter((s: string) =>
    /^https?:\/\/\S+$/.test(s) ? undefined : "Expected an http:// or https:// URL", {
    expected: "an http:// or https:// URL"
  }))),
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

// ==== Defaults

/**
 * The defaults applied where the file is silent (the numbers of docs/design.md section 6; each
 * equals the default of the policy it feeds, which a test checks).
 */
export const defaults = {
  baseUrl: "https://api.elevenlabs.io",
  concurrency: {
    plan: "unknown" as PlanName | "unknown",
    planTable: "deployment-guide" as AcceptedPlanTableName,
    initialLimit: 2,
    minLimit: 1,
    maxLimit: 1000,
    decreaseFactor: 0.9,
    additiveIncrease: 1,
    maxQueue: 1000,
    queueTimeout: "120 seconds",
    laneAging: { interactive: 0, default: "5 seconds", batch: "30 seconds" }
  },
  retry: {
    requeue: { step: "50 millis", maxDelay: "1 second", maxRetries: 20 },
    exponential: {
      base: "1 second",
      factor: 2,
      cap: "32 seconds",
      maxRetries: 5,
      jitter: "full" as JitterKind,
      jitterRatio: 0.2,
      jitterMax: "500 millis",
      retryAfterMax: "60 seconds",
      honorRetryAfter: true
    },
    linear: { step: "1 second", maxDelay: "10 seconds", maxRetries: 3 }
  },
  budget: { ratio: 0.2, window: "10 seconds", minRetriesInFlight: 3 },
  breaker: {
    policy: "consecutive" as "consecutive" | "rate",
    failures: 5,
    threshold: 0.5,
    size: 20,
    minimumCalls: 10,
    openDuration: "60 seconds",
    maxRetryAfter: "5 minutes",
    halfOpenRetryAfter: "1 second",
    onStoreError: "allow" as "allow" | "fail"
  },
  quota: { refreshInterval: "60 seconds", warningPercent: 80, alertPercent: 90, whenUnknown: "allow" as "allow" | "deny" },
  timeouts: { headers: "30 seconds", idle: "30 seconds", deadline: "180 seconds" },
  coalesce: { onAllWaitersGone: "interrupt" as "interrupt" | "finish" },
  cache: { store: "memory" as "memory" | "file", maxEntries: 1000, maxBytes: 256 * 1024 * 1024, prefix: "elevenlabs-audio-" },
  telemetry: { logLevel: "Info" as (typeof logLevels)[number], metricsPort: false as number | false, otlp: true },
  redis: { onUnavailable: "local-fallback" as "fail-closed" | "local-fallback", expectedProcesses: 1, leaseTime: "30 seconds" }
} as const

// ==== Problems and the error

/** One finding about a configuration. */
export interface Problem {
  readonly severity: "error" | "warning"
  /** Dotted path of the field, e.g. `retry.exponential.base` (`(root)` for the whole file). */
  readonly path: string
  readonly message: string
  /** What to write instead. */
  readonly fix: string
}

/** The schema of {@link Problem}, for the error. */
export const ProblemSchema = Schema.Struct({
  severity: Schema.Literals(["error", "warning"]),
  path: Schema.String,
  message: Schema.String,
  fix: Schema.String
})

/** A configuration that cannot be used: every problem found, with its path and a fix. */
export class ConfigError extends Schema.Error<ConfigError>("elevenlabs-resilience/ResilienceConfig/ConfigError")({
  _tag: Schema.tag("ConfigError"),
  /** Where the configuration came from (a file path, `environment`, …). */
  source: Schema.String,
  problems: Schema.Array(ProblemSchema)
}) {
  override get message(): string {
    const errors = this.problems.filter((p) => p.severity === "error")
    const shown = (errors.length > 0 ? errors : this.problems).map((p) => `${p.path}: ${p.message}`)
    return `invalid configuration (${this.source}): ${shown.join("; ")}`
  }
}

const problem = (severity: Problem["severity"], path: string, message: string, fix: string): Problem => ({
  severity,
  path,
  message,
  fix
})

const pathString = (path: ReadonlyArray<PropertyKey>): string =>
  path.length === 0
    ? "(root)"
    : path.map((k, i) =>
      typeof k === "number" ? `[${k}]` : /^[A-Za-z_$][\w$-]*$/.test(String(k)) ? (i === 0 ? "" : ".") + String(k)
      : `[${JSON.stringify(String(k))}]`
    ).join("")

// ==== Secrets

const keyNamePattern = /^(x[-_]?)?(xi[-_]?)?(elevenlabs[-_]?)?api[-_]?key$/i
const secretNamePattern = /(secret|password|passwd|token|api[-_]?key)$/i
const skKeyPattern = /^sk_[0-9a-f]{16,}$/i
const secretLooking = (s: string): boolean =>
  skKeyPattern.test(s) ||
  (s.length >= 32 && /^[A-Za-z0-9_\-+/=]+$/.test(s) && /[0-9]/.test(s) && /[A-Za-z]/.test(s) && !s.includes("/"))

/** A redacted form of a secret: its length, and the `sk_` prefix of an ElevenLabs key (nothing else of it). */
export const redact = (secret: string): string =>
  `${secret.toLowerCase().startsWith("sk_") ? secret.slice(0, 3) : ""}*** (${secret.length} chars)`

interface Secret {
  readonly path: string
  readonly value: string
  readonly kind: "field" | "value" | "url-password"
}

/** Every place in raw JSON that holds something that looks like a credential. */
const findSecrets = (raw: unknown, path: ReadonlyArray<PropertyKey> = [], out: Array<Secret> = []): Array<Secret> => {
  if (typeof raw === "string") {
    const url = /^[a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:([^@\s]+)@/i.exec(raw)
    if (url?.[1] !== undefined) out.push({ path: pathString(path), value: url[1], kind: "url-password" })
    else if (secretLooking(raw)) out.push({ path: pathString(path), value: raw, kind: "value" })
  } else if (Array.isArray(raw)) {
    raw.forEach((v, i) => findSecrets(v, [...path, i], out))
  } else if (typeof raw === "object" && raw !== null) {
    for (const [k, v] of Object.entries(raw)) {
      if (keyNamePattern.test(k) || secretNamePattern.test(k)) {
        out.push({ path: pathString([...path, k]), value: typeof v === "string" ? v : JSON.stringify(v) ?? "", kind: "field" })
      } else {
        findSecrets(v, [...path, k], out)
      }
    }
  }
  return out
}

/** Drops the fields named like credentials (reported by the secret scan, not as unknown keys). */
const withoutSecretFields = (raw: unknown): unknown => {
  if (Array.isArray(raw)) return raw.map(withoutSecretFields)
  if (typeof raw !== "object" || raw === null) return raw
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(raw)) {
    if (!(keyNamePattern.test(k) || secretNamePattern.test(k))) out[k] = withoutSecretFields(v)
  }
  return out
}

const scrub = (text: string, secrets: ReadonlyArray<Secret>): string => {
  let out = text
  for (const s of secrets) if (s.value.length > 0) out = out.split(s.value).join(redact(s.value))
  // Belt and braces: nothing shaped like a key leaves this module, found or not.
  return out.replace(/sk_[0-9a-f]{8,}/gi, (m) => redact(m))
}

const secretProblems = (secrets: ReadonlyArray<Secret>, strict: boolean): Array<Problem> =>
  secrets.map((s) => {
    const severity = strict ? "error" : "warning"
    switch (s.kind) {
      case "field":
        return problem(
          severity,
          s.path,
          `an API key or secret is written in the file (${redact(s.value)}); the file form has no such field`,
          "remove it and set ELEVENLABS_API_KEY in the environment (or a secret manager)"
        )
      case "url-password":
        return problem(
          severity,
          s.path,
          `the URL carries a password (${redact(s.value)})`,
          "remove the password from the file and set the full URL in ELEVENLABS_REDIS_URL"
        )
      case "value":
        return problem(
          severity,
          s.path,
          `this value looks like an API key or secret (${redact(s.value)})`,
          "remove it from the file; the API key comes from ELEVENLABS_API_KEY"
        )
    }
  })

// ==== Schema problems

const decode = Schema.decodeUnknownResult(ResilienceConfig)
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** The keys the schema accepts at a path (of the object that holds the key at `path`). */
const knownKeysAt = (ast: SchemaAST.AST, path: ReadonlyArray<PropertyKey>): Array<string> => {
  if (ast._tag === "Union") return [...new Set(ast.types.flatMap((t) => knownKeysAt(t, path)))]
  if (ast._tag !== "Objects") return []
  if (path.length === 0) return ast.propertySignatures.map((p) => String(p.name))
  const field = ast.propertySignatures.find((p) => p.name === path[0])
  return field === undefined ? [] : knownKeysAt(field.type, path.slice(1))
}

const unknownKeyFix = (path: ReadonlyArray<PropertyKey>): string => {
  const known = knownKeysAt(ResilienceConfig.ast, path.slice(0, -1))
  const nearest = closest(String(path[path.length - 1]), known)
  return nearest !== undefined
    ? `did you mean "${nearest}"? (accepted here: ${known.join(", ")})`
    : `remove it; accepted here: ${known.join(", ")}`
}

const isUnexpectedKey = (message: string): boolean =>
  message.startsWith("Unexpected key") || message === "Expected no excess property"

const schemaFix = (message: string, path: string): string => {
  if (message.includes("duration")) return `write a duration such as "30 seconds" or a number of milliseconds`
  if (message.startsWith("Missing key")) return `add "${path}"`
  const expected = /^Expected (.*?)(, got .*)?$/s.exec(message)
  return expected?.[1] !== undefined ? `use ${expected[1]}` : "see docs/configuration.md for the accepted values"
}

const schemaProblems = (issue: SchemaIssue.Issue): Array<Problem> => {
  const seen = new Set<string>()
  const out: Array<Problem> = []
  for (const i of formatter(issue).issues) {
    const keys = (i.path ?? []).map((p) => (typeof p === "object" && p !== null && "key" in p ? p.key : p) as PropertyKey)
    const path = pathString(keys)
    const unknown = isUnexpectedKey(i.message)
    const message = unknown ? "unknown key" : i.message
    const line = `${path}\u0000${message}`
    if (seen.has(line)) continue
    seen.add(line)
    out.push(problem("error", path, message, unknown ? unknownKeyFix(keys) : schemaFix(i.message, path)))
  }
  return out
}

// ==== Cross-field and strict checks

/** Options of {@link check} and {@link validate}. */
export interface CheckOptions {
  /** Also flag risky settings, and treat a key in the file as an error. Default `false`. */
  readonly strict?: boolean | undefined
}

const ms = (d: DurationValue | undefined, fallback: DurationValue): number => millisOf(d ?? fallback) ?? NaN
const show = (d: DurationValue): string => (typeof d === "number" ? `${d} ms` : d)

/**
 * Cross-field checks of a decoded configuration, and with `strict` the risky
 * settings (as warnings; `validate-config --strict` counts them as errors).
 */
export const check = (config: ResilienceConfig, options?: CheckOptions | undefined): Array<Problem> => {
  const strict = options?.strict === true
  const out: Array<Problem> = []
  const err = (path: string, message: string, fix: string) => out.push(problem("error", path, message, fix))
  const warn = (path: string, message: string, fix: string) => out.push(problem("warning", path, message, fix))
  const risky = (path: string, message: string, fix: string) => {
    if (strict) warn(path, message, fix)
  }

  // concurrency
  const c = config.concurrency ?? {}
  const minLimit = c.minLimit ?? defaults.concurrency.minLimit
  const maxLimit = c.maxLimit ?? defaults.concurrency.maxLimit
  if (minLimit > maxLimit) {
    err("concurrency.minLimit", `minLimit (${minLimit}) is above maxLimit (${maxLimit})`, "make minLimit <= maxLimit")
  }
  const initial = c.initialLimit ?? defaults.concurrency.initialLimit
  if (initial < minLimit || initial > maxLimit) {
    err(
      "concurrency.initialLimit",
      `initialLimit (${initial}) is outside [minLimit ${minLimit}, maxLimit ${maxLimit}]`,
      "choose an initialLimit between minLimit and maxLimit"
    )
  }
  const decrease = c.decreaseFactor ?? defaults.concurrency.decreaseFactor
  if (!(decrease > 0 && decrease < 1)) {
    err("concurrency.decreaseFactor", `decreaseFactor (${decrease}) must be in (0, 1)`, "use e.g. 0.9 (shrink by 10 %)")
  }
  const plan = c.plan ?? defaults.concurrency.plan
  if (c.planTable !== undefined && isDeprecatedPlanTableName(c.planTable)) {
    const current = deprecatedPlanTableNames[c.planTable]
    warn(
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
      err(
        `concurrency.pools.${pool}`,
        `pool "${pool}" is in use (poolsInUse) but its limit is 0${custom === undefined ? ` on plan "${plan}"` : ""}: every call to it would wait until the queue timeout`,
        custom === undefined ? `upgrade the plan, or remove "${pool}" from poolsInUse` : `set concurrency.pools.${pool} to at least 1`
      )
    } else if (custom === 0 && c.poolsInUse === undefined) {
      warn(
        `concurrency.pools.${pool}`,
        `pool "${pool}" has limit 0: calls to it can never run`,
        `set it to at least 1, or list the pools you call in concurrency.poolsInUse`
      )
    }
    if (custom !== undefined && planLimits !== undefined && custom > planLimits[pool]) {
      risky(
        `concurrency.pools.${pool}`,
        `limit ${custom} is above the "${plan}" plan's ${planLimits[pool]} for "${pool}": expect too_many_concurrent_requests`,
        `use ${planLimits[pool]} or less, or set the plan you actually have`
      )
    }
  }
  const maxQueue = c.maxQueue ?? defaults.concurrency.maxQueue
  const queues = typeof maxQueue === "number" ? [["concurrency.maxQueue", maxQueue] as const] : Object.entries(maxQueue).map(([p, n]) => [`concurrency.maxQueue.${p}`, n] as const)
  for (const [path, n] of queues) {
    if (n !== undefined && n > 10_000) {
      risky(path, `queue bound ${n} is effectively unbounded: memory grows and callers wait for nothing`, "bound the queue (default 1000)")
    }
  }
  const queueTimeout = ms(c.queueTimeout, defaults.concurrency.queueTimeout)
  if (queueTimeout === Infinity) {
    risky("concurrency.queueTimeout", "the queue has no deadline: callers may wait forever", `use a finite timeout (default ${defaults.concurrency.queueTimeout})`)
  }

  // timeouts
  const t = config.timeouts ?? {}
  const deadline = ms(t.deadline, defaults.timeouts.deadline)
  if (queueTimeout > deadline && queueTimeout !== Infinity) {
    risky(
      "concurrency.queueTimeout",
      `the queue deadline (${show(c.queueTimeout ?? defaults.concurrency.queueTimeout)}) is longer than the total deadline (${show(t.deadline ?? defaults.timeouts.deadline)}): the queue bound never applies`,
      "make concurrency.queueTimeout shorter than timeouts.deadline"
    )
  }
  const headers = ms(t.headers, defaults.timeouts.headers)
  if (headers > deadline) {
    risky("timeouts.headers", `the headers timeout is longer than the total deadline`, "make timeouts.headers shorter than timeouts.deadline")
  }
  const idle = ms(t.idle, defaults.timeouts.idle)
  if (idle === Infinity) {
    risky("timeouts.idle", "the idle timeout is off: a stalled stream holds its permit until the deadline", `use a finite idle timeout (default ${defaults.timeouts.idle})`)
  } else if (idle > 120_000) {
    risky("timeouts.idle", `the idle timeout (${show(t.idle ?? "")}) is very long: a stalled stream holds its permit that long`, "use 2 minutes or less (default 30 seconds)")
  }
  if (headers === 0 || idle === 0) {
    err(headers === 0 ? "timeouts.headers" : "timeouts.idle", "a timeout of 0 fails every attempt", "use a positive duration, or \"Infinity\" to switch it off")
  }
  if (deadline === 0) err("timeouts.deadline", "a deadline of 0 fails every call", "use a positive duration (default 180 seconds)")

  // retry
  if (config.retry !== false) {
    const r = config.retry ?? {}
    const e = r.exponential ?? {}
    const base = ms(e.base, defaults.retry.exponential.base)
    const cap = ms(e.cap, defaults.retry.exponential.cap)
    if (cap < base) {
      err("retry.exponential.cap", `cap (${show(e.cap ?? defaults.retry.exponential.cap)}) is below base (${show(e.base ?? defaults.retry.exponential.base)})`, "make cap >= base")
    }
    const jitter = e.jitter ?? defaults.retry.exponential.jitter
    if (e.jitterRatio !== undefined && !(e.jitterRatio >= 0 && e.jitterRatio <= 1)) {
      err("retry.exponential.jitterRatio", `jitterRatio (${e.jitterRatio}) must be in [0, 1]`, "use e.g. 0.2 (±20 %)")
    } else if (e.jitterRatio !== undefined && jitter !== "proportional") {
      warn("retry.exponential.jitterRatio", `jitterRatio is only used by proportional jitter, not "${jitter}"`, `remove it, or set jitter to "proportional"`)
    }
    if (e.jitterMax !== undefined && jitter !== "additive") {
      warn("retry.exponential.jitterMax", `jitterMax is only used by additive jitter, not "${jitter}"`, `remove it, or set jitter to "additive"`)
    }
    if (jitter === "none") {
      risky("retry.exponential.jitter", `jitter "none": every caller retries at the same instant (retry storms)`, `use "full" (the default) or "decorrelated"`)
    }
    const retries = e.maxRetries ?? defaults.retry.exponential.maxRetries
    if (retries > 10) {
      risky("retry.exponential.maxRetries", `${retries} retries per call: a long outage multiplies the load`, "use 10 or fewer (default 5)")
    }
    const l = r.linear ?? {}
    if (ms(l.maxDelay, defaults.retry.linear.maxDelay) < ms(l.step, defaults.retry.linear.step)) {
      err("retry.linear.maxDelay", "maxDelay is below step", "make maxDelay >= step")
    }
    if ((l.maxRetries ?? defaults.retry.linear.maxRetries) > 10) {
      risky("retry.linear.maxRetries", `${l.maxRetries} retries per call on transport errors`, "use 10 or fewer (default 3)")
    }
    const q = r.requeue ?? {}
    if (ms(q.maxDelay, defaults.retry.requeue.maxDelay) < ms(q.step, defaults.retry.requeue.step)) {
      err("retry.requeue.maxDelay", "maxDelay is below step", "make maxDelay >= step")
    }
    if ((q.maxRetries ?? defaults.retry.requeue.maxRetries) > 100) {
      risky("retry.requeue.maxRetries", `${q.maxRetries} requeues per call`, "use 100 or fewer (default 20); the deadline bounds the rest")
    }
    if (r.maxAttempts !== undefined && r.maxAttempts > 50) {
      risky("retry.maxAttempts", `${r.maxAttempts} attempts per call is no cap`, "use a few dozen at most, or remove it")
    }
  }

  // budget
  if (config.budget === false) {
    risky("budget", "the retry budget is off: under a sustained outage retries multiply the load", `remove "budget": false (default ratio 0.2)`)
  } else if (config.budget?.ratio !== undefined && !(config.budget.ratio >= 0 && config.budget.ratio <= 1)) {
    err("budget.ratio", `ratio (${config.budget.ratio}) must be in [0, 1]`, "use e.g. 0.2 (at most 20 % of requests retried)")
  }

  // breaker
  if (config.breaker === false) {
    risky("breaker", "the circuit breaker is off: a failing pool keeps taking full traffic", `remove "breaker": false`)
  } else if (config.breaker !== undefined) {
    const b = config.breaker
    const policy = b.policy ?? defaults.breaker.policy
    if (b.threshold !== undefined && !(b.threshold > 0 && b.threshold <= 1)) {
      err("breaker.threshold", `threshold (${b.threshold}) must be in (0, 1]`, "use e.g. 0.5 (half the recent calls failed)")
    }
    if ((b.minimumCalls ?? defaults.breaker.minimumCalls) > (b.size ?? defaults.breaker.size)) {
      err("breaker.minimumCalls", "minimumCalls is above size: the rate policy could never trip", "make minimumCalls <= size")
    }
    const other = policy === "consecutive"
      ? (["threshold", "size", "minimumCalls"] as const).filter((k) => b[k] !== undefined)
      : (["failures"] as const).filter((k) => b[k] !== undefined)
    for (const k of other) {
      warn(`breaker.${k}`, `${k} is not used by the "${policy}" policy`, `remove it, or set policy to "${policy === "consecutive" ? "rate" : "consecutive"}"`)
    }
    if (b.growth?.max !== undefined && ms(b.growth.max, 0) < ms(b.openDuration, defaults.breaker.openDuration)) {
      err("breaker.growth.max", "growth.max is below openDuration", "make growth.max >= openDuration")
    }
  }

  // quota
  if (config.quota === false) {
    risky("quota", "the quota guard is off: calls are sent until the server answers quota_exceeded", `remove "quota": false`)
  } else if (config.quota !== undefined) {
    const q = config.quota
    const warning = q.warningPercent ?? defaults.quota.warningPercent
    const alert = q.alertPercent ?? defaults.quota.alertPercent
    for (const [k, v] of [["warningPercent", warning], ["alertPercent", alert]] as const) {
      if (!(v >= 0 && v <= 100)) err(`quota.${k}`, `${k} (${v}) must be in [0, 100]`, "use a percentage of the quota used")
    }
    if (alert < warning) {
      err("quota.alertPercent", `alertPercent (${alert}) is below warningPercent (${warning})`, "make alertPercent >= warningPercent (defaults 90 and 80)")
    }
    if (ms(q.refreshInterval, defaults.quota.refreshInterval) === 0) {
      err("quota.refreshInterval", "a refresh interval of 0 would poll without pause", "use e.g. \"60 seconds\"")
    }
  }

  // cache
  if (config.cache !== undefined && config.cache !== false) {
    const k = config.cache
    if ((k.store ?? defaults.cache.store) === "file" && (k.directory === undefined || k.directory.trim() === "")) {
      err("cache.directory", `the file store needs a directory`, `add "directory": "/var/cache/elevenlabs"`)
    }
    if (k.store !== "file" && k.directory !== undefined) {
      warn("cache.directory", "directory is only used by the file store", `set "store": "file", or remove it`)
    }
  }

  // redis
  if (config.redis !== undefined) {
    const processes = config.redis.expectedProcesses ?? defaults.redis.expectedProcesses
    if ((config.redis.onUnavailable ?? defaults.redis.onUnavailable) === "local-fallback" && processes > 1) {
      risky(
        "redis.onUnavailable",
        `local-fallback with ${processes} processes: while Redis is down each process uses its local share only if the share is honoured; check expectedProcesses matches reality`,
        `use "fail-closed" if exceeding the account limit is worse than failing`
      )
    }
  }
  return out
}

// ==== Validation of raw input

/** The result of {@link validate}: the decoded configuration when the schema accepted it, and every problem. */
export interface Validation {
  readonly config: ResilienceConfig | undefined
  readonly problems: ReadonlyArray<Problem>
}

/**
 * Everything about raw JSON: the secret scan, the schema, and {@link check}.
 * No problem message contains a secret's value.
 */
export const validate = (raw: unknown, options?: CheckOptions | undefined): Validation => {
  const strict = options?.strict === true
  const secrets = findSecrets(raw)
  const found = secretProblems(secrets, strict)
  const decoded = decode(withoutSecretFields(raw), { errors: "all", onExcessProperty: "error" })
  const problems = Result.isFailure(decoded)
    ? [...found, ...schemaProblems(decoded.failure.issue)]
    : [...found, ...check(decoded.success, options)]
  return {
    config: Result.isSuccess(decoded) ? decoded.success : undefined,
    problems: problems.map((p) => ({ ...p, message: scrub(p.message, secrets), fix: scrub(p.fix, secrets) }))
  }
}

/** Whether a list of problems blocks the configuration (errors; in strict mode warnings too). */
export const isBlocking = (problems: ReadonlyArray<Problem>, options?: CheckOptions | undefined): boolean =>
  problems.some((p) => p.severity === "error" || options?.strict === true)

// ==== Mapping to ResilientOptions

const dur = (d: DurationValue): Duration.Input => (typeof d === "number" ? d : (d.trim() as Duration.Input))

const jitterOf = (e: { readonly jitter?: JitterKind; readonly jitterRatio?: number; readonly jitterMax?: DurationValue }): Jitter.Jitter => {
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
      : { onAllWaitersGone: (config.coalesce === true ? undefined : config.coalesce?.onAllWaitersGone) ?? defaults.coalesce.onAllWaitersGone },
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

// ==== Environment

type EnvKind = "string" | "int" | "number" | "duration" | "boolean" | "off-or-string"

/**
 * The environment variables read by {@link fromEnv}, each with the path it
 * sets. They override the file.
 */
export const envVariables: ReadonlyArray<{ readonly name: string; readonly path: ReadonlyArray<string>; readonly kind: EnvKind }> = [
  { name: "ELEVENLABS_BASE_URL", path: ["baseUrl"], kind: "string" },
  { name: "ELEVENLABS_PLAN", path: ["concurrency", "plan"], kind: "string" },
  { name: "ELEVENLABS_PLAN_TABLE", path: ["concurrency", "planTable"], kind: "string" },
  { name: "ELEVENLABS_LIMIT_STANDARD", path: ["concurrency", "pools", "standard"], kind: "int" },
  { name: "ELEVENLABS_LIMIT_FLASH", path: ["concurrency", "pools", "flash"], kind: "int" },
  { name: "ELEVENLABS_LIMIT_STT", path: ["concurrency", "pools", "stt"], kind: "int" },
  { name: "ELEVENLABS_LIMIT_MUSIC", path: ["concurrency", "pools", "music"], kind: "int" },
  { name: "ELEVENLABS_MAX_QUEUE", path: ["concurrency", "maxQueue"], kind: "int" },
  { name: "ELEVENLABS_QUEUE_TIMEOUT", path: ["concurrency", "queueTimeout"], kind: "duration" },
  { name: "ELEVENLABS_MAX_RETRIES", path: ["retry", "exponential", "maxRetries"], kind: "int" },
  { name: "ELEVENLABS_RETRY_BASE", path: ["retry", "exponential", "base"], kind: "duration" },
  { name: "ELEVENLABS_RETRY_CAP", path: ["retry", "exponential", "cap"], kind: "duration" },
  { name: "ELEVENLABS_JITTER", path: ["retry", "exponential", "jitter"], kind: "string" },
  { name: "ELEVENLABS_JITTER_RATIO", path: ["retry", "exponential", "jitterRatio"], kind: "number" },
  { name: "ELEVENLABS_RETRY_BUDGET_RATIO", path: ["budget", "ratio"], kind: "number" },
  { name: "ELEVENLABS_BREAKER_FAILURES", path: ["breaker", "failures"], kind: "int" },
  { name: "ELEVENLABS_BREAKER_OPEN_DURATION", path: ["breaker", "openDuration"], kind: "duration" },
  { name: "ELEVENLABS_QUOTA_REFRESH", path: ["quota", "refreshInterval"], kind: "duration" },
  { name: "ELEVENLABS_QUOTA_WARNING_PERCENT", path: ["quota", "warningPercent"], kind: "number" },
  { name: "ELEVENLABS_QUOTA_ALERT_PERCENT", path: ["quota", "alertPercent"], kind: "number" },
  { name: "ELEVENLABS_HEADERS_TIMEOUT", path: ["timeouts", "headers"], kind: "duration" },
  { name: "ELEVENLABS_IDLE_TIMEOUT", path: ["timeouts", "idle"], kind: "duration" },
  { name: "ELEVENLABS_DEADLINE", path: ["timeouts", "deadline"], kind: "duration" },
  { name: "ELEVENLABS_COALESCE", path: ["coalesce"], kind: "boolean" },
  { name: "ELEVENLABS_CACHE", path: ["cache", "store"], kind: "off-or-string" },
  { name: "ELEVENLABS_CACHE_DIR", path: ["cache", "directory"], kind: "string" },
  { name: "ELEVENLABS_LOG_LEVEL", path: ["telemetry", "logLevel"], kind: "string" },
  { name: "ELEVENLABS_METRICS_PORT", path: ["telemetry", "metricsPort"], kind: "int" },
  { name: "ELEVENLABS_OTLP", path: ["telemetry", "otlp"], kind: "boolean" },
  { name: "ELEVENLABS_REDIS_URL", path: ["redis", "url"], kind: "string" },
  { name: "ELEVENLABS_REDIS_ON_UNAVAILABLE", path: ["redis", "onUnavailable"], kind: "string" },
  { name: "ELEVENLABS_EXPECTED_PROCESSES", path: ["redis", "expectedProcesses"], kind: "int" },
  { name: "ELEVENLABS_REDIS_LEASE_TIME", path: ["redis", "leaseTime"], kind: "duration" }
]

const numeric = /^\s*-?\d+(\.\d+)?\s*$/

/** The file-form value of an environment string (the schema then checks it). */
const envValue = (kind: EnvKind, s: string): unknown => {
  switch (kind) {
    case "int":
    case "number":
      return numeric.test(s) ? Number(s) : s
    case "duration":
      return numeric.test(s) ? Number(s) : s.trim()
    case "boolean": {
      const v = s.trim().toLowerCase()
      return ["true", "1", "on", "yes"].includes(v) ? true : ["false", "0", "off", "no"].includes(v) ? false : s
    }
    case "off-or-string":
      return s.trim()
    case "string":
      return s.trim()
  }
}

const setPath = (target: Record<string, unknown>, path: ReadonlyArray<string>, value: unknown): void => {
  let node = target
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== "object" || next === null || Array.isArray(next)) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1]!] = value
}

/**
 * The overrides the environment gives, in the file form (a partial raw
 * object), read through Effect `Config` (so a `ConfigProvider` can stand in
 * for the process environment in tests).
 */
export const envOverrides: Effect.Effect<{ readonly raw: Record<string, unknown>; readonly set: ReadonlyArray<string> }, ConfigError> =
  Effect.gen(function*() {
    const raw: Record<string, unknown> = {}
    const set: Array<string> = []
    for (const v of envVariables) {
      const value = yield* Config.option(Config.String(v.name)).pipe(
        Effect.mapError(() =>
          new ConfigError({
            source: "environment",
            problems: [problem("error", v.name, `${v.name} cannot be read`, "check the environment")]
          })
        )
      )
      if (Option.isNone(value)) continue
      set.push(v.name)
      if (v.kind === "off-or-string" && ["off", "false", "none"].includes(value.value.trim().toLowerCase())) {
        setPath(raw, v.path.slice(0, -1), false)
      } else {
        setPath(raw, v.path, envValue(v.kind, value.value))
      }
    }
    return { raw, set }
  })

/** Deep merge of raw objects: `override` wins; a non-object on either side replaces. */
const merge = (base: unknown, override: unknown): unknown => {
  const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)
  if (!isObject(base) || !isObject(override)) return override
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(override)) out[k] = k in base ? merge(base[k], v) : v
  return out
}

const envNameOf = (path: string): string | undefined =>
  envVariables.find((v) => v.path.join(".") === path || (v.kind === "off-or-string" && v.path.slice(0, -1).join(".") === path))?.name

// ==== Loaders

/** Options of {@link load}. */
export interface LoadOptions extends CheckOptions {
  /** A JSON file of the file form. Default: none (defaults and the environment only). */
  readonly file?: string | undefined
  /** Read the environment variables of {@link envVariables} (they override the file). Default `true`. */
  readonly env?: boolean | undefined
}

/** `JSON.parse`'s message without the excerpt of the text it may quote (which could hold a secret). */
const jsonErrorMessage = (e: unknown): string => {
  const message = e instanceof Error ? e.message : String(e)
  const position = /(at )?position \d+( \(line \d+ column \d+\))?/.exec(message)?.[0]
  const head = message.split(/,\s*(\.\.\.)?"/)[0]!.replace(/ in JSON.*$/s, "").replace(/"[^"]*"/g, "…")
  return scrub(`${head}${position === undefined ? "" : ` ${position.startsWith("at") ? position : `at ${position}`}`}`, [])
}

/** The raw JSON of a file, or a `ConfigError` that says why not (missing, unreadable, not JSON). */
export const readJsonFile = (path: string): Effect.Effect<unknown, ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((e) =>
        new ConfigError({
          source: path,
          problems: [
            problem(
              "error",
              "(file)",
              e.reason._tag === "NotFound" ? `no such file: ${path}` : `cannot read ${path} (${e.reason._tag})`,
              "check the path given with --config"
            )
          ]
        })
      )
    )
    return yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) =>
        new ConfigError({
          source: path,
          problems: [
            problem(
              "error",
              "(file)",
              `not valid JSON: ${jsonErrorMessage(e)}`,
              "fix the JSON syntax (no comments, no trailing commas, double-quoted keys)"
            )
          ]
        })
    })
  })

/**
 * Validates raw input and fails with every problem when it is not usable
 * (errors; in strict mode warnings too).
 */
export const fromRaw = (raw: unknown, source: string, options?: CheckOptions | undefined): Effect.Effect<ResilienceConfig, ConfigError> => {
  const { config, problems } = validate(raw, options)
  return config === undefined || isBlocking(problems, options)
    ? Effect.fail(new ConfigError({ source, problems }))
    : Effect.succeed(config)
}

/** The configuration of a JSON file (no environment). */
export const fromJsonFile = (
  path: string,
  options?: CheckOptions | undefined
): Effect.Effect<ResilienceConfig, ConfigError, FileSystem.FileSystem> =>
  Effect.flatMap(readJsonFile(path), (raw) => fromRaw(raw, path, options))

/** The configuration of the environment alone (see {@link envVariables}). */
export const fromEnv = (options?: CheckOptions | undefined): Effect.Effect<ResilienceConfig, ConfigError> =>
  Effect.flatMap(envOverrides, ({ raw }) => fromRaw(raw, "environment", options))

/**
 * The merged file and environment (the environment winning field by field),
 * validated: the configuration when the schema accepted it, and every problem.
 * Problems on a field set from the environment name the variable. Fails only
 * when the file cannot be read or is not JSON.
 */
export const loadValidation = (
  options?: LoadOptions | undefined
): Effect.Effect<Validation & { readonly source: string }, ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const file = options?.file === undefined ? {} : yield* readJsonFile(options.file)
    const env = options?.env === false ? { raw: {}, set: [] } : yield* envOverrides
    const source = [options?.file, env.set.length > 0 ? "environment" : undefined].filter((s) => s !== undefined).join(" + ") ||
      "defaults"
    const { config, problems } = validate(merge(file, env.raw), options)
    const named = problems.map((p) => {
      const name = envNameOf(p.path)
      return name !== undefined && env.set.includes(name) ? { ...p, message: `${p.message} (from ${name})` } : p
    })
    return { config, problems: named, source }
  })

/**
 * The configuration of a file and the environment, the environment winning
 * field by field; fails with every problem when it is not usable.
 */
export const load = (options?: LoadOptions | undefined): Effect.Effect<ResilienceConfig, ConfigError, FileSystem.FileSystem> =>
  Effect.flatMap(loadValidation(options), ({ config, problems, source }) =>
    config === undefined || isBlocking(problems, options)
      ? Effect.fail(new ConfigError({ source, problems }))
      : Effect.succeed(config))
