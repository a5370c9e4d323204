/**
 * The real-time TTS WebSocket protocol: the two endpoints (`stream-input`, one context per socket, and
 * `multi-stream-input`, up to five contexts on one socket), their query parameters and limits, the messages
 * each side sends, and one classification of error frames and close codes into the error table. Read by the
 * library's session (`resilience/RealtimeSession.ts`) and by the simulator that answers it, so both speak
 * the same protocol from one place. Facts and sources: docs/realtime.md.
 *
 * **Details**
 *
 * - Client messages are built by the functions below (`init`, `text`, `flush`, `endOfInput`, `keepAlive`,
 *   `closeContext`, `closeSocket`) and encoded with `encode`; nothing else writes the wire.
 * - Server messages decode with {@link decodeServerMessage}, which accepts both spellings the sources
 *   report (`isFinal`/`is_final`, `contextId`/`context_id`, `charDurationsMs`/`charsDurationsMs`) and
 *   normalizes them.
 * - {@link classifyClose} maps an error frame and/or a close code to exactly one reason of the error table.
 *
 * @since 0.2.0
 */
import { Duration } from "effect"
import {
  ConcurrencyLimited,
  type ElevenLabsErrorReason,
  InvalidApiKey,
  InvalidRequest,
  QuotaExceeded,
  ServerError,
  SystemBusy,
  Timeout,
  Transport
} from "./Errors.ts"

// ============================================================================
// Endpoints, parameters, limits
// ============================================================================

/** The two real-time endpoints (the only place their paths are written). */
export const endpoints = {
  single: { operation: "textToSpeech.streamInput", path: "/v1/text-to-speech/{voice_id}/stream-input" },
  multi: { operation: "textToSpeech.multiStreamInput", path: "/v1/text-to-speech/{voice_id}/multi-stream-input" }
} as const

/** Which endpoint: one context per socket, or several. */
export type Kind = keyof typeof endpoints

/** The path of `kind` for `voiceId`. */
export const pathOf = (kind: Kind, voiceId: string): string =>
  endpoints[kind].path.replace("{voice_id}", encodeURIComponent(voiceId))

/** Matches a request path against the two endpoints. */
export const match = (path: string): { readonly kind: Kind; readonly voiceId: string } | undefined => {
  const m = /^\/v1\/text-to-speech\/([^/]+)\/(stream-input|multi-stream-input)\/?$/.exec(path)
  if (m === null) return undefined
  return { kind: m[2] === "stream-input" ? "single" : "multi", voiceId: decodeURIComponent(m[1]!) }
}

/** Documented limits (AsyncAPI document of the docs repository; the multi-context guide). */
export const limits = {
  /** `inactivity_timeout` default and maximum, in seconds. */
  inactivityDefaultSeconds: 20,
  inactivityMaxSeconds: 180,
  /** Concurrent contexts per `multi-stream-input` connection (`max_active_conversations` past it). */
  contextsPerConnection: 5,
  /** `generation_config.chunk_length_schedule`: the default and the bounds of each item. */
  chunkSchedule: [120, 160, 250, 290] as ReadonlyArray<number>,
  chunkMin: 50,
  chunkMax: 500
} as const

/** Models the two endpoints do not serve ("not available" on the WebSocket API: the WebSocket and multi-context guides). */
export const unservedModels: ReadonlyArray<string> = ["eleven_v3"]

/** A number as the server (a Python service) prints a float: `20` → `20.0`, `7.5` → `7.5`. */
const pythonFloat = (n: number): string => (Number.isInteger(n) ? n.toFixed(1) : String(n))

/**
 * The messages of the server's refusals, word for word as the public reports quote them (docs/realtime.md):
 * the error frame's `message` and the close reason (cut by {@link closeReason}).
 */
