/**
 * Error classification in one place: which ElevenLabs answer (or transport
 * failure) becomes which reason of `Errors.ts`.
 *
 * **Details**
 *
 * - {@link classifyResponse} takes an operation, a status, the headers and the
 *   body (text or bytes) and returns exactly one reason. It is total: it never
 *   throws, whatever the body (JSON of any shape, HTML, bytes, empty,
 *   truncated).
 * - Body shapes understood (`docs/api-facts.md` §3.1): A `{"detail":{"status","message"}}`;
 *   A′ the same with `character_used` / `character_limit`; B the newer
 *   envelope `{"detail":{"type","code","message","status","request_id"}}`; C the
 *   FastAPI 422 `{"detail":[{loc,msg,type}]}`; D `{"error","message"}`; E a
 *   top-level `{"status","message"}`; F anything else (text, HTML, empty).
 * - {@link classifyHttpClientError} maps `HttpClientError` transport failures,
 *   {@link classifySdkError} maps errors thrown by the official
 *   `@elevenlabs/elevenlabs-js` SDK to the same reasons.
 *
 * **Gotchas**
 *
 * - A `Retry-After` HTTP date needs the current time: pass `now` (epoch ms,
 *   read from `Clock` by the caller). Without it a date is ignored.
 *
 * @since 0.1.0
 */
import { Duration } from "effect"
import type { HttpClientError } from "effect/http"
import {
  ConcurrencyLimited,
  type ElevenLabsErrorReason,
  Forbidden,
  InvalidApiKey,
  InvalidRequest,
  InvalidResponse,
  MissingPermissions,
  NotFound,
  QuotaExceeded,
  RateLimited,
  ServerError,
  SystemBusy,
  Timeout,
  Transport,
  Unauthorized,
  ValidationFailed,
  type ValidationIssue
} from "./Errors.ts"

/** Response headers as a record; names are matched case-insensitively. */
export type HeaderRecord = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

/** An HTTP answer to classify. */
export interface Answer {
  /** The client operation, for example `textToSpeech.convert`. */
  readonly operation: string
  readonly status: number
  readonly headers?: HeaderRecord | undefined
  /** The body as text, bytes, or already-parsed JSON (`json`). */
  readonly body?: string | Uint8Array | undefined
  /** An already-parsed body (the SDK parses JSON bodies itself). Wins over `body`. */
  readonly json?: unknown
  /** Current time in epoch milliseconds, to read a `Retry-After` HTTP date. */
  readonly now?: number | undefined
}

// ----------------------------------------------------------------------------
// Reading headers and bodies, never throwing
// ----------------------------------------------------------------------------

const header = (headers: HeaderRecord | undefined, name: string): string | undefined => {
  if (headers === undefined) return undefined
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() !== name) continue
    const value = headers[key]
    if (typeof value === "string") return value
    if (Array.isArray(value) && typeof value[0] === "string") return value[0]
  }
  return undefined
}

/**
 * Reads `Retry-After` (delta seconds or an HTTP date) or `retry-after-ms`.
 * Dates need `now`; a date in the past gives zero.
 */
