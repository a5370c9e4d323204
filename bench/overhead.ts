/**
 * Overhead per call. The goal: the full stack (`Resilient.layer`) against the
 * plain client, both over the same zero-latency in-process `HttpClient`, as a
 * ratio measured in one process with the two alternating round by round
 * (`pairs`): goal full / plain <= 1.5x at concurrency 1 and 50. At 50 the
 * full stack queues 30 of the 50 callers (pool of 20), the plain client none.
 *
 * For context (no goal), the anchors, all calling a zero-latency async function:
 * - `bare`: `await fn()` (the floor).
 * - `cockatiel`: `wrap(retry(3 attempts, exponential), circuitBreaker(consecutive 5), bulkhead(20, queue))`.
 * - `p-queue + opossum`: `queue.add(() => breaker.fire())`, concurrency 20, opossum's defaults (10 s timeout).
 * - `effect: same policies`: this library's own limiter (pool of 20), retry policy and breaker (5
 *   consecutive) composed around `Effect.succeed(bytes)`, as the anchors compose theirs around
 *   `Promise.resolve(bytes)`: no HTTP client, no telemetry.
 *
 * `effect: plain client` is this library's plain `ElevenLabs` client (request building, response decoding)
 * over the zero-latency `HttpClient`; `effect: full stack` is `Resilient.layer` over the same transport
 * (validate, coalesce, quota, deadline, retry + budget, breaker, limiter, metrics, spans). The transport
 * answers 200 with 1 KiB and the concurrency headers at once (a Web `Response` per call).
 *
 * Run alone: `node bench/overhead.ts [--quick]`.
 */
import { bulkhead, circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleAll, retry, wrap } from "cockatiel"
import { Effect, Layer, Redacted, References } from "effect"
import { HttpClient, HttpClientResponse } from "effect/http"
import { CircuitBreaker } from "effect/persistence"
import { pathToFileURL } from "node:url"
import Opossum from "opossum"
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
        new Response(
          url.pathname === "/v1/user"
            ? JSON.stringify({ user_id: "u", subscription: JSON.parse(subscription) })
            : subscription,
          {
            status: 200,
            headers: { "content-type": "application/json" }
          }
        )
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

export const plainClientLayer = Client.layer({ apiKey }).pipe(
  Layer.provide(Layer.succeed(HttpClient.HttpClient, zeroTransport))
)

/** A distinct text per call (identical ones in flight would be coalesced). */
export const textOf = (i: number): string => `Bench line number ${i}.`

