/**
 * The validation of raw input (parsed JSON, or the file with the environment
 * written into it): the secret scan, the schema, then the cross-field checks,
 * with every problem found and its path.
 *
 * **Details**
 *
 * - The schema decodes with `errors: "all"` and `onExcessProperty: "error"`, so
 *   one run lists every problem and an unknown key is one, with the nearest
 *   known key as its fix.
 * - The checks need a schema-valid input: when the schema rejects it, its errors
 *   are reported and the checks are not run.
 * - No problem holds a secret's value (`ConfigSecrets.scrub`).
 *
 * @since 0.1.0
 */
import { Result, Schema, SchemaAST, SchemaIssue } from "effect"
import { closest } from "../internal/Closest.ts"
import { check, type CheckOptions } from "./ConfigChecks.ts"
import { pathString, type Problem, problem } from "./ConfigProblem.ts"
import { ResilienceConfig } from "./ConfigSchema.ts"
import { findSecrets, scrub, secretProblems, withoutSecretFields } from "./ConfigSecrets.ts"

const decode = Schema.decodeUnknownResult(ResilienceConfig)
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** The keys the schema accepts at a path (of the object that holds the key at `path`). */
const knownKeysAt = (ast: SchemaAST.AST, path: ReadonlyArray<PropertyKey>): Array<string> => {
  if (ast._tag === "Union") return [...new Set(ast.types.flatMap((t) => knownKeysAt(t, path)))]
  if (ast._tag !== "Objects") return []
  if (path.length === 0) return ast.propertySignatures.map((p) => String(p.name))
  const field = ast.propertySignatures.find((p) => p.name === path[0])
  return field === undefined ? [] : knownKeysAt(field.type, path.slice(1))
}

const unknownKeyFix = (path: ReadonlyArray<PropertyKey>): string => {
  const known = knownKeysAt(ResilienceConfig.ast, path.slice(0, -1))
  const nearest = closest(String(path[path.length - 1]), known)
  return nearest !== undefined
    ? `did you mean "${nearest}"? (accepted here: ${known.join(", ")})`
    : `remove it; accepted here: ${known.join(", ")}`
}

const isUnexpectedKey = (message: string): boolean =>
  message.startsWith("Unexpected key") || message === "Expected no excess property"

const schemaFix = (message: string, path: string): string => {
  if (message.includes("duration")) return `write a duration such as "30 seconds" or a number of milliseconds`
  if (message.startsWith("Missing key")) return `add "${path}"`
  const expected = /^Expected (.*?)(, got .*)?$/s.exec(message)
  return expected?.[1] !== undefined ? `use ${expected[1]}` : "see docs/configuration.md for the accepted values"
}

const schemaProblems = (issue: SchemaIssue.Issue): Array<Problem> => {
  const seen = new Set<string>()
  const out: Array<Problem> = []
  for (const i of formatter(issue).issues) {
    const keys = (i.path ?? []).map((p) =>
      (typeof p === "object" && p !== null && "key" in p ? p.key : p) as PropertyKey
    )
    const path = pathString(keys)
    const unknown = isUnexpectedKey(i.message)
    const message = unknown ? "unknown key" : i.message
    const line = `${path}\u0000${message}`
    if (seen.has(line)) continue
    seen.add(line)
    out.push(problem("error", path, message, unknown ? unknownKeyFix(keys) : schemaFix(i.message, path)))
  }
  return out
}

/** The result of {@link validate}: the decoded configuration when the schema accepted it, and every problem. */
export interface Validation {
  readonly config: ResilienceConfig | undefined
  readonly problems: ReadonlyArray<Problem>
}

/**
 * Everything about raw JSON: the secret scan, the schema, and {@link check}.
 * No problem message contains a secret's value.
 */
export const validate = (raw: unknown, options?: CheckOptions | undefined): Validation => {
  const strict = options?.strict === true
  const secrets = findSecrets(raw)
  const found = secretProblems(secrets, strict)
  const decoded = decode(withoutSecretFields(raw), { errors: "all", onExcessProperty: "error" })
  const problems = Result.isFailure(decoded)
    ? [...found, ...schemaProblems(decoded.failure.issue)]
    : [...found, ...check(decoded.success, options)]
  return {
    config: Result.isSuccess(decoded) ? decoded.success : undefined,
    problems: problems.map((p) => ({ ...p, message: scrub(p.message, secrets), fix: scrub(p.fix, secrets) }))
  }
}

/** Whether a list of problems blocks the configuration (errors; in strict mode warnings too). */
export const isBlocking = (problems: ReadonlyArray<Problem>, options?: CheckOptions | undefined): boolean =>
  problems.some((p) => p.severity === "error" || options?.strict === true)
