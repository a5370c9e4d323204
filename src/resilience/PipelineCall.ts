/**
 * The state of one call through the pipeline, and what is recorded of it:
 * the per-call options, the plan an adapter describes a call with, the
 * {@link Call} object the pipeline's steps read, and the call's metrics and
 * span attributes. `Pipeline.ts` runs the steps; this module holds the call.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Exit, Fiber, Option, type Tracer } from "effect"
import type { CircuitBreaker } from "effect/persistence"
import * as Endpoints from "../client/Endpoints.ts"
import { ElevenLabsError, InvalidRequest } from "../client/Errors.ts"
import { audioSecondsOf } from "../client/Models.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import * as Deadline from "./Deadline.ts"
import type * as Fallback from "./Fallback.ts"
import type { Pool } from "./Plans.ts"

// ============================================================================
// Per-call options
// ============================================================================

/** What one call may choose. */
export interface CallOptions {
  /** Priority lane in the limiter. Default `"default"`. */
  readonly lane?: ConcurrencyLimiter.Lane | undefined
  /** Total bound of this call (overrides the stack's `deadline`). */
  readonly deadline?: Duration.Input | undefined
  /** `false` when repeating the call could duplicate work: `Timeout` and `Transport` are then not retried. */
  readonly idempotent?: boolean | undefined
}

/** The options of the current call (empty outside {@link withCallOptions}). */
export const CurrentCallOptions = Context.Reference<CallOptions>("elevenlabs-resilience/Resilient/CallOptions", {
  defaultValue: () => ({})
})

/**
 * Sets the lane, deadline or idempotency of the calls inside `effect`
 * (merged over any outer call options).
 */
export const withCallOptions =
  (options: CallOptions) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.updateService(effect, CurrentCallOptions, (outer) => ({ ...outer, ...options }))

// ============================================================================
// Plans
// ============================================================================

/** One logical call, described for the pipeline. */
export interface CallPlan<A> {
  /** The name in errors, spans and metrics, e.g. `textToSpeech.convert`. */
  readonly operation: string
  /** The concurrency pool; `undefined` for a read-only call. */
  readonly pool?: Pool | undefined
  readonly model?: string | undefined
  readonly voiceId?: string | undefined
  /** Billed characters (metrics; never the text). */
  readonly characters?: number | undefined
  /** Credits to reserve; `undefined` reserves none (an exhausted account still fails fast). */
  readonly cost?: number | undefined
  /** Step 1, done by the adapter: a refusal fails the call before anything else. */
  readonly invalid?: InvalidRequest | undefined
  /** Identical calls in flight with this key share one attempt loop. */
  readonly coalesceKey?: string | undefined
  /** Cached-audio fallback (used only when the pipeline has a cache). */
  readonly fallback?: { readonly key: string; readonly codec: Fallback.FallbackCodec<A> } | undefined
  /** The audio format of the result, for the audio-seconds metric. */
  readonly outputFormat?: string | undefined
  readonly metaOf: (a: A) => ResponseMeta | undefined
  /** A copy of `a` with stack marks (`coalesced`, `fallback`) added to its metadata. */
  readonly mark: (a: A, meta: Partial<ResponseMeta>) => A
}

/** A plan with its pool: a call that takes a permit. */
export type PooledPlan<A> = CallPlan<A> & { readonly pool: Pool }

/**
 * One attempt. `"client"`: this library's client, which reports the headers
 * as they arrive through its `onResponseHeaders` option (`Pipeline.onResponseHeaders`) and bounds its own
 * waits. `"opaque"` (a promise): learnt from after it ends, from
 * `plan.metaOf(value)`.
 */
export interface Attempt<A, R = never> {
  readonly send: Effect.Effect<A, ElevenLabsError, R>
  readonly kind: "client" | "opaque"
}

// ============================================================================
// The state of one call
// ============================================================================

/** A permit request with the bound its queue timeout came from. */
export type BoundRequest = ConcurrencyLimiter.PermitRequest & {
  readonly pool: Pool
  readonly bound: Deadline.PhaseBound
}

/**
 * The state of one call, made once per call and provided as the call's
 * deadline (`Deadline.CurrentDeadline`): the steps, built once, read the call
 * from it. It is also the quota guard's options (`keyId`, `actualCost`).
 */
