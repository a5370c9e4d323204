import { assert, describe, it } from "@effect/vitest"
import * as Realtime from "../../src/client/Realtime.ts"

const op = "textToSpeech.streamInput"

describe("Realtime protocol", () => {
  it("paths: written from the one table, matched back", () => {
    assert.strictEqual(Realtime.pathOf("single", "JBFq"), "/v1/text-to-speech/JBFq/stream-input")
    assert.strictEqual(Realtime.pathOf("multi", "a b"), "/v1/text-to-speech/a%20b/multi-stream-input")
    assert.deepStrictEqual(Realtime.match("/v1/text-to-speech/a%20b/multi-stream-input"), {
      kind: "multi",
      voiceId: "a b"
    })
    assert.deepStrictEqual(Realtime.match("/v1/text-to-speech/x/stream-input/"), { kind: "single", voiceId: "x" })
    assert.strictEqual(Realtime.match("/v1/text-to-speech/x/stream"), undefined)
  })

  it("client messages: init is one space, keep-alive differs by endpoint, the key never in a message", () => {
    const init = JSON.parse(Realtime.encode(Realtime.init({ voiceSettings: { speed: 1.1 }, chunkSchedule: [50] })))
    assert.deepStrictEqual(init, {
      text: " ",
      voice_settings: { speed: 1.1 },
      generation_config: { chunk_length_schedule: [50] }
    })
    assert.deepStrictEqual(Realtime.keepAlive(), { text: " " })
    assert.deepStrictEqual(Realtime.keepAlive("c1"), { text: "", context_id: "c1" })
    assert.deepStrictEqual(Realtime.endOfInput, { text: "" })
    assert.deepStrictEqual(Realtime.flush("c1"), { text: "", context_id: "c1", flush: true })
    assert.deepStrictEqual(Realtime.closeContext("c1"), { context_id: "c1", close_context: true })
    assert.strictEqual(Realtime.normalizeText("Hello.  \n"), "Hello. ")
    assert.strictEqual(Realtime.normalizeText(""), "")
    assert.strictEqual(
      Realtime.queryString({ modelId: "eleven_flash_v2_5", inactivityTimeout: 60, syncAlignment: true }),
      "model_id=eleven_flash_v2_5&inactivity_timeout=60&sync_alignment=true"
    )
  })

  it("server frames: both spellings decode to one shape; what the simulator writes reads back", () => {
    const alignment = { chars: ["H", "i", " "], charStartTimesMs: [0, 40, 80], charDurationsMs: [40, 40, 30] }
    const audio = Realtime.decodeServerMessage(Realtime.serverFrame.audio(new Uint8Array([1, 2, 3]), alignment, "c1"))
    assert.strictEqual(audio?._tag, "Audio")
    if (audio?._tag === "Audio") {
      assert.deepStrictEqual([...audio.audio], [1, 2, 3])
      assert.deepStrictEqual(audio.alignment, alignment)
      assert.strictEqual(audio.contextId, "c1")
    }
    const snake = Realtime.decodeServerMessage(
      JSON.stringify({
        audio: "AQ==",
        alignment: { chars: ["a"], char_start_times_ms: [0], charsDurationsMs: [9] },
        context_id: "c2"
      })
    )
    assert.deepStrictEqual(snake?._tag === "Audio" ? [snake.alignment, snake.contextId] : [], [
      { chars: ["a"], charStartTimesMs: [0], charDurationsMs: [9] },
      "c2"
    ])
    assert.deepStrictEqual(Realtime.decodeServerMessage(Realtime.serverFrame.final("c1")), {
      _tag: "Final",
      contextId: "c1"
    })
    assert.deepStrictEqual(Realtime.decodeServerMessage(`{"is_final":true,"audio":null}`), {
      _tag: "Final",
      contextId: undefined
    })
    assert.isTrue(Realtime.isFinalFrame(`{"audio":null,"is_final": true}`))
    const error = Realtime.decodeServerMessage(Realtime.serverFrame.error("quota_exceeded", "out", 1008))
    assert.deepStrictEqual(error, {
      _tag: "Error",
      error: "quota_exceeded",
      message: "out",
      code: 1008,
      contextId: undefined
    })
    assert.strictEqual(Realtime.decodeServerMessage("not json"), undefined)
    assert.strictEqual(Realtime.decodeServerMessage("[1]"), undefined)
    assert.strictEqual(Realtime.decodeServerMessage(`{"audio":5}`), undefined)
    assert.strictEqual(Realtime.decodeServerMessage(`{"audio":"AQ==","alignment":{"chars":[1]}}`), undefined)
    assert.strictEqual(Realtime.decodeServerMessage(`{"error":7,"message":"m"}`), undefined)
    assert.strictEqual(Realtime.decodeServerMessage(`{"audio":null,"isFinal":null}`), undefined)
  })

  it("close reasons are cut to 123 bytes on a character boundary", () => {
    const long = "é".repeat(100)
    const cut = Realtime.closeReason(long)
    assert.isAtMost(Buffer.byteLength(cut, "utf8"), 123)
    assert.strictEqual(cut, "é".repeat(61))
    assert.strictEqual(Realtime.closeReason("short"), "short")
  })

  it("every ending is one reason of the error table", () => {
    const tag = (ending: Omit<Realtime.Ending, "operation">) =>
      Realtime.classifyClose({ operation: op, ...ending })._tag
    const frame = (error: string, message = "m") => ({ code: 1008, error: { error, message } })
    assert.strictEqual(tag(frame("quota_exceeded")), "QuotaExceeded")
    assert.strictEqual(tag(frame("invalid_api_key")), "InvalidApiKey")
    assert.strictEqual(tag(frame("too_many_concurrent_requests")), "ConcurrencyLimited")
    assert.strictEqual(tag(frame("system_busy")), "SystemBusy")
    assert.strictEqual(tag(frame("max_active_conversations")), "InvalidRequest")
    assert.strictEqual(tag(frame("invalid_input_message")), "InvalidRequest")
    const inactivity = Realtime.classifyClose({ operation: op, ...frame("input_timeout_exceeded") })
    assert.strictEqual(inactivity._tag === "Timeout" ? inactivity.phase : undefined, "inactivity")
    assert.strictEqual(tag({ code: 1008, reason: "We are sorry, something went wrong." }), "ServerError")
    assert.strictEqual(tag({ code: 1008, reason: "Invalid API key" }), "InvalidApiKey")
    assert.strictEqual(
      tag({ code: 1008, reason: "voice_settings field must be provided in the first message" }),
      "InvalidRequest"
    )
    assert.strictEqual(tag({ code: 1011 }), "ServerError")
    assert.strictEqual(tag({ code: undefined }), "Transport")
    assert.strictEqual(tag({ code: 1006 }), "Transport")
  })
})
