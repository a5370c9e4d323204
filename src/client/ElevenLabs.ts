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
import { Clock, Config, Context, Duration, Effect, Exit, Layer, Pull, Redacted, Schema, Scope, Stream } from "effect"
import { Headers, HttpClient, HttpClientRequest } from "effect/http"
import type { HttpClientError, HttpClientResponse } from "effect/http"
import * as BeyondTts from "./BeyondTts.ts"
import { classifyHttpClientError, classifyResponse, invalidResponse, timeout } from "./Classify.ts"
import { ElevenLabsError, type ElevenLabsErrorReason, InvalidRequest } from "./Errors.ts"
import * as Endpoints from "./Endpoints.ts"
import { fromHeaders, type ResponseMeta } from "./ResponseMeta.ts"
import { concat } from "../internal/Bytes.ts"
import * as Deadline from "../resilience/Deadline.ts"
import * as Schemas from "./Schemas.ts"
import * as Validation from "./Validation.ts"
import { appendField, appendFile, pick, query } from "./Wire.ts"

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

/**
 * Called with the metadata of every 2xx answer as soon as its headers arrive,
 * before the body is read: `current-concurrent-requests` describes the server
 * at that moment, so the concurrency limiter learns from it here rather than
 * after the body (when another request may already have taken the slot).
 */
export const OnResponseHeaders = Context.Reference<(meta: ResponseMeta) => Effect.Effect<void>>(
  "elevenlabs-resilience/client/OnResponseHeaders",
  { defaultValue: () => () => Effect.void }
)

/** The production base URL. */
export const defaultBaseUrl = "https://api.elevenlabs.io"
/** Default bound on the time to response headers. */
export const defaultHeadersTimeout: Duration.Duration = Duration.seconds(30)
/** Default bound on the idle time between two body chunks. */
export const defaultIdleTimeout: Duration.Duration = Duration.seconds(30)
/** Error bodies are read up to this many bytes; the rest is not needed to classify. */
const maxErrorBodyBytes = 64 * 1024

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
}

// ============================================================================
// Constructor
// ============================================================================

const wrap = (reason: ElevenLabsErrorReason) => new ElevenLabsError({ reason })

const withRedactedKey = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.updateService(effect, Headers.CurrentRedactedNames, (names) =>
    names.includes("xi-api-key") ? names : [...names, "xi-api-key"])


/** The query of `GET /v2/voices`: snake_case names, lists as repeated keys (as the SDK sends them). */
const voiceSearchParams = (search: Schemas.VoiceSearch): Array<readonly [string, string]> => {
  const params: Array<readonly [string, string]> = []
  for (const [key, value] of Object.entries(search)) {
    const name = Schemas.toSnake(key)
    if (Array.isArray(value)) for (const item of value) params.push([name, String(item)])
    else if (value !== undefined) params.push([name, String(value)])
  }
  return params
}

/** The four TTS rows of the endpoint table. */
type TtsEndpoint =
  | typeof Endpoints.textToSpeechConvert
  | typeof Endpoints.textToSpeechConvertWithTimestamps
  | typeof Endpoints.textToSpeechStream
  | typeof Endpoints.textToSpeechStreamWithTimestamps

const ttsBodyKeys = [
  "text",
  "modelId",
  "languageCode",
  "voiceSettings",
  "pronunciationDictionaryLocators",
  "seed",
  "previousText",
  "nextText",
  "previousRequestIds",
  "nextRequestIds",
  "usePvcAsIvc",
  "applyTextNormalization",
  "applyLanguageTextNormalization"
] as const

