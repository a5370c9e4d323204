/**
 * `elevenlabs-resilience config deploy | rollback | history`: the versioned
 * configuration of an account in Redis, which processes built with a live
 * Redis source follow (docs/deployment.md).
 *
 * - `deploy --config-file FILE --redis-url URL`: validates the file with the
 *   strict rules, runs the smoke check through it, publishes it as a new
 *   version, then watches the processes' shared error rate and breaker for
 *   `--watch`; rolls back to the version before by itself if either goes bad.
 *   Exit codes: {@link Deploy.exitCodes}.
 * - `rollback [--to VERSION] --reason TEXT`: republishes an older version
 *   (default: the one current before the current one).
 * - `history`: the versions, newest first, with who, what, when and the diff.
 *
 * The account is the fingerprint of `ELEVENLABS_API_KEY` (what the
 * processes use), or `--account`. The key itself is never printed.
 *
 * @since 0.2.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Cause, Config, Console, Duration, Effect, Layer, Option, Redacted } from "effect"
import { Command, Flag } from "effect/cli"
import type { DistributedError } from "../distributed/DistributedError.ts"
import * as RedisConfig from "../distributed/RedisConfig.ts"
import * as SharedState from "../distributed/SharedState.ts"
import { partitionOfApiKey } from "../resilience/FallbackKey.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Deploy from "./configDeploy.ts"
import * as Flags from "./flags.ts"
import * as Smoke from "./smoke.ts"

// ==== Shared flags and context

const redisUrl = Flag.String("redis-url").pipe(
  Flag.withDescription("The Redis of the account's versions, the one the processes share (required).")
)
const account = Flag.String("account").pipe(
  Flags.optional(
    "The account id the processes use: the fingerprint of their API key (Resilience.keyId), never the key.",
    "the fingerprint of ELEVENLABS_API_KEY"
  )
)
const author = Flag.String("author").pipe(
  Flags.optional("Who makes the change, recorded with the version.", "$ELEVENLABS_RESILIENCE_AUTHOR, else $USER")
)
const json = Flags.boolean("json", "Print one JSON document on standard output.")

/** The account: `--account`, else the fingerprint of `ELEVENLABS_API_KEY`. */
const accountOf = (command: string, given: Option.Option<string>) =>
  Option.isSome(given)
    ? given.value.trim() === ""
      ? Effect.fail(CliFailure.make(command, "--account must not be empty"))
      : Effect.succeed(given.value)
    : Effect.flatMap(
      Config.option(Config.Redacted("ELEVENLABS_API_KEY")).pipe(Effect.orElseSucceed(() => Option.none())),
      (key) =>
        Option.isSome(key) && Redacted.value(key.value) !== ""
          ? Effect.succeed(partitionOfApiKey(key.value))
          : Effect.fail(
            CliFailure.make(command, "set ELEVENLABS_API_KEY or --account: the account whose versions to change")
          )
    )

/** Who: `--author`, else the environment. */
const authorOf = (given: Option.Option<string>) =>
  Option.isSome(given) ? Effect.succeed(given.value) : Effect.gen(function*() {
    return yield* Config.String("ELEVENLABS_RESILIENCE_AUTHOR").pipe(
      Config.orElse(() => Config.String("USER")),
      Config.orElse(() => Config.String("LOGNAME")),
      Config.withDefault("unknown")
    )
  }).pipe(Effect.orElseSucceed(() => "unknown"))

/** The store over `url`, as a layer; an unusable Redis is one line naming it. */
const storeLayer = (command: string, url: string) =>
  RedisConfig.layer().pipe(
    Layer.provide(SharedState.layerConnection(url, "2 seconds")),
    Layer.catchCause((cause) => {
      const e = Cause.squash(cause) as { readonly _tag?: string; readonly message?: string }
      return Layer.effectContext(Effect.fail(CliFailure.make(
        command,
        e._tag === "MissingPeerDependency" ? String(e.message) : CliFailure.redisProblem(url, "--redis-url", e)
      )))
    })
  )

const withStore = <A, E, R>(command: string, url: string, self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    Checks.refuse(command, Checks.urlProblem("--redis-url", url, ["redis:", "rediss:"], "redis://127.0.0.1:6379")),
    // node-redis logs each failed connect; the command's one line says it (unless --log-level asks).
    () => Effect.provide(self, storeLayer(command, url)).pipe(Flags.quietUnlessAsked("None"))
  )

