/**
 * Memory of the full stack's queued waiters: 100,000 calls at once through
 * `Resilient.layer` over a transport whose TTS answers never come (20 hold the
 * Flash permits, the rest wait in the limiter's queue); heap and RSS per
 * waiting call, then every caller interrupted and the limiter checked empty.
 * The goal is 4 KB (4,096 B) of heap per waiting call. The same with the
 * optional policies off is measured beside it. (The limiter alone with
 * 100,000 waiters is `bench/limiter.ts`.)
 *
 * At 25 KB per waiting call, 100,000 waiters are 2.5 GB of heap, over V8's
 * default old-space limit on small machines: the runner starts this child
 * with `--max-old-space-size=8192` (see `nodeFlags` in bench/run.ts).
 *
 * Exact numbers need `--expose-gc`. Run alone:
 * `node --expose-gc --max-old-space-size=8192 bench/memory.ts [--quick] [--waiters N]`
 * (`--quick`: 10,000 waiters). Heap flatness over many calls is `bench/heap.ts`.
 */
import { Effect, Fiber, Layer, References } from "effect"
import { HttpClient } from "effect/http"
import { pathToFileURL } from "node:url"
import * as Resilient from "../src/resilience/Resilient.ts"
import { collect, hasGc, isQuick, nowMs, progress, type Result, round } from "./lib.ts"
import { apiKey, ttsCall, zeroTransport } from "./overhead.ts"

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
      const resilience = yield* Resilient.Resilience
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
      // Wait until all are queued; report progress, and fail (rather than spin) if the queue stops growing.
      let lastDepth = -1
      let lastChange = nowMs()
      let lastReport = nowMs()
      for (;;) {
        const snap = yield* resilience.limiter.snapshot(resilience.keyId, "flash")
        const depth = snap.queueDepth
        if (depth >= target) break
        const now = nowMs()
        if (depth !== lastDepth) {
          lastDepth = depth
          lastChange = now
        }
        if (now - lastReport > 10_000) {
          lastReport = now
          const ended = fibers.filter((f) => f.pollUnsafe() !== undefined).length
          progress(
            `memory: ${depth.toLocaleString("en-US")} of ${
              target.toLocaleString("en-US")
            } queued, ${snap.inFlight} in flight, ${ended} ended, after ${Math.round((now - t0) / 1000)} s`
          )
        }
        if (now - lastChange > 60_000) {
          const done = fibers.filter((f) => f.pollUnsafe() !== undefined)
          return yield* Effect.die(
            new Error(
              `memory: the queue stopped at ${depth} of ${target}; ${done.length} calls ended, e.g. ${
                String(done[0]?.pollUnsafe())
              }`
            )
          )
        }
        yield* Effect.sleep("1 millis")
      }
      const enqueueMs = nowMs() - t0
      progress(`memory: ${count.toLocaleString("en-US")} calls enqueued in ${Math.round(enqueueMs)} ms`)
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
        // The deadline and the headers timeout far away: enqueueing 100,000 calls can take minutes on a
        // loaded machine, and the 20 calls in flight must not time out and let the queue move meanwhile.
        Resilient.layer({
          apiKey,
          limiter: { plan: "pro", maxQueue: count * 2 },
          deadline: "2 hours",
          headersTimeout: "2 hours",
          ...extra
        }).pipe(
          Layer.provide(Layer.succeed(HttpClient.HttpClient, hangingTransport))
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
  )

export interface Memory {
  readonly gc: boolean
  /** V8's heap limit in this process (MB): the runner raises it for 100,000 waiters. */
  readonly heapLimitMb: number
  readonly waiters: Waiters
  /** The same with coalescing, quota, breaker, retry and budget off (client + limiter + deadline + telemetry). */
  readonly waitersPoliciesOff: Waiters
}

/** The goal: heap per waiting call at 100,000 waiting, bytes. */
export const goalBytesPerWaiter = 4096
/** The size the goal is stated at. */
export const goalWaiters = 100_000

/** `--waiters N` overrides the count (for a quick look at one size). */
const waitersArg = (): number | undefined => {
  const at = process.argv.indexOf("--waiters")
  const n = at >= 0 ? Number(process.argv[at + 1]) : Number.NaN
  return Number.isInteger(n) && n > 20 ? n : undefined
}

export const measure = async (options: { readonly quick?: boolean } = {}): Promise<Memory> => {
  const w = waitersArg() ?? (options.quick ? 10_000 : goalWaiters)
  const limitMb = Math.round(((await import("node:v8")).getHeapStatistics().heap_size_limit) / 2 ** 20)
  progress(`memory: ${w.toLocaleString("en-US")} waiting calls through the full stack (heap limit ${limitMb} MB)`)
  const waiting = await waiters(w)
  progress(`memory: ${w.toLocaleString("en-US")} waiting calls, optional policies off`)
  const waitingOff = await waiters(w, policiesOff)
  return { gc: hasGc, heapLimitMb: limitMb, waiters: waiting, waitersPoliciesOff: waitingOff }
}

export const toResults = (m: Memory): ReadonlyArray<Result> => {
  const gcNote = m.gc ? "after global.gc()" : "no --expose-gc: includes garbage"
  return [
    {
      name: `memory: heap per waiting call, full stack (${m.waiters.waiters.toLocaleString("en-US")} waiting)`,
      value: m.waiters.heapPerWaiter,
      unit: "bytes",
      note:
        `with coalesce, quota, breaker, retry and budget off: ${m.waitersPoliciesOff.heapPerWaiter} B; RSS ${m.waiters.rssPerWaiter} B/call; enqueued in ${m.waiters.enqueueMs} ms; ${
          m.waiters.drainedClean ? "all interrupted, limiter empty" : "LIMITER NOT EMPTY after interrupting"
        }; ${gcNote}`
    }
  ]
}

export const run = async (): Promise<ReadonlyArray<Result>> => toResults(await measure({ quick: isQuick() }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
}
