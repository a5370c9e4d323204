/**
 * `elevenlabs-resilience smoke`: what a deployment runs after it starts.
 *
 * 1. Loads and validates the configuration (`--config FILE` and the
 *    environment, `ResilienceConfig.load`).
 * 2. Makes ONE real TTS request through the full resilient stack: to the
 *    configured base URL with `ELEVENLABS_API_KEY`; with `--simulator`, or
 *    when no key is set, to an embedded simulator server on loopback.
 * 3. Checks readiness: the pool's breaker is not open and the quota is not
 *    exhausted (the same checks `/ready` serves).
 * 4. Prints one PASS/FAIL line; exit code 1 on FAIL. The key is never
 *    printed (only whether one was used).
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Clock, Config, Console, Effect, FileSystem, Option, Redacted, Scope } from "effect"
import { Command, Flag } from "effect/cli"
import type { HttpClient } from "effect/http"
import { type Pool, poolOfModel } from "../resilience/Plans.ts"
import * as ResilienceConfig from "../resilience/ResilienceConfig.ts"
import * as Resilient from "../resilience/Resilient.ts"
import * as Server from "../simulator/Server.ts"
import * as Health from "../telemetry/Health.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"

/** The readiness checks of a resilient stack for one pool: breaker not open, quota not exhausted. */
export const readinessChecks = (
  resilience: Resilient.Resilience,
  pool: Pool
): ReadonlyArray<readonly [string, Health.Check]> => {
  const checks: Array<readonly [string, Health.Check]> = []
  const { breaker, quota } = resilience
  if (breaker !== undefined) {
    checks.push([
      `breaker_${pool}`,
      Health.breakerCheck(
        pool,
        breaker.state(pool).pipe(
          Effect.map((s) => s._tag),
          // A breaker whose store cannot answer is not known to be closed.
          Effect.orElseSucceed(() => "Open" as const)
        )
      )
    ])
  }
  if (quota !== undefined) {
    checks.push([
      "quota",
      Health.quotaCheck(Effect.map(quota.status, (s) => ({
        exhausted: s.exhausted !== undefined || s.state === "exhausted",
        usedPercentage: s.percentUsed,
        remaining: s.remaining
      })))
    ])
  }
  return checks
}

