import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Clock, Duration, Effect, Exit, Fiber, Layer, Metric, PubSub, Redacted, Scope } from "effect"
import { HttpClient, HttpClientError } from "effect/http"
import { TestClock, TestConsole } from "effect/testing"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import type { ResilientOptions } from "../../src/resilience/ResilientOptions.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import * as Health from "../../src/telemetry/Health.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as Otel from "../../src/telemetry/Otel.ts"
import * as Prometheus from "../../src/telemetry/Prometheus.ts"
import * as Redact from "../../src/telemetry/Redact.ts"
import * as ResilientTelemetry from "../../src/telemetry/ResilientTelemetry.ts"
import { runVirtual } from "../utils/virtualTime.ts"
import { key, parseExposition } from "./promtool.ts"
import { get } from "./serverUrl.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const apiKey = Redacted.make("sim-key")
const flash = "eleven_flash_v2_5"
const operation = "textToSpeech.convert"

/** The `traceparent` header of each request `flakyTransport` sent, in order. */
const traceparents: Array<string | undefined> = []

/**
 * The simulator's in-process client, which switches `system_busy` off once it
 * has answered `busyAnswers` 429s: a deterministic "fails twice, then succeeds".
 */
const flakyTransport = (sim: Simulator.Options, busyAnswers: number) =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function*() {
      const simulator = yield* Simulator.Simulator
      const inner = yield* InProcess.makeHttpClient(simulator)
      let busy = 0
      return HttpClient.tap(inner, (response) => {
        traceparents.push(response.request.headers["traceparent"])
        return response.status === 429 && ++busy === busyAnswers ? simulator.setFaults({ systemBusy: 0 }) : Effect.void
      })
    })
  ).pipe(Layer.provideMerge(Simulator.layer(sim)))

const stackOver = <E, R>(
  transport: Layer.Layer<HttpClient.HttpClient | Simulator.Simulator, E, R>,
  options: Omit<ResilientOptions, "apiKey">
) => Resilient.layer({ apiKey, ...options }).pipe(Layer.provideMerge(transport))

const tts = (text: string) => Client.ElevenLabs.use((c) => c.textToSpeech.convert(voice, { text, modelId: flash }))

const childrenOf = (spans: ReadonlyArray<ReadableSpan>, parent: ReadableSpan) =>
  spans.filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId)

/** Checks one attribute: present and right. */
const expectAttribute = (span: ReadableSpan, name: string, check: (value: unknown) => void) => {
  const value = span.attributes[name]
  assert.isDefined(value, `${span.name}: ${name} is missing`)
  check(value)
}
const equals = (expected: unknown) => (value: unknown) => assert.deepStrictEqual(value, expected)

/** A series as `/metrics` shows it. */
const scraped = (name: string, labels: Record<string, string>) =>
  Effect.map(Prometheus.exposition, (text) => parseExposition(text).get(key(name, labels)))

