/**
 * The checks every command makes before it runs, written once: the
 * `--config` file, the paths it will write, URLs, durations, choices and
 * numbers, and the model and voice of the requests. Each refusal is a
 * {@link CliFailure} (one line, exit 1) naming the flag and what it accepts,
 * raised before anything runs, so a long run never ends on "cannot write
 * report.html".
 *
 * **Models and voices**
 *
 * - Against the simulator (`simulate`, `capacity`, `demo`, and `load-test` and
 *   `smoke` on their embedded simulator), an unknown model or voice would fail
 *   every request: {@link modelProblem} and {@link voiceProblem} refuse it
 *   from the lists the simulator serves (`Models.ttsModelIds`,
 *   `Catalog.premadeVoices`).
 * - Against a real base URL the account is the authority: it may have models
 *   newer than this library and voices of its own (cloned, designed, from the
 *   library). {@link targetProblem} asks the target with two free GETs
 *   (`/v1/models`, `/v1/voices/{id}`) and refuses only on a definite answer
 *   (the list lacks the model; the voice is 404). When the target cannot say
 *   (no such route, a key without the read permission, unreachable), the run
 *   goes ahead and its report says what happened.
 *
 * @since 0.1.0
 */
import { Duration, Effect, FileSystem, Option, Redacted } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { dirname, resolve } from "node:path"
import * as Endpoints from "../client/Endpoints.ts"
import { isTtsModel, ttsModelIds } from "../client/Models.ts"
import { closest } from "../internal/Closest.ts"
import * as ResilienceConfig from "../resilience/ResilienceConfig.ts"
import * as Html from "../simulation/Html.ts"
import { premadeVoices } from "../simulator/Catalog.ts"
import * as CliFailure from "./CliFailure.ts"

// ----------------------------------------------------------------------------
// Values: choices, numbers, durations, URLs
// ----------------------------------------------------------------------------

/** Fails with `problem` (a {@link CliFailure} of `command`), or succeeds when there is none. */
export const refuse = (command: string, problem: string | undefined): Effect.Effect<void, CliFailure.CliFailure> =>
  problem === undefined ? Effect.void : Effect.fail(CliFailure.make(command, problem))

const didYouMean = (value: string, choices: ReadonlyArray<string>): string => {
  const near = closest(value, choices)
  return near === undefined ? "" : ` (did you mean ${near}?)`
}

/** `flag must be one of CHOICES; got "VALUE"`, with a "did you mean" when `value` is near one. */
export const notOneOf = (flag: string, value: string, choices: ReadonlyArray<string>): string =>
  `${flag} must be one of ${choices.join(", ")}; got "${value}"${didYouMean(value, choices)}`

/** Why `value` is not one of `choices` for `flag` ({@link notOneOf}), or `undefined`. */
export const choiceProblem = (flag: string, value: string, choices: ReadonlyArray<string>): string | undefined =>
  choices.includes(value) ? undefined : notOneOf(flag, value, choices)

/** `flag must be WHAT, got VALUE` unless `ok`. */
export const numberProblem = (flag: string, value: number, ok: boolean, what: string): string | undefined =>
  ok ? undefined : `${flag} must be ${what}, got ${value}`

/** The problem with a `--failure-rate` (a share within 0..1), if any. */
export const failureRateProblem = (value: number): string | undefined =>
  numberProblem("--failure-rate", value, value >= 0 && value <= 1, "within 0..1")

/** Milliseconds of a duration: `N` seconds, or N with a unit `ms`, `s`, `m` (`min`), `h`, `d`; `undefined` when it is not one. */
export const parseDuration = (s: string): number | undefined => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$/.exec(s)
  if (m === null) return undefined
  const unit = m[2] ?? "s"
  const factor = unit === "ms"
    ? 1
    : unit === "s"
    ? 1000
    : unit === "m" || unit === "min"
    ? 60_000
    : unit === "h"
    ? 3_600_000
    : 86_400_000
  return Number(m[1]) * factor
}

/** The milliseconds of `flag`'s duration `value`, refused when it is not a positive duration. */
export const durationOf = (
  command: string,
  flag: string,
  value: string
): Effect.Effect<number, CliFailure.CliFailure> => {
  const ms = parseDuration(value)
  return ms === undefined
    ? Effect.fail(
      CliFailure.make(command, `${flag} must be a number of seconds or N ms|s|m|h|d, such as 30s or 5m; got "${value}"`)
    )
    : ms <= 0
    ? Effect.fail(CliFailure.make(command, `${flag} must be positive, got "${value}"`))
    : Effect.succeed(ms)
}

