/**
 * Live configuration: a running stack follows a configuration source and
 * applies each new version without a restart (docs/deployment.md).
 *
 * **Details**
 *
 * - Sources: a JSON file of the file form (`ResilienceConfig`), re-read when
 *   its content changes (polled on `Clock`, default every 500 ms: editors
 *   replace files by renaming, which file watchers miss), or the versioned
 *   document of the account in Redis (`RedisConfig`: woken by its change
 *   notification, polled as a safety net), which `config deploy` publishes.
 * - Each version is validated as a file is at start (schema and cross-field
 *   checks, `strict` optional), with the process's `ELEVENLABS_*` variables
 *   over it (the environment wins field by field, as at start). An invalid
 *   version is refused: a warning log line, `elevenlabs_config_changes_total`
 *   with `result="refused"`, and the refusal in {@link Status}; the running
 *   version stays.
 * - Telemetry: `elevenlabs_config_version` (gauge, 0 for the start
 *   configuration), `elevenlabs_config_changes_total{result}`, a span
 *   `elevenlabs.config.apply` and a log line per version applied or refused;
 *   `ResilientTelemetry` adds the {@link Status} to `/health` under `config`.
 * - A valid version is applied in place (`Pipeline.reconfigure` and the
 *   attempt timeouts): limits, caps, lanes, queue bounds, retries and budget,
 *   breaker and quota thresholds, the deadline and the attempt timeouts.
 *   Permits and queued calls survive; a lower limit drains.
 * - Not live: the API key, the base URL, Redis, telemetry, the cache and
 *   coalescing, and switching a policy on or off. A version that changes one
 *   of them is applied for the rest, and the fields are listed in
 *   `pendingRestart` and in the log line.
 * - A Redis version whose document is `null` means "back to the start
 *   configuration" (the rollback of an account's first deploy).
 * - With the Redis source, the process adds its calls, failed calls and
 *   breaker openings per version to Redis every second, which `config deploy`
 *   watches.
 *
 * @since 0.2.0
 */
import {
  Clock,
  Data,
  Duration,
  Effect,
  FileSystem,
  Option,
  Predicate,
  PubSub,
  type Redacted,
  Ref,
  Schedule,
  type Scope,
  Stream
} from "effect"
import { type AttemptTimeouts, attemptTimeoutsOf } from "../client/ClientWire.ts"
import * as RedisConfig from "../distributed/RedisConfig.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import type { CheckOptions } from "./ConfigChecks.ts"
import { envOverrides, nameVariables, noOverrides, overlay } from "./ConfigEnv.ts"
import { toResilientOptions } from "./ConfigOptions.ts"
import type { Problem } from "./ConfigProblem.ts"
import { isBlocking, validate } from "./ConfigValidation.ts"
import type { Pipeline } from "./Pipeline.ts"
import type { ResilientOptions } from "./ResilientOptions.ts"

// ==== Options and status

/** Where the versions come from. */
export type Source =
  | {
    readonly _tag: "file"
    /** The JSON file of the file form. */
    readonly path: string
    /** How often the file is read. Default 500 ms. */
    readonly poll?: Duration.Input | undefined
  }
  | {
    readonly _tag: "redis"
    /** The safety-net poll behind the change notification. Default 5 s. */
    readonly poll?: Duration.Input | undefined
  }

/** The `live` entry of `ResilientOptions`. */
export interface LiveOptions extends CheckOptions {
  readonly source: Source
  /** Apply the `ELEVENLABS_*` variables over every version, as at start. Default `true`. */
  readonly env?: boolean | undefined
}

/** What the process runs now, for `/health` and tests. */
export interface Status {
  /** What happened last: nothing yet (the start configuration runs), a version applied, a version refused. */
  readonly last: "start" | "applied" | "refused"
  readonly source: "file" | "redis"
  /** The version applied last; `undefined` while the start configuration runs. */
  readonly version: number | undefined
  /** When it was applied (epoch ms, `Clock`). */
  readonly appliedAt: number | undefined
  /** Changed fields that take effect only at the next start. */
  readonly pendingRestart: ReadonlyArray<string>
  /** The last version refused, and why (the first problems). */
  readonly refused?: { readonly version: number; readonly at: number; readonly problems: ReadonlyArray<string> }
}

