/**
 * A `sessions` simulation: conversations (`Conversations.ts`) said through the resilient stack's real-time
 * sessions against the in-process simulator, in virtual time, seeded: the same options give the same report.
 * `simulate --pattern sessions` runs it.
 *
 * @since 0.2.0
 */
import { Clock, Duration, Effect, Random, Redacted } from "effect"
import { HttpClient } from "effect/http"
import { Socket } from "effect/socket"
import { limitsOf, type PlanName, poolOfModel } from "../resilience/Plans.ts"
import * as InProcess from "../simulator/InProcess.ts"
import * as RealtimeInProcess from "../simulator/RealtimeInProcess.ts"
import * as Simulator from "../simulator/Simulator.ts"
import * as Conversations from "./Conversations.ts"
import * as Runner from "./Runner.ts"
import { SimulationError } from "./Runner.ts"
import * as Sessions from "./Sessions.ts"

/** What a sessions simulation is asked for. */
export interface SessionsRunOptions {
  readonly conversations: Conversations.ConversationOptions
  /** Default 1. */
  readonly seed?: number | undefined
  /** Default `creator`. */
  readonly plan?: PlanName | undefined
  /** Default `eleven_flash_v2_5` (what voice agents use). */
  readonly model?: string | undefined
  /** Share of generations the server breaks (half dropped connections, half 1011 closes). Default 0. */
  readonly failureRate?: number | undefined
  /** The account's credits. Default unlimited. */
  readonly credits?: number | undefined
}

const apiKey = "sim-sessions-key"
const voiceId = "21m00Tcm4TlvDq8ikWAM"
/**
 * The smallest output format: the shape measures text, permits and time, not audio, and the audio's bytes
 * (base64 in JSON frames, both ways) were most of a long run's cost at the default 128 kbps.
 */
const outputFormat = "mp3_22050_32"

/** Runs the conversations in virtual time and sums them. */
export const run = (
  options: SessionsRunOptions
): Effect.Effect<Sessions.SessionsSummary, SimulationError> =>
  Effect.gen(function*() {
    const wallStart = yield* Clock.currentTimeMillis
    const problem = Conversations.problemOf(options.conversations)
    if (problem !== undefined) return yield* new SimulationError({ message: problem })
    const failureRate = options.failureRate ?? 0
    if (!(failureRate >= 0 && failureRate <= 1)) {
      return yield* new SimulationError({ message: `failure rate must be within 0..1, got ${failureRate}` })
    }
    const seed = options.seed ?? 1
    const plan = options.plan ?? "creator"
    const model = options.model ?? "eleven_flash_v2_5"
    const pool = poolOfModel(model)
    const limit = limitsOf(plan)[pool]
    const credits = options.credits ?? 1e12

    const body = Effect.gen(function*() {
      // Start inside a clock wake-up (see Runner.run): fibers started before the first one are not waited for.
      yield* Effect.sleep(Duration.millis(1))
      const schedule = yield* Conversations.schedule(options.conversations)
      const simulator = yield* Simulator.make({
        seed,
        plan,
        apiKeys: [{ key: apiKey, name: "sim", plan, characterLimit: credits }],
        realtime: { faults: { drop: failureRate / 2, close1011: failureRate / 2 } },
        // Audio in frames of 2 s rather than 0.5 s: a quarter of the frames, the same first audio (it comes at the
        // time to first byte whatever the frame's length) and the same pacing of the text.
        chunkSeconds: 2
      })
      const http = yield* InProcess.makeHttpClient(simulator, { transportSpans: false })
      const sockets = yield* RealtimeInProcess.makeWebSocketConstructor(simulator)
      const realtime = yield* Sessions.connector({
        apiKey: Redacted.make(apiKey),
        baseUrl: InProcess.defaultBaseUrl,
        plan
      })
        .pipe(
          Effect.provideService(HttpClient.HttpClient, http),
          Effect.provideService(Socket.WebSocketConstructor, sockets),
          Effect.mapError((e) => new SimulationError({ message: e.message }))
        )
      const results = yield* Sessions.sayAll(realtime, schedule, { voiceId, modelId: model, outputFormat })
      const stats = yield* simulator.stats
      return { results, stats }
    }).pipe(Effect.scoped, Random.withSeed(seed), Effect.withTracerEnabled(false))

    const outcome = yield* Runner.inVirtualTime(body, {
      stepMs: 60_000,
      horizonMs: options.conversations.durationMs + 24 * 3_600_000,
      tooLong: "the sessions did not finish within a day after the run"
    })

    const wallMs = (yield* Clock.currentTimeMillis) - wallStart
    return Sessions.summarize(outcome.results, {
      clock: "virtual",
      plan,
      model,
      pool,
      limit,
      seed,
      failureRate,
      maxInFlight: outcome.stats.pools[pool].maxInFlight,
      concurrency429: outcome.stats.realtime?.errors["too_many_concurrent_requests"] ?? 0,
      wallMs
    })
  })