/** A store error mid-command: one line. */
const storeFailure = (command: string) => (e: DistributedError) => CliFailure.make(command, e.message)

const setExit = (code: number) => Effect.sync(() => (process.exitCode = code))

/** Prints `text` (or the JSON document) on standard output. */
const report = (asJson: boolean, text: string, document: unknown) =>
  Console.log(asJson ? JSON.stringify(document) : text)

// ==== deploy

const deployFlags = {
  configFile: Flag.String("config-file").pipe(
    Flag.withAlias("config"),
    Flag.withDescription("The JSON configuration to deploy (docs/configuration.md) (required).")
  ),
  redisUrl,
  account,
  author,
  reason: Flag.String("reason").pipe(Flags.withDefault("Why, recorded with the version.", "deploy")),
  watch: Flag.String("watch").pipe(
    Flags.withDefault("How long to watch the processes after publishing (0: do not watch).", "3m")
  ),
  maxErrorRate: Flag.Finite("max-error-rate").pipe(
    Flags.withDefault("Roll back when failed calls over calls exceed this share (0..1).", 0.05)
  ),
  minCalls: Flag.Int("min-calls").pipe(
    Flags.withDefault("Calls seen before the error rate is judged.", 20)
  ),
  simulator: Flags.boolean("simulator", "Smoke-check against an embedded simulator (no credits)."),
  baseUrl: Flag.String("base-url").pipe(
    Flags.optional("Base URL of the smoke check.", "the config's baseUrl; the embedded simulator without a key")
  ),
  json
} as const

type DeployInput = Command.Command.Config.Infer<typeof deployFlags>

const deployRun = (input: DeployInput) =>
  Effect.gen(function*() {
    const command = "config deploy"
    const watchMs = Checks.parseDuration(input.watch)
    if (watchMs === undefined) {
      return yield* CliFailure.make(command, `--watch must be a duration such as 3m or 90s; got "${input.watch}"`)
    }
    yield* Checks.refuse(
      command,
      Checks.numberProblem(
        "--max-error-rate",
        input.maxErrorRate,
        input.maxErrorRate >= 0 && input.maxErrorRate <= 1,
        "within 0..1"
      ) ??
        Checks.numberProblem(
          "--min-calls",
          input.minCalls,
          Number.isInteger(input.minCalls) && input.minCalls >= 1,
          "an integer >= 1"
        )
    )
    yield* Checks.readableFile(command, "--config-file", input.configFile)
    const id = yield* accountOf(command, input.account)
    const who = yield* authorOf(input.author)
    const rule: Deploy.WatchRule = { maxErrorRate: input.maxErrorRate, minCalls: input.minCalls }
    // The JSON document on stdout whatever the outcome; otherwise a line, on stderr when the deploy did not pass.
    const done = (code: number, text: string, document: Record<string, unknown>) =>
      Effect.andThen(
        input.json || code === 0 ? report(input.json, text, { account: id, ...document }) : Console.error(text),
        setExit(code)
      )

    // 1. Strict validation: nothing is published from a file with a problem.
    const validated = yield* Deploy.validateFile(input.configFile).pipe(
      Effect.mapError((e) => CliFailure.make(command, e.problems[0]?.message ?? e.message))
    )
    if (validated._tag === "Invalid") {
      return yield* done(Deploy.exitCodes.invalid, `config deploy: refused ${input.configFile}: ${validated.line}`, {
        result: "invalid",
        problems: validated.line
      })
    }
    // Redis first (a bad address is one line before the smoke check spends a request), then 2-4.
    return yield* withStore(
      command,
      input.redisUrl,
      Effect.gen(function*() {
        yield* (yield* RedisConfig.RedisConfigStore).current(id)
        // 2. The smoke check through the new settings.
        const smoke = yield* Smoke.execute({
          config: Option.some(input.configFile),
          simulator: input.simulator,
          baseUrl: input.baseUrl,
          voice: Smoke.defaults.voice,
          model: Smoke.defaults.model,
          text: Smoke.defaults.text
        }).pipe(Effect.provide(NodeHttpClient.layerUndici))
        if (!smoke.ok) {
          return yield* done(Deploy.exitCodes.smokeFailed, `config deploy: nothing published: ${smoke.line}`, {
            result: "smoke-failed",
            smoke: smoke.line
          })
        }
        // 3 and 4. Publish, unless another deploy got there first; watch; roll back when it goes bad.
        return yield* publishAndWatch(input, {
          account: id,
          author: who,
          document: validated.document,
          rule,
          watchMs,
          done
        })
      }).pipe(Effect.catchTag("DistributedError", (e) => Effect.fail(storeFailure(command)(e))))
    )
  })

