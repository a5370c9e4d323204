/**
 * What the HTML report's charts show, as plain data (the page's script hands
 * it to uPlot): one {@link ChartSpec} per chart, each series with its own
 * times, so runs of different lengths share the axes.
 *
 * One run: one chart per question, its lines told apart by colour. Several
 * runs (`--compare`): every chart overlays the runs, one colour per run, the
 * same in every chart; a chart that had several lines per run (latency
 * percentiles, 429 kinds, lanes) becomes one chart per line, so no chart
 * mixes two encodings.
 *
 * @since 0.1.0
 */
import type { Report, Series } from "./Report.ts"

/** One line of a chart. */
export interface SeriesSpec {
  readonly label: string
  readonly color: string
  /** Stroke width in CSS pixels; lines drawn first are wider, so a line drawn over another leaves its edges visible. */
  readonly width: number
  readonly dash?: ReadonlyArray<number> | undefined
  /** `step`: the value holds over its window. `line`: one point per window, at its middle. */
  readonly path: "step" | "line"
  /** The run (strategy) the line belongs to; `undefined` for a line shared by all runs. */
  readonly strategy: string | undefined
  /** A bound (the limit, the Little bound) rather than a measurement. */
  readonly reference: boolean
  /** Times, ms from the start of the run. */
  readonly x: ReadonlyArray<number>
  /** Values; `null` is a gap (nothing to measure in that window). */
  readonly y: ReadonlyArray<number | null>
}

/** How the y axis is scaled and labelled. */
export type YAxis = "count" | "ms" | "rate" | "breaker"

/** One chart. */
export interface ChartSpec {
  readonly id: string
  readonly title: string
  /** The y axis: `count` and `breaker` have integer ticks only. */
  readonly y: YAxis
  readonly yLabel: string
  /** A sentence under the chart saying how to read it. */
  readonly note?: string | undefined
  readonly series: ReadonlyArray<SeriesSpec>
}

/**
 * One colour per run, in report order (Okabe–Ito: told apart with the
 * common colour blindnesses); the same run has the same colour in every chart.
 */
export const runColors: ReadonlyArray<string> = [
  "#0072b2",
  "#d55e00",
  "#009e73",
  "#cc79a7",
  "#e69f00",
  "#56b4e9",
  "#000000"
]

/** The colour of the run at `index`. */
export const runColor = (index: number): string => runColors[index % runColors.length]!

/** Colours of the single-run charts, one per measurement. */
const colors = {
  inFlight: "#0072b2",
  reference: "#374151",
  interactive: "#cc79a7",
  batch: "#009e73",
  p50: "#009e73",
  p95: "#e69f00",
  p99: "#d55e00",
  tooMany: "#d55e00",
  systemBusy: "#009e73",
  rateLimited: "#cc79a7",
  retries: "#0072b2",
  throughput: "#009e73",
  breaker: "#374151"
} as const

/**
 * Stroke widths by drawing order, for lines that may lie on one another: the
 * first drawn is the widest (see {@link SeriesSpec.width}). Whole pixels, each
 * narrower than the last, so even at one device pixel per CSS pixel each
 * leaves whole pixels of its colour beside the next.
 */
const widths: ReadonlyArray<number> = [4, 2, 1]

/** The drawing order of a chart's only measured line: nothing to show through it, so a plain width. */
const alone = -1

const widthAt = (order: number): number => (order === alone ? 2 : widths[Math.min(order, widths.length - 1)]!)

const dashed: ReadonlyArray<number> = [6, 4]

/** The end of the run's last window. */
const endOf = (s: Series): number => (s.startMs.at(-1) ?? 0) + s.windowMs

/** A step line: each window's value from its start to its end (the last value repeated at the end, so it shows). */
export const stepXY = (
  s: Series,
  values: ReadonlyArray<number>
): { readonly x: ReadonlyArray<number>; readonly y: ReadonlyArray<number> } => ({
  x: [...s.startMs, endOf(s)],
  y: values.length === 0 ? [0] : [...values, values.at(-1)!]
})

/**
 * The latency percentiles of a run, one point per window at its middle, and
 * `null` (a gap) where no call ended: no call, no latency, and a 0 there
 * would draw a fall to 0 that never happened.
 */
export const latencySeries = (s: Series): {
  readonly x: ReadonlyArray<number>
  readonly p50: ReadonlyArray<number | null>
  readonly p95: ReadonlyArray<number | null>
  readonly p99: ReadonlyArray<number | null>
} => {
  const pick = (values: ReadonlyArray<number>) => values.map((v, k) => ((s.ended[k] ?? 0) === 0 ? null : v))
  return {
    x: s.startMs.map((t) => t + s.windowMs / 2),
    p50: pick(s.latencyMs.p50),
    p95: pick(s.latencyMs.p95),
    p99: pick(s.latencyMs.p99)
  }
}

/** How many windows {@link throughputSeries} averages over. */
export const throughputSpan = 10

