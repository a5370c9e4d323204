/**
 * Schemas of every request and response of the typed ElevenLabs client.
 *
 * **Details**
 *
 * - Fields are camelCase in TypeScript and snake_case on the wire: every
 *   struct is built with {@link snakeStruct}, which renames each key with
 *   `Schema.encodeKeys` (decoding reads `model_id`, encoding writes it).
 * - Response schemas are lenient where the OpenAPI document is free-form or
 *   where the SDK types mark fields optional: unknown keys are ignored, most
 *   fields are optional and nullable, and free-form strings (tiers,
 *   categories, concurrency groups) are plain strings, so a new value from the
 *   server never turns a success into an `InvalidResponse`.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { convertOutputFormats, musicOutputFormats, streamOutputFormats } from "./Models.ts"

/** The wire name of a field: `modelId` -> `model_id`. */
export const toSnake = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

/**
 * A struct whose keys are camelCase when decoded and snake_case when encoded.
 *
 * @example
 * ```ts
 * const S = snakeStruct({ modelId: Schema.String })
 * Schema.decodeUnknownSync(S)({ model_id: "x" }) // => { modelId: "x" }
 * ```
 */
export const snakeStruct = <const F extends Schema.Struct.Fields>(
  fields: F
): Schema.Codec<Schema.Struct<F>["Type"], { readonly [k: string]: unknown }> => {
  const mapping: Record<string, string> = {}
  for (const key of Object.keys(fields)) mapping[key] = toSnake(key)
  return Schema.Struct(fields).pipe(Schema.encodeKeys(mapping as never)) as never
}

/** An optional field that may also be `null` on the wire. */
const opt = <S extends Schema.Top>(schema: S) => Schema.optional(Schema.NullOr(schema))

// ----------------------------------------------------------------------------
// Output formats
// ----------------------------------------------------------------------------

/** Output formats of TTS convert and convert-with-timestamps (28 values). */
export const ConvertOutputFormat = Schema.Literals(convertOutputFormats)
/** Output formats of the TTS stream endpoints (21 values, no WAV). */
export const StreamOutputFormat = Schema.Literals(streamOutputFormats)
/** Output formats of music compose. */
export const MusicOutputFormat = Schema.Literals(musicOutputFormats)

// ----------------------------------------------------------------------------
// Text to speech
// ----------------------------------------------------------------------------

/** `voice_settings` of a TTS request. Ranges: `elevenlabs-openapi` `TtsVoiceSettings`. */
export const VoiceSettings = snakeStruct({
  stability: Schema.optional(Schema.Number),
  similarityBoost: Schema.optional(Schema.Number),
  style: Schema.optional(Schema.Number),
  useSpeakerBoost: Schema.optional(Schema.Boolean),
  speed: Schema.optional(Schema.Number)
})
export type VoiceSettings = typeof VoiceSettings.Type

/** A pronunciation dictionary reference. */
export const PronunciationDictionaryLocator = snakeStruct({
  pronunciationDictionaryId: Schema.String,
  versionId: Schema.optional(Schema.String)
})

/** The JSON body shared by the four TTS endpoints. */
export const TextToSpeechBody = snakeStruct({
  text: Schema.String,
  modelId: Schema.optional(Schema.String),
  languageCode: Schema.optional(Schema.String),
  voiceSettings: Schema.optional(VoiceSettings),
  pronunciationDictionaryLocators: Schema.optional(Schema.Array(PronunciationDictionaryLocator)),
  seed: Schema.optional(Schema.Number),
  previousText: Schema.optional(Schema.String),
  nextText: Schema.optional(Schema.String),
  previousRequestIds: Schema.optional(Schema.Array(Schema.String)),
  nextRequestIds: Schema.optional(Schema.Array(Schema.String)),
  usePvcAsIvc: Schema.optional(Schema.Boolean),
  applyTextNormalization: Schema.optional(Schema.Literals(["auto", "on", "off"])),
  applyLanguageTextNormalization: Schema.optional(Schema.Boolean)
})
export type TextToSpeechBody = typeof TextToSpeechBody.Type