describe("ResilientTelemetry spans", () => {
  it.effect("a queued call retried twice: one call span, three attempt spans, the issue's attributes and retry events", () => {
    const exporter = new InMemorySpanExporter()
    traceparents.length = 0
    return Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const { retries } = yield* Resilient.Resilience
      const scheduled = yield* PubSub.subscribe(retries)
      // A holds the only Flash permit for ~3 s of generation...
      const holder = yield* Effect.forkChild(tts("h".repeat(3000)))
      for (let i = 0; i < 100 && (yield* sim.stats).pools.flash.inFlight === 0; i++) yield* TestClock.adjust(1)
      assert.strictEqual((yield* sim.stats).pools.flash.inFlight, 1)
      // ...so B queues behind it, then meets two system_busy answers and succeeds on its third attempt.
      yield* sim.setFaults({ systemBusy: 1 })
      const result = yield* runVirtual(
        tts("queued, then busy twice").pipe(Resilient.withCallOptions({ lane: "interactive" }))
      )
      yield* Fiber.join(holder)
      const stats = yield* sim.stats
      assert.strictEqual(stats.byDetailStatus["system_busy"], 2)
      const events = yield* PubSub.takeAll(scheduled)
      assert.deepStrictEqual(events.map((e) => [e.attempt, e.reason]), [[2, "SystemBusy"], [3, "SystemBusy"]])

      const spans = exporter.getFinishedSpans()
      const calls = spans.filter((s) => s.name === "elevenlabs.textToSpeech.convert")
      assert.strictEqual(calls.length, 2)
      const call = calls.find((s) => s.attributes["elevenlabs.characters"] === 23)!
      assert.isDefined(call)
      assert.isUndefined(call.parentSpanContext, "the call span is a root here")
      const attempts = childrenOf(spans, call).filter((s) => s.name === "elevenlabs.textToSpeech.convert.attempt")
      assert.strictEqual(attempts.length, 3)
      assert.deepStrictEqual(
        childrenOf(spans, call).map((s) => s.name),
        attempts.map((s) => s.name),
        "only attempts under the call"
      )
      // Attempts are sequential: each starts after the previous ended.
      for (let i = 1; i < attempts.length; i++) {
        assert.isTrue(hrMillis(attempts[i]!.startTime) >= hrMillis(attempts[i - 1]!.endTime))
      }

      // The call span.
      assert.strictEqual(call.attributes["elevenlabs.operation"], operation)
      assert.strictEqual(call.attributes["elevenlabs.model"], flash)
      assert.strictEqual(call.attributes["elevenlabs.voice_id"], voice)
      assert.strictEqual(call.attributes["elevenlabs.characters"], 23)
      assert.strictEqual(call.attributes["elevenlabs.lane"], "interactive")
      assert.strictEqual(call.attributes["elevenlabs.pool"], "flash")
      assert.strictEqual(call.attributes["elevenlabs.outcome"], "success")
      assert.strictEqual(call.attributes["elevenlabs.fallback_used"], false)
      assert.strictEqual(call.attributes["elevenlabs.coalesced"], false)
      expectAttribute(call, "elevenlabs.attempts", equals(3))
      // B waited in our queue for A's ~3 s (Flash: 75 ms to first byte + 1 ms per character, +/-20 %).
      expectAttribute(call, "elevenlabs.queue_wait_ms", (v) => {
        assert.isNumber(v)
        assert.isAbove(v as number, 2000)
        assert.isBelow(v as number, 4500)
      })
      // Its retry events, one per scheduled retry, with the delays the policy chose.
      const retryEvents = call.events.filter((e) => e.name === "elevenlabs.retry")
      assert.deepStrictEqual(
        retryEvents.map((e) => e.attributes),
        events.map((e) => ({
          "elevenlabs.attempt": e.attempt - 1,
          "elevenlabs.error_reason": "SystemBusy",
          "elevenlabs.retry_delay_ms": Duration.toMillis(e.delay)
        }))
      )

      // The attempt spans.
      const delays = [undefined, ...events.map((e) => Duration.toMillis(e.delay))]
      attempts.forEach((span, i) => {
        assert.strictEqual(span.attributes["http.request.method"], "POST")
        expectAttribute(span, "url.template", equals("/v1/text-to-speech/{voice_id}"))
        expectAttribute(span, "server.address", equals("api.elevenlabs.io"))
        expectAttribute(span, "server.port", equals(443))
        expectAttribute(span, "elevenlabs.attempt", equals(i + 1))
        expectAttribute(span, "http.response.status_code", equals(i < 2 ? 429 : 200))
        if (i < 2) {
          expectAttribute(span, "elevenlabs.detail_status", equals("system_busy"))
          expectAttribute(span, "error.type", equals("SystemBusy"))
        } else {
          expectAttribute(span, "elevenlabs.request_id", equals(result.meta.requestId))
          assert.isUndefined(span.attributes["error.type"])
        }
        if (delays[i] !== undefined) expectAttribute(span, "elevenlabs.retry_delay_ms", equals(delays[i]))
        // The voice id and the text stay out of the attempt's URL template.
        assert.notInclude(String(span.attributes["url.template"] ?? ""), voice)
        // The attempt span is the request's client span: the transport makes none under it.
        assert.deepStrictEqual(childrenOf(spans, span), [])
      })
      // Each call's request carried the trace context of its own attempt span: the holder's one and B's three
      // (the quota guard's subscription read, in no span, carried none).
      const allAttempts = spans.filter((s) => s.name === "elevenlabs.textToSpeech.convert.attempt")
      assert.strictEqual(allAttempts.length, 4)
      assert.sameMembers(
        traceparents.filter((t) => t !== undefined),
        allAttempts.map((s) => `00-${s.spanContext().traceId}-${s.spanContext().spanId}-01`)
      )
    }).pipe(
      Effect.provide(
        stackOver(flakyTransport({ seed: 11, plan: "pro", apiKeys: [{ key: "sim-key", limits: { flash: 1 } }] }, 2), {
          limiter: { plan: { flash: 1 } }
        })
      ),
      Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
    )
  })
})

