/**
 * Real-time text to speech over the ElevenLabs WebSocket endpoints, as a typed, resilient, scoped session:
 * `stream-input` (one context) with {@link Connector.open}, `multi-stream-input` (up to five contexts) with
 * {@link Connector.openMulti}, under the policies of the resilient stack (`Resilient.Resilience`: the
 * limiter, the quota guard, the breaker, the retry schedules and budget). The protocol is the one of
 * `client/Realtime.ts`; docs/realtime.md (`## Session`) explains the accounting, the keep-alives and the
 * resend boundary.
 *
 * **Details**
 *
 * - Concurrency: a context holds one permit of the model's pool only while the server may be generating its
 *   text: it takes it before writing the message that makes the server generate (the send that brings the
 *   buffered text to the next step of the chunk schedule, a flush, the end; every send in `autoMode`), and
 *   returns it once everything written up to there is answered (spoken, by the alignment; or a whitespace tail
 *   after its final or a quiet second). Text below the next step is written at once, without one. A step
 *   that needs it waits for it (its text stays here meanwhile). An abandoned context keeps it until its final.
 * - Quota: each send reserves the credits of its characters (`Validation.characterCount`, the model's
 *   multiplier); what is answered is committed, what is not when the session ends is given back.
 * - Breaker: an open circuit refuses to open a session (`CircuitOpen`); a session that fails (after its
 *   reconnects) is one failure of the pool's circuit, a clean one a success.
 * - Reconnects: a drop or a retryable close (`Realtime.classifyClose`, `Errors.reasonPolicies`) reconnects
 *   with the stack's retry schedules and budget, sends the init again (and re-opens the contexts) and
 *   resends exactly the unanswered text. Audio already delivered stays delivered.
 * - Keep-alive: after half the inactivity timeout of silence (on `multi-stream-input`, also for contexts
 *   waiting for their final). A multi-context socket with no context closed for inactivity is opened again
 *   at the next `openContext`. A read-idle bound (`idleTimeout`) fails a connection that sends nothing while
 *   audio is awaited.
 * - One ending: a clean end, or one `ElevenLabsError` (every ending through `classifyClose`). Closing the
 *   scope (or interrupting the caller) closes the socket and returns the permits and reservations.
 * - The API key is sent only in the `xi-api-key` header of the handshake.
 *
 * @example
 * ```ts
 * import { NodeSocket } from "@effect/platform-node"
 * import { Effect, Layer, Redacted, Stream } from "effect"
 * import { RealtimeSession, Resilient } from "elevenlabs-resilience/resilience"
 *
 * const apiKey = Redacted.make(process.env.ELEVENLABS_API_KEY!)
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const realtime = yield* RealtimeSession.RealtimeTts
 *   const session = yield* realtime.open({ voiceId: "21m00Tcm4TlvDq8ikWAM", modelId: "eleven_flash_v2_5" })
 *   const played = yield* Effect.forkScoped(Stream.runForEach(session.audio, (chunk) => play(chunk.audio)))
 *   yield* session.send("Hello there.")
 *   yield* session.end // waits for the last audio
 * }))
 * ```
 *
 * @since 0.2.0
 */
import { Clock, Context, Deferred, Duration, Effect, Exit, Layer, Scope, Stream, Tracer } from "effect"
import { Socket } from "effect/socket"
import { defaultBaseUrl } from "../client/ElevenLabs.ts"
import { CircuitOpen, ElevenLabsError, InvalidRequest } from "../client/Errors.ts"
import * as Realtime from "../client/Realtime.ts"
import * as Validation from "../client/Validation.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import * as Breaker from "./Breaker.ts"
import type { Policies } from "./PipelinePolicies.ts"
import { poolOfModel } from "./Plans.ts"
import { type Account, type Ctx, makeCtx, reserve } from "./RealtimeContext.ts"
import { Engine, resentOf, run, wakeUp } from "./RealtimeEngine.ts"
import { isWhitespace } from "./RealtimeLedger.ts"
import * as Model from "./RealtimeModel.ts"
import type { Connector, ConnectorOptions, SessionOptions, SpeechStats } from "./RealtimeModel.ts"
import { abandon, admit, pump } from "./RealtimeWrite.ts"
import { Resilience } from "./Resilient.ts"

