/**
 * Local validation of requests before any network call: a refused request
 * costs no credits, no permit and no round trip.
 *
 * **Details**
 *
 * Every check fails with one `InvalidRequest` (no `status`) whose `field`
 * names the request field at fault and whose message says what to change:
 *
 * - text empty or whitespace only; text longer than the model's per-request
 *   limit (`Models.characterLimitOf`, counted in Unicode code points, as the
 *   Python API counts `len(text)`);
 * - an `output_format` the endpoint does not accept (WAV on the stream
 *   endpoints);
 * - voice settings out of range: stability and similarity_boost 0–1 (the TTS
 *   body's `VoiceSettingsResponseModel`); style 0–1 and speed 0.7–1.2, which
 *   that schema leaves unbounded: they are the bounds of `TtsVoiceSettings`
 *   and of the WebSocket API, **unconfirmed** for the HTTP endpoints
 *   (docs/api-facts.md §2.1);
 * - a malformed voice id (empty, whitespace, `/`, `?`, `#`, or anything but
 *   letters, digits, `_` and `-`);
 * - STT with neither or both of `file` and `sourceUrl`;
 * - speech to speech and audio isolation without audio bytes; sound effects
 *   with a blank text, a duration outside 0.5–30 s or a prompt influence
 *   outside 0–1; a dialogue with no lines, a blank line, a malformed voice id,
 *   more than 10 distinct voices, a stability outside 0–1, or more characters
 *   in all than its model's limit (docs/api-facts.md §2.9–§2.12).
 *
 * @since 0.1.0
 */
import { Effect, Option, Schema } from "effect"
import { InvalidRequest } from "./Errors.ts"
import {
  characterLimitOf,
  convertOutputFormats,
  defaultTtsModel,
  musicOutputFormats,
  streamOutputFormats
} from "./Models.ts"
import {
  type AudioFile,
  audioFileOf,
  type AudioIsolationRequest,
  defaultDialogueModel,
  MusicBody,
  type MusicComposeRequest,
  SoundEffectsBody,
  type SoundEffectsRequest,
  type SpeechToSpeechRequest,
  type SpeechToTextRequest,
  type TextToDialogueBody,
  TextToDialogueBody as TextToDialogueBodySchema,
  type TextToSpeechBody,
  TextToSpeechBody as TextToSpeechBodySchema,
  type VoiceSearch,
  type VoiceSettings
} from "./Schemas.ts"

/** Options of the local checks. */
export interface ValidationOptions {
  /** Per-model character limits that override `Models.characterLimits`. */
  readonly characterLimits?: Readonly<Record<string, number>> | undefined
}

/** Which TTS endpoint a request is for: the stream endpoints refuse WAV. */
export type TtsEndpoint = "convert" | "stream"

const refuse = (operation: string, field: string, message: string) => new InvalidRequest({ operation, field, message })

/**
 * The voice settings ranges: stability and similarity boost from the TTS body's
 * schema; style and speed from `TtsVoiceSettings` and the WebSocket API (the TTS
 * body's schema gives them no bound: unconfirmed for HTTP, docs/api-facts.md §2.1).
 */
export const voiceSettingRanges = {
  stability: [0, 1],
  similarityBoost: [0, 1],
  style: [0, 1],
  speed: [0.7, 1.2]
} as const

const voiceIdPattern = /^[A-Za-z0-9_-]+$/

/** Checks a voice id; returns the failure or `undefined`. */
export const checkVoiceId = (operation: string, voiceId: string): InvalidRequest | undefined => {
  if (typeof voiceId !== "string" || voiceId.trim() === "") {
    return refuse(operation, "voiceId", "The voice id is empty: pass the voice_id of a voice from voices.list().")
  }
  if (!voiceIdPattern.test(voiceId)) {
    return refuse(
      operation,
      "voiceId",
      `The voice id ${
        JSON.stringify(voiceId.slice(0, 64))
      } is malformed: use only letters, digits, '_' and '-' (no spaces, '/', '?' or '#'), as in voices.list().`
    )
  }
  return undefined
}

const checkVoiceSettings = (operation: string, settings: VoiceSettings | undefined): InvalidRequest | undefined => {
  if (settings === undefined) return undefined
  for (const [key, [min, max]] of Object.entries(voiceSettingRanges)) {
    const value = (settings as Record<string, unknown>)[key]
    if (value === undefined) continue
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
      return refuse(
        operation,
        `voiceSettings.${key}`,
        `voiceSettings.${key} is ${
          typeof value === "number" ? String(value) : typeof value
        }: it must be a number from ${min} to ${max}.`
      )
    }
  }
  return undefined
}

