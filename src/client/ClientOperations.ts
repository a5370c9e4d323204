/**
 * The typed client's operations over its wire (`ClientWire.ts`): text to speech, speech to text, music and
 * the reads (user, voices, models). The operations beyond TTS are in `BeyondTts.ts`.
 *
 * @internal
 */
import { Effect, Schema, Stream } from "effect"
import { HttpClientRequest } from "effect/http"
import { invalidResponse } from "./Classify.ts"
import { type ClientWire, wrap } from "./ClientWire.ts"
import type { ElevenLabs } from "./ElevenLabs.ts"
import * as Endpoints from "./Endpoints.ts"
import { fromHeaders } from "./ResponseMeta.ts"
import * as Schemas from "./Schemas.ts"
import * as Validation from "./Validation.ts"
import { appendField, appendFile, pick, query } from "./Wire.ts"

/** The query of `GET /v2/voices`: snake_case names, lists as repeated keys (as the SDK sends them). */
const voiceSearchParams = (search: Schemas.VoiceSearch): Array<readonly [string, string]> => {
  const params: Array<readonly [string, string]> = []
  for (const [key, value] of Object.entries(search)) {
    const name = Schemas.toSnake(key)
    if (Array.isArray(value)) { for (const item of value) params.push([name, String(item)]) }
    else if (value !== undefined) params.push([name, String(value)])
  }
  return params
}

/** The four TTS rows of the endpoint table. */
type TtsEndpoint =
  | typeof Endpoints.textToSpeechConvert
  | typeof Endpoints.textToSpeechConvertWithTimestamps
  | typeof Endpoints.textToSpeechStream
  | typeof Endpoints.textToSpeechStreamWithTimestamps

const ttsBodyKeys = [
  "text",
  "modelId",
  "languageCode",
  "voiceSettings",
  "pronunciationDictionaryLocators",
  "seed",
  "previousText",
  "nextText",
  "previousRequestIds",
  "nextRequestIds",
  "usePvcAsIvc",
  "applyTextNormalization",
  "applyLanguageTextNormalization"
] as const

/** Text to speech: the four TTS rows. */
const makeTextToSpeech = (wire: ClientWire): ElevenLabs["textToSpeech"] => {
  const {
    audioCall,
    bodyStream,
    bufferedAudio,
    check,
    decodeJson,
    encodeBody,
    open,
    requestTo,
    streamedAudio,
    validation
  } = wire

  const ttsRequest = (
    endpoint: TtsEndpoint,
    voiceId: string,
    request: Schemas.TextToSpeechBody & Schemas.TextToSpeechQuery & { readonly outputFormat?: string | undefined }
  ) =>
    Effect.gen(function*() {
      const operation = endpoint.name
      yield* check(() => Validation.checkTextToSpeech(operation, endpoint.check.variant, voiceId, request, validation))
      const body = yield* encodeBody(operation, Schemas.TextToSpeechBody, pick(request, ttsBodyKeys))
      return requestTo(endpoint, Endpoints.pathOf(endpoint, { voice_id: voiceId })).pipe(
        HttpClientRequest.setUrlParams(query({
          output_format: request.outputFormat ?? endpoint.outputFormat.default,
          enable_logging: request.enableLogging,
          optimize_streaming_latency: request.optimizeStreamingLatency
        })),
        HttpClientRequest.bodyJsonUnsafe(body)
      )
    })

  const textToSpeech: ElevenLabs["textToSpeech"] = {
    convert: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechConvert
      return Effect.flatMap(ttsRequest(endpoint, voiceId, request), (http) => bufferedAudio(endpoint.name, http))
    },
    stream: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechStream
      return Effect.flatMap(ttsRequest(endpoint, voiceId, request), (http) => streamedAudio(endpoint.name, http))
    },
    convertWithTimestamps: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechConvertWithTimestamps
      const operation = endpoint.name
      return Effect.gen(function*() {
        const http = yield* ttsRequest(endpoint, voiceId, request)
        const { response, audio } = yield* audioCall(operation, http)
        const value = yield* decodeJson(operation, response, endpoint.response.schema, audio)
        return { ...value, meta: fromHeaders(response.headers) }
      })
    },
    streamWithTimestamps: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechStreamWithTimestamps
      const operation = endpoint.name
      return Effect.gen(function*() {
        const http = yield* ttsRequest(endpoint, voiceId, request)
        const response = yield* open(operation, http)
        const decodeLine = Schema.decodeUnknownEffect(Schema.fromJsonString(endpoint.response.schema))
        const chunks = bodyStream(operation, response).pipe(
          Stream.decodeText,
          Stream.splitLines,
          Stream.filter((line) => line.trim() !== ""),
          Stream.mapEffect((line) =>
            decodeLine(line).pipe(
              Effect.mapError((e) =>
                wrap(
                  invalidResponse(
                    operation,
                    response.status,
                    response.headers,
                    `a stream line: ${e.message.slice(0, 300)}`
                  )
                )
              )
            )
          )
        )
        return { meta: fromHeaders(response.headers), chunks }
      })
    }
  }

  return textToSpeech
}

