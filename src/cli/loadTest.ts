/**
 * `elevenlabs-resilience load-test`: the same traffic patterns and report as
 * `simulate`, in real time over real HTTP, against an embedded simulator
 * server (default) or any base URL.
 *
 * Several processes (`--processes N`): the parent starts the target, spawns
 * N workers (`load-test --worker ...`) that each run a share of the arrivals
 * from the same start instant, sharing the account's concurrency through
 * Redis (`--redis-url`), and merges their logs into one report.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Clock, Config, Console, Effect, FileSystem, Option, Redacted, References, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"
import { type RateInput, rateFlags } from "./trafficFlags.ts"
import type { HttpClient } from "effect/http"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as SharedState from "../distributed/SharedState.ts"
import { isPlanName, type PlanName, planNames } from "../resilience/Plans.ts"
import * as Html from "../simulation/Html.ts"
import * as LoadTest from "../simulation/LoadTest.ts"
import * as Patterns from "../simulation/Patterns.ts"
import * as Progress from "../simulation/Progress.ts"
import * as Report from "../simulation/Report.ts"
import * as Runner from "../simulation/Runner.ts"
import * as Strategies from "../simulation/Strategies.ts"
import * as Server from "../simulator/Server.ts"
import * as Simulator from "../simulator/Simulator.ts"
import { parseDuration } from "./simulate.ts"

/** The simulator's default key (the embedded target's). */
export const simulatorKey = "sim-key"

/** The raw flag values. */
export interface LoadTestInput extends RateInput {
  readonly baseUrl: Option.Option<string>
  readonly apiKey: Option.Option<string>
  readonly plan: string
  readonly model: string
  readonly voice: string
  readonly strategy: string
  readonly pattern: string
  readonly requests: Option.Option<number>
  readonly duration: Option.Option<string>
  readonly chars: string
  readonly failureRate: Option.Option<number>
  readonly seed: number
  readonly jitter: string
  readonly config: Option.Option<string>
  readonly timeLimit: Option.Option<string>
  readonly json: boolean
  readonly processes: number
  readonly redisUrl: Option.Option<string>
  readonly worker: boolean
  readonly workerIndex: number
  readonly startAt: Option.Option<number>
}

/** Defaults of every flag that has one. */
export const defaults = {
  plan: "pro",
  model: "eleven_multilingual_v2",
  voice: LoadTest.defaultVoiceId,
  strategy: "resilient",
  pattern: "steady",
  chars: "100-300",
  seed: 1,
  jitter: "full",
  /** Requests when neither `--requests` nor `--duration` is given (real time: keep it short). */
  requests: 100
} as const

const fail = (message: string) => Effect.fail(new LoadTest.LoadTestError({ message }))

/** Everything the flags decide, checked. */
export interface Plan {
  readonly plan: PlanName
  readonly model: string
  readonly strategy: Strategies.Strategy
  readonly traffic: Patterns.TrafficOptions
  readonly resolved: Patterns.Traffic
  readonly failureRate: number
  readonly jitter: Strategies.JitterName
  readonly concurrency: number | undefined
  readonly timeLimitMs: number | undefined
  readonly config: unknown
}