/**
 * Why `value` of `flag` is not a URL of one of `schemes` (`["http:", "https:"]`)
 * with a host, or `undefined` when it is one. `example` shows one that is.
 * The value is quoted without its credentials.
 */
export const urlProblem = (
  flag: string,
  value: string,
  schemes: ReadonlyArray<string>,
  example: string
): string | undefined => {
  const url = URL.parse(value)
  if (url !== null && schemes.includes(url.protocol) && url.hostname !== "") return undefined
  const shown = value.replace(/\/\/[^/@]*@/, "//***@")
  return `${flag} must be a ${schemes.map((s) => s.slice(0, -1)).join(" or ")} URL such as ${example}; got "${shown}"`
}

// ----------------------------------------------------------------------------
// --config
// ----------------------------------------------------------------------------

const isDirectory = (command: string, flag: string, path: string, what: string): CliFailure.CliFailure =>
  CliFailure.make(command, `${flag}: ${path} is a directory; give the path of ${what}`)

/** Checks that `path` is a file that can be read for `flag` (a failure saying why not). */
export const readableFile = (
  command: string,
  flag: string,
  path: string
): Effect.Effect<void, CliFailure.CliFailure, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const fail = (e: unknown) => CliFailure.fileFailure(command, flag, path, "read", e)
    const info = yield* fs.stat(path).pipe(Effect.mapError(fail))
    if (info.type === "Directory") return yield* isDirectory(command, flag, path, "a JSON file")
    yield* fs.access(path, { readable: true }).pipe(Effect.mapError(fail))
  })

/**
 * Reads `--config FILE` (JSON) and checks it as `validate-config` would:
 * `undefined` when no file is given, the raw JSON when it is usable. A
 * missing or unreadable file, a file that is not JSON or does not validate,
 * is refused naming the first problems and `validate-config` for all of them.
 */
export const readConfig = (
  command: string,
  path: Option.Option<string>
): Effect.Effect<unknown, CliFailure.CliFailure, FileSystem.FileSystem> =>
  Option.isNone(path) ? Effect.succeed(undefined) : Effect.gen(function*() {
    const file = path.value
    yield* readableFile(command, "--config", file)
    // `readJsonFile` keeps a secret the file may hold out of the message of a syntax error.
    const raw = yield* ResilienceConfig.readJsonFile(file).pipe(
      Effect.mapError((e) => {
        const first = e.problems[0]
        return CliFailure.make(
          command,
          `--config: ${file}: ${first === undefined ? e.message : `${first.message}; ${first.fix}`}`
        )
      })
    )
    const { config, problems } = ResilienceConfig.validate(raw)
    if (config === undefined || ResilienceConfig.isBlocking(problems)) {
      const errors = problems.filter((p) => p.severity === "error")
      const shown = errors.slice(0, 3).map((p) => `${p.path}: ${p.message}`).join("; ")
      const more = errors.length > 3 ? ` (and ${errors.length - 3} more)` : ""
      return yield* CliFailure.make(
        command,
        `--config: ${file}: ${shown}${more}; see every problem and its fix with: elevenlabs-resilience validate-config --config ${file}`
      )
    }
    return raw
  })

// ----------------------------------------------------------------------------
// Paths the command will write
// ----------------------------------------------------------------------------

/**
 * Checks, before the run, that `path` can be written for `flag`: its
 * directory exists and is writable, and the path is not a directory.
 */
export const writablePath = (
  command: string,
  flag: string,
  path: string
): Effect.Effect<void, CliFailure.CliFailure, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const fail = (e: unknown) => CliFailure.fileFailure(command, flag, path, "write", e)
    const target = yield* fs.stat(path).pipe(Effect.option)
    if (Option.isSome(target) && target.value.type === "Directory") {
      return yield* isDirectory(command, flag, path, "a file")
    }
    const dir = dirname(resolve(path))
    const info = yield* fs.stat(dir).pipe(Effect.mapError(fail))
    if (info.type !== "Directory") {
      return yield* CliFailure.make(command, `${flag}: cannot write ${path}: ${dir} is not a directory; check the path`)
    }
    yield* fs.access(dir, { writable: true }).pipe(Effect.mapError(fail))
  })

