/**
 * `elevenlabs-resilience validate-config --config FILE [--strict] [--env]`:
 * checks a configuration file of the resilient stack (docs/configuration.md)
 * and prints each problem with its path and a fix, one per line, then a
 * summary. Exits 1 on errors (with `--strict`, warnings count as errors; the
 * risky settings are flagged too), 0 when the file is usable.
 *
 * `--config` is the flag every command takes; `--config-file` (the name
 * this command had first) is accepted as an alias. A file that cannot be
 * read at all (missing, a directory) is one line on standard error, like any
 * command's bad path; a file that is not JSON or does not validate is what
 * this command reports, on standard output.
 *
 * A secret found in the file is printed by its path and a redacted form, never
 * its value.
 *
 * @since 0.1.0
 */
import { Console, Effect, FileSystem } from "effect"
import { Command, Flag } from "effect/cli"
import * as ResilienceConfig from "../resilience/ResilienceConfig.ts"
import * as Checks from "./checks.ts"
import * as Flags from "./flags.ts"

/** The flags of the command. */
export interface ValidateConfigInput {
  readonly configFile: string
  readonly strict: boolean
  /** Also apply the environment variables (they override the file), as `ResilienceConfig.load` would. */
  readonly env: boolean
}

/** What the command prints and the exit code it ends with. */
export interface ValidateConfigOutput {
  readonly lines: ReadonlyArray<string>
  readonly exitCode: 0 | 1
  readonly problems: ReadonlyArray<ResilienceConfig.Problem>
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`

/** One line per problem: `error   retry.exponential.cap: message (fix: ...)`. */
export const formatProblem = (p: ResilienceConfig.Problem, strict: boolean): string => {
  const label = p.severity === "error" ? "error  " : strict ? "error  " : "warning"
  const tag = p.severity === "warning" && strict ? " [strict]" : ""
  return `${label} ${p.path}: ${p.message}${tag} (fix: ${p.fix})`
}

/** Runs the checks; prints nothing (the command prints {@link ValidateConfigOutput.lines}). */
export const execute = (
  input: ValidateConfigInput
): Effect.Effect<ValidateConfigOutput, never, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const problems = yield* ResilienceConfig.loadValidation({
      file: input.configFile,
      env: input.env,
      strict: input.strict
    }).pipe(
      Effect.map((v) => v.problems),
      Effect.catch((e) => Effect.succeed(e.problems))
    )
    const errors = problems.filter((p) => p.severity === "error").length
    const warnings = problems.length - errors
    const failing = errors > 0 || (input.strict && warnings > 0)
    const mode = input.strict ? " (strict: warnings count as errors)" : ""
    const lines = [
      ...problems.map((p) => formatProblem(p, input.strict)),
      failing
        ? `${input.configFile}: ${plural(errors, "error")}, ${plural(warnings, "warning")}${mode}: config NOT OK`
        : `${input.configFile}: config OK${warnings > 0 ? ` (${plural(warnings, "warning")})` : ""}${
          input.strict ? " (strict)" : ""
        }`
    ]
    return { lines, exitCode: failing ? 1 : 0, problems }
  })

const flags = {
  configFile: Flag.String("config").pipe(
    Flag.withAlias("config-file"),
    Flag.withDescription(
      "The JSON configuration file to check (see docs/configuration.md); --config-file is an alias. (required)"
    )
  ),
  strict: Flags.boolean("strict", "Also flag risky settings; warnings count as errors."),
  env: Flags.boolean("env", "Apply the ELEVENLABS_* environment variables over the file before checking.")
} as const

/** The `validate-config` command. */
export const validateConfig = Command.make("validate-config", flags, (input) =>
  Effect.gen(function*() {
    // A path that is no readable file is the user's mistake, not a finding: one line (main.ts prints it).
    yield* Checks.readableFile("validate-config", "--config", input.configFile)
    const { exitCode, lines } = yield* execute(input)
    for (const line of lines) yield* Console.log(line)
    // The CLI is a Node-facing edge: the exit code is set here rather than by failing,
    // so the output stays the problem list and not a stack trace.
    if (exitCode !== 0) yield* Effect.sync(() => (process.exitCode = exitCode))
  })).pipe(
    Command.withDescription(
      "Check a configuration file of the resilient stack: every problem with its path and a fix; --strict also flags risky settings."
    )
  )