export const ttsCall = (i: number) =>
  Client.ElevenLabs.use((c) => c.textToSpeech.convert(voice, { text: textOf(i), modelId: "eleven_flash_v2_5" }))

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
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(samePolicies, (call) => effectCallRun(n, concurrency, warm, () => call)))
  )

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
const promiseRun = async (
  call: () => Promise<Uint8Array>,
  n: number,
  concurrency: number,
  warm: number
): Promise<number> => {
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

/**
 * The goal's measurement: the plain client and the full stack built once each in this process, then
 * `rounds` rounds of `callsPerRound` calls, the two alternating (plain then full, full then plain, ...)
 * so that drift of the shared machine hits both; the ratio is taken per ABBA block (both rounds of each
 * side in it) and its median reported.
 */
export interface PairRow {
  readonly concurrency: number
  readonly rounds: number
  readonly callsPerRound: number
  /** µs per call of each round. */
  readonly plainRuns: ReadonlyArray<number>
  readonly fullRuns: ReadonlyArray<number>
  /** full / plain of each ABBA block of two rounds. */
  readonly ratios: ReadonlyArray<number>
  /** Medians (wall time: what the goal is judged on). */
  readonly plain: number
  readonly full: number
  readonly ratio: number
  /**
   * The same rounds in CPU time of this process (user + system, GC threads included): a cross-check that
   * other processes on a shared machine cannot move much. Not the goal's figure.
   */
  readonly plainCpu: number
  readonly fullCpu: number
  readonly cpuRatio: number
}

export interface Overhead {
  readonly n: number
  readonly runs: number
  /** The anchors and `same policies` (context), and the plain client and full stack (from `pairs`). */
  readonly rows: ReadonlyArray<OverheadRow>
  /** Full stack / plain client, interleaved rounds in one process (the goal). */
  readonly pairs: ReadonlyArray<PairRow>
}

/** The goal: full stack / plain client per call. */
export const goalRatio = 1.5

export const contenders = [
  "bare",
  "cockatiel",
  "p-queue + opossum",
  "effect: same policies",
  "effect: plain client",
  "effect: full stack"
] as const

/** A distinct text per call across every round of a process (identical texts in flight would be coalesced). */
let callIndex = 0

/** Wall and CPU (user + system, this process) µs per call of a timed stretch. */
interface Timed {
  readonly us: number
  readonly cpuUs: number
}

/** µs per call of `n` calls of `callOf(i)` at `concurrency` (c workers pulling from one counter). */
const timedCalls = <R>(
  n: number,
  concurrency: number,
  callOf: (i: number) => Effect.Effect<Uint8Array, unknown, R>
): Effect.Effect<Timed, unknown, R> =>
  Effect.suspend(() => {
    let ok = 0
    let next = 0
    const worker = Effect.whileLoop({
      while: () => next < n,
      body: () => {
        next++
        return Effect.map(callOf(callIndex++), (audio) => void (ok += audio.byteLength > 0 ? 1 : 0))
      },
      step: () => {}
    })
    const cpu0 = process.cpuUsage()
    const t0 = nowMs()
    return Effect.map(
      Effect.all(Array.from({ length: concurrency }, () => worker), { concurrency: "unbounded", discard: true }),
      () => {
        const us = ((nowMs() - t0) * 1000) / n
        const cpu = process.cpuUsage(cpu0)
        if (ok !== n) throw new Error(`overhead: ${n - ok} calls failed`)
        return { us, cpuUs: (cpu.user + cpu.system) / n }
      }
    )
  })

/** The goal's rounds: both stacks built once, then alternated round by round (see `PairRow`). */
export const pairs = (concurrency: number, rounds: number, callsPerRound: number, warm: number): Promise<PairRow> =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const plain = yield* Layer.build(plainClientLayer)
      const full = yield* Layer.build(fullStackLayer({ maxQueue: 100_000 }))
      const call = (i: number) => Effect.map(ttsCall(i), (r) => r.audio)
      const on = (context: typeof plain | typeof full, n: number) =>
        timedCalls(n, concurrency, call).pipe(Effect.provideContext(context))
      // Warm-up: a stretch of each, then alternating rounds that are not recorded (the JIT sees both shapes).
      yield* on(plain, warm)
      yield* on(full, warm)
      for (let r = 0; r < 4; r++) {
        yield* on(plain, callsPerRound)
        yield* on(full, callsPerRound)
      }
      const plainRuns: Array<Timed> = []
      const fullRuns: Array<Timed> = []
      for (let r = 0; r < rounds; r++) {
        // ABBA: neither stack always runs right after the other's garbage.
        if (r % 2 === 0) {
          plainRuns.push(yield* on(plain, callsPerRound))
          fullRuns.push(yield* on(full, callsPerRound))
        } else {
          fullRuns.push(yield* on(full, callsPerRound))
          plainRuns.push(yield* on(plain, callsPerRound))
        }
      }
      // One ratio per ABBA block (two rounds of each): each side ran once first and once second in it.
      const blockRatio = (of: (t: Timed) => number) =>
        Array.from({ length: Math.floor(rounds / 2) }, (_, b) => {
          const [i, j] = [2 * b, 2 * b + 1]
          return (of(fullRuns[i]!) + of(fullRuns[j]!)) / (of(plainRuns[i]!) + of(plainRuns[j]!))
        })
      const ratios = blockRatio((t) => t.us)
      const cpuRatios = blockRatio((t) => t.cpuUs)
      return {
        concurrency,
        rounds,
        callsPerRound,
        plainRuns: plainRuns.map((x) => round(x.us, 1)),
        fullRuns: fullRuns.map((x) => round(x.us, 1)),
        ratios: ratios.map((x) => round(x, 3)),
        plain: round(median(plainRuns.map((x) => x.us)), 2),
        full: round(median(fullRuns.map((x) => x.us)), 2),
        ratio: round(median(ratios), 3),
        plainCpu: round(median(plainRuns.map((x) => x.cpuUs)), 2),
        fullCpu: round(median(fullRuns.map((x) => x.cpuUs)), 2),
        cpuRatio: round(median(cpuRatios), 3)
      }
    })).pipe(Effect.provideService(References.MinimumLogLevel, "Error"))
  )

