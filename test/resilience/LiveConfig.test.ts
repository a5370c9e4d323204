import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { ConfigProvider, Context, Effect, Layer, Logger, Metric, Redacted } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as LiveConfig from "../../src/resilience/LiveConfig.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as ResilientFetch from "../../src/resilience/ResilientFetch.ts"
import type { ResilientOptions } from "../../src/resilience/ResilientOptions.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Health from "../../src/telemetry/Health.ts"
import * as Otel from "../../src/telemetry/Otel.ts"
import * as Prometheus from "../../src/telemetry/Prometheus.ts"
import * as ResilientTelemetry from "../../src/telemetry/ResilientTelemetry.ts"
import * as Spans from "../../src/telemetry/Spans.ts"

const apiKey = Redacted.make("sim-key")

/** A temp directory for the followed file, removed with the scope. */
const tempFile = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "live-config-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => join(dir, "elevenlabs.json")))

const write = (path: string, document: unknown) =>
  Effect.sync(() => writeFileSync(path, typeof document === "string" ? document : JSON.stringify(document)))

const stack = (path: string, options: Omit<ResilientOptions, "apiKey"> = {}, env = false) =>
  Resilient.layer({
    apiKey,
    limiter: { plan: "pro" },
    quota: false,
    ...options,
    live: { source: { _tag: "file", path, poll: "20 millis" }, env }
  }).pipe(Layer.provideMerge(InProcess.layerSimulated({ plan: "pro" })))

/** Waits until the status says `last` for `version` (real clock, bounded). */
const until = (live: LiveConfig.Live, check: (s: LiveConfig.Status) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 250; i++) {
      const s = yield* live.status
      if (check(s)) return s
      yield* Effect.sleep("20 millis")
    }
    return assert.fail(`status never matched: ${JSON.stringify(yield* live.status)}`)
  })

