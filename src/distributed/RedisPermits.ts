/**
 * Concurrency permits shared by every process that uses an API key: one
 * Redis-held limit per (API-key id, pool), leased permits, a FIFO ticket
 * queue across processes and the adaptive (AIMD) limit kept in Redis.
 *
 * **Details**
 *
 * - Data (per `key`/`pool`, all under `prefix`, default
 *   `"elevenlabs-resilience:permits:"`, with a `{key:pool}` hash tag so one
 *   pair lives on one cluster slot): `holders` (sorted set: permit id → lease
 *   expiry), `queue` (sorted set: ticket → arrival sequence), `waiting`
 *   (sorted set: ticket → heartbeat expiry), `seq` (the arrival counter) and
 *   `limit` (hash: `estimate`, `ceiling`, `others`). Times are Redis `TIME`,
 *   so clock skew between processes does not matter.
 * - Acquire is one Lua script per attempt: drop expired holders and waiters,
 *   then grant when the ticket is among the first `limit − held` tickets of
 *   the queue (a new ticket counts as the last one); otherwise queue it (FIFO
 *   by arrival) and refresh its heartbeat. Release is one script (`ZREM`).
 * - Waiting is by polling with a backoff from `Clock` (`pollMin` 5 ms doubling
 *   to `pollMax` 50 ms, jittered from `Random`); a process that polls faster
 *   cannot jump the queue, because only the first tickets may take a free
 *   permit. A waiter that dies keeps its place only until its heartbeat
 *   (`waiterLease`, default = `lease`) lapses.
 * - Leases: a permit expires `lease` (default 10 s) after its last renewal;
 *   a fiber in the permit's scope renews it every `lease / 3`, so a crashed
 *   process's permits come back within `lease`.
 * - The limit: `setLimit` sets the plan ceiling; `onConcurrencyLimited` and
 *   `onResponse` apply the AIMD rules of `AdaptiveLimit` atomically in Lua,
 *   with `others = current-concurrent-requests − permits held across all
 *   processes`.
 * - Redis trouble: see `RedisMode`. In `local-fallback` each process uses a
 *   local semaphore of `localShare` permits (default
 *   `max(1, floor(lastKnownLimit / expectedProcesses))`); waiting callers move
 *   to it; held permits finish normally (a release that cannot reach Redis is
 *   left to the lease). In `fail-closed` new and waiting callers fail with
 *   `RedisUnavailable`.
 *
 * @example
 * ```ts
 * const permits = yield* RedisPermits.RedisPermits
 * yield* Effect.scoped(Effect.gen(function*() {
 *   yield* permits.acquire({ key: "acct-1", pool: "standard", timeout: "30 seconds" })
 *   return yield* callElevenLabs
 * }))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Deferred, Duration, Effect, Exit, Layer, Queue, Random, Schedule, Scope, Semaphore } from "effect"
import { Redis } from "effect/persistence"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import { limitsOf, type PlanName, type Pool, pools } from "../resilience/Plans.ts"
import { AcquireTimeout, checkId, DistributedError, invalid, unavailable } from "./DistributedError.ts"
import { RedisMode } from "./RedisMode.ts"

/** A permit held for the life of the scope it was acquired in. */
export interface DistributedPermit {
  readonly key: string
  readonly pool: string
  /** The permit (ticket) id: `<process id>:<counter>`. */
  readonly id: string
  /** Where it came from: the shared Redis limit, or the local share during an outage. */
  readonly source: "shared" | "local-fallback"
  /** The limit in force when it was granted. */
  readonly limit: number
  readonly waitedMillis: number
  /** Releases early (idempotent; scope close releases otherwise). */
  readonly release: Effect.Effect<void>
}

/** A request for a permit. */
export interface AcquireRequest {
  /** The API-key id (never the key itself). */
  readonly key: string
  readonly pool: string
  /** How long to wait at most. Default: the `queueTimeout` option (120 s). */
  readonly timeout?: Duration.Input | undefined
}

/** What a successful response said about concurrency. */
export interface ResponseSignal {
  /** `maximum-concurrent-requests`. */
  readonly maximum?: number | undefined
  /** `current-concurrent-requests`. */
  readonly current?: number | undefined
}

