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
 *   `limit` (hash: `estimate`, `ceiling`, `others`, `cap`). Times are Redis `TIME`,
 *   so clock skew between processes does not matter.
 * - Acquire is one Lua script per attempt: drop expired holders and waiters,
 *   then grant when the ticket is among the first `limit − held` tickets of
 *   the queue (a new ticket counts as the last one); otherwise queue it (FIFO
 *   by arrival) and refresh its heartbeat. Release is one script (`ZREM`).
 *   The scripts are in `RedisPermitsLua.ts`.
 * - Waiting is by polling with a backoff from `Clock` (`pollMin` 5 ms doubling
 *   to `pollMax` 100 ms, jittered from `Random`), cut short when a release of
 *   the pair is published; a process that polls faster cannot jump the queue,
 *   because only the first tickets may take a free permit. A waiter that dies
 *   keeps its place only until its heartbeat (`waiterLease`, default =
 *   `lease`) lapses.
 * - Leases: a permit expires `lease` (default 10 s) after its last renewal;
 *   a fiber in the permit's scope renews it every `lease / 3`, so a crashed
 *   process's permits come back within `lease`.
 * - The limit: `setLimit` sets the plan ceiling; `onConcurrencyLimited` and
 *   `onResponse` apply the AIMD rules of `AdaptiveLimit` atomically in Lua,
 *   with `others = current-concurrent-requests − permits held across all
 *   processes`. `setCap` sets a hard cap in the same hash that every script
 *   respects (permits = min(cap, max(minLimit, floor(estimate)))), so it
 *   holds across processes; it expires with the hash when the pair is idle.
 * - Redis trouble: see `RedisMode`. In `local-fallback` each process uses a
 *   local semaphore of `localShare` permits (default
 *   `max(1, floor(lastKnownLimit / expectedProcesses))`, never above the last
 *   cap seen); waiting callers move
 *   to it; held permits finish normally (a release that cannot reach Redis is
 *   left to the lease); see `RedisPermitsLocal`. In `fail-closed` new and
 *   waiting callers fail with `RedisUnavailable`.
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
import { Clock, Context, Deferred, Duration, Effect, Exit, Layer, Queue, Random, Schedule, Scope } from "effect"
import { Redis } from "effect/persistence"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import { limitsOf, type PlanName, type Pool, pools } from "../resilience/Plans.ts"
import { AcquireTimeout, checkId, DistributedError, invalid, unavailable } from "./DistributedError.ts"
import { RedisMode } from "./RedisMode.ts"
import * as RedisPermitsLocal from "./RedisPermitsLocal.ts"
import * as Lua from "./RedisPermitsLua.ts"

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
  /** Permits handed out: `max(minLimit, floor(estimate))`, never above `cap`. */
  readonly limit: number
  readonly estimate: number
  readonly ceiling: number | undefined
  readonly others: number
  /** The hard cap every process respects ({@link RedisPermits} `setCap`); absent when none is set. */
  readonly cap?: number | undefined
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

/** Service tag of {@link RedisPermits["Service"]}. */
export class RedisPermits extends Context.Service<RedisPermits, {
  /** Takes a permit until the scope closes (or `release`). */
  readonly acquire: (request: AcquireRequest) => Effect.Effect<DistributedPermit, DistributedError, Scope.Scope>
  /** Sets the plan's ceiling for (key, pool) (first ceiling: estimate = ceiling; raise: +difference; cut: clamp). */
  readonly setLimit: (key: string, pool: string, ceiling: number) => Effect.Effect<SharedLimit, DistributedError>
  /**
   * Sets (an integer >= 1) or, with `undefined`, removes the hard cap of (key, pool), shared by every process:
   * no ceiling, header or increase lifts the limit above it; the estimate learns on below it. It lives in the
   * pair's `limit` hash, so it is forgotten with the pair after `idleTimeToLive` without updates.
   */
  readonly setCap: (key: string, pool: string, cap: number | undefined) => Effect.Effect<SharedLimit, DistributedError>
  /** The current shared limit. */
  readonly limit: (key: string, pool: string) => Effect.Effect<SharedLimit, DistributedError>
  /** A 429 `too_many_concurrent_requests`: multiplicative decrease (the server's number, when given, is the ceiling). */
  readonly onConcurrencyLimited: (
    key: string,
    pool: string,
    limitFromServer?: number | undefined
  ) => Effect.Effect<void>
  /** A successful response: ceiling, others and additive increase when saturated. */
  readonly onResponse: (key: string, pool: string, signal: ResponseSignal) => Effect.Effect<void>
  readonly snapshot: (key: string, pool: string) => Effect.Effect<Snapshot, DistributedError>
}>()(
  "elevenlabs-resilience/distributed/RedisPermits"
) {}

