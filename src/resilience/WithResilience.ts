/**
 * The resilient request path around calls this library does not make itself:
 * the official `@elevenlabs/elevenlabs-js` SDK, or any effect or
 * promise-returning function. Teams that already call the SDK keep their calls
 * and get the same policies as the `Resilient` composition.
 *
 * **Details**
 *
 * - Two faces over one set of policies ({@link SdkResilience}):
 *   - Effect: `withResilience(callOptions)(effect)` needs the
 *     {@link SdkResilience} (from {@link layer}) and fails only with
 *     `ElevenLabsError`;
 *   - Promise: `makeResilientRunner(options)` builds the policies in a
 *     `ManagedRuntime`; `runner.run(fn, callOptions)` resolves with `fn`'s value
 *     or rejects with an `ElevenLabsError`; `runner.dispose()` frees it.
 * - An adapter over the one request pipeline (`Pipeline.ts`), the same as the
 *   `Resilient` composition: the policies are built there and the order is
 *   written there. Outer to inner: coalesce (when a `coalesceKey` is given;
 *   a joiner is held to its own deadline) → quota reservation (when `model`
 *   and `characters` are given and a subscription source is configured) →
 *   deadline → retries per class with the budget → breaker per pool (in
 *   Redis with a `redis` entry) → limiter permit per attempt (lanes, bounded
 *   queue, adaptive limit; plus the distributed permit with `redis`) → the
 *   wrapped call. The same gauges, spans, metrics and logs as the composition.
 * - Errors: the SDK's `ElevenLabsError` (`statusCode`, `body`,
 *   `rawResponse.headers`), timeouts and fetch failures go through
 *   `classifySdkError`, so they get the same reasons (and the same retry,
 *   breaker and quota treatment) as this library's own client.
 * - Learning: when the call returns a `WithRawResponse` (`.withRawResponse()`),
 *   its headers feed the adaptive limit (`current-concurrent-requests`,
 *   `maximum-concurrent-requests`; the shared limit too with `redis`) and the
 *   quota commit (`character-cost`); `metaOf` reads other shapes.
 * - Bodies: a `ReadableStream` result (or `data` of a `WithRawResponse`) is
 *   read to its end inside the permit (the server counts the request until its
 *   last byte) and handed back as a fresh `ReadableStream` over the bytes, so
 *   the caller's type does not change and a body cut mid-way is retried.
 *   `buffer: false` passes streams through untouched (real streaming: the
 *   permit is then released when the call's promise settles, at headers).
 * - A call with neither `pool` nor `model` is treated as read-only (like the
 *   composition's `voices.list`): deadline, retries and coalescing (with a
 *   key); no limiter, breaker or quota (an exhausted account does not refuse it).
 *
 * **Gotchas**
 *
 * - Build the SDK client with `maxRetries: 0`: these retries replace its loop
 *   (otherwise both retry, and the SDK's retries hold our permit while they sleep).
 * - Pass the `AbortSignal` `run` gives to the SDK (`{ abortSignal: signal }`):
 *   then a deadline or an interrupted caller cancels the request on the wire.
 * - With a `redis` entry, building the policies connects to Redis; when it
 *   cannot be reached the first `run` rejects (and the layer fails) with
 *   `SharedStateUnavailable` (operation `"startup"`).
 *
 * @example
 * ```ts
 * import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
 * import { WithResilience } from "elevenlabs-resilience/resilience"
 *
 * const sdk = new ElevenLabsClient({ apiKey, maxRetries: 0 })
 * const resilient = WithResilience.makeResilientRunner({ limiter: { plan: "creator" } })
 * const { data } = await resilient.run(
 *   (signal) => sdk.textToSpeech.convert(voiceId, { text, modelId }, { abortSignal: signal }).withRawResponse(),
 *   { operation: "textToSpeech.convert", model: modelId, characters: text.length, lane: "interactive" }
 * )
 * await resilient.dispose()
 * ```
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, type Duration, Effect, Exit, Layer, ManagedRuntime, Redacted } from "effect"
import { Headers } from "effect/http"
import { classifySdkError } from "../client/Classify.ts"
import { ElevenLabsError, isElevenLabsError, Transport } from "../client/Errors.ts"
import { fromHeaders, type ResponseMeta } from "../client/ResponseMeta.ts"
import { concat } from "../internal/Bytes.ts"
import * as Liveness from "../internal/Liveness.ts"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import { partitionOfApiKey } from "./Fallback.ts"
import * as Pipeline from "./Pipeline.ts"
import { type Pool, poolOfModel } from "./Plans.ts"
import * as QuotaGuard from "./QuotaGuard.ts"
import type { PolicyOptions } from "./ResilientOptions.ts"

// ============================================================================
// Options
// ============================================================================

/** The period's credits, as the SDK's `user.subscription.get()` returns them. */
export interface SubscriptionLike {
  readonly characterCount: number
  readonly characterLimit: number
  /** Unix seconds. */
  readonly nextCharacterCountResetUnix?: number | null | undefined
}

