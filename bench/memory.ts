/**
 * Memory of the full stack:
 * - queued waiters: `W` calls at once through `Resilient.layer` over a
 *   transport whose TTS answers never come (20 hold the Flash permits, the rest
 *   wait in the limiter's queue); heap and RSS per waiting call, then every
 *   caller interrupted and the limiter checked empty. (The limiter alone with
 *   100,000 waiters is `bench/limiter.ts`.)
 * - flatness: `M` calls through the full stack over the zero-latency
 *   transport at concurrency 50, heap after a full GC at checkpoints, and the
 *   slope of a least-squares line through them (bytes per 100,000 calls).
 *
 * Exact numbers need `--expose-gc` (`node --expose-gc bench/memory.ts`).
 * Run alone: `node --expose-gc bench/memory.ts [--quick | --long]` (`--long`: 1,000,000 calls).
 */
import { Effect, Fiber, Layer, References } from "effect"
import { HttpClient } from "effect/http"
import { pathToFileURL } from "node:url"
import * as Resilient from "../src/resilience/Resilient.ts"
import { collect, hasGc, isQuick, nowMs, progress, type Result, round } from "./lib.ts"
import { apiKey, fullStackLayer, ttsCall, zeroTransport } from "./overhead.ts"

/** TTS never answers (the permit stays held); everything else as the zero-latency transport. */
const hangingTransport: HttpClient.HttpClient = HttpClient.make((request, url) =>
  url.pathname.startsWith("/v1/text-to-speech/") ? Effect.never : zeroTransport.execute(request)
)

export interface Waiters {
  readonly waiters: number
  readonly heapPerWaiter: number
  readonly rssPerWaiter: number
  readonly enqueueMs: number
  readonly drainedClean: boolean
}

/** Policies switched off for the comparison row (the limiter and the deadline stay: something must queue). */
const policiesOff = { coalesce: false, quota: false, breaker: false, retry: false, budget: false } as const

const waiters = (count: number, extra: Partial<typeof policiesOff> = {}): Promise<Waiters> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const resilience = yield* Resilient.ResilienceService
      // Warm: the quota guard's first subscription read, the JIT.
      const warm = yield* Effect.forkChild(ttsCall(-1))
      while ((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).inFlight < 1) yield* Effect.yieldNow
      yield* Fiber.interrupt(warm)
      collect()
      const before = process.memoryUsage()
      const t0 = nowMs()
      const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
      for (let i = 0; i < count; i++) fibers.push(yield* Effect.forkChild(ttsCall(i)))
      const target = count - 20
      while ((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).queueDepth < target) yield* Effect.yieldNow
      const enqueueMs = nowMs() - t0
      collect()
      const after = process.memoryUsage()
      yield* Fiber.interruptAll(fibers)
      const end = yield* resilience.limiter.snapshot(resilience.keyId, "flash")
      return {
        waiters: count,
        heapPerWaiter: round((after.heapUsed - before.heapUsed) / count, 0),
        rssPerWaiter: round((after.rss - before.rss) / count, 0),
        enqueueMs: round(enqueueMs, 0),
        drainedClean: end.inFlight === 0 && end.queueDepth === 0
      }
    }).pipe(
      Effect.provide(
        Resilient.layer({ apiKey, limiter: { plan: "pro", maxQueue: count * 2 }, deadline: "1 hour", ...extra }).pipe(
          Layer.provide(Layer.succeed(HttpClient.HttpClient, hangingTransport))
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
  )

export interface Flatness {
  readonly calls: number
  /** [calls done, heapUsed bytes after GC]. */
  readonly points: ReadonlyArray<readonly [number, number]>
  /** Least-squares slope, bytes per 100,000 calls. */
  readonly slopePer100k: number
  readonly usPerCall: number
}

const flatness = (total: number, checkpoints: ReadonlyArray<number>): Promise<Flatness> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const points: Array<readonly [number, number]> = []
      let done = 0
      const t0 = nowMs()
      for (const cp of checkpoints) {
        let next = done
        const worker = Effect.whileLoop({ while: () => next < cp, body: () => ttsCall(next++), step: () => {} })
        yield* Effect.all(Array.from({ length: 50 }, () => worker), { concurrency: "unbounded", discard: true })
        done = cp
        collect()
        points.push([cp, process.memoryUsage().heapUsed])
        progress(`memory: ${cp.toLocaleString("en-US")} calls, heap ${(points.at(-1)![1] / 1e6).toFixed(1)} MB`)
      }
      const usPerCall = ((nowMs() - t0) * 1000) / total
      // Slope over the checkpoints after the first (the first includes warm-up growth).
      const fit = points.slice(1)
      const mx = fit.reduce((a, p) => a + p[0], 0) / fit.length
      const my = fit.reduce((a, p) => a + p[1], 0) / fit.length
      const num = fit.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0)
      const den = fit.reduce((a, p) => a + (p[0] - mx) ** 2, 0)
      return { calls: total, points, slopePer100k: round((num / den) * 100_000, 0), usPerCall: round(usPerCall, 1) }
    }).pipe(Effect.provide(fullStackLayer({ maxQueue: 1000 })), Effect.provideService(References.MinimumLogLevel, "Error"))
  )

