/**
 * The models of a real-time TTS session (`RealtimeSession.ts`, the module users import, re-exports them):
 * the options of a session, the session and context interfaces, the audio chunk, and the local checks of the
 * options (an `InvalidRequest` before anything is sent).
 *
 * @since 0.2.0
 */
import { Duration, type Effect, Option, type Redacted, type Scope, type Stream } from "effect"
import { ElevenLabsError, InvalidRequest } from "../client/Errors.ts"
import { defaultTtsModel } from "../client/Models.ts"
import * as Realtime from "../client/Realtime.ts"
import * as Validation from "../client/Validation.ts"
import type { Lane } from "./ConcurrencyLimiter.ts"

// ============================================================================
// Options
// ============================================================================

/** What every session of a {@link Connector} shares: where to connect and with which key. */
export interface ConnectorOptions {
  /** The API key, sent only in the `xi-api-key` handshake header (never in a URL, log, span or error). */
  readonly apiKey: Redacted.Redacted<string>
  /** `https://api.elevenlabs.io` by default; `http(s)` becomes `ws(s)`. */
  readonly baseUrl?: string | undefined
  /** Time for the WebSocket handshake. Default 10 seconds. */
  readonly openTimeout?: Duration.Input | undefined
}

/** What one session (or one multi-context connection) is opened with. */
export interface SessionOptions {
  readonly voiceId: string
  /** Default `eleven_multilingual_v2` (the library's default TTS model); `eleven_v3` has no real-time endpoint. */
  readonly modelId?: string | undefined
  /** Sent in the init message only (the server refuses changes later). */
  readonly voiceSettings?: Realtime.VoiceSettings | undefined
  /** `output_format`; the server's default when absent. */
  readonly outputFormat?: string | undefined
  /**
   * `generation_config.chunk_length_schedule`: items 50 to 500. The server's default when absent. The session
   * takes a permit at the send that reaches its next step (`RealtimeSchedule`).
   */
  readonly chunkSchedule?: ReadonlyArray<number> | undefined
  /** `inactivity_timeout`, 1 to 180 seconds. Default 20 seconds (the server's). */
  readonly inactivityTimeout?: Duration.Input | undefined
  /** Send keep-alives after half the inactivity timeout of silence. Default `true`. */
  readonly keepAlive?: boolean | undefined
  /**
   * The read-idle bound: while audio is awaited (a context ended, or flushed text not yet spoken), a
   * connection with no frame from the server for this long fails as `Timeout` (phase `idle`), and so
   * reconnects and resends. Default 30 seconds; `false` waits for ever.
   */
  readonly idleTimeout?: Duration.Input | false | undefined
  /** The limiter's lane for the session's permits. Default `"default"`. */
  readonly lane?: Lane | undefined
  readonly languageCode?: string | undefined
  readonly autoMode?: boolean | undefined
  readonly enableLogging?: boolean | undefined
}

// ============================================================================
// Sessions
// ============================================================================

/** One chunk of audio, with the characters it speaks. */
export interface AudioChunk {
  readonly audio: Uint8Array
  /** The characters spoken in this chunk, with their timing (relative to the chunk). */
  readonly alignment: Realtime.Alignment | undefined
  readonly normalizedAlignment: Realtime.Alignment | undefined
  /** The context (multi-context connections only). */
  readonly contextId: string | undefined
}

/** What a session (or a context) has sent and had answered, in code points. */
export interface SpeechStats {
  /** Characters sent (normalized text; the init space and keep-alives excluded). */
  readonly sent: number
  /** Characters the server has answered (aligned). */
  readonly answered: number
  /** Characters sent again after a reconnect. */
  readonly resent: number
}

/** The text side of a session or a context. */
export interface Speaker {
  /**
   * Sends text (normalized: it ends with one space). Waits for the quota reservation, and for the concurrency
   * permit when writing it makes the server generate (it brings the text buffered at the server to the next
   * step of the chunk schedule, or `autoMode`); the text stays here meanwhile. Text below the next step is
   * written at once, without a permit. Fails with the refusal (`InsufficientQuota`, `QuotaExhausted`,
   * `QueueFull`, `QueueTimeout`) without ending the session, or with the session's failure once it failed.
   * Text that is only whitespace is nothing to speak: it is dropped (no reservation, no permit).
   */
  readonly send: (text: string) => Effect.Effect<void, ElevenLabsError>
  /**
   * Asks the server to generate everything buffered now; waits for the permit first when the server holds
   * text (and may fail as `send` does, the session going on).
   */
  readonly flush: Effect.Effect<void, ElevenLabsError>
  /**
   * Ends the input (after the permit, when the server holds text for the end to generate) and waits until
   * everything sent is spoken (`isFinal`): succeeds on a clean end, fails with the session's one typed
   * failure (or with `QueueFull` / `QueueTimeout` before the end is written, the session going on).
   */
  readonly end: Effect.Effect<void, ElevenLabsError>
  /** The audio, in order; ends after the final chunk, fails with the session's failure. */
  readonly audio: Stream.Stream<AudioChunk, ElevenLabsError>
  readonly stats: Effect.Effect<SpeechStats>
}

/** A single-context session (`stream-input`). */
export interface Session extends Speaker {
  /** Reconnects made so far. */
  readonly reconnects: Effect.Effect<number>
}

/** One context of a multi-context connection. */
export interface Context extends Speaker {
  readonly contextId: string
}

