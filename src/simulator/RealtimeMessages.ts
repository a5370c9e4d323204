/**
 * What the real-time engine reads of a connection: the query of its URL
 * ({@link readQuery}) and each client message ({@link parseMessage}), checked
 * against the protocol's schema (`client/Realtime.ts`, docs/realtime.md).
 *
 * **Details**
 *
 * - A message that is not a JSON object, or whose fields have the wrong type
 *   or are out of range (`voice_settings` as the HTTP checks have them,
 *   `chunk_length_schedule` items 50 to 500), is `undefined`: the engine
 *   answers `invalid_input_message` and closes with 1008.
 * - The key may come as `xi-api-key` or `xi_api_key` (both spellings are in
 *   the sources) or as `authorization` (`Bearer ` is stripped).
 * - Fields the protocol does not name are ignored, as pydantic models ignore
 *   them.
 *
 * @since 0.2.0
 */
import { defaultTtsModel } from "../client/Models.ts"
import * as Realtime from "../client/Realtime.ts"
import { checkVoiceSettings, isObject, type ValidationItem } from "./Checks.ts"

/** The `output_format` when the query names none (the Python SDK's `convert_realtime` default). */
export const defaultOutputFormat = "mp3_44100_128"

/** What the engine reads of a connection's URL. */
export interface Query {
  readonly kind: Realtime.Kind
  readonly voiceId: string
  readonly modelId: string
  readonly outputFormat: string
  /** The inactivity timeout in seconds (default 20; over 180 is taken as 180). */
  readonly inactivitySeconds: number
  readonly autoMode: boolean
  /** A key given as the `authorization` query parameter, if any. */
  readonly authorization: string | undefined
}

/**
 * The query of a connection to `url` (a path with its query, or an absolute URL of any scheme and host);
 * `undefined` for a path that is neither endpoint.
 */
export const readQuery = (url: string): Query | undefined => {
  const parsed = new URL(url, "ws://elevenlabs.simulator")
  const found = Realtime.match(parsed.pathname)
  if (found === undefined) return undefined
  const q = parsed.searchParams
  const raw = Number(q.get("inactivity_timeout") ?? Realtime.limits.inactivityDefaultSeconds)
  const inactivitySeconds = Number.isFinite(raw) && raw > 0
    ? Math.min(raw, Realtime.limits.inactivityMaxSeconds)
    : Realtime.limits.inactivityDefaultSeconds
  const authorization = q.get("authorization")
  return {
    kind: found.kind,
    voiceId: found.voiceId,
    modelId: q.get("model_id") ?? defaultTtsModel,
    outputFormat: q.get("output_format") ?? defaultOutputFormat,
    inactivitySeconds,
    autoMode: q.get("auto_mode") === "true",
    authorization: authorization === null || authorization === "" ? undefined : stripBearer(authorization)
  }
}

const stripBearer = (value: string): string => value.replace(/^Bearer\s+/i, "")

/** One client message, read. */
export interface Message {
  /** `undefined` when the message has no `text` (a flush, `close_context`, `close_socket`). */
  readonly text: string | undefined
  readonly contextId: string | undefined
  readonly flush: boolean
  readonly tryTrigger: boolean
  readonly closeContext: boolean
  readonly closeSocket: boolean
  /** `voice_settings` as sent (compared, not used: the simulator's audio does not depend on it). */
  readonly voiceSettings: Readonly<Record<string, unknown>> | undefined
  /** `generation_config` (or `generator_config`, the AsyncAPI document's spelling) as sent. */
  readonly generationConfig: Readonly<Record<string, unknown>> | undefined
  /** `generation_config.chunk_length_schedule`, when given. */
  readonly schedule: ReadonlyArray<number> | undefined
  /** The key given in the message, if any. */
  readonly key: string | undefined
}

const optionalBoolean = (v: unknown): boolean | undefined =>
  v === undefined || v === null ? false : typeof v === "boolean" ? v : undefined

const optionalString = (v: unknown): string | null | undefined =>
  v === undefined || v === null ? undefined : typeof v === "string" ? v : null

/** The chunk schedule of a `generation_config`: `null` when it is not valid. */
const scheduleOf = (config: Record<string, unknown>): ReadonlyArray<number> | undefined | null => {
  const s = config["chunk_length_schedule"]
  if (s === undefined || s === null) return undefined
  if (!Array.isArray(s) || s.length === 0) return null
  for (const item of s) {
    if (typeof item !== "number" || item < Realtime.limits.chunkMin || item > Realtime.limits.chunkMax) return null
  }
  return s as ReadonlyArray<number>
}

/** Reads one text frame; `undefined` when it breaks the schema (`invalid_input_message`). */
export const parseMessage = (data: string): Message | undefined => {
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    return undefined
  }
  if (!isObject(value)) return undefined
  const text = optionalString(value["text"])
  const contextId = optionalString(value["context_id"] ?? value["contextId"])
  const flush = optionalBoolean(value["flush"])
  const tryTrigger = optionalBoolean(value["try_trigger_generation"])
  const closeContext = optionalBoolean(value["close_context"])
  const closeSocket = optionalBoolean(value["close_socket"])
  if (
    text === null || contextId === null || flush === undefined || tryTrigger === undefined ||
    closeContext === undefined || closeSocket === undefined
  ) return undefined
  const vs = value["voice_settings"]
  let voiceSettings: Record<string, unknown> | undefined
  if (vs !== undefined && vs !== null) {
    const items: Array<ValidationItem> = []
    checkVoiceSettings(items, value)
    if (items.length > 0 || !isObject(vs)) return undefined
    voiceSettings = vs
  }
  const gc = value["generation_config"] ?? value["generator_config"]
  let generationConfig: Record<string, unknown> | undefined
  let schedule: ReadonlyArray<number> | undefined
  if (gc !== undefined && gc !== null) {
    if (!isObject(gc)) return undefined
    const s = scheduleOf(gc)
    if (s === null) return undefined
    generationConfig = gc
    schedule = s
  }
  const key = optionalString(value["xi-api-key"] ?? value["xi_api_key"])
  const authorization = optionalString(value["authorization"])
  if (key === null || authorization === null) return undefined
  return {
    text,
    contextId,
    flush,
    tryTrigger,
    closeContext,
    closeSocket,
    voiceSettings,
    generationConfig,
    schedule,
    key: key ?? (authorization === undefined ? undefined : stripBearer(authorization))
  }
}

/** A settings object in a canonical form (keys sorted), so equal settings compare equal. */
export const canonical = (value: Readonly<Record<string, unknown>> | undefined): string | undefined => {
  if (value === undefined) return undefined
  const sort = (v: unknown): unknown =>
    isObject(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]))
      : Array.isArray(v)
      ? v.map(sort)
      : v
  return JSON.stringify(sort(value))
}