export const serverMessages = {
  /** `input_timeout_exceeded`, 1008 (livekit/agents#218; elevenlabs-docs#426). */
  inputTimeout: (seconds: number): string =>
    `Have not received a new text input within the timeout of ${
      pythonFloat(seconds)
    } seconds. Streaming input terminated. Please make sure to either feed the input in the timely manner, or to send the end of input text (empty string "") when done.`,
  /** `invalid_input_message`, 1008 (elevenlabs-python#167). */
  invalidInput: "Could not parse input message, make sure it is a json and follows the schema outlined in protocol.",
  /** `max_active_conversations`, 1008 (livekit/agents-js#1985; pipecat#4114). */
  maxActiveConversations:
    "Maximum simultaneous contexts per WebSocket connection exceeded (5). Please close an existing context before opening a new one.",
  /** A 1008 whose error id no source reports (pipecat#4541, #4527). */
  voiceSettingsChanged:
    "voice_settings field must be provided in the first message and then either be not provided or not change.",
  /** A 1008 whose error id no source reports (pipecat#1426). */
  somethingWentWrong: "We are sorry, something went wrong. You are not charged for this request."
} as const

/** Query parameters the library sends (the API key goes in the `xi-api-key` header, never the URL). */
export interface Query {
  readonly modelId?: string | undefined
  readonly outputFormat?: string | undefined
  /** Seconds, 1 to 180. */
  readonly inactivityTimeout?: number | undefined
  readonly syncAlignment?: boolean | undefined
  readonly autoMode?: boolean | undefined
  readonly enableLogging?: boolean | undefined
  readonly languageCode?: string | undefined
}

/** The query string of `query` (without `?`), in a fixed order. */
export const queryString = (query: Query): string => {
  const params = new URLSearchParams()
  if (query.modelId !== undefined) params.set("model_id", query.modelId)
  if (query.outputFormat !== undefined) params.set("output_format", query.outputFormat)
  if (query.inactivityTimeout !== undefined) params.set("inactivity_timeout", String(query.inactivityTimeout))
  if (query.syncAlignment !== undefined) params.set("sync_alignment", String(query.syncAlignment))
  if (query.autoMode !== undefined) params.set("auto_mode", String(query.autoMode))
  if (query.enableLogging !== undefined) params.set("enable_logging", String(query.enableLogging))
  if (query.languageCode !== undefined) params.set("language_code", query.languageCode)
  return params.toString()
}

// ============================================================================
// Client messages
// ============================================================================

/** Voice settings as the socket takes them (snake case, all optional). */
export interface VoiceSettings {
  readonly stability?: number | undefined
  readonly similarity_boost?: number | undefined
  readonly style?: number | undefined
  readonly use_speaker_boost?: boolean | undefined
  readonly speed?: number | undefined
}

/** A message the client sends; `encode` writes it. `context_id` only on `multi-stream-input`. */
export type ClientMessage =
  | {
    readonly text: " "
    readonly context_id?: string | undefined
    readonly voice_settings?: VoiceSettings | undefined
    readonly generation_config?: { readonly chunk_length_schedule: ReadonlyArray<number> } | undefined
  }
  | {
    readonly text: string
    readonly context_id?: string | undefined
    readonly flush?: true | undefined
    readonly try_trigger_generation?: boolean | undefined
  }
  | { readonly context_id: string; readonly close_context: true }
  | { readonly close_socket: true }

const ctx = (contextId: string | undefined) => (contextId === undefined ? {} : { context_id: contextId })

/** The first message of a socket (or of a context): one space, with the settings that may only be set here. */
export const init = (options: {
  readonly contextId?: string | undefined
  readonly voiceSettings?: VoiceSettings | undefined
  readonly chunkSchedule?: ReadonlyArray<number> | undefined
}): ClientMessage => ({
  text: " ",
  ...ctx(options.contextId),
  ...(options.voiceSettings === undefined ? {} : { voice_settings: options.voiceSettings }),
  ...(options.chunkSchedule === undefined
    ? {}
    : { generation_config: { chunk_length_schedule: options.chunkSchedule } })
})

/** Text to speak. It should end with one space (the docs'); {@link normalizeText} makes sure. */
export const text = (chunk: string, contextId?: string, flush?: boolean): ClientMessage => ({
  text: chunk,
  ...ctx(contextId),
  ...(flush === true ? { flush: true as const } : {})
})

/** Generate everything buffered now, and keep the socket (or context) open. */
export const flush = (contextId?: string): ClientMessage => ({ text: "", ...ctx(contextId), flush: true })

/** End of input on `stream-input`: the server speaks what is buffered, sends `isFinal`, then closes 1000. */
export const endOfInput: ClientMessage = { text: "" }

/**
 * Resets the inactivity timer without speaking: one space on `stream-input` (an empty text would end the
 * input), an empty text with its `context_id` on `multi-stream-input` ("ignored by the server but its
 * presence resets the inactivity timeout").
 */
