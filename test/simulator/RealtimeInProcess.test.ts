/**
 * The real-time TTS endpoints of the simulator through its in-process face
 * (`RealtimeInProcess`: a `Socket.WebSocketConstructor`), driven by Effect's own
 * `Socket.makeWebSocket` under `TestClock`: the protocol, authentication, the
 * contexts of `multi-stream-input`, the pools and credits, the faults, and one
 * run per seed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Semaphore } from "effect"
import { Socket } from "effect/socket"
import { TestClock } from "effect/testing"
import * as Realtime from "../../src/client/Realtime.ts"
import * as RealtimeInProcess from "../../src/simulator/RealtimeInProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { runVirtual } from "../utils/virtualTime.ts"
import { audioOf, converse, send, spoken, words } from "./realtimeScript.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const key = { "xi-api-key": "sim-key" }

const urlOf = (kind: Realtime.Kind, query: Realtime.Query & { readonly extra?: string } = {}) => {
  const qs = Realtime.queryString(query)
  const extra = query.extra === undefined ? "" : (qs === "" ? "" : "&") + query.extra
  return `wss://api.elevenlabs.io${Realtime.pathOf(kind, voice)}?${qs}${extra}`
}

const sim = Simulator.Simulator

describe("Realtime in process: stream-input", () => {
  it.effect("speaks the text with alignment that reproduces it exactly, then isFinal and a clean 1000", () =>
    Effect.gen(function*() {
      const chunks = ["Hello there, ", "this is the simulator ", "speaking — with émojis 🎙️ and spaces.  ", "Done "]
      const text = chunks.join("")
      const run = yield* runVirtual(converse(urlOf("single", { modelId: "eleven_flash_v2_5" }), key, [
        send(Realtime.init({ voiceSettings: { stability: 0.5 } })),
        ...chunks.map((c) => send(Realtime.text(c))),
        send(Realtime.endOfInput)
      ]))
      assert.deepStrictEqual(run.close, { code: 1000, reason: "" })
      const audio = audioOf(run.frames)
      assert.isAbove(audio.length, 1)
      assert.strictEqual(spoken(run.frames), text)
      for (const frame of audio) {
        assert.isNull(frame.isFinal)
        assert.deepStrictEqual(frame.normalizedAlignment, frame.alignment)
        const { chars, charDurationsMs, charStartTimesMs } = frame.alignment
        assert.isAbove(chars.length, 0)
        assert.strictEqual(charStartTimesMs.length, chars.length)
        assert.strictEqual(charDurationsMs.length, chars.length)
        for (let i = 1; i < chars.length; i++) assert.isAtLeast(charStartTimesMs[i], charStartTimesMs[i - 1])
        // Every item is one code point.
        for (const c of chars) assert.strictEqual(Array.from(c).length, 1)
      }
      // Real MP3: the first frame starts with a frame sync.
      const first = Buffer.from(audio[0].audio, "base64")
      assert.strictEqual(first[0], 0xff)
      assert.strictEqual(first[1]! & 0xe0, 0xe0)
      assert.deepStrictEqual(run.frames[run.frames.length - 1], { isFinal: true })
      // The protocol module decodes every frame.
      for (const raw of run.raw) assert.isDefined(Realtime.decodeServerMessage(raw))
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("generates by the chunk schedule, cutting at the last word boundary; flush generates the rest", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      const first = words(24) // 158 characters, in words ending with a space
      const head = first.slice(0, 100)
      const partial = "unfinishedwo" // crosses 120 mid-word: cut before it
      const rest = "rd and more "
      const run = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text(head)),
        { sleep: 5_000 },
        { check: (frames) => assert.strictEqual(frames.length, 0, "nothing under 120 characters") },
        send(Realtime.text(first.slice(100))),
        { until: (frames) => spoken(frames).length === first.length },
        { sleep: 5_000 },
        // The next step of the schedule is 160: 12 + 12 characters stay buffered.
        send(Realtime.text(partial)),
        send(Realtime.text(rest)),
        { sleep: 5_000 },
        { check: (frames) => assert.strictEqual(spoken(frames), first) },
        send(Realtime.flush()),
        { until: (frames) => spoken(frames).length === first.length + partial.length + rest.length },
        { sleep: 2_000 },
        { check: (frames) => assert.isFalse(frames.some((f) => f.isFinal === true), "flush keeps the socket") },
        send(Realtime.text(words(30, 200))),
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(spoken(run.frames), first + partial + rest + words(30, 200))
      assert.strictEqual((yield* simulator.stats).realtime!.generations.started, 3)
      assert.deepStrictEqual(run.close, { code: 1000, reason: "" })
      assert.strictEqual(run.frames.filter((f) => f.isFinal === true).length, 1)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("a buffer crossing the schedule mid-word is cut at its last whitespace; the word waits", () =>
    Effect.gen(function*() {
      const head = words(20) // 130 characters
      const run = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text(head.slice(0, 110))),
        send(Realtime.text(head.slice(110) + "unfinish")),
        { until: (frames) => frames.length > 0 },
        { sleep: 2_000 },
        { check: (frames) => assert.strictEqual(spoken(frames), head) },
        send(Realtime.text("ed business ")),
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(spoken(run.frames), head + "unfinished business ")
      assert.strictEqual(run.close.code, 1000)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("try_trigger_generation starts a generation from 50 characters; auto_mode at every message", () =>
    Effect.gen(function*() {
      const text = words(10) // 60 characters
      const tried = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({})),
        send({ text, try_trigger_generation: true }),
        { sleep: 5_000 },
        { check: (frames) => assert.strictEqual(spoken(frames), text) },
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(tried.close.code, 1000)
      const auto = yield* runVirtual(converse(urlOf("single", { autoMode: true }), key, [
        send(Realtime.init({})),
        send(Realtime.text("Short. ")),
        { sleep: 5_000 },
        { check: (frames) => assert.strictEqual(spoken(frames), "Short. ") },
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(auto.close.code, 1000)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("the init and keep-alive spaces are neither spoken nor billed; credits are per character at the model's multiplier", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      const text = "A sentence of fifty characters, spoken in full. 🎙️ "
      assert.strictEqual(Array.from(text).length, 51) // the microphone and its variation selector are two
      const flash = yield* runVirtual(converse(urlOf("single", { modelId: "eleven_flash_v2_5" }), key, [
        send(Realtime.init({})),
        send(Realtime.keepAlive()),
        send(Realtime.text(text)),
        send(Realtime.keepAlive()),
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(spoken(flash.frames), text)
      let stats = yield* simulator.stats
      assert.strictEqual(stats.realtime!.creditsCharged, 26) // ceil(51 x 0.5)
      assert.strictEqual(stats.creditsCharged, 26)
      assert.strictEqual(stats.accounts["key1"]!.characterCount, 26)
      assert.strictEqual(stats.realtime!.characters.received, 51)
      const multilingual = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text(text)),
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(spoken(multilingual.frames), text)
      stats = yield* simulator.stats
      assert.strictEqual(stats.realtime!.creditsCharged, 26 + 51)
      assert.strictEqual(stats.accounts["key1"]!.characterCount, 77)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("quota_exceeded when the credits run out: an error frame, then 1008", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      yield* simulator.setCredits(20)
      const run = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text("This text costs more than the twenty credits left. ")),
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(run.frames.length, 1)
      assert.strictEqual(run.frames[0].error, "quota_exceeded")
      assert.strictEqual(run.frames[0].code, 1008)
      assert.match(run.frames[0].message, /exceeds your quota of \d+\. You have 20 credits remaining, while 51 credits/)
      assert.strictEqual(run.close.code, 1008)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.realtime!.creditsCharged, 0)
      assert.strictEqual(stats.realtime!.errors["quota_exceeded"], 1)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))
})

describe("Realtime in process: inactivity", () => {
  it.effect("no message for 20 s: input_timeout_exceeded with the documented message, then 1008", () =>
    Effect.gen(function*() {
      const run = yield* runVirtual(converse(urlOf("single"), key, [send(Realtime.init({}))]))
      const message = Realtime.serverMessages.inputTimeout(20)
      assert.include(message, "within the timeout of 20.0 seconds")
      assert.deepStrictEqual(run.frames, [{ message, error: "input_timeout_exceeded", code: 1008 }])
      assert.deepStrictEqual(run.close, { code: 1008, reason: Realtime.closeReason(message) })
      assert.isAtMost(Buffer.byteLength(run.close.reason), 123)
      assert.closeTo(run.times[0]!, 20_000, 100) // the test clock moves in steps of 100 ms
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("keep-alives reset the timer; inactivity_timeout is honoured and taken as 180 past 180", () =>
    Effect.gen(function*() {
      const alive = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({})),
        ...Array.from({ length: 6 }, () => [{ sleep: 15_000 }, send(Realtime.keepAlive())]).flat(),
        send(Realtime.text("Still here. ")),
        send(Realtime.endOfInput)
      ]))
      assert.deepStrictEqual(alive.close, { code: 1000, reason: "" })
      assert.strictEqual(spoken(alive.frames), "Still here. ")
      const short = yield* runVirtual(
        converse(urlOf("single", { inactivityTimeout: 3 }), key, [send(Realtime.init({}))])
      )
      assert.strictEqual(short.frames[0].message, Realtime.serverMessages.inputTimeout(3))
      assert.closeTo(short.times[0]!, 3_000, 100)
      const long = yield* runVirtual(
        converse(urlOf("single", { inactivityTimeout: 600 }), key, [send(Realtime.init({}))])
      )
      assert.strictEqual(long.frames[0].message, Realtime.serverMessages.inputTimeout(180))
      assert.closeTo(long.times[0]!, 180_000, 100)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))
})

describe("Realtime in process: inactivity while generating", () => {
  it.effect("no input_timeout_exceeded while a generation runs: the timer counts from the end of the audio", () =>
    Effect.gen(function*() {
      // About 24 s of audio generation on the standard pool (4 ms per character), longer than the timeout.
      const text = words(800).slice(0, 5_889)
      const run = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({ contextId: "long" })),
        send(Realtime.text(text, "long", true)),
        send(Realtime.closeContext("long"))
      ]))
      assert.strictEqual(spoken(run.frames, "long"), text)
      const final = run.frames.findIndex((f) => f.isFinal === true)
      assert.isAbove(final, 0, "the context's isFinal came")
      const lastAudio = run.times[final]!
      assert.isAbove(lastAudio, 20_000, "the generation outlasted the timeout")
      // Then the socket, with no context left, is closed for inactivity, 20 s after the audio ended.
      const last = run.frames[run.frames.length - 1]
      assert.strictEqual(last.error, "input_timeout_exceeded")
      assert.closeTo(run.times[run.times.length - 1]! - lastAudio, 20_000, 200)
      assert.strictEqual(run.close.code, 1008)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))
})

describe("Realtime in process: authentication and refusals", () => {
  it.effect("the key by header, or in the first message (xi-api-key, xi_api_key, authorization)", () =>
    Effect.gen(function*() {
      const script = (first: Record<string, unknown>) => [
        JSON.stringify({ text: " ", ...first }),
        send(Realtime.text("Authenticated. ")),
        send(Realtime.endOfInput)
      ]
      const byHeader = yield* runVirtual(converse(urlOf("single"), key, script({})))
      const hyphen = yield* runVirtual(converse(urlOf("single"), undefined, script({ "xi-api-key": "sim-key" })))
      const underscore = yield* runVirtual(converse(urlOf("single"), undefined, script({ xi_api_key: "sim-key" })))
      const bearer = yield* runVirtual(
        converse(urlOf("single"), undefined, script({ authorization: "Bearer sim-key" }))
      )
      for (const run of [byHeader, hyphen, underscore, bearer]) {
        assert.strictEqual(spoken(run.frames), "Authenticated. ")
        assert.deepStrictEqual(run.close, { code: 1000, reason: "" })
      }
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("a bad key: the handshake succeeds, then an error frame and 1008; no key at all likewise", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      const badHeader = yield* runVirtual(converse(urlOf("single"), { "xi-api-key": "wrong" }, []))
      assert.deepStrictEqual(badHeader.frames, [{ message: "Invalid API key", error: "invalid_api_key", code: 1008 }])
      assert.deepStrictEqual(badHeader.close, { code: 1008, reason: "Invalid API key" })
      const badMessage = yield* runVirtual(
        converse(urlOf("single"), undefined, [JSON.stringify({ text: " ", xi_api_key: "wrong" })])
      )
      assert.strictEqual(badMessage.frames[0].error, "invalid_api_key")
      assert.strictEqual(badMessage.close.code, 1008)
      const none = yield* runVirtual(converse(urlOf("single"), undefined, [send(Realtime.init({}))]))
      assert.strictEqual(none.frames[0].error, "needs_authorization")
      assert.strictEqual(none.close.code, 1008)
      // The library's classification of these endings.
      const reason = Realtime.classifyClose({
        operation: "textToSpeech.streamInput",
        code: badHeader.close.code,
        error: { error: badHeader.frames[0].error, message: badHeader.frames[0].message }
      })
      assert.strictEqual(reason._tag, "InvalidApiKey")
      const stats = yield* simulator.stats
      assert.deepStrictEqual(stats.realtime!.errors, { invalid_api_key: 2, needs_authorization: 1 })
      // The key never shows in the record.
      assert.notInclude(JSON.stringify(stats), "sim-key")
      assert.notInclude(JSON.stringify(stats), "wrong")
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("a path that is neither endpoint fails the handshake (never opens)", () =>
    Effect.gen(function*() {
      const socket = yield* Socket.makeWebSocket(`wss://api.elevenlabs.io/v1/text-to-speech/${voice}/stream`, {
        headers: key
      })
      const failed = yield* Effect.flip(Effect.scoped(socket.reader))
      assert.strictEqual(failed.reason._tag, "SocketOpenError")
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("eleven_v3, an unknown model or voice, a format above the plan: an error frame and 1008", () =>
    Effect.gen(function*() {
      const v3 = yield* runVirtual(converse(urlOf("single", { modelId: "eleven_v3" }), key, []))
      assert.strictEqual(v3.frames[0].error, "unsupported_model")
      assert.include(v3.frames[0].message, "eleven_v3")
      assert.strictEqual(v3.close.code, 1008)
      const unknownModel = yield* runVirtual(converse(urlOf("multi", { modelId: "eleven_nope" }), key, []))
      assert.strictEqual(unknownModel.frames[0].error, "model_not_found")
      const unknownVoice = yield* runVirtual(
        converse(`ws://x/v1/text-to-speech/nobody/stream-input`, key, [])
      )
      assert.strictEqual(unknownVoice.frames[0].error, "voice_id_does_not_exist")
      const format = yield* runVirtual(converse(urlOf("single", { outputFormat: "pcm_44100" }), key, []))
      assert.strictEqual(format.frames[0].error, "output_format_not_allowed")
      assert.strictEqual(format.close.code, 1008)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5, plan: "creator" }))))

  it.effect("voice_settings may be repeated, not changed (1008 with the sources' message, no error frame)", () =>
    Effect.gen(function*() {
      const settings = { stability: 0.4, similarity_boost: 0.8, speed: 1.1 }
      const same = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({ voiceSettings: settings })),
        JSON.stringify({
          text: "Same settings. ",
          voice_settings: { speed: 1.1, similarity_boost: 0.8, stability: 0.4 }
        }),
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(same.close.code, 1000)
      const changed = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({ voiceSettings: settings })),
        JSON.stringify({ text: "Other settings. ", voice_settings: { ...settings, stability: 0.9 } })
      ]))
      assert.deepStrictEqual(changed.frames, [])
      assert.deepStrictEqual(changed.close, { code: 1008, reason: Realtime.serverMessages.voiceSettingsChanged })
      // A keep-alive as the first message of a multi-context socket fixes "no settings" (pipecat#4520).
      const late = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.keepAlive("a")),
        send(Realtime.init({ contextId: "a", voiceSettings: settings }))
      ]))
      assert.deepStrictEqual(late.close, { code: 1008, reason: Realtime.serverMessages.voiceSettingsChanged })
      assert.strictEqual(
        Realtime.classifyClose({ operation: "x", code: late.close.code, reason: late.close.reason })._tag,
        "InvalidRequest"
      )
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("voice_settings are fixed per context: each context its own, a change within one refused", () =>
    Effect.gen(function*() {
      // The multi-context guide and the AsyncAPI example open a context "with different settings" on one socket.
      const both = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({ contextId: "a", voiceSettings: { stability: 0.5 } })),
        send(Realtime.init({ contextId: "b", voiceSettings: { stability: 0.9, speed: 1.1 } })),
        send(Realtime.text("First voice. ", "a", true)),
        JSON.stringify({ text: "Second voice. ", context_id: "b", voice_settings: { speed: 1.1, stability: 0.9 } }),
        send(Realtime.flush("b")),
        send(Realtime.closeSocket)
      ]))
      assert.deepStrictEqual(both.close, { code: 1000, reason: "" })
      assert.strictEqual(spoken(both.frames, "a"), "First voice. ")
      assert.strictEqual(spoken(both.frames, "b"), "Second voice. ")
      const changed = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({ contextId: "a", voiceSettings: { stability: 0.5 } })),
        send(Realtime.init({ contextId: "b", voiceSettings: { stability: 0.9 } })),
        JSON.stringify({ text: "Changed. ", context_id: "b", voice_settings: { stability: 0.5 } })
      ]))
      assert.deepStrictEqual(changed.close, { code: 1008, reason: Realtime.serverMessages.voiceSettingsChanged })
      // A context id used again after its isFinal is a new context, with settings of its own.
      const reused = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({ contextId: "a", voiceSettings: { stability: 0.5 } })),
        send(Realtime.closeContext("a")),
        { until: (frames) => frames.some((f) => f.isFinal === true) },
        send(Realtime.init({ contextId: "a", voiceSettings: { stability: 0.2 } })),
        send(Realtime.text("Again. ", "a", true)),
        send(Realtime.closeSocket)
      ]))
      assert.deepStrictEqual(reused.close, { code: 1000, reason: "" })
      assert.strictEqual(spoken(reused.frames, "a"), "Again. ")
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("invalid input: not JSON, a bad field type, settings out of range, a schedule item under 50", () =>
    Effect.gen(function*() {
      const cases = [
        "not json",
        JSON.stringify({ text: 42 }),
        JSON.stringify({ text: " ", voice_settings: { speed: 2 } }),
        JSON.stringify({ text: " ", generation_config: { chunk_length_schedule: [20] } }),
        JSON.stringify([1, 2])
      ]
      for (const frame of cases) {
        const run = yield* runVirtual(converse(urlOf("single"), key, [frame]))
        assert.deepStrictEqual(run.frames, [{
          message: Realtime.serverMessages.invalidInput,
          error: "invalid_input_message",
          code: 1008
        }], frame)
        assert.strictEqual(run.close.code, 1008)
      }
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))
})

describe("Realtime in process: multi-stream-input", () => {
  it.effect("frames carry their contextId; close_context ends a context with isFinal after its last audio", () =>
    Effect.gen(function*() {
      const a = "Context A speaks these words first. "
      const b = "And context B answers in its own voice. "
      const run = yield* runVirtual(converse(urlOf("multi", { modelId: "eleven_flash_v2_5" }), key, [
        send(Realtime.init({ contextId: "a" })),
        send(Realtime.init({ contextId: "b" })),
        send(Realtime.text(a, "a")),
        send(Realtime.text(b, "b")),
        send(Realtime.flush("a")),
        send(Realtime.flush("b")),
        send(Realtime.closeContext("a")),
        { until: (frames) => frames.some((f) => f.isFinal === true && f.contextId === "a") },
        send(Realtime.text("More for B. ", "b")),
        send(Realtime.closeSocket)
      ]))
      assert.strictEqual(spoken(run.frames, "a"), a)
      assert.strictEqual(spoken(run.frames, "b"), b + "More for B. ")
      for (const f of run.frames) assert.include(["a", "b"], f.contextId)
      const finalA = run.frames.findIndex((f) => f.isFinal === true && f.contextId === "a")
      const lastAudioA = run.frames.findLastIndex((f) => typeof f.audio === "string" && f.contextId === "a")
      assert.isAbove(finalA, lastAudioA)
      // close_socket flushes B, ends it, then closes the socket cleanly.
      assert.deepStrictEqual(run.frames[run.frames.length - 1], { isFinal: true, contextId: "b" })
      assert.deepStrictEqual(run.close, { code: 1000, reason: "" })
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("close_context drops unflushed text; a closed context id can be used again", () =>
    Effect.gen(function*() {
      const run = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({ contextId: "a" })),
        send(Realtime.text("Flushed words. ", "a", true)),
        send(Realtime.text("Interrupted before a flush. ", "a")),
        send(Realtime.closeContext("a")),
        { until: (frames) => frames.some((f) => f.isFinal === true) },
        send(Realtime.init({ contextId: "a" })),
        send(Realtime.text("A new context a. ", "a", true)),
        send(Realtime.closeContext("a")),
        { until: (frames) => frames.filter((f) => f.isFinal === true).length === 2 },
        send(Realtime.closeSocket)
      ]))
      assert.strictEqual(spoken(run.frames, "a"), "Flushed words. A new context a. ")
      assert.strictEqual(run.close.code, 1000)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("at most 5 contexts: the 6th is refused with max_active_conversations and 1008", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      const run = yield* runVirtual(converse(urlOf("multi"), key, [
        ...["c1", "c2", "c3", "c4"].map((id) => send(Realtime.init({ contextId: id }))),
        // A flush to an unseen context opens it too (as pipecat#4126 reports).
        send(Realtime.flush("c5")),
        { sleep: 1_000 },
        { check: (frames) => assert.deepStrictEqual(frames, []) },
        send(Realtime.init({ contextId: "c6" }))
      ]))
      assert.deepStrictEqual(run.frames, [{
        message: Realtime.serverMessages.maxActiveConversations,
        error: "max_active_conversations",
        code: 1008,
        contextId: "c6"
      }])
      // The close reason is the message cut to the 123 bytes a close frame allows.
      assert.deepStrictEqual(run.close, {
        code: 1008,
        reason:
          "Maximum simultaneous contexts per WebSocket connection exceeded (5). Please close an existing context before opening a new "
      })
      const stats = yield* simulator.stats
      assert.strictEqual(stats.realtime!.contexts.opened, 5)
      assert.strictEqual(stats.realtime!.contexts.open, 0)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("a closed context frees its place once its isFinal is sent", () =>
    Effect.gen(function*() {
      const run = yield* runVirtual(converse(urlOf("multi"), key, [
        ...["c1", "c2", "c3", "c4", "c5"].map((id) => send(Realtime.init({ contextId: id }))),
        send(Realtime.closeContext("c1")),
        { until: (frames) => frames.some((f) => f.isFinal === true) },
        send(Realtime.init({ contextId: "c6" })),
        send(Realtime.text("Sixth, in the freed place. ", "c6", true)),
        send(Realtime.closeSocket)
      ]))
      assert.strictEqual(spoken(run.frames, "c6"), "Sixth, in the freed place. ")
      assert.strictEqual(run.close.code, 1000)
      assert.strictEqual(run.frames.filter((f) => f.isFinal === true).length, 6)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("a context without context_id is the default context; its frames carry no contextId", () =>
    Effect.gen(function*() {
      const run = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({})),
        send(Realtime.text("Default context. ", undefined, true)),
        send(Realtime.closeSocket)
      ]))
      assert.strictEqual(spoken(run.frames), "Default context. ")
      for (const f of run.frames) assert.notProperty(f, "contextId")
      assert.strictEqual(run.close.code, 1000)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))
})

describe("Realtime in process: pools, faults, determinism", () => {
  /** One utterance on its own socket: connect, init, then (holding `permit`) text + flush until all of it is heard. */
  const utterance = (text: string, permit?: Semaphore.Semaphore) =>
    converse(urlOf("single"), key, [
      send(Realtime.init({})),
      { sleep: 500 },
      ...(permit === undefined ? [] : [{ effect: Effect.asVoid(permit.take(1)) }]),
      send(Realtime.text(text, undefined, true)),
      { until: (frames: ReadonlyArray<any>) => spoken(frames).length === text.length },
      ...(permit === undefined ? [] : [{ effect: Effect.asVoid(permit.release(1)) }]),
      send(Realtime.endOfInput)
    ])

  it.effect("a generation holds a slot only while it generates: a client within the pool never exceeds it", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      const permit = yield* Semaphore.make(2) // the free plan's standard pool
      const texts = Array.from({ length: 6 }, (_, i) => words(12, i * 20))
      const runs = yield* runVirtual(
        Effect.all(texts.map((t) => utterance(t, permit)), { concurrency: "unbounded" })
      )
      runs.forEach((run, i) => {
        assert.strictEqual(spoken(run.frames), texts[i])
        assert.strictEqual(run.close.code, 1000)
      })
      const stats = yield* simulator.stats
      assert.strictEqual(stats.pools.standard.maxInFlight, 2)
      assert.strictEqual(stats.pools.standard.inFlight, 0)
      assert.strictEqual(stats.pools.standard.rejected, 0)
      assert.strictEqual(stats.realtime!.generations.maxInFlight.standard, 2)
      assert.strictEqual(stats.realtime!.generations.completed, 6)
      // Six sockets were open at once, idle ones hold no slot.
      assert.strictEqual(stats.realtime!.sessions.opened, 6)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5, plan: "free" }))))

  it.effect("past the pool: too_many_concurrent_requests naming the limit, then 1008", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      const runs = yield* runVirtual(
        Effect.all([0, 1, 2].map((i) => utterance(words(12, i * 20))), { concurrency: "unbounded" })
      )
      const refused = runs.filter((r) => r.close.code === 1008)
      assert.strictEqual(refused.length, 1)
      assert.strictEqual(refused[0]!.frames[0].error, "too_many_concurrent_requests")
      assert.include(refused[0]!.frames[0].message, "a maximum of 2 concurrent requests")
      assert.strictEqual(runs.filter((r) => r.close.code === 1000).length, 2)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.pools.standard.maxInFlight, 2)
      assert.strictEqual(stats.pools.standard.rejected, 1)
      assert.strictEqual(
        Realtime.classifyClose({
          operation: "x",
          code: 1008,
          error: { error: refused[0]!.frames[0].error, message: refused[0]!.frames[0].message }
        })._tag,
        "ConcurrencyLimited"
      )
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5, plan: "free" }))))

  it.effect("drop: some audio, then the connection ends with no close frame (1006); only what was sent is charged", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      yield* simulator.configure({ realtime: { next: ["drop"] } })
      const text = words(30)
      const run = yield* runVirtual(converse(urlOf("single", { modelId: "eleven_flash_v2_5" }), key, [
        send(Realtime.init({})),
        send(Realtime.text(text, undefined, true)),
        { sleep: 10_000 },
        send(Realtime.endOfInput)
      ]))
      assert.deepStrictEqual(run.close, { code: 1006, reason: "" })
      const heard = spoken(run.frames)
      assert.isAbove(heard.length, 0)
      assert.isBelow(heard.length, text.length)
      assert.isTrue(text.startsWith(heard))
      const stats = yield* simulator.stats
      assert.strictEqual(stats.realtime!.faults.drop, 1)
      assert.strictEqual(stats.realtime!.sessions.closedByCode["1006"], 1)
      assert.strictEqual(stats.realtime!.creditsCharged, Math.ceil(Array.from(heard).length * 0.5))
      assert.strictEqual(stats.pools.flash.inFlight, 0)
      assert.strictEqual(Realtime.classifyClose({ operation: "x", code: undefined })._tag, "Transport")
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("close1011: some audio, then a 1011 close", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      yield* simulator.configure({ realtime: { next: ["close1011"] } })
      const text = words(30)
      const run = yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({ contextId: "x" })),
        send(Realtime.text(text, "x", true))
      ]))
      assert.strictEqual(run.close.code, 1011)
      const heard = spoken(run.frames, "x")
      assert.isAbove(heard.length, 0)
      assert.isBelow(heard.length, text.length)
      assert.strictEqual((yield* simulator.stats).realtime!.faults.close1011, 1)
      assert.strictEqual(Realtime.classifyClose({ operation: "x", code: 1011 })._tag, "ServerError")
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("stall: the audio stops for stallMs mid-generation, then the rest arrives", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      yield* simulator.configure({ realtime: { next: ["stall"], stallMs: 4_000 } })
      const text = words(30)
      const run = yield* runVirtual(converse(urlOf("single"), key, [
        send(Realtime.init({})),
        send(Realtime.text(text, undefined, true)),
        { until: (frames) => spoken(frames).length === text.length },
        send(Realtime.endOfInput)
      ]))
      assert.strictEqual(spoken(run.frames), text)
      assert.strictEqual(run.close.code, 1000)
      const gaps = run.times.slice(1).map((t, i) => t - run.times[i]!)
      assert.isAtLeast(Math.max(...gaps), 4_000)
      assert.strictEqual((yield* simulator.stats).realtime!.faults.stall, 1)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("seeded fault rates apply per generation; set back to 0 they stop", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      yield* simulator.configure({ realtime: { faults: { drop: 1 } } })
      const dropped = yield* runVirtual(utterance(words(30)))
      assert.strictEqual(dropped.close.code, 1006)
      yield* simulator.configure({ realtime: { faults: { drop: 0 } } })
      const clean = yield* runVirtual(utterance(words(30)))
      assert.strictEqual(clean.close.code, 1000)
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))

  it.effect("the same seed gives the same frames at the same times; another seed other times", () =>
    Effect.gen(function*() {
      const scenario = (seed: number) =>
        Effect.gen(function*() {
          const runs = yield* runVirtual(
            Effect.all(
              [0, 1, 2, 3, 4, 5].map((i) => {
                const context = i % 2 === 0 ? undefined : `c${i}`
                return converse(urlOf(i % 2 === 0 ? "single" : "multi", { modelId: "eleven_flash_v2_5" }), key, [
                  send(Realtime.init(context === undefined ? {} : { contextId: context })),
                  ...[0, 1, 2, 3].flatMap((j) => [
                    send(Realtime.text(words(8, i * 50 + j * 10), context, true)),
                    { sleep: 150 + 50 * i }
                  ]),
                  send(context === undefined ? Realtime.endOfInput : Realtime.closeSocket)
                ])
              }),
              { concurrency: "unbounded" }
            )
          )
          const stats = yield* (yield* sim).stats
          return { runs, realtime: stats.realtime, credits: stats.creditsCharged }
        }).pipe(
          Effect.provide(
            RealtimeInProcess.layerSimulated({ seed, plan: "free", realtime: { faults: { drop: 0.2, stall: 0.3 } } })
          ),
          Effect.provide(TestClock.layer())
        )
      const first = yield* scenario(11)
      const second = yield* scenario(11)
      assert.deepStrictEqual(second, first)
      assert.isAbove(first.realtime!.frames.audio, 8)
      // A run with variety: clean closes, drops and refusals.
      assert.isAtLeast(new Set(first.runs.map((r) => r.close.code)).size, 2)
      const other = yield* scenario(12)
      assert.notDeepEqual(other.runs.map((r) => r.times), first.runs.map((r) => r.times))
    }))
})