const surrogate = /[\uD800-\uDFFF]/

/**
 * Counts characters as the API does: Unicode code points. Text without surrogates (most text) is its
 * `length`; otherwise each surrogate pair counts once and a lone surrogate once (as `for...of` counts).
 */
export const characterCount = (text: string): number => {
  if (!surrogate.test(text)) return text.length
  let n = 0
  for (let i = 0; i < text.length; i++, n++) {
    const c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
  }
  return n
}

/** Checks a TTS request; returns the failure or `undefined`. */
export const checkTextToSpeech = (
  operation: string,
  endpoint: TtsEndpoint,
  voiceId: string,
  request: TextToSpeechBody & { readonly outputFormat?: string | undefined },
  options?: ValidationOptions | undefined
): InvalidRequest | undefined => {
  const badVoice = checkVoiceId(operation, voiceId)
  if (badVoice !== undefined) return badVoice
  if (typeof request.text !== "string" || request.text.trim() === "") {
    return refuse(operation, "text", "The text is empty or only whitespace: pass the text to speak.")
  }
  const modelId = request.modelId ?? defaultTtsModel
  const limit = characterLimitOf(modelId, options?.characterLimits)
  const count = characterCount(request.text)
  if (count > limit) {
    return refuse(
      operation,
      "text",
      `The text has ${count} characters, over the ${limit}-character limit of ${modelId}: split it into requests of at most ${limit} characters (stitch them with previousRequestIds), or use a model with a higher limit.`
    )
  }
  return checkOutputFormat(operation, endpoint, request.outputFormat) ??
    checkVoiceSettings(operation, request.voiceSettings)
}

/**
 * Checks an `output_format` against the convert list (28, with WAV) or the stream list (21), as TTS, speech
 * to speech and dialogue take them.
 */
const checkOutputFormat = (
  operation: string,
  endpoint: TtsEndpoint,
  format: string | undefined
): InvalidRequest | undefined => {
  if (format === undefined) return undefined
  const allowed: ReadonlyArray<string> = endpoint === "stream" ? streamOutputFormats : convertOutputFormats
  if (allowed.includes(format)) return undefined
  const hint = endpoint === "stream" && format.startsWith("wav_")
    ? " WAV is only available from convert: use convert, or a pcm_* format of the same rate."
    : ` Use one of ${allowed.join(", ")}.`
  return refuse(
    operation,
    "outputFormat",
    `The output format ${JSON.stringify(format)} is not accepted by the ${endpoint} endpoint.${hint}`
  )
}

/** A number in `[min, max]`, else the refusal naming `field`. */
const checkRange = (operation: string, field: string, value: number | undefined, min: number, max: number) =>
  value === undefined || (typeof value === "number" && Number.isFinite(value) && value >= min && value <= max)
    ? undefined
    : refuse(operation, field, `${field} is ${String(value)}: it must be a number from ${min} to ${max}.`)

/** An upload with at least one byte. */
const checkAudio = (operation: string, audio: AudioFile | Uint8Array | undefined): InvalidRequest | undefined => {
  const data = audio === undefined ? undefined : audioFileOf(audio).data
  return data === undefined || !(data instanceof Uint8Array) || data.byteLength === 0
    ? refuse(operation, "audio", "The audio is missing or empty: pass the bytes of an audio (or video) file.")
    : undefined
}

/** Checks a speech-to-speech request (voice changer); returns the failure or `undefined`. */
export const checkSpeechToSpeech = (
  operation: string,
  endpoint: TtsEndpoint,
  voiceId: string,
  request: SpeechToSpeechRequest & { readonly outputFormat?: string | undefined }
): InvalidRequest | undefined =>
  checkVoiceId(operation, voiceId) ??
    checkAudio(operation, request.audio) ??
    checkOutputFormat(operation, endpoint, request.outputFormat) ??
    checkVoiceSettings(operation, request.voiceSettings)

/** Checks an audio-isolation request; returns the failure or `undefined`. */
export const checkAudioIsolation = (operation: string, request: AudioIsolationRequest): InvalidRequest | undefined =>
  checkAudio(operation, request.audio)

/** The bounds the OpenAPI document gives sound effects (field descriptions, docs/api-facts.md §2.10). */
export const soundEffectsRanges = { durationSeconds: [0.5, 30], promptInfluence: [0, 1] } as const

