/**
 * The real-time load runner: the same traffic patterns, strategies and report
 * as the virtual-time {@link Runner}, but over real HTTP against a real base
 * URL (a simulator server or the ElevenLabs API), on the live clock.
 *
 * **Details**
 *
 * - Arrivals come from {@link Patterns} (the same schedule `simulate` uses);
 *   a dispatcher fiber sleeps until each one and forks its call (through at
 *   most `concurrency` callers when set).
 * - The strategy's `HttpClient` is wrapped so every attempt is recorded (the
 *   body is read to its last byte inside the wrapper: a server slot is held
 *   until then), exactly like the virtual-time runner does.
 * - Against a simulator (`simulatorStats: true`), its `/_simulator/stats`
 *   are reset at the start and read at the end: `maxInFlight`, the 429 counts
 *   and the credits are the server's. Against anything else they are the
 *   client's own observations (its in-flight count, the 429 bodies it read,
 *   the `character-cost` headers).
 * - Bounded: the run ends by itself after the last call, or at `timeLimitMs`
 *   (default: the schedule's span plus 120 s), when calls still running are
 *   interrupted and counted as the failure `TimeLimit`. Every arrival ends
 *   once: `succeeded + failed = requests`.
 * - Several processes: {@link LoadTestOptions.part} runs one share of the
 *   arrivals (index modulo the number of processes) and {@link merge} joins
 *   the workers' logs; the CLI orchestrates the processes.
 * - {@link resilient} is this library's full stack as a {@link Strategy}: the
 *   `Resilient` composition over the given `HttpClient`, its limiter queue,
 *   retries and breaker moves reported to the recorder.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Duration, Effect, Fiber, Option, Redacted, Schema, Scope, Semaphore } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { limitsOf, type PlanName, type Pool, poolOfModel } from "../resilience/Plans.ts"
import * as ResilienceConfig from "../resilience/ResilienceConfig.ts"
import type * as Simulator from "../simulator/Simulator.ts"
import * as Observe from "./Observe.ts"
import * as Patterns from "./Patterns.ts"
import * as Recorder from "./Recorder.ts"
import * as Report from "./Report.ts"
import * as Runner from "./Runner.ts"
import type { CallOutcome, JitterName, Strategy } from "./Strategies.ts"
import * as Strategies from "./Strategies.ts"

/** A load test that cannot start or cannot finish. */
export class LoadTestError extends Schema.Error<LoadTestError>("elevenlabs-resilience/LoadTestError")({
  _tag: Schema.tag("LoadTestError"),
  message: Schema.String
}) {}

/** Whether a value is a {@link LoadTestError}. */
export const isLoadTestError = Schema.is(LoadTestError)

/** The default voice of load tests (a premade voice, also in the simulator's catalog). */
export const defaultVoiceId = "21m00Tcm4TlvDq8ikWAM"

/** Caps that keep a real-time run bounded. */
export const caps = {
  /** Most requests one load test sends. */
  requests: 100_000,
  /** Longest schedule (real time). Use `simulate` for a day. */
  spanMs: 3_600_000
} as const

/** Extra time after the last arrival before calls still running are interrupted. Default 120 s. */
export const defaultGraceMs = 120_000

/** What the progress display reads. */
export interface ProgressState {
  readonly total: number
  readonly done: number
  readonly succeeded: number
  readonly failed: number
  readonly inFlight: number
  readonly elapsedMs: number
  /** Span of the arrival schedule, ms. */
  readonly spanMs: number
}

/** Starts a progress display reading `read` until the scope closes (see `Progress.ts`). */
export type ProgressSink = (read: () => ProgressState) => Effect.Effect<void, never, Scope.Scope>

