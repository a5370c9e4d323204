import { NodeHttpClient } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import * as Html from "../../src/simulation/Html.ts"
import * as LoadTest from "../../src/simulation/LoadTest.ts"
import type * as Report from "../../src/simulation/Report.ts"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"
import * as Server from "../../src/simulator/Server.ts"

// The HTML report as a person sees it: rendered by headless Debian Chromium, driven over the DevTools
// protocol with Node's own WebSocket (no puppeteer), so the test sees page errors, console errors, every
// request the page makes, the charts' canvases and what a window resize does.

const chromium = "/usr/bin/chromium"

/** A DevTools protocol connection to one page. */
interface Page {
  /** Evaluates an expression in the page (awaiting a promise) and returns its value as JSON. */
  readonly evaluate: <A>(expression: string) => Promise<A>
  /** Sets the viewport's size, as a window resize does. */
  readonly resize: (width: number, height: number) => Promise<void>
  /** Page errors, console errors and failed loads, as they came. */
  readonly errors: Array<string>
  /** Every URL the page requested. */
  readonly requests: Array<string>
}

interface Browser {
  readonly open: (file: string, width?: number, height?: number) => Promise<Page>
  readonly close: () => Promise<void>
}

/** Starts headless Chromium with a DevTools endpoint on a free loopback port and connects to it. */
const launch = async (): Promise<Browser> => {
  if (!existsSync(chromium)) {
    assert.fail(
      `${chromium} is missing: CI must install Debian's chromium (apt-get install -y chromium) for the HTML report test`
    )
  }
  const profile = mkdtempSync(join(tmpdir(), "sim-chromium-"))
  const child: ChildProcess = spawn(chromium, [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    `--user-data-dir=${profile}`,
    "about:blank"
  ], { stdio: ["ignore", "ignore", "pipe"] })
  const endpoint = await new Promise<string>((resolve, reject) => {
    let stderr = ""
    const timer = setTimeout(() => reject(new Error(`no DevTools endpoint from chromium: ${stderr}`)), 30_000)
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr)
      if (m !== null) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
    child.on("exit", (code) => reject(new Error(`chromium exited (${code}): ${stderr}`)))
  })
  const ws = new WebSocket(endpoint)
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true })
    ws.addEventListener("error", reject, { once: true })
  })
  let nextId = 0
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>()
  const listeners = new Set<(message: any) => void>()
  ws.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data))
    if (message.id !== undefined) {
      const p = pending.get(message.id)
      pending.delete(message.id)
      if (message.error !== undefined) p?.reject(new Error(`${message.error.message} (${message.error.code})`))
      else p?.resolve(message.result)
    } else {
      for (const listener of listeners) listener(message)
    }
  })
  const send = (method: string, params: object = {}, sessionId?: string): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = ++nextId
      pending.set(id, { resolve, reject })
      ws.send(JSON.stringify({ id, method, params, ...(sessionId === undefined ? {} : { sessionId }) }))
    })

  const open = async (file: string, width = 1280, height = 1000): Promise<Page> => {
    const { targetId } = await send("Target.createTarget", { url: "about:blank" })
    const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true })
    const call = (method: string, params: object = {}) => send(method, params, sessionId)
    const errors: Array<string> = []
    const requests: Array<string> = []
    let loaded: () => void = () => {}
    const load = new Promise<void>((resolve) => (loaded = resolve))
    listeners.add((m) => {
      if (m.sessionId !== sessionId) return
      if (m.method === "Runtime.exceptionThrown") {
        errors.push(`page error: ${m.params.exceptionDetails.exception?.description ?? m.params.exceptionDetails.text}`)
      } else if (m.method === "Runtime.consoleAPICalled" && (m.params.type === "error" || m.params.type === "assert")) {
        errors.push(`console.${m.params.type}: ${m.params.args.map((a: any) => a.value ?? a.description).join(" ")}`)
      } else if (m.method === "Log.entryAdded" && m.params.entry.level === "error") {
        errors.push(`log: ${m.params.entry.text} ${m.params.entry.url ?? ""}`)
      } else if (m.method === "Network.requestWillBeSent") {
        requests.push(m.params.request.url)
      } else if (m.method === "Page.loadEventFired") {
        loaded()
      }
    })
    for (const domain of ["Runtime", "Log", "Network", "Page"]) await call(`${domain}.enable`)
    const resize = async (w: number, h: number) => {
      await call("Emulation.setDeviceMetricsOverride", { width: w, height: h, deviceScaleFactor: 1, mobile: false })
    }
    await resize(width, height)
    await call("Page.navigate", { url: pathToFileURL(file).href })
    await load
    const evaluate = async <A>(expression: string): Promise<A> => {
      const r = await call("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true })
      if (r.exceptionDetails !== undefined) {
        throw new Error(`evaluate: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`)
      }
      return r.result.value as A
    }
    await evaluate(`new Promise((resolve, reject) => {
      const t0 = Date.now()
      const poll = () => window.simulationReport?.ready ? resolve(true)
        : Date.now() - t0 > 20000 ? reject(new Error("the charts never got ready")) : setTimeout(poll, 20)
      poll()
    })`)
    return { evaluate, resize, errors, requests }
  }

  return {
    open,
    close: async () => {
      ws.close()
      // Remove the profile only once chromium has exited: until then it keeps writing into it.
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve))
        child.kill()
        await exited
      }
      rmSync(profile, { recursive: true, force: true })
    }
  }
}

