/**
 * The engine of a real-time session (`RealtimeSession.ts` is its face): the contexts, the one live
 * connection (`RealtimeConnection.ts`) and what is written on it, the keep-alives, the reconnect loop under
 * the stack's retry schedules and budget, and the session's one ending. Documented in docs/realtime.md.
 *
 * **Details**
 *
 * - Writes are serialized (`wireLock`) and written from the contexts' state, never queued: each context
 *   knows how far its text was written on the current connection. A new connection starts every context
 *   again from its first unanswered character, so the resend after a reconnect is the same code path as a
 *   send: exactly the unanswered suffix, nothing lost, nothing spoken twice.
 * - Text is written only while its context holds a permit (`RealtimeContext.ensurePermit`).
 * - Reconnects: a connection ending whose reason may be retried (`Errors.isRetryable`) is retried with
 *   `RetryPolicy.retry` (the stack's schedules, the retry budget); a connection that made progress (the
 *   server answered something, or it stayed open for an inactivity timeout) starts a fresh round, whose first
 *   pause is still the schedule's and still asks the budget.
 *
 * @since 0.2.0
 */
import { Cause, Clock, Deferred, Duration, Effect, Exit, Queue, type Redacted, Scope, Semaphore } from "effect"
import type { Socket } from "effect/socket"
import { ElevenLabsError, isRetryable } from "../client/Errors.ts"
import * as Realtime from "../client/Realtime.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import * as Spans from "../telemetry/Spans.ts"
import type * as Breaker from "./Breaker.ts"
import * as Connection from "./RealtimeConnection.ts"
import {
  type Account,
  commitAnswered,
  type Ctx,
  ensurePermit,
  finish,
  maybeRelease,
  settleAll
} from "./RealtimeContext.ts"
import { isWhitespace, keepAliveDelay, keepAliveInterval } from "./RealtimeLedger.ts"
import type { Settings } from "./RealtimeModel.ts"
import type { RetrySettings } from "./ResilientOptions.ts"
import type * as RetryBudget from "./RetryBudget.ts"
import * as RetryPolicy from "./RetryPolicy.ts"

/** What the engine is built from. */
export interface EngineOptions {
  readonly settings: Settings
  readonly url: string
  readonly apiKey: Redacted.Redacted<string>
  readonly openTimeout: Duration.Duration
  readonly account: Account
  readonly retry: RetrySettings | false
  readonly budget: RetryBudget.RetryBudget | undefined
  readonly breaker: Breaker.Breaker["Service"] | undefined
}

/** How one round of connections ended: the session is complete, or a healthy connection dropped. */
type Round = { readonly _tag: "Complete" } | { readonly _tag: "Dropped"; readonly error: ElevenLabsError }

const complete: Round = { _tag: "Complete" }

/** The state of one session. */
export class Engine {
  readonly contexts = new Map<string, Ctx>()
  readonly wireLock = Semaphore.makeUnsafe(1)
  /** Completed once the first connection is open, or with the session's failure. */
  readonly ready = Deferred.makeUnsafe<void, ElevenLabsError>()
  /** The session's one ending. */
  readonly done = Deferred.makeUnsafe<void, ElevenLabsError>()
  /** A failure that must end the session from outside the reader (a permit refused for a resend). */
  readonly fatal = Deferred.makeUnsafe<never, ElevenLabsError>()
  write: Connection.Write | undefined = undefined
  connected = false
  /** Multi-context: `close` was asked, and `close_socket` written on this connection. */
  closing = false
  closeSent = false
  connections = 0
  reconnects = 0
  opened = 0
  outcome: Exit.Exit<void, ElevenLabsError> | undefined = undefined
  /** Characters resent over the session, and the counts of the contexts it no longer holds. */
  resent = 0
  retired = { sent: 0, answered: 0 }
  /** Contexts the caller opened (multi-context). */
  contextsOpened = 0

  readonly options: EngineOptions

  constructor(options: EngineOptions) {
    this.options = options
  }

  get account(): Account {
    return this.options.account
  }

  get multi(): boolean {
    return this.options.settings.kind === "multi"
  }

  /** Contexts still open at the server (abandoned ones until their final message). */
  liveContexts(): Array<Ctx> {
    return [...this.contexts.values()].filter((c) => !c.finished)
  }

  /** Forgets a context that is over (multi-context), keeping its counts for the session's span. */
  retire(ctx: Ctx): void {
    if (ctx.id === undefined || this.contexts.get(ctx.id) !== ctx) return
    this.contexts.delete(ctx.id)
    this.retired.sent += ctx.ledger.sent
    this.retired.answered += ctx.ledger.answered
  }

