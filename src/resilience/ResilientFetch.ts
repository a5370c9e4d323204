/**
 * Every policy of the library behind one `fetch`: give it to the official
 * `@elevenlabs/elevenlabs-js` SDK (`new ElevenLabsClient({ fetch })`) and
 * each of its calls runs through the one request pipeline, with no call
 * wrapped by hand.
 *
 * **Details**
 *
 * - Each request is matched to the endpoint table (`Endpoints.match`, by
 *   method and path). The pool and model come from its JSON body or its
 *   multipart `model_id` field, the billed characters from the row's billing
 *   rule, the API key's fingerprint from its `xi-api-key` header (two keys,
 *   two sets of limits; the key itself is hashed per request and never kept).
 * - A known call runs through the pipeline as the `Resilient` composition's
 *   does: permits per attempt, the two 429s told apart, retries re-sending the
 *   same body, the breaker, the quota reservation committed from
 *   `character-cost`, the adaptive limit learned from the headers, coalescing
 *   and the fallback cache where configured, Redis-shared state with `redis`.
 * - Bodies: a buffered endpoint's body is read inside the permit and handed
 *   back as a fresh `Response`; a streamed endpoint (`AudioStream`, `Ndjson`)
 *   keeps its permit until the caller reads the last byte or cancels.
 * - What the caller sees: an answer of ElevenLabs comes back as the `Response`
 *   it was (after the retries), so the SDK raises its usual errors. The
 *   library's own refusals (a local check, a full queue or a queue timeout, an
 *   open circuit, spent credits, the deadline, a transport failure after the
 *   retries) reject with this library's `ElevenLabsError`, whose `reason`
 *   says which; the SDK keeps it as its error's `cause`.
 * - Requests the table does not know pass through with the deadline; safe
 *   methods (GET, HEAD) are retried as well.
 * - The caller's `AbortSignal` cancels everything: queue place, permit,
 *   reservation and request.
 * - The process exits by itself once the callers' work is done: the
 *   policies' background sleeps do not hold it (`close()` is for a clean
 *   shutdown: it flushes telemetry and frees the policies).
 *
 * **Gotchas**
 *
 * - Build the SDK client with `maxRetries: 0`: these retries replace its
 *   loop. Keep its `timeoutInSeconds` above the deadline (SDK default 240 s,
 *   ours 180 s): for a buffered call the SDK's timer covers the whole call.
 * - A lane per request: the header `x-resilience-lane: interactive | default |
 *   batch` (SDK: `requestOptions.headers`); it is not sent upstream.
 * - With `redis`, the Redis connection holds the process until `close()`.
 *
 * @example
 * ```ts
 * import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
 * import { ResilientFetch } from "elevenlabs-resilience"
 *
 * const elevenlabs = new ElevenLabsClient({
 *   apiKey,
 *   maxRetries: 0,
 *   fetch: ResilientFetch.make({ limiter: { plan: "creator" } })
 * })
 * ```
 *
 * @since 0.2.0
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  ManagedRuntime,
  Redacted,
  References,
  Scope
} from "effect"
import * as Client from "../client/ElevenLabs.ts"
import * as Endpoints from "../client/Endpoints.ts"
import { ElevenLabsError, InvalidRequest } from "../client/Errors.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as Validation from "../client/Validation.ts"
import * as Liveness from "../internal/Liveness.ts"
import * as Telemetry from "../telemetry/Telemetry.ts"
import * as Deadline from "./Deadline.ts"
import {
  type Answered,
  answeredCodec,
  answers,
  billedCharactersOf,
  bufferedAttempt,
  creditsOfOutput,
  cutLease,
  failedAnswer,
  heldBody,
  jsonOf,
  keyIdOf,
  markAnswered,
  metaOf,
  metaOfAnswered,
  modelFieldOf,
  type OpenBodies,
  prepare,
  type Prepared,
  requestKeyOf,
  responseOf,
  sendOnce,
  type Wire
} from "./FetchWire.ts"
import * as LiveConfig from "./LiveConfig.ts"
import * as Pipeline from "./Pipeline.ts"
import { callDeadlineOf, invalidDeadline } from "./PipelineCall.ts"
import * as QuotaGuard from "./QuotaGuard.ts"
import type { PolicyOptions } from "./ResilientOptions.ts"
import { type SubscriptionLike, toElevenLabsError } from "./WithResilience.ts"

// ============================================================================
// Options
// ============================================================================

/** The composition's policy options, plus where requests go and how the account's credits are read. */
export interface Options extends PolicyOptions {
  /** The fetch the attempts use. Default: the global `fetch` (read at each call). */
  readonly fetch?: typeof globalThis.fetch | undefined
  /**
   * Reads the period's credits of the key with fingerprint `keyId`, for the quota guard: with one key,
   * `() => elevenlabs.user.subscription.get()` (that call goes through this fetch too). Without it no
   * credits are reserved (the server's `quota_exceeded` still stops the other calls).
   */
  readonly subscription?: ((keyId: string) => PromiseLike<SubscriptionLike>) | undefined
  /** Where requests go, for the attempt span's `server.address`. Default `https://api.elevenlabs.io`. */
  readonly baseUrl?: string | undefined
  /** Per-model character limits for the local checks (over `Models.characterLimits`). */
  readonly characterLimits?: Readonly<Record<string, number>> | undefined
  /** Longest wait for a chunk of a streamed body the caller is reading; the body then fails with `Timeout` (phase `idle`) and its permit comes back. Default 30 s. */
  readonly idleTimeout?: Duration.Input | undefined
  /** Longest wait for an attempt's response headers; the attempt then fails as `Timeout` (phase `headers`) and is retried. Default 30 s. */
  readonly headersTimeout?: Duration.Input | undefined
  /** Logs, OTLP export and a metrics server (`Telemetry.layer`), flushed by `close()`. Default: none. */
  readonly telemetry?: Telemetry.Options | false | undefined
  /**
   * Follow a configuration source: each key's policies apply its new versions without a restart (with the
   * Redis source, the versions of that key's account). `LiveConfig`, docs/deployment.md. Default none.
   */
  readonly live?: LiveConfig.LiveOptions | undefined
}

