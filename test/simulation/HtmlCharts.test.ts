import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { createRequire } from "node:module"
import * as CliFailure from "../../src/cli/CliFailure.ts"
import * as Html from "../../src/simulation/Html.ts"
import type * as Patterns from "../../src/simulation/Patterns.ts"
import * as Recorder from "../../src/simulation/Recorder.ts"
import * as Report from "../../src/simulation/Report.ts"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"
import type * as Simulator from "../../src/simulator/Simulator.ts"

// The data side of the HTML report, in Node: the series the charts get, their colours and axes, the title,
// the escaping and the missing-library error. test/simulation/Html.test.ts checks the page in Chromium.

const traffic: Patterns.Traffic = {
  pattern: "steady",
  requests: 3,
  durationMs: 3000,
  rps: 1,
  startRps: 1,
  endRps: 1,
  bursts: 0,
  chars: { min: 10, max: 10 },
  interactiveShare: 0,
  seed: 1
}
const pool = { inFlight: 0, maxInFlight: 1, limit: 2, queued: 0, maxQueued: 0, admitted: 3, rejected: 0, samples: [] }
const stats = {
  now: 0,
  requests: 3,
  byStatus: { "200": 3 },
  byDetailStatus: {},
  faults: {},
  creditsCharged: 30,
  pools: { standard: pool, flash: pool, stt: pool, music: pool },
  accounts: {}
} as unknown as Simulator.Stats

/** A 3 s run (120 windows of 25 ms) whose three calls end at 400, 700 and 2,900 ms: windows 16, 28 and 116. */
const gapped = (): Report.Report => {
  const log = Recorder.emptyLog()
  const ends = [[0, 400], [100, 700], [2000, 2900]] as const
  ends.forEach(([arrivalMs, endMs], index) => {
    log.attempts.push({ startMs: arrivalMs, endMs, status: 200, kind: "ok" })
    log.calls.push({ index, lane: "batch", arrivalMs, endMs, failure: undefined, credits: 10 })
  })
  return Report.build({
    strategy: "x",
    plan: "free",
    model: "m",
    pool: "standard",
    limit: 2,
    traffic,
    failureRate: 0,
    log,
    stats,
    virtualDurationMs: 3000,
    wallMs: 1
  })
}

const chaos = (strategy: Strategies.Strategy) =>
  Runner.run({ traffic: { pattern: "chaos", rps: 3, requests: 60 }, strategy, plan: "free", failureRate: 0.3 })

const sum = (values: ReadonlyArray<number | null>): number => values.reduce<number>((a, b) => a + (b ?? 0), 0)

