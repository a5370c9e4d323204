/**
 * What the simulator reads of a request, and the checks FastAPI makes before
 * a handler runs: each check adds its 422 items (FastAPI's `detail` list
 * shape) to a list, so one answer reports every problem, as the API does.
 *
 * **Details**
 *
 * - The checks are pure: they read the request's parts and push
 *   {@link ValidationItem}s; the handler answers `422` when the list is not
 *   empty, before the key is looked at (docs/api-facts.md §3.3).
 * - {@link formatForbidden} is the one check after auth: a format gated to a
 *   higher plan (`403 output_format_not_allowed`).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { minimumPlanForFormat } from "../client/Models.ts"
import { type Account, planAtLeast } from "./Accounts.ts"
import type { Answers, Pending } from "./Answers.ts"
import * as Audio from "./Audio.ts"

type Json = unknown
type Loc = ReadonlyArray<string | number>

/**
 * What the simulator's `handle` reads of a request: the part of a Web `Request` it uses, so a
 * Web `Request` is one. The in-process face passes a lighter object with the body already
 * decoded in `bodyText` (read synchronously: no promise for `TestClock` to miss, no Web
 * `Request` to build per call).
 */
export interface IncomingRequest {
  readonly method: string
  /** The absolute URL, query included. */
  readonly url: string
  readonly headers: { readonly get: (name: string) => string | null }
  readonly text: () => Promise<string>
  readonly formData: () => Promise<FormData>
  /** The body as text when it is known up front; read instead of `text()`. */
  readonly bodyText?: string | undefined
}

/**
 * The light {@link IncomingRequest} both faces pass for a body that is text
 * (JSON, text, a URL-encoded form, or none): decoded once, up front. A form is
 * parsed from that text on demand, as a Web `Request` would parse it.
 */
export const textRequest = (options: {
  readonly method: string
  readonly url: string
  /** A header by its lower-case name. */
  readonly header: (name: string) => string | null
  readonly bodyText: string
}): IncomingRequest => {
  const { bodyText, header } = options
  return {
    method: options.method,
    url: options.url,
    headers: { get: (name) => header(name.toLowerCase()) },
    bodyText,
    text: () => Promise.resolve(bodyText),
    formData: () => {
      const contentType = header("content-type")
      return new Response(bodyText, contentType === null ? {} : { headers: { "content-type": contentType } }).formData()
    }
  }
}

/** One entry of a FastAPI 422 `detail` list. */
export type ValidationItem = {
  readonly type: string
  readonly loc: ReadonlyArray<string | number>
  readonly msg: string
  readonly input: Json
  readonly ctx?: Record<string, Json>
}

/** A JSON body: its value, or the raw text that did not parse. */
export type JsonRead = { readonly ok: true; readonly value: Json } | { readonly ok: false; readonly raw: string }

const parseJson = (raw: string): JsonRead => {
  try {
    return { ok: true, value: JSON.parse(raw) as Json }
  } catch {
    return { ok: false, raw }
  }
}

/** Reads the body as JSON (from `bodyText` when known: no promise). */
export const readJson = (request: IncomingRequest): Effect.Effect<JsonRead> => {
  const known = request.bodyText
  return known !== undefined
    ? Effect.sync(() => parseJson(known))
    : Effect.map(Effect.promise(() => request.text().catch(() => "")), parseJson)
}

/** The item of a body that is not JSON. */
export const jsonInvalid = (raw: string): ValidationItem => ({
  type: "json_invalid",
  loc: ["body", 0],
  msg: "JSON decode error",
  input: {},
  ctx: { error: raw.trim() === "" ? "Expecting value" : "Invalid JSON" }
})

/** `'a', 'b' or 'c'`, as pydantic lists an enum's values. */
export const quoteList = (values: ReadonlyArray<string>): string => {
  const quoted = values.map((v) => `'${v}'`)
  return quoted.length <= 1 ? quoted.join("") : `${quoted.slice(0, -1).join(", ")} or ${quoted[quoted.length - 1]}`
}

/** The item of a value outside an enum. */
export const enumItem = (loc: Loc, allowed: ReadonlyArray<string>, input: Json): ValidationItem => ({
  type: "enum",
  loc,
  msg: `Input should be ${quoteList(allowed)}`,
  input,
  ctx: { expected: quoteList(allowed) }
})

/** The item of an empty string where one character is the minimum. */
export const tooShort = (loc: Loc, input: string): ValidationItem => ({
  type: "string_too_short",
  loc,
  msg: "String should have at least 1 character",
  input,
  ctx: { min_length: 1 }
})

/** A JSON object (not null, not a list). */
export const isObject = (v: Json): v is Record<string, Json> => typeof v === "object" && v !== null && !Array.isArray(v)

