import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as AlertRules from "../../src/telemetry/AlertRules.ts"
import { metricNames } from "../../src/telemetry/Metrics.ts"
import { assertRefused, cli, cliAll } from "../utils/cli.ts"
import { promtool } from "./promtool.ts"

const rules = AlertRules.rules()
const byName = (alert: string) => {
  const r = rules.find((r) => r.alert === alert)
  if (r === undefined) throw new Error(`no rule ${alert}`)
  return r
}

/** The annotations promtool renders for a firing alert of `alert` in `pool`. */
const annotations = (alert: string, pool?: string) =>
  Object.fromEntries(
    Object.entries(byName(alert).annotations).map((
      [k, v]
    ) => [k, pool === undefined ? v : v.replaceAll("{{ $labels.pool }}", pool)])
  )

interface Case {
  readonly alert: string
  readonly interval: string
  readonly series: ReadonlyArray<readonly [string, string]>
  readonly evalTime: string
  /** The pools (or `null` for an unlabelled alert) expected to fire at `evalTime`. */
  readonly firing: ReadonlyArray<string | null>
}

// Each case has a series that crosses the threshold (fires) and one that stays under it (quiet).
const cases: ReadonlyArray<Case> = [
  {
    alert: "ElevenLabsHighErrorRate",
    interval: "1m",
    series: [
      [`elevenlabs_requests_total{pool="standard",status="success"}`, "0+100x20"],
      [`elevenlabs_errors_total{pool="standard",reason="SystemBusy"}`, "0+10x20"], // 10 % > 5 %
      [`elevenlabs_requests_total{pool="flash",status="success"}`, "0+100x20"],
      [`elevenlabs_errors_total{pool="flash",reason="SystemBusy"}`, "0+4x20"] // 4 % < 5 %
    ],
    evalTime: "10m",
    firing: ["standard"]
  },
  {
    alert: "ElevenLabsCircuitBreakerOpen",
    interval: "1m",
    series: [
      [`elevenlabs_circuit_breaker_state{pool="standard"}`, "2x10"], // open throughout
      [`elevenlabs_circuit_breaker_state{pool="flash"}`, "0 2 0 2 0 2 0 2 0 2 0"] // never open for a whole minute
    ],
    evalTime: "5m",
    firing: ["standard"]
  },
  {
    alert: "ElevenLabsQueueDepthHigh",
    interval: "1m",
    series: [
      [`elevenlabs_queue_depth{pool="standard",lane="interactive"}`, "300x10"],
      [`elevenlabs_queue_depth{pool="standard",lane="batch"}`, "250x10"], // 550 > 500 over the lanes
      [`elevenlabs_queue_depth{pool="flash",lane="batch"}`, "500x10"] // not above 500
    ],
    evalTime: "5m",
    firing: ["standard"]
  },
  {
    alert: "ElevenLabsHighLatencyP95",
    interval: "1m",
    series: [
      // standard: every call between 2 s and 3 s
      [`elevenlabs_requests_duration_seconds_bucket{pool="standard",le="1"}`, "0x20"],
      [`elevenlabs_requests_duration_seconds_bucket{pool="standard",le="2"}`, "0x20"],
      [`elevenlabs_requests_duration_seconds_bucket{pool="standard",le="3"}`, "0+10x20"],
      [`elevenlabs_requests_duration_seconds_bucket{pool="standard",le="+Inf"}`, "0+10x20"],
      // flash: every call under 1 s
      [`elevenlabs_requests_duration_seconds_bucket{pool="flash",le="1"}`, "0+10x20"],
      [`elevenlabs_requests_duration_seconds_bucket{pool="flash",le="2"}`, "0+10x20"],
      [`elevenlabs_requests_duration_seconds_bucket{pool="flash",le="3"}`, "0+10x20"],
      [`elevenlabs_requests_duration_seconds_bucket{pool="flash",le="+Inf"}`, "0+10x20"]
    ],
    evalTime: "15m",
    firing: ["standard"]
  },
  {
    alert: "ElevenLabsQuotaHigh",
    interval: "1m",
    series: [[`elevenlabs_quota_used_percentage{instance="a"}`, "80+1x20"]], // crosses 90 at 11m
    evalTime: "15m",
    firing: [null]
  },
  {
    alert: "ElevenLabsQuotaHigh",
    interval: "1m",
    series: [[`elevenlabs_quota_used_percentage{instance="a"}`, "90x20"]], // at 90, not above
    evalTime: "15m",
    firing: []
  },
  {
    alert: "ElevenLabsHighRetryRate",
    interval: "1m",
    series: [
      [`elevenlabs_requests_total{pool="standard",status="success"}`, "0+100x20"],
      [`elevenlabs_retries_total{pool="standard",reason="SystemBusy"}`, "0+30x20"], // 0.3 per call
      [`elevenlabs_requests_total{pool="flash",status="success"}`, "0+100x20"],
      [`elevenlabs_retries_total{pool="flash",reason="SystemBusy"}`, "0+10x20"] // 0.1 per call
    ],
    evalTime: "15m",
    firing: ["standard"]
  }
]

