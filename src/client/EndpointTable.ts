/**
 * The rows of the endpoint table (`Endpoints.ts` re-exports them with the models and the rules that read
 * them): one per ElevenLabs operation the library knows, in the order of the API reference.
 *
 * @since 0.2.0
 */
import type { Endpoint, ModelSource, OutputFormat } from "./Endpoints.ts"
import {
  convertOutputFormats,
  defaultOutputFormat,
  defaultTtsModel,
  musicOutputFormats,
  streamOutputFormats
} from "./Models.ts"
import * as Schemas from "./Schemas.ts"

// ============================================================================
// The table
// ============================================================================

const row = <const E extends Endpoint>(endpoint: E): E => endpoint

const ttsModel: ModelSource = { field: "model_id", default: defaultTtsModel }
const byText = { _tag: "Characters", field: "text", multiplier: "model" } as const
const convertFormats: OutputFormat = { formats: convertOutputFormats, default: defaultOutputFormat }
const streamFormats: OutputFormat = { formats: streamOutputFormats, default: defaultOutputFormat }
/** Music's own default is `auto` (the API picks); the client sends a format only when given one. */
const musicFormats: OutputFormat = { formats: musicOutputFormats, default: "auto" }
const read = {
  body: "none",
  pool: { _tag: "None" },
  billing: { _tag: "None" },
  idempotent: true,
  client: true
} as const
/** The sources name no pool for these: the standard pool, the smallest of the speech pools (docs/api-facts.md §5.6). */
const standardPool = { _tag: "Fixed", pool: "standard" } as const
/** "1000 characters' worth of usage per minute" of input audio (voice changer), "1000 characters for every minute" (voice isolator). */
const perMinuteOfInput = { _tag: "AudioTime", of: "input", rate: { credits: 1000, perSeconds: 60 } } as const
const stsModel: ModelSource = { field: "model_id", default: Schemas.defaultStsModel }
const dialogueModel: ModelSource = { field: "model_id", default: Schemas.defaultDialogueModel }

/** `POST /v1/text-to-speech/{voice_id}`: the whole audio. */
export const textToSpeechConvert = row({
  name: "textToSpeech.convert",
  method: "POST",
  path: "/v1/text-to-speech/{voice_id}",
  body: "json",
  pool: { _tag: "FromModel", model: ttsModel },
  billing: byText,
  response: { _tag: "Audio" },
  idempotent: true,
  check: { _tag: "TextToSpeech", variant: "convert" },
  outputFormat: convertFormats,
  client: true
})

/** `POST /v1/text-to-speech/{voice_id}/with-timestamps`: audio (base64) and character alignment, as JSON. */
export const textToSpeechConvertWithTimestamps = row({
  name: "textToSpeech.convertWithTimestamps",
  method: "POST",
  path: "/v1/text-to-speech/{voice_id}/with-timestamps",
  body: "json",
  pool: { _tag: "FromModel", model: ttsModel },
  billing: byText,
  response: { _tag: "Json", schema: Schemas.AudioWithTimestamps },
  idempotent: true,
  check: { _tag: "TextToSpeech", variant: "convert" },
  outputFormat: convertFormats,
  client: true
})

/** `POST /v1/text-to-speech/{voice_id}/stream`: audio as it is made. */
export const textToSpeechStream = row({
  name: "textToSpeech.stream",
  method: "POST",
  path: "/v1/text-to-speech/{voice_id}/stream",
  body: "json",
  pool: { _tag: "FromModel", model: ttsModel },
  billing: byText,
  response: { _tag: "AudioStream" },
  idempotent: true,
  check: { _tag: "TextToSpeech", variant: "stream" },
  outputFormat: streamFormats,
  client: true
})

/** `POST /v1/text-to-speech/{voice_id}/stream/with-timestamps`: NDJSON chunks of audio and alignment. */
export const textToSpeechStreamWithTimestamps = row({
  name: "textToSpeech.streamWithTimestamps",
  method: "POST",
  path: "/v1/text-to-speech/{voice_id}/stream/with-timestamps",
  body: "json",
  pool: { _tag: "FromModel", model: ttsModel },
  billing: byText,
  response: { _tag: "Ndjson", schema: Schemas.TimestampChunk },
  idempotent: true,
  check: { _tag: "TextToSpeech", variant: "stream" },
  outputFormat: streamFormats,
  client: true
})