/** What the page says about each chart: sizes, series, ticks, and pixels counted on the canvas. */
interface Drawn {
  readonly id: string
  readonly title: string
  readonly boxWidth: number
  readonly plotWidth: number
  readonly canvas: { readonly width: number; readonly height: number }
  /** Pixels of the plot area that are not transparent. */
  readonly inked: number
  readonly series: ReadonlyArray<{ readonly label: string; readonly color: string; readonly pixels: number }>
  readonly yTicks: ReadonlyArray<number>
  readonly y: string
}

/** Reads every chart of the page; a series' pixels are those of the plot area exactly in its colour. */
const drawn = (page: Page): Promise<ReadonlyArray<Drawn>> =>
  page.evaluate<ReadonlyArray<Drawn>>(`(() => {
    const specs = JSON.parse(document.getElementById("report-data").textContent).charts
    const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))
    return window.simulationReport.charts.map(({ id, plot, yTicks }) => {
      const spec = specs.find((s) => s.id === id)
      const box = document.querySelector('[data-chart="' + id + '"]')
      const canvas = plot.ctx.canvas
      const { left, top, width, height } = plot.bbox
      const px = plot.ctx.getImageData(left, top, width, height).data
      let inked = 0
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) inked++
      const series = plot.series.slice(1).map((s, k) => {
        const color = s.stroke(plot, k + 1)
        const [r, g, b] = rgb(color)
        let pixels = 0
        for (let i = 0; i < px.length; i += 4) {
          if (px[i] === r && px[i + 1] === g && px[i + 2] === b && px[i + 3] === 255) pixels++
        }
        return { label: s.label, color, pixels }
      })
      return {
        id,
        title: box.closest("figure").querySelector("figcaption").textContent,
        boxWidth: Math.floor(box.getBoundingClientRect().width),
        plotWidth: plot.width,
        canvas: { width: canvas.width, height: canvas.height },
        inked,
        series,
        yTicks,
        y: spec.y
      }
    })
  })()`)

/** Waits, frame by frame, until every chart has taken its box's width (a resize is seen a frame or two later). */
const settled = (page: Page) =>
  page.evaluate(`new Promise((resolve, reject) => {
    const t0 = Date.now()
    const check = () => {
      const done = window.simulationReport.charts.every(({ id, plot }) => {
        const box = document.querySelector('[data-chart="' + id + '"]')
        return plot.width === Math.floor(box.getBoundingClientRect().width) && plot.ctx.canvas.width === plot.width
      })
      if (done) resolve(true)
      else if (Date.now() - t0 > 10000) reject(new Error("the charts did not follow the window"))
      else requestAnimationFrame(check)
    }
    requestAnimationFrame(check)
  })`)

const chaos = (strategy: Strategies.Strategy) =>
  Runner.run({ traffic: { pattern: "chaos", rps: 3, requests: 60 }, strategy, plan: "free", failureRate: 0.3 })

/** Checks what every page must show: no error, nothing fetched but the file, every chart drawn. */
const assertDrawn = (page: Page, file: string, charts: ReadonlyArray<Drawn>, expected: number) => {
  assert.deepStrictEqual(page.errors, [])
  assert.deepStrictEqual(page.requests, [pathToFileURL(file).href], "the file loads nothing else")
  assert.strictEqual(charts.length, expected)
  for (const c of charts) {
    assert.isAbove(c.canvas.width, 200, c.id)
    assert.isAbove(c.canvas.height, 100, c.id)
    assert.isAbove(c.inked, 500, `${c.id}: the plot area has lines`)
    // a count never gets a tick between two whole numbers
    if (c.y === "count" || c.y === "breaker") {
      assert.isAtLeast(c.yTicks.length, 2, c.id)
      for (const t of c.yTicks) assert.isTrue(Number.isInteger(t), `${c.id}: tick ${t}`)
    }
  }
}