/** @deprecated The shape of {@link RedisPermits}: use `RedisPermits["Service"]` (one name per service, Effect's convention). */
export type RedisPermitsService = RedisPermits["Service"]

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
// Settings and scripts (the Lua is in RedisPermitsLua.ts)
// ---------------------------------------------------------------------------

const millisOf = (input: Duration.Input): number =>
  Math.max(1, Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(input))))

const isKnownPool = (pool: string): pool is Pool => (pools as ReadonlyArray<string>).includes(pool)

/** The options with their defaults; undefined when the AIMD tuning is out of range. */
const settingsOf = (options: Options, expectedProcesses: number) => {
  const minLimit = options.minLimit ?? 1
  const maxLimit = options.maxLimit ?? 1000
  const decreaseFactor = options.decreaseFactor ?? 0.9
  const additiveIncrease = options.additiveIncrease ?? 1
  if (!(minLimit >= 1 && maxLimit >= minLimit && decreaseFactor > 0 && decreaseFactor < 1 && additiveIncrease > 0)) {
    return undefined
  }
  const plan = options.plan ?? "free"
  const pollMin = millisOf(options.pollMin ?? "5 millis")
  return {
    prefix: options.prefix ?? "elevenlabs-resilience:permits:",
    leaseMillis: millisOf(options.lease ?? "10 seconds"),
    waiterMillis: millisOf(options.waiterLease ?? options.lease ?? "10 seconds"),
    idleMillis: millisOf(options.idleTimeToLive ?? "1 hour"),
    queueTimeout: Duration.fromInputUnsafe(options.queueTimeout ?? "120 seconds"),
    pollMin,
    pollMax: Math.max(pollMin, millisOf(options.pollMax ?? "100 millis")),
    tuning: [minLimit, maxLimit, decreaseFactor, additiveIncrease] as const,
    initialOf: (key: string, pool: string): number => {
      const configured = options.initialLimit
      if (typeof configured === "number") return configured
      if (typeof configured === "function") return configured(key, pool)
      return isKnownPool(pool) ? Math.max(1, limitsOf(plan)[pool]) : 1
    },
    shareOf: (key: string, pool: string, lastKnownLimit: number): number => {
      const configured = options.localShare
      const raw = typeof configured === "number"
        ? configured
        : typeof configured === "function"
        ? configured(key, pool, lastKnownLimit)
        : Math.floor(lastKnownLimit / expectedProcesses)
      return Math.max(1, Math.floor(raw))
    }
  }
}
type Settings = NonNullable<ReturnType<typeof settingsOf>>

// Each script takes its KEYS, then its ARGV (see RedisPermitsLua.ts).
const script = <A>(lua: string, numberOfKeys: number) =>
  Redis.script((...args: ReadonlyArray<string | number>) => args, { lua, numberOfKeys }).withReturnType<A>()

const acquireScript = script<readonly [granted: number, held: number, permits: number, rank: number, cap: number]>(
  Lua.acquire,
  5
)
const releaseScript = script<number>(Lua.release, 3)
const renewScript = script<number>(Lua.renew, 1)
type LimitOp = "get" | "set" | "limited" | "response" | "cap"
const limitScript = script<
  readonly [
    estimate: string,
    ceiling: string,
    others: string,
    permits: number,
    held: number,
    queued: number,
    cap: number
  ]
