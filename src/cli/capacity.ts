/**
 * `elevenlabs-resilience capacity`: how many simultaneous broadcasts a plan
 * sustains within a target p95 latency, by simulation in virtual time
 * ({@link Capacity}). Prints the method, each probe and the number, and how it
 * compares with a community production-deployment guide's "a concurrency of
 * 5 carries about 100 broadcasts".
 *
 * @since 0.1.0
 */
import { Console, Effect, FileSystem, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { isPlanName, planNames, poolOfModel } from "../resilience/Plans.ts"
import * as Capacity from "../simulation/Capacity.ts"
import * as LoadTest from "../simulation/LoadTest.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"

/** The raw flag values. */
export interface CapacityInput {
  readonly plan: string
  readonly model: string
  readonly chars: number
  readonly targetP95: string
  readonly duration: string
  readonly failureRate: number
  readonly maxStreams: number
  readonly seed: number
  readonly config: Option.Option<string>
  readonly json: boolean
}

/** Defaults of the flags. */
export const defaults = {
  plan: "pro",
  model: "eleven_multilingual_v2",
  chars: 250,
  targetP95: "2s",
  duration: "5m",
  failureRate: 0,
  maxStreams: 10_000,
  seed: 1
} as const

/** Checks the flags (each refusal names its flag) and builds the search's options. */
export const toOptions = (
  input: CapacityInput,
  config: unknown
): Effect.Effect<Capacity.CapacityOptions, Capacity.CapacityError | CliFailure.CliFailure> =>
  Effect.gen(function*() {
    const refuse = (problem: string | undefined) => Checks.refuse("capacity", problem)
    if (!isPlanName(input.plan)) {
      return yield* CliFailure.make("capacity", Checks.notOneOf("--plan", input.plan, planNames))
    }
    // A simulation: the simulator serves its model list only.
    yield* refuse(Checks.modelProblem(input.model))
    yield* refuse(
      Checks.numberProblem("--chars", input.chars, input.chars >= 1 && input.chars <= 10_000, "within 1..10000")
    )
    const targetP95Ms = yield* Checks.durationOf("capacity", "--target-p95", input.targetP95)
    const durationMs = yield* Checks.durationOf("capacity", "--duration", input.duration)
    yield* refuse(
      durationMs >= 1000
        ? undefined
        : `--duration must be at least 1s (each probe needs time to fill), got "${input.duration}"`
    )
    yield* refuse(
      Checks.failureRateProblem(input.failureRate)
    )
    yield* refuse(Checks.numberProblem("--max-streams", input.maxStreams, input.maxStreams >= 1, "a positive integer"))
    yield* LoadTest.checkConfig(config).pipe(Effect.mapError((e) => CliFailure.make("capacity", e.message)))
    const options: Capacity.CapacityOptions = {
      plan: input.plan,
      model: input.model,
      chars: input.chars,
      targetP95Ms,
      durationMs,
      failureRate: input.failureRate,
      maxStreams: input.maxStreams,
      seed: input.seed,
      strategy: LoadTest.strategyOf("resilient"),
      config
    }
    // What the library checks beyond the flags (the plan has the model's pool) before anything runs.
    yield* Capacity.resolve(options)
    return options
  })

const seconds = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`)

/** The header: what is searched and how. */
export const methodText = (o: Capacity.CapacityOptions): string => {
  const chars = o.chars ?? 250
  const pool = poolOfModel(o.model ?? "eleven_multilingual_v2")
  return [
    `capacity: simultaneous broadcasts on plan ${o.plan} (${pool} pool), ${o.model}, segments of ${chars} chars (~${
      (chars / 15).toFixed(1)
    } s of speech), target p95 ${seconds(o.targetP95Ms ?? 2000)}`,
    "method: a broadcast asks for its next segment (one TTS request through the resilient stack) as soon as the previous",
    "        one has played; the segment's latency is the silence between two segments. Each probe runs n broadcasts for",
    `        ${
      seconds(o.durationMs ?? 300_000)
    } of virtual time against the simulator; n is sustained when the p95 latency is within`,
    "        the target and at most 1 % of segments failed. Search: n = 1, 2, 4, ... until one fails, then bisection.",
    ""
  ].join("\n")
}

const pad = (s: string | number, n: number) => String(s).padStart(n)

/** One line per probe (with a header line for the first). */
export const probeLine = (p: Capacity.Probe, first: boolean): string =>
  (first
    ? `${"phase".padEnd(10)} ${pad("streams", 7)} ${pad("segments", 8)} ${pad("p50", 9)} ${pad("p95", 9)} ${
      pad("failed", 6)
    } ${pad("in flight", 9)}  result\n`
    : "") +
  `${p.phase.padEnd(10)} ${pad(p.streams, 7)} ${pad(p.segments, 8)} ${pad(seconds(p.latencyMs.p50), 9)} ${
    pad(seconds(p.latencyMs.p95), 9)
  } ${pad(p.failed, 6)} ${pad(p.maxInFlight, 9)}  ${p.sustained ? "sustained" : "NOT sustained"}`

/** The conclusion: the number and the comparison with the production-deployment guide. */
export const resultText = (r: Capacity.CapacityResult): string => {
  const five = Capacity.perFive(r)
  return [
    "",
    `answer: ${r.capped ? "at least " : ""}${r.streams} simultaneous broadcasts within p95 ${
      seconds(r.targetP95Ms)
    } on ${r.plan} (limit ${r.limit}).`,
    `        one segment takes ${seconds(r.serviceMs)} to generate and plays ${
      seconds(r.playMs)
    }; at 100 % utilization Little's law`,
    `        would allow ${r.utilizationBound} (limit x (play + service) / service); the p95 target leaves room for queueing.`,
    `guide: "a concurrency of 5 can typically support ~100 simultaneous audio broadcasts" (a community production-deployment guide).`,
    `ours:  ${r.streams} on a limit of ${r.limit} = ${Math.round(five.broadcasts * 10) / 10} per 5 slots, ${
      Math.round(five.ratio * 100)
    } % of that figure, for ${r.chars}-char segments on ${r.model}.`,
    `       Longer segments or a faster model (Flash) carry more broadcasts per slot; shorter ones fewer.`
  ].join("\n")
}