/** The shared limit of one (key, pool). */
export interface SharedLimit {
  /** Permits handed out: `max(minLimit, floor(estimate))`. */
  readonly limit: number
  readonly estimate: number
  readonly ceiling: number | undefined
  readonly others: number
}

/** A view of one (key, pool). */
export interface Snapshot extends SharedLimit {
  readonly key: string
  readonly pool: string
  /** Permits held across every process (Redis). */
  readonly held: number
  /** Tickets waiting across every process (Redis). */
  readonly queued: number
  /** Permits this process holds from its local share (during an outage). */
  readonly localHeld: number
  /** This process's local share. */
  readonly localShare: number
}

export interface RedisPermitsService {
  /** Takes a permit until the scope closes (or `release`). */
  readonly acquire: (request: AcquireRequest) => Effect.Effect<DistributedPermit, DistributedError, Scope.Scope>
  /** Sets the plan's ceiling for (key, pool) (first ceiling: estimate = ceiling; raise: +difference; cut: clamp). */
  readonly setLimit: (key: string, pool: string, ceiling: number) => Effect.Effect<SharedLimit, DistributedError>
  /** The current shared limit. */
  readonly limit: (key: string, pool: string) => Effect.Effect<SharedLimit, DistributedError>
  /** A 429 `too_many_concurrent_requests`: multiplicative decrease (the server's number, when given, is the ceiling). */
  readonly onConcurrencyLimited: (key: string, pool: string, limitFromServer?: number | undefined) => Effect.Effect<void>
  /** A successful response: ceiling, others and additive increase when saturated. */
  readonly onResponse: (key: string, pool: string, signal: ResponseSignal) => Effect.Effect<void>
  readonly snapshot: (key: string, pool: string) => Effect.Effect<Snapshot, DistributedError>
}

/** Service tag of {@link RedisPermitsService}. */
export class RedisPermits extends Context.Service<RedisPermits, RedisPermitsService>()(
  "elevenlabs-resilience/distributed/RedisPermits"
) {}

/** Options of {@link make}; every field has a default. */
export interface Options {
  /** Key prefix. Default `"elevenlabs-resilience:permits:"`. */
  readonly prefix?: string | undefined
  /** Permit lease. Default 10 seconds. */
  readonly lease?: Duration.Input | undefined
  /** Heartbeat lease of a waiting ticket. Default = `lease`. */
  readonly waiterLease?: Duration.Input | undefined
  /** Keys untouched that long expire. Default 1 hour. */
  readonly idleTimeToLive?: Duration.Input | undefined
  /** Default wait of `acquire`. Default 120 seconds (the rate-limits guide's queue timeout). */
  readonly queueTimeout?: Duration.Input | undefined
  /** First poll delay. Default 5 ms. */
  readonly pollMin?: Duration.Input | undefined
  /** Largest poll delay. Default 100 ms (releases also wake waiters through pub/sub). */
  readonly pollMax?: Duration.Input | undefined
  /** The limit of a pair Redis knows nothing about yet. Default: the `plan`'s table value for known pools, else 1. */
  readonly initialLimit?: number | ((key: string, pool: string) => number) | undefined
  /** Plan used for `initialLimit`. Default `"free"`. */
  readonly plan?: PlanName | undefined
  /** AIMD tuning (as `AdaptiveLimit`). */
  readonly minLimit?: number | undefined
  readonly maxLimit?: number | undefined
  readonly decreaseFactor?: number | undefined
  readonly additiveIncrease?: number | undefined
  /** This process's share during an outage. Default `max(1, floor(lastKnownLimit / expectedProcesses))`. */
  readonly localShare?: number | ((key: string, pool: string, lastKnownLimit: number) => number) | undefined
  /** Wake waiters when a permit is released (Redis pub/sub, one subscriber connection per process). Default true. */
  readonly notify?: boolean | undefined
}

// ---------------------------------------------------------------------------
// Lua
// ---------------------------------------------------------------------------

