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
 *   request (`Endpoints.match`); each row has one handler here, and its pool
 *   and credits come from the row. A known path asked with another method is
 *   FastAPI's `405 {"detail":"Method Not Allowed"}` (with `allow`), any other
 *   path `404 {"detail":"Not Found"}`.
 * - Body size: {@link Service.readBody} and {@link Service.checkBody} are the one
 *   rule the faces apply before a body is read ({@link BodyLimits}): past the
 *   limit, `413 payload_too_large` at the declared `Content-Length`, or as soon
 *   as the bytes counted pass it.
 * - Control: {@link Simulator.configure} (limits, plan, faults, queue, credits,
 *   latency) and the routes `GET /_simulator/stats`, `POST /_simulator/reset`,
 *   `POST /_simulator/config` which both faces serve.
 *
 * @since 0.1.0
 */
import { Clock, Context, Data, Duration, Effect, Layer, Schema, Stream } from "effect"
import * as Endpoints from "../client/Endpoints.ts"
import { characterLimitOf, defaultTtsModel, minimumPlanForFormat } from "../client/Models.ts"
import { concat } from "../internal/Bytes.ts"
import { type PlanLimits, type PlanName, planNames, type Pool, pools, deploymentGuidePlans } from "../resilience/Plans.ts"
import * as Audio from "./Audio.ts"
import * as Catalog from "./Catalog.ts"
import * as HandlersBeyondTts from "./HandlersBeyondTts.ts"
import * as Prng from "./Prng.ts"

// ==== Options

/** Time to first byte and generation speed of one model family. */
export interface LatencyProfile {
  /** Milliseconds before the first byte (headers on stream endpoints). */
  readonly ttfbMs: number
  /** Milliseconds of generation per character of text (per second of audio for STT/music). */
  readonly msPerUnit: number
  /** Relative noise, e.g. `0.2` for +/-20 %, drawn from the seed. */
  readonly jitter: number
}

/** The latency profiles per family. */
export interface LatencyModel {
  readonly standard: LatencyProfile
  readonly v3: LatencyProfile
  readonly flash: LatencyProfile
  readonly stt: LatencyProfile
  readonly music: LatencyProfile
}

/** Default latencies: Flash ~75 ms to first byte, Multilingual ~300 ms, v3 ~500 ms. */
export const defaultLatency: LatencyModel = {
  flash: { ttfbMs: 75, msPerUnit: 1, jitter: 0.2 },
  standard: { ttfbMs: 300, msPerUnit: 4, jitter: 0.2 },
  v3: { ttfbMs: 500, msPerUnit: 6, jitter: 0.2 },
  stt: { ttfbMs: 300, msPerUnit: 50, jitter: 0.2 },
  music: { ttfbMs: 1000, msPerUnit: 100, jitter: 0.2 }
}

/** The probability of each injected fault, per admitted request (0 to 1). */
export interface FaultRates {
  /** `429 system_busy` (drawn before admission; holds no slot). */
  readonly systemBusy: number
  /** `500` shape A: `{"detail":{"status":"something_went_wrong",...}}`. */
  readonly serverError: number
  /** `500` shape E: top-level `{"status":"internal_server_error",...}`. */
  readonly internalServerError: number
  /** `503` with an HTML body (a load-balancer page). */
  readonly serviceUnavailable: number
  /** The connection is reset before any response. */
  readonly connectionReset: number
  /** No headers ever (until the client gives up). */
  readonly hang: number
  /** Success headers, then the body stops half-way and the connection ends. */
  readonly streamCut: number
}

/** No faults. */
export const noFaults: FaultRates = {
  systemBusy: 0,
  serverError: 0,
  internalServerError: 0,
  serviceUnavailable: 0,
  connectionReset: 0,
  hang: 0,
  streamCut: 0
}

/**
 * The mix `--failure-rate R` stands for: R split as 40 % `system_busy`, 20 %
 * `500` shape A, 10 % `500` shape E, 10 % `503` HTML, 10 % reset, 10 % stream cut.
 * Hangs are left out because they stall a client for its whole timeout.
 */
export const faultMix = (rate: number): FaultRates => ({
  systemBusy: rate * 0.4,
  serverError: rate * 0.2,
  internalServerError: rate * 0.1,
  serviceUnavailable: rate * 0.1,
  connectionReset: rate * 0.1,
  hang: 0,
  streamCut: rate * 0.1
})

/** The server-side queue in front of each (key, pool). */
export interface QueueOptions {
  /** Requests that may wait per (key, pool) once the limit is reached. Default 0 (no queue). */
  readonly depth: number
  /** How long a queued request waits for a slot before its 429. Default 0. */
  readonly maxWaitMs: number
}

/** One simulated API key and its account. */
export interface AccountOptions {
  /** The `xi-api-key` value. */
  readonly key: string
  /** The name used in stats and control routes (the key itself never appears). Default `key1`, `key2`, ... */
  readonly name?: string | undefined
  /** Plan; default the simulator's `plan`. */
  readonly plan?: PlanName | undefined
  /** Per-pool limit overrides. */
  readonly limits?: Partial<PlanLimits> | undefined
  /** Credits per period; default by plan ({@link creditsOfPlan}). */
  readonly characterLimit?: number | undefined
  /** Credits already used at start. Default 0. */
  readonly characterCount?: number | undefined
  /** Unix seconds of the next reset; default one period after the start. */
  readonly nextResetUnix?: number | undefined
}

/** Options of a simulator run. Every field has a default. */
export interface Options {
  /** PRNG seed. Default 1. */
  readonly seed?: number | undefined
  /** Plan of the accounts that do not name one. Default `pro`. */
  readonly plan?: PlanName | undefined
  /** Plan table. Default {@link deploymentGuidePlans} (docs/design.md section 5). */
  readonly planTable?: { readonly [P in PlanName]: PlanLimits } | undefined
  /** API keys. Default one key, `sim-key`. */
  readonly apiKeys?: ReadonlyArray<string | AccountOptions> | undefined
  /** Accept any non-empty key, each as a fresh account on `plan`. Default false. */
  readonly acceptAnyKey?: boolean | undefined
  /** Server-side queue. Default depth 0. */
  readonly queue?: Partial<QueueOptions> | undefined
  /** Fault rates. Default none. */
  readonly faults?: Partial<FaultRates> | undefined
  /** Sends `Retry-After: N` on every 429 when set. Default unset (the real API sends none). */
  readonly retryAfterSeconds?: number | undefined
  /** Shared capacity across all keys; above it requests get `429 system_busy`. Default unlimited. */
  readonly systemCapacity?: number | undefined
  /** Latency profiles (merged per family over {@link defaultLatency}). */
  readonly latency?: Partial<LatencyModel> | undefined
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
  readonly bodyLimits?: Partial<BodyLimits> | undefined
}

/**
 * The largest request body the simulator reads, in bytes, per kind of request.
 * A body past its limit gets `413 payload_too_large` before it is read
 * (declared `Content-Length`), or as soon as the count passes it (a body of
 * unknown length), so an oversized body is never held in memory.
 */
export interface BodyLimits {
  /**
   * A `multipart/form-data` upload to a row that takes one (`POST /v1/speech-to-text`, speech to
   * speech, audio isolation). Default 100 MiB, a choice: an upload under the limit is held in
   * memory (three to four times its size at the peak, while parsed). The API takes files under 5.0 GB (the OpenAPI document,
   * `Body_Speech_to_Text_v1_speech_to_text_post.file`; docs/api-facts.md §2.2); set
   * `5 * 1024 ** 3` to accept what it accepts, on a machine with the memory.
   */
  readonly upload: number
  /**
   * Every other body (JSON, text, URL-encoded or multipart forms elsewhere). Default 10 MiB,
   * a choice (the sources give no limit): the largest TTS body, 40,000 characters
   * (Flash v2.5), is under 250 KB even with every character `\u`-escaped.
   */
  readonly json: number
}

/** The default {@link BodyLimits}: uploads 100 MiB, other bodies 10 MiB. */
export const defaultBodyLimits: BodyLimits = { upload: 100 * 1024 ** 2, json: 10 * 1024 ** 2 }

