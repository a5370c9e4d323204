/**
 * The HTML report: one self-contained file that opens offline (a CI
 * artefact, a mail attachment). The summary table (all runs side by side) is
 * plain HTML; the charts are drawn by uPlot, whose script and style are read
 * from `node_modules` when the report is written and inlined, with the data
 * as JSON. No CDN, no external asset.
 *
 * What the charts show is {@link HtmlCharts}; the page's script is
 * {@link HtmlClient}; the helpers both sides share are {@link HtmlAxes}.
 *
 * @since 0.1.0
 */
import { Data, Effect } from "effect"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { timeSteps } from "./HtmlAxes.ts"
import { type ChartSpec, chartSpecs, runColor } from "./HtmlCharts.ts"
import { clientScript, dataElementId, pageStyle } from "./HtmlClient.ts"
import type { Report } from "./Report.ts"
import { rows } from "./Report.ts"

export * from "./HtmlAxes.ts"
export * from "./HtmlCharts.ts"

/** The charting library's files, as inlined into the page. */
export interface ChartLibrary {
  readonly name: string
  readonly version: string
  readonly script: string
  readonly style: string
}

/** The charting library could not be read: its message is one line saying what to install. */
export class ChartLibraryMissing extends Data.TaggedError("ChartLibraryMissing")<{
  readonly message: string
}> {}

/** The package the charts need, and the files of it that are inlined. */
export const chartPackage = {
  name: "uplot",
  script: "uplot/dist/uPlot.iife.min.js",
  style: "uplot/dist/uPlot.min.css",
  manifest: "uplot/package.json"
} as const

/** Resolves a module specifier to a file path (Node's resolution from this module by default). */
export type Resolve = (specifier: string) => string

const defaultResolve: Resolve = (specifier) => createRequire(import.meta.url).resolve(specifier)

const missing = (e: unknown): ChartLibraryMissing =>
  e instanceof ChartLibraryMissing ? e : new ChartLibraryMissing({
    message: `the HTML report needs the "${chartPackage.name}" package, which cannot be read (${
      (e as { readonly code?: unknown } | undefined)?.code ?? String(e).split("\n")[0]
    }); run npm install in the project (or npm install ${chartPackage.name}) and try again`
  })

/**
 * Reads the charting library from `node_modules`, synchronously. Throws
 * {@link ChartLibraryMissing} when it is not installed or not readable.
 */
export const readChartLibrary = (resolve: Resolve = defaultResolve): ChartLibrary => {
  try {
    const read = (specifier: string) => readFileSync(resolve(specifier), "utf8")
    const manifest = JSON.parse(read(chartPackage.manifest)) as { readonly version?: unknown }
    return {
      name: chartPackage.name,
      version: String(manifest.version),
      script: read(chartPackage.script),
      style: read(chartPackage.style)
    }
  } catch (e) {
    throw missing(e)
  }
}

/** {@link readChartLibrary} as an Effect: fails with {@link ChartLibraryMissing}. */
export const loadChartLibrary = (resolve?: Resolve): Effect.Effect<ChartLibrary, ChartLibraryMissing> =>
  Effect.try({ try: () => readChartLibrary(resolve), catch: missing })

const escape = (s: string): string =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("\"", "&quot;")

/**
 * JSON that is safe inside a `<script>` element: every `<` becomes `\u003c`
 * (still the same JSON), so no `</script>` or `<!--` in the data can end or
 * change the element.
 */
export const scriptJson = (value: unknown): string =>
  JSON.stringify(value).replaceAll("<", "\\u003c").replaceAll("\u2028", "\\u2028").replaceAll("\u2029", "\\u2029")

/** Inline script or style text must not close its element early; the library's does not, and this checks it. */
const inlineSafe = (text: string, element: "script" | "style"): string => {
  if (new RegExp(`</${element}`, "i").test(text)) throw new Error(`the inlined ${element} contains </${element}`)
  return text
}

/** What kind of run the report is of: a load test runs on the real clock, a simulation on a virtual one. */
export const kindOf = (reports: ReadonlyArray<Report>): "Simulation" | "Load test" | "Simulation and load test" => {
  const real = reports.filter((r) => r.summary.clock === "real").length
  return real === 0 ? "Simulation" : real === reports.length ? "Load test" : "Simulation and load test"
}

