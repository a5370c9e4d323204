/**
 * The credit quota shared across processes: the subscription numbers,
 * every in-flight reservation and the exhausted state live in Redis, so
 * `limit − used − reserved` is the same for every process using the account.
 * The Lua side of the quota guard's Redis store: `RedisQuotaStore` maps it to
 * a `QuotaStore` (docs/quota.md, "Shared across processes").
 *
 * **Details**
 *
 * - Data (under `prefix`, default `"elevenlabs-resilience:quota:"`, hash tag
 *   `{account}`): `state` (hash: `used`, `limit`, `resetAt`, `reserved`,
 *   `exhaustedSince`, `exhaustedUntil`, `markSeq`, `keyUsed:<id>`,
 *   `keyReserved:<id>`), `leases` (sorted set: reservation id → lease expiry)
 *   and `amounts` (hash: reservation id → `"<cost> <keyId>"`).
 * - `reserve`, `commit`, `release`, `renew`, `sync`, `markExhausted` and
 *   `status` are each one Lua script: atomic against every process. Each
 *   starts by dropping lapsed reservations (a crashed process's reservations
 *   give their credits back within `lease`, default 30 s) and by rolling the
 *   period over once Redis time passes `resetAt`.
 * - `reserveScoped` renews its lease every `lease / 3` from a fiber in the
 *   caller's scope and releases at scope close unless committed.
 * - A commit whose reservation already lapsed still adds its amount to `used`
 *   (the credits were spent).
 * - The exhausted state ends at `exhaustedUntil`, at a period rollover, or on a
 *   `sync` that shows credits left from a fetch that started after the latest
 *   mark (`markSeqAtStart` equal to the current `markSeq`).
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, Layer, Random, Scope } from "effect"
import { Redis } from "effect/persistence"
import { checkId, type DistributedError, invalid } from "./DistributedError.ts"
import { RedisMode } from "./RedisMode.ts"

/** The answer of a reservation. */
export type ReserveResult =
  | { readonly _tag: "Reserved"; readonly id: string; readonly cost: number; readonly remaining: number }
  | { readonly _tag: "Insufficient"; readonly available: number; readonly required: number }
  | { readonly _tag: "Exhausted"; readonly retryAfterMillis: number | undefined }
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "KeyCapExceeded"; readonly keyId: string; readonly remaining: number; readonly required: number }

/** A reservation held for the scope, from {@link RedisQuota}'s `reserveScoped`. */
export interface SharedReservation {
  readonly _tag: "Reserved"
  readonly id: string
  readonly cost: number
  readonly remaining: number
  /** Commits `actual` (default: the reserved cost) to `used`. Idempotent with `release`: the first one wins. */
  readonly commit: (actual?: number | undefined) => Effect.Effect<void, DistributedError>
  readonly release: Effect.Effect<void, DistributedError>
}

/** A reservation request. */
export interface ReserveRequest {
  readonly cost: number
  /** Reservation id; default a fresh random id. */
  readonly id?: string | undefined
  /** API-key id whose cap applies. */
  readonly keyId?: string | undefined
  /** That key's cap for the period. */
  readonly keyCap?: number | undefined
}

/** The shared numbers. */
export interface SharedQuotaStatus {
  readonly used: number | undefined
  readonly limit: number | undefined
  readonly resetAt: number | undefined
  readonly reserved: number
  readonly reservations: number
  readonly remaining: number | undefined
  readonly exhausted: { readonly since: number; readonly until: number | undefined } | undefined
  /** Counter of `markExhausted` calls: pass it back to `sync` as `markSeqAtStart`. */
  readonly markSeq: number
  /** Credits committed so far by every process (a counter that only grows): pass it back to `sync` as `committedAtStart`. */
  readonly committed: number
  readonly keys: ReadonlyArray<{ readonly keyId: string; readonly used: number; readonly reserved: number }>
  /** Redis time of the reading. */
  readonly now: number
}

