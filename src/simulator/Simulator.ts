/**
 * The model of the ElevenLabs service that both simulator faces speak for:
 * accounts with plans, concurrency pools and credit quotas, a latency model,
 * injected faults, and a record of what it saw.
 *
 * **Details**
 *
 * - `handle(request)` takes a Web `Request` (or any {@link IncomingRequest}) and answers with an {@link Outcome}:
 *   a status, headers and a body `Stream`, or a connection reset. A hang is an
 *   answer that never comes (the effect does not complete until interrupted).
 * - A request to a concurrency pool holds its slot until the last byte of its
 *   body is sent: the body stream releases it when it ends, fails or is
 *   interrupted. Past the limit a request waits in the optional FIFO queue
 *   (`queue.depth`, `queue.maxWaitMs`), else gets `429 too_many_concurrent_requests`.
 * - All time comes from `Clock` (sleeps are `Effect.sleep`), all randomness
 *   from the model's own seeded generator ({@link Prng}), so a seed and a
 *   request sequence give one run.
 * - Routing: the endpoint table (`client/Endpoints.ts`) finds the row of a
 *   request (`Endpoints.match`); each row has one handler (`Handlers.ts`,
 *   `HandlersBeyondTts.ts`), and its pool and credits come from the row. A
 *   known path asked with another method is FastAPI's `405
 *   {"detail":"Method Not Allowed"}` (with `allow`), any other path `404
 *   {"detail":"Not Found"}`.
 * - Body size: {@link Service.readBody} and {@link Service.checkBody} are the one
 *   rule the faces apply before a body is read ({@link BodyLimits}): past the
 *   limit, `413 payload_too_large` at the declared `Content-Length`, or as soon
 *   as the bytes counted pass it.
 * - Control: {@link Simulator.configure} (limits, plan, faults, queue, credits,
 *   latency) and the routes `GET /_simulator/stats`, `POST /_simulator/reset`,
 *   `POST /_simulator/config` which both faces serve.
 * - Real-time TTS: the WebSocket endpoints `stream-input` and
 *   `multi-stream-input` are answered by {@link Service.realtime}
 *   (`Realtime.ts`) over the same accounts, pools, latency, audio, seed and
 *   record; the faces carry the socket (`RealtimeInProcess.ts`, `Server.ts`).
 * - This module wires the model's parts, each in its own module: `Accounts`
 *   (keys, plans, credits), `Pools` (slots and the server-side queue),
 *   `Faults`, `Answers` (bodies, headers, errors), `Checks` (what a request is
 *   and FastAPI's 422 checks), `BodyLimit`, `Generation` (the shared path of a
 *   generation request and the latency model), `Control` and `Counts` (the record).
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer, Stream } from "effect"
import * as Endpoints from "../client/Endpoints.ts"
import { deploymentGuidePlans, type PlanLimits, type PlanName, type Pool } from "../resilience/Plans.ts"
import * as Accounts from "./Accounts.ts"
import * as Answers from "./Answers.ts"
import * as BodyLimit from "./BodyLimit.ts"
import type { IncomingRequest } from "./Checks.ts"
import * as Control from "./Control.ts"
import * as Counts from "./Counts.ts"
import * as Faults from "./Faults.ts"
import * as Generation from "./Generation.ts"
import * as Handlers from "./Handlers.ts"
import * as HandlersBeyondTts from "./HandlersBeyondTts.ts"
import * as Pools from "./Pools.ts"
import * as Prng from "./Prng.ts"
import * as Realtime from "./Realtime.ts"

export { type AccountOptions, creditsOfPlan } from "./Accounts.ts"
export { type Outcome, type Pending, StreamCut } from "./Answers.ts"
export { type BodyHead, type BodyLimits, type BodyRead, defaultBodyLimits } from "./BodyLimit.ts"
export { type IncomingRequest, textRequest, type ValidationItem } from "./Checks.ts"
export { ConfigPatch, SimulatorConfigError, type Stats } from "./Control.ts"
export { faultMix, type FaultRates, noFaults } from "./Faults.ts"
export { defaultLatency, type LatencyModel, type LatencyProfile } from "./Generation.ts"
export type { PoolStats, QueueOptions, Sample } from "./Pools.ts"
export type {
  Engine as RealtimeEngine,
  Handshake as RealtimeHandshake,
  Options as RealtimeOptions,
  Patch as RealtimePatch,
  Stats as RealtimeStats
} from "./Realtime.ts"
export { noRealtimeFaults, type RealtimeFault, type RealtimeFaultRates } from "./RealtimeFaults.ts"

// ==== Options

/** Options of a simulator run. Every field has a default. */
export interface Options {
  /** PRNG seed. Default 1. */
  readonly seed?: number | undefined
  /** Plan of the accounts that do not name one. Default `pro`. */
  readonly plan?: PlanName | undefined
  /** Plan table. Default {@link deploymentGuidePlans} (docs/design.md section 5). */
  readonly planTable?: { readonly [P in PlanName]: PlanLimits } | undefined
  /** API keys. Default one key, `sim-key`. */
  readonly apiKeys?: ReadonlyArray<string | Accounts.AccountOptions> | undefined
  /** Accept any non-empty key, each as a fresh account on `plan`. Default false. */
  readonly acceptAnyKey?: boolean | undefined
  /** Server-side queue. Default depth 0. */
  readonly queue?: Partial<Pools.QueueOptions> | undefined
  /** Fault rates. Default none. */
  readonly faults?: Partial<Faults.FaultRates> | undefined
  /** Sends `Retry-After: N` on every 429 when set. Default unset (the real API sends none). */
  readonly retryAfterSeconds?: number | undefined
  /** Shared capacity across all keys; above it requests get `429 system_busy`. Default unlimited. */
  readonly systemCapacity?: number | undefined
  /** Latency profiles (merged per family over {@link defaultLatency}). */
  readonly latency?: Partial<Generation.LatencyModel> | undefined
  /** Characters of text per second of speech. Default 15. */
  readonly charsPerSecond?: number | undefined
  /** Per-model character limit overrides. */
  readonly characterLimits?: Readonly<Record<string, number>> | undefined
  /** Length of a quota period in seconds. Default 30 days. */
  readonly periodSeconds?: number | undefined
  /** `x-region` header value. Default `us-central1`. */
  readonly region?: string | undefined
  /** In-flight samples kept per (key, pool). Default 2000. */
  readonly maxSamples?: number | undefined
  /** Stream chunk duration in seconds of audio. Default 0.5. */
  readonly chunkSeconds?: number | undefined
  /** Largest request bodies, in bytes, per kind (merged over {@link defaultBodyLimits}); past them a `413`. */
  readonly bodyLimits?: Partial<BodyLimit.BodyLimits> | undefined
  /** The real-time WebSocket endpoints: fault rates per generation and the stall length. Default no faults. */
  readonly realtime?: Realtime.Options | undefined
}

