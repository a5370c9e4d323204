/**
 * Simulation reports: the summary of a run, its time series for charts, and
 * their text and JSON renderings (the HTML one is {@link Html}).
 *
 * **Details**
 *
 * - `maxInFlight` and the 429 counts are what the simulator saw; attempts,
 *   retries, latencies and queue waits are what the client side recorded.
 * - `littleBoundPerSec` (Little's law) is `limit / mean slot-holding time` of
 *   the successful attempts: the most successes per second the pool can
 *   deliver at that service time. `utilization = throughput / bound`.
 * - Numbers are rounded to 3 decimals, so the same seed gives byte-identical
 *   reports except `wallMs`.
 *
 * @since 0.1.0
 */
import type { Pool } from "../resilience/Plans.ts"
import type * as Simulator from "../simulator/Simulator.ts"
import type { PatternName, Traffic } from "./Patterns.ts"
import type { BreakerState, Log } from "./Recorder.ts"

/** Nearest-rank percentiles and the maximum. */
export interface Percentiles {
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
}

/** The summary of one run. */
export interface Summary {
  readonly strategy: string
  readonly plan: string
  readonly model: string
  readonly pool: Pool
  readonly limit: number
  readonly pattern: PatternName
  readonly seed: number
  readonly failureRate: number
  readonly requests: number
  readonly succeeded: number
  readonly failed: number
  readonly failedByReason: Readonly<Record<string, number>>
  readonly http429: { readonly tooManyConcurrentRequests: number; readonly systemBusy: number }
  readonly attempts: number
  readonly retries: number
  readonly maxInFlight: number
  readonly throughputPerSec: number
  readonly littleBoundPerSec: number
  readonly utilization: number
  readonly latencyMs: Percentiles
  readonly queueWaitMs: Percentiles
  readonly creditsUsed: number
  readonly breaker: { readonly opened: number; readonly transitions: number }
  /** Which clock `virtualDurationMs` was measured on: `virtual` (a simulation) or `real` (a load test). */
  readonly clock: "virtual" | "real"
  /** The run's length on its clock (the name is kept for the JSON's readers; see `clock`). */
  readonly virtualDurationMs: number
  readonly wallMs: number
}

/** Per-window series for charts; every array has one value per window. */
export interface Series {
  readonly windowMs: number
  /** Start of each window, ms from the start of the run. */
  readonly startMs: ReadonlyArray<number>
  readonly limit: number
  /** Highest in-flight count of the pool in the window (simulator's view). */
  readonly inFlight: ReadonlyArray<number>
  /** Highest queue depth per lane in the window (strategy's queue). */
  readonly queueDepth: { readonly interactive: ReadonlyArray<number>; readonly batch: ReadonlyArray<number> }
  /** Calls that ended in the window, successes and failures (0 tells a latency of 0 from no call). */
  readonly ended: ReadonlyArray<number>
  /** Calls that ended in the window with a success. */
  readonly succeeded: ReadonlyArray<number>
  /** Latency percentiles of the calls that ended in the window (0 when none: see `ended`). */
  readonly latencyMs: {
    readonly p50: ReadonlyArray<number>
    readonly p95: ReadonlyArray<number>
    readonly p99: ReadonlyArray<number>
  }
  /** 429 answers per window, by kind (`rateLimited`: a 429 with any other or no `detail.status`). */
  readonly http429: {
    readonly tooManyConcurrentRequests: ReadonlyArray<number>
    readonly systemBusy: ReadonlyArray<number>
    readonly rateLimited: ReadonlyArray<number>
  }
  /** Retries scheduled per window. */
  readonly retries: ReadonlyArray<number>
  /** Worst breaker state in the window: 0 closed, 1 half-open, 2 open. */
  readonly breaker: ReadonlyArray<number>
}

/** A report: summary and series. */
export interface Report {
  readonly summary: Summary
  readonly series: Series
}

/** What {@link build} needs. */
export interface BuildInput {
  readonly strategy: string
  readonly plan: string
  readonly model: string
  readonly pool: Pool
  readonly limit: number
  readonly traffic: Traffic
  readonly failureRate: number
  readonly log: Log
  readonly stats: Simulator.Stats
  /** Default `virtual`. */
  readonly clock?: "virtual" | "real" | undefined
  readonly virtualDurationMs: number
  readonly wallMs: number
}

/** The number of windows series are cut into (at most). */
export const windows = 120

const round = (x: number): number => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : 0)

/** Nearest-rank percentile of a sorted array (0 when empty). */
export const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return 0
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]!
}

/** Percentiles of unsorted samples. */
export const percentiles = (samples: ReadonlyArray<number>): Percentiles => {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.length === 0 ? 0 : sorted[sorted.length - 1]!)
  }
}

