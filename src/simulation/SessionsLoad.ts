/**
 * A `sessions` load test: conversations (`Conversations.ts`) said in real time through the resilient stack's
 * real-time sessions against a server (the simulator's HTTP server, or the API). `load-test --pattern sessions`
 * runs it. The report is the simulation's (`Sessions.ts`), on the real clock; the server's counts (generations
 * in flight, concurrency refusals) come from `/_simulator/stats` when the target is the simulator.
 *
 * @since 0.2.0
 */
import { Clock, Effect, Random, type Redacted } from "effect"
import type { HttpClient } from "effect/http"
import type { Socket } from "effect/socket"
import { limitsOf, type PlanName, poolOfModel } from "../resilience/Plans.ts"
import type { ResilientOptions } from "../resilience/ResilientOptions.ts"
import * as Conversations from "./Conversations.ts"
import * as LoadTest from "./LoadTest.ts"
import * as Sessions from "./Sessions.ts"

/** What a sessions load test is asked for. */
export interface SessionsLoadOptions {
  readonly conversations: Conversations.ConversationOptions
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
  readonly plan: PlanName
  readonly model: string
  readonly voiceId: string
  readonly seed: number
  /** The share of generations the target breaks, for the report (the simulator's faults are set by the caller). */
  readonly failureRate: number
  /** The stack's options besides the key and the base URL (the `--config` file's). Default: the plan only. */
  readonly stack?: Omit<ResilientOptions, "apiKey" | "baseUrl"> | undefined
}

/** Runs the conversations in real time and sums them. */
export const run = (
  options: SessionsLoadOptions
): Effect.Effect<
  Sessions.SessionsSummary,
  LoadTest.LoadTestError,
  HttpClient.HttpClient | Socket.WebSocketConstructor
> =>
  Effect.scoped(Effect.gen(function*() {
    const wallStart = yield* Clock.currentTimeMillis
    const problem = Conversations.problemOf(options.conversations)
    if (problem !== undefined) return yield* new LoadTest.LoadTestError({ message: problem })
    const pool = poolOfModel(options.model)
    const schedule = yield* Random.withSeed(Conversations.schedule(options.conversations), options.seed)
    const realtime = yield* Sessions.connector({
      apiKey: options.apiKey,
      baseUrl: options.baseUrl,
      plan: options.plan,
      stack: options.stack
    }).pipe(Effect.mapError((e) => new LoadTest.LoadTestError({ message: e.message })))
    const results = yield* Sessions.sayAll(realtime, schedule, { voiceId: options.voiceId, modelId: options.model })
    const stats = yield* LoadTest.fetchStats(options.baseUrl)
    return Sessions.summarize(results, {
      clock: "real",
      plan: options.plan,
      model: options.model,
      pool,
      limit: limitsOf(options.plan)[pool],
      seed: options.seed,
      failureRate: options.failureRate,
      maxInFlight: stats?.pools[pool].maxInFlight ?? 0,
      concurrency429: stats?.realtime?.errors["too_many_concurrent_requests"] ?? 0,
      wallMs: (yield* Clock.currentTimeMillis) - wallStart
    })
  }))
