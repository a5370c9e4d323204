/**
 * The alert rules, end to end: a real Prometheus server scrapes the resilient
 * stack's `/metrics` and evaluates the rules the `alerts` command writes, while
 * real traffic goes through the full stack to the simulator's HTTP server.
 *
 * 1. The rules are written by the CLI (`alerts --window 10s --for 2s`): the
 *    guide's expressions and thresholds, with durations of seconds instead of
 *    minutes. Prometheus scrapes every second and evaluates every second.
 * 2. Healthy traffic (Flash TTS, 4 callers) until Prometheus has scraped it;
 *    every rule is loaded, healthy and inactive.
 * 3. Outage: the simulator answers every request with a 500 (its control API).
 *    The Flash breaker opens; `ElevenLabsCircuitBreakerOpen` and
 *    `ElevenLabsHighErrorRate` must fire, for pool `flash`.
 * 4. Recovery: the fault is removed; the breaker's probe closes the circuit;
 *    both alerts must clear (the rules inactive, no alert listed).
 * 5. The retry rate may go pending or fire during the outage (the stack retries
 *    the 500s until the breaker opens) and must clear with the others.
 * 6. Throughout, the three other rules stay inactive: the test polls every rule's
 *    state four times per evaluation, and at the end reads Prometheus' own
 *    record of every evaluation (the `ALERTS` series) over the whole run.
 * 7. The API key appears in no scraped metric and no series Prometheus stored.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Layer, Metric, Redacted, References } from "effect"
import { HttpServer } from "effect/http"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as AlertRules from "../../src/telemetry/AlertRules.ts"
import * as Health from "../../src/telemetry/Health.ts"
import * as ResilientTelemetry from "../../src/telemetry/ResilientTelemetry.ts"
import { cli } from "../utils/cli.ts"
import {
  type AlertingRule,
  assertPrometheusInstalled,
  type PrometheusServer,
  startPrometheus
} from "./prometheusServer.ts"

/** The rules' durations, scaled down from minutes to seconds (the CLI flags `--window` and `--for`). */
const window = "10s"
const forDuration = "2s"
const ruleOptions: AlertRules.Options = {
  window,
  criticalFor: forDuration,
  warningFor: forDuration,
  quotaFor: forDuration,
  breakerOpenFor: forDuration
}
const expectedToFire = ["ElevenLabsCircuitBreakerOpen", "ElevenLabsHighErrorRate"] as const
/**
 * An outage also makes the stack retry (until the breaker opens): the retry rate per call rises with it, so its
 * rule may go pending or fire during the outage (it must clear after, like the others). The error and retry
 * series exist at 0 from the start, so `rate()` counts the first retries of the outage.
 */
const mayFire = ["ElevenLabsHighRetryRate"] as const
const allRules = AlertRules.rules(ruleOptions).map((r) => r.alert)
const quietRules = allRules.filter((name) =>
  !(expectedToFire as ReadonlyArray<string>).includes(name) && !(mayFire as ReadonlyArray<string>).includes(name)
)

/** A key no metric may carry. */
const secret = `sk_alerts_e2e_${randomBytes(16).toString("hex")}`
const voiceId = "21m00Tcm4TlvDq8ikWAM"
const modelId = "eleven_flash_v2_5"
/** How long the breaker stays open: long enough for its alert's `for`, short enough to recover quickly. */
const openDuration = "6 seconds"

