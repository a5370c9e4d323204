import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Html from "../../src/simulation/Html.ts"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"

const chromium = "/usr/bin/chromium"

/** Runs headless Debian chromium on a file with one mode flag (`--dump-dom` or `--screenshot=...`). */
const headless = (file: string, mode: string): string => {
  if (!existsSync(chromium)) {
    assert.fail(
      `${chromium} is missing: CI must install Debian's chromium (apt-get install -y chromium) for the HTML report test`
    )
  }
  const profile = mkdtempSync(join(tmpdir(), "sim-chromium-"))
  try {
    return execFileSync(chromium, [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--window-size=800,1400",
      mode,
      `file://${file}`
    ], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "ignore"] })
  } finally {
    rmSync(profile, { recursive: true, force: true })
  }
}

describe("Html", () => {
  it.effect("a self-contained report whose charts headless Chromium draws", () =>
    Effect.gen(function*() {
      const naive = yield* Runner.run({
        traffic: { pattern: "chaos", rps: 3, requests: 60 },
        strategy: Strategies.naive,
        plan: "free",
        failureRate: 0.3
      })
      const seed = yield* Runner.run({
        traffic: { pattern: "chaos", rps: 3, requests: 60 },
        strategy: Strategies.pQueueRecipe,
        plan: "free",
        failureRate: 0.3
      })
      const html = Html.render([naive, seed])
      // self-contained: no scripts, no external references
      assert.notInclude(html, "<script")
      assert.notMatch(html, /(src|href)=["']https?:/)
      assert.strictEqual(html.match(/<svg /g)?.length, 10)

      const dir = mkdtempSync(join(tmpdir(), "sim-html-"))
      try {
        const file = join(dir, "report.html")
        writeFileSync(file, html)
        const dom = headless(file, "--dump-dom")
        // the browser parsed every chart and every line of it
        const svgs = dom.match(/<svg[^>]*>/g) ?? []
        assert.strictEqual(svgs.length, 10)
        const paths = [...dom.matchAll(/<path class="series" data-name="([^"]+)" d="([^"]+)"/g)]
        assert.strictEqual(paths.length, 2 * (2 + 2 + 3 + 3 + 1))
        for (const [, , d] of paths) assert.isTrue(d!.split("L").length > 20, "a path with many points")
        const inFlight = paths.find(([, name]) => name === "in flight (max)")!
        const ys = new Set([...inFlight[2]!.matchAll(/,(\d+\.\d)/g)].map((m) => m[1]))
        assert.isTrue(ys.size > 1, "the in-flight line moves")
        assert.include(dom, "Summary")
        assert.include(dom, "p-queue-recipe")

        const png = join(dir, "shot.png")
        headless(file, `--screenshot=${png}`)
        const bytes = readFileSync(png)
        assert.isTrue(bytes.length > 10_000, `screenshot of ${bytes.length} bytes`)
        assert.strictEqual(bytes.subarray(1, 4).toString("latin1"), "PNG")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it("chart: one path per line, scaled into the plot", () => {
    const svg = Html.chart("t", [0, 10, 20], 10, [{ name: "a", color: "#000", values: [0, 5, 10] }], "y")
    const d = /d="([^"]+)"/.exec(svg)![1]!
    // x from 56 to 704 over 30 ms; y 0 at the bottom (190), 10 at the top (28)
    assert.match(d, /^M56\.0,190\.0L272\.0,190\.0L/)
    assert.match(d, /L704\.0,28\.0$/)
    assert.include(svg, "<figcaption>t</figcaption>")
  })
})
