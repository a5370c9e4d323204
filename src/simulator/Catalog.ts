/**
 * What the simulated account can use: premade voices and the model list, in
 * the shapes of `/v1/voices` and `/v1/models` (`docs/api-facts.md` §2.5, §2.6),
 * and the model ids the other endpoints accept.
 *
 * @since 0.1.0
 */
import { characterLimitOf, creditMultiplierOf } from "../client/Models.ts"

/** A voice the simulator knows. */
export interface SimVoice {
  readonly voice_id: string
  readonly name: string
  readonly gender: string
  readonly accent: string
  readonly description: string
}

/** Premade voices with their real ids. */
export const premadeVoices: ReadonlyArray<SimVoice> = [
  { voice_id: "21m00Tcm4TlvDq8ikWAM", name: "Rachel", gender: "female", accent: "american", description: "calm" },
  { voice_id: "29vD33N1CtxCmqQRPOHJ", name: "Drew", gender: "male", accent: "american", description: "well-rounded" },
  { voice_id: "2EiwWnXFnvU5JabPnv8n", name: "Clyde", gender: "male", accent: "american", description: "war veteran" },
  { voice_id: "AZnzlk1XvdvUeBnXmlld", name: "Domi", gender: "female", accent: "american", description: "strong" },
  { voice_id: "EXAVITQu4vr4xnSDxMaL", name: "Sarah", gender: "female", accent: "american", description: "soft" },
  { voice_id: "JBFqnCBsd6RMkjVDRZzb", name: "George", gender: "male", accent: "british", description: "warm" }
]

/** The premade voice of `voiceId`, if there is one. */
export const voiceOf = (voiceId: string): SimVoice | undefined => premadeVoices.find((v) => v.voice_id === voiceId)

/** A voice in the `VoiceResponseModel` shape. */
export const voiceJson = (v: SimVoice) => ({
  voice_id: v.voice_id,
  name: v.name,
  category: "premade",
  labels: { accent: v.accent, description: v.description, gender: v.gender, use_case: "narration" },
  description: null,
  preview_url: `https://storage.googleapis.com/eleven-public-prod/premade/voices/${v.voice_id}/preview.mp3`,
  available_for_tiers: [],
  settings: { stability: 0.5, similarity_boost: 0.75, style: 0, use_speaker_boost: true, speed: 1 },
  high_quality_base_model_ids: ["eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_turbo_v2_5"],
  samples: null,
  fine_tuning: null,
  sharing: null,
  verified_languages: [],
  is_owner: false,
  is_legacy: false,
  is_mixed: false,
  created_at_unix: null
})

/** TTS models the simulator serves, with display names. */
export const ttsModels: ReadonlyArray<{ readonly model_id: string; readonly name: string }> = [
  { model_id: "eleven_multilingual_v2", name: "Eleven Multilingual v2" },
  { model_id: "eleven_v3", name: "Eleven v3" },
  { model_id: "eleven_flash_v2_5", name: "Eleven Flash v2.5" },
  { model_id: "eleven_turbo_v2_5", name: "Eleven Turbo v2.5" },
  { model_id: "eleven_flash_v2", name: "Eleven Flash v2" },
  { model_id: "eleven_turbo_v2", name: "Eleven Turbo v2" },
  { model_id: "eleven_multilingual_v1", name: "Eleven Multilingual v1" },
  { model_id: "eleven_monolingual_v1", name: "Eleven English v1" }
]

/** Speech-to-text models (multipart `model_id`). */
export const sttModels: ReadonlyArray<string> = ["scribe_v1", "scribe_v2"]

/** Music models. */
export const musicModels: ReadonlyArray<string> = ["music_v1", "music_v2"]

/** Speech-to-speech (voice changer) models: the models page's two (`docs/api-facts.md` §2.9). */
export const stsModels: ReadonlyArray<string> = ["eleven_english_sts_v2", "eleven_multilingual_sts_v2"]