// KEYS: holders, queue, waiting, seq, limit. ARGV[1..6]: initial, minLimit,
// maxLimit, decreaseFactor, additiveIncrease, idleMillis; script arguments follow.
const prelude = `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function fmt(n) return string.format("%.17g", n) end
local function int(n) return string.format("%.0f", n) end
local holders, queue, waiting, seqKey, limitKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local initial = tonumber(ARGV[1])
local minLimit = tonumber(ARGV[2])
local maxLimit = tonumber(ARGV[3])
local decreaseFactor = tonumber(ARGV[4])
local additiveIncrease = tonumber(ARGV[5])
local idle = tonumber(ARGV[6])
local function clamp(n, lo, hi) return math.max(lo, math.min(hi, n)) end

local f = redis.call("HMGET", limitKey, "estimate", "ceiling", "others")
local estimate = tonumber(f[1])
local ceiling = tonumber(f[2])
local others = tonumber(f[3]) or 0
if estimate == nil then estimate = clamp(initial, minLimit, ceiling or maxLimit) end

local function capOf()
  if ceiling == nil then return maxLimit end
  return math.max(minLimit, ceiling - others)
end
local function permits() return math.max(minLimit, math.floor(estimate + 1e-9)) end
local function saveLimit()
  if ceiling == nil then
    redis.call("HSET", limitKey, "estimate", fmt(estimate), "others", fmt(others))
    redis.call("HDEL", limitKey, "ceiling")
  else
    redis.call("HSET", limitKey, "estimate", fmt(estimate), "ceiling", fmt(ceiling), "others", fmt(others))
  end
  redis.call("PEXPIRE", limitKey, int(idle))
end
local function setCeiling(c)
  if c == nil or c ~= c or c < 1 then return false end
  c = math.floor(c)
  if ceiling == c then return false end
  local previous = ceiling
  ceiling = c
  local cap = capOf()
  if previous == nil then estimate = cap else estimate = clamp(estimate + math.max(0, c - previous), minLimit, cap) end
  return true
end
local function purge()
  redis.call("ZREMRANGEBYSCORE", holders, "-inf", now)
  local dead = redis.call("ZRANGEBYSCORE", waiting, "-inf", now, "LIMIT", 0, 500)
  if #dead > 0 then
    redis.call("ZREM", waiting, unpack(dead))
    redis.call("ZREM", queue, unpack(dead))
  end
end
local function limitReply()
  return { fmt(estimate), ceiling and fmt(ceiling) or "", fmt(others), permits() }
end
`

type LimitReply = readonly [estimate: string, ceiling: string, others: string, permits: number]

type Common = readonly [
  keys: readonly [string, string, string, string, string],
  initial: number,
  minLimit: number,
  maxLimit: number,
  decreaseFactor: number,
  additiveIncrease: number,
  idleMillis: number
]

const commonArgs = (c: Common) => [...c[0], c[1], c[2], c[3], c[4], c[5], c[6]]

// ARGV[7] ticket, [8] lease ms, [9] waiter lease ms.
// Returns { granted (0/1), held, permits, rank }.
const acquireScript = Redis.script(
  (c: Common, ticket: string, leaseMillis: number, waiterMillis: number) => [...commonArgs(c), ticket, leaseMillis, waiterMillis],
  {
    numberOfKeys: 5,
    lua: `${prelude}
local ticket = ARGV[7]
local lease = tonumber(ARGV[8])
local waiterLease = tonumber(ARGV[9])
purge()
local limit = permits()
local held = redis.call("ZCARD", holders)
local rank = redis.call("ZRANK", queue, ticket)
local queued = true
if rank == false then
  queued = false
  rank = redis.call("ZCARD", queue)
end
if rank < limit - held then
  redis.call("ZADD", holders, int(now + lease), ticket)
  redis.call("PEXPIRE", holders, int(idle + lease))
  if queued then
    redis.call("ZREM", queue, ticket)
    redis.call("ZREM", waiting, ticket)
  end
  return { 1, held + 1, limit, rank }
end
if not queued then
  local seq = redis.call("INCR", seqKey)
  redis.call("ZADD", queue, seq, ticket)
  redis.call("PEXPIRE", seqKey, int(idle))
  redis.call("PEXPIRE", queue, int(idle + waiterLease))
end
redis.call("ZADD", waiting, int(now + waiterLease), ticket)
redis.call("PEXPIRE", waiting, int(idle + waiterLease))
return { 0, held, limit, rank }
`
  }
).withReturnType<readonly [granted: number, held: number, permits: number, rank: number]>()

