/**
 * The typed ElevenLabs service over `effect/http`'s `HttpClient`.
 *
 * **Details**
 *
 * - The transport stays a requirement (`HttpClient.HttpClient`): provide
 *   `NodeHttpClient.layerUndici`, `FetchHttpClient.layer`, the simulator's
 *   in-process client, or a mock in tests.
 * - Every operation fails only with `ElevenLabsError`, whose reason comes from
 *   `Classify.ts`. Requests are validated locally first (`Validation.ts`): a
 *   refused request makes no network call.
 * - Timeouts are per attempt: the time to response headers (`headersTimeout`,
 *   default 30 s, reason `Timeout` phase `headers`) and the idle time between
 *   two body chunks (`idleTimeout`, default 30 s, phase `idle`), applied to
 *   every body, buffered or streamed. A body cut mid-way is `Transport`.
 * - The API key is `Redacted`; it is unwrapped only when the `xi-api-key`
 *   header is set, and `xi-api-key` is added to `Headers.CurrentRedactedNames`
 *   around every call so spans and logs show `<redacted>`.
 * - Streaming operations need a `Scope`: the response (and so any concurrency
 *   permit acquired around the call in the same scope) lives until the scope
 *   closes, which is after the last byte has been read.
 * - Each operation's name, method, path, `accept`, response schema, default
 *   model and local check come from its row of the endpoint table
 *   (`Endpoints.ts`).
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { ElevenLabs } from "elevenlabs-resilience/client"
 *
 * const program = Effect.gen(function*() {
 *   const el = yield* ElevenLabs.ElevenLabs
 *   const { audio, meta } = yield* el.textToSpeech.convert("JBFqnCBsd6RMkjVDRZzb", { text: "Hello" })
 *   return { bytes: audio.length, cost: meta.characterCost }
 * }).pipe(
 *   Effect.provide(ElevenLabs.layer({ apiKey: Redacted.make(process.env.ELEVENLABS_API_KEY!) })),
 *   Effect.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Config, Context, Duration, Effect, Layer, Redacted, type Scope, type Stream } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import * as BeyondTts from "./BeyondTts.ts"
import { makeOperations } from "./ClientOperations.ts"
import {
  type AttemptTimeouts,
  defaultHeadersTimeout,
  defaultIdleTimeout,
  makeWire,
  withoutTransportSpans
} from "./ClientWire.ts"
import type { ElevenLabsError } from "./Errors.ts"
import type { ResponseMeta } from "./ResponseMeta.ts"
import type * as Schemas from "./Schemas.ts"

// ============================================================================
// Results
// ============================================================================

/** Audio bytes with their content type and the response metadata. */
export interface AudioResult {
  readonly audio: Uint8Array
  readonly contentType: string
  readonly meta: ResponseMeta
}

/** A streamed audio answer: metadata at once, bytes as they come. */
export interface AudioStream {
  readonly meta: ResponseMeta
  readonly contentType: string
  readonly audio: Stream.Stream<Uint8Array, ElevenLabsError>
}

/** A with-timestamps answer. */
export interface TimestampsResult extends Schemas.AudioWithTimestamps {
  readonly meta: ResponseMeta
}

/** A streamed with-timestamps answer (newline-delimited JSON, decoded). */
export interface TimestampStream {
  readonly meta: ResponseMeta
  readonly chunks: Stream.Stream<Schemas.TimestampChunk, ElevenLabsError>
}

/** A transcript (or webhook acknowledgement) with the response metadata. */
export interface TranscriptResult {
  readonly transcript: Schemas.SpeechToTextResponse
  readonly meta: ResponseMeta
}

/** Composed music: audio bytes, the `song-id`, the metadata. */
export interface MusicResult extends AudioResult {
  readonly songId: string | undefined
}

// ============================================================================
// Service Interface
// ============================================================================

/** Runtime type identifier of {@link ElevenLabs}. */
export const TypeId = "~elevenlabs-resilience/client/ElevenLabs" as const

