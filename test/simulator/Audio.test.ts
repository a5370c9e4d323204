import { assert, describe, it } from "@effect/vitest"
import * as Audio from "../../src/simulator/Audio.ts"

describe("Audio", () => {
  it("MP3: back-to-back Layer III frames with the right header, size and count", () => {
    for (
      const [format, version, size, samples] of [
        ["mp3_44100_128", 0xfb, 417, 1152],
        ["mp3_44100_192", 0xfb, 626, 1152],
        ["mp3_22050_32", 0xf3, 104, 576],
        ["mp3_24000_48", 0xf3, 144, 576]
      ] as const
    ) {
      const info = Audio.parseFormat(format)!
      const bytes = Audio.render(format, 2)
      assert.strictEqual(bytes.length % size, 0, format)
      assert.strictEqual(bytes.length / size, Math.ceil((2 * info.sampleRate) / samples), format)
      for (let offset = 0; offset < bytes.length; offset += size) {
        assert.strictEqual(bytes[offset], 0xff)
        assert.strictEqual(bytes[offset + 1], version)
      }
    }
  })

  it("PCM is s16le with no header; WAV adds a RIFF header that describes it", () => {
    assert.strictEqual(Audio.render("pcm_16000", 1.5).length, 48000)
    const wav = Audio.render("wav_22050", 1)
    const view = new DataView(wav.buffer)
    assert.strictEqual(new TextDecoder().decode(wav.subarray(0, 4)), "RIFF")
    assert.strictEqual(new TextDecoder().decode(wav.subarray(8, 12)), "WAVE")
    assert.strictEqual(view.getUint32(24, true), 22050)
    assert.strictEqual(view.getUint16(34, true), 16)
    assert.strictEqual(view.getUint32(40, true), wav.length - 44)
    assert.strictEqual(view.getUint32(4, true), wav.length - 8)
    assert.closeTo(Audio.estimateSeconds(wav), 1, 0.001)
  })

  it("G.711 silence, Ogg Opus pages, content types", () => {
    assert.deepStrictEqual(Array.from(Audio.render("ulaw_8000", 0.001)), Array(8).fill(0xff))
    assert.deepStrictEqual(Array.from(Audio.render("alaw_8000", 0.001)), Array(8).fill(0xd5))
    const opus = Audio.render("opus_48000_64", 1)
    assert.strictEqual(new TextDecoder().decode(opus.subarray(0, 4)), "OggS")
    assert.strictEqual(new TextDecoder().decode(opus.subarray(28, 36)), "OpusHead")
    assert.strictEqual(Audio.contentTypeOf("mp3_44100_128"), "audio/mpeg")
    assert.strictEqual(Audio.contentTypeOf("pcm_16000"), "audio/pcm")
    assert.strictEqual(Audio.contentTypeOf("wav_16000"), "audio/wav")
  })

  it("the duration of an upload from its head and its size (the whole file is not needed)", () => {
    for (const [format, seconds] of [["wav_16000", 3], ["mp3_44100_128", 10]] as const) {
      const bytes = Audio.render(format, seconds)
      const head = bytes.subarray(0, Audio.estimateHeadBytes)
      assert.isBelow(head.length, bytes.length, format)
      assert.strictEqual(Audio.estimateSeconds(head, bytes.length), Audio.estimateSeconds(bytes), format)
      assert.closeTo(Audio.estimateSeconds(head, bytes.length), seconds, 0.1, format)
    }
  })

  it("duration follows the text: 15 characters per second by default", () => {
    assert.strictEqual(Audio.speechSeconds(150, 15), 10)
    assert.closeTo(Audio.estimateSeconds(Audio.render("mp3_44100_128", 10)), 10, 0.1)
    assert.strictEqual(Audio.chunk(new Uint8Array(10), 3).map((c) => c.length).join(), "4,4,2")
  })

  it("renderShared: the same bytes as render for every codec, lengths up and down, a shared buffer", () => {
    const formats = [
      "mp3_44100_128",
      "mp3_22050_32",
      "mp3_12345_999",
      "nonsense",
      "pcm_16000",
      "wav_22050",
      "ulaw_8000",
      "alaw_8000",
      "opus_48000_64"
    ]
    for (const format of formats) {
      for (const seconds of [0.05, 1, 0.4, 3.3, 2, 7.25, 0.1, 12]) {
        const shared = Audio.renderShared(format, seconds)
        const fresh = Audio.render(format, seconds)
        assert.strictEqual(shared.length, fresh.length, `${format} ${seconds}`)
        assert.isTrue(shared.every((b, i) => b === fresh[i]), `${format} ${seconds}`)
      }
    }
    // Prefix codecs serve one buffer per format: two lengths share memory, no copy per call.
    const a = Audio.renderShared("mp3_44100_128", 1)
    const b = Audio.renderShared("mp3_44100_128", 2)
    assert.strictEqual(a.buffer, b.buffer)
    // Past the cap (32 MB) the audio is rendered fresh and the shared buffer is left as it was.
    const huge = Audio.renderShared("pcm_48000", 400)
    assert.strictEqual(huge.length, 2 * 48000 * 400)
    assert.notStrictEqual(huge.buffer, Audio.renderShared("pcm_48000", 1).buffer)
    assert.isBelow(Audio.renderShared("pcm_48000", 1).buffer.byteLength, 32 * 1024 * 1024)
  })
})
