/**
 * Simulation speed: a 24-hour `diurnal` day of N requests (plan `pro`,
 * Multilingual, 100-1000 characters, 20 % interactive lane) through this
 * library's full stack against the in-process simulator in virtual time, and
 * its virtual-to-wall ratio.
 *
 * Rows:
 * - the headline: `Runner.run` with the `resilient` strategy, i.e. what
 *   `elevenlabs-resilience simulate --pattern diurnal --duration 24h` runs:
 *   the full stack (`Resilient.make` with the config defaults) over the
 *   in-process face, tracing off, the report built from the recorder.
 * - `Runner.run` with the `naive` strategy (plain HTTP attempts, no policies):
 *   the simulator's and the runner's own cost.
 * - `direct driver`: `Resilient.layer` over `InProcess.layerSimulated` with
 *   their defaults (tracing on, scoped requests) under
 *   `TestClock`, arrivals from `Patterns.schedule`, the clock moved in 1-hour
 *   steps, like test/resilience/Resilient.test.ts: the stack as an
 *   application test would drive it, for comparison.
 *
 * Run alone: `node bench/simulation.ts [--quick]`.
 */
import { Clock, Context, Duration, Effect, Fiber, Layer, Redacted, References } from "effect"
import { TestClock } from "effect/testing"
import { pathToFileURL } from "node:url"
import * as Client from "../src/client/ElevenLabs.ts"
import * as Resilient from "../src/resilience/Resilient.ts"
import * as Patterns from "../src/simulation/Patterns.ts"
import * as Runner from "../src/simulation/Runner.ts"
import * as Strategies from "../src/simulation/Strategies.ts"
import * as InProcess from "../src/simulator/InProcess.ts"
import * as Simulator from "../src/simulator/Simulator.ts"
import { isQuick, nowMs, progress, type Result, round } from "./lib.ts"

export interface SimulationRow {
  readonly strategy: string
  readonly requests: number
  readonly succeeded: number
  readonly failed: number
  readonly virtualMs: number
  readonly wallMs: number
  /** virtual / wall. */
  readonly ratio: number
  /** Wall µs per request. */
  readonly usPerRequest: number
  readonly maxInFlight: number
  readonly limit: number
  readonly tooManyConcurrent: number
}

export interface Simulation {
  readonly rows: ReadonlyArray<SimulationRow>
}

const day = 24 * 3600 * 1000
const voice = "21m00Tcm4TlvDq8ikWAM"
const model = "eleven_multilingual_v2"
const lorem = " The quick brown fox jumps over the lazy dog while the narrator reads chapter one aloud."
/** Distinct texts of the given length (identical ones in flight would be coalesced). */
const textOf = (index: number, chars: number): string => {
  const head = `${index}.`
  return (head + lorem.repeat(Math.ceil(chars / lorem.length) + 1)).slice(0, Math.max(chars, head.length))
}

/** The day through `Resilient.layer` over the in-process simulator, in virtual time. */
export const direct = async (requests: number): Promise<SimulationRow> => {
  const t0 = nowMs()
  const body = Effect.gen(function*() {
    // Begin inside a clock wake-up (see docs/simulation.md, "Driving virtual time").
    yield* Effect.sleep(Duration.millis(1))
    const traffic = yield* Patterns.resolve({ pattern: "diurnal", requests, durationMs: day, seed: 1 })
    const arrivals = yield* Patterns.schedule(traffic)
    const context = yield* Layer.build(
      Resilient.layer({ apiKey: Redacted.make("sim-key"), limiter: { plan: "pro" } }).pipe(
        Layer.provideMerge(
          InProcess.layerSimulated({
            seed: 1,
            plan: "pro",
            apiKeys: [{ key: "sim-key", plan: "pro", characterLimit: 1e12 }],
            maxSamples: 16
          })
        )
      )
    )
    const client = Context.get(context, Client.ElevenLabs)
    const simulator = Context.get(context, Simulator.Simulator)
    const start = yield* Clock.currentTimeMillis
    let ok = 0
    let lastEnd = start
    const fibers: Array<Fiber.Fiber<void>> = []
    for (const a of arrivals) {
      const now = yield* Clock.currentTimeMillis
      const wait = start + a.atMs - now
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      fibers.push(
        yield* Effect.forkChild(
          client.textToSpeech.convert(voice, {
            text: textOf(a.index, a.chars),
            modelId: model,
            outputFormat: "mp3_22050_32"
          }).pipe(
            Resilient.withCallOptions({ lane: a.lane }),
            Effect.matchEffect({
              onSuccess: () => Effect.sync(() => void ok++),
              onFailure: () => Effect.void
            }),
            Effect.andThen(Clock.currentTimeMillis),
            Effect.map((end) => void (lastEnd = Math.max(lastEnd, end)))
          )
        )
      )
    }
    yield* Fiber.awaitAll(fibers)
    const stats = yield* simulator.stats
    return { ok, virtualMs: lastEnd - start, stats }
  }).pipe(Effect.scoped)
  const outcome = await Effect.runPromise(
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(body)
      while (fiber.pollUnsafe() === undefined) yield* TestClock.adjust(Duration.hours(1))
      return yield* Fiber.join(fiber)
    }).pipe(
      Effect.provide(TestClock.layer({ warningDelay: "1 hour" })),
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
  )
  const wallMs = nowMs() - t0
  return {
    strategy: "resilient (direct driver, tracing on)",
    requests,
    succeeded: outcome.ok,
    failed: requests - outcome.ok,
    virtualMs: outcome.virtualMs,
    wallMs: round(wallMs, 0),
    ratio: round(outcome.virtualMs / wallMs, 0),
    usPerRequest: round((wallMs * 1000) / requests, 1),
    maxInFlight: outcome.stats.pools.standard.maxInFlight,
    limit: outcome.stats.pools.standard.limit,
    tooManyConcurrent: outcome.stats.byDetailStatus["too_many_concurrent_requests"] ?? 0
  }
}