/** The running follower. */
export interface Live {
  readonly status: Effect.Effect<Status>
  /** Every status after a version is applied or refused. */
  readonly changes: Stream.Stream<Status>
}

/** What the follower drives: the stack's start options and how to apply new ones. */
export interface Target {
  readonly start: ResilientOptions
  readonly apply: (options: ResilientOptions) => Effect.Effect<void>
  /** Cumulative pooled calls and failed calls of the stack (for the deploy's watch). */
  readonly outcomes: { readonly calls: number; readonly errors: number }
  /** The breaker's transitions, when the stack has a breaker (openings are reported for the deploy's watch). */
  readonly transitions?: Stream.Stream<{ readonly to: string }> | undefined
}

/** The target of a pipeline and its client's attempt timeouts. */
export const targetOf = (pipeline: Pipeline, start: ResilientOptions, timeouts: AttemptTimeouts): Target => ({
  start,
  apply: (options) =>
    Effect.andThen(
      pipeline.reconfigure(options),
      Effect.sync(() => Object.assign(timeouts, attemptTimeoutsOf(options)))
    ),
  outcomes: pipeline.outcomes,
  transitions: pipeline.policies.breaker?.transitions
})

// ==== Versions

/** A version read from a source; `document` null: back to the start configuration. */
interface Candidate {
  readonly version: number
  readonly document: unknown
  /** Why the source could not give a document (unreadable file, not JSON). */
  readonly unreadable?: string | undefined
}

const fileVersions = (path: string, every: Duration.Input): Stream.Stream<Candidate, never, FileSystem.FileSystem> =>
  Stream.unwrap(Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    let last: string | undefined
    let seq = 0
    let failed = 0
    const read = fs.readFileString(path).pipe(
      Effect.map((text): Candidate | undefined => {
        failed = 0
        if (text === last) return undefined
        last = text
        seq++
        try {
          return { version: seq, document: JSON.parse(text) as unknown }
        } catch {
          return { version: seq, document: undefined, unreadable: `${path} is not valid JSON` }
        }
      }),
      // A file being replaced may be missing for one read; two failed reads in a row are reported (once).
      Effect.catch((e) =>
        Effect.sync((): Candidate | undefined => {
          if (++failed !== 2) return undefined
          last = undefined
          return { version: ++seq, document: undefined, unreadable: `cannot read ${path} (${e.reason._tag})` }
        })
      )
    )
    // Read at once, then every `every`.
    return Stream.fromEffectSchedule(read, Schedule.spaced(every)).pipe(
      Stream.filter((c): c is Candidate => c !== undefined)
    )
  }))

const redisVersions = (
  store: RedisConfig.RedisConfigStore["Service"],
  account: string,
  poll: Duration.Input | undefined
): Stream.Stream<Candidate> =>
  store.changes(account, { poll: poll ?? "5 seconds" }).pipe(
    Stream.map((v): Candidate => ({ version: v.version, document: v.document })),
    // Redis trouble: keep running the applied version, and follow again after a pause.
    Stream.tapError((e) => Effect.logWarning("elevenlabs live config: Redis unavailable", { error: e.message })),
    Stream.retry(Schedule.spaced("1 second")),
    // The schedule never ends: nothing is left to fail.
    Stream.orDie
  )

// ==== Applying

/**
 * The fields a version sets that cannot change live and differ from the start options (`document` is the
 * version's raw file form, `next` its options). A field the version leaves out is not reported: the process
 * keeps its start value for it whatever the version says.
 */
