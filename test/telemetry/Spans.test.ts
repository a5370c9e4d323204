import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect } from "effect"
import * as Otel from "../../src/telemetry/Otel.ts"
import * as Spans from "../../src/telemetry/Spans.ts"

const operation = "textToSpeech.convert"

describe("Spans", () => {
  it.effect("a call span with an attempt child, attributes and events reaches an OpenTelemetry exporter", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const attempt = Effect.gen(function*() {
        yield* Spans.annotateAttempt({ statusCode: 200, requestId: "req-1", detailStatus: undefined })
        return "audio"
      }).pipe(
        Spans.withAttemptSpan(operation, {
          method: "POST",
          urlTemplate: "/v1/text-to-speech/{voice_id}",
          serverAddress: "api.elevenlabs.io",
          attempt: 2
        })
      )
      const result = yield* Effect.gen(function*() {
        yield* Spans.retryEvent({ attempt: 1, reason: "SystemBusy", delayMs: 1000 })
        yield* Spans.breakerTransitionEvent({ pool: "standard", from: "Closed", to: "Open" })
        yield* Spans.limitChangeEvent({ pool: "standard", from: 5, to: 4, cause: "too_many_concurrent_requests" })
        yield* Spans.quotaWarningEvent({ usedPercentage: 81 })
        const audio = yield* attempt
        yield* Spans.annotateCall({
          outcome: "success",
          attempts: 2,
          queueWaitMs: 12,
          coalesced: false,
          fallbackUsed: false
        })
        return audio
      }).pipe(
        Spans.withCallSpan(operation, {
          model: "eleven_multilingual_v2",
          voiceId: "JBFqnCBsd6RMkjVDRZzb",
          characters: 42,
          pool: "standard",
          lane: "interactive"
        })
      )
      assert.strictEqual(result, "audio")

      const spans = exporter.getFinishedSpans()
      assert.deepStrictEqual(spans.map((s) => s.name), [
        "elevenlabs.textToSpeech.convert.attempt",
        "elevenlabs.textToSpeech.convert"
      ])
      const [child, call] = spans
      assert.strictEqual(child!.parentSpanContext?.spanId, call!.spanContext().spanId)
      assert.deepStrictEqual(child!.attributes, {
        "http.request.method": "POST",
        "url.template": "/v1/text-to-speech/{voice_id}",
        "server.address": "api.elevenlabs.io",
        "elevenlabs.attempt": 2,
        "http.response.status_code": 200,
        "elevenlabs.request_id": "req-1"
      })
      assert.deepStrictEqual(call!.attributes, {
        "elevenlabs.operation": operation,
        "elevenlabs.model": "eleven_multilingual_v2",
        "elevenlabs.voice_id": "JBFqnCBsd6RMkjVDRZzb",
        "elevenlabs.characters": 42,
        "elevenlabs.pool": "standard",
        "elevenlabs.lane": "interactive",
        "elevenlabs.outcome": "success",
        "elevenlabs.attempts": 2,
        "elevenlabs.queue_wait_ms": 12,
        "elevenlabs.coalesced": false,
        "elevenlabs.fallback_used": false
      })
      assert.deepStrictEqual(call!.events.map((e) => [e.name, e.attributes]), [
        ["elevenlabs.retry", {
          "elevenlabs.attempt": 1,
          "elevenlabs.error_reason": "SystemBusy",
          "elevenlabs.retry_delay_ms": 1000
        }],
        ["elevenlabs.breaker.transition", {
          "elevenlabs.pool": "standard",
          "elevenlabs.breaker.from": "Closed",
          "elevenlabs.breaker.to": "Open"
        }],
        ["elevenlabs.limit.change", {
          "elevenlabs.pool": "standard",
          "elevenlabs.limit.from": 5,
          "elevenlabs.limit.to": 4,
          "elevenlabs.limit.cause": "too_many_concurrent_requests"
        }],
        ["elevenlabs.quota.warning", { "elevenlabs.quota.used_percentage": 81 }]
      ])
    }).pipe(Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] })))
  })

  it.effect("events outside any span do nothing", () =>
    Effect.gen(function*() {
      yield* Spans.retryEvent({ attempt: 1, reason: "Timeout", delayMs: 5 })
    }))

  it.effect("a failed call records the error reason and still ends its span", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const exit = yield* Effect.fail("boom").pipe(
        Effect.tapError(() => Spans.annotateCall({ outcome: "error", errorReason: "ServerError" })),
        Spans.withCallSpan("speechToText.convert", { pool: "stt" }),
        Effect.exit
      )
      assert.strictEqual(exit._tag, "Failure")
      const [span] = exporter.getFinishedSpans()
      assert.strictEqual(span!.name, "elevenlabs.speechToText.convert")
      assert.strictEqual(span!.attributes["elevenlabs.error_reason"], "ServerError")
      assert.strictEqual(span!.status.code, 2) // ERROR
    }).pipe(Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] })))
  })
})