/** What to run. */
export interface LoadTestOptions {
  readonly traffic: Patterns.TrafficOptions
  readonly strategy: Strategy
  /** Where requests go: a simulator server or `https://api.elevenlabs.io` (no `/v1`). */
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
  /** Default `pro`. */
  readonly plan?: PlanName | undefined
  /** Default `eleven_multilingual_v2`. */
  readonly model?: string | undefined
  /** Default {@link defaultVoiceId}. */
  readonly voiceId?: string | undefined
  /** At most this many callers at once. Default unbounded. */
  readonly concurrency?: number | undefined
  /** The target's fault rate, for the report only (the target makes the faults). Default 0. */
  readonly failureRate?: number | undefined
  /** Default `full`. */
  readonly jitter?: JitterName | undefined
  /** Parsed config JSON for the resilient strategy. */
  readonly config?: unknown
  /** The target is a simulator: reset its stats at the start and report from them. Default false. */
  readonly simulatorStats?: boolean | undefined
  /** Calls still running this long after the start are interrupted (`TimeLimit`). Default span + 120 s. */
  readonly timeLimitMs?: number | undefined
  /** Run only arrivals with `index % of === index` (one worker of several). */
  readonly part?: { readonly index: number; readonly of: number } | undefined
  /** Epoch ms to start at (workers start together). Default now. */
  readonly startAt?: number | undefined
  /** Wraps the transport the strategy gets (outside the recorder's observer), e.g. shared permits. */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
  readonly progress?: ProgressSink | undefined
}

/** What one process recorded: its log and when its time zero was (epoch ms). */
export interface Part {
  readonly startedAt: number
  readonly log: Recorder.Log
}

const lorem = "The quick brown fox jumps over the lazy dog while the narrator reads chapter one aloud. "
/**
 * A text of exactly `chars` characters, distinct per `index` (real traffic
 * rarely repeats a text; identical texts would be coalesced by the resilient
 * stack and flatter it).
 */
export const textOf = (chars: number, index = 0): string =>
  (`${index}. ` + lorem.repeat(Math.ceil(chars / lorem.length) + 1)).slice(0, chars)

// ----------------------------------------------------------------------------
// The observer (same record as the virtual-time runner's)
// ----------------------------------------------------------------------------

// ----------------------------------------------------------------------------
// The resilient strategy
// ----------------------------------------------------------------------------

/** Checks a `--config` JSON for the resilient strategy; the problems as one message. */
export const checkConfig = (raw: unknown): Effect.Effect<void, LoadTestError> => {
  if (raw === undefined) return Effect.void
  const { config, problems } = ResilienceConfig.validate(raw)
  return config === undefined || ResilienceConfig.isBlocking(problems)
    ? Effect.fail(
      new LoadTestError({
        message: `--config: ${
          problems.filter((p) => p.severity === "error").map((p) => `${p.path}: ${p.message}`).join("; ")
        }`
      })
    )
    : Effect.void
}

/** Every strategy a load test can use: the registry's. */
export const available = (): ReadonlyArray<Strategy> => Strategies.registry

/** A strategy by name (see {@link available}). */
export const strategyOf = (name: string): Strategy | undefined => Strategies.find(name, available())

// ----------------------------------------------------------------------------
// Simulator stats
// ----------------------------------------------------------------------------

const isStats = (u: unknown): u is Simulator.Stats =>
  typeof u === "object" && u !== null && "byDetailStatus" in u && "pools" in u && "accounts" in u

/** `GET /_simulator/stats` of a simulator server, or `undefined` when the target is not one. */
export const fetchStats = (baseUrl: string): Effect.Effect<Simulator.Stats | undefined, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.get(`${baseUrl}/_simulator/stats`)
    if (response.status !== 200) return undefined
    const json = yield* response.json
    return isStats(json) ? json : undefined
  }).pipe(
    Effect.timeoutOption(Duration.seconds(10)),
    Effect.map(Option.getOrUndefined),
    Effect.catch(() => Effect.succeed(undefined))
  )

/** `POST /_simulator/reset`: zero the counters (in-flight stays). */
export const resetStats = (baseUrl: string): Effect.Effect<void, LoadTestError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(HttpClientRequest.post(`${baseUrl}/_simulator/reset`))
    if (response.status !== 200) {
      return yield* new LoadTestError({ message: `simulator reset answered ${response.status}` })
    }
  }).pipe(
    Effect.catchTag(
      "HttpClientError",
      (e) => Effect.fail(new LoadTestError({ message: `simulator reset failed: ${e.message}` }))
    )
  )

