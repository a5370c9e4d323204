/**
 * `elevenlabs-resilience capacity`: how many simultaneous broadcasts a plan
 * sustains within a target p95 latency, by simulation in virtual time
 * ({@link Capacity}). Prints the method, Little's law's bound and how it is
 * computed, each probe of the search, the answer and where it sits against
 * the bound, and how it compares with a community production-deployment
 * guide's "a concurrency of 5 carries about 100 broadcasts". `--json` prints
 * the same (the explanation as text fields) as one JSON document.
 *
 * @since 0.1.0
 */
import { Console, Effect, FileSystem, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { isPlanName, planNames } from "../resilience/Plans.ts"
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
  duration: "auto",
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
    const durationMs = input.duration === "auto"
      ? undefined
      : yield* Checks.durationOf("capacity", "--duration", input.duration)
    const cycleMs = Capacity.playMsOf(input.chars) + targetP95Ms
    yield* refuse(
      durationMs === undefined || durationMs >= cycleMs
        ? undefined
        : `--duration must be "auto" or at least one cycle, play + target = ${
          seconds(cycleMs)
        } here (each broadcast must ask at least once while measured), got "${input.duration}"`
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
const percent = (share: number): string => `${Math.round(share * 100)} %`
const fixed = (x: number, digits: number): string => String(Number(x.toFixed(digits)))

/** What the method and the bound depend on: the same fields in the options resolved and in the result. */
export type Setting = Pick<
  Capacity.CapacityResult,
  "plan" | "model" | "pool" | "limit" | "chars" | "playMs" | "targetP95Ms" | "durationMs" | "maxFailureShare" | "bound"
>

/** The explanation of a search, as lines: the same in the text (labelled) and in the JSON (joined). */
export interface Explanation {
  readonly method: ReadonlyArray<string>
  readonly bound: ReadonlyArray<string>
  readonly search: ReadonlyArray<string>
}

/** How a probe is run and judged, Little's law's bound and how it is computed, and how the search goes. */
export const explain = (s: Setting): Explanation => {
  const b = s.bound
  const cycleMs = s.playMs + s.targetP95Ms
  const span = s.durationMs === undefined
    ? `(auto: whole cycles for at least ${Capacity.minMeasuredSegments} segments)`
    : `(${seconds(s.durationMs)}, as asked)`
  return {
    method: [
      "a broadcast asks for its next segment (one TTS request through the resilient stack) as soon as the previous",
      "one has played; a segment's latency is the silence between two segments. A probe runs n broadcasts against the",
      `simulator in virtual time: a warm-up cycle (play + target = ${
        seconds(cycleMs)
      }) is not measured (the queue is still filling),`,
      `then every segment asked within the measured span counts ${span}.`,
      `n is sustained when their p95 latency is within the target and at most ${
        percent(s.maxFailureShare)
      } of them failed.`
    ],
    bound: [
      `${b.streams} broadcasts at most, by Little's law over the loop: n = throughput x (play + mean latency).`,
      `The pool serves at most limit / service = ${b.limit} / ${b.serviceMs} ms = ${
        fixed(b.maxThroughputPerS, 1)
      } segments/s, and a sustained level's`,
      `mean latency is within the target (mean <= p95 <= target), so n <= limit x (play + target) / service, divided`,
      `by (1 - ${
        fixed(b.maxFailureShare, 3)
      }) as a failed segment may hold no slot: ${b.limit} x (${b.playMs} + ${b.targetP95Ms}) / ${b.serviceMs} / ${
        fixed(1 - b.maxFailureShare, 3)
      } = ${fixed(b.exact, 1)}.`,
      `service: ${b.serviceMs} ms a segment, the simulator's mean for ${s.model} (${b.ttfbMs} ms to first byte + ${s.chars} chars x ${b.msPerChar} ms).`,
      ...(s.targetP95Ms > b.serviceMs
        ? [
          `From ${b.saturationStreams} broadcasts (limit x (play + service) / service) the pool is busy all the time; past that they`,
          `wait in the queue, each up to target - service = ${seconds(s.targetP95Ms - b.serviceMs)} at the bound.`
        ]
        : [
          `The target leaves no time to wait (target <= service): the bound is below ${b.saturationStreams}, where the pool`,
          "would start to be busy all the time (limit x (play + service) / service)."
        ])
    ],
    search: [
      "1 broadcast (is the target reachable at all), then the bound, then bisection between the highest level",
      "sustained and the lowest not: each split where Little's law puts the edge from the last saturated probe (its",
      `p95 + ${
        fixed(b.serviceMs / b.limit, 1)
      } ms per broadcast, service / limit), never past the midpoint; the midpoint otherwise.`
    ]
  }
}

const labelled = (label: string, lines: ReadonlyArray<string>): Array<string> =>
  lines.map((line, i) => `${i === 0 ? `${label}:`.padEnd(8) : " ".repeat(8)}${line}`)

/** The header: what is searched, how, the bound, and how the search goes. */
export const methodText = (s: Setting): string => {
  const e = explain(s)
  return [
    `capacity: simultaneous broadcasts on plan ${s.plan} (${s.pool} pool, limit ${s.limit}) with ${s.model}, segments of ${s.chars} chars (${
      seconds(s.playMs)
    } of speech), target p95 ${seconds(s.targetP95Ms)}`,
    ...labelled("method", e.method),
    ...labelled("bound", e.bound),
    ...labelled("search", e.search),
    ""
  ].join("\n")
}

const pad = (s: string | number, n: number) => String(s).padStart(n)

/** One line per probe (with a header line for the first). */
export const probeLine = (p: Capacity.Probe, first: boolean): string =>
  (first
    ? `${"phase".padEnd(11)} ${pad("streams", 7)} ${pad("measured", 8)} ${pad("p50", 9)} ${pad("p95", 9)} ${
      pad("mean", 9)
    } ${pad("failed", 6)} ${pad("busy", 5)} ${pad("in flight", 9)}  result\n`
    : "") +
  `${p.phase.padEnd(11)} ${pad(p.streams, 7)} ${pad(p.segments, 8)} ${pad(seconds(p.latencyMs.p50), 9)} ${
    pad(seconds(p.latencyMs.p95), 9)
  } ${pad(seconds(p.meanMs), 9)} ${pad(p.failed, 6)} ${pad(percent(p.utilization), 5)} ${pad(p.maxInFlight, 9)}  ${
    p.sustained ? "sustained" : "NOT sustained"
  }${failures(p)}`

const failures = (p: Capacity.Probe): string => {
  const reasons = Object.entries(p.failedByReason)
  return reasons.length === 0 ? "" : ` (failed: ${reasons.map(([reason, n]) => `${reason} ${n}`).join(", ")})`
}

/** The answer, and where it sits against the bound (with Little's law checked on the probe of the answer). */
export const answerLines = (r: Capacity.CapacityResult): Array<string> => {
  const at = r.probes.find((p) => p.streams === r.streams && p.sustained)
  const above = r.probes.find((p) => p.streams === r.streams + 1)
  const edge = [
    at === undefined ? undefined : `${at.streams} sustained (p95 ${seconds(at.latencyMs.p95)})`,
    above === undefined ? undefined : `${above.streams} not (p95 ${seconds(above.latencyMs.p95)}${failures(above)})`
  ].filter((x) => x !== undefined).join(", ")
  const answer = r.streams === 0
    ? `0: even one broadcast is not sustained within p95 ${
      seconds(r.targetP95Ms)
    } on ${r.plan} (limit ${r.limit}): ${edge}.`
    : `${r.capped ? "at least " : ""}${r.streams} simultaneous broadcasts within p95 ${
      seconds(r.targetP95Ms)
    } on ${r.plan} (${r.pool} pool, limit ${r.limit}): ${edge}${r.capped ? " (--max-streams)" : ""}.`
  const position = r.streams === 0
    ? `0 <= ${r.bound.streams}: the bound assumes a segment can arrive within the target; here not even one broadcast's does.`
    : r.withinBound
    ? `${r.streams} <= ${r.bound.streams}: ${r.bound.streams - r.streams} below the bound (${
      percent(r.streams / r.bound.streams)
    } of it).`
    : `${r.streams} > ${r.bound.streams}: ABOVE the bound, so its reasoning failed here (a mean latency above the p95? failed segments that held no slot?); the search went on past it.`
  const little = at === undefined || r.streams === 0 ? [] : [
    `At ${at.streams} the pool was ${percent(at.utilization)} busy: ${fixed(at.throughputPerS, 1)} segments/s x (${
      seconds(r.playMs)
    } play + ${seconds(at.meanMs)} mean latency) = ${
      Math.round((at.throughputPerS * (r.playMs + at.meanMs)) / 1000)
    } broadcasts by Little's law.`
  ]
  return [
    answer,
    position,
    ...little,
    `One broadcast alone: ${seconds(r.measuredServiceMs)} a segment on average (the bound's service time: ${
      seconds(r.serviceMs)
    }).`
  ]
}

/** The conclusion: the number, the bound, and the comparison with the production-deployment guide. */
export const resultText = (r: Capacity.CapacityResult): string => {
  const five = Capacity.perFive(r)
  const [answer, ...rest] = answerLines(r)
  return [
    "",
    ...labelled("answer", [answer!]),
    ...labelled("bound", rest),
    `guide:  "a concurrency of 5 can typically support ~100 simultaneous audio broadcasts" (a community production-deployment guide).`,
    `ours:   ${r.streams} on a limit of ${r.limit} = ${Math.round(five.broadcasts * 10) / 10} per 5 slots, ${
      Math.round(five.ratio * 100)
    } % of that figure, for ${r.chars}-char segments on ${r.model}.`,
    `        Longer segments or a faster model (Flash) carry more broadcasts per slot; shorter ones fewer.`
  ].join("\n")
}

/** The `--json` document: the result, the comparison, and the explanation as text. */
export const jsonOf = (r: Capacity.CapacityResult) => {
  const e = explain(r)
  const [answer, ...position] = answerLines(r)
  return {
    ...r,
    durationMs: r.durationMs ?? "auto",
    perFive: Capacity.perFive(r),
    explanation: {
      method: e.method.join(" "),
      bound: e.bound.join(" "),
      search: e.search.join(" "),
      answer: answer!,
      position: position.join(" ")
    }
  }
}

/** Runs the search, printing as it goes (or the JSON at the end). */
export const execute = (
  input: CapacityInput,
  print: (line: string) => Effect.Effect<void> = Console.log
): Effect.Effect<Capacity.CapacityResult, Capacity.CapacityError | CliFailure.CliFailure, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const config = yield* Checks.readConfig("capacity", input.config)
    const options = yield* toOptions(input, config)
    if (!input.json) yield* print(methodText(yield* Capacity.resolve(options)))
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
    yield* print(input.json ? JSON.stringify(jsonOf(result), null, 2) : resultText(result))
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
  duration: Flag.String("duration").pipe(
    Flags.withDefault(
      "Measured virtual span of each probe, after its warm-up cycle: \"auto\" (whole cycles for at least " +
        `${Capacity.minMeasuredSegments} segments) or N s|m, at least one cycle (play + target).`,
      defaults.duration
    )
  ),
  failureRate: Flag.Finite("failure-rate").pipe(
    Flags.withDefault("Fault probability per request in the simulator, 0..1.", defaults.failureRate)
  ),
  maxStreams: Flag.Int("max-streams").pipe(Flags.withDefault("Most broadcasts the search tries.", defaults.maxStreams)),
  seed: Flag.Int("seed").pipe(Flags.withDefault("Seed of the simulation.", defaults.seed)),
  config: Flags.config(),
  json: Flags.boolean("json", "Print the result, its probes and the explanation as one JSON document.")
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