>(Lua.limit, 5)

/** The scripts bound to the settings, each for one (key, pool). */
const commandsOf = (redis: Redis.Redis["Service"], s: Settings) => {
  const acquire = redis.eval(acquireScript)
  const release = redis.eval(releaseScript)
  const renew = redis.eval(renewScript)
  const limit = redis.eval(limitScript)
  const channel = `${s.prefix}released`
  // The limit-reading scripts' KEYS and first six ARGV.
  const commonOf = (key: string, pool: string) =>
    [...Lua.keysOf(s.prefix, key, pool), s.initialOf(key, pool), ...s.tuning, s.idleMillis] as const
  return {
    channel,
    acquire: (key: string, pool: string, ticket: string) =>
      acquire(...commonOf(key, pool), ticket, s.leaseMillis, s.waiterMillis),
    // Publishes the pair, which wakes its waiters (see makeWakers).
    release: (key: string, pool: string, ticket: string) =>
      release(...Lua.keysOf(s.prefix, key, pool).slice(0, 3), ticket, channel, `${key}:${pool}`),
    renew: (key: string, pool: string, ticket: string) =>
      renew(Lua.keysOf(s.prefix, key, pool)[0], ticket, s.leaseMillis),
    limit: (key: string, pool: string, op: LimitOp, a?: number, b?: number) =>
      limit(...commonOf(key, pool), op, a ?? "", b ?? "")
  }
}
type Commands = ReturnType<typeof commandsOf>

/** The concurrency headers of a response as a {@link ResponseSignal}. */
export const signalOf = (meta: ResponseMeta): ResponseSignal => ({
  maximum: meta.maximumConcurrentRequests,
  current: meta.currentConcurrentRequests
})

const finite = (n: number | undefined) => (n !== undefined && Number.isFinite(n) ? n : undefined)

/** The cap the scripts return: 0 when none is set. */
const capOf = (raw: number | undefined): number | undefined => {
  const n = Number(raw)
  return Number.isFinite(n) && n >= 1 ? n : undefined
}

// ---------------------------------------------------------------------------
// Waiting and holding a shared permit
// ---------------------------------------------------------------------------

/**
 * Wake-ups: one Deferred per pair, completed (and replaced) when a release of
 * that pair is published. Waiters take the current one before each attempt,
 * so a release between their attempt and their sleep is not missed.
 */
const makeWakers = Effect.fnUntraced(function*(redis: Redis.Redis["Service"], channel: string, notify: boolean) {
  const wakers = new Map<string, Deferred.Deferred<void>>()
  if (notify) {
    // One subscriber connection per process; polling still covers lost messages and lapsed leases.
    yield* Effect.scoped(
      Effect.gen(function*() {
        const messages = yield* redis.subscribe(channel)
        while (true) {
          const { message } = yield* Queue.take(messages)
          const d = wakers.get(message)
          if (d !== undefined) {
            wakers.delete(message)
            yield* Deferred.succeed(d, undefined)
          }
        }
      })
    ).pipe(Effect.retry(Schedule.spaced("1 second")), Effect.interruptible, Effect.forkScoped)
  }
  return (pair: string): Deferred.Deferred<void> => {
    let d = wakers.get(pair)
    if (d === undefined) {
      d = Deferred.makeUnsafe<void>()
      wakers.set(pair, d)
    }
    return d
  }
})

interface Ticket {
  readonly key: string
  readonly pool: string
  readonly id: string
  readonly startedAt: number
  readonly deadline: number
}

/**
 * Takes a permit of the shared limit for `ticket` until `scope` closes: polls
 * until granted, the deadline passes, or Redis goes away. A wait that fails or
 * is interrupted takes its ticket back out of Redis.
 */