/** What `publishAndWatch` needs of `deployRun`. */
interface Deploying {
  readonly account: string
  readonly author: string
  readonly document: unknown
  readonly rule: Deploy.WatchRule
  readonly watchMs: number
  readonly done: (code: number, text: string, document: Record<string, unknown>) => Effect.Effect<void>
}

/**
 * Publishes the document, watches it and rolls it back when it goes bad. The publish and the watch are under
 * one mask: an interruption (Ctrl-C) that comes after the publish always finds the rollback in place.
 */
const publishAndWatch = (input: DeployInput, d: Deploying) =>
  Effect.gen(function*() {
    const { account: id, done, rule } = d
    const store = yield* RedisConfig.RedisConfigStore
    const current = yield* store.current(id)
    // What the processes run now: the newest version they accepted (a refused one is skipped).
    const before = yield* Deploy.lastRunnable(store, id)
    const was = before === undefined ? "the processes' start configuration" : `v${before.version}`
    const conflict = (e: DistributedError, what: string) =>
      e.reason._tag === "VersionConflict"
        ? done(Deploy.exitCodes.superseded, `config deploy: ${what}: ${e.message}`, { result: "conflict" })
        : Effect.fail(e)
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const published = yield* Effect.result(
          store.publish(id, { document: d.document, author: d.author, kind: "deploy", reason: input.reason }, {
            expectCurrent: current?.version ?? 0
          })
        )
        if (published._tag === "Failure") return yield* conflict(published.failure, "not published")
        const version = published.success
        /** Back to what ran before: the version the processes accepted last, or their start configuration. */
        const rollBack = (why: string) =>
          store.publish(id, {
            document: before === undefined ? null : before.document,
            author: d.author,
            kind: "rollback",
            reason: `rolled back v${version.version}: ${why}`,
            ...(before === undefined ? {} : { restores: before.version })
          }, { expectCurrent: version.version })
        const watching = Effect.andThen(
          input.json
            ? Effect.void
            : Console.log(`config deploy: published v${version.version} (was ${was}); watching ${input.watch}`),
          Deploy.watch(store, id, version.version, version.at, Duration.millis(d.watchMs), rule)
        )
        const end = yield* restore(watching).pipe(
          // Ctrl-C after the publish: what ran before runs again (the version was never confirmed).
          Effect.onInterrupt(() =>
            rollBack("deploy interrupted during the watch").pipe(
              Effect.flatMap((r) =>
                Console.error(`config deploy: interrupted; rolled back to ${was} as v${r.version}`)
              ),
              Effect.andThen(setExit(Deploy.exitCodes.interrupted)),
              Effect.ignore
            )
          )
        )
        if (end._tag === "Passed") {
          return yield* done(
            Deploy.exitCodes.deployed,
            `config deploy: v${version.version} healthy after ${input.watch} (${end.outcomes.errors} of ${end.outcomes.calls} calls failed)`,
            { result: "deployed", version: version.version, outcomes: end.outcomes }
          )
        }
        if (end._tag === "Superseded") {
          return yield* done(
            Deploy.exitCodes.superseded,
            `config deploy: v${end.by} was published during the watch of v${version.version}; stopped watching`,
            { result: "superseded", version: version.version, by: end.by }
          )
        }
        const why = Deploy.verdictText(end.verdict, rule)
        const rolled = yield* Effect.result(rollBack(why))
        if (rolled._tag === "Failure") {
          return yield* conflict(rolled.failure, `v${version.version} went bad (${why}) but was not rolled back`)
        }
        return yield* done(
          end.verdict._tag === "BreakerOpened"
            ? Deploy.exitCodes.rolledBackBreaker
            : Deploy.exitCodes.rolledBackErrorRate,
          `config deploy: rolled back v${version.version} to ${was} (as v${rolled.success.version}): ${why}`,
          {
            result: "rolled-back",
            version: version.version,
            rollback: rolled.success.version,
            reason: why,
            outcomes: end.outcomes
          }
        )
      })
    )
  })