const q = JSON.stringify

const testFile = (ruleFile: string, list: ReadonlyArray<Case>): string => {
  const lines = [`rule_files:`, `  - ${q(ruleFile)}`, `evaluation_interval: 1m`, `tests:`]
  for (const c of list) {
    lines.push(`  - interval: ${c.interval}`, `    input_series:`)
    for (const [series, values] of c.series) lines.push(`      - series: ${q(series)}`, `        values: ${q(values)}`)
    lines.push(`    alert_rule_test:`, `      - eval_time: ${c.evalTime}`, `        alertname: ${c.alert}`)
    if (c.firing.length === 0) {
      lines.push(`        exp_alerts: []`)
      continue
    }
    lines.push(`        exp_alerts:`)
    const rule = byName(c.alert)
    for (const pool of c.firing) {
      const labels = { ...rule.labels, ...(pool === null ? {} : { pool }) }
      lines.push(`          - exp_labels:`)
      for (const [k, v] of Object.entries(labels)) lines.push(`              ${k}: ${q(v)}`)
      lines.push(`            exp_annotations:`)
      for (const [k, v] of Object.entries(annotations(c.alert, pool ?? undefined))) {
        lines.push(`              ${k}: ${q(v)}`)
      }
    }
  }
  return lines.join("\n") + "\n"
}

const dir = mkdtempSync(join(tmpdir(), "elevenlabs-alerts-"))
const ruleFile = join(dir, "rules.yml")
writeFileSync(ruleFile, AlertRules.defaultYaml())
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("AlertRules", () => {
  it.effect("has the production-deployment guide's six rules with its severities, over known metric names only", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(
        rules.map((r) => [r.alert, r.labels.severity]),
        [
          ["ElevenLabsHighErrorRate", "critical"],
          ["ElevenLabsCircuitBreakerOpen", "critical"],
          ["ElevenLabsQueueDepthHigh", "critical"],
          ["ElevenLabsHighLatencyP95", "warning"],
          ["ElevenLabsQuotaHigh", "warning"],
          ["ElevenLabsHighRetryRate", "warning"]
        ]
      )
      for (const r of rules) {
        for (const [ident] of r.expr.matchAll(/elevenlabs_[a-z_]+/g)) {
          const family = ident.replace(/_(bucket|sum|count)$/, "")
          assert.include(metricNames, family, `${r.alert} uses an unknown metric ${ident}`)
        }
      }
    }))

  it.effect("promtool check rules accepts the generated file", () =>
    Effect.sync(() => {
      const r = promtool(["check", "rules", ruleFile])
      assert.strictEqual(r.code, 0, r.out)
      assert.include(r.out, "SUCCESS: 6 rules found")
    }))

  it.effect("promtool test rules: each rule fires on a series over its threshold and stays quiet under it", () =>
    Effect.sync(() => {
      const file = join(dir, "tests.yml")
      writeFileSync(file, testFile(ruleFile, cases))
      const r = promtool(["test", "rules", file])
      assert.strictEqual(r.code, 0, r.out)
      assert.include(r.out, "SUCCESS")
    }))

  it.effect("promtool test rules is a real check: a wrong expectation fails", () =>
    Effect.sync(() => {
      const file = join(dir, "wrong.yml")
      // claim the quiet flash pool fires too
      writeFileSync(file, testFile(ruleFile, [{ ...cases[0]!, firing: ["standard", "flash"] }]))
      assert.notStrictEqual(promtool(["test", "rules", file]).code, 0)
    }))

  it.effect("thresholds are options", () =>
    Effect.sync(() => {
      const custom = AlertRules.rules({ queueDepth: 200, errorRate: 0.01, extraLabels: { team: "voice" } })
      const queue = custom.find((r) => r.alert === "ElevenLabsQueueDepthHigh")!
      assert.strictEqual(queue.expr, "sum by (pool) (elevenlabs_queue_depth) > 200")
      assert.strictEqual(queue.labels["team"], "voice")
      assert.include(custom[0]!.expr, "> 0.01")
      // Passing the documented default of warningFor changes nothing; the quota rule has its own `for`.
      const forOf = (rs: ReadonlyArray<AlertRules.AlertRule>, name: string) => rs.find((r) => r.alert === name)!.for
      assert.deepStrictEqual(AlertRules.rules({ warningFor: "5m" }), AlertRules.rules())
      assert.strictEqual(forOf(AlertRules.rules({ quotaFor: "10m" }), "ElevenLabsQuotaHigh"), "10m")
      assert.strictEqual(forOf(AlertRules.rules({ warningFor: "15m" }), "ElevenLabsHighRetryRate"), "15m")
      const file = join(dir, "custom.yml")
      writeFileSync(file, AlertRules.toYaml(custom))
      assert.strictEqual(promtool(["check", "rules", file]).code, 0)
    }))
})

