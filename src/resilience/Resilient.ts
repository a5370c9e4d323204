/**
 * The resilient ElevenLabs client: one `Layer` that provides the same
 * `ElevenLabs` service as the plain client, with every policy applied in the
 * order of the design (docs/design.md section 4). It is an adapter over the
 * one request pipeline (`Pipeline.ts`, where the policies are built and the
 * order is written): each operation validates its request, describes its call
 * (pool, model, credits, coalescing key, fallback) and hands the client's
 * attempt to the pipeline.
 *
 * **Details**
 *
 * Outer to inner, for one logical call:
 *
 * ```text
 *  caller
 *    │ 1. validate locally ─────────────── InvalidRequest, no network, no credits
 *    │ 9. fallback (opt-in) ────────────── on a terminal failure, cached audio, meta.fallback
 *    │ 2. coalesce ─────────────────────── identical calls in flight share one upstream call
 *    │ 3. quota guard ──────────────────── reserve ceil(chars x multiplier); commit / release
 *    │ 4. deadline ─────────────────────── the whole call, queueing and retries included
 *    │ 5. retry (+ budget) ─────────────── per error class; requeue / exponential / linear
 *    │ 6. breaker (per pool) ───────────── fails fast when open, with retryAfter
 *    │ 7. limiter (per key and pool) ───── permit per attempt, lanes, bounded queue, AIMD
 *    │ 8. attempt timeouts + HTTP ──────── time to headers, idle between body bytes
 *    ▼
 *  ElevenLabs
 * ```
 *
 * - A permit is held only while an attempt is on the wire (streams: until the
 *   last byte or the end of the caller's scope); a backoff sleep holds none.
 * - `too_many_concurrent_requests` shrinks the limit and goes back to the
 *   queue (front of its lane); it never feeds exponential backoff, the budget
 *   or the breaker.
 * - Every call fails with `ElevenLabsError`: the policies' refusals become the
 *   reasons `QueueFull`, `QueueTimeout`, `CircuitOpen`, `InsufficientQuota`
 *   and `QuotaExhausted`.
 * - Per call, {@link withCallOptions} sets the priority lane, the deadline and
 *   whether retries may repeat work (`idempotent`).
 * - Streams are not coalesced and have no fallback; their deadline covers the
 *   time to headers (the body is bounded by the idle timeout). STT and music
 *   bill by time, so they reserve no credits (they still fail fast once the
 *   account is exhausted). The read-only calls get the deadline and retries.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { FetchHttpClient } from "effect/http"
 * import { ElevenLabs, Resilient } from "elevenlabs-resilience"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* ElevenLabs.ElevenLabs
 *   const { audio } = yield* client.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text: "Hello" }).pipe(
 *     Resilient.withCallOptions({ lane: "interactive" })
 *   )
 *   return audio.byteLength
 * }).pipe(Effect.provide(Resilient.layer({ apiKey: Redacted.make("sk_..."), limiter: { plan: "pro" } })))
 * ```
 *
 * @since 0.1.0
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Context, Effect, Layer, Stream } from "effect"
import type { HttpClient } from "effect/http"
import * as Client from "../client/ElevenLabs.ts"
import * as Endpoints from "../client/Endpoints.ts"
import { ElevenLabsError, InvalidRequest } from "../client/Errors.ts"
import { defaultOutputFormat, defaultTtsModel } from "../client/Models.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import type * as Schemas from "../client/Schemas.ts"
import * as Validation from "../client/Validation.ts"
import * as Fallback from "./Fallback.ts"
import * as LiveConfig from "./LiveConfig.ts"
import * as Pipeline from "./Pipeline.ts"
import { poolOfModel } from "./Plans.ts"
import * as QuotaGuard from "./QuotaGuard.ts"
import * as ResilientBeyondTts from "./ResilientBeyondTts.ts"
import type { ResilientOptions } from "./ResilientOptions.ts"

export type { ResilientOptions } from "./ResilientOptions.ts"

// ============================================================================
// Per-call options (defined in Pipeline.ts, shared by both doors)
// ============================================================================

/** What one call may choose. */
export type CallOptions = Pipeline.CallOptions

/** The options of the current call (empty outside {@link withCallOptions}). */
export const CurrentCallOptions = Pipeline.CurrentCallOptions

/**
 * Sets the lane, deadline or idempotency of the calls inside `effect`
 * (merged over any outer call options).
 */
export const withCallOptions = Pipeline.withCallOptions

// ============================================================================
// The policies, for observation
// ============================================================================