describe("Realtime in process: the record", () => {
  it.effect("stats count sessions by close code, contexts, characters, generations and frames; reset clears them", () =>
    Effect.gen(function*() {
      const simulator = yield* sim
      yield* runVirtual(converse(urlOf("multi"), key, [
        send(Realtime.init({ contextId: "a" })),
        send(Realtime.text("One two three. ", "a", true)),
        send(Realtime.closeSocket)
      ]))
      let stats = (yield* simulator.stats).realtime!
      assert.deepStrictEqual(stats.sessions, { open: 0, opened: 1, closedByCode: { "1000": 1 } })
      assert.deepStrictEqual(stats.contexts, { open: 0, opened: 1 })
      assert.deepStrictEqual(stats.characters, { received: 15, generated: 15 })
      assert.strictEqual(stats.generations.started, 1)
      assert.strictEqual(stats.frames.received, 3)
      assert.strictEqual(stats.frames.final, 1)
      assert.isAbove(stats.frames.audio, 0)
      yield* simulator.resetStats
      stats = (yield* simulator.stats).realtime!
      assert.deepStrictEqual([stats.sessions.opened, stats.frames.audio, stats.creditsCharged], [0, 0, 0])
    }).pipe(Effect.provide(RealtimeInProcess.layerSimulated({ seed: 5 }))))
})
