/**
 * `elevenlabs-resilience simulate`: rehearse a traffic pattern against a plan
 * in virtual time, with one strategy or all of them side by side.
 *
 * The flags are parsed by `effect/cli` as strings and numbers; {@link toRuns}
 * checks them (`trafficFlags.ts`, shared with `load-test`) and turns them into
 * runner options, so every bad value gets one clear line naming the flag and
 * the accepted values. The
 * default strategy is `resilient` (this library's stack): what a user of the
 * library rehearses; `--strategy naive` or `--compare` show the others.
 *
 * @since 0.1.0
 */
import { Console, Effect, FileSystem, Option, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import { planNames } from "../resilience/Plans.ts"
import * as Html from "../simulation/Html.ts"
import * as Patterns from "../simulation/Patterns.ts"
import * as Report from "../simulation/Report.ts"
import * as Runner from "../simulation/Runner.ts"
import * as Sessions from "../simulation/Sessions.ts"
import * as SessionsRun from "../simulation/SessionsRun.ts"
import * as Strategies from "../simulation/Strategies.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"
import {
  checkSessions,
  checkTraffic,
  sessionsPattern,
  strategyOf,
  trafficDefaults,
  trafficFlags,
  type TrafficInput
} from "./trafficFlags.ts"

/** A run that could not be done (a bad flag is a {@link CliFailure.CliFailure}). */
export class SimulateError extends Schema.Error<SimulateError>("elevenlabs-resilience/SimulateError")({
  _tag: Schema.tag("SimulateError"),
  message: Schema.String
}) {}

/** The raw flag values (what `effect/cli` parsed). */
export interface SimulateInput extends TrafficInput {
  readonly model: string
  readonly credits: Option.Option<number>
  readonly compare: boolean
  readonly config: Option.Option<string>
  readonly json: boolean
}

/** Defaults of every flag that has one. */
export const defaults = {
  ...trafficDefaults,
  model: "eleven_multilingual_v2",
  chars: "100-1000"
} as const

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
): Effect.Effect<ReadonlyArray<Runner.RunOptions>, SimulateError | CliFailure.CliFailure> =>
  Effect.gen(function*() {
    const { plan, jitter, failureRate, concurrency, traffic } = yield* checkTraffic("simulate", input)
    // The simulator serves its model list only: any other model would fail every request.
    yield* Checks.refuse("simulate", Checks.modelProblem(input.model))
    const credits = Option.getOrUndefined(input.credits)
    if (credits !== undefined) {
      yield* Checks.refuse("simulate", Checks.numberProblem("--credits", credits, credits >= 0, "0 or more"))
    }
    const chosen = input.compare ? available : [yield* strategyOf("simulate", input.strategy, available)]
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

/** `--pattern sessions`: conversations over the real-time socket in virtual time; the text (table or JSON). */
const sessions = (input: SimulateInput): Effect.Effect<string, SimulateError | CliFailure.CliFailure> =>
  Effect.gen(function*() {
    const checked = yield* checkSessions("simulate", input)
    yield* Checks.refuse("simulate", Checks.modelProblem(input.model))
    if (input.compare) {
      return yield* CliFailure.make("simulate", `--compare does not apply to --pattern ${sessionsPattern}`)
    }
    if (Option.isSome(input.config)) {
      return yield* CliFailure.make("simulate", `--config does not apply to --pattern ${sessionsPattern}`)
    }
    const credits = Option.getOrUndefined(input.credits)
    if (credits !== undefined) {
      yield* Checks.refuse("simulate", Checks.numberProblem("--credits", credits, credits >= 0, "0 or more"))
    }
    const summary = yield* SessionsRun.run({
      conversations: { conversations: checked.conversations, durationMs: checked.durationMs },
      seed: checked.seed,
      plan: checked.plan,
      model: input.model,
      failureRate: checked.failureRate,
      credits
    }).pipe(Effect.mapError((e) => new SimulateError({ message: e.message })))
    return input.json ? JSON.stringify(summary) + "\n" : Sessions.toText(summary)
  })

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
    if (input.pattern === sessionsPattern) return { output: yield* sessions(input), reports: [] }
    const config = yield* Checks.readConfig("simulate", input.config)
    const runs = yield* toRuns(input, config, available)
    // Before the run: a report that cannot be written is known now, not after it.
    yield* Checks.writableOption("simulate", "--html", input.html)
    if (Option.isSome(input.html)) yield* Checks.chartLibrary("simulate")
    const reports: Array<Report.Report> = []
    for (const run of runs) {
      reports.push(
        yield* Runner.run(run).pipe(Effect.mapError((e) => new SimulateError({ message: e.message })))
      )
    }
    if (Option.isSome(input.html)) {
      const page = yield* Html.renderEffect(reports).pipe(Effect.mapError(CliFailure.from("simulate")))
      yield* Checks.writeFile("simulate", "--html", input.html.value, page)
    }
    return { output: input.json ? Report.toJson(reports) + "\n" : Report.toText(reports), reports }
  })

/** The command's flags. */
export const flags = {
  ...trafficFlags({
    plan: `Plan: ${planNames.join(", ")}.`,
    requests: "1000 for steady and chaos, 100 for burst; ramp-up and diurnal: rate x span",
    duration: [
      "Span of the run: N seconds or N ms|s|m|h|d.",
      "--requests / --rps; ramp-up 60 s, diurnal 24 h, bursts over 60 s"
    ],
    chars: defaults.chars,
    failureRate: "Fault probability per request, 0..1.",
    seed: "Seed of the run."
  }),
  model: Flag.String("model").pipe(Flags.withDefault("TTS model id (one the simulator serves).", defaults.model)),
  credits: Flag.Finite("credits").pipe(Flags.optional("Credits of the account.", "no limit")),
  compare: Flags.boolean("compare", "Run every available strategy on the same traffic."),
  config: Flags.config(),
  json: Flags.boolean("json", "Print one JSON document instead of a table.")
} as const

/** `simulate`: the command. */
export const simulate = Command.make("simulate", flags, (input) =>
  execute(input).pipe(
    Effect.flatMap(({ output }) => Console.log(output.trimEnd())),
    // A bad flag is the user's, not a crash: one line on stderr, exit code 1 (main.ts prints it).
    Effect.mapError(CliFailure.from("simulate"))
  )).pipe(
    Command.withDescription(
      "Rehearse traffic against a plan in virtual time (a simulated day in seconds) and report: text, JSON or HTML."
    )
  )