/** Runs the search, printing as it goes (or the JSON at the end). */
export const execute = (
  input: CapacityInput,
  print: (line: string) => Effect.Effect<void> = Console.log
): Effect.Effect<Capacity.CapacityResult, Capacity.CapacityError | CliFailure.CliFailure, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const config = yield* Checks.readConfig("capacity", input.config)
    const options = yield* toOptions(input, config)
    if (!input.json) yield* print(methodText(options))
    let first = true
    const result = yield* Capacity.search(
      options,
      input.json ? undefined : (p) =>
        Effect.suspend(() => {
          const line = probeLine(p, first)
          first = false
          return print(line)
        })
    )
    yield* print(
      input.json ? JSON.stringify({ ...result, perFive: Capacity.perFive(result) }, null, 2) : resultText(result)
    )
    return result
  })

/** The command's flags. */
export const flags = {
  plan: Flag.String("plan").pipe(Flags.withDefault(`Plan: ${planNames.join(", ")}.`, defaults.plan)),
  model: Flag.String("model").pipe(Flags.withDefault("TTS model id (decides the pool).", defaults.model)),
  chars: Flag.Int("chars").pipe(Flags.withDefault("Characters per segment.", defaults.chars)),
  targetP95: Flag.String("target-p95").pipe(
    Flags.withDefault("Target p95 segment latency: N seconds or N ms|s|m.", defaults.targetP95)
  ),
  duration: Flag.String("duration").pipe(Flags.withDefault("Virtual span of each probe.", defaults.duration)),
  failureRate: Flag.Finite("failure-rate").pipe(
    Flags.withDefault("Fault probability per request in the simulator, 0..1.", defaults.failureRate)
  ),
  maxStreams: Flag.Int("max-streams").pipe(Flags.withDefault("Most broadcasts the search tries.", defaults.maxStreams)),
  seed: Flag.Int("seed").pipe(Flags.withDefault("Seed of the simulation.", defaults.seed)),
  config: Flags.config(),
  json: Flags.boolean("json", "Print the result as one JSON document.")
} as const

/** `capacity`: the command. */
export const capacity = Command.make("capacity", flags, (input) =>
  execute(input).pipe(
    Effect.asVoid,
    // Limit changes and retries of every probe would drown the table (unless --log-level asks).
    Flags.quietUnlessAsked("Error"),
    // One line on stderr, exit code 1 (main.ts prints it).
    Effect.mapError(CliFailure.from("capacity"))
  )).pipe(
    Command.withDescription(
      "How many simultaneous broadcasts a plan sustains within a target p95 latency, by simulation in virtual time."
    )
  )
