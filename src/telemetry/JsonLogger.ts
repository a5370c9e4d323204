/**
 * A JSON-lines `Logger`: one JSON object per line, with an ISO 8601 time,
 * the level, the message, the request id and user id from log annotations,
 * the trace and span ids of the current span, and the error with its cause.
 *
 * **Details**
 *
 * A line looks like:
 *
 * ```json
 * {"time":"2026-01-01T00:00:00.000Z","level":"warn","message":"retrying","requestId":"r-1","userId":"u-7","traceId":"…","spanId":"…","annotations":{"pool":"standard"}}
 * ```
 *
 * - `level` is `fatal`, `error`, `warn`, `info`, `debug` or `trace`.
 * - `requestId` / `userId` come from the log annotations `requestId` / `userId`
 *   (`Effect.annotateLogs({ requestId })`); absent when not annotated. Other
 *   annotations go under `annotations`.
 * - `error` is present when the log has a cause: `message` of the first
 *   failure or defect and `cause`, the whole cause pretty-printed with stacks.
 * - `time` comes from the fiber's `Clock`, so `TestClock` makes it reproducible.
 * - `redact`: secrets scrubbed from every line (the API key, say), as a second
 *   line of defence behind `Redacted`.
 * - The minimum level is `References.MinimumLogLevel`: {@link layer} sets it
 *   from `minimumLevel`, {@link layerFromConfig} from `LOG_LEVEL` (default Info).
 *
 * @since 0.1.0
 */
import { Cause, Config, Context, Effect, Layer, Logger, Redacted, References, Tracer } from "effect"
import type { LogLevel } from "effect"
import * as Redact from "./Redact.ts"

/** One log line, before serialisation. */
export interface LogRecord {
  readonly time: string
  readonly level: string
  readonly message: unknown
  readonly requestId?: string
  readonly userId?: string
  readonly traceId?: string
  readonly spanId?: string
  readonly error?: { readonly message: string; readonly cause: string }
  readonly annotations?: Record<string, unknown>
}

const levelName = (level: LogLevel.LogLevel): string => level.toLowerCase()

const messageOf = (message: unknown): unknown => {
  const parts = Array.isArray(message) ? message : [message]
  if (parts.length === 1) return parts[0]
  return parts.every((p) => typeof p === "string") ? parts.join(" ") : parts
}

const errorMessageOf = (cause: Cause.Cause<unknown>): string => {
  const e = Cause.squash(cause)
  if (e instanceof Error) return e.message
  if (typeof e === "object" && e !== null && "message" in e && typeof e.message === "string") return e.message
  return String(e)
}

/** The structured record of a log call (what {@link format} serialises). */
export const record: Logger.Logger<unknown, LogRecord> = Logger.make(({ cause, date, fiber, logLevel, message }) => {
  const annotations = { ...fiber.getRef(References.CurrentLogAnnotations) }
  const out: { -readonly [K in keyof LogRecord]: LogRecord[K] } = {
    time: date.toISOString(),
    level: levelName(logLevel),
    message: messageOf(message)
  }
  if (annotations["requestId"] !== undefined) out.requestId = String(annotations["requestId"])
  if (annotations["userId"] !== undefined) out.userId = String(annotations["userId"])
  delete annotations["requestId"]
  delete annotations["userId"]
  const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  if (span !== undefined) {
    out.traceId = span.traceId
    out.spanId = span.spanId
  }
  if (cause.reasons.length > 0) out.error = { message: errorMessageOf(cause), cause: Cause.pretty(cause) }
  if (Object.keys(annotations).length > 0) out.annotations = annotations
  return out
})

const safeJson = (value: unknown): string => {
  const seen = new WeakSet<object>()
  return JSON.stringify(value, (_, v) => {
    if (typeof v === "bigint") return v.toString()
    if (Redacted.isRedacted(v)) return "<redacted>"
    if (v instanceof Error) return { name: v.name, message: v.message }
    if (typeof v === "object" && v !== null) {
      if (seen.has(v)) return "[Circular]"
      seen.add(v)
    }
    return v
  })
}

/** Options of the JSON logger. */
export interface Options {
  /** Secrets scrubbed from every line. */
  readonly redact?: ReadonlyArray<string | Redacted.Redacted<string>> | undefined
}

/** The JSON line of a log call, secrets scrubbed. */
export const format = (options?: Options | undefined): Logger.Logger<unknown, string> =>
  Logger.map(record, (r) => {
    let line = safeJson(r)
    for (const s of options?.redact ?? []) line = Redact.scrub(line, s)
    return line
  })

/** Writes JSON lines through `Console.log` (so `TestConsole` captures them). */
export const logger = (options?: Options | undefined): Logger.Logger<unknown, void> =>
  Logger.withConsoleLog(format(options))

/** Options of {@link layer}. */
export interface LayerOptions extends Options {
  /** Minimum level; default `Info`. */
  readonly minimumLevel?: LogLevel.LogLevel | undefined
}

/** Replaces the loggers with the JSON-lines logger and sets the minimum level. */
export const layer = (options?: LayerOptions | undefined): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.layer([logger(options)]),
    Layer.succeed(References.MinimumLogLevel, options?.minimumLevel ?? "Info")
  )

/** {@link layer} with the minimum level from `LOG_LEVEL` (default Info). */
export const layerFromConfig = (options?: Options | undefined): Layer.Layer<never, Config.ConfigError> =>
  Layer.unwrap(
    Effect.gen(function*() {
      const minimumLevel = yield* Config.LogLevel("LOG_LEVEL").pipe(Config.withDefault("Info" as const))
      return layer({ ...options, minimumLevel })
    })
  )