export const keepAlive = (contextId?: string): ClientMessage =>
  contextId === undefined ? { text: " " } : { text: "", context_id: contextId }

/** Closes one context of a multi-context socket (a pending flush still completes). */
export const closeContext = (contextId: string): ClientMessage => ({ context_id: contextId, close_context: true })

/** Flushes every context and closes the multi-context socket. */
export const closeSocket: ClientMessage = { close_socket: true }

/** The JSON text of a client message. */
export const encode = (message: ClientMessage): string => JSON.stringify(message)

/** Text as the docs want it: non-empty text ends with exactly one space. */
export const normalizeText = (chunk: string): string => (chunk.length === 0 ? chunk : chunk.replace(/\s*$/, " "))

// ============================================================================
// Server messages
// ============================================================================

/** Timing of the characters of one audio chunk, relative to the chunk. */
export interface Alignment {
  readonly chars: ReadonlyArray<string>
  readonly charStartTimesMs: ReadonlyArray<number>
  readonly charDurationsMs: ReadonlyArray<number>
}

/** A message the server sends, normalized. */
export type ServerMessage =
  | {
    readonly _tag: "Audio"
    /** Decoded audio bytes. */
    readonly audio: Uint8Array
    readonly alignment: Alignment | undefined
    readonly normalizedAlignment: Alignment | undefined
    readonly contextId: string | undefined
  }
  | { readonly _tag: "Final"; readonly contextId: string | undefined }
  | {
    readonly _tag: "Error"
    readonly error: string | undefined
    readonly message: string
    readonly code: number | undefined
    readonly contextId: string | undefined
  }

// Decoded by hand rather than with a Schema: every audio frame of a session goes through here, and a Schema
// walking each number of three alignment arrays was a tenth of a long sessions simulation's time. The checks
// are the same: the types of the fields used, both spellings, anything else ignored.
const str = (u: unknown): string | undefined => (typeof u === "string" ? u : undefined)
const numbers = (u: unknown): ReadonlyArray<number> | undefined =>
  Array.isArray(u) && u.every((x) => typeof x === "number") ? u : undefined

const alignmentOf = (a: unknown): Alignment | undefined | null => {
  if (a == null) return undefined
  if (typeof a !== "object") return null
  const w = a as Record<string, unknown>
  const chars = w.chars
  if (!Array.isArray(chars) || !chars.every((c) => typeof c === "string")) return null
  const starts = numbers(w.charStartTimesMs) ?? numbers(w.charsStartTimesMs) ?? numbers(w.char_start_times_ms)
  const durations = numbers(w.charDurationsMs) ?? numbers(w.charsDurationsMs) ?? numbers(w.char_durations_ms)
  return { chars, charStartTimesMs: starts ?? [], charDurationsMs: durations ?? [] }
}

