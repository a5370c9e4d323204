/**
 * `elevenlabs-resilience simulate`: rehearse a traffic pattern against a plan
 * in virtual time, with one strategy or all of them side by side.
 *
 * The flags are parsed by `effect/cli` as strings and numbers; {@link toRuns}
 * checks them and turns them into runner options, so every bad value gets one
 * clear {@link SimulateError} naming the flag and the accepted values. The
 * default strategy is `resilient` (this library's stack): what a user of the
 * library rehearses; `--strategy naive` or `--compare` show the others.
 *
 * @since 0.1.0
 */
import { Console, Effect, FileSystem, Option, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"
import { type RateInput, rateFlags } from "./trafficFlags.ts"
import { isPlanName, planNames } from "../resilience/Plans.ts"
import * as Html from "../simulation/Html.ts"
import * as Patterns from "../simulation/Patterns.ts"
import * as Report from "../simulation/Report.ts"
import * as Runner from "../simulation/Runner.ts"
import * as Strategies from "../simulation/Strategies.ts"

/** A bad flag value, or a run that could not be done. */
export class SimulateError extends Schema.Error<SimulateError>("elevenlabs-resilience/SimulateError")({
  _tag: Schema.tag("SimulateError"),
  message: Schema.String
}) {}

/** The raw flag values (what `effect/cli` parsed). */
export interface SimulateInput extends RateInput {
  readonly plan: string
  readonly model: string
  readonly pattern: string
  readonly requests: Option.Option<number>
  readonly duration: Option.Option<string>
  readonly chars: string
  readonly failureRate: Option.Option<number>
  readonly credits: Option.Option<number>
  readonly seed: number
  readonly jitter: string
  readonly strategy: string
  readonly compare: boolean
  readonly config: Option.Option<string>
  readonly json: boolean
}

/** Defaults of every flag that has one. */
export const defaults = {
  plan: "pro",
  model: "eleven_multilingual_v2",
  pattern: "steady",
  chars: "100-1000",
  seed: 1,
  jitter: "full",
  strategy: "resilient"
} as const

/** Parses `--duration`: `N` seconds, or with a unit `ms`, `s`, `m`, `h`, `d`. */
export const parseDuration = (s: string): Effect.Effect<number, SimulateError> => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$/.exec(s)
  if (m === null) {
    return Effect.fail(new SimulateError({ message: `--duration must be a number of seconds or N ms|s|m|h|d, got "${s}"` }))
  }
  const n = Number(m[1])
  const unit = m[2] ?? "s"
  const factor = unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" || unit === "min" ? 60_000 : unit === "h" ? 3_600_000 : 86_400_000
  if (n <= 0) return Effect.fail(new SimulateError({ message: `--duration must be positive, got "${s}"` }))
  return Effect.succeed(n * factor)
}

const notOneOf = (flag: string, value: string, choices: ReadonlyArray<string>): SimulateError =>
  new SimulateError({ message: `--${flag} must be one of ${choices.join(", ")}; got "${value}"` })

const oneOf = (flag: string, value: string, choices: ReadonlyArray<string>): Effect.Effect<void, SimulateError> =>
  choices.includes(value) ? Effect.void : Effect.fail(notOneOf(flag, value, choices))

/** The strategies `--compare` and `--strategy` can use (the registry, by default). */
export const availableStrategies = (): ReadonlyArray<Strategies.Strategy> => Strategies.registry

/**
 * Checks the flags and builds the runs they ask for (one per strategy).
 * `config` is the parsed `--config` JSON, read by the caller.
 */
export const toRuns = (
  input: SimulateInput,
  config: unknown,
  available: ReadonlyArray<Strategies.Strategy> = availableStrategies()
): Effect.Effect<ReadonlyArray<Runner.RunOptions>, SimulateError> =>
  Effect.gen(function*() {
    const plan = input.plan
    if (!isPlanName(plan)) return yield* notOneOf("plan", plan, planNames)
    const pattern = input.pattern
    if (!Patterns.isPatternName(pattern)) return yield* notOneOf("pattern", pattern, Patterns.patternNames)
    yield* oneOf("jitter", input.jitter, Strategies.jitterNames)
    const jitter = input.jitter as Strategies.JitterName
    // The simulator serves its model list only: any other model would fail every request.
    const model = Checks.modelProblem(input.model)
    if (model !== undefined) return yield* new SimulateError({ message: model })
    const chars = yield* Patterns.parseChars(input.chars).pipe(
      Effect.mapError((e) => new SimulateError({ message: e.message }))
    )
    const durationMs = Option.isSome(input.duration) ? yield* parseDuration(input.duration.value) : undefined
    const failureRate = Option.getOrUndefined(input.failureRate)
    if (failureRate !== undefined && !(failureRate >= 0 && failureRate <= 1)) {
      return yield* new SimulateError({ message: `--failure-rate must be within 0..1, got ${failureRate}` })
    }
    const concurrency = Option.getOrUndefined(input.concurrency)
    if (concurrency !== undefined && concurrency < 1) {
      return yield* new SimulateError({ message: `--concurrency must be at least 1, got ${concurrency}` })
    }
    const credits = Option.getOrUndefined(input.credits)
    if (credits !== undefined && credits < 0) {
      return yield* new SimulateError({ message: `--credits must not be negative, got ${credits}` })
    }
    let chosen: ReadonlyArray<Strategies.Strategy>
    if (input.compare) chosen = available
    else {
      if (!Strategies.isStrategyName(input.strategy)) {
        return yield* notOneOf("strategy", input.strategy, Strategies.strategyNames)
      }
      const found = Strategies.find(input.strategy, available)
      if (found === undefined) {
        return yield* new SimulateError({
          message: `--strategy ${input.strategy} is not available in this build; available: ${
            available.map((s) => s.name).join(", ")
          }`
        })
      }
      chosen = [found]
    }
    const traffic: Patterns.TrafficOptions = {
      pattern,
      requests: Option.getOrUndefined(input.requests),
      durationMs,
      rps: Option.getOrUndefined(input.rps),
      startRps: Option.getOrUndefined(input.startRps),
      endRps: Option.getOrUndefined(input.endRps),
      bursts: Option.getOrUndefined(input.bursts),
      chars,
      seed: input.seed
    }
    // Resolve once here so bad traffic fails before anything runs.
    yield* Patterns.resolve(traffic).pipe(Effect.mapError((e) => new SimulateError({ message: e.message })))
    return chosen.map((strategy): Runner.RunOptions => ({
      traffic,
      strategy,
      plan,
      model: input.model,
      concurrency,
      failureRate,
      credits,
      jitter,
      config
    }))
  })

