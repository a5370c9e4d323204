/**
 * The typed client's operations beyond text to speech: speech to speech (the
 * voice changer), sound effects, text to dialogue and audio isolation. They
 * are members of the `ElevenLabs` service (`el.speechToSpeech.convert`, …),
 * built here from what the client's constructor lends them ({@link Kit}) so
 * that `ElevenLabs.ts` keeps one way to send, time and classify a request.
 *
 * **Details**
 *
 * - Each operation takes its path, method, `accept`, default output format
 *   and local check from its row of the endpoint table (`Endpoints.ts`).
 * - Uploads (speech to speech, audio isolation) are `multipart/form-data`
 *   with the audio in the `audio` field, encoded as the SDK does (`Wire.ts`);
 *   speech to speech's `voice_settings` goes as a JSON-encoded string, as the
 *   API asks. Sound effects and dialogue send JSON bodies in snake_case.
 * - Pools and billing (docs/api-facts.md §5.6): speech to speech, sound
 *   effects and audio isolation count against the `standard` pool (the
 *   sources name none) and bill by audio time; text to dialogue finds its
 *   pool from its model and bills its lines' characters.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Schema, Scope } from "effect"
import { HttpClientRequest } from "effect/http"
import type { AudioResult, AudioStream } from "./ElevenLabs.ts"
import * as Endpoints from "./Endpoints.ts"
import type { ElevenLabsError, InvalidRequest } from "./Errors.ts"
import * as Schemas from "./Schemas.ts"
import * as Validation from "./Validation.ts"
import { appendField, appendFile, pick, query } from "./Wire.ts"

// ============================================================================
// Service members
// ============================================================================

/** The voice changer: speech in, the same speech in another voice out. */
export interface SpeechToSpeech {
  /** `POST /v1/speech-to-speech/{voice_id}` (multipart): the whole audio, buffered. */
  readonly convert: (
    voiceId: string,
    request: Schemas.SpeechToSpeechConvertRequest
  ) => Effect.Effect<AudioResult, ElevenLabsError>
  /** `POST /v1/speech-to-speech/{voice_id}/stream` (multipart): audio as it is made; lives as long as the scope. */
  readonly stream: (
    voiceId: string,
    request: Schemas.SpeechToSpeechStreamRequest
  ) => Effect.Effect<AudioStream, ElevenLabsError, Scope.Scope>
}

/** Sound effects from a text. */
export interface TextToSoundEffects {
  /** `POST /v1/sound-generation`: the whole sound, buffered. */
  readonly convert: (request: Schemas.SoundEffectsRequest) => Effect.Effect<AudioResult, ElevenLabsError>
}

/** A dialogue from a script of lines, each spoken by its own voice. */
export interface TextToDialogue {
  /** `POST /v1/text-to-dialogue`: the whole audio, buffered. */
  readonly convert: (request: Schemas.TextToDialogueConvertRequest) => Effect.Effect<AudioResult, ElevenLabsError>
  /** `POST /v1/text-to-dialogue/stream`: audio as it is made; lives as long as the scope. */
  readonly stream: (
    request: Schemas.TextToDialogueStreamRequest
  ) => Effect.Effect<AudioStream, ElevenLabsError, Scope.Scope>
}

/** The speech of a recording, without its background. */
export interface AudioIsolation {
  /** `POST /v1/audio-isolation` (multipart): the whole audio, buffered. */
  readonly convert: (request: Schemas.AudioIsolationRequest) => Effect.Effect<AudioResult, ElevenLabsError>
  /** `POST /v1/audio-isolation/stream` (multipart): audio as it is made; lives as long as the scope. */
  readonly stream: (
    request: Schemas.AudioIsolationStreamRequest
  ) => Effect.Effect<AudioStream, ElevenLabsError, Scope.Scope>
}

/** The four groups, as the client's constructor adds them to the service. */
export interface BeyondTts {
  readonly speechToSpeech: SpeechToSpeech
  readonly textToSoundEffects: TextToSoundEffects
  readonly textToDialogue: TextToDialogue
  readonly audioIsolation: AudioIsolation
}

// ============================================================================
// Constructor
// ============================================================================

/** What the client's constructor (`ElevenLabs.make`) lends these operations. */
export interface Kit {
  /** The local check: fails with the refusal, typed, before anything is sent (a no-op with `validate: false`). */
  readonly check: (refusal: () => InvalidRequest | undefined) => Effect.Effect<void, ElevenLabsError>
  readonly validation: Validation.ValidationOptions
  /** Encodes a JSON body with its schema (camelCase in, snake_case out). */
  readonly encodeBody: (
    operation: string,
    schema: Schema.Codec<any, any>,
    value: unknown
  ) => Effect.Effect<unknown, ElevenLabsError>
  /** A request to a row: its method, the path given, its `accept` header. */
  readonly requestTo: (endpoint: Endpoints.Endpoint, path: string) => HttpClientRequest.HttpClientRequest
  /** Sends and reads the whole audio. */
  readonly buffered: (
    operation: string,
    request: HttpClientRequest.HttpClientRequest
  ) => Effect.Effect<AudioResult, ElevenLabsError>
  /** Sends and hands the audio on as a stream that lives with the caller's scope. */
  readonly streamed: (
    operation: string,
    request: HttpClientRequest.HttpClientRequest
  ) => Effect.Effect<AudioStream, ElevenLabsError, Scope.Scope>
}

const soundEffectsKeys = ["text", "loop", "durationSeconds", "promptInfluence", "modelId"]
const dialogueKeys = [
  "inputs",
  "modelId",
  "languageCode",
  "settings",
  "pronunciationDictionaryLocators",
  "seed",
  "applyTextNormalization"
]

