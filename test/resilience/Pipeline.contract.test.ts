/**
 * The contract of the one request pipeline, run against both of its doors:
 *
 * - `Resilient`: this library's client over the in-process simulator;
 * - `WithResilience`: the official `@elevenlabs/elevenlabs-js` SDK (built with
 *   `maxRetries: 0`) wrapped by the SDK wrapper, over the simulator's real
 *   HTTP server on a free loopback port.
 *
 * The same scenarios, the same expectations: any drift between the doors
 * fails here. Real time (`it.live`) with short simulator latencies.
 */
import { assert, describe, it } from "@effect/vitest"
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Clock, Context, type Duration, Effect, Exit, Fiber, Layer, Redacted, type Scope } from "effect"
import { HttpClient } from "effect/http"
import * as Client from "../../src/client/ElevenLabs.ts"
import { type ElevenLabsError, isElevenLabsError } from "../../src/client/Errors.ts"
import type * as Pipeline from "../../src/resilience/Pipeline.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as ResilientFetch from "../../src/resilience/ResilientFetch.ts"
import type { PolicyOptions } from "../../src/resilience/ResilientOptions.ts"
import * as WithResilience from "../../src/resilience/WithResilience.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as Otel from "../../src/telemetry/Otel.ts"
import * as Prometheus from "../../src/telemetry/Prometheus.ts"
import { key, parseExposition } from "../telemetry/promtool.ts"
import { startRedisServer } from "../utils/redisServer.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const flash = "eleven_flash_v2_5"

/** Short latencies, so that real time stays fast. */
const latency: Simulator.Options["latency"] = {
  standard: { ttfbMs: 10, msPerUnit: 0.1, jitter: 0 },
  v3: { ttfbMs: 10, msPerUnit: 0.1, jitter: 0 },
  flash: { ttfbMs: 15, msPerUnit: 0.1, jitter: 0 },
  stt: { ttfbMs: 5, msPerUnit: 1, jitter: 0 },
  music: { ttfbMs: 5, msPerUnit: 1, jitter: 0 }
}
/** Flash calls that take a second to their first byte. */
const slowFlash: Simulator.Options["latency"] = { ...latency, flash: { ttfbMs: 1000, msPerUnit: 0, jitter: 0 } }

/** Short backoffs so that retries in real time keep the test fast. */
const fastRetry = {
  exponential: { base: "5 millis", cap: "40 millis", jitter: { _tag: "None" } as const },
  linear: { step: "5 millis" },
  requeue: { step: "1 millis" }
} as const

// ============================================================================
// The two doors
// ============================================================================

/** The policy options both doors take. */
type DoorOptions = Omit<PolicyOptions, "cache">

/** A simulator as a door reaches it. */
interface Backend {
  readonly simulator: Simulator.Service
  /** The simulator's record, as the door's transport sees the server. */
  readonly stats: Effect.Effect<Simulator.Stats>
  /** The HTTP server's base URL (the SDK door only). */
  readonly url: string
}

/** One resilient stack, seen through its door. */
interface Stack {
  /** A Flash TTS convert of `text` (identical texts are identical calls), its audio bytes. */
  readonly tts: (
    text: string,
    call?: { readonly deadline?: Duration.Input | undefined }
  ) => Effect.Effect<number, ElevenLabsError>
  /** A read-only call: the voices list. */
  readonly readOnly: Effect.Effect<unknown, ElevenLabsError>
  readonly policies: Omit<Pipeline.Policies, "cache">
  /** What the attempt spans name as the server. */
  readonly server: { readonly address: string; readonly port: number }
}

interface Door {
  readonly name: string
  /** The stack's telemetry is the test's (its metrics registry and tracer); `false`: the stack runs in its own runtime. */
  readonly sharesTelemetry: boolean
  readonly backend: (sim: Simulator.Options) => Effect.Effect<Backend, never, Scope.Scope>
  readonly stack: (backend: Backend, options: DoorOptions) => Effect.Effect<Stack, ElevenLabsError, Scope.Scope>
}