/**
 * Successes per second, a trailing mean over the last {@link throughputSpan}
 * windows (fewer at the start): per window alone, a run cut into 120 short
 * windows is a comb of 0s and spikes that hides the rate.
 */
export const throughputSeries = (s: Series): ReadonlyArray<number> => {
  let sum = 0
  return s.succeeded.map((n, k) => {
    sum += n - (k >= throughputSpan ? s.succeeded[k - throughputSpan]! : 0)
    const span = Math.min(k + 1, throughputSpan) * s.windowMs
    return Math.round((sum / (span / 1000)) * 1000) / 1000
  })
}

/** A measured step line. */
const step = (
  s: Series,
  values: ReadonlyArray<number>,
  label: string,
  color: string,
  order: number,
  strategy: string,
  dash?: ReadonlyArray<number>
): SeriesSpec => ({
  label,
  color,
  width: widthAt(order),
  dash,
  path: "step",
  strategy,
  reference: false,
  ...stepXY(s, values)
})

/** A horizontal bound over the run. */
const bound = (s: Series, value: number, label: string, color: string, strategy: string | undefined): SeriesSpec => ({
  label,
  color,
  width: 1.5,
  dash: dashed,
  path: "step",
  strategy,
  reference: true,
  x: [0, endOf(s)],
  y: [value, value]
})

const latencyLine = (
  s: Series,
  values: ReadonlyArray<number | null>,
  label: string,
  color: string,
  order: number,
  strategy: string
): SeriesSpec => ({
  label,
  color,
  width: widthAt(order),
  path: "line",
  strategy,
  reference: false,
  x: latencySeries(s).x,
  y: values
})

const notes = {
  inFlight:
    "The most requests in flight for the pool in each window (the simulator's count when it reports one), against the plan's concurrency limit (dashed).",
  throughput:
    `Successes per second (mean over the last ${throughputSpan} windows), against the Little bound (dashed). Little bound = limit / mean service time, where the service time is how long a successful attempt holds a slot (its start to its last body byte): by Little's law, the most successes per second the pool can deliver. Utilization = throughput / Little bound over the whole run: near 100 % the plan's concurrency is the bottleneck; far below, the traffic, the queue or the retries are.`,
  latency:
    "Arrival to outcome of the calls that ended in each window, successes and failures alike (nearest rank). A window in which no call ended is a gap, not a 0.",
  http429:
    "429 answers per window by detail.status (too_many_concurrent_requests, system_busy, any other 429), and the retries the strategy scheduled.",
  tooMany: "429 too_many_concurrent_requests answers per window: more requests at once than the plan allows.",
  systemBusy: "429 system_busy answers per window: the service was loaded (in a simulation, the fault mix).",
  otherLimited: "Any other 429 per window (another or no detail.status).",
  retries: "Retries the strategy scheduled per window, whatever their cause.",
  queue: "The deepest the strategy's own queue was in each window, per lane (0 for a strategy without a queue).",
  breaker: "The worst circuit-breaker state in each window."
} as const

/** The Little bound and the utilization of each run, for the throughput chart's note. */
const utilizationText = (reports: ReadonlyArray<Report>): string =>
  reports.map((r) => {
    const s = r.summary
    return `${s.strategy}: ${s.throughputPerSec}/s of ${s.littleBoundPerSec}/s, utilization ${
      Math.round(s.utilization * 1000) / 10
    } %`
  }).join("; ") + "."

/** The charts of one run: several lines per chart, one colour per measurement. */
const single = (report: Report): ReadonlyArray<ChartSpec> => {
  const s = report.series
  const name = report.summary.strategy
  const latency = latencySeries(s)
  return [
    {
      id: "in-flight",
      title: `In flight vs limit (${report.summary.pool} pool)`,
      y: "count",
      yLabel: "requests",
      note: notes.inFlight,
      series: [
        step(s, s.inFlight, "in flight (max)", colors.inFlight, alone, name),
        bound(s, s.limit, `limit ${s.limit}`, colors.reference, undefined)
      ]
    },
    {
      id: "throughput",
      title: "Throughput vs Little bound",
      y: "rate",
      yLabel: "successes / s",
      note: `${notes.throughput} ${utilizationText([report])}`,
      series: [
        step(s, throughputSeries(s), "successes / s", colors.throughput, alone, name),
        bound(s, report.summary.littleBoundPerSec, "Little bound", colors.reference, name)
      ]
    },
    {
      id: "latency",
      title: "Latency p50 / p95 / p99 (calls ending in the window)",
      y: "ms",
      yLabel: "latency",
      note: notes.latency,
      // p99 first and widest, p50 last and narrowest: where they coincide, each stays visible.
      series: [
        latencyLine(s, latency.p99, "p99", colors.p99, 0, name),
        latencyLine(s, latency.p95, "p95", colors.p95, 1, name),
        latencyLine(s, latency.p50, "p50", colors.p50, 2, name)
      ]
    },
    {
      id: "http429",
      title: "429s by kind, and retries",
      y: "count",
      yLabel: "per window",
      note: notes.http429,
      series: [
        step(s, s.http429.tooManyConcurrentRequests, "429 too_many_concurrent_requests", colors.tooMany, 0, name),
        step(s, s.http429.systemBusy, "429 system_busy", colors.systemBusy, 1, name),
        step(s, s.http429.rateLimited, "429 other", colors.rateLimited, 2, name),
        step(s, s.retries, "retries", colors.retries, 3, name, dashed)
      ]
    },
    {
      id: "queue",
      title: "Queue depth per lane",
      y: "count",
      yLabel: "waiting",
      note: notes.queue,
      series: [
        step(s, s.queueDepth.interactive, "interactive", colors.interactive, 0, name),
        step(s, s.queueDepth.batch, "batch", colors.batch, 1, name)
      ]
    },
    {
      id: "breaker",
      title: "Breaker state",
      y: "breaker",
      yLabel: "state",
      note: notes.breaker,
      series: [step(s, s.breaker, "breaker", colors.breaker, alone, name)]
    }
  ]
}