/**
 * Stats in the simulator's shape from what the client saw, for targets that
 * are not a simulator: in-flight from the client's count, 429s from the
 * bodies it read, credits from the `character-cost` headers.
 */
export const clientStats = (log: Recorder.Log, pool: Pool, limit: number): Simulator.Stats => {
  let maxInFlight = 0
  for (const [, n] of log.inFlight) if (n > maxInFlight) maxInFlight = n
  const byDetailStatus: Record<string, number> = {}
  const byStatus: Record<string, number> = {}
  for (const a of log.attempts) {
    if (a.status > 0) byStatus[String(a.status)] = (byStatus[String(a.status)] ?? 0) + 1
    if (a.kind === "too_many_concurrent_requests" || a.kind === "system_busy") {
      byDetailStatus[a.kind] = (byDetailStatus[a.kind] ?? 0) + 1
    }
  }
  const empty = { inFlight: 0, maxInFlight: 0, limit: 0, queued: 0, maxQueued: 0, admitted: 0, rejected: 0 }
  const pools = { standard: empty, flash: empty, stt: empty, music: empty }
  return {
    now: 0,
    requests: log.attempts.length,
    byStatus,
    byDetailStatus,
    faults: {},
    creditsCharged: log.calls.reduce((n, c) => n + c.credits, 0),
    pools: { ...pools, [pool]: { ...empty, maxInFlight, limit } },
    accounts: {}
  }
}

// ----------------------------------------------------------------------------
// Running
// ----------------------------------------------------------------------------

/** Resolves the traffic and checks the real-time caps. */
export const resolveTraffic = (traffic: Patterns.TrafficOptions): Effect.Effect<Patterns.Traffic, LoadTestError> =>
  Effect.gen(function*() {
    const resolved = yield* Patterns.resolve(traffic).pipe(
      Effect.mapError((e) => new LoadTestError({ message: e.message }))
    )
    if (resolved.durationMs > caps.spanMs) {
      return yield* new LoadTestError({
        message: `a load test runs in real time and spans at most 1 h, this pattern spans ${
          Math.round(resolved.durationMs / 60_000)
        } min; shorten --duration or rehearse it with "simulate" (virtual time)`
      })
    }
    if (resolved.requests > caps.requests) {
      return yield* new LoadTestError({
        message: `a load test sends at most ${caps.requests.toLocaleString("en-US")} requests, got ${resolved.requests}`
      })
    }
    return resolved
  })

/**
 * Runs this process's share of the arrivals in real time and returns its
 * log. Needs the transport (`HttpClient`).
 */