/**
 * The policies behind a resilient client, for health checks, metrics and
 * tests: the pipeline's {@link Pipeline.Policies} (limiter, breaker, quota,
 * budget, coalescer, cache, distributed permits, retries).
 */
export interface Resilience extends Pipeline.Policies {
  /** The live configuration the stack follows (its `live` option), for `/health` and tests. */
  readonly live?: LiveConfig.Live | undefined
}

/** The tag of {@link Resilience}. */
export const Resilience = Context.Service<Resilience>("elevenlabs-resilience/Resilient/Resilience")

/** @deprecated Use {@link Resilience} (one name per service, Effect's convention). */
export const ResilienceService = Resilience
/** @deprecated Use {@link Resilience}. */
export type ResilienceService = Resilience

// ============================================================================
// Constructor
// ============================================================================

/** One attempt through this library's client (it reports its headers as they arrive). */
const client = <A>(send: Effect.Effect<A, ElevenLabsError>): Pipeline.Attempt<A> => ({ send, kind: "client" })

/** Read-only answers carry no metadata and take no marks. */
const noMeta = { metaOf: (): ResponseMeta | undefined => undefined, mark: <A>(a: A): A => a }

/** A TTS request of any of the four TTS operations. */
type TtsRequest = Schemas.TextToSpeechConvertRequest | Schemas.TextToSpeechStreamRequest

/** The metadata of a client result (one function for every call, not one per call). */
const metaOfResult = <A extends { readonly meta: ResponseMeta }>(a: A): ResponseMeta => a.meta

/** How a TTS result is kept in the fallback cache. */
const audioCodec: Fallback.FallbackCodec<Client.AudioResult> = {
  encode: (a) => ({ audio: a.audio, contentType: a.contentType }),
  decode: (cached) => ({ audio: cached.audio, contentType: cached.contentType, meta: {} })
}

const markMeta = <A extends { readonly meta: ResponseMeta }>(a: A, meta: Partial<ResponseMeta>): A => ({
  ...a,
  meta: { ...a.meta, ...meta }
})

/** The read-only calls: validation, deadline and retries; no limiter, breaker or quota. */
const readsOf = (
  pipeline: Pipeline.Pipeline,
  raw: Client.ElevenLabs
): Pick<Client.ElevenLabs, "user" | "voices" | "models"> => {
  const { quota } = pipeline.policies
  const readOnly = <A>(
    operation: string,
    self: Effect.Effect<A, ElevenLabsError>,
    invalid?: InvalidRequest | undefined
  ): Effect.Effect<A, ElevenLabsError> => pipeline.readOnly<A>({ operation, invalid, ...noMeta }, client(self))
  return {
    user: {
      get: () => readOnly("user.get", raw.user.get()),
      subscription: () => readOnly("user.subscription", raw.user.subscription())
    },
    voices: {
      list: (listOptions) => readOnly("voices.list", raw.voices.list(listOptions)),
      get: (voiceId) => readOnly("voices.get", raw.voices.get(voiceId), Validation.checkVoiceId("voices.get", voiceId)),
      search: (search) =>
        readOnly(
          "voices.search",
          raw.voices.search(search),
          Validation.checkVoiceSearch("voices.search", search ?? {})
        )
    },
    models: {
      list: () =>
        readOnly("models.list", raw.models.list()).pipe(
          // The models list carries the real credit multipliers: teach the quota guard.
          Effect.tap((models) =>
            quota === undefined ? Effect.void : quota.setMultipliers(
              Object.fromEntries(
                models.flatMap((m) =>
                  m.modelRates?.characterCostMultiplier === undefined
                    ? []
                    : [[m.modelId, m.modelRates.characterCostMultiplier] as const]
                )
              )
            )
          )
        )
    }
  }
}

/** What the composition's operations are built over. */
interface OperationsKit {
  readonly pipeline: Pipeline.Pipeline
  /** The plain client, built with `validate: false` (the plans carry the checks). */
  readonly raw: Client.ElevenLabs
  readonly validation: Validation.ValidationOptions
  readonly keyId: string
}

