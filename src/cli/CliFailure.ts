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

/** A command that cannot do what it was asked; printed as {@link CliFailure.line}. */
export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", {
  /** The subcommand (`simulate`, `alerts`, ...). */
  command: Schema.String,
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
export const make = (command: string, message: string): CliFailure => new CliFailure({ command, message })

/** Maps an error with a message (a command's own error) to a {@link CliFailure}. */
export const from = (command: string) => (error: { readonly message: string }): CliFailure =>
  error instanceof CliFailure ? error : make(command, error.message)

/** Folds a text to one line (the CLI's errors are one line each). */
export const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, " ").trim()

// ----------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------

/** What an error wraps: its `cause`, or the socket error node-redis wraps in a `ReconnectStrategyError`. */
const causeOf = (e: object): unknown => {
  const wrapper = e as { readonly cause?: unknown; readonly originalError?: unknown; readonly socketError?: unknown }
  return wrapper.cause ?? wrapper.originalError ?? wrapper.socketError
}

/** The errno code of an error or of its cause (`ENOENT`, `EADDRINUSE`, ...), if any. */
export const errnoOf = (error: unknown): string | undefined => {
  for (let e: unknown = error, depth = 0; typeof e === "object" && e !== null && depth < 5; depth++) {
    const code = (e as { readonly code?: unknown }).code
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code
    e = causeOf(e)
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
  if (code === "ENOTDIR") {
    return `cannot ${operation} ${path}: a part of the path is a file, not a directory; check the path`
  }
  if (code === "EACCES" || code === "EPERM" || tag === "PermissionDenied") {
    return `cannot ${operation} ${path}: permission denied; choose a path you can ${operation}`
  }
  const detail = error instanceof Error ? error.message : String(error)
  return `cannot ${operation} ${path} (${oneLine(detail)}); check the path`
}

/** A {@link CliFailure} for `flag`'s `path`. */
export const fileFailure = (
  command: string,
  flag: string,
  path: string,
  operation: "read" | "write",
  error: unknown
): CliFailure => make(command, `${flag}: ${fileProblem(path, operation, error)}`)

// ----------------------------------------------------------------------------
// Ports
// ----------------------------------------------------------------------------

/**
 * Why a server could not listen on `host:port`, and what to do. `flag` is
 * the flag that chose the port (`--port`, `--metrics-port`), if any.
 */
export const listenProblem = (
  what: string,
  host: string,
  port: number,
  flag: string | undefined,
  error: unknown
): string => {
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
      const detail = oneLine(
        cause instanceof Error ? cause.message : error instanceof Error ? error.message : String(error)
      )
      return `cannot serve ${what} on ${where}${detail === "" ? "" : ` (${detail})`}; ${choose}`
    }
  }
}

/** A {@link CliFailure} for a server that cannot listen ({@link listenProblem}). */
export const listenFailure = (
  command: string,
  what: string,
  host: string,
  port: number,
  flag: string | undefined,
  error: unknown
): CliFailure => make(command, listenProblem(what, host, port, flag, error))

// ----------------------------------------------------------------------------
// Redis
// ----------------------------------------------------------------------------

/** `host:port` of a Redis URL, never its user name or password. */
export const redisAddress = (url: string): string => {
  const parsed = URL.parse(url)
  return parsed === null ? "the --redis-url" : `${parsed.hostname}:${parsed.port === "" ? "6379" : parsed.port}`
}

/**
 * Why Redis at `url` (the value of `flag`) could not be used, and what to do.
 * It names the address and the socket error code; not the URL (it may carry a
 * password), and not node-redis's message unless there is no code (then with
 * the password masked).
 */
export const redisProblem = (url: string, flag: string, error: unknown): string => {
  const where = `Redis at ${redisAddress(url)}`
  const code = errnoOf(error)
  switch (code) {
    case "ECONNREFUSED":
      return `cannot connect to ${where} (ECONNREFUSED): nothing listens there; start redis-server or fix ${flag}`
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `cannot connect to ${where} (${code}): no such host; fix ${flag}`
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `cannot connect to ${where} (${code}): no answer; check that the host is reachable, or fix ${flag}`
  }
  if (code !== undefined) return `cannot use ${where} (${code}); check that redis-server runs there and ${flag}`
  let detail = ""
  for (let e: unknown = error, depth = 0; detail === "" && typeof e === "object" && e !== null && depth < 5; depth++) {
    detail = oneLine(String((e as { readonly message?: unknown }).message ?? ""))
    e = causeOf(e)
  }
  const password = URL.parse(url)?.password ?? ""
  if (password !== "") detail = detail.replaceAll(password, "***").replaceAll(decodeURIComponent(password), "***")
  return `cannot use ${where}${detail === "" ? "" : ` (${detail})`}; check that redis-server runs there and ${flag}`
}
