/**
 * The simulator's answers beyond TTS, at the model (`Simulator.handle`, virtual
 * time): what the OpenAPI document says each endpoint answers (status, content
 * type, the FastAPI 422 shape), the errors it shares with TTS, the pools the
 * requests draw from (429s as for the other endpoints) and the credits charged.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Simulator from "../../src/simulator/Simulator.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const george = "JBFqnCBsd6RMkjVDRZzb"
const base = "http://sim.test"

interface Answer {
  readonly status: number | "reset" | "cut"
  readonly headers: Readonly<Record<string, string>>
  readonly bytes: Uint8Array
  readonly json: any
}

/** Real event-loop turns: form parsing is promise-based, and must not be outrun by the virtual clock. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(
  Effect.repeat({ times: 5 })
)

/** Runs `effect` while moving the clock in steps, with real turns between them. */
const drive = <A>(effect: Effect.Effect<A>, step = 20) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect)
    for (let i = 0; i < 5000 && fiber.pollUnsafe() === undefined; i++) {
      yield* settle
      yield* TestClock.adjust(step)
    }
    return yield* Fiber.join(fiber)
  })

const read = (outcome: Simulator.Outcome) =>
  Effect.gen(function*() {
    if (outcome._tag === "Reset") {
      return { status: "reset", headers: {}, bytes: new Uint8Array(), json: undefined } as Answer
    }
    const chunks = yield* Stream.runCollect(outcome.body).pipe(Effect.result)
    if (chunks._tag === "Failure") {
      return { status: "cut", headers: outcome.headers, bytes: new Uint8Array(), json: undefined } as Answer
    }
    const bytes = new Uint8Array(chunks.success.reduce((n, c) => n + c.length, 0))
    let offset = 0
    for (const c of chunks.success) {
      bytes.set(c, offset)
      offset += c.length
    }
    const json = outcome.headers["content-type"] === "application/json"
      ? JSON.parse(new TextDecoder().decode(bytes))
      : undefined
    return { status: outcome.status, headers: outcome.headers, bytes, json } as Answer
  })

/** One request, answered and read to the end. */
const call = (sim: Simulator.Service, request: Request) => drive(Effect.flatMap(sim.handle(request), read))

const post = (
  path: string,
  body: string | FormData,
  options: { readonly key?: string | null; readonly query?: string } = {}
) => {
  const headers: Record<string, string> = {}
  if (options.key !== null) headers["xi-api-key"] = options.key ?? "sim-key"
  if (typeof body === "string") headers["content-type"] = "application/json"
  return new Request(`${base}${path}${options.query ?? ""}`, { method: "POST", headers, body })
}

/** A multipart upload: `audio` of `bytes` raw bytes (16 kHz s16le to the simulator: 32,000 bytes a second), and fields. */
const upload = (bytes: number, fields: Readonly<Record<string, string>> = {}) => {
  const form = new FormData()
  if (bytes >= 0) form.append("audio", new Blob([new Uint8Array(bytes)]), "take.pcm")
  for (const [k, v] of Object.entries(fields)) form.append(k, v)
  return form
}

const sts = (
  form: FormData,
  options: {
    readonly key?: string | null
    readonly query?: string
    readonly stream?: boolean
    readonly voice?: string
  } = {}
) => post(`/v1/speech-to-speech/${options.voice ?? voice}${options.stream === true ? "/stream" : ""}`, form, options)
const sfx = (body: unknown, options: { readonly key?: string | null; readonly query?: string } = {}) =>
  post("/v1/sound-generation", JSON.stringify(body), options)
const dialogue = (
  body: unknown,
  options: { readonly key?: string | null; readonly query?: string; readonly stream?: boolean } = {}
) => post(`/v1/text-to-dialogue${options.stream === true ? "/stream" : ""}`, JSON.stringify(body), options)
const isolation = (form: FormData, options: { readonly key?: string | null; readonly stream?: boolean } = {}) =>
  post(`/v1/audio-isolation${options.stream === true ? "/stream" : ""}`, form, options)

const script = [{ text: "Knock knock, it is me.", voice_id: voice }, { text: "Who is it?", voice_id: george }] // 32 characters

/** The 422 items as `[type, loc]` pairs. */
const items = (a: Answer) =>
  (a.json.detail as Array<{ type: string; loc: Array<string | number> }>).map((d) => [d.type, d.loc.join(".")])

