/**
 * Memory of the full stack's queued waiters: `W` calls at once through
 * `Resilient.layer` over a transport whose TTS answers never come (20 hold the
 * Flash permits, the rest wait in the limiter's queue); heap and RSS per
 * waiting call, then every caller interrupted and the limiter checked empty.
 * (The limiter alone with 100,000 waiters is `bench/limiter.ts`.)
 *
 * Exact numbers need `--expose-gc` (`node --expose-gc bench/memory.ts`).
 * Run alone: `node --expose-gc bench/memory.ts [--quick]`. Heap flatness over many calls is `bench/heap.ts`.
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

export interface Memory {
  readonly gc: boolean
  readonly waiters: Waiters
  /** The same with coalescing, quota, breaker, retry and budget off (client + limiter + deadline + telemetry). */
  readonly waitersPoliciesOff: Waiters
}

export const measure = async (options: { readonly quick?: boolean } = {}): Promise<Memory> => {
  const w = options.quick ? 5_000 : 20_000
  progress(`memory: ${w.toLocaleString("en-US")} waiting calls through the full stack`)
  const waiting = await waiters(w)
  const waitingOff = await waiters(w, policiesOff)
  return { gc: hasGc, waiters: waiting, waitersPoliciesOff: waitingOff }
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
    }
  ]
}

export const run = async (): Promise<ReadonlyArray<Result>> =>
  toResults(await measure({ quick: isQuick() }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
}