const anchors = ["bare", "cockatiel", "p-queue + opossum", "effect: same policies"] as const

export const measure = async (options: { readonly quick?: boolean } = {}): Promise<Overhead> => {
  const n = options.quick ? 3_000 : 5_000
  const runs = options.quick ? 3 : 5
  const warm = options.quick ? 1_000 : 2_000
  // Rounds long enough to hold several young-generation collections (a scavenge every ~65 ms here, 10-12 ms
  // each): a round shorter than that either holds one or not, and its time is then bimodal
  // (docs/benchmarks.md). The stacks also get a longer warm-up of their own.
  const pairWarm = options.quick ? 3_000 : 10_000
  const rounds = options.quick ? 8 : 20
  const callsPerRound = options.quick ? 1_000 : 3_000
  const rows: Array<OverheadRow> = []
  const pairRows: Array<PairRow> = []
  for (const concurrency of [1, 50]) {
    progress(
      `overhead: concurrency ${concurrency}, plain client vs full stack, ${rounds} alternating rounds of ${callsPerRound} calls`
    )
    const pair = await pairs(concurrency, rounds, callsPerRound, pairWarm)
    pairRows.push(pair)
    progress(
      `overhead: concurrency ${concurrency}: full ${pair.full} µs / plain ${pair.plain} µs, ratio ${pair.ratio} (median per ABBA block)`
    )
    const samples: Record<(typeof anchors)[number], Array<number>> = {
      bare: [],
      cockatiel: [],
      "p-queue + opossum": [],
      "effect: same policies": []
    }
    progress(`overhead: concurrency ${concurrency}, anchors, ${runs} x ${n} calls each`)
    // Interleave the contenders run by run, so drift of the shared machine hits all alike.
    for (let r = 0; r < runs; r++) {
      samples.bare.push(await promiseRun(fn, n, concurrency, warm))
      samples.cockatiel.push(await promiseRun(makeCockatiel(), n, concurrency, warm))
      const pq = makePQueueOpossum()
      samples["p-queue + opossum"].push(await promiseRun(pq.call, n, concurrency, warm))
      pq.close()
      samples["effect: same policies"].push(await samePoliciesRun(n, concurrency, warm))
    }
    for (const c of anchors) {
      rows.push({
        contender: c,
        concurrency,
        us: round(median(samples[c]), 2),
        runs: samples[c].map((x) => round(x, 2))
      })
    }
    rows.push({ contender: "effect: plain client", concurrency, us: pair.plain, runs: pair.plainRuns })
    rows.push({ contender: "effect: full stack", concurrency, us: pair.full, runs: pair.fullRuns })
  }
  return { n, runs, rows, pairs: pairRows }
}

export const usOf = (o: Overhead, contender: string, concurrency: number): number =>
  o.rows.find((r) => r.contender === contender && r.concurrency === concurrency)?.us ?? Number.NaN

export const toResults = (o: Overhead): ReadonlyArray<Result> => [
  ...o.pairs.map((p) => ({
    name: `overhead c=${p.concurrency}: full stack / plain client`,
    value: p.ratio,
    unit: "x",
    note:
      `median of the ABBA blocks of ${p.rounds} alternating rounds of ${p.callsPerRound} calls; full ${p.full} µs, plain ${p.plain} µs per call (goal <= ${goalRatio}x); CPU time: ${p.fullCpu} / ${p.plainCpu} µs = ${p.cpuRatio}x`
  })),
  ...o.rows.map((r) => ({
    name: `overhead c=${r.concurrency}: ${r.contender}`,
    value: r.us,
    unit: "µs/call",
    note: r.contender === "effect: plain client" || r.contender === "effect: full stack"
      ? `median of the alternating rounds (runs: ${r.runs.join(", ")})`
      : `median of ${o.runs} x ${o.n} calls (runs: ${r.runs.join(", ")})`
  }))
]

export const run = async (): Promise<ReadonlyArray<Result>> => toResults(await measure({ quick: isQuick() }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of toResults(await measure({ quick: isQuick() }))) {
    console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
  }
}
