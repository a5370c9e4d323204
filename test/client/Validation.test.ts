import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { characterLimits, convertOutputFormats, streamOutputFormats } from "../../src/client/Models.ts"
import {
  characterCount,
  checkMusic,
  checkSpeechToText,
  checkTextToSpeech,
  checkVoiceId,
  voiceSettingRanges
} from "../../src/client/Validation.ts"

const op = "textToSpeech.convert"
const voiceId = "JBFqnCBsd6RMkjVDRZzb"

describe("Validation", () => {
  it("accepts a plain request", () => {
    assert.isUndefined(checkTextToSpeech(op, "convert", voiceId, { text: "Hello" }))
    assert.isUndefined(checkTextToSpeech(op, "stream", voiceId, { text: "Hello", outputFormat: "opus_48000_64" }))
  })

  it("blank text", () => {
    for (const text of ["", " ", "\n\t  "]) {
      const e = checkTextToSpeech(op, "convert", voiceId, { text })
      assert.strictEqual(e?.field, "text")
      assert.include(e?.message, "empty")
    }
  })

  it("the per-model character limit, exactly at and one over, in code points", () => {
    for (const [model, limit] of Object.entries(characterLimits)) {
      assert.isUndefined(checkTextToSpeech(op, "convert", voiceId, { text: "a".repeat(limit), modelId: model }))
      const e = checkTextToSpeech(op, "convert", voiceId, { text: "a".repeat(limit + 1), modelId: model })
      assert.strictEqual(e?.field, "text")
      assert.include(e?.message, `${limit}-character limit of ${model}`)
    }
    // The default model (multilingual v2, 10,000) applies when none is named.
    assert.strictEqual(checkTextToSpeech(op, "convert", voiceId, { text: "a".repeat(10_001) })?.field, "text")
    // An emoji is one character to the API, two UTF-16 units to JavaScript.
    assert.strictEqual(characterCount("😀".repeat(3)), 3)
    assert.isUndefined(checkTextToSpeech(op, "convert", voiceId, { text: "😀".repeat(3000), modelId: "eleven_v3" }))
    // Overrides win.
    assert.isUndefined(
      checkTextToSpeech(op, "convert", voiceId, { text: "a".repeat(4000), modelId: "eleven_v3" }, {
        characterLimits: { eleven_v3: 5000 }
      })
    )
  })

  it("output formats per endpoint: 28 for convert, 21 for stream", () => {
    assert.strictEqual(convertOutputFormats.length, 28)
    assert.strictEqual(streamOutputFormats.length, 21)
    for (const f of convertOutputFormats) {
      assert.isUndefined(checkTextToSpeech(op, "convert", voiceId, { text: "x", outputFormat: f }))
      const onStream = checkTextToSpeech(op, "stream", voiceId, { text: "x", outputFormat: f })
      if (f.startsWith("wav_")) {
        assert.strictEqual(onStream?.field, "outputFormat")
        assert.include(onStream?.message, "WAV is only available from convert")
      } else {
        assert.isUndefined(onStream)
      }
    }
    assert.strictEqual(
      checkTextToSpeech(op, "convert", voiceId, { text: "x", outputFormat: "mp3_1" })?.field,
      "outputFormat"
    )
  })

  it.effect.prop(
    "voice settings: in range passes, out of range names the field",
    {
      key: Schema.Literals(["stability", "similarityBoost", "style", "speed"]),
      value: Schema.Number
    },
    ({ key, value }) =>
      Effect.sync(() => {
        const [min, max] = voiceSettingRanges[key]
        const e = checkTextToSpeech(op, "convert", voiceId, { text: "x", voiceSettings: { [key]: value } })
        if (Number.isFinite(value) && value >= min && value <= max) assert.isUndefined(e)
        else {
          assert.strictEqual(e?.field, `voiceSettings.${key}`)
          assert.include(e?.message, `from ${min} to ${max}`)
        }
      })
  )

  it("voice ids", () => {
    assert.isUndefined(checkVoiceId(op, voiceId))
    for (const bad of ["", " ", "abc def", "a/b", "../x", "a?b", "a#b", "a%2Fb", "é"]) {
      const e = checkVoiceId(op, bad)
      assert.strictEqual(e?.field, "voiceId", bad)
    }
  })

  it("speech to text: exactly one of file and sourceUrl", () => {
    const stt = "speechToText.convert"
    assert.strictEqual(checkSpeechToText(stt, {})?.field, "file")
    assert.strictEqual(
      checkSpeechToText(stt, { file: new Uint8Array([1]), sourceUrl: "https://x" })?.field,
      "sourceUrl"
    )
    assert.strictEqual(checkSpeechToText(stt, { file: new Uint8Array() })?.field, "file")
    assert.strictEqual(checkSpeechToText(stt, { sourceUrl: "https://x", numSpeakers: 33 })?.field, "numSpeakers")
    assert.isUndefined(checkSpeechToText(stt, { file: { data: new Uint8Array([1]) } }))
    assert.isUndefined(checkSpeechToText(stt, { sourceUrl: "https://x" }))
  })

  it("music", () => {
    const m = "music.compose"
    assert.strictEqual(checkMusic(m, {})?.field, "prompt")
    assert.strictEqual(checkMusic(m, { prompt: " " })?.field, "prompt")
    assert.strictEqual(checkMusic(m, { prompt: "jazz", musicLengthMs: 1000 })?.field, "musicLengthMs")
    assert.isUndefined(checkMusic(m, { prompt: "jazz", musicLengthMs: 3000, outputFormat: "auto" }))
  })

  it.prop(
    "characterCount counts code points as for...of does, lone surrogates included",
    [Schema.Array(Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 7 }))))],
    ([picks]) => {
      // Plain letters, non-BMP halves in and out of order, a BMP letter beyond Latin.
      const units = [0x61, 0xd83d, 0xde00, 0xdbff, 0xdc00, 0xdfff, 0xd800, 0x00e9]
      const text = String.fromCharCode(...picks.map((i) => units[i]!))
      return characterCount(text) === [...text].length
    }
  )
})
