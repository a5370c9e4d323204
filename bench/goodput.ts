/**
 * Goodput at the plan limit over real HTTP: N Flash TTS requests released at
 * once against the simulator's HTTP server (plan `pro`: Flash pool 20), three
 * clients in turn, clean and under chaos (10 % `system_busy`, 2 % 5xx).
 *
 * - `resilient`: this library (`Resilient.layer` over `NodeHttpClient.layerUndici`).
 * - `sdk-defaults`: the official `@elevenlabs/elevenlabs-js` SDK, defaults
 *   (`maxRetries` 2), `Promise.all`.
 * - `p-queue-recipe`: the ElevenLabs rate-limits guide (docs/design.md section 2),
 *   Steps 3, 4 and 6: `p-queue` with concurrency 10 (its table's Pro row,
 *   although the Flash pool is 20), 120 s task timeout, its `withBackoff`
 *   inside the queue, SDK `maxRetries: 0`.
 *
 * The simulator runs in a child process (the `simulator` CLI command), so the
 * server and the client under test do not share one event loop. Before each
 * client: `POST /_simulator/reset` and fresh credits; the 429s by kind and the
 * attempts come from `GET /_simulator/stats` afterwards.
 *
 * Our clients also sample their limiter every 2 ms during the burst: work
 * conservation (the goal, under chaos) is the permits in use as a share of the
 * current limit while at least one call waits in the queue, time-weighted.
 * Beside it, without a goal: the TTS attempts on the wire (sent, headers not
 * yet back; counted in the `HttpClient` under the stack) over the same time,
 * and the tail from the last moment a call waited to the last answer, which is
 * the retries' backoff. Clean goodput (>= 95 % of the bound) stays a goal;
 * goodput under chaos is reported, not a goal: a burst's retry tail is a
 * property of the backoff policy, not of the limiter.
 *
 * Run alone: `node bench/goodput.ts [--quick]`.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
import { Effect, Fiber, Layer, Redacted, References } from "effect"
import { HttpClient } from "effect/http"
import { spawn } from "node:child_process"
import { fileURLToPath, pathToFileURL } from "node:url"
import PQueue from "p-queue"
import * as Client from "../src/client/ElevenLabs.ts"
import * as Resilient from "../src/resilience/Resilient.ts"
import type { ResilientOptions } from "../src/resilience/ResilientOptions.ts"
import { isQuick, mean, nowMs, progress, type Result, round } from "./lib.ts"

const repoRoot = fileURLToPath(new URL("..", import.meta.url))
const voice = "21m00Tcm4TlvDq8ikWAM"
const model = "eleven_flash_v2_5"
const outputFormat = "mp3_22050_32" as const
const apiKey = "sim-key"
/** Flash pool of `pro` in the simulator's default plan table (docs/design.md section 5). */
export const flashLimit = 20
export const textChars = 100
/** The simulator's Flash latency: ttfb 75 ms + 1 ms per character, +/-20 % noise of mean 1. */
export const modelServiceMs = 75 + 1 * textChars

const lorem = " The quick brown fox jumps over the lazy dog while the narrator reads chapter one aloud."
/** Distinct texts (identical ones would be coalesced by our stack, which would flatter it). */
const textOf = (i: number): string => `Line ${i} of the goodput benchmark.${lorem.repeat(3)}`.slice(0, textChars)

// ---------------------------------------------------------------------------
// The simulator in a child process
// ---------------------------------------------------------------------------

export interface SimulatorProcess {
  readonly url: string
  readonly stop: () => Promise<void>
}

/** Starts `src/cli/main.ts simulator --port 0` and waits for its URL. */
export const startSimulator = (seed: number): Promise<SimulatorProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [
      "src/cli/main.ts",
      "simulator",
      "--port",
      "0",
      "--plan",
      "pro",
      "--seed",
      String(seed)
    ], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    const onData = (chunk: Buffer) => {
      out += chunk.toString()
      const m = /listening on (http:\/\/[^\s]+)/.exec(out)
      if (m) {
        child.stdout.off("data", onData)
        resolve({
          url: m[1]!,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done()
              child.once("exit", () => done())
              child.kill("SIGTERM")
            })
        })
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", (c: Buffer) => (err += c.toString()))
    child.once("exit", (code) => reject(new Error(`simulator exited (${code}): ${err}${out}`)))
    child.once("error", reject)
  })