describe("ResilientTelemetry read-only calls", () => {
  it.effect("a read-only call's span carries its outcome and error reason, and no metric counts it", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const client = yield* Client.ElevenLabs
      yield* runVirtual(client.user.get())
      yield* Effect.flip(runVirtual(client.voices.get("AAAAAAAAAAAAAAAAAAAA")))
      const span = (name: string) => exporter.getFinishedSpans().find((s) => s.name === name)!
      expectAttribute(span("elevenlabs.user.get"), "elevenlabs.outcome", equals("success"))
      expectAttribute(span("elevenlabs.voices.get"), "elevenlabs.outcome", equals("error"))
      expectAttribute(span("elevenlabs.voices.get"), "elevenlabs.error_reason", equals("NotFound"))
      assert.notInclude(yield* Prometheus.exposition, "operation=\"user.get\"")
    }).pipe(
      Effect.provide(stackOver(InProcess.layerSimulated({ seed: 12, plan: "pro" }), { quota: false })),
      Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] })),
      Effect.provideService(Metric.MetricRegistry, new Map())
    )
  })
})

describe("ResilientTelemetry metrics", () => {
  const standard = "eleven_multilingual_v2"

  it.effect("usage counts what was generated: coalesced joiners add no characters and no audio seconds", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const same = Client.ElevenLabs.use((c) =>
        c.textToSpeech.convert(voice, { text: "the same words, three times", modelId: standard })
      )
      const results = yield* runVirtual(Effect.all([same, same, same], { concurrency: "unbounded" }))
      assert.strictEqual(results.filter((r) => r.meta.coalesced === true).length, 2)
      const chars = yield* Metric.value(Metric.withAttributes(Metrics.charactersGenerated, { model: standard }))
      assert.deepStrictEqual([chars.count, chars.sum], [1, (yield* sim.stats).creditsCharged])
      const seconds = yield* Metric.value(Metric.withAttributes(Metrics.audioDurationSeconds, { model: standard }))
      assert.strictEqual(seconds.count, 1)
      const requests = yield* Metric.value(Metric.withAttributes(Metrics.requestsTotal, {
        operation,
        pool: "standard",
        model: standard,
        status: "success"
      }))
      assert.strictEqual(requests.count, 3, "each logical call still counts as a request")
    }).pipe(
      Effect.provide(stackOver(InProcess.layerSimulated({ seed: 22, plan: "pro" }), { quota: false })),
      Effect.provideService(Metric.MetricRegistry, new Map())
    ))
  it.effect("after a scripted run with faults, the metrics equal what the simulator counted", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const call = (voiceId: string, text: string) =>
        Client.ElevenLabs.use((c) => c.textToSpeech.convert(voiceId, { text, modelId: standard })).pipe(
          Effect.match({ onSuccess: () => "ok", onFailure: (e) => e.reason._tag })
        )
      const texts = Array.from({ length: 40 }, (_, i) => `Line ${i}: ${"words and more words ".repeat(1 + (i % 7))}`)
      const outcomes = yield* runVirtual(
        Effect.all([
          ...texts.map((t) => call(voice, t)),
          call("AAAAAAAAAAAAAAAAAAAA", "an unknown voice"),
          call("AAAAAAAAAAAAAAAAAAAB", "another unknown voice"),
          call(voice, "   ")
        ], { concurrency: "unbounded" }),
        { stepMillis: 250 }
      )
      const stats = yield* sim.stats
      const samples = parseExposition(yield* Prometheus.exposition)
      const value = (name: string, labels: Record<string, string>) => samples.get(key(name, labels)) ?? 0
      const sumOf = (name: string, where: (k: string) => boolean = () => true) =>
        [...samples].filter(([k]) => k.startsWith(`${name}{`) && where(k)).reduce((n, [, v]) => n + v, 0)
      const labels = { operation, pool: "standard", model: standard }
      const count = (o: string) => outcomes.filter((x) => x === o).length
      const retries = sumOf(Metrics.names.retries)
      const retriesOf = (reason: string) => value(Metrics.names.retries, { reason, pool: "standard" })
      const errorsOf = (reason: string) => value(Metrics.names.errors, { reason, pool: "standard" })

      // The run exercised what it is meant to: faults, retries, failures, successes.
      assert.isAbove(count("ok"), 20)
      assert.isAbove(retries, 5)
      assert.isAbove(stats.byDetailStatus["system_busy"] ?? 0, 5)

      // Requests by status: one per logical call; each success is one 200 the simulator sent.
      assert.strictEqual(value(Metrics.names.requests, { ...labels, status: "success" }), stats.byStatus["200"])
      assert.strictEqual(value(Metrics.names.requests, { ...labels, status: "success" }), count("ok"))
      assert.strictEqual(value(Metrics.names.requests, { ...labels, status: "error" }), outcomes.length - count("ok"))
      assert.strictEqual(sumOf(Metrics.names.errors), outcomes.length - count("ok"))
      // Errors by type, against the simulator's answers: every system_busy / 5xx answer was either retried or final.
      assert.strictEqual(errorsOf("SystemBusy") + retriesOf("SystemBusy"), stats.byDetailStatus["system_busy"] ?? 0)
      const server5xx = Object.entries(stats.byStatus).filter(([s]) => s.startsWith("5")).reduce((n, [, v]) => n + v, 0)
      assert.strictEqual(errorsOf("ServerError") + retriesOf("ServerError"), server5xx)
      assert.strictEqual(errorsOf("NotFound"), stats.byStatus["404"])
      assert.strictEqual(errorsOf("NotFound"), 2)
      assert.strictEqual(errorsOf("InvalidRequest"), 1, "refused locally, never sent")
      for (const reason of ["SystemBusy", "ServerError", "NotFound", "InvalidRequest"]) {
        assert.strictEqual(errorsOf(reason), count(reason), reason)
      }
      // Retries: every request the simulator saw is a first attempt or a retry (the local refusal sent nothing).
      assert.strictEqual(stats.requests, outcomes.length - errorsOf("InvalidRequest") + retries)
      // Characters: Multilingual v2 costs one credit per character, charged on success only.
      assert.strictEqual(sumOf(`${Metrics.names.characters}_sum`), stats.creditsCharged)
      assert.strictEqual(value(`${Metrics.names.characters}_count`, { model: standard }), count("ok"))
      // The same numbers through Metric.value.
      const direct = yield* Metric.value(Metric.withAttributes(Metrics.requestsTotal, { ...labels, status: "success" }))
      assert.strictEqual(direct.count, stats.byStatus["200"])
      const chars = yield* Metric.value(Metric.withAttributes(Metrics.charactersGenerated, { model: standard }))
      assert.strictEqual(chars.sum, stats.creditsCharged)
    }).pipe(
      Effect.provide(stackOver(
        InProcess.layerSimulated({
          seed: 21,
          plan: "pro",
          faults: { systemBusy: 0.25, serverError: 0.08, serviceUnavailable: 0.04 }
        }),
        {
          limiter: { plan: "pro" },
          quota: false,
          // Never trips here, so every attempt reaches the simulator and the counts line up one to one.
          breaker: { policy: { _tag: "consecutive", failures: 1_000 } }
        }
      )),
      // A registry of its own: only this run's metrics.
      Effect.provideService(Metric.MetricRegistry, new Map())
    ))
})

