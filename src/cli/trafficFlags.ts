/**
 * The traffic flags `simulate` and `load-test` share, and their checks: the
 * same names, meaning and messages, written once. What differs between the
 * two (the help text of a few flags, load-test's real-time defaults) is
 * passed in by the command.
 *
 * @since 0.1.0
 */
import { Effect, Option } from "effect"
import { Flag } from "effect/cli"
import { isPlanName, type PlanName, planNames } from "../resilience/Plans.ts"
import * as Patterns from "../simulation/Patterns.ts"
import * as Strategies from "../simulation/Strategies.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"

/** What the shared flags parse to. */
export interface TrafficInput {
  readonly plan: string
  readonly strategy: string
  readonly pattern: string
  readonly requests: Option.Option<number>
  readonly duration: Option.Option<string>
  readonly rps: Option.Option<number>
  readonly startRps: Option.Option<number>
  readonly endRps: Option.Option<number>
  readonly bursts: Option.Option<number>
  readonly concurrency: Option.Option<number>
  readonly chars: string
  readonly failureRate: Option.Option<number>
  readonly seed: number
  readonly jitter: string
  readonly html: Option.Option<string>
  readonly conversations: Option.Option<number>
}

/** The pattern name of conversations over the real-time socket (`Conversations.ts`), not a request schedule. */
export const sessionsPattern = "sessions"

/** Defaults of the sessions shape. */
export const sessionsDefaults = { conversations: 20, durationMs: 5 * 60_000 } as const

/** The defaults both commands share. */
export const trafficDefaults = {
  plan: "pro",
  strategy: "resilient",
  pattern: "steady",
  seed: 1,
  jitter: "full"
} as const

/** The help texts that differ between the commands: `[description, default]` of a flag, or its description. */
export interface TrafficHelp {
  readonly plan: string
  readonly requests: string
  readonly duration: readonly [string, string]
  readonly chars: string
  readonly failureRate: string
  readonly seed: string
}

/** The shared flags, with the command's help texts. */
export const trafficFlags = (help: TrafficHelp) => ({
  plan: Flag.String("plan").pipe(Flags.withDefault(help.plan, trafficDefaults.plan)),
  strategy: Flag.String("strategy").pipe(
    Flags.withDefault(`Strategy: ${Strategies.strategyNames.join(", ")}.`, trafficDefaults.strategy)
  ),
  pattern: Flag.String("pattern").pipe(
    Flags.withDefault(
      `Traffic pattern: ${
        Patterns.patternNames.join(", ")
      }; or ${sessionsPattern} (voice-agent conversations over the real-time socket).`,
      trafficDefaults.pattern
    )
  ),
  requests: Flag.Int("requests").pipe(Flags.optional("Number of requests.", help.requests)),
  duration: Flag.String("duration").pipe(Flags.optional(...help.duration)),
  rps: Flag.Finite("rps").pipe(
    Flags.optional(
      "Requests per second (steady), end rate (ramp-up), peak (diurnal).",
      "10, ramp-up 20; or --requests / --duration"
    )
  ),
  startRps: Flag.Finite("start-rps").pipe(Flags.optional("Ramp-up start rate.", "1")),
  endRps: Flag.Finite("end-rps").pipe(Flags.optional("Ramp-up end rate.", "--rps, else 20")),
  bursts: Flag.Int("bursts").pipe(Flags.optional("Number of bursts for the burst pattern.", "1")),
  concurrency: Flag.Int("concurrency").pipe(Flags.optional("Callers at most at once.", "unbounded")),
  chars: Flag.String("chars").pipe(Flags.withDefault("Text length: N or a-b.", help.chars)),
  failureRate: Flag.Finite("failure-rate").pipe(Flags.optional(help.failureRate, "0; chaos 0.1")),
  seed: Flag.Int("seed").pipe(Flags.withDefault(help.seed, trafficDefaults.seed)),
  jitter: Flag.String("jitter").pipe(
    Flags.withDefault(`Jitter of the resilient strategy: ${Strategies.jitterNames.join(", ")}.`, trafficDefaults.jitter)
  ),
  html: Flag.String("html").pipe(Flags.optional("Write a self-contained HTML report to FILE.", "no HTML report")),
  conversations: Flag.Int("conversations").pipe(
    Flags.optional(
      `Conversations, each holding one session (--pattern ${sessionsPattern}).`,
      String(sessionsDefaults.conversations)
    )
  )
})

/** The shared flags, checked. */
export interface CheckedTraffic {
  readonly plan: PlanName
  readonly jitter: Strategies.JitterName
  /** What `--failure-rate` says, if given (each command has its own default). */
  readonly failureRate: number | undefined
  readonly concurrency: number | undefined
  /** The traffic the flags describe (each command may fill in defaults of its own). */
  readonly traffic: Patterns.TrafficOptions
}

const positive = (flag: string, value: Option.Option<number>, what = "a positive number"): string | undefined =>
  Option.isNone(value)
    ? undefined
    : Checks.numberProblem(flag, value.value, Number.isFinite(value.value) && value.value > 0, what)

