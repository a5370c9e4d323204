/**
 * The client's wire: one request sent within the caller's scope and its answer read or streamed, each wait
 * bounded (headers, idle, the call's deadline), every non-2xx answer read (bounded) and classified in one
 * place (`Classify.ts`); JSON decoded with the row's schema; the local check that runs before a request.
 * `ElevenLabs.make` builds one per client and hands it to the operations (`ClientOperations.ts`,
 * `BeyondTts.ts`).
 *
 * @internal
 */
import {
  Cause,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  type Fiber,
  Option,
  References,
  Schema,
  Scope,
  Stream,
  Tracer
} from "effect"
import { constTrue } from "effect/Function"
import { Headers, HttpClient, HttpClientRequest, HttpTraceContext } from "effect/http"
import type { HttpClientError, HttpClientResponse } from "effect/http"
import { concat } from "../internal/Bytes.ts"
import * as Watchdog from "../resilience/Watchdog.ts"
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

/** Adds `xi-api-key` to the header names redacted in spans and logs, unless the caller's context already has it. */
const withRedactedKey = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiber((fiber) => {
    const names = fiber.getRef(Headers.CurrentRedactedNames)
    return names.includes("xi-api-key")
      ? effect
      : Effect.provideService(effect, Headers.CurrentRedactedNames, [...names, "xi-api-key"])
  })

/**
 * `client` without its own `http.client` span (the `ElevenLabs` option `transportSpans: false`): the request
 * carries the trace context of the span current when it is sent, as the transport's span would have put its
 * own there (the same headers, and the same switches: `Tracer.DisablePropagation`,
 * `HttpClient.TracerPropagationEnabled`).
 */
export const withoutTransportSpans = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
  client.pipe(
    // In the request's preprocessing, so `withScope` (which sees the request after it) ties this one.
    HttpClient.mapRequestEffect((request) =>
      Effect.withFiber((fiber) => {
        const span = propagatedSpan(fiber)
        return Effect.succeed(
          span === undefined
            ? request
            : HttpClientRequest.setHeaders(
              request,
              HttpTraceContext.toHeaders(span._tag === "Span" ? span : asSpan(span))
            )
        )
      })
    ),
    HttpClient.transformResponse((send) => Effect.provideService(send, HttpClient.TracerDisabledWhen, constTrue))
  )

/**
 * The span whose trace context a request carries, as Effect's own client span would pick its parent: the
 * current span, or its nearest ancestor when it is marked `Tracer.DisablePropagation` (an external span so
 * marked ends the search). None with tracing off or propagation turned off.
 */
const propagatedSpan = (fiber: Fiber.Fiber<unknown, unknown>): Tracer.AnySpan | undefined => {
  if (
    !fiber.getRef(References.TracerEnabled) || fiber.getRef(Tracer.DisablePropagation) ||
    !fiber.getRef(HttpClient.TracerPropagationEnabled)
  ) return undefined
  let span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  while (span !== undefined && Context.get(span.annotations, Tracer.DisablePropagation)) {
    span = span._tag === "Span" ? Option.getOrUndefined(span.parent) : undefined
  }
  return span
}

/**
 * An external parent (a trace continued from elsewhere) as `HttpTraceContext.toHeaders` reads a span: it reads
 * only the ids, the sampling flag and the parent, so Effect's header format stays Effect's.
 */
const asSpan = (span: Tracer.ExternalSpan): Tracer.Span =>
  ({
    traceId: span.traceId,
    spanId: span.spanId,
    sampled: span.sampled,
    parent: Option.none()
  }) as unknown as Tracer.Span

const emptyBody = new Uint8Array(0)

/** A JSON body decoded with the row's schema; a body that is not it is `InvalidResponse`. */
const decodeJson = <A, I>(
  operation: string,
  response: HttpClientResponse.HttpClientResponse,
  schema: Schema.Codec<A, I>,
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

const fromHttpError = (operation: string) => (error: HttpClientError.HttpClientError) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail(wrap(classifyHttpClientError(operation, error, now))))