/** Monthly credits per plan (the older, widely cited figures; `docs/api-facts.md` §5.4). */
export const creditsOfPlan: { readonly [P in PlanName]: number } = {
  free: 10_000,
  starter: 30_000,
  creator: 100_000,
  pro: 500_000,
  scale: 2_000_000,
  business: 11_000_000
}

// ==== Outcome

/** The body of an answer stopped half-way (a stream cut); a transport ends the connection. */
export class StreamCut extends Data.TaggedError("StreamCut")<{}> {}

/** What the model answers to one request. */
export type Outcome =
  | {
    readonly _tag: "Respond"
    readonly status: number
    readonly headers: Readonly<Record<string, string>>
    readonly body: Stream.Stream<Uint8Array, StreamCut>
    /**
     * The whole body when it is one unpaced buffer: a transport may send these
     * bytes at once, after running `body` to its end (which releases the slot).
     */
    readonly whole?: Uint8Array | undefined
  }
  | { readonly _tag: "Reset" }

// ==== Stats

/** One sample of a pool's in-flight count. */
export interface Sample {
  readonly t: number
  readonly inFlight: number
}

/** The record of one (key, pool). */
export interface PoolStats {
  readonly inFlight: number
  readonly maxInFlight: number
  readonly limit: number
  readonly queued: number
  readonly maxQueued: number
  readonly admitted: number
  readonly rejected: number
  readonly samples: ReadonlyArray<Sample>
}

/** The record of the run, as `GET /_simulator/stats` serves it. */
export interface Stats {
  readonly now: number
  readonly requests: number
  readonly byStatus: Readonly<Record<string, number>>
  readonly byDetailStatus: Readonly<Record<string, number>>
  readonly faults: Readonly<Record<string, number>>
  readonly creditsCharged: number
  /** Per pool, over all keys: `maxInFlight` and `limit` are the largest of any one key. */
  readonly pools: Readonly<Record<Pool, Omit<PoolStats, "samples">>>
  readonly accounts: Readonly<
    Record<
      string,
      {
        readonly plan: string
        readonly characterCount: number
        readonly characterLimit: number
        readonly nextCharacterCountResetUnix: number
        readonly pools: Readonly<Record<Pool, PoolStats>>
      }
    >
  >
}

// ==== Control

const Probability = Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 }))
const NonNegative = Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))

/** A change to a running simulator (the body of `POST /_simulator/config`). */
export const ConfigPatch = Schema.Struct({
  /** The account to change (its name); all accounts when absent. */
  account: Schema.optionalKey(Schema.String),
  plan: Schema.optionalKey(Schema.Literals(planNames)),
  limits: Schema.optionalKey(Schema.Struct({
    standard: Schema.optionalKey(NonNegative),
    flash: Schema.optionalKey(NonNegative),
    stt: Schema.optionalKey(NonNegative),
    music: Schema.optionalKey(NonNegative)
  })),
  faults: Schema.optionalKey(Schema.Struct({
    systemBusy: Schema.optionalKey(Probability),
    serverError: Schema.optionalKey(Probability),
    internalServerError: Schema.optionalKey(Probability),
    serviceUnavailable: Schema.optionalKey(Probability),
    connectionReset: Schema.optionalKey(Probability),
    hang: Schema.optionalKey(Probability),
    streamCut: Schema.optionalKey(Probability)
  })),
  failureRate: Schema.optionalKey(Probability),
  queue: Schema.optionalKey(Schema.Struct({
    depth: Schema.optionalKey(NonNegative),
    maxWaitMs: Schema.optionalKey(NonNegative)
  })),
  retryAfterSeconds: Schema.optionalKey(Schema.NullOr(NonNegative)),
  systemCapacity: Schema.optionalKey(Schema.NullOr(NonNegative)),
  credits: Schema.optionalKey(Schema.Struct({
    remaining: Schema.optionalKey(NonNegative),
    used: Schema.optionalKey(NonNegative),
    limit: Schema.optionalKey(NonNegative),
    nextResetUnix: Schema.optionalKey(NonNegative)
  }))
})
export type ConfigPatch = typeof ConfigPatch.Type

/** A control request the simulator cannot apply. */
export class SimulatorConfigError extends Schema.TaggedError<SimulatorConfigError>()("SimulatorConfigError", {
  message: Schema.String
}) {}

// ==== Service

/**
 * What {@link Service.handle} reads of a request: the part of a Web `Request` it uses, so a
 * Web `Request` is one. The in-process face passes a lighter object with the body already
 * decoded in `bodyText` (read synchronously: no promise for `TestClock` to miss, no Web
 * `Request` to build per call).
 */
export interface IncomingRequest {
  readonly method: string
  /** The absolute URL, query included. */
  readonly url: string
  readonly headers: { readonly get: (name: string) => string | null }
  readonly text: () => Promise<string>
  readonly formData: () => Promise<FormData>
  /** The body as text when it is known up front; read instead of `text()`. */
  readonly bodyText?: string | undefined
}

/**
 * The light {@link IncomingRequest} both faces pass for a body that is text
 * (JSON, text, a URL-encoded form, or none): decoded once, up front. A form is
 * parsed from that text on demand, as a Web `Request` would parse it.
 */
export const textRequest = (options: {
  readonly method: string
  readonly url: string
  /** A header by its lower-case name. */
  readonly header: (name: string) => string | null
  readonly bodyText: string
}): IncomingRequest => {
  const { bodyText, header } = options
  return {
    method: options.method,
    url: options.url,
    headers: { get: (name) => header(name.toLowerCase()) },
    bodyText,
    text: () => Promise.resolve(bodyText),
    formData: () => {
      const contentType = header("content-type")
      return new Response(bodyText, contentType === null ? {} : { headers: { "content-type": contentType } }).formData()
    }
  }
}

/**
 * What the body-size rule reads of a request before its body: method, URL and
 * headers (`content-type` picks the limit, `content-length` is checked first).
 * A Web `Request` and an {@link IncomingRequest} are both one.
 */
export type BodyHead = Pick<IncomingRequest, "method" | "url" | "headers">

/** A body read under the size rule: its bytes, or the `413` to send instead. */
export type BodyRead =
  | { readonly _tag: "Body"; readonly bytes: Uint8Array }
  | { readonly _tag: "Refused"; readonly outcome: Outcome }

/** The simulated ElevenLabs service. */
export interface Service {
  /** Answers one request (`/v1/*`, `/v2/*` and `/_simulator/*`). */
  readonly handle: (request: IncomingRequest) => Effect.Effect<Outcome>
  /**
   * The body-size rule for a body already in memory: the `413` for a body of
   * `length` bytes past the request's limit ({@link BodyLimits}), else `undefined`.
   */
  readonly checkBody: (head: BodyHead, length: number) => Outcome | undefined
  /**
   * Reads a request body under the size rule: refused at once when the declared
   * `content-length` is past the limit (nothing is pulled from `body`), else read
   * while counting, and refused as soon as the count passes the limit (`body` is
   * not pulled further; the transport closes the connection).
   */
  readonly readBody: <E>(head: BodyHead, body: Stream.Stream<Uint8Array, E>) => Effect.Effect<BodyRead, E>
  /** The record so far. */
  readonly stats: Effect.Effect<Stats>
  /** Clears the record (counts, maxima, samples); in-flight requests stay. */
  readonly resetStats: Effect.Effect<void>
  /** Applies a change: limits, plan, faults, queue, credits. */
  readonly configure: (patch: ConfigPatch) => Effect.Effect<void, SimulatorConfigError>
  /** Sets one pool's limit (of one account, or all). */
  readonly setLimit: (pool: Pool, limit: number, account?: string | undefined) => Effect.Effect<void, SimulatorConfigError>
  /** Replaces some fault rates (the others are kept). */
  readonly setFaults: (faults: Partial<FaultRates>) => Effect.Effect<void>
  /** Sets the credits left this period (of one account, or all). */
  readonly setCredits: (remaining: number, account?: string | undefined) => Effect.Effect<void, SimulatorConfigError>
}

/** The service tag. */
export class Simulator extends Context.Service<Simulator, Service>()("elevenlabs-resilience/simulator/Simulator") {}

// ==== Internal state

interface Waiter {
  granted: boolean
  resume: (() => void) | undefined
}

