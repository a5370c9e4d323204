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
import { Clock, Config, Console, Effect, FileSystem, Option, Redacted, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import type { HttpClient } from "effect/http"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as SharedState from "../distributed/SharedState.ts"
import { type PlanName, planNames } from "../resilience/Plans.ts"
import * as Html from "../simulation/Html.ts"
import * as LoadTest from "../simulation/LoadTest.ts"
import type * as Patterns from "../simulation/Patterns.ts"
import * as Progress from "../simulation/Progress.ts"
import * as Report from "../simulation/Report.ts"
import * as Runner from "../simulation/Runner.ts"
import type * as Strategies from "../simulation/Strategies.ts"
import * as Server from "../simulator/Server.ts"
import * as Simulator from "../simulator/Simulator.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"
import * as Sessions from "./loadTestSessions.ts"
import {
  checkTraffic,
  sessionsPattern,
  strategyOf,
  trafficDefaults,
  trafficFlags,
  type TrafficInput
} from "./trafficFlags.ts"

/** The simulator's default key (the embedded target's). */
export const simulatorKey = "sim-key"

/** The raw flag values. */
export interface LoadTestInput extends TrafficInput {
  readonly baseUrl: Option.Option<string>
  readonly apiKey: Option.Option<string>
  readonly model: string
  readonly voice: string
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
  ...trafficDefaults,
  model: "eleven_multilingual_v2",
  voice: LoadTest.defaultVoiceId,
  chars: "100-300",
  /** Requests when neither `--requests` nor `--duration` is given (real time: keep it short). */
  requests: 100,
  /** The span of a diurnal day without `--duration`: a day compressed into the real-time cap's reach. */
  diurnalMs: 10 * 60_000
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
export const toPlan = (
  input: LoadTestInput,
  config: unknown
): Effect.Effect<Plan, LoadTest.LoadTestError | CliFailure.CliFailure> =>
  Effect.gen(function*() {
    const refuse = (problem: string | undefined) => Checks.refuse("load-test", problem)
    const checked = yield* checkTraffic("load-test", input)
    const strategy = yield* strategyOf("load-test", input.strategy, LoadTest.available())
    if (Option.isNone(input.baseUrl)) {
      // The embedded simulator serves its model and voice lists only; a real target is asked
      // before the run instead (`execute`, Checks.targetProblem): it may have models and voices
      // this library does not know.
      yield* refuse(Checks.modelProblem(input.model) ?? Checks.voiceProblem(input.voice))
    } else {
      yield* refuse(
        Checks.urlProblem("--base-url", input.baseUrl.value, ["http:", "https:"], "https://api.elevenlabs.io")
      )
      if (input.model.trim() === "") {
        yield* refuse("--model must not be empty; give the id of one of the target's models")
      }
    }
    const timeLimitMs = Option.isSome(input.timeLimit)
      ? yield* Checks.durationOf("load-test", "--time-limit", input.timeLimit.value)
      : undefined
    const pattern = checked.traffic.pattern
    const failureRate = checked.failureRate ?? (pattern === "chaos" ? Runner.chaosDefaultFailureRate : 0)
    const processes = input.processes
    yield* refuse(
      Checks.numberProblem(
        "--processes",
        processes,
        Number.isInteger(processes) && processes >= 1 && processes <= 64,
        "an integer within 1..64"
      )
    )
    if (Option.isSome(input.redisUrl)) {
      yield* refuse(
        Checks.urlProblem("--redis-url", input.redisUrl.value, ["redis:", "rediss:"], "redis://127.0.0.1:6379")
      )
      if (strategy.name !== "resilient") {
        yield* refuse(
          `--redis-url shares the resilient stack's limits; --strategy ${strategy.name} has none to share; leave --redis-url out`
        )
      }
    } else if (input.processes > 1 && strategy.name === "resilient") {
      yield* refuse(
        "--processes N with --strategy resilient needs --redis-url: without shared state each process would use the whole limit"
      )
    }
    yield* LoadTest.checkConfig(config)
    // Real time: the defaults are short (a few requests; a compressed day).
    const { requests, durationMs } = checked.traffic
    const traffic: Patterns.TrafficOptions = {
      ...checked.traffic,
      requests: requests ??
        (durationMs === undefined && (pattern === "steady" || pattern === "chaos" || pattern === "burst")
          ? defaults.requests
          : undefined),
      durationMs: durationMs ?? (pattern === "diurnal" ? defaults.diurnalMs : undefined)
    }
    const resolved = yield* LoadTest.resolveTraffic(traffic)
    return {
      plan: checked.plan,
      model: input.model,
      strategy,
      traffic,
      resolved,
      failureRate,
      jitter: checked.jitter,
      concurrency: checked.concurrency,
      timeLimitMs,
      config
    }
  })

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

/**
 * The one line to pass on from a failed worker's standard error: its own
 * error line (`load-test: ...`, without the prefix), else the first `...Error:`
 * line of a crash, else its last line; never a stack frame.
 */
export const workerErrorLine = (stderr: string): string => {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("at "))
  const own = lines.findLast((l) => l.startsWith("load-test: "))
  return own?.slice("load-test: ".length) ?? lines.find((l) => /^\w*Error\b/.test(l)) ?? lines.at(-1) ?? "no output"
}

/** Runs one worker process to its end and returns its part. */
const runWorker = (
  args: ReadonlyArray<string>,
  apiKey: Redacted.Redacted<string>,
  label: string
): Effect.Effect<LoadTest.Part, LoadTest.LoadTestError> =>
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
    child.on("error", (e) => resume(fail(`${label} could not start: ${e.message}`)))
    child.on("close", (code) => {
      const line = out.split("\n").find((l) => l.startsWith(workerOutputPrefix))
      if (code !== 0 || line === undefined) {
        resume(fail(`${label} failed (exit code ${code}): ${workerErrorLine(err)}`))
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
const keyOf = (
  input: LoadTestInput,
  embedded: boolean
): Effect.Effect<Redacted.Redacted<string>, LoadTest.LoadTestError> =>
  Effect.gen(function*() {
    if (Option.isSome(input.apiKey)) return Redacted.make(input.apiKey.value)
    if (embedded) return Redacted.make(simulatorKey)
    const fromEnv = yield* Config.Redacted("ELEVENLABS_API_KEY").pipe(
      Config.option,
      Effect.orElseSucceed(() => Option.none())
    )
    if (Option.isNone(fromEnv)) {
      return yield* fail("--base-url given without a key: set ELEVENLABS_API_KEY (or --api-key for a simulator)")
    }
    return fromEnv.value
  })

/** A run's own error as it is; a Redis that cannot be used (`--redis-url`) named with what to do. */
const redisError = (url: string) =>
(
  e: LoadTest.LoadTestError | { readonly _tag: string; readonly message: string }
): LoadTest.LoadTestError | CliFailure.CliFailure =>
  LoadTest.isLoadTestError(e)
    ? e
    : CliFailure.make(
      "load-test",
      e._tag === "MissingPeerDependency" ? e.message : CliFailure.redisProblem(url, "--redis-url", e)
    )

/** The output of a run: the text to print and the report. */
export interface Output {
  readonly output: string
  readonly report: Report.Report | undefined
}

/** Runs what the flags ask for. */
export const execute = (
  input: LoadTestInput
): Effect.Effect<
  Output,
  LoadTest.LoadTestError | CliFailure.CliFailure,
  FileSystem.FileSystem | HttpClient.HttpClient
> =>
  Effect.scoped(Effect.gen(function*() {
    if (input.pattern === sessionsPattern) return { output: yield* Sessions.execute(input), report: undefined }
    const config = yield* Checks.readConfig("load-test", input.config)
    const plan = yield* toPlan(input, config)
    // Before the run: a report that cannot be written is known now, not after it.
    if (!input.worker) yield* Checks.writableOption("load-test", "--html", input.html)
    if (!input.worker && Option.isSome(input.html)) yield* Checks.chartLibrary("load-test")
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
          Effect.provide(
            SharedState.layerRedis({ url: input.redisUrl.value, mode: { expectedProcesses: input.processes } })
          ),
          Effect.mapError(redisError(input.redisUrl.value))
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
      }).pipe(Effect.mapError((e) =>
        CliFailure.listenFailure("load-test", "the embedded simulator", "127.0.0.1", 0, undefined, e)
      ))
      baseUrl = server.url
      simulatorStats = true
    } else {
      baseUrl = input.baseUrl.value.replace(/\/+$/, "")
      // The target is the authority on its models and voices: asked before the run (two free GETs).
      const unknown = yield* Checks.targetProblem({ baseUrl, apiKey, model: plan.model, voice: input.voice })
      if (unknown !== undefined) {
        return yield* fail(unknown)
      }
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
          Effect.mapError(redisError(input.redisUrl.value))
        )
        : yield* LoadTest.run(options)
    } else {
      const wallStart = yield* Clock.currentTimeMillis
      if (simulatorStats) {
        yield* LoadTest.resetStats(baseUrl)
      }
      // Workers start together, a moment after they are all spawned (Node takes ~0.5 s to boot).
      const startAt = (yield* Clock.currentTimeMillis) + 2_000
      const parts = yield* Effect.forEach(
        Array.from({ length: input.processes }, (_, i) =>
          i),
        (i) => runWorker(workerArgs(input, baseUrl, i, startAt), apiKey, `worker ${i + 1} of ${input.processes}`),
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

    if (Option.isSome(input.html)) {
      const page = yield* Html.renderEffect([report]).pipe(Effect.mapError(CliFailure.from("load-test")))
      yield* Checks.writeFile("load-test", "--html", input.html.value, page)
    }
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
  ...trafficFlags({
    plan: `Plan: ${planNames.join(", ")} (the embedded simulator's and the limiter's).`,
    requests: `${defaults.requests} for steady, chaos and burst; ramp-up and diurnal: rate x span`,
    duration: [
      "Span of the schedule: N seconds or N ms|s|m|h (at most 1 h: real time).",
      `--requests / --rps; ramp-up 60 s, diurnal ${defaults.diurnalMs / 60_000} min (a day compressed)`
    ],
    chars: defaults.chars,
    failureRate: "Fault probability per request of the embedded simulator, 0..1.",
    seed: "Seed of the schedule and the embedded simulator."
  }),
  baseUrl: Flag.String("base-url").pipe(
    Flags.optional("Target (no /v1).", "an embedded simulator server on loopback, started for the run")
  ),
  apiKey: Flag.String("api-key").pipe(
    Flags.optional(
      "Key for the target (prefer ELEVENLABS_API_KEY: a flag shows in ps).",
      "the simulator's, or ELEVENLABS_API_KEY with --base-url"
    )
  ),
  model: Flag.String("model").pipe(
    Flags.withDefault(
      "TTS model id (the simulator's; with --base-url, the target's /v1/models is asked).",
      defaults.model
    )
  ),
  voice: Flag.String("voice").pipe(
    Flags.withDefault(
      "Voice id (a premade voice of the simulator; with --base-url, one of the account's).",
      defaults.voice
    )
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
    // The stack logs every retry and limit change; under load that drowns the report (unless --log-level asks).
    Flags.quietUnlessAsked("Error"),
    // One line on stderr, exit code 1 (main.ts prints it): a flag the run refuses, or a run that failed.
    Effect.mapError(CliFailure.from("load-test"))
  )).pipe(
    Command.withDescription(
      "Run a traffic pattern in real time over real HTTP (embedded simulator by default) and report: text, JSON or HTML."
    )
  )

/** Re-exported for tests: the error of this command. */
export const LoadTestError = LoadTest.LoadTestError
export type LoadTestError = LoadTest.LoadTestError
export const isLoadTestError = Schema.is(LoadTest.LoadTestError)
