/**
 * `elevenlabs-resilience demo` (what `npm start` runs): the whole library in
 * about 30 seconds, with no key and no credits.
 *
 * 1. Starts the simulator server on a free loopback port (plan `creator`:
 *    5 concurrent Multilingual requests) with chaos: 10 % of requests meet a
 *    fault (`system_busy`, 500s, a 503 page, resets, cut streams).
 * 2. Serves `/health`, `/ready` and `/metrics` on a free port (or
 *    `--metrics-port`) while it runs, and prints their URLs.
 * 3. Sends bursts of TTS requests through the full resilient stack in real
 *    time, with a progress bar, sized so the run takes about `--seconds`.
 * 4. Prints the report, writes the HTML report (`--html`, default
 *    `report.html`) and says how to open it and how to run the same against
 *    the real API.
 *
 * The demo never reads `ELEVENLABS_API_KEY`: it cannot spend real credits.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Console, Context, Effect, FileSystem, Layer, Option, Redacted, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import { HttpServer } from "effect/http"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { isPlanName, limitsOf, type PlanName, planNames, poolOfModel } from "../resilience/Plans.ts"
import * as Html from "../simulation/Html.ts"
import * as LoadTest from "../simulation/LoadTest.ts"
import type * as Patterns from "../simulation/Patterns.ts"
import * as Progress from "../simulation/Progress.ts"
import * as Report from "../simulation/Report.ts"
import * as Strategies from "../simulation/Strategies.ts"
import * as Server from "../simulator/Server.ts"
import * as Simulator from "../simulator/Simulator.ts"
import * as Health from "../telemetry/Health.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"
import { registerReadiness } from "./smoke.ts"

/** A demo run that failed (a bad flag, a port taken, a path not writable are {@link CliFailure.CliFailure}s). */
export class DemoError extends Schema.Error<DemoError>("elevenlabs-resilience/DemoError")({
  _tag: Schema.tag("DemoError"),
  message: Schema.String
}) {}

/** The raw flag values. */
export interface DemoInput {
  readonly seconds: number
  readonly metricsPort: Option.Option<number>
  readonly html: string
  readonly plan: string
  readonly failureRate: number
  readonly seed: number
}

/** Defaults of the flags. */
export const defaults = {
  seconds: 30,
  html: "report.html",
  plan: "creator",
  failureRate: 0.1,
  seed: 1
} as const

/** The model of the demo's requests (the standard pool: the tightest limit). */
export const model = "eleven_multilingual_v2"

/** Mean service time of one request of 100-300 characters on the simulator's Multilingual profile, in seconds. */
const meanServiceSeconds = 0.3 + 0.004 * 200

/**
 * The demo's traffic for a run of about `seconds`: bursts every ~10 s over
 * the first 60 % of the run, `0.75 x` what the plan's pool can serve in that
 * time, so the queue fills at each burst and drains before the end.
 */
export const trafficOf = (seconds: number, plan: PlanName, seed: number): Patterns.TrafficOptions => {
  const limit = limitsOf(plan)[poolOfModel(model)]
  const requests = Math.max(4, Math.round((limit / meanServiceSeconds) * seconds * 0.75))
  const bursts = Math.max(1, Math.min(requests, Math.floor(seconds / 10)))
  return {
    pattern: "burst",
    requests,
    bursts,
    durationMs: bursts === 1 ? undefined : seconds * 600,
    chars: { min: 100, max: 300 },
    seed
  }
}

/** What the demo printed and wrote. */
export interface DemoOutput {
  readonly report: Report.Report
  readonly htmlPath: string
}

/** Runs the demo, printing as it goes. */
export const execute = (
  input: DemoInput
): Effect.Effect<
  DemoOutput,
  DemoError | CliFailure.CliFailure,
  FileSystem.FileSystem | import("effect/http").HttpClient.HttpClient