export * from "./RealtimeModel.ts"

/** The policies a session runs under (a `Resilient.Resilience` or `WithResilience.SdkResilience` has them). */
export type RealtimePolicies = Pick<Policies, "keyId" | "limiter" | "breaker" | "quota" | "budget" | "retry">

/** The tag of the {@link Connector} of the resilient stack ({@link layer}). */
export const RealtimeTts = Context.Service<Connector>("elevenlabs-resilience/RealtimeSession/RealtimeTts")

// ============================================================================
// The text side of a context
// ============================================================================

const failWith = (error: ElevenLabsError) => Effect.fail(error)

/** The session's failure, or `undefined` while it runs. */
const failureOf = (engine: Engine): ElevenLabsError | undefined => {
  const exit = engine.outcome
  if (exit === undefined || Exit.isSuccess(exit)) return undefined
  const found = exit.cause.reasons.find((r) => r._tag === "Fail")
  return found?._tag === "Fail" ? found.error : undefined
}

/** Refused: the input was ended, or the session is over. */
const endedError = (engine: Engine, what: string) =>
  failureOf(engine) ??
    new ElevenLabsError({
      reason: new InvalidRequest({
        operation: engine.options.settings.operation,
        field: "text",
        message: `${what}: the input was ended (or the session is over).`
      })
    })

/**
 * Runs a caller's step on a context, bounded by the session: if the session ends while the step waits
 * (for a permit, say), the step fails with its failure.
 */
const bounded = <A>(engine: Engine, step: Effect.Effect<A, ElevenLabsError>, what: string) =>
  Effect.raceFirst(
    step,
    Effect.flatMap(Effect.exit(Deferred.await(engine.done)), () => failWith(endedError(engine, what)))
  )

/** The text side of `ctx`; `end` waits for `ended` (the session's end, or the context's final). */
const speakerOf = (engine: Engine, ctx: Ctx, ended: Effect.Effect<void, ElevenLabsError>): Model.Speaker => {
  const account = engine.account
  const open = (what: string) =>
    Effect.suspend(() => (ctx.ended || ctx.abandoned || ctx.finished || engine.outcome !== undefined
      ? failWith(endedError(engine, what))
      : Effect.void)
    )
  const send = (text: string) =>
    ctx.sendLock.withPermit(Effect.gen(function*() {
      yield* open("send")
      const normalized = Realtime.normalizeText(text)
      const units = [...normalized]
      // Nothing to speak (whitespace alone would go out as a keep-alive): no reservation, no permit.
      if (units.every(isWhitespace)) return
      // The permit first when writing it makes the server generate; the text is appended and written at once.
      yield* reserve(account, ctx, Validation.characterCount(normalized), (keep) =>
        admit(engine, ctx, { text: units }, open("send"), () => {
          keep()
          ctx.ledger.append(normalized)
        }))
    }))
  const mark = (what: string, step: { readonly flush?: boolean; readonly end?: boolean }, f: () => void) =>
    bounded(engine, ctx.sendLock.withPermit(admit(engine, ctx, step, open(what), f)), what)
  return {
    send: (text) => bounded(engine, send(text), "send"),
    flush: mark("flush", { flush: true }, () => {
      ctx.flushAt = ctx.ledger.sent
    }),
    end: Effect.andThen(
      Effect.suspend(() =>
        ctx.ended ? Effect.void : mark("end", { end: true }, () => {
          ctx.ended = true
        })
      ),
      ended
    ),
    audio: Stream.fromQueue(ctx.audio),
    stats: Effect.sync((): SpeechStats => ({
      sent: ctx.ledger.sent,
      answered: ctx.ledger.answered,
      resent: ctx.resent
    }))
  }
}

// ============================================================================
// Opening
// ============================================================================