export const notLive = (
  start: ResilientOptions,
  document: unknown,
  next: ResilientOptions,
  before?: unknown
): ReadonlyArray<string> => {
  const doc = (Predicate.isObject(document) ? document : {}) as Record<string, unknown>
  const prior = (Predicate.isObject(before) ? before : {}) as Record<string, unknown>
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)
  const changed: Array<string> = []
  if ("baseUrl" in doc && start.baseUrl !== next.baseUrl) changed.push("baseUrl")
  if ("redis" in doc && start.redis?.url !== next.redis?.url) changed.push("redis")
  // The start options hold no telemetry: a change is one from the version before.
  if ("telemetry" in doc && !same(doc["telemetry"], prior["telemetry"])) changed.push("telemetry")
  const prefix = (o: ResilientOptions) => (o.breaker === false ? undefined : o.breaker?.keyPrefix)
  if (prefix(next) !== undefined && prefix(next) !== prefix(start)) changed.push("breaker.keyPrefix")
  if ("cache" in doc && !same(start.cache ?? false, next.cache ?? false)) changed.push("cache")
  if ("coalesce" in doc && (start.coalesce === false) !== (next.coalesce === false)) changed.push("coalesce")
  for (const key of ["retry", "budget", "breaker", "quota"] as const) {
    // Switching is never live: `PipelinePolicies.reconfigure` keeps each policy on or off as it started.
    if (key in doc && (start[key] === false) !== (next[key] === false)) {
      changed.push(`${key} (switched ${next[key] === false ? "off" : "on"})`)
    }
  }
  return changed
}

/** The first problems that block a version (errors; with `strict`, warnings too), one line each. */
const describe = (problems: ReadonlyArray<Problem>, options: CheckOptions): ReadonlyArray<string> =>
  problems.filter((p) => p.severity === "error" || (options.strict === true && p.severity === "warning"))
    .slice(0, 5).map((p) => `${p.path}: ${p.message}`)

/** The Redis source without a Redis connection: a configuration mistake, reported at build. */
export class LiveConfigError extends Data.TaggedError("LiveConfigError")<{ readonly message: string }> {}

/**
 * Follows `options.source` for the life of the scope and applies each valid version to `target`. Reads the
 * `FileSystem` (file source) or the `RedisConfigStore` (Redis source, from the stack's `redis` entry) from the
 * context.
 */