/** An error body, up to `maxErrorBodyBytes` (enough to classify), or empty when it cannot be read. */
const readError = (response: HttpClientResponse.HttpClientResponse, watch: Watchdog.Watch<ElevenLabsError>) => {
  const chunks: Array<Uint8Array> = []
  let seen = 0
  return Stream.runForEachWhile(response.stream, (chunk) => {
    chunks.push(chunk)
    seen += chunk.byteLength
    watch.mark()
    return Effect.succeed(seen < maxErrorBodyBytes)
  }).pipe(Effect.map(() => concat(chunks)), Effect.orElseSucceed(() => emptyBody))
}

/** A whole 2xx body, each chunk marked as progress for the watchdog. */
const readAll = (
  operation: string,
  response: HttpClientResponse.HttpClientResponse,
  watch: Watchdog.Watch<ElevenLabsError>
) => {
  const chunks: Array<Uint8Array> = []
  return Stream.runForEachArray(response.stream, (batch) => {
    for (const chunk of batch) chunks.push(chunk)
    watch.mark()
    return Effect.void
  }).pipe(
    Effect.catchTag("HttpClientError", fromHttpError(operation)),
    Effect.map(() => concat(chunks))
  )
}

/** Builds the wire over `client` (the base URL and key already set). */
export const makeWire = (
  options: WireOptions,
  client: HttpClient.HttpClient | HttpClient.HttpClient.With<HttpClientError.HttpClientError, Scope.Scope>,
  /** Whether `client`'s requests need a scope (`HttpClient.withScope`): a whole answer then gets its own. */
  scoped: boolean
) => {
  const timeouts = options.timeouts ?? attemptTimeoutsOf(options)
  const validation: Validation.ValidationOptions = { characterLimits: options.characterLimits }
  /** A local check (`refusal` runs only when this client validates); its refusal as an `ElevenLabsError`. */
  const check = options.validate === false
    ? (_refusal: () => InvalidRequest | undefined): Effect.Effect<void, ElevenLabsError> => Effect.void
    : (refusal: () => InvalidRequest | undefined): Effect.Effect<void, ElevenLabsError> =>
      Effect.mapError(Validation.orFail(refusal()), wrap)

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
   * One request and its answer, every wait bounded by one watchdog (`Watchdog.ts`): the time to headers,
   * each gap between two body chunks (the idle timeout), both cut short by the call's deadline. A 2xx
   * answer goes to `onOk` with the body phase entered; any other status is read (bounded) and classified.
   * The timeouts are read here, at each attempt (a live configuration may change them).
   */
  const exchange = <A, R>(
    operation: string,
    request: HttpClientRequest.HttpClientRequest,
    onOk: (
      response: HttpClientResponse.HttpClientResponse,
      watch: Watchdog.Watch<ElevenLabsError>
    ) => Effect.Effect<A, ElevenLabsError, R>
  ) => {
    const { headers, idle } = timeouts
    const idleMillis = Duration.toMillis(idle)
    const first = { millis: Duration.toMillis(headers), expired: () => wrap(timeout(operation, "headers", headers)) }
    return withRedactedKey(Watchdog.watched(
      { operation, first, poll: Math.min(first.millis, idleMillis) },
      (watch) =>
        Effect.flatMap(
          Effect.catchTag(client.execute(request), "HttpClientError", fromHttpError(operation)),
          (response): Effect.Effect<A, ElevenLabsError, R> => {
            const { status } = response
            if (status >= 200 && status < 300) {
              watch.enter({ millis: idleMillis, expired: () => wrap(timeout(operation, "idle", idle, status)) })
              const meta = fromHeaders(response.headers)
              return Effect.andThen(
                options.onResponseHeaders === undefined
                  ? Effect.withFiber((fiber) => fiber.getRef(OnResponseHeaders)(meta))
                  : options.onResponseHeaders(meta),
                onOk(response, watch)
              )
            }
            // The status decides the reason: a body that stalls or fails while being read is classified as
            // empty (unless the call's deadline ran out meanwhile: the watchdog then fails with the deadline).
            const classified = (body: Uint8Array) =>
              wrap(classifyResponse({
                operation,
                status,
                headers: response.headers,
                body,
                now: watch.clock.currentTimeMillisUnsafe()
              }))
            watch.enter({ millis: idleMillis, expired: () => classified(emptyBody) })
            return Effect.flatMap(readError(response, watch), (body) => Effect.fail(classified(body)))
          }
        )
    ))
  }

  /**
   * A whole answer within its own scope when requests are scoped (closing it aborts the request); without
   * scoped requests there is nothing to close once the body is read.
   */
  const whole = <A>(effect: Effect.Effect<A, ElevenLabsError, Scope.Scope>): Effect.Effect<A, ElevenLabsError> =>
    scoped ? Effect.scoped(effect) : effect as Effect.Effect<A, ElevenLabsError>

  /**
   * Sends a request within the current scope: a 2xx response is returned with its body unread (a stream's;
   * its idle timeout is then the stream's own); any other status is read (bounded) and classified.
   */
  const open = (
    operation: string,
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, ElevenLabsError, Scope.Scope> =>
    Effect.flatMap(Effect.scope, (scope) => {
      // The request lives in a child of the caller's scope: on success it stays open with the caller's scope
      // (until the last byte of a stream); on any failure it is closed at once, which aborts the request,
      // so a timed-out or refused attempt does not keep its socket until the caller's scope ends.
      const child = Scope.forkUnsafe(scope)
      return exchange(operation, request, (response) => Effect.succeed(response)).pipe(
        Scope.provide(child),
        Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(child, exit) : Effect.void)
      )
    })

  /** A JSON answer decoded with the row's schema, with its response (for the metadata). */
  const jsonCall = <A, I>(
    operation: string,
    request: HttpClientRequest.HttpClientRequest,
    schema: Schema.Codec<A, I>
  ) =>
    whole(exchange(
      operation,
      request,
      (response, watch) =>
        Effect.flatMap(
          readAll(operation, response, watch),
          (bytes) => Effect.map(decodeJson(operation, response, schema, bytes), (value) => ({ value, response }))
        )
    ))

  const getJson = <A, I>(operation: string, request: HttpClientRequest.HttpClientRequest, schema: Schema.Codec<A, I>) =>
    Effect.map(jsonCall(operation, request, schema), ({ value }) => value)

  /** A request body encoded with the row's schema (synchronously: the body schemas have no effectful step). */
  const encodeBody = <A, I>(
    operation: string,
    schema: Schema.Codec<A, I>,
    value: unknown
  ): Effect.Effect<I, ElevenLabsError> => {
    const exit = Schema.encodeUnknownExit(schema as Schema.Codec<A, I, never, never>)(value)
    if (Exit.isSuccess(exit)) return Effect.succeed(exit.value)
    // A value the schema refuses is the caller's mistake; anything else (a defect) stays a defect.
    const refused = Cause.findErrorOption(exit.cause)
    return refused._tag === "Some"
      ? Effect.fail(wrap(new InvalidRequest({ operation, message: refused.value.message.slice(0, 500) })))
      : Effect.failCause(exit.cause as Cause.Cause<never>)
  }

  /** A request to a row of the endpoint table: its method, the path given, its `accept` header. */
  const requestTo = (endpoint: Endpoints.Endpoint, path: string) =>
    HttpClientRequest.make(endpoint.method)(path).pipe(
      HttpClientRequest.setHeader("accept", Endpoints.acceptOf(endpoint))
    )

  const contentTypeOf = (response: HttpClientResponse.HttpClientResponse, fallback: string) =>
    response.headers["content-type"] ?? fallback

  /** The whole audio of an answer, with its response. */
  const audioCall = (operation: string, request: HttpClientRequest.HttpClientRequest) =>
    whole(exchange(
      operation,
      request,
      (response, watch) => Effect.map(readAll(operation, response, watch), (audio) => ({ response, audio }))
    ))

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
    open,
    decodeJson,
    jsonCall,
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