/** The highest value of a step function `[t, v]` (sorted by t) in each window. */
const stepMax = (points: ReadonlyArray<readonly [number, number]>, n: number, windowMs: number): Array<number> => {
  const out = new Array<number>(n).fill(0)
  let current = 0
  let i = 0
  for (let k = 0; k < n; k++) {
    const end = (k + 1) * windowMs
    let max = current
    while (i < points.length && points[i]![0] < end) {
      current = points[i]![1]
      if (current > max) max = current
      i++
    }
    out[k] = max
  }
  return out
}

const bucketOf = (t: number, n: number, windowMs: number): number =>
  Math.min(n - 1, Math.max(0, Math.floor(t / windowMs)))

const breakerLevel = (s: BreakerState): number => (s === "open" ? 2 : s === "half-open" ? 1 : 0)

/** Builds the summary and the series of a run. */
export const build = (input: BuildInput): Report => {
  const { log, stats } = input
  const duration = Math.max(1, input.virtualDurationMs)
  const n = Math.max(1, Math.min(windows, Math.ceil(duration)))
  const windowMs = Math.ceil(duration / n)

  const failedByReason: Record<string, number> = {}
  let succeeded = 0
  const latencies: Array<number> = []
  for (const c of log.calls) {
    latencies.push(c.endMs - c.arrivalMs)
    if (c.failure === undefined) succeeded++
    else failedByReason[c.failure] = (failedByReason[c.failure] ?? 0) + 1
  }
  const sortedReasons = Object.fromEntries(Object.entries(failedByReason).sort(([a], [b]) => a.localeCompare(b)))

  let holdSum = 0
  let holdCount = 0
  for (const a of log.attempts) {
    if (a.kind === "ok") {
      holdSum += a.endMs - a.startMs
      holdCount++
    }
  }
  const meanHoldSec = holdCount === 0 ? 0 : holdSum / holdCount / 1000
  const littleBound = meanHoldSec === 0 ? 0 : input.limit / meanHoldSec
  const throughput = succeeded / (duration / 1000)

  const account = Object.values(stats.accounts)[0]
  const poolStats = account?.pools[input.pool]
  const simSamples = poolStats?.samples ?? []
  const origin = simSamples[0]?.t ?? 0
  const inFlightPoints: Array<readonly [number, number]> = simSamples.length > 0
    ? simSamples.map((s) => [s.t - origin, s.inFlight] as const)
    : log.inFlight

  const latencyWindows: Array<Array<number>> = Array.from({ length: n }, () => [])
  const succeededPerWindow = new Array<number>(n).fill(0)
  for (const c of log.calls) {
    const k = bucketOf(c.endMs, n, windowMs)
    latencyWindows[k]!.push(c.endMs - c.arrivalMs)
    if (c.failure === undefined) succeededPerWindow[k]!++
  }
  const latencyPs = latencyWindows.map(percentiles)

  const tooMany = new Array<number>(n).fill(0)
  const busy = new Array<number>(n).fill(0)
  const otherLimited = new Array<number>(n).fill(0)
  for (const a of log.attempts) {
    if (a.kind === "too_many_concurrent_requests") tooMany[bucketOf(a.endMs, n, windowMs)]!++
    else if (a.kind === "system_busy") busy[bucketOf(a.endMs, n, windowMs)]!++
    else if (a.kind === "rate_limited") otherLimited[bucketOf(a.endMs, n, windowMs)]!++
  }
  const retries = new Array<number>(n).fill(0)
  for (const [t] of log.retries) retries[bucketOf(t, n, windowMs)]!++

  const breakerPoints = log.breaker.map(([t, s]) => [t, breakerLevel(s)] as const)

  const summary: Summary = {
    strategy: input.strategy,
    plan: input.plan,
    model: input.model,
    pool: input.pool,
    limit: input.limit,
    pattern: input.traffic.pattern,
    seed: input.traffic.seed,
    failureRate: input.failureRate,
    requests: input.traffic.requests,
    succeeded,
    failed: log.calls.length - succeeded,
    failedByReason: sortedReasons,
    http429: {
      tooManyConcurrentRequests: stats.byDetailStatus["too_many_concurrent_requests"] ?? 0,
      systemBusy: stats.byDetailStatus["system_busy"] ?? 0
    },
    attempts: log.attempts.length,
    retries: log.retries.length,
    maxInFlight: poolStats?.maxInFlight ?? stats.pools[input.pool].maxInFlight,
    throughputPerSec: round(throughput),
    littleBoundPerSec: round(littleBound),
    utilization: round(littleBound === 0 ? 0 : throughput / littleBound),
    latencyMs: percentiles(latencies),
    queueWaitMs: percentiles(log.queueWaits.map(([, w]) => w)),
    creditsUsed: stats.creditsCharged,
    breaker: {
      opened: log.breaker.filter(([, s]) => s === "open").length,
      transitions: log.breaker.length
    },
    clock: input.clock ?? "virtual",
    virtualDurationMs: round(input.virtualDurationMs),
    wallMs: round(input.wallMs)
  }
  const series: Series = {
    windowMs,
    startMs: Array.from({ length: n }, (_, k) => k * windowMs),
    limit: input.limit,
    inFlight: stepMax(inFlightPoints, n, windowMs),
    queueDepth: {
      interactive: stepMax(log.queueDepth.interactive, n, windowMs),
      batch: stepMax(log.queueDepth.batch, n, windowMs)
    },
    ended: latencyWindows.map((w) => w.length),
    succeeded: succeededPerWindow,
    latencyMs: { p50: latencyPs.map((p) => p.p50), p95: latencyPs.map((p) => p.p95), p99: latencyPs.map((p) => p.p99) },
    http429: { tooManyConcurrentRequests: tooMany, systemBusy: busy, rateLimited: otherLimited },
    retries,
    breaker: stepMax(breakerPoints, n, windowMs)
  }
  return { summary, series }
}