/** Sound-effects models: the OpenAPI document's `SFXModelId` enum (`docs/api-facts.md` §2.10). */
export const soundEffectsModels: ReadonlyArray<string> = ["eleven_text_to_sound_v2"]

/** A model in the `ModelResponseModel` shape. */
export const modelJson = (
  m: { readonly model_id: string; readonly name: string },
  limits?: Readonly<Record<string, number>>
) => {
  const limit = characterLimitOf(m.model_id, limits)
  const multiplier = creditMultiplierOf(m.model_id)
  return {
    model_id: m.model_id,
    name: m.name,
    can_be_finetuned: true,
    can_do_text_to_speech: true,
    can_do_voice_conversion: false,
    can_use_style: !m.model_id.includes("flash") && !m.model_id.includes("turbo"),
    can_use_speaker_boost: true,
    serves_pro_voices: false,
    token_cost_factor: multiplier,
    description: `${m.name} (simulated)`,
    requires_alpha_access: false,
    max_characters_request_free_user: Math.min(limit, 2500),
    max_characters_request_subscribed_user: limit,
    maximum_text_length_per_request: limit,
    languages: [
      { language_id: "en", name: "English" },
      { language_id: "de", name: "German" },
      { language_id: "fr", name: "French" }
    ],
    model_rates: { character_cost_multiplier: multiplier, cost_discount_multiplier: 1 },
    // The August 2025 OpenAPI enum (docs/api-facts.md §2.6): `standard | turbo` (Flash and Turbo share the turbo group).
    concurrency_group: multiplier < 1 ? "turbo" : "standard"
  }
}

/** Words a transcript is made of (the simulator cannot hear). */
export const transcriptWords: ReadonlyArray<string> = [
  "the",
  "quick",
  "voice",
  "reads",
  "a",
  "short",
  "story",
  "about",
  "resilient",
  "systems",
  "that",
  "keep",
  "working",
  "when",
  "the",
  "network",
  "is",
  "slow",
  "and",
  "every",
  "request",
  "counts"
]

/** One entry of a FastAPI 422 `detail` list, as `searchVoices` reports a bad query. */
export interface QueryProblem {
  readonly type: string
  readonly loc: ReadonlyArray<string>
  readonly msg: string
  readonly input: unknown
  readonly ctx?: Record<string, unknown>
}

/**
 * `GET /v2/voices` over the premade voices: the filters, sorting and paging of the real query
 * (`docs/api-facts.md` §2.5). Every premade voice is a `default` voice; a filter that only other voice kinds
 * can match (`voice_type=personal`, `high_quality=true`, `age`, `language`, a `collection_id`, a fine-tuning
 * state) matches nothing. The page token is the offset of the next page, opaque to callers.
 */
