/**
 * The virtual-time runner: one strategy, one traffic pattern, one simulated
 * ElevenLabs account, run in seconds whatever the virtual span.
 *
 * **Details**
 *
 * - Builds the arrival schedule ({@link Patterns}), starts the in-process
 *   simulator (plan, credits, fault mix, seed), builds the strategy's call
 *   function over the simulator's `HttpClient`, fires each arrival at its
 *   virtual time (through at most `concurrency` callers when set), waits for
 *   every call, and hands the log and the simulator's record to {@link Report}.
 * - It always runs in its own virtual time (`VirtualTime.run`), even from the
 *   CLI: the driver wakes every sleeper in time order and runs the work each
 *   wake causes before the next, so the clock jumps from one scheduled
 *   wake-up to the next and never spins over empty time.
 * - Randomness comes from `Random` seeded with the run's seed (strategies'
 *   jitter) and from the simulator's own generator (same seed).
 * - The runner wraps the strategy's `HttpClient` to see every attempt: it
 *   reads each body to its last byte inside the wrapper (a slot is held until
 *   then) and records the attempt's status, kind and slot-holding time.
 * - Every call ends as a success or a typed failure: a strategy's defect or
 *   interruption is recorded as the failure `Defect` / `Interrupted`, so
 *   `succeeded + failed = requests` always.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Duration, Effect, Fiber, Random, Redacted, Schema, Semaphore } from "effect"
import { HttpClient } from "effect/http"
import { limitsOf, type PlanName, poolOfModel } from "../resilience/Plans.ts"
import * as InProcess from "../simulator/InProcess.ts"
import * as Simulator from "../simulator/Simulator.ts"
import * as Observe from "./Observe.ts"
import * as Patterns from "./Patterns.ts"
import * as Recorder from "./Recorder.ts"
import * as Report from "./Report.ts"
import type { CallOutcome, JitterName, SimRequest, Strategy } from "./Strategies.ts"
import * as VirtualTime from "./VirtualTime.ts"

/** What to run. Every field but `traffic` and `strategy` has a default. */
export interface RunOptions {
  readonly traffic: Patterns.TrafficOptions
  readonly strategy: Strategy
  /** Default `pro`. */
  readonly plan?: PlanName | undefined
  /** Default `eleven_multilingual_v2`. */
  readonly model?: string | undefined
  /** At most this many callers at once (arrivals wait for a free caller). Default unbounded. */
  readonly concurrency?: number | undefined
  /** Fault probability per request (0..1). Default 0, or 0.1 for `chaos`. */
  readonly failureRate?: number | undefined
  /** Credits of the simulated account. Default 10^12 (no quota pressure). */
  readonly credits?: number | undefined
  /** Passed to strategies that take one. Default `full`. */
  readonly jitter?: JitterName | undefined
  /** Parsed `--config` JSON for strategies that take one. */
  readonly config?: unknown
  /**
   * Whether the strategies' spans are made (for a tracer the caller provides).
   * Default `false`: the report comes from the recorder, and a span per call and
   * attempt is a large share of a long run's cost.
   */
  readonly tracing?: boolean | undefined
}

/** A run that cannot start or cannot finish. */
export class SimulationError extends Schema.Error<SimulationError>("elevenlabs-resilience/SimulationError")({
  _tag: Schema.tag("SimulationError"),
  message: Schema.String
}) {}

/** The default fault share of `chaos` when `--failure-rate` is not given. */
export const chaosDefaultFailureRate = 0.1

/**
 * The fault mix of `--failure-rate R`: the simulator's mix (`system_busy`,
 * 500s, 503 HTML, resets, stream cuts) scaled to 95 % of R, plus hangs at
 * 5 % of R (a hang costs a client its whole attempt timeout).
 */
export const faultsFor = (rate: number): Simulator.FaultRates => {
  const mix = Simulator.faultMix(rate * 0.95)
  return { ...mix, hang: rate * 0.05 }
}

const apiKey = "sim-key"
const voiceId = "21m00Tcm4TlvDq8ikWAM"
const lorem = "The quick brown fox jumps over the lazy dog while the narrator reads chapter one aloud. "
/** Text of `chars` characters, distinct per request (real traffic does not repeat itself word for word). */
const textOf = (index: number, chars: number): string =>
  `${index}. ${lorem.repeat(Math.ceil(chars / lorem.length))}`.slice(0, Math.max(chars, 1))

/**
 * Starts each arrival's call at its time (from the recorder's clock), at most
 * `callers` at once when given, adding each call's fiber to `fibers` as it
 * starts (so a caller that gives up can interrupt the ones started so far).
 */
export const fire = (
  arrivals: ReadonlyArray<Patterns.Arrival>,
  recorder: Recorder.Recorder,
  callers: Semaphore.Semaphore | undefined,
  one: (arrival: Patterns.Arrival) => Effect.Effect<void>,
  fibers: Array<Fiber.Fiber<void>>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (const arrival of arrivals) {
      const wait = arrival.atMs - recorder.now()
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      if (callers === undefined) fibers.push(yield* Effect.forkChild(one(arrival)))
      else {
        yield* callers.take(1)
        fibers.push(yield* Effect.forkChild(Effect.ensuring(one(arrival), callers.release(1))))
      }
    }
  })

/**
 * Runs `body` in virtual time (`VirtualTime.run`) from time zero; past `horizonMs` of virtual time it is
 * interrupted and the run fails with `tooLong` (a strategy that never settles cannot spin forever). `stepMs`
 * is the virtual time an event-loop turn gives a body that waits on nothing the clock can wake.
 */