describe("ResilientTelemetry health", () => {
  const served = Layer.mergeAll(Health.layerServer({ port: 0, host: "127.0.0.1" }), ResilientTelemetry.layer()).pipe(
    Layer.provideMerge(Health.HealthChecks.layer),
    Layer.provideMerge(
      stackOver(InProcess.layerSimulated({ seed: 31, plan: "pro" }), { limiter: { plan: "pro" }, budget: false })
    )
  )
  const ready = Effect.map(
    get("/ready"),
    (r) => ({ status: r.status, report: JSON.parse(r.body) as Health.ReadinessReport })
  )
  const breakerGauge = scraped(Metrics.names.breakerState, { pool: "flash" })

  it.effect("/ready over real HTTP: 503 while the Flash breaker is open (an outage), 200 again once it may probe and after it closes", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const { breaker } = yield* Resilient.Resilience
      const health = yield* get("/health")
      assert.strictEqual(health.status, 200)
      assert.strictEqual(JSON.parse(health.body).status, "alive")

      yield* runVirtual(tts("warm up: the subscription is read"))
      let r = yield* ready
      assert.strictEqual(r.status, 200, JSON.stringify(r.report))
      assert.deepStrictEqual(Object.keys(r.report.checks).sort(), [
        "elevenlabs.breaker.flash",
        "elevenlabs.breaker.music",
        "elevenlabs.breaker.standard",
        "elevenlabs.breaker.stt",
        "elevenlabs.queue.flash",
        "elevenlabs.queue.music",
        "elevenlabs.queue.standard",
        "elevenlabs.queue.stt",
        "elevenlabs.quota",
        "elevenlabs.subscription"
      ])
      assert.deepStrictEqual(r.report.checks["elevenlabs.breaker.flash"], {
        ok: true,
        details: { pool: "flash", state: "Closed" }
      })
      assert.deepStrictEqual(r.report.checks["elevenlabs.queue.flash"], {
        ok: true,
        details: { pool: "flash", depth: 0, maxDepth: 500 }
      })
      assert.strictEqual(r.report.checks["elevenlabs.quota"]!.details["exhausted"], false)
      assert.strictEqual(r.report.checks["elevenlabs.subscription"]!.ok, true)

      // The outage: every answer is a 500 until the breaker opens (5 consecutive failures).
      yield* sim.setFaults({ serverError: 1 })
      const failed = yield* runVirtual(
        Effect.forEach([1, 2, 3], (i) => Effect.flip(tts(`outage ${i}`)), { concurrency: 1 }),
        { stepMillis: 500 }
      )
      assert.strictEqual(failed.at(-1)?.reason._tag, "CircuitOpen")
      assert.strictEqual((yield* breaker!.state("flash"))._tag, "Open")
      r = yield* ready
      assert.strictEqual(r.status, 503)
      assert.strictEqual(r.report.status, "not_ready")
      assert.deepStrictEqual(r.report.checks["elevenlabs.breaker.flash"], {
        ok: false,
        details: { pool: "flash", state: "Open" }
      })
      assert.strictEqual(yield* breakerGauge, 2)
      assert.strictEqual(r.report.checks["elevenlabs.breaker.standard"]!.ok, true, "only the Flash pool is out")
      assert.strictEqual(r.report.checks["elevenlabs.quota"]!.ok, true)

      // The service recovers; the circuit stays open for its 60 s.
      yield* sim.setFaults({ serverError: 0 })
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual((yield* ready).status, 503)
      // Its open time is over: the next call probes, so the process is ready to take it.
      yield* TestClock.adjust("31 seconds")
      r = yield* ready
      assert.strictEqual(r.status, 200, JSON.stringify(r.report))
      assert.deepStrictEqual(r.report.checks["elevenlabs.breaker.flash"], {
        ok: true,
        details: { pool: "flash", state: "HalfOpen" }
      })
      // With no call yet, the gauge reads half-open too (Effect's breaker moves lazily), so its alert stops.
      assert.strictEqual(yield* breakerGauge, 1)
      // A successful probe closes it.
      yield* runVirtual(tts("after the outage"))
      assert.strictEqual((yield* breaker!.state("flash"))._tag, "Closed")
      r = yield* ready
      assert.strictEqual(r.status, 200)
      assert.deepStrictEqual(r.report.checks["elevenlabs.breaker.flash"], {
        ok: true,
        details: { pool: "flash", state: "Closed" }
      })
      assert.strictEqual(yield* breakerGauge, 0)
      assert.strictEqual((yield* get("/health")).status, 200)
    }).pipe(Effect.provide(served), Effect.provideService(Metric.MetricRegistry, new Map())))
})