describe("HtmlCharts", () => {
  it("latency: null (a gap) in a window where no call ended, the percentile where one did", () => {
    const r = gapped()
    assert.strictEqual(r.series.windowMs, 25)
    const ended = [16, 28, 116]
    r.series.ended.forEach((n, k) => assert.strictEqual(n, ended.includes(k) ? 1 : 0))
    // Report's own series says 0 where no call ended; the chart's says null.
    assert.strictEqual(r.series.latencyMs.p50[0], 0)
    const l = Html.latencySeries(r.series)
    assert.lengthOf(l.x, 120)
    assert.strictEqual(l.x[16], 16 * 25 + 12.5)
    for (const p of [l.p50, l.p95, l.p99]) {
      p.forEach((v, k) =>
        assert.strictEqual(v, k === 16 ? 400 : k === 28 ? 600 : k === 116 ? 900 : null, `window ${k}`)
      )
    }
    // The chart gets those nulls as they are.
    const latency = Html.chartSpecs([r]).find((c) => c.id === "latency")!
    for (const s of latency.series) assert.deepStrictEqual(s.y, l[s.label as "p50" | "p95" | "p99"])
  })

  it.effect("latency of a real run: a gap exactly where no call ended", () =>
    Effect.gen(function*() {
      const r = yield* chaos(Strategies.naive)
      const l = Html.latencySeries(r.series)
      r.series.ended.forEach((n, k) => {
        if (n === 0) assert.isNull(l.p95[k])
        else assert.strictEqual(l.p95[k], r.series.latencyMs.p95[k])
      })
      assert.isTrue(l.p50.includes(null), "this run has windows without an ended call")
      assert.isTrue(l.p50.some((v) => v !== null))
    }))

  it.effect("one run: every 429 kind and the retries are lines of the 429 chart, with their counts", () =>
    Effect.gen(function*() {
      const r = yield* chaos(Strategies.naive)
      const chart = Html.chartSpecs([r]).find((c) => c.id === "http429")!
      assert.deepStrictEqual(chart.series.map((s) => s.label), [
        "429 too_many_concurrent_requests",
        "429 system_busy",
        "429 other",
        "retries"
      ])
      const [tooMany, busy, other, retries] = chart.series
      // a step line repeats its last value at the end of the last window
      const counted = (s: Html.SeriesSpec) => sum(s.y.slice(0, -1))
      assert.strictEqual(counted(busy!), sum(r.series.http429.systemBusy))
      assert.isAbove(counted(busy!), 0, "the chaos run met system_busy")
      assert.strictEqual(counted(busy!), r.summary.http429.systemBusy)
      assert.strictEqual(counted(tooMany!), r.summary.http429.tooManyConcurrentRequests)
      assert.strictEqual(counted(other!), sum(r.series.http429.rateLimited))
      assert.strictEqual(counted(retries!), r.summary.retries)
      // distinct colours, and widths that shrink in drawing order so a line drawn over another leaves it visible
      assert.strictEqual(new Set(chart.series.map((s) => s.color)).size, 4)
      assert.deepStrictEqual(chart.series.map((s) => s.width), [4, 2, 1, 1])
      assert.isDefined(retries!.dash, "retries dashed, so the line under them shows through")
      const latency = Html.chartSpecs([r]).find((c) => c.id === "latency")!
      assert.deepStrictEqual(latency.series.map((s) => s.label), ["p99", "p95", "p50"])
      assert.strictEqual(new Set(latency.series.map((s) => s.color)).size, 3)
      assert.isBelow(latency.series[2]!.width, latency.series[0]!.width)
    }))

  it.effect("several runs: every chart has one line per run, in the run's colour, the same in every chart", () =>
    Effect.gen(function*() {
      const reports = [yield* chaos(Strategies.naive), yield* chaos(Strategies.pQueueRecipe)]
      const names = reports.map((r) => r.summary.strategy)
      const charts = Html.chartSpecs(reports)
      assert.isAtLeast(charts.length, 10)
      assert.strictEqual(new Set(charts.map((c) => c.id)).size, charts.length)
      for (const chart of charts) {
        const lines = chart.series.filter((s) => !s.reference)
        assert.deepStrictEqual(lines.map((s) => s.strategy), names, chart.id)
        assert.deepStrictEqual(lines.map((s) => s.color), names.map((_, i) => Html.runColor(i)), chart.id)
        // a bound of a run (its Little bound) is drawn in that run's colour too
        for (const s of chart.series.filter((s) => s.reference && s.strategy !== undefined)) {
          assert.strictEqual(s.color, Html.runColor(names.indexOf(s.strategy!)))
        }
      }
      assert.notStrictEqual(Html.runColor(0), Html.runColor(1))
      // every 429 kind and the retries have a chart; system_busy's counts are the run's
      const busy = charts.find((c) => c.id === "http429-system-busy")!
      reports.forEach((r, i) => {
        assert.strictEqual(sum(busy.series[i]!.y.slice(0, -1)), r.summary.http429.systemBusy)
      })
      for (const id of ["http429-too-many", "http429-other", "retries"]) {
        assert.isDefined(charts.find((c) => c.id === id))
      }
      // runs of different lengths share the time axis
      assert.notStrictEqual(reports[0]!.series.windowMs, reports[1]!.series.windowMs)
      const data = Html.pageData(reports)
      assert.strictEqual(
        data.xMax,
        Math.max(...reports.map((r) => r.series.startMs.at(-1)! + r.series.windowMs))
      )
    }))

  it("integer ticks: whole numbers on a 1-2-5 step no finer than asked, never below 1", () => {
    for (const [min, max] of [[0, 1], [0, 2.2], [0, 3], [0, 7], [0, 48], [0, 133], [0, 1234], [3, 17]] as const) {
      for (const incr of [0.1, 0.25, 0.5, 1, 1.5, 3, 20]) {
        const ticks = Html.integerSplits(min, max, incr)
        assert.isAtLeast(ticks.length, 1, `${min}..${max} by ${incr}`)
        for (const t of ticks) {
          assert.isTrue(Number.isInteger(t), `${t} in ${min}..${max} by ${incr}`)
          assert.isTrue(t >= min && t <= max)
        }
        if (ticks.length > 1) {
          const step = ticks[1]! - ticks[0]!
          assert.isAtLeast(step, Math.max(1, incr))
          assert.include([1, 2, 5], step / 10 ** Math.floor(Math.log10(step)))
        }
      }
    }
    assert.deepStrictEqual(Html.integerSplits(0, 3, 0.5), [0, 1, 2, 3])
    assert.deepStrictEqual(Html.integerSplits(0, 2.2, 0.2), [0, 1, 2])
    assert.isFalse(Object.is(Html.integerSplits(-0.24, 6, 2)[0], -0), "no -0 tick")
    // ranges of counts end on a whole number, with headroom
    for (const max of [null, 0, 0.4, 1, 2, 5, 133]) {
      const [lo, hi] = Html.countRange(max)
      // a little room under 0 (so a line at 0 is not half hidden), less than a tick
      assert.isBelow(lo, 0)
      assert.isAbove(lo, -0.1 * hi)
      assert.isTrue(Number.isInteger(hi))
      assert.isAbove(hi, max ?? 0)
    }
  })

  it.effect("counts have integer axes; latency and rates do not", () =>
    Effect.gen(function*() {
      const reports = [yield* chaos(Strategies.naive), yield* chaos(Strategies.pQueueRecipe)]
      for (const charts of [Html.chartSpecs(reports.slice(0, 1)), Html.chartSpecs(reports)]) {
        for (const chart of charts) {
          const integer = /in-flight|http429|retries|queue/.test(chart.id)
          if (integer) assert.strictEqual(chart.y, "count", chart.id)
          if (chart.id === "breaker") assert.strictEqual(chart.y, "breaker")
          if (chart.id.startsWith("latency")) assert.strictEqual(chart.y, "ms")
          if (chart.id === "throughput") assert.strictEqual(chart.y, "rate")
        }
      }
    }))

  it("isolated points: a value between two gaps (or a gap and an end) is drawn as a dot", () => {
    assert.deepStrictEqual(Html.isolatedPoints([1, null, 2, 3, null, 4]), [0, 5])
    assert.deepStrictEqual(Html.isolatedPoints([null, 1, null]), [1])
    // undefined (another run's time) does not break a line, and is not a neighbour
    assert.deepStrictEqual(Html.isolatedPoints([1, undefined, 2, null, undefined, 3, undefined]), [5])
    assert.deepStrictEqual(Html.isolatedPoints([1, 2, 3]), [])
  })

  it("time labels", () => {
    assert.deepStrictEqual([-0, 0, 850, 12_500, 90_000, 5_400_000].map(Html.formatTime), [
      "0 s",
      "0 s",
      "850 ms",
      "12.5 s",
      "1.5 min",
      "1.5 h"
    ])
  })

  it("throughput: successes per second, a trailing mean over the last windows", () => {
    const r = gapped()
    const t = Html.throughputSeries(r.series)
    // one success in window 16, over 10 windows of 25 ms: 4/s from window 16 to 25, 0 again from 26
    assert.deepStrictEqual([t[15], t[16], t[25], t[26]], [0, 4, 4, 0])
    const { succeeded, windowMs } = r.series
    t.forEach((v, k) => {
      const from = Math.max(0, k - Html.throughputSpan + 1)
      const n = succeeded.slice(from, k + 1).reduce((a, b) => a + b, 0)
      assert.closeTo(v, n / (((k + 1 - from) * windowMs) / 1000), 1e-3)
    })
    const chart = Html.chartSpecs([r]).find((c) => c.id === "throughput")!
    const little = chart.series.find((s) => s.reference)!
    assert.deepStrictEqual(little.y, [r.summary.littleBoundPerSec, r.summary.littleBoundPerSec])
    assert.include(chart.note, "Little bound = limit / mean service time")
    assert.include(chart.note, "Utilization = throughput / Little bound")
  })

  it("the title says Simulation or Load test from the report's clock", () => {
    const r = gapped()
    const real: Report.Report = { ...r, summary: { ...r.summary, clock: "real" } }
    assert.match(Html.title([r]), /^Simulation: steady, 3 requests, free \/ m$/)
    assert.match(Html.title([real]), /^Load test: /)
    assert.match(Html.title([r, real]), /^Simulation and load test: /)
    assert.strictEqual(Html.pageData([real]).timeLabel, "time (real)")
    assert.strictEqual(Html.pageData([r]).timeLabel, "virtual time")
  })

  it("the data is JSON that cannot end its <script> element", () => {
    const r = gapped()
    const hostile: Report.Report = { ...r, summary: { ...r.summary, strategy: "</script><script>alert(1)</script>" } }
    const html = Html.render([hostile])
    const json = Html.scriptJson(Html.pageData([hostile]))
    assert.notInclude(json, "<")
    assert.deepStrictEqual(JSON.parse(json), JSON.parse(JSON.stringify(Html.pageData([hostile]))))
    assert.strictEqual(html.match(/<\/script>/g)?.length, 3, "the data, the library and the page's script")
    assert.notInclude(html, "<script>alert(1)")
  })

  it("self-contained: uPlot and its style inlined, nothing loaded from elsewhere", () => {
    const html = Html.render([gapped()])
    const library = Html.readChartLibrary()
    assert.strictEqual(library.name, "uplot")
    assert.include(html, library.script)
    assert.include(html, library.style)
    assert.notMatch(html, /<(script|link|img)[^>]+(src|href)=/i)
    assert.notMatch(html, /https?:\/\/(?!github\.com\/leeoniya)/, "no address but the library's own banner")
  })

  it.effect("a missing charting library is one clear line, not a stack trace", () =>
    Effect.gen(function*() {
      // A real failed resolution: from a directory with no node_modules.
      const nowhere: Html.Resolve = (specifier) => createRequire("/nonexistent/report.js").resolve(specifier)
      const exit = yield* Effect.exit(Html.renderEffect([gapped()], nowhere))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined
      assert.instanceOf(error, Html.ChartLibraryMissing)
      const line = CliFailure.from("simulate")(error as Html.ChartLibraryMissing).line
      assert.notInclude(line, "\n")
      assert.match(
        line,
        /^simulate: the HTML report needs the "uplot" package, which cannot be read \(MODULE_NOT_FOUND\); run npm install/
      )
      assert.throws(() => Html.render([gapped()], nowhere), /needs the "uplot" package/)
    }))
})
