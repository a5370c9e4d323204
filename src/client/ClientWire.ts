/**
 * The client's wire: one request sent within the caller's scope and its answer read or streamed, each wait
 * bounded (headers, idle, the call's deadline), every non-2xx answer read (bounded) and classified in one
 * place (`Classify.ts`); JSON decoded with the row's schema; the local check that runs before a request.
 * `ElevenLabs.make` builds one per client and hands it to the operations (`ClientOperations.ts`,
 * `BeyondTts.ts`).
 *
 * @internal
 */
import { Clock, Context, Duration, Effect, Exit, Pull, Schema, Scope, Stream } from "effect"
import { Headers, HttpClientRequest } from "effect/http"
import type { HttpClient, HttpClientError, HttpClientResponse } from "effect/http"
import { concat } from "../internal/Bytes.ts"
import * as Deadline from "../resilience/Deadline.ts"
import { classifyHttpClientError, classifyResponse, invalidResponse, timeout } from "./Classify.ts"
import type { AudioResult, AudioStream } from "./ElevenLabs.ts"
import * as Endpoints from "./Endpoints.ts"
import { ElevenLabsError, type ElevenLabsErrorReason, InvalidRequest } from "./Errors.ts"
import { fromHeaders, type ResponseMeta } from "./ResponseMeta.ts"
import * as Validation from "./Validation.ts"

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

/** Default bound on the time to response headers. */
export const defaultHeadersTimeout: Duration.Duration = Duration.seconds(30)
/** Default bound on the idle time between two body chunks. */
export const defaultIdleTimeout: Duration.Duration = Duration.seconds(30)
/** Error bodies are read up to this many bytes; the rest is not needed to classify. */
const maxErrorBodyBytes = 64 * 1024

/** What the wire reads of the client's options. */
export interface WireOptions {
  readonly headersTimeout?: Duration.Input | undefined
  readonly idleTimeout?: Duration.Input | undefined
  readonly characterLimits?: Readonly<Record<string, number>> | undefined
  readonly validate?: boolean | undefined
  readonly onResponseHeaders?: ((meta: ResponseMeta) => Effect.Effect<void>) | undefined
  /** The attempt timeouts, read at each attempt (the resilient stack changes them live); wins over the two above. */
  readonly timeouts?: AttemptTimeouts | undefined
}

/** The per-attempt timeouts as a holder read at each attempt, so that a live configuration can change them. */
export interface AttemptTimeouts {
  headers: Duration.Duration
  idle: Duration.Duration
}

/** The holder of `options`' timeouts (their defaults when absent). */
export const attemptTimeoutsOf = (options: {
  readonly headersTimeout?: Duration.Input | undefined
  readonly idleTimeout?: Duration.Input | undefined
}): AttemptTimeouts => ({
  headers: Duration.fromInputUnsafe(options.headersTimeout ?? defaultHeadersTimeout),
  idle: Duration.fromInputUnsafe(options.idleTimeout ?? defaultIdleTimeout)
})

export const wrap = (reason: ElevenLabsErrorReason) => new ElevenLabsError({ reason })

const withRedactedKey = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.updateService(
    effect,
    Headers.CurrentRedactedNames,
    (names) => names.includes("xi-api-key") ? names : [...names, "xi-api-key"]
  )

/** A JSON body decoded with the row's schema; a body that is not it is `InvalidResponse`. */
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
    Effect.mapError((e) => wrap(invalidResponse(operation, response.status, response.headers, e.message.slice(0, 500))))
  ) as Effect.Effect<A, ElevenLabsError>
}

/** Builds the wire over `client` (the base URL and key already set). */
export const makeWire = (
  options: WireOptions,
  client: HttpClient.HttpClient | HttpClient.HttpClient.With<HttpClientError.HttpClientError, Scope.Scope>
) => {
  const timeouts = options.timeouts ?? attemptTimeoutsOf(options)
  const validation: Validation.ValidationOptions = { characterLimits: options.characterLimits }
  /** A local check (`refusal` runs only when this client validates); its refusal as an `ElevenLabsError`. */
  const check = options.validate === false
    ? (_refusal: () => InvalidRequest | undefined): Effect.Effect<void, ElevenLabsError> => Effect.void
    : (refusal: () => InvalidRequest | undefined): Effect.Effect<void, ElevenLabsError> =>
      Effect.mapError(Validation.orFail(refusal()), wrap)

  const fromHttpError = (operation: string) => (error: HttpClientError.HttpClientError) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail(wrap(classifyHttpClientError(operation, error, now))))

  /** The body as a stream of chunks, bounded by the idle timeout. */
  const bodyStream = (operation: string, response: HttpClientResponse.HttpClientResponse) =>
    response.stream.pipe(
      Stream.catchTag("HttpClientError", (error) => Stream.fromEffect(fromHttpError(operation)(error))),
      Stream.timeoutOrElse({
        duration: timeouts.idle,
        orElse: () => Stream.fail(wrap(timeout(operation, "idle", timeouts.idle, response.status)))
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
        Stream.catchTag(
          response.stream,
          "HttpClientError",
          (error) => Stream.fromEffect(fromHttpError(operation)(error))
        )
      )
      // Each pull: the idle timeout, or the time the call has left (Deadline.CurrentDeadline) when shorter.
      const next = pull.pipe(
        Deadline.timeoutWithin({
          duration: timeouts.idle,
          orElse: () => Effect.fail(wrap(timeout(operation, "idle", timeouts.idle, response.status))),
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
            duration: timeouts.headers,
            orElse: () => Effect.fail(wrap(timeout(operation, "headers", timeouts.headers))),
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
    HttpClientRequest.make(endpoint.method)(path).pipe(
      HttpClientRequest.setHeader("accept", Endpoints.acceptOf(endpoint))
    )

  const contentTypeOf = (response: HttpClientResponse.HttpClientResponse, fallback: string) =>
    response.headers["content-type"] ?? fallback

  const audioCall = (operation: string, request: HttpClientRequest.HttpClientRequest) =>
    Effect.scoped(Effect.gen(function*() {
      const response = yield* open(operation, request)
      const audio = yield* readBody(operation, response)
      return { response, audio }
    }))

  /** The whole audio of an answer, with its content type and metadata. */
  const bufferedAudio = (
    operation: string,
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<AudioResult, ElevenLabsError> =>
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

  return {
    validation,
    check,
    bodyStream,
    readBody,
    open,
    decodeJson,
    getJson,
    encodeBody,
    requestTo,
    audioCall,
    bufferedAudio,
    streamedAudio
  }
}

/** The wire of one client. */
export type ClientWire = ReturnType<typeof makeWire>