// Release or cancel: the ticket leaves the holders, the queue and the waiters. Returns whether it held a permit.
// ARGV[2], ARGV[3]: the notification channel and message (published when anything was removed).
const releaseScript = Redis.script(
  (holders: string, queue: string, waiting: string, ticket: string, channel: string, message: string) => [
    holders,
    queue,
    waiting,
    ticket,
    channel,
    message
  ],
  {
    numberOfKeys: 3,
    lua: `
local removed = redis.call("ZREM", KEYS[1], ARGV[1])
local dequeued = redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
if removed + dequeued > 0 then redis.call("PUBLISH", ARGV[2], ARGV[3]) end
return removed
`
  }
).withReturnType<number>()

// Renews a lease still held; 0 when it has lapsed (and drops it).
const renewScript = Redis.script(
  (holders: string, ticket: string, leaseMillis: number) => [holders, ticket, leaseMillis],
  {
    numberOfKeys: 1,
    lua: `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local score = tonumber(redis.call("ZSCORE", KEYS[1], ARGV[1]))
if score == nil then return 0 end
if score <= now then
  redis.call("ZREM", KEYS[1], ARGV[1])
  return 0
end
redis.call("ZADD", KEYS[1], "XX", string.format("%.0f", now + tonumber(ARGV[2])), ARGV[1])
return 1
`
  }
).withReturnType<number>()

// ARGV[7]: "get" | "set" | "limited" | "response"; [8], [9]: numbers or "".
// Returns limitReply() plus held and queued.
const limitScript = Redis.script(
  (c: Common, op: "get" | "set" | "limited" | "response", a: number | undefined, b: number | undefined) => [
    ...commonArgs(c),
    op,
    a === undefined ? "" : a,
    b === undefined ? "" : b
  ],
  {
    numberOfKeys: 5,
    lua: `${prelude}
local op = ARGV[7]
local a = tonumber(ARGV[8])
local b = tonumber(ARGV[9])
purge()
local held = redis.call("ZCARD", holders)
local queued = redis.call("ZCARD", queue)
if op == "set" then
  setCeiling(a)
  saveLimit()
elseif op == "limited" then
  local before = estimate
  local lowered = false
  if a ~= nil and setCeiling(a) and estimate < before then lowered = true end
  if not lowered then
    estimate = math.max(minLimit, math.min(estimate * decreaseFactor, capOf()))
  end
  saveLimit()
elseif op == "response" then
  if a ~= nil then setCeiling(a) end
  if b ~= nil and ceiling ~= nil then
    local o = math.max(0, math.floor(b) - held)
    if o ~= others then
      others = o
      local cap = capOf()
      if estimate > cap then estimate = cap end
    end
  end
  if held >= permits() or queued > 0 then
    local cap = capOf()
    if estimate < cap then estimate = math.min(cap, estimate + additiveIncrease / math.max(1, estimate)) end
  end
  saveLimit()
end
local r = limitReply()
r[5] = held
r[6] = queued
return r
`
  }
).withReturnType<readonly [...LimitReply, held: number, queued: number]>()

const parseLimit = (r: LimitReply): SharedLimit => ({
  estimate: Number(r[0]),
  ceiling: r[1] === "" ? undefined : Number(r[1]),
  others: Number(r[2]),
  limit: Number(r[3])
})

const millisOf = (input: Duration.Input): number => Math.max(1, Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(input))))

/** The concurrency headers of a response as a {@link ResponseSignal}. */
export const signalOf = (meta: ResponseMeta): ResponseSignal => ({
  maximum: meta.maximumConcurrentRequests,
  current: meta.currentConcurrentRequests
})

const isKnownPool = (pool: string): pool is Pool => (pools as ReadonlyArray<string>).includes(pool)

// ---------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------

