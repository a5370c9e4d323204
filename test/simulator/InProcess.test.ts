import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { TestClock } from "effect/testing"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"

const tts = (text: string, extra: { readonly path?: string; readonly key?: string; readonly model?: string } = {}) =>
  HttpClientRequest.post(`/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM${extra.path ?? ""}`).pipe(
    HttpClientRequest.setHeader("xi-api-key", extra.key ?? "sim-key"),
    HttpClientRequest.bodyJsonUnsafe({ text, model_id: extra.model ?? "eleven_multilingual_v2" })
  )

describe("InProcess", () => {
  it.effect("answers a TTS request with MP3 after the modelled latency", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const fiber = yield* Effect.forkChild(
        client.execute(tts("Hello world, this is a test.")).pipe(
          Effect.flatMap((res) => Effect.map(res.arrayBuffer, (buf) => ({ res, bytes: new Uint8Array(buf) })))
        )
      )
      yield* TestClock.adjust("10 seconds")
      const { bytes, res } = yield* Fiber.join(fiber)
      assert.strictEqual(res.status, 200)
      assert.strictEqual(res.headers["content-type"], "audio/mpeg")
      assert.strictEqual(bytes[0], 0xff)
      assert.strictEqual(bytes[1]! & 0xe0, 0xe0)
      assert.strictEqual(res.headers["character-cost"], "28")
      assert.match(res.headers["request-id"]!, /^[A-Za-z0-9]{20}$/)
      assert.match(res.headers["x-trace-id"]!, /^[0-9a-f]{32}$/)
    }).pipe(Effect.provide(InProcess.layerSimulated({ seed: 3 }))))

  it.effect("a streamed body holds its slot until read to the end", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const sim = yield* Simulator.Simulator
      const fiber = yield* Effect.forkChild(client.execute(tts("s".repeat(300), { path: "/stream" })))
      yield* TestClock.adjust(1_000)
      const res = yield* Fiber.join(fiber)
      assert.strictEqual(res.status, 200)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 1)
      const body = yield* Effect.forkChild(res.arrayBuffer)
      yield* TestClock.adjust(10_000)
      const bytes = yield* Fiber.join(body)
      assert.isTrue(bytes.byteLength > 0)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 0)
    }).pipe(Effect.provide(InProcess.layerSimulated({ seed: 5 }))))

  it.effect("a reader that stops early gives the slot back", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const sim = yield* Simulator.Simulator
      const fiber = yield* Effect.forkChild(Effect.scoped(
        client.execute(tts("s".repeat(600), { path: "/stream" })).pipe(
          Effect.flatMap((res) => Effect.asVoid(res.stream.pipe(Stream.take(1), Stream.runDrain)))
        )
      ))
      yield* TestClock.adjust(2_000)
      yield* Fiber.join(fiber)
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 0)
    }).pipe(Effect.provide(InProcess.layerSimulated({ seed: 5 }))))

  it.effect("faults map to transport behaviour: reset fails, cut breaks the body, hang waits for interruption", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const sim = yield* Simulator.Simulator
      yield* sim.setFaults({ connectionReset: 1 })
      const resetFiber = yield* Effect.forkChild(Effect.flip(client.execute(tts("reset"))))
      yield* TestClock.adjust(5_000)
      const reset = yield* Fiber.join(resetFiber)
      assert.strictEqual(reset.reason._tag, "TransportError")

      yield* sim.setFaults({ connectionReset: 0, streamCut: 1 })
      const cutFiber = yield* Effect.forkChild(
        client.execute(tts("c".repeat(300), { path: "/stream" })).pipe(
          Effect.flatMap((r) => r.arrayBuffer),
          Effect.flip
        )
      )
      yield* TestClock.adjust(60_000)
      const cut = yield* Fiber.join(cutFiber)
      assert.strictEqual(cut._tag, "HttpClientError")

      yield* sim.setFaults({ streamCut: 0, hang: 1 })
      const hang = yield* Effect.forkChild(client.execute(tts("hang")).pipe(Effect.timeout("30 seconds"), Effect.flip))
      yield* TestClock.adjust(29_000)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 1)
      yield* TestClock.adjust(2_000)
      const timedOut = yield* Fiber.join(hang)
      assert.strictEqual(timedOut._tag, "TimeoutError")
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 0)
    }).pipe(Effect.provide(InProcess.layerSimulated({ seed: 9 }))))

  it.effect("a thousand requests in virtual time", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const sim = yield* Simulator.Simulator
      const one = (i: number) =>
        client.execute(tts(`request ${i}`, { model: "eleven_flash_v2_5" })).pipe(
          Effect.flatMap((r) => Effect.as(r.arrayBuffer, r.status)),
          Effect.delay(i * 5)
        )
      const fiber = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), one, { concurrency: "unbounded" })
      )
      for (let i = 0; i < 200 && fiber.pollUnsafe() === undefined; i++) yield* TestClock.adjust(100)
      const statuses = yield* Fiber.join(fiber)
      const stats = yield* sim.stats
      assert.strictEqual(stats.requests, 1000)
      assert.strictEqual(statuses.filter((s) => s === 200).length + (stats.byStatus["429"] ?? 0), 1000)
      assert.isTrue(stats.pools.flash.maxInFlight <= 20)
    }).pipe(Effect.provide(InProcess.layerSimulated({ seed: 1 }))))

  it.effect("two runs with one seed give the same answers and the same record", () =>
    Effect.gen(function*() {
      const run = Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        const sim = yield* Simulator.Simulator
        const one = (i: number) =>
          client.execute(
            tts(`line ${i} `.repeat(1 + (i % 5)), i % 2 === 0 ? { model: "eleven_flash_v2_5", path: "/stream" } : {})
          ).pipe(
            Effect.flatMap((r) =>
              Effect.map(r.arrayBuffer, (b) => [r.status, r.headers["request-id"] ?? "", b.byteLength] as const)
            ),
            Effect.catch((e) => Effect.succeed([e.reason._tag, "", 0] as const)),
            Effect.delay(i * 11)
          )
        const fiber = yield* Effect.forkChild(
          Effect.forEach(Array.from({ length: 200 }, (_, i) => i), one, { concurrency: "unbounded" })
        )
        for (let i = 0; i < 500 && fiber.pollUnsafe() === undefined; i++) yield* TestClock.adjust(50)
        return { answers: yield* Fiber.join(fiber), stats: yield* sim.stats }
      }).pipe(
        Effect.provide(
          InProcess.layerSimulated({ seed: 77, plan: "starter", faults: { ...Simulator.faultMix(0.2), hang: 0 } })
        ),
        Effect.provide(TestClock.layer())
      )
      const first = yield* run
      const second = yield* run
      assert.deepStrictEqual(second, first)
      assert.isTrue(first.stats.byStatus["429"]! > 0 && first.stats.byStatus["200"]! > 0)
    }))

  it.effect("without transport spans: the same answers for the same seed (query, headers, body), bad URLs fail typed", () =>
    Effect.gen(function*() {
      const answer = (transportSpans: boolean) =>
        Effect.gen(function*() {
          const sim = yield* Simulator.make({ seed: 9, plan: "pro" })
          const client = yield* InProcess.makeHttpClient(sim, { transportSpans })
          const request = tts("Same text, same seed.", { path: "/stream" }).pipe(
            HttpClientRequest.setUrlParam("output_format", "pcm_16000")
          )
          const fiber = yield* Effect.forkChild(Effect.flatMap(client.execute(request), (res) =>
            Effect.map(
              res.arrayBuffer,
              (b) => ({ status: res.status, headers: { ...res.headers }, bytes: Array.from(new Uint8Array(b)) })
            )))
          yield* TestClock.adjust("20 seconds")
          const out = yield* Fiber.join(fiber)
          const noKey = yield* Effect.forkChild(client.execute(tts("x", { key: "" })))
          yield* TestClock.adjust("5 seconds")
          return { out, noKey: (yield* Fiber.join(noKey)).status }
        })
      const lean = yield* answer(false)
      const full = yield* answer(true)
      assert.strictEqual(lean.out.status, 200)
      assert.strictEqual(lean.out.headers["content-type"], "audio/pcm")
      assert.deepStrictEqual(lean, full)
      assert.strictEqual(lean.noKey, 401)
      const sim = yield* Simulator.make({ seed: 9 })
      const client = yield* InProcess.makeHttpClient(sim, { transportSpans: false })
      const bad = yield* Effect.flip(client.get("http://[bad"))
      assert.strictEqual(bad.reason._tag, "InvalidUrlError")
    }))

  it.effect("fromBytes: a response over bytes in memory, read as often as wanted", () =>
    Effect.gen(function*() {
      const res = InProcess.fromBytes(
        HttpClientRequest.get("http://x/y"),
        429,
        { "Content-Type": "application/json" },
        new TextEncoder().encode("{\"a\":1}")
      )
      assert.strictEqual(res.status, 429)
      assert.strictEqual(res.headers["content-type"], "application/json")
      assert.deepStrictEqual(yield* res.json, { a: 1 })
      assert.strictEqual(yield* res.text, "{\"a\":1}")
      const chunks = yield* Stream.runCollect(res.stream)
      assert.strictEqual(chunks.length, 1)
    }))
})