export interface Memory {
  readonly gc: boolean
  readonly waiters: Waiters
  /** The same with coalescing, quota, breaker, retry and budget off (client + limiter + deadline + telemetry). */
  readonly waitersPoliciesOff: Waiters
  readonly flatness: Flatness
}

export const measure = async (options: { readonly quick?: boolean; readonly long?: boolean } = {}): Promise<Memory> => {
  const w = options.quick ? 5_000 : 20_000
  progress(`memory: ${w.toLocaleString("en-US")} waiting calls through the full stack`)
  const waiting = await waiters(w)
  const waitingOff = await waiters(w, policiesOff)
  const total = options.long ? 1_000_000 : options.quick ? 30_000 : 50_000
  const checkpoints = options.long
    ? [100_000, 250_000, 500_000, 750_000, 1_000_000]
    : [total / 10, total / 4, total / 2, (total * 3) / 4, total]
  progress(`memory: ${total.toLocaleString("en-US")} calls through the full stack (concurrency 50)`)
  const flat = await flatness(total, checkpoints)
  return { gc: hasGc, waiters: waiting, waitersPoliciesOff: waitingOff, flatness: flat }
}

export const toResults = (m: Memory): ReadonlyArray<Result> => {
  const gcNote = m.gc ? "after global.gc()" : "no --expose-gc: includes garbage"
  return [
    {
      name: `memory: heap per waiting call, full stack (${m.waiters.waiters.toLocaleString("en-US")} waiting)`,
      value: m.waiters.heapPerWaiter,
      unit: "bytes",
      note: `with coalesce, quota, breaker, retry and budget off: ${m.waitersPoliciesOff.heapPerWaiter} B; RSS ${m.waiters.rssPerWaiter} B/call; enqueued in ${m.waiters.enqueueMs} ms; ${
        m.waiters.drainedClean ? "all interrupted, limiter empty" : "LIMITER NOT EMPTY after interrupting"
      }; ${gcNote}`
    },
    {
      name: `memory: heap slope over ${m.flatness.calls.toLocaleString("en-US")} calls, full stack`,
      value: m.flatness.slopePer100k,
      unit: "bytes/100k calls",
      note: `heap after GC: ${m.flatness.points.map(([c, h]) => `${c / 1000}k ${(h / 1e6).toFixed(1)} MB`).join(", ")}; ${
        m.flatness.usPerCall
      } µs/call at concurrency 50; ${gcNote}`
    }
  ]
}

export const run = async (): Promise<ReadonlyArray<Result>> =>
  toResults(await measure({ quick: isQuick(), long: process.argv.includes("--long") }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
}