/** The JSON body as an object, else its 422 item. */
export const objectBody = (items: Array<ValidationItem>, parsed: JsonRead): Record<string, Json> | undefined => {
  if (!parsed.ok) {
    items.push(jsonInvalid(parsed.raw))
    return undefined
  }
  if (!isObject(parsed.value)) {
    items.push({
      type: "model_attributes_type",
      loc: ["body"],
      msg: "Input should be a valid dictionary or object to extract fields from",
      input: parsed.value
    })
    return undefined
  }
  return parsed.value
}

/** A string `field` of `body` (`null` allowed when optional). */
export const checkString = (
  items: Array<ValidationItem>,
  body: Record<string, Json>,
  field: string,
  required: boolean
): string | undefined => {
  const v = body[field]
  if (v === undefined) {
    if (required) items.push({ type: "missing", loc: ["body", field], msg: "Field required", input: body })
    return undefined
  }
  if (v === null && !required) return undefined
  if (typeof v !== "string") {
    items.push({ type: "string_type", loc: ["body", field], msg: "Input should be a valid string", input: v })
    return undefined
  }
  return v
}

// As the client checks them: style and speed are unbounded in the TTS body's schema (docs/api-facts.md §2.1).
const voiceSettingRanges: Record<string, readonly [number, number]> = {
  stability: [0, 1],
  similarity_boost: [0, 1],
  style: [0, 1],
  speed: [0.7, 1.2]
}

/** The optional `voice_settings` object of `body`. */
export const checkVoiceSettings = (items: Array<ValidationItem>, body: Record<string, Json>): void => {
  const vs = body["voice_settings"]
  if (vs === undefined || vs === null) return
  if (!isObject(vs)) {
    items.push({
      type: "model_attributes_type",
      loc: ["body", "voice_settings"],
      msg: "Input should be a valid dictionary or object to extract fields from",
      input: vs
    })
    return
  }
  for (const [field, [lo, hi]] of Object.entries(voiceSettingRanges)) {
    const v = vs[field]
    if (v === undefined) continue
    numberIn(items, ["body", "voice_settings", field], v, lo, hi, false)
  }
  const boost = vs["use_speaker_boost"]
  if (boost !== undefined && typeof boost !== "boolean") {
    items.push({
      type: "bool_type",
      loc: ["body", "voice_settings", "use_speaker_boost"],
      msg: "Input should be a valid boolean",
      input: boost
    })
  }
}

/** The `output_format` query (else `fallback`), one of `allowed`. */
export const checkFormat = (
  items: Array<ValidationItem>,
  url: URL,
  allowed: ReadonlyArray<string>,
  fallback: string
): string => {
  const format = url.searchParams.get("output_format") ?? fallback
  if (!allowed.includes(format)) items.push(enumItem(["query", "output_format"], allowed, format))
  return format
}

const formatLabel = (format: string): string => {
  const info = Audio.parseFormat(format)
  if (info === undefined) return format
  const codec = info.codec.toUpperCase()
  return info.codec === "mp3"
    ? `${codec} at ${info.sampleRate}hz, ${info.bitrate}kbps`
    : `${codec} at ${info.sampleRate}hz`
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

/** `403 output_format_not_allowed` when the account's plan may not ask for `format`, else `undefined`. */
export const formatForbidden = (answers: Answers, account: Account, format: string): Pending | undefined => {
  const needed = minimumPlanForFormat(format)
  if (needed === undefined || planAtLeast(account.plan, needed)) return undefined
  return answers.detail(
    403,
    "output_format_not_allowed",
    `Requested output format ${format} (${formatLabel(format)}) is only allowed for ${
      capitalize(needed)
    } tier and above.`
  )
}

/** An optional number within `[lo, hi]` (and nullable, unless `nullable` is false). */
export const numberIn = (
  items: Array<ValidationItem>,
  loc: ReadonlyArray<string | number>,
  v: unknown,
  lo: number,
  hi: number,
  nullable = true
): number | undefined => {
  if (v === undefined || (v === null && nullable)) return undefined
  if (typeof v !== "number") items.push({ type: "float_type", loc, msg: "Input should be a valid number", input: v })
  else if (v < lo) {
    items.push({
      type: "greater_than_equal",
      loc,
      msg: `Input should be greater than or equal to ${lo}`,
      input: v,
      ctx: { ge: lo }
    })
  } else if (v > hi) {
    items.push({
      type: "less_than_equal",
      loc,
      msg: `Input should be less than or equal to ${hi}`,
      input: v,
      ctx: { le: hi }
    })
  } else return v
  return undefined
}