/** A multi-context connection (`multi-stream-input`): up to 5 contexts open at once. */
export interface MultiSession {
  /**
   * Opens a context (a generated id when none is given); it is closed when its scope closes, if `end` has not
   * closed it first. A sixth open context fails with `InvalidRequest` (field `context_id`), with nothing sent.
   * `voiceSettings` (default the session's) go in the context's own init: the server fixes them per context.
   */
  readonly openContext: (
    contextId?: string | undefined,
    options?: { readonly voiceSettings?: Realtime.VoiceSettings | undefined }
  ) => Effect.Effect<Context, ElevenLabsError, Scope.Scope>
  /** Contexts open now. */
  readonly contexts: Effect.Effect<ReadonlyArray<string>>
  /**
   * Ends every open context, writes what each has not written yet (text waiting for a permit included) and
   * its end, then closes the connection (`close_socket`) and waits for a clean end.
   */
  readonly close: Effect.Effect<void, ElevenLabsError>
  readonly reconnects: Effect.Effect<number>
}

/**
 * Opens sessions on one key; see `RealtimeSession.make`. `R` is what opening needs besides a `Scope` (the
 * `Socket.WebSocketConstructor` for `make`; nothing for the service of `RealtimeSession.layer`).
 */
export interface Connector<R = never> {
  /** A single-context session, open until the scope closes (or `end`). */
  readonly open: (options: SessionOptions) => Effect.Effect<Session, ElevenLabsError, Scope.Scope | R>
  /** A multi-context connection, open until the scope closes (or `close`). */
  readonly openMulti: (options: SessionOptions) => Effect.Effect<MultiSession, ElevenLabsError, Scope.Scope | R>
}

// ============================================================================
// Checks and the URL
// ============================================================================

/** The settings of a session after its options are checked. */
export interface Settings {
  readonly kind: Realtime.Kind
  readonly operation: string
  readonly voiceId: string
  readonly modelId: string
  readonly inactivityMillis: number
  /** The read-idle bound, `undefined` when there is none. */
  readonly idleMillis: number | undefined
  readonly options: SessionOptions
}

/** The default read-idle bound (`SessionOptions.idleTimeout`). */
export const defaultIdleTimeout: Duration.Duration = Duration.seconds(30)

const refuse = (operation: string, field: string, message: string) =>
  new ElevenLabsError({ reason: new InvalidRequest({ operation, field, message }) })

/** Checks the options of a session; the settings, or the `InvalidRequest` (nothing is sent). */
export const settingsOf = (kind: Realtime.Kind, options: SessionOptions): Settings | ElevenLabsError => {
  const operation = Realtime.endpoints[kind].operation
  const voice = Validation.checkVoiceId(operation, options.voiceId)
  if (voice !== undefined) return new ElevenLabsError({ reason: voice })
  const modelId = options.modelId ?? defaultTtsModel
  if (modelId === "eleven_v3") {
    return refuse(operation, "model_id", "eleven_v3 has no real-time endpoint; use eleven_flash_v2_5 or another model.")
  }
  const inactivity = Option.getOrUndefined(Duration.fromInput(options.inactivityTimeout ?? Duration.seconds(20)))
  const seconds = inactivity === undefined ? Number.NaN : Duration.toSeconds(inactivity)
  if (!(seconds >= 1 && seconds <= Realtime.limits.inactivityMaxSeconds)) {
    return refuse(operation, "inactivity_timeout", "inactivityTimeout must be between 1 and 180 seconds.")
  }
  const schedule = options.chunkSchedule
  if (
    schedule !== undefined &&
    (schedule.length === 0 ||
      schedule.some((n) => !Number.isInteger(n) || n < Realtime.limits.chunkMin || n > Realtime.limits.chunkMax))
  ) {
    return refuse(operation, "chunk_length_schedule", "chunkSchedule items must be integers from 50 to 500.")
  }
  let idleMillis: number | undefined
  if (options.idleTimeout !== false) {
    const idle = Option.getOrUndefined(Duration.fromInput(options.idleTimeout ?? defaultIdleTimeout))
    idleMillis = idle === undefined ? Number.NaN : Duration.toMillis(idle)
    if (!(idleMillis > 0 && Number.isFinite(idleMillis))) {
      return refuse(operation, "idleTimeout", "idleTimeout must be a positive, finite duration (or false).")
    }
  }
  // The query takes whole seconds.
  const inactivityMillis = Math.max(1, Math.round(seconds)) * 1000
  return { kind, operation, voiceId: options.voiceId, modelId, inactivityMillis, idleMillis, options }
}

/** The socket URL of a session: the base URL's host with `ws(s)`, the path and the query (never the key). */
export const urlOf = (baseUrl: string, settings: Settings): string => {
  const base = new URL(baseUrl)
  base.protocol = base.protocol === "http:" || base.protocol === "ws:" ? "ws:" : "wss:"
  const prefix = base.pathname.replace(/\/$/, "")
  const o = settings.options
  const query = Realtime.queryString({
    modelId: settings.modelId,
    outputFormat: o.outputFormat,
    inactivityTimeout: Math.round(settings.inactivityMillis / 1000),
    syncAlignment: true,
    autoMode: o.autoMode,
    enableLogging: o.enableLogging,
    languageCode: o.languageCode
  })
  return `${base.protocol}//${base.host}${prefix}${Realtime.pathOf(settings.kind, settings.voiceId)}?${query}`
}