interface Stats {
  readonly requests: number
  readonly byStatus: Readonly<Record<string, number>>
  readonly byDetailStatus: Readonly<Record<string, number>>
  readonly pools: { readonly flash: { readonly maxInFlight: number; readonly admitted: number } }
}

const control = async (url: string, path: string, body?: unknown): Promise<unknown> => {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined && path.endsWith("stats") ? "GET" : "POST",
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  })
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`)
  return res.json()
}

/** Fresh record, plenty of credits, the scenario's faults. */
const prepare = async (url: string, faults: Faults): Promise<void> => {
  await control(url, "/_simulator/config", { faults, credits: { used: 0, limit: 1_000_000_000 } })
  await control(url, "/_simulator/reset", {})
}

// ---------------------------------------------------------------------------
// Scenarios and clients
// ---------------------------------------------------------------------------

export interface Faults {
  readonly systemBusy: number
  readonly serverError: number
  readonly serviceUnavailable: number
}

export const scenarios: ReadonlyArray<{ readonly name: "clean" | "chaos"; readonly faults: Faults }> = [
  { name: "clean", faults: { systemBusy: 0, serverError: 0, serviceUnavailable: 0 } },
  // 2 % 5xx: half 500 (JSON detail), half 503 (HTML page).
  { name: "chaos", faults: { systemBusy: 0.1, serverError: 0.01, serviceUnavailable: 0.01 } }
]

/** One client's burst: outcome per request, and the server-side latency of successes. */
interface Burst {
  readonly completed: number
  readonly failedByReason: Readonly<Record<string, number>>
  /** `tts-latency-ms` of successful answers: the server's time to headers (its slot time). */
  readonly serviceMs: ReadonlyArray<number>
  readonly wallMs: number
  /** What the client itself saw (ours: permits in use and the limit, sampled every 2 ms). */
  readonly note?: string
  /** Ours: the limiter's work conservation (see `Conservation`). */
  readonly conservation?: Conservation
}

/** What our client's limiter did during a burst (sampled every 2 ms, time-weighted). */
export interface Conservation {
  /** While at least one call waited in the queue: mean of permits in use / current limit. The goal: >= 97 %. */
  readonly share: number
  /**
   * The same while calls wait, for TTS attempts on the wire (sent, headers not yet back): the server's view.
   * The gap to `share` is the client's own work inside a permit. Reported, not a goal.
   */
  readonly wireShare: number
  /** Time with at least one call in the queue. */
  readonly queuedMs: number
  /** From the last moment a call waited in the queue to the last answer: the retries' tail (backoff policy). */
  readonly tailMs: number
  /** Permits in use on average over the whole burst (the tail included). */
  readonly meanInFlight: number
  /** Attempts on the wire on average over the whole burst. */
  readonly meanOnWire: number
  readonly minLimit: number
}

interface ClientUnderTest {
  readonly name: string
  readonly description: string
  /** Warm up (JIT, connections), then `reset()`, then run `n` requests at once. */
  readonly burst: (url: string, n: number, reset: () => Promise<void>) => Promise<Burst>
}

const tally = (reasons: Array<string>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const r of reasons) out[r] = (out[r] ?? 0) + 1
  return out
}

/** How the SDK's errors are named in the table. */
const sdkReason = (e: unknown): string => {
  const err = e as { statusCode?: number; body?: { detail?: { status?: string } }; name?: string; message?: string }
  const detail = err.body?.detail?.status
  if (detail !== undefined) return `${err.statusCode ?? "?"} ${detail}`
  if (err.statusCode !== undefined) return String(err.statusCode)
  return err.name === "ElevenLabsTimeoutError" ? "timeout" : `thrown: ${err.message ?? String(e)}`.slice(0, 40)
}

/**
 * A burst through a Promise client (the official SDK, the rate-limits guide's recipe): warm up with 10 calls, `reset()`,
 * then `n` calls at once; each answer's body is read to its end. SDK errors are tallied by reason.
 */
const promiseBurst = async (
  convert: (i: number) => Promise<Parameters<typeof drain>[0]>,
  n: number,
  reset: () => Promise<void>,
  serviceMs: Array<number>
): Promise<Burst> => {
  const call = async (i: number) => {
    try {
      await drain(await convert(i))
      return { ok: true as const }
    } catch (e) {
      return { ok: false as const, reason: sdkReason(e) }
    }
  }
  await Promise.all(Array.from({ length: 10 }, (_, i) => call(-1 - i)))
  await reset()
  serviceMs.length = 0
  const t0 = nowMs()
  const outcomes = await Promise.all(Array.from({ length: n }, (_, i) => call(i)))
  const wallMs = nowMs() - t0
  return {
    completed: outcomes.filter((o) => o.ok).length,
    failedByReason: tally(outcomes.flatMap((o) => (o.ok ? [] : [o.reason]))),
    serviceMs,
    wallMs
  }
}

/** Reads the SDK's audio stream to its end (the slot is held until the last byte). */
const drain = async (stream: ReadableStream<Uint8Array>): Promise<number> => {
  let bytes = 0
  for await (const chunk of stream) bytes += chunk.byteLength
  return bytes
}

/** A fetch that records the server's `tts-latency-ms` of successful TTS answers. */
const observedFetch = (serviceMs: Array<number>): typeof fetch => async (input, init) => {
  const res = await fetch(input, init)
  const latency = res.headers.get("tts-latency-ms")
  if (res.status === 200 && latency !== null) serviceMs.push(Number(latency))
  return res
}

/**
 * The batch settings of docs/retries.md: a 100 ms exponential base instead of the design's 1 s, and the
 * failure-rate breaker docs/breaker.md recommends under many attempts in flight.
 */
export const batchSettings = {
  retry: { exponential: { base: "100 millis" } },
  breaker: { policy: { _tag: "rate", threshold: 0.5, size: 40, minimumCalls: 20 } }
} as const satisfies Omit<ResilientOptions, "apiKey">

/** TTS attempts sent and not yet answered with headers (the server holds a slot for each). */
interface Wire {
  count: number
}

/**
 * `NodeHttpClient.layerUndici`, counting the TTS attempts between sending and the response headers: what the
 * server's slots see (a convert answer's small body follows its headers at once), as opposed to the permits the
 * limiter has handed out, which also cover the client's own work before sending and after the headers.
 */
const onTheWire = (wire: Wire) =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, (client) =>
      HttpClient.transform(client, (effect, request) =>
        request.url.includes("/text-to-speech/")
          ? Effect.suspend(() => {
            wire.count++
            return Effect.ensuring(
              effect,
              Effect.sync(() =>
                void wire.count--
              )
            )
          })
          : effect))
  ).pipe(Layer.provide(NodeHttpClient.layerUndici))

const resilientWith = (
  name: string,
  description: string,
  settings: Omit<ResilientOptions, "apiKey">
): ClientUnderTest => ({
  name,
  description,
  burst: (url, n, reset) => {
    const wire: Wire = { count: 0 }
    return Effect.runPromise(
      Effect.gen(function*() {
        const client = yield* Client.ElevenLabs
        const call = (i: number) =>
          client.textToSpeech.convert(voice, { text: textOf(i), modelId: model, outputFormat }).pipe(
            Effect.match({
              onSuccess: (r) => ({ ok: true as const, latency: r.meta.ttsLatencyMs }),
              onFailure: (e) => ({ ok: false as const, reason: e.reason._tag })
            })
          )
        yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => -1 - i), call, { concurrency: 20 })
        yield* Effect.promise(reset)
        // Sample the limiter every 2 ms. Work conservation: while at least one call waits in the queue,
        // the permits in use as a share of the current limit, time-weighted (each sample holds until the
        // next one). The tail: from the last moment a call waited to the last answer (the retries' backoff).
        const { keyId, limiter } = yield* Resilient.Resilience
        let samples = 0
        let inFlightSum = 0
        let minLimit = Number.POSITIVE_INFINITY
        let queuedMs = 0
        let usedWhileQueued = 0
        let wireWhileQueued = 0
        let wireSum = 0
        let lastQueuedAt = Number.NaN
        let previous: {
          readonly at: number
          readonly inFlight: number
          readonly onWire: number
          readonly limit: number
          readonly queued: number
        } | undefined
        const t0 = nowMs()
        const sample = Effect.map(limiter.snapshot(keyId, "flash"), (s) => {
          const at = nowMs()
          samples++
          inFlightSum += s.inFlight
          wireSum += wire.count
          minLimit = Math.min(minLimit, s.limit)
          if (previous !== undefined && previous.queued > 0) {
            const dt = at - previous.at
            queuedMs += dt
            usedWhileQueued += dt * Math.min(1, previous.inFlight / previous.limit)
            wireWhileQueued += dt * Math.min(1, previous.onWire / previous.limit)
          }
          if (s.queueDepth > 0) lastQueuedAt = at
          previous = { at, inFlight: s.inFlight, onWire: wire.count, limit: s.limit, queued: s.queueDepth }
        })
        const sampler = yield* Effect.forkChild(Effect.forever(Effect.andThen(sample, Effect.sleep("2 millis"))), {
          startImmediately: true
        })
        const outcomes = yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), call, {
          concurrency: "unbounded"
        })
        const wallMs = nowMs() - t0
        yield* Fiber.interrupt(sampler)
        const conservation = queuedMs > 0 ? usedWhileQueued / queuedMs : Number.NaN
        const wireShare = queuedMs > 0 ? wireWhileQueued / queuedMs : Number.NaN
        const tailMs = Number.isNaN(lastQueuedAt) ? wallMs : wallMs - (lastQueuedAt - t0)
        return {
          note: `permits in use while calls wait ${
            (conservation * 100).toFixed(1)
          } % of the limit (time-weighted over ${
            (queuedMs / 1000).toFixed(2)
          } s with a queue, sampled every 2 ms); attempts on the wire while calls wait ${
            (wireShare * 100).toFixed(1)
          } %; ${
            (inFlightSum / samples).toFixed(1)
          } permits in use on average over the whole burst; lowest limit ${minLimit}; tail after the queue emptied ${
            (tailMs / 1000).toFixed(2)
          } s`,
          conservation: {
            share: conservation,
            wireShare,
            queuedMs,
            tailMs,
            meanInFlight: inFlightSum / samples,
            meanOnWire: wireSum / samples,
            minLimit
          },
          completed: outcomes.filter((o) => o.ok).length,
          failedByReason: tally(outcomes.flatMap((o) => (o.ok ? [] : [o.reason]))),
          serviceMs: outcomes.flatMap((o) => (o.ok && o.latency !== undefined ? [o.latency] : [])),
          wallMs
        }
      }).pipe(
        Effect.provide(
          Resilient.layer({ ...settings, apiKey: Redacted.make(apiKey), baseUrl: url, limiter: { plan: "pro" } }).pipe(
            Layer.provide(onTheWire(wire))
          )
        ),
        // The stack logs every retry at Warn; the table is the output here.
        Effect.provideService(References.MinimumLogLevel, "Error")
      )
    )
  }
})

const resilient = resilientWith(
  "resilient",
  "this library: Resilient.layer (plan pro, defaults) over NodeHttpClient.layerUndici",
  {}
)

const resilientBatch = resilientWith(
  "resilient-batch",
  "this library with the batch settings of docs/retries.md: system_busy/5xx backoff base 100 ms, failure-rate breaker",
  batchSettings
)

const sdkDefaults: ClientUnderTest = {
  name: "sdk-defaults",
  description: "@elevenlabs/elevenlabs-js 2.73.0, defaults (maxRetries 2), Promise.all",
  burst: async (url, n, reset) => {
    const serviceMs: Array<number> = []
    const client = new ElevenLabsClient({ apiKey, baseUrl: url, fetch: observedFetch(serviceMs) })
    return promiseBurst(
      (i) => client.textToSpeech.convert(voice, { text: textOf(i), modelId: model, outputFormat }),
      n,
      reset,
      serviceMs
    )
  }
}

// The rate-limits guide's Step 4, as written (its console.warn per retry replaced by a counter).
let seedRetryLogs = 0
async function withBackoff<T>(
  operation: () => Promise<T>,
  config = { maxRetries: 5, baseDelayMs: 1000, maxDelayMs: 32_000, jitterMs: 500 }
): Promise<T> {
  for (let attempt = 0; attempt <= config.maxRetries; attempt++) {
    try {
      return await operation()
    } catch (error: any) {
      const status = error.statusCode || error.status
      const errorType = error.body?.detail?.status
      if (status === 401 || status === 400 || status === 404) throw error
      if (errorType === "too_many_concurrent_requests") {
        if (attempt === config.maxRetries) throw error
        await new Promise((r) => setTimeout(r, 50 * (attempt + 1)))
        continue
      }
      if (attempt === config.maxRetries) throw error
      const exponentialDelay = config.baseDelayMs * Math.pow(2, attempt)
      const jitter = Math.random() * config.jitterMs
      const delay = Math.min(exponentialDelay + jitter, config.maxDelayMs)
      seedRetryLogs++
      await new Promise((r) => setTimeout(r, delay))
    }
  }
  throw new Error("Unreachable")
}

// The rate-limits guide's Step 3, as written (its console.error per failure replaced by a counter).
let seedQueueErrors = 0
const CONCURRENCY_LIMITS = { free: 2, starter: 3, creator: 5, pro: 10, scale: 15, business: 15 } as const
const createRequestQueue = (plan: keyof typeof CONCURRENCY_LIMITS) => {
  // The guide also passes `throwOnTimeout: true`; p-queue 9 removed the option and always throws on timeout.
  const queue = new PQueue({ concurrency: CONCURRENCY_LIMITS[plan], timeout: 120_000 })
  queue.on("error", () => {
    seedQueueErrors++
  })
  return queue
}

const seedsRecipe: ClientUnderTest = {
  name: "p-queue-recipe",
  description: "the ElevenLabs rate-limits guide: p-queue (pro: 10) + withBackoff (5 retries), SDK maxRetries 0",
  burst: async (url, n, reset) => {
    const serviceMs: Array<number> = []
    // Step 6: the SDK with its own retries off, the queue, withBackoff inside the queue.
    const client = new ElevenLabsClient({ apiKey, baseUrl: url, maxRetries: 0, fetch: observedFetch(serviceMs) })
    const queue = createRequestQueue("pro")
    const generateSpeech = (text: string) =>
      queue.add(() => withBackoff(() => client.textToSpeech.convert(voice, { text, modelId: model, outputFormat })))
    return promiseBurst((i) => generateSpeech(textOf(i)), n, reset, serviceMs)
  }
}

/**
 * The harness's ceiling, not a contender: exactly `limit` workers over plain
 * `fetch`, each taking the next request as soon as its answer's body is read,
 * any failure retried at once. What this machine, loopback and the simulator
 * allow when a client wastes nothing between slots.
 */
const idealWorkers: ClientUnderTest = {
  name: "reference: 20 workers",
  description:
    "harness ceiling: exactly 20 fetch workers, next request as soon as a body ends, failures retried at once",
  burst: async (url, n, reset) => {
    const serviceMs: Array<number> = []
    const attempt = async (i: number): Promise<void> => {
      for (;;) {
        const res = await fetch(`${url}/v1/text-to-speech/${voice}?output_format=${outputFormat}`, {
          method: "POST",
          headers: { "xi-api-key": apiKey, "content-type": "application/json" },
          body: JSON.stringify({ text: textOf(i), model_id: model })
        }).catch(() => undefined)
        if (res === undefined) continue
        await res.arrayBuffer()
        if (res.status === 200) {
          serviceMs.push(Number(res.headers.get("tts-latency-ms")))
          return
        }
      }
    }
    const runAll = async (from: number, count: number) => {
      let next = 0
      await Promise.all(Array.from({ length: flashLimit }, async () => {
        while (next < count) await attempt(from + next++)
      }))
    }
    await runAll(-1000, 20)
    await reset()
    serviceMs.length = 0
    const t0 = nowMs()
    await runAll(0, n)
    return { completed: n, failedByReason: {}, serviceMs, wallMs: nowMs() - t0 }
  }
}

export const clients: ReadonlyArray<ClientUnderTest> = [
  resilient,
  resilientBatch,
  sdkDefaults,
  seedsRecipe,
  idealWorkers
]

/** Ours: each runs several times per scenario. */
export const ourClients: ReadonlyArray<string> = [resilient.name, resilientBatch.name]

// ---------------------------------------------------------------------------
// The measurement
// ---------------------------------------------------------------------------

/** One client in one scenario. */
export interface GoodputRow {
  readonly scenario: "clean" | "chaos"
  readonly client: string
  /** 1-based run of this client in this scenario (ours runs several times: the goal takes the median). */
  readonly run: number
  readonly description: string
  readonly requests: number
  readonly completed: number
  readonly failed: number
  readonly failedByReason: Readonly<Record<string, number>>
  /** Server-side counts after the reset (attempts = TTS requests the server saw). */
  readonly tooManyConcurrent: number
  readonly systemBusy: number
  readonly http5xx: number
  readonly attempts: number
  readonly maxInFlight: number
  readonly wallMs: number
  readonly throughput: number
  /** Mean `tts-latency-ms` of this client's successful answers (server's slot time to headers). */
  readonly meanServiceMs: number
  /** limit / meanServiceMs, per second. */
  readonly bound: number
  /** throughput / bound. */
  readonly share: number
  readonly note?: string
  readonly conservation?: Conservation
}

export interface Goodput {
  readonly requests: number
  readonly limit: number
  readonly modelServiceMs: number
  /** Names of this library's clients among the rows (the runner reads them here, not by importing this file). */
  readonly ours: ReadonlyArray<string>
  readonly rows: ReadonlyArray<GoodputRow>
}

/** The work-conservation goal: permits in use while calls wait, share of the limit. */
export const goalConservation = 0.97
/** The clean goodput goal: share of the bound. */
export const goalShare = 0.95

export const measure = async (options: { readonly quick?: boolean } = {}): Promise<Goodput> => {
  const requests = options.quick ? 200 : 1000
  /** Runs of our stack per scenario (its share of the bound moves by several points between runs). */
  const repeats = options.quick ? 1 : 3
  const rows: Array<GoodputRow> = []
  for (const [si, scenario] of scenarios.entries()) {
    // One simulator per scenario; every client gets the same seed.
    const sim = await startSimulator(11 + si)
    try {
      for (
        const [c, run] of clients.flatMap((c) =>
          Array.from({ length: ourClients.includes(c.name) ? repeats : 1 }, (_, i) => [c, i + 1] as const)
        )
      ) {
        progress(`goodput: ${scenario.name} / ${c.name}${run > 1 ? ` run ${run}` : ""} (${requests} requests)`)
        const burst = await c.burst(sim.url, requests, () => prepare(sim.url, scenario.faults))
        const stats = (await control(sim.url, "/_simulator/stats")) as Stats
        const http5xx = Object.entries(stats.byStatus).filter(([s]) => s.startsWith("5")).reduce((a, [, v]) => a + v, 0)
        const meanServiceMs = mean(burst.serviceMs)
        const throughput = burst.completed / (burst.wallMs / 1000)
        const bound = flashLimit / (meanServiceMs / 1000)
        rows.push({
          scenario: scenario.name,
          client: c.name,
          run,
          description: c.description,
          requests,
          completed: burst.completed,
          failed: requests - burst.completed,
          failedByReason: burst.failedByReason,
          tooManyConcurrent: stats.byDetailStatus["too_many_concurrent_requests"] ?? 0,
          systemBusy: stats.byDetailStatus["system_busy"] ?? 0,
          http5xx,
          attempts: stats.requests,
          maxInFlight: stats.pools.flash.maxInFlight,
          wallMs: round(burst.wallMs, 0),
          throughput: round(throughput, 1),
          meanServiceMs: round(meanServiceMs, 1),
          bound: round(bound, 1),
          share: round(throughput / bound, 3),
          ...(burst.note === undefined ? {} : { note: burst.note }),
          ...(burst.conservation === undefined ? {} : { conservation: burst.conservation })
        })
        // Let the other clients' stragglers (p-queue timeouts keep running) settle.
        await control(sim.url, "/_simulator/config", {
          faults: { systemBusy: 0, serverError: 0, serviceUnavailable: 0 }
        })
      }
    } finally {
      await sim.stop()
    }
  }
  return { requests, limit: flashLimit, modelServiceMs, ours: ourClients, rows }
}

const reasons = (r: Readonly<Record<string, number>>): string =>
  Object.entries(r).map(([k, v]) => `${k} ${v}`).join(", ") || "-"

export const toResults = (g: Goodput): ReadonlyArray<Result> =>
  g.rows.flatMap((r) => [
    {
      name: `goodput ${r.scenario}: ${r.client}${
        r.run > 1 || ourClients.includes(r.client) ? ` #${r.run}` : ""
      } throughput`,
      value: r.throughput,
      unit: "req/s",
      note: `${r.completed}/${r.requests} ok, ${(r.share * 100).toFixed(1)} % of bound ${r.bound}/s; failed: ${
        reasons(r.failedByReason)
      }`
    },
    {
      name: `goodput ${r.scenario}: ${r.client}${
        r.run > 1 || ourClients.includes(r.client) ? ` #${r.run}` : ""
      } concurrency 429s`,
      value: r.tooManyConcurrent,
      unit: "429s",
      note: `system_busy ${r.systemBusy}, 5xx ${r.http5xx}, attempts ${r.attempts}, max in flight ${r.maxInFlight}`
    }
  ])

export const run = async (): Promise<ReadonlyArray<Result>> => toResults(await measure({ quick: isQuick() }))

export const seedCounters = () => ({ retryLogs: seedRetryLogs, queueErrors: seedQueueErrors })

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const g = await measure({ quick: isQuick() })
  for (const r of g.rows) console.log(JSON.stringify({ ...r, description: undefined }))
}