/** The typed ElevenLabs API. */
export interface ElevenLabs {
  readonly [TypeId]: typeof TypeId
  readonly textToSpeech: {
    /** `POST /v1/text-to-speech/{voice_id}`: the whole audio, buffered. */
    readonly convert: (
      voiceId: string,
      request: Schemas.TextToSpeechConvertRequest
    ) => Effect.Effect<AudioResult, ElevenLabsError>
    /** `POST /v1/text-to-speech/{voice_id}/stream`: audio as it is generated; the response lives as long as the scope. */
    readonly stream: (
      voiceId: string,
      request: Schemas.TextToSpeechStreamRequest
    ) => Effect.Effect<AudioStream, ElevenLabsError, Scope.Scope>
    /** `POST /v1/text-to-speech/{voice_id}/with-timestamps`. */
    readonly convertWithTimestamps: (
      voiceId: string,
      request: Schemas.TextToSpeechConvertRequest
    ) => Effect.Effect<TimestampsResult, ElevenLabsError>
    /** `POST /v1/text-to-speech/{voice_id}/stream/with-timestamps`: NDJSON chunks. */
    readonly streamWithTimestamps: (
      voiceId: string,
      request: Schemas.TextToSpeechStreamRequest
    ) => Effect.Effect<TimestampStream, ElevenLabsError, Scope.Scope>
  }
  readonly speechToText: {
    /** `POST /v1/speech-to-text` (multipart). */
    readonly convert: (request: Schemas.SpeechToTextRequest) => Effect.Effect<TranscriptResult, ElevenLabsError>
  }
  readonly user: {
    /** `GET /v1/user`. */
    readonly get: () => Effect.Effect<Schemas.User, ElevenLabsError>
    /** `GET /v1/user/subscription`. */
    readonly subscription: () => Effect.Effect<Schemas.Subscription, ElevenLabsError>
  }
  readonly voices: {
    /** `GET /v1/voices`. */
    readonly list: (
      options?: { readonly showLegacy?: boolean | undefined } | undefined
    ) => Effect.Effect<Schemas.Voices, ElevenLabsError>
    /** `GET /v1/voices/{voice_id}`. */
    readonly get: (voiceId: string) => Effect.Effect<Schemas.Voice, ElevenLabsError>
    /**
     * `GET /v2/voices`: one page of a search over the voices the key can use. Page on with the page's
     * `nextPageToken` while `hasMore`. A query out of the API's bounds (`pageSize` outside 1–100, over 100
     * `voiceIds`) fails as `InvalidRequest` with no request sent.
     *
     * @example
     * ```ts
     * const page = yield* client.voices.search({ search: "narration", pageSize: 50, includeTotalCount: false })
     * const next = page.hasMore ? yield* client.voices.search({ search: "narration", pageSize: 50, nextPageToken: page.nextPageToken }) : undefined
     * ```
     */
    readonly search: (search?: Schemas.VoiceSearch | undefined) => Effect.Effect<Schemas.VoicesPage, ElevenLabsError>
  }
  readonly models: {
    /** `GET /v1/models`. */
    readonly list: () => Effect.Effect<ReadonlyArray<Schemas.Model>, ElevenLabsError>
  }
  readonly music: {
    /** `POST /v1/music`. */
    readonly compose: (request: Schemas.MusicComposeRequest) => Effect.Effect<MusicResult, ElevenLabsError>
  }
  // The four groups beyond TTS (`BeyondTts.ts`).
  /** `POST /v1/speech-to-speech/{voice_id}` and `…/stream` (multipart): the voice changer. */
  readonly speechToSpeech: BeyondTts.SpeechToSpeech
  /** `POST /v1/sound-generation`. */
  readonly textToSoundEffects: BeyondTts.TextToSoundEffects
  /** `POST /v1/text-to-dialogue` and `…/stream`. */
  readonly textToDialogue: BeyondTts.TextToDialogue
  /** `POST /v1/audio-isolation` and `…/stream` (multipart). */
  readonly audioIsolation: BeyondTts.AudioIsolation
}

// ============================================================================
// Service Identifier
// ============================================================================

/** The service tag of {@link ElevenLabs}. */
export const ElevenLabs = Context.Service<ElevenLabs>("elevenlabs-resilience/client/ElevenLabs")

// ============================================================================
// Options
// ============================================================================

export {
  type AttemptTimeouts,
  attemptTimeoutsOf,
  defaultHeadersTimeout,
  defaultIdleTimeout,
  OnResponseHeaders
} from "./ClientWire.ts"

/** The production base URL. */
export const defaultBaseUrl = "https://api.elevenlabs.io"

