import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
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
      assert.strictEqual((bytes[1]! & 0xe0), 0xe0)
      assert.strictEqual(res.headers["character-cost"], "28")
      assert.match(res.headers["request-id"]!, /^[A-Za-z0-9]{20}$/)
      assert.match(res.headers["x-trace-id"]!, /^[0-9a-f]{32}$/)
    }).pipe(Effect.provide(InProcess.layerSimulated({ seed: 3 }))))
})