/** The `ElevenLabs` service of the composition: each operation a plan for the pipeline around the raw call. */
const operationsOf = ({ keyId, pipeline, raw, validation }: OperationsKit): Client.ElevenLabs => {
  const { cache, coalescer, quota } = pipeline.policies
  // ---- the operations -------------------------------------------------------

  /**
   * The plan of a TTS call, in one object literal (it is made on every call): the pool and credits from the
   * model, the local check of its endpoint's variant, and (buffered calls) its coalescing key and fallback.
   */
  const ttsPlan = (
    operation: string,
    variant: "convert" | "stream",
    voiceId: string,
    request: TtsRequest,
    outputFormat: string | undefined,
    key: string | undefined
  ) => {
    const model = request.modelId ?? defaultTtsModel
    const characters = Validation.characterCount(request.text)
    return {
      operation,
      pool: poolOfModel(model),
      model,
      voiceId,
      characters,
      cost: quota?.costOf(characters, model),
      outputFormat,
      invalid: Validation.checkTextToSpeech(operation, variant, voiceId, request, validation),
      coalesceKey: key,
      fallback: key === undefined || cache === undefined ? undefined : { key, codec: audioCodec },
      metaOf: metaOfResult,
      mark: markMeta
    }
  }

  /** The key (canonical JSON and SHA-256) of a TTS request, only when a coalescer or a cache will read it. */
  const keyOf = (operation: string, voiceId: string, request: TtsRequest) =>
    coalescer === undefined && cache === undefined
      ? undefined
      : Fallback.requestKey({ voiceId, ...request }, { operation, partition: keyId })

  const service: Client.ElevenLabs = {
    [Client.TypeId]: Client.TypeId,
    ...ResilientBeyondTts.make({ pipeline, raw, quota, validation }),
    textToSpeech: {
      convert: (voiceId, request) => {
        const operation = "textToSpeech.convert"
        return pipeline.buffered<Client.AudioResult>(
          ttsPlan(
            operation,
            "convert",
            voiceId,
            request,
            request.outputFormat ?? defaultOutputFormat,
            keyOf(operation, voiceId, request)
          ),
          client(raw.textToSpeech.convert(voiceId, request))
        )
      },
      convertWithTimestamps: (voiceId, request) => {
        const operation = "textToSpeech.convertWithTimestamps"
        // Coalesced, but not a fallback: the cache keeps audio, not timestamps.
        const key = coalescer === undefined ? undefined : keyOf(operation, voiceId, request)
        return pipeline.buffered<Client.TimestampsResult>(
          { ...ttsPlan(operation, "convert", voiceId, request, undefined, key), fallback: undefined },
          client(raw.textToSpeech.convertWithTimestamps(voiceId, request))
        )
      },
      stream: (voiceId, request) =>
        pipeline.streamed(
          ttsPlan(
            "textToSpeech.stream",
            "stream",
            voiceId,
            request,
            request.outputFormat ?? defaultOutputFormat,
            undefined
          ),
          { send: raw.textToSpeech.stream(voiceId, request), kind: "client" },
          (s, release) => ({ ...s, audio: Stream.ensuring(s.audio, release) })
        ),
      streamWithTimestamps: (voiceId, request) =>
        pipeline.streamed(
          ttsPlan(
            "textToSpeech.streamWithTimestamps",
            "stream",
            voiceId,
            request,
            request.outputFormat ?? defaultOutputFormat,
            undefined
          ),
          { send: raw.textToSpeech.streamWithTimestamps(voiceId, request), kind: "client" },
          (s, release) => ({ ...s, chunks: Stream.ensuring(s.chunks, release) })
        )
    },
    speechToText: {
      convert: (request) => {
        const endpoint = Endpoints.speechToTextConvert
        const operation = endpoint.name
        return pipeline.buffered<Client.TranscriptResult>({
          operation,
          // The pool and the default model from the endpoint table.
          pool: Endpoints.poolOf(endpoint, request.modelId),
          model: Endpoints.modelOf(endpoint, request.modelId),
          invalid: Validation.checkSpeechToText(operation, request),
          metaOf: metaOfResult,
          mark: markMeta
        }, client(raw.speechToText.convert(request)))
      }
    },
    music: {
      compose: (request) => {
        const endpoint = Endpoints.musicCompose
        const operation = endpoint.name
        return pipeline.buffered<Client.MusicResult>({
          operation,
          pool: Endpoints.poolOf(endpoint, request.modelId),
          model: Endpoints.modelOf(endpoint, request.modelId),
          outputFormat: request.outputFormat === "auto" ? undefined : request.outputFormat,
          invalid: Validation.checkMusic(operation, request),
          metaOf: metaOfResult,
          mark: markMeta
        }, client(raw.music.compose(request)))
      }
    },
    ...readsOf(pipeline, raw)
  }

  return service
}

/**
 * Builds the resilient `ElevenLabs` service and its policies. Needs an
 * `HttpClient` (the transport) and a `Scope` (the policies' fibers and
 * caches live as long as it).
 */
