/**
 * The API key appears nowhere: calls that succeed and fail in every way go
 * through the full resilient stack with a distinctive key, and every log line,
 * span (names, attributes, events), metric, error rendering, readiness report
 * and simulation report is scanned for it with `Redact.findSecret`. Nothing
 * is scrubbed on the way (the JSON logger gets no `redact` list), so a leak
 * anywhere shows up.
 */
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Cause, Effect, Metric, Redacted, Stream } from "effect"
import { TestConsole } from "effect/testing"
import type * as Client from "../../src/client/ElevenLabs.ts"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import type { ResilientOptions } from "../../src/resilience/ResilientOptions.ts"
import * as Html from "../../src/simulation/Html.ts"
import * as Report from "../../src/simulation/Report.ts"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import * as Health from "../../src/telemetry/Health.ts"
import * as JsonLogger from "../../src/telemetry/JsonLogger.ts"
import * as Otel from "../../src/telemetry/Otel.ts"
import * as Prometheus from "../../src/telemetry/Prometheus.ts"
import * as Redact from "../../src/telemetry/Redact.ts"
import * as ResilientTelemetry from "../../src/telemetry/ResilientTelemetry.ts"
import { runVirtual } from "../utils/virtualTime.ts"

/** Distinctive keys: any occurrence is a leak, never a coincidence. */
const secret = "sk_keyabsence_4f9c2e7a1b6d3f8e0c5a9b7d2e4f6a1c"
const wrongKey = "sk_wrongkey_8e1d4c7b0a3f6e9d2c5b8a1f4e7d0c3b"
const voice = "21m00Tcm4TlvDq8ikWAM"
const flash = "eleven_flash_v2_5"

/** What a span exports, as plain data. */
const spanData = (s: ReadableSpan) => ({
  name: s.name,
  kind: s.kind,
  attributes: s.attributes,
  status: s.status,
  events: s.events.map((e) => ({ name: e.name, attributes: e.attributes })),
  links: s.links,
  resource: s.resource.attributes
})

/** Every rendering of an error a user might print, log or serialise. */
const errorRenderings = (e: ElevenLabsError) => ({
  message: e.message,
  string: String(e),
  json: JSON.stringify(e),
  stack: e.stack,
  pretty: Cause.pretty(Cause.fail(e)),
  value: e
})

const settle = <A>(self: Effect.Effect<A, ElevenLabsError>) =>
  Effect.match(self, { onSuccess: () => undefined, onFailure: (e) => e })