interface PoolState {
  limit: number
  inFlight: number
  maxInFlight: number
  queue: Array<Waiter>
  maxQueued: number
  admitted: number
  rejected: number
  samples: Array<Sample>
}

interface Account {
  readonly name: string
  readonly key: string
  plan: PlanName
  characterLimit: number
  characterCount: number
  reserved: number
  nextResetUnix: number
  readonly pools: Record<Pool, PoolState>
}

const planOrder: ReadonlyArray<PlanName> = planNames

const formatLabel = (format: string): string => {
  const info = Audio.parseFormat(format)
  if (info === undefined) return format
  const codec = info.codec.toUpperCase()
  return info.codec === "mp3"
    ? `${codec} at ${info.sampleRate}hz, ${info.bitrate}kbps`
    : `${codec} at ${info.sampleRate}hz`
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

const quoteList = (values: ReadonlyArray<string>): string => {
  const quoted = values.map((v) => `'${v}'`)
  return quoted.length <= 1 ? quoted.join("") : `${quoted.slice(0, -1).join(", ")} or ${quoted[quoted.length - 1]}`
}


const base64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")

const encoder = new TextEncoder()

type Json = unknown

/** An answer being built: what a handler returns before `respond` makes it an {@link Outcome}. */
export interface Pending {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Stream.Stream<Uint8Array, StreamCut>
  readonly whole?: Uint8Array | undefined
}

/** One entry of a FastAPI 422 `detail` list. */
export type ValidationItem = {
  readonly type: string
  readonly loc: ReadonlyArray<string | number>
  readonly msg: string
  readonly input: Json
  readonly ctx?: Record<string, Json>
}

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
  const table = options.planTable ?? deploymentGuidePlans
  const defaultPlan: PlanName = options.plan ?? "pro"
  const periodSeconds = options.periodSeconds ?? 30 * 24 * 3600
  const charsPerSecond = options.charsPerSecond ?? 15
  const region = options.region ?? "us-central1"
  const maxSamples = options.maxSamples ?? 2000
  const chunkSeconds = options.chunkSeconds ?? 0.5
  const latency: LatencyModel = { ...defaultLatency, ...options.latency }
  let faults: FaultRates = { ...noFaults, ...options.faults }
  let queue: QueueOptions = { depth: options.queue?.depth ?? 0, maxWaitMs: options.queue?.maxWaitMs ?? 0 }
  let retryAfterSeconds = options.retryAfterSeconds
  let systemCapacity = options.systemCapacity
  const startMs = yield* Clock.currentTimeMillis
  const startUnix = Math.floor(startMs / 1000)

  const newPool = (limit: number): PoolState => ({
    limit,
    inFlight: 0,
    maxInFlight: 0,
    queue: [],
    maxQueued: 0,
    admitted: 0,
    rejected: 0,
    samples: [{ t: startMs, inFlight: 0 }]
  })

  const accounts: Array<Account> = []
  const byKey = new Map<string, Account>()
  const addAccount = (spec: AccountOptions): Account => {
    const plan = spec.plan ?? defaultPlan
    const limits = { ...table[plan], ...spec.limits }
    const account: Account = {
      name: spec.name ?? `key${accounts.length + 1}`,
      key: spec.key,
      plan,
      characterLimit: spec.characterLimit ?? creditsOfPlan[plan],
      characterCount: spec.characterCount ?? 0,
      reserved: 0,
      nextResetUnix: spec.nextResetUnix ?? startUnix + periodSeconds,
      pools: {
        standard: newPool(limits.standard),
        flash: newPool(limits.flash),
        stt: newPool(limits.stt),
        music: newPool(limits.music)
      }
    }
    accounts.push(account)
    byKey.set(account.key, account)
    return account
  }
  for (const spec of options.apiKeys ?? ["sim-key"]) addAccount(typeof spec === "string" ? { key: spec } : spec)

  // The record
  let requests = 0
  let creditsCharged = 0
  let byStatus: Record<string, number> = {}
  let byDetailStatus: Record<string, number> = {}
  const zeroFaults = (): Record<string, number> => ({
    systemBusy: 0,
    systemBusyLoad: 0,
    serverError: 0,
    internalServerError: 0,
    serviceUnavailable: 0,
    connectionReset: 0,
    hang: 0,
    streamCut: 0
  })
  let faultCounts: Record<string, number> = zeroFaults()
  const bump = (record: Record<string, number>, key: string) => {
    record[key] = (record[key] ?? 0) + 1
  }

  const sample = (state: PoolState, now: number) => {
    if (state.inFlight > state.maxInFlight) state.maxInFlight = state.inFlight
    const last = state.samples[state.samples.length - 1]
    if (last !== undefined && last.t === now) state.samples[state.samples.length - 1] = { t: now, inFlight: state.inFlight }
    else state.samples.push({ t: now, inFlight: state.inFlight })
    if (state.samples.length > maxSamples) state.samples.splice(0, state.samples.length - maxSamples)
  }

  const totalInFlight = () => {
    let n = 0
    for (const a of accounts) for (const p of pools) n += a.pools[p].inFlight
    return n
  }

  // Quota periods roll when the clock passes the reset time.
  const rollPeriod = (account: Account, nowMs: number) => {
    const nowUnix = Math.floor(nowMs / 1000)
    if (nowUnix >= account.nextResetUnix) {
      account.characterCount = 0
      while (account.nextResetUnix <= nowUnix) account.nextResetUnix += periodSeconds
    }
  }

  // ---- Concurrency slots

  /** Hands free slots to waiters, first come first served. */
  const drain = (state: PoolState, now: number) => {
    while (state.queue.length > 0 && state.inFlight < state.limit) {
      const waiter = state.queue.shift()!
      waiter.granted = true
      state.inFlight++
      state.admitted++
      sample(state, now)
      waiter.resume?.()
    }
  }

  const release = (state: PoolState) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        state.inFlight--
        sample(state, now)
        drain(state, now)
      }))

  /** Takes a slot, waits in the queue, or answers `false` (a 429). */
  const admit = (state: PoolState): Effect.Effect<boolean> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (state.inFlight < state.limit && state.queue.length === 0) {
        state.inFlight++
        state.admitted++
        sample(state, now)
        return Effect.succeed(true)
      }
      if (state.queue.length >= queue.depth || queue.maxWaitMs <= 0) {
        state.rejected++
        return Effect.succeed(false)
      }
      const waiter: Waiter = { granted: false, resume: undefined }
      state.queue.push(waiter)
      if (state.queue.length > state.maxQueued) state.maxQueued = state.queue.length
      const wait = Effect.callback<boolean>((resume) => {
        waiter.resume = () => resume(Effect.succeed(true))
        // Interrupted (or timed out) while queued: leave no place behind, and give back a slot
        // that was handed over in the same instant.
        return Effect.suspend(() => {
          const i = state.queue.indexOf(waiter)
          if (i >= 0) state.queue.splice(i, 1)
          return waiter.granted ? release(state) : Effect.void
        })
      })
      return wait.pipe(
        Effect.timeoutOption(Duration.millis(queue.maxWaitMs)),
        Effect.map((o) => {
          if (o._tag === "Some") return true
          state.rejected++
          return false
        })
      )
    })

  // ---- Answers

  const commonHeaders = (contentType: string): Record<string, string> => ({
    "content-type": contentType,
    "server": "uvicorn",
    "x-trace-id": prng.string(32, Prng.hex),
    "x-region": region,
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "*",
    "access-control-allow-methods": "POST, PATCH, OPTIONS, DELETE, GET, PUT",
    "access-control-max-age": "600"
  })

  const record = (status: number, detailStatus: string | undefined) => {
    bump(byStatus, String(status))
    if (detailStatus !== undefined) bump(byDetailStatus, detailStatus)
  }

  const json = (status: number, body: Json, extra?: Record<string, string>): Pending => {
    const bytes = encoder.encode(JSON.stringify(body))
    const detail = (body as { detail?: { status?: unknown } } | null)?.detail
    const top = (body as { status?: unknown } | null)?.status
    record(
      status,
      status >= 400
        ? typeof detail === "object" && detail !== null && !Array.isArray(detail) && typeof detail.status === "string"
          ? detail.status
          : Array.isArray(detail)
          ? "validation_error"
          : typeof top === "string"
          ? top
          : undefined
        : undefined
    )
    return {
      status,
      headers: { ...commonHeaders("application/json"), "content-length": String(bytes.length), ...extra },
      body: Stream.succeed(bytes),
      whole: bytes
    }
  }

  const detail = (status: number, code: string, message: string, extra?: Record<string, string>): Pending =>
    json(status, { detail: { status: code, message } }, extra)

  const tooManyConcurrent = (limit: number) =>
    detail(
      429,
      "too_many_concurrent_requests",
      `Too many concurrent requests. Your current subscription is associated with a maximum of ${limit} concurrent requests (running in parallel). This is done such that a single user does not overwhelm our systems and affect other users negatively. Please upgrade your subscription or contact sales if you want to increase this limit.`,
      retryAfterHeader()
    )

  const systemBusy = () =>
    detail(
      429,
      "system_busy",
      "We are sorry, the system is experiencing heavy traffic, please try again. Higher subscriptions have higher priority.",
      retryAfterHeader()
    )

  const retryAfterHeader = (): Record<string, string> =>
    retryAfterSeconds === undefined ? {} : { "retry-after": String(retryAfterSeconds) }

  const validation = (items: ReadonlyArray<ValidationItem>) => json(422, { detail: items })

  // ---- Body size: the one rule both faces apply before a body is read

  const bodyLimits: BodyLimits = { ...defaultBodyLimits, ...options.bodyLimits }

  /** Uploads are the multipart bodies of the rows that take one (`body: "multipart"`: STT, speech to speech, isolation). */
  const bodyLimitOf = (head: BodyHead): number => {
    const contentType = (head.headers.get("content-type") ?? "").toLowerCase()
    if (!contentType.startsWith("multipart/form-data")) return bodyLimits.json
    const found = Endpoints.match(head.method, new URL(head.url).pathname)
    return found._tag === "Found" && found.endpoint.body === "multipart" ? bodyLimits.upload : bodyLimits.json
  }

  const smallestLimit = Math.min(bodyLimits.upload, bodyLimits.json)

  const checkBody = (head: BodyHead, length: number): Outcome | undefined => {
    if (length <= smallestLimit) return undefined // the common case, without parsing the URL
    const limit = bodyLimitOf(head)
    if (length <= limit) return undefined
    requests++
    // The sources give no 413 body: shape A, and `connection: close` as the rest of the body is not read.
    return respond(detail(
      413,
      "payload_too_large",
      `The request body is larger than the ${limit} bytes this endpoint accepts.`,
      { connection: "close" }
    ))
  }

  const readBody = <E>(head: BodyHead, body: Stream.Stream<Uint8Array, E>): Effect.Effect<BodyRead, E> =>
    Effect.suspend(() => {
      const declared = head.headers.get("content-length")
      const refused = declared === null || declared.trim() === "" || !Number.isFinite(Number(declared))
        ? undefined
        : checkBody(head, Number(declared))
      if (refused !== undefined) return Effect.succeed<BodyRead>({ _tag: "Refused", outcome: refused })
      const limit = bodyLimitOf(head)
      const chunks: Array<Uint8Array> = []
      let total = 0
      return Stream.runForEachWhile(body, (chunk) =>
        Effect.sync(() => {
          total += chunk.byteLength
          if (total > limit) return false
          chunks.push(chunk)
          return true
        })).pipe(Effect.map((): BodyRead => {
          const over = checkBody(head, total)
          return over !== undefined ? { _tag: "Refused", outcome: over } : { _tag: "Body", bytes: concat(chunks) }
        }))
    })

  const notFound = () => json(404, { detail: "Not Found" })

  const respond = (p: Pending): Outcome => ({ _tag: "Respond", status: p.status, headers: p.headers, body: p.body, whole: p.whole })

  const authenticate = (request: IncomingRequest): Account | Pending => {
    const key = request.headers.get("xi-api-key")
    if (key === null || key === "") {
      return detail(401, "needs_authorization", "Neither authorization header nor xi-api-key received, please provide one.")
    }
    const account = byKey.get(key)
    if (account !== undefined) return account
    if (options.acceptAnyKey === true) return addAccount({ key })
    return detail(401, "invalid_api_key", "Invalid API key")
  }

  const isPending = (u: Account | Pending): u is Pending => "status" in u

  const noise = (profile: LatencyProfile) => 1 + profile.jitter * (2 * prng.next() - 1)

  const profileOf = (pool: Pool, modelId: string): LatencyProfile =>
    pool === "flash"
      ? latency.flash
      : pool === "stt"
      ? latency.stt
      : pool === "music"
      ? latency.music
      : modelId === "eleven_v3"
      ? latency.v3
      : latency.standard

  type Fault = keyof FaultRates

  /** Draws at most one fault for an admitted request. */
  const drawFault = (allowCut: boolean): Fault | undefined => {
    const r = prng.next()
    let acc = 0
    const order: ReadonlyArray<Fault> = [
      "serverError",
      "internalServerError",
      "serviceUnavailable",
      "connectionReset",
      "hang",
      "streamCut"
    ]
    for (const f of order) {
      if (f === "streamCut" && !allowCut) continue
      acc += faults[f]
      if (r < acc) return f
    }
    return undefined
  }

  const faultAnswer = (f: Exclude<Fault, "systemBusy" | "connectionReset" | "hang" | "streamCut">): Pending => {
    switch (f) {
      case "serverError":
        return detail(500, "something_went_wrong", "We are sorry, something went wrong. You are not charged for this request.")
      case "internalServerError":
        return json(500, {
          status: "internal_server_error",
          message: "Internal Server error. All such crashes are reported to us automatically."
        })
      case "serviceUnavailable": {
        record(503, undefined)
        const html = encoder.encode(
          "<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 503 (Service Unavailable)!!1</title><p><b>503.</b> <ins>That's an error.</ins><p>The service you requested is not available at this time.<p>Service error -27. <ins>That's all we know.</ins></html>\n"
        )
        return {
          status: 503,
          headers: { ...commonHeaders("text/html; charset=UTF-8"), "content-length": String(html.length) },
          body: Stream.succeed(html),
          whole: html
        }
      }
    }
  }

  /**
   * The shared path of every generation request after validation: quota, load,
   * admission, faults, latency, then the success answer built by `success`.
   */
  const generate = (input: {
    readonly account: Account
    readonly pool: Pool
    readonly cost: number
    readonly profile: LatencyProfile
    /** Units of work (characters, or seconds of audio). */
    readonly units: number
    /** Whether the body streams as it is generated (headers after the first byte time). */
    readonly streaming: boolean
    readonly success: (meta: { readonly latencyMs: number; readonly inFlight: number; readonly limit: number }) => {
      readonly headers: Record<string, string>
      readonly chunks: ReadonlyArray<Uint8Array>
    }
  }): Effect.Effect<Outcome> =>
    Effect.gen(function*() {
      const { account, cost, pool } = input
      const state = account.pools[pool]
      if (state.limit <= 0) {
        return respond(detail(403, "subscription_required", "Subscription required."))
      }
      const now = yield* Clock.currentTimeMillis
      rollPeriod(account, now)
      const remaining = account.characterLimit - account.characterCount - account.reserved
      if (cost > remaining) {
        return respond(detail(
          401,
          "quota_exceeded",
          `This request exceeds your quota of ${account.characterLimit}. You have ${Math.max(0, remaining)} credits remaining, while ${cost} credits are required for this request.`
        ))
      }
      if (systemCapacity !== undefined && totalInFlight() >= systemCapacity) {
        bump(faultCounts, "systemBusyLoad")
        return respond(systemBusy())
      }
      if (faults.systemBusy > 0 && prng.next() < faults.systemBusy) {
        bump(faultCounts, "systemBusy")
        return respond(systemBusy())
      }
      const admitted = yield* admit(state)
      if (!admitted) return respond(tooManyConcurrent(state.limit))
      account.reserved += cost
      // Each of these happens at most once: the reservation becomes usage (a success's
      // headers, even when its body is later cut) or is dropped (faults, interruption);
      // the slot is given back when the body ends, fails or is interrupted.
      let reservationOpen = true
      let slotHeld = true
      const dropReservation = Effect.sync(() => {
        if (!reservationOpen) return
        reservationOpen = false
        account.reserved -= cost
      })
      const chargeReservation = Effect.sync(() => {
        if (!reservationOpen) return
        reservationOpen = false
        account.reserved -= cost
        account.characterCount += cost
        creditsCharged += cost
      })
      const freeSlot = Effect.suspend(() => {
        if (!slotHeld) return Effect.void
        slotHeld = false
        return release(state)
      })
      const work = Effect.gen(function*() {
        const ttfb = Math.max(0, Math.round(input.profile.ttfbMs * noise(input.profile)))
        const generation = Math.max(0, Math.round(input.units * input.profile.msPerUnit * noise(input.profile)))
        const fault = drawFault(true)
        if (fault === "hang") {
          bump(faultCounts, "hang")
          return yield* Effect.never
        }
        if (fault === "connectionReset") {
          yield* Effect.sleep(Duration.millis(ttfb))
          bump(faultCounts, "connectionReset")
          yield* dropReservation
          yield* freeSlot
          return { _tag: "Reset" } as const
        }
        if (fault === "serverError" || fault === "internalServerError" || fault === "serviceUnavailable") {
          yield* Effect.sleep(Duration.millis(ttfb))
          const answer = faultAnswer(fault)
          bump(faultCounts, fault)
          yield* dropReservation
          return respond({ ...answer, body: Stream.ensuring(answer.body, freeSlot) })
        }
        const headersAfter = input.streaming ? ttfb : ttfb + generation
        yield* Effect.sleep(Duration.millis(headersAfter))
        const { chunks, headers } = input.success({
          latencyMs: headersAfter,
          inFlight: state.inFlight,
          limit: state.limit
        })
        yield* chargeReservation
        record(200, undefined)
        const cut = fault === "streamCut"
        if (cut) bump(faultCounts, "streamCut")
        // A cut body stops half-way: half the chunks, or half the bytes of a one-chunk body.
        const kept = !cut
          ? chunks
          : chunks.length === 1
          ? [chunks[0]!.subarray(0, Math.max(1, Math.floor(chunks[0]!.length / 2)))]
          : chunks.slice(0, Math.max(1, Math.floor(chunks.length / 2)))
        const perChunk = input.streaming && chunks.length > 0 ? Math.round(generation / chunks.length) : 0
        // Paced chunks sleep between them; an unpaced body is just its chunks (no effect per chunk).
        const each = perChunk > 0
          ? Stream.fromIterable(kept).pipe(
            Stream.mapEffect((c, i) => i > 0 ? Effect.as(Effect.sleep(Duration.millis(perChunk)), c) : Effect.succeed(c))
          )
          : kept.length === 1
          ? Stream.succeed(kept[0]!)
          : Stream.fromIterable(kept)
        const body = cut ? Stream.concat(each, Stream.fail(new StreamCut())) : each
        return respond({
          status: 200,
          headers: {
            ...commonHeaders(headers["content-type"] ?? "application/octet-stream"),
            ...headers
          },
          body: Stream.ensuring(body, freeSlot),
          // One unpaced, uncut chunk: a transport may send it at once.
          whole: perChunk === 0 && !cut && kept.length === 1 ? kept[0] : undefined
        })
      })
      return yield* work.pipe(
        Effect.onExit((exit) => exit._tag === "Failure" ? Effect.andThen(dropReservation, freeSlot) : Effect.void)
      )
    })

  const successHeaders = (
    meta: { readonly latencyMs: number; readonly inFlight: number; readonly limit: number },
    cost: number | undefined
  ): Record<string, string> => ({
    "request-id": prng.string(20, Prng.alphanumeric),
    "history-item-id": prng.string(20, Prng.alphanumeric),
    ...(cost === undefined ? {} : { "character-cost": String(cost) }),
    "current-concurrent-requests": String(meta.inFlight),
    "maximum-concurrent-requests": String(meta.limit),
    "tts-latency-ms": String(meta.latencyMs),
    "access-control-expose-headers":
      "request-id, history-item-id, character-cost, regeneration-count, generation-info, current-concurrent-requests, maximum-concurrent-requests"
  })

  const parseJson = (raw: string): { ok: true; value: Json } | { ok: false; raw: string } => {
    try {
      return { ok: true as const, value: JSON.parse(raw) as Json }
    } catch {
      return { ok: false as const, raw }
    }
  }

  const readJson = (request: IncomingRequest): Effect.Effect<{ ok: true; value: Json } | { ok: false; raw: string }> => {
    const known = request.bodyText
    return known !== undefined
      ? Effect.sync(() => parseJson(known))
      : Effect.map(Effect.promise(() => request.text().catch(() => "")), parseJson)
  }

  const jsonInvalid = (raw: string): ValidationItem => ({
    type: "json_invalid",
    loc: ["body", 0],
    msg: "JSON decode error",
    input: {},
    ctx: { error: raw.trim() === "" ? "Expecting value" : "Invalid JSON" }
  })

  const checkString = (
    items: Array<ValidationItem>,
    body: Record<string, Json>,
    field: string,
    required: boolean
  ): string | undefined => {
    const v = body[field]
    if (v === undefined) {
      if (required) items.push({ type: "missing", loc: ["body", field], msg: "Field required", input: body })
      return undefined
    }
    if (v === null && !required) return undefined
    if (typeof v !== "string") {
      items.push({ type: "string_type", loc: ["body", field], msg: "Input should be a valid string", input: v })
      return undefined
    }
    return v
  }

  const checkVoiceSettings = (items: Array<ValidationItem>, body: Record<string, Json>) => {
    const vs = body["voice_settings"]
    if (vs === undefined || vs === null) return
    if (typeof vs !== "object" || Array.isArray(vs)) {
      items.push({
        type: "model_attributes_type",
        loc: ["body", "voice_settings"],
        msg: "Input should be a valid dictionary or object to extract fields from",
        input: vs
      })
      return
    }
    // As the client checks them: style and speed are unbounded in the TTS body's schema (docs/api-facts.md §2.1).
    const ranges: Record<string, [number, number]> = {
      stability: [0, 1],
      similarity_boost: [0, 1],
      style: [0, 1],
      speed: [0.7, 1.2]
    }
    for (const [field, [lo, hi]] of Object.entries(ranges)) {
      const v = (vs as Record<string, Json>)[field]
      if (v === undefined) continue
      const loc = ["body", "voice_settings", field]
      if (typeof v !== "number") {
        items.push({ type: "float_type", loc, msg: "Input should be a valid number", input: v })
      } else if (v < lo) {
        items.push({ type: "greater_than_equal", loc, msg: `Input should be greater than or equal to ${lo}`, input: v, ctx: { ge: lo } })
      } else if (v > hi) {
        items.push({ type: "less_than_equal", loc, msg: `Input should be less than or equal to ${hi}`, input: v, ctx: { le: hi } })
      }
    }
    const boost = (vs as Record<string, Json>)["use_speaker_boost"]
    if (boost !== undefined && typeof boost !== "boolean") {
      items.push({ type: "bool_type", loc: ["body", "voice_settings", "use_speaker_boost"], msg: "Input should be a valid boolean", input: boost })
    }
  }

  const checkFormat = (
    items: Array<ValidationItem>,
    url: URL,
    allowed: ReadonlyArray<string>,
    fallback: string
  ): string => {
    const format = url.searchParams.get("output_format") ?? fallback
    if (!allowed.includes(format)) {
      items.push({
        type: "enum",
        loc: ["query", "output_format"],
        msg: `Input should be ${quoteList(allowed)}`,
        input: format,
        ctx: { expected: quoteList(allowed) }
      })
    }
    return format
  }

  const formatForbidden = (account: Account, format: string): Pending | undefined => {
    const needed = minimumPlanForFormat(format)
    if (needed === undefined || planOrder.indexOf(account.plan) >= planOrder.indexOf(needed)) return undefined
    return detail(
      403,
      "output_format_not_allowed",
      `Requested output format ${format} (${formatLabel(format)}) is only allowed for ${capitalize(needed)} tier and above.`
    )
  }

  const voiceOf = (voiceId: string) => Catalog.premadeVoices.find((v) => v.voice_id === voiceId)

  const alignment = (text: string, start: number, seconds: number) => {
    const chars = Array.from(text)
    const step = chars.length === 0 ? 0 : seconds / chars.length
    const round = (x: number) => Math.round(x * 1000) / 1000
    return {
      characters: chars,
      character_start_times_seconds: chars.map((_, i) => round(start + i * step)),
      character_end_times_seconds: chars.map((_, i) => round(start + (i + 1) * step))
    }
  }

  // ---- Endpoints

  /** The four TTS rows: streamed or not, audio or with timestamps, by what the row answers. */
  const textToSpeech = (
    request: IncomingRequest,
    url: URL,
    endpoint:
      | typeof Endpoints.textToSpeechConvert
      | typeof Endpoints.textToSpeechConvertWithTimestamps
      | typeof Endpoints.textToSpeechStream
      | typeof Endpoints.textToSpeechStreamWithTimestamps,
    voiceId: string
  ) =>
    Effect.gen(function*() {
      const stream = endpoint.response._tag === "AudioStream" || endpoint.response._tag === "Ndjson"
      const timestamps = endpoint.response._tag === "Json" || endpoint.response._tag === "Ndjson"
      const items: Array<ValidationItem> = []
      const format = checkFormat(items, url, endpoint.outputFormat.formats, endpoint.outputFormat.default)
      const parsed = yield* readJson(request)
      let text: string | undefined
      let modelId = defaultTtsModel
      if (!parsed.ok) {
        items.push(jsonInvalid(parsed.raw))
      } else if (typeof parsed.value !== "object" || parsed.value === null || Array.isArray(parsed.value)) {
        items.push({ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from", input: parsed.value })
      } else {
        const body = parsed.value as Record<string, Json>
        text = checkString(items, body, "text", true)
        modelId = checkString(items, body, "model_id", false) ?? defaultTtsModel
        checkVoiceSettings(items, body)
        if (text !== undefined && text.length === 0) {
          items.push({ type: "string_too_short", loc: ["body", "text"], msg: "String should have at least 1 character", input: text, ctx: { min_length: 1 } })
        }
      }
      if (items.length > 0 || text === undefined) return respond(validation(items))
      const account = authenticate(request)
      if (isPending(account)) return respond(account)
      if (voiceOf(voiceId) === undefined) {
        return respond(detail(404, "voice_not_found", `A voice with the voice_id ${voiceId} was not found.`))
      }
      if (!Catalog.ttsModels.some((m) => m.model_id === modelId)) {
        return respond(detail(400, "model_not_found", `A model with model ID ${modelId} does not exist.`))
      }
      const limit = characterLimitOf(modelId, options.characterLimits)
      if (text.length > limit) {
        return respond(detail(
          400,
          "max_character_limit_exceeded",
          `This request's text has ${text.length} characters and exceeds the character limit of ${limit} characters.`
        ))
      }
      const forbidden = formatForbidden(account, format)
      if (forbidden !== undefined) return respond(forbidden)
      const pool = Endpoints.poolOf(endpoint, modelId)
      const cost = Endpoints.creditsOf(endpoint, text.length, modelId)
      const seconds = Audio.speechSeconds(text.length, charsPerSecond)
      const finalText = text
      return yield* generate({
        account,
        pool,
        cost,
        profile: profileOf(pool, modelId),
        units: text.length,
        streaming: stream,
        success: (meta) => {
          const headers = successHeaders(meta, cost)
          const audio = Audio.renderShared(format, seconds)
          const count = Math.max(1, Math.min(200, Math.ceil(seconds / chunkSeconds)))
          // A buffered body is one chunk: its chunking is not observable (no pacing between
          // chunks), and every chunk costs each reader a pull and an idle-timeout timer.
          const pieces = stream ? Audio.chunk(audio, count) : [audio]
          if (!timestamps) {
            return {
              headers: {
                ...headers,
                "content-type": Audio.contentTypeOf(format),
                ...(stream ? {} : { "content-length": String(audio.length) })
              },
              chunks: pieces
            }
          }
          if (!stream) {
            const a = alignment(finalText, 0, seconds)
            const bytes = encoder.encode(JSON.stringify({ audio_base64: base64(audio), alignment: a, normalized_alignment: a }))
            return {
              headers: { ...headers, "content-type": "application/json", "content-length": String(bytes.length) },
              chunks: [bytes]
            }
          }
          // One JSON object per line, each with the alignment of its share of the text.
          const chars = Array.from(finalText)
          const lines = pieces.map((piece, i) => {
            const from = Math.floor((i * chars.length) / pieces.length)
            const to = Math.floor(((i + 1) * chars.length) / pieces.length)
            const part = chars.slice(from, to).join("")
            const a = alignment(part, (from / Math.max(1, chars.length)) * seconds, ((to - from) / Math.max(1, chars.length)) * seconds)
            return encoder.encode(JSON.stringify({ audio_base64: base64(piece), alignment: a, normalized_alignment: a }) + "\n")
          })
          return { headers: { ...headers, "content-type": "application/x-ndjson" }, chunks: lines }
        }
      })
    })

  const speechToText = (request: IncomingRequest, endpoint: typeof Endpoints.speechToTextConvert) =>
    Effect.gen(function*() {
      const form = yield* Effect.promise(() => request.formData().catch(() => undefined))
      const items: Array<ValidationItem> = []
      if (form === undefined) {
        items.push({ type: "missing", loc: ["body", "model_id"], msg: "Field required", input: null })
        return respond(validation(items))
      }
      const modelId = form.get("model_id")
      if (modelId === null) {
        items.push({ type: "missing", loc: ["body", "model_id"], msg: "Field required", input: null })
      } else if (typeof modelId !== "string" || !Catalog.sttModels.includes(modelId)) {
        items.push({
          type: "enum",
          loc: ["body", "model_id"],
          msg: `Input should be ${quoteList(Catalog.sttModels)}`,
          input: typeof modelId === "string" ? modelId : "<file>",
          ctx: { expected: quoteList(Catalog.sttModels) }
        })
      }
      if (items.length > 0) return respond(validation(items))
      const account = authenticate(request)
      if (isPending(account)) return respond(account)
      const file = form.get("file")
      const sourceUrl = form.get("source_url") ?? form.get("cloud_storage_url")
      if ((file === null || typeof file === "string") && sourceUrl === null) {
        return respond(detail(400, "invalid_parameters", "Must provide either file or cloud_storage_url parameter."))
      }
      // The duration needs the file's head and size only: no copy of the whole upload.
      const seconds = Math.max(
        0.1,
        file !== null && typeof file !== "string"
          ? Audio.estimateSeconds(new Uint8Array(yield* Effect.promise(() => file.slice(0, Audio.estimateHeadBytes).arrayBuffer())), file.size)
          : 5
      )
      const languageCode = form.get("language_code")
      return yield* generate({
        account,
        pool: Endpoints.poolOf(endpoint, undefined),
        cost: 0, // billed by audio time (the row's billing): no credits counted
        profile: latency.stt,
        units: seconds,
        streaming: false,
        success: (meta) => {
          const count = Math.max(1, Math.round(seconds * 2.5))
          const words: Array<Record<string, Json>> = []
          const texts: Array<string> = []
          const step = seconds / count
          for (let i = 0; i < count; i++) {
            const word = Catalog.transcriptWords[prng.int(Catalog.transcriptWords.length)]!
            texts.push(word)
            const start = Math.round(i * step * 1000) / 1000
            const end = Math.round((i + 0.8) * step * 1000) / 1000
            words.push({ text: word, start, end, type: "word", speaker_id: "speaker_0", logprob: -0.05 })
            if (i < count - 1) {
              words.push({ text: " ", start: end, end: Math.round((i + 1) * step * 1000) / 1000, type: "spacing", speaker_id: "speaker_0", logprob: 0 })
            }
          }
          const text = texts.join(" ")
          const body = encoder.encode(JSON.stringify({
            language_code: typeof languageCode === "string" && languageCode !== "" ? languageCode : "eng",
            language_probability: 0.98,
            text: text.charAt(0).toUpperCase() + text.slice(1) + ".",
            words,
            transcription_id: prng.string(20, Prng.alphanumeric),
            audio_duration_secs: Math.round(seconds * 1000) / 1000
          }))
          const { "character-cost": _, ...headers } = successHeaders(meta, undefined)
          return { headers: { ...headers, "content-type": "application/json", "content-length": String(body.length) }, chunks: [body] }
        }
      })
    })

  const music = (request: IncomingRequest, url: URL, endpoint: typeof Endpoints.musicCompose | typeof Endpoints.musicStream) =>
    Effect.gen(function*() {
      const stream = endpoint.response._tag === "AudioStream"
      const items: Array<ValidationItem> = []
      const format = checkFormat(items, url, endpoint.outputFormat.formats, endpoint.outputFormat.default)
      const parsed = yield* readJson(request)
      let lengthMs = 30_000
      if (!parsed.ok) items.push(jsonInvalid(parsed.raw))
      else if (typeof parsed.value !== "object" || parsed.value === null || Array.isArray(parsed.value)) {
        items.push({ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from", input: parsed.value })
      } else {
        const body = parsed.value as Record<string, Json>
        checkString(items, body, "prompt", false)
        const modelId = checkString(items, body, "model_id", false)
        if (modelId !== undefined && !Catalog.musicModels.includes(modelId)) {
          items.push({ type: "enum", loc: ["body", "model_id"], msg: `Input should be ${quoteList(Catalog.musicModels)}`, input: modelId, ctx: { expected: quoteList(Catalog.musicModels) } })
        }
        const len = body["music_length_ms"]
        if (len !== undefined && len !== null) {
          if (typeof len !== "number" || !Number.isInteger(len)) {
            items.push({ type: "int_type", loc: ["body", "music_length_ms"], msg: "Input should be a valid integer", input: len })
          } else if (len < 3000 || len > 600_000) {
            items.push({
              type: len < 3000 ? "greater_than_equal" : "less_than_equal",
              loc: ["body", "music_length_ms"],
              msg: len < 3000 ? "Input should be greater than or equal to 3000" : "Input should be less than or equal to 600000",
              input: len,
              ctx: len < 3000 ? { ge: 3000 } : { le: 600000 }
            })
          } else lengthMs = len
        }
        if (body["prompt"] === undefined && body["composition_plan"] === undefined) {
          items.push({ type: "missing", loc: ["body", "prompt"], msg: "Field required", input: body })
        }
      }
      if (items.length > 0) return respond(validation(items))
      const account = authenticate(request)
      if (isPending(account)) return respond(account)
      const actual = format === "auto" ? "mp3_44100_128" : format
      const forbidden = formatForbidden(account, actual)
      if (forbidden !== undefined) return respond(forbidden)
      const seconds = lengthMs / 1000
      return yield* generate({
        account,
        pool: Endpoints.poolOf(endpoint, undefined),
        cost: 0, // billed by audio time (the row's billing): no credits counted
        profile: latency.music,
        units: seconds,
        streaming: stream,
        success: (meta) => {
          const audio = Audio.renderShared(actual, seconds)
          const { "character-cost": _, ...headers } = successHeaders(meta, undefined)
          return {
            headers: {
              ...headers,
              "content-type": Audio.contentTypeOf(actual),
              "song-id": prng.string(20, Prng.alphanumeric),
              ...(stream ? {} : { "content-length": String(audio.length) })
            },
            chunks: stream ? Audio.chunk(audio, Math.max(1, Math.min(200, Math.ceil(seconds / chunkSeconds)))) : [audio]
          }
        }
      })
    })

  const subscriptionJson = (account: Account) => ({
    tier: account.plan,
    character_count: account.characterCount,
    character_limit: account.characterLimit,
    max_character_limit_extension: null,
    can_extend_character_limit: account.plan !== "free",
    allowed_to_extend_character_limit: account.plan !== "free",
    next_character_count_reset_unix: account.nextResetUnix,
    voice_slots_used: 0,
    professional_voice_slots_used: 0,
    voice_limit: account.plan === "free" ? 3 : 30,
    max_voice_add_edits: 95,
    voice_add_edit_counter: 0,
    professional_voice_limit: planOrder.indexOf(account.plan) >= planOrder.indexOf("creator") ? 1 : 0,
    can_extend_voice_limit: false,
    can_use_instant_voice_cloning: account.plan !== "free",
    can_use_professional_voice_cloning: planOrder.indexOf(account.plan) >= planOrder.indexOf("creator"),
    currency: "usd",
    status: account.plan === "free" ? "free" : "active",
    billing_period: "monthly_period",
    character_refresh_period: "monthly_period",
    max_credit_limit_extension: 0,
    current_overage: { amount: "0", currency: "usd" },
    open_invoices: [],
    has_open_invoices: false,
    next_invoice: null,
    pending_change: null,
    professional_voice_slots_used_in_workspace: 0,
    has_used_starter_coupon_on_account: false,
    has_used_creator_coupon_on_account: false
  })

  const readAccount = (request: IncomingRequest, f: (account: Account) => Json) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const account = authenticate(request)
      if (isPending(account)) return respond(account)
      rollPeriod(account, now)
      return respond(json(200, f(account)))
    })

  // ---- Control

  const findAccounts = (name: string | undefined): Effect.Effect<ReadonlyArray<Account>, SimulatorConfigError> => {
    if (name === undefined) return Effect.succeed(accounts)
    const found = accounts.filter((a) => a.name === name)
    return found.length > 0
      ? Effect.succeed(found)
      : Effect.fail(new SimulatorConfigError({ message: `No simulated account is named ${JSON.stringify(name)}` }))
  }

  const configure = (patch: ConfigPatch): Effect.Effect<void, SimulatorConfigError> =>
    Effect.gen(function*() {
      const targets = yield* findAccounts(patch.account)
      const now = yield* Clock.currentTimeMillis
      if (patch.failureRate !== undefined) faults = faultMix(patch.failureRate)
      if (patch.faults !== undefined) faults = { ...faults, ...patch.faults }
      if (patch.queue !== undefined) queue = { ...queue, ...patch.queue }
      if (patch.retryAfterSeconds !== undefined) retryAfterSeconds = patch.retryAfterSeconds ?? undefined
      if (patch.systemCapacity !== undefined) systemCapacity = patch.systemCapacity ?? undefined
      for (const account of targets) {
        if (patch.plan !== undefined) {
          account.plan = patch.plan
          for (const p of pools) account.pools[p].limit = table[patch.plan][p]
        }
        if (patch.limits !== undefined) {
          for (const p of pools) {
            const limit = patch.limits[p]
            if (limit !== undefined) account.pools[p].limit = Math.floor(limit)
          }
        }
        for (const p of pools) drain(account.pools[p], now)
        const credits = patch.credits
        if (credits !== undefined) {
          rollPeriod(account, now)
          if (credits.limit !== undefined) account.characterLimit = Math.floor(credits.limit)
          if (credits.used !== undefined) account.characterCount = Math.floor(credits.used)
          if (credits.remaining !== undefined) {
            account.characterCount = Math.max(0, account.characterLimit - Math.floor(credits.remaining))
            if (credits.remaining > account.characterLimit) account.characterLimit = Math.floor(credits.remaining)
          }
          if (credits.nextResetUnix !== undefined) account.nextResetUnix = Math.floor(credits.nextResetUnix)
        }
      }
    })

  const poolStats = (s: PoolState): PoolStats => ({
    inFlight: s.inFlight,
    maxInFlight: s.maxInFlight,
    limit: s.limit,
    queued: s.queue.length,
    maxQueued: s.maxQueued,
    admitted: s.admitted,
    rejected: s.rejected,
    samples: s.samples.slice()
  })

  const stats: Effect.Effect<Stats> = Effect.map(Clock.currentTimeMillis, (now) => {
    const poolSummary = {} as Record<Pool, Omit<PoolStats, "samples">>
    for (const p of pools) {
      const states = accounts.map((a) => a.pools[p])
      poolSummary[p] = {
        inFlight: states.reduce((n, s) => n + s.inFlight, 0),
        maxInFlight: Math.max(0, ...states.map((s) => s.maxInFlight)),
        limit: Math.max(0, ...states.map((s) => s.limit)),
        queued: states.reduce((n, s) => n + s.queue.length, 0),
        maxQueued: Math.max(0, ...states.map((s) => s.maxQueued)),
        admitted: states.reduce((n, s) => n + s.admitted, 0),
        rejected: states.reduce((n, s) => n + s.rejected, 0)
      }
    }
    const accountStats: Record<string, Stats["accounts"][string]> = {}
    for (const a of accounts) {
      rollPeriod(a, now)
      accountStats[a.name] = {
        plan: a.plan,
        characterCount: a.characterCount,
        characterLimit: a.characterLimit,
        nextCharacterCountResetUnix: a.nextResetUnix,
        pools: {
          standard: poolStats(a.pools.standard),
          flash: poolStats(a.pools.flash),
          stt: poolStats(a.pools.stt),
          music: poolStats(a.pools.music)
        }
      }
    }
    return {
      now,
      requests,
      byStatus: { ...byStatus },
      byDetailStatus: { ...byDetailStatus },
      faults: { ...faultCounts },
      creditsCharged,
      pools: poolSummary,
      accounts: accountStats
    }
  })

  const resetStats = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.sync(() => {
      requests = 0
      creditsCharged = 0
      byStatus = {}
      byDetailStatus = {}
      faultCounts = zeroFaults()
      for (const a of accounts) {
        for (const p of pools) {
          const s = a.pools[p]
          s.maxInFlight = s.inFlight
          s.maxQueued = s.queue.length
          s.admitted = 0
          s.rejected = 0
          s.samples = [{ t: now, inFlight: s.inFlight }]
        }
      }
    }))

  const control = (request: IncomingRequest, path: string): Effect.Effect<Outcome> => {
    const plain = (status: number, body: Json): Outcome => {
      const bytes = encoder.encode(JSON.stringify(body))
      return {
        _tag: "Respond",
        status,
        headers: { "content-type": "application/json", "content-length": String(bytes.length) },
        body: Stream.succeed(bytes)
      }
    }
    if (path === "/_simulator/stats" && request.method === "GET") return Effect.map(stats, (s) => plain(200, s))
    if (path === "/_simulator/reset" && request.method === "POST") {
      return Effect.as(resetStats, plain(200, { ok: true }))
    }
    if (path === "/_simulator/config" && request.method === "POST") {
      return Effect.gen(function*() {
        const parsed = yield* readJson(request)
        if (!parsed.ok) return plain(400, { error: "invalid_json", message: "The body is not JSON" })
        const patch = yield* Schema.decodeUnknownEffect(ConfigPatch)(parsed.value, { onExcessProperty: "error" }).pipe(
          Effect.mapError((e) => new SimulatorConfigError({ message: e.message }))
        )
        yield* configure(patch)
        return plain(200, { ok: true })
      }).pipe(Effect.catch((e: SimulatorConfigError) => Effect.succeed(plain(400, { error: "invalid_config", message: e.message }))))
    }
    return Effect.succeed(plain(404, { error: "not_found", message: `No control route ${request.method} ${path}` }))
  }

  /** The rows beyond TTS are answered in `HandlersBeyondTts.ts`, with the model's own steps. */
  const beyondTts = HandlersBeyondTts.make<Account>({
    respond,
    detail,
    validation,
    authenticate,
    isPending,
    formatForbidden,
    generate,
    successHeaders,
    readJson,
    jsonInvalid,
    checkFormat,
    checkString,
    checkVoiceSettings,
    quoteList,
    hasVoice: (voiceId) => voiceOf(voiceId) !== undefined,
    profileOf,
    charsPerSecond,
    chunkSeconds,
    characterLimits: options.characterLimits
  })

  /** One handler per row of the endpoint table (the compiler asks for a new row's). */
  const handlers: {
    readonly [N in Endpoints.Name]: (
      request: IncomingRequest,
      url: URL,
      params: Readonly<Record<string, string>>
    ) => Effect.Effect<Outcome>
  } = {
    "textToSpeech.convert": (request, url, params) =>
      textToSpeech(request, url, Endpoints.textToSpeechConvert, params["voice_id"]!),
    "textToSpeech.convertWithTimestamps": (request, url, params) =>
      textToSpeech(request, url, Endpoints.textToSpeechConvertWithTimestamps, params["voice_id"]!),
    "textToSpeech.stream": (request, url, params) =>
      textToSpeech(request, url, Endpoints.textToSpeechStream, params["voice_id"]!),
    "textToSpeech.streamWithTimestamps": (request, url, params) =>
      textToSpeech(request, url, Endpoints.textToSpeechStreamWithTimestamps, params["voice_id"]!),
    "speechToText.convert": (request) => speechToText(request, Endpoints.speechToTextConvert),
    "music.compose": (request, url) => music(request, url, Endpoints.musicCompose),
    "music.stream": (request, url) => music(request, url, Endpoints.musicStream),
    "user.get": (request) =>
      readAccount(request, (a) => ({
        user_id: `sim_${a.name}`,
        workspace_id: `sim_workspace_${a.name}`,
        subscription: subscriptionJson(a),
        is_new_user: false,
        can_use_delayed_payment_methods: false,
        is_onboarding_completed: true,
        is_onboarding_checklist_completed: true,
        first_name: "Simulated",
        is_api_key_hashed: true,
        xi_api_key_preview: "sk_...sim",
        created_at: startUnix,
        seat_type: "workspace_admin"
      })),
    "user.subscription": (request) => readAccount(request, subscriptionJson),
    "voices.list": (request) => readAccount(request, () => ({ voices: Catalog.premadeVoices.map(Catalog.voiceJson) })),
    "voices.search": (request, url) => {
      // As for bodies, a bad query is a 422 before the key is looked at (docs/api-facts.md §3.3).
      const result = Catalog.searchVoices(url.searchParams)
      if (result._tag === "Invalid") return Effect.succeed(respond(validation(result.problems)))
      return readAccount(request, () => result.body)
    },
    "voices.get": (request, _url, params) =>
      Effect.map(Clock.currentTimeMillis, () => {
        const account = authenticate(request)
        if (isPending(account)) return respond(account)
        const id = params["voice_id"]!
        const v = voiceOf(id)
        return respond(
          v === undefined
            ? detail(404, "voice_not_found", `A voice with the voice_id ${id} was not found.`)
            : json(200, Catalog.voiceJson(v))
        )
      }),
    "models.list": (request) =>
      readAccount(request, () => Catalog.ttsModels.map((m) => Catalog.modelJson(m, options.characterLimits))),
    ...beyondTts
  }

  const route = (request: IncomingRequest): Effect.Effect<Outcome> => {
    const url = new URL(request.url)
    const method = request.method.toUpperCase()
    if (method === "OPTIONS") {
      // CORS preflight, answered as the real API does, so browser code can use the simulator.
      record(200, undefined)
      return Effect.succeed(respond({ status: 200, headers: { ...commonHeaders("text/plain; charset=utf-8"), "content-length": "2" }, body: Stream.succeed(encoder.encode("OK")) }))
    }
    const found = Endpoints.match(method, url.pathname)
    switch (found._tag) {
      case "Found":
        return handlers[found.endpoint.name](request, url, found.params)
      case "MethodNotAllowed":
        return Effect.succeed(respond(json(405, { detail: "Method Not Allowed" }, { allow: found.allowed.join(", ") })))
      case "NotFound":
        return Effect.succeed(respond(notFound()))
    }
  }

  const handle = (request: IncomingRequest): Effect.Effect<Outcome> => {
    const path = new URL(request.url).pathname
    if (path.startsWith("/_simulator/")) return control(request, path)
    return Effect.suspend(() => {
      requests++
      return route(request)
    })
  }

  return Simulator.of({
    handle,
    checkBody,
    readBody,
    stats,
    resetStats,
    configure,
    setLimit: (pool, limit, account) =>
      configure({ ...(account === undefined ? {} : { account }), limits: { [pool]: limit } }),
    setFaults: (f) => Effect.sync(() => void (faults = { ...faults, ...f })),
    setCredits: (remaining, account) => configure({ ...(account === undefined ? {} : { account }), credits: { remaining } })
  })
})

/** The simulator as a layer. */
export const layer = (options: Options = {}): Layer.Layer<Simulator> => Layer.effect(Simulator, make(options))