/** Builds the service over `Redis` and `RedisMode`. Needs a `Scope` (renewal fibers of permits live in theirs). */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const redis = yield* Redis.Redis
  const mode = yield* RedisMode
  const prefix = options.prefix ?? "elevenlabs-resilience:permits:"
  const leaseMillis = millisOf(options.lease ?? "10 seconds")
  const waiterMillis = millisOf(options.waiterLease ?? options.lease ?? "10 seconds")
  const idleMillis = millisOf(options.idleTimeToLive ?? "1 hour")
  const queueTimeout = Duration.fromInputUnsafe(options.queueTimeout ?? "120 seconds")
  const pollMin = millisOf(options.pollMin ?? "5 millis")
  const pollMax = Math.max(pollMin, millisOf(options.pollMax ?? "100 millis"))
  const plan = options.plan ?? "free"
  const minLimit = options.minLimit ?? 1
  const maxLimit = options.maxLimit ?? 1000
  const decreaseFactor = options.decreaseFactor ?? 0.9
  const additiveIncrease = options.additiveIncrease ?? 1
  if (!(minLimit >= 1 && maxLimit >= minLimit && decreaseFactor > 0 && decreaseFactor < 1 && additiveIncrease > 0)) {
    return yield* Effect.die(new RangeError("RedisPermits: need 1 <= minLimit <= maxLimit, 0 < decreaseFactor < 1, additiveIncrease > 0"))
  }
  // A random process id keeps tickets of different processes apart.
  const processId = (yield* Random.nextInt).toString(36) + (yield* Random.nextInt).toString(36)
  let counter = 0

  const initialOf = (key: string, pool: string): number => {
    const configured = options.initialLimit
    if (typeof configured === "number") return configured
    if (typeof configured === "function") return configured(key, pool)
    return isKnownPool(pool) ? Math.max(1, limitsOf(plan)[pool]) : 1
  }

  const keysOf = (key: string, pool: string) => {
    const base = `${prefix}{${key}:${pool}}:`
    return [`${base}holders`, `${base}queue`, `${base}waiting`, `${base}seq`, `${base}limit`] as const
  }
  const pairOf = (key: string, pool: string) => `${key}:${pool}`
  const channel = `${prefix}released`

  // Wake-ups: one Deferred per pair, completed (and replaced) when a release
  // of that pair is published. Waiters take the current one before each
  // attempt, so a release between their attempt and their sleep is not missed.
  const wakers = new Map<string, Deferred.Deferred<void>>()
  const wakerOf = (pair: string): Deferred.Deferred<void> => {
    let d = wakers.get(pair)
    if (d === undefined) {
      d = Deferred.makeUnsafe<void>()
      wakers.set(pair, d)
    }
    return d
  }
  const wake = (pair: string) =>
    Effect.suspend(() => {
      const d = wakers.get(pair)
      if (d === undefined) return Effect.void
      wakers.delete(pair)
      return Deferred.succeed(d, undefined)
    })
  if (options.notify ?? true) {
    // One subscriber connection per process; polling still covers lost messages and lapsed leases.
    yield* Effect.scoped(
      Effect.gen(function*() {
        const messages = yield* redis.subscribe(channel)
        while (true) {
          const message = yield* Queue.take(messages)
          yield* wake(message.message)
        }
      })
    ).pipe(
      Effect.retry(Schedule.spaced("1 second")),
      Effect.interruptible,
      Effect.forkScoped
    )
  }

  const commonOf = (key: string, pool: string): Common => [
    keysOf(key, pool),
    initialOf(key, pool),
    minLimit,
    maxLimit,
    decreaseFactor,
    additiveIncrease,
    idleMillis
  ]

  const acquireRedis = redis.eval(acquireScript)
  const releaseRedis = redis.eval(releaseScript)
  const renewRedis = redis.eval(renewScript)
  const limitRedis = redis.eval(limitScript)

  // ---- local fallback
  interface Local {
    readonly semaphore: Semaphore.Semaphore
    share: number
    held: number
    lastKnownLimit: number
  }
  const locals = new Map<string, Local>()
  const localOf = (key: string, pool: string): Local => {
    const id = `${key}\u0000${pool}`
    let local = locals.get(id)
    if (local === undefined) {
      const lastKnownLimit = initialOf(key, pool)
      const share = shareOf(key, pool, lastKnownLimit)
      local = { semaphore: Semaphore.makeUnsafe(share), share, held: 0, lastKnownLimit }
      locals.set(id, local)
    }
    return local
  }
  const shareOf = (key: string, pool: string, lastKnownLimit: number): number => {
    const configured = options.localShare
    const raw = typeof configured === "number"
      ? configured
      : typeof configured === "function"
      ? configured(key, pool, lastKnownLimit)
      : Math.floor(lastKnownLimit / mode.expectedProcesses)
    return Math.max(1, Math.floor(raw))
  }
  const learnLimit = (key: string, pool: string, limit: number) =>
    Effect.suspend(() => {
      const local = localOf(key, pool)
      local.lastKnownLimit = limit
      const share = shareOf(key, pool, limit)
      if (share === local.share) return Effect.void
      local.share = share
      return Semaphore.resize(local.semaphore, share)
    })

  const acquireLocal = (
    key: string,
    pool: string,
    id: string,
    startedAt: number,
    deadline: number,
    scope: Scope.Scope
  ): Effect.Effect<DistributedPermit, DistributedError> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const local = localOf(key, pool)
        const now0 = yield* Clock.currentTimeMillis
        yield* restore(local.semaphore.take(1)).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(Math.max(0, deadline - now0)),
            orElse: () =>
              Effect.fail(new DistributedError({ reason: new AcquireTimeout({ key, pool, waitedMillis: Math.max(0, deadline - startedAt) }) }))
          })
        )
        local.held++
        let released = false
        const release = Effect.suspend(() => {
          if (released) return Effect.void
          released = true
          local.held--
          return local.semaphore.release(1)
        }).pipe(Effect.asVoid)
        yield* Scope.addFinalizer(scope, release)
        const now = yield* Clock.currentTimeMillis
        return {
          key,
          pool,
          id,
          source: "local-fallback",
          limit: local.share,
          waitedMillis: now - startedAt,
          release: Effect.uninterruptible(release)
        } satisfies DistributedPermit
      })
    )

  // ---- shared path

  const cancel = (key: string, pool: string, ticket: string) => {
    const [holders, queue, waiting] = keysOf(key, pool)
    return mode.run("release", releaseRedis(holders, queue, waiting, ticket, channel, pairOf(key, pool))).pipe(
      Effect.catch((e) => Effect.logDebug(`RedisPermits: release of ${ticket} left to its lease (${e.message})`)),
      Effect.asVoid
    )
  }

  const renewUntilLost = (key: string, pool: string, ticket: string): Effect.Effect<void> => {
    const [holders] = keysOf(key, pool)
    const step: Effect.Effect<void> = Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(Duration.millis(Math.max(1, Math.floor(leaseMillis / 3))))
        const renewed = yield* mode.run("renew", renewRedis(holders, ticket, leaseMillis)).pipe(
          Effect.catch(() => Effect.succeed(-1))
        )
        if (renewed === 0) {
          yield* Effect.logWarning(`RedisPermits: the lease of permit ${ticket} (${key}/${pool}) lapsed before its release`)
          return
        }
      }
    })
    return step
  }

  const pollDelay = (attempt: number) =>
    Effect.map(Random.next, (r) => Math.max(1, Math.round(Math.min(pollMax, pollMin * 2 ** attempt) * (0.5 + r / 2))))

  const acquire = (request: AcquireRequest): Effect.Effect<DistributedPermit, DistributedError, Scope.Scope> =>
    Effect.gen(function*() {
      const bad = checkId("key", request.key) ?? checkId("pool", request.pool)
      if (bad !== undefined) return yield* bad
      const timeoutInput = Duration.fromInput(request.timeout ?? queueTimeout)
      if (timeoutInput._tag === "None") return yield* invalid("timeout", "must be a duration")
      const { key, pool } = request
      const scope = yield* Effect.scope
      const startedAt = yield* Clock.currentTimeMillis
      const deadline = startedAt + Duration.toMillis(timeoutInput.value)
      const ticket = `${processId}:${++counter}`

      const fallbackOrFail = (error: DistributedError) =>
        mode.mode === "local-fallback" && error.reason._tag === "RedisUnavailable"
          ? acquireLocal(key, pool, ticket, startedAt, deadline, scope)
          : Effect.fail(error)

      if (mode.stateUnsafe() !== "shared") {
        // In trouble: do not pay a command timeout per call; the ping fiber finds Redis again.
        return yield* fallbackOrFail(unavailable("acquire", "Redis unreachable (recovery pending)"))
      }

      const common = commonOf(key, pool)
      const pair = pairOf(key, pool)
      // Polls until granted, the deadline passes, or Redis goes away.
      const poll: Effect.Effect<{ readonly limit: number }, DistributedError> = Effect.gen(function*() {
        let attempt = 0
        while (true) {
          const waker = wakerOf(pair)
          const [granted, , limit] = yield* mode.run("acquire", acquireRedis(common, ticket, leaseMillis, waiterMillis))
          yield* learnLimit(key, pool, limit)
          if (granted === 1) return { limit }
          const now = yield* Clock.currentTimeMillis
          if (now >= deadline) {
            return yield* new DistributedError({ reason: new AcquireTimeout({ key, pool, waitedMillis: now - startedAt }) })
          }
          const delay = yield* pollDelay(attempt++)
          yield* Effect.raceFirst(
            Effect.sleep(Duration.millis(Math.min(delay, Math.max(1, deadline - now)))),
            Deferred.await(waker)
          )
        }
      })

      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(restore(poll))
          if (Exit.isFailure(exit)) {
            // Interrupted, timed out or Redis gone: the ticket must not stay queued nor hold a permit.
            yield* cancel(key, pool, ticket)
            const error = exit.cause.reasons.find((r) => r._tag === "Fail")
            if (error !== undefined && error._tag === "Fail") return yield* restore(fallbackOrFail(error.error))
            return yield* Effect.failCause(exit.cause)
          }
          let released = false
          const release = Effect.suspend(() => {
            if (released) return Effect.void
            released = true
            return cancel(key, pool, ticket)
          })
          yield* Scope.addFinalizer(scope, release)
          // Forked after the finalizer, so scope close stops it before the release runs.
          yield* Effect.forkIn(renewUntilLost(key, pool, ticket), scope)
          const now = yield* Clock.currentTimeMillis
          return {
            key,
            pool,
            id: ticket,
            source: "shared",
            limit: exit.value.limit,
            waitedMillis: now - startedAt,
            release: Effect.uninterruptible(release)
          } satisfies DistributedPermit
        })
      )
    })

  const runLimit = (
    operation: string,
    key: string,
    pool: string,
    op: "get" | "set" | "limited" | "response",
    a?: number,
    b?: number
  ) =>
    Effect.gen(function*() {
      const bad = checkId("key", key) ?? checkId("pool", pool)
      if (bad !== undefined) return yield* bad
      const r = yield* mode.run(operation, limitRedis(commonOf(key, pool), op, a, b))
      const limit = parseLimit([r[0], r[1], r[2], r[3]])
      yield* learnLimit(key, pool, limit.limit)
      return { limit, held: Number(r[4]), queued: Number(r[5]) }
    })

  // Limit updates are advice: never fail the call, and skip Redis while it is known to be away
  // (a hung Redis would otherwise cost every response a command timeout).
  const advisory = (effect: Effect.Effect<unknown, DistributedError>, what: string) =>
    Effect.suspend(() =>
      mode.stateUnsafe() === "shared"
        ? effect.pipe(
          Effect.asVoid,
          Effect.catch((e) => Effect.logDebug(`RedisPermits: ${what} not shared (${e.message})`))
        )
        : Effect.logDebug(`RedisPermits: ${what} not shared (Redis away)`)
    )

  const finite = (n: number | undefined) => (n !== undefined && Number.isFinite(n) ? n : undefined)

  return RedisPermits.of({
    acquire,
    setLimit: (key, pool, ceiling) =>
      Number.isFinite(ceiling) && ceiling >= 1
        ? Effect.map(runLimit("setLimit", key, pool, "set", ceiling), (r) => r.limit)
        : Effect.fail(invalid("ceiling", "must be a number >= 1")),
    limit: (key, pool) => Effect.map(runLimit("limit", key, pool, "get"), (r) => r.limit),
    onConcurrencyLimited: (key, pool, limitFromServer) =>
      advisory(runLimit("onConcurrencyLimited", key, pool, "limited", finite(limitFromServer)), "decrease"),
    onResponse: (key, pool, signal) =>
      advisory(runLimit("onResponse", key, pool, "response", finite(signal.maximum), finite(signal.current)), "response"),
    snapshot: (key, pool) =>
      Effect.map(runLimit("snapshot", key, pool, "get"), (r) => {
        const local = localOf(key, pool)
        return { key, pool, ...r.limit, held: r.held, queued: r.queued, localHeld: local.held, localShare: local.share }
      })
  })
})

/** Provides {@link RedisPermits} over `Redis` and `RedisMode`. */
export const layer = (options?: Options): Layer.Layer<RedisPermits, never, Redis.Redis | RedisMode> =>
  Layer.effect(RedisPermits, make(options))
