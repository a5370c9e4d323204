import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { metricNames } from "../../src/telemetry/Metrics.ts"
import { promtool } from "./promtool.ts"

interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly targets?: ReadonlyArray<{ readonly expr: string; readonly refId: string }>
}

const dashboard = JSON.parse(
  readFileSync(new URL("../../examples/grafana-dashboard.json", import.meta.url), "utf8")
) as {
  readonly panels: ReadonlyArray<Panel>
  readonly templating: { readonly list: ReadonlyArray<{ readonly query: string }> }
}
const panels = dashboard.panels.filter((p) => p.type !== "row")
const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, expr: t.expr, refId: t.refId })))

/** The metric families an expression reads (histogram/summary series suffixes stripped). */
const familiesOf = (expr: string) =>
  [...expr.matchAll(/\belevenlabs_[a-z_]+/g)].map(([m]) => m.replace(/_(bucket|sum|count)$/, ""))

describe("examples/grafana-dashboard.json", () => {
  it.effect("every panel has queries, ids are unique, and every expr uses only known metric names", () =>
    Effect.sync(() => {
      assert.isAbove(panels.length, 10)
      assert.strictEqual(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length)
      for (const p of panels) assert.isAbove(p.targets?.length ?? 0, 0, `panel ${p.title} has no query`)
      const used = new Set<string>()
      for (const { expr, panel } of exprs) {
        const families = familiesOf(expr)
        assert.isAbove(families.length, 0, `panel ${panel.title} reads no elevenlabs metric: ${expr}`)
        for (const f of families) {
          assert.include(metricNames, f, `panel ${panel.title} uses unknown metric ${f}`)
          used.add(f)
        }
      }
      for (const v of dashboard.templating.list) for (const f of familiesOf(v.query)) assert.include(metricNames, f)
      // the dashboard shows every metric
      assert.deepStrictEqual([...used].sort(), [...metricNames].sort())
    }))

  it.effect("every expr is valid PromQL (checked by promtool as recording rules)", () =>
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "elevenlabs-dashboard-"))
      const file = join(dir, "dashboard-rules.yml")
      const rules = exprs.map(({ expr, panel, refId }) =>
        `      - record: dashboard:panel_${panel.id}:${refId.toLowerCase()}\n        expr: ${
          JSON.stringify(expr.replaceAll("$pool", ".*"))
        }`
      )
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join("\n")}\n`)
      const r = promtool(["check", "rules", file])
      rmSync(dir, { recursive: true, force: true })
      assert.strictEqual(r.code, 0, r.out)
    }))
})