/** Query options shared by the TTS endpoints (the output format is typed per endpoint). */
export interface TextToSpeechQuery {
  /** `enable_logging`; `false` is zero-retention mode (Enterprise). */
  readonly enableLogging?: boolean | undefined
  /** `optimize_streaming_latency` 0-4 (deprecated by ElevenLabs). */
  readonly optimizeStreamingLatency?: number | undefined
}

/** A TTS convert request (convert and convert-with-timestamps accept WAV). */
export type TextToSpeechConvertRequest = TextToSpeechBody & TextToSpeechQuery & {
  readonly outputFormat?: (typeof ConvertOutputFormat.Type) | undefined
}

/** A TTS stream request (no WAV). */
export type TextToSpeechStreamRequest = TextToSpeechBody & TextToSpeechQuery & {
  readonly outputFormat?: (typeof StreamOutputFormat.Type) | undefined
}

/** Character timing of a with-timestamps answer. */
export const Alignment = snakeStruct({
  characters: Schema.Array(Schema.String),
  characterStartTimesSeconds: Schema.Array(Schema.Number),
  characterEndTimesSeconds: Schema.Array(Schema.Number)
})
export type Alignment = typeof Alignment.Type

/** `AudioWithTimestampsResponseModel`. */
export const AudioWithTimestamps = snakeStruct({
  audioBase64: Schema.String,
  alignment: opt(Alignment),
  normalizedAlignment: opt(Alignment)
})
export type AudioWithTimestamps = typeof AudioWithTimestamps.Type

/** One line of the stream-with-timestamps NDJSON answer. */
export const TimestampChunk = AudioWithTimestamps
export type TimestampChunk = AudioWithTimestamps

// ----------------------------------------------------------------------------
// Speech to text
// ----------------------------------------------------------------------------

/** An uploaded audio file: STT's `file`, the `audio` of speech to speech and audio isolation. */
export interface AudioFile {
  readonly data: Uint8Array
  readonly fileName?: string | undefined
  readonly contentType?: string | undefined
}

/** The audio file of an STT request. */
export type SpeechToTextFile = AudioFile

/** An upload as the client takes it: a file with its name and type, or bare bytes. */
export const audioFileOf = (file: AudioFile | Uint8Array): AudioFile =>
  file instanceof Uint8Array ? { data: file } : file

/** `file_format` of an upload: `pcm_s16le_16` (16-bit PCM, 16 kHz, mono, little-endian) or `other` (the default). */
export type UploadFileFormat = "pcm_s16le_16" | "other"

/** An STT request: exactly one of `file` and `sourceUrl`. */
export interface SpeechToTextRequest {
  readonly modelId?: string | undefined
  readonly file?: SpeechToTextFile | Uint8Array | undefined
  readonly sourceUrl?: string | undefined
  readonly cloudStorageUrl?: string | undefined
  readonly languageCode?: string | undefined
  readonly tagAudioEvents?: boolean | undefined
  readonly numSpeakers?: number | undefined
  readonly timestampsGranularity?: "none" | "word" | "character" | undefined
  readonly diarize?: boolean | undefined
  readonly diarizationThreshold?: number | undefined
  readonly fileFormat?: UploadFileFormat | undefined
  readonly webhook?: boolean | undefined
  readonly webhookId?: string | undefined
  readonly temperature?: number | undefined
  readonly seed?: number | undefined
  readonly useMultiChannel?: boolean | undefined
  readonly keyterms?: ReadonlyArray<string> | undefined
  /** `enable_logging` query parameter. */
  readonly enableLogging?: boolean | undefined
}

/** The default STT model. */
export const defaultSttModel = "scribe_v1"

/** One word (or spacing or audio event) of a transcript. */
export const TranscriptWord = snakeStruct({
  text: Schema.String,
  start: opt(Schema.Number),
  end: opt(Schema.Number),
  type: Schema.String,
  speakerId: opt(Schema.String),
  logprob: opt(Schema.Number)
})

/** `SpeechToTextChunkResponseModel`. */
export const TranscriptChunk = snakeStruct({
  languageCode: Schema.String,
  languageProbability: Schema.Number,
  text: Schema.String,
  words: Schema.Array(TranscriptWord),
  channelIndex: opt(Schema.Number),
  transcriptionId: opt(Schema.String),
  audioDurationSecs: opt(Schema.Number)
})
export type TranscriptChunk = typeof TranscriptChunk.Type

