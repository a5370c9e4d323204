/**
 * What `config deploy`, `config rollback` and `config history` do, apart
 * from their flags (`config.ts`): over the account's versioned configuration
 * in Redis (`RedisConfig`), which the processes built with a `live` Redis
 * source follow (`LiveConfig`). docs/deployment.md.
 *
 * @since 0.2.0
 */
import { Duration, Effect, Option, Schedule } from "effect"
import type { ConfigVersion, Outcomes, RedisConfigStore } from "../distributed/RedisConfig.ts"
import * as ResilienceConfig from "../resilience/ResilienceConfig.ts"

// ==== Exit codes

/** Every exit code of `config deploy` (docs/deployment.md). */
export const exitCodes = {
  deployed: 0,
  usage: 1,
  invalid: 2,
  smokeFailed: 3,
  rolledBackErrorRate: 4,
  rolledBackBreaker: 5,
  superseded: 6,
  interrupted: 130
} as const

// ==== The watch rule

/** What the deploy watches for. */
export interface WatchRule {
  /** Failed calls over calls above which the version is rolled back, in [0, 1]. */
  readonly maxErrorRate: number
  /** Calls needed before the rate is judged (a few failures of a few calls are noise). */
  readonly minCalls: number
}

/** The verdict on a version's outcomes so far. */
export type Verdict =
  | { readonly _tag: "Healthy" }
  | { readonly _tag: "ErrorRate"; readonly rate: number; readonly calls: number; readonly errors: number }
  | { readonly _tag: "BreakerOpened"; readonly openings: number }

/** Any breaker opening condemns a version; so does an error rate above the rule once enough calls are seen. */
export const verdictOf = (outcomes: Outcomes, rule: WatchRule): Verdict => {
  if (outcomes.breakerOpens > 0) return { _tag: "BreakerOpened", openings: outcomes.breakerOpens }
  if (outcomes.calls >= rule.minCalls && outcomes.calls > 0) {
    const rate = outcomes.errors / outcomes.calls
    if (rate > rule.maxErrorRate) return { _tag: "ErrorRate", rate, calls: outcomes.calls, errors: outcomes.errors }
  }
  return { _tag: "Healthy" }
}

const percent = (x: number) => `${Math.round(x * 1000) / 10} %`

/** The reason a rolled-back version records, in words. */
export const verdictText = (verdict: Verdict, rule: WatchRule): string =>
  verdict._tag === "ErrorRate"
    ? `error rate ${percent(verdict.rate)} (${verdict.errors} of ${verdict.calls} calls) > ${
      percent(rule.maxErrorRate)
    }`
    : verdict._tag === "BreakerOpened"
    ? `circuit breaker opened ${verdict.openings} time(s)`
    : "healthy"

// ==== Diff

/** The leaves of a JSON value by dotted path. */
const leaves = (value: unknown, path = "", into = new Map<string, string>()): Map<string, string> => {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>)
    if (entries.length === 0 && path !== "") into.set(path, "{}")
    for (const [k, v] of entries) leaves(v, path === "" ? k : `${path}.${k}`, into)
  } else if (path !== "") {
    into.set(path, JSON.stringify(value))
  }
  return into
}

/** The changed leaves from `before` to `after` (`path: old -> new`), sorted by path. */
export const diff = (before: unknown, after: unknown): ReadonlyArray<string> => {
  const a = leaves(before ?? {})
  const b = leaves(after ?? {})
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort()
  return paths.flatMap((p) => {
    const x = a.get(p)
    const y = b.get(p)
    return x === y ? [] : [`${p}: ${x ?? "(unset)"} -> ${y ?? "(unset)"}`]
  })
}

// ==== History

/** A version as `history` prints it: who, what, when, and the diff from the version before it. */
export interface HistoryEntry {
  readonly version: number
  readonly kind: ConfigVersion["kind"]
  readonly author: string
  readonly at: string
  readonly reason: string
  readonly restores?: number | undefined
  readonly current: boolean
  readonly changes: ReadonlyArray<string>
}