/**
 * Options of the wrapper: the composition's policy options (so a
 * `ResilienceConfig.toResilientOptions(...)` result can be passed as is) plus
 * where the key and the subscription come from.
 */
export interface SdkResilienceOptions extends Omit<PolicyOptions, "cache"> {
  /**
   * The API key the wrapped calls use, only to fingerprint the limiter and
   * breaker keys (never sent, logged or stored). Default: one anonymous key.
   */
  readonly apiKey?: Redacted.Redacted<string> | string | undefined
  /**
   * Reads the period's credits, for the quota guard: for example
   * `() => sdk.user.subscription.get()`. Without it no credits are reserved
   * (the server's `quota_exceeded` still surfaces as `QuotaExceeded`).
   */
  readonly subscription?: (() => PromiseLike<SubscriptionLike>) | undefined
  /**
   * Where the SDK sends its requests (its `baseUrl` or environment), only for
   * the attempt span's `server.address` and `server.port`. Default
   * `https://api.elevenlabs.io`, the SDK's own default.
   */
  readonly baseUrl?: string | undefined
}

/** What one wrapped call says about itself. All optional. */
export interface SdkCallOptions<A = unknown> {
  /** Name in errors, spans and metrics, e.g. `textToSpeech.convert`. Default `"sdk.call"`. */
  readonly operation?: string | undefined
  /** The model: gives the pool (unless `pool` is set) and, with `characters`, the credits to reserve. */
  readonly model?: string | undefined
  /** The concurrency pool. Default `poolOfModel(model)`; with neither, the call is read-only (no permit). */
  readonly pool?: Pool | undefined
  /** Characters of text billed, to reserve `ceil(characters x multiplier)` credits. */
  readonly characters?: number | undefined
  /** Priority lane. Default `"default"`. */
  readonly lane?: ConcurrencyLimiter.Lane | undefined
  /** Total bound of this call (overrides the options' `deadline`, default 180 s). */
  readonly deadline?: Duration.Input | undefined
  /** `false` when repeating could duplicate work: `Timeout` and `Transport` are then not retried. Default true. */
  readonly idempotent?: boolean | undefined
  /** Identical calls in flight with the same key share one upstream call. Default: no coalescing. */
  readonly coalesceKey?: string | undefined
  /** Read a `ReadableStream` body inside the permit (see the module doc). Default true. */
  readonly buffer?: boolean | undefined
  /** Reads the response metadata of a result; default: `rawResponse.headers` of a `WithRawResponse`. */
  readonly metaOf?: ((a: A) => ResponseMeta | undefined) | undefined
}

// ============================================================================
// The policies
// ============================================================================

/** The policies behind the wrapper, for health checks, metrics and tests (the pipeline's, without a cache). */
export interface SdkResilience extends Omit<Pipeline.Policies, "cache"> {
  /** @internal the options the policies were built from. */
  readonly options: SdkResilienceOptions
  /** @internal the pipeline the calls run through. */
  readonly pipeline: Pipeline.Pipeline
}

/** The tag of {@link SdkResilience}. */
export const SdkResilience = Context.Service<SdkResilience>("elevenlabs-resilience/WithResilience/SdkResilience")

/** @deprecated Use {@link SdkResilience} (one name per service, Effect's convention). */
export const SdkResilienceService = SdkResilience
/** @deprecated Use {@link SdkResilience}. */
export type SdkResilienceService = SdkResilience