> =>
  Effect.scoped(Effect.gen(function*() {
    const refuse = (problem: string | undefined) => Checks.refuse("demo", problem)
    yield* refuse(
      Checks.numberProblem("--seconds", input.seconds, input.seconds >= 1 && input.seconds <= 600, "within 1..600")
    )
    if (!isPlanName(input.plan)) return yield* CliFailure.make("demo", Checks.notOneOf("--plan", input.plan, planNames))
    yield* refuse(
      Checks.failureRateProblem(input.failureRate)
    )
    const port = Option.getOrElse(input.metricsPort, () => 0)
    yield* refuse(
      Checks.numberProblem(
        "--metrics-port",
        port,
        Number.isInteger(port) && port >= 0 && port <= 65535,
        "a TCP port (0..65535)"
      )
    )
    const plan = input.plan
    const traffic = trafficOf(input.seconds, plan, input.seed)
    const resolved = yield* LoadTest.resolveTraffic(traffic).pipe(
      Effect.mapError((e) => new DemoError({ message: e.message }))
    )
    // Before the run: the report it ends with must be writable.
    yield* Checks.writablePath("demo", "--html", input.html)
    yield* Checks.chartLibrary("demo")

    // The simulator's own fault mix: no hangs, so the demo keeps to its length.
    const server = yield* Server.serve({
      port: 0,
      plan,
      seed: input.seed,
      faults: input.failureRate > 0 ? Simulator.faultMix(input.failureRate) : Simulator.noFaults,
      maxSamples: 16 * resolved.requests + 16
    }).pipe(Effect.mapError((e) => CliFailure.listenFailure("demo", "the simulator", "127.0.0.1", 0, undefined, e)))

    const checks = yield* Health.make()
    const health = yield* Layer.build(
      Health.layerServer({ port, host: "127.0.0.1" }).pipe(Layer.provide(Layer.succeed(Health.HealthChecks, checks)))
    ).pipe(
      Effect.mapError((e) =>
        CliFailure.listenFailure(
          "demo",
          "/health and /metrics",
          "127.0.0.1",
          port,
          Option.isSome(input.metricsPort) ? "--metrics-port" : undefined,
          e
        )
      )
    )
    const address = Context.get(health, HttpServer.HttpServer).address
    const healthBase = `http://127.0.0.1:${address._tag === "UnixPathAddress" ? port : address.port}`

    const limit = limitsOf(plan)[poolOfModel(model)]
    yield* Console.log(
      [
        `elevenlabs-resilience demo: ${resolved.requests} TTS requests in ${resolved.bursts} burst${
          resolved.bursts === 1 ? "" : "s"
        }, ~${input.seconds} s, ${Math.round(input.failureRate * 100)} % chaos, through the full resilient stack`,
        `  simulator   ${server.url}  (plan ${plan}: ${limit} concurrent ${model} requests; no real key, no credits)`,
        `  health      ${healthBase}/health`,
        `  ready       ${healthBase}/ready`,
        `  metrics     ${healthBase}/metrics`,
        ""
      ].join("\n")
    )

    const strategy = Strategies.makeResilient({
      onStack: (resilience, pool) => registerReadiness(checks, resilience, pool)
    })
    const report = yield* LoadTest.run({
      traffic,
      strategy,
      baseUrl: server.url,
      apiKey: Redacted.make("sim-key"),
      plan,
      model,
      failureRate: input.failureRate,
      simulatorStats: true,
      timeLimitMs: input.seconds * 3_000 + 30_000,
      progress: Progress.sink({ label: "demo" })
    }).pipe(Effect.mapError((e) => new DemoError({ message: e.message })))

    const htmlPath = resolve(input.html)
    const page = yield* Html.renderEffect([report]).pipe(Effect.mapError(CliFailure.from("demo")))
    yield* Checks.writeFile("demo", "--html", htmlPath, page)
    const s = report.summary
    yield* Console.log(
      [
        Report.toText([report]).trimEnd(),
        "",
        `${s.succeeded} of ${s.requests} succeeded${
          s.failed === 0
            ? ""
            : ` (${Object.entries(s.failedByReason).map(([k, v]) => `${v} ${k}`).join(", ")} after the stack's retries)`
        }; ${s.http429.tooManyConcurrentRequests} concurrency 429s reached the server; max ${s.maxInFlight} in flight of ${s.limit}.`,
        `HTML report (charts): ${htmlPath}`,
        `  open it: ${pathToFileURL(htmlPath).href}   (or: xdg-open ${input.html} / open ${input.html})`,
        "",
        "Next:",
        "  compare strategies in virtual time:  npx elevenlabs-resilience simulate --pattern burst --requests 200 --plan creator --compare --html compare.html",
        "  the same load against the real API (spends credits; use your plan):",
        "    ELEVENLABS_API_KEY=sk_... npx elevenlabs-resilience load-test --base-url https://api.elevenlabs.io \\",
        `      --plan ${plan} --model eleven_flash_v2_5 --pattern burst --requests 20 --chars 50 --html real.html`,
        "  a deployment check (one small request):  ELEVENLABS_API_KEY=sk_... npx elevenlabs-resilience smoke"
      ].join("\n")
    )
    return { report, htmlPath }
  }))

/** The command's flags. */
export const flags = {
  seconds: Flag.Finite("seconds").pipe(Flags.withDefault("About how long the demo runs (1..600).", defaults.seconds)),
  metricsPort: Flag.Int("metrics-port").pipe(
    Flags.optional("Port of /health, /ready and /metrics.", "a free one")
  ),
  html: Flag.String("html").pipe(Flags.withDefault("Where to write the HTML report.", defaults.html)),
  plan: Flag.String("plan").pipe(Flags.withDefault(`Simulated plan: ${planNames.join(", ")}.`, defaults.plan)),
  failureRate: Flag.Finite("failure-rate").pipe(
    Flags.withDefault("Share of requests that meet a fault, 0..1.", defaults.failureRate)
  ),
  seed: Flag.Int("seed").pipe(Flags.withDefault("Seed of the traffic and the simulator.", defaults.seed))
} as const

/** `demo`: the command `npm start` runs. */
export const demo = Command.make("demo", flags, (input) =>
  execute(input).pipe(
    Effect.provide(NodeHttpClient.layerUndici),
    // Retries and limit changes are in the report; per-event logs would drown the progress bar (unless --log-level asks).
    Flags.quietUnlessAsked("Error"),
    Effect.asVoid,
    // One line on stderr, exit code 1 (main.ts prints it).
    Effect.mapError(CliFailure.from("demo"))
  )).pipe(
    Command.withDescription(
      "The demo (npm start): a simulator server, bursts with chaos through the full stack in real time, /health and /metrics, a report and report.html. No key, no credits."
    )
  )