/** Builds the engine of a session and runs it in the caller's scope; waits for its first connection. */
const start: (
  connector: ConnectorOptions,
  policies: RealtimePolicies,
  kind: Realtime.Kind,
  options: SessionOptions
) => Effect.Effect<Engine, ElevenLabsError, Scope.Scope | Socket.WebSocketConstructor> = Effect.fnUntraced(function*(
  connector: ConnectorOptions,
  policies: RealtimePolicies,
  kind: Realtime.Kind,
  options: SessionOptions
) {
  const settings = Model.settingsOf(kind, options)
  if (settings instanceof ElevenLabsError) return yield* settings
  const { operation, modelId } = settings
  const baseUrl = connector.baseUrl ?? defaultBaseUrl
  if (!URL.canParse(baseUrl)) {
    return yield* new ElevenLabsError({
      reason: new InvalidRequest({
        operation,
        field: "baseUrl",
        message: `baseUrl "${baseUrl}" is not a URL; give an absolute URL such as ${defaultBaseUrl}`
      })
    })
  }
  const pool = poolOfModel(modelId)
  const breaker = policies.breaker
  if (breaker !== undefined) {
    const state = yield* Effect.orElseSucceed(breaker.state(pool), () => undefined)
    if (state !== undefined && state._tag === "Open" && Breaker.stateNow(state) === "Open") {
      return yield* new ElevenLabsError({
        reason: new CircuitOpen({
          operation,
          message: `the ${pool} circuit is open: no session is opened until it half-opens`,
          pool,
          halfOpen: false,
          retryAfter: state.retryAfter
        })
      })
    }
  }
  // The session's own scope, a child of the caller's: closed with it, or when opening fails.
  const scope = yield* Scope.fork(yield* Scope.Scope)
  let engine: Engine | undefined
  const account: Account = {
    operation,
    keyId: policies.keyId,
    pool,
    lane: options.lane ?? "default",
    modelId,
    limiter: policies.limiter,
    quota: policies.quota,
    scope,
    connected: () => engine?.connected === true
  }
  engine = new Engine({
    settings,
    url: Model.urlOf(baseUrl, settings),
    apiKey: connector.apiKey,
    openTimeout: Duration.fromInputUnsafe(connector.openTimeout ?? "10 seconds"),
    account,
    retry: policies.retry,
    budget: policies.budget,
    breaker
  })
  if (kind === "single") engine.contexts.set("", yield* makeCtx(undefined, undefined))
  yield* Effect.forkIn(observed(engine, options), scope)
  yield* Deferred.await(engine.ready).pipe(
    Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, Exit.void)))
  )
  return engine
})

/** The session's run in its span, with the session metrics. */
const observed = (engine: Engine, options: SessionOptions) => {
  const { operation, modelId } = engine.options.settings
  const pool = engine.account.pool
  return Effect.useSpan(
    Spans.callSpanName(operation),
    Spans.callSpanOptions(operation, { model: modelId, voiceId: options.voiceId, pool, lane: engine.account.lane }),
    (span) =>
      Effect.andThen(
        Metrics.addActiveSession(pool, 1),
        // The session's span is the parent of its reconnect spans and holds the events of their pauses.
        Effect.onExit(Effect.provideService(run(engine), Tracer.ParentSpan, span), (exit) =>
          Effect.suspend(() => {
            const { answered, sent } = engine.totals()
            const failure = failureOf(engine)
            Spans.setCallAttributes(span, {
              characters: sent,
              outcome: Exit.isSuccess(exit) ? "success" : "error",
              errorReason: failure?.reason._tag
            })
            span.attribute(Spans.realtimeAttributes.reconnects, engine.reconnects)
            span.attribute(Spans.realtimeAttributes.charactersAnswered, answered)
            span.attribute(Spans.realtimeAttributes.charactersResent, resentOf(engine))
            if (engine.multi) span.attribute(Spans.realtimeAttributes.contexts, engine.contextsOpened)
            return Effect.andThen(
              Metrics.recordSessionEnd({
                pool,
                status: Exit.isSuccess(exit) ? "success" : failure === undefined ? "interrupted" : "error",
                reason: failure?.reason._tag ?? ""
              }),
              Metrics.addActiveSession(pool, -1)
            )
          }))
      )
  )
}