/** A `fetch` with every policy, and its lifecycle. */
export interface ResilientFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<Response>
  /** The policies of a key (default: requests without a key), for observation (limiter snapshots, breaker, quota). */
  readonly policies: (apiKey?: string) => Promise<Pipeline.Policies>
  /** Flushes telemetry and frees the policies. Calls after it reject. */
  readonly close: () => Promise<void>
}

export { deadlineHeader, laneHeader, marksHeader } from "./FetchWire.ts"

// ============================================================================
// The pipelines, one per key
// ============================================================================

/** The live target's key: never sent (the policies' options need none; each request carries its own). */
const noKey = Redacted.make("")

/** The pipelines of the keys seen, built on first use in the runtime's scope. */
class Pipelines extends Context.Service<Pipelines, {
  readonly get: (keyId: string) => Effect.Effect<Pipeline.Pipeline, ElevenLabsError>
}>()("elevenlabs-resilience/ResilientFetch/Pipelines") {}

/** Each key's attempt timeouts: its own live configuration changes them (with Redis, each key its account's). */
const timeoutsOf = new WeakMap<Pipeline.Pipeline, Client.AttemptTimeouts>()

const pipelinesLayer = (options: Options) =>
  Layer.effect(
    Pipelines,
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const built = new Map<string, Deferred.Deferred<Pipeline.Pipeline, ElevenLabsError>>()
      const subscription = options.subscription
      const build = (keyId: string) => {
        const pipeline = Pipeline.make({
          ...options,
          keyId,
          subscription: subscription === undefined ? undefined : Effect.tryPromise({
            try: () => Promise.resolve(subscription(keyId)),
            catch: (e) => toElevenLabsError("user.subscription", e)
          }).pipe(Effect.map((s) =>
            QuotaGuard.snapshotFromSubscription({
              character_count: s.characterCount,
              character_limit: s.characterLimit,
              next_character_count_reset_unix: s.nextCharacterCountResetUnix
            })
          ))
        })
        const live = options.live
        const timeouts = Client.attemptTimeoutsOf(options)
        const withTimeouts = Effect.tap(pipeline, (built) => Effect.sync(() => timeoutsOf.set(built, timeouts)))
        const following = live === undefined ? withTimeouts : Effect.tap(withTimeouts, (built) =>
          LiveConfig.follow(
            // The key is read from each request: the live target needs only the policies' options.
            LiveConfig.targetOf(built, { ...options, apiKey: noKey }, timeouts),
            live,
            { account: keyId, apiKey: noKey }
          ).pipe(
            Effect.provide(NodeServices.layer),
            Effect.mapError((e) =>
              new ElevenLabsError({
                reason: new InvalidRequest({ operation: "startup", field: "live", message: e.message })
              })
            )
          ))
        return options.redis === undefined
          ? Effect.provideService(following, Scope.Scope, scope)
          : Effect.flatMap(
            Layer.buildWithScope(Pipeline.layerShared(options.redis, keyId), scope),
            (shared) => following.pipe(Effect.provideContext(shared), Effect.provideService(Scope.Scope, scope))
          )
      }
      const get = (keyId: string): Effect.Effect<Pipeline.Pipeline, ElevenLabsError> =>
        Effect.suspend(() => {
          const existing = built.get(keyId)
          if (existing !== undefined) return Deferred.await(existing)
          const deferred = Deferred.makeUnsafe<Pipeline.Pipeline, ElevenLabsError>()
          built.set(keyId, deferred)
          // Built in its own fiber: a caller who gives up does not stop it for the others. A failed build
          // (Redis unreachable) is forgotten, so the next call tries again.
          const once = build(keyId).pipe(
            Effect.onError(() => Effect.sync(() => built.delete(keyId))),
            Effect.exit,
            Effect.flatMap((exit) => Deferred.done(deferred, exit))
          )
          return Effect.andThen(Effect.forkIn(once, scope), Deferred.await(deferred))
        })
      return Pipelines.of({ get })
    })
  )

