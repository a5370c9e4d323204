/**
 * The simulator's accounts: one per API key, each with a plan, a pool per
 * concurrency group and a credit quota that resets once a period.
 *
 * **Details**
 *
 * - A request names its account by `xi-api-key` ({@link Accounts.authenticate}):
 *   none is `401 needs_authorization`, an unknown one `401 invalid_api_key`
 *   (or a fresh account on the default plan with `acceptAnyKey`).
 * - Credits are reserved when a request is admitted and become usage with a
 *   success's headers ({@link Reservation}); a failure, a reset or an
 *   interruption drops them. The quota counts reservations, so concurrent
 *   requests cannot overspend it (`401 quota_exceeded`).
 * - A period rolls when the clock passes `nextResetUnix`: usage goes back to 0
 *   (read lazily, whenever an account is looked at).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { type PlanLimits, type PlanName, planNames, type Pool, pools } from "../resilience/Plans.ts"
import type { Answers, Pending } from "./Answers.ts"
import type { IncomingRequest } from "./Checks.ts"
import type * as Counts from "./Counts.ts"
import type { Pools, PoolState } from "./Pools.ts"

/** One simulated API key and its account. */
export interface AccountOptions {
  /** The `xi-api-key` value. */
  readonly key: string
  /** The name used in stats and control routes (the key itself never appears). Default `key1`, `key2`, ... */
  readonly name?: string | undefined
  /** Plan; default the simulator's `plan`. */
  readonly plan?: PlanName | undefined
  /** Per-pool limit overrides. */
  readonly limits?: Partial<PlanLimits> | undefined
  /** Credits per period; default by plan ({@link creditsOfPlan}). */
  readonly characterLimit?: number | undefined
  /** Credits already used at start. Default 0. */
  readonly characterCount?: number | undefined
  /** Unix seconds of the next reset; default one period after the start. */
  readonly nextResetUnix?: number | undefined
}

/** Monthly credits per plan (the older, widely cited figures; `docs/api-facts.md` §5.4). */
export const creditsOfPlan: { readonly [P in PlanName]: number } = {
  free: 10_000,
  starter: 30_000,
  creator: 100_000,
  pro: 500_000,
  scale: 2_000_000,
  business: 11_000_000
}

/** One account (mutable: requests and control change it). */
export interface Account {
  readonly name: string
  readonly key: string
  plan: PlanName
  characterLimit: number
  characterCount: number
  /** Credits of admitted requests not yet answered. */
  reserved: number
  nextResetUnix: number
  readonly pools: Record<Pool, PoolState>
}

/** Whether `plan` is `needed` or above. */
export const planAtLeast = (plan: PlanName, needed: PlanName): boolean =>
  planNames.indexOf(plan) >= planNames.indexOf(needed)

/** The credits an admitted request holds until its answer: charged once, or dropped once, never both. */
export interface Reservation {
  /** The reservation becomes usage (a success's headers, even when its body is later cut). */
  readonly charge: Effect.Effect<void>
  /** The reservation is given back (faults, interruption). */
  readonly drop: Effect.Effect<void>
}

/** A change to an account's credits (`remaining` past the limit raises the limit). */
export interface CreditsPatch {
  readonly remaining?: number | undefined
  readonly used?: number | undefined
  readonly limit?: number | undefined
  readonly nextResetUnix?: number | undefined
}

/** The accounts of one model. */
export interface Accounts {
  /** Every account, in the order they were added. */
  readonly all: ReadonlyArray<Account>
  /** The account of a request's key, or its `401`. */
  readonly authenticate: (request: IncomingRequest) => Account | Pending
  /** Starts a new period when the clock has passed the reset time. */
  readonly rollPeriod: (account: Account, nowMs: number) => void
  /** The `401 quota_exceeded` for a request of `cost` credits, else `undefined` (the period rolled first). */
  readonly quotaRefusal: (account: Account, cost: number, nowMs: number) => Pending | undefined
  /** Reserves `cost` credits of an admitted request. */
  readonly reserve: (account: Account, cost: number) => Reservation
  /** Moves an account to `plan`, with the plan's limits. */
  readonly setPlan: (account: Account, plan: PlanName) => void
  readonly setCredits: (account: Account, credits: CreditsPatch, nowMs: number) => void
}

