/**
 * The official `@elevenlabs/elevenlabs-js` SDK, unchanged, built with
 * `fetch: ResilientFetch.make(...)`, against the simulator's real HTTP server
 * on a free loopback port (real time, short simulator latencies).
 */
import { assert, describe, it } from "@effect/vitest"
import { ElevenLabsClient, ElevenLabsError as SdkError } from "@elevenlabs/elevenlabs-js"
import { Effect, type Scope } from "effect"
import { Redacted } from "effect"
import { createServer } from "node:http"
import { fileURLToPath } from "node:url"
import { isElevenLabsError } from "../../src/client/Errors.ts"
import { partitionOfApiKey } from "../../src/resilience/Fallback.ts"
import * as ResilienceConfig from "../../src/resilience/ResilienceConfig.ts"
import * as ResilientFetch from "../../src/resilience/ResilientFetch.ts"
import * as Server from "../../src/simulator/Server.ts"
import type * as Simulator from "../../src/simulator/Simulator.ts"
import { runNode } from "../utils/childWorker.ts"
import { startRedisServer } from "../utils/redisServer.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const flash = "eleven_flash_v2_5"
const workerPath = fileURLToPath(new URL("./fetchWorker.ts", import.meta.url))

const latency: Simulator.Options["latency"] = {
  standard: { ttfbMs: 10, msPerUnit: 0.1, jitter: 0 },
  v3: { ttfbMs: 10, msPerUnit: 0.1, jitter: 0 },
  flash: { ttfbMs: 15, msPerUnit: 0.1, jitter: 0 },
  stt: { ttfbMs: 5, msPerUnit: 1, jitter: 0 },
  music: { ttfbMs: 5, msPerUnit: 1, jitter: 0 }
}

const fastRetry = {
  exponential: { base: "5 millis", cap: "40 millis", jitter: { _tag: "None" } as const },
  linear: { step: "5 millis" },
  requeue: { step: "1 millis" }
} as const

interface Backend {
  readonly url: string
  readonly simulator: Simulator.Service
  readonly stats: Effect.Effect<Simulator.Stats>
}

const backend = (sim: Simulator.Options): Effect.Effect<Backend, never, Scope.Scope> =>
  Effect.map(Effect.orDie(Server.serve({ port: 0, ...sim })), ({ simulator, url }) => ({
    url,
    simulator,
    stats: Effect.promise(() => fetch(`${url}/_simulator/stats`).then((r) => r.json() as Promise<Simulator.Stats>))
  }))

/** A fetch closed with the test's scope. */
const resilientFetch = (options: ResilientFetch.Options) =>
  Effect.acquireRelease(Effect.sync(() => ResilientFetch.make(options)), (f) => Effect.promise(() => f.close()))

const sdkOf = (url: string, fetch: ResilientFetch.ResilientFetch, apiKey = "sim-key") =>
  new ElevenLabsClient({ apiKey, baseUrl: url, maxRetries: 0, fetch })

const convert = (sdk: ElevenLabsClient, text: string, options?: { readonly abortSignal?: AbortSignal }) =>
  Effect.promise(() =>
    sdk.textToSpeech.convert(voice, { text, modelId: flash }, options).then((s) => new Response(s).arrayBuffer())
  )

/** Polls (real time) until `done` holds. */
const until = (done: Effect.Effect<boolean>, what: string, tries = 400) =>
  Effect.gen(function*() {
    for (let i = 0; i < tries; i++) {
      if (yield* done) return
      yield* Effect.sleep("5 millis")
    }
    assert.fail(`timed out waiting for ${what}`)
  })

const flashOf = (f: ResilientFetch.ResilientFetch, apiKey = "sim-key") =>
  Effect.promise(async () => {
    const policies = await f.policies(apiKey)
    return Effect.runPromise(policies.limiter.snapshot(policies.keyId, "flash"))
  })