const deploy = Command.make("deploy", deployFlags, deployRun).pipe(
  Command.withDescription(
    "Validate, smoke-check, publish a configuration version, watch the processes and roll back by itself if it goes bad."
  )
)

// ==== rollback

const rollbackFlags = {
  redisUrl,
  account,
  author,
  to: Flag.Int("to").pipe(
    Flags.optional("The version to restore.", "the newest version before the current one that the processes accept")
  ),
  reason: Flag.String("reason").pipe(Flags.withDefault("Why, recorded with the version.", "manual rollback")),
  json
} as const

const rollback = Command.make("rollback", rollbackFlags, (input) =>
  Effect.gen(function*() {
    const command = "config rollback"
    if (Option.isSome(input.to) && !(input.to.value >= 1)) {
      return yield* CliFailure.make(command, `--to must be a version number >= 1, got ${input.to.value}`)
    }
    const id = yield* accountOf(command, input.account)
    const who = yield* authorOf(input.author)
    return yield* withStore(
      command,
      input.redisUrl,
      Effect.gen(function*() {
        const store = yield* RedisConfig.RedisConfigStore
        const current = yield* store.current(id)
        if (current === undefined) return yield* CliFailure.make(command, "no version has been published yet")
        // Default: the newest version before the current one that the processes accept.
        const target = Option.isSome(input.to)
          ? yield* store.get(id, input.to.value)
          : yield* Deploy.lastRunnable(store, id, current.version)
        if (target === undefined) {
          return yield* CliFailure.make(
            command,
            Option.isSome(input.to)
              ? `--to ${input.to.value}: no such version (see config history)`
              : `no version before v${current.version} that the processes accept; name one with --to`
          )
        }
        if (!Deploy.runnable(target.document)) {
          return yield* CliFailure.make(
            command,
            `--to ${target.version}: the processes refuse that version (it does not validate); choose another`
          )
        }
        const to = target.version
        const restored = yield* store.publish(id, {
          document: target.document,
          author: who,
          kind: "rollback",
          reason: input.reason,
          restores: to
        }, { expectCurrent: current.version })
        yield* report(
          input.json,
          `config rollback: v${restored.version} restores v${to} (was v${current.version}): ${input.reason}`,
          { account: id, version: restored.version, restores: to, previous: current.version, reason: input.reason }
        )
      }).pipe(Effect.catchTag("DistributedError", (e) => Effect.fail(storeFailure(command)(e))))
    )
  })).pipe(Command.withDescription("Restore an older configuration version, with a reason recorded."))

// ==== history

const historyFlags = {
  redisUrl,
  account,
  limit: Flag.Int("limit").pipe(Flags.withDefault("How many versions, newest first.", 20)),
  json
} as const

const history = Command.make("history", historyFlags, (input) =>
  Effect.gen(function*() {
    const command = "config history"
    yield* Checks.refuse(
      command,
      Checks.numberProblem("--limit", input.limit, Number.isInteger(input.limit) && input.limit >= 1, "an integer >= 1")
    )
    const id = yield* accountOf(command, input.account)
    return yield* withStore(
      command,
      input.redisUrl,
      Effect.gen(function*() {
        const store = yield* RedisConfig.RedisConfigStore
        const entries = yield* Deploy.historyOf(store, id, input.limit)
        yield* report(input.json, Deploy.historyText(entries).trimEnd(), { account: id, versions: entries })
      }).pipe(Effect.catchTag("DistributedError", (e) => Effect.fail(storeFailure(command)(e))))
    )
  })).pipe(Command.withDescription("The account's configuration versions: who, what, when, and the diff of each."))

/** `config`: the group. */
export const config = Command.make("config").pipe(
  Command.withDescription(
    "Deploy, roll back and list the live configuration versions of an account (docs/deployment.md)."
  ),
  Command.withSubcommands([deploy, rollback, history])
)