/** Checks the flags (one clear error per bad value). */
export const toPlan = (input: LoadTestInput, config: unknown): Effect.Effect<Plan, LoadTest.LoadTestError> =>
  Effect.gen(function*() {
    if (!isPlanName(input.plan)) return yield* fail(`--plan must be one of ${planNames.join(", ")}; got "${input.plan}"`)
    const pattern = input.pattern
    if (!Patterns.isPatternName(pattern)) {
      return yield* fail(`--pattern must be one of ${Patterns.patternNames.join(", ")}; got "${pattern}"`)
    }
    if (!(Strategies.jitterNames as ReadonlyArray<string>).includes(input.jitter)) {
      return yield* fail(`--jitter must be one of ${Strategies.jitterNames.join(", ")}; got "${input.jitter}"`)
    }
    const strategy = LoadTest.strategyOf(input.strategy)
    if (strategy === undefined) {
      return yield* fail(`--strategy must be one of ${LoadTest.available().map((s) => s.name).join(", ")}; got "${input.strategy}"`)
    }
    if (Option.isNone(input.baseUrl)) {
      // The embedded simulator serves its model and voice lists only; a real target is asked
      // before the run instead (`execute`, Checks.targetProblem): it may have models and voices
      // this library does not know.
      const unknown = Checks.modelProblem(input.model) ?? Checks.voiceProblem(input.voice)
      if (unknown !== undefined) return yield* fail(unknown)
    } else if (input.model.trim() === "") return yield* fail("--model must not be empty")
    const chars = yield* Patterns.parseChars(input.chars).pipe(Effect.mapError((e) => new LoadTest.LoadTestError({ message: e.message })))
    const durationMs = Option.isSome(input.duration)
      ? yield* parseDuration(input.duration.value).pipe(Effect.mapError((e) => new LoadTest.LoadTestError({ message: e.message })))
      : undefined
    const timeLimitMs = Option.isSome(input.timeLimit)
      ? yield* parseDuration(input.timeLimit.value).pipe(
        Effect.mapError((e) => new LoadTest.LoadTestError({ message: e.message.replace("--duration", "--time-limit") }))
      )
      : undefined
    const failureRate = Option.getOrUndefined(input.failureRate) ?? (pattern === "chaos" ? Runner.chaosDefaultFailureRate : 0)
    if (!(failureRate >= 0 && failureRate <= 1)) return yield* fail(`--failure-rate must be within 0..1, got ${failureRate}`)
    const concurrency = Option.getOrUndefined(input.concurrency)
    if (concurrency !== undefined && concurrency < 1) return yield* fail(`--concurrency must be at least 1, got ${concurrency}`)
    if (!(Number.isInteger(input.processes) && input.processes >= 1 && input.processes <= 64)) {
      return yield* fail(`--processes must be an integer within 1..64, got ${input.processes}`)
    }
    if (input.processes > 1 && strategy.name === "resilient" && Option.isNone(input.redisUrl)) {
      return yield* fail(
        "--processes N with --strategy resilient needs --redis-url: without shared state each process would use the whole limit"
      )
    }
    if (Option.isSome(input.redisUrl) && strategy.name !== "resilient") {
      return yield* fail(`--redis-url shares the resilient stack's limits; --strategy ${strategy.name} has none to share`)
    }
    if (Option.isSome(input.baseUrl) && !/^https?:\/\/[^/]+/.test(input.baseUrl.value)) {
      return yield* fail(`--base-url must be an http(s) URL, got "${input.baseUrl.value}"`)
    }
    yield* LoadTest.checkConfig(config)
    const requests = Option.getOrUndefined(input.requests) ??
      (durationMs === undefined && (pattern === "steady" || pattern === "chaos" || pattern === "burst")
        ? defaults.requests
        : undefined)
    const traffic: Patterns.TrafficOptions = {
      pattern,
      requests,
      durationMs,
      rps: Option.getOrUndefined(input.rps),
      startRps: Option.getOrUndefined(input.startRps),
      endRps: Option.getOrUndefined(input.endRps),
      bursts: Option.getOrUndefined(input.bursts),
      chars,
      seed: input.seed
    }
    const resolved = yield* LoadTest.resolveTraffic(traffic)
    return {
      plan: input.plan,
      model: input.model,
      strategy,
      traffic,
      resolved,
      failureRate,
      jitter: input.jitter as Strategies.JitterName,
      concurrency,
      timeLimitMs,
      config
    }
  })

/** Reads and checks `--config FILE` (JSON), if given (one clear line when it cannot be used). */
export const readConfig = (path: Option.Option<string>): Effect.Effect<unknown, CliFailure.CliFailure, FileSystem.FileSystem> =>
  Checks.readConfig("load-test", path)

const workerOutputPrefix = "LOADTEST-PART "

/** The arguments a worker gets (the parent's flags, the target fixed, the key in the environment). */
const workerArgs = (input: LoadTestInput, baseUrl: string, index: number, startAt: number): Array<string> => {
  const args = [
    "load-test",
    "--worker",
    "--worker-index",
    String(index),
    "--processes",
    String(input.processes),
    "--start-at",
    String(startAt),
    "--base-url",
    baseUrl,
    "--plan",
    input.plan,
    "--model",
    input.model,
    "--voice",
    input.voice,
    "--strategy",
    input.strategy,
    "--pattern",
    input.pattern,
    "--chars",
    input.chars,
    "--seed",
    String(input.seed),
    "--jitter",
    input.jitter
  ]
  const opt = (flag: string, value: Option.Option<string | number>) => {
    if (Option.isSome(value)) args.push(flag, String(value.value))
  }
  opt("--requests", input.requests)
  opt("--duration", input.duration)
  opt("--rps", input.rps)
  opt("--start-rps", input.startRps)
  opt("--end-rps", input.endRps)
  opt("--bursts", input.bursts)
  opt("--concurrency", input.concurrency)
  opt("--failure-rate", input.failureRate)
  opt("--config", input.config)
  opt("--time-limit", input.timeLimit)
  opt("--redis-url", input.redisUrl)
  return args
}

