/**
 * The simulator's answers for text to speech, speech to text and music, and
 * for the reads (user, subscription, voices, models): one handler per row of
 * the endpoint table, over the model's {@link Kit}. The rows beyond TTS are
 * answered in `HandlersBeyondTts.ts`, over the same kit.
 *
 * **Details**
 *
 * - Order of checks: 422 (the `output_format` query, then the body or form)
 *   → 401 → `404 voice_not_found` → `400 model_not_found`, `400
 *   max_character_limit_exceeded` → `403 output_format_not_allowed` → the
 *   generation path (`Generation.ts`).
 * - Characters are counted as the API (a Python service) counts them: code
 *   points (`characterCount`), for the model's limit, the credits, the audio's
 *   length and the work.
 * - STT and music are billed by audio time (the rows' billing): no credits are
 *   counted, and their successes carry no `character-cost`.
 *
 * @since 0.1.0
 */
import { Clock, Effect } from "effect"
import * as Endpoints from "../client/Endpoints.ts"
import { characterLimitOf, defaultTtsModel } from "../client/Models.ts"
import { characterCount } from "../client/Validation.ts"
import { type Account, type Accounts, subscriptionJson } from "./Accounts.ts"
import { type Answers, isPending, type Outcome, respond } from "./Answers.ts"
import * as Audio from "./Audio.ts"
import * as Catalog from "./Catalog.ts"
import {
  checkFormat,
  checkString,
  checkVoiceSettings,
  enumItem,
  formatForbidden,
  type IncomingRequest,
  objectBody,
  readJson,
  tooShort,
  type ValidationItem
} from "./Checks.ts"
import { type Generate, type LatencyModel, profileOf } from "./Generation.ts"
import type * as BeyondTts from "./HandlersBeyondTts.ts"
import * as Prng from "./Prng.ts"

type Json = unknown

/** What `Simulator.make` lends the handlers: its answers, accounts and generation path, and its settings. */
export interface Kit {
  readonly answers: Answers
  readonly accounts: Accounts
  readonly generate: Generate
  readonly prng: Prng.Prng
  readonly latency: LatencyModel
  /** Characters of text per second of speech. */
  readonly charsPerSecond: number
  /** Stream chunk duration in seconds of audio. */
  readonly chunkSeconds: number
  readonly characterLimits: Readonly<Record<string, number>> | undefined
  /** The model's start, in Unix seconds (the user's `created_at`). */
  readonly startUnix: number
}

/** A handler, as `Simulator.ts` routes to it. */
export type Handler = (
  request: IncomingRequest,
  url: URL,
  params: Readonly<Record<string, string>>
) => Effect.Effect<Outcome>

/** The operation names answered here: every row not answered in `HandlersBeyondTts.ts`. */
export type Name = Exclude<Endpoints.Name, BeyondTts.Name>

/** Chunks of a stream: one per `chunkSeconds` of audio, at most 200. */
export const chunkCount = (seconds: number, chunkSeconds: number): number =>
  Math.max(1, Math.min(200, Math.ceil(seconds / chunkSeconds)))

const encoder = new TextEncoder()

const base64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")

/** Even timing over the characters (code points) of `text`, from `start`, over `seconds`. */
const alignment = (text: string, start: number, seconds: number) => {
  const chars = Array.from(text)
  const step = chars.length === 0 ? 0 : seconds / chars.length
  const round = (x: number) => Math.round(x * 1000) / 1000
  return {
    characters: chars,
    character_start_times_seconds: chars.map((_, i) => round(start + i * step)),
    character_end_times_seconds: chars.map((_, i) => round(start + (i + 1) * step))
  }
}

/** The body of a TTS row with timestamps: one JSON object, or one line per chunk, each with its share's alignment. */
const timestampChunks = (
  text: string,
  seconds: number,
  audio: Uint8Array,
  pieces: ReadonlyArray<Uint8Array>,
  stream: boolean
) => {
  if (!stream) {
    const a = alignment(text, 0, seconds)
    return [encoder.encode(JSON.stringify({ audio_base64: base64(audio), alignment: a, normalized_alignment: a }))]
  }
  const chars = Array.from(text)
  return pieces.map((piece, i) => {
    const from = Math.floor((i * chars.length) / pieces.length)
    const to = Math.floor(((i + 1) * chars.length) / pieces.length)
    const part = chars.slice(from, to).join("")
    const a = alignment(
      part,
      (from / Math.max(1, chars.length)) * seconds,
      ((to - from) / Math.max(1, chars.length)) * seconds
    )
    return encoder.encode(JSON.stringify({ audio_base64: base64(piece), alignment: a, normalized_alignment: a }) + "\n")
  })
}

