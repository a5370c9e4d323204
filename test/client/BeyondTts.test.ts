/**
 * The client's operations beyond TTS (speech to speech, sound effects, text to
 * dialogue, audio isolation): the wire against a scripted transport (paths
 * kept literal, an oracle independent of the endpoint table), the local checks
 * (typed, no request sent), and each operation end to end against the
 * simulator, in process and over its real HTTP server on loopback.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Redacted, Stream } from "effect"
import * as ElevenLabs from "../../src/client/ElevenLabs.ts"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { apiKey, audio, chunked, jsonBody, mock } from "./mockTransport.ts"

const voiceId = "JBFqnCBsd6RMkjVDRZzb"
const other = "21m00Tcm4TlvDq8ikWAM"

const run = <A, E, R>(
  m: { readonly layer: Layer.Layer<ElevenLabs.ElevenLabs> },
  f: (el: ElevenLabs.ElevenLabs) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    return yield* f(yield* ElevenLabs.ElevenLabs)
  }).pipe(Effect.provide(m.layer))

const service = Effect.gen(function*() {
  return yield* ElevenLabs.ElevenLabs
})

const formOf = (request: { readonly body: { readonly _tag: string } }): FormData => {
  assert.strictEqual(request.body._tag, "FormData")
  return (request.body as unknown as { readonly formData: FormData }).formData
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

describe("ElevenLabs beyond TTS", () => {
  describe("the wire", () => {
    it.effect("speechToSpeech.convert: multipart audio, fields as the SDK sends them, the query, audio back", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["ab", "cd"]), { "character-cost": "17" }))
        const result = yield* run(m, (el) =>
          el.speechToSpeech.convert(voiceId, {
            audio: { data: new Uint8Array([1, 2, 3]), fileName: "take.wav", contentType: "audio/wav" },
            modelId: "eleven_multilingual_sts_v2",
            voiceSettings: { stability: 0.3, similarityBoost: 0.9 },
            seed: 7,
            removeBackgroundNoise: true,
            fileFormat: "other",
            outputFormat: "wav_16000",
            enableLogging: false
          }))
        assert.strictEqual(text(result.audio), "abcd")
        assert.strictEqual(result.meta.characterCost, 17)
        const { request, url } = m.requests[0]!
        assert.strictEqual(request.method, "POST")
        assert.strictEqual(url.origin + url.pathname, `https://api.test/v1/speech-to-speech/${voiceId}`)
        assert.strictEqual(url.searchParams.get("output_format"), "wav_16000")
        assert.strictEqual(url.searchParams.get("enable_logging"), "false")
        assert.strictEqual(request.headers["accept"], "*/*")
        assert.strictEqual(request.headers["xi-api-key"], apiKey)
        const form = formOf(request)
        const file = form.get("audio") as File
        assert.deepStrictEqual([file.name, file.type], ["take.wav", "audio/wav"])
        assert.deepStrictEqual([...new Uint8Array(yield* Effect.promise(() => file.arrayBuffer()))], [1, 2, 3])
        assert.strictEqual(form.get("model_id"), "eleven_multilingual_sts_v2")
        // A JSON-encoded string, in snake_case, as the API asks.
        assert.deepStrictEqual(JSON.parse(form.get("voice_settings") as string), {
          stability: 0.3,
          similarity_boost: 0.9
        })
        assert.deepStrictEqual([form.get("seed"), form.get("remove_background_noise"), form.get("file_format")], [
          "7",
          "true",
          "other"
        ])
      }))

    it.effect("speechToSpeech.stream: the stream path, the default format, absent fields left out", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["x", "y", "z"])))
        const bytes = yield* Effect.scoped(run(m, (el) =>
          Effect.gen(function*() {
            const s = yield* el.speechToSpeech.stream(voiceId, { audio: new Uint8Array([9]) })
            return yield* Stream.runCollect(s.audio)
          })))
        assert.strictEqual(bytes.length, 3)
        const { request, url } = m.requests[0]!
        assert.strictEqual(url.pathname, `/v1/speech-to-speech/${voiceId}/stream`)
        assert.strictEqual(url.search, "?output_format=mp3_44100_128")
        const form = formOf(request)
        assert.deepStrictEqual([...form.keys()], ["audio"])
        assert.strictEqual((form.get("audio") as File).name, "audio")
      }))

    it.effect("textToSoundEffects.convert: a snake_case JSON body and the output format in the query", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("snd", { "character-cost": "60" }))
        const result = yield* run(m, (el) =>
          el.textToSoundEffects.convert({
            text: "a door creaks open",
            durationSeconds: 1.5,
            promptInfluence: 0.6,
            loop: true,
            modelId: "eleven_text_to_sound_v2",
            outputFormat: "pcm_16000"
          }))
        assert.strictEqual(result.meta.characterCost, 60)
        const { request, url } = m.requests[0]!
        assert.strictEqual(url.origin + url.pathname, "https://api.test/v1/sound-generation")
        assert.strictEqual(url.search, "?output_format=pcm_16000")
        assert.deepStrictEqual(jsonBody(request), {
          text: "a door creaks open",
          duration_seconds: 1.5,
          prompt_influence: 0.6,
          loop: true,
          model_id: "eleven_text_to_sound_v2"
        })
      }))

    it.effect("textToDialogue.convert and stream: inputs in snake_case, settings, the two paths", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["d1", "d2"])))
        const request = {
          inputs: [{ text: "Knock knock.", voiceId }, { text: "Who is there?", voiceId: other }],
          settings: { stability: 0.5 },
          seed: 3,
          applyTextNormalization: "off" as const,
          enableLogging: false
        }
        yield* run(m, (el) => el.textToDialogue.convert({ ...request, outputFormat: "wav_22050" }))
        const streamed = yield* Effect.scoped(
          run(
            m,
            (el) =>
              Effect.flatMap(
                el.textToDialogue.stream({ ...request, modelId: "eleven_v3" }),
                (s) => Stream.runCollect(s.audio)
              )
          )
        )
        assert.strictEqual(streamed.length, 2)
        const [convert, stream] = m.requests
        assert.strictEqual(convert!.url.pathname, "/v1/text-to-dialogue")
        assert.strictEqual(convert!.url.searchParams.get("output_format"), "wav_22050")
        assert.strictEqual(convert!.url.searchParams.get("enable_logging"), "false")
        assert.deepStrictEqual(jsonBody(convert!.request), {
          inputs: [{ text: "Knock knock.", voice_id: voiceId }, { text: "Who is there?", voice_id: other }],
          settings: { stability: 0.5 },
          seed: 3,
          apply_text_normalization: "off"
        })
        assert.strictEqual(stream!.url.pathname, "/v1/text-to-dialogue/stream")
        assert.strictEqual(stream!.url.searchParams.get("output_format"), "mp3_44100_128")
        assert.strictEqual((jsonBody(stream!.request) as { model_id: string }).model_id, "eleven_v3")
      }))

    it.effect("audioIsolation.convert and stream: multipart audio; preview_b64 only on convert; no query", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("clean"))
        yield* run(
          m,
          (el) =>
            el.audioIsolation.convert({ audio: new Uint8Array([4, 5]), fileFormat: "pcm_s16le_16", previewB64: "AAAA" })
        )
        yield* Effect.scoped(run(m, (el) =>
          Effect.flatMap(
            el.audioIsolation.stream({ audio: new Uint8Array([4, 5]), previewB64: "AAAA" } as never),
            (s) => Stream.runDrain(s.audio)
          )))
        const [convert, stream] = m.requests
        assert.strictEqual(
          convert!.url.origin + convert!.url.pathname + convert!.url.search,
          "https://api.test/v1/audio-isolation"
        )
        assert.deepStrictEqual([...formOf(convert!.request).keys()], ["audio", "file_format", "preview_b64"])
        assert.strictEqual(stream!.url.pathname + stream!.url.search, "/v1/audio-isolation/stream")
        assert.deepStrictEqual([...formOf(stream!.request).keys()], ["audio"])
      }))
  })

  describe("local validation makes no request, and fails typed", () => {
    const tooMany = Array.from({ length: 11 }, (_, i) => ({ text: "Hi.", voiceId: `voice${i}` }))
    const bad: ReadonlyArray<
      readonly [string, (el: ElevenLabs.ElevenLabs) => Effect.Effect<unknown, ElevenLabsError, any>, string]
    > = [
      ["STS without audio bytes", (el) => el.speechToSpeech.convert(voiceId, { audio: new Uint8Array() }), "audio"],
      [
        "STS with a malformed voice id",
        (el) => el.speechToSpeech.convert("a/b", { audio: new Uint8Array([1]) }),
        "voiceId"
      ],
      [
        "STS stream in WAV",
        (el) => el.speechToSpeech.stream(voiceId, { audio: new Uint8Array([1]), outputFormat: "wav_16000" as never }),
        "outputFormat"
      ],
      [
        "STS stability 2",
        (el) => el.speechToSpeech.convert(voiceId, { audio: new Uint8Array([1]), voiceSettings: { stability: 2 } }),
        "voiceSettings.stability"
      ],
      ["sound effect of blank text", (el) => el.textToSoundEffects.convert({ text: " " }), "text"],
      [
        "sound effect of 31 s",
        (el) => el.textToSoundEffects.convert({ text: "rain", durationSeconds: 31 }),
        "durationSeconds"
      ],
      [
        "sound effect of 0.4 s",
        (el) => el.textToSoundEffects.convert({ text: "rain", durationSeconds: 0.4 }),
        "durationSeconds"
      ],
      [
        "sound effect with prompt influence 1.5",
        (el) => el.textToSoundEffects.convert({ text: "rain", promptInfluence: 1.5 }),
        "promptInfluence"
      ],
      [
        "sound effect in WAV",
        (el) => el.textToSoundEffects.convert({ text: "rain", outputFormat: "wav_44100" as never }),
        "outputFormat"
      ],
      ["dialogue without lines", (el) => el.textToDialogue.convert({ inputs: [] }), "inputs"],
      [
        "dialogue with a blank line",
        (el) => el.textToDialogue.convert({ inputs: [{ text: "Hi", voiceId }, { text: "", voiceId }] }),
        "inputs[1].text"
      ],
      [
        "dialogue with a malformed voice",
        (el) => el.textToDialogue.stream({ inputs: [{ text: "Hi", voiceId: "x y" }] }),
        "inputs[0].voiceId"
      ],
      ["dialogue of 11 voices", (el) => el.textToDialogue.convert({ inputs: tooMany }), "inputs"],
      [
        "dialogue over eleven_v3's 3,000 characters",
        (el) =>
          el.textToDialogue.convert({
            inputs: [{ text: "a".repeat(1600), voiceId }, { text: "b".repeat(1401), voiceId: other }]
          }),
        "inputs"
      ],
      [
        "dialogue stability -0.1",
        (el) => el.textToDialogue.convert({ inputs: [{ text: "Hi", voiceId }], settings: { stability: -0.1 } }),
        "settings.stability"
      ],
      [
        "isolation without audio bytes",
        (el) => el.audioIsolation.stream({ audio: { data: new Uint8Array() } }),
        "audio"
      ]
    ]
    for (const [name, call, field] of bad) {
      it.effect(name, () =>
        Effect.gen(function*() {
          const m = mock(() => Effect.die("the transport must not be called"))
          const error = yield* Effect.flip(Effect.scoped(run(m, call)))
          assert.strictEqual(error.reason._tag, "InvalidRequest")
          if (error.reason._tag === "InvalidRequest") {
            assert.strictEqual(error.reason.field, field)
            assert.isUndefined(error.reason.status)
            assert.strictEqual(error.reason.operation, error.reason.operation.trim())
          }
          assert.strictEqual(m.requests.length, 0)
        }))
    }

    it.effect("the limits pass at their bounds; a dialogue's limit follows characterLimits", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("x"), { characterLimits: { eleven_v3: 5000 } })
        yield* run(m, (el) => el.textToSoundEffects.convert({ text: "rain", durationSeconds: 0.5, promptInfluence: 0 }))
        yield* run(m, (el) => el.textToSoundEffects.convert({ text: "rain", durationSeconds: 30, promptInfluence: 1 }))
        yield* run(
          m,
          (el) =>
            el.textToDialogue.convert({
              inputs: Array.from({ length: 10 }, (_, i) => ({ text: "Hi", voiceId: `v${i}` }))
            })
        )
        yield* run(m, (el) => el.textToDialogue.convert({ inputs: [{ text: "a".repeat(4000), voiceId }] }))
        assert.strictEqual(m.requests.length, 4)
      }))

    it.effect("validate: false sends what it would have refused", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("x"), { validate: false })
        yield* run(m, (el) => el.textToSoundEffects.convert({ text: " ", durationSeconds: 99 }))
        yield* run(m, (el) => el.textToDialogue.convert({ inputs: [] }))
        assert.strictEqual(m.requests.length, 2)
      }))
  })

  describe("against the simulator", () => {
    const fast: Simulator.Options["latency"] = {
      standard: { ttfbMs: 1, msPerUnit: 0.01, jitter: 0 },
      v3: { ttfbMs: 1, msPerUnit: 0.01, jitter: 0 },
      flash: { ttfbMs: 1, msPerUnit: 0.01, jitter: 0 }
    }
    /** 2 s of audio to the simulator's estimate (raw bytes are read as 16 kHz s16le). */
    const twoSeconds = new Uint8Array(64_000)
    const oneSecond = new Uint8Array(32_000)

    /** Every new operation once, with what the simulator must answer; the credits it charged in all. */
    const scenario = (el: ElevenLabs.ElevenLabs, sim: Simulator.Service) =>
      Effect.gen(function*() {
        const drain = (s: ElevenLabs.AudioStream) =>
          Effect.map(
            Stream.runCollect(s.audio),
            (chunks) => ({ ...s, bytes: chunks.reduce((n, c) => n + c.length, 0) })
          )

        const sts = yield* el.speechToSpeech.convert(voiceId, { audio: twoSeconds, outputFormat: "pcm_16000" })
        assert.deepStrictEqual([sts.contentType, sts.audio.length, sts.meta.characterCost], ["audio/pcm", 64_000, 34])
        assert.strictEqual(sts.meta.maximumConcurrentRequests, 10) // standard, pro
        const stsStream = yield* Effect.scoped(
          Effect.flatMap(el.speechToSpeech.stream(voiceId, { audio: oneSecond }), drain)
        )
        assert.deepStrictEqual([stsStream.contentType, stsStream.meta.characterCost], ["audio/mpeg", 17])
        assert.isAbove(stsStream.bytes, 0)

        const sfx = yield* el.textToSoundEffects.convert({
          text: "a door creaks",
          durationSeconds: 1.5,
          outputFormat: "pcm_16000"
        })
        assert.deepStrictEqual([sfx.contentType, sfx.audio.length, sfx.meta.characterCost], ["audio/pcm", 48_000, 60])

        const script = [{ text: "Knock knock, it is me.", voiceId }, { text: "Who is it?", voiceId: other }] // 22 + 10 characters
        const dialogue = yield* el.textToDialogue.convert({ inputs: script, outputFormat: "pcm_16000" })
        assert.deepStrictEqual([dialogue.contentType, dialogue.meta.characterCost], ["audio/pcm", 32])
        assert.strictEqual(dialogue.audio.length, Math.round((32 / 15) * 16000) * 2)
        const fastDialogue = yield* Effect.scoped(
          Effect.flatMap(el.textToDialogue.stream({ inputs: script, modelId: "eleven_flash_v2_5" }), drain)
        )
        // The model decides the pool (flash: 20 on Pro) and the multiplier (0.5).
        assert.deepStrictEqual([fastDialogue.meta.characterCost, fastDialogue.meta.maximumConcurrentRequests], [16, 20])

        const isolated = yield* el.audioIsolation.convert({ audio: { data: oneSecond, fileName: "noisy.pcm" } })
        assert.deepStrictEqual([isolated.contentType, isolated.meta.characterCost], ["audio/mpeg", 17])
        assert.strictEqual(isolated.audio[0], 0xff)
        const isoStream = yield* Effect.scoped(Effect.flatMap(el.audioIsolation.stream({ audio: twoSeconds }), drain))
        assert.strictEqual(isoStream.meta.characterCost, 34)

        const stats = yield* sim.stats
        assert.strictEqual(stats.creditsCharged, 34 + 17 + 60 + 32 + 16 + 17 + 34)
        assert.deepStrictEqual([stats.pools.standard.admitted, stats.pools.flash.admitted], [6, 1])
        assert.deepStrictEqual([stats.pools.standard.inFlight, stats.pools.flash.inFlight], [0, 0])

        // The server's refusals reach the caller classified: an unknown voice, and a full pool.
        const unknown = yield* Effect.flip(
          el.textToDialogue.convert({ inputs: [{ text: "Hi", voiceId: "NoSuchVoice" }] })
        )
        assert.strictEqual(unknown.reason._tag, "NotFound")
        // A hung voice change holds the only standard slot; a sound effect then finds the pool full.
        yield* sim.setLimit("standard", 1)
        yield* sim.setFaults({ hang: 1 })
        const holder = yield* Effect.forkChild(el.speechToSpeech.convert(voiceId, { audio: twoSeconds }))
        for (let i = 0; i < 200 && (yield* sim.stats).pools.standard.inFlight === 0; i++) {
          yield* Effect.sleep("5 millis")
        }
        const busy = yield* Effect.flip(el.textToSoundEffects.convert({ text: "rain", durationSeconds: 1 }))
        assert.strictEqual(busy.reason._tag, "ConcurrencyLimited")
        assert.match(busy.message, /maximum of 1 concurrent requests/)
        yield* Fiber.interrupt(holder)
        yield* sim.setFaults({ hang: 0 })
        yield* sim.setLimit("standard", 10)
        // The slot comes back once the caller gives up (the server sees the socket close).
        for (let i = 0; i < 200 && (yield* sim.stats).pools.standard.inFlight > 0; i++) yield* Effect.sleep("5 millis")
        assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 0)
        assert.strictEqual((yield* sim.stats).creditsCharged, 34 + 17 + 60 + 32 + 16 + 17 + 34) // neither refusal was charged
      })

    it.live("each operation through the in-process simulator", () =>
      Effect.gen(function*() {
        const el = yield* ElevenLabs.ElevenLabs
        const sim = yield* Simulator.Simulator
        yield* scenario(el, sim)
      }).pipe(
        Effect.provide(
          ElevenLabs.layer({ apiKey: Redacted.make("sim-key") }).pipe(
            Layer.provideMerge(InProcess.layerSimulated({ seed: 2, latency: fast }))
          )
        )
      ))

    it.live("each operation over the simulator's HTTP server (undici on loopback)", () =>
      Effect.gen(function*() {
        const { simulator, url } = yield* Server.serve({ port: 0, seed: 2, latency: fast })
        yield* Effect.flatMap(service, (el) => scenario(el, simulator)).pipe(
          Effect.provide(
            ElevenLabs.layer({ apiKey: Redacted.make("sim-key"), baseUrl: url }).pipe(
              Layer.provide(NodeHttpClient.layerUndici)
            )
          )
        )
      }).pipe(Effect.scoped))

    it.effect("the plain client always has the four groups", () =>
      Effect.gen(function*() {
        const el = yield* ElevenLabs.ElevenLabs
        for (const group of [el.speechToSpeech, el.textToSoundEffects, el.textToDialogue, el.audioIsolation]) {
          assert.isDefined(group)
        }
      }).pipe(Effect.provide(mock(() => audio("x")).layer)))
  })
})
