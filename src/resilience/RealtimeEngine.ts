/**
 * The engine of a real-time session (`RealtimeSession.ts` is its face): the contexts, the one live
 * connection (`RealtimeConnection.ts`; what is written on it is `RealtimeWrite.ts`), what the server answers,
 * the keep-alives, the reconnect loop under the stack's retry schedules and budget, and the session's one
 * ending. Documented in docs/realtime.md.
 *
 * **Details**
 *
 * - A message that makes the server generate is written only while its context holds a permit
 *   (`RealtimeWrite.ts`, `RealtimeSchedule.ts`); the permit goes back once the server has answered everything
 *   it was asked to generate (`RealtimeContext.maybeRelease`).
 * - Reconnects: a connection ending whose reason may be retried (`Errors.isRetryable`) is retried with
 *   `RetryPolicy.retry` (the stack's schedules, the retry budget); a connection that made progress (the
 *   server answered something, or it stayed open for an inactivity timeout) starts a fresh round, whose first
 *   pause is still the schedule's and still asks the budget.
 * - A multi-context connection with no context that the server closes for inactivity is not a failure: it
 *   stays closed until the next `openContext` (or `close`), then opens again (not counted as a reconnect).
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
import { type Account, commitAnswered, type Ctx, finish, maybeRelease, watchTail } from "./RealtimeContext.ts"
import type { Settings } from "./RealtimeModel.ts"
import * as Schedule from "./RealtimeSchedule.ts"
import { idleWatch, keepAlive } from "./RealtimeWatch.ts"
import { pump } from "./RealtimeWrite.ts"
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

/**
 * How one round of connections ended: the session is complete, a healthy connection dropped, or an idle
 * multi-context connection (no context) was closed for inactivity.
 */
type Round =
  | { readonly _tag: "Complete" }
  | { readonly _tag: "Dropped"; readonly error: ElevenLabsError }
  | { readonly _tag: "Idle" }

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
  /** The live connection's scope (the background permit acquisitions end with it). */
  connectionScope: Scope.Scope | undefined = undefined
  connected = false
  /** Fails the live connection from outside its reader (the read-idle bound). */
  abort: Deferred.Deferred<never, ElevenLabsError> | undefined = undefined
  /** The last frame from the server, or the last flush or end written (the read-idle bound counts from it). */
  lastSignAt = 0
  /** Completed by `openContext` or `close` while an idle multi-context connection is closed. */
  wake: Deferred.Deferred<void> | undefined = undefined
  /** The next connection re-opens an idle one: not a reconnect. */
  reopen = false
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
  /** How the server triggers generations for this session (`RealtimeSchedule`). */
  readonly mode: Schedule.Mode

  constructor(options: EngineOptions) {
    this.options = options
    this.mode = Schedule.modeOf(options.settings.options)
  }

  get account(): Account {
    return this.options.account
  }

  get settings(): Settings {
    return this.options.settings
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
// Reading
// ============================================================================

/** The context a message is for. */
const contextOf = (engine: Engine, contextId: string | undefined): Ctx | undefined =>
  engine.multi ? (contextId === undefined ? undefined : engine.contexts.get(contextId)) : engine.contexts.get("")

const proceed = Effect.succeed("continue" as const)

/**
 * A context's final message: the server has answered everything it was given, which is everything written
 * on this connection and never more (`ledger.answerTo`). The context is then done (its slot free at the
 * server). Should the server end a context before all its text was written (text waiting for a permit), the
 * context is opened again on this connection and the rest written there.
 */
const finalOf = (engine: Engine, ctx: Ctx): Effect.Effect<"continue" | "complete"> =>
  Effect.suspend(() => {
    if (!ctx.abandoned) {
      ctx.ledger.answerTo(ctx.written)
      if (!ctx.ledger.idle) {
        ctx.reopen()
        return commitAnswered(ctx).pipe(
          Effect.andThen(pump(engine)),
          Effect.andThen(maybeRelease(engine.account, ctx)),
          Effect.andThen(proceed)
        )
      }
    }
    if (engine.multi) engine.retire(ctx)
    return commitAnswered(ctx).pipe(
      Effect.andThen(finish(engine.account, ctx, Exit.void)),
      Effect.andThen(engine.closing ? pump(engine) : Effect.void),
      Effect.map(() =>
        !engine.multi || (engine.closing && engine.liveContexts().length === 0)
          ? "complete" as const
          : "continue" as const
      )
    )
  })

/** An audio frame: to the context's queue (not an abandoned one's), its characters answered. */
const audioOf = (
  engine: Engine,
  ctx: Ctx,
  message: Extract<Realtime.ServerMessage, { readonly _tag: "Audio" }>,
  progress: () => void
): Effect.Effect<"continue"> => {
  ctx.frames++
  if (!ctx.abandoned) {
    Queue.offerUnsafe(ctx.audio, {
      audio: message.audio,
      alignment: message.alignment,
      normalizedAlignment: message.normalizedAlignment,
      contextId: message.contextId
    })
  }
  const chars = message.alignment?.chars
  const answered = chars === undefined ? 0 : ctx.ledger.answer(chars)
  if (answered > 0) progress()
  if (ctx.abandoned) return answered > 0 ? Effect.andThen(commitAnswered(ctx), proceed) : proceed
  const { account } = engine
  return commitAnswered(ctx).pipe(
    Effect.andThen(maybeRelease(account, ctx)),
    Effect.andThen(watchTail(account, ctx)),
    Effect.andThen(proceed)
  )
}

/** What the reader does with a message; `progress` is told when the server answered something. */
const handle = (engine: Engine, progress: () => void): Connection.Handle => (message) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    engine.lastSignAt = now
    const ctx = contextOf(engine, message.contextId)
    if (ctx === undefined || ctx.finished) return proceed
    if (message._tag === "Audio") return audioOf(engine, ctx, message, progress)
    return message._tag === "Final" ? finalOf(engine, ctx) : proceed
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
 * The contexts the caller abandoned that waited for their final: the server's context went with the
 * connection, so they are over (their permit and reservations settled).
 */
const dropAbandoned = (engine: Engine): Effect.Effect<void> =>
  Effect.forEach([...engine.contexts.values()], (ctx) => {
    if (!ctx.abandoned || ctx.finished || ctx.id === undefined) return Effect.void
    engine.retire(ctx)
    return finish(engine.account, ctx, Exit.void)
  }, { discard: true })

/**
 * A connection is open: it becomes the live one, every context starts again from its first unanswered
 * character in a new buffer at the server (contexts the caller abandoned are dropped), the permits the resend
 * needs are taken again (`RealtimeWrite.unblock`: each in its own fiber, so one waiting context does not hold
 * back another), and the keep-alives and the read-idle bound start. When the connection ends, permits are
 * returned (a reconnect's pause holds none) and abandoned contexts are over.
 */
const onOpen = (engine: Engine) => (write: Connection.Write): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const abort = engine.abort
    const scope = yield* Scope.Scope
    yield* engine.wireLock.withPermit(Effect.gen(function*() {
      yield* dropAbandoned(engine)
      for (const ctx of engine.contexts.values()) ctx.reset(now)
      engine.closeSent = false
      engine.write = write
      engine.connectionScope = scope
      engine.connected = true
      engine.opened = now
      engine.lastSignAt = now
    }))
    yield* Effect.addFinalizer(() =>
      engine.wireLock.withPermit(Effect.suspend(() => {
        engine.write = undefined
        engine.connectionScope = undefined
        engine.connected = false
        return Effect.andThen(
          dropAbandoned(engine),
          Effect.forEach([...engine.contexts.values()], (ctx) => maybeRelease(engine.account, ctx), {
            discard: true
          })
        )
      }))
    )
    Deferred.doneUnsafe(engine.ready, Exit.void)
    yield* pump(engine)
    if (engine.options.settings.options.keepAlive !== false) yield* Effect.forkScoped(keepAlive(engine))
    const idleMillis = engine.options.settings.idleMillis
    if (idleMillis !== undefined && abort !== undefined) yield* Effect.forkScoped(idleWatch(engine, idleMillis, abort))
  })