  /** Characters sent and answered over the session. */
  totals(): { readonly sent: number; readonly answered: number } {
    let { answered, sent } = this.retired
    for (const ctx of this.contexts.values()) {
      sent += ctx.ledger.sent
      answered += ctx.ledger.answered
    }
    return { sent, answered }
  }
}

// ============================================================================
// Writing
// ============================================================================

/** Writes what `ctx` has not written on this connection: init, text (with a permit), flush, end. */
const pumpCtx = Effect.fnUntraced(function*(engine: Engine, ctx: Ctx, write: Connection.Write, now: number) {
  const id = ctx.id
  const settings = engine.options.settings
  if (!ctx.initSent) {
    const ok = yield* write(Realtime.init({
      contextId: id,
      voiceSettings: ctx.voiceSettings ?? settings.options.voiceSettings,
      chunkSchedule: settings.options.chunkSchedule
    }))
    if (!ok) return
    ctx.initSent = true
    ctx.lastWriteAt = now
  }
  if (ctx.abandoned) {
    if (!ctx.endSent && id !== undefined && (yield* write(Realtime.closeContext(id)))) ctx.endSent = true
    return
  }
  const sent = ctx.ledger.sent
  const from = Math.max(ctx.written, ctx.ledger.answered)
  if (from < sent) {
    const text = ctx.ledger.unanswered(from)
    if (ctx.permit === undefined && [...text].every(isWhitespace)) {
      ctx.written = sent // nothing to speak: no permit is taken for spaces
    } else if (ctx.permit !== undefined && (yield* write(Realtime.text(text, id)))) {
      const again = Math.max(0, Math.min(sent, ctx.everWritten) - from)
      ctx.resent += again
      engine.resent += again
      if (again > 0) yield* Metrics.recordCharactersResent(engine.account.pool, again)
      ctx.written = sent
      ctx.everWritten = Math.max(ctx.everWritten, sent)
      ctx.lastWriteAt = now
    }
  }
  if (ctx.flushAt > ctx.flushedAt && ctx.written >= ctx.flushAt && (yield* write(Realtime.flush(id)))) {
    ctx.flushedAt = ctx.flushAt
    ctx.lastWriteAt = now
  }
  if (ctx.ended && !ctx.endSent && ctx.written >= sent) {
    const ok = id === undefined
      ? yield* write(Realtime.endOfInput)
      : (yield* write(Realtime.flush(id))) && (yield* write(Realtime.closeContext(id)))
    if (ok) {
      ctx.endSent = true
      ctx.lastWriteAt = now
    }
  }
})

/** Writes everything not yet written, on the live connection (nothing while there is none). */
export const pump = (engine: Engine): Effect.Effect<void> =>
  engine.wireLock.withPermit(Effect.gen(function*() {
    const write = engine.write
    if (write === undefined) return
    const now = yield* Clock.currentTimeMillis
    for (const ctx of engine.contexts.values()) {
      if (!ctx.finished) yield* pumpCtx(engine, ctx, write, now)
    }
    if (engine.closing && !engine.closeSent && (yield* write(Realtime.closeSocket))) engine.closeSent = true
  }))

/** Sends a keep-alive for each context silent for half the inactivity timeout, until the connection ends. */
const keepAlive = (engine: Engine): Effect.Effect<never> => {
  const interval = keepAliveInterval(engine.options.settings.inactivityMillis)
  const silent = () => engine.liveContexts().filter((c) => c.initSent && !c.endSent && !c.abandoned)
  const tick = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const live = silent()
    const delay = live.length === 0
      ? interval
      : Math.min(...live.map((c) => keepAliveDelay(c.lastWriteAt, now, interval)))
    if (delay > 0) return yield* Effect.sleep(Duration.millis(delay))
    yield* engine.wireLock.withPermit(Effect.gen(function*() {
      const write = engine.write
      if (write === undefined) return
      const at = yield* Clock.currentTimeMillis
      for (const c of silent()) {
        if (keepAliveDelay(c.lastWriteAt, at, interval) === 0 && (yield* write(Realtime.keepAlive(c.id)))) {
          c.lastWriteAt = at
        }
      }
    }))
  })
  return Effect.forever(tick)
}

// ============================================================================
// Reading
// ============================================================================

/** The context a message is for. */
const contextOf = (engine: Engine, contextId: string | undefined): Ctx | undefined =>
  engine.multi ? (contextId === undefined ? undefined : engine.contexts.get(contextId)) : engine.contexts.get("")