/** `POST /v1/speech-to-text` (multipart): a transcript, or a webhook acknowledgement. */
export const speechToTextConvert = row({
  name: "speechToText.convert",
  method: "POST",
  path: "/v1/speech-to-text",
  body: "multipart",
  pool: { _tag: "Fixed", pool: "stt", model: { field: "model_id", default: Schemas.defaultSttModel } },
  billing: { _tag: "AudioTime", of: "input" },
  response: { _tag: "Json", schema: Schemas.SpeechToTextResponse },
  idempotent: true,
  check: { _tag: "SpeechToText" },
  client: true
})

/** `POST /v1/music`: the whole composition. */
export const musicCompose = row({
  name: "music.compose",
  method: "POST",
  path: "/v1/music",
  body: "json",
  pool: { _tag: "Fixed", pool: "music", model: { field: "model_id", default: Schemas.defaultMusicModel } },
  billing: { _tag: "AudioTime", of: "output" },
  response: { _tag: "Audio" },
  idempotent: true,
  check: { _tag: "Music" },
  outputFormat: musicFormats,
  client: true
})

/** `POST /v1/music/stream`: the composition as it is made. Served by the simulator; not in the typed client. */
export const musicStream = row({
  name: "music.stream",
  method: "POST",
  path: "/v1/music/stream",
  body: "json",
  pool: { _tag: "Fixed", pool: "music", model: { field: "model_id", default: Schemas.defaultMusicModel } },
  billing: { _tag: "AudioTime", of: "output" },
  response: { _tag: "AudioStream" },
  idempotent: true,
  check: { _tag: "Music" },
  outputFormat: musicFormats,
  client: false
})

/** `POST /v1/speech-to-speech/{voice_id}` (multipart): the voice changer, the whole audio. */
export const speechToSpeechConvert = row({
  name: "speechToSpeech.convert",
  method: "POST",
  path: "/v1/speech-to-speech/{voice_id}",
  body: "multipart",
  pool: { ...standardPool, model: stsModel },
  billing: perMinuteOfInput,
  response: { _tag: "Audio" },
  idempotent: true,
  check: { _tag: "SpeechToSpeech", variant: "convert" },
  outputFormat: convertFormats,
  client: true
})

/** `POST /v1/speech-to-speech/{voice_id}/stream` (multipart): the converted audio as it is made. */
export const speechToSpeechStream = row({
  name: "speechToSpeech.stream",
  method: "POST",
  path: "/v1/speech-to-speech/{voice_id}/stream",
  body: "multipart",
  pool: { ...standardPool, model: stsModel },
  billing: perMinuteOfInput,
  response: { _tag: "AudioStream" },
  idempotent: true,
  check: { _tag: "SpeechToSpeech", variant: "stream" },
  outputFormat: streamFormats,
  client: true
})

/**
 * `POST /v1/sound-generation`: a sound effect from a text. 40 credits per second when the request sets
 * `duration_seconds`; the rate for a duration the API picks is not published (docs/api-facts.md §5.6).
 */
export const textToSoundEffectsConvert = row({
  name: "textToSoundEffects.convert",
  method: "POST",
  path: "/v1/sound-generation",
  body: "json",
  pool: { ...standardPool, model: { field: "model_id", default: Schemas.defaultSoundEffectsModel } },
  billing: { _tag: "AudioTime", of: "output", rate: { credits: 40, perSeconds: 1 } },
  response: { _tag: "Audio" },
  idempotent: true,
  check: { _tag: "SoundEffects" },
  outputFormat: streamFormats,
  client: true
})

/** `POST /v1/text-to-dialogue`: several voices from a script, the whole audio. */
export const textToDialogueConvert = row({
  name: "textToDialogue.convert",
  method: "POST",
  path: "/v1/text-to-dialogue",
  body: "json",
  pool: { _tag: "FromModel", model: dialogueModel },
  billing: { _tag: "Characters", field: "inputs[].text", multiplier: "model" },
  response: { _tag: "Audio" },
  idempotent: true,
  check: { _tag: "TextToDialogue", variant: "convert" },
  outputFormat: convertFormats,
  client: true
})

