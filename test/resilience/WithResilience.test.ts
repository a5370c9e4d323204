/**
 * The wrapper around the official SDK: the real `@elevenlabs/elevenlabs-js`
 * client against the simulator's real HTTP server on a free loopback port.
 */
import { assert, describe, it } from "@effect/vitest"
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
import { Effect, Redacted } from "effect"
import { classifySdkError } from "../../src/client/Classify.ts"
import { type ElevenLabsError, isElevenLabsError } from "../../src/client/Errors.ts"
import * as WithResilience from "../../src/resilience/WithResilience.ts"
import * as Server from "../../src/simulator/Server.ts"
import type * as Simulator from "../../src/simulator/Simulator.ts"

const latency: Simulator.Options["latency"] = {
  standard: { ttfbMs: 10, msPerUnit: 0.1, jitter: 0 },
  v3: { ttfbMs: 10, msPerUnit: 0.1, jitter: 0 },
  flash: { ttfbMs: 15, msPerUnit: 0.1, jitter: 0 },
  stt: { ttfbMs: 5, msPerUnit: 1, jitter: 0 },
  music: { ttfbMs: 5, msPerUnit: 1, jitter: 0 }
}

const voice = "21m00Tcm4TlvDq8ikWAM"
const flash = "eleven_flash_v2_5"

/** Short backoffs so that retries in real time keep the test fast. */
const fastRetry = {
  exponential: { base: "5 millis", cap: "40 millis", jitter: { _tag: "None" } as const },
  linear: { step: "5 millis" },
  requeue: { step: "1 millis" }
} as const

const start = (options: Server.Options = {}) =>
  Effect.gen(function*() {
    const running = yield* Server.serve({ port: 0, seed: 7, latency, ...options })
    const sdk = new ElevenLabsClient({ apiKey: "sim-key", baseUrl: running.url, maxRetries: 0 })
    return { ...running, sdk }
  })

/** A runner that is disposed with the test's scope. */
const runner = (options: WithResilience.SdkResilienceOptions) =>
  Effect.acquireRelease(
    Effect.sync(() => WithResilience.makeResilientRunner(options)),
    (r) => Effect.promise(() => r.dispose())
  )

const bytesOf = (stream: ReadableStream<Uint8Array>) => Effect.promise(() => new Response(stream).arrayBuffer())

/** What a promise settled with: "ok" or the reason tag of its ElevenLabsError. */
const outcome = <A>(p: () => Promise<A>) =>
  Effect.promise(() =>
    p().then(
      () => "ok",
      (e: unknown) => (isElevenLabsError(e) ? e.reason._tag : `not an ElevenLabsError: ${String(e)}`)
    )
  )

const sdkError = <A>(p: () => Promise<A>) => Effect.promise(() => p().then(() => undefined, (e: unknown) => e))