const resilientDoor: Door = {
  name: "Resilient over the in-process simulator",
  sharesTelemetry: true,
  backend: (sim) =>
    Effect.map(Layer.build(Simulator.layer(sim)), (context) => {
      const simulator = Context.get(context, Simulator.Simulator)
      return { simulator, stats: simulator.stats, url: InProcess.defaultBaseUrl }
    }),
  stack: (backend, options) =>
    Effect.gen(function*() {
      const transport = Layer.effect(HttpClient.HttpClient, InProcess.makeHttpClient(backend.simulator))
      const context = yield* Layer.build(
        Resilient.layer({ apiKey: Redacted.make("sim-key"), ...options }).pipe(Layer.provide(transport))
      )
      const client = Context.get(context, Client.ElevenLabs)
      return {
        tts: (text, call = {}) =>
          client.textToSpeech.convert(voice, { text, modelId: flash }).pipe(
            Resilient.withCallOptions({ deadline: call.deadline }),
            Effect.map((r) => r.audio.byteLength)
          ),
        readOnly: client.voices.list(),
        policies: Context.get(context, Resilient.Resilience),
        server: { address: "api.elevenlabs.io", port: 443 }
      } satisfies Stack
    })
}

const sdkDoor: Door = {
  name: "the official SDK through WithResilience over the simulator's HTTP server",
  sharesTelemetry: true,
  backend: (sim) =>
    Effect.map(Effect.orDie(Server.serve({ port: 0, ...sim })), ({ simulator, url }) => ({
      simulator,
      url,
      stats: Effect.promise(() => fetch(`${url}/_simulator/stats`).then((r) => r.json() as Promise<Simulator.Stats>))
    })),
  stack: (backend, options) =>
    Effect.gen(function*() {
      const sdk = new ElevenLabsClient({ apiKey: "sim-key", baseUrl: backend.url, maxRetries: 0 })
      const context = yield* Layer.build(WithResilience.layer({
        apiKey: "sim-key",
        baseUrl: backend.url,
        ...options,
        subscription: options.quota === false ? undefined : () => sdk.user.subscription.get()
      }))
      const url = new URL(backend.url)
      return {
        tts: (text, call = {}) =>
          Effect.tryPromise((signal) =>
            sdk.textToSpeech.convert(voice, { text, modelId: flash }, { abortSignal: signal }).withRawResponse()
          ).pipe(
            WithResilience.withResilience({
              operation: "textToSpeech.convert",
              model: flash,
              characters: text.length,
              coalesceKey: `${voice}/${flash}/${text}`,
              deadline: call.deadline
            }),
            Effect.flatMap((r) => Effect.promise(() => new Response(r.data).arrayBuffer())),
            Effect.map((bytes) => bytes.byteLength),
            Effect.provideContext(context)
          ),
        readOnly: Effect.tryPromise((signal) => sdk.voices.getAll(undefined, { abortSignal: signal })).pipe(
          WithResilience.withResilience({ operation: "voices.list" }),
          Effect.provideContext(context)
        ),
        policies: Context.get(context, WithResilience.SdkResilience),
        server: { address: url.hostname, port: Number(url.port) }
      } satisfies Stack
    })
}

/** An SDK rejection as this library's error: its own refusal (the `cause`), or the answer classified. */
const sdkFailure = (operation: string, e: unknown): ElevenLabsError => {
  const cause = (e as { readonly cause?: unknown }).cause
  return isElevenLabsError(cause) ? cause : WithResilience.toElevenLabsError(operation, e)
}

