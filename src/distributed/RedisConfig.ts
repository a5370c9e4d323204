/**
 * Live configuration in Redis: a versioned configuration document per
 * account, published by `config deploy` / `config rollback` and followed by
 * every process, plus the per-version outcome counters a deploy watches to
 * decide whether to roll back.
 *
 * **Details**
 *
 * - Data (under `prefix`, default `"elevenlabs-resilience:config:"`, hash tag
 *   `{account}` so an account lives on one cluster slot): `seq` (the version
 *   counter), `versions` (hash: version → JSON of the {@link ConfigVersion}),
 *   `current` (the current version number) and
 *   `outcomes:<version>:<second>` (hashes `calls`, `errors`, `breakerOpens`,
 *   expiring after 1 hour). The channel `changed` carries the new current
 *   version number. The scripts are in `RedisConfigLua.ts`.
 * - `publish` is one script: check `expectCurrent`, `INCR seq`, store the
 *   record, set `current`, `PUBLISH`. Two deploys that expect the same current
 *   version cannot both win: the loser fails with `VersionConflict` and leaves
 *   no trace. A rollback is a new version (`kind: "rollback"`, `restores: n`)
 *   carrying the restored document, so versions only grow and the history
 *   keeps every step.
 * - Times (`at`, outcome buckets, `now`) are Redis `TIME`, never a process's
 *   clock.
 * - `changes` opens one subscriber connection per running stream
 *   (`Redis.subscribe`, node-redis duplicates the client) and reads the record
 *   on each message and on each poll, so a missed message or a reconnect costs
 *   at most one poll interval.
 *
 * **Gotchas**
 *
 * - The document is stored as the JSON text of what was published (so
 *   `undefined` fields vanish and `NaN` becomes `null`, as with any JSON). It
 *   is never logged nor put in an error message.
 * - Versions never expire; outcome buckets do (1 hour), so `outcomes` sees at
 *   most the last hour. Buckets are whole seconds: the bucket holding
 *   `sinceMillis` counts whole.
 * - Errors: an unreachable or slow Redis is `RedisUnavailable`, a Redis error
 *   reply or a malformed stored record is `RedisCommandFailed`, bad input is
 *   `InvalidDistributedRequest`. This store does not go through `RedisMode`
 *   (the CLI has none); its commands are bounded by `commandTimeout`.
 *
 * @example
 * ```ts
 * const store = yield* RedisConfig.RedisConfigStore
 * const v = yield* store.publish("acct-1", { document, author: "ops", kind: "deploy", reason: "plan upgrade" }, {
 *   expectCurrent: 4
 * })
 * yield* store.changes("acct-1").pipe(Stream.runForEach(apply))
 * ```
 *
 * @since 0.1.0
 */
import { Context, Deferred, Duration, Effect, Layer, Queue, Result, Schedule, Schema, Stream } from "effect"
import { Redis } from "effect/persistence"
import {
  checkId,
  DistributedError,
  invalid,
  RedisCommandFailed,
  unavailable,
  VersionConflict
} from "./DistributedError.ts"
import * as Lua from "./RedisConfigLua.ts"

/** One published version of an account's configuration. */
export interface ConfigVersion {
  /** 1, 2, 3 ... per account. */
  readonly version: number
  /** The raw JSON configuration document, exactly as published. */
  readonly document: unknown
  readonly author: string
  /** Epoch millis from Redis `TIME`. */
  readonly at: number
  readonly kind: "deploy" | "rollback"
  /** Free text: "plan upgrade", "rolled back: error rate 12 % > 5 %". */
  readonly reason: string
  /** A rollback: the version whose document it republishes. */
  readonly restores?: number | undefined
  /** The version that was current before this one. */
  readonly previous?: number | undefined
}