export class Call implements Deadline.CallDeadline {
  lastError: ElevenLabsError | undefined = undefined
  attempts = 0
  /** The pause the retry policy took before the current attempt (for the attempt span). */
  delay: Duration.Duration | undefined = undefined
  /** The queue waits of the call's attempts so far. */
  queueWaitMs = 0
  /** The permit of the attempt in flight, for the headers it reports (`Pipeline.onResponseHeaders`). */
  permit: ConcurrencyLimiter.Permit | undefined = undefined
  /** The permit request of the current attempt. */
  request: BoundRequest | undefined = undefined
  /** Runs of the call's shared part started so far (a coalesced call handed over runs it again). */
  runs = 0
  /** The inline flight this call started, until it ends (`Coalescer.inlineWith`). */
  flight: unknown = undefined
  /** Credits reserved for this call and not settled yet (`QuotaGuard.guardWith`). */
  quotaHeld: number | undefined = undefined
  /** The breaker's admission of the attempt in flight, and its start number (`Breaker.executeWith`). */
  admission: CircuitBreaker.Admission | undefined = undefined
  started = -1
  readonly plan: CallPlan<any>
  readonly attempt: Attempt<any, any>
  readonly total: Duration.Duration
  readonly at: number
  /** When the call started (Clock milliseconds), for its duration. */
  readonly start: number
  readonly lane: ConcurrencyLimiter.Lane
  readonly idempotent: boolean
  /** The call span. */
  readonly span: Tracer.Span
  /** The API-key id (the quota guard's `keyId`). */
  readonly keyId: string
  /** The caller's context, put back when the call ends. */
  readonly caller: Context.Context<never>
  constructor(
    plan: CallPlan<any>,
    attempt: Attempt<any, any>,
    total: Duration.Duration,
    at: number,
    start: number,
    lane: ConcurrencyLimiter.Lane,
    idempotent: boolean,
    span: Tracer.Span,
    keyId: string,
    caller: Context.Context<never>
  ) {
    this.plan = plan
    this.attempt = attempt
    this.total = total
    this.at = at
    this.start = start
    this.lane = lane
    this.idempotent = idempotent
    this.span = span
    this.keyId = keyId
    this.caller = caller
  }
  get operation(): string {
    return this.plan.operation
  }
  get pool(): Pool | undefined {
    return this.plan.pool
  }
  get coalesceKey(): string | undefined {
    return this.plan.coalesceKey
  }
  /** The credits to reserve (read only when the plan has a cost). */
  get cost(): number {
    return this.plan.cost!
  }
  /**
   * The state of a run of this call started again at `now` (a coalesced call handed over to its joiners when
   * its starter was interrupted): the same plan, attempt, lane and span, a deadline of the same total from
   * now, no attempts yet.
   */
  again(now: number): Call {
    return new Call(
      this.plan,
      this.attempt,
      this.total,
      now + Duration.toMillis(this.total),
      now,
      this.lane,
      this.idempotent,
      this.span,
      this.keyId,
      this.caller
    )
  }
  /** The quota guard's reader of the credits charged. */
  actualCost(a: unknown): number | undefined {
    return this.plan.metaOf(a)?.characterCost
  }
}

/** The current call inside the pipeline's steps (the current deadline is one there). */
export const current = (fiber: Fiber.Fiber<unknown, unknown>): Call => fiber.getRef(Deadline.CurrentDeadline) as Call

/**
 * The fiber running the current continuation: inside a callback the run loop calls (an exit frame, a
 * `flatMap`), a step less than `Effect.withFiber`. Only for callbacks of the pipeline's own effects.
 */
export const running = (): Fiber.Fiber<unknown, unknown> => Fiber.getCurrent()!

/** The current call, when the current deadline is one (hooks that may run outside the steps). */
export const callOf = (fiber: Fiber.Fiber<unknown, unknown>): Call | undefined => {
  const deadline = fiber.getRef(Deadline.CurrentDeadline)
  return deadline instanceof Call ? deadline : undefined
}
// ============================================================================
// Helpers
// ============================================================================

/** A call's own deadline, or `undefined` when it is not a finite duration of 0 or more. */
export const callDeadlineOf = (input: Duration.Input): Duration.Duration | undefined => {
  // Effect decodes NaN as zero; here it is a bug in the caller's arithmetic, not "no time left".
  const decoded = Number.isNaN(input) ? undefined : Option.getOrUndefined(Duration.fromInput(input))
  const millis = decoded === undefined ? Number.NaN : Duration.toMillis(decoded)
  return millis >= 0 && Number.isFinite(millis) ? decoded : undefined
}

