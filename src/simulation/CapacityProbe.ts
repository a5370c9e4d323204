/**
 * One probe of the capacity planner: `n` broadcasts against the in-process
 * simulator, in virtual time, through a strategy (the resilient stack by
 * default).
 *
 * **Details**
 *
 * - A broadcast asks for a segment, waits for all of it, plays it, asks for
 *   the next. The broadcasts start at seeded random offsets within one
 *   segment's playing time.
 * - **Warm-up**: the segments asked during the first cycle (`play + target`)
 *   are not measured: the queue is still filling then, and its short waits
 *   would flatter the p95. Then the **measured span**: every segment asked
 *   within it counts (its latency, its failure), however long it takes to
 *   end. No one asks after it, which changes nothing for the measured ones:
 *   a segment only waits for those asked before it.
 * - The measured span is `durationMs` when given, else whole cycles enough for
 *   {@link CapacityModel.minMeasuredSegments} segments (at least one cycle).
 * - The clock is a `TestClock` driven like the virtual-time runner's: it
 *   jumps from one wake-up to the next, so a probe costs what its segments
 *   cost, not what its span would in real time.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Fiber, Random, Redacted } from "effect"
import { HttpClient } from "effect/http"
import { TestClock } from "effect/testing"
import * as InProcess from "../simulator/InProcess.ts"
import * as Simulator from "../simulator/Simulator.ts"
import { CapacityError, minMeasuredSegments, type Phase, type Probe, type Resolved } from "./CapacityModel.ts"
import * as LoadTest from "./LoadTest.ts"
import * as Recorder from "./Recorder.ts"
import * as Report from "./Report.ts"

/** The warm-up and the measured span of a probe of `streams` broadcasts, ms. */
export const spanOf = (r: Resolved, streams: number): { readonly warmupMs: number; readonly measuredMs: number } => {
  const cycleMs = r.playMs + r.targetP95Ms
  const cycles = Math.max(1, Math.ceil(minMeasuredSegments / streams))
  return { warmupMs: cycleMs, measuredMs: r.durationMs ?? cycles * cycleMs }
}

/** What the broadcasts saw. */
interface Tally {
  readonly latencies: Array<number>
  okSum: number
  okCount: number
  failed: number
  readonly failedByReason: Record<string, number>
  warmup: number
}

/** The broadcasts of one probe, in the current (test) clock. */
const broadcasts = (r: Resolved, streams: number, warmupMs: number, endMs: number) =>
  Effect.gen(function*() {
    // Start inside a clock wake-up (see the runner: `adjust` waits for fibers it wakes).
    yield* Effect.sleep(Duration.millis(1))
    const simulator = yield* Simulator.make({
      seed: r.seed,
      plan: r.plan,
      apiKeys: [{ key: "sim-key", name: "sim", plan: r.plan, characterLimit: 1e15 }],
      faults: r.failureRate > 0 ? Simulator.faultMix(r.failureRate) : Simulator.noFaults,
      latency: r.latency,
      charsPerSecond: r.charsPerSecond,
      maxSamples: 16
    })
    const recorder = yield* Recorder.make
    const client = yield* InProcess.makeHttpClient(simulator)
    const call = yield* r.strategy.make({
      plan: r.plan,
      model: r.model,
      pool: r.pool,
      limit: r.limit,
      voiceId: LoadTest.defaultVoiceId,
      baseUrl: InProcess.defaultBaseUrl,
      inProcess: true,
      apiKey: Redacted.make("sim-key"),
      jitter: "full",
      config: r.config,
      recorder
    }).pipe(Effect.provideService(HttpClient.HttpClient, client), Effect.provideService(Recorder.Recorder, recorder))
    const tally: Tally = { latencies: [], okSum: 0, okCount: 0, failed: 0, failedByReason: {}, warmup: 0 }
    const listener = (stream: number) =>
      Effect.gen(function*() {
        const offset = Math.floor((yield* Random.next) * r.playMs)
        if (offset > 0) yield* Effect.sleep(Duration.millis(offset))
        for (let k = 0; recorder.now() < endMs; k++) {
          const t0 = recorder.now()
          const outcome = yield* call({
            index: stream,
            atMs: t0,
            chars: r.chars,
            lane: "interactive",
            text: LoadTest.textOf(r.chars, stream * 100_000 + k)
          }).pipe(Effect.catchCause(() => Effect.succeed({ _tag: "Failure", reason: "Defect" } as const)))
          const latency = recorder.now() - t0
          if (t0 < warmupMs) tally.warmup++
          else {
            tally.latencies.push(latency)
            if (outcome._tag === "Success") {
              tally.okSum += latency
              tally.okCount++
            } else {
              tally.failed++
              tally.failedByReason[outcome.reason] = (tally.failedByReason[outcome.reason] ?? 0) + 1
            }
          }
          yield* Effect.sleep(Duration.millis(r.playMs))
        }
      })
    yield* Effect.forEach(Array.from({ length: streams }, (_, i) => i), listener, {
      concurrency: "unbounded",
      discard: true
    })
    const stats = yield* simulator.stats
    return { tally, stats }
  }).pipe(Effect.scoped, Random.withSeed(r.seed + streams))

/** Runs `streams` broadcasts through a warm-up and a measured span in virtual time. */
export const run = (r: Resolved, streams: number, phase: Phase): Effect.Effect<Probe, CapacityError> => {
  const { measuredMs, warmupMs } = spanOf(r, streams)
  const endMs = warmupMs + measuredMs
  // A bound on virtual time: a probe whose calls never settle must not spin.
  const horizonMs = endMs + 24 * 3_600_000
  const stepMs = r.stepMs
  return Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(broadcasts(r, streams, warmupMs, endMs))
    let advanced = 0
    while (fiber.pollUnsafe() === undefined) {
      if (advanced > horizonMs) {
        yield* Fiber.interrupt(fiber)
        return yield* new CapacityError({
          message: `the probe of ${streams} streams did not finish within a virtual day`
        })
      }
      yield* TestClock.adjust(Duration.millis(stepMs))
      advanced += stepMs
    }
    const { stats, tally } = yield* Fiber.join(fiber)
    const latencyMs = Report.percentiles(tally.latencies)
    const segments = tally.latencies.length
    const throughputPerS = (segments * 1000) / measuredMs
    return {
      streams,
      segments,
      warmupSegments: tally.warmup,
      failed: tally.failed,
      failedByReason: tally.failedByReason,
      latencyMs,
      meanMs: tally.okCount === 0 ? 0 : Math.round(tally.okSum / tally.okCount),
      warmupMs,
      measuredMs,
      throughputPerS,
      utilization: (throughputPerS * r.bound.serviceMs) / (1000 * r.limit),
      maxInFlight: stats.pools[r.pool].maxInFlight,
      tooManyConcurrent: stats.byDetailStatus["too_many_concurrent_requests"] ?? 0,
      sustained: segments > 0 && latencyMs.p95 <= r.targetP95Ms && tally.failed <= r.maxFailureShare * segments,
      phase
    } satisfies Probe
  }).pipe(Effect.provide(TestClock.layer({ warningDelay: "1 hour" })))
}