describe("KeyAbsence", () => {
  it.effect("the key is in no log line, span, metric, error, readiness report or simulator stats", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const stack = (options: Omit<ResilientOptions, "apiKey"> & { readonly key: string }) =>
        Resilient.make({ apiKey: Redacted.make(options.key), ...options })
      // The guarded stack; the same key without a quota guard (to meet the server's quota_exceeded);
      // a wrong key (401 invalid_api_key, and its subscription reads fail too).
      const main = yield* stack({ key: secret, limiter: { plan: { flash: 40 } } })
      const unguarded = yield* stack({ key: secret, quota: false, limiter: { plan: "pro" } })
      const wrong = yield* stack({ key: wrongKey, limiter: { plan: "pro" } })
      const checks = yield* Health.HealthChecks
      yield* ResilientTelemetry.registerHealthChecks().pipe(
        Effect.provideService(Resilient.Resilience, main.resilience)
      )

      const tts = (client: Client.ElevenLabs, text: string, voiceId = voice) =>
        client.textToSpeech.convert(voiceId, { text, modelId: flash })
      const failures: Array<ElevenLabsError> = []
      const collect = <A>(self: Effect.Effect<A, ElevenLabsError>) =>
        Effect.tap(settle(self), (e) => Effect.sync(() => e !== undefined && failures.push(e)))

      // A burst over the account's Flash limit (40 permits against 20 slots: concurrency 429s),
      // with system_busy and 5xx faults, a stream, an unknown voice and local refusals.
      yield* sim.setFaults({ systemBusy: 0.15, serverError: 0.05, serviceUnavailable: 0.03 })
      yield* runVirtual(
        Effect.all([
          ...Array.from({ length: 60 }, (_, i) => collect(tts(main.service, `burst line ${i} `.repeat(10)))),
          collect(Effect.scoped(Effect.flatMap(
            main.service.textToSpeech.stream(voice, { text: "a streamed line ".repeat(20), modelId: flash }),
            (s) => Stream.runDrain(s.audio)
          ))),
          collect(tts(main.service, "nobody speaks this", "AAAAAAAAAAAAAAAAAAAA")),
          collect(tts(main.service, "   ")),
          collect(tts(main.service, "x".repeat(50_000))),
          collect(tts(wrong.service, "wrong key")),
          collect(wrong.service.voices.list())
        ], { concurrency: "unbounded" }),
        { stepMillis: 250 }
      )
      // An outage long enough to open the breaker whatever the retry budget has left (each call fails at
      // least once: 8 calls make 5 consecutive failures even with no retry granted), then the quota running out.
      yield* sim.setFaults({ systemBusy: 0, serverError: 1, serviceUnavailable: 0 })
      yield* runVirtual(
        Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8], (i) => collect(tts(main.service, `outage ${i}`)), { concurrency: 1 }),
        {
          stepMillis: 1000
        }
      )
      yield* sim.setFaults({ serverError: 0 })
      yield* sim.setCredits(20)
      yield* runVirtual(main.resilience.quota!.refresh.pipe(Effect.ignore))
      yield* runVirtual(collect(tts(main.service, "more than twenty credits of text, please ".repeat(2))))
      yield* runVirtual(collect(tts(unguarded.service, "the server says no: quota_exceeded ".repeat(2))))

      // The run met every kind of answer it is meant to.
      const stats = yield* sim.stats
      const reasons = new Set(failures.map((e) => e.reason._tag))
      for (
        const r of ["InvalidApiKey", "NotFound", "InvalidRequest", "CircuitOpen", "InsufficientQuota", "QuotaExceeded"]
      ) {
        assert.isTrue(reasons.has(r as never), `no ${r} in ${[...reasons].join(", ")}`)
      }
      assert.isTrue(reasons.has("ServerError") || reasons.has("SystemBusy") || reasons.has("CircuitOpen"))
      assert.isAbove(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      assert.isAbove(stats.byDetailStatus["system_busy"] ?? 0, 0)
      assert.isAbove(stats.byStatus["500"] ?? 0, 0)
      assert.isAbove(stats.byStatus["200"] ?? 0, 30)

      // Everything the run produced.
      const logLines = yield* TestConsole.logLines
      const spans = exporter.getFinishedSpans().map(spanData)
      const exposition = yield* Prometheus.exposition
      const readiness = yield* checks.run
      assert.isAbove(logLines.length, 10)
      assert.isTrue(logLines.some((l) => String(l).includes("elevenlabs retry")))
      assert.isTrue(logLines.some((l) => String(l).includes("circuit breaker")))
      assert.isAbove(spans.length, 100)
      assert.isTrue(spans.some((s) => s.events.some((e) => e.name === "exception")))
      assert.include(exposition, "elevenlabs_errors_total")
      assert.include(exposition, "elevenlabs_retries_total")
      assert.strictEqual(readiness.status, "not_ready")

      const scanned = {
        logLines,
        spans,
        exposition,
        errors: failures.map(errorRenderings),
        readiness: JSON.stringify(readiness),
        simulatorStats: JSON.stringify(stats)
      }
      for (const key of [secret, wrongKey]) {
        assert.deepStrictEqual(Redact.findSecret(scanned, key), [], `the key leaked`)
      }
      // The scan does reach into these: a planted copy is found where it was planted.
      assert.deepStrictEqual(Redact.findSecret({ ...scanned, logLines: [...logLines, `{"x":"${secret}"}`] }, secret), [
        `logLines.${logLines.length}`
      ])
    }).pipe(
      Effect.provide(Health.HealthChecks.layer),
      Effect.provide(InProcess.layerSimulated({ seed: 51, plan: "pro", apiKeys: [{ key: secret, name: "main" }] })),
      // No `redact` list: the logger must not need one.
      Effect.provide(JsonLogger.layer({ minimumLevel: "Trace" })),
      Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] })),
      Effect.provideService(Metric.MetricRegistry, new Map())
    )
  })

  it.effect("a simulation report (text, JSON, HTML) does not carry the simulated account's key", () =>
    Effect.gen(function*() {
      // The virtual-time runner drives its own simulator account, whose key is `sim-key`.
      const reports = yield* Effect.forEach(["naive", "p-queue-recipe"], (name) =>
        Runner.run({
          traffic: { pattern: "chaos", rps: 4, requests: 30 },
          strategy: Strategies.find(name)!,
          plan: "free",
          failureRate: 0.2
        }))
      for (const r of reports) assert.isAbove(r.summary.attempts, r.summary.requests - 1)
      const rendered = {
        text: Report.toText(reports),
        json: Report.toJson(reports),
        html: Html.render(reports),
        reports
      }
      assert.deepStrictEqual(Redact.findSecret(rendered, "sim-key"), [])
    }))
})
