/**
 * The key of a TTS request for the fallback cache and for coalescing: canonical JSON of the fields that decide
 * the audio, hashed (SHA-256), in the API key's partition (a fingerprint, never the key). Re-exported by
 * `Fallback.ts`.
 *
 * @since 0.1.0
 */
import { Redacted } from "effect"
import { hash } from "node:crypto"
import { defaultTtsModel } from "../client/Models.ts"

// ----------------------------------------------------------------------------
// Request keys
// ----------------------------------------------------------------------------

/**
 * The request fields that decide the audio of a TTS call. Structural, so a
 * client request with `voiceId` added fits; unknown fields (and anything secret)
 * are ignored by {@link requestKey}.
 */
export interface SpeechKeyInput {
  readonly voiceId: string
  readonly text: string
  readonly modelId?: string | undefined
  readonly outputFormat?: string | undefined
  readonly voiceSettings?: object | undefined
  readonly languageCode?: string | undefined
  readonly seed?: number | undefined
  readonly pronunciationDictionaryLocators?: ReadonlyArray<object> | undefined
  readonly previousText?: string | undefined
  readonly nextText?: string | undefined
  readonly previousRequestIds?: ReadonlyArray<string> | undefined
  readonly nextRequestIds?: ReadonlyArray<string> | undefined
  readonly usePvcAsIvc?: boolean | undefined
  readonly applyTextNormalization?: string | undefined
  readonly applyLanguageTextNormalization?: boolean | undefined
  readonly optimizeStreamingLatency?: number | undefined
}

/** Options of {@link requestKey}. */
export interface RequestKeyOptions {
  /**
   * The operation whose result is keyed: a with-timestamps answer is not a
   * plain-audio answer. Default `"textToSpeech.convert"`.
   */
  readonly operation?: string | undefined
  /**
   * Keeps tenants apart: requests with different partitions never share a key
   * (no coalescing, no cache hit across them). Use a tenant id or
   * {@link partitionOfApiKey}; default none (one partition).
   */
  readonly partition?: string | undefined
}

/** The API's default output format, so an absent format and the explicit default share a key. */
export const defaultOutputFormat = "mp3_44100_128"

/** Key format version: bump when the canonical form changes, so old entries are simply missed. */
const keyVersion = 1

const audioFields = [
  "voiceSettings",
  "languageCode",
  "seed",
  "pronunciationDictionaryLocators",
  "previousText",
  "nextText",
  "previousRequestIds",
  "nextRequestIds",
  "usePvcAsIvc",
  "applyTextNormalization",
  "applyLanguageTextNormalization",
  "optimizeStreamingLatency"
] as const

/**
 * JSON with object keys sorted at every depth and `undefined` members dropped,
 * so equal requests give equal strings whatever their key order.
 */
export const canonicalJson = (value: unknown): string => JSON.stringify(canonicalize(value))

const canonicalize = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : canonicalize(v)))
  if (typeof value === "number") return Object.is(value, -0) ? 0 : value
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k]
      if (v !== undefined) out[k] = canonicalize(v)
    }
    return out
  }
  return value
}

// One-shot `hash` (Node >= 21.7): no Hash object per key.
export const sha256Hex = (input: string): string => hash("sha256", input, "hex")

/**
 * The content address of a TTS request: SHA-256 hex of the canonical JSON of
 * the fields that decide the audio. An absent `modelId` / `outputFormat` is
 * the API default, so it keys like the explicit default.
 *
 * @example
 * ```ts
 * requestKey({ voiceId: "v", text: "Hi" }) === requestKey({ text: "Hi", voiceId: "v", modelId: "eleven_multilingual_v2" }) // => true
 * ```
 */
export const requestKey = (request: SpeechKeyInput, options?: RequestKeyOptions | undefined): string => {
  const fields: Record<string, unknown> = {
    v: keyVersion,
    operation: options?.operation ?? "textToSpeech.convert",
    partition: options?.partition,
    voiceId: request.voiceId,
    modelId: request.modelId ?? defaultTtsModel,
    outputFormat: request.outputFormat ?? defaultOutputFormat,
    text: request.text
  }
  for (const f of audioFields) fields[f] = request[f]
  // The same string as `canonicalJson(fields)`, from one `JSON.stringify` of the fields inserted in sorted
  // order (it keeps insertion order): the top level is known, so only the nested values (voice settings,
  // locators) need sorting, and no string is built piece by piece (it runs on every call).
  const sorted: Record<string, unknown> = {}
  for (const name of keyFieldNames) {
    const value = fields[name]
    if (value !== undefined) sorted[name] = canonicalize(value)
  }
  return sha256Hex(JSON.stringify(sorted))
}

/** Every field of a request key, sorted as `canonicalJson` sorts them. */
const keyFieldNames: ReadonlyArray<string> = [
  "v",
  "operation",
  "partition",
  "voiceId",
  "modelId",
  "outputFormat",
  "text",
  ...audioFields
].sort()

/**
 * A partition label for an API key: the first 16 hex digits of its SHA-256,
 * so calls made with different keys never share a cache entry or a flight,
 * while the key itself stays out of every key, file and log.
 */
export const partitionOfApiKey = (apiKey: Redacted.Redacted<string>): string =>
  sha256Hex(`elevenlabs-resilience/partition:${Redacted.value(apiKey)}`).slice(0, 16)

export const isCacheKey = (key: string): boolean => /^[0-9a-f]{64}$/.test(key)