/** One connection, from its handshake to its end: the session's end, a healthy drop, or a failure. */
const connectOnce = (engine: Engine): Effect.Effect<Round, ElevenLabsError, Socket.WebSocketConstructor> =>
  Effect.suspend(() => {
    const { settings } = engine.options
    const number = engine.connections++
    const fresh = number === 0 || engine.reopen
    engine.reopen = false
    let progressed = false
    const abort = Deferred.makeUnsafe<never, ElevenLabsError>()
    engine.abort = abort
    const run = Connection.run({
      url: engine.options.url,
      apiKey: engine.options.apiKey,
      openTimeout: engine.options.openTimeout,
      operation: settings.operation,
      inactivitySeconds: Math.round(settings.inactivityMillis / 1000),
      onOpen: onOpen(engine),
      onMessage: handle(engine, () => {
        progressed = true
      }),
      cleanClose: cleanClose(engine)
    })
    const connection = Effect.raceFirst(Effect.raceFirst(run, Deferred.await(engine.fatal)), Deferred.await(abort))
      .pipe(
        Effect.as(complete),
        Effect.catch((error) =>
          Effect.gen(function*() {
            const reason = error.reason
            if (isIdle(engine, error)) return { _tag: "Idle" } satisfies Round
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
    if (fresh) return connection
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

/** A multi-context connection with no context, closed by the server for inactivity: not a failure. */
const isIdle = (engine: Engine, error: ElevenLabsError): boolean =>
  engine.multi && !engine.closing && error.reason._tag === "Timeout" && error.reason.phase === "inactivity" &&
  engine.liveContexts().length === 0

/**
 * After an idle close: waits for a context to open (`true`: connect again) or for `close` with none open
 * (`false`: the session's clean end).
 */
const awaitWork = (engine: Engine): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    while (true) {
      if (engine.liveContexts().length > 0) {
        engine.reopen = true
        return true
      }
      if (engine.closing) return false
      const wake = Deferred.makeUnsafe<void>()
      engine.wake = wake
      yield* Deferred.await(wake)
      engine.wake = undefined
    }
  })

/** Wakes an idle multi-context session (a context was opened, or `close` asked). */
export const wakeUp = (engine: Engine): void => {
  if (engine.wake !== undefined) Deferred.doneUnsafe(engine.wake, Exit.void)
}

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
      if (ended._tag === "Idle") {
        previous = undefined
        if (!(yield* awaitWork(engine))) return
      } else previous = ended.error
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