export const runPart = (options: LoadTestOptions): Effect.Effect<Part, LoadTestError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const plan = options.plan ?? "pro"
    const model = options.model ?? "eleven_multilingual_v2"
    const pool = poolOfModel(model)
    const limit = limitsOf(plan)[pool]
    const traffic = yield* resolveTraffic(options.traffic)
    if (options.concurrency !== undefined && !(Number.isInteger(options.concurrency) && options.concurrency > 0)) {
      return yield* new LoadTestError({ message: `concurrency must be a positive integer, got ${options.concurrency}` })
    }
    const part = options.part
    if (part !== undefined && !(Number.isInteger(part.of) && part.of > 0 && part.index >= 0 && part.index < part.of)) {
      return yield* new LoadTestError({ message: `bad worker part ${part.index} of ${part.of}` })
    }
    const all = yield* Patterns.schedule(traffic)
    const arrivals = part === undefined ? all : all.filter((a) => a.index % part.of === part.index)
    const lastArrival = all.length === 0 ? 0 : all[all.length - 1]!.atMs
    const timeLimitMs = options.timeLimitMs ?? lastArrival + defaultGraceMs

    if (options.startAt !== undefined) {
      const wait = options.startAt - (yield* Clock.currentTimeMillis)
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
    }

    return yield* Effect.scoped(Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const recorder = yield* Recorder.make
      const base = yield* HttpClient.HttpClient
      const observed = Observe.observe(base, recorder)
      const client = options.transformClient === undefined ? observed : options.transformClient(observed)
      const call = yield* options.strategy.make({
        plan,
        model,
        pool,
        limit,
        voiceId: options.voiceId ?? defaultVoiceId,
        baseUrl: options.baseUrl.replace(/\/+$/, ""),
        apiKey: options.apiKey,
        jitter: options.jitter ?? "full",
        config: options.config,
        recorder
      }).pipe(Effect.provideService(HttpClient.HttpClient, client), Effect.provideService(Recorder.Recorder, recorder))
      const callers = options.concurrency === undefined ? undefined : yield* Semaphore.make(options.concurrency)
      const recorded = new Set<number>()
      let succeeded = 0
      const record = (arrival: Patterns.Arrival, outcome: CallOutcome) => {
        if (recorded.has(arrival.index)) return
        recorded.add(arrival.index)
        if (outcome._tag === "Success") succeeded++
        recorder.log.calls.push(Recorder.callRecord(arrival, outcome, recorder.now()))
      }
      const one = (arrival: Patterns.Arrival): Effect.Effect<void> =>
        call({ ...arrival, text: textOf(arrival.chars, arrival.index) }).pipe(
          Effect.catchCause((cause) =>
            Effect.succeed<CallOutcome>({
              _tag: "Failure",
              reason: Cause.hasInterruptsOnly(cause) ? "Interrupted" : "Defect"
            })
          ),
          Effect.flatMap((outcome) => Effect.sync(() => record(arrival, outcome)))
        )

      if (options.progress !== undefined) {
        const spanMs = lastArrival
        yield* options.progress(() => {
          const inFlightPoints = recorder.log.inFlight
          return {
            total: arrivals.length,
            done: recorded.size,
            succeeded,
            failed: recorded.size - succeeded,
            inFlight: inFlightPoints.length === 0 ? 0 : inFlightPoints[inFlightPoints.length - 1]![1],
            elapsedMs: recorder.now(),
            spanMs
          }
        })
      }

      const fibers: Array<Fiber.Fiber<void>> = []
      const dispatch = Effect.andThen(Runner.fire(arrivals, recorder, callers, one, fibers), Fiber.awaitAll(fibers))
      const finished = yield* dispatch.pipe(Effect.timeoutOption(Duration.millis(timeLimitMs)))
      if (Option.isNone(finished)) {
        yield* Fiber.interruptAll(fibers)
        for (const arrival of arrivals) record(arrival, { _tag: "Failure", reason: "TimeLimit" })
      }
      recorder.log.calls.sort((a, b) => a.index - b.index)
      return { startedAt, log: recorder.log } satisfies Part
    }))
  })

const shift = <T extends readonly [number, ...ReadonlyArray<unknown>]>(
  points: ReadonlyArray<T>,
  by: number
): Array<T> => points.map((p) => [p[0] + by, ...p.slice(1)] as unknown as T)

/** Sums step functions `[t, value]` of several processes into one. */
const sumSteps = (
  series: ReadonlyArray<ReadonlyArray<readonly [number, number]>>
): Array<readonly [number, number]> => {
  const events = series.flatMap((points, k) => points.map(([t, v]) => ({ t, v, k })))
  events.sort((a, b) => a.t - b.t)
  const current = new Array<number>(series.length).fill(0)
  let total = 0
  return events.map(({ k, t, v }) => {
    total += v - current[k]!
    current[k] = v
    return [t, total] as const
  })
}