/** The shared quota store (Redis). */
export class RedisQuota extends Context.Service<RedisQuota, {
  /** Writes a subscription reading (`/v1/user/subscription`). */
  readonly sync: (snapshot: {
    readonly used: number
    readonly limit: number
    readonly resetAt?: number | undefined
    /** `status.markSeq` read before the fetch started: only then may the reading end the exhausted state. */
    readonly markSeqAtStart?: number | undefined
    /**
     * `status.committed` read before the fetch started: commits made since then are added to `used`
     * (the reading may not count them yet; counted twice errs on the side of not overspending).
     */
    readonly committedAtStart?: number | undefined
  }) => Effect.Effect<SharedQuotaStatus, DistributedError>
  /** Reserves `cost` credits (one script); the caller must commit, release or let the lease lapse. */
  readonly reserve: (request: ReserveRequest) => Effect.Effect<ReserveResult, DistributedError>
  /** Reserves for the scope: renewed while the scope lives, released at its close unless committed. */
  readonly reserveScoped: (
    request: ReserveRequest
  ) => Effect.Effect<
    SharedReservation | Exclude<ReserveResult, { readonly _tag: "Reserved" }>,
    DistributedError,
    Scope.Scope
  >
  /** Ends a reservation and adds `amount` to `used` (also when the lease lapsed). Returns whether it was still held. */
  readonly commit: (id: string, amount: number) => Effect.Effect<boolean, DistributedError>
  /** Ends a reservation without spending. Returns whether it was still held. */
  readonly release: (id: string) => Effect.Effect<boolean, DistributedError>
  readonly renew: (id: string) => Effect.Effect<boolean, DistributedError>
  /**
   * A `quota_exceeded` answer: every process fails fast until `resetAt` (unix ms) or a newer reading.
   * `used` and `limit`, when both given (the answer's quota and quota − remaining), replace the shared numbers.
   */
  readonly markExhausted: (options?: {
    readonly resetAt?: number | undefined
    readonly used?: number | undefined
    readonly limit?: number | undefined
  }) => Effect.Effect<void, DistributedError>
  readonly status: Effect.Effect<SharedQuotaStatus, DistributedError>
}>()(
  "elevenlabs-resilience/distributed/RedisQuota"
) {}

/** @deprecated The shape of {@link RedisQuota}: use `RedisQuota["Service"]` (one name per service, Effect's convention). */
export type RedisQuotaService = RedisQuota["Service"]

/** Options of {@link make}. */
export interface Options {
  /** The account the credits belong to (an id, never an API key). Default `"default"`. */
  readonly account?: string | undefined
  /** Default `"elevenlabs-resilience:quota:"`. */
  readonly prefix?: string | undefined
  /** Reservation lease. Default 30 seconds. */
  readonly lease?: Duration.Input | undefined
  /** Untouched state expires after this. Default 40 days (longer than a billing period). */
  readonly idleTimeToLive?: Duration.Input | undefined
}

// KEYS: state, leases, amounts. ARGV[1] idle ms; then script arguments.
const prelude = `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function fmt(n) return string.format("%.17g", n) end
local function int(n) return string.format("%.0f", n) end
local state, leases, amounts = KEYS[1], KEYS[2], KEYS[3]
local idle = tonumber(ARGV[1])
local function parseAmount(v)
  local cost, keyId = string.match(v, "^(%S+) ?(.*)$")
  return tonumber(cost) or 0, keyId or ""
end
local function drop(id)
  local v = redis.call("HGET", amounts, id)
  redis.call("ZREM", leases, id)
  if not v then return nil end
  redis.call("HDEL", amounts, id)
  local cost, keyId = parseAmount(v)
  redis.call("HINCRBYFLOAT", state, "reserved", fmt(-cost))
  if keyId ~= "" then redis.call("HINCRBYFLOAT", state, "keyReserved:" .. keyId, fmt(-cost)) end
  return cost, keyId
end
local function purge()
  local dead = redis.call("ZRANGEBYSCORE", leases, "-inf", now, "LIMIT", 0, 500)
  for _, id in ipairs(dead) do drop(id) end
  local resetAt = tonumber(redis.call("HGET", state, "resetAt"))
  if resetAt ~= nil and now >= resetAt then
    if redis.call("HEXISTS", state, "used") == 1 then redis.call("HSET", state, "used", 0) end
    redis.call("HDEL", state, "resetAt", "exhaustedSince", "exhaustedUntil")
    local fields = redis.call("HKEYS", state)
    for _, f in ipairs(fields) do
      if string.sub(f, 1, 8) == "keyUsed:" then redis.call("HDEL", state, f) end
    end
  end
  local since = redis.call("HGET", state, "exhaustedSince")
  local untilAt = tonumber(redis.call("HGET", state, "exhaustedUntil"))
  if since and untilAt ~= nil and now >= untilAt then
    redis.call("HDEL", state, "exhaustedSince", "exhaustedUntil")
  end
end
local function num(field) return tonumber(redis.call("HGET", state, field)) end
local function touch()
  redis.call("PEXPIRE", state, int(idle))
  redis.call("PEXPIRE", amounts, int(idle))
  redis.call("PEXPIRE", leases, int(idle))
end
local function status()
  return { now, redis.call("HGETALL", state), redis.call("ZCARD", leases) }
end
`