describe("elevenlabs-resilience alerts", () => {
  it.effect("writes the default rules with --out, and prints them without", () =>
    Effect.sync(() => {
      const out = join(dir, "cli-rules.yml")
      const node = new URL("../../node_modules/.bin/node", import.meta.url).pathname
      const main = new URL("../../src/cli/main.ts", import.meta.url).pathname
      const written = spawnSync(node, [main, "alerts", "--out", out], { encoding: "utf8" })
      assert.strictEqual(written.status, 0, written.stderr)
      assert.strictEqual(readFileSync(out, "utf8"), AlertRules.defaultYaml())
      const printed = spawnSync(node, [main, "alerts"], { encoding: "utf8" })
      assert.strictEqual(printed.status, 0, printed.stderr)
      assert.strictEqual(printed.stdout, AlertRules.defaultYaml())
    }))

  it.effect("--window and --for shorten the durations (the rehearsal in a real Prometheus); promtool accepts them", () =>
    Effect.gen(function*() {
      const out = join(dir, "cli-short.yml")
      const written = yield* cli(["alerts", "--window", "30s", "--for", "1m30s", "--out", out])
      assert.strictEqual(written.code, 0, written.stderr)
      const expected = AlertRules.rules({
        window: "30s",
        criticalFor: "1m30s",
        warningFor: "1m30s",
        quotaFor: "1m30s",
        breakerOpenFor: "1m30s"
      })
      assert.strictEqual(readFileSync(out, "utf8"), AlertRules.toYaml(expected))
      assert.deepStrictEqual(expected.map((r) => r.for), Array(6).fill("1m30s"))
      assert.include(expected[0]!.expr, "[30s]")
      assert.strictEqual(promtool(["check", "rules", out]).code, 0)
      // A `for` of 0 fires at the first evaluation; only the window must be longer than 0.
      const zero = yield* cli(["alerts", "--for", "0s"])
      assert.strictEqual(zero.code, 0, zero.stderr)
      assert.strictEqual((zero.stdout.match(/ {8}for: 0s\n/g) ?? []).length, 6)
    }))

  it.effect("a duration Prometheus would not read is refused with one line", () =>
    Effect.gen(function*() {
      const [decimal, unit, zeroWindow, empty] = yield* cliAll([
        ["alerts", "--for", "1.5m"],
        ["alerts", "--window", "5min"],
        ["alerts", "--window", "0s"],
        ["alerts", "--window", ""]
      ])
      const what = "a Prometheus duration (digits and units y, w, d, h, m, s, ms, such as 30s or 1m30s)"
      assertRefused(decimal!, `alerts: --for must be ${what}; got "1.5m"`)
      assertRefused(unit!, `alerts: --window must be ${what}; got "5min"`)
      assertRefused(zeroWindow!, `alerts: --window must be longer than 0, got "0s"`)
      assertRefused(empty!, `alerts: --window must be ${what}; got ""`)
    }))
})