/** `MultichannelSpeechToTextResponseModel`. */
export const MultichannelTranscript = snakeStruct({
  transcripts: Schema.Array(TranscriptChunk),
  transcriptionId: opt(Schema.String),
  audioDurationSecs: opt(Schema.Number)
})
export type MultichannelTranscript = typeof MultichannelTranscript.Type

/** The acknowledgement of a webhook (asynchronous) STT request. */
export const WebhookAck = snakeStruct({
  message: Schema.String,
  requestId: Schema.String,
  transcriptionId: opt(Schema.String)
})
export type WebhookAck = typeof WebhookAck.Type

/** Any STT answer. Tell them apart with `"transcripts" in t` / `"requestId" in t`. */
export const SpeechToTextResponse = Schema.Union([TranscriptChunk, MultichannelTranscript, WebhookAck])
export type SpeechToTextResponse = typeof SpeechToTextResponse.Type

// ----------------------------------------------------------------------------
// User and subscription
// ----------------------------------------------------------------------------

const Overage = snakeStruct({ amount: Schema.String, currency: opt(Schema.String) })

/** `next_invoice` of a subscription. */
export const Invoice = snakeStruct({
  amountDueCents: Schema.Number,
  subtotalCents: opt(Schema.Number),
  taxCents: opt(Schema.Number),
  discountPercentOff: opt(Schema.Number),
  discountAmountOff: opt(Schema.Number),
  discounts: Schema.optional(Schema.Array(Schema.Unknown)),
  nextPaymentAttemptUnix: opt(Schema.Number),
  paymentIntentStatus: opt(Schema.String),
  paymentIntentStatusses: Schema.optional(Schema.Array(Schema.Unknown))
})

/** `pending_change`: a tier change or a cancellation. */
export const PendingChange = snakeStruct({
  kind: Schema.String,
  nextTier: opt(Schema.String),
  nextBillingPeriod: opt(Schema.String),
  timestampSeconds: opt(Schema.Number)
})

/** The subscription fields common to `/v1/user` and `/v1/user/subscription`. */
const subscriptionFields = {
  tier: Schema.String,
  characterCount: Schema.Number,
  characterLimit: Schema.Number,
  maxCharacterLimitExtension: opt(Schema.Number),
  maxCreditLimitExtension: opt(Schema.Union([Schema.Number, Schema.String])),
  canExtendCharacterLimit: opt(Schema.Boolean),
  allowedToExtendCharacterLimit: opt(Schema.Boolean),
  nextCharacterCountResetUnix: opt(Schema.Number),
  voiceSlotsUsed: opt(Schema.Number),
  professionalVoiceSlotsUsed: opt(Schema.Number),
  professionalVoiceSlotsUsedInWorkspace: opt(Schema.Number),
  voiceLimit: opt(Schema.Number),
  maxVoiceAddEdits: opt(Schema.Number),
  voiceAddEditCounter: opt(Schema.Number),
  professionalVoiceLimit: opt(Schema.Number),
  canExtendVoiceLimit: opt(Schema.Boolean),
  canUseInstantVoiceCloning: opt(Schema.Boolean),
  canUseProfessionalVoiceCloning: opt(Schema.Boolean),
  currency: opt(Schema.String),
  currentOverage: opt(Overage),
  status: opt(Schema.String),
  billingPeriod: opt(Schema.String),
  characterRefreshPeriod: opt(Schema.String),
  pendingChange: opt(PendingChange),
  hasUsedStarterCouponOnAccount: opt(Schema.Boolean),
  hasUsedCreatorCouponOnAccount: opt(Schema.Boolean),
  isEligibleForStarterPromo: opt(Schema.Boolean)
}

/** `ExtendedSubscriptionResponseModel` (`GET /v1/user/subscription`). */
export const Subscription = snakeStruct({
  ...subscriptionFields,
  nextInvoice: opt(Invoice),
  openInvoices: Schema.optional(Schema.Array(Schema.Unknown)),
  hasOpenInvoices: opt(Schema.Boolean)
})
export type Subscription = typeof Subscription.Type