const keyIdOf = (apiKey: SdkResilienceOptions["apiKey"]): string =>
  apiKey === undefined
    ? "sdk"
    : partitionOfApiKey(typeof apiKey === "string" ? Redacted.make(apiKey) : apiKey)

/**
 * Builds the policies (`Pipeline.make`). Needs a `Scope` (their fibers live as
 * long as it). Reads the shared state (`SharedState.layerRedis`) from the
 * context when it is there; {@link layer} provides it for a `redis` entry.
 */
export const make = Effect.fnUntraced(function*(options: SdkResilienceOptions = {}) {
  const keyId = keyIdOf(options.apiKey)
  const subscription = options.subscription
  const pipeline = yield* Pipeline.make({
    ...options,
    // A `ResilientOptions` passed as is may carry a cache: the wrapper cannot key or rebuild an SDK result.
    cache: undefined,
    keyId,
    subscription: subscription === undefined ? undefined : Effect.tryPromise({
      try: () => Promise.resolve(subscription()),
      catch: (e) => new ElevenLabsError({ reason: classifySdkError("user.subscription", e) })
    }).pipe(Effect.map((s) =>
      QuotaGuard.snapshotFromSubscription({
        character_count: s.characterCount,
        character_limit: s.characterLimit,
        next_character_count_reset_unix: s.nextCharacterCountResetUnix
      })
    )),
    // The first snapshot is fetched now (bounded), so that the very first calls are already guarded.
    prefetchQuota: "5 seconds"
  })
  const { cache: _cache, ...policies } = pipeline.policies
  return SdkResilience.of({ ...policies, options, pipeline })
})

/**
 * Provides {@link SdkResilience} for {@link withResilience}. With a
 * `redis` entry it also connects to Redis (the breaker's circuits, the
 * distributed permits and, with a subscription, the quota account are then
 * shared); the layer fails with `SharedStateUnavailable` (operation
 * `"startup"`) when Redis cannot be reached. Without `redis` it cannot fail.
 */
export function layer(
  options?: SdkResilienceOptions & { readonly redis?: undefined }
): Layer.Layer<SdkResilience>
export function layer(options: SdkResilienceOptions): Layer.Layer<SdkResilience, ElevenLabsError>
export function layer(options: SdkResilienceOptions = {}): Layer.Layer<SdkResilience, ElevenLabsError> {
  const policies = Layer.effect(SdkResilience, make(options))
  return options.redis === undefined
    ? policies
    : policies.pipe(Layer.provide(Pipeline.layerShared(options.redis, keyIdOf(options.apiKey))))
}

// ============================================================================
// Errors and response metadata
// ============================================================================

/**
 * Any failure of a wrapped call as an `ElevenLabsError`: kept when it already
 * is one; the cause of an `UnknownError` (what `Effect.tryPromise` fails with)
 * or any other value goes through `classifySdkError`.
 */