const parse = (frame: string): Record<string, unknown> | undefined => {
  try {
    const u: unknown = JSON.parse(frame)
    return typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/**
 * Decodes one text frame of the server; `undefined` for a frame that is none of audio, final or error (a
 * caller treats that as `InvalidResponse`). An audio frame that is also final yields the audio (the caller
 * checks {@link isFinalFrame} for the end).
 */
export const decodeServerMessage = (frame: string): ServerMessage | undefined => {
  const w = parse(frame)
  if (w === undefined) return undefined
  const contextId = str(w.contextId) ?? str(w.context_id)
  const audio = w.audio == null ? undefined : str(w.audio)
  const error = w.error == null ? undefined : str(w.error)
  const message = w.message == null ? undefined : str(w.message)
  const code = typeof w.code === "number" ? w.code : undefined
  if ((w.audio != null && audio === undefined) || (w.error != null && error === undefined)) return undefined
  if (error !== undefined || (message !== undefined && audio === undefined)) {
    return { _tag: "Error", error, message: message ?? "", code, contextId }
  }
  if (audio !== undefined && audio.length > 0) {
    const alignment = alignmentOf(w.alignment)
    const normalizedAlignment = alignmentOf(w.normalizedAlignment)
    if (alignment === null || normalizedAlignment === null) return undefined
    return {
      _tag: "Audio",
      audio: Uint8Array.from(Buffer.from(audio, "base64")),
      alignment,
      normalizedAlignment,
      contextId
    }
  }
  if (w.isFinal === true || w.is_final === true) return { _tag: "Final", contextId }
  return undefined
}

/** Whether a frame carries the end (`isFinal`/`is_final` true), whatever else it carries. */
export const isFinalFrame = (frame: string): boolean => /"is_?[Ff]inal"\s*:\s*true/.test(frame)

/** Server-side encoders (the simulator's): one audio frame, the final frame, an error frame. */
export const serverFrame = {
  audio: (audio: Uint8Array, alignment: Alignment | undefined, contextId?: string): string =>
    JSON.stringify({
      audio: Buffer.from(audio).toString("base64"),
      isFinal: null,
      normalizedAlignment: alignment ?? null,
      alignment: alignment ?? null,
      ...(contextId === undefined ? {} : { contextId })
    }),
  final: (contextId?: string): string =>
    JSON.stringify({ isFinal: true, ...(contextId === undefined ? {} : { contextId }) }),
  error: (error: string, message: string, code: number, contextId?: string): string =>
    JSON.stringify({ message, error, code, ...(contextId === undefined ? {} : { contextId }) })
} as const

/** The close reason the server gives: the message cut to the 123 bytes RFC 6455 allows. */
export const closeReason = (message: string): string => {
  const bytes = Buffer.from(message, "utf8")
  if (bytes.length <= 123) return message
  let cut = bytes.subarray(0, 123).toString("utf8")
  while (Buffer.byteLength(cut, "utf8") > 123 || cut.endsWith("\uFFFD")) cut = cut.slice(0, -1)
  return cut
}

// ============================================================================
// Close codes and error frames → the error table
// ============================================================================

/** How a session ended, as the client saw it. */
export interface Ending {
  readonly operation: string
  /** The close code; `undefined` when the connection dropped without one (1006). */
  readonly code: number | undefined
  readonly reason?: string | undefined
  /** The error frame that came before the close, if any. */
  readonly error?: { readonly error: string | undefined; readonly message: string } | undefined
  /** The `inactivity_timeout` the connection asked for, in seconds (an inactivity close reports it); default 20. */
  readonly inactivitySeconds?: number | undefined
}

/**
 * One reason per ending. Error ids first (the server's `error` field), then the close code:
 * `quota_exceeded` → `QuotaExceeded`; `invalid_api_key` (or a 1008 naming the key) → `InvalidApiKey`;
 * `too_many_concurrent_requests` → `ConcurrencyLimited`; `system_busy` → `SystemBusy`;
 * `input_timeout_exceeded` → `Timeout` (phase `inactivity`); `max_active_conversations`,
 * `invalid_input_message`, voice-settings changes and other 1008 refusals of the input → `InvalidRequest`;
 * 1008 "something went wrong" and 1011 → `ServerError`; a drop without a close frame (1006) or any other
 * code → `Transport`. A normal close (1000) is not an error: callers do not classify it.
 */
export const classifyClose = (ending: Ending): ElevenLabsErrorReason => {
  const { operation, code } = ending
  const id = ending.error?.error
  const message = ending.error?.message || ending.reason ||
    (code === undefined ? "connection dropped" : `closed ${code}`)
  const base = { operation, message, ...(id === undefined ? {} : { detailStatus: id }) }
  switch (id) {
    case "quota_exceeded":
      return new QuotaExceeded(base)
    case "invalid_api_key":
      return new InvalidApiKey(base)
    case "too_many_concurrent_requests":
      return new ConcurrencyLimited(base)
    case "system_busy":
      return new SystemBusy(base)
    case "input_timeout_exceeded":
      return new Timeout({
        ...base,
        phase: "inactivity",
        after: Duration.seconds(ending.inactivitySeconds ?? limits.inactivityDefaultSeconds)
      })
    case "max_active_conversations":
      return new InvalidRequest({ ...base, field: "context_id" })
    case "invalid_input_message":
      return new InvalidRequest(base)
  }
  if (code === 1008) {
    if (/something went wrong/i.test(message)) return new ServerError(base)
    if (/api.?key|unauthori[sz]ed/i.test(message)) return new InvalidApiKey(base)
    return new InvalidRequest(base)
  }
  if (code === 1011) return new ServerError(base)
  return new Transport(base)
}