/** Registers {@link readinessChecks} for the current scope. */
export const registerReadiness = (
  checks: Health.HealthChecks["Service"],
  resilience: Resilient.Resilience,
  pool: Pool
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.forEach(readinessChecks(resilience, pool), ([name, check]) => checks.register(name, check), { discard: true })

/** The raw flag values. */
export interface SmokeInput {
  readonly config: Option.Option<string>
  readonly simulator: boolean
  readonly baseUrl: Option.Option<string>
  readonly voice: string
  readonly model: string
  readonly text: string
}

/** Defaults. Flash, a short text: the cheapest real request (a few credits). */
export const defaults = {
  voice: "21m00Tcm4TlvDq8ikWAM",
  model: "eleven_flash_v2_5",
  text: "Smoke test."
} as const

/** The outcome: the line to print and the exit code. */
export interface SmokeResult {
  readonly line: string
  readonly ok: boolean
}

const failed = (message: string): SmokeResult => ({ ok: false, line: `smoke: FAIL ${message}` })

/** Runs the smoke check. Never fails: every problem is a FAIL line. */
export const execute = (
  input: SmokeInput
): Effect.Effect<SmokeResult, never, FileSystem.FileSystem | HttpClient.HttpClient> =>
  Effect.scoped(Effect.gen(function*() {
    // The same words for a bad path or URL as every command, on smoke's one FAIL line.
    if (Option.isSome(input.config)) {
      const readable = yield* Checks.readableFile("smoke", "--config", input.config.value).pipe(Effect.result)
      if (readable._tag === "Failure") return failed(readable.failure.message)
    }
    if (Option.isSome(input.baseUrl)) {
      const bad = Checks.urlProblem("--base-url", input.baseUrl.value, ["http:", "https:"], "https://api.elevenlabs.io")
      if (bad !== undefined) return failed(bad)
    }
    const loaded = yield* ResilienceConfig.load({ file: Option.getOrUndefined(input.config) }).pipe(Effect.result)
    if (loaded._tag === "Failure") {
      const problems = loaded.failure.problems.filter((p) => p.severity === "error")
      return failed(
        `config: ${
          problems.map((p) => `${p.path === "(file)" ? "" : `${p.path}: `}${p.message} (fix: ${p.fix})`).join("; ") ||
          loaded.failure.message
        }`
      )
    }
    const config = loaded.success
    const envKey = yield* Config.Redacted("ELEVENLABS_API_KEY").pipe(
      Config.option,
      Effect.orElseSucceed(() => Option.none())
    )
    const useSimulator = input.simulator || Option.isNone(envKey)
    let apiKey: Redacted.Redacted<string>
    let baseUrl: string
    let target: string
    if (useSimulator) {
      // The simulator serves its model and voice lists only: refused before the request. Against a
      // real base URL the one request is the check (the account may have models and voices of its own).
      const unknown = Checks.modelProblem(input.model) ?? Checks.voiceProblem(input.voice)
      if (unknown !== undefined) return failed(unknown)
      const server = yield* Server.serve({ port: 0 }).pipe(Effect.result)
      if (server._tag === "Failure") {
        return failed(CliFailure.listenProblem("the embedded simulator", "127.0.0.1", 0, undefined, server.failure))
      }
      apiKey = Redacted.make("sim-key")
      baseUrl = Option.getOrElse(input.baseUrl, () => server.success.url)
      target = Option.isSome(input.baseUrl) ? baseUrl : `embedded simulator ${baseUrl}`
    } else {
      apiKey = (envKey as Option.Some<Redacted.Redacted<string>>).value
      const options = ResilienceConfig.toResilientOptions(config, apiKey)
      baseUrl = Option.getOrElse(input.baseUrl, () => options.baseUrl ?? ResilienceConfig.defaults.baseUrl)
      target = baseUrl
    }
    const options = { ...ResilienceConfig.toResilientOptions(config, apiKey), baseUrl }
    const built = yield* Resilient.make(options).pipe(Effect.result)
    // A base URL from the environment (ELEVENLABS_BASE_URL) that is not a URL: the stack refuses it.
    if (built._tag === "Failure") return failed(built.failure.reason.message)
    const { resilience, service } = built.success
    const pool = poolOfModel(input.model)
    const start = yield* Clock.currentTimeMillis
    const answer = yield* service.textToSpeech.convert(input.voice, { text: input.text, modelId: input.model }).pipe(
      Resilient.withCallOptions({ lane: "interactive", deadline: "60 seconds" }),
      Effect.result
    )
    const tookMs = (yield* Clock.currentTimeMillis) - start
    const keyNote = useSimulator ? "simulator key" : "ELEVENLABS_API_KEY"
    if (answer._tag === "Failure") {
      const reason = answer.failure.reason
      return failed(`tts ${reason._tag}: ${reason.message} (${target}, ${keyNote}, ${tookMs} ms)`)
    }
    const checks = yield* Health.make()
    yield* registerReadiness(checks, resilience, pool)
    const readiness = yield* checks.run
    const notReady = Object.entries(readiness.checks).filter(([, r]) => !r.ok)
    if (notReady.length > 0) {
      return failed(
        `not ready: ${notReady.map(([name, r]) => `${name} ${JSON.stringify(r.details)}`).join(", ")} (${target})`
      )
    }
    const breakerState = Object.entries(readiness.checks).find(([name]) => name.startsWith("breaker_"))?.[1]
      .details["state"]
    const breakerText = breakerState === undefined ? "no breaker" : `breaker ${String(breakerState).toLowerCase()}`
    const meta = answer.success.meta
    const quota = yield* (resilience.quota?.status ?? Effect.succeed(undefined))
    const used = quota?.percentUsed === undefined
      ? "quota unknown"
      : `quota ${Math.round(quota.percentUsed * 10) / 10} % used`
    return {
      ok: true,
      line: `smoke: PASS tts ${answer.success.audio.byteLength} bytes in ${tookMs} ms${
        meta.requestId === undefined ? "" : ` (request ${meta.requestId}`
      }${
        meta.characterCost === undefined
          ? ""
          : `${meta.requestId === undefined ? " (" : ", "}${meta.characterCost} credits`
      }${
        meta.requestId === undefined && meta.characterCost === undefined ? "" : ")"
      }; ${breakerText}; ${used}; config OK; ${target}, ${keyNote}`
    }
  }))

/** The command's flags. */
export const flags = {
  config: Flags.config(
    "JSON config file (docs/configuration.md); the environment overrides it.",
    "none: the environment and the built-in defaults"
  ),
  simulator: Flags.boolean(
    "simulator",
    "Check against an embedded simulator even when ELEVENLABS_API_KEY is set (no credits)."
  ),
  baseUrl: Flag.String("base-url").pipe(
    Flags.optional(
      "Override the configured base URL.",
      "the config's baseUrl, else https://api.elevenlabs.io; the embedded simulator without a key"
    )
  ),
  voice: Flag.String("voice").pipe(
    Flags.withDefault("Voice id of the test request.", defaults.voice, `${defaults.voice} (Rachel)`)
  ),
  model: Flag.String("model").pipe(Flags.withDefault("Model of the test request.", defaults.model)),
  text: Flag.String("text").pipe(
    Flags.withDefault("Text of the test request (costs its characters).", defaults.text, `"${defaults.text}"`)
  )
} as const

/** `smoke`: the command. */
export const smoke = Command.make("smoke", flags, (input) =>
  execute(input).pipe(
    Effect.provide(NodeHttpClient.layerUndici),
    // One line of output: the stack's logs (retries, limit changes) stay quiet, unless --log-level asks.
    Flags.quietUnlessAsked("None"),
    Effect.flatMap((r) =>
      (r.ok ? Console.log(r.line) : Console.error(r.line)).pipe(Effect.andThen(Effect.sync(() => {
        if (!r.ok) process.exitCode = 1
      })))
    )
  )).pipe(
    Command.withDescription(
      "Deployment smoke check: validate the config, one real request through the full stack, readiness; one PASS/FAIL line."
    )
  )