/** What {@link Service.publish} publishes. */
export interface PublishInput {
  /** Any JSON-serializable value. */
  readonly document: unknown
  /** Who published (non-empty, at most 200 characters). */
  readonly author: string
  readonly kind: "deploy" | "rollback"
  /** At most 2000 characters. */
  readonly reason: string
  /** Only with `kind: "rollback"`: an existing version whose document this republishes. */
  readonly restores?: number | undefined
}

/** Outcomes of calls made under one version. */
export interface Outcomes {
  readonly calls: number
  readonly errors: number
  readonly breakerOpens: number
}

/** The configuration store. */
export interface Service {
  /**
   * Atomically (one Lua script): next version = `INCR seq`, store the record, set current, `PUBLISH`.
   * With `expectCurrent` (0 = nothing published yet), fails with `VersionConflict` when the current
   * version is another one, so two deploys cannot both win.
   */
  readonly publish: (
    account: string,
    input: PublishInput,
    options?: { readonly expectCurrent?: number | undefined }
  ) => Effect.Effect<ConfigVersion, DistributedError>
  readonly current: (account: string) => Effect.Effect<ConfigVersion | undefined, DistributedError>
  readonly get: (account: string, version: number) => Effect.Effect<ConfigVersion | undefined, DistributedError>
  /** Newest first; `limit` default 20. */
  readonly history: (
    account: string,
    options?: { readonly limit?: number | undefined }
  ) => Effect.Effect<ReadonlyArray<ConfigVersion>, DistributedError>
  /**
   * The current version when the stream starts (if any), then each new current version: woken by the
   * pub/sub message, with a poll (default every 5 s, option `poll`) as a safety net for a missed message
   * or a reconnect. Never emits the same version twice in a row; reads the record (not the message).
   * Fails when the first read fails; later failed reads are retried at the next wake-up or poll.
   */
  readonly changes: (
    account: string,
    options?: { readonly poll?: Duration.Input | undefined }
  ) => Stream.Stream<ConfigVersion, DistributedError>
  /** Adds a process's outcomes for a version to the bucket of the current second (Redis `TIME`); buckets expire after 1 hour. */
  readonly recordOutcomes: (
    account: string,
    version: number,
    outcomes: Outcomes
  ) => Effect.Effect<void, DistributedError>
  /** The sum of the buckets of `version` from `sinceMillis` (epoch ms, Redis time) to now. */
  readonly outcomes: (
    account: string,
    version: number,
    sinceMillis: number
  ) => Effect.Effect<Outcomes, DistributedError>
  /** Redis `TIME` in epoch millis (the deploy command measures its watch window on it). */
  readonly now: Effect.Effect<number, DistributedError>
}

/** Service tag of {@link Service}. */
export class RedisConfigStore extends Context.Service<RedisConfigStore, Service>()(
  "elevenlabs-resilience/distributed/RedisConfigStore"
) {}

/** Options of {@link make}. */
export interface Options {
  /** Key prefix. Default `"elevenlabs-resilience:config:"`. */
  readonly prefix?: string | undefined
  /** Upper bound of one Redis command (a hung Redis fails with `RedisUnavailable`). Default 2 seconds. */
  readonly commandTimeout?: Duration.Input | undefined
}

/** How long an outcome bucket lives, in seconds (and so how far back `outcomes` can see). */
export const outcomesTimeToLiveSeconds = 3600

// ---------------------------------------------------------------------------
// Records and scripts
// ---------------------------------------------------------------------------

const PositiveInt = Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0)))

// The stored record; checked on every read, so a hand-edited or foreign value fails typed instead of leaking out.
const StoredRecord = Schema.Struct({
  version: PositiveInt,
  document: Schema.Unknown,
  author: Schema.String,
  at: Schema.Number,
  kind: Schema.Literals(["deploy", "rollback"]),
  reason: Schema.String,
  restores: Schema.optionalKey(PositiveInt),
  previous: Schema.optionalKey(PositiveInt)
})
const isStoredRecord = Schema.is(StoredRecord)

