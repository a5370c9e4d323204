/**
 * The HTML report: one self-contained file, inline SVG charts, no scripts,
 * no external assets. Hand-written SVG because nothing in the dependency set
 * draws charts, and a static file must open anywhere (CI artefacts, mail).
 *
 * Charts per run, over virtual time: in-flight vs the pool's limit, queue
 * depth per lane, latency percentiles, 429s by kind and retries, breaker
 * state; then the summary table (all runs side by side).
 *
 * @since 0.1.0
 */
import type { Report } from "./Report.ts"
import { rows } from "./Report.ts"

/** One line of a chart. */
export interface Line {
  readonly name: string
  readonly color: string
  readonly values: ReadonlyArray<number>
  readonly dashed?: boolean | undefined
}

const escape = (s: string): string =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("\"", "&quot;")

const W = 720
const H = 220
const M = { left: 56, right: 16, top: 28, bottom: 30 }

const niceMax = (x: number): number => {
  if (x <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(x))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p
  return 10 * p
}

const num = (x: number): string => (Math.round(x * 10) / 10).toString()

/** Round steps for the time axis, from 1 ms to 1 day. */
const timeSteps: ReadonlyArray<number> = [1, 2, 5, 10, 20, 50, 100, 200, 500].concat(
  [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000)
)

const axisTime = (ms: number): string =>
  ms >= 3_600_000
    ? `${num(ms / 3_600_000)} h`
    : ms >= 60_000
    ? `${num(ms / 60_000)} min`
    : ms >= 1000 || ms === 0
    ? `${num(ms / 1000)} s`
    : `${num(ms)} ms`

/**
 * A step-line chart as an inline `<svg>`: one `<path>` per line, x from the
 * window starts, y from 0 to a rounded maximum.
 */
export const chart = (
  title: string,
  startMs: ReadonlyArray<number>,
  windowMs: number,
  lines: ReadonlyArray<Line>,
  yLabel: string
): string => {
  const n = startMs.length
  const endMs = n === 0 ? 1 : startMs[n - 1]! + windowMs
  const yMax = niceMax(Math.max(0, ...lines.flatMap((l) => l.values)))
  const pw = W - M.left - M.right
  const ph = H - M.top - M.bottom
  const x = (t: number) => M.left + (t / endMs) * pw
  const y = (v: number) => M.top + ph - (v / yMax) * ph
  const paths = lines.map((l) => {
    let d = ""
    l.values.forEach((v, k) => {
      const x0 = x(startMs[k]!)
      const x1 = x(startMs[k]! + windowMs)
      d += `${k === 0 ? "M" : "L"}${x0.toFixed(1)},${y(v).toFixed(1)}L${x1.toFixed(1)},${y(v).toFixed(1)}`
    })
    const dash = l.dashed === true ? ` stroke-dasharray="6 4"` : ""
    return `<path class="series" data-name="${
      escape(l.name)
    }" d="${d}" fill="none" stroke="${l.color}" stroke-width="1.6"${dash}/>`
  })
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = yMax * f
    return `<line x1="${M.left}" x2="${W - M.right}" y1="${y(v).toFixed(1)}" y2="${
      y(v).toFixed(1)
    }" stroke="#e5e7eb"/>` +
      `<text x="${M.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${num(v)}</text>`
  })
  const step = timeSteps.find((s) => endMs / s <= 6) ?? endMs / 6
  const xticks: Array<string> = []
  for (let t = 0; t <= endMs; t += step) {
    xticks.push(`<text x="${x(t).toFixed(1)}" y="${H - 10}" text-anchor="middle">${axisTime(t)}</text>`)
  }
  const legend = lines.map((l, i) =>
    `<rect x="${M.left + i * 150}" y="8" width="12" height="3" fill="${l.color}"/>` +
    `<text x="${M.left + 16 + i * 150}" y="13">${escape(l.name)}</text>`
  )
  return `<figure><figcaption>${escape(title)}</figcaption>` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      escape(title)
    }">` +
    `<rect width="${W}" height="${H}" fill="#ffffff"/>${ticks.join("")}${xticks.join("")}` +
    `<text x="12" y="${M.top + ph / 2}" transform="rotate(-90 12 ${M.top + ph / 2})" text-anchor="middle">${
      escape(yLabel)
    }</text>` +
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#9ca3af"/>` +
    `<line x1="${M.left}" x2="${W - M.right}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#9ca3af"/>` +
    `${paths.join("")}${legend.join("")}</svg></figure>`
}

/** The five charts of one run. */
export const charts = (report: Report): string => {
  const s = report.series
  const limit = s.startMs.map(() => s.limit)
  return [
    chart(`In flight vs limit (${report.summary.pool} pool)`, s.startMs, s.windowMs, [
      { name: "in flight (max)", color: "#2563eb", values: s.inFlight },
      { name: `limit ${s.limit}`, color: "#dc2626", values: limit, dashed: true }
    ], "requests"),
    chart("Queue depth per lane", s.startMs, s.windowMs, [
      { name: "interactive", color: "#7c3aed", values: s.queueDepth.interactive },
      { name: "batch", color: "#0891b2", values: s.queueDepth.batch }
    ], "waiting"),
    chart("Latency percentiles (calls ending in window)", s.startMs, s.windowMs, [
      { name: "p50", color: "#16a34a", values: s.latencyMs.p50 },
      { name: "p95", color: "#d97706", values: s.latencyMs.p95 },
      { name: "p99", color: "#dc2626", values: s.latencyMs.p99 }
    ], "ms"),
    chart("429s by kind and retries", s.startMs, s.windowMs, [
      { name: "too_many_concurrent", color: "#dc2626", values: s.http429.tooManyConcurrentRequests },
      { name: "system_busy", color: "#d97706", values: s.http429.systemBusy },
      { name: "retries", color: "#2563eb", values: s.retries }
    ], "per window"),
    chart("Breaker state (0 closed, 1 half-open, 2 open)", s.startMs, s.windowMs, [
      { name: "breaker", color: "#374151", values: s.breaker }
    ], "state")
  ].join("\n")
}

/** The summary table, one column per run. */
export const table = (reports: ReadonlyArray<Report>): string => {
  const columns = reports.map((r) => rows(r.summary))
  const labels = columns[0]?.map(([label]) => label) ?? []
  const body = labels.map((label, i) =>
    `<tr><th>${escape(label)}</th>${columns.map((c) => `<td>${escape(c[i]![1])}</td>`).join("")}</tr>`
  )
  return `<table><tbody>${body.join("")}</tbody></table>`
}

/** The whole HTML document for one or more runs. */
export const render = (reports: ReadonlyArray<Report>): string => {
  const first = reports[0]?.summary
  const title = first === undefined
    ? "Simulation report"
    : `Simulation: ${first.pattern}, ${first.requests} requests, ${first.plan} / ${first.model}`
  const sections = reports.map((r) => `<section><h2>${escape(r.summary.strategy)}</h2>\n${charts(r)}</section>`)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#111827;background:#f9fafb}
h1{font-size:20px}h2{font-size:17px;margin-top:28px}
figure{margin:12px 0;background:#fff;border:1px solid #e5e7eb;display:inline-block}
figcaption{font-weight:600;padding:6px 8px}
svg text{font:11px system-ui,sans-serif;fill:#374151}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #e5e7eb;padding:4px 10px;text-align:left}th{background:#f3f4f6}
</style></head><body>
<h1>${escape(title)}</h1>
<h2>Summary</h2>
${table(reports)}
${sections.join("\n")}
</body></html>
`
}