describe("ResilientTelemetry checks", () => {
  // The account's Flash limit is 1 (the limiter learns it from the headers).
  const sim = { seed: 41, plan: "pro", apiKeys: [{ key: "sim-key", limits: { flash: 1 } }] } as const
  /** The simulator's client, with a switch that makes the subscription endpoint unreachable. */
  const subscriptionDown = { value: false }
  const transport = Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function*() {
      const inner = yield* InProcess.makeHttpClient(yield* Simulator.Simulator)
      return HttpClient.make((request, url) =>
        subscriptionDown.value && url.pathname === "/v1/user/subscription"
          ? Effect.fail(
            new HttpClientError.HttpClientError({
              reason: new HttpClientError.TransportError({ request, description: "connection refused" })
            })
          )
          : inner.execute(request)
      )
    })
  ).pipe(Layer.provideMerge(Simulator.layer(sim)))
  const checksStack = (options: Omit<ResilientOptions, "apiKey">) =>
    Layer.merge(stackOver(transport, options), Health.HealthChecks.layer)

  it.effect("queue depth at the alert depth, an exhausted quota and a stale subscription each make the stack not ready", () =>
    Effect.gen(function*() {
      const checks = yield* Health.HealthChecks
      const { quota } = yield* Resilient.Resilience
      yield* ResilientTelemetry.registerHealthChecks({ queueAlertDepth: 3, pools: ["flash"] })
      assert.deepStrictEqual([...(yield* checks.names)].sort(), [
        "elevenlabs.breaker.flash",
        "elevenlabs.queue.flash",
        "elevenlabs.quota",
        "elevenlabs.subscription"
      ])
      yield* runVirtual(tts("warm up"))
      assert.strictEqual((yield* checks.run).status, "ready")

      // One permit, one call on the wire and three waiting: the queue is at its alert depth.
      const calls = yield* Effect.forkChild(
        Effect.all(Array.from({ length: 4 }, (_, i) => tts(`q ${i} `.repeat(200))), { concurrency: "unbounded" })
      )
      const { keyId, limiter } = yield* Resilient.Resilience
      for (let i = 0; i < 50 && (yield* limiter.snapshot(keyId, "flash")).queueDepth < 3; i++) {
        yield* TestClock.adjust(1)
      }
      let report = yield* checks.run
      assert.strictEqual(report.status, "not_ready")
      assert.deepStrictEqual(report.checks["elevenlabs.queue.flash"], {
        ok: false,
        details: { pool: "flash", depth: 3, maxDepth: 3 }
      })
      // The gauge (and so its alert) sees the same queue, though no permit was granted or released since.
      yield* Effect.yieldNow
      assert.strictEqual(yield* scraped(Metrics.names.queueDepth, { pool: "flash", lane: "default" }), 3)
      yield* runVirtual(Fiber.join(calls))
      assert.strictEqual(yield* scraped(Metrics.names.queueDepth, { pool: "flash", lane: "default" }), 0)
      assert.strictEqual((yield* checks.run).status, "ready")

      // The account is spent (what a quota_exceeded answer does): not ready until the reset.
      yield* quota!.markExhausted({ remaining: 0 })
      report = yield* checks.run
      assert.strictEqual(report.checks["elevenlabs.quota"]!.ok, false)
      assert.strictEqual(report.checks["elevenlabs.quota"]!.details["exhausted"], true)
      assert.strictEqual(report.checks["elevenlabs.queue.flash"]!.ok, true)

      // The subscription cannot be read any more: stale after 2 x 60 s, with the last error.
      subscriptionDown.value = true
      const fetchedAt = (yield* quota!.status).fetchedAt!
      const untilAge = (ms: number) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => TestClock.adjust(fetchedAt + ms - now))
      yield* untilAge(120_000)
      assert.strictEqual((yield* checks.run).checks["elevenlabs.subscription"]!.ok, true)
      yield* untilAge(120_001)
      const stale = (yield* checks.run).checks["elevenlabs.subscription"]!
      assert.strictEqual(stale.ok, false)
      assert.isAbove(stale.details["ageMillis"] as number, 120_000)
      assert.strictEqual(stale.details["maxAgeMillis"], 120_000)
      assert.isString(stale.details["lastRefreshError"])
      // It reads again once the service answers.
      subscriptionDown.value = false
      const next = (yield* quota!.status).nextRefreshAt
      yield* TestClock.adjust(next - (yield* Clock.currentTimeMillis))
      // The read itself goes through the in-process HTTP face: give it a few steps.
      for (let i = 0; i < 100 && (yield* quota!.status).fetchedAt === fetchedAt; i++) yield* TestClock.adjust(10)
      assert.strictEqual((yield* checks.run).checks["elevenlabs.subscription"]!.ok, true)
    }).pipe(Effect.provide(checksStack({ limiter: { plan: { flash: 1 } } }))))

  it.effect("a stack without breaker or quota registers only the queue checks; the registrations end with their scope", () =>
    Effect.gen(function*() {
      const checks = yield* Health.HealthChecks
      const scope = yield* Scope.make()
      yield* ResilientTelemetry.registerHealthChecks({ prefix: "tts" }).pipe(Scope.provide(scope))
      assert.deepStrictEqual([...(yield* checks.names)].sort(), [
        "tts.queue.flash",
        "tts.queue.music",
        "tts.queue.standard",
        "tts.queue.stt"
      ])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* checks.names, [])
    }).pipe(Effect.provide(checksStack({ breaker: false, quota: false }))))

  it.effect("subscriptionMaxAge: false leaves the subscription check out", () =>
    Effect.gen(function*() {
      const resilience = yield* Resilient.Resilience
      const names = ResilientTelemetry.checksOf(resilience, { subscriptionMaxAge: false, pools: [] }).map(([n]) => n)
      assert.deepStrictEqual(names, ["elevenlabs.quota"])
      const aged = ResilientTelemetry.checksOf(resilience, { subscriptionMaxAge: "5 minutes", pools: [] })
      const subscription = aged.find(([n]) => n === "elevenlabs.subscription")![1]
      yield* runVirtual(tts("warm up"))
      assert.strictEqual((yield* subscription).details["maxAgeMillis"], 300_000)
    }).pipe(Effect.provide(checksStack({}))))
})