export const searchVoices = (query: URLSearchParams):
  | { readonly _tag: "Invalid"; readonly problems: ReadonlyArray<QueryProblem> }
  | { readonly _tag: "Page"; readonly body: Record<string, unknown> } =>
{
  const problems: Array<QueryProblem> = []
  const integer = (name: string, fallback: number, lo: number, hi: number): number => {
    const raw = query.get(name)
    if (raw === null) return fallback
    const n = /^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN
    if (!Number.isSafeInteger(n)) {
      problems.push({
        type: "int_parsing",
        loc: ["query", name],
        msg: "Input should be a valid integer, unable to parse string as an integer",
        input: raw
      })
    } else if (n < lo) {
      problems.push({
        type: "greater_than_equal",
        loc: ["query", name],
        msg: `Input should be greater than or equal to ${lo}`,
        input: raw,
        ctx: { ge: lo }
      })
    } else if (n > hi) {
      problems.push({
        type: "less_than_equal",
        loc: ["query", name],
        msg: `Input should be less than or equal to ${hi}`,
        input: raw,
        ctx: { le: hi }
      })
    }
    return n
  }
  const oneOf = (name: string, allowed: ReadonlyArray<string>): string | undefined => {
    const raw = query.get(name) ?? undefined
    if (raw !== undefined && !allowed.includes(raw)) {
      const expected = allowed.map((a) => `'${a}'`).join(", ")
      problems.push({
        type: "enum",
        loc: ["query", name],
        msg: `Input should be ${expected}`,
        input: raw,
        ctx: { expected }
      })
    }
    return raw
  }
  const flag = (name: string): boolean | undefined => {
    const raw = query.get(name)
    if (raw === null) return undefined
    const v = raw.toLowerCase()
    if (["true", "1", "yes", "on"].includes(v)) return true
    if (["false", "0", "no", "off"].includes(v)) return false
    problems.push({
      type: "bool_parsing",
      loc: ["query", name],
      msg: "Input should be a valid boolean, unable to interpret input",
      input: raw
    })
    return undefined
  }
  const list = (name: string): ReadonlyArray<string> => [...query.getAll(name), ...query.getAll(`${name}[]`)]

  const pageSize = integer("page_size", 10, 1, 100)
  const token = query.get("next_page_token")
  const offset = token === null || token === "" ? 0 : /^\d+$/.test(token) ? Number(token) : Number.NaN
  if (!Number.isSafeInteger(offset)) {
    problems.push({
      type: "value_error",
      loc: ["query", "next_page_token"],
      msg: "Value error, invalid page token",
      input: token
    })
  }
  const sort = oneOf("sort", ["created_at_unix", "name"])
  const direction = oneOf("sort_direction", ["asc", "desc"])
  const voiceType = oneOf("voice_type", [
    "personal",
    "community",
    "default",
    "workspace",
    "non-default",
    "non-community",
    "saved"
  ])
  const category = query.get("category") ?? undefined
  const highQuality = flag("high_quality")
  const includeTotal = flag("include_total_count") ?? true
  const voiceIds = list("voice_ids")
  if (voiceIds.length > 100) {
    problems.push({
      type: "too_long",
      loc: ["query", "voice_ids"],
      msg: "List should have at most 100 items after validation, not " + voiceIds.length,
      input: voiceIds,
      ctx: { max_length: 100 }
    })
  }
  if (problems.length > 0) return { _tag: "Invalid", problems }

  const search = query.get("search")?.trim().toLowerCase()
  const label = (name: string) => query.get(name)?.toLowerCase()
  const [gender, accent] = [label("gender"), label("accent")]
  const useCases = list("use_cases").map((u) => u.toLowerCase())
  // Filters on what a premade voice has no value for (age, language, collections, fine-tuning) match nothing.
  const impossible = ["age", "collection_id", "fine_tuning_state"].some((n) => query.get(n) !== null) ||
    list("language").length > 0 || highQuality === true ||
    (voiceType !== undefined && voiceType !== "default" && voiceType !== "non-community")
  const matches = (v: SimVoice) => {
    const json = voiceJson(v)
    const haystack = [v.name, v.description, json.category, ...Object.values(json.labels)].map((s) => s.toLowerCase())
    return (search === undefined || search === "" || haystack.some((s) => s.includes(search))) &&
      (category === undefined || category === json.category) &&
      (gender === undefined || gender === v.gender) &&
      (accent === undefined || accent === v.accent) &&
      (useCases.length === 0 || useCases.includes(json.labels.use_case)) &&
      (voiceIds.length === 0 || voiceIds.includes(v.voice_id))
  }
  const found = impossible ? [] : premadeVoices.filter(matches)
  // Premade voices have no creation time, so `created_at_unix` keeps the catalog order.
  const sorted = sort === "name" ? [...found].sort((a, b) => a.name.localeCompare(b.name)) : [...found]
  if (direction === "desc") sorted.reverse()
  const page = sorted.slice(offset, offset + pageSize)
  const next = offset + page.length
  const hasMore = next < sorted.length
  return {
    _tag: "Page",
    body: {
      voices: page.map(voiceJson),
      has_more: hasMore,
      total_count: includeTotal ? sorted.length : 0,
      next_page_token: hasMore ? String(next) : null
    }
  }
}
