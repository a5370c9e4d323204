/**
 * Heap flatness of the full stack: calls through `Resilient.layer` over the
 * zero-latency transport of `bench/overhead.ts` at concurrency 50, the heap
 * after a full GC at checkpoints, and the slope of a least-squares line
 * through them (bytes per 100,000 calls).
 *
 * A warm-up comes first and is not fitted: calls run for `warmupSeconds`
 * (12 s), longer than the retry budget's 10-second window, and long enough
 * for the JIT to settle. Until 2026-12-07 that window held one timestamp per
 * call that ended in it (about 1 MB at this benchmark's rate), so its growth
 * with the call rate showed in the fit as steps of 0.5-1 MB whenever the
 * array grew; it now holds slices of 100 ms, a hundred numbers at any rate.
 *
 * The fit runs through the 10 checkpoints, not the heap at the end of the
 * warm-up: that is the noisiest point (from 0.3 MB under the checkpoints to
 * 1.5 MB over them), and at one end of the line it alone can set the sign of
 * the slope.
 *
 * Exact numbers need `--expose-gc`. Run alone:
 * `node --expose-gc bench/heap.ts [--quick | --long]` (`--long`: 1,000,000 calls after the warm-up).
 * It runs in its own process under `npm run bench`, so the waiting calls of
 * `bench/memory.ts` leave no garbage in it.
 */
import { Effect, References } from "effect"
import { pathToFileURL } from "node:url"
import { collect, hasGc, isQuick, nowMs, progress, type Result, round } from "./lib.ts"
import { fullStackLayer, ttsCall } from "./overhead.ts"

/** Longer than the retry budget's default window (10 s), and long enough for the JIT to settle. */
export const warmupSeconds = 12

export interface Heap {
  readonly gc: boolean
  /** Calls measured after the warm-up. */
  readonly calls: number
  readonly warmupCalls: number
  readonly warmupSeconds: number
  /** heapUsed bytes after GC at the end of the warm-up: reported, not fitted (see below). */
  readonly warmupHeap: number
  /** [calls done since the warm-up, heapUsed bytes after GC] at each of the 10 checkpoints. */
  readonly points: ReadonlyArray<readonly [number, number]>
  /** Least-squares slope through the checkpoints, bytes per 100,000 calls. */
  readonly slopePer100k: number
  /** Largest minus smallest heap of the points. */
  readonly band: number
  readonly usPerCall: number
}

/** Least-squares slope of `points`, y per unit of x. */
export const slopeOf = (points: ReadonlyArray<readonly [number, number]>): number => {
  const mx = points.reduce((a, p) => a + p[0], 0) / points.length
  const my = points.reduce((a, p) => a + p[1], 0) / points.length
  const num = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0)
  const den = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0)
  return num / den
}

export const measure = (options: { readonly quick?: boolean; readonly long?: boolean } = {}): Promise<Heap> => {
  const calls = options.long ? 1_000_000 : options.quick ? 30_000 : 100_000
  const checkpoints = Array.from({ length: 10 }, (_, i) => ((i + 1) * calls) / 10)
  return Effect.runPromise(
    Effect.gen(function*() {
      let next = 0
      const runUntil = (done: () => boolean) => {
        const worker = Effect.whileLoop({ while: () => !done(), body: () => ttsCall(next++), step: () => {} })
        return Effect.all(Array.from({ length: 50 }, () => worker), { concurrency: "unbounded", discard: true })
      }
      progress(`heap: warm-up, ${warmupSeconds} s of calls through the full stack (concurrency 50)`)
      const warmEnd = nowMs() + warmupSeconds * 1000
      yield* runUntil(() => nowMs() >= warmEnd)
      const warmupCalls = next
      collect()
      const warmupHeap = process.memoryUsage().heapUsed
      const points: Array<readonly [number, number]> = []
      progress(
        `heap: ${calls.toLocaleString("en-US")} calls after ${warmupCalls.toLocaleString("en-US")} warm-up calls`
      )
      const t0 = nowMs()
      for (const cp of checkpoints) {
        yield* runUntil(() => next - warmupCalls >= cp)
        collect()
        points.push([next - warmupCalls, process.memoryUsage().heapUsed])
        progress(`heap: ${cp.toLocaleString("en-US")} calls, ${(points.at(-1)![1] / 1e6).toFixed(1)} MB`)
      }
      // Workers stop at the checkpoint but calls already started finish: count them all.
      const usPerCall = ((nowMs() - t0) * 1000) / (next - warmupCalls)
      const heaps = points.map((p) => p[1])
      return {
        gc: hasGc,
        calls,
        warmupCalls,
        warmupSeconds,
        warmupHeap,
        points,
        slopePer100k: round(slopeOf(points) * 100_000, 0),
        band: Math.max(...heaps) - Math.min(...heaps),
        usPerCall: round(usPerCall, 1)
      }
    }).pipe(
      Effect.provide(fullStackLayer({ maxQueue: 1000 })),
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
  )
}

export const toResults = (h: Heap): ReadonlyArray<Result> => [{
  name: `heap: slope over ${h.calls.toLocaleString("en-US")} calls, full stack`,
  value: h.slopePer100k,
  unit: "bytes/100k calls",
  note: `after ${h.warmupCalls.toLocaleString("en-US")} warm-up calls (${h.warmupSeconds} s, ${
    (h.warmupHeap / 1e6).toFixed(1)
  } MB, not fitted); heap after GC: ${
    h.points.map(([c, b]) => `${Math.round(c / 1000)}k ${(b / 1e6).toFixed(1)} MB`).join(", ")
  }; ${h.usPerCall} µs/call at concurrency 50; ${h.gc ? "after global.gc()" : "no --expose-gc: includes garbage"}`
}]

export const run = async (): Promise<ReadonlyArray<Result>> =>
  toResults(await measure({ quick: isQuick(), long: process.argv.includes("--long") }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
}