const mainPath = (): string => {
  const here = fileURLToPath(import.meta.url)
  return here.replace(/loadTest\.(ts|js)$/, "main.$1")
}

/** Runs one worker process to its end and returns its part. */
const runWorker = (args: ReadonlyArray<string>, apiKey: Redacted.Redacted<string>): Effect.Effect<LoadTest.Part, LoadTest.LoadTestError> =>
  Effect.callback<LoadTest.Part, LoadTest.LoadTestError>((resume) => {
    const child = spawn(process.execPath, [mainPath(), ...args], {
      // The key goes by environment, never on a command line (visible in ps).
      env: { ...process.env, ELEVENLABS_API_KEY: Redacted.value(apiKey) },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (err += d.toString()))
    child.on("error", (e) => resume(fail(`worker could not start: ${e.message}`)))
    child.on("close", (code) => {
      const line = out.split("\n").find((l) => l.startsWith(workerOutputPrefix))
      if (code !== 0 || line === undefined) {
        resume(fail(`worker exited with ${code}: ${err.trim().split("\n").slice(-3).join(" | ") || "no output"}`))
        return
      }
      try {
        resume(Effect.succeed(JSON.parse(line.slice(workerOutputPrefix.length)) as LoadTest.Part))
      } catch {
        resume(fail("worker output is not JSON"))
      }
    })
    return Effect.sync(() => void child.kill("SIGTERM"))
  })

/** The API key: `--api-key`, else `ELEVENLABS_API_KEY` for a real base URL, else the simulator's. */
const keyOf = (input: LoadTestInput, embedded: boolean): Effect.Effect<Redacted.Redacted<string>, LoadTest.LoadTestError> =>
  Effect.gen(function*() {
    if (Option.isSome(input.apiKey)) return Redacted.make(input.apiKey.value)
    if (embedded) return Redacted.make(simulatorKey)
    const fromEnv = yield* Config.Redacted("ELEVENLABS_API_KEY").pipe(Config.option, Effect.orElseSucceed(() => Option.none()))
    if (Option.isNone(fromEnv)) {
      return yield* fail("--base-url given without a key: set ELEVENLABS_API_KEY (or --api-key for a simulator)")
    }
    return fromEnv.value
  })

const redisError = (e: LoadTest.LoadTestError | { readonly message: string }): LoadTest.LoadTestError =>
  LoadTest.isLoadTestError(e) ? e : new LoadTest.LoadTestError({ message: `redis: ${e.message}` })

/** The output of a run: the text to print and the report. */
export interface Output {
  readonly output: string
  readonly report: Report.Report | undefined
}

/** Runs what the flags ask for. */
export const execute = (
  input: LoadTestInput
): Effect.Effect<Output, LoadTest.LoadTestError | CliFailure.CliFailure, FileSystem.FileSystem | HttpClient.HttpClient> =>
  Effect.scoped(Effect.gen(function*() {
    const config = yield* readConfig(input.config)
    const plan = yield* toPlan(input, config)
    // Before the run: a report that cannot be written is known now, not after it.
    if (!input.worker) yield* Checks.writableOption("load-test", "--html", input.html)
    const progress = input.json || input.worker ? undefined : Progress.sink({ label: "load-test" })

    /** What a worker's part and a one-process run share. */
    const runOptions = (baseUrl: string, apiKey: Redacted.Redacted<string>) => ({
      traffic: plan.traffic,
      strategy: plan.strategy,
      baseUrl,
      apiKey,
      plan: plan.plan,
      model: plan.model,
      voiceId: input.voice,
      concurrency: plan.concurrency,
      jitter: plan.jitter,
      config,
      timeLimitMs: plan.timeLimitMs
    })

    if (input.worker) {
      if (Option.isNone(input.baseUrl)) return yield* fail("--worker needs --base-url (the parent's target)")
      const apiKey = yield* keyOf(input, false)
      const baseUrl = input.baseUrl.value
      const options = {
        ...runOptions(baseUrl, apiKey),
        part: { index: input.workerIndex, of: input.processes },
        startAt: Option.getOrUndefined(input.startAt)
      } satisfies LoadTest.LoadTestOptions
      // With the Redis services in context, the resilient stack takes distributed permits behind its
      // local lanes and keeps its breaker in Redis (Resilient.make looks for them).
      const part = Option.isSome(input.redisUrl)
        ? yield* LoadTest.runPart(options).pipe(
          Effect.provide(SharedState.layerRedis({ url: input.redisUrl.value, mode: { expectedProcesses: input.processes } })),
          Effect.mapError(redisError)
        )
        : yield* LoadTest.runPart(options)
      return { output: workerOutputPrefix + JSON.stringify(part) + "\n", report: undefined }
    }

    const embedded = Option.isNone(input.baseUrl)
    const apiKey = yield* keyOf(input, embedded)
    let baseUrl: string
    let simulatorStats: boolean
    if (embedded) {
      const server = yield* Server.serve({
        port: 0,
        plan: plan.plan,
        seed: input.seed,
        faults: plan.failureRate > 0 ? Runner.faultsFor(plan.failureRate) : Simulator.noFaults,
        apiKeys: [{ key: simulatorKey, name: "sim", plan: plan.plan, characterLimit: 1e12 }],
        maxSamples: 16 * plan.resolved.requests + 16
      }).pipe(Effect.mapError((e) => CliFailure.listenFailure("load-test", "the embedded simulator", "127.0.0.1", 0, undefined, e)))
      baseUrl = server.url
      simulatorStats = true
    } else {
      baseUrl = input.baseUrl.value.replace(/\/+$/, "")
      // The target is the authority on its models and voices: asked before the run (two free GETs).
      const unknown = yield* Checks.targetProblem({ baseUrl, apiKey, model: plan.model, voice: input.voice })
      if (unknown !== undefined) return yield* fail(unknown)
      simulatorStats = (yield* LoadTest.fetchStats(baseUrl)) !== undefined
    }

    let report: Report.Report
    if (input.processes === 1) {
      const options: LoadTest.LoadTestOptions = {
        ...runOptions(baseUrl, apiKey),
        failureRate: plan.failureRate,
        simulatorStats,
        progress
      }
      report = Option.isSome(input.redisUrl)
        ? yield* LoadTest.run(options).pipe(
          Effect.provide(SharedState.layerRedis({ url: input.redisUrl.value })),
          Effect.mapError(redisError)
        )
        : yield* LoadTest.run(options)
    } else {
      const wallStart = yield* Clock.currentTimeMillis
      if (simulatorStats) yield* LoadTest.resetStats(baseUrl)
      // Workers start together, a moment after they are all spawned (Node takes ~0.5 s to boot).
      const startAt = (yield* Clock.currentTimeMillis) + 2_000
      const parts = yield* Effect.forEach(
        Array.from({ length: input.processes }, (_, i) => i),
        (i) => runWorker(workerArgs(input, baseUrl, i, startAt), apiKey),
        { concurrency: "unbounded" }
      )
      const stats = simulatorStats ? yield* LoadTest.fetchStats(baseUrl) : undefined
      report = LoadTest.report(LoadTest.merge(parts), {
        strategy: `${plan.strategy.name} x${input.processes}`,
        plan: plan.plan,
        model: plan.model,
        traffic: plan.resolved,
        failureRate: plan.failureRate,
        stats,
        wallMs: (yield* Clock.currentTimeMillis) - wallStart
      })
    }

    if (Option.isSome(input.html)) yield* Checks.writeFile("load-test", "--html", input.html.value, Html.render([report]))
    const target = embedded ? `embedded simulator ${baseUrl}` : simulatorStats ? `simulator ${baseUrl}` : baseUrl
    return {
      output: input.json
        ? Report.toJson([report]) + "\n"
        : `load-test against ${target} (real time${input.processes > 1 ? `, ${input.processes} processes` : ""})\n` +
          Report.toText([report]),
      report
    }
  }))

/** The command's flags. */
export const flags = {
  ...rateFlags,
  baseUrl: Flag.String("base-url").pipe(
    Flags.optional("Target (no /v1).", "an embedded simulator server on loopback, started for the run")
  ),
  apiKey: Flag.String("api-key").pipe(
    Flags.optional(
      "Key for the target (prefer ELEVENLABS_API_KEY: a flag shows in ps).",
      "the simulator's, or ELEVENLABS_API_KEY with --base-url"
    )
  ),
  plan: Flag.String("plan").pipe(
    Flags.withDefault(`Plan: ${planNames.join(", ")} (the embedded simulator's and the limiter's).`, defaults.plan)
  ),
  model: Flag.String("model").pipe(
    Flags.withDefault("TTS model id (the simulator's; with --base-url, the target's /v1/models is asked).", defaults.model)
  ),
  voice: Flag.String("voice").pipe(
    Flags.withDefault("Voice id (a premade voice of the simulator; with --base-url, one of the account's).", defaults.voice)
  ),
  strategy: Flag.String("strategy").pipe(
    Flags.withDefault(
      `Strategy: ${Strategies.strategyNames.join(", ")} (seed-template: the old name of p-queue-recipe).`,
      defaults.strategy
    )
  ),
  pattern: Flag.String("pattern").pipe(
    Flags.withDefault(`Traffic pattern: ${Patterns.patternNames.join(", ")}.`, defaults.pattern)
  ),
  requests: Flag.Int("requests").pipe(
    Flags.optional("Number of requests.", `${defaults.requests} for steady, chaos and burst; ramp-up and diurnal: rate x span`)
  ),
  duration: Flag.String("duration").pipe(
    Flags.optional("Span of the schedule: N seconds or N ms|s|m|h (at most 1 h).", "--requests / --rps; ramp-up 60 s")
  ),
  chars: Flag.String("chars").pipe(Flags.withDefault("Text length: N or a-b.", defaults.chars)),
  failureRate: Flag.Finite("failure-rate").pipe(
    Flags.optional("Fault probability per request of the embedded simulator, 0..1.", "0; chaos 0.1")
  ),
  seed: Flag.Int("seed").pipe(Flags.withDefault("Seed of the schedule and the embedded simulator.", defaults.seed)),
  jitter: Flag.String("jitter").pipe(
    Flags.withDefault(`Jitter of the resilient strategy: ${Strategies.jitterNames.join(", ")}.`, defaults.jitter)
  ),
  config: Flags.config(),
  timeLimit: Flag.String("time-limit").pipe(
    Flags.optional("Stop calls still running after this long.", "the schedule's span + 120 s")
  ),
  json: Flags.boolean("json", "Print one JSON document instead of a table (no progress bar)."),
  processes: Flag.Int("processes").pipe(
    Flags.withDefault("Worker processes sharing the load (resilient: needs --redis-url).", 1)
  ),
  redisUrl: Flag.String("redis-url").pipe(
    Flags.optional("Redis shared by the processes (redis://host:port).", "none: one process, local limits")
  ),
  worker: Flag.Boolean("worker").pipe(Flag.withDefault(false), Flag.withHidden),
  workerIndex: Flag.Int("worker-index").pipe(Flag.withDefault(0), Flag.withHidden),
  startAt: Flag.Int("start-at").pipe(Flag.optional, Flag.withHidden)
} as const

/** `load-test`: the command. */
export const loadTest = Command.make("load-test", flags, (input) =>
  execute(input).pipe(
    Effect.flatMap(({ output }) => Console.log(output.trimEnd())),
    Effect.provide(NodeHttpClient.layerUndici),
    // The stack logs every retry and limit change; under load that drowns the report.
    Effect.provideService(References.MinimumLogLevel, "Error"),
    // One line on stderr, exit code 1 (main.ts prints it): a flag the run refuses, or a run that failed.
    Effect.mapError((e) => CliFailure.from("load-test", e.message.startsWith("--") ? "InvalidFlag" : "RunFailed")(e))
  )).pipe(
    Command.withDescription(
      "Run a traffic pattern in real time over real HTTP (embedded simulator by default) and report: text, JSON or HTML."
    )
  )

/** Re-exported for tests: the error of this command. */
export const LoadTestError = LoadTest.LoadTestError
export type LoadTestError = LoadTest.LoadTestError
export const isLoadTestError = Schema.is(LoadTest.LoadTestError)