export const parseRetryAfter = (
  headers: HeaderRecord | undefined,
  now?: number | undefined
): Duration.Duration | undefined => {
  const ms = header(headers, "retry-after-ms")
  if (ms !== undefined && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Duration.millis(Number(ms))
  const value = header(headers, "retry-after")?.trim()
  if (value === undefined || value === "") return undefined
  if (/^\d+(\.\d+)?$/.test(value)) return Duration.millis(Math.round(Number(value) * 1000))
  if (now === undefined) return undefined
  const at = Date.parse(value)
  if (!Number.isFinite(at)) return undefined
  return Duration.millis(Math.max(0, at - now))
}

const decoder = () => new TextDecoder("utf-8", { fatal: false })

const bodyText = (body: string | Uint8Array | undefined): string => {
  if (body === undefined) return ""
  if (typeof body === "string") return body
  try {
    return decoder().decode(body)
  } catch {
    return ""
  }
}

const parseJson = (text: string): unknown => {
  const trimmed = text.trim()
  if (trimmed === "" || (trimmed[0] !== "{" && trimmed[0] !== "[")) return undefined
  try {
    return JSON.parse(trimmed)
  } catch {
    return undefined
  }
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)
const str = (u: unknown): string | undefined => (typeof u === "string" ? u : undefined)
const num = (u: unknown): number | undefined => (typeof u === "number" && Number.isFinite(u) ? u : undefined)

/** What a body said, whatever its shape. */
interface Parsed {
  /** `detail.status`, else `detail.code`, else `error`, else top-level `status`. */
  readonly code: string | undefined
  /** Every code the body carried (shape B has two). */
  readonly codes: ReadonlyArray<string>
  readonly message: string | undefined
  readonly issues: ReadonlyArray<ValidationIssue> | undefined
  readonly requestId: string | undefined
  readonly characterUsed: number | undefined
  readonly characterLimit: number | undefined
  readonly shape: "A" | "B" | "C" | "D" | "E" | "F"
}

const issueOf = (u: unknown): ValidationIssue => {
  if (!isRecord(u)) return { loc: [], msg: describeValue(u), type: "unknown" }
  const loc = Array.isArray(u.loc)
    ? u.loc.filter((x): x is string | number => typeof x === "string" || typeof x === "number")
    : []
  return { loc, msg: str(u.msg) ?? "", type: str(u.type) ?? "unknown" }
}

const snippet = (text: string): string | undefined => {
  const t = text.replace(/\s+/g, " ").trim()
  if (t === "") return undefined
  return t.length > 200 ? `${t.slice(0, 200)}…` : t
}

const parseBody = (json: unknown, text: string): Parsed => {
  const none: Parsed = {
    code: undefined,
    codes: [],
    message: snippet(text),
    issues: undefined,
    requestId: undefined,
    characterUsed: undefined,
    characterLimit: undefined,
    shape: "F"
  }
  if (!isRecord(json)) {
    return typeof json === "string" ? { ...none, message: snippet(json) } : none
  }
  const detail = json.detail
  if (Array.isArray(detail)) {
    const issues = detail.map(issueOf)
    const first = issues[0]
    const message = first === undefined
      ? "Validation failed"
      : issues.map((i) => `${i.loc.join(".")}: ${i.msg}`).join("; ")
    return { ...none, issues, message, shape: "C" }
  }
  if (isRecord(detail)) {
    const status = str(detail.status)
    const code = str(detail.code)
    const codes = [status, code].filter((c): c is string => c !== undefined)
    return {
      code: status ?? code,
      codes,
      message: str(detail.message) ?? none.message,
      issues: undefined,
      requestId: str(detail.request_id),
      characterUsed: num(detail.character_used) ?? num(json.character_used),
      characterLimit: num(detail.character_limit) ?? num(json.character_limit),
      shape: code !== undefined || str(detail.type) !== undefined ? "B" : "A"
    }
  }
  if (typeof detail === "string") {
    return { ...none, message: snippet(detail), shape: "A" }
  }
  const error = str(json.error)
  if (error !== undefined) {
    return { ...none, code: error, codes: [error], message: str(json.message) ?? error, shape: "D" }
  }
  const status = str(json.status)
  if (status !== undefined) {
    return { ...none, code: status, codes: [status], message: str(json.message) ?? status, shape: "E" }
  }
  const message = str(json.message)
  return message === undefined ? none : { ...none, message }
}

// ----------------------------------------------------------------------------
// Parsing ElevenLabs messages
// ----------------------------------------------------------------------------

const intIn = (text: string | undefined, re: RegExp): number | undefined => {
  if (text === undefined) return undefined
  const m = re.exec(text)
  if (m === null || m[1] === undefined) return undefined
  const n = Number(m[1].replace(/,/g, ""))
  return Number.isFinite(n) ? n : undefined
}

/** The plan's concurrency limit from "a maximum of N concurrent requests". */
export const parseConcurrencyLimit = (message: string | undefined): number | undefined =>
  intIn(message, /maximum of ([\d,]+) (?:concurrent|parallel)/i)

/** Quota, remaining and required credits from the `quota_exceeded` message. */
export const parseQuota = (message: string | undefined): {
  readonly quota: number | undefined
  readonly remaining: number | undefined
  readonly required: number | undefined
} => ({
  quota: intIn(message, /quota of ([\d,]+)/i),
  remaining: intIn(message, /have (-?[\d,]+) credits? remaining/i),
  required: intIn(message, /([\d,]+) credits? (?:are|is) required/i)
})

/** The permission from "missing the permission X". */
export const parsePermission = (message: string | undefined): string | undefined => {
  if (message === undefined) return undefined
  const m = /missing the permission ([A-Za-z0-9_.:-]+)/i.exec(message)
  return m?.[1]
}

const has = (codes: ReadonlyArray<string>, ...wanted: ReadonlyArray<string>) => codes.some((c) => wanted.includes(c))

// ----------------------------------------------------------------------------
// The classifier
// ----------------------------------------------------------------------------

/**
 * Classifies an HTTP answer into exactly one reason. Never throws.
 *
 * - 429: `too_many_concurrent_requests` / `concurrent_limit_exceeded` (or a
 *   "maximum of N concurrent requests" message) → `ConcurrencyLimited`;
 *   `system_busy` → `SystemBusy`; anything else → `RateLimited`.
 * - 401: `quota_exceeded` → `QuotaExceeded`; `invalid_api_key` →
 *   `InvalidApiKey`; `missing_permissions` → `MissingPermissions`; else `Unauthorized`.
 * - 402 with `quota_exceeded` / `insufficient_credits` → `QuotaExceeded`.
 * - 403 → `Forbidden`; 404 → `NotFound` (400 `voice_not_found` /
 *   `voice_does_not_exist` too, the pre-2025 answer); 422 with a detail array →
 *   `ValidationFailed`; any other 4xx → `InvalidRequest`.
 * - 5xx (and above) → `ServerError`; 2xx, 1xx, 3xx → `InvalidResponse` (an answer
 *   the client could not use).
 *
 * @example
 * ```ts
 * classifyResponse({ operation: "textToSpeech.convert", status: 429,
 *   body: `{"detail":{"status":"system_busy","message":"..."}}` })._tag // => "SystemBusy"
 * ```
 */
export const classifyResponse = (answer: Answer): ElevenLabsErrorReason => {
  const { operation, status, headers } = answer
  const text = answer.json === undefined ? bodyText(answer.body) : typeof answer.json === "string" ? answer.json : ""
  const json = answer.json === undefined || typeof answer.json === "string" ? parseJson(text) : answer.json
  const p = parseBody(json, text)
  const traceId = header(headers, "x-trace-id") ?? p.requestId
  const base = {
    operation,
    status,
    ...(p.code === undefined ? {} : { detailStatus: p.code }),
    ...(traceId === undefined ? {} : { traceId })
  }
  const message = (fallback: string) => p.message ?? fallback

  if (status === 429) {
    const retryAfter = parseRetryAfter(headers, answer.now)
    const ra = retryAfter === undefined ? {} : { retryAfter }
    const fromMessage = parseConcurrencyLimit(p.message)
    if (
      has(p.codes, "too_many_concurrent_requests", "concurrent_limit_exceeded") ||
      (p.codes.length === 0 && fromMessage !== undefined)
    ) {
      const headerLimit = intIn(header(headers, "maximum-concurrent-requests"), /^\s*(\d+)\s*$/)
      const limit = fromMessage ?? headerLimit
      return new ConcurrencyLimited({
        ...base,
        ...ra,
        ...(limit === undefined ? {} : { limit }),
        message: message("Too many concurrent requests")
      })
    }
    if (has(p.codes, "system_busy")) {
      return new SystemBusy({ ...base, ...ra, message: message("The system is busy") })
    }
    return new RateLimited({ ...base, ...ra, message: message("Rate limited") })
  }

  if (
    has(p.codes, "quota_exceeded", "insufficient_credits") && (status === 401 || status === 402 || status === 403)
  ) {
    const q = parseQuota(p.message)
    const quota = q.quota ?? p.characterLimit
    const remaining = q.remaining ??
      (p.characterLimit !== undefined && p.characterUsed !== undefined
        ? Math.max(0, p.characterLimit - p.characterUsed)
        : undefined)
    return new QuotaExceeded({
      ...base,
      message: message("Quota exceeded"),
      ...(quota === undefined ? {} : { quota }),
      ...(remaining === undefined ? {} : { remaining }),
      ...(q.required === undefined ? {} : { required: q.required })
    })
  }

  if (status === 401) {
    if (has(p.codes, "invalid_api_key")) return new InvalidApiKey({ ...base, message: message("Invalid API key") })
    if (has(p.codes, "missing_permissions")) {
      const permission = parsePermission(p.message)
      return new MissingPermissions({
        ...base,
        message: message("The API key is missing a permission"),
        ...(permission === undefined ? {} : { permission })
      })
    }
    return new Unauthorized({ ...base, message: message("Unauthorized") })
  }
  if (status === 403) return new Forbidden({ ...base, message: message("Forbidden") })
  if (status === 404 || (status === 400 && has(p.codes, "voice_not_found", "voice_does_not_exist"))) {
    return new NotFound({ ...base, message: message("Not found") })
  }
  if (status === 422 && p.issues !== undefined) {
    return new ValidationFailed({ ...base, message: message("Validation failed"), issues: p.issues })
  }
  if (status >= 400 && status < 500) {
    return new InvalidRequest({ ...base, message: message(`Request refused with status ${status}`) })
  }
  if (status >= 500) {
    const retryAfter = parseRetryAfter(headers, answer.now)
    return new ServerError({
      ...base,
      ...(retryAfter === undefined ? {} : { retryAfter }),
      message: message(`Server error ${status}`)
    })
  }
  return new InvalidResponse({
    ...base,
    message: status >= 200 && status < 300
      ? `The ${status} answer could not be decoded${p.message === undefined ? "" : `: ${p.message}`}`
      : `Unexpected status ${status}`
  })
}

/** A success answer whose body did not decode. */
export const invalidResponse = (operation: string, status: number, headers: HeaderRecord | undefined, why: string) => {
  const traceId = header(headers, "x-trace-id")
  return new InvalidResponse({
    operation,
    status,
    message: `The ${status} answer could not be decoded: ${why}`,
    ...(traceId === undefined ? {} : { traceId })
  })
}

/** A bound of the attempt timeout was hit. */
export const timeout = (operation: string, phase: "headers" | "idle", after: Duration.Input, status?: number) =>
  new Timeout({
    operation,
    phase,
    after: Duration.fromInputUnsafe(after),
    ...(status === undefined ? {} : { status }),
    message: phase === "headers"
      ? `No response headers within ${Duration.format(Duration.fromInputUnsafe(after))}`
      : `The body stalled for ${Duration.format(Duration.fromInputUnsafe(after))}`
  })

/**
 * Maps an `HttpClientError` to a reason: a transport failure, a body cut
 * mid-way (`DecodeError` while streaming) → `Transport`; a request that could
 * not be encoded or whose URL is invalid → `InvalidRequest`; a status code
 * error → classified from its status and headers (the body is not read here).
 */
export const classifyHttpClientError = (
  operation: string,
  error: HttpClientError.HttpClientError,
  now?: number | undefined
): ElevenLabsErrorReason => {
  const reason = error.reason
  switch (reason._tag) {
    case "StatusCodeError":
      return classifyResponse({ operation, status: reason.response.status, headers: reason.response.headers, now })
    case "EncodeError":
    case "InvalidUrlError":
      return new InvalidRequest({ operation, message: `The request could not be built: ${reason._tag}` })
    case "DecodeError":
    case "EmptyBodyError": {
      const status = reason.response.status
      return new Transport({
        operation,
        status,
        message: `The response body failed mid-way (${describe(reason.cause)})`
      })
    }
    case "TransportError":
    default:
      return new Transport({
        operation,
        message: `Transport failure (${describe((reason as { cause?: unknown }).cause)})`
      })
  }
}

/** A short, key-free description of a cause. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    const inner = (cause as { cause?: unknown }).cause
    const innerCode = inner instanceof Error ? (inner as { code?: unknown }).code : undefined
    return [
      cause.name,
      typeof code === "string" ? code : undefined,
      typeof innerCode === "string" ? innerCode : undefined
    ]
      .filter((x) => x !== undefined)
      .join(" ")
  }
  if (typeof cause === "string") return cause.slice(0, 100)
  return "unknown cause"
}

// ----------------------------------------------------------------------------
// The official SDK's errors
// ----------------------------------------------------------------------------

const headersOfSdk = (raw: unknown): HeaderRecord | undefined => {
  if (!isRecord(raw)) return undefined
  const h = raw.headers
  if (h === undefined || h === null) return undefined
  // A fetch `Headers` (what the SDK keeps in `rawResponse.headers`) or a plain record.
  if (
    typeof (h as { forEach?: unknown }).forEach === "function" && typeof (h as { get?: unknown }).get === "function"
  ) {
    const out: Record<string, string> = {}
    try {
      ;(h as { forEach: (f: (value: string, key: string) => void) => void }).forEach((value, key) => {
        out[key.toLowerCase()] = value
      })
    } catch {
      return undefined
    }
    return out
  }
  return isRecord(h) ? (h as HeaderRecord) : undefined
}

/**
 * Turns an error thrown by the official `@elevenlabs/elevenlabs-js` SDK into
 * the same reasons as this client's: a status error (`statusCode`, `body`
 * parsed JSON or text, `rawResponse.headers`) is classified like an answer;
 * `ElevenLabsTimeoutError`, a `"timeout"` message or an `AbortError` becomes
 * `Timeout` (phase `headers`: the SDK only bounds the time to headers); any
 * other error (fetch failed, reset, DNS) becomes `Transport`. Never throws.
 *
 * @example
 * ```ts
 * try { await sdk.textToSpeech.convert(voiceId, { text }) }
 * catch (e) { const reason = classifySdkError("textToSpeech.convert", e) }
 * ```
 */
export const classifySdkError = (
  operation: string,
  error: unknown,
  options?: { readonly now?: number | undefined; readonly timeout?: Duration.Input | undefined } | undefined
): ElevenLabsErrorReason => {
  const after = options?.timeout ?? Duration.seconds(240)
  if (isRecord(error) || error instanceof Error) {
    const e = error as Record<string, unknown>
    const statusCode = num(e.statusCode)
    if (statusCode !== undefined) {
      const headers = headersOfSdk(e.rawResponse)
      const body = e.body
      return classifyResponse({
        operation,
        status: statusCode,
        headers,
        json: body === undefined ? "" : body,
        now: options?.now
      })
    }
    const name = str(e.name) ?? (error instanceof Error ? error.name : undefined)
    const message = str(e.message) ?? ""
    if (
      name === "ElevenLabsTimeoutError" || name === "AbortError" || name === "TimeoutError" ||
      /^"?timeout"?$/i.test(message.trim()) || /timeout exceeded/i.test(message)
    ) {
      return timeout(operation, "headers", after)
    }
    return new Transport({ operation, message: `SDK call failed: ${message.split("\n")[0]?.slice(0, 200) ?? ""}` })
  }
  if (typeof error === "string" && /timeout/i.test(error)) return timeout(operation, "headers", after)
  return new Transport({ operation, message: `SDK call failed: ${safeString(error).slice(0, 200)}` })
}

/** A short text for any value, that cannot throw (cycles, a broken `toString`). */
const describeValue = (u: unknown): string => {
  if (typeof u === "string") return u
  try {
    return JSON.stringify(u) ?? safeString(u)
  } catch {
    return safeString(u)
  }
}

/** `String(u)` that cannot throw (objects with a broken `toString`). */
const safeString = (u: unknown): string => {
  try {
    return String(u)
  } catch {
    return typeof u
  }
}