export const toElevenLabsError = (operation: string, error: unknown, now?: number | undefined): ElevenLabsError => {
  if (isElevenLabsError(error)) return error
  const thrown = Cause.isUnknownError(error) ? error.cause : error
  if (isElevenLabsError(thrown)) return thrown
  return new ElevenLabsError({ reason: classifySdkError(operation, thrown, { now }) })
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const headerRecord = (h: unknown): Record<string, string> | undefined => {
  if (!isRecord(h)) return undefined
  const out: Record<string, string> = {}
  if (typeof h.forEach === "function" && typeof h.get === "function") {
    ;(h as unknown as { forEach: (f: (value: string, key: string) => void) => void }).forEach((value, key) => {
      out[key.toLowerCase()] = value
    })
    return out
  }
  for (const [k, v] of Object.entries(h)) if (typeof v === "string") out[k.toLowerCase()] = v
  return out
}

/**
 * The ElevenLabs headers of a `WithRawResponse` (`{ data, rawResponse }`),
 * or `undefined` for any other value.
 */
export const metaOfRawResponse = (value: unknown): ResponseMeta | undefined => {
  if (!isRecord(value) || !isRecord(value.rawResponse)) return undefined
  const record = headerRecord(value.rawResponse.headers)
  return record === undefined ? undefined : fromHeaders(Headers.fromInput(record))
}

// ============================================================================
// Bodies: read inside the permit, handed back as a fresh stream
// ============================================================================

const isReadableStream = (u: unknown): u is ReadableStream<Uint8Array> =>
  typeof ReadableStream !== "undefined" && u instanceof ReadableStream

/** A result with its body, if any, read to bytes (so it can be shared and replayed). */
interface Settled {
  readonly value: unknown
  readonly body: Uint8Array | undefined
  /** Where the stream was: the value itself, or its `data`. */
  readonly at: "self" | "data" | undefined
  /** Its response metadata (read once per attempt), with the pipeline's marks. */
  readonly meta?: ResponseMeta | undefined
}

/** Reads a stream to its end as bytes; interrupting the read cancels the stream. @internal */
export const readAll = (operation: string, stream: ReadableStream<Uint8Array>) =>
  Effect.tryPromise({
    try: async (signal) => {
      const reader = stream.getReader()
      const onAbort = () => void reader.cancel().catch(() => undefined)
      signal.addEventListener("abort", onAbort, { once: true })
      try {
        const parts: Array<Uint8Array> = []
        while (true) {
          const { done, value } = await reader.read()
          if (done) break
          parts.push(value)
        }
        return concat(parts)
      } finally {
        signal.removeEventListener("abort", onAbort)
      }
    },
    catch: (e) =>
      new ElevenLabsError({
        reason: new Transport({
          operation,
          message: `The response body failed mid-way (${e instanceof Error ? e.name : "unknown"})`
        })
      })
  })

const settle = (operation: string, value: unknown, buffer: boolean): Effect.Effect<Settled, ElevenLabsError> => {
  if (!buffer) return Effect.succeed({ value, body: undefined, at: undefined })
  if (isReadableStream(value)) {
    return Effect.map(readAll(operation, value), (body) => ({ value, body, at: "self" as const }))
  }
  if (isRecord(value) && isReadableStream(value.data)) {
    return Effect.map(readAll(operation, value.data), (body) => ({ value, body, at: "data" as const }))
  }
  return Effect.succeed({ value, body: undefined, at: undefined })
}

const streamOf = (bytes: Uint8Array): ReadableStream<Uint8Array> =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes.slice())
      controller.close()
    }
  })

/** A caller's own copy of a settled result (coalesced callers each get a fresh stream). */
const unsettle = <A>(s: Settled): A => {
  if (s.body === undefined) return s.value as A
  if (s.at === "self") return streamOf(s.body) as A
  return { ...(s.value as Record<string, unknown>), data: streamOf(s.body) } as A
}

// ============================================================================
// The Effect face
// ============================================================================

/**
 * Runs `effect` (one call, for example `Effect.tryPromise((signal) => sdk....)`)
 * through the policies of the current {@link SdkResilience}. Each retry
 * runs `effect` again, so it must describe the call, not hold its result.
 * Fails only with `ElevenLabsError`.
 *
 * @example
 * ```ts
 * const audio = yield* Effect.tryPromise((signal) =>
 *   sdk.textToSpeech.convert(voiceId, { text, modelId }, { abortSignal: signal }).withRawResponse()
 * ).pipe(withResilience({ operation: "textToSpeech.convert", model: modelId, characters: text.length }))
 * ```
 */
export const withResilience =
  <A>(call: SdkCallOptions<A> = {}) =>
  <E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, ElevenLabsError, R | SdkResilience> =>
    Effect.flatMap(Effect.service(SdkResilience), (policies) => resilient(policies, call, effect))

/** The call's lane, deadline and idempotency as the pipeline's call options (none: no overlay). */
const callOptionsOf = (
  call: Pick<SdkCallOptions, "lane" | "deadline" | "idempotent">
): Pipeline.CallOptions | undefined =>
  call.lane === undefined && call.deadline === undefined && call.idempotent === undefined ? undefined : {
    ...(call.lane === undefined ? {} : { lane: call.lane }),
    ...(call.deadline === undefined ? {} : { deadline: call.deadline }),
    ...(call.idempotent === undefined ? {} : { idempotent: call.idempotent })
  }

const metaOfSettled = (s: Settled): ResponseMeta | undefined => s.meta

const markSettled = (s: Settled, meta: Partial<ResponseMeta>): Settled => ({ ...s, meta: { ...s.meta, ...meta } })