export const follow = (
  target: Target,
  options: LiveOptions,
  identity: { readonly account: string; readonly apiKey: Redacted.Redacted<string> }
): Effect.Effect<Live, LiveConfigError, Scope.Scope | FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const source = options.source
    const store = source._tag === "redis"
      ? Option.getOrUndefined(yield* Effect.serviceOption(RedisConfig.RedisConfigStore))
      : undefined
    if (source._tag === "redis" && store === undefined) {
      return yield* new LiveConfigError({
        message: "live.source redis needs the stack's redis entry (the versions live in the account's Redis)"
      })
    }
    const env = options.env === false ? noOverrides : yield* Effect.orElseSucceed(envOverrides, () => noOverrides)
    const status = yield* Ref.make<Status>({
      last: "start",
      source: source._tag,
      version: undefined,
      appliedAt: undefined,
      pendingRestart: []
    })
    const changes = yield* PubSub.unbounded<Status>()
    // With the Redis source, the outcomes are reported per version (the deploy's watch reads them).
    const outcomes = store === undefined ? undefined : yield* reportOutcomes(store, target, identity.account)
    let appliedDocument: unknown = undefined
    const publish = (s: Status) => PubSub.publish(changes, s)
    yield* Metrics.setConfigVersion(0)

    const refuse = (candidate: Candidate, problems: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const at = yield* Clock.currentTimeMillis
        const next = yield* Ref.updateAndGet(status, (s): Status => ({
          ...s,
          last: "refused",
          refused: { version: candidate.version, at, problems }
        }))
        yield* Metrics.recordConfigChange("refused")
        yield* Effect.annotateCurrentSpan(Spans.configAttributes.result, "refused")
        yield* Effect.logWarning("elevenlabs live config refused", {
          source: source._tag,
          version: candidate.version,
          running: next.version ?? "start",
          problems
        })
        yield* publish(next)
      })

    const applyOne = (candidate: Candidate) =>
      Effect.gen(function*() {
        if (candidate.unreadable !== undefined) return yield* refuse(candidate, [candidate.unreadable])
        let next: ResilientOptions
        const document = candidate.document
        // `null` is the Redis source's "back to the start configuration"; in a file it is no configuration.
        if (document === null && source._tag === "redis") {
          next = target.start
        } else {
          // The environment over an object only: over anything else it would replace the document (as at start).
          const raw = env.set.length === 0 || !Predicate.isObject(document) ? document : overlay(document, env.raw)
          const { config, problems } = validate(raw, options)
          if (config === undefined || isBlocking(problems, options)) {
            return yield* refuse(candidate, describe(nameVariables(problems, env), options))
          }
          next = toResilientOptions(config, identity.apiKey)
        }
        // The calls so far ran under the version before: reported under it before anything changes.
        if (outcomes !== undefined) yield* outcomes.flush
        // A defect of a policy's own checks (a bug: the schema let through what the policy refuses).
        const applied = yield* Effect.exit(target.apply(next))
        // All or nothing (`PipelinePolicies.reconfigure` checks every option first): refused, the version before runs.
        if (applied._tag === "Failure") return yield* refuse(candidate, ["the policies refused the options"])
        if (outcomes !== undefined) outcomes.version = candidate.version
        const pendingRestart = notLive(target.start, document, next, appliedDocument)
        appliedDocument = document
        const at = yield* Clock.currentTimeMillis
        const updated = yield* Ref.updateAndGet(status, (s): Status => ({
          ...s,
          last: "applied",
          version: candidate.version,
          appliedAt: at,
          pendingRestart
        }))
        yield* Metrics.setConfigVersion(candidate.version)
        yield* Metrics.recordConfigChange("applied")
        yield* Effect.annotateCurrentSpan(Spans.configAttributes.result, "applied")
        yield* Effect.logInfo("elevenlabs live config applied", {
          source: source._tag,
          version: candidate.version,
          ...(pendingRestart.length === 0 ? {} : { pendingRestart })
        })
        yield* publish(updated)
      }).pipe(
        Effect.withSpan(Spans.configSpanName, {
          attributes: {
            [Spans.configAttributes.source]: source._tag,
            [Spans.configAttributes.version]: candidate.version
          }
        })
      )

    const versions: Stream.Stream<Candidate, never, FileSystem.FileSystem> = source._tag === "file"
      ? fileVersions(source.path, source.poll ?? "500 millis")
      : redisVersions(store!, identity.account, source.poll)
    yield* Stream.runForEach(versions, applyOne).pipe(Effect.forkScoped)

    return { status: Ref.get(status), changes: Stream.fromPubSub(changes) } satisfies Live
  })

/**
 * Every second, the calls, failed calls and breaker openings since the last report, added to Redis under the
 * version they ran under (the start configuration is version 0). `flush` reports at once: the follower calls
 * it before it applies a version, and sets `version` after, so no call is counted under a version it did not
 * run under. The counts are taken synchronously, so a report and a flush never count a call twice. A failed
 * write is dropped: the counts are for a deploy's watch, not an audit.
 */
const reportOutcomes = (store: RedisConfig.RedisConfigStore["Service"], target: Target, account: string) =>
  Effect.gen(function*() {
    let openings = 0
    if (target.transitions !== undefined) {
      yield* target.transitions.pipe(
        Stream.runForEach((t) => Effect.sync(() => t.to === "Open" && openings++)),
        Effect.forkScoped
      )
    }
    let calls = target.outcomes.calls
    let errors = target.outcomes.errors
    let opens = openings
    const state: { version: number; readonly flush: Effect.Effect<void> } = {
      version: 0,
      flush: Effect.suspend((): Effect.Effect<void> => {
        const delta = {
          calls: target.outcomes.calls - calls,
          errors: target.outcomes.errors - errors,
          breakerOpens: openings - opens
        }
        calls = target.outcomes.calls
        errors = target.outcomes.errors
        opens = openings
        if (delta.calls === 0 && delta.breakerOpens === 0) return Effect.void
        return store.recordOutcomes(account, state.version, delta).pipe(Effect.ignore)
      })
    }
    yield* Effect.repeat(state.flush, Schedule.spaced("1 second")).pipe(Effect.forkScoped)
    return state
  })