// ----------------------------------------------------------------------------
// Text and JSON
// ----------------------------------------------------------------------------

/** A number as the text reports write it (thousands separated, at most 2 decimals). */
export const fmt = (x: number): string =>
  Number.isInteger(x) ? x.toLocaleString("en-US") : x.toLocaleString("en-US", { maximumFractionDigits: 2 })

/** A duration as the text reports write it (ms below 10 s, then seconds). */
export const fmtMs = (
  ms: number
): string => (ms >= 10_000 ? `${fmt(Math.round(ms / 100) / 10)} s` : `${fmt(Math.round(ms))} ms`)

const reasonsText = (r: Readonly<Record<string, number>>): string => {
  const entries = Object.entries(r)
  return entries.length === 0 ? "-" : entries.map(([k, v]) => `${k} ${fmt(v)}`).join(", ")
}

/** The rows of the text table: label and value per summary. */
export const rows = (s: Summary): ReadonlyArray<readonly [string, string]> => [
  ["strategy", s.strategy],
  ["plan / model", `${s.plan} / ${s.model}`],
  ["pool (limit)", `${s.pool} (${s.limit})`],
  ["pattern (seed)", `${s.pattern} (seed ${s.seed}, failure rate ${s.failureRate})`],
  ["requests", fmt(s.requests)],
  ["succeeded", fmt(s.succeeded)],
  ["failed", fmt(s.failed)],
  ["failed by reason", reasonsText(s.failedByReason)],
  ["429 too_many_concurrent", fmt(s.http429.tooManyConcurrentRequests)],
  ["429 system_busy", fmt(s.http429.systemBusy)],
  ["attempts / retries", `${fmt(s.attempts)} / ${fmt(s.retries)}`],
  ["max in flight", `${fmt(s.maxInFlight)} of ${fmt(s.limit)}`],
  ["throughput", `${fmt(s.throughputPerSec)}/s`],
  ["Little bound", `${fmt(s.littleBoundPerSec)}/s`],
  ["utilization", `${fmt(Math.round(s.utilization * 1000) / 10)} %`],
  ["latency p50/p95/p99", `${fmtMs(s.latencyMs.p50)} / ${fmtMs(s.latencyMs.p95)} / ${fmtMs(s.latencyMs.p99)}`],
  ["latency max", fmtMs(s.latencyMs.max)],
  ["queue wait p50/p95/p99", `${fmtMs(s.queueWaitMs.p50)} / ${fmtMs(s.queueWaitMs.p95)} / ${fmtMs(s.queueWaitMs.p99)}`],
  ["credits used", fmt(s.creditsUsed)],
  ["breaker opened / moves", `${fmt(s.breaker.opened)} / ${fmt(s.breaker.transitions)}`],
  [s.clock === "real" ? "duration (real time)" : "virtual duration", fmtMs(s.virtualDurationMs)],
  ["wall time", `${fmt(Math.round(s.wallMs))} ms`]
]

/** A text table of one or more runs side by side (one column per run). */
export const toText = (reports: ReadonlyArray<Report>): string => {
  const columns = reports.map((r) => rows(r.summary))
  const labels = columns[0]?.map(([label]) => label) ?? []
  const cells = labels.map((label, i) => [label, ...columns.map((c) => c[i]![1])])
  const widths = cells.reduce<Array<number>>(
    (w, row) => row.map((cell, j) => Math.max(w[j] ?? 0, cell.length)),
    []
  )
  return cells.map((row) => row.map((cell, j) => cell.padEnd(widths[j]!)).join("  ").trimEnd()).join("\n") + "\n"
}

/** JSON of one run (its summary fields and `series`), or of several (`{ runs }`). */
export const toJson = (reports: ReadonlyArray<Report>): string =>
  reports.length === 1
    ? JSON.stringify({ ...reports[0]!.summary, series: reports[0]!.series }, null, 2)
    : JSON.stringify({ runs: reports.map((r) => ({ ...r.summary, series: r.series })) }, null, 2)