const once = async (
  strategy: Strategies.Strategy,
  requests: number,
  durationMs: number = day
): Promise<SimulationRow> => {
  const t0 = nowMs()
  const report = await Effect.runPromise(
    Runner.run({ traffic: { pattern: "diurnal", requests, durationMs, seed: 1 }, strategy, plan: "pro" }).pipe(
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
  )
  const wallMs = nowMs() - t0
  const s = report.summary
  return {
    strategy: `${strategy.name} (Runner.run)`,
    requests,
    succeeded: s.succeeded,
    failed: s.failed,
    virtualMs: s.virtualDurationMs,
    wallMs: round(wallMs, 0),
    ratio: round(s.virtualDurationMs / wallMs, 0),
    usPerRequest: round((wallMs * 1000) / requests, 1),
    maxInFlight: s.maxInFlight,
    limit: s.limit,
    tooManyConcurrent: s.http429.tooManyConcurrentRequests
  }
}

/** The registered `resilient` strategy when the registry has one, else the load tester's. */
const resilientStrategy = (): Strategies.Strategy => Strategies.resilient

/** The goal's day: 100,000 requests in 24 hours. */
export const goalRequests = 100_000

export const measure = async (options: { readonly quick?: boolean } = {}): Promise<Simulation> => {
  // Quick: a tenth of the requests in a tenth of the day, the same arrival rate (and the same subscription
  // polls per request), so the ratio estimates the full day's; it is still not the goal's run.
  const requests = options.quick ? goalRequests / 10 : goalRequests
  const durationMs = (day * requests) / goalRequests
  const hours = `${durationMs / 3_600_000} h`
  const probe = options.quick ? 2_000 : 10_000
  progress(
    `simulation: ${hours} diurnal, ${
      requests.toLocaleString("en-US")
    } requests, resilient (Runner.run, as \`simulate\`)`
  )
  const viaRunner = await once(resilientStrategy(), requests, durationMs)
  const resilient = viaRunner.succeeded >= requests * 0.95
    ? viaRunner
    : {
      ...viaRunner,
      strategy: `${viaRunner.strategy}: NOT USABLE (${viaRunner.failed}/${viaRunner.requests} calls failed)`
    }
  progress(`simulation: ${hours} diurnal, ${requests.toLocaleString("en-US")} requests, naive (Runner.run, reference)`)
  const naive = await once(Strategies.naive, requests, durationMs)
  progress(
    `simulation: 24 h diurnal, ${probe.toLocaleString("en-US")} requests, full stack (direct driver, tracing on)`
  )
  const viaLayer = await direct(probe)
  return { rows: [resilient, naive, viaLayer] }
}

export const toResults = (s: Simulation): ReadonlyArray<Result> =>
  s.rows.map((r) => ({
    name: `simulation: ${round(r.virtualMs / 3_600_000, 1)} h diurnal, ${
      r.requests.toLocaleString("en-US")
    } requests, ${r.strategy}`,
    value: r.ratio,
    unit: "x real time",
    note: `${
      round(r.wallMs / 1000, 1)
    } s wall, ${r.usPerRequest} µs/request; ${r.succeeded} ok, ${r.failed} failed; max in flight ${r.maxInFlight}/${r.limit}; concurrency 429s ${r.tooManyConcurrent}`
  }))

export const run = async (): Promise<ReadonlyArray<Result>> => toResults(await measure({ quick: isQuick() }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
}