/** Joins the logs of several processes on the earliest start. */
export const merge = (parts: ReadonlyArray<Part>): Part => {
  if (parts.length === 1) return parts[0]!
  const startedAt = Math.min(...parts.map((p) => p.startedAt))
  const shifted = parts.map((p) => {
    const by = p.startedAt - startedAt
    const l = p.log
    return {
      calls: l.calls.map((c) => ({ ...c, endMs: c.endMs + by })),
      attempts: l.attempts.map((a) => ({ ...a, startMs: a.startMs + by, endMs: a.endMs + by })),
      inFlight: shift(l.inFlight, by),
      queueDepth: { interactive: shift(l.queueDepth.interactive, by), batch: shift(l.queueDepth.batch, by) },
      queueWaits: shift(l.queueWaits, by),
      retries: shift(l.retries, by),
      breaker: shift(l.breaker, by)
    }
  })
  const byTime = <T extends readonly [number, ...ReadonlyArray<unknown>]>(xs: Array<T>) =>
    xs.sort((a, b) => a[0] - b[0])
  return {
    startedAt,
    log: {
      calls: shifted.flatMap((l) => l.calls).sort((a, b) => a.index - b.index),
      attempts: shifted.flatMap((l) => l.attempts).sort((a, b) => a.startMs - b.startMs),
      inFlight: sumSteps(shifted.map((l) => l.inFlight)),
      queueDepth: {
        interactive: sumSteps(shifted.map((l) => l.queueDepth.interactive)),
        batch: sumSteps(shifted.map((l) => l.queueDepth.batch))
      },
      queueWaits: byTime(shifted.flatMap((l) => l.queueWaits)),
      retries: byTime(shifted.flatMap((l) => l.retries)),
      breaker: byTime(shifted.flatMap((l) => l.breaker))
    }
  }
}

/** What {@link report} needs besides the log. */
export interface ReportInput {
  readonly strategy: string
  readonly plan?: PlanName | undefined
  readonly model?: string | undefined
  readonly traffic: Patterns.Traffic
  readonly failureRate?: number | undefined
  /** The simulator's stats; the client's own view when `undefined`. */
  readonly stats?: Simulator.Stats | undefined
  readonly wallMs: number
}

/** The report of a (merged) run, in the same shape as `simulate`'s. */
export const report = (part: Part, input: ReportInput): Report.Report => {
  const plan = input.plan ?? "pro"
  const model = input.model ?? "eleven_multilingual_v2"
  const pool = poolOfModel(model)
  const limit = limitsOf(plan)[pool]
  const endMs = part.log.calls.reduce((m, c) => Math.max(m, c.endMs), 0)
  return Report.build({
    strategy: input.strategy,
    plan,
    model,
    pool,
    limit,
    traffic: input.traffic,
    failureRate: input.failureRate ?? 0,
    log: part.log,
    stats: input.stats ?? clientStats(part.log, pool, limit),
    clock: "real",
    virtualDurationMs: endMs,
    wallMs: input.wallMs
  })
}

/**
 * One whole load test in this process: reset the simulator's stats (when the
 * target is one), run every arrival, read the stats, report.
 *
 * @example
 * ```ts
 * const report = yield* LoadTest.run({
 *   traffic: { pattern: "burst", requests: 50 },
 *   strategy: LoadTest.resilient,
 *   baseUrl: server.url,
 *   apiKey: Redacted.make("sim-key"),
 *   plan: "free",
 *   simulatorStats: true
 * }).pipe(Effect.provide(NodeHttpClient.layerUndici))
 * report.summary.succeeded + report.summary.failed // => 50
 * ```
 */
export const run = (options: LoadTestOptions): Effect.Effect<Report.Report, LoadTestError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const wallStart = yield* Clock.currentTimeMillis
    const traffic = yield* resolveTraffic(options.traffic)
    const baseUrl = options.baseUrl.replace(/\/+$/, "")
    if (options.simulatorStats === true) yield* resetStats(baseUrl)
    const part = yield* runPart(options)
    const stats = options.simulatorStats === true ? yield* fetchStats(baseUrl) : undefined
    return report(part, {
      strategy: options.strategy.name,
      plan: options.plan,
      model: options.model,
      traffic,
      failureRate: options.failureRate,
      stats,
      wallMs: (yield* Clock.currentTimeMillis) - wallStart
    })
  })