export const make = Effect.fnUntraced(function*(options: ResilientOptions) {
  // A base URL that is not one would throw a TypeError in the pipeline (it reads the host for spans).
  if (options.baseUrl !== undefined && !URL.canParse(options.baseUrl)) {
    return yield* new ElevenLabsError({
      reason: new InvalidRequest({
        operation: "startup",
        field: "baseUrl",
        message: `baseUrl "${options.baseUrl}" is not a URL; give an absolute URL such as ${Client.defaultBaseUrl}`
      })
    })
  }
  // The pipeline's headers hook, bound once the pipeline exists (it needs the client for the quota's reads).
  let onResponseHeaders: (meta: ResponseMeta) => Effect.Effect<void> = () => Effect.void
  // Read at each attempt: a live configuration changes them.
  const timeouts = Client.attemptTimeoutsOf(options)
  const raw = yield* Client.make({
    apiKey: options.apiKey,
    baseUrl: options.baseUrl,
    timeouts,
    characterLimits: options.characterLimits,
    scopedRequests: options.scopedRequests,
    // Each operation below checks its request once, at this door (the plan's `invalid`), not at every attempt.
    validate: false,
    // The attempt span is each request's client span (docs/observability.md, Spans): no second one from the transport.
    transportSpans: false,
    onResponseHeaders: (meta) => onResponseHeaders(meta)
  })
  const keyId = Fallback.partitionOfApiKey(options.apiKey)
  const validation: Validation.ValidationOptions = { characterLimits: options.characterLimits }
  const pipeline = yield* Pipeline.make({
    ...options,
    keyId,
    baseUrl: options.baseUrl,
    subscription: Effect.map(raw.user.subscription(), (s) =>
      QuotaGuard.snapshotFromSubscription({
        character_count: s.characterCount,
        character_limit: s.characterLimit,
        next_character_count_reset_unix: s.nextCharacterCountResetUnix
      }))
  })
  onResponseHeaders = pipeline.onResponseHeaders
  const service = operationsOf({ pipeline, raw, validation, keyId })
  const live = options.live === undefined
    ? undefined
    : yield* LiveConfig.follow(LiveConfig.targetOf(pipeline, options, timeouts), options.live, {
      account: keyId,
      apiKey: options.apiKey
    }).pipe(
      Effect.provide(NodeServices.layer),
      Effect.mapError((e) =>
        new ElevenLabsError({
          reason: new InvalidRequest({ operation: "startup", field: "live", message: e.message })
        })
      )
    )
  const resilience: Resilience = Object.assign(pipeline.policies, { live })
  return { service, resilience }
})

/**
 * The resilient `ElevenLabs` service (and the {@link Resilience} behind
 * it). The transport (`HttpClient`) is left as a requirement: provide
 * `NodeHttpClient.layerUndici`, `FetchHttpClient.layer`, or the simulator's
 * in-process client.
 *
 * With a `redis` entry the layer also connects to Redis (the same as providing
 * `SharedState.layerRedis` yourself). If Redis cannot be reached at start-up,
 * building the layer fails with an `ElevenLabsError` of reason
 * `SharedStateUnavailable` (operation `"startup"`); the process does not start
 * in the trouble mode; the same reason, naming `npm install redis`, when the
 * optional peer dependency `redis` is not installed. A `baseUrl` that is not
 * a URL fails it with `InvalidRequest` (operation `"startup"`, field
 * `baseUrl`). Without `redis` and `baseUrl` the layer cannot fail.
 */
export function layer(
  options: ResilientOptions & { readonly redis?: undefined; readonly baseUrl?: undefined }
): Layer.Layer<Client.ElevenLabs | Resilience, never, HttpClient.HttpClient>
export function layer(
  options: ResilientOptions
): Layer.Layer<Client.ElevenLabs | Resilience, ElevenLabsError, HttpClient.HttpClient>
export function layer(
  options: ResilientOptions
): Layer.Layer<Client.ElevenLabs | Resilience, ElevenLabsError, HttpClient.HttpClient> {
  const stack = Layer.effectContext(
    Effect.map(
      make(options),
      ({ resilience, service }) => Context.make(Client.ElevenLabs, service).pipe(Context.add(Resilience, resilience))
    )
  )
  if (options.redis === undefined) return stack
  return stack.pipe(Layer.provide(Pipeline.layerShared(options.redis, Fallback.partitionOfApiKey(options.apiKey))))
}