/** Speech to text and music: an upload and a composition, each read whole. */
const makeMedia = (wire: ClientWire): Pick<ElevenLabs, "speechToText" | "music"> => {
  const { bufferedAudio, check, encodeBody, jsonCall, requestTo } = wire

  const speechToText: ElevenLabs["speechToText"] = {
    convert: (request) => {
      const endpoint = Endpoints.speechToTextConvert
      const operation = endpoint.name
      return Effect.gen(function*() {
        yield* check(() => Validation.checkSpeechToText(operation, request))
        const form = new FormData()
        // Booleans and numbers go as strings, absent fields are skipped (as the SDK does: `Wire.ts`).
        const field = (name: string, value: string | number | boolean | undefined) => appendField(form, name, value)
        field(endpoint.pool.model.field, Endpoints.modelOf(endpoint, request.modelId))
        if (request.file !== undefined) appendFile(form, "file", request.file)
        field("source_url", request.sourceUrl)
        field("cloud_storage_url", request.cloudStorageUrl)
        field("language_code", request.languageCode)
        field("tag_audio_events", request.tagAudioEvents)
        field("num_speakers", request.numSpeakers)
        field("timestamps_granularity", request.timestampsGranularity)
        field("diarize", request.diarize)
        field("diarization_threshold", request.diarizationThreshold)
        field("file_format", request.fileFormat)
        field("webhook", request.webhook)
        field("webhook_id", request.webhookId)
        field("temperature", request.temperature)
        field("seed", request.seed)
        field("use_multi_channel", request.useMultiChannel)
        for (const term of request.keyterms ?? []) form.append("keyterms", term)
        const http = requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
          HttpClientRequest.setUrlParams(query({ enable_logging: request.enableLogging })),
          HttpClientRequest.bodyFormData(form)
        )
        const { response, value } = yield* jsonCall(operation, http, endpoint.response.schema)
        return { transcript: value, meta: fromHeaders(response.headers) }
      })
    }
  }

  const musicBodyKeys = [
    "prompt",
    "musicPrompt",
    "compositionPlan",
    "lyricsText",
    "musicLengthMs",
    "modelId",
    "generationMode",
    "seed",
    "forceInstrumental",
    "finetuneId",
    "finetuneStrength",
    "respectSectionsDurations"
  ]
  const music: ElevenLabs["music"] = {
    compose: (request) => {
      const endpoint = Endpoints.musicCompose
      const operation = endpoint.name
      return Effect.gen(function*() {
        yield* check(() => Validation.checkMusic(operation, request))
        const body = yield* encodeBody(operation, Schemas.MusicBody, pick(request, musicBodyKeys))
        const http = requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
          HttpClientRequest.setUrlParams(query({ output_format: request.outputFormat })),
          HttpClientRequest.bodyJsonUnsafe(body)
        )
        const result = yield* bufferedAudio(operation, http)
        return { ...result, songId: result.meta.songId }
      })
    }
  }

  return { speechToText, music }
}

/** The reads: user, voices, models. */
const makeReads = (wire: ClientWire): Pick<ElevenLabs, "user" | "voices" | "models"> => {
  const { check, getJson, requestTo } = wire

  /** A read of a row without path parameters or query: `user.*`, `models.list`. */
  const read = <S extends Schema.Top & Schema.Codec<any, any>>(
    endpoint: Endpoints.Endpoint & { readonly response: { readonly _tag: "Json"; readonly schema: S } }
  ) => getJson(endpoint.name, requestTo(endpoint, Endpoints.pathOf(endpoint)), endpoint.response.schema)

  const user: ElevenLabs["user"] = {
    get: () => read(Endpoints.userGet),
    subscription: () => read(Endpoints.userSubscription)
  }

  const voices: ElevenLabs["voices"] = {
    list: (opts) => {
      const endpoint = Endpoints.voicesList
      return getJson(
        endpoint.name,
        requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
          HttpClientRequest.setUrlParams(query({ show_legacy: opts?.showLegacy }))
        ),
        endpoint.response.schema
      )
    },
    get: (voiceId) => {
      const endpoint = Endpoints.voicesGet
      const operation = endpoint.name
      return check(() => Validation.checkVoiceId(operation, voiceId)).pipe(
        // The path is built once the id passed its check.
        Effect.andThen(() =>
          getJson(
            operation,
            requestTo(endpoint, Endpoints.pathOf(endpoint, { voice_id: voiceId })),
            endpoint.response.schema
          )
        )
      )
    },
    search: (search = {}) => {
      const endpoint = Endpoints.voicesSearch
      const operation = endpoint.name
      return check(() => Validation.checkVoiceSearch(operation, search)).pipe(
        Effect.andThen(getJson(
          operation,
          requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
            HttpClientRequest.setUrlParams(voiceSearchParams(search))
          ),
          endpoint.response.schema
        ))
      )
    }
  }

  const models: ElevenLabs["models"] = {
    list: () => read(Endpoints.modelsList)
  }

  return { user, voices, models }
}

/** The operations of the client, over `wire`. */
export const makeOperations = (wire: ClientWire) => ({
  textToSpeech: makeTextToSpeech(wire),
  ...makeMedia(wire),
  ...makeReads(wire)
})