/** The history's entries, newest first, each with its diff from the version that was current before it. */
export const historyOf = (
  store: RedisConfigStore["Service"],
  account: string,
  limit: number
) =>
  Effect.gen(function*() {
    const versions = yield* store.history(account, { limit })
    const current = (yield* store.current(account))?.version
    return yield* Effect.forEach(versions, (v) =>
      Effect.gen(function*() {
        const before = v.previous === undefined ? undefined : yield* store.get(account, v.previous)
        return {
          version: v.version,
          kind: v.kind,
          author: v.author,
          at: new Date(v.at).toISOString(),
          reason: v.reason,
          restores: v.restores,
          current: v.version === current,
          changes: diff(before?.document ?? {}, v.document ?? {})
        } satisfies HistoryEntry
      }))
  })

/** `history`'s text: a line per version, then its changes indented. */
export const historyText = (entries: ReadonlyArray<HistoryEntry>): string =>
  entries.length === 0 ?
    "no configuration versions yet\n" :
    entries.map((e) =>
      `${e.current ? "*" : " "} v${e.version} ${e.kind}${e.restores === undefined ? "" : ` of v${e.restores}`} ` +
      `by ${e.author} at ${e.at}: ${e.reason}\n` +
      (e.changes.length === 0 ? "    (no changes)\n" : e.changes.map((c) => `    ${c}\n`).join(""))
    ).join("")

// ==== Validation

/** The file's strict validation: the document, or the problems as one line. */
export const validateFile = (path: string) =>
  Effect.gen(function*() {
    const raw = yield* ResilienceConfig.readJsonFile(path)
    const validation = ResilienceConfig.validate(raw, { strict: true })
    if (validation.config !== undefined && !ResilienceConfig.isBlocking(validation.problems, { strict: true })) {
      return { _tag: "Valid" as const, document: raw }
    }
    const problems = validation.problems.slice(0, 5)
    return {
      _tag: "Invalid" as const,
      line: problems.map((p) => `${p.path}: ${p.message} (fix: ${p.fix})`).join("; ")
    }
  })

// ==== What the processes can run

/** Whether the processes accept `document` (the schema and the errors, not strict: as `LiveConfig` checks). */
export const runnable = (document: unknown): boolean => {
  if (document === null) return true
  const { config, problems } = ResilienceConfig.validate(document)
  return config !== undefined && !ResilienceConfig.isBlocking(problems)
}

/**
 * The newest version before `below` (or the newest of all) that the processes accept: the one they run when
 * every version after it was refused. `undefined` when none is: they run their start configuration. A rollback
 * that restored a refused version would leave the bad one running.
 */
export const lastRunnable = (
  store: RedisConfigStore["Service"],
  account: string,
  below = Number.POSITIVE_INFINITY
) =>
  Effect.map(
    store.history(account, { limit: 100 }),
    (versions) => versions.find((v) => v.version < below && runnable(v.document))
  )

// ==== The watch

/** How a watch ended. */
export type WatchEnd =
  | { readonly _tag: "Passed"; readonly outcomes: Outcomes }
  | { readonly _tag: "Failed"; readonly verdict: Verdict; readonly outcomes: Outcomes }
  | { readonly _tag: "Superseded"; readonly by: number }

/**
 * Watches `version`'s outcomes from `since` (Redis time) every `every`, until `window` has passed on Redis's
 * clock or the rule condemns it, or another version becomes current.
 */
export const watch = (
  store: RedisConfigStore["Service"],
  account: string,
  version: number,
  since: number,
  window: Duration.Duration,
  rule: WatchRule,
  every: Duration.Input = "1 second"
) =>
  Effect.gen(function*() {
    const end = since + Duration.toMillis(window)
    const step = Effect.gen(function*() {
      const current = yield* store.current(account)
      if (current !== undefined && current.version !== version) {
        return Option.some<WatchEnd>({ _tag: "Superseded", by: current.version })
      }
      const outcomes = yield* store.outcomes(account, version, since)
      const verdict = verdictOf(outcomes, rule)
      if (verdict._tag !== "Healthy") return Option.some<WatchEnd>({ _tag: "Failed", verdict, outcomes })
      const now = yield* store.now
      return now >= end ? Option.some<WatchEnd>({ _tag: "Passed", outcomes }) : Option.none<WatchEnd>()
    })
    return yield* step.pipe(
      Effect.repeat({ schedule: Schedule.spaced(every), until: Option.isSome }),
      Effect.map((o) => Option.getOrThrow(o))
    )
  })