type StatusReply = readonly [now: number, fields: ReadonlyArray<string>, reservations: number]

const reserveScript = Redis.script(
  (
    keys: readonly [string, string, string],
    idle: number,
    id: string,
    cost: number,
    lease: number,
    keyId: string,
    keyCap: number | undefined
  ) => [
    ...keys,
    idle,
    id,
    cost,
    lease,
    keyId,
    keyCap === undefined ? "" : keyCap
  ],
  {
    numberOfKeys: 3,
    lua: `${prelude}
local id, cost, lease, keyId, keyCap = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
purge()
if redis.call("HEXISTS", amounts, id) == 1 then
  redis.call("ZADD", leases, int(now + lease), id)
  local limit, used, reserved = num("limit") or 0, num("used") or 0, num("reserved") or 0
  return { "ok", fmt(limit - used - reserved) }
end
if redis.call("HEXISTS", state, "exhaustedSince") == 1 then
  local untilAt = num("exhaustedUntil")
  if untilAt == nil then return { "exhausted", "" } end
  return { "exhausted", fmt(untilAt - now) }
end
local limit = num("limit")
local used = num("used")
if limit == nil or used == nil then return { "unknown" } end
local reserved = num("reserved") or 0
local available = limit - used - reserved
if cost > available then return { "insufficient", fmt(available) } end
if keyId ~= "" and keyCap ~= nil then
  local left = keyCap - (num("keyUsed:" .. keyId) or 0) - (num("keyReserved:" .. keyId) or 0)
  if cost > left then return { "key-cap", fmt(left) } end
end
redis.call("ZADD", leases, int(now + lease), id)
redis.call("HSET", amounts, id, fmt(cost) .. " " .. keyId)
redis.call("HINCRBYFLOAT", state, "reserved", fmt(cost))
if keyId ~= "" then redis.call("HINCRBYFLOAT", state, "keyReserved:" .. keyId, fmt(cost)) end
touch()
return { "ok", fmt(available - cost) }
`
  }
).withReturnType<readonly [tag: "ok" | "exhausted" | "insufficient" | "key-cap" | "unknown", value?: string]>()

// op: "commit" (ARGV[3] amount, ARGV[4] keyId of a lapsed reservation), "release", "renew" (ARGV[3] lease).
const endScript = Redis.script(
  (
    keys: readonly [string, string, string],
    idle: number,
    op: "commit" | "release" | "renew",
    id: string,
    value: number,
    keyId: string
  ) => [
    ...keys,
    idle,
    op,
    id,
    value,
    keyId
  ],
  {
    numberOfKeys: 3,
    lua: `${prelude}
local op, id, value, fallbackKeyId = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
purge()
if op == "renew" then
  if redis.call("HEXISTS", amounts, id) == 0 then return 0 end
  redis.call("ZADD", leases, "XX", int(now + value), id)
  return 1
end
local cost, keyId = drop(id)
local held = 1
if cost == nil then held = 0; keyId = fallbackKeyId end
if op == "commit" then
  redis.call("HINCRBYFLOAT", state, "committed", fmt(value))
  if redis.call("HEXISTS", state, "used") == 1 then redis.call("HINCRBYFLOAT", state, "used", fmt(value)) end
  if keyId ~= nil and keyId ~= "" then redis.call("HINCRBYFLOAT", state, "keyUsed:" .. keyId, fmt(value)) end
  touch()
end
return held
`
  }
).withReturnType<number>()

