/**
 * Plans and concurrency pools: how many requests an ElevenLabs API key may
 * have in flight, per pool, on each plan; and which pool a model draws from.
 *
 * **Details**
 *
 * - Concurrency is per API key and per pool: `standard` (Multilingual v2, v3
 *   and other non-Flash TTS), `flash` (Flash and Turbo), `stt` and `music`.
 * - {@link deploymentGuidePlans} is the default: the per-pool numbers of a
 *   community production-deployment guide, whose standard column is the
 *   rate-limits guide's one-number table (docs/design.md section 5); {@link modelsPagePlans} is the models page reading
 *   of August 2025, with higher STT numbers. Both are plain data: pass your
 *   own for Enterprise. {@link planTables} names them for configuration and
 *   the CLI (`deployment-guide`, `models-page`).
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

/** A plan table: the limits of every built-in plan. */
export type PlanTable = { readonly [P in PlanName]: PlanLimits }

/**
 * The default plan table (`deployment-guide`): the per-pool numbers of a
 * community production-deployment guide; its standard column is the
 * rate-limits guide's one-number table (docs/design.md section 5).
 */
export const deploymentGuidePlans: PlanTable = {
  free: { standard: 2, flash: 4, stt: 8, music: 0 },
  starter: { standard: 3, flash: 6, stt: 12, music: 2 },
  creator: { standard: 5, flash: 10, stt: 20, music: 2 },
  pro: { standard: 10, flash: 20, stt: 40, music: 2 },
  scale: { standard: 15, flash: 30, stt: 60, music: 3 },
  business: { standard: 15, flash: 30, stt: 60, music: 3 }
}

/** The models page reading of August 2025 (`models-page`, `docs/api-facts.md` §5.1): higher STT limits. */
export const modelsPagePlans: PlanTable = {
  free: { standard: 2, flash: 4, stt: 10, music: 0 },
  starter: { standard: 3, flash: 6, stt: 15, music: 2 },
  creator: { standard: 5, flash: 10, stt: 25, music: 2 },
  pro: { standard: 10, flash: 20, stt: 50, music: 2 },
  scale: { standard: 15, flash: 30, stt: 75, music: 3 },
  business: { standard: 15, flash: 30, stt: 75, music: 3 }
}

/** @deprecated Renamed {@link deploymentGuidePlans}. */
export const seedPlans: PlanTable = deploymentGuidePlans

/** @deprecated Renamed {@link modelsPagePlans}. */
export const docsPlans: PlanTable = modelsPagePlans

/** Names of the built-in plan tables (`--plan-table`, `concurrency.planTable`); the first is the default. */
export const planTableNames = ["deployment-guide", "models-page"] as const
export type PlanTableName = (typeof planTableNames)[number]

/** Earlier names of the plan tables, still accepted: `seeds` is `deployment-guide`, `docs` is `models-page`. */
export const deprecatedPlanTableNames = { seeds: "deployment-guide", docs: "models-page" } as const satisfies Record<
  string,
  PlanTableName
>
export type DeprecatedPlanTableName = keyof typeof deprecatedPlanTableNames

/** Whether a string is a deprecated plan table name (a key of {@link deprecatedPlanTableNames}). */
export const isDeprecatedPlanTableName = (s: string): s is DeprecatedPlanTableName =>
  Object.hasOwn(deprecatedPlanTableNames, s)

/** Every name a plan table answers to: the current ones, then the deprecated ones. */
export const acceptedPlanTableNames: ReadonlyArray<PlanTableName | DeprecatedPlanTableName> = [
  ...planTableNames,
  ...(Object.keys(deprecatedPlanTableNames) as Array<DeprecatedPlanTableName>)
]
export type AcceptedPlanTableName = PlanTableName | DeprecatedPlanTableName

/** The built-in plan tables by name. */
export const planTables: { readonly [N in PlanTableName]: PlanTable } = {
  "deployment-guide": deploymentGuidePlans,
  "models-page": modelsPagePlans
}

/** The current name of a plan table name, deprecated or not. */
export const canonicalPlanTableName = (name: AcceptedPlanTableName): PlanTableName =>
  isDeprecatedPlanTableName(name) ? deprecatedPlanTableNames[name] : name

/** The plan table a name (deprecated or not) stands for; `undefined` (the default table's name) gives the default. */
export const planTableOf = (name: AcceptedPlanTableName | undefined): PlanTable =>
  planTables[canonicalPlanTableName(name ?? planTableNames[0])]

/** Whether a string names a plan table (deprecated names included). */
export const isPlanTableName = (s: string): s is AcceptedPlanTableName =>
  (acceptedPlanTableNames as ReadonlyArray<string>).includes(s)

/** Whether a string names a built-in plan. */
export const isPlanName = (s: string): s is PlanName => (planNames as ReadonlyArray<string>).includes(s)

/** The limits of a plan, from the default table unless another table is given. */
export const limitsOf = (plan: PlanName, table: PlanTable = deploymentGuidePlans): PlanLimits => table[plan]

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