// ==== Service

/** The simulated ElevenLabs service. */
export interface Service {
  /** Answers one request (`/v1/*`, `/v2/*` and `/_simulator/*`). */
  readonly handle: (request: IncomingRequest) => Effect.Effect<Answers.Outcome>
  /**
   * The body-size rule for a body already in memory: the `413` for a body of
   * `length` bytes past the request's limit ({@link BodyLimits}), else `undefined`.
   */
  readonly checkBody: (head: BodyLimit.BodyHead, length: number) => Answers.Outcome | undefined
  /**
   * Reads a request body under the size rule: refused at once when the declared
   * `content-length` is past the limit (nothing is pulled from `body`), else read
   * while counting, and refused as soon as the count passes the limit (`body` is
   * not pulled further; the transport closes the connection).
   */
  readonly readBody: <E>(
    head: BodyLimit.BodyHead,
    body: Stream.Stream<Uint8Array, E>
  ) => Effect.Effect<BodyLimit.BodyRead, E>
  /** The record so far. */
  readonly stats: Effect.Effect<Control.Stats>
  /** Clears the record (counts, maxima, samples); in-flight requests stay. */
  readonly resetStats: Effect.Effect<void>
  /** Applies a change: limits, plan, faults, queue, credits. */
  readonly configure: (patch: Control.ConfigPatch) => Effect.Effect<void, Control.SimulatorConfigError>
  /** Sets one pool's limit (of one account, or all). */
  readonly setLimit: (
    pool: Pool,
    limit: number,
    account?: string | undefined
  ) => Effect.Effect<void, Control.SimulatorConfigError>
  /** Replaces some fault rates (the others are kept). */
  readonly setFaults: (faults: Partial<Faults.FaultRates>) => Effect.Effect<void>
  /** Sets the credits left this period (of one account, or all). */
  readonly setCredits: (
    remaining: number,
    account?: string | undefined
  ) => Effect.Effect<void, Control.SimulatorConfigError>
  /** The real-time WebSocket endpoints, which the faces connect sockets to. */
  readonly realtime: Realtime.Engine
}

/** The service tag. */
export class Simulator extends Context.Service<Simulator, Service>()("elevenlabs-resilience/simulator/Simulator") {}

// ==== Constructor