// op: "sync" (ARGV[3] used, [4] limit, [5] resetAt or "", [6] markSeqAtStart or "", [7] committedAtStart or ""),
// "mark" (ARGV[3] resetAt or "", [4] used or "", [5] limit or ""), "status".
const stateScript = Redis.script(
  (
    keys: readonly [string, string, string],
    idle: number,
    op: "sync" | "mark" | "status",
    a: number | undefined,
    b: number | undefined,
    c: number | undefined,
    d: number | undefined,
    e: number | undefined
  ) => [
    ...keys,
    idle,
    op,
    a === undefined ? "" : a,
    b === undefined ? "" : b,
    c === undefined ? "" : c,
    d === undefined ? "" : d,
    e === undefined ? "" : e
  ],
  {
    numberOfKeys: 3,
    lua: `${prelude}
local op = ARGV[2]
purge()
if op == "sync" then
  local used, limit, resetAt, seqAtStart = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local committedAtStart = tonumber(ARGV[7])
  if committedAtStart ~= nil then
    -- Commits made (by any process) while the fetch was in flight may be missing from its reading.
    local since = (num("committed") or 0) - committedAtStart
    if since > 0 then used = used + since end
  end
  local previous = num("resetAt")
  if resetAt ~= nil and resetAt <= now then resetAt = nil end
  if previous ~= nil and resetAt ~= nil and resetAt > previous then
    local fields = redis.call("HKEYS", state)
    for _, f in ipairs(fields) do
      if string.sub(f, 1, 8) == "keyUsed:" then redis.call("HDEL", state, f) end
    end
    redis.call("HDEL", state, "exhaustedSince", "exhaustedUntil")
  end
  redis.call("HSET", state, "used", fmt(used), "limit", fmt(limit))
  if resetAt ~= nil then redis.call("HSET", state, "resetAt", int(resetAt)) else redis.call("HDEL", state, "resetAt") end
  if seqAtStart ~= nil and redis.call("HEXISTS", state, "exhaustedSince") == 1
    and seqAtStart == (num("markSeq") or 0) and limit - used > 0 then
    redis.call("HDEL", state, "exhaustedSince", "exhaustedUntil")
  end
  touch()
elseif op == "mark" then
  local resetAt = tonumber(ARGV[3])
  local used, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
  if used ~= nil and limit ~= nil then redis.call("HSET", state, "used", fmt(used), "limit", fmt(limit)) end
  redis.call("HSET", state, "exhaustedSince", int(now))
  if resetAt ~= nil and resetAt > now then
    redis.call("HSET", state, "exhaustedUntil", int(resetAt))
  else
    redis.call("HDEL", state, "exhaustedUntil")
  end
  redis.call("HINCRBY", state, "markSeq", 1)
  touch()
end
return status()
`
  }
).withReturnType<StatusReply>()

const millisOf = (input: Duration.Input): number =>
  Math.max(1, Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(input))))

const parseStatus = ([now, fields, reservations]: StatusReply): SharedQuotaStatus => {
  const m = new Map<string, string>()
  for (let i = 0; i + 1 < fields.length; i += 2) m.set(fields[i]!, fields[i + 1]!)
  const n = (f: string) => (m.has(f) ? Number(m.get(f)) : undefined)
  const used = n("used")
  const limit = n("limit")
  const reserved = Math.max(0, n("reserved") ?? 0)
  const keys = new Map<string, { used: number; reserved: number }>()
  for (const [f, v] of m) {
    const match = /^key(Used|Reserved):(.*)$/.exec(f)
    if (match === null) continue
    const entry = keys.get(match[2]!) ?? { used: 0, reserved: 0 }
    if (match[1] === "Used") entry.used = Number(v)
    else entry.reserved = Math.max(0, Number(v))
    keys.set(match[2]!, entry)
  }
  const since = n("exhaustedSince")
  return {
    used,
    limit,
    resetAt: n("resetAt"),
    reserved,
    reservations: Number(reservations),
    remaining: used === undefined || limit === undefined ? undefined : limit - used - reserved,
    exhausted: since === undefined ? undefined : { since, until: n("exhaustedUntil") },
    markSeq: n("markSeq") ?? 0,
    committed: n("committed") ?? 0,
    keys: [...keys].map(([keyId, v]) => ({ keyId, ...v })),
    now: Number(now)
  }
}

const isAmount = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n) && n >= 0

