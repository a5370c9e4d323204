/**
 * What the client knows about ElevenLabs models without asking: per-request
 * character limits, credit multipliers, and the output formats each endpoint
 * accepts. The numbers come from `docs/api-facts.md` (sections 2.7, 5.2, 5.3)
 * and are defaults: `/v1/models` (`model_rates.character_cost_multiplier`) and
 * user configuration override them.
 *
 * @since 0.1.0
 */

/** The default TTS model when a request names none (the API's own default). */
export const defaultTtsModel = "eleven_multilingual_v2"

/**
 * The text-to-speech model ids this library knows (`docs/api-facts.md` §2.6, §5.3):
 * what the simulator serves, and what the CLI accepts for a run against it.
 * The real API may add models; a client asks `/v1/models` for the truth.
 */
export const ttsModelIds = [
  "eleven_multilingual_v2",
  "eleven_v3",
  "eleven_flash_v2_5",
  "eleven_turbo_v2_5",
  "eleven_flash_v2",
  "eleven_turbo_v2",
  "eleven_multilingual_v1",
  "eleven_monolingual_v1"
] as const
export type TtsModelId = (typeof ttsModelIds)[number]

/** Whether a model id is one of {@link ttsModelIds}. */
export const isTtsModel = (modelId: string): modelId is TtsModelId =>
  (ttsModelIds as ReadonlyArray<string>).includes(modelId)

/** Per-request character limits of TTS models (`docs/api-facts.md` §5.3). */
export const characterLimits: Readonly<Record<string, number>> = {
  eleven_v3: 3_000,
  eleven_flash_v2_5: 40_000,
  eleven_turbo_v2_5: 40_000,
  eleven_flash_v2: 30_000,
  eleven_turbo_v2: 30_000,
  eleven_multilingual_v2: 10_000,
  eleven_multilingual_v1: 10_000,
  eleven_monolingual_v1: 10_000,
  eleven_english_sts_v1: 10_000,
  eleven_english_sts_v2: 10_000
}

/** The limit used for a model the table does not know. */
export const fallbackCharacterLimit = 10_000

/** The per-request character limit of a model, with optional overrides. */
export const characterLimitOf = (modelId: string, overrides?: Readonly<Record<string, number>> | undefined): number =>
  overrides?.[modelId] ?? characterLimits[modelId] ?? fallbackCharacterLimit

/**
 * Credits per character: 0.5 for Flash and Turbo, 1 for the others
 * (`docs/api-facts.md` §5.2).
 */
export const creditMultiplierOf = (modelId: string): number =>
  modelId.includes("flash") || modelId.includes("turbo") ? 0.5 : 1

/** The credits a TTS request costs: `ceil(characters x multiplier)`. */
export const creditCost = (characters: number, multiplier: number): number => Math.ceil(characters * multiplier)

/**
 * A published price of audio: `credits` per `perSeconds` seconds (1000 per 60 s for speech to speech and
 * audio isolation, 40 per second for sound effects of a set duration; `docs/api-facts.md` §5.6).
 */
export interface AudioRate {
  readonly credits: number
  readonly perSeconds: number
}

/**
 * The credits `seconds` of audio cost at a rate, rounded up to a whole credit as characters are (the
 * rounding is unconfirmed for both). Rounded to a millionth first, so that float noise (`0.3 x 40` is
 * `12.000000000000002` in some orders) does not add a credit.
 */
export const audioCreditCost = (seconds: number, rate: AudioRate): number =>
  Math.ceil(Math.round((seconds * rate.credits * 1e6) / rate.perSeconds) / 1e6)

/** Output formats of the stream endpoints (21 values). */
export const streamOutputFormats = [
  "mp3_22050_32",
  "mp3_24000_48",
  "mp3_44100_32",
  "mp3_44100_64",
  "mp3_44100_96",
  "mp3_44100_128",
  "mp3_44100_192",
  "pcm_8000",
  "pcm_16000",
  "pcm_22050",
  "pcm_24000",
  "pcm_32000",
  "pcm_44100",
  "pcm_48000",
  "ulaw_8000",
  "alaw_8000",
  "opus_48000_32",
  "opus_48000_64",
  "opus_48000_96",
  "opus_48000_128",
  "opus_48000_192"
] as const
export type StreamOutputFormat = (typeof streamOutputFormats)[number]

/** Output formats of convert and convert-with-timestamps: the stream ones plus WAV (28 values). */
export const convertOutputFormats = [
  ...streamOutputFormats,
  "wav_8000",
  "wav_16000",
  "wav_22050",
  "wav_24000",
  "wav_32000",
  "wav_44100",
  "wav_48000"
] as const
export type ConvertOutputFormat = (typeof convertOutputFormats)[number]

/** Output formats of music compose: `auto`, four high-bitrate MP3s, and the stream ones. */
export const musicOutputFormats = [
  "auto",
  "mp3_48000_128",
  "mp3_48000_192",
  "mp3_48000_240",
  "mp3_48000_320",
  ...streamOutputFormats
] as const
export type MusicOutputFormat = (typeof musicOutputFormats)[number]

/** The default output format of TTS. */
export const defaultOutputFormat: StreamOutputFormat = "mp3_44100_128"

/**
 * The lowest plan allowed to request a format, where one is gated
 * (`docs/api-facts.md` §2.7): `mp3_44100_192` needs Creator, PCM/WAV at 44.1 kHz need Pro.
 */
export const minimumPlanForFormat = (format: string): "creator" | "pro" | undefined => {
  if (format === "mp3_44100_192") return "creator"
  if (format === "pcm_44100" || format === "wav_44100") return "pro"
  return undefined
}

/**
 * Seconds of audio in `bytes` of an output format, estimated from the format's
 * bit rate (mp3, opus) or sample rate (pcm, wav, ulaw, alaw, 16-bit mono for
 * pcm/wav). `undefined` for formats without a fixed rate (`auto`).
 */
export const audioSecondsOf = (format: string, bytes: number): number | undefined => {
  const [codec, rate, kbps] = format.split("_")
  const sampleRate = Number(rate)
  switch (codec) {
    case "mp3":
    case "opus": {
      const bitrate = Number(kbps) * 1000
      return bitrate > 0 ? (bytes * 8) / bitrate : undefined
    }
    case "pcm":
      return sampleRate > 0 ? bytes / (2 * sampleRate) : undefined
    case "wav":
      return sampleRate > 0 ? Math.max(0, bytes - 44) / (2 * sampleRate) : undefined
    case "ulaw":
    case "alaw":
      return sampleRate > 0 ? bytes / sampleRate : undefined
    default:
      return undefined
  }
}