describe("ResilientFetch with the official SDK", () => {
  it.live("300 Flash converts at once on creator: all succeed, no concurrency 429, never over the limit", () =>
    Effect.gen(function*() {
      const server = yield* backend({ seed: 3, plan: "creator", latency })
      const f = yield* resilientFetch({ limiter: { plan: "creator" }, quota: false })
      const sdk = sdkOf(server.url, f)
      const audio = yield* Effect.promise(() =>
        Promise.all(
          Array.from({ length: 300 }, (_, i) =>
            sdk.textToSpeech.convert(voice, { text: `Line ${i} of the batch.`, modelId: flash })
              .then((s) =>
                new Response(s).arrayBuffer()
              ))
        )
      )
      const stats = yield* server.stats
      assert.strictEqual(audio.filter((a) => a.byteLength > 0).length, 300)
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      assert.strictEqual(stats.byStatus["200"], 300)
      assert.strictEqual(stats.pools.flash.maxInFlight, 10)
    }))

  it.live("the same under 10 % system_busy and 2 % 5xx: every call succeeds", () =>
    Effect.gen(function*() {
      const server = yield* backend({
        seed: 5,
        plan: "creator",
        latency,
        retryAfterSeconds: 0,
        faults: { systemBusy: 0.1, serverError: 0.02 }
      })
      const f = yield* resilientFetch({ limiter: { plan: "creator" }, quota: false, retry: fastRetry, breaker: false })
      const sdk = sdkOf(server.url, f)
      const results = yield* Effect.promise(() =>
        Promise.allSettled(Array.from({ length: 300 }, (_, i) =>
          sdk.textToSpeech.convert(voice, { text: `Busy line ${i}.`, modelId: flash }).then((s) =>
            new Response(s).arrayBuffer()
          )))
      )
      const stats = yield* server.stats
      assert.deepStrictEqual(
        results.filter((r) =>
          r.status === "rejected"
        ).map((r) => String((r as PromiseRejectedResult).reason)),
        []
      )
      assert.isAbove(stats.faults["systemBusy"] ?? 0, 0, "faults were injected")
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      assert.isAtMost(stats.pools.flash.maxInFlight, 10)
    }))

  it.live("a stream holds its permit until its last byte is read", () =>
    Effect.gen(function*() {
      const server = yield* backend({ seed: 2, plan: "pro", latency })
      const f = yield* resilientFetch({ quota: false })
      const sdk = sdkOf(server.url, f)
      const stream = yield* Effect.promise(() =>
        sdk.textToSpeech.stream(voice, { text: "A streamed sentence, read slowly.", modelId: flash })
      )
      assert.strictEqual((yield* flashOf(f)).inFlight, 1, "held while the body is unread")
      const reader = stream.getReader()
      const first = yield* Effect.promise(() => reader.read())
      assert.isFalse(first.done)
      assert.strictEqual((yield* flashOf(f)).inFlight, 1, "held mid-body")
      let bytes = first.value!.byteLength
      for (;;) {
        const next = yield* Effect.promise(() => reader.read())
        if (next.done) break
        bytes += next.value.byteLength
      }
      assert.isAbove(bytes, 0)
      yield* until(Effect.map(flashOf(f), (s) => s.inFlight === 0), "the permit back after the last byte")
      // A stream the caller cancels gives its permit back too.
      const cancelled = yield* Effect.promise(() =>
        sdk.textToSpeech.stream(voice, { text: "Cancelled early.", modelId: flash })
      )
      assert.strictEqual((yield* flashOf(f)).inFlight, 1)
      yield* Effect.promise(() => cancelled.cancel())
      yield* until(Effect.map(flashOf(f), (s) => s.inFlight === 0), "the permit back after a cancel")
    }))

  it.live("the SDK's abortSignal frees the permit and the queue place", () =>
    Effect.gen(function*() {
      const server = yield* backend({
        seed: 2,
        plan: "pro",
        latency: { ...latency, flash: { ttfbMs: 2000, msPerUnit: 0, jitter: 0 } }
      })
      const f = yield* resilientFetch({ limiter: { plan: { flash: 1 } }, quota: false })
      const sdk = sdkOf(server.url, f)
      const running = new AbortController()
      const queued = new AbortController()
      const first = Effect.runPromiseExit(convert(sdk, "The first, in flight.", { abortSignal: running.signal }))
      yield* until(Effect.map(flashOf(f), (s) => s.inFlight === 1), "the first in flight")
      const second = Effect.runPromiseExit(convert(sdk, "The second, queued.", { abortSignal: queued.signal }))
      yield* until(Effect.map(flashOf(f), (s) => s.queueDepth === 1), "the second queued")
      queued.abort()
      yield* until(Effect.map(flashOf(f), (s) => s.queueDepth === 0), "the queue place given back")
      running.abort()
      yield* until(Effect.map(flashOf(f), (s) => s.inFlight === 0), "the permit given back")
      const exits = yield* Effect.promise(() => Promise.all([first, second]))
      for (const exit of exits) assert.strictEqual(exit._tag, "Failure")
      yield* until(Effect.map(server.stats, (s) => s.pools.flash.inFlight === 0), "the server's request cancelled")
    }))

  it.live("an abort gives the permit back at every stage of a stream: before its headers, and with its body unread", () =>
    Effect.gen(function*() {
      const server = yield* backend({
        seed: 2,
        plan: "pro",
        latency: { ...latency, flash: { ttfbMs: 1500, msPerUnit: 0, jitter: 0 } }
      })
      const f = yield* resilientFetch({ limiter: { plan: { flash: 1 } }, quota: false })
      const sdk = sdkOf(server.url, f)
      const early = new AbortController()
      const opening = Effect.runPromiseExit(
        Effect.promise(() =>
          sdk.textToSpeech.stream(voice, { text: "Aborted before its headers.", modelId: flash }, {
            abortSignal: early.signal
          })
        )
      )
      yield* until(Effect.map(flashOf(f), (s) => s.inFlight === 1), "the stream's attempt in flight")
      early.abort()
      yield* until(Effect.map(flashOf(f), (s) => s.inFlight === 0), "the permit back after an abort before the headers")
      yield* Effect.promise(() => opening)
      const late = new AbortController()
      const unread = yield* Effect.promise(() =>
        sdk.textToSpeech.stream(voice, { text: "Aborted with its body unread.", modelId: flash }, {
          abortSignal: late.signal
        })
      )
      assert.strictEqual((yield* flashOf(f)).inFlight, 1)
      late.abort()
      yield* until(
        Effect.map(flashOf(f), (s) => s.inFlight === 0),
        "the permit back after an abort with the body unread"
      )
      const read = yield* Effect.promise(() => new Response(unread).arrayBuffer().then(() => "read", () => "failed"))
      assert.strictEqual(read, "failed", "the aborted body fails, it does not end early as if complete")
    }))

  it.live("close() cuts the bodies still open: their reads fail, their permits come back", () =>
    Effect.gen(function*() {
      const server = yield* backend({ seed: 2, plan: "pro", latency })
      const f = ResilientFetch.make({ quota: false })
      const sdk = sdkOf(server.url, f)
      const kept = yield* Effect.promise(() =>
        sdk.textToSpeech.stream(voice, { text: "Kept open until close().", modelId: flash })
      )
      const policies = yield* Effect.promise(() => f.policies("sim-key"))
      assert.strictEqual((yield* policies.limiter.snapshot(policies.keyId, "flash")).inFlight, 1)
      yield* Effect.promise(() => f.close())
      assert.strictEqual((yield* policies.limiter.snapshot(policies.keyId, "flash")).inFlight, 0)
      const read = yield* Effect.promise(() =>
        new Response(kept).arrayBuffer().then(() => "read", (e: unknown) => String(e))
      )
      assert.match(read, /closed/)
    }))

  it.live("a streamed body that stalls longer than idleTimeout fails with Timeout (idle) and gives its permit back", () =>
    Effect.gen(function*() {
      // A server that sends the headers and one chunk of a TTS stream, then nothing.
      const http = createServer((_req, res) => {
        res.writeHead(200, { "content-type": "audio/mpeg" })
        res.write(new Uint8Array(64))
      })
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((resolve) => http.listen(0, "127.0.0.1", () => resolve()))),
        () =>
          Effect.promise(() =>
            new Promise<void>((resolve) => {
              http.closeAllConnections()
              http.close(() => resolve())
            })
          )
      )
      const url = `http://127.0.0.1:${(http.address() as { port: number }).port}`
      const f = yield* resilientFetch({ quota: false, idleTimeout: "200 millis" })
      const stream = yield* Effect.promise(() =>
        sdkOf(url, f).textToSpeech.stream(voice, { text: "Stalls.", modelId: flash })
      )
      const reader = stream.getReader()
      assert.strictEqual((yield* Effect.promise(() => reader.read())).value?.byteLength, 64)
      const stalled = yield* Effect.promise(() => reader.read().then(() => undefined, (e: unknown) => e))
      assert.isTrue(
        isElevenLabsError(stalled) && stalled.reason._tag === "Timeout" && stalled.reason.phase === "idle",
        String(stalled)
      )
      assert.strictEqual((yield* flashOf(f)).inFlight, 0)
    }))

  it.live("a coalesced call whose first caller aborts is sent again for the caller who joined it", () =>
    Effect.gen(function*() {
      const server = yield* backend({
        seed: 2,
        plan: "pro",
        latency: { ...latency, flash: { ttfbMs: 400, msPerUnit: 0, jitter: 0 } }
      })
      const f = yield* resilientFetch({ quota: false })
      const sdk = sdkOf(server.url, f)
      const first = new AbortController()
      const starter = Effect.runPromiseExit(convert(sdk, "Wanted twice.", { abortSignal: first.signal }))
      yield* until(
        Effect.map(server.stats, (s) => s.pools.flash.inFlight === 1),
        "the first caller's request on the wire"
      )
      const joiner = Effect.runPromise(convert(sdk, "Wanted twice."))
      yield* Effect.sleep("50 millis")
      first.abort()
      const audio = yield* Effect.promise(() => joiner)
      assert.isAbove(audio.byteLength, 0)
      assert.strictEqual((yield* Effect.promise(() => starter))._tag, "Failure")
    }))

  it.live("a buffered body cut by the deadline stops downloading: the server's request ends with the call", () =>
    Effect.gen(function*() {
      // 1,000 characters at 3 ms each: about 3 s of body after the first byte.
      const server = yield* backend({
        seed: 2,
        plan: "pro",
        latency: { ...latency, flash: { ttfbMs: 20, msPerUnit: 3, jitter: 0 } }
      })
      const f = yield* resilientFetch({ quota: false, retry: false })
      const sdk = sdkOf(server.url, f)
      const error = yield* Effect.promise(() =>
        sdk.textToSpeech.convert(voice, { text: "z".repeat(1000), modelId: flash }, {
          headers: { [ResilientFetch.deadlineHeader]: "500" }
        })
          .then(() => undefined, (e: unknown) => (e as { cause?: unknown }).cause)
      )
      assert.isTrue(isElevenLabsError(error) && error.reason._tag === "Timeout")
      yield* until(Effect.map(server.stats, (s) => s.pools.flash.inFlight === 0), "the server's request ended", 100)
    }))

  it.live("a Request with a JSON body is read as one: its model's pool, its local check", () =>
    Effect.gen(function*() {
      const server = yield* backend({ seed: 2, plan: "pro", latency })
      const f = yield* resilientFetch({ quota: false })
      const request = (text: string, modelId: string) =>
        new Request(`${server.url}/v1/text-to-speech/${voice}`, {
          method: "POST",
          headers: { "xi-api-key": "sim-key", "content-type": "application/json" },
          body: JSON.stringify({ text, model_id: modelId })
        })
      const ok = yield* Effect.promise(() => f(request("Through a Request.", flash)))
      assert.strictEqual(ok.status, 200)
      const refused = yield* Effect.promise(() =>
        f(request("y".repeat(10_001), "eleven_multilingual_v2")).then(() => undefined, (e: unknown) => e)
      )
      assert.isTrue(isElevenLabsError(refused) && refused.reason._tag === "InvalidRequest")
      assert.strictEqual((yield* server.stats).requests, 1)
    }))

  it.live("credits are reserved before a call and committed from its character-cost", () =>
    Effect.gen(function*() {
      const server = yield* backend({ seed: 2, plan: "pro", latency })
      let sdk: ElevenLabsClient | undefined
      const f = yield* resilientFetch({ subscription: () => sdk!.user.subscription.get() })
      sdk = sdkOf(server.url, f)
      const policies = yield* Effect.promise(() => f.policies("sim-key"))
      const quota = policies.quota!
      yield* quota.refresh
      const before = (yield* quota.status).used!
      const charged = (yield* server.stats).creditsCharged
      yield* convert(sdk, "Twenty-nine characters, billed.")
      const status = yield* quota.status
      assert.strictEqual(status.reserved, 0)
      assert.strictEqual(status.used! - before, (yield* server.stats).creditsCharged - charged)
      assert.isAbove(status.used! - before, 0)
    }))

  it.live("two API keys get separate limits", () =>
    Effect.gen(function*() {
      const server = yield* backend({
        seed: 2,
        plan: "pro",
        apiKeys: [{ key: "key-a", limits: { flash: 1 } }, { key: "key-b", limits: { flash: 1 } }],
        latency: { ...latency, flash: { ttfbMs: 300, msPerUnit: 0, jitter: 0 } }
      })
      const f = yield* resilientFetch({ limiter: { plan: { flash: 1 } }, quota: false })
      const a = sdkOf(server.url, f, "key-a")
      const b = sdkOf(server.url, f, "key-b")
      const both = Effect.runPromise(
        Effect.all([convert(a, "For key A."), convert(b, "For key B.")], { concurrency: 2 })
      )
      yield* until(
        Effect.map(
          Effect.all([flashOf(f, "key-a"), flashOf(f, "key-b")]),
          ([sa, sb]) => sa.inFlight === 1 && sb.inFlight === 1
        ),
        "both keys in flight at once"
      )
      yield* Effect.promise(() => both)
      const policies = yield* Effect.promise(() => Promise.all([f.policies("key-a"), f.policies("key-b")]))
      assert.strictEqual(policies[0].keyId, partitionOfApiKey(Redacted.make("key-a")))
      assert.notStrictEqual(policies[0].keyId, policies[1].keyId)
      assert.strictEqual((yield* server.stats).byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
    }))

  it.live("the library's refusals reject with its typed error (the SDK's cause); ElevenLabs' answers stay the SDK's errors", () =>
    Effect.gen(function*() {
      const server = yield* backend({
        seed: 2,
        plan: "pro",
        latency: { ...latency, flash: { ttfbMs: 500, msPerUnit: 0, jitter: 0 } }
      })
      const f = yield* resilientFetch({ limiter: { plan: { flash: 1 }, maxQueue: 0 }, quota: false })
      const sdk = sdkOf(server.url, f)
      const running = Effect.runPromise(convert(sdk, "Holds the only permit."))
      yield* until(Effect.map(flashOf(f), (s) => s.inFlight === 1), "the permit held")
      const refused = yield* Effect.promise(() =>
        sdk.textToSpeech.convert(voice, { text: "No room.", modelId: flash }).then(() => undefined, (e: unknown) => e)
      )
      assert.instanceOf(refused, SdkError)
      const cause = (refused as SdkError & { cause?: unknown }).cause
      assert.isTrue(isElevenLabsError(cause))
      if (isElevenLabsError(cause)) assert.strictEqual(cause.reason._tag, "QueueFull")
      yield* Effect.promise(() => running)
      // An answer of ElevenLabs (here 404 voice_not_found) comes back as it was: the SDK's own error.
      const answered = yield* Effect.promise(() =>
        sdk.textToSpeech.convert("AAAAAAAAAAAAAAAAAAAA", { text: "Unknown voice.", modelId: flash }).then(
          () => undefined,
          (e: unknown) => e
        )
      )
      assert.instanceOf(answered, SdkError)
      assert.strictEqual((answered as SdkError).statusCode, 404)
      assert.isFalse(isElevenLabsError((answered as SdkError & { cause?: unknown }).cause))
    }))

  it.live("four processes on one real redis-server hold one limit", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.acquireRelease(Effect.promise(() => startRedisServer()), (r) =>
        Effect.promise(() => r.close()))
      const server = yield* backend({
        seed: 4,
        plan: "creator",
        latency: { ...latency, flash: { ttfbMs: 40, msPerUnit: 0.2, jitter: 0 } }
      })
      const runs = [1, 2, 3, 4].map(() =>
        runNode([workerPath], [server.url, redis.url, 30, "close"])
      )
      const results = yield* Effect.promise(() => Promise.all(runs.map((r) => r.exit)))
      for (const r of results) assert.strictEqual(r.code, 0, r.stderr)
      const reports = results.map((r) => JSON.parse(r.stdout.trim()) as { ok: number; failed: number })
      assert.deepStrictEqual(reports.map((r) => r.ok), [30, 30, 30, 30])
      const stats = yield* server.stats
      // Each process believes it has the whole plan (10 Flash); only the shared permits keep the sum at 10 (the
      // server caps its in-flight count itself: without Redis the excess shows as concurrency 429s).
      assert.isAtMost(stats.pools.flash.maxInFlight, 10)
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
    }), { timeout: 120_000 })

  it.live.each(["no-close", "runner"])(
    "a process that makes calls and never closes exits on its own (%s)",
    (mode) =>
      Effect.gen(function*() {
        const server = yield* backend({ seed: 6, plan: "creator", latency })
        const run = runNode([workerPath], [server.url, "-", 20, mode])
        const timer = setTimeout(() => run.child.kill("SIGKILL"), 30_000)
        const exit = yield* Effect.promise(() => run.exit)
        clearTimeout(timer)
        assert.strictEqual(exit.code, 0, `the worker did not exit by itself: ${exit.stderr}`)
        assert.deepStrictEqual(JSON.parse(exit.stdout.trim()).ok, 20)
      }),
    { timeout: 120_000 }
  )

  it.live("a failed call is served from the fallback cache, marked, when the same audio was made before", () =>
    Effect.gen(function*() {
      const server = yield* backend({ seed: 2, plan: "pro", latency })
      const f = yield* resilientFetch({
        quota: false,
        retry: false,
        breaker: false,
        cache: { store: { _tag: "memory" } }
      })
      const sdk = sdkOf(server.url, f)
      const request = { text: "Cached words.", modelId: flash }
      const first = yield* Effect.promise(() => sdk.textToSpeech.convert(voice, request).withRawResponse())
      const made = yield* Effect.promise(() => new Response(first.data).arrayBuffer())
      assert.isNull(first.rawResponse.headers.get(ResilientFetch.marksHeader))
      yield* server.simulator.setFaults({ serverError: 1 })
      const second = yield* Effect.promise(() => sdk.textToSpeech.convert(voice, request).withRawResponse())
      const served = yield* Effect.promise(() => new Response(second.data).arrayBuffer())
      assert.strictEqual(second.rawResponse.headers.get(ResilientFetch.marksHeader), "fallback")
      assert.deepStrictEqual(new Uint8Array(served), new Uint8Array(made))
      // Another text was never made: the server's 500 comes back as the SDK's error.
      const other = yield* Effect.promise(() =>
        sdk.textToSpeech.convert(voice, { text: "Never made.", modelId: flash }).then(
          () => undefined,
          (e: unknown) => e
        )
      )
      assert.strictEqual((other as SdkError).statusCode, 500)
    }))

  it.live("a hung attempt times out at its headers and is retried", () =>
    Effect.gen(function*() {
      const server = yield* backend({ seed: 9, plan: "pro", latency, faults: { hang: 0.2 } })
      const f = yield* resilientFetch({
        quota: false,
        retry: { ...fastRetry, linear: { step: "5 millis", maxRetries: 10 } },
        budget: false,
        breaker: false,
        headersTimeout: "1500 millis"
      })
      const sdk = sdkOf(server.url, f)
      const audio = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 20 }, (_, i) =>
          sdk.textToSpeech.convert(voice, { text: `Hang ${i}.`, modelId: flash })
            .then((s) => new Response(s).arrayBuffer())))
      )
      assert.strictEqual(audio.length, 20)
      assert.isAbove((yield* server.stats).faults["hang"] ?? 0, 0, "some attempts hung")
    }))

  it.live("its options load from a configuration file (ResilienceConfig)", () =>
    Effect.gen(function*() {
      const config = yield* ResilienceConfig.fromRaw({
        concurrency: { plan: "creator", pools: { flash: 3 } },
        quota: false
      }, "test")
      const f = yield* resilientFetch(ResilienceConfig.toStackOptions(config))
      const server = yield* backend({ seed: 2, plan: "creator", latency })
      // Before any answer (the server's maximum-concurrent-requests header then teaches the real ceiling).
      assert.strictEqual((yield* flashOf(f)).limit, 3)
      assert.isAbove((yield* convert(sdkOf(server.url, f), "Configured.")).byteLength, 0)
    }))

  it.live("a request the table does not know: retried when safe (GET), sent once when not (POST)", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const http = createServer((req, res) => {
        seen.push(req.method!)
        const first = seen.filter((m) => m === req.method).length === 1
        res.writeHead(req.method === "GET" && !first ? 200 : 503, { "content-type": "application/json" })
        res.end(JSON.stringify({ detail: { status: "unavailable", message: "try later" } }))
      })
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((resolve) => http.listen(0, "127.0.0.1", () => resolve()))),
        () => Effect.promise(() => new Promise<void>((resolve) => http.close(() => resolve())))
      )
      const port = (http.address() as { port: number }).port
      const f = yield* resilientFetch({ quota: false, retry: fastRetry })
      const get = yield* Effect.promise(() => f(`http://127.0.0.1:${port}/v1/not-in-the-table`))
      assert.strictEqual(get.status, 200)
      const post = yield* Effect.promise(() =>
        f(`http://127.0.0.1:${port}/v1/not-in-the-table`, { method: "POST", body: "{}" })
      )
      assert.strictEqual(post.status, 503)
      assert.deepStrictEqual(seen, ["GET", "GET", "POST"])
    }))

  describe("the endpoints beyond TTS", () => {
    /** Raw bytes the simulator reads as 16 kHz s16le: 32,000 a second. */
    const seconds = (n: number) => new Blob([new Uint8Array(32_000 * n)], { type: "audio/pcm" })
    const bytesOf = (stream: ReadableStream<Uint8Array>) => Effect.promise(() => new Response(stream).arrayBuffer())

    it.live("speech to speech, sound effects, dialogue and isolation run through the fetch, each in its pool", () =>
      Effect.gen(function*() {
        const server = yield* backend({ seed: 2, plan: "pro", latency })
        const f = yield* resilientFetch({ quota: false })
        const sdk = sdkOf(server.url, f)
        const inputs = [{ text: "Hello there.", voiceId: voice }, {
          text: "General Kenobi.",
          voiceId: "AZnzlk1XvdvUeBnXmlld"
        }]
        const audio = [
          yield* bytesOf(yield* Effect.promise(() => sdk.speechToSpeech.convert(voice, { audio: seconds(1) }))),
          yield* bytesOf(yield* Effect.promise(() => sdk.speechToSpeech.stream(voice, { audio: seconds(1) }))),
          yield* bytesOf(
            yield* Effect.promise(() => sdk.textToSoundEffects.convert({ text: "A door creaks", durationSeconds: 2 }))
          ),
          yield* bytesOf(yield* Effect.promise(() => sdk.textToDialogue.convert({ inputs }))),
          yield* bytesOf(yield* Effect.promise(() => sdk.textToDialogue.stream({ inputs }))),
          yield* bytesOf(yield* Effect.promise(() => sdk.audioIsolation.convert({ audio: seconds(1) }))),
          yield* bytesOf(yield* Effect.promise(() => sdk.audioIsolation.stream({ audio: seconds(1) })))
        ]
        for (const a of audio) assert.isAbove(a.byteLength, 0)
        const stats = yield* server.stats
        assert.strictEqual(stats.byStatus["200"], 7)
        // Every permit came back, the streams' included.
        const policies = yield* Effect.promise(() => f.policies("sim-key"))
        for (const pool of ["standard", "flash"] as const) {
          assert.strictEqual((yield* policies.limiter.snapshot(policies.keyId, pool)).inFlight, 0)
        }
      }))

    it.live("a request the local checks refuse never leaves: the SDK's error carries the typed InvalidRequest", () =>
      Effect.gen(function*() {
        const server = yield* backend({ seed: 2, plan: "pro", latency })
        const f = yield* resilientFetch({ quota: false })
        const sdk = sdkOf(server.url, f)
        const refusals = yield* Effect.forEach(
          [
            () => sdk.textToSoundEffects.convert({ text: "rain", durationSeconds: 31 }),
            () => sdk.textToDialogue.convert({ inputs: [{ text: "x".repeat(3001), voiceId: voice }] }),
            () => sdk.textToSpeech.convert(voice, { text: "y".repeat(10_001), modelId: "eleven_multilingual_v2" }),
            () => sdk.speechToSpeech.convert("bad voice!", { audio: seconds(1) })
          ],
          (call) => Effect.promise(() => call().then(() => undefined, (e: unknown) => (e as { cause?: unknown }).cause))
        )
        assert.deepStrictEqual(
          refusals.map((e) => isElevenLabsError(e) && e.reason._tag === "InvalidRequest" ? e.reason.field : String(e)),
          ["durationSeconds", "inputs", "text", "voiceId"]
        )
        assert.strictEqual((yield* server.stats).requests, 0)
      }))
  })
})