// ============================================================================
// One call
// ============================================================================

/** What a call ended in, for the caller: a response, or a typed rejection. */
type Outcome = { readonly response: Response } | { readonly error: ElevenLabsError }

const outcomeOf = (exit: Exit.Exit<Answered, ElevenLabsError>): Effect.Effect<Outcome> => {
  if (Exit.isSuccess(exit)) return Effect.succeed({ response: responseOf(exit.value) })
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (failure?._tag !== "Fail") return Effect.failCause(exit.cause as Cause.Cause<never>)
  const answered = answers.get(failure.error.reason)
  return Effect.succeed(answered === undefined ? { error: failure.error } : { response: responseOf(answered) })
}

const safeMethods = new Set(["GET", "HEAD", "OPTIONS"])

const makeCall = (options: Options, liveness: Liveness.Liveness, open: OpenBodies) => {
  const defaults = Client.attemptTimeoutsOf(options)
  const wires = new WeakMap<Pipeline.Pipeline, { readonly wire: Wire; readonly passThrough: Wire }>()
  /** The wires of a key's pipeline: its attempt timeouts, read at each attempt (a live configuration changes them). */
  const wiresOf = (pipeline: Pipeline.Pipeline) => {
    let found = wires.get(pipeline)
    if (found === undefined) {
      const timeouts = timeoutsOf.get(pipeline) ?? defaults
      const transport = () => options.fetch ?? globalThis.fetch
      found = {
        wire: {
          transport,
          get headersTimeout() {
            return timeouts.headers
          },
          get idleMillis() {
            return Duration.toMillis(timeouts.idle)
          }
        },
        // Requests the table does not know are bounded by the deadline alone (an upload may take long to answer).
        passThrough: {
          transport,
          headersTimeout: undefined,
          get idleMillis() {
            return Duration.toMillis(timeouts.idle)
          }
        }
      }
      wires.set(pipeline, found)
    }
    return found
  }
  const validation: Validation.ValidationOptions = { characterLimits: options.characterLimits }

  /** A request the table does not know: the deadline, and retries for a safe method. */
  const unknown = (pipeline: Pipeline.Pipeline, prepared: Prepared): Effect.Effect<Outcome> => {
    const operation = `fetch.${prepared.method.toLowerCase()}`
    const { passThrough, wire } = wiresOf(pipeline)
    if (!safeMethods.has(prepared.method)) {
      const total = callDeadlineOf(prepared.deadline ?? pipeline.live.deadline)
      if (total === undefined) {
        return Effect.succeed({ error: invalidDeadline(operation, { deadline: prepared.deadline }) })
      }
      return Effect.flatMap(
        Effect.exit(Deadline.withDeadline(total, { operation })(sendOnce(passThrough, operation, prepared, true))),
        (exit) =>
          Exit.isSuccess(exit)
            ? Effect.succeed({ response: exit.value })
            : outcomeOf(exit as Exit.Exit<never, ElevenLabsError>)
      )
    }
    const read = pipeline.readOnly({ operation, metaOf: metaOfAnswered, mark: markAnswered }, {
      send: bufferedAttempt(wire, operation, prepared),
      kind: "opaque"
    })
    return Effect.flatMap(
      Effect.exit(
        prepared.deadline === undefined ? read : Pipeline.withCallOptions({ deadline: prepared.deadline })(read)
      ),
      outcomeOf
    )
  }

  /**
   * A streamed endpoint: the permit and the reservation live in a scope of their own until the body's last
   * byte, its cancel, the caller's abort or an idle body. Under a mask up to the hand-over, so an interruption
   * (the caller's abort) while the attempt runs closes that scope too.
   */
  const streamed = (
    pipeline: Pipeline.Pipeline,
    plan: Omit<
      Pipeline.PooledPlan<{ readonly meta: ResponseMeta; readonly response: Response }>,
      "metaOf" | "mark" | "coalesceKey" | "fallback"
    >,
    prepared: Prepared
  ): Effect.Effect<Outcome> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const { wire } = wiresOf(pipeline)
        const scope = yield* Scope.make()
        const opening = Effect.flatMap(sendOnce(wire, plan.operation, prepared), (response) =>
          response.ok
            ? Effect.succeed({ response, meta: metaOf(response.headers) })
            : failedAnswer(plan.operation, response))
        const exit = yield* Effect.exit(
          restore(pipeline.streamed(plan, { send: opening, kind: "opaque" }, (s) => s).pipe(Scope.provide(scope)))
        )
        if (Exit.isFailure(exit)) {
          yield* Scope.close(scope, exit)
          return yield* outcomeOf(exit as Exit.Exit<never, ElevenLabsError>)
        }
        const context = yield* Effect.context<never>()
        const upstream = exit.value.response
        const body = heldBody(plan.operation, upstream, prepared.signal, wire.idleMillis, open, liveness, (exit) => {
          Effect.runForkWith(context)(Scope.close(scope, exit))
        })
        return {
          response: new Response(body, {
            status: upstream.status,
            statusText: upstream.statusText,
            headers: upstream.headers
          })
        }
      })
    )

  return (
    pipeline: Pipeline.Pipeline,
    quota: QuotaGuard.QuotaGuard | undefined,
    prepared: Prepared
  ): Effect.Effect<Outcome> => {
    const found = Endpoints.match(prepared.method, prepared.url.pathname)
    if (found._tag !== "Found") return unknown(pipeline, prepared)
    const endpoint = found.endpoint
    const operation = endpoint.name
    const json = jsonOf(prepared)
    const model = Endpoints.modelOf(endpoint, modelFieldOf(prepared, json))
    const pool = Endpoints.poolOf(endpoint, model)
    const characters = endpoint.billing._tag === "Characters" ? billedCharactersOf(endpoint, json) : undefined
    const cost = quota === undefined ? undefined : characters !== undefined
      ? quota.costOf(characters, model!)
      : creditsOfOutput(endpoint, json, model)
    const invalid = Validation.checkWire(
      { operation, check: endpoint.check, params: found.params, query: prepared.url.searchParams, json },
      validation
    )
    const call = { operation, pool, model, characters, cost, invalid }
    const withCall = <A>(effect: Effect.Effect<A>) =>
      prepared.lane === undefined && prepared.deadline === undefined && endpoint.idempotent
        ? effect
        : Pipeline.withCallOptions({
          lane: prepared.lane,
          deadline: prepared.deadline,
          idempotent: endpoint.idempotent
        })(effect)
    if (pool !== undefined && (endpoint.response._tag === "AudioStream" || endpoint.response._tag === "Ndjson")) {
      return withCall(streamed(pipeline, { ...call, pool }, prepared))
    }
    const key = requestKeyOf(operation, prepared, json)
    const plan: Pipeline.CallPlan<Answered> = {
      ...call,
      coalesceKey: key,
      fallback: key === undefined || endpoint.response._tag !== "Audio" ? undefined : { key, codec: answeredCodec },
      metaOf: metaOfAnswered,
      mark: markAnswered
    }
    return withCall(Effect.flatMap(
      Effect.exit(
        pipeline.run(plan, { send: bufferedAttempt(wiresOf(pipeline).wire, operation, prepared), kind: "opaque" })
      ),
      outcomeOf
    ))
  }
}