type StsRow = typeof Endpoints.speechToSpeechConvert | typeof Endpoints.speechToSpeechStream
type DialogueRow = typeof Endpoints.textToDialogueConvert | typeof Endpoints.textToDialogueStream
type IsolationRow = typeof Endpoints.audioIsolationConvert | typeof Endpoints.audioIsolationStream

/** Builds the four groups over the client's kit. */
export const make = (kit: Kit): BeyondTts => {
  const speechToSpeechRequest = (
    endpoint: StsRow,
    voiceId: string,
    request: Schemas.SpeechToSpeechRequest & { readonly outputFormat?: string | undefined }
  ) =>
    Effect.gen(function*() {
      const operation = endpoint.name
      yield* kit.check(() => Validation.checkSpeechToSpeech(operation, endpoint.check.variant, voiceId, request))
      const form = new FormData()
      appendFile(form, "audio", request.audio)
      appendField(form, endpoint.pool.model.field, request.modelId)
      if (request.voiceSettings !== undefined) {
        // The API takes the settings as a JSON-encoded string field, in snake_case.
        const settings = yield* kit.encodeBody(operation, Schemas.VoiceSettings, request.voiceSettings)
        appendField(form, "voice_settings", JSON.stringify(settings))
      }
      appendField(form, "seed", request.seed)
      appendField(form, "remove_background_noise", request.removeBackgroundNoise)
      appendField(form, "file_format", request.fileFormat)
      return kit.requestTo(endpoint, Endpoints.pathOf(endpoint, { voice_id: voiceId })).pipe(
        HttpClientRequest.setUrlParams(query({
          output_format: request.outputFormat ?? endpoint.outputFormat.default,
          enable_logging: request.enableLogging,
          optimize_streaming_latency: request.optimizeStreamingLatency
        })),
        HttpClientRequest.bodyFormData(form)
      )
    })

  const dialogueRequest = (
    endpoint: DialogueRow,
    request: Schemas.TextToDialogueBody & {
      readonly outputFormat?: string | undefined
      readonly enableLogging?: boolean | undefined
    }
  ) =>
    Effect.gen(function*() {
      const operation = endpoint.name
      yield* kit.check(() => Validation.checkTextToDialogue(operation, endpoint.check.variant, request, kit.validation))
      const body = yield* kit.encodeBody(operation, Schemas.TextToDialogueBody, pick(request, dialogueKeys))
      return kit.requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
        HttpClientRequest.setUrlParams(query({
          output_format: request.outputFormat ?? endpoint.outputFormat.default,
          enable_logging: request.enableLogging
        })),
        HttpClientRequest.bodyJsonUnsafe(body)
      )
    })

  const isolationRequest = (endpoint: IsolationRow, request: Schemas.AudioIsolationRequest) =>
    Effect.gen(function*() {
      yield* kit.check(() => Validation.checkAudioIsolation(endpoint.name, request))
      const form = new FormData()
      appendFile(form, "audio", request.audio)
      appendField(form, "file_format", request.fileFormat)
      appendField(form, "preview_b64", request.previewB64)
      return kit.requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(HttpClientRequest.bodyFormData(form))
    })

  const speechToSpeech: SpeechToSpeech = {
    convert: (voiceId, request) => {
      const endpoint = Endpoints.speechToSpeechConvert
      return Effect.flatMap(
        speechToSpeechRequest(endpoint, voiceId, request),
        (http) => kit.buffered(endpoint.name, http)
      )
    },
    stream: (voiceId, request) => {
      const endpoint = Endpoints.speechToSpeechStream
      return Effect.flatMap(
        speechToSpeechRequest(endpoint, voiceId, request),
        (http) => kit.streamed(endpoint.name, http)
      )
    }
  }

  const textToSoundEffects: TextToSoundEffects = {
    convert: (request) => {
      const endpoint = Endpoints.textToSoundEffectsConvert
      const operation = endpoint.name
      return Effect.gen(function*() {
        yield* kit.check(() => Validation.checkSoundEffects(operation, request))
        const body = yield* kit.encodeBody(operation, Schemas.SoundEffectsBody, pick(request, soundEffectsKeys))
        const http = kit.requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
          HttpClientRequest.setUrlParams(
            query({ output_format: request.outputFormat ?? endpoint.outputFormat.default })
          ),
          HttpClientRequest.bodyJsonUnsafe(body)
        )
        return yield* kit.buffered(operation, http)
      })
    }
  }

  const textToDialogue: TextToDialogue = {
    convert: (request) => {
      const endpoint = Endpoints.textToDialogueConvert
      return Effect.flatMap(dialogueRequest(endpoint, request), (http) => kit.buffered(endpoint.name, http))
    },
    stream: (request) => {
      const endpoint = Endpoints.textToDialogueStream
      return Effect.flatMap(dialogueRequest(endpoint, request), (http) => kit.streamed(endpoint.name, http))
    }
  }

  const audioIsolation: AudioIsolation = {
    convert: (request) => {
      const endpoint = Endpoints.audioIsolationConvert
      return Effect.flatMap(isolationRequest(endpoint, request), (http) => kit.buffered(endpoint.name, http))
    },
    stream: (request) => {
      const endpoint = Endpoints.audioIsolationStream
      // The stream's form has no `preview_b64`; a caller's extra field is not sent.
      const { audio, fileFormat } = request
      return Effect.flatMap(
        isolationRequest(endpoint, { audio, fileFormat }),
        (http) => kit.streamed(endpoint.name, http)
      )
    }
  }

  return { speechToSpeech, textToSoundEffects, textToDialogue, audioIsolation }
}
