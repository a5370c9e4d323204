/**
 * Overhead per call: the full policy stack around a zero-latency in-process
 * transport, against the same policies built from the anchors, all calling a
 * zero-latency async function.
 *
 * Contenders (µs per call, N calls at a fixed concurrency):
 * - `bare`: `await fn()` (the floor).
 * - `cockatiel`: `wrap(retry(3 attempts, exponential), circuitBreaker(consecutive 5), bulkhead(20, queue))`.
 * - `p-queue + opossum`: `queue.add(() => breaker.fire())`, concurrency 20, opossum's defaults (10 s timeout).
 * - `effect: plain client`: this library's plain `ElevenLabs` client (request building, response decoding,
 *   spans) over the zero-latency `HttpClient` — no policies.
 * - `effect: full stack`: `Resilient.layer` over the same transport (validate, coalesce, quota, deadline,
 *   retry + budget, breaker, limiter, metrics, spans).
 * - `effect: same policies`: the like-for-like row. This library's own limiter (pool of 20), retry policy
 *   and breaker (5 consecutive) composed around `Effect.succeed(bytes)`, as the anchors compose theirs
 *   around `Promise.resolve(bytes)`: no HTTP client, no telemetry.
 *
 * The anchors call `() => Promise.resolve(bytes)`; our client calls an `HttpClient` that answers 200 with the
 * same bytes and the concurrency headers at once (a Web `Response` per call). "Policies only" is the full stack
 * minus the plain client, measured in the same run.
 *
 * Run alone: `node bench/overhead.ts [--quick]`.
 */
import { ConsecutiveBreaker, ExponentialBackoff, bulkhead, circuitBreaker, handleAll, retry, wrap } from "cockatiel"
import { Effect, Layer, Redacted, References } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { HttpClient, HttpClientResponse } from "effect/http"
import Opossum from "opossum"
import { pathToFileURL } from "node:url"
import PQueue from "p-queue"
import * as Client from "../src/client/ElevenLabs.ts"
import * as Breaker from "../src/resilience/Breaker.ts"
import * as ConcurrencyLimiter from "../src/resilience/ConcurrencyLimiter.ts"
import * as Resilient from "../src/resilience/Resilient.ts"
import * as RetryPolicy from "../src/resilience/RetryPolicy.ts"
import { isQuick, median, nowMs, progress, type Result, round } from "./lib.ts"

export const voice = "21m00Tcm4TlvDq8ikWAM"
export const audio = new Uint8Array(1024).fill(0xff)

const subscription = JSON.stringify({
  tier: "pro",
  character_count: 0,
  character_limit: 1e15,
  next_character_count_reset_unix: 4_000_000_000,
  status: "active"
})

let requestCounter = 0

/**
 * An `HttpClient` answering at once: TTS with 200, small audio bytes and the
 * concurrency headers; `/v1/user/subscription` with a huge quota (the quota
 * guard reads it); anything else 404.
 */
export const zeroTransport: HttpClient.HttpClient = HttpClient.make((request, url) =>
  Effect.sync(() => {
    if (url.pathname.startsWith("/v1/text-to-speech/")) {
      return HttpClientResponse.fromWeb(
        request,
        new Response(audio, {
          status: 200,
          headers: {
            "content-type": "audio/mpeg",
            "request-id": `r${requestCounter++}`,
            "character-cost": "10",
            "current-concurrent-requests": "1",
            "maximum-concurrent-requests": "20"
          }
        })
      )
    }
    if (url.pathname === "/v1/user/subscription" || url.pathname === "/v1/user") {
      return HttpClientResponse.fromWeb(
        request,
        new Response(url.pathname === "/v1/user" ? JSON.stringify({ user_id: "u", subscription: JSON.parse(subscription) }) : subscription, {
          status: 200,
          headers: { "content-type": "application/json" }
        })
      )
    }
    return HttpClientResponse.fromWeb(request, new Response(`{"detail":"Not Found"}`, { status: 404 }))
  })
)

export const apiKey = Redacted.make("sk_bench_0000000000000000000000000000000000000000")

/** The full stack over the zero-latency transport, logs above `Error` silenced. */
export const fullStackLayer = (options: { readonly maxQueue?: number } = {}) =>
  Resilient.layer({
    apiKey,
    limiter: { plan: "pro", ...(options.maxQueue === undefined ? {} : { maxQueue: options.maxQueue }) }
  }).pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, zeroTransport)))

export const plainClientLayer = Client.layer({ apiKey }).pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, zeroTransport)))

/** A distinct text per call (identical ones in flight would be coalesced). */
export const textOf = (i: number): string => `Bench line number ${i}.`

export const ttsCall = (i: number) =>
  Client.ElevenLabs.use((c) => c.textToSpeech.convert(voice, { text: textOf(i), modelId: "eleven_flash_v2_5" }))

/** µs per call of `n` calls at `concurrency` through an Effect client layer. */
const effectRun = (layer: Layer.Layer<Client.ElevenLabs>, n: number, concurrency: number, warm: number): Promise<number> =>
  effectCallRun(n, concurrency, warm, (i) => Effect.map(ttsCall(i), (r) => r.audio)).pipe(
    Effect.provide(layer),
    Effect.runPromise
  )

/**
 * This library's limiter, retry policy and breaker around `Effect.succeed(bytes)`: the same three policies
 * the cockatiel row composes, built from the modules the full stack is made of.
 */
