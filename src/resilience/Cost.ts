/**
 * What a TTS call costs in credits before it is sent: `ceil(characters x
 * multiplier)`, with the multiplier taken from `/v1/models` when known and
 * from the built-in table otherwise (0.5 for Flash and Turbo, 1 for the rest;
 * `docs/api-facts.md` §5.2).
 *
 * **Details**
 *
 * - {@link multipliersFromModels} turns a `/v1/models` answer into the
 *   overrides {@link estimate} and `QuotaGuard.setMultipliers` take.
 * - Only `model_rates.character_cost_multiplier` is used, not
 *   `cost_discount_multiplier`: the discount is not confirmed to apply to the
 *   API, and leaving it out can only over-estimate (the safe side). The
 *   server's `character-cost` header, committed after the call, is the truth.
 * - Characters are counted as everywhere in the library, by
 *   `Validation.characterCount` (Unicode code points, as the API's Python
 *   service counts them: docs/conventions.md).
 *
 * @example
 * ```ts
 * import { Cost } from "elevenlabs-resilience/resilience"
 *
 * Cost.estimate(1001, "eleven_flash_v2_5") // => 501
 * Cost.estimate(1000, "my_voice_model", { my_voice_model: 2 }) // => 2000
 * ```
 *
 * @since 0.1.0
 */
import { creditCost, creditMultiplierOf } from "../client/Models.ts"
import { characterCount } from "../client/Validation.ts"

/** Credit multipliers per model id, as read from `/v1/models`. */
export type Multipliers = Readonly<Record<string, number>>

/** The part of a `/v1/models` entry the cost rule reads (snake_case, as on the wire). */
export interface ModelRateInfo {
  readonly model_id: string
  readonly model_rates?:
    | { readonly character_cost_multiplier?: number | null | undefined }
    | null
    | undefined
}

/** Whether a multiplier can be used: finite and not negative. */
export const isValidMultiplier = (m: unknown): m is number => typeof m === "number" && Number.isFinite(m) && m >= 0

/**
 * The multipliers a `/v1/models` answer declares; entries without a valid
 * `character_cost_multiplier` are left out (the built-in table then applies).
 */
export const multipliersFromModels = (models: ReadonlyArray<ModelRateInfo>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const model of models) {
    const m = model.model_rates?.character_cost_multiplier
    if (isValidMultiplier(m)) out[model.model_id] = m
  }
  return out
}

/** The multiplier of a model: a valid override first, else the built-in table. */
export const multiplierOf = (modelId: string, overrides?: Multipliers | undefined): number => {
  const m = overrides?.[modelId]
  return isValidMultiplier(m) ? m : creditMultiplierOf(modelId)
}

/** The characters ElevenLabs bills for a text: `Validation.characterCount`, the library's one count. */
export const charactersOf: (text: string) => number = characterCount

/** The credits a call of `characters` characters on `modelId` costs: `ceil(characters x multiplier)`. */
export const estimate = (characters: number, modelId: string, overrides?: Multipliers | undefined): number =>
  creditCost(characters, multiplierOf(modelId, overrides))

/** The credits a text costs on a model. */
export const estimateText = (text: string, modelId: string, overrides?: Multipliers | undefined): number =>
  estimate(charactersOf(text), modelId, overrides)