type TtsRow =
  | typeof Endpoints.textToSpeechConvert
  | typeof Endpoints.textToSpeechConvertWithTimestamps
  | typeof Endpoints.textToSpeechStream
  | typeof Endpoints.textToSpeechStreamWithTimestamps

/** A TTS body's `text` and `model_id`, with the 422 items of the body. */
const ttsBody = (items: Array<ValidationItem>, body: Record<string, Json> | undefined) => {
  if (body === undefined) return { text: undefined, modelId: defaultTtsModel }
  const text = checkString(items, body, "text", true)
  const modelId = checkString(items, body, "model_id", false) ?? defaultTtsModel
  checkVoiceSettings(items, body)
  if (text !== undefined && text.length === 0) items.push(tooShort(["body", "text"], text))
  return { text, modelId }
}

/** The four TTS rows: streamed or not, audio or with timestamps, by what the row answers. */
const textToSpeech = (kit: Kit, request: IncomingRequest, url: URL, endpoint: TtsRow, voiceId: string) =>
  Effect.gen(function*() {
    const { accounts, answers } = kit
    const stream = endpoint.response._tag === "AudioStream" || endpoint.response._tag === "Ndjson"
    const timestamps = endpoint.response._tag === "Json" || endpoint.response._tag === "Ndjson"
    const items: Array<ValidationItem> = []
    const format = checkFormat(items, url, endpoint.outputFormat.formats, endpoint.outputFormat.default)
    const { modelId, text } = ttsBody(items, objectBody(items, yield* readJson(request)))
    if (items.length > 0 || text === undefined) return respond(answers.validation(items))
    const account = accounts.authenticate(request)
    if (isPending(account)) return respond(account)
    if (Catalog.voiceOf(voiceId) === undefined) {
      return respond(answers.detail(404, "voice_not_found", `A voice with the voice_id ${voiceId} was not found.`))
    }
    if (!Catalog.ttsModels.some((m) => m.model_id === modelId)) {
      return respond(answers.detail(400, "model_not_found", `A model with model ID ${modelId} does not exist.`))
    }
    const count = characterCount(text)
    const limit = characterLimitOf(modelId, kit.characterLimits)
    if (count > limit) {
      return respond(answers.detail(
        400,
        "max_character_limit_exceeded",
        `This request's text has ${count} characters and exceeds the character limit of ${limit} characters.`
      ))
    }
    const forbidden = formatForbidden(answers, account, format)
    if (forbidden !== undefined) return respond(forbidden)
    const pool = Endpoints.poolOf(endpoint, modelId)
    const cost = Endpoints.creditsOf(endpoint, count, modelId)
    const seconds = Audio.speechSeconds(count, kit.charsPerSecond)
    return yield* kit.generate({
      account,
      pool,
      cost,
      profile: profileOf(kit.latency, pool, modelId),
      units: count,
      streaming: stream,
      success: (meta) => {
        const headers = answers.successHeaders(meta, cost)
        const audio = Audio.renderShared(format, seconds)
        // A buffered body is one chunk: its chunking is not observable (no pacing between
        // chunks), and every chunk costs each reader a pull and an idle-timeout timer.
        const pieces = stream ? Audio.chunk(audio, chunkCount(seconds, kit.chunkSeconds)) : [audio]
        if (!timestamps) {
          return {
            headers: {
              ...headers,
              "content-type": Audio.contentTypeOf(format),
              ...(stream ? {} : { "content-length": String(audio.length) })
            },
            chunks: pieces
          }
        }
        const chunks = timestampChunks(text, seconds, audio, pieces, stream)
        return stream
          ? { headers: { ...headers, "content-type": "application/x-ndjson" }, chunks }
          : {
            headers: { ...headers, "content-type": "application/json", "content-length": String(chunks[0]!.length) },
            chunks
          }
      }
    })
  })

/** A transcript of `seconds` of speech: seeded words, one every 0.4 s. */
const transcript = (prng: Prng.Prng, seconds: number, languageCode: unknown) => {
  const count = Math.max(1, Math.round(seconds * 2.5))
  const words: Array<Record<string, Json>> = []
  const texts: Array<string> = []
  const step = seconds / count
  for (let i = 0; i < count; i++) {
    const word = Catalog.transcriptWords[prng.int(Catalog.transcriptWords.length)]!
    texts.push(word)
    const start = Math.round(i * step * 1000) / 1000
    const end = Math.round((i + 0.8) * step * 1000) / 1000
    words.push({ text: word, start, end, type: "word", speaker_id: "speaker_0", logprob: -0.05 })
    if (i < count - 1) {
      words.push({
        text: " ",
        start: end,
        end: Math.round((i + 1) * step * 1000) / 1000,
        type: "spacing",
        speaker_id: "speaker_0",
        logprob: 0
      })
    }
  }
  const text = texts.join(" ")
  return encoder.encode(JSON.stringify({
    language_code: typeof languageCode === "string" && languageCode !== "" ? languageCode : "eng",
    language_probability: 0.98,
    text: text.charAt(0).toUpperCase() + text.slice(1) + ".",
    words,
    transcription_id: prng.string(20, Prng.alphanumeric),
    audio_duration_secs: Math.round(seconds * 1000) / 1000
  }))
}

