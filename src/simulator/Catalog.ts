/**
 * What the simulated account can use: premade voices and the model list, in
 * the shapes of `/v1/voices` and `/v1/models` (`elevenlabs-api.md` 2.5, 2.6).
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

/** A model in the `ModelResponseModel` shape. */
export const modelJson = (m: { readonly model_id: string; readonly name: string }, limits?: Readonly<Record<string, number>>) => {
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
    // OAS25's enum: `standard | turbo` (Flash and Turbo share the turbo group).
    concurrency_group: multiplier < 1 ? "turbo" : "standard"
  }
}

/** Words a transcript is made of (the simulator cannot hear). */
export const transcriptWords: ReadonlyArray<string> = [
  "the", "quick", "voice", "reads", "a", "short", "story", "about", "resilient", "systems", "that", "keep",
  "working", "when", "the", "network", "is", "slow", "and", "every", "request", "counts"
]