const fetchDoor: Door = {
  name: "the official SDK with ResilientFetch over the simulator's HTTP server",
  sharesTelemetry: false,
  backend: sdkDoor.backend,
  stack: (backend, options) =>
    Effect.gen(function*() {
      let sdk: ElevenLabsClient | undefined
      const f = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ResilientFetch.make({
            baseUrl: backend.url,
            ...options,
            subscription: options.quota === false ? undefined : () => sdk!.user.subscription.get()
          })
        ),
        (f) => Effect.promise(() => f.close())
      )
      sdk = new ElevenLabsClient({ apiKey: "sim-key", baseUrl: backend.url, maxRetries: 0, fetch: f })
      const client = sdk
      const url = new URL(backend.url)
      return {
        tts: (text, call = {}) =>
          Effect.tryPromise({
            try: (signal) =>
              client.textToSpeech.convert(voice, { text, modelId: flash }, {
                abortSignal: signal,
                ...(call.deadline === undefined
                  ? {}
                  : { headers: { [ResilientFetch.deadlineHeader]: String(call.deadline) } })
              }).then((stream) => new Response(stream).arrayBuffer()),
            catch: (e) => sdkFailure("textToSpeech.convert", e)
          }).pipe(Effect.map((bytes) => bytes.byteLength)),
        readOnly: Effect.tryPromise({
          try: (signal) => client.voices.getAll(undefined, { abortSignal: signal }),
          catch: (e) => sdkFailure("voices.list", e)
        }),
        policies: yield* Effect.promise(() => f.policies("sim-key")),
        server: { address: url.hostname, port: Number(url.port) }
      } satisfies Stack
    })
}

// ============================================================================
// Helpers
// ============================================================================

/** "ok" or the reason tag of the ElevenLabsError. */
const outcome = <A, R>(self: Effect.Effect<A, ElevenLabsError, R>) =>
  Effect.match(self, { onSuccess: () => "ok", onFailure: (e) => e.reason._tag })

/** Polls (real time) until `done` holds; fails the test after `tries`. */
const until = (done: Effect.Effect<boolean>, what: string, tries = 400) =>
  Effect.gen(function*() {
    for (let i = 0; i < tries; i++) {
      if (yield* done) return
      yield* Effect.sleep("5 millis")
    }
    assert.fail(`timed out waiting for ${what}`)
  })

/** A series as `/metrics` shows it. */
const scraped = (name: string, labels: Record<string, string>) =>
  Effect.map(Prometheus.exposition, (text) => parseExposition(text).get(key(name, labels)))

const childrenOf = (spans: ReadonlyArray<ReadableSpan>, parent: ReadableSpan) =>
  spans.filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId)

// ============================================================================
// The contract
// ============================================================================

