/**
 * What the real-time sessions tell the operator, and what they never tell anyone: one span per session and
 * one per reconnect, the session metrics, and a distinctive API key found in no log line (at Trace), span,
 * metric or error rendering, over sessions that succeed, reconnect and fail.
 */
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Cause, Effect, Exit, Fiber, Layer, Metric, Redacted, Stream } from "effect"
import { TestConsole } from "effect/testing"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as RealtimeSession from "../../src/resilience/RealtimeSession.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as RealtimeInProcess from "../../src/simulator/RealtimeInProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import * as JsonLogger from "../../src/telemetry/JsonLogger.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as Otel from "../../src/telemetry/Otel.ts"
import * as Prometheus from "../../src/telemetry/Prometheus.ts"
import * as Redact from "../../src/telemetry/Redact.ts"
import * as Spans from "../../src/telemetry/Spans.ts"
import { runVirtual } from "../utils/virtualTime.ts"

const secret = "sk_realtime_9d2f6a1c4e7b0d3f8a5c2e9b6d1f4a7c"
const wrongKey = "sk_realtime_wrong_3b8e1d6a9c2f5e0b7d4a1c8f3e6b9d2a"
const voice = "21m00Tcm4TlvDq8ikWAM"
const flash = "eleven_flash_v2_5"

const texts = Array.from({ length: 5 }, (_, i) => `Sentence ${i} says a few more words about the weather today.`)

/** A session on `key` that sends `texts` and ends; its failure, if any. */
const session = (key: string) =>
  Effect.scoped(Effect.gen(function*() {
    const realtime = RealtimeSession.make({ apiKey: Redacted.make(key) }, yield* Resilient.Resilience)
    const s = yield* realtime.open({ voiceId: voice, modelId: flash })
    const audio = yield* Effect.forkChild(Effect.exit(Stream.runDrain(s.audio)))
    for (const t of texts) yield* s.send(t)
    yield* s.end
    yield* Fiber.join(audio)
  })).pipe(Effect.flip, Effect.option)

const spanData = (s: ReadableSpan) => ({
  name: s.name,
  id: s.spanContext().spanId,
  attributes: s.attributes,
  status: s.status,
  events: s.events.map((e) => ({ name: e.name, attributes: e.attributes })),
  parent: s.parentSpanContext?.spanId
})

const renderings = (e: ElevenLabsError) => ({
  message: e.message,
  string: String(e),
  json: JSON.stringify(e),
  stack: e.stack,
  pretty: Cause.pretty(Cause.fail(e))
})

/** The exposition line of a series of `name` whose labels include `labels`. */
const lineOf = (exposition: string, name: string, labels: string) =>
  exposition.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels))

describe("RealtimeTelemetry", () => {
  it.effect("a span per session and per reconnect, the session metrics, and the key nowhere", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      sim.realtime.configure({ next: ["drop"] })
      const ok = yield* runVirtual(session(secret))
      const wrong = yield* runVirtual(session(wrongKey))
      assert.isTrue(ok._tag === "None", "the session with a drop ends cleanly")
      assert.strictEqual(wrong._tag === "Some" && wrong.value.reason._tag, "InvalidApiKey")

      const spans = exporter.getFinishedSpans().map(spanData)
      const sessions = spans.filter((s) => s.name === "elevenlabs.textToSpeech.streamInput")
      const reconnects = spans.filter((s) => s.name === "elevenlabs.textToSpeech.streamInput.reconnect")
      assert.strictEqual(sessions.length, 2)
      assert.strictEqual(reconnects.length, 1)
      const [first, second] = sessions
      assert.strictEqual(first!.attributes[Spans.callAttributes.outcome], "success")
      assert.strictEqual(first!.attributes[Spans.callAttributes.pool], "flash")
      assert.strictEqual(first!.attributes[Spans.realtimeAttributes.reconnects], 1)
      assert.isAbove(Number(first!.attributes[Spans.realtimeAttributes.charactersResent]), 0)
      assert.strictEqual(second!.attributes[Spans.callAttributes.errorReason], "InvalidApiKey")
      assert.strictEqual(reconnects[0]!.attributes[Spans.realtimeAttributes.reconnect], 1)
      assert.strictEqual(reconnects[0]!.parent, first!.id, "the reconnect is a child of its session")
      assert.isTrue(first!.events.some((e) => e.name === Spans.events.retry), "the reconnect's pause is an event")

      const exposition = yield* Prometheus.exposition
      const line = (name: string, labels: string) => lineOf(exposition, name, labels)
      assert.match(line(Metrics.realtimeNames.sessions, `status="success"`) ?? "", / 1$/)
      assert.match(line(Metrics.realtimeNames.sessions, `reason="InvalidApiKey"`) ?? "", / 1$/)
      assert.match(line(Metrics.realtimeNames.reconnects, `reason="Transport"`) ?? "", / 1$/)
      assert.match(line(Metrics.realtimeNames.sessionsActive, `pool="flash"`) ?? "", / 0$/)
      assert.isDefined(line(Metrics.realtimeNames.charactersResent, `pool="flash"`))

      const logLines = yield* TestConsole.logLines
      const scanned = {
        logLines,
        spans,
        exposition,
        errors: wrong._tag === "Some" ? [renderings(wrong.value)] : [],
        stats: JSON.stringify(yield* sim.stats)
      }
      for (const key of [secret, wrongKey]) assert.deepStrictEqual(Redact.findSecret(scanned, key), [])
      assert.deepStrictEqual(Redact.findSecret({ ...scanned, spans: [...spans, { x: secret }] }, secret), [
        `spans.${spans.length}.x`
      ])
    }).pipe(
      Effect.provide(
        Resilient.layer({ apiKey: Redacted.make(secret), limiter: { plan: "pro" } }).pipe(
          Layer.provideMerge(RealtimeInProcess.layerSimulated({ seed: 21, apiKeys: [{ key: secret, name: "main" }] }))
        )
      ),
      Effect.provide(JsonLogger.layer({ minimumLevel: "Trace" })),
      Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] })),
      Effect.provideService(Metric.MetricRegistry, new Map())
    )
  })

  it.effect("an interrupted session counts as interrupted, and the active gauge returns to 0", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(session(secret))
      yield* runVirtual(Effect.sleep("300 millis"))
      yield* Fiber.interrupt(fiber)
      const exposition = yield* Prometheus.exposition
      assert.match(lineOf(exposition, Metrics.realtimeNames.sessions, `status="interrupted"`) ?? "", / 1$/)
      assert.match(lineOf(exposition, Metrics.realtimeNames.sessionsActive, `pool="flash"`) ?? "", / 0$/)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(fiber)))
    }).pipe(
      Effect.provide(
        Resilient.layer({ apiKey: Redacted.make(secret) }).pipe(
          Layer.provideMerge(RealtimeInProcess.layerSimulated({ seed: 22, apiKeys: [{ key: secret, name: "main" }] }))
        )
      ),
      Effect.provideService(Metric.MetricRegistry, new Map())
    ))
})