/** A chart of several runs: one line per run (in the run's colour), plus the bounds. */
const overlay = (
  reports: ReadonlyArray<Report>,
  id: string,
  title: string,
  y: YAxis,
  yLabel: string,
  note: string,
  line: (report: Report, color: string, order: number) => SeriesSpec,
  bounds: (report: Report, color: string) => ReadonlyArray<SeriesSpec> = () => []
): ChartSpec => ({
  id,
  title,
  y,
  yLabel,
  note,
  series: [
    ...reports.map((r, i) => line(r, runColor(i), i)),
    ...reports.flatMap((r, i) => bounds(r, runColor(i)))
  ]
})

/** The charts of several runs on the same axes. */
const compared = (reports: ReadonlyArray<Report>): ReadonlyArray<ChartSpec> => {
  const name = (r: Report) => r.summary.strategy
  const counts = (
    id: string,
    title: string,
    yLabel: string,
    note: string,
    values: (s: Series) => ReadonlyArray<number>
  ): ChartSpec =>
    overlay(
      reports,
      id,
      title,
      "count",
      yLabel,
      note,
      (r, color, i) => step(r.series, values(r.series), name(r), color, i, name(r))
    )
  const latency = (p: "p50" | "p95" | "p99"): ChartSpec =>
    overlay(
      reports,
      `latency-${p}`,
      `Latency ${p} (calls ending in the window)`,
      "ms",
      "latency",
      notes.latency,
      (r, color, i) => latencyLine(r.series, latencySeries(r.series)[p], name(r), color, i, name(r))
    )
  // One limit line per distinct limit: runs of one plan and model share it.
  const limits = [...new Map(reports.map((r) => [r.series.limit, r] as const)).values()]
  const inFlight = counts("in-flight", "In flight vs limit", "requests", notes.inFlight, (s) => s.inFlight)
  return [
    {
      ...inFlight,
      series: [
        ...inFlight.series,
        ...limits.map((r) => bound(r.series, r.series.limit, `limit ${r.series.limit}`, colors.reference, undefined))
      ]
    },
    overlay(
      reports,
      "throughput",
      "Throughput vs Little bound",
      "rate",
      "successes / s",
      `${notes.throughput} ${utilizationText(reports)}`,
      (r, color, i) => step(r.series, throughputSeries(r.series), name(r), color, i, name(r)),
      (r, color) => [bound(r.series, r.summary.littleBoundPerSec, `${name(r)} Little bound`, color, name(r))]
    ),
    latency("p50"),
    latency("p95"),
    latency("p99"),
    counts(
      "http429-too-many",
      "429 too_many_concurrent_requests",
      "per window",
      notes.tooMany,
      (s) => s.http429.tooManyConcurrentRequests
    ),
    counts("http429-system-busy", "429 system_busy", "per window", notes.systemBusy, (s) => s.http429.systemBusy),
    counts("http429-other", "429 other", "per window", notes.otherLimited, (s) => s.http429.rateLimited),
    counts("retries", "Retries scheduled", "per window", notes.retries, (s) => s.retries),
    counts(
      "queue-interactive",
      "Queue depth, interactive lane",
      "waiting",
      notes.queue,
      (s) => s.queueDepth.interactive
    ),
    counts("queue-batch", "Queue depth, batch lane", "waiting", notes.queue, (s) => s.queueDepth.batch),
    { ...counts("breaker", "Breaker state", "state", notes.breaker, (s) => s.breaker), y: "breaker" }
  ]
}

/** The charts of a report of one run or several. */
export const chartSpecs = (reports: ReadonlyArray<Report>): ReadonlyArray<ChartSpec> =>
  reports.length === 0 ? [] : reports.length === 1 ? single(reports[0]!) : compared(reports)
