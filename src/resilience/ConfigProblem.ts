/**
 * What the configuration's checks report: a {@link Problem} per finding (its
 * path, a message and a fix), and the one {@link ConfigError} the loaders fail with.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** The schema of {@link Problem}, for the error. */
export const ProblemSchema = Schema.Struct({
  severity: Schema.Literals(["error", "warning"]),
  /** Dotted path of the field, e.g. `retry.exponential.base` (`(root)` for the whole file). */
  path: Schema.String,
  message: Schema.String,
  /** What to write instead. */
  fix: Schema.String
})

/** One finding about a configuration. */
export type Problem = typeof ProblemSchema.Type

/** A configuration that cannot be used: every problem found, with its path and a fix. */
export class ConfigError extends Schema.Error<ConfigError>("elevenlabs-resilience/ResilienceConfig/ConfigError")({
  _tag: Schema.tag("ConfigError"),
  /** Where the configuration came from (a file path, `environment`, …). */
  source: Schema.String,
  problems: Schema.Array(ProblemSchema)
}) {
  override get message(): string {
    const errors = this.problems.filter((p) => p.severity === "error")
    const shown = (errors.length > 0 ? errors : this.problems).map((p) => `${p.path}: ${p.message}`)
    return `invalid configuration (${this.source}): ${shown.join("; ")}`
  }
}

/** A {@link Problem}. */
export const problem = (severity: Problem["severity"], path: string, message: string, fix: string): Problem => ({
  severity,
  path,
  message,
  fix
})

/** The path of a problem: `retry.exponential.base`, `characterLimits["eleven v3"]`, `(root)`. */
export const pathString = (path: ReadonlyArray<PropertyKey>): string =>
  path.length === 0
    ? "(root)"
    : path.map((k, i) =>
      typeof k === "number" ? `[${k}]` : /^[A-Za-z_$][\w$-]*$/.test(String(k)) ?
        (i === 0 ? "" : ".") + String(k)
        : `[${JSON.stringify(String(k))}]`
    ).join("")