// ============================================================================
// The fetch
// ============================================================================

/**
 * A `fetch` carrying every policy. Nothing is built until its first call (no
 * connection, no fiber); `close()` frees what was.
 */
export const make = (options: Options = {}): ResilientFetch => {
  const liveness = Liveness.make()
  // Without telemetry the policies log nothing (as the SDK itself): an application's stdout is its own.
  const telemetry = options.telemetry === undefined || options.telemetry === false
    ? Layer.succeed(References.MinimumLogLevel, "None")
    : Telemetry.layer(options.telemetry)
  const clock = Layer.succeed(Clock.Clock, Liveness.unrefClock)
  const runtime = ManagedRuntime.make(
    pipelinesLayer(options).pipe(Layer.provideMerge(Layer.mergeAll(telemetry, clock)))
  )
  const open: OpenBodies = new Set()
  const call = makeCall(options, liveness, open)
  let closed = false

  const run = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    if (closed) throw new Error("ResilientFetch: closed")
    liveness.enter()
    try {
      const prepared = await prepare(input, init)
      prepared.signal?.throwIfAborted()
      const exit = await runtime.runPromiseExit(
        Effect.flatMap(
          Effect.service(Pipelines),
          (pipelines) =>
            Effect.flatMap(
              pipelines.get(prepared.keyId),
              (pipeline) => call(pipeline, pipeline.policies.quota, prepared)
            )
        ),
        prepared.signal === undefined ? undefined : { signal: prepared.signal }
      )
      if (Exit.isSuccess(exit)) {
        if ("response" in exit.value) return exit.value.response
        throw exit.value.error
      }
      prepared.signal?.throwIfAborted()
      if (closed && Cause.hasInterruptsOnly(exit.cause)) throw new Error("ResilientFetch: closed")
      throw Cause.squash(exit.cause)
    } finally {
      liveness.leave()
    }
  }

  return Object.assign(run, {
    policies: (apiKey?: string) =>
      runtime.runPromise(
        Effect.flatMap(Effect.service(Pipelines), (p) =>
          Effect.map(p.get(keyIdOf(apiKey)), (pipeline) => pipeline.policies))
      ),
    close: async () => {
      closed = true
      for (const lease of open) cutLease(lease, open, new Error("ResilientFetch: closed"))
      await runtime.dispose()
    }
  })
}