/** Options of {@link make}. */
export interface Options {
  /** The API key, sent as `xi-api-key`. */
  readonly apiKey: Redacted.Redacted<string>
  /** Default `https://api.elevenlabs.io` (no `/v1`). */
  readonly baseUrl?: string | undefined
  /** Time to response headers, per attempt. Default 30 s. */
  readonly headersTimeout?: Duration.Input | undefined
  /** Longest pause between two body chunks, per attempt. Default 30 s. */
  readonly idleTimeout?: Duration.Input | undefined
  /** Per-model character limits overriding `Models.characterLimits`. */
  readonly characterLimits?: Readonly<Record<string, number>> | undefined
  /** A last transformation of the HTTP client (after the base URL and key are set). */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
  /**
   * Ties each request to its scope (`HttpClient.withScope`), so that closing
   * the scope early (a failed or abandoned body) aborts the socket. Default
   * `true`. A transport without sockets, such as the in-process simulator,
   * can turn it off: it costs an `AbortController` per request and, when the
   * scope closes, an `abort()` that builds a `DOMException` with its stack.
   */
  readonly scopedRequests?: boolean | undefined
  /**
   * Whether the transport makes its own `http.client` span per request (Effect's `HttpClient` does). Default
   * `true`. With `false` it makes none, and the request carries the trace context of the span current when
   * it is sent (`traceparent` and `b3`, as the transport's span would have), unless propagation is off
   * (`Tracer.DisablePropagation`, `HttpClient.TracerPropagationEnabled`). The resilient stack turns it off:
   * its attempt span is already the client span of each request, with the HTTP semantic conventions, and a
   * second span per attempt saying the same cost a tenth of a call (docs/observability.md, Spans).
   */
  readonly transportSpans?: boolean | undefined
  /**
   * Checks each request locally before sending it (`Validation.ts`). Default `true`. The resilient stack
   * checks at its own door, once per call, and turns this off so that a call is not checked again at every
   * attempt.
   */
  readonly validate?: boolean | undefined
  /**
   * Called with the headers of each 2xx answer as they arrive, before its body. Default: the calling fiber's
   * {@link OnResponseHeaders}. The resilient stack gives its own here (it feeds the adaptive limit), which
   * spares every call a context overlay.
   */
  readonly onResponseHeaders?: ((meta: ResponseMeta) => Effect.Effect<void>) | undefined
  /**
   * The attempt timeouts as a holder read at each attempt; wins over `headersTimeout` and `idleTimeout`. The
   * resilient stack passes its own, which its live configuration changes (docs/deployment.md).
   */
  readonly timeouts?: AttemptTimeouts | undefined
}

// ============================================================================
// Constructor
// ============================================================================

/**
 * Builds the service from options. The transport (`HttpClient`) is left as a
 * requirement.
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const baseUrl = (options.baseUrl ?? defaultBaseUrl).replace(/\/+$/, "")
  const apiKey = options.apiKey
  const base = (yield* HttpClient.HttpClient).pipe(
    // Prepended (not appended): the base URL and key apply before any
    // transformation the transport makes of its own (the simulator's, say).
    HttpClient.mapRequestInput((request) =>
      request.pipe(
        HttpClientRequest.prependUrl(baseUrl),
        HttpClientRequest.setHeader("xi-api-key", Redacted.value(apiKey))
      )
    )
  )
  // The transport's span off around the transport only: requests a `transformClient` hook makes of its own
  // keep theirs.
  const traced = options.transportSpans === false ? withoutTransportSpans(base) : base
  const transformed = options.transformClient ? options.transformClient(traced) : traced
  const client = options.scopedRequests === false ? transformed : HttpClient.withScope(transformed)
  const wire = makeWire(options, client, options.scopedRequests !== false)
  const beyondTts = BeyondTts.make({
    check: wire.check,
    validation: wire.validation,
    encodeBody: wire.encodeBody,
    requestTo: wire.requestTo,
    buffered: wire.bufferedAudio,
    streamed: wire.streamedAudio
  })
  return ElevenLabs.of({ [TypeId]: TypeId, ...makeOperations(wire), ...beyondTts })
})

// ============================================================================
// Layers
// ============================================================================

/** The service from options; the transport is still required. */
export const layer = (options: Options): Layer.Layer<ElevenLabs, never, HttpClient.HttpClient> =>
  Layer.effect(ElevenLabs, make(options))

/**
 * The service from configuration:
 *
 * | key | default |
 * |---|---|
 * | `ELEVENLABS_API_KEY` (redacted) | required |
 * | `ELEVENLABS_BASE_URL` | `https://api.elevenlabs.io` |
 * | `ELEVENLABS_HEADERS_TIMEOUT` (duration, e.g. `30 seconds`) | 30 s |
 * | `ELEVENLABS_IDLE_TIMEOUT` (duration) | 30 s |
 *
 * Options given here win over nothing but the defaults: configuration wins
 * where a key is set.
 */
export const layerConfig = (
  options?: Omit<Options, "apiKey"> | undefined
): Layer.Layer<ElevenLabs, Config.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(
    ElevenLabs,
    Effect.gen(function*() {
      const config = yield* Config.all({
        apiKey: Config.Redacted("ELEVENLABS_API_KEY"),
        baseUrl: Config.String("ELEVENLABS_BASE_URL").pipe(Config.withDefault(options?.baseUrl ?? defaultBaseUrl)),
        headersTimeout: Config.Duration("ELEVENLABS_HEADERS_TIMEOUT").pipe(
          Config.withDefault(Duration.fromInputUnsafe(options?.headersTimeout ?? defaultHeadersTimeout))
        ),
        idleTimeout: Config.Duration("ELEVENLABS_IDLE_TIMEOUT").pipe(
          Config.withDefault(Duration.fromInputUnsafe(options?.idleTimeout ?? defaultIdleTimeout))
        )
      })
      return yield* make({ ...options, ...config })
    })
  )