const makeAcquireShared = (deps: {
  readonly mode: RedisMode["Service"]
  readonly settings: Settings
  readonly commands: Commands
  readonly wakerOf: (pair: string) => Deferred.Deferred<void>
  readonly learnLimit: (key: string, pool: string, limit: number, cap: number | undefined) => Effect.Effect<void>
}) => {
  const { commands, mode, settings: s } = deps

  const cancel = ({ id, key, pool }: Ticket) =>
    mode.run("release", commands.release(key, pool, id)).pipe(
      Effect.catch((e) => Effect.logDebug(`RedisPermits: release of ${id} left to its lease (${e.message})`)),
      Effect.asVoid
    )

  const renewUntilLost = ({ id, key, pool }: Ticket): Effect.Effect<void> =>
    Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(Duration.millis(Math.max(1, Math.floor(s.leaseMillis / 3))))
        const renewed = yield* mode.run("renew", commands.renew(key, pool, id)).pipe(
          Effect.catch(() => Effect.succeed(-1))
        )
        if (renewed === 0) {
          return yield* Effect.logWarning(
            `RedisPermits: the lease of permit ${id} (${key}/${pool}) lapsed before its release`
          )
        }
      }
    })

  const pollDelay = (attempt: number) =>
    Effect.map(
      Random.next,
      (r) => Math.max(1, Math.round(Math.min(s.pollMax, s.pollMin * 2 ** attempt) * (0.5 + r / 2)))
    )

  // Returns the limit the permit was granted under.
  const pollUntilGranted = ({ deadline, id, key, pool, startedAt }: Ticket) =>
    Effect.gen(function*() {
      let attempt = 0
      while (true) {
        const waker = deps.wakerOf(`${key}:${pool}`)
        const [granted, , limit, , cap] = yield* mode.run("acquire", commands.acquire(key, pool, id))
        yield* deps.learnLimit(key, pool, limit, capOf(cap))
        if (granted === 1) return limit
        const now = yield* Clock.currentTimeMillis
        if (now >= deadline) {
          return yield* new DistributedError({
            reason: new AcquireTimeout({ key, pool, waitedMillis: now - startedAt })
          })
        }
        const delay = yield* pollDelay(attempt++)
        yield* Effect.raceFirst(
          Effect.sleep(Duration.millis(Math.min(delay, Math.max(1, deadline - now)))),
          Deferred.await(waker)
        )
      }
    })

  return (ticket: Ticket, scope: Scope.Scope): Effect.Effect<DistributedPermit, DistributedError> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(restore(pollUntilGranted(ticket)))
        if (Exit.isFailure(exit)) {
          // Interrupted, timed out or Redis gone: the ticket must not stay queued nor hold a permit.
          yield* cancel(ticket)
          return yield* Effect.failCause(exit.cause)
        }
        let released = false
        const release = Effect.suspend(() => {
          if (released) return Effect.void
          released = true
          return cancel(ticket)
        })
        yield* Scope.addFinalizer(scope, release)
        // Forked after the finalizer, so scope close stops it before the release runs.
        yield* Effect.forkIn(renewUntilLost(ticket), scope)
        const now = yield* Clock.currentTimeMillis
        return {
          key: ticket.key,
          pool: ticket.pool,
          id: ticket.id,
          source: "shared",
          limit: exit.value,
          waitedMillis: now - ticket.startedAt,
          release: Effect.uninterruptible(release)
        } satisfies DistributedPermit
      })
    )
}

// ---------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------

