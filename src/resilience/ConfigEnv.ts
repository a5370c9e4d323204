/**
 * The environment form of the configuration: the `ELEVENLABS_*` variables,
 * each read through Effect `Config` and written at the field of the file form
 * it sets. They override the file, field by field.
 *
 * **Details**
 *
 * - Each variable is read from the current `ConfigProvider` (so
 *   `ConfigProvider.layer(ConfigProvider.fromEnv({ env }))` stands in for the
 *   process in tests) and parsed by Effect's `Config`: `Config.Finite` for
 *   numbers and milliseconds (`"30000"` is 30000), `Config.Boolean` for
 *   switches (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, `y`/`n`),
 *   `Config.String` for the rest. A value that does not parse is passed on as
 *   written, so the file form's schema reports it at its field, naming the
 *   variable ({@link nameVariables}).
 * - The names are flat (`ELEVENLABS_PLAN` sets `concurrency.plan`), so the
 *   table {@link envVariables} says which field each one sets.
 *
 * **Gotchas** (why the file is not read through a `ConfigProvider` too)
 *
 * Merging a provider over the file with this one (`ConfigProvider.orElse`)
 * and decoding the whole with `Config.schema` would lose three things the
 * file form promises. A provider holds strings (`fromUnknown` turns numbers
 * and booleans into text), so `"30"` (refused: a duration needs its unit) and
 * `30` (30 ms) would read the same; `Config.schema` loads only the keys the
 * schema declares, so an unknown key (a typo) would never be seen; and it
 * decodes with the default `errors: "first"`, so it would stop at the first
 * problem where `validate-config` lists them all. So the variables are
 * written into the parsed file ({@link overlay}) and the result is validated
 * as a file is.
 *
 * @since 0.1.0
 */
import { Config, ConfigProvider, Effect, Option, Predicate } from "effect"
import { ConfigError, type Problem, problem } from "./ConfigProblem.ts"

/** A variable of the environment form. */
export interface EnvVariable {
  readonly name: string
  /** The field it sets. */
  readonly path: ReadonlyArray<string>
  /** How its text becomes the field's value. */
  readonly read: (name: string) => Config.Config<unknown>
}

const text = Config.String
const numeric = Config.Finite
// Milliseconds (`"30000"`); `"30 seconds"` does not parse as a number and is kept as written.
const duration = Config.Finite
const flag = Config.Boolean
// The one variable that sets a section: `off` (or `false`, `none`) is `cache: false`, any other value the store.
const cacheSwitch = (name: string): Config.Config<false | { readonly store: string }> =>
  Config.Literals(["off", "false", "none"], name).pipe(
    Config.map((): false | { readonly store: string } => false),
    Config.orElse(() => Config.map(Config.String(name), (store) => ({ store })))
  )

/**
 * The environment variables read by `fromEnv` and `load`, each with the path
 * it sets. They override the file.
 */
export const envVariables: ReadonlyArray<EnvVariable> = [
  { name: "ELEVENLABS_BASE_URL", path: ["baseUrl"], read: text },
  { name: "ELEVENLABS_PLAN", path: ["concurrency", "plan"], read: text },
  { name: "ELEVENLABS_PLAN_TABLE", path: ["concurrency", "planTable"], read: text },
  { name: "ELEVENLABS_LIMIT_STANDARD", path: ["concurrency", "pools", "standard"], read: numeric },
  { name: "ELEVENLABS_LIMIT_FLASH", path: ["concurrency", "pools", "flash"], read: numeric },
  { name: "ELEVENLABS_LIMIT_STT", path: ["concurrency", "pools", "stt"], read: numeric },
  { name: "ELEVENLABS_LIMIT_MUSIC", path: ["concurrency", "pools", "music"], read: numeric },
  { name: "ELEVENLABS_MAX_QUEUE", path: ["concurrency", "maxQueue"], read: numeric },
  { name: "ELEVENLABS_QUEUE_TIMEOUT", path: ["concurrency", "queueTimeout"], read: duration },
  { name: "ELEVENLABS_MAX_RETRIES", path: ["retry", "exponential", "maxRetries"], read: numeric },
  { name: "ELEVENLABS_RETRY_BASE", path: ["retry", "exponential", "base"], read: duration },
  { name: "ELEVENLABS_RETRY_CAP", path: ["retry", "exponential", "cap"], read: duration },
  { name: "ELEVENLABS_JITTER", path: ["retry", "exponential", "jitter"], read: text },
  { name: "ELEVENLABS_JITTER_RATIO", path: ["retry", "exponential", "jitterRatio"], read: numeric },
  { name: "ELEVENLABS_RETRY_BUDGET_RATIO", path: ["budget", "ratio"], read: numeric },
  { name: "ELEVENLABS_BREAKER_FAILURES", path: ["breaker", "failures"], read: numeric },
  { name: "ELEVENLABS_BREAKER_OPEN_DURATION", path: ["breaker", "openDuration"], read: duration },
  { name: "ELEVENLABS_QUOTA_REFRESH", path: ["quota", "refreshInterval"], read: duration },
  { name: "ELEVENLABS_QUOTA_WARNING_PERCENT", path: ["quota", "warningPercent"], read: numeric },
  { name: "ELEVENLABS_QUOTA_ALERT_PERCENT", path: ["quota", "alertPercent"], read: numeric },
  { name: "ELEVENLABS_HEADERS_TIMEOUT", path: ["timeouts", "headers"], read: duration },
  { name: "ELEVENLABS_IDLE_TIMEOUT", path: ["timeouts", "idle"], read: duration },
  { name: "ELEVENLABS_DEADLINE", path: ["timeouts", "deadline"], read: duration },
  { name: "ELEVENLABS_COALESCE", path: ["coalesce"], read: flag },
  { name: "ELEVENLABS_CACHE", path: ["cache"], read: cacheSwitch },
  { name: "ELEVENLABS_CACHE_DIR", path: ["cache", "directory"], read: text },
  { name: "ELEVENLABS_LOG_LEVEL", path: ["telemetry", "logLevel"], read: text },
  { name: "ELEVENLABS_METRICS_PORT", path: ["telemetry", "metricsPort"], read: numeric },
  { name: "ELEVENLABS_OTLP", path: ["telemetry", "otlp"], read: flag },
  { name: "ELEVENLABS_REDIS_URL", path: ["redis", "url"], read: text },
  { name: "ELEVENLABS_REDIS_ON_UNAVAILABLE", path: ["redis", "onUnavailable"], read: text },
  { name: "ELEVENLABS_EXPECTED_PROCESSES", path: ["redis", "expectedProcesses"], read: numeric },
  { name: "ELEVENLABS_REDIS_LEASE_TIME", path: ["redis", "leaseTime"], read: duration }
]

