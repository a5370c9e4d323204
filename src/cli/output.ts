/**
 * How the CLI talks to its user, installed once by `main.ts`:
 *
 * - **Standard output is the command's result** (a report, a JSON document,
 *   YAML). Logs go to standard error ({@link layer} sets
 *   `Logger.LogToStderr`, which routes Effect's default logger to
 *   `console.error`), and so do progress bars (`Progress`), so
 *   `--json | jq` always reads exactly one document.
 * - **A mistake is one line on standard error** and exit code 1, never a
 *   stack trace and never the whole help: a parse error of `effect/cli`
 *   (an unknown flag, `--requests abc`) through {@link presenter}
 *   (`<command>: <what is wrong>; see: elevenlabs-resilience <command> --help`),
 *   a command's {@link CliFailure.CliFailure} through {@link reportFailures}.
 * - `--help` and `--version` print as `effect/cli` renders them.
 *
 * @since 0.1.0
 */
import { Cause, Console, Data, Effect, Layer, Logger, Runtime } from "effect"
import { CliError, CliOutput } from "effect/cli"
import * as CliFailure from "./CliFailure.ts"

/** The one line for a parse error of `effect/cli` (no help, no newline). */
export const parseErrorText = (error: CliError.CliError): string => {
  switch (error._tag) {
    case "UnrecognizedOption":
      return `unknown flag ${error.option}${
        error.suggestions.length > 0 ? ` (did you mean ${error.suggestions.join(" or ")}?)` : ""
      }`
    case "UnknownSubcommand":
      return `unknown command "${error.subcommand}"${
        error.suggestions.length > 0 ? ` (did you mean ${error.suggestions.join(" or ")}?)` : ""
      }`
    case "InvalidValue": {
      // A refinement's own message (`Flag.filter`) already names the flag.
      if (error.expected.startsWith(`--${error.option}`)) return CliFailure.oneLine(error.expected)
      const expected = error.expected
        .replace(/^Expected:?\s*/, "")
        .replace("a string representing a finite number", "a number")
        .replace(/\.$/, "")
      return error.value.length === 0
        ? `--${error.option} needs a value (expected ${expected})`
        : `--${error.option}: "${error.value}" is not valid (expected ${expected})`
    }
    default:
      return CliFailure.oneLine(error.message)
  }
}

/**
 * The line printed for an invalid invocation: the subcommand, every error of
 * the parse on the same line, and where to read the flags.
 */
export const invocationLine = (
  commandPath: ReadonlyArray<string>,
  errors: ReadonlyArray<CliError.CliError>
): string => {
  const name = commandPath.length > 1 ? commandPath.slice(1).join(" ") : commandPath[0] ?? "elevenlabs-resilience"
  return `${name}: ${errors.map(parseErrorText).join("; ")}; see: ${commandPath.join(" ")} --help`
}

/**
 * `effect/cli`'s presenter with one change: an invalid invocation is one
 * line on standard error instead of the command's whole help followed by the
 * error. Help and version are presented as usual.
 */
export const presenter: CliOutput.Presenter = {
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Console.error(invocationLine(event.commandPath, event.errors))
      : CliOutput.defaultPresenter.present(event)
}

/** The CLI's output settings: the one-line presenter, and logs on standard error. */
export const layer: Layer.Layer<never> = Layer.mergeAll(
  CliOutput.layerPresenter(presenter),
  Layer.succeed(Logger.LogToStderr)(true)
)

/**
 * The failure the program ends with once its error has been printed: marked
 * reported, so `NodeRuntime.runMain` does not log it (with its stack trace)
 * a second time, and exits with code 1.
 */
export class Reported extends Data.TaggedError("Reported")<{}> {
  override readonly [Runtime.errorReported] = false
  override readonly [Runtime.errorExitCode] = 1
}

/** What is printed for a failure of the program, or `undefined` when it was printed already. */
export const failureText = (error: unknown): string | undefined => {
  if (CliFailure.isCliFailure(error)) return error.line
  // Parse errors were presented (one line) by the presenter, help by effect/cli.
  if (CliError.isCliError(error) && error._tag === "ShowHelp") return undefined
  if (error instanceof Reported) return undefined
  const message = typeof error === "object" && error !== null && "message" in error
    ? String(error.message)
    : String(error)
  return `elevenlabs-resilience: ${CliFailure.oneLine(message)}`
}

/**
 * Ends the program the CLI's way: an interruption (Ctrl-C) as it is (exit
 * 130); a failure as one line on standard error and exit 1; a defect (a bug
 * of this program, not a mistake of its user) with its cause, which the bug
 * report needs.
 */
export const reportFailures = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, Reported | E, R> =>
  Effect.catchCause(self, (cause): Effect.Effect<never, Reported | E> => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
    const failure = cause.reasons.find(Cause.isFailReason)
    if (failure === undefined) {
      return Console.error(`elevenlabs-resilience: internal error (please report it):\n${Cause.pretty(cause)}`).pipe(
        Effect.andThen(Effect.fail(new Reported()))
      )
    }
    const text = failureText(failure.error)
    return (text === undefined ? Effect.void : Console.error(text)).pipe(Effect.andThen(Effect.fail(new Reported())))
  })