/**
 * Checks the shared flags, in the order a user reads them, and refuses the
 * first bad one with a line naming the flag and what it accepts.
 */
export const checkTraffic = (
  command: string,
  input: TrafficInput
): Effect.Effect<CheckedTraffic, CliFailure.CliFailure> =>
  Effect.gen(function*() {
    const refuse = (problem: string | undefined) => Checks.refuse(command, problem)
    const plan = input.plan
    if (!isPlanName(plan)) return yield* CliFailure.make(command, Checks.notOneOf("--plan", plan, planNames))
    const pattern = input.pattern
    if (!Patterns.isPatternName(pattern)) {
      return yield* CliFailure.make(
        command,
        Checks.notOneOf("--pattern", pattern, [...Patterns.patternNames, sessionsPattern])
      )
    }
    yield* refuse(Checks.choiceProblem("--jitter", input.jitter, Strategies.jitterNames))
    yield* refuse(positive("--requests", input.requests, "a positive integer"))
    yield* refuse(positive("--rps", input.rps))
    yield* refuse(positive("--start-rps", input.startRps))
    yield* refuse(positive("--end-rps", input.endRps))
    yield* refuse(positive("--bursts", input.bursts, "a positive integer"))
    yield* refuse(positive("--concurrency", input.concurrency, "a positive integer"))
    const failureRate = Option.getOrUndefined(input.failureRate)
    if (failureRate !== undefined) {
      yield* refuse(
        Checks.failureRateProblem(failureRate)
      )
    }
    const chars = yield* Patterns.parseChars(input.chars).pipe(
      Effect.mapError((e) => CliFailure.make(command, e.message))
    )
    const durationMs = Option.isSome(input.duration)
      ? yield* Checks.durationOf(command, "--duration", input.duration.value)
      : undefined
    return {
      plan,
      jitter: input.jitter as Strategies.JitterName,
      failureRate,
      concurrency: Option.getOrUndefined(input.concurrency),
      traffic: {
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
    }
  })

/** What the sessions shape runs with, once its flags are checked. */
export interface CheckedSessions {
  readonly plan: PlanName
  readonly conversations: number
  readonly durationMs: number
  readonly failureRate: number
  readonly seed: number
}

/**
 * Checks the flags of `--pattern sessions`: the plan, `--conversations`, `--duration`, `--failure-rate` and
 * `--seed` apply; a request-schedule flag does not, and is refused with the line saying so.
 */
export const checkSessions = (
  command: string,
  input: TrafficInput
): Effect.Effect<CheckedSessions, CliFailure.CliFailure> =>
  Effect.gen(function*() {
    const plan = input.plan
    if (!isPlanName(plan)) return yield* CliFailure.make(command, Checks.notOneOf("--plan", plan, planNames))
    const schedule = [
      ["--requests", input.requests],
      ["--rps", input.rps],
      ["--start-rps", input.startRps],
      ["--end-rps", input.endRps],
      ["--bursts", input.bursts],
      ["--concurrency", input.concurrency]
    ] as const
    for (const [flag, value] of schedule) {
      if (Option.isSome(value)) {
        return yield* CliFailure.make(
          command,
          `${flag} does not apply to --pattern ${sessionsPattern}; use --conversations and --duration`
        )
      }
    }
    if (input.strategy !== trafficDefaults.strategy) {
      return yield* CliFailure.make(command, `--pattern ${sessionsPattern} runs the resilient strategy only`)
    }
    if (Option.isSome(input.html)) {
      return yield* CliFailure.make(command, `--html does not apply to --pattern ${sessionsPattern}; use --json`)
    }
    yield* Checks.refuse(command, positive("--conversations", input.conversations, "a positive integer"))
    const failureRate = Option.getOrUndefined(input.failureRate) ?? 0
    yield* Checks.refuse(command, Checks.failureRateProblem(failureRate))
    const durationMs = Option.isSome(input.duration)
      ? yield* Checks.durationOf(command, "--duration", input.duration.value)
      : sessionsDefaults.durationMs
    return {
      plan,
      conversations: Option.getOrElse(input.conversations, () => sessionsDefaults.conversations),
      durationMs,
      failureRate,
      seed: input.seed
    }
  })

/** The strategy `--strategy` names (an old name too) among `available`, or the line refusing it. */
export const strategyOf = (
  command: string,
  name: string,
  available: ReadonlyArray<Strategies.Strategy>
): Effect.Effect<Strategies.Strategy, CliFailure.CliFailure> =>
  Effect.gen(function*() {
    if (!Strategies.isStrategyName(name)) {
      return yield* CliFailure.make(command, Checks.notOneOf("--strategy", name, Strategies.strategyNames))
    }
    const found = Strategies.find(name, available)
    if (found === undefined) {
      return yield* CliFailure.make(
        command,
        `--strategy ${name} is not available in this build; use one of ${available.map((s) => s.name).join(", ")}`
      )
    }
    return found
  })