/** A single-context session. */
const openSingle = (connector: ConnectorOptions, policies: RealtimePolicies) => (options: SessionOptions) =>
  Effect.map(start(connector, policies, "single", options), (engine): Model.Session => ({
    ...speakerOf(engine, engine.contexts.get("")!, Deferred.await(engine.done)),
    reconnects: Effect.sync(() => engine.reconnects)
  }))

/** A multi-context connection. */
const openMulti = (connector: ConnectorOptions, policies: RealtimePolicies) => (options: SessionOptions) =>
  Effect.map(start(connector, policies, "multi", options), (engine): Model.MultiSession => {
    let counter = 0
    const refuse = (message: string) =>
      failWith(
        new ElevenLabsError({
          reason: new InvalidRequest({ operation: engine.options.settings.operation, field: "context_id", message })
        })
      )
    const openContext: Model.MultiSession["openContext"] = (contextId, contextOptions) =>
      Effect.gen(function*() {
        if (engine.outcome !== undefined || engine.closing) return yield* failWith(endedError(engine, "openContext"))
        const id = contextId ?? `ctx-${++counter}`
        if (id.length === 0) return yield* refuse("a context id cannot be empty")
        const live = engine.liveContexts()
        if (engine.contexts.get(id)?.finished === false) return yield* refuse(`context ${id} is already open`)
        if (live.length >= Realtime.limits.contextsPerConnection) {
          return yield* refuse(
            `at most ${Realtime.limits.contextsPerConnection} contexts are open on one connection; end one first`
          )
        }
        const ctx = yield* makeCtx(id, contextOptions?.voiceSettings)
        ctx.reset(yield* Clock.currentTimeMillis)
        engine.contexts.set(id, ctx)
        engine.contextsOpened++
        yield* Effect.addFinalizer(() => abandon(engine, ctx))
        wakeUp(engine)
        yield* pump(engine)
        return { contextId: id, ...speakerOf(engine, ctx, Deferred.await(ctx.final)) }
      })
    return {
      openContext,
      contexts: Effect.sync(() => engine.liveContexts().filter((c) => !c.abandoned).map((c) => c.id!)),
      close: Effect.gen(function*() {
        if (engine.outcome === undefined && !engine.closing) {
          // No context opens from now on; each ends once its send under way is appended (its sendLock), and
          // `close_socket` goes out only once every context has all its text written and its end sent.
          engine.closing = true
          wakeUp(engine)
          yield* Effect.forEach(
            [...engine.contexts.values()],
            (ctx) =>
              ctx.sendLock.withPermit(Effect.sync(() => {
                ctx.ended = true
              })).pipe(Effect.andThen(pump(engine))),
            { concurrency: "unbounded", discard: true }
          )
          yield* pump(engine)
        }
        return yield* Deferred.await(engine.done)
      }),
      reconnects: Effect.sync(() => engine.reconnects)
    }
  })

// ============================================================================
// Constructors
// ============================================================================

/** A {@link Connector} over `policies` (those of a resilient stack, or your own). */
export const make = (
  connector: ConnectorOptions,
  policies: RealtimePolicies
): Connector<Socket.WebSocketConstructor> => ({
  open: openSingle(connector, policies),
  openMulti: openMulti(connector, policies)
})

/**
 * The {@link RealtimeTts} connector of the resilient stack: the policies of `Resilient.Resilience` (the
 * same limiter, breaker, quota guard, retry schedules and budget as the HTTP calls of that key). Needs a
 * `Socket.WebSocketConstructor` (in Node, `NodeSocket.layerWebSocketConstructor`; the simulator's in-process
 * constructor in tests).
 */
export const layer = (
  connector: ConnectorOptions
): Layer.Layer<Connector, never, Resilience | Socket.WebSocketConstructor> =>
  Layer.effect(
    RealtimeTts,
    Effect.gen(function*() {
      const policies = yield* Resilience
      // Only the constructor: the session lives in the caller's scope, on the caller's clock.
      const constructor = yield* Socket.WebSocketConstructor
      const built = make(connector, policies)
      return RealtimeTts.of({
        open: (options) => Effect.provideService(built.open(options), Socket.WebSocketConstructor, constructor),
        openMulti: (options) =>
          Effect.provideService(built.openMulti(options), Socket.WebSocketConstructor, constructor)
      })
    })
  )