describe("ResilientTelemetry.layerObserved", () => {
  it.effect("one layer: the client, JSON logs (the stack's own background logs too, key scrubbed), HealthChecks with the stack's checks", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const checks = yield* Health.HealthChecks
      assert.deepStrictEqual((yield* checks.names).filter((n) => n.startsWith("elevenlabs.breaker")).length, 4)
      yield* runVirtual(tts("hello"))
      let report = yield* checks.run
      assert.strictEqual(report.status, "ready")
      // 2 x the quota's refresh interval.
      assert.strictEqual(report.checks["elevenlabs.subscription"]!.details["maxAgeMillis"], 60_000)
      yield* sim.setFaults({ serverError: 1 })
      yield* runVirtual(Effect.forEach([1, 2, 3], (i) => Effect.flip(tts(`outage ${i}`)), { concurrency: 1 }), {
        stepMillis: 1000
      })
      report = yield* checks.run
      assert.strictEqual(report.checks["elevenlabs.breaker.flash"]!.ok, false)
      // A careless log of the key itself is scrubbed: layerObserved gives the key to the logger's redact list.
      yield* Effect.logInfo("careless", Redacted.value(apiKey))
      const raw = (yield* TestConsole.logLines).map(String)
      assert.deepStrictEqual(Redact.findSecret(raw, apiKey), [])
      assert.isTrue(raw.some((l) => l.includes("careless") && l.includes("<redacted>")))
      const lines = raw.map((l) => JSON.parse(l))
      // Logged by the breaker's transition fiber, which the stack forked while it was built.
      const transition = lines.find((l) =>
        l.message?.[0] === "elevenlabs circuit breaker" || l.message === "elevenlabs circuit breaker"
      )
      assert.isDefined(transition, JSON.stringify(lines.map((l) => l.message)))
      assert.strictEqual(transition.level, "warn")
      assert.isTrue(lines.some((l) => JSON.stringify(l.message).includes("elevenlabs retry")))
    }).pipe(
      Effect.provide(
        ResilientTelemetry.layerObserved({
          apiKey,
          limiter: { plan: "pro" },
          quota: { refreshInterval: "30 seconds" },
          // Debug: the per-retry log ("elevenlabs retry") is a debug line.
          telemetry: { otlp: false, logs: { minimumLevel: "Debug" } }
        }).pipe(Layer.provideMerge(InProcess.layerSimulated({ seed: 61, plan: "pro" })))
      )
    ))
})

const hrMillis = ([s, ns]: readonly [number, number]) => s * 1000 + ns / 1e6