const speechToText = (kit: Kit, request: IncomingRequest, endpoint: typeof Endpoints.speechToTextConvert) =>
  Effect.gen(function*() {
    const { accounts, answers } = kit
    const form = yield* Effect.promise(() => request.formData().catch(() => undefined))
    const items: Array<ValidationItem> = []
    const modelId = form?.get("model_id") ?? null
    if (modelId === null) {
      items.push({ type: "missing", loc: ["body", "model_id"], msg: "Field required", input: null })
    } else if (typeof modelId !== "string" || !Catalog.sttModels.includes(modelId)) {
      items.push(enumItem(["body", "model_id"], Catalog.sttModels, typeof modelId === "string" ? modelId : "<file>"))
    }
    if (items.length > 0 || form === undefined) return respond(answers.validation(items))
    const account = accounts.authenticate(request)
    if (isPending(account)) return respond(account)
    const file = form.get("file")
    const sourceUrl = form.get("source_url") ?? form.get("cloud_storage_url")
    if ((file === null || typeof file === "string") && sourceUrl === null) {
      return respond(
        answers.detail(400, "invalid_parameters", "Must provide either file or cloud_storage_url parameter.")
      )
    }
    // The duration needs the file's head and size only: no copy of the whole upload.
    const seconds = Math.max(
      0.1,
      file !== null && typeof file !== "string"
        ? Audio.estimateSeconds(
          new Uint8Array(yield* Effect.promise(() => file.slice(0, Audio.estimateHeadBytes).arrayBuffer())),
          file.size
        )
        : 5
    )
    const languageCode = form.get("language_code")
    return yield* kit.generate({
      account,
      pool: Endpoints.poolOf(endpoint, undefined),
      cost: 0, // billed by audio time (the row's billing): no credits counted
      profile: kit.latency.stt,
      units: seconds,
      streaming: false,
      success: (meta) => {
        const body = transcript(kit.prng, seconds, languageCode)
        const { "character-cost": _, ...headers } = answers.successHeaders(meta, undefined)
        return {
          headers: { ...headers, "content-type": "application/json", "content-length": String(body.length) },
          chunks: [body]
        }
      }
    })
  })

/** A music body's length in milliseconds (default 30 s), with the 422 items of the body. */
const musicBody = (items: Array<ValidationItem>, body: Record<string, Json> | undefined): number => {
  if (body === undefined) return 30_000
  checkString(items, body, "prompt", false)
  const modelId = checkString(items, body, "model_id", false)
  if (modelId !== undefined && !Catalog.musicModels.includes(modelId)) {
    items.push(enumItem(["body", "model_id"], Catalog.musicModels, modelId))
  }
  let lengthMs = 30_000
  const len = body["music_length_ms"]
  if (len !== undefined && len !== null) {
    if (typeof len !== "number" || !Number.isInteger(len)) {
      items.push({
        type: "int_type",
        loc: ["body", "music_length_ms"],
        msg: "Input should be a valid integer",
        input: len
      })
    } else if (len < 3000 || len > 600_000) {
      items.push({
        type: len < 3000 ? "greater_than_equal" : "less_than_equal",
        loc: ["body", "music_length_ms"],
        msg: len < 3000
          ? "Input should be greater than or equal to 3000"
          : "Input should be less than or equal to 600000",
        input: len,
        ctx: len < 3000 ? { ge: 3000 } : { le: 600000 }
      })
    } else lengthMs = len
  }
  if (body["prompt"] === undefined && body["composition_plan"] === undefined) {
    items.push({ type: "missing", loc: ["body", "prompt"], msg: "Field required", input: body })
  }
  return lengthMs
}