/** Builds the service over `Redis` and `RedisMode`. Needs a `Scope` (renewal fibers of permits live in theirs). */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const redis = yield* Redis.Redis
  const mode = yield* RedisMode
  const settings = settingsOf(options, mode.expectedProcesses)
  if (settings === undefined) {
    return yield* Effect.die(
      new RangeError("RedisPermits: need 1 <= minLimit <= maxLimit, 0 < decreaseFactor < 1, additiveIncrease > 0")
    )
  }
  // A random process id keeps tickets of different processes apart.
  const processId = (yield* Random.nextInt).toString(36) + (yield* Random.nextInt).toString(36)
  let counter = 0
  const local = RedisPermitsLocal.make(settings)
  const commands = commandsOf(redis, settings)
  const acquireShared = makeAcquireShared({
    mode,
    settings,
    commands,
    wakerOf: yield* makeWakers(redis, commands.channel, options.notify ?? true),
    learnLimit: local.learnLimit
  })

  const acquire = (request: AcquireRequest): Effect.Effect<DistributedPermit, DistributedError, Scope.Scope> =>
    Effect.gen(function*() {
      const bad = checkId("key", request.key) ?? checkId("pool", request.pool)
      if (bad !== undefined) return yield* bad
      const timeout = Duration.fromInput(request.timeout ?? settings.queueTimeout)
      if (timeout._tag === "None") return yield* invalid("timeout", "must be a duration")
      const scope = yield* Effect.scope
      const startedAt = yield* Clock.currentTimeMillis
      const ticket: Ticket = {
        key: request.key,
        pool: request.pool,
        id: `${processId}:${++counter}`,
        startedAt,
        deadline: startedAt + Duration.toMillis(timeout.value)
      }
      const fallbackOrFail = (error: DistributedError) =>
        mode.mode === "local-fallback" && error.reason._tag === "RedisUnavailable"
          ? local.acquire(ticket, scope)
          : Effect.fail(error)
      // In trouble: do not pay a command timeout per call; the ping fiber finds Redis again.
      if (mode.stateUnsafe() !== "shared") {
        return yield* fallbackOrFail(unavailable("acquire", "Redis unreachable (recovery pending)"))
      }
      return yield* acquireShared(ticket, scope).pipe(Effect.catch(fallbackOrFail))
    })

  const runLimit = (operation: string, key: string, pool: string, op: LimitOp, a?: number, b?: number) =>
    Effect.gen(function*() {
      const bad = checkId("key", key) ?? checkId("pool", pool)
      if (bad !== undefined) return yield* bad
      const [estimate, ceiling, others, limit, held, queued, rawCap] = yield* mode.run(
        operation,
        commands.limit(key, pool, op, a, b)
      )
      const cap = capOf(rawCap)
      yield* local.learnLimit(key, pool, limit, cap)
      const shared: SharedLimit = {
        estimate: Number(estimate),
        ceiling: ceiling === "" ? undefined : Number(ceiling),
        others: Number(others),
        limit: Number(limit),
        ...(cap === undefined ? {} : { cap })
      }
      return { limit: shared, held: Number(held), queued: Number(queued) }
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

  return RedisPermits.of({
    acquire,
    setLimit: (key, pool, ceiling) =>
      Number.isFinite(ceiling) && ceiling >= 1
        ? Effect.map(runLimit("setLimit", key, pool, "set", ceiling), (r) => r.limit)
        : Effect.fail(invalid("ceiling", "must be a number >= 1")),
    setCap: (key, pool, cap) =>
      cap === undefined || (Number.isInteger(cap) && cap >= 1)
        ? Effect.map(runLimit("setCap", key, pool, "cap", cap), (r) => r.limit)
        : Effect.fail(invalid("cap", "must be an integer >= 1, or undefined to remove it")),
    limit: (key, pool) => Effect.map(runLimit("limit", key, pool, "get"), (r) => r.limit),
    onConcurrencyLimited: (key, pool, limitFromServer) =>
      advisory(runLimit("onConcurrencyLimited", key, pool, "limited", finite(limitFromServer)), "decrease"),
    onResponse: (key, pool, signal) =>
      advisory(
        runLimit("onResponse", key, pool, "response", finite(signal.maximum), finite(signal.current)),
        "response"
      ),
    snapshot: (key, pool) =>
      Effect.map(
        runLimit("snapshot", key, pool, "get"),
        (r) => ({ key, pool, ...r.limit, held: r.held, queued: r.queued, ...local.view(key, pool) })
      )
  })
})

/** Provides {@link RedisPermits} over `Redis` and `RedisMode`. */
export const layer = (options?: Options): Layer.Layer<RedisPermits, never, Redis.Redis | RedisMode> =>
  Layer.effect(RedisPermits, make(options))