/** The report's title: its kind, the traffic, the plan and the model. */
export const title = (reports: ReadonlyArray<Report>): string => {
  const first = reports[0]?.summary
  const kind = kindOf(reports)
  return first === undefined
    ? `${kind} report`
    : `${kind}: ${first.pattern}, ${first.requests} requests, ${first.plan} / ${first.model}`
}

/** The summary table, one column per run (with its chart colour when there are several). */
export const table = (reports: ReadonlyArray<Report>): string => {
  const columns = reports.map((r) => rows(r.summary))
  const labels = columns[0]?.map(([label]) => label) ?? []
  const swatch = (i: number) =>
    reports.length > 1 ? `<span class="swatch" style="background:${runColor(i)}"></span>` : ""
  const body = labels.map((label, i) =>
    `<tr><th>${escape(label)}</th>${
      columns.map((c, j) => `<td>${i === 0 ? swatch(j) : ""}${escape(c[i]![1])}</td>`).join("")
    }</tr>`
  )
  return `<table class="summary"><tbody>${body.join("")}</tbody></table>`
}

/** The box of a chart: its caption, the element the page's script draws into, its note. */
const figure = (spec: ChartSpec): string =>
  `<figure id="chart-${escape(spec.id)}"><figcaption>${escape(spec.title)}</figcaption>` +
  `<div class="chart" data-chart="${escape(spec.id)}"></div>` +
  (spec.note === undefined ? "" : `<p class="note">${escape(spec.note)}</p>`) +
  `</figure>`

/** The data the page's script reads. */
export const pageData = (reports: ReadonlyArray<Report>) => ({
  xMax: Math.max(1, ...reports.map((r) => (r.series.startMs.at(-1) ?? 0) + r.series.windowMs)),
  timeLabel: reports.every((r) => r.summary.clock === "real") ? "time (real)" : "virtual time",
  timeSteps,
  charts: chartSpecs(reports)
})

/** The whole HTML document for one or more runs, with `library` inlined. */
export const renderWith = (reports: ReadonlyArray<Report>, library: ChartLibrary): string => {
  const heading = title(reports)
  const data = pageData(reports)
  const windows = [...new Set(reports.map((r) => r.series.windowMs))].map((w) => `${w.toLocaleString("en-US")} ms`)
  const runs = reports.length > 1
    ? `${reports.length} runs on the same traffic, one colour per run in every chart`
    : reports[0]?.summary.strategy ?? "no run"
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(heading)}</title>
<style>${inlineSafe(library.style, "style")}</style>
<style>${pageStyle}</style>
</head><body>
<h1>${escape(heading)}</h1>
<p class="sub">${escape(runs)}; ${escape(data.timeLabel)}</p>
<h2>Summary</h2>
${table(reports)}
<h2>Charts</h2>
<p class="explain">Each run is cut into at most 120 windows (here ${
    escape(windows.join(", "))
  } each); a chart shows one value per window. Hover a chart for the values, drag to zoom (double-click to reset), click a legend entry to hide its line.</p>
<noscript><p>The charts need JavaScript; the table above has the numbers.</p></noscript>
<div class="charts">
${data.charts.map(figure).join("\n")}
</div>
<script type="application/json" id="${dataElementId}">${scriptJson(data)}</script>
<!-- ${escape(library.name)} ${escape(library.version)} (MIT License, Copyright (c) 2022 Leon Sorokin), inlined -->
<script>${inlineSafe(library.script, "script")}</script>
<script>${clientScript()}</script>
</body></html>
`
}

/**
 * The HTML document, or {@link ChartLibraryMissing} when the charting library
 * cannot be read (a command maps it to its one-line error).
 */
export const renderEffect = (
  reports: ReadonlyArray<Report>,
  resolve?: Resolve
): Effect.Effect<string, ChartLibraryMissing> =>
  Effect.map(loadChartLibrary(resolve), (library) => renderWith(reports, library))

/**
 * The HTML document, synchronously. Throws {@link ChartLibraryMissing} when
 * the charting library cannot be read; a command should prefer
 * {@link renderEffect}, whose failure it can print as one line.
 */
export const render = (reports: ReadonlyArray<Report>, resolve?: Resolve): string =>
  renderWith(reports, readChartLibrary(resolve))