describe.each([resilientDoor, sdkDoor, fetchDoor])("the pipeline's contract: $name", (door) => {
  it.live("a burst of 200 Flash converts on creator: every call succeeds, no concurrency 429 reaches the server", () =>
    Effect.gen(function*() {
      const backend = yield* door.backend({ seed: 3, plan: "creator", latency })
      const stack = yield* door.stack(backend, { limiter: { plan: "creator" }, quota: false })
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => outcome(stack.tts(`Line ${i} of the burst.`)),
        { concurrency: "unbounded" }
      )
      const stats = yield* backend.stats
      assert.deepStrictEqual(outcomes.filter((o) => o !== "ok"), [])
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      assert.strictEqual(stats.byStatus["200"], 200)
      // The limiter used the whole plan, and never more.
      assert.strictEqual(stats.pools.flash.maxInFlight, 10)
    }))

  it.live("a caller who joins a coalesced call is held to its own deadline; the call goes on for its starter", () =>
    Effect.gen(function*() {
      const backend = yield* door.backend({ seed: 8, plan: "pro", latency: slowFlash })
      const stack = yield* door.stack(backend, { quota: false })
      const starter = yield* Effect.forkChild(stack.tts("the same words, wanted by two callers"))
      yield* until(Effect.map(backend.stats, (s) => s.pools.flash.inFlight === 1), "the starter on the wire")
      const started = yield* Clock.currentTimeMillis
      const error = yield* Effect.flip(stack.tts("the same words, wanted by two callers", { deadline: "300 millis" }))
      const waited = (yield* Clock.currentTimeMillis) - started
      assert.strictEqual(error.reason._tag, "Timeout")
      if (error.reason._tag === "Timeout") assert.strictEqual(error.reason.phase, "deadline")
      assert.isAtLeast(waited, 280)
      assert.isBelow(waited, 800, "the joiner did not wait for the shared call")
      assert.isAbove(yield* Fiber.join(starter), 0)
      assert.strictEqual((yield* backend.stats).requests, 1, "one upstream call")
    }))

  it.live("a deadline that runs out in the queue is the deadline (Timeout, phase deadline); the gauges show the queue", () =>
    Effect.gen(function*() {
      const backend = yield* door.backend({
        seed: 8,
        plan: "pro",
        apiKeys: [{ key: "sim-key", limits: { flash: 2 } }],
        latency: slowFlash
      })
      const stack = yield* door.stack(backend, { limiter: { plan: { flash: 2 } }, quota: false })
      const { limiter, keyId } = stack.policies
      const slow = yield* Effect.forkChild(
        Effect.all([stack.tts("slow one"), stack.tts("slow two")], { concurrency: "unbounded" })
      )
      yield* until(Effect.map(limiter.snapshot(keyId, "flash"), (s) => s.inFlight === 2), "both permits held")
      const waiting = yield* Effect.forkChild(Effect.flip(stack.tts("in a hurry", { deadline: "300 millis" })))
      yield* until(Effect.map(limiter.snapshot(keyId, "flash"), (s) => s.queueDepth === 1), "the call queued")
      yield* Effect.yieldNow
      if (door.sharesTelemetry) {
        assert.strictEqual(yield* scraped(Metrics.names.concurrent, { pool: "flash" }), 2)
        assert.strictEqual(yield* scraped(Metrics.names.queueDepth, { pool: "flash", lane: "default" }), 1)
      }
      const error = yield* Fiber.join(waiting)
      assert.strictEqual(error.reason._tag, "Timeout")
      if (error.reason._tag === "Timeout") assert.strictEqual(error.reason.phase, "deadline")
      yield* Fiber.join(slow)
      if (door.sharesTelemetry) {
        assert.strictEqual(yield* scraped(Metrics.names.concurrent, { pool: "flash" }), 0)
        assert.strictEqual(yield* scraped(Metrics.names.queueDepth, { pool: "flash", lane: "default" }), 0)
      }
      assert.strictEqual((yield* backend.stats).requests, 2, "the late call never reached the server")
    }))

  it.live(
    "two stacks on one Redis hold the limit together and share the breaker's state",
    () =>
      Effect.gen(function*() {
        const redis = yield* Effect.acquireRelease(
          Effect.promise(() => startRedisServer()),
          (r) => Effect.promise(() => r.close())
        )
        const backend = yield* door.backend({
          seed: 4,
          plan: "creator",
          latency: { ...latency, flash: { ttfbMs: 40, msPerUnit: 0.2, jitter: 0 } }
        })
        // Each stack believes it has the whole plan (10 Flash); only the shared permits keep the sum at 10.
        const options: DoorOptions = {
          limiter: { plan: "creator" },
          quota: false,
          retry: fastRetry,
          redis: { url: redis.url, leaseTime: "5 seconds" }
        }
        const one = yield* door.stack(backend, options)
        const two = yield* door.stack(backend, options)
        assert.isDefined(one.policies.distributed)
        const burst = (stack: Stack, tag: string) =>
          Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (i) => outcome(stack.tts(`${tag} ${i} `.repeat(6))), {
            concurrency: "unbounded"
          })
        const outcomes = (yield* Effect.all([burst(one, "one"), burst(two, "two")], { concurrency: "unbounded" }))
          .flat()
        let stats = yield* backend.stats
        assert.deepStrictEqual(outcomes.filter((o) => o !== "ok"), [])
        assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
        assert.isAtMost(stats.pools.flash.maxInFlight, 10)

        // An outage seen through one stack opens the circuit the other reads.
        yield* backend.simulator.setFaults({ serverError: 1 })
        const failed: Array<string> = []
        for (let i = 0; i < 10 && failed.at(-1) !== "CircuitOpen"; i++) {
          failed.push(yield* outcome(one.tts(`outage ${i}`)))
        }
        assert.strictEqual(failed.at(-1), "CircuitOpen")
        assert.strictEqual((yield* one.policies.breaker!.state("flash"))._tag, "Open")
        assert.strictEqual((yield* two.policies.breaker!.state("flash"))._tag, "Open")
        stats = yield* backend.stats
        assert.strictEqual(yield* outcome(two.tts("through the other stack")), "CircuitOpen")
        assert.strictEqual((yield* backend.stats).requests, stats.requests, "an open circuit sends nothing")
      }),
    30_000
  )

  it.live("a call deadline that is not a finite duration >= 0 is InvalidRequest (field deadline), not a defect", () =>
    Effect.gen(function*() {
      const backend = yield* door.backend({ seed: 8, plan: "pro", latency })
      const stack = yield* door.stack(backend, { quota: false })
      for (const deadline of ["-1 seconds", Number.NaN, Number.POSITIVE_INFINITY, "soon"] as const) {
        const exit = yield* Effect.exit(
          stack.tts(`a bad deadline: ${deadline}`, { deadline: deadline as Duration.Input })
        )
        assert.isTrue(
          Exit.isFailure(exit) && exit.cause.reasons.every((r) => r._tag === "Fail"),
          `${deadline}: a typed failure`
        )
        const error = yield* Effect.flip(stack.tts("again", { deadline: deadline as Duration.Input }))
        assert.strictEqual(error.reason._tag, "InvalidRequest")
        if (error.reason._tag === "InvalidRequest") assert.strictEqual(error.reason.field, "deadline")
      }
      assert.strictEqual((yield* backend.stats).requests, 0)
    }))

  it.live("an exhausted account refuses the calls that spend credits, not the read-only ones", () =>
    Effect.gen(function*() {
      const backend = yield* door.backend({ seed: 8, plan: "pro", latency })
      const stack = yield* door.stack(backend, {})
      assert.strictEqual(yield* outcome(stack.tts("before the quota ran out")), "ok")
      yield* stack.policies.quota!.markExhausted({ remaining: 0 })
      assert.strictEqual(yield* outcome(stack.tts("after the quota ran out")), "QuotaExhausted")
      assert.strictEqual(yield* outcome(stack.readOnly), "ok")
    }))

  // The fetch's spans go to the tracer of its own runtime (its `telemetry` option), not to the test's.
  it.live.skipIf(!door.sharesTelemetry)("the call span and its attempt span carry the same attributes", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const backend = yield* door.backend({ seed: 8, plan: "pro", latency })
      const stack = yield* door.stack(backend, { quota: false })
      yield* stack.tts("traced words").pipe(Resilient.withCallOptions({ lane: "interactive" }))
      const spans = exporter.getFinishedSpans()
      const calls = spans.filter((s) => s.name === "elevenlabs.textToSpeech.convert")
      assert.strictEqual(calls.length, 1)
      const call = calls[0]!
      assert.deepStrictEqual(
        Object.fromEntries(
          ["operation", "model", "characters", "lane", "pool", "attempts", "outcome", "fallback_used", "coalesced"].map(
            (
              name
            ) => [name, call.attributes[`elevenlabs.${name}`]]
          )
        ),
        {
          operation: "textToSpeech.convert",
          model: flash,
          characters: "traced words".length,
          lane: "interactive",
          pool: "flash",
          attempts: 1,
          outcome: "success",
          fallback_used: false,
          coalesced: false
        }
      )
      const attempts = childrenOf(spans, call)
      assert.deepStrictEqual(attempts.map((s) => s.name), ["elevenlabs.textToSpeech.convert.attempt"])
      const attempt = attempts[0]!
      assert.strictEqual(attempt.attributes["http.request.method"], "POST")
      assert.strictEqual(attempt.attributes["url.template"], "/v1/text-to-speech/{voice_id}")
      assert.strictEqual(attempt.attributes["server.address"], stack.server.address)
      assert.strictEqual(attempt.attributes["server.port"], stack.server.port)
      assert.strictEqual(attempt.attributes["elevenlabs.attempt"], 1)
      assert.strictEqual(attempt.attributes["http.response.status_code"], 200)
      assert.isString(attempt.attributes["elevenlabs.request_id"])
    }).pipe(Effect.provide(Otel.layerSdk({ spanProcessors: [new SimpleSpanProcessor(exporter)] })))
  })
})