const script = <A>(lua: string, numberOfKeys: number) =>
  Redis.script((...args: ReadonlyArray<string | number>) => args, { lua, numberOfKeys }).withReturnType<A>()

const publishScript = script<readonly ["ok", string] | readonly ["conflict", number] | readonly ["missing", number]>(
  Lua.publish,
  3
)
const currentScript = script<readonly [] | readonly [string, string | null]>(Lua.current, 2)
const historyScript = script<ReadonlyArray<string>>(Lua.history, 2)
const recordScript = script<number>(Lua.record, 1)
const sumScript = script<readonly [string, string, string]>(Lua.sum, 1)

const millisOf = (input: Duration.Input): number =>
  Math.max(1, Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(input))))

const describe = (
  cause: unknown
): string => (cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause))

/** Whether a Redis error is an answer from the server (so Redis is up); as `RedisMode` tells them apart. */
const isReply = (cause: unknown): boolean =>
  cause instanceof Error && (cause.name === "ErrorReply" || cause.constructor.name === "ErrorReply" ||
    /^(ERR|WRONGTYPE|NOSCRIPT|BUSY|NOPERM)\b/.test(cause.message))

const malformed = (operation: string, what: string): DistributedError =>
  new DistributedError({ reason: new RedisCommandFailed({ operation, message: `malformed record: ${what}` }) })

/** A stored record as a {@link ConfigVersion}; the message never quotes the record (it holds the document). */
const decode = (operation: string, text: string): Effect.Effect<ConfigVersion, DistributedError> =>
  Effect.suspend(() => {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return Effect.fail(malformed(operation, "not JSON"))
    }
    return isStoredRecord(parsed) ? Effect.succeed(parsed) : Effect.fail(malformed(operation, "unexpected shape"))
  })

const isPositiveInt = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) > 0
const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0

/** The record's fields a publisher chooses, as JSON: checked here, spliced into the record by the script. */
const encodeInput = (input: PublishInput): Result.Result<{ meta: string; document: string }, DistributedError> => {
  if (typeof input.author !== "string" || input.author.length === 0 || input.author.length > 200) {
    return Result.fail(invalid("author", "must be a non-empty string of at most 200 characters"))
  }
  if (input.kind !== "deploy" && input.kind !== "rollback") {
    return Result.fail(invalid("kind", "must be \"deploy\" or \"rollback\""))
  }
  if (typeof input.reason !== "string" || input.reason.length > 2000) {
    return Result.fail(invalid("reason", "must be a string of at most 2000 characters"))
  }
  if (input.restores !== undefined) {
    if (input.kind !== "rollback") return Result.fail(invalid("restores", "only a rollback restores a version"))
    if (!isPositiveInt(input.restores)) return Result.fail(invalid("restores", "must be a positive integer"))
  }
  let document: string | undefined
  try {
    document = JSON.stringify(input.document)
  } catch {
    // The thrown message may quote part of the document: keep it out.
    document = undefined
  }
  if (document === undefined) return Result.fail(invalid("document", "must be JSON-serializable"))
  const meta = JSON.stringify({
    author: input.author,
    kind: input.kind,
    reason: input.reason,
    ...(input.restores === undefined ? {} : { restores: input.restores })
  })
  return Result.succeed({ meta, document })
}

/**
 * The current version, then each new one: `read` runs at start, on each
 * message of `channel` and every `poll`. Needs the stream's scope (the
 * subscriber fiber lives in it).
 */
