/**
 * The official SDK against the simulator's HTTP server on a free loopback port:
 * the success shapes parse, and errors reach the SDK with the status codes and
 * `detail.status` values of the real API.
 */
import { assert, describe, it } from "@effect/vitest"
import { ElevenLabsClient, ElevenLabsError } from "@elevenlabs/elevenlabs-js"
import { Effect } from "effect"
import * as Server from "../../src/simulator/Server.ts"
import type * as Simulator from "../../src/simulator/Simulator.ts"

const fast: Simulator.Options["latency"] = {
  standard: { ttfbMs: 2, msPerUnit: 0.05, jitter: 0 },
  v3: { ttfbMs: 2, msPerUnit: 0.05, jitter: 0 },
  flash: { ttfbMs: 1, msPerUnit: 0.02, jitter: 0 },
  stt: { ttfbMs: 2, msPerUnit: 1, jitter: 0 },
  music: { ttfbMs: 2, msPerUnit: 1, jitter: 0 }
}

const voice = "21m00Tcm4TlvDq8ikWAM"

const start = (options: Server.Options = {}) =>
  Effect.gen(function*() {
    const running = yield* Server.serve({ port: 0, seed: 11, latency: fast, ...options })
    const sdk = new ElevenLabsClient({ apiKey: "sim-key", baseUrl: running.url, maxRetries: 0 })
    return { ...running, sdk }
  })

const readAll = async (stream: ReadableStream<Uint8Array>): Promise<Uint8Array> => {
  const chunks: Array<Uint8Array> = []
  const reader = stream.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    chunks.push(value)
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const c of chunks) {
    out.set(c, offset)
    offset += c.length
  }
  return out
}

/** Runs an SDK call that must fail; returns its status code and `detail.status`. */
const failure = (call: () => Promise<unknown>) =>
  Effect.promise(async () => {
    try {
      const value = await call()
      if (value instanceof ReadableStream) await readAll(value)
    } catch (e) {
      if (!(e instanceof ElevenLabsError)) throw e
      const body = e.body as { detail?: { status?: string } | Array<unknown>; status?: string } | string | undefined
      const detail = typeof body === "object" && body !== null ? body.detail : undefined
      return {
        statusCode: e.statusCode,
        status: Array.isArray(detail)
          ? "validation"
          : detail?.status ?? (typeof body === "object" ? body?.status : undefined),
        body
      }
    }
    throw new Error("expected the call to fail")
  })

const isMp3Frame = (bytes: Uint8Array) => bytes[0] === 0xff && (bytes[1]! & 0xe0) === 0xe0