const samePolicies = Effect.gen(function*() {
  const limiter = yield* ConcurrencyLimiter.make({ plan: "pro", maxQueue: 1_000_000 })
  const breaker = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 5 } })
  // The limiter's and the breaker's refusals cannot happen here (the queue is unbounded, nothing fails).
  return Effect.succeed(audio).pipe(
    limiter.withPermit({ key: "bench", pool: "flash" }),
    breaker.execute("flash"),
    Effect.orDie,
    RetryPolicy.retry()
  )
}).pipe(Effect.provide(CircuitBreaker.layerStoreMemory()))

const samePoliciesRun = (n: number, concurrency: number, warm: number): Promise<number> =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(samePolicies, (call) => effectCallRun(n, concurrency, warm, () => call))))

/** µs per call of `n` calls of `callOf(i)` at `concurrency`, after `warm` calls. */
const effectCallRun = <R>(
  n: number,
  concurrency: number,
  warm: number,
  callOf: (i: number) => Effect.Effect<Uint8Array, unknown, R>
): Effect.Effect<number, unknown, R> =>
  Effect.provideService(
    Effect.gen(function*() {
      let ok = 0
      const body = (i: number) => Effect.map(callOf(i), (audio) => void (ok += audio.byteLength > 0 ? 1 : 0))
      yield* Effect.forEach(Array.from({ length: warm }, (_, i) => -1 - i), body, { concurrency, discard: true })
      ok = 0
      const t0 = nowMs()
      let next = 0
      // c workers pulling from one counter (no n-sized array of effects).
      const worker = Effect.whileLoop({
        while: () => next < n,
        body: () => body(next++),
        step: () => {}
      })
      yield* Effect.all(Array.from({ length: concurrency }, () => worker), { concurrency: "unbounded", discard: true })
      const us = ((nowMs() - t0) * 1000) / n
      if (ok !== n) throw new Error(`overhead: ${n - ok} calls failed`)
      return us
    }),
    References.MinimumLogLevel,
    "Error"
  )

/** µs per call of `n` calls at `concurrency` of an async function. */
const promiseRun = async (call: () => Promise<Uint8Array>, n: number, concurrency: number, warm: number): Promise<number> => {
  for (let i = 0; i < warm; i++) await call()
  let next = 0
  let ok = 0
  const worker = async () => {
    while (next < n) {
      next++
      const bytes = await call()
      if (bytes.byteLength > 0) ok++
    }
  }
  const t0 = nowMs()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const us = ((nowMs() - t0) * 1000) / n
  if (ok !== n) throw new Error(`overhead: ${n - ok} calls failed`)
  return us
}

const fn = (): Promise<Uint8Array> => Promise.resolve(audio)

const makeCockatiel = () => {
  const policy = wrap(
    retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
    circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) }),
    bulkhead(20, 1_000_000)
  )
  return () => policy.execute(fn)
}

const makePQueueOpossum = () => {
  const queue = new PQueue({ concurrency: 20 })
  const breaker = new Opossum(fn)
  return {
    call: () => queue.add(() => breaker.fire()) as Promise<Uint8Array>,
    close: () => breaker.shutdown()
  }
}

export interface OverheadRow {
  readonly contender: string
  readonly concurrency: number
  /** Median µs per call over the runs. */
  readonly us: number
  readonly runs: ReadonlyArray<number>
}

export interface Overhead {
  readonly n: number
  readonly runs: number
  readonly rows: ReadonlyArray<OverheadRow>
}

export const contenders = [
  "bare",
  "cockatiel",
  "p-queue + opossum",
  "effect: same policies",
  "effect: plain client",
  "effect: full stack"
] as const

export const measure = async (options: { readonly quick?: boolean } = {}): Promise<Overhead> => {
  const n = options.quick ? 3_000 : 5_000
  const runs = options.quick ? 3 : 5
  const warm = 2_000
  const rows: Array<OverheadRow> = []
  for (const concurrency of [1, 50]) {
    const samples: Record<(typeof contenders)[number], Array<number>> = {
      bare: [],
      cockatiel: [],
      "p-queue + opossum": [],
      "effect: same policies": [],
      "effect: plain client": [],
      "effect: full stack": []
    }
    progress(`overhead: concurrency ${concurrency}, ${runs} x ${n} calls each`)
    // Interleave the contenders run by run, so drift of the shared machine hits all alike.
    for (let r = 0; r < runs; r++) {
      samples.bare.push(await promiseRun(fn, n, concurrency, warm))
      samples.cockatiel.push(await promiseRun(makeCockatiel(), n, concurrency, warm))
      const pq = makePQueueOpossum()
      samples["p-queue + opossum"].push(await promiseRun(pq.call, n, concurrency, warm))
      pq.close()
      samples["effect: same policies"].push(await samePoliciesRun(n, concurrency, warm))
      samples["effect: plain client"].push(await effectRun(plainClientLayer, n, concurrency, warm))
      samples["effect: full stack"].push(await effectRun(fullStackLayer({ maxQueue: 100_000 }), n, concurrency, warm))
    }
    for (const c of contenders) {
      rows.push({ contender: c, concurrency, us: round(median(samples[c]), 2), runs: samples[c].map((x) => round(x, 2)) })
    }
  }
  return { n, runs, rows }
}

export const usOf = (o: Overhead, contender: string, concurrency: number): number =>
  o.rows.find((r) => r.contender === contender && r.concurrency === concurrency)?.us ?? Number.NaN

export const toResults = (o: Overhead): ReadonlyArray<Result> =>
  o.rows.map((r) => ({
    name: `overhead c=${r.concurrency}: ${r.contender}`,
    value: r.us,
    unit: "µs/call",
    note: `median of ${o.runs} x ${o.n} calls (runs: ${r.runs.join(", ")})`
  }))

export const run = async (): Promise<ReadonlyArray<Result>> => toResults(await measure({ quick: isQuick() }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of toResults(await measure({ quick: isQuick() }))) console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
}