/** {@link writablePath} for an optional flag. */
export const writableOption = (
  command: string,
  flag: string,
  path: Option.Option<string>
): Effect.Effect<void, CliFailure.CliFailure, FileSystem.FileSystem> =>
  Option.isNone(path) ? Effect.void : writablePath(command, flag, path.value)

/**
 * Before a run that ends in an HTML report: the charting library it inlines (an optional peer) can be read,
 * so a missing one is one line now, not after the run.
 */
export const chartLibrary = (command: string): Effect.Effect<void, CliFailure.CliFailure> =>
  Effect.mapError(Effect.asVoid(Html.loadChartLibrary()), CliFailure.from(command))

/** Writes `text` to `path` for `flag`; a failure says why and what to do. */
export const writeFile = (
  command: string,
  flag: string,
  path: string,
  text: string
): Effect.Effect<void, CliFailure.CliFailure, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    yield* fs.writeFileString(path, text).pipe(Effect.mapError((e) =>
      // The directory was there (writablePath checked it): a file system that will not create the file.
      CliFailure.errnoOf(e) === "ENOENT"
        ? CliFailure.make(command, `${flag}: cannot create ${path} in ${dirname(resolve(path))}; choose another path`)
        : CliFailure.fileFailure(command, flag, path, "write", e)
    ))
  })

// ----------------------------------------------------------------------------
// Models and voices
// ----------------------------------------------------------------------------

/** Why `--model` cannot run against the simulator, or `undefined` when it can. */
export const modelProblem = (model: string): string | undefined =>
  isTtsModel(model)
    ? undefined
    : `--model: unknown model "${model}"${didYouMean(model, ttsModelIds)}; use one of ${ttsModelIds.join(", ")}`

/** The voice ids of the simulator (its premade voices). */
export const simulatorVoiceIds: ReadonlyArray<string> = premadeVoices.map((v) => v.voice_id)

/** Why `--voice` cannot run against the simulator, or `undefined` when it can. */
export const voiceProblem = (voice: string): string | undefined =>
  simulatorVoiceIds.includes(voice)
    ? undefined
    : `--voice: unknown voice "${voice}"${didYouMean(voice, simulatorVoiceIds)}; the simulator has the premade voices ${
      premadeVoices.map((v) => `${v.voice_id} (${v.name})`).join(", ")
    }`

/**
 * Asks a real target whether it has `model` and `voice` (two free GETs with
 * the run's key). Returns the problem when the answer is a definite no,
 * `undefined` otherwise (yes, or the target cannot say: see the module doc).
 */
export const targetProblem = (options: {
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
  readonly model: string
  readonly voice: string
}): Effect.Effect<string | undefined, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const get = (path: string) =>
      client.execute(
        HttpClientRequest.get(`${options.baseUrl}${path}`).pipe(
          HttpClientRequest.setHeader("xi-api-key", Redacted.value(options.apiKey)),
          HttpClientRequest.acceptJson
        )
      ).pipe(
        Effect.flatMap((response) =>
          response.status === 200
            ? Effect.map(response.json, (body) => ({ status: 200, body }))
            : Effect.succeed({ status: response.status, body: undefined as unknown })
        ),
        Effect.timeoutOption(Duration.seconds(10)),
        Effect.map(Option.getOrUndefined),
        Effect.catch(() => Effect.succeed(undefined))
      )
    const models = yield* get(Endpoints.pathOf(Endpoints.modelsList))
    if (models !== undefined && models.status === 200 && Array.isArray(models.body)) {
      const ids = models.body.flatMap((m: unknown) =>
        typeof m === "object" && m !== null && typeof (m as { model_id?: unknown }).model_id === "string"
          ? [(m as { model_id: string }).model_id]
          : []
      )
      if (ids.length > 0 && !ids.includes(options.model)) {
        return `--model: ${options.baseUrl} has no model "${options.model}"${
          didYouMean(options.model, ids)
        }; its /v1/models lists ${ids.join(", ")}`
      }
    }
    const voice = yield* get(Endpoints.pathOf(Endpoints.voicesGet, { voice_id: options.voice }))
    if (voice !== undefined && voice.status === 404) {
      return `--voice: ${options.baseUrl} has no voice "${options.voice}" (GET /v1/voices/${options.voice} answered 404); use the id of one of the account's voices (GET /v1/voices)`
    }
    return undefined
  })
