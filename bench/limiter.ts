/**
 * Benchmarks of the concurrency limiter: the cost of one uncontended
 * acquire/release, and the memory of 100,000 queued waiters.
 *
 * Run: `node_modules/.bin/node --expose-gc bench/limiter.ts`
 * (without `--expose-gc` the memory numbers include garbage; the note says so).
 */
import { Effect, Fiber } from "effect"
import { pathToFileURL } from "node:url"
import * as ConcurrencyLimiter from "../src/resilience/ConcurrencyLimiter.ts"

import { median, type Result } from "./lib.ts"

export type { Result } from "./lib.ts"

const gc = (globalThis as { gc?: () => void }).gc
const collect = () => {
  if (gc) {
    gc()
    gc()
  }
}

const OPS = 100_000
const WAITERS = 100_000

/** Microseconds per uncontended withPermit(Effect.void), and the bare loop for reference. */
const uncontended = (): Promise<{ perOp: number; baseline: number }> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const limiter = yield* ConcurrencyLimiter.make({ plan: "pro" })
    const request = { key: "bench", pool: "standard" } as const
    const withPermit = limiter.withPermit(request)
    // Warm up the JIT.
    for (let i = 0; i < 10_000; i++) yield* withPermit(Effect.void)
    let t0 = performance.now()
    for (let i = 0; i < OPS; i++) yield* withPermit(Effect.void)
    const perOp = ((performance.now() - t0) * 1000) / OPS
    t0 = performance.now()
    for (let i = 0; i < OPS; i++) yield* Effect.void
    const baseline = ((performance.now() - t0) * 1000) / OPS
    return { perOp, baseline }
  })))

/** Heap and RSS bytes per queued waiter (a forked caller blocked in `withPermit`). */
const waiters = (): Promise<{ heap: number; rss: number }> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const limiter = yield* ConcurrencyLimiter.make({ plan: { standard: 1 }, maxQueue: WAITERS * 2 })
    const request = { key: "bench", pool: "standard" } as const
    const holder = yield* Effect.forkChild(limiter.withPermit(request)(Effect.never))
    while ((yield* limiter.snapshot("bench", "standard")).inFlight < 1) yield* Effect.yieldNow
    collect()
    const before = process.memoryUsage()
    const fibers: Array<Fiber.Fiber<void, ConcurrencyLimiter.ConcurrencyLimiterError>> = []
    for (let i = 0; i < WAITERS; i++) fibers.push(yield* Effect.forkChild(limiter.withPermit(request)(Effect.void)))
    while ((yield* limiter.snapshot("bench", "standard")).queueDepth < WAITERS) yield* Effect.yieldNow
    collect()
    const after = process.memoryUsage()
    // Drain: everyone runs, nothing is left behind.
    yield* Fiber.interrupt(holder)
    yield* Fiber.joinAll(fibers)
    const end = yield* limiter.snapshot("bench", "standard")
    if (end.inFlight !== 0 || end.queueDepth !== 0) throw new Error("bench: permits leaked")
    return { heap: (after.heapUsed - before.heapUsed) / WAITERS, rss: (after.rss - before.rss) / WAITERS }
  })))

/** Runs every limiter benchmark (median of several runs). */
export const run = async (): Promise<ReadonlyArray<Result>> => {
  const fast: Array<{ perOp: number; baseline: number }> = []
  for (let i = 0; i < 7; i++) fast.push(await uncontended())
  const mem: Array<{ heap: number; rss: number }> = []
  for (let i = 0; i < 3; i++) mem.push(await waiters())
  const gcNote = gc ? "median of 3, after global.gc()" : "median of 3; run with --expose-gc for exact numbers (no gc)"
  return [
    {
      name: "limiter: uncontended withPermit (acquire + release)",
      value: Number(median(fast.map((r) => r.perOp)).toFixed(3)),
      unit: "µs/op",
      note: `median of 7 x ${OPS} ops; a bare Effect.void step costs ${
        median(fast.map((r) => r.baseline)).toFixed(3)
      } µs`
    },
    {
      name: "limiter: heap per queued waiter (100,000 waiters)",
      value: Math.round(median(mem.map((r) => r.heap))),
      unit: "bytes",
      note: `includes the caller's parked fiber (~430 B alone); all deadlines share one timer; ${gcNote}`
    },
    {
      name: "limiter: RSS per queued waiter (100,000 waiters)",
      value: Math.round(mem[0]!.rss),
      unit: "bytes",
      note: `first run only: later runs reuse the heap the first one grew (their deltas: ${
        mem.slice(1).map((r) => Math.round(r.rss)).join(", ")
      })`
    }
  ]
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) {
    console.log(`${r.name}: ${r.value} ${r.unit}${r.note ? ` (${r.note})` : ""}`)
  }
}