/** The adapter: the call described as a plan, the wrapped effect as an opaque attempt. */
const resilient = <A, E, R>(
  policies: SdkResilience,
  call: SdkCallOptions<A>,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, ElevenLabsError, R> => {
  const { quota, pipeline } = policies
  const operation = call.operation ?? "sdk.call"
  const pool: Pool | undefined = call.pool ?? (call.model === undefined ? undefined : poolOfModel(call.model))
  const metaOf = (value: unknown): ResponseMeta | undefined =>
    call.metaOf === undefined ? metaOfRawResponse(value) : call.metaOf(value as A)

  // One attempt: the call, its errors classified, its body read, its headers read once.
  const send: Effect.Effect<Settled, ElevenLabsError, R> = effect.pipe(
    Effect.catchCause((cause) => {
      const failure = cause.reasons.find((r) => r._tag === "Fail")
      return failure?._tag === "Fail"
        ? Effect.flatMap(
          Effect.clockWith((c) => c.currentTimeMillis),
          (now) => Effect.fail(toElevenLabsError(operation, failure.error, now))
        )
        : Effect.failCause(cause as Cause.Cause<never>)
    }),
    Effect.flatMap((a) => settle(operation, a, call.buffer ?? true)),
    Effect.map((s): Settled => ({ ...s, meta: metaOf(s.value) }))
  )

  const ran = pipeline.run<Settled, R>({
    operation,
    pool,
    model: call.model,
    characters: call.characters,
    cost: quota !== undefined && pool !== undefined && call.model !== undefined && call.characters !== undefined
      ? quota.costOf(call.characters, call.model)
      : undefined,
    coalesceKey: call.coalesceKey,
    metaOf: metaOfSettled,
    mark: markSettled
  }, { send, kind: "opaque" })
  const options = callOptionsOf(call)
  return Effect.map(options === undefined ? ran : Pipeline.withCallOptions(options)(ran), (s) => unsettle<A>(s))
}

// ============================================================================
// The Promise face
// ============================================================================

/** Per-call options of {@link ResilientRunner.run}. */
export interface RunOptions<A> extends SdkCallOptions<A> {
  /** Cancels the call (queue place, permit, reservation and request) when aborted. */
  readonly signal?: AbortSignal | undefined
}

/** The Promise face: the policies in a `ManagedRuntime`. */
export interface ResilientRunner {
  /**
   * Runs `fn` (one call; called again for each retry, with a signal to pass
   * to the SDK as `abortSignal`) through the policies. Resolves with its
   * value; rejects with an `ElevenLabsError`.
   */
  readonly run: <A>(fn: (signal: AbortSignal) => PromiseLike<A>, options?: RunOptions<A>) => Promise<A>
  /** The policies, for observation (limiter snapshots, breaker state, quota status). */
  readonly policies: () => Promise<SdkResilience>
  /** Frees the policies. Calls after it reject. */
  readonly dispose: () => Promise<void>
}

/**
 * Builds the policies once and returns a runner for Promise code.
 *
 * @example
 * ```ts
 * const resilient = makeResilientRunner({ limiter: { plan: "creator" } })
 * const audio = await resilient.run((signal) => sdk.textToSpeech.convert(voiceId, req, { abortSignal: signal }),
 *   { operation: "textToSpeech.convert", model: req.modelId, characters: req.text.length })
 * ```
 */
export const makeResilientRunner = (options: SdkResilienceOptions = {}): ResilientRunner => {
  // The process lives while calls are under way, not because the policies sleep in the background.
  const liveness = Liveness.make()
  const runtime = ManagedRuntime.make(
    layer(options).pipe(Layer.provide(Layer.succeed(Clock.Clock, Liveness.unrefClock)))
  )
  return {
    run: async <A>(fn: (signal: AbortSignal) => PromiseLike<A>, run: RunOptions<A> = {}) => {
      const { signal, ...call } = run
      liveness.enter()
      try {
        const exit = await runtime.runPromiseExit(
          Effect.tryPromise((abort) => fn(abort)).pipe(withResilience(call)),
          signal === undefined ? undefined : { signal }
        )
        if (Exit.isSuccess(exit)) return exit.value
        throw Cause.squash(exit.cause)
      } finally {
        liveness.leave()
      }
    },
    policies: () => runtime.runPromise(Effect.service(SdkResilience)),
    dispose: () => runtime.dispose()
  }
}