export const inVirtualTime = <A, E>(
  body: Effect.Effect<A, E>,
  options: { readonly stepMs: number; readonly horizonMs: number; readonly tooLong: string }
): Effect.Effect<A, E | SimulationError> =>
  VirtualTime.run(body, {
    stepMs: options.stepMs,
    horizonMs: options.horizonMs,
    tooLong: () => new SimulationError({ message: options.tooLong })
  })

interface Outcome {
  readonly log: Recorder.Log
  readonly stats: Simulator.Stats
  readonly endMs: number
}

/**
 * Runs one strategy over one traffic pattern in virtual time and reports.
 *
 * @example
 * ```ts
 * const report = yield* Runner.run({ traffic: { pattern: "burst", requests: 50 }, strategy: Strategies.naive, plan: "free" })
 * report.summary.succeeded + report.summary.failed // => 50
 * ```
 */
export const run = (options: RunOptions): Effect.Effect<Report.Report, Patterns.InvalidTraffic | SimulationError> =>
  Effect.gen(function*() {
    const wallStart = yield* Clock.currentTimeMillis
    const plan = options.plan ?? "pro"
    const model = options.model ?? "eleven_multilingual_v2"
    const pool = poolOfModel(model)
    const limit = limitsOf(plan)[pool]
    const traffic = yield* Patterns.resolve(options.traffic)
    const failureRate = options.failureRate ?? (traffic.pattern === "chaos" ? chaosDefaultFailureRate : 0)
    if (!(failureRate >= 0 && failureRate <= 1)) {
      return yield* new SimulationError({ message: `failure rate must be within 0..1, got ${failureRate}` })
    }
    if (options.concurrency !== undefined && !(Number.isInteger(options.concurrency) && options.concurrency > 0)) {
      return yield* new SimulationError({
        message: `concurrency must be a positive integer, got ${options.concurrency}`
      })
    }
    const credits = options.credits ?? 1e12
    if (!(Number.isFinite(credits) && credits >= 0)) {
      return yield* new SimulationError({ message: `credits must be a non-negative number, got ${credits}` })
    }
    const arrivals = yield* Patterns.schedule(traffic)

    const body = Effect.gen(function*() {
      // Time zero of the run is 1 ms in, inside a clock wake-up, as it was under
      // `TestClock` (which did not wait for fibers started before its first wake-up).
      yield* Effect.sleep(Duration.millis(1))
      const simulator = yield* Simulator.make({
        seed: traffic.seed,
        plan,
        apiKeys: [{ key: apiKey, name: "sim", plan, characterLimit: credits }],
        faults: failureRate > 0 ? faultsFor(failureRate) : Simulator.noFaults,
        maxSamples: 16 * traffic.requests + 16
      })
      const recorder = yield* Recorder.make
      const client = Observe.observe(yield* InProcess.makeHttpClient(simulator, { transportSpans: false }), recorder, {
        drainAudio: true
      })
      const call = yield* options.strategy.make({
        plan,
        model,
        pool,
        limit,
        voiceId,
        baseUrl: InProcess.defaultBaseUrl,
        inProcess: true,
        apiKey: Redacted.make(apiKey),
        jitter: options.jitter ?? "full",
        config: options.config,
        recorder
      }).pipe(Effect.provideService(HttpClient.HttpClient, client), Effect.provideService(Recorder.Recorder, recorder))
      const callers = options.concurrency === undefined ? undefined : yield* Semaphore.make(options.concurrency)

      const one = (arrival: Patterns.Arrival): Effect.Effect<void> => {
        const request: SimRequest = { ...arrival, text: textOf(arrival.index, arrival.chars) }
        return call(request).pipe(
          Effect.catchCause((cause) =>
            Effect.logDebug("simulation: a call ended in a defect", cause).pipe(Effect.as<CallOutcome>({
              _tag: "Failure",
              reason: Cause.hasInterruptsOnly(cause) ? "Interrupted" : "Defect"
            }))
          ),
          Effect.flatMap((outcome) =>
            Effect.sync(() => {
              recorder.log.calls.push(Recorder.callRecord(arrival, outcome, recorder.now()))
            })
          )
        )
      }

      const fibers: Array<Fiber.Fiber<void>> = []
      yield* fire(arrivals, recorder, callers, one, fibers)
      yield* Fiber.awaitAll(fibers)
      return {
        log: recorder.log,
        stats: yield* simulator.stats,
        endMs: recorder.log.calls.reduce((m, c) => Math.max(m, c.endMs), 0)
      } satisfies Outcome
    }).pipe(
      Effect.scoped,
      Random.withSeed(traffic.seed),
      // The recorder is the run's record; spans of every call and attempt would cost a
      // large share of a long run (a span and a captured stack trace each) for nobody.
      Effect.withTracerEnabled(options.tracing === true)
    )

    const lastArrival = arrivals.length === 0 ? 0 : arrivals[arrivals.length - 1]!.atMs
    // A bound on virtual time, so a strategy that never settles cannot spin forever.
    const horizonMs = lastArrival + 30 * 24 * 3_600_000
    const outcome = yield* inVirtualTime(body, {
      stepMs: 3_600_000,
      horizonMs,
      tooLong: "the simulation did not finish within 30 virtual days"
    })

    const wallMs = (yield* Clock.currentTimeMillis) - wallStart
    return Report.build({
      strategy: options.strategy.name,
      plan,
      model,
      pool,
      limit,
      traffic,
      failureRate,
      log: outcome.log,
      stats: outcome.stats,
      virtualDurationMs: outcome.endMs,
      wallMs
    })
  })