/**
 * Reads and checks `--config FILE` (JSON), if given, before any run, so a
 * bad file is one clear line (`validate-config` lists every fix).
 */
export const readConfig = (path: Option.Option<string>): Effect.Effect<unknown, CliFailure.CliFailure, FileSystem.FileSystem> =>
  Checks.readConfig("simulate", path)

/**
 * Runs what the flags ask for and returns the text to print (table or JSON);
 * writes the HTML report when `--html` is given.
 */
export const execute = (
  input: SimulateInput,
  available?: ReadonlyArray<Strategies.Strategy> | undefined
): Effect.Effect<
  { readonly output: string; readonly reports: ReadonlyArray<Report.Report> },
  SimulateError | CliFailure.CliFailure,
  FileSystem.FileSystem
> =>
  Effect.gen(function*() {
    const config = yield* readConfig(input.config)
    const runs = yield* toRuns(input, config, available)
    // Before the run: a report that cannot be written is known now, not after it.
    yield* Checks.writableOption("simulate", "--html", input.html)
    const reports: Array<Report.Report> = []
    for (const run of runs) {
      reports.push(
        yield* Runner.run(run).pipe(Effect.mapError((e) => new SimulateError({ message: e.message })))
      )
    }
    if (Option.isSome(input.html)) yield* Checks.writeFile("simulate", "--html", input.html.value, Html.render(reports))
    return { output: input.json ? Report.toJson(reports) + "\n" : Report.toText(reports), reports }
  })

/** The command's flags. */
export const flags = {
  ...rateFlags,
  plan: Flag.String("plan").pipe(Flags.withDefault(`Plan: ${planNames.join(", ")}.`, defaults.plan)),
  model: Flag.String("model").pipe(Flags.withDefault("TTS model id (one the simulator serves).", defaults.model)),
  pattern: Flag.String("pattern").pipe(
    Flags.withDefault(`Traffic pattern: ${Patterns.patternNames.join(", ")}.`, defaults.pattern)
  ),
  requests: Flag.Int("requests").pipe(
    Flags.optional("Number of requests.", "1000 for steady and chaos, 100 for burst; ramp-up and diurnal: rate x span")
  ),
  duration: Flag.String("duration").pipe(
    Flags.optional("Span of the run: N seconds or N ms|s|m|h|d.", "--requests / --rps; ramp-up 60 s, diurnal 24 h, bursts over 60 s")
  ),
  chars: Flag.String("chars").pipe(Flags.withDefault("Text length: N or a-b.", defaults.chars)),
  failureRate: Flag.Finite("failure-rate").pipe(
    Flags.optional("Fault probability per request, 0..1.", "0; chaos 0.1")
  ),
  credits: Flag.Finite("credits").pipe(Flags.optional("Credits of the account.", "no limit")),
  seed: Flag.Int("seed").pipe(Flags.withDefault("Seed of the run.", defaults.seed)),
  jitter: Flag.String("jitter").pipe(
    Flags.withDefault(`Jitter of the resilient strategy: ${Strategies.jitterNames.join(", ")}.`, defaults.jitter)
  ),
  strategy: Flag.String("strategy").pipe(
    Flags.withDefault(
      `Strategy: ${Strategies.strategyNames.join(", ")} (seed-template: the old name of p-queue-recipe).`,
      defaults.strategy
    )
  ),
  compare: Flags.boolean("compare", "Run every available strategy on the same traffic."),
  config: Flags.config(),
  json: Flags.boolean("json", "Print one JSON document instead of a table.")
} as const

/** `simulate`: the command. */
export const simulate = Command.make("simulate", flags, (input) =>
  execute(input).pipe(
    Effect.flatMap(({ output }) => Console.log(output.trimEnd())),
    // A bad flag is the user's, not a crash: one line on stderr, exit code 1 (main.ts prints it).
    Effect.mapError(CliFailure.from("simulate", "InvalidFlag"))
  )).pipe(
    Command.withDescription(
      "Rehearse traffic against a plan in virtual time (a simulated day in seconds) and report: text, JSON or HTML."
    )
  )
