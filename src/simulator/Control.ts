/**
 * The simulator's control: changes to a running model ({@link ConfigPatch}),
 * its record ({@link Stats}), and the routes both faces serve for them,
 * `GET /_simulator/stats`, `POST /_simulator/reset` and `POST /_simulator/config`.
 *
 * **Details**
 *
 * - A patch names one account, or changes all; model-wide settings (faults,
 *   queue, `Retry-After`, system capacity) ignore the name.
 * - A limit raised by a patch hands free slots to waiters at once.
 * - Control requests are not counted in the record.
 * - The real-time sockets have their own part of the record (`realtime`) and
 *   of a patch (`realtime`: fault rates, the stall length, one-shot faults).
 *
 * @since 0.1.0
 */
import { Clock, Effect, Schema, Stream } from "effect"
import { planNames, type Pool, pools } from "../resilience/Plans.ts"
import type { Account, Accounts } from "./Accounts.ts"
import type { Answers, Outcome } from "./Answers.ts"
import { type IncomingRequest, readJson } from "./Checks.ts"
import * as Counts from "./Counts.ts"
import { faultMix, type Faults } from "./Faults.ts"
import * as Pools from "./Pools.ts"
import type * as Realtime from "./Realtime.ts"
import { realtimeFaults } from "./RealtimeFaults.ts"

/** The record of the run, as `GET /_simulator/stats` serves it. */
export interface Stats {
  readonly now: number
  readonly requests: number
  readonly byStatus: Readonly<Record<string, number>>
  readonly byDetailStatus: Readonly<Record<string, number>>
  readonly faults: Readonly<Record<string, number>>
  readonly creditsCharged: number
  /** Per pool, over all keys: `maxInFlight` and `limit` are the largest of any one key. */
  readonly pools: Readonly<Record<Pool, Omit<Pools.PoolStats, "samples">>>
  readonly accounts: Readonly<
    Record<
      string,
      {
        readonly plan: string
        readonly characterCount: number
        readonly characterLimit: number
        readonly nextCharacterCountResetUnix: number
        readonly pools: Readonly<Record<Pool, Pools.PoolStats>>
      }
    >
  >
  /**
   * The real-time WebSocket endpoints (their generations' slots are also counted in `pools`). Always in the
   * model's record; optional for records built from a client's view (`LoadTest.clientStats`).
   */
  readonly realtime?: Realtime.Stats | undefined
}

const Probability = Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 }))
const NonNegative = Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))

/** A change to a running simulator (the body of `POST /_simulator/config`). */
export const ConfigPatch = Schema.Struct({
  /** The account to change (its name); all accounts when absent. */
  account: Schema.optionalKey(Schema.String),
  plan: Schema.optionalKey(Schema.Literals(planNames)),
  limits: Schema.optionalKey(Schema.Struct({
    standard: Schema.optionalKey(NonNegative),
    flash: Schema.optionalKey(NonNegative),
    stt: Schema.optionalKey(NonNegative),
    music: Schema.optionalKey(NonNegative)
  })),
  faults: Schema.optionalKey(Schema.Struct({
    systemBusy: Schema.optionalKey(Probability),
    serverError: Schema.optionalKey(Probability),
    internalServerError: Schema.optionalKey(Probability),
    serviceUnavailable: Schema.optionalKey(Probability),
    connectionReset: Schema.optionalKey(Probability),
    hang: Schema.optionalKey(Probability),
    streamCut: Schema.optionalKey(Probability)
  })),
  failureRate: Schema.optionalKey(Probability),
  queue: Schema.optionalKey(Schema.Struct({
    depth: Schema.optionalKey(NonNegative),
    maxWaitMs: Schema.optionalKey(NonNegative)
  })),
  retryAfterSeconds: Schema.optionalKey(Schema.NullOr(NonNegative)),
  systemCapacity: Schema.optionalKey(Schema.NullOr(NonNegative)),
  credits: Schema.optionalKey(Schema.Struct({
    remaining: Schema.optionalKey(NonNegative),
    used: Schema.optionalKey(NonNegative),
    limit: Schema.optionalKey(NonNegative),
    nextResetUnix: Schema.optionalKey(NonNegative)
  })),
  /** The real-time sockets: fault rates per generation, the stall length, one-shot faults. */
  realtime: Schema.optionalKey(Schema.Struct({
    faults: Schema.optionalKey(Schema.Struct({
      drop: Schema.optionalKey(Probability),
      close1011: Schema.optionalKey(Probability),
      stall: Schema.optionalKey(Probability)
    })),
    stallMs: Schema.optionalKey(NonNegative),
    next: Schema.optionalKey(Schema.Array(Schema.Literals(realtimeFaults)))
  }))
})
export type ConfigPatch = typeof ConfigPatch.Type

/** A control request the simulator cannot apply. */
export class SimulatorConfigError extends Schema.TaggedError<SimulatorConfigError>()("SimulatorConfigError", {
  message: Schema.String
}) {}

