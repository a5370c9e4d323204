/**
 * The one error a command of the CLI fails with when it cannot do what the
 * user asked: a bad flag value, a path it cannot read or write, a config file
 * that does not validate, a port it cannot listen on, a run that could not be
 * done. `main.ts` prints it as ONE line on standard error,
 * `<command>: <what is wrong>; <how to fix it>`, and exits 1; no stack trace.
 *
 * Parse errors of `effect/cli` itself (an unknown flag, `--requests abc`) are
 * rendered the same way by the presenter in `output.ts`.
 *
 * @since 0.1.0
 */
import { type PlatformError, Schema } from "effect"
import { dirname } from "node:path"

/** What kind of mistake (or trouble) a {@link CliFailure} is. */
export const failureKinds = [
  /** A flag value the command refuses: out of range, an unknown plan, model, voice, strategy... */
  "InvalidFlag",
  /** A path that cannot be read or written (`--out`, `--html`, `--config`). */
  "FileProblem",
  /** A config file that is not JSON or does not validate. */
  "InvalidConfig",
  /** A port the command cannot listen on (in use, privileged, not an address of this machine). */
  "PortUnavailable",
  /** The run itself could not be done (the target refused it, a worker died). */
  "RunFailed"
] as const
export type FailureKind = (typeof failureKinds)[number]

/** A command that cannot do what it was asked; printed as {@link CliFailure.line}. */
export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", {
  /** The subcommand (`simulate`, `alerts`, ...). */
  command: Schema.String,
  kind: Schema.Literals(failureKinds),
  /** What is wrong and how to fix it, on one line. */
  message: Schema.String
}) {
  /** The line printed on standard error: `<command>: <message>`. */
  get line(): string {
    return `${this.command}: ${oneLine(this.message)}`
  }
}

/** Whether a value is a {@link CliFailure}. */
export const isCliFailure = Schema.is(CliFailure)

/** A {@link CliFailure}. */
export const make = (command: string, kind: FailureKind, message: string): CliFailure =>
  new CliFailure({ command, kind, message })

/** Maps an error with a message (a command's own error) to a {@link CliFailure} of `kind`. */
export const from = (command: string, kind: FailureKind) => (error: { readonly message: string }): CliFailure =>
  error instanceof CliFailure ? error : make(command, kind, error.message)

/** Folds a text to one line (the CLI's errors are one line each). */
export const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, " ").trim()

// ----------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------

/** The errno code of an error or of its cause (`ENOENT`, `EADDRINUSE`, ...), if any. */
export const errnoOf = (error: unknown): string | undefined => {
  for (let e: unknown = error, depth = 0; typeof e === "object" && e !== null && depth < 5; depth++) {
    const code = (e as { readonly code?: unknown }).code
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code
    e = (e as { readonly cause?: unknown }).cause
  }
  return undefined
}

/**
 * What went wrong reading or writing `path`, and what to do:
 * a missing directory, a missing file, a directory where a file was meant,
 * no permission.
 */
export const fileProblem = (
  path: string,
  operation: "read" | "write",
  error: PlatformError.PlatformError | unknown
): string => {
  const code = errnoOf(error)
  const tag = (error as { readonly reason?: { readonly _tag?: string } } | undefined)?.reason?._tag
  if (code === "ENOENT" || tag === "NotFound") {
    return operation === "write"
      ? `cannot write ${path}: the directory ${dirname(path)} does not exist; create it first or choose another path`
      : `cannot read ${path}: no such file; check the path`
  }
  if (code === "EISDIR") return `${path} is a directory; give the path of a file`
  if (code === "ENOTDIR") return `cannot ${operation} ${path}: a part of the path is a file, not a directory; check the path`
  if (code === "EACCES" || code === "EPERM" || tag === "PermissionDenied") {
    return `cannot ${operation} ${path}: permission denied; choose a path you can ${operation}`
  }
  const detail = error instanceof Error ? error.message : String(error)
  return `cannot ${operation} ${path} (${oneLine(detail)}); check the path`
}

/** A {@link CliFailure} of kind `FileProblem` for `flag`'s `path`. */
export const fileFailure = (
  command: string,
  flag: string,
  path: string,
  operation: "read" | "write",
  error: unknown
): CliFailure => make(command, "FileProblem", `${flag}: ${fileProblem(path, operation, error)}`)

// ----------------------------------------------------------------------------
// Ports
// ----------------------------------------------------------------------------

/**
 * Why a server could not listen on `host:port`, and what to do. `flag` is
 * the flag that chose the port (`--port`, `--metrics-port`), if any.
 */
export const listenProblem = (what: string, host: string, port: number, flag: string | undefined, error: unknown): string => {
  const code = errnoOf(error)
  const where = `${host}:${port}`
  const choose = flag === undefined ? "stop what holds it and retry" : `choose another ${flag} (0 picks a free one)`
  switch (code) {
    case "EADDRINUSE":
      return `cannot serve ${what} on ${where}: the port is in use; ${choose}`
    case "EACCES":
    case "EPERM":
      return `cannot serve ${what} on ${where}: permission denied (ports below 1024 need privileges); ${
        flag === undefined ? "use a port above 1023" : `choose a ${flag} above 1023`
      }`
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `cannot serve ${what} on ${where}: ${host} is not an address of this machine; use 127.0.0.1 (or 0.0.0.0 for every interface)`
    default: {
      const cause = (error as { readonly cause?: unknown } | undefined)?.cause
      const detail = oneLine(cause instanceof Error ? cause.message : error instanceof Error ? error.message : String(error))
      return `cannot serve ${what} on ${where}${detail === "" ? "" : ` (${detail})`}; ${choose}`
    }
  }
}

/** A {@link CliFailure} of kind `PortUnavailable`. */
export const listenFailure = (
  command: string,
  what: string,
  host: string,
  port: number,
  flag: string | undefined,
  error: unknown
): CliFailure => make(command, "PortUnavailable", listenProblem(what, host, port, flag, error))