/** `UserResponseModel` (`GET /v1/user`). */
export const User = snakeStruct({
  userId: Schema.String,
  subscription: snakeStruct(subscriptionFields),
  isNewUser: opt(Schema.Boolean),
  canUseDelayedPaymentMethods: opt(Schema.Boolean),
  isOnboardingCompleted: opt(Schema.Boolean),
  isOnboardingChecklistCompleted: opt(Schema.Boolean),
  createdAt: opt(Schema.Number),
  seatType: opt(Schema.String),
  showComplianceTerms: opt(Schema.Boolean),
  firstName: opt(Schema.String),
  isApiKeyHashed: opt(Schema.Boolean),
  xiApiKeyPreview: opt(Schema.String),
  referralLinkCode: opt(Schema.String),
  partnerstackPartnerDefaultLink: opt(Schema.String)
})
export type User = typeof User.Type

// ----------------------------------------------------------------------------
// Voices and models
// ----------------------------------------------------------------------------

/** `VoiceResponseModel` (the fields a client uses; the rest are ignored). */
export const Voice = snakeStruct({
  voiceId: Schema.String,
  name: opt(Schema.String),
  category: opt(Schema.String),
  labels: opt(Schema.Record(Schema.String, Schema.NullOr(Schema.String))),
  description: opt(Schema.String),
  previewUrl: opt(Schema.String),
  availableForTiers: Schema.optional(Schema.Array(Schema.String)),
  highQualityBaseModelIds: Schema.optional(Schema.Array(Schema.String)),
  settings: opt(VoiceSettings),
  isOwner: opt(Schema.Boolean),
  isLegacy: opt(Schema.Boolean),
  isMixed: opt(Schema.Boolean),
  createdAtUnix: opt(Schema.Number)
})
export type Voice = typeof Voice.Type

/** `GET /v1/voices`. */
export const Voices = snakeStruct({ voices: Schema.Array(Voice) })
export type Voices = typeof Voices.Type

/** The query of `GET /v2/voices` (`voices.search`); every field is optional, as in the API. */
export interface VoiceSearch {
  /** The `nextPageToken` of the previous page. */
  readonly nextPageToken?: string | undefined
  /** 1 to 100; the API's default is 10. */
  readonly pageSize?: number | undefined
  /** Matched against the name, description, labels and category. */
  readonly search?: string | undefined
  readonly sort?: "created_at_unix" | "name" | undefined
  readonly sortDirection?: "asc" | "desc" | undefined
  readonly voiceType?:
    | "personal"
    | "community"
    | "default"
    | "workspace"
    | "non-default"
    | "non-community"
    | "saved"
    | undefined
  readonly category?: "premade" | "cloned" | "generated" | "professional" | undefined
  readonly fineTuningState?: string | undefined
  readonly collectionId?: string | undefined
  readonly gender?: string | undefined
  readonly age?: string | undefined
  readonly accent?: string | undefined
  readonly language?: ReadonlyArray<string> | undefined
  readonly useCases?: ReadonlyArray<string> | undefined
  readonly minNoticePeriodDays?: number | undefined
  readonly includeCustomRates?: boolean | undefined
  readonly includeLiveModerated?: boolean | undefined
  readonly highQuality?: boolean | undefined
  /** The API's default is `true`; counting costs the server time, so pass `false` when paging. */
  readonly includeTotalCount?: boolean | undefined
  /** At most 100. */
  readonly voiceIds?: ReadonlyArray<string> | undefined
}

/** `GET /v2/voices`: one page of a search (`GetVoicesV2ResponseModel`). */
export const VoicesPage = snakeStruct({
  voices: Schema.Array(Voice),
  hasMore: Schema.Boolean,
  totalCount: opt(Schema.Number),
  /** `undefined` (the API sends `null`) on the last page. */
  nextPageToken: opt(Schema.String)
})
export type VoicesPage = typeof VoicesPage.Type

/** `model_rates` of a model. */
export const ModelRates = snakeStruct({
  characterCostMultiplier: Schema.Number,
  costDiscountMultiplier: opt(Schema.Number)
})