/** A call's deadline that is not one. */
export const invalidDeadline = (operation: string, call: CallOptions): ElevenLabsError =>
  new ElevenLabsError({
    reason: new InvalidRequest({
      operation,
      field: "deadline",
      message: `The call's deadline ${
        JSON.stringify(String(call.deadline))
      } is not a finite duration of 0 or more (for example "30 seconds").`
    })
  })

export const isPooled = <A>(plan: CallPlan<A>): plan is PooledPlan<A> => plan.pool !== undefined

export const bytesOf = (value: unknown): number | undefined => {
  if (typeof value !== "object" || value === null || !("audio" in value)) return undefined
  const audio = value.audio
  return audio instanceof Uint8Array ? audio.byteLength : undefined
}

/** Records a pooled call that ended (synchronously) and returns its call-span attributes. */
export const recordCall = (
  plan: PooledPlan<any>,
  exit: Exit.Exit<unknown, ElevenLabsError>,
  durationSeconds: number,
  context: Context.Context<never>
): Spans.CallAttributes => {
  const model = plan.model ?? "unknown"
  if (Exit.isSuccess(exit)) {
    const meta = plan.metaOf(exit.value)
    const fallback = meta?.fallback === true
    // Usage is what ElevenLabs generated: a joiner of a coalesced call and a cached answer add none.
    const generated = !fallback && meta?.coalesced !== true
    const audio = meta === undefined || !generated ? undefined : bytesOf(exit.value)
    const seconds = audio === undefined || plan.outputFormat === undefined
      ? undefined
      : audioSecondsOf(plan.outputFormat, audio)
    const status = fallback ? "fallback" : "success"
    Metrics.recordRequestUnsafe({ operation: plan.operation, pool: plan.pool, model, status, durationSeconds }, context)
    if (plan.characters !== undefined && generated) Metrics.recordCharactersUnsafe(model, plan.characters, context)
    if (seconds !== undefined) Metrics.recordAudioSecondsUnsafe(model, seconds, context)
    return { outcome: status, fallbackUsed: fallback, coalesced: meta?.coalesced === true }
  }
  const error = failureOf(exit)
  Metrics.recordRequestUnsafe(
    { operation: plan.operation, pool: plan.pool, model, status: "error", durationSeconds },
    context
  )
  if (error !== undefined) Metrics.recordErrorUnsafe({ reason: error.reason._tag, pool: plan.pool }, context)
  return {
    outcome: "error",
    ...(error === undefined ? {} : { errorReason: error.reason._tag, attempts: error.attempts })
  }
}

/** The read-only call span's outcome. */
export const outcomeOf = (exit: Exit.Exit<unknown, ElevenLabsError>): Spans.CallAttributes => {
  if (Exit.isSuccess(exit)) return { outcome: "success" }
  const error = failureOf(exit)
  return {
    outcome: "error",
    ...(error === undefined ? {} : { errorReason: error.reason._tag, attempts: error.attempts })
  }
}

export const failureOf = (exit: Exit.Failure<unknown, ElevenLabsError>): ElevenLabsError | undefined => {
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  return failure?._tag === "Fail" ? failure.error : undefined
}

/** The call span's options: the operation, and for a pooled call its model, voice, characters and pool. */
export const spanOptionsOf = (plan: CallPlan<any>, pooled: boolean) =>
  // `useSpan` takes no stack trace: the frame Effect would record is this library's, the same for every call.
  Spans.callSpanOptions(
    plan.operation,
    pooled ? { model: plan.model, voiceId: plan.voiceId, characters: plan.characters, pool: plan.pool } : {}
  )

/**
 * The static attributes of an operation's attempt span, from the endpoint table (an SDK call named freely gets
 * neither method nor template). The address only labels spans: a base URL that does not parse (the SDK's,
 * passed for information) leaves them unlabelled rather than failing the stack.
 */
export const attemptAttributes = (base: string) => {
  const server = URL.canParse(base) ? new URL(base) : undefined
  const serverAddress = server?.hostname
  const serverPort = server === undefined
    ? undefined
    : server.port === ""
    ? (server.protocol === "http:" ? 80 : 443)
    : Number(server.port)
  const cache = new Map<string, Spans.AttemptAttributes>()
  return (operation: string): Spans.AttemptAttributes => {
    const cached = cache.get(operation)
    if (cached !== undefined) return cached
    const row = Endpoints.byName.get(operation)
    const attrs = { method: row?.method, urlTemplate: row?.path, serverAddress, serverPort }
    // Only the table's operations are kept: an SDK caller may name its calls freely, and without bound.
    if (row !== undefined) cache.set(operation, attrs)
    return attrs
  }
}