describe("Html in Chromium", () => {
  let browser: Browser
  let dir: string
  let naive: Report.Report
  let reports: ReadonlyArray<Report.Report>

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "sim-html-"))
    reports = await Effect.runPromise(
      Effect.all([chaos(Strategies.resilient), chaos(Strategies.naive), chaos(Strategies.pQueueRecipe)])
    )
    naive = reports[1]!
    browser = await launch()
  })

  afterAll(async () => {
    await browser?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it("one run: every chart drawn, p50/p95/p99 and every 429 kind visible, integer ticks, fits and follows the window", async () => {
    const file = join(dir, "single.html")
    writeFileSync(file, Html.render([naive]))
    const page = await browser.open(file)
    const charts = await drawn(page)
    assertDrawn(page, file, charts, 6)
    assert.match(await page.evaluate<string>("document.title"), /^Simulation: chaos, 60 requests, free \//)
    assert.match(await page.evaluate<string>("document.querySelector('h1').textContent"), /^Simulation: /)

    // Drawn so each line shows: some pixels of every percentile's own colour, and of every 429 kind's.
    const byId = new Map(charts.map((c) => [c.id, c]))
    const latency = byId.get("latency")!
    assert.deepStrictEqual(latency.series.map((s) => s.label), ["p99", "p95", "p50"])
    for (const s of latency.series) assert.isAbove(s.pixels, 20, `${s.label} visible`)
    const http429 = byId.get("http429")!
    assert.includeMembers(http429.series.map((s) => s.label), ["429 system_busy", "429 other", "retries"])
    for (const s of http429.series) assert.isAbove(s.pixels, 20, `${s.label} visible`)
    for (const c of charts) for (const s of c.series) assert.isAbove(s.pixels, 0, `${c.id}: ${s.label} drawn`)

    // The charts fill their boxes, and follow them when the window changes.
    for (const c of charts) assert.strictEqual(c.plotWidth, c.boxWidth, c.id)
    const widths = async () => (await drawn(page)).map((c) => [c.plotWidth, c.boxWidth, c.canvas.width])
    const wide = await widths()
    await page.resize(900, 1000)
    await settled(page)
    const one = await widths()
    await page.resize(500, 1000)
    await settled(page)
    const narrow = await widths()
    wide.forEach(([w], i) => {
      // 1280: two charts a row; 900: one, wider; 500: one, narrower
      assert.isAbove(one[i]![0]!, w!)
      assert.isBelow(narrow[i]![0]!, w!)
      for (const [plot, box, canvas] of [one[i]!, narrow[i]!]) {
        assert.strictEqual(plot, box)
        assert.strictEqual(canvas, plot)
      }
    })
    assert.deepStrictEqual(page.errors, [])
  })

  it("--compare: every chart overlays the runs, one colour per run the same in every chart, with a legend", async () => {
    const file = join(dir, "compare.html")
    writeFileSync(file, Html.render(reports))
    const page = await browser.open(file)
    const charts = await drawn(page)
    const names = reports.map((r) => r.summary.strategy)
    assert.deepStrictEqual(names, ["resilient", "naive", "p-queue-recipe"])
    assertDrawn(page, file, charts, Html.chartSpecs(reports).length)
    assert.match(await page.evaluate<string>("document.title"), /^Simulation: /)

    // The table's swatches name the colours; every chart's line of a run is in that colour, and shows.
    const swatches = await page.evaluate<ReadonlyArray<string>>(
      `[...document.querySelectorAll("table.summary .swatch")].map((s) => getComputedStyle(s).backgroundColor)`
    )
    assert.strictEqual(new Set(swatches).size, names.length)
    const colors = names.map((_, i) => Html.runColor(i))
    for (const c of charts) {
      const lines = c.series.filter((s) => names.includes(s.label))
      assert.deepStrictEqual(lines.map((s) => s.label), names, `${c.id}: one line per run`)
      assert.deepStrictEqual(lines.map((s) => s.color), colors, `${c.id}: the runs' colours`)
      for (const s of lines) assert.isAbove(s.pixels, 0, `${c.id}: ${s.label} visible`)
    }
    // the legend (uPlot's, under each chart) names the runs
    const legends = await page.evaluate<ReadonlyArray<string>>(
      `[...document.querySelectorAll(".u-legend")].map((l) => l.textContent)`
    )
    assert.lengthOf(legends, charts.length)
    for (const legend of legends) for (const name of names) assert.include(legend, name)
    assert.isDefined(charts.find((c) => c.id === "http429-system-busy"))
    assert.deepStrictEqual(page.errors, [])
  })

  it("a load test's report is titled Load test", async () => {
    const report = await Effect.runPromise(
      Effect.gen(function*() {
        const server = yield* Server.serve({ port: 0, plan: "free", seed: 3 })
        return yield* LoadTest.run({
          traffic: { pattern: "burst", requests: 12, chars: { min: 20, max: 40 }, seed: 3 },
          strategy: Strategies.naive,
          baseUrl: server.url,
          apiKey: Redacted.make("sim-key"),
          plan: "free",
          model: "eleven_flash_v2_5",
          simulatorStats: true
        })
      }).pipe(Effect.provide(NodeHttpClient.layerUndici), Effect.scoped)
    )
    assert.strictEqual(report.summary.clock, "real")
    const file = join(dir, "load.html")
    writeFileSync(file, Html.render([report]))
    const page = await browser.open(file)
    const charts = await drawn(page)
    assertDrawn(page, file, charts, 6)
    assert.match(await page.evaluate<string>("document.title"), /^Load test: burst, 12 requests, free \//)
    assert.include(await page.evaluate<string>("document.body.textContent"), "time (real)")
  })
})