/**
 * Builds the service from options. The transport (`HttpClient`) is left as a
 * requirement.
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const baseUrl = (options.baseUrl ?? defaultBaseUrl).replace(/\/+$/, "")
  const headersTimeout = Duration.fromInputUnsafe(options.headersTimeout ?? defaultHeadersTimeout)
  const idleTimeout = Duration.fromInputUnsafe(options.idleTimeout ?? defaultIdleTimeout)
  const validation: Validation.ValidationOptions = { characterLimits: options.characterLimits }
  const apiKey = options.apiKey
  /** A local check (`refusal` runs only when this client validates). */
  const orFail = options.validate === false
    ? (_refusal: () => InvalidRequest | undefined): ReturnType<typeof Validation.orFail> => Effect.void
    : (refusal: () => InvalidRequest | undefined) => Validation.orFail(refusal())

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
  const transformed = options.transformClient ? options.transformClient(base) : base
  const client = options.scopedRequests === false ? transformed : HttpClient.withScope(transformed)

  const fromHttpError = (operation: string) => (error: HttpClientError.HttpClientError) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail(wrap(classifyHttpClientError(operation, error, now))))

  /** The body as a stream of chunks, bounded by the idle timeout. */
  const bodyStream = (operation: string, response: HttpClientResponse.HttpClientResponse) =>
    response.stream.pipe(
      Stream.catchTag("HttpClientError", (error) => Stream.fromEffect(fromHttpError(operation)(error))),
      Stream.timeoutOrElse({
        duration: idleTimeout,
        orElse: () => Stream.fail(wrap(timeout(operation, "idle", idleTimeout, response.status)))
      })
    )

  /**
   * A whole body, chunk by chunk, each pull bounded by the idle timeout (up to
   * `limit` bytes when given). A pull loop rather than `Stream.timeoutOrElse`,
   * which merges the body with a timer stream: two fibers and a queue per body.
   */
  const readBody = (operation: string, response: HttpClientResponse.HttpClientResponse, limit?: number) =>
    Effect.scoped(Effect.gen(function*() {
      const pull = yield* Stream.toPull(
        Stream.catchTag(response.stream, "HttpClientError", (error) => Stream.fromEffect(fromHttpError(operation)(error)))
      )
      // Each pull: the idle timeout, or the time the call has left (Deadline.CurrentDeadline) when shorter.
      const next = pull.pipe(
        Deadline.timeoutWithin({
          duration: idleTimeout,
          orElse: () => Effect.fail(wrap(timeout(operation, "idle", idleTimeout, response.status))),
          operation
        }),
        Pull.catchDone(() => Effect.succeed(undefined))
      )
      const chunks: Array<Uint8Array> = []
      let seen = 0
      while (limit === undefined || seen < limit) {
        const batch = yield* next
        if (batch === undefined) break
        for (const chunk of batch) {
          if (limit !== undefined && seen >= limit) break
          chunks.push(chunk)
          seen += chunk.byteLength
        }
      }
      return concat(chunks)
    }))

  /**
   * Sends a request within the current scope: a 2xx response is returned
   * with its body unread; any other status is read (bounded) and classified.
   */
  const open = (
    operation: string,
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, ElevenLabsError, Scope.Scope> =>
    Effect.gen(function*() {
      // The request lives in a child of the caller's scope: on success it stays open with the caller's scope
      // (until the last byte of a stream); on any failure it is closed at once, which aborts the request,
      // so a timed-out or refused attempt does not keep its socket until the caller's scope ends.
      const child = yield* Scope.fork(yield* Effect.scope)
      return yield* Effect.gen(function*() {
        const response = yield* client.execute(request).pipe(
          Effect.catchTag("HttpClientError", fromHttpError(operation)),
          // The headers timeout, or the time the call has left (Deadline.CurrentDeadline) when shorter.
          Deadline.timeoutWithin({
            duration: headersTimeout,
            orElse: () => Effect.fail(wrap(timeout(operation, "headers", headersTimeout))),
            operation
          })
        )
        if (response.status >= 200 && response.status < 300) {
          const observe = options.onResponseHeaders ?? (yield* OnResponseHeaders)
          yield* observe(fromHeaders(response.headers))
          return response
        }
        // The status decides the reason; a body that fails while being read is classified as empty.
        const body = yield* readBody(operation, response, maxErrorBodyBytes).pipe(
          // ...unless the call's deadline ran out while reading it.
          Effect.catch((e) => Deadline.isExpiry(e) ? Effect.fail(e) : Effect.succeed(new Uint8Array()))
        )
        const now = yield* Clock.currentTimeMillis
        return yield* Effect.fail(wrap(classifyResponse({
          operation,
          status: response.status,
          headers: response.headers,
          body,
          now
        })))
      }).pipe(
        Scope.provide(child),
        Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(child, exit) : Effect.void)
      )
    }).pipe(withRedactedKey)

  const decodeJson = <A>(
    operation: string,
    response: HttpClientResponse.HttpClientResponse,
    schema: Schema.Codec<A, any>,
    bytes: Uint8Array
  ): Effect.Effect<A, ElevenLabsError> => {
    let json: unknown
    try {
      json = JSON.parse(new TextDecoder().decode(bytes))
    } catch {
      return Effect.fail(wrap(invalidResponse(operation, response.status, response.headers, "the body is not JSON")))
    }
    return Schema.decodeUnknownEffect(schema)(json).pipe(
      Effect.mapError((e) =>
        wrap(invalidResponse(operation, response.status, response.headers, e.message.slice(0, 500)))
      )
    ) as Effect.Effect<A, ElevenLabsError>
  }

  const getJson = <A>(operation: string, request: HttpClientRequest.HttpClientRequest, schema: Schema.Codec<A, any>) =>
    Effect.scoped(Effect.gen(function*() {
      const response = yield* open(operation, request)
      const bytes = yield* readBody(operation, response)
      return yield* decodeJson(operation, response, schema, bytes)
    }))

  const encodeBody = <A>(operation: string, schema: Schema.Codec<A, any>, value: unknown) =>
    Schema.encodeUnknownEffect(schema)(value).pipe(
      Effect.mapError((e) => wrap(new InvalidRequest({ operation, message: e.message.slice(0, 500) })))
    )

  /** A request to a row of the endpoint table: its method, the path given, its `accept` header. */
  const requestTo = (endpoint: Endpoints.Endpoint, path: string) =>
    HttpClientRequest.make(endpoint.method)(path).pipe(HttpClientRequest.setHeader("accept", Endpoints.acceptOf(endpoint)))

  const ttsRequest = (
    endpoint: TtsEndpoint,
    voiceId: string,
    request: Schemas.TextToSpeechBody & Schemas.TextToSpeechQuery & { readonly outputFormat?: string | undefined }
  ) =>
    Effect.gen(function*() {
      const operation = endpoint.name
      yield* orFail(() =>
        Validation.checkTextToSpeech(operation, endpoint.check.variant, voiceId, request, validation)
      ).pipe(Effect.mapError(wrap))
      const body = yield* encodeBody(operation, Schemas.TextToSpeechBody, pick(request, ttsBodyKeys))
      return requestTo(endpoint, Endpoints.pathOf(endpoint, { voice_id: voiceId })).pipe(
        HttpClientRequest.setUrlParams(query({
          output_format: request.outputFormat ?? endpoint.outputFormat.default,
          enable_logging: request.enableLogging,
          optimize_streaming_latency: request.optimizeStreamingLatency
        })),
        HttpClientRequest.bodyJsonUnsafe(body)
      )
    })

  const contentTypeOf = (response: HttpClientResponse.HttpClientResponse, fallback: string) =>
    response.headers["content-type"] ?? fallback

  const audioCall = (operation: string, request: HttpClientRequest.HttpClientRequest) =>
    Effect.scoped(Effect.gen(function*() {
      const response = yield* open(operation, request)
      const audio = yield* readBody(operation, response)
      return { response, audio }
    }))

  /** The whole audio of an answer, with its content type and metadata. */
  const bufferedAudio = (operation: string, request: HttpClientRequest.HttpClientRequest): Effect.Effect<AudioResult, ElevenLabsError> =>
    Effect.map(audioCall(operation, request), ({ audio, response }) => ({
      audio,
      contentType: contentTypeOf(response, "audio/mpeg"),
      meta: fromHeaders(response.headers)
    }))

  /** The audio of an answer as it comes; the response lives with the caller's scope. */
  const streamedAudio = (
    operation: string,
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<AudioStream, ElevenLabsError, Scope.Scope> =>
    Effect.map(open(operation, request), (response) => ({
      meta: fromHeaders(response.headers),
      contentType: contentTypeOf(response, "audio/mpeg"),
      audio: bodyStream(operation, response)
    }))

  const textToSpeech: ElevenLabs["textToSpeech"] = {
    convert: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechConvert
      return Effect.flatMap(ttsRequest(endpoint, voiceId, request), (http) => bufferedAudio(endpoint.name, http))
    },
    stream: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechStream
      return Effect.flatMap(ttsRequest(endpoint, voiceId, request), (http) => streamedAudio(endpoint.name, http))
    },
    convertWithTimestamps: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechConvertWithTimestamps
      const operation = endpoint.name
      return Effect.gen(function*() {
        const http = yield* ttsRequest(endpoint, voiceId, request)
        const { response, audio } = yield* audioCall(operation, http)
        const value = yield* decodeJson(operation, response, endpoint.response.schema, audio)
        return { ...value, meta: fromHeaders(response.headers) }
      })
    },
    streamWithTimestamps: (voiceId, request) => {
      const endpoint = Endpoints.textToSpeechStreamWithTimestamps
      const operation = endpoint.name
      return Effect.gen(function*() {
        const http = yield* ttsRequest(endpoint, voiceId, request)
        const response = yield* open(operation, http)
        const decodeLine = Schema.decodeUnknownEffect(Schema.fromJsonString(endpoint.response.schema))
        const chunks = bodyStream(operation, response).pipe(
          Stream.decodeText,
          Stream.splitLines,
          Stream.filter((line) => line.trim() !== ""),
          Stream.mapEffect((line) =>
            decodeLine(line).pipe(
              Effect.mapError((e) =>
                wrap(invalidResponse(operation, response.status, response.headers, `a stream line: ${e.message.slice(0, 300)}`))
              )
            )
          )
        )
        return { meta: fromHeaders(response.headers), chunks }
      })
    }
  }

  const speechToText: ElevenLabs["speechToText"] = {
    convert: (request) => {
      const endpoint = Endpoints.speechToTextConvert
      const operation = endpoint.name
      return Effect.gen(function*() {
        yield* orFail(() => Validation.checkSpeechToText(operation, request)).pipe(Effect.mapError(wrap))
        const form = new FormData()
        // Booleans and numbers go as strings, absent fields are skipped (as the SDK does: `Wire.ts`).
        const field = (name: string, value: string | number | boolean | undefined) => appendField(form, name, value)
        field(endpoint.pool.model.field, Endpoints.modelOf(endpoint, request.modelId))
        if (request.file !== undefined) appendFile(form, "file", request.file)
        field("source_url", request.sourceUrl)
        field("cloud_storage_url", request.cloudStorageUrl)
        field("language_code", request.languageCode)
        field("tag_audio_events", request.tagAudioEvents)
        field("num_speakers", request.numSpeakers)
        field("timestamps_granularity", request.timestampsGranularity)
        field("diarize", request.diarize)
        field("diarization_threshold", request.diarizationThreshold)
        field("file_format", request.fileFormat)
        field("webhook", request.webhook)
        field("webhook_id", request.webhookId)
        field("temperature", request.temperature)
        field("seed", request.seed)
        field("use_multi_channel", request.useMultiChannel)
        for (const term of request.keyterms ?? []) form.append("keyterms", term)
        const http = requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
          HttpClientRequest.setUrlParams(query({ enable_logging: request.enableLogging })),
          HttpClientRequest.bodyFormData(form)
        )
        const transcript = yield* Effect.scoped(Effect.gen(function*() {
          const response = yield* open(operation, http)
          const bytes = yield* readBody(operation, response)
          const value = yield* decodeJson(operation, response, endpoint.response.schema, bytes)
          return { transcript: value, meta: fromHeaders(response.headers) }
        }))
        return transcript
      })
    }
  }

  /** A read of a row without path parameters or query: `user.*`, `models.list`. */
  const read = <S extends Schema.Top & Schema.Codec<any, any>>(
    endpoint: Endpoints.Endpoint & { readonly response: { readonly _tag: "Json"; readonly schema: S } }
  ) => getJson(endpoint.name, requestTo(endpoint, Endpoints.pathOf(endpoint)), endpoint.response.schema)

  const user: ElevenLabs["user"] = {
    get: () => read(Endpoints.userGet),
    subscription: () => read(Endpoints.userSubscription)
  }

  const voices: ElevenLabs["voices"] = {
    list: (opts) => {
      const endpoint = Endpoints.voicesList
      return getJson(
        endpoint.name,
        requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
          HttpClientRequest.setUrlParams(query({ show_legacy: opts?.showLegacy }))
        ),
        endpoint.response.schema
      )
    },
    get: (voiceId) => {
      const endpoint = Endpoints.voicesGet
      const operation = endpoint.name
      return orFail(() => Validation.checkVoiceId(operation, voiceId)).pipe(
        Effect.mapError(wrap),
        // The path is built once the id passed its check.
        Effect.andThen(() =>
          getJson(
            operation,
            requestTo(endpoint, Endpoints.pathOf(endpoint, { voice_id: voiceId })),
            endpoint.response.schema
          )
        )
      )
    },
    search: (search = {}) => {
      const endpoint = Endpoints.voicesSearch
      const operation = endpoint.name
      return orFail(() => Validation.checkVoiceSearch(operation, search)).pipe(
        Effect.mapError(wrap),
        Effect.andThen(getJson(
          operation,
          requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
            HttpClientRequest.setUrlParams(voiceSearchParams(search))
          ),
          endpoint.response.schema
        ))
      )
    }
  }

  const models: ElevenLabs["models"] = {
    list: () => read(Endpoints.modelsList)
  }

  const musicBodyKeys = [
    "prompt",
    "musicPrompt",
    "compositionPlan",
    "lyricsText",
    "musicLengthMs",
    "modelId",
    "generationMode",
    "seed",
    "forceInstrumental",
    "finetuneId",
    "finetuneStrength",
    "respectSectionsDurations"
  ]
  const music: ElevenLabs["music"] = {
    compose: (request) => {
      const endpoint = Endpoints.musicCompose
      const operation = endpoint.name
      return Effect.gen(function*() {
        yield* orFail(() => Validation.checkMusic(operation, request)).pipe(Effect.mapError(wrap))
        const body = yield* encodeBody(operation, Schemas.MusicBody, pick(request, musicBodyKeys))
        const http = requestTo(endpoint, Endpoints.pathOf(endpoint)).pipe(
          HttpClientRequest.setUrlParams(query({ output_format: request.outputFormat })),
          HttpClientRequest.bodyJsonUnsafe(body)
        )
        const result = yield* bufferedAudio(operation, http)
        return { ...result, songId: result.meta.songId }
      })
    }
  }

  const beyondTts = BeyondTts.make({
    check: (refusal) => Effect.mapError(orFail(refusal), wrap),
    validation,
    encodeBody,
    requestTo,
    buffered: bufferedAudio,
    streamed: streamedAudio
  })

  return ElevenLabs.of({ [TypeId]: TypeId, textToSpeech, speechToText, user, voices, models, music, ...beyondTts })
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