/** `POST /v1/text-to-dialogue/stream`: the dialogue as it is made. */
export const textToDialogueStream = row({
  name: "textToDialogue.stream",
  method: "POST",
  path: "/v1/text-to-dialogue/stream",
  body: "json",
  pool: { _tag: "FromModel", model: dialogueModel },
  billing: { _tag: "Characters", field: "inputs[].text", multiplier: "model" },
  response: { _tag: "AudioStream" },
  idempotent: true,
  check: { _tag: "TextToDialogue", variant: "stream" },
  outputFormat: streamFormats,
  client: true
})

/** `POST /v1/audio-isolation` (multipart): the speech of a recording without its background. No model, no format. */
export const audioIsolationConvert = row({
  name: "audioIsolation.convert",
  method: "POST",
  path: "/v1/audio-isolation",
  body: "multipart",
  pool: standardPool,
  billing: perMinuteOfInput,
  response: { _tag: "Audio" },
  idempotent: true,
  check: { _tag: "AudioIsolation" },
  client: true
})

/** `POST /v1/audio-isolation/stream` (multipart): the isolated speech as it is made. */
export const audioIsolationStream = row({
  name: "audioIsolation.stream",
  method: "POST",
  path: "/v1/audio-isolation/stream",
  body: "multipart",
  pool: standardPool,
  billing: perMinuteOfInput,
  response: { _tag: "AudioStream" },
  idempotent: true,
  check: { _tag: "AudioIsolation" },
  client: true
})

/** `GET /v1/user`. */
export const userGet = row({
  ...read,
  name: "user.get",
  method: "GET",
  path: "/v1/user",
  response: { _tag: "Json", schema: Schemas.User },
  check: { _tag: "None" }
})

/** `GET /v1/user/subscription`: the quota. */
export const userSubscription = row({
  ...read,
  name: "user.subscription",
  method: "GET",
  path: "/v1/user/subscription",
  response: { _tag: "Json", schema: Schemas.Subscription },
  check: { _tag: "None" }
})

/** `GET /v1/voices`. */
export const voicesList = row({
  ...read,
  name: "voices.list",
  method: "GET",
  path: "/v1/voices",
  response: { _tag: "Json", schema: Schemas.Voices },
  check: { _tag: "None" }
})

/** `GET /v1/voices/{voice_id}`. */
export const voicesGet = row({
  ...read,
  name: "voices.get",
  method: "GET",
  path: "/v1/voices/{voice_id}",
  response: { _tag: "Json", schema: Schemas.Voice },
  check: { _tag: "VoiceId" }
})

/** `GET /v2/voices`: one page of a search. */
export const voicesSearch = row({
  ...read,
  name: "voices.search",
  method: "GET",
  path: "/v2/voices",
  response: { _tag: "Json", schema: Schemas.VoicesPage },
  check: { _tag: "VoiceSearch" }
})

/** `GET /v1/models`: the models, with concurrency groups and credit multipliers. */
export const modelsList = row({
  ...read,
  name: "models.list",
  method: "GET",
  path: "/v1/models",
  response: { _tag: "Json", schema: Schemas.Models },
  check: { _tag: "None" }
})

/** Every row, in the order of the API reference. */
export const all = [
  textToSpeechConvert,
  textToSpeechConvertWithTimestamps,
  textToSpeechStream,
  textToSpeechStreamWithTimestamps,
  speechToTextConvert,
  musicCompose,
  musicStream,
  speechToSpeechConvert,
  speechToSpeechStream,
  textToSoundEffectsConvert,
  textToDialogueConvert,
  textToDialogueStream,
  audioIsolationConvert,
  audioIsolationStream,
  userGet,
  userSubscription,
  voicesList,
  voicesGet,
  voicesSearch,
  modelsList
] as const

/** A row of the table (the union of their exact types). */
export type Known = (typeof all)[number]

/** The operation names of the table. */
export type Name = Known["name"]

/** The operations of the typed client. */
export type ClientName = Extract<Known, { readonly client: true }>["name"]

/** The rows by operation name. */
export const byName: ReadonlyMap<string, Known> = new Map(all.map((e) => [e.name, e]))