/** The accounts of a model, from its options. */
export const make = (options: {
  readonly specs: ReadonlyArray<string | AccountOptions>
  readonly table: { readonly [P in PlanName]: PlanLimits }
  readonly defaultPlan: PlanName
  readonly acceptAnyKey: boolean
  readonly periodSeconds: number
  readonly startUnix: number
  readonly pools: Pools
  readonly answers: Answers
  readonly counts: Counts.Counts
}): Accounts => {
  const { answers, counts, periodSeconds, table } = options
  const all: Array<Account> = []
  const byKey = new Map<string, Account>()

  const add = (spec: AccountOptions): Account => {
    const plan = spec.plan ?? options.defaultPlan
    const limits = { ...table[plan], ...spec.limits }
    const account: Account = {
      name: spec.name ?? `key${all.length + 1}`,
      key: spec.key,
      plan,
      characterLimit: spec.characterLimit ?? creditsOfPlan[plan],
      characterCount: spec.characterCount ?? 0,
      reserved: 0,
      nextResetUnix: spec.nextResetUnix ?? options.startUnix + periodSeconds,
      pools: {
        standard: options.pools.open(limits.standard),
        flash: options.pools.open(limits.flash),
        stt: options.pools.open(limits.stt),
        music: options.pools.open(limits.music)
      }
    }
    all.push(account)
    byKey.set(account.key, account)
    return account
  }
  for (const spec of options.specs) add(typeof spec === "string" ? { key: spec } : spec)

  const rollPeriod = (account: Account, nowMs: number) => {
    const nowUnix = Math.floor(nowMs / 1000)
    if (nowUnix >= account.nextResetUnix) {
      account.characterCount = 0
      while (account.nextResetUnix <= nowUnix) account.nextResetUnix += periodSeconds
    }
  }

  return {
    all,
    authenticate: (request) => {
      const key = request.headers.get("xi-api-key")
      if (key === null || key === "") {
        return answers.detail(
          401,
          "needs_authorization",
          "Neither authorization header nor xi-api-key received, please provide one."
        )
      }
      const account = byKey.get(key)
      if (account !== undefined) return account
      if (options.acceptAnyKey) return add({ key })
      return answers.detail(401, "invalid_api_key", "Invalid API key")
    },
    rollPeriod,
    quotaRefusal: (account, cost, nowMs) => {
      rollPeriod(account, nowMs)
      const remaining = account.characterLimit - account.characterCount - account.reserved
      if (cost <= remaining) return undefined
      return answers.detail(
        401,
        "quota_exceeded",
        `This request exceeds your quota of ${account.characterLimit}. You have ${
          Math.max(0, remaining)
        } credits remaining, while ${cost} credits are required for this request.`
      )
    },
    reserve: (account, cost) => {
      account.reserved += cost
      let open = true
      const close = (charged: boolean) =>
        Effect.sync(() => {
          if (!open) return
          open = false
          account.reserved -= cost
          if (!charged) return
          account.characterCount += cost
          counts.creditsCharged += cost
        })
      return { charge: close(true), drop: close(false) }
    },
    setPlan: (account, plan) => {
      account.plan = plan
      for (const p of pools) account.pools[p].limit = table[plan][p]
    },
    setCredits: (account, credits, nowMs) => {
      rollPeriod(account, nowMs)
      if (credits.limit !== undefined) account.characterLimit = Math.floor(credits.limit)
      if (credits.used !== undefined) account.characterCount = Math.floor(credits.used)
      if (credits.remaining !== undefined) {
        account.characterCount = Math.max(0, account.characterLimit - Math.floor(credits.remaining))
        if (credits.remaining > account.characterLimit) account.characterLimit = Math.floor(credits.remaining)
      }
      if (credits.nextResetUnix !== undefined) account.nextResetUnix = Math.floor(credits.nextResetUnix)
    }
  }
}

/** The account as `GET /v1/user/subscription` shows it. */
export const subscriptionJson = (account: Account) => ({
  tier: account.plan,
  character_count: account.characterCount,
  character_limit: account.characterLimit,
  max_character_limit_extension: null,
  can_extend_character_limit: account.plan !== "free",
  allowed_to_extend_character_limit: account.plan !== "free",
  next_character_count_reset_unix: account.nextResetUnix,
  voice_slots_used: 0,
  professional_voice_slots_used: 0,
  voice_limit: account.plan === "free" ? 3 : 30,
  max_voice_add_edits: 95,
  voice_add_edit_counter: 0,
  professional_voice_limit: planAtLeast(account.plan, "creator") ? 1 : 0,
  can_extend_voice_limit: false,
  can_use_instant_voice_cloning: account.plan !== "free",
  can_use_professional_voice_cloning: planAtLeast(account.plan, "creator"),
  currency: "usd",
  status: account.plan === "free" ? "free" : "active",
  billing_period: "monthly_period",
  character_refresh_period: "monthly_period",
  max_credit_limit_extension: 0,
  current_overage: { amount: "0", currency: "usd" },
  open_invoices: [],
  has_open_invoices: false,
  next_invoice: null,
  pending_change: null,
  professional_voice_slots_used_in_workspace: 0,
  has_used_starter_coupon_on_account: false,
  has_used_creator_coupon_on_account: false
})
