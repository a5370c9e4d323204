import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as Prometheus from "../../src/telemetry/Prometheus.ts"
import { key, parseExposition, promtool } from "./promtool.ts"
import { get } from "./serverUrl.ts"

const model = "eleven_multilingual_v2"
const flashModel = "eleven_flash_v2_5"

/** A scripted set of values; the expected samples below are computed by hand from it. */
const record = Effect.gen(function*() {
  const op = "textToSpeech.convert"
  for (const d of [0.04, 0.3, 1.2, 2.5]) {
    yield* Metrics.recordRequest({ operation: op, pool: "standard", model, status: "success", durationSeconds: d })
  }
  yield* Metrics.recordRequest({ operation: op, pool: "flash", model: flashModel, status: "error", durationSeconds: 7 })
  yield* Metrics.recordError({ reason: "SystemBusy", pool: "flash" })
  yield* Metrics.recordRetry({ reason: "SystemBusy", pool: "flash" })
  yield* Metrics.recordRetry({ reason: "SystemBusy", pool: "flash" })
  yield* Metrics.setConcurrent("standard", 3)
  yield* Metrics.setConcurrent("standard", 2)
  yield* Metrics.setQueueDepth("standard", "interactive", 7)
  yield* Metrics.setQueueDepth("standard", "batch", 41)
  yield* Metrics.setBreakerState("flash", Metrics.breakerStateValue("Open"))
  yield* Metrics.recordCharacters(model, 120)
  yield* Metrics.recordCharacters(model, 3000)
  yield* Metrics.recordAudioSeconds(model, 9.5)
  yield* Metrics.setQuotaUsed(93.5)
})

const scrape = get("/metrics")

describe("Prometheus", () => {
  it.live("serves the recorded values over real HTTP with the production-deployment guide's names, and promtool accepts them", () =>
    Effect.gen(function*() {
      yield* record
      const { body, status, type } = yield* scrape
      assert.strictEqual(status, 200)
      assert.strictEqual(type, Prometheus.contentType)
      const s = parseExposition(body)
      const std = { operation: "textToSpeech.convert", pool: "standard", model }
      assert.strictEqual(s.get(key("elevenlabs_requests_total", { ...std, status: "success" })), 4)
      assert.strictEqual(
        s.get(
          key("elevenlabs_requests_total", {
            operation: "textToSpeech.convert",
            pool: "flash",
            model: flashModel,
            status: "error"
          })
        ),
        1
      )
      // buckets are cumulative: 0.04 | 0.3 | 1.2 | 2.5
      assert.strictEqual(s.get(key("elevenlabs_requests_duration_seconds_bucket", { ...std, le: "0.05" })), 1)
      assert.strictEqual(s.get(key("elevenlabs_requests_duration_seconds_bucket", { ...std, le: "0.5" })), 2)
      assert.strictEqual(s.get(key("elevenlabs_requests_duration_seconds_bucket", { ...std, le: "2" })), 3)
      assert.strictEqual(s.get(key("elevenlabs_requests_duration_seconds_bucket", { ...std, le: "+Inf" })), 4)
      assert.strictEqual(s.get(key("elevenlabs_requests_duration_seconds_count", std)), 4)
      assert.closeTo(s.get(key("elevenlabs_requests_duration_seconds_sum", std))!, 4.04, 1e-9)
      assert.strictEqual(s.get(key("elevenlabs_errors_total", { reason: "SystemBusy", pool: "flash" })), 1)
      assert.strictEqual(s.get(key("elevenlabs_retries_total", { reason: "SystemBusy", pool: "flash" })), 2)
      assert.strictEqual(s.get(key("elevenlabs_concurrent_requests", { pool: "standard" })), 2)
      assert.strictEqual(s.get(key("elevenlabs_queue_depth", { pool: "standard", lane: "interactive" })), 7)
      assert.strictEqual(s.get(key("elevenlabs_queue_depth", { pool: "standard", lane: "batch" })), 41)
      assert.strictEqual(s.get(key("elevenlabs_circuit_breaker_state", { pool: "flash" })), 2)
      assert.strictEqual(s.get(key("elevenlabs_characters_generated_sum", { model })), 3120)
      assert.strictEqual(s.get(key("elevenlabs_characters_generated_count", { model })), 2)
      assert.strictEqual(s.get(key("elevenlabs_characters_generated_bucket", { model, le: "250" })), 1)
      assert.strictEqual(s.get(key("elevenlabs_audio_duration_seconds_sum", { model })), 9.5)
      assert.strictEqual(s.get(key("elevenlabs_quota_used_percentage")), 93.5)

      // every family is one of the guide's names, each with its TYPE line
      const families = [...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, n, t]) => [n!, t!] as const)
      assert.deepStrictEqual(new Set(families.map(([n]) => n)), new Set(Metrics.metricNames))
      assert.deepStrictEqual(Object.fromEntries(families), {
        elevenlabs_requests_total: "counter",
        elevenlabs_requests_duration_seconds: "histogram",
        elevenlabs_concurrent_requests: "gauge",
        elevenlabs_queue_depth: "gauge",
        elevenlabs_errors_total: "counter",
        elevenlabs_retries_total: "counter",
        elevenlabs_circuit_breaker_state: "gauge",
        elevenlabs_characters_generated: "histogram",
        elevenlabs_audio_duration_seconds: "histogram",
        elevenlabs_quota_used_percentage: "gauge"
      })

      const lint = promtool(["check", "metrics"], body)
      assert.strictEqual(lint.code, 0, lint.out)
    }).pipe(Effect.provide(Prometheus.layerServer({ port: 0, host: "127.0.0.1" }))))

  it.live("promtool check metrics is a real check: it rejects a counter without _total", () =>
    Effect.sync(() => {
      const bad = "# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n"
      assert.notStrictEqual(promtool(["check", "metrics"], bad).code, 0)
    }))

  it.effect("clamps bad values instead of exposing NaN or negatives", () =>
    Effect.gen(function*() {
      yield* Metrics.setQuotaUsed(140)
      yield* Metrics.setConcurrent("music", -3)
      yield* Metrics.recordAudioSeconds("m-nan", Number.NaN)
      const s = parseExposition(yield* Prometheus.exposition)
      assert.strictEqual(s.get(key("elevenlabs_quota_used_percentage")), 100)
      assert.strictEqual(s.get(key("elevenlabs_concurrent_requests", { pool: "music" })), 0)
      assert.strictEqual(s.get(key("elevenlabs_audio_duration_seconds_sum", { model: "m-nan" })), 0)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))
})
