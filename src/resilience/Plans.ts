/**
 * Plans and concurrency pools: how many requests an ElevenLabs API key may
 * have in flight, per pool, on each plan; and which pool a model draws from.
 *
 * **Details**
 *
 * - Concurrency is per API key and per pool: `standard` (Multilingual v2, v3
 *   and other non-Flash TTS), `flash` (Flash and Turbo), `stt` and `music`.
 * - {@link seedPlans} is the seeds' table (DESIGN.md section 5) and the
 *   default; {@link docsPlans} is the newer reading of the models page with
 *   higher STT numbers. Both are plain data: pass your own for Enterprise.
 * - The `maximum-concurrent-requests` response header, when present, is the
 *   truth for a pool; the adaptive limiter learns it, so an unknown plan works.
 * - A model's `concurrency_group` from `/v1/models` overrides the built-in
 *   mapping ({@link poolOfModel}).
 *
 * @since 0.1.0
 */

/** The concurrency pools of an ElevenLabs account. */
export const pools = ["standard", "flash", "stt", "music"] as const
export type Pool = (typeof pools)[number]

/** Plan names with built-in numbers. */
export const planNames = ["free", "starter", "creator", "pro", "scale", "business"] as const
export type PlanName = (typeof planNames)[number]

/** Concurrency limits of one plan, per pool. */
export type PlanLimits = { readonly [P in Pool]: number }

/** The seeds' plan table (DESIGN.md section 5). The default. */
export const seedPlans: { readonly [P in PlanName]: PlanLimits } = {
  free: { standard: 2, flash: 4, stt: 8, music: 0 },
  starter: { standard: 3, flash: 6, stt: 12, music: 2 },
  creator: { standard: 5, flash: 10, stt: 20, music: 2 },
  pro: { standard: 10, flash: 20, stt: 40, music: 2 },
  scale: { standard: 15, flash: 30, stt: 60, music: 3 },
  business: { standard: 15, flash: 30, stt: 60, music: 3 }
}

/** The models page reading of August 2025 (`elevenlabs-api.md` 5.1): higher STT limits. */
export const docsPlans: { readonly [P in PlanName]: PlanLimits } = {
  free: { standard: 2, flash: 4, stt: 10, music: 0 },
  starter: { standard: 3, flash: 6, stt: 15, music: 2 },
  creator: { standard: 5, flash: 10, stt: 25, music: 2 },
  pro: { standard: 10, flash: 20, stt: 50, music: 2 },
  scale: { standard: 15, flash: 30, stt: 75, music: 3 },
  business: { standard: 15, flash: 30, stt: 75, music: 3 }
}

/** Whether a string names a built-in plan. */
export const isPlanName = (s: string): s is PlanName => (planNames as ReadonlyArray<string>).includes(s)

/** The limits of a plan, from the seeds' table unless another table is given. */
export const limitsOf = (plan: PlanName, table: { readonly [P in PlanName]: PlanLimits } = seedPlans): PlanLimits =>
  table[plan]

/**
 * The pool a model draws from.
 *
 * A `concurrency_group` from `/v1/models` wins when given: values containing
 * `turbo` or `flash` map to `flash`, `stt`/`scribe` to `stt`, `music` to
 * `music`, anything else to `standard`. Without it, the model id decides:
 * Flash and Turbo models are `flash`, `scribe_*` is `stt`, `music_*` is
 * `music`, everything else `standard`.
 */
export const poolOfModel = (modelId: string, concurrencyGroup?: string | undefined): Pool => {
  const key = (concurrencyGroup ?? modelId).toLowerCase()
  if (key.includes("flash") || key.includes("turbo")) return "flash"
  if (key.includes("scribe") || key.includes("stt") || key.includes("speech_to_text")) return "stt"
  if (key.includes("music")) return "music"
  return "standard"
}