describe("Simulator beyond TTS", () => {
  it.effect("200s as the document says: audio content types, character-cost, concurrency headers, lengths", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ seed: 3 })
      const a = yield* call(sim, sts(upload(64_000), { query: "?output_format=pcm_16000" }))
      assert.deepStrictEqual([a.status, a.headers["content-type"], a.headers["character-cost"]], [
        200,
        "audio/pcm",
        "34"
      ])
      assert.deepStrictEqual([a.bytes.length, a.headers["content-length"]], [64_000, "64000"]) // 2 s in, 2 s out
      assert.deepStrictEqual([a.headers["current-concurrent-requests"], a.headers["maximum-concurrent-requests"]], [
        "1",
        "10"
      ])
      assert.match(a.headers["request-id"]!, /^[A-Za-z0-9]{20}$/)

      const s = yield* call(sim, sts(upload(32_000, { model_id: "eleven_multilingual_sts_v2" }), { stream: true }))
      assert.deepStrictEqual([s.status, s.headers["content-type"], s.headers["character-cost"]], [
        200,
        "audio/mpeg",
        "17"
      ])
      assert.isUndefined(s.headers["content-length"]) // streamed
      assert.strictEqual(s.bytes[0], 0xff)

      const e = yield* call(
        sim,
        sfx({ text: "a door creaks", duration_seconds: 1.5 }, { query: "?output_format=pcm_16000" })
      )
      assert.deepStrictEqual([e.status, e.headers["content-type"], e.headers["character-cost"], e.bytes.length], [
        200,
        "audio/pcm",
        "60",
        48_000
      ])
      const auto = yield* call(
        sim,
        sfx({ text: "rain on a tin roof", duration_seconds: null, prompt_influence: 0.3, loop: false })
      )
      assert.deepStrictEqual([auto.status, auto.headers["content-type"], auto.headers["character-cost"]], [
        200,
        "audio/mpeg",
        "200"
      ]) // 5 s

      const d = yield* call(sim, dialogue({ inputs: script }))
      assert.deepStrictEqual([d.status, d.headers["content-type"], d.headers["character-cost"]], [
        200,
        "audio/mpeg",
        "32"
      ])
      const w = yield* call(
        sim,
        dialogue({ inputs: script, model_id: "eleven_flash_v2_5" }, {
          stream: true,
          query: "?output_format=opus_48000_64"
        })
      )
      assert.deepStrictEqual([w.status, w.headers["content-type"], w.headers["character-cost"]], [
        200,
        "audio/ogg",
        "16"
      ])
      assert.strictEqual(w.headers["maximum-concurrent-requests"], "20") // the flash pool on Pro

      const i = yield* call(sim, isolation(upload(96_000, { file_format: "other", preview_b64: "AAAA" })))
      assert.deepStrictEqual([i.status, i.headers["content-type"], i.headers["character-cost"]], [
        200,
        "audio/mpeg",
        "50"
      ])
      const is = yield* call(sim, isolation(upload(32_000, { file_format: "pcm_s16le_16" }), { stream: true }))
      assert.deepStrictEqual([is.status, is.headers["character-cost"]], [200, "17"])

      const stats = yield* sim.stats
      assert.strictEqual(stats.creditsCharged, 34 + 17 + 60 + 200 + 32 + 16 + 50 + 17)
      assert.deepStrictEqual([stats.pools.standard.admitted, stats.pools.flash.admitted], [7, 1])
      const sub = yield* call(
        sim,
        new Request(`${base}/v1/user/subscription`, { headers: { "xi-api-key": "sim-key" } })
      )
      assert.strictEqual(sub.json.character_count, stats.creditsCharged)
    }))

  it.effect("422 in FastAPI's shape for a bad query, body or form, before the key is looked at", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const bad = { key: "not-a-key" }
      const cases: ReadonlyArray<readonly [Request, ReadonlyArray<ReadonlyArray<string>>]> = [
        [sts(upload(-1), bad), [["missing", "body.audio"]]],
        [post(`/v1/speech-to-speech/${voice}`, JSON.stringify({ audio: "x" }), bad), [["missing", "body.audio"]]],
        [
          sts(
            (() => {
              const f = new FormData()
              f.append("audio", "not a file")
              return f
            })(),
            bad
          ),
          [["value_error", "body.audio"]]
        ],
        [
          sts(
            upload(10, { file_format: "flac", seed: "x", remove_background_noise: "maybe", voice_settings: "{" }),
            bad
          ),
          [["json_invalid", "body.voice_settings"], ["enum", "body.file_format"], [
            "bool_parsing",
            "body.remove_background_noise"
          ], ["int_parsing", "body.seed"]]
        ],
        [sts(upload(10, { voice_settings: JSON.stringify({ stability: 2 }) }), bad), [[
          "less_than_equal",
          "body.voice_settings.stability"
        ]]],
        [sts(upload(10), { ...bad, stream: true, query: "?output_format=wav_16000" }), [[
          "enum",
          "query.output_format"
        ]]],
        [sfx({}, bad), [["missing", "body.text"]]],
        [
          sfx({ text: "", duration_seconds: 31, prompt_influence: -1, loop: "yes", model_id: "eleven_sfx_v9" }, bad),
          [
            ["string_too_short", "body.text"],
            ["bool_type", "body.loop"],
            ["less_than_equal", "body.duration_seconds"],
            ["greater_than_equal", "body.prompt_influence"],
            ["enum", "body.model_id"]
          ]
        ],
        [sfx({ text: "rain" }, { ...bad, query: "?output_format=wav_44100" }), [["enum", "query.output_format"]]],
        [post("/v1/sound-generation", "{not json", bad), [["json_invalid", "body.0"]]],
        [dialogue({}, bad), [["missing", "body.inputs"]]],
        [dialogue({ inputs: "hello" }, bad), [["list_type", "body.inputs"]]],
        [dialogue({ inputs: [] }, bad), [["too_short", "body.inputs"]]],
        [dialogue({ inputs: [{ text: "Hi" }, 3, { text: "", voice_id: voice }] }, bad), [
          ["missing", "body.inputs.0.voice_id"],
          ["model_type", "body.inputs.1"],
          ["string_too_short", "body.inputs.2.text"]
        ]],
        [dialogue({ inputs: Array.from({ length: 11 }, (_, i) => ({ text: "Hi", voice_id: `v${i}` })) }, bad), [[
          "value_error",
          "body.inputs"
        ]]],
        [dialogue({ inputs: script, settings: { stability: 2 } }, bad), [[
          "less_than_equal",
          "body.settings.stability"
        ]]],
        [dialogue({ inputs: script }, { ...bad, stream: true, query: "?output_format=wav_8000" }), [[
          "enum",
          "query.output_format"
        ]]],
        [isolation(upload(-1, { file_format: "mp3" }), bad), [["missing", "body.audio"], ["enum", "body.file_format"]]]
      ]
      for (const [request, expected] of cases) {
        const a = yield* call(sim, request)
        assert.strictEqual(a.status, 422, `${request.method} ${request.url}`)
        assert.strictEqual(a.headers["content-type"], "application/json")
        assert.deepStrictEqual(items(a), expected, `${request.url}`)
        for (const d of a.json.detail) assert.isString(d.msg)
      }
      const limit = yield* call(sim, sfx({ text: "rain", duration_seconds: 31 }, bad))
      assert.deepStrictEqual(limit.json.detail[0].ctx, { le: 30 })
      assert.strictEqual((yield* sim.stats).byStatus["422"], cases.length + 1)
      assert.strictEqual((yield* sim.stats).creditsCharged, 0)
    }))

  it.effect("401, 404, 400 and 403 as for TTS", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ plan: "starter" })
      const ok = upload(32_000)
      const answers = yield* Effect.forEach([
        sts(upload(32_000), { key: null }),
        isolation(upload(32_000), { key: "wrong" }),
        sts(upload(32_000), { voice: "NoSuchVoice" }),
        dialogue({ inputs: [...script, { text: "And me.", voice_id: "NoSuchVoice" }] }),
        sts(upload(32_000, { model_id: "eleven_multilingual_v2" })),
        dialogue({ inputs: script, model_id: "eleven_nope" }),
        dialogue({ inputs: [{ text: "a".repeat(3001), voice_id: voice }] }),
        sfx({ text: "rain" }, { query: "?output_format=pcm_44100" }),
        sts(ok, { query: "?output_format=mp3_44100_192" })
      ], (request) => call(sim, request))
      const codes = answers.map((a) => [a.status, a.json.detail.status])
      assert.deepStrictEqual(codes, [
        [401, "needs_authorization"],
        [401, "invalid_api_key"],
        [404, "voice_not_found"],
        [404, "voice_not_found"],
        [400, "model_not_found"],
        [400, "model_not_found"],
        [400, "max_character_limit_exceeded"],
        [403, "output_format_not_allowed"],
        [403, "output_format_not_allowed"]
      ])
      assert.strictEqual(answers[3]!.json.detail.message, "A voice with the voice_id NoSuchVoice was not found.")
      assert.match(answers[6]!.json.detail.message, /3001 characters and exceeds the character limit of 3000/)
      assert.strictEqual((yield* sim.stats).creditsCharged, 0)
    }))

  it.effect("pools: a full standard pool refuses them with 429 too_many_concurrent_requests; flash dialogue is another pool", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        apiKeys: [{ key: "sim-key", limits: { standard: 1, flash: 1 } }],
        latency: { standard: { ttfbMs: 10, msPerUnit: 10, jitter: 0 } }
      })
      // A voice change streaming 10 s of audio holds the only standard slot until its body is read.
      const holder = yield* drive(sim.handle(sts(upload(320_000), { stream: true })))
      assert.strictEqual(holder._tag === "Respond" ? holder.status : holder._tag, 200)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 1)
      const refused = yield* Effect.forEach([
        sts(upload(32_000)),
        sfx({ text: "rain", duration_seconds: 1 }),
        dialogue({ inputs: script }),
        isolation(upload(32_000), { stream: true })
      ], (request) => call(sim, request))
      for (const a of refused) {
        assert.deepStrictEqual([a.status, a.json.detail.status], [429, "too_many_concurrent_requests"])
        assert.match(a.json.detail.message, /maximum of 1 concurrent requests/)
      }
      const flash = yield* call(sim, dialogue({ inputs: script, model_id: "eleven_flash_v2_5" }))
      assert.deepStrictEqual([flash.status, flash.headers["maximum-concurrent-requests"]], [200, "1"])
      // The slot comes back when the holder's body has been sent; the next request gets in.
      yield* drive(holder._tag === "Respond" ? Stream.runDrain(holder.body).pipe(Effect.orDie) : Effect.void, 200)
      const after = yield* call(sim, isolation(upload(32_000)))
      assert.strictEqual(after.status, 200)
      const stats = yield* sim.stats
      assert.deepStrictEqual([
        stats.pools.standard.rejected,
        stats.pools.standard.inFlight,
        stats.pools.standard.maxInFlight
      ], [4, 0, 1])
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"], 4)
    }))

  it.effect("quota: the decided cost is reserved up front; past what is left, 401 quota_exceeded; refusals are free", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ apiKeys: [{ key: "sim-key", characterLimit: 100 }] })
      const sound = yield* call(sim, sfx({ text: "rain", duration_seconds: 2 })) // 80 credits
      assert.strictEqual(sound.status, 200)
      const voiceChange = yield* call(sim, sts(upload(64_000))) // 34 > 20 left
      assert.deepStrictEqual([voiceChange.status, voiceChange.json.detail.status], [401, "quota_exceeded"])
      assert.strictEqual(
        voiceChange.json.detail.message,
        "This request exceeds your quota of 100. You have 20 credits remaining, while 34 credits are required for this request."
      )
      const shortDialogue = yield* call(sim, dialogue({ inputs: [{ text: "Twenty characters!!!", voice_id: voice }] }))
      assert.deepStrictEqual([shortDialogue.status, shortDialogue.headers["character-cost"]], [200, "20"])
      const stats = yield* sim.stats
      assert.deepStrictEqual([stats.creditsCharged, stats.accounts["key1"]!.characterCount], [100, 100])
    }))

  it.effect("a known path with another method is a 405, as for the other rows", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      for (
        const path of [
          "/v1/sound-generation",
          "/v1/audio-isolation/stream",
          `/v1/speech-to-speech/${voice}`,
          "/v1/text-to-dialogue"
        ]
      ) {
        const a = yield* call(sim, new Request(`${base}${path}`, { headers: { "xi-api-key": "sim-key" } }))
        assert.deepStrictEqual([a.status, a.headers["allow"], a.json.detail], [405, "POST", "Method Not Allowed"], path)
      }
    }))
})