describe("Conformance with @elevenlabs/elevenlabs-js", () => {
  it.live("convert and stream return MP3 audio with the real headers", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start()
      const { data, rawResponse } = yield* Effect.promise(() =>
        sdk.textToSpeech.convert(voice, { text: "Hello from the simulator.", modelId: "eleven_multilingual_v2" })
          .withRawResponse()
      )
      const bytes = yield* Effect.promise(() => readAll(data))
      assert.isTrue(isMp3Frame(bytes))
      assert.isTrue(bytes.length > 1000)
      assert.strictEqual(rawResponse.headers.get("content-type"), "audio/mpeg")
      assert.strictEqual(rawResponse.headers.get("character-cost"), "25")
      assert.match(rawResponse.headers.get("request-id")!, /^[A-Za-z0-9]{20}$/)
      assert.match(rawResponse.headers.get("x-trace-id")!, /^[0-9a-f]{32}$/)
      assert.strictEqual(rawResponse.headers.get("maximum-concurrent-requests"), "10")
      assert.strictEqual(rawResponse.headers.get("current-concurrent-requests"), "1")

      const streamed = yield* Effect.promise(async () =>
        readAll(
          await sdk.textToSpeech.stream(voice, { text: "A streamed sentence of speech.", modelId: "eleven_flash_v2_5" })
        )
      )
      assert.isTrue(isMp3Frame(streamed))

      const pcm = yield* Effect.promise(async () =>
        readAll(await sdk.textToSpeech.convert(voice, { text: "Fifteen chars!!", outputFormat: "pcm_16000" }))
      )
      assert.strictEqual(pcm.length, 32000) // 1 s of s16le at 16 kHz
    }))

  it.live("with-timestamps parses, and the NDJSON stream yields aligned chunks", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start()
      const full = yield* Effect.promise(() =>
        sdk.textToSpeech.convertWithTimestamps(voice, { text: "Timestamps please." })
      )
      assert.isTrue(full.audioBase64.length > 100)
      assert.deepStrictEqual(full.alignment?.characters.join(""), "Timestamps please.")
      const chunks = yield* Effect.promise(async () => {
        const out: Array<{ audioBase64?: string; alignment?: { characters: Array<string> } | undefined }> = []
        const stream = await sdk.textToSpeech.streamWithTimestamps(voice, {
          text: "A longer text so that the stream has several chunks in it, one per line."
        })
        for await (const chunk of stream) out.push(chunk as (typeof out)[number])
        return out
      })
      assert.isTrue(chunks.length > 1)
      assert.strictEqual(
        chunks.map((c) => c.alignment?.characters.join("") ?? "").join(""),
        "A longer text so that the stream has several chunks in it, one per line."
      )
    }))

  it.live("speech to text, subscription, user, voices and models parse", () =>
    Effect.gen(function*() {
      const { sdk } = yield* start()
      const audio = yield* Effect.promise(async () =>
        readAll(await sdk.textToSpeech.convert(voice, { text: "x".repeat(60) }))
      )
      const transcript = yield* Effect.promise(() =>
        sdk.speechToText.convert({
          file: new Blob([new Uint8Array(audio)], { type: "audio/mpeg" }),
          modelId: "scribe_v1"
        })
      )
      assert.isTrue("text" in transcript && typeof transcript.text === "string" && transcript.text.length > 0)
      assert.isTrue("words" in transcript && Array.isArray(transcript.words) && transcript.words.length > 0)

      const sub = yield* Effect.promise(() => sdk.user.subscription.get())
      assert.strictEqual(sub.tier, "pro")
      assert.strictEqual(sub.characterCount, 60)
      assert.strictEqual(sub.characterLimit, 500_000)
      assert.isNumber(sub.nextCharacterCountResetUnix)
      const user = yield* Effect.promise(() => sdk.user.get())
      assert.strictEqual(user.subscription.characterCount, 60)
      const voices = yield* Effect.promise(() => sdk.voices.getAll())
      assert.isTrue(voices.voices.some((v) => v.voiceId === voice))
      const page = yield* Effect.promise(() => sdk.voices.search({ pageSize: 4, sort: "name" }))
      assert.deepStrictEqual([page.voices.length, page.hasMore, page.totalCount], [4, true, 6])
      const rest = yield* Effect.promise(() =>
        sdk.voices.search({ pageSize: 4, sort: "name", nextPageToken: page.nextPageToken! })
      )
      assert.deepStrictEqual([rest.voices.map((v) => v.name), rest.hasMore], [["Rachel", "Sarah"], false])
      const one = yield* Effect.promise(() => sdk.voices.get(voice))
      assert.strictEqual(one.name, "Rachel")
      const models = yield* Effect.promise(() => sdk.models.list())
      const flash = models.find((m) => m.modelId === "eleven_flash_v2_5")
      assert.strictEqual(flash?.modelRates?.characterCostMultiplier, 0.5)
      assert.strictEqual(flash?.concurrencyGroup, "turbo")
    }))

  it.live("client errors: 401, 404, 400, 403, 422 with the real codes", () =>
    Effect.gen(function*() {
      const { sdk, url } = yield* start({ plan: "free" })
      const bad = new ElevenLabsClient({ apiKey: "wrong", baseUrl: url, maxRetries: 0 })
      const e401 = yield* failure(() => bad.textToSpeech.convert(voice, { text: "hi" }))
      assert.deepStrictEqual([e401.statusCode, e401.status], [401, "invalid_api_key"])
      const noKey = yield* Effect.promise(() =>
        fetch(`${url}/v1/models`).then(async (r) => [r.status, ((await r.json()) as any).detail.status])
      )
      assert.deepStrictEqual(noKey, [401, "needs_authorization"])
      const e404 = yield* failure(() => sdk.textToSpeech.convert("nope", { text: "hi" }))
      assert.deepStrictEqual([e404.statusCode, e404.status], [404, "voice_not_found"])
      const e400 = yield* failure(() =>
        sdk.textToSpeech.convert(voice, { text: "x".repeat(3001), modelId: "eleven_v3" })
      )
      assert.deepStrictEqual([e400.statusCode, e400.status], [400, "max_character_limit_exceeded"])
      const e403 = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi", outputFormat: "pcm_44100" }))
      assert.deepStrictEqual([e403.statusCode, e403.status], [403, "output_format_not_allowed"])
      const e422 = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "" }))
      assert.deepStrictEqual([e422.statusCode, e422.status], [422, "validation"])
      // The SDK refuses wav on stream before sending; the server refuses it too.
      const wav = yield* Effect.promise(() =>
        fetch(`${url}/v1/text-to-speech/${voice}/stream?output_format=wav_16000`, {
          method: "POST",
          headers: { "xi-api-key": "sim-key", "content-type": "application/json" },
          body: JSON.stringify({ text: "hi" })
        }).then(async (r) => [r.status, ((await r.json()) as any).detail[0].loc])
      )
      assert.deepStrictEqual(wav, [422, ["query", "output_format"]])
    }))

  it.live("the server reads a URL-encoded form as a Web Request would (not only multipart)", () =>
    Effect.gen(function*() {
      const { url } = yield* start()
      const answer = yield* Effect.promise(async () => {
        const response = await fetch(`${url}/v1/speech-to-text`, {
          method: "POST",
          headers: { "xi-api-key": "sim-key", "content-type": "application/x-www-form-urlencoded" },
          body: "model_id=scribe_v1"
        })
        return { status: response.status, body: await response.json() as { detail?: { status?: string } } }
      })
      // model_id was read from the form: the model goes on to ask for the file.
      assert.strictEqual(answer.status, 400)
      assert.strictEqual(answer.body.detail?.status, "invalid_parameters")
    }))

  it.live("429 too_many_concurrent_requests, 429 system_busy, 401 quota_exceeded", () =>
    Effect.gen(function*() {
      const { sdk, simulator } = yield* start({
        latency: { ...fast, standard: { ttfbMs: 1, msPerUnit: 20, jitter: 0 } },
        retryAfterSeconds: 2
      })
      yield* simulator.setLimit("standard", 1)
      // A slow stream holds the only slot while its body is sent.
      const holder = yield* Effect.promise(() => sdk.textToSpeech.stream(voice, { text: "y".repeat(200) }))
      const busy = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi" }))
      assert.deepStrictEqual([busy.statusCode, busy.status], [429, "too_many_concurrent_requests"])
      assert.match(JSON.stringify(busy.body), /maximum of 1 concurrent requests/)
      yield* Effect.promise(() => holder.cancel())

      yield* simulator.setLimit("standard", 10)
      yield* simulator.setFaults({ systemBusy: 1 })
      const sys = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi" }))
      assert.deepStrictEqual([sys.statusCode, sys.status], [429, "system_busy"])
      yield* simulator.setFaults({ systemBusy: 0 })

      yield* simulator.setCredits(5)
      const quota = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "ten chars!" }))
      assert.deepStrictEqual([quota.statusCode, quota.status], [401, "quota_exceeded"])
      assert.match(JSON.stringify(quota.body), /You have 5 credits remaining, while 10 credits are required/)
    }))

  it.live("5xx shapes, a reset and a cut stream reach the SDK as from a real server", () =>
    Effect.gen(function*() {
      const { sdk, simulator, url } = yield* start()
      yield* simulator.setFaults({ serverError: 1 })
      const a = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi" }))
      assert.deepStrictEqual([a.statusCode, a.status], [500, "something_went_wrong"])
      yield* simulator.setFaults({ serverError: 0, internalServerError: 1 })
      const e = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi" }))
      assert.deepStrictEqual([e.statusCode, e.status], [500, "internal_server_error"])
      yield* simulator.setFaults({ internalServerError: 0, serviceUnavailable: 1 })
      const html = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi" }))
      assert.strictEqual(html.statusCode, 503)
      assert.match(String(html.body), /<html/)
      yield* simulator.setFaults({ serviceUnavailable: 0, connectionReset: 1 })
      const reset = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi" }))
      assert.strictEqual(reset.statusCode, undefined)
      yield* simulator.setFaults({ connectionReset: 0, streamCut: 1 })
      const cut = yield* Effect.promise(async () => {
        const stream = await sdk.textToSpeech.stream(voice, { text: "z".repeat(300) })
        return readAll(stream).then(() => "complete", () => "cut")
      })
      assert.strictEqual(cut, "cut")
      yield* simulator.setFaults({ streamCut: 0 })

      const stats = yield* Effect.promise(() => fetch(`${url}/_simulator/stats`).then((r) => r.json() as Promise<any>))
      assert.strictEqual(stats.byStatus["500"], 2)
      assert.strictEqual(stats.byStatus["503"], 1)
      assert.strictEqual(stats.faults.connectionReset, 1)
      assert.strictEqual(stats.pools.standard.inFlight, 0)
      assert.strictEqual(stats.pools.standard.limit, 10)
      const reset2 = yield* Effect.promise(() =>
        fetch(`${url}/_simulator/reset`, { method: "POST" }).then((r) => r.status)
      )
      assert.strictEqual(reset2, 200)
      const cleared = yield* Effect.promise(() =>
        fetch(`${url}/_simulator/stats`).then((r) => r.json() as Promise<any>)
      )
      assert.strictEqual(cleared.requests, 0)
    }))

  describe("beyond TTS: speech to speech, sound effects, text to dialogue, audio isolation", () => {
    /** Raw bytes the simulator reads as 16 kHz s16le: 32,000 a second. */
    const seconds = (n: number) => new Blob([new Uint8Array(32_000 * n)], { type: "audio/pcm" })

    it.live("each endpoint answers the SDK with the audio and headers it expects", () =>
      Effect.gen(function*() {
        const { sdk, simulator } = yield* start()
        const sts = yield* Effect.promise(() =>
          sdk.speechToSpeech.convert(voice, {
            audio: seconds(2),
            modelId: "eleven_multilingual_sts_v2",
            voiceSettings: JSON.stringify({ stability: 0.5, similarity_boost: 0.75 }),
            removeBackgroundNoise: true,
            outputFormat: "pcm_16000"
          }).withRawResponse()
        )
        const stsBytes = yield* Effect.promise(() => readAll(sts.data))
        assert.strictEqual(stsBytes.length, 64_000)
        assert.strictEqual(sts.rawResponse.headers.get("content-type"), "audio/pcm")
        assert.strictEqual(sts.rawResponse.headers.get("character-cost"), "34")
        assert.strictEqual(sts.rawResponse.headers.get("maximum-concurrent-requests"), "10")
        const stsStream = yield* Effect.promise(async () =>
          readAll(await sdk.speechToSpeech.stream(voice, { audio: seconds(1) }))
        )
        assert.isTrue(isMp3Frame(stsStream))

        const sfx = yield* Effect.promise(() =>
          sdk.textToSoundEffects.convert({
            text: "A heavy wooden door creaks open",
            durationSeconds: 2,
            promptInfluence: 0.5
          })
            .withRawResponse()
        )
        assert.isTrue(isMp3Frame(yield* Effect.promise(() => readAll(sfx.data))))
        assert.strictEqual(sfx.rawResponse.headers.get("content-type"), "audio/mpeg")
        assert.strictEqual(sfx.rawResponse.headers.get("character-cost"), "80")

        const inputs = [{ text: "Knock knock, it is me.", voiceId: voice }, {
          text: "Who is it?",
          voiceId: "JBFqnCBsd6RMkjVDRZzb"
        }]
        const dialogue = yield* Effect.promise(() => sdk.textToDialogue.convert({ inputs }).withRawResponse())
        assert.isTrue(isMp3Frame(yield* Effect.promise(() => readAll(dialogue.data))))
        assert.strictEqual(dialogue.rawResponse.headers.get("character-cost"), "32")
        const streamed = yield* Effect.promise(() =>
          sdk.textToDialogue.stream({ inputs, modelId: "eleven_flash_v2_5", outputFormat: "pcm_16000" })
            .withRawResponse()
        )
        assert.strictEqual(
          (yield* Effect.promise(() => readAll(streamed.data))).length,
          Math.round((32 / 15) * 16000) * 2
        )
        assert.strictEqual(streamed.rawResponse.headers.get("character-cost"), "16")
        assert.strictEqual(streamed.rawResponse.headers.get("maximum-concurrent-requests"), "20")

        const isolated = yield* Effect.promise(() =>
          sdk.audioIsolation.convert({ audio: seconds(3), fileFormat: "other" }).withRawResponse()
        )
        assert.isTrue(isMp3Frame(yield* Effect.promise(() => readAll(isolated.data))))
        assert.strictEqual(isolated.rawResponse.headers.get("character-cost"), "50")
        const isoStream = yield* Effect.promise(async () =>
          readAll(await sdk.audioIsolation.stream({ audio: seconds(1) }))
        )
        assert.isTrue(isMp3Frame(isoStream))

        const stats = yield* simulator.stats
        assert.strictEqual(stats.creditsCharged, 34 + 17 + 80 + 32 + 16 + 50 + 17)
        assert.strictEqual(stats.pools.standard.inFlight + stats.pools.flash.inFlight, 0)
      }))

    it.live("their errors reach the SDK with the real codes: 422, 404, 400, 403, 429, 401", () =>
      Effect.gen(function*() {
        const { sdk, simulator } = yield* start({
          plan: "starter",
          latency: { ...fast, standard: { ttfbMs: 1, msPerUnit: 5, jitter: 0 } }
        })
        const e422 = yield* failure(() => sdk.textToSoundEffects.convert({ text: "rain", durationSeconds: 31 }))
        assert.deepStrictEqual([e422.statusCode, e422.status], [422, "validation"])
        const e404 = yield* failure(() => sdk.speechToSpeech.convert("NoSuchVoice", { audio: seconds(1) }))
        assert.deepStrictEqual([e404.statusCode, e404.status], [404, "voice_not_found"])
        const e400 = yield* failure(() =>
          sdk.textToDialogue.convert({ inputs: [{ text: "x".repeat(3001), voiceId: voice }] })
        )
        assert.deepStrictEqual([e400.statusCode, e400.status], [400, "max_character_limit_exceeded"])
        const e403 = yield* failure(() =>
          sdk.textToDialogue.convert({ inputs: [{ text: "Hi", voiceId: voice }], outputFormat: "pcm_44100" })
        )
        assert.deepStrictEqual([e403.statusCode, e403.status], [403, "output_format_not_allowed"])

        yield* simulator.setLimit("standard", 1)
        // A slow isolation stream holds the only standard slot while its body is sent.
        const holder = yield* Effect.promise(() => sdk.audioIsolation.stream({ audio: seconds(5) }))
        const busy = yield* failure(() => sdk.speechToSpeech.convert(voice, { audio: seconds(1) }))
        assert.deepStrictEqual([busy.statusCode, busy.status], [429, "too_many_concurrent_requests"])
        assert.match(JSON.stringify(busy.body), /maximum of 1 concurrent requests/)
        yield* Effect.promise(() => holder.cancel())

        yield* simulator.setLimit("standard", 3)
        yield* simulator.setCredits(10)
        const quota = yield* failure(() => sdk.audioIsolation.convert({ audio: seconds(1) }))
        assert.deepStrictEqual([quota.statusCode, quota.status], [401, "quota_exceeded"])
        assert.match(JSON.stringify(quota.body), /You have 10 credits remaining, while 17 credits are required/)
      }))
  })

  it.live("a hang stalls the SDK until its timeout, and the slot comes back when it gives up", () =>
    Effect.gen(function*() {
      const { simulator, url } = yield* start({ faults: { hang: 1 } })
      const sdk = new ElevenLabsClient({ apiKey: "sim-key", baseUrl: url, maxRetries: 0, timeoutInSeconds: 0.2 })
      const outcome = yield* failure(() => sdk.textToSpeech.convert(voice, { text: "hi" }))
      assert.strictEqual(outcome.statusCode, undefined)
      // The server sees the socket close and interrupts the request; poll briefly for it.
      let inFlight = -1
      for (let i = 0; i < 50 && inFlight !== 0; i++) {
        yield* Effect.sleep("20 millis")
        inFlight = (yield* simulator.stats).pools.standard.inFlight
      }
      assert.strictEqual(inFlight, 0)
      assert.strictEqual((yield* simulator.stats).faults["hang"], 1)
    }))
})