/** Checks a sound-effects request; returns the failure or `undefined`. */
export const checkSoundEffects = (operation: string, request: SoundEffectsRequest): InvalidRequest | undefined => {
  if (typeof request.text !== "string" || request.text.trim() === "") {
    return refuse(operation, "text", "The text is empty or only whitespace: describe the sound to make.")
  }
  const { durationSeconds: [dMin, dMax], promptInfluence: [pMin, pMax] } = soundEffectsRanges
  return checkRange(operation, "durationSeconds", request.durationSeconds, dMin, dMax) ??
    checkRange(operation, "promptInfluence", request.promptInfluence, pMin, pMax) ??
    (request.outputFormat === undefined || (streamOutputFormats as ReadonlyArray<string>).includes(request.outputFormat)
      ? undefined
      : refuse(
        operation,
        "outputFormat",
        `The output format ${JSON.stringify(request.outputFormat)} is not accepted by sound effects. Use one of ${
          streamOutputFormats.join(", ")
        }.`
      ))
}

/** The most distinct voices one dialogue may use (the OpenAPI document, `inputs`). */
export const maxDialogueVoices = 10

/**
 * Checks a text-to-dialogue request; returns the failure or `undefined`. The model's per-request character
 * limit (`Models.characterLimitOf`) bounds the sum of the lines, as it bounds a TTS text: the sources give no
 * limit of dialogue's own (the document advises 2,000 characters for reliable generation, without refusing more).
 */
export const checkTextToDialogue = (
  operation: string,
  endpoint: TtsEndpoint,
  request: TextToDialogueBody & { readonly outputFormat?: string | undefined },
  options?: ValidationOptions | undefined
): InvalidRequest | undefined => {
  const inputs = request.inputs
  if (!Array.isArray(inputs) || inputs.length === 0) {
    return refuse(
      operation,
      "inputs",
      "The dialogue has no lines: pass inputs, each a text and the voiceId that speaks it."
    )
  }
  const voices = new Set<string>()
  let count = 0
  for (const [i, input] of inputs.entries()) {
    const badVoice = checkVoiceId(operation, input.voiceId)
    if (badVoice !== undefined) return refuse(operation, `inputs[${i}].voiceId`, badVoice.message)
    if (typeof input.text !== "string" || input.text.trim() === "") {
      return refuse(
        operation,
        `inputs[${i}].text`,
        `Line ${i} of the dialogue is empty or only whitespace: give it the text to speak.`
      )
    }
    voices.add(input.voiceId)
    count += characterCount(input.text)
  }
  if (voices.size > maxDialogueVoices) {
    return refuse(
      operation,
      "inputs",
      `The dialogue uses ${voices.size} distinct voices: at most ${maxDialogueVoices} are allowed.`
    )
  }
  const modelId = request.modelId ?? defaultDialogueModel
  const limit = characterLimitOf(modelId, options?.characterLimits)
  if (count > limit) {
    return refuse(
      operation,
      "inputs",
      `The dialogue has ${count} characters in all, over the ${limit}-character limit of ${modelId}: split it into requests of at most ${limit} characters.`
    )
  }
  return checkOutputFormat(operation, endpoint, request.outputFormat) ??
    checkRange(operation, "settings.stability", request.settings?.stability, 0, 1)
}

/** Checks an STT request; returns the failure or `undefined`. */
export const checkSpeechToText = (operation: string, request: SpeechToTextRequest): InvalidRequest | undefined => {
  const hasFile = request.file !== undefined
  const hasUrl = request.sourceUrl !== undefined || request.cloudStorageUrl !== undefined
  if (!hasFile && !hasUrl) {
    return refuse(
      operation,
      "file",
      "Pass either file (the audio bytes) or sourceUrl (a URL of the audio): neither was given."
    )
  }
  if (hasFile && hasUrl) {
    return refuse(operation, "sourceUrl", "Pass either file or sourceUrl, not both: remove one of them.")
  }
  const data = request.file === undefined ? undefined : audioFileOf(request.file).data
  if (hasFile && (data === undefined || data.byteLength === 0)) {
    return refuse(operation, "file", "The audio file is empty: pass the bytes of an audio file of at least 100 ms.")
  }
  if (
    request.numSpeakers !== undefined &&
    (!Number.isInteger(request.numSpeakers) || request.numSpeakers < 1 || request.numSpeakers > 32)
  ) {
    return refuse(
      operation,
      "numSpeakers",
      `numSpeakers is ${request.numSpeakers}: it must be an integer from 1 to 32.`
    )
  }
  return undefined
}

