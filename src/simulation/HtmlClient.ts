/**
 * The report page's own script and style: it reads the chart specs
 * ({@link HtmlCharts}) from the page's JSON and draws each chart with uPlot
 * (inlined before it), at the width of its box, redrawn when the box resizes.
 *
 * Plain ES2020 in a string: it runs in the browser, not here. The helpers it
 * shares with Node (ticks, ranges, time labels) come from {@link HtmlAxes}.
 *
 * @since 0.1.0
 */
import { browserSource } from "./HtmlAxes.ts"

/** The id of the `<script type="application/json">` that carries the page's data. */
export const dataElementId = "report-data"

/** Height of a chart's plot and axes, CSS pixels (the legend comes below it). */
export const chartHeight = 260

/**
 * The page's script. It exposes `window.simulationReport`
 * (`{ ready, charts: [{ id, plot, yTicks }], errors }`) for the tests and for
 * anyone who wants to look at a chart from the console.
 */
export const clientScript = (): string =>
  `(function () {
"use strict";
${browserSource()}
var registry = { ready: false, charts: [], errors: [] };
window.simulationReport = registry;
var page = JSON.parse(document.getElementById(${JSON.stringify(dataElementId)}).textContent);
var HEIGHT = ${chartHeight};
var breakerNames = ["closed", "half-open", "open"];
var integerIncrs = [];
for (var d = 1; d <= 1e9; d *= 10) integerIncrs.push(d, 2 * d, 5 * d);

function fmtValue(kind, v) {
  if (v == null) return "";
  if (kind === "ms") return formatTime(v);
  if (kind === "breaker") return breakerNames[Math.round(v)] || String(v);
  return (Math.round(v * 1000) / 1000 || 0).toLocaleString("en-US"); // || 0: no "-0"
}

function widthOf(el) {
  return Math.max(240, Math.floor(el.getBoundingClientRect().width));
}

function seriesOptions(spec, s) {
  var o = {
    label: s.label,
    stroke: s.color,
    width: s.width,
    spanGaps: false,
    value: function (u, v) { return fmtValue(spec.y, v); },
    paths: s.path === "step" ? uPlot.paths.stepped({ align: 1 }) : uPlot.paths.linear()
  };
  if (s.dash) o.dash = s.dash;
  // A window between two gaps has no segment: draw it as a dot (only those; dots everywhere hide the lines).
  o.points = s.path === "line"
    ? { show: false, size: s.width * 2 + 3, fill: s.color, stroke: s.color,
        filter: function (u, i) { return isolatedPoints(u.data[i]); } }
    : { show: false };
  return o;
}

function yAxis(spec, entry) {
  var integer = spec.y === "count" || spec.y === "breaker";
  var axis = {
    label: spec.yLabel,
    size: spec.y === "breaker" ? 84 : 64,
    values: function (u, splits) {
      entry.yTicks = splits.slice();
      return splits.map(function (v) { return fmtValue(spec.y, v); });
    }
  };
  // A latency axis reads in round durations (1 min, 2 min), not 100,000 ms.
  if (spec.y === "ms") axis.incrs = page.timeSteps;
  if (integer) {
    // Whole counts get whole ticks: integer increments, and splits that round the step up to one.
    axis.incrs = integerIncrs;
    axis.splits = function (u, i, min, max, incr) { return integerSplits(min, max, incr); };
  }
  return axis;
}

function build(spec, el) {
  var entry = { id: spec.id, plot: null, yTicks: [] };
  var data = uPlot.join(spec.series.map(function (s) { return [s.x, s.y]; }));
  var yRange = spec.y === "breaker"
    ? function () { return [-0.1, 2.2]; }
    : spec.y === "count"
    ? function (u, min, max) { return countRange(max); }
    : function (u, min, max) { return valueRange(max); };
  var opts = {
    width: widthOf(el),
    height: HEIGHT,
    scales: { x: { time: false, auto: false, range: [0, page.xMax] }, y: { range: yRange } },
    axes: [
      { label: page.timeLabel, incrs: page.timeSteps,
        values: function (u, splits) { return splits.map(formatTime); } },
      yAxis(spec, entry)
    ],
    series: [{ label: page.timeLabel, value: function (u, v) { return v == null ? "" : formatTime(v); } }]
      .concat(spec.series.map(function (s) { return seriesOptions(spec, s); })),
    // Solid squares for measured lines, hollow dashed ones for dashed lines (the bounds, the retries).
    legend: { live: true, markers: { fill: function (u, i) {
      var s = spec.series[i - 1];
      return s && !s.dash ? s.color : "transparent";
    } } },
    cursor: { drag: { x: true, y: false } }
  };
  entry.plot = new uPlot(opts, data, el);
  // Fit the box: uPlot draws at a fixed size, so follow the box's width as the window changes.
  new ResizeObserver(function () {
    var w = widthOf(el);
    if (w !== entry.plot.width) entry.plot.setSize({ width: w, height: HEIGHT });
  }).observe(el);
  return entry;
}

page.charts.forEach(function (spec) {
  var el = document.querySelector('[data-chart="' + spec.id + '"]');
  try {
    registry.charts.push(build(spec, el));
  } catch (e) {
    registry.errors.push(spec.id + ": " + e);
    el.textContent = "This chart could not be drawn: " + e;
    console.error("chart " + spec.id, e);
  }
});
registry.ready = true;
document.documentElement.setAttribute("data-charts", registry.errors.length === 0 ? "ready" : "failed");
})();
`

/** The page's style (uPlot's own comes before it). */
export const pageStyle = `
body{font:14px system-ui,sans-serif;margin:24px;color:#111827;background:#f9fafb}
h1{font-size:20px;margin-bottom:4px}h2{font-size:17px;margin-top:28px}
.sub{color:#4b5563;margin-top:0}
.explain{max-width:80em;color:#374151}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:4px;padding:8px;min-width:0}
figcaption{font-weight:600;padding:2px 4px 6px}
.chart{width:100%;min-width:0;overflow:hidden}
.chart .uplot{width:100%}
.u-legend{font-size:12px}
.u-inline.u-live th::after{content:""}
.u-legend .u-value{font-variant-numeric:tabular-nums}
.note{font-size:12px;color:#4b5563;margin:6px 4px 2px}
table.summary{border-collapse:collapse;background:#fff}
.summary th,.summary td{border:1px solid #e5e7eb;padding:4px 10px;text-align:left}.summary th{background:#f3f4f6}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
`