/**
 * Builds a simulator. Time comes from the `Clock` of the fibers that call it.
 *
 * @example
 * ```ts
 * const sim = yield* Simulator.make({ plan: "free", seed: 7, apiKeys: ["k"] })
 * ```
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const prng = Prng.make(options.seed ?? 1)
  const startMs = yield* Clock.currentTimeMillis
  const startUnix = Math.floor(startMs / 1000)
  const counts = Counts.make()
  const answers = Answers.make({
    prng,
    region: options.region ?? "us-central1",
    counts,
    retryAfterSeconds: options.retryAfterSeconds
  })
  const pools = Pools.make({
    maxSamples: options.maxSamples ?? 2000,
    queue: { depth: options.queue?.depth ?? 0, maxWaitMs: options.queue?.maxWaitMs ?? 0 },
    systemCapacity: options.systemCapacity,
    startMs
  })
  const accounts = Accounts.make({
    specs: options.apiKeys ?? ["sim-key"],
    table: options.planTable ?? deploymentGuidePlans,
    defaultPlan: options.plan ?? "pro",
    acceptAnyKey: options.acceptAnyKey === true,
    periodSeconds: options.periodSeconds ?? 30 * 24 * 3600,
    startUnix,
    pools,
    answers,
    counts
  })
  const faults = Faults.make({ prng, rates: { ...Faults.noFaults, ...options.faults }, answers, counts })
  const bodyLimit = BodyLimit.make({
    limits: { ...BodyLimit.defaultBodyLimits, ...options.bodyLimits },
    answers,
    counts
  })
  const latency = { ...Generation.defaultLatency, ...options.latency }
  const charsPerSecond = options.charsPerSecond ?? 15
  const chunkSeconds = options.chunkSeconds ?? 0.5
  const realtime = Realtime.make({
    prng,
    accounts,
    pools,
    counts,
    latency,
    charsPerSecond,
    chunkSeconds,
    acceptAnyKey: options.acceptAnyKey === true,
    options: options.realtime
  })
  const control = Control.make({ accounts, pools, faults, answers, counts, realtime })
  const kit: Handlers.Kit = {
    answers,
    accounts,
    generate: Generation.make({ prng, accounts, pools, faults, answers }),
    prng,
    latency,
    charsPerSecond,
    chunkSeconds,
    characterLimits: options.characterLimits,
    startUnix
  }

  /** One handler per row of the endpoint table (the compiler asks for a new row's). */
  const handlers: { readonly [N in Endpoints.Name]: Handlers.Handler } = {
    ...Handlers.make(kit),
    ...HandlersBeyondTts.make(kit)
  }

  const route = (request: IncomingRequest): Effect.Effect<Answers.Outcome> => {
    const url = new URL(request.url)
    const method = request.method.toUpperCase()
    if (method === "OPTIONS") {
      // CORS preflight, answered as the real API does, so browser code can use the simulator.
      answers.record(200, undefined)
      const headers = { ...answers.commonHeaders("text/plain; charset=utf-8"), "content-length": "2" }
      return Effect.succeed(
        Answers.respond({ status: 200, headers, body: Stream.succeed(new TextEncoder().encode("OK")) })
      )
    }
    const found = Endpoints.match(method, url.pathname)
    switch (found._tag) {
      case "Found":
        return handlers[found.endpoint.name](request, url, found.params)
      case "MethodNotAllowed":
        return Effect.succeed(
          Answers.respond(answers.json(405, { detail: "Method Not Allowed" }, { allow: found.allowed.join(", ") }))
        )
      case "NotFound":
        return Effect.succeed(Answers.respond(answers.notFound()))
    }
  }

  const handle = (request: IncomingRequest): Effect.Effect<Answers.Outcome> => {
    const path = new URL(request.url).pathname
    if (path.startsWith("/_simulator/")) return control.route(request, path)
    return Effect.suspend(() => {
      counts.requests++
      return route(request)
    })
  }

  const { configure } = control
  return Simulator.of({
    handle,
    checkBody: bodyLimit.checkBody,
    readBody: bodyLimit.readBody,
    stats: control.stats,
    resetStats: control.resetStats,
    configure,
    setLimit: (pool, limit, account) =>
      configure({ ...(account === undefined ? {} : { account }), limits: { [pool]: limit } }),
    setFaults: (f) => Effect.sync(() => faults.set(f)),
    setCredits: (remaining, account) =>
      configure({ ...(account === undefined ? {} : { account }), credits: { remaining } }),
    realtime
  })
})

/** The simulator as a layer. */
export const layer = (options: Options = {}): Layer.Layer<Simulator> => Layer.effect(Simulator, make(options))