/** A variable's value in the file form (as written when it does not parse), none when it is not set. */
const valueOf = (v: EnvVariable): Config.Config<Option.Option<unknown>> =>
  Config.option(v.read(v.name).pipe(Config.orElse(() => Config.String(v.name))))

// A `ConfigProvider` maps paths (`mapInput`) but has no hook for values: a stray space
// (`ELEVENLABS_LIMIT_STT=" 40"`) would make the number text.
const trimmed = (provider: ConfigProvider.ConfigProvider): ConfigProvider.ConfigProvider =>
  ConfigProvider.make((path) =>
    Effect.map(
      provider.load(path),
      (node) => (node?._tag === "Value" ? ConfigProvider.makeValue(node.value.trim()) : node)
    )
  )

/** `over` written onto `base`: objects merge key by key, anything else replaces. */
export const overlay = (base: unknown, over: unknown): unknown => {
  if (!Predicate.isObject(base) || !Predicate.isObject(over)) return over
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? overlay(base[k], v) : v
  return out
}

/** The dotted paths of the fields a value sets at `path` (`{ store }` at `cache` sets `cache.store`). */
const fieldsOf = (value: unknown, path: ReadonlyArray<string>): Array<string> =>
  Predicate.isObject(value)
    ? Object.entries(value).flatMap(([k, v]) => fieldsOf(v, [...path, k]))
    : [path.join(".")]

/** What the environment sets. */
export interface EnvOverrides {
  /** The fields set, in the file form. */
  readonly raw: Record<string, unknown>
  /** The variables set, in the order of {@link envVariables}. */
  readonly set: ReadonlyArray<string>
  /** The dotted path of each field set → the variable that set it. */
  readonly fields: ReadonlyMap<string, string>
}

/** Nothing set (`load({ env: false })`). */
export const noOverrides: EnvOverrides = { raw: {}, set: [], fields: new Map() }

/** The overrides the environment gives, read through the current `ConfigProvider`. */
export const envOverrides: Effect.Effect<EnvOverrides, ConfigError> = Effect.gen(function*() {
  const provider = trimmed(yield* ConfigProvider.ConfigProvider)
  let raw: unknown = {}
  const set: Array<string> = []
  const fields = new Map<string, string>()
  for (const v of envVariables) {
    const value = yield* valueOf(v).parse(provider).pipe(
      Effect.mapError(() =>
        new ConfigError({
          source: "environment",
          problems: [problem("error", v.name, `${v.name} cannot be read`, "check the environment")]
        })
      )
    )
    if (Option.isNone(value)) continue
    set.push(v.name)
    raw = overlay(raw, v.path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value.value))
    for (const field of fieldsOf(value.value, v.path)) fields.set(field, v.name)
  }
  return { raw: raw as Record<string, unknown>, set, fields }
})

/** Problems on a field the environment set name the variable: `… (from ELEVENLABS_JITTER)`. */
export const nameVariables = (problems: ReadonlyArray<Problem>, env: EnvOverrides): Array<Problem> =>
  problems.map((p) => {
    const name = env.fields.get(p.path)
    return name === undefined ? p : { ...p, message: `${p.message} (from ${name})` }
  })