describe("WithResilience", () => {
  it.live("a burst of 100 Flash converts on creator through the Promise face: all succeed, no concurrency 429", () =>
    Effect.gen(function*() {
      const { sdk, simulator } = yield* start({ plan: "creator" })
      const resilient = yield* runner({ apiKey: "sim-key", limiter: { plan: "creator" } })
      const results = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i),
        (i) =>
          Effect.promise(() =>
            resilient.run(
              (signal) =>
                sdk.textToSpeech.convert(voice, { text: `Line ${i} of the burst.`, modelId: flash }, {
                  abortSignal: signal
                }).withRawResponse(),
              { operation: "textToSpeech.convert", model: flash, characters: 20 }
            )
          ).pipe(Effect.flatMap((r) => bytesOf(r.data))),
        { concurrency: "unbounded" }
      )
      const stats = yield* simulator.stats
      assert.strictEqual(results.length, 100)
      assert.isTrue(results.every((b) => b.byteLength > 0))
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      assert.strictEqual(stats.byStatus["200"], 100)
      // The limiter used the plan, not less: the server saw the whole pool busy.
      assert.strictEqual(stats.pools.flash.maxInFlight, 10)
    }))

  it.live("an unknown plan is learned from the headers of withRawResponse()", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start({ plan: "creator" })
      const resilient = yield* runner({ apiKey: "sim-key", limiter: { plan: "unknown", initialLimit: 2 } })
      yield* Effect.promise(() =>
        resilient.run((signal) =>
          sdk.textToSpeech.convert(voice, { text: "Hello there", modelId: flash }, { abortSignal: signal })
            .withRawResponse(), { model: flash })
      )
      const policies = yield* Effect.promise(() =>
        resilient.policies()
      )
      const snapshot = yield* policies.limiter.snapshot(policies.keyId, "flash")
      // `maximum-concurrent-requests: 10` is the truth for the pool.
      assert.strictEqual(snapshot.ceiling, 10)
      assert.strictEqual(snapshot.inFlight, 0)
    }))

  it.live("system_busy faults are retried until the call succeeds", () =>
    Effect.gen(function*() {
      const { sdk, simulator } = yield* start({ plan: "pro", seed: 21, faults: { systemBusy: 0.3 } })
      // Enough retries that no call runs out (0.3^13 per call), no breaker or budget in the way.
      const retry = { ...fastRetry, exponential: { ...fastRetry.exponential, maxRetries: 12 } }
      const resilient = yield* runner({ limiter: { plan: "pro" }, retry, breaker: false, budget: false })
      let calls = 0
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) =>
          outcome(() =>
            resilient.run((signal) => {
              calls++
              return sdk.textToSpeech.convert(voice, { text: `Busy ${i}`, modelId: flash }, { abortSignal: signal })
            }, { model: flash })
          ),
        { concurrency: 5 }
      )
      const stats = yield* simulator.stats
      assert.deepStrictEqual(outcomes.filter((o) => o !== "ok"), [])
      assert.isAbove(stats.faults["systemBusy"] ?? 0, 0)
      assert.strictEqual(calls, 20 + (stats.faults["systemBusy"] ?? 0))
    }))

  it.live("a 404 is not retried and surfaces as ElevenLabsError NotFound", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start()
      const resilient = yield* runner({ retry: fastRetry })
      let calls = 0
      const error = yield* sdkError(() =>
        resilient.run(() => {
          calls++
          return sdk.textToSpeech.convert("no-such-voice", { text: "Hi", modelId: flash })
        }, { operation: "textToSpeech.convert", model: flash })
      )
      assert.isTrue(isElevenLabsError(error))
      const e = error as ElevenLabsError
      assert.strictEqual(e.reason._tag, "NotFound")
      assert.strictEqual(e.reason.operation, "textToSpeech.convert")
      assert.strictEqual(e.reason.detailStatus, "voice_not_found")
      assert.strictEqual(e.attempts, 1)
      assert.strictEqual(calls, 1)
    }))

  it.live("the classifier on real SDK errors", () =>
    Effect.gen(function*() {
      const { sdk, url, simulator } = yield* start({ plan: "creator" })
      const op = "textToSpeech.convert"
      const classify = (e: unknown) => classifySdkError(op, e)

      const notFound = classify(yield* sdkError(() => sdk.textToSpeech.convert("nope", { text: "Hi" })))
      assert.strictEqual(notFound._tag, "NotFound")
      assert.strictEqual(notFound.status, 404)

      const bad = new ElevenLabsClient({ apiKey: "wrong-key", baseUrl: url, maxRetries: 0 })
      assert.strictEqual(
        classify(yield* sdkError(() => bad.textToSpeech.convert(voice, { text: "Hi" })))._tag,
        "InvalidApiKey"
      )

      const tooLong = classify(
        yield* sdkError(() =>
          sdk.textToSpeech.convert(voice, { text: "x".repeat(50_000), modelId: "eleven_multilingual_v2" })
        )
      )
      assert.strictEqual(tooLong._tag, "InvalidRequest")

      yield* simulator.setLimit("flash", 1)
      const burst = yield* Effect.forEach([1, 2, 3], () =>
        sdkError(() => sdk.textToSpeech.convert(voice, { text: "Hi there", modelId: flash })), {
        concurrency: "unbounded"
      })
      const limited = burst.filter((e) =>
        e !== undefined
      ).map(classify)
      assert.isAbove(limited.length, 0)
      for (const reason of limited) {
        assert.strictEqual(reason._tag, "ConcurrencyLimited")
        assert.strictEqual(reason._tag === "ConcurrencyLimited" ? reason.limit : undefined, 1)
      }
      yield* simulator.setLimit("flash", 10)

      yield* simulator.setCredits(0)
      const quota = classify(yield* sdkError(() => sdk.textToSpeech.convert(voice, { text: "Hello", modelId: flash })))
      assert.strictEqual(quota._tag, "QuotaExceeded")

      const refused = new ElevenLabsClient({ apiKey: "sim-key", baseUrl: "http://127.0.0.1:1", maxRetries: 0 })
      assert.strictEqual(classify(yield* sdkError(() => refused.voices.getAll()))._tag, "Transport")
    }))

  it.live("bodies are read inside the permit and coalesced callers each get their own stream", () =>
    Effect.gen(function*() {
      const { sdk, simulator } = yield* start()
      const resilient = yield* runner({ limiter: { plan: "pro" } })
      let calls = 0
      const call = () =>
        Effect.promise(() =>
          resilient.run((signal) => {
            calls++
            return sdk.textToSpeech.convert(voice, { text: "Shared line", modelId: flash }, { abortSignal: signal })
          }, { model: flash, coalesceKey: "shared-line" })
        ).pipe(Effect.flatMap(bytesOf))
      const [a, b] = yield* Effect.all([call(), call()], { concurrency: "unbounded" })
      assert.strictEqual(calls, 1)
      assert.isAbove(a.byteLength, 0)
      assert.deepStrictEqual(new Uint8Array(a), new Uint8Array(b))
      assert.strictEqual((yield* simulator.stats).requests, 1)
    }))

  it.live("quota: credits are reserved from the subscription and a call that does not fit is refused locally", () =>
    Effect.gen(function*() {
      const { sdk, simulator } = yield* start({ plan: "free" })
      yield* simulator.setCredits(10)
      const resilient = yield* runner({
        limiter: { plan: "free" },
        subscription: () => sdk.user.subscription.get()
      })
      const text = "This sentence costs more than ten credits on any model."
      const refused = yield* outcome(() =>
        resilient.run(() => sdk.textToSpeech.convert(voice, { text, modelId: flash }), {
          model: flash,
          characters: text.length
        })
      )
      assert.strictEqual(refused, "InsufficientQuota")
      const stats = yield* simulator.stats
      // The only request the server saw is the subscription read; no TTS, no credits.
      assert.strictEqual(stats.requests, 1)
      assert.strictEqual(stats.creditsCharged, 0)
      assert.strictEqual(stats.byDetailStatus["quota_exceeded"] ?? 0, 0)

      // A call that fits is reserved, then committed with the `character-cost` header.
      const short = "Hi."
      const ok = yield* outcome(() =>
        resilient.run(() => sdk.textToSpeech.convert(voice, { text: short, modelId: flash }).withRawResponse(), {
          model: flash,
          characters: short.length
        })
      )
      assert.strictEqual(ok, "ok")
      const policies = yield* Effect.promise(() => resilient.policies())
      const status = yield* policies.quota!.status
      assert.strictEqual(status.reserved, 0)
      assert.strictEqual((yield* simulator.stats).creditsCharged, 2)
    }))

  it.live("the Effect face: withResilience over Effect.tryPromise, errors typed, headers learnt", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start({ plan: "creator" })
      const ok = yield* Effect.tryPromise((signal) =>
        sdk.textToSpeech.convert(voice, { text: "From Effect", modelId: flash }, { abortSignal: signal })
          .withRawResponse()
      ).pipe(WithResilience.withResilience({ operation: "textToSpeech.convert", model: flash, lane: "interactive" }))
      assert.isAbove((yield* bytesOf(ok.data)).byteLength, 0)
      assert.strictEqual(ok.rawResponse.headers.get("maximum-concurrent-requests"), "10")

      const failed = yield* Effect.flip(
        Effect.tryPromise(() => sdk.voices.get("missing-voice")).pipe(
          WithResilience.withResilience({ operation: "voices.get" })
        )
      )
      assert.strictEqual(failed.reason._tag, "NotFound")

      const { limiter, keyId } = yield* WithResilience.SdkResilience
      assert.strictEqual((yield* limiter.snapshot(keyId, "flash")).ceiling, 10)
    }).pipe(
      Effect.provide(
        WithResilience.layer({ apiKey: Redacted.make("sim-key"), limiter: { plan: "unknown" }, retry: fastRetry })
      )
    ))

  it.live("a deadline cancels the SDK request through the abort signal", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start({ faults: { hang: 1 } })
      const resilient = yield* runner({ limiter: { plan: "pro" }, retry: false })
      const result = yield* outcome(() =>
        resilient.run(
          (signal) =>
            sdk.textToSpeech.convert(voice, { text: "Never answered", modelId: flash }, { abortSignal: signal }),
          { model: flash, deadline: "150 millis" }
        )
      )
      assert.strictEqual(result, "Timeout")
      const policies = yield* Effect.promise(() => resilient.policies())
      assert.strictEqual((yield* policies.limiter.snapshot(policies.keyId, "flash")).inFlight, 0)
    }))

  it.live("buffer: false hands the SDK's own stream back; the permit is released when the promise settles", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start()
      const resilient = yield* runner({ limiter: { plan: "pro" } })
      let returned: unknown = undefined
      const result = yield* Effect.promise(() =>
        resilient.run(async (signal) => {
          const r = await sdk.textToSpeech.stream(voice, { text: "Streamed as it comes", modelId: flash }, {
            abortSignal: signal
          }).withRawResponse()
          returned = r.data
          return r
        }, { operation: "textToSpeech.stream", model: flash, buffer: false })
      )
      assert.strictEqual(result.data, returned)
      const policies = yield* Effect.promise(() => resilient.policies())
      assert.strictEqual((yield* policies.limiter.snapshot(policies.keyId, "flash")).inFlight, 0)
      assert.isAbove((yield* bytesOf(result.data)).byteLength, 0)
    }))

  it.effect("toElevenLabsError: kept, unwrapped from UnknownError, or classified", () =>
    Effect.gen(function*() {
      const sdkLike = Object.assign(new Error("Status code: 503"), { statusCode: 503, body: "<html>down</html>" })
      const viaTry = yield* Effect.flip(Effect.tryPromise(() => Promise.reject(sdkLike)))
      const e = WithResilience.toElevenLabsError("op", viaTry)
      assert.strictEqual(e.reason._tag, "ServerError")
      assert.strictEqual(WithResilience.toElevenLabsError("op", e), e)
      assert.strictEqual(WithResilience.toElevenLabsError("op", new TypeError("fetch failed")).reason._tag, "Transport")
    }))

  it.live("calls after dispose reject", () =>
    Effect.gen(function*() {
      const resilient = WithResilience.makeResilientRunner({})
      yield* Effect.promise(() => resilient.dispose())
      const after = yield* Effect.promise(() =>
        resilient.run(() => Promise.resolve(1)).then(() => "ok", () => "rejected")
      )
      assert.strictEqual(after, "rejected")
    }))
})
