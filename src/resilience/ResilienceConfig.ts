/**
 * One configuration for the whole stack: the JSON file / environment form of
 * `ResilientOptions`, its checks, and its loaders.
 *
 * **Details**
 *
 * - {@link ResilienceConfig} is an Effect `Schema` of the file form
 *   (`ConfigSchema`). Every key is optional; an absent key takes the default of
 *   {@link defaults} (the guides' numbers, docs/design.md section 6). Unknown keys
 *   are errors, so a typo never passes silently.
 * - Durations are written either as a string `"<n> <unit>"` (`"30 seconds"`,
 *   `"500 millis"`, `"2 minutes"`; units nanos … weeks) or as a number of
 *   milliseconds, and read by Effect's duration codecs (`ConfigDuration`).
 *   Timeouts that may be switched off also take `"Infinity"`.
 * - The API key is not part of the file form: it comes from
 *   `ELEVENLABS_API_KEY` and is handed to {@link toResilientOptions} as a
 *   `Redacted`. A credential written in the file is reported by its path and a
 *   redacted form, never its value (`ConfigSecrets`).
 * - {@link validate} runs everything on raw JSON: the secret scan, the schema
 *   (problems carry the path from the Schema issue tree) and {@link check}
 *   (cross-field errors; with `strict`, the risky settings too).
 * - Loaders: {@link fromJsonFile}, {@link fromEnv} (each variable of
 *   {@link envVariables} read through Effect `Config`, so any `ConfigProvider`
 *   works; `ConfigEnv`) and {@link load} (the environment overrides the file,
 *   field by field). They fail with one {@link ConfigError} listing every problem.
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
import { Effect, FileSystem, Predicate } from "effect"
import type { CheckOptions } from "./ConfigChecks.ts"
import { envOverrides, nameVariables, noOverrides, overlay } from "./ConfigEnv.ts"
import { ConfigError, problem } from "./ConfigProblem.ts"
import type { ResilienceConfig } from "./ConfigSchema.ts"
import { scrub } from "./ConfigSecrets.ts"
import { isBlocking, validate, type Validation } from "./ConfigValidation.ts"

export { check, type CheckOptions } from "./ConfigChecks.ts"
export { defaults } from "./ConfigDefaults.ts"
export { DurationOrInfinity, type DurationValue, FiniteDuration, millisOf } from "./ConfigDuration.ts"
export { type EnvOverrides, envOverrides, type EnvVariable, envVariables } from "./ConfigEnv.ts"
export { type TelemetrySettings, toResilientOptions, toStackOptions, toTelemetryOptions } from "./ConfigOptions.ts"
export { ConfigError, type Problem, ProblemSchema } from "./ConfigProblem.ts"
export {
  BreakerSection,
  BudgetSection,
  CacheSection,
  CoalesceSection,
  ConcurrencySection,
  type JitterKind,
  jitterNames,
  logLevels,
  QuotaSection,
  RedisSection,
  ResilienceConfig,
  RetrySection,
  TelemetrySection,
  TimeoutsSection
} from "./ConfigSchema.ts"
export { redact } from "./ConfigSecrets.ts"
export { isBlocking, validate, type Validation } from "./ConfigValidation.ts"

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
  return scrub(
    `${head}${position === undefined ? "" : ` ${position.startsWith("at") ? position : `at ${position}`}`}`,
    []
  )
}

const fileError = (path: string, message: string, fix: string): ConfigError =>
  new ConfigError({ source: path, problems: [problem("error", "(file)", message, fix)] })

/** The raw JSON of a file, or a `ConfigError` that says why not (missing, unreadable, not JSON). */
export const readJsonFile = (path: string): Effect.Effect<unknown, ConfigError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((e) =>
        fileError(
          path,
          e.reason._tag === "NotFound" ? `no such file: ${path}` : `cannot read ${path} (${e.reason._tag})`,
          "check the path given with --config"
        )
      )
    )
    return yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) =>
        fileError(
          path,
          `not valid JSON: ${jsonErrorMessage(e)}`,
          "fix the JSON syntax (no comments, no trailing commas, double-quoted keys)"
        )
    })
  })

/** The configuration when it is usable, else one error with every problem (errors; in strict mode warnings too). */
const usable = (
  { config, problems }: Validation,
  source: string,
  options: CheckOptions | undefined
): Effect.Effect<ResilienceConfig, ConfigError> =>
  config === undefined || isBlocking(problems, options)
    ? Effect.fail(new ConfigError({ source, problems }))
    : Effect.succeed(config)

/**
 * Validates raw input and fails with every problem when it is not usable
 * (errors; in strict mode warnings too).
 */
export const fromRaw = (
  raw: unknown,
  source: string,
  options?: CheckOptions | undefined
): Effect.Effect<ResilienceConfig, ConfigError> => usable(validate(raw, options), source, options)

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
    const env = options?.env === false ? noOverrides : yield* envOverrides
    const source = [options?.file, env.set.length > 0 ? "environment" : undefined].filter((s) =>
      s !== undefined
    ).join(" + ") ||
      "defaults"
    // A file that is no JSON object is validated as it is (the schema says so), not replaced by the overrides.
    const { config, problems } = validate(Predicate.isObject(file) ? overlay(file, env.raw) : file, options)
    return { config, problems: nameVariables(problems, env), source }
  })

/**
 * The configuration of a file and the environment, the environment winning
 * field by field; fails with every problem when it is not usable.
 */
export const load = (
  options?: LoadOptions | undefined
): Effect.Effect<ResilienceConfig, ConfigError, FileSystem.FileSystem> =>
  Effect.flatMap(loadValidation(options), (v) => usable(v, v.source, options))