/** The control of one model. */
export interface Control {
  readonly configure: (patch: ConfigPatch) => Effect.Effect<void, SimulatorConfigError>
  readonly stats: Effect.Effect<Stats>
  /** Clears the record (counts, maxima, samples); in-flight requests stay. */
  readonly resetStats: Effect.Effect<void>
  /** Answers a request to `/_simulator/*`. */
  readonly route: (request: IncomingRequest, path: string) => Effect.Effect<Outcome>
}

const encoder = new TextEncoder()

/** A control answer: plain JSON, with none of the API's headers (it is not the API speaking). */
const plain = (status: number, body: unknown): Outcome => {
  const bytes = encoder.encode(JSON.stringify(body))
  return {
    _tag: "Respond",
    status,
    headers: { "content-type": "application/json", "content-length": String(bytes.length) },
    body: Stream.succeed(bytes)
  }
}

/** The control of a model. */
export const make = (model: {
  readonly accounts: Accounts
  readonly pools: Pools.Pools
  readonly faults: Faults
  readonly answers: Answers
  readonly counts: Counts.Counts
  readonly realtime: Realtime.Engine
}): Control => {
  const { accounts, answers, counts, faults, realtime } = model

  const findAccounts = (name: string | undefined): Effect.Effect<ReadonlyArray<Account>, SimulatorConfigError> => {
    if (name === undefined) return Effect.succeed(accounts.all)
    const found = accounts.all.filter((a) => a.name === name)
    return found.length > 0
      ? Effect.succeed(found)
      : Effect.fail(new SimulatorConfigError({ message: `No simulated account is named ${JSON.stringify(name)}` }))
  }

  const configure = (patch: ConfigPatch): Effect.Effect<void, SimulatorConfigError> =>
    Effect.gen(function*() {
      const targets = yield* findAccounts(patch.account)
      const now = yield* Clock.currentTimeMillis
      if (patch.failureRate !== undefined) faults.set(faultMix(patch.failureRate))
      if (patch.faults !== undefined) faults.set(patch.faults)
      if (patch.retryAfterSeconds !== undefined) answers.setRetryAfter(patch.retryAfterSeconds ?? undefined)
      if (patch.realtime !== undefined) realtime.configure(patch.realtime)
      model.pools.configure(patch)
      for (const account of targets) {
        if (patch.plan !== undefined) accounts.setPlan(account, patch.plan)
        for (const p of pools) {
          const limit = patch.limits?.[p]
          if (limit !== undefined) account.pools[p].limit = Math.floor(limit)
        }
        for (const p of pools) model.pools.drain(account.pools[p], now)
        if (patch.credits !== undefined) accounts.setCredits(account, patch.credits, now)
      }
    })

  const stats: Effect.Effect<Stats> = Effect.map(Clock.currentTimeMillis, (now) => {
    const poolSummary = {} as Record<Pool, Omit<Pools.PoolStats, "samples">>
    for (const p of pools) poolSummary[p] = Pools.summary(accounts.all.map((a) => a.pools[p]))
    const accountStats: Record<string, Stats["accounts"][string]> = {}
    for (const a of accounts.all) {
      accounts.rollPeriod(a, now)
      accountStats[a.name] = {
        plan: a.plan,
        characterCount: a.characterCount,
        characterLimit: a.characterLimit,
        nextCharacterCountResetUnix: a.nextResetUnix,
        pools: {
          standard: Pools.stats(a.pools.standard),
          flash: Pools.stats(a.pools.flash),
          stt: Pools.stats(a.pools.stt),
          music: Pools.stats(a.pools.music)
        }
      }
    }
    return {
      now,
      requests: counts.requests,
      byStatus: { ...counts.byStatus },
      byDetailStatus: { ...counts.byDetailStatus },
      faults: { ...counts.faults },
      creditsCharged: counts.creditsCharged,
      pools: poolSummary,
      accounts: accountStats,
      realtime: realtime.stats()
    }
  })

  const resetStats = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.sync(() => {
      Counts.clear(counts)
      realtime.resetStats()
      for (const a of accounts.all) for (const p of pools) Pools.resetStats(a.pools[p], now)
    }))

  const applyJson = (request: IncomingRequest) =>
    Effect.gen(function*() {
      const parsed = yield* readJson(request)
      if (!parsed.ok) return plain(400, { error: "invalid_json", message: "The body is not JSON" })
      const patch = yield* Schema.decodeUnknownEffect(ConfigPatch)(parsed.value, { onExcessProperty: "error" }).pipe(
        Effect.mapError((e) => new SimulatorConfigError({ message: e.message }))
      )
      yield* configure(patch)
      return plain(200, { ok: true })
    }).pipe(Effect.catch((e: SimulatorConfigError) =>
      Effect.succeed(plain(400, { error: "invalid_config", message: e.message }))
    ))

  const route = (request: IncomingRequest, path: string): Effect.Effect<Outcome> => {
    if (path === "/_simulator/stats" && request.method === "GET") return Effect.map(stats, (s) => plain(200, s))
    if (path === "/_simulator/reset" && request.method === "POST") {
      return Effect.as(resetStats, plain(200, { ok: true }))
    }
    if (path === "/_simulator/config" && request.method === "POST") return applyJson(request)
    return Effect.succeed(plain(404, { error: "not_found", message: `No control route ${request.method} ${path}` }))
  }

  return { configure, stats, resetStats, route }
}