/** Polls `check` every `everyMs` until it returns a value, or fails with `what` and `context()` at the deadline. */
const until = <A>(
  what: string,
  timeoutMs: number,
  check: () => Promise<A | undefined>,
  context: () => string,
  everyMs = 200
): Effect.Effect<A> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    let last: unknown
    while (Date.now() < deadline) {
      const result = yield* Effect.exit(Effect.tryPromise(check))
      if (Exit.isSuccess(result) && result.value !== undefined) return result.value
      if (Exit.isFailure(result)) last = Cause.squash(result.cause)
      yield* Effect.sleep(everyMs)
    }
    return yield* Effect.die(
      new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${
          last === undefined ? "" : ` (last error: ${String(last)})`
        }\n${context()}`
      )
    )
  })

/** Every state each rule was seen in, and when it changed, as the poller saw them. */
interface Recorder {
  readonly seen: Map<string, Set<string>>
  readonly last: Map<string, string>
  readonly timeline: Array<string>
  readonly unhealthy: Array<string>
  polls: number
}

const note = (recorder: Recorder, startedAt: number, event: string): void => {
  recorder.timeline.push(`${((Date.now() - startedAt) / 1000).toFixed(1)}s ${event}`)
}

const record = (recorder: Recorder, startedAt: number, rules: ReadonlyArray<AlertingRule>): void => {
  recorder.polls++
  for (const rule of rules) {
    if (recorder.last.get(rule.name) !== rule.state) note(recorder, startedAt, `${rule.name} ${rule.state}`)
    recorder.last.set(rule.name, rule.state)
    recorder.seen.set(rule.name, (recorder.seen.get(rule.name) ?? new Set<string>()).add(rule.state))
    if (rule.health !== "ok" && rule.health !== "unknown") {
      recorder.unhealthy.push(`${rule.name}: ${rule.health} ${rule.lastError ?? ""}`)
    }
  }
}

const post = (url: string, body: unknown) =>
  Effect.promise(async () => {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    })
    const text = await res.text()
    if (res.status !== 200) throw new Error(`POST ${url}: ${res.status} ${text}`)
  })

describe("alerts end to end: a real Prometheus scrapes the stack and raises the generated rules", () => {
  it.live(
    "an outage fires ElevenLabsCircuitBreakerOpen and ElevenLabsHighErrorRate for the pool, recovery clears them, the other rules stay quiet",
    () =>
      Effect.gen(function*() {
        // Fail loudly (not a skip) when the server is missing: npm test installs Debian's prometheus package.
        assertPrometheusInstalled()
        const startedAt = Date.now()
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => mkdtempSync(join(tmpdir(), "alerts-e2e-"))),
          (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
        )

        // 1. The rules, written by the CLI as a user would, with durations of seconds.
        const rulesFile = join(dir, "rules.yml")
        const written = yield* cli(["alerts", "--window", window, "--for", forDuration, "--out", rulesFile])
        assert.strictEqual(written.code, 0, written.stderr)
        const yaml = readFileSync(rulesFile, "utf8")
        assert.strictEqual(yaml, AlertRules.toYaml(AlertRules.rules(ruleOptions)), "the CLI wrote the library's rules")

        // 2. The simulator's HTTP server, and the full stack with /health, /ready and /metrics on loopback ports.
        const simulator = yield* Server.serve({ port: 0, plan: "pro", apiKeys: [secret], seed: 11 })
        const checks = yield* Health.make()
        const health = yield* Layer.build(
          Health.layerServer({ port: 0, host: "127.0.0.1" }).pipe(
            Layer.provide(Layer.succeed(Health.HealthChecks, checks))
          )
        )
        const address = Context.get(health, HttpServer.HttpServer).address
        assert.notStrictEqual(address._tag, "UnixPathAddress")
        const metricsTarget = `127.0.0.1:${address._tag === "UnixPathAddress" ? 0 : address.port}`
        const stack = yield* Layer.build(
          ResilientTelemetry.layer({ pools: ["flash"] }).pipe(
            Layer.provideMerge(Resilient.layer({
              apiKey: Redacted.make(secret),
              baseUrl: simulator.url,
              limiter: { plan: "pro" },
              breaker: { openDuration },
              // Backoffs of a fraction of a second: calls caught by the outage end quickly.
              retry: { exponential: { base: "200 millis", cap: "1 second" } }
            })),
            Layer.provide(Layer.succeed(Health.HealthChecks, checks)),
            Layer.provide(NodeHttpClient.layerUndici)
          )
        )
        const client = Context.get(stack, Client.ElevenLabs)

        // Traffic: 4 callers, each a Flash TTS call then a 50 ms pause, until the test's scope closes.
        const outcomes = new Map<string, number>()
        let n = 0
        const caller = Effect.gen(function*() {
          for (;;) {
            const exit = yield* Effect.exit(
              client.textToSpeech.convert(voiceId, { text: `Alert rehearsal, call ${n++}.`, modelId })
            )
            const reason = Exit.isSuccess(exit)
              ? "success"
              : (() => {
                const fail = exit.cause.reasons.find((r) => r._tag === "Fail")
                const error = fail?._tag === "Fail" ? fail.error as { reason?: { _tag?: string } } : undefined
                return error?.reason?._tag ?? "other"
              })()
            outcomes.set(reason, (outcomes.get(reason) ?? 0) + 1)
            yield* Effect.sleep("50 millis")
          }
        })
        yield* Effect.forkScoped(Effect.all([caller, caller, caller, caller], { concurrency: "unbounded" }))

        // 3. Prometheus: scrape every second, evaluate every second, the CLI's rules.
        const prometheus: PrometheusServer = yield* Effect.acquireRelease(
          Effect.promise(() => startPrometheus({ targets: [metricsTarget], rules: yaml })),
          (p) => Effect.promise(() => p.close())
        )
        const recorder: Recorder = { seen: new Map(), last: new Map(), timeline: [], unhealthy: [], polls: 0 }
        const context = () =>
          [
            `rule states seen: ${JSON.stringify(Object.fromEntries([...recorder.seen].map(([k, v]) => [k, [...v]])))}`,
            `timeline:\n  ${recorder.timeline.join("\n  ")}`,
            `calls by outcome: ${JSON.stringify(Object.fromEntries(outcomes))}`,
            `prometheus log (tail):\n${prometheus.log().split("\n").slice(-15).join("\n")}`
          ].join("\n")
        // Four polls per evaluation: every state a rule takes lasts at least one evaluation, so none is missed.
        yield* Effect.forkScoped(Effect.forever(
          Effect.promise(() => prometheus.rules().then((rules) => record(recorder, startedAt, rules), () => undefined))
            .pipe(Effect.andThen(Effect.sleep("250 millis")))
        ))
        const rulesNow = () => prometheus.rules()
        const stateOf = (rules: ReadonlyArray<AlertingRule>, name: string) => rules.find((r) => r.name === name)

        // The target is scraped, the six rules are loaded and healthy, and the healthy traffic is in the TSDB.
        yield* until("the /metrics target to be up", 15_000, async () => {
          const data = await prometheus.api("targets") as {
            activeTargets: Array<{ health: string; scrapeUrl: string; lastError: string }>
          }
          const target = data.activeTargets.find((t) => t.scrapeUrl === `http://${metricsTarget}/metrics`)
          return target?.health === "up" ? target : undefined
        }, context)
        const loaded = yield* until("the six rules to be evaluated", 15_000, async () => {
          const rules = await rulesNow()
          return rules.length === allRules.length && rules.every((r) => r.health === "ok") ? rules : undefined
        }, context)
        assert.deepStrictEqual(loaded.map((r) => r.name).sort(), [...allRules].sort())
        yield* until("the healthy traffic's success rate in Prometheus", 15_000, async () => {
          const [s] = await prometheus.query(
            `sum(rate(elevenlabs_requests_total{pool="flash",status="success"}[${window}])) > 0`
          )
          return s
        }, context)
        const baseline = yield* Effect.promise(rulesNow)
        for (const r of baseline) assert.strictEqual(r.state, "inactive", `${r.name} before the outage\n${context()}`)

        // 4. The outage: every request the simulator admits answers 500 (through its control API).
        const outageAt = Date.now()
        note(recorder, startedAt, "outage: every request answers 500")
        yield* post(`${simulator.url}/_simulator/config`, { faults: { serverError: 1 } })
        const firing = yield* until("both alerts to fire", 30_000, async () => {
          const rules = await rulesNow()
          return expectedToFire.every((name) => stateOf(rules, name)?.state === "firing") ? rules : undefined
        }, context)
        const firedAfter = (Date.now() - outageAt) / 1000
        for (const name of expectedToFire) {
          const rule = stateOf(firing, name)!
          const alerts = rule.alerts.filter((a) => a.state === "firing")
          assert.strictEqual(alerts.length, 1, `${name}: one firing alert, for pool flash\n${JSON.stringify(rule)}`)
          const alert = alerts[0]!
          assert.strictEqual(alert.labels["pool"], "flash")
          assert.strictEqual(alert.labels["severity"], "critical")
          assert.strictEqual(alert.labels["alertname"], name)
          const annotations = AlertRules.rules(ruleOptions).find((r) => r.alert === name)!.annotations
          assert.strictEqual(
            alert.annotations["summary"],
            annotations.summary.replaceAll("{{ $labels.pool }}", "flash")
          )
        }
        // The same through /api/v1/alerts, the list Alertmanager is sent.
        const listed = (yield* Effect.promise(() => prometheus.api("alerts"))) as {
          alerts: Array<{ labels: Record<string, string>; state: string }>
        }
        assert.deepStrictEqual(
          listed.alerts.filter((a) => a.state === "firing").map((a) => `${a.labels["alertname"]}/${a.labels["pool"]}`)
            .sort(),
          expectedToFire.map((name) => `${name}/flash`).sort()
        )
        // The breaker was open in the stack, as Prometheus saw it.
        const [breakerOpen] = yield* Effect.promise(() =>
          prometheus.query(`max_over_time(elevenlabs_circuit_breaker_state{pool="flash"}[1m])`)
        )
        assert.strictEqual(breakerOpen?.value?.[1], "2")

        // 5. Recovery: the fault is removed; the breaker's next probe succeeds and closes the circuit.
        const recoveredAt = Date.now()
        note(recorder, startedAt, "recovery: the fault removed")
        yield* post(`${simulator.url}/_simulator/config`, { faults: { serverError: 0 } })
        yield* until("both alerts to clear", 40_000, async () => {
          const rules = await rulesNow()
          const alerts = (await prometheus.api("alerts")) as { alerts: Array<unknown> }
          return rules.every((r) => r.state === "inactive" && r.alerts.length === 0) && alerts.alerts.length === 0
            ? rules
            : undefined
        }, context)
        const clearedAfter = (Date.now() - recoveredAt) / 1000
        // Closed (0), not merely half-open (1, which also clears the alert): a probe went through.
        yield* until("the breaker closed again, as scraped", 10_000, async () => {
          const [breaker] = await prometheus.query(`elevenlabs_circuit_breaker_state{pool="flash"}`)
          return breaker?.value?.[1] === "0" ? true : undefined
        }, context)
        const successes = outcomes.get("success") ?? 0
        yield* until(
          "successful calls after the recovery",
          10_000,
          async () => (outcomes.get("success") ?? 0) > successes ? true : undefined,
          context
        )

        // 6. Every evaluation, as Prometheus recorded it: ALERTS has a sample per evaluation in which an
        // alert was pending or firing. Only the two expected alerts (and the retry rate) ever had one, both fired.
        const range = `${Math.ceil((Date.now() - startedAt) / 1000) + 5}s`
        const history = yield* Effect.promise(() => prometheus.query(`ALERTS[${range}]`))
        const states = new Map<string, Set<string>>()
        for (const s of history) {
          const name = s.metric["alertname"]!
          states.set(name, (states.get(name) ?? new Set()).add(s.metric["alertstate"]!))
          assert.strictEqual(s.metric["pool"], "flash", `${name} fired for pool flash only`)
        }
        const active = [...states.keys()].filter((name) => !(mayFire as ReadonlyArray<string>).includes(name))
        assert.deepStrictEqual(active.sort(), [...expectedToFire].sort(), context())
        for (const name of expectedToFire) assert.isTrue(states.get(name)?.has("firing"), `${name} fired`)
        // The poller agrees, and no rule failed to evaluate.
        for (const name of quietRules) {
          assert.deepStrictEqual([...recorder.seen.get(name) ?? []], ["inactive"], `${name} stayed quiet\n${context()}`)
        }
        for (const name of expectedToFire) assert.isTrue(recorder.seen.get(name)?.has("firing"), name)
        assert.deepStrictEqual(recorder.unhealthy, [], "every rule evaluated without error")
        // How close each quiet rule came: the peak of its expression's left side over the run.
        const peaks: Array<string> = []
        for (const rule of AlertRules.rules(ruleOptions).filter((r) => quietRules.includes(r.alert))) {
          const [, lhs, threshold] = /^(.*) > (\S+)$/.exec(rule.expr)!
          const [peak] = yield* Effect.promise(() => prometheus.query(`max(max_over_time((${lhs})[${range}:1s]))`))
          const value = peak?.value === undefined ? Number.NaN : Number(peak.value[1])
          peaks.push(`${rule.alert} ${Number.isNaN(value) ? "no data" : Number(value.toPrecision(3))} (> ${threshold})`)
          if (!Number.isNaN(value)) assert.isAtMost(value, Number(threshold), `${rule.alert}\n${context()}`)
        }

        // 7. The key: in no scraped metric, in no series Prometheus stored, in no alert.
        const scraped = yield* Effect.promise(() => fetch(`http://${metricsTarget}/metrics`).then((r) => r.text()))
        assert.include(scraped, "elevenlabs_requests_total")
        assert.notInclude(scraped, secret)
        const series = yield* Effect.promise(() =>
          prometheus.api("series", { "match[]": `{job="elevenlabs-resilience"}`, start: String(startedAt / 1000) })
        )
        const stored = JSON.stringify(series)
        assert.include(stored, "elevenlabs_circuit_breaker_state")
        assert.notInclude(stored, secret)
        assert.notInclude(JSON.stringify(history), secret)
        assert.notInclude(JSON.stringify(firing), secret)

        // One line for the report: how long each phase took.
        console.log(
          `alerts e2e: baseline scraped ${((outageAt - startedAt) / 1000).toFixed(1)} s after the start, fired ${
            firedAfter.toFixed(1)
          } s after the outage, cleared ${clearedAfter.toFixed(1)} s after recovery; ${recorder.polls} polls; calls ${
            JSON.stringify(Object.fromEntries(outcomes))
          }; quiet rules' peaks: ${peaks.join(", ")}`
        )
      }).pipe(
        Effect.scoped,
        // A registry of this test's own: the exposition holds only this stack's metrics.
        Effect.provideService(Metric.MetricRegistry, new Map()),
        // The breaker's transitions are logged as warnings; the timeline above says what happened.
        Effect.provideService(References.MinimumLogLevel, "Error")
      ),
    { timeout: 120_000 }
  )
})