/** `ModelResponseModel`. Everything but `model_id` is optional, as in the SDK types. */
export const Model = snakeStruct({
  modelId: Schema.String,
  name: opt(Schema.String),
  description: opt(Schema.String),
  canBeFinetuned: opt(Schema.Boolean),
  canDoTextToSpeech: opt(Schema.Boolean),
  canDoVoiceConversion: opt(Schema.Boolean),
  canUseStyle: opt(Schema.Boolean),
  canUseSpeakerBoost: opt(Schema.Boolean),
  servesProVoices: opt(Schema.Boolean),
  requiresAlphaAccess: opt(Schema.Boolean),
  tokenCostFactor: opt(Schema.Number),
  maxCharactersRequestFreeUser: opt(Schema.Number),
  maxCharactersRequestSubscribedUser: opt(Schema.Number),
  maximumTextLengthPerRequest: opt(Schema.Number),
  languages: Schema.optional(Schema.Array(snakeStruct({ languageId: Schema.String, name: Schema.String }))),
  modelRates: opt(ModelRates),
  concurrencyGroup: opt(Schema.String)
})
export type Model = typeof Model.Type

/** `GET /v1/models`. */
export const Models = Schema.Array(Model)

// ----------------------------------------------------------------------------
// Music
// ----------------------------------------------------------------------------

/** The default music model (the API's, when a request names none). */
export const defaultMusicModel = "music_v1"

/** The JSON body of `POST /v1/music`. */
export const MusicBody = snakeStruct({
  prompt: Schema.optional(Schema.String),
  musicPrompt: Schema.optional(Schema.Unknown),
  compositionPlan: Schema.optional(Schema.Unknown),
  lyricsText: Schema.optional(Schema.String),
  musicLengthMs: Schema.optional(Schema.Number),
  modelId: Schema.optional(Schema.String),
  generationMode: Schema.optional(Schema.Literals(["track", "loop", "ambience", "video_to_music"])),
  seed: Schema.optional(Schema.Number),
  forceInstrumental: Schema.optional(Schema.Boolean),
  finetuneId: Schema.optional(Schema.String),
  finetuneStrength: Schema.optional(Schema.Number),
  respectSectionsDurations: Schema.optional(Schema.Boolean)
})
export type MusicBody = typeof MusicBody.Type

/** A music compose request. */
export type MusicComposeRequest = MusicBody & {
  readonly outputFormat?: (typeof MusicOutputFormat.Type) | undefined
}

// ----------------------------------------------------------------------------
// Speech to speech (voice changer), docs/api-facts.md §2.9
// ----------------------------------------------------------------------------

/** The default speech-to-speech model (the OpenAPI document's default for `model_id`). */
export const defaultStsModel = "eleven_english_sts_v2"

/** The multipart form and query of both speech-to-speech endpoints (`Body_Speech_to_Speech_*`). */
export interface SpeechToSpeechRequest {
  /** The speech whose content and delivery the voice takes over (required). */
  readonly audio: AudioFile | Uint8Array
  /** Default `eleven_english_sts_v2`; the model must have `can_do_voice_conversion`. */
  readonly modelId?: string | undefined
  /** Overrides the voice's stored settings for this request; sent as a JSON-encoded string, as the API asks. */
  readonly voiceSettings?: VoiceSettings | undefined
  /** 0 to 4294967295. */
  readonly seed?: number | undefined
  /** Runs the audio isolation model over the input first. Default false. */
  readonly removeBackgroundNoise?: boolean | undefined
  readonly fileFormat?: UploadFileFormat | undefined
  /** `enable_logging` query parameter; `false` is zero-retention mode (Enterprise). */
  readonly enableLogging?: boolean | undefined
  /** `optimize_streaming_latency` 0-4 (deprecated by ElevenLabs). */
  readonly optimizeStreamingLatency?: number | undefined
}

/** `POST /v1/speech-to-speech/{voice_id}`: the 28 convert formats. */
export type SpeechToSpeechConvertRequest = SpeechToSpeechRequest & {
  readonly outputFormat?: (typeof ConvertOutputFormat.Type) | undefined
}