const follow = (deps: {
  readonly redis: Redis.Redis["Service"]
  readonly channel: string
  readonly read: Effect.Effect<ConfigVersion | undefined, DistributedError>
  readonly poll: Duration.Duration
  readonly subscribeWait: Duration.Duration
  readonly what: string
}): Stream.Stream<ConfigVersion, DistributedError> =>
  Stream.unwrap(Effect.gen(function*() {
    // At most one pending wake-up: a burst of messages costs one read.
    const wake = yield* Queue.sliding<void>(1)
    const subscribed = yield* Deferred.make<void>()
    let subscriptions = 0
    // A dead subscriber connection is replaced; a read after each re-subscription catches what was
    // published in between.
    yield* Effect.scoped(Effect.gen(function*() {
      const messages = yield* deps.redis.subscribe(deps.channel)
      if (subscriptions++ > 0) yield* Queue.offer(wake, undefined)
      yield* Deferred.succeed(subscribed, undefined)
      while (true) {
        yield* Queue.take(messages)
        yield* Queue.offer(wake, undefined)
      }
    })).pipe(
      Effect.retry(Schedule.spaced("1 second")),
      Effect.onExit(() => Deferred.succeed(subscribed, undefined)),
      Effect.interruptible,
      Effect.forkScoped
    )
    // Subscribed before the first read, so a publish right after it is not missed (bounded: the poll covers it).
    yield* Deferred.await(subscribed).pipe(
      Effect.timeoutOrElse({ duration: deps.subscribeWait, orElse: () => Effect.void })
    )
    const first = yield* deps.read
    let last = first?.version
    const next = Effect.gen(function*() {
      while (true) {
        yield* Effect.raceFirst(Queue.take(wake), Effect.sleep(deps.poll))
        const read = yield* Effect.result(deps.read)
        if (Result.isFailure(read)) {
          yield* Effect.logDebug(
            `RedisConfig: reading the current version of ${deps.what} failed (${read.failure.message})`
          )
          continue
        }
        const now = read.success
        if (now !== undefined && now.version !== last) {
          last = now.version
          return now
        }
      }
    })
    return Stream.concat(Stream.fromIterable(first === undefined ? [] : [first]), Stream.fromEffectRepeat(next))
  }))

// ---------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------