/** Checks a music compose request; returns the failure or `undefined`. */
export const checkMusic = (operation: string, request: MusicComposeRequest): InvalidRequest | undefined => {
  if (request.prompt === undefined && request.compositionPlan === undefined && request.musicPrompt === undefined) {
    return refuse(operation, "prompt", "Pass a prompt (or a compositionPlan) describing the music.")
  }
  if (request.prompt !== undefined && request.prompt.trim() === "") {
    return refuse(operation, "prompt", "The prompt is empty or only whitespace: describe the music to compose.")
  }
  if (
    request.outputFormat !== undefined && !(musicOutputFormats as ReadonlyArray<string>).includes(request.outputFormat)
  ) {
    return refuse(
      operation,
      "outputFormat",
      `The output format ${JSON.stringify(request.outputFormat)} is not accepted by music compose.`
    )
  }
  if (request.musicLengthMs !== undefined && (request.musicLengthMs < 3000 || request.musicLengthMs > 600000)) {
    return refuse(
      operation,
      "musicLengthMs",
      `musicLengthMs is ${request.musicLengthMs}: it must be from 3000 to 600000.`
    )
  }
  return undefined
}

/** Checks a voice search's query (the API's own bounds); returns the failure or `undefined`. */
export const checkVoiceSearch = (operation: string, search: VoiceSearch): InvalidRequest | undefined => {
  const { minNoticePeriodDays, pageSize, voiceIds } = search
  if (pageSize !== undefined && (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100)) {
    return refuse(
      operation,
      "pageSize",
      `pageSize is ${pageSize}: it must be an integer from 1 to 100; page on with nextPageToken.`
    )
  }
  if (voiceIds !== undefined && voiceIds.length > 100) {
    return refuse(operation, "voiceIds", `voiceIds has ${voiceIds.length} ids: look up at most 100 per search.`)
  }
  if (minNoticePeriodDays !== undefined && !Number.isInteger(minNoticePeriodDays)) {
    return refuse(
      operation,
      "minNoticePeriodDays",
      `minNoticePeriodDays is ${minNoticePeriodDays}: it must be a whole number of days.`
    )
  }
  return undefined
}

/** Fails with the check's `InvalidRequest`, if any. */
export const orFail = (failure: InvalidRequest | undefined): Effect.Effect<void, InvalidRequest> =>
  failure === undefined ? Effect.void : Effect.fail(failure)

// ============================================================================
// A request as it goes on the wire
// ============================================================================

/** A request as `ResilientFetch` sees it: the row's check, path parameters, query, and its JSON body. */
export interface WireRequest {
  readonly operation: string
  readonly check: Check
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
  /** The JSON body (snake_case, as sent), when there is one. */
  readonly json: unknown
}

/** The row's check tags (`Endpoints.Check`), without importing the table (it imports this module). */
type Check =
  | { readonly _tag: "None" | "SpeechToText" | "Music" | "SoundEffects" | "AudioIsolation" | "VoiceId" | "VoiceSearch" }
  | { readonly _tag: "TextToSpeech" | "SpeechToSpeech" | "TextToDialogue"; readonly variant: TtsEndpoint }

/**
 * The local check of a request already encoded for the wire (the official SDK's, through `ResilientFetch`):
 * its JSON body decoded with the client's own schema, then the same check the typed client runs. A body the
 * schema does not read is left to the server (its 422 is the answer); multipart uploads are checked for their
 * voice only.
 */
export const checkWire = (
  request: WireRequest,
  options?: ValidationOptions | undefined
): InvalidRequest | undefined => {
  const { check, json, operation, params, query } = request
  const outputFormat = query.get("output_format") ?? undefined
  const voiceId = params["voice_id"]
  const decode = <A>(schema: Schema.Decoder<A>): A | undefined =>
    json === undefined ? undefined : Option.getOrUndefined(Schema.decodeUnknownOption(schema)(json))
  switch (check._tag) {
    case "TextToSpeech": {
      const body = decode(TextToSpeechBodySchema)
      return body === undefined || voiceId === undefined
        ? undefined
        : checkTextToSpeech(operation, check.variant, voiceId, { ...body, outputFormat }, options)
    }
    case "TextToDialogue": {
      const body = decode(TextToDialogueBodySchema)
      return body === undefined
        ? undefined
        : checkTextToDialogue(operation, check.variant, { ...body, outputFormat }, options)
    }
    case "SoundEffects": {
      const body = decode(SoundEffectsBody)
      return body === undefined
        ? undefined
        : checkSoundEffects(operation, { ...body, outputFormat } as SoundEffectsRequest)
    }
    case "Music": {
      const body = decode(MusicBody)
      return body === undefined ? undefined : checkMusic(operation, body)
    }
    case "SpeechToSpeech":
    case "VoiceId":
      return voiceId === undefined ? undefined : checkVoiceId(operation, voiceId)
    default:
      return undefined
  }
}