/** `POST /v1/speech-to-speech/{voice_id}/stream`: the 21 stream formats (no WAV). */
export type SpeechToSpeechStreamRequest = SpeechToSpeechRequest & {
  readonly outputFormat?: (typeof StreamOutputFormat.Type) | undefined
}

// ----------------------------------------------------------------------------
// Sound effects, docs/api-facts.md §2.10
// ----------------------------------------------------------------------------

/** The default (and, in the OpenAPI document, only) sound-effects model, `SFXModelId`. */
export const defaultSoundEffectsModel = "eleven_text_to_sound_v2"

/** The JSON body of `POST /v1/sound-generation` (`Body_Sound_Generation_v1_sound_generation_post`). */
export const SoundEffectsBody = snakeStruct({
  text: Schema.String,
  /** A sound that loops smoothly (`eleven_text_to_sound_v2` only). Default false. */
  loop: Schema.optional(Schema.Boolean),
  /** 0.5 to 30 seconds; absent, the API picks a duration from the prompt. */
  durationSeconds: Schema.optional(Schema.Number),
  /** 0 to 1 (default 0.3): higher follows the prompt more closely. */
  promptInfluence: Schema.optional(Schema.Number),
  modelId: Schema.optional(Schema.String)
})
export type SoundEffectsBody = typeof SoundEffectsBody.Type

/** A sound-effects request: the body, and `output_format` (`AllowedOutputFormats`, the 21 stream formats). */
export type SoundEffectsRequest = SoundEffectsBody & {
  readonly outputFormat?: (typeof StreamOutputFormat.Type) | undefined
}

// ----------------------------------------------------------------------------
// Text to dialogue, docs/api-facts.md §2.11
// ----------------------------------------------------------------------------

/** The default dialogue model (the OpenAPI document's default for `model_id`). */
export const defaultDialogueModel = "eleven_v3"

/** One line of a dialogue: its text and the voice that speaks it (`DialogueInput`). */
export const DialogueInput = snakeStruct({ text: Schema.String, voiceId: Schema.String })
export type DialogueInput = typeof DialogueInput.Type

/** `settings` of a dialogue (`ModelSettingsResponseModel`): `stability` 0-1. */
export const DialogueSettings = snakeStruct({ stability: Schema.optional(Schema.Number) })
export type DialogueSettings = typeof DialogueSettings.Type

/** The JSON body shared by both text-to-dialogue endpoints. */
export const TextToDialogueBody = snakeStruct({
  /** At most 10 distinct voices; the document advises at most 2,000 characters in all for reliable generation. */
  inputs: Schema.Array(DialogueInput),
  modelId: Schema.optional(Schema.String),
  languageCode: Schema.optional(Schema.String),
  settings: Schema.optional(DialogueSettings),
  pronunciationDictionaryLocators: Schema.optional(Schema.Array(PronunciationDictionaryLocator)),
  seed: Schema.optional(Schema.Number),
  applyTextNormalization: Schema.optional(Schema.Literals(["auto", "on", "off"]))
})
export type TextToDialogueBody = typeof TextToDialogueBody.Type

/** `POST /v1/text-to-dialogue`: the 28 convert formats. */
export type TextToDialogueConvertRequest = TextToDialogueBody & {
  readonly outputFormat?: (typeof ConvertOutputFormat.Type) | undefined
  readonly enableLogging?: boolean | undefined
}

/** `POST /v1/text-to-dialogue/stream`: the 21 stream formats. */
export type TextToDialogueStreamRequest = TextToDialogueBody & {
  readonly outputFormat?: (typeof StreamOutputFormat.Type) | undefined
  readonly enableLogging?: boolean | undefined
}

// ----------------------------------------------------------------------------
// Audio isolation, docs/api-facts.md §2.12
// ----------------------------------------------------------------------------

/** `POST /v1/audio-isolation/stream` (multipart): the audio to clean up. No query, no model. */
export interface AudioIsolationStreamRequest {
  readonly audio: AudioFile | Uint8Array
  readonly fileFormat?: UploadFileFormat | undefined
}

/** `POST /v1/audio-isolation` (multipart): as the stream, plus an optional preview image for tracking. */
export interface AudioIsolationRequest extends AudioIsolationStreamRequest {
  readonly previewB64?: string | undefined
}