/** Builds the store over `Redis`. */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const redis = yield* Redis.Redis
  const prefix = options.prefix ?? "elevenlabs-resilience:config:"
  const commandTimeout = Duration.millis(millisOf(options.commandTimeout ?? "2 seconds"))
  const publishRedis = redis.eval(publishScript)
  const currentRedis = redis.eval(currentScript)
  const historyRedis = redis.eval(historyScript)
  const recordRedis = redis.eval(recordScript)
  const sumRedis = redis.eval(sumScript)

  const run = <A>(operation: string, command: Effect.Effect<A, Redis.RedisError>): Effect.Effect<A, DistributedError> =>
    command.pipe(
      Effect.mapError((e) =>
        isReply(e.cause)
          ? new DistributedError({ reason: new RedisCommandFailed({ operation, message: describe(e.cause) }) })
          : unavailable(operation, describe(e.cause))
      ),
      Effect.timeoutOrElse({
        duration: commandTimeout,
        orElse: () => Effect.fail(unavailable(operation, `no answer within ${Duration.format(commandTimeout)}`))
      })
    )

  const keysOf = (account: string) =>
    Effect.suspend(() => {
      const bad = checkId("account", account)
      return bad === undefined ? Effect.succeed(Lua.keysOf(prefix, account)) : Effect.fail(bad)
    })

  const checkVersion = (field: string, version: number) =>
    isPositiveInt(version) ? Effect.void : Effect.fail(invalid(field, "must be a positive integer"))

  const publish: Service["publish"] = (account, input, publishOptions) =>
    Effect.gen(function*() {
      const keys = yield* keysOf(account)
      const expect = publishOptions?.expectCurrent
      if (expect !== undefined && !isCount(expect)) {
        return yield* invalid("expectCurrent", "must be a non-negative integer (0: nothing published yet)")
      }
      const encoded = encodeInput(input)
      if (Result.isFailure(encoded)) return yield* encoded.failure
      const { document, meta } = encoded.success
      const reply = yield* run(
        "publish",
        publishRedis(
          keys.seq,
          keys.versions,
          keys.current,
          expect ?? "",
          meta,
          document,
          input.restores ?? "",
          keys.channel
        )
      )
      switch (reply[0]) {
        case "ok":
          return yield* decode("publish", reply[1])
        case "conflict":
          return yield* new DistributedError({
            reason: new VersionConflict({ account, expected: expect ?? 0, actual: Number(reply[1]) })
          })
        case "missing":
          return yield* invalid("restores", `version ${input.restores} of ${account} does not exist`)
      }
    })

  const current: Service["current"] = (account) =>
    Effect.gen(function*() {
      const keys = yield* keysOf(account)
      const reply = yield* run("current", currentRedis(keys.versions, keys.current))
      if (reply.length === 0) return undefined
      const [version, record] = reply
      // `current` names a version without a record: only a hand edit does that.
      if (typeof record !== "string") return yield* malformed("current", `current version ${version} has no record`)
      return yield* decode("current", record)
    })

  const get: Service["get"] = (account, version) =>
    Effect.gen(function*() {
      const keys = yield* keysOf(account)
      yield* checkVersion("version", version)
      const record = yield* run("get", redis.send<string | null>("HGET", keys.versions, String(version)))
      return typeof record === "string" ? yield* decode("get", record) : undefined
    })

  const history: Service["history"] = (account, historyOptions) =>
    Effect.gen(function*() {
      const keys = yield* keysOf(account)
      const limit = historyOptions?.limit ?? 20
      yield* checkVersion("limit", limit)
      const records = yield* run("history", historyRedis(keys.seq, keys.versions, limit))
      return yield* Effect.forEach(records, (record) => decode("history", record))
    })

  const changes: Service["changes"] = (account, changesOptions) =>
    Stream.unwrap(Effect.map(keysOf(account), (keys) =>
      follow({
        redis,
        channel: keys.channel,
        read: current(account),
        poll: Duration.millis(millisOf(changesOptions?.poll ?? "5 seconds")),
        subscribeWait: commandTimeout,
        what: account
      })))

  const recordOutcomes: Service["recordOutcomes"] = (account, version, outcomes) =>
    Effect.gen(function*() {
      const keys = yield* keysOf(account)
      yield* checkVersion("version", version)
      const { breakerOpens, calls, errors } = outcomes
      if (!isCount(calls) || !isCount(errors) || !isCount(breakerOpens)) {
        return yield* invalid("outcomes", "calls, errors and breakerOpens must be non-negative integers")
      }
      if (calls === 0 && errors === 0 && breakerOpens === 0) return
      yield* run(
        "recordOutcomes",
        recordRedis(keys.outcomes(version), calls, errors, breakerOpens, outcomesTimeToLiveSeconds)
      )
    })

  const outcomes: Service["outcomes"] = (account, version, sinceMillis) =>
    Effect.gen(function*() {
      const keys = yield* keysOf(account)
      yield* checkVersion("version", version)
      if (!Number.isFinite(sinceMillis) || sinceMillis < 0) {
        return yield* invalid("sinceMillis", "must be epoch milliseconds")
      }
      const [calls, errors, breakerOpens] = yield* run(
        "outcomes",
        sumRedis(keys.outcomes(version), Math.floor(sinceMillis), outcomesTimeToLiveSeconds)
      )
      return { calls: Number(calls), errors: Number(errors), breakerOpens: Number(breakerOpens) }
    })

  const now: Service["now"] = Effect.map(
    run("now", redis.send<readonly [string, string]>("TIME")),
    ([seconds, micros]) => Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
  )

  return RedisConfigStore.of({ publish, current, get, history, changes, recordOutcomes, outcomes, now })
})

/** Provides {@link RedisConfigStore} over `Redis`. */
export const layer = (options?: Options): Layer.Layer<RedisConfigStore, never, Redis.Redis> =>
  Layer.effect(RedisConfigStore, make(options))