const music = (
  kit: Kit,
  request: IncomingRequest,
  url: URL,
  endpoint: typeof Endpoints.musicCompose | typeof Endpoints.musicStream
) =>
  Effect.gen(function*() {
    const { accounts, answers } = kit
    const stream = endpoint.response._tag === "AudioStream"
    const items: Array<ValidationItem> = []
    const format = checkFormat(items, url, endpoint.outputFormat.formats, endpoint.outputFormat.default)
    const lengthMs = musicBody(items, objectBody(items, yield* readJson(request)))
    if (items.length > 0) return respond(answers.validation(items))
    const account = accounts.authenticate(request)
    if (isPending(account)) return respond(account)
    const actual = format === "auto" ? "mp3_44100_128" : format
    const forbidden = formatForbidden(answers, account, actual)
    if (forbidden !== undefined) return respond(forbidden)
    const seconds = lengthMs / 1000
    return yield* kit.generate({
      account,
      pool: Endpoints.poolOf(endpoint, undefined),
      cost: 0, // billed by audio time (the row's billing): no credits counted
      profile: kit.latency.music,
      units: seconds,
      streaming: stream,
      success: (meta) => {
        const audio = Audio.renderShared(actual, seconds)
        const { "character-cost": _, ...headers } = answers.successHeaders(meta, undefined)
        return {
          headers: {
            ...headers,
            "content-type": Audio.contentTypeOf(actual),
            "song-id": kit.prng.string(20, Prng.alphanumeric),
            ...(stream ? {} : { "content-length": String(audio.length) })
          },
          chunks: stream ? Audio.chunk(audio, chunkCount(seconds, kit.chunkSeconds)) : [audio]
        }
      }
    })
  })

/** A read of the account: `f` of the account (its period rolled), or the 401. */
const readAccount = (kit: Kit, request: IncomingRequest, f: (account: Account) => Json) =>
  Effect.map(Clock.currentTimeMillis, (now) => {
    const account = kit.accounts.authenticate(request)
    if (isPending(account)) return respond(account)
    kit.accounts.rollPeriod(account, now)
    return respond(kit.answers.json(200, f(account)))
  })

/** Builds the handlers of these rows over the model's kit. */
export const make = (kit: Kit): { readonly [N in Name]: Handler } => ({
  "textToSpeech.convert": (request, url, params) =>
    textToSpeech(kit, request, url, Endpoints.textToSpeechConvert, params["voice_id"]!),
  "textToSpeech.convertWithTimestamps": (request, url, params) =>
    textToSpeech(kit, request, url, Endpoints.textToSpeechConvertWithTimestamps, params["voice_id"]!),
  "textToSpeech.stream": (request, url, params) =>
    textToSpeech(kit, request, url, Endpoints.textToSpeechStream, params["voice_id"]!),
  "textToSpeech.streamWithTimestamps": (request, url, params) =>
    textToSpeech(kit, request, url, Endpoints.textToSpeechStreamWithTimestamps, params["voice_id"]!),
  "speechToText.convert": (request) => speechToText(kit, request, Endpoints.speechToTextConvert),
  "music.compose": (request, url) => music(kit, request, url, Endpoints.musicCompose),
  "music.stream": (request, url) => music(kit, request, url, Endpoints.musicStream),
  "user.get": (request) =>
    readAccount(kit, request, (a) => ({
      user_id: `sim_${a.name}`,
      workspace_id: `sim_workspace_${a.name}`,
      subscription: subscriptionJson(a),
      is_new_user: false,
      can_use_delayed_payment_methods: false,
      is_onboarding_completed: true,
      is_onboarding_checklist_completed: true,
      first_name: "Simulated",
      is_api_key_hashed: true,
      xi_api_key_preview: "sk_...sim",
      created_at: kit.startUnix,
      seat_type: "workspace_admin"
    })),
  "user.subscription": (request) => readAccount(kit, request, subscriptionJson),
  "voices.list": (request) =>
    readAccount(kit, request, () => ({ voices: Catalog.premadeVoices.map(Catalog.voiceJson) })),
  "voices.search": (request, url) => {
    // As for bodies, a bad query is a 422 before the key is looked at (docs/api-facts.md §3.3).
    const result = Catalog.searchVoices(url.searchParams)
    if (result._tag === "Invalid") return Effect.succeed(respond(kit.answers.validation(result.problems)))
    return readAccount(kit, request, () => result.body)
  },
  "voices.get": (request, _url, params) =>
    Effect.sync(() => {
      const account = kit.accounts.authenticate(request)
      if (isPending(account)) return respond(account)
      const id = params["voice_id"]!
      const v = Catalog.voiceOf(id)
      return respond(
        v === undefined
          ? kit.answers.detail(404, "voice_not_found", `A voice with the voice_id ${id} was not found.`)
          : kit.answers.json(200, Catalog.voiceJson(v))
      )
    }),
  "models.list": (request) =>
    readAccount(kit, request, () => Catalog.ttsModels.map((m) => Catalog.modelJson(m, kit.characterLimits)))
})