/** A context's final message: everything it sent is answered; it is done (and its slot free). */
const finalOf = (engine: Engine, ctx: Ctx): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (!ctx.abandoned) ctx.ledger.answerAll()
    if (engine.multi) engine.retire(ctx)
    return Effect.andThen(commitAnswered(ctx), finish(engine.account, ctx, Exit.void))
  })

/** What the reader does with a message; `progress` is told when the server answered something. */
const handle = (engine: Engine, progress: () => void): Connection.Handle => (message) =>
  Effect.suspend(() => {
    const ctx = contextOf(engine, message.contextId)
    if (ctx === undefined || ctx.finished) return Effect.succeed("continue" as const)
    if (message._tag === "Audio") {
      if (ctx.abandoned) return Effect.succeed("continue" as const)
      Queue.offerUnsafe(ctx.audio, {
        audio: message.audio,
        alignment: message.alignment,
        normalizedAlignment: message.normalizedAlignment,
        contextId: message.contextId
      })
      const chars = message.alignment?.chars
      if (chars === undefined || ctx.ledger.answer(chars) === 0) return Effect.succeed("continue" as const)
      progress()
      return Effect.as(Effect.andThen(commitAnswered(ctx), maybeRelease(engine.account, ctx)), "continue" as const)
    }
    if (message._tag !== "Final") return Effect.succeed("continue" as const)
    return Effect.map(finalOf(engine, ctx), () =>
      !engine.multi || (engine.closing && engine.liveContexts().length === 0)
        ? "complete" as const
        : "continue" as const)
  })

/** Whether a normal close now is the session's clean end. */
const cleanClose = (engine: Engine) => (): boolean => {
  if (engine.multi) return engine.closeSent
  const ctx = engine.contexts.get("")
  return ctx !== undefined && ctx.endSent && ctx.ledger.settled
}

// ============================================================================
// Connections
// ============================================================================

/**
 * A connection is open: it becomes the live one, every context starts again from its first unanswered
 * character (contexts the caller abandoned are dropped), the permits for the unanswered text are taken again
 * (each in its own fiber, so one waiting context does not hold back another), and the keep-alives start.
 * When the connection ends, permits are returned (a reconnect's pause holds none).
 */
const onOpen = (engine: Engine) => (write: Connection.Write): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    yield* engine.wireLock.withPermit(Effect.gen(function*() {
      for (const ctx of engine.contexts.values()) {
        if (ctx.abandoned && ctx.id !== undefined) {
          engine.retire(ctx)
          yield* finish(engine.account, ctx, Exit.void)
        } else ctx.reset(now)
      }
      engine.closeSent = false
      engine.write = write
      engine.connected = true
      engine.opened = now
    }))
    yield* Effect.addFinalizer(() =>
      engine.wireLock.withPermit(Effect.suspend(() => {
        engine.write = undefined
        engine.connected = false
        return Effect.forEach(engine.contexts.values(), (ctx) => maybeRelease(engine.account, ctx), { discard: true })
      }))
    )
    Deferred.doneUnsafe(engine.ready, Exit.void)
    yield* pump(engine)
    for (const ctx of engine.contexts.values()) {
      if (ctx.finished || ctx.abandoned || ctx.ledger.settled) continue
      yield* ensurePermit(engine.account, ctx).pipe(
        Effect.andThen(pump(engine)),
        Effect.catch((error) => Deferred.fail(engine.fatal, error)),
        Effect.forkScoped
      )
    }
    if (engine.options.settings.options.keepAlive !== false) yield* Effect.forkScoped(keepAlive(engine))
  })