describe("LiveConfig, file source", () => {
  it.live("one process following a file applies a valid change and refuses an invalid one", () =>
    Effect.gen(function*() {
      const path = yield* tempFile
      yield* write(path, { concurrency: { plan: "pro", caps: { flash: 10 } } })
      const built = yield* Layer.build(stack(path))
      const resilience = Context.get(built, Resilient.Resilience)
      const live = resilience.live!
      const first = yield* until(live, (s) => s.version === 1)
      assert.strictEqual(first.last, "applied")
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).limit, 10)

      // A valid change: the cap drops, the retry budget and deadline follow, without a restart.
      yield* write(path, { concurrency: { plan: "pro", caps: { flash: 2 } }, timeouts: { deadline: "20 seconds" } })
      const second = yield* until(live, (s) => s.version === 2)
      assert.strictEqual(second.last, "applied")
      assert.deepStrictEqual(second.pendingRestart, [])
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).limit, 2)

      // An invalid change: refused with its problem, the running version stays.
      yield* write(path, { concurrency: { plan: "pro", caps: { flash: 0 } } })
      const refused = yield* until(live, (s) => s.last === "refused")
      assert.strictEqual(refused.version, 2)
      assert.strictEqual(refused.refused?.version, 3)
      assert.match(refused.refused!.problems.join(" "), /caps\.flash/)
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).limit, 2)

      // Not JSON at all: refused too; then a good version applies again.
      yield* write(path, "{ not json")
      const notJson = yield* until(live, (s) => s.refused?.version === 4)
      assert.match(notJson.refused!.problems[0]!, /not valid JSON/)
      yield* write(path, { concurrency: { plan: "pro", caps: { flash: 5 } } })
      yield* until(live, (s) => s.version === 5 && s.last === "applied")
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).limit, 5)
    }).pipe(Effect.scoped))

  it.live("a version that changes what is not live is applied for the rest and lists the restart it needs", () =>
    Effect.gen(function*() {
      const path = yield* tempFile
      yield* write(path, { concurrency: { plan: "pro" } })
      const built = yield* Layer.build(stack(path))
      const resilience = Context.get(built, Resilient.Resilience)
      const live = resilience.live!
      yield* until(live, (s) => s.version === 1)
      yield* write(path, {
        concurrency: { plan: "pro", caps: { standard: 3 } },
        baseUrl: "https://elsewhere.example",
        quota: { warningPercent: 70 },
        breaker: false
      })
      const s = yield* until(live, (s) => s.version === 2)
      assert.deepStrictEqual(s.pendingRestart, ["baseUrl", "breaker (switched off)", "quota (switched on)"])
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "standard")).limit, 3)
      // The breaker was not switched off live: it is still there.
      assert.isDefined(resilience.breaker)
    }).pipe(Effect.scoped))

  it.live("the attempt timeouts and the retries change live", () =>
    Effect.gen(function*() {
      const path = yield* tempFile
      yield* write(path, { concurrency: { plan: "pro" } })
      const built = yield* Layer.build(stack(path))
      const resilience = Context.get(built, Resilient.Resilience)
      const client = Context.get(built, Client.ElevenLabs)
      yield* until(resilience.live!, (s) => s.version === 1)
      const convert = client.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", {
        text: "Hello there.",
        modelId: "eleven_flash_v2_5"
      })
      const ok = yield* convert
      assert.isAbove(ok.audio.byteLength, 0)
      // Flash answers in about 75 ms: a 1 ms headers timeout and one attempt make every call a Timeout.
      yield* write(path, { concurrency: { plan: "pro" }, timeouts: { headers: "1 millis" }, retry: { maxAttempts: 1 } })
      yield* until(resilience.live!, (s) => s.version === 2)
      const failed = yield* Effect.flip(convert)
      assert.strictEqual(failed.reason._tag, "Timeout")
      assert.strictEqual((failed.reason as { phase?: string }).phase, "headers")
      assert.strictEqual(failed.attempts, 1)
      // And back.
      yield* write(path, { concurrency: { plan: "pro" } })
      yield* until(resilience.live!, (s) => s.version === 3)
      assert.isAbove((yield* convert).audio.byteLength, 0)
    }).pipe(Effect.scoped))

  it.live("each version is a span, a metric and a log line; /health shows the running version", () => {
    const exporter = new InMemorySpanExporter()
    const logged: Array<string> = []
    const collect = Logger.make((o) => void logged.push(JSON.stringify(o.message)))
    return Effect.gen(function*() {
      const path = yield* tempFile
      yield* write(path, { concurrency: { plan: "pro" } })
      const checks = yield* Health.make()
      const built = yield* Layer.build(stack(path))
      const resilience = Context.get(built, Resilient.Resilience)
      yield* ResilientTelemetry.registerHealthChecks().pipe(
        Effect.provideService(Resilient.Resilience, resilience),
        Effect.provideService(Health.HealthChecks, checks)
      )
      yield* until(resilience.live!, (s) => s.version === 1)
      yield* write(path, { concurrency: { plan: "nope" } })
      yield* until(resilience.live!, (s) => s.last === "refused")

      const exposition = yield* Prometheus.exposition
      assert.match(exposition, /^elevenlabs_config_version(\{[^}]*\})? 1$/m)
      assert.match(exposition, /^elevenlabs_config_changes_total\{[^}]*result="applied"[^}]*\} 1$/m)
      assert.match(exposition, /^elevenlabs_config_changes_total\{[^}]*result="refused"[^}]*\} 1$/m)

      const spans = exporter.getFinishedSpans().filter((s) => s.name === Spans.configSpanName)
      assert.deepStrictEqual(
        spans.map((s) => [s.attributes[Spans.configAttributes.version], s.attributes[Spans.configAttributes.result]]),
        [[1, "applied"], [2, "refused"]]
      )
      const logs = logged.join("\n")
      assert.include(logs, "elevenlabs live config applied")
      assert.include(logs, "elevenlabs live config refused")
      assert.notInclude(logs, "sim-key")

      const response = yield* Health.healthResponse.pipe(Effect.provideService(Health.HealthChecks, checks))
      const body = JSON.parse(new TextDecoder().decode((response.body as { body: Uint8Array }).body)) as {
        status: string
        config: LiveConfig.Status
      }
      assert.strictEqual(body.status, "alive")
      assert.strictEqual(body.config.version, 1)
      assert.strictEqual(body.config.refused?.version, 2)
      assert.match(body.config.refused!.problems[0]!, /concurrency\.plan/)
    }).pipe(
      Effect.scoped,
      Effect.provide(Logger.layer([collect])),
      Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] })),
      Effect.provideService(Metric.MetricRegistry, new Map())
    )
  })

  it.live("the resilient fetch follows a file too, per key", () =>
    Effect.gen(function*() {
      const path = yield* tempFile
      yield* write(path, { concurrency: { plan: "pro", caps: { flash: 7 } } })
      const fetch = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ResilientFetch.make({
            limiter: { plan: "pro" },
            live: { source: { _tag: "file", path, poll: "20 millis" }, env: false }
          })
        ),
        (f) => Effect.promise(() => f.close())
      )
      const policies = yield* Effect.promise(() => fetch.policies("sim-key"))
      const limit = () => Effect.map(policies.limiter.snapshot(policies.keyId, "flash"), (s) => s.limit)
      const waitFor = (n: number) =>
        Effect.gen(function*() {
          for (let i = 0; i < 250 && (yield* limit()) !== n; i++) yield* Effect.sleep("20 millis")
          assert.strictEqual(yield* limit(), n)
        })
      yield* waitFor(7)
      yield* write(path, { concurrency: { plan: "pro", caps: { flash: 4 } } })
      yield* waitFor(4)
    }).pipe(Effect.scoped))

  it.live("what may not change live is kept and reported: the breaker's prefix, retries switched on", () =>
    Effect.gen(function*() {
      const path = yield* tempFile
      yield* write(path, { concurrency: { plan: "pro" }, timeouts: { headers: "1 millis" }, retry: false })
      const built = yield* Layer.build(stack(path, { breaker: { keyPrefix: "myapp:" }, retry: false }))
      const resilience = Context.get(built, Resilient.Resilience)
      const client = Context.get(built, Client.ElevenLabs)
      yield* until(resilience.live!, (s) => s.version === 1 && s.last === "applied")
      const convert = client.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", {
        text: "Hi there.",
        modelId: "eleven_flash_v2_5"
      })
      // Without retries a failure carries no attempt count: one attempt.
      const attemptsOf = Effect.map(Effect.flip(convert), (e) => [e.reason._tag, e.attempts ?? 1])
      assert.deepStrictEqual(yield* attemptsOf, ["Timeout", 1])
      // A custom breaker prefix stays (the circuits' names); the version is applied, not refused.
      yield* write(path, {
        concurrency: { plan: "pro", caps: { flash: 3 } },
        timeouts: { headers: "1 millis" },
        retry: { maxAttempts: 3 },
        breaker: { keyPrefix: "other:" }
      })
      const s = yield* until(resilience.live!, (s) => s.version === 2)
      assert.strictEqual(s.last, "applied")
      assert.deepStrictEqual(s.pendingRestart, ["breaker.keyPrefix", "retry (switched on)"])
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).limit, 3)
      assert.strictEqual(resilience.breaker!.keyOf("flash"), "myapp:flash")
      // Retries stay off as the stack started: one attempt.
      assert.deepStrictEqual(yield* attemptsOf, ["Timeout", 1])
    }).pipe(Effect.scoped))

  it.live("a file that cannot be read is reported once; null and non-objects are no configuration", () =>
    Effect.gen(function*() {
      const path = yield* tempFile
      yield* write(path, { concurrency: { plan: "pro", caps: { flash: 4 } } })
      // With an environment variable set: over a non-object it must not stand in for the document.
      const built = yield* Layer.build(
        stack(path, {}, true).pipe(Layer.provide(ConfigProvider.layer(
          ConfigProvider.fromEnv({ env: { ELEVENLABS_PLAN: "pro" } })
        )))
      )
      const resilience = Context.get(built, Resilient.Resilience)
      yield* until(resilience.live!, (s) => s.version === 1)
      yield* Effect.sync(() => rmSync(path))
      const gone = yield* until(resilience.live!, (s) => s.last === "refused")
      assert.match(gone.refused!.problems[0]!, /cannot read .*elevenlabs\.json \(NotFound\)/)
      assert.strictEqual(gone.version, 1)
      for (const document of ["null", "[]", "42"]) {
        yield* write(path, document)
        const before = (yield* resilience.live!.status).refused?.version ?? 0
        const s = yield* until(resilience.live!, (s) => (s.refused?.version ?? 0) > before)
        assert.strictEqual(s.version, 1, `${document} is refused`)
      }
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).limit, 4)
    }).pipe(Effect.scoped))
})