/** Builds the store for one account. */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const redis = yield* Redis.Redis
  const mode = yield* RedisMode
  const account = options.account ?? "default"
  const bad = checkId("account", account)
  if (bad !== undefined) return yield* Effect.die(bad)
  const prefix = options.prefix ?? "elevenlabs-resilience:quota:"
  const leaseMillis = millisOf(options.lease ?? "30 seconds")
  const idleMillis = millisOf(options.idleTimeToLive ?? "40 days")
  const base = `${prefix}{${account}}:`
  const keys = [`${base}state`, `${base}leases`, `${base}amounts`] as const
  const reserveRedis = redis.eval(reserveScript)
  const endRedis = redis.eval(endScript)
  const stateRedis = redis.eval(stateScript)
  const processId = (yield* Random.nextInt).toString(36)
  let counter = 0

  const reserve = (request: ReserveRequest): Effect.Effect<ReserveResult, DistributedError> =>
    Effect.gen(function*() {
      if (!isAmount(request.cost)) return yield* invalid("cost", "must be a non-negative number")
      if (request.keyCap !== undefined && !isAmount(request.keyCap)) {
        return yield* invalid("keyCap", "must be a non-negative number")
      }
      const keyId = request.keyId ?? ""
      if (keyId !== "") {
        const badKey = checkId("keyId", keyId)
        if (badKey !== undefined) {
          return yield* badKey
        }
      }
      const id = request.id ?? `${processId}:${++counter}`
      const badId = checkId("id", id)
      if (badId !== undefined) return yield* badId
      const [tag, value] = yield* mode.run(
        "reserve",
        reserveRedis(keys, idleMillis, id, request.cost, leaseMillis, keyId, request.keyCap)
      )
      switch (tag) {
        case "ok":
          return { _tag: "Reserved", id, cost: request.cost, remaining: Number(value) } as const
        case "exhausted":
          return {
            _tag: "Exhausted",
            retryAfterMillis: value === undefined || value === "" ? undefined : Math.max(0, Number(value))
          } as const
        case "insufficient":
          return { _tag: "Insufficient", available: Number(value), required: request.cost } as const
        case "key-cap":
          return { _tag: "KeyCapExceeded", keyId, remaining: Number(value), required: request.cost } as const
        default:
          return { _tag: "Unknown" } as const
      }
    })

  const end = (op: "commit" | "release" | "renew", id: string, value: number, keyId = "") =>
    mode.run(op, endRedis(keys, idleMillis, op, id, value, keyId)).pipe(Effect.map((held) => held === 1))

  const renewUntilGone = (id: string): Effect.Effect<void> =>
    Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(Duration.millis(Math.max(1, Math.floor(leaseMillis / 3))))
        const held = yield* end("renew", id, leaseMillis).pipe(Effect.catch(() => Effect.succeed(true)))
        if (!held) return
      }
    })

  const reserveScoped: RedisQuota["Service"]["reserveScoped"] = (request) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const scope = yield* Effect.scope
        const id = request.id ?? `${processId}:${++counter}`
        const exit = yield* Effect.exit(restore(reserve({ ...request, id })))
        if (Exit.isFailure(exit)) {
          // A reservation may have been made before the failure (a lost reply): give it back.
          yield* Effect.ignore(end("release", id, 0))
          return yield* Effect.failCause(exit.cause)
        }
        const result = exit.value
        if (result._tag !== "Reserved") return result
        let settled = false
        const settle = (effect: Effect.Effect<unknown, DistributedError>) =>
          Effect.suspend(() => {
            if (settled) return Effect.void
            settled = true
            return Effect.asVoid(effect)
          })
        const release = settle(end("release", id, 0))
        yield* Scope.addFinalizer(scope, Effect.ignore(release))
        yield* Effect.forkIn(renewUntilGone(id), scope)
        return {
          _tag: "Reserved",
          id,
          cost: result.cost,
          remaining: result.remaining,
          commit: (actual) =>
            actual !== undefined && !isAmount(actual)
              ? Effect.fail(invalid("actual", "must be a non-negative number"))
              : Effect.uninterruptible(settle(end("commit", id, actual ?? result.cost, request.keyId ?? ""))),
          release: Effect.uninterruptible(release)
        } satisfies SharedReservation
      })
    )

  const runState = (op: "sync" | "mark" | "status", a?: number, b?: number, c?: number, d?: number, e?: number) =>
    Effect.map(
      mode.run(op === "mark" ? "markExhausted" : op, stateRedis(keys, idleMillis, op, a, b, c, d, e)),
      parseStatus
    )

  return RedisQuota.of({
    sync: (s) =>
      !isAmount(s.used) || !isAmount(s.limit) || (s.resetAt !== undefined && !Number.isFinite(s.resetAt))
        ? Effect.fail(invalid("snapshot", `out of range: used=${s.used} limit=${s.limit}`))
        : runState("sync", s.used, s.limit, s.resetAt, s.markSeqAtStart, s.committedAtStart),
    reserve,
    reserveScoped,
    commit: (
      id,
      amount
    ) => (isAmount(amount)
      ? end("commit", id, amount)
      : Effect.fail(invalid("amount", "must be a non-negative number"))),
    release: (id) => end("release", id, 0),
    renew: (id) => end("renew", id, leaseMillis),
    markExhausted: (o) =>
      Effect.asVoid(
        isAmount(o?.used) && isAmount(o?.limit)
          ? runState("mark", o?.resetAt, o.used, o.limit)
          : runState("mark", o?.resetAt)
      ),
    status: runState("status")
  })
})

/** Provides {@link RedisQuota} over `Redis` and `RedisMode`. */
export const layer = (options?: Options): Layer.Layer<RedisQuota, never, Redis.Redis | RedisMode> =>
  Layer.effect(RedisQuota, make(options))