/** One connection, from its handshake to its end: the session's end, a healthy drop, or a failure. */
const connectOnce = (engine: Engine): Effect.Effect<Round, ElevenLabsError, Socket.WebSocketConstructor> =>
  Effect.suspend(() => {
    const { settings } = engine.options
    const number = engine.connections++
    let progressed = false
    const run = Connection.run({
      url: engine.options.url,
      apiKey: engine.options.apiKey,
      openTimeout: engine.options.openTimeout,
      operation: settings.operation,
      onOpen: onOpen(engine),
      onMessage: handle(engine, () => {
        progressed = true
      }),
      cleanClose: cleanClose(engine)
    })
    const connection = Effect.raceFirst(run, Deferred.await(engine.fatal)).pipe(
      Effect.as(complete),
      Effect.catch((error) =>
        Effect.gen(function*() {
          const reason = error.reason
          if (reason._tag === "ConcurrencyLimited") {
            const { account } = engine
            yield* account.limiter.onConcurrencyLimited(account.keyId, account.pool, reason.limit)
          }
          const now = yield* Clock.currentTimeMillis
          const healthy = progressed || (engine.opened > 0 && now - engine.opened >= settings.inactivityMillis)
          engine.opened = 0
          return isRetryable(reason) && healthy
            ? { _tag: "Dropped", error } satisfies Round
            : yield* Effect.fail(error)
        })
      )
    )
    if (number === 0) return connection
    engine.reconnects++
    const resentBefore = resentOf(engine)
    return connection.pipe(
      Effect.tap(() => Spans.annotateCall({ outcome: "success" })),
      Effect.tapError((e) => Spans.annotateCall({ outcome: "error", errorReason: e.reason._tag })),
      Effect.ensuring(
        Effect.suspend(() =>
          Effect.annotateCurrentSpan(Spans.realtimeAttributes.charactersResent, resentOf(engine) - resentBefore)
        )
      ),
      (self) =>
        Effect.withSpan(self, Spans.reconnectSpanName(settings.operation), {
          kind: "client",
          attributes: { [Spans.realtimeAttributes.reconnect]: engine.reconnects },
          captureStackTrace: false
        })
    )
  })

/** Characters resent over the session. */
export const resentOf = (engine: Engine): number => engine.resent

// ============================================================================
// The session's run
// ============================================================================

/** Before a reconnect's pause: the reconnect metric, a span event, a debug line (never the URL or key). */
const onRetry = (engine: Engine) => (event: RetryPolicy.RetryEvent): Effect.Effect<void> => {
  const delayMs = Duration.toMillis(event.delay)
  return Effect.andThen(
    Effect.andThen(
      Metrics.recordReconnect({ pool: engine.account.pool, reason: event.reason }),
      Spans.retryEvent({ attempt: event.attempt - 1, reason: event.reason, delayMs })
    ),
    Effect.logDebug("elevenlabs realtime reconnect", { operation: event.operation, reason: event.reason, delayMs })
  )
}

/**
 * The connections of the session until it is complete or fails: rounds of `RetryPolicy.retry` over
 * `connectOnce`. A round that ends with a healthy drop starts the next with that drop as its first failure,
 * so its first reconnect waits the schedule's first pause and asks the budget.
 */
const connections = (engine: Engine): Effect.Effect<void, ElevenLabsError, Socket.WebSocketConstructor> => {
  const settings = engine.options.retry
  const retry = settings === false
    ? <A, E, R>(self: Effect.Effect<A, E, R>) => self
    : RetryPolicy.retry({ ...settings, idempotent: true, budget: engine.options.budget, onRetry: onRetry(engine) })
  const round = (
    previous: ElevenLabsError | undefined
  ): Effect.Effect<Round, ElevenLabsError, Socket.WebSocketConstructor> =>
    Effect.suspend(() => {
      let first = previous
      return retry(Effect.suspend(() => {
        if (first === undefined) return connectOnce(engine)
        const error = first
        first = undefined
        return Effect.fail(error)
      }))
    })
  return Effect.gen(function*() {
    let previous: ElevenLabsError | undefined
    while (true) {
      const ended = yield* round(previous)
      if (ended._tag === "Complete") return
      previous = ended.error
    }
  })
}

/** The session's one ending: every context finished, the quota and breaker told, the waiters completed. */
const conclude = (engine: Engine, exit: Exit.Exit<void, ElevenLabsError>): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (engine.outcome !== undefined) return
    engine.outcome = exit
    const { account } = engine
    for (const ctx of engine.contexts.values()) yield* finish(account, ctx, exit)
    const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
    const failure = error !== undefined && error._tag === "Some" ? error.value : undefined
    if (failure?.reason._tag === "QuotaExceeded" && account.quota !== undefined) {
      yield* account.quota.markExhausted(failure.reason)
    }
    const breaker = engine.options.breaker
    if (breaker !== undefined && (Exit.isSuccess(exit) || failure !== undefined)) {
      // One outcome per session, recorded at its end (a session of minutes would otherwise be "in flight"
      // for the breaker's start order the whole time).
      yield* Effect.ignore(breaker.execute(account.pool)(Exit.isSuccess(exit) ? Effect.void : Effect.fail(failure!)))
    }
    Deferred.doneUnsafe(engine.ready, exit)
    Deferred.doneUnsafe(engine.done, exit)
  })

/** Runs the session to its ending (and concludes it however it ends, interruption included). */
export const run = (engine: Engine): Effect.Effect<void, ElevenLabsError, Socket.WebSocketConstructor> =>
  Effect.onExit(connections(engine), (exit) => conclude(engine, exit))

export { settleAll }
