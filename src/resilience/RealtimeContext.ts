/**
 * One context of a real-time session (the only one on `stream-input`, one of up to five on
 * `multi-stream-input`): what it sent and had answered (`RealtimeLedger`), its buffer at the server
 * (`RealtimeSchedule`), its audio queue, and its share of the policies: the concurrency permit it holds while
 * the server may be generating its text (from the message that starts a generation until everything written
 * up to there is answered), and the quota reservations of what it sent, committed as the server answers.
 * Used by `RealtimeEngine.ts` and `RealtimeWrite.ts`.
 *
 * @since 0.2.0
 */
import { type Cause, Deferred, Duration, Effect, Exit, type Fiber, Queue, Scope, Semaphore } from "effect"
import type { ElevenLabsError } from "../client/Errors.ts"
import type * as Realtime from "../client/Realtime.ts"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import type { Pool } from "./Plans.ts"
import type * as QuotaGuard from "./QuotaGuard.ts"
import { costDelta, dueCommit, finalCommit, Ledger, type Segment } from "./RealtimeLedger.ts"
import type { AudioChunk } from "./RealtimeModel.ts"
import * as Schedule from "./RealtimeSchedule.ts"
import { fromLimiter, fromQuota } from "./Refusals.ts"

/** A quota reservation of a context, held in a scope of its own. */
interface Held extends Segment {
  readonly reservation: QuotaGuard.Reservation
  readonly scope: Scope.Closeable
}

/** What the contexts of one session share: the policies and where the session's resources live. */
export interface Account {
  readonly operation: string
  readonly keyId: string
  readonly pool: Pool
  readonly lane: ConcurrencyLimiter.Lane
  readonly modelId: string
  readonly limiter: ConcurrencyLimiter.ConcurrencyLimiter
  readonly quota: QuotaGuard.QuotaGuard | undefined
  /** The session's scope: every permit and reservation is a child scope of it, closed with it at the latest. */
  readonly scope: Scope.Scope
  /** Whether a connection is live (a permit is kept for unanswered text only while one is). */
  readonly connected: () => boolean
}

/** One context's state. Mutated only in `Effect.sync` steps (so each change is atomic for the other fibers). */
export class Ctx {
  readonly ledger = new Ledger()
  /** Serializes the caller's sends, flushes and end on this context (their order is the text's order). */
  readonly sendLock = Semaphore.makeUnsafe(1)
  /** Serializes permit acquisitions (a send and a reconnect's resend may both want one). */
  readonly permitLock = Semaphore.makeUnsafe(1)
  /** Completed by the server's final message (or the session's ending). */
  readonly final = Deferred.makeUnsafe<void, ElevenLabsError>()
  /** The held permit's scope. */
  permit: Scope.Closeable | undefined = undefined
  /**
   * Steps between the decision that they need the permit and their write (a send, a flush, an end, or the
   * acquisition of a blocked context): the permit is kept for them.
   */
  sending = 0
  held: Array<Held> = []
  /** Absolute position up to which a flush was asked. */
  flushAt = 0
  /** The input was ended (`end`), or the context closed by its scope (`abandoned`). */
  ended = false
  abandoned = false
  /** The final message came, or the session ended: nothing more is written or counted. */
  finished = false
  /** The furthest position ever written, over every connection (what was written before is resent). */
  everWritten = 0
  resent = 0
  /** Audio frames received for it (a quiet tail is one no frame followed, see `watchTail`). */
  frames = 0
  /** The `triggered` at which the server was seen done with a whitespace tail it did not align. */
  tailDoneAt = -1
  /** The fiber taking a permit for it in the background, if any (`RealtimeWrite.unblock`). */
  acquirer: Fiber.Fiber<void> | undefined = undefined
  // ---- per connection (reset by `reset`) ----
  initSent = false
  written = 0
  flushedAt = 0
  endSent = false
  lastWriteAt = 0
  /** Its buffer at the server: written, not yet handed to a generation (`RealtimeSchedule`). */
  buffer: Schedule.Buffer = Schedule.empty
  /** The absolute position up to which the server was asked to generate: the permit is held until it is answered. */
  triggered = 0
  /** The last write stopped at a message that starts a generation, for want of a permit. */
  blocked = false

  readonly id: string | undefined
  readonly voiceSettings: Realtime.VoiceSettings | undefined
  readonly audio: Queue.Queue<AudioChunk, ElevenLabsError | Cause.Done>

  constructor(
    id: string | undefined,
    voiceSettings: Realtime.VoiceSettings | undefined,
    audio: Queue.Queue<AudioChunk, ElevenLabsError | Cause.Done>
  ) {
    this.id = id
    this.voiceSettings = voiceSettings
    this.audio = audio
  }

  /**
   * A new connection: nothing written on it yet; the unanswered text is written again from `answered`, into a
   * new buffer at the server (the schedule starts again from its first step).
   */
  reset(now: number): void {
    this.written = this.ledger.answered
    this.lastWriteAt = now
    this.reopen()
  }

  /** The server's context is new (a new connection, or opened again after its final): empty, at step 0. */
  reopen(): void {
    this.initSent = false
    this.flushedAt = this.ledger.answered
    this.endSent = false
    this.buffer = Schedule.empty
    this.triggered = this.written
    this.blocked = false
  }

  /**
   * A message was written (after `written` moved for a text): the buffer as the schedule says, and where the
   * generations it started end. `written` less what stays buffered is that end, or past it (never before): a
   * permit held to it is held at least as long as the server generates. `true` when it started one.
   */
  wrote(out: Schedule.Outcome): boolean {
    this.buffer = out.buffer
    if (out.generated === 0) return false
    this.triggered = Math.max(this.triggered, this.written - out.buffer.units.length)
    return true
  }
}

/** A context with its audio queue. */
export const makeCtx = (id: string | undefined, voiceSettings: Realtime.VoiceSettings | undefined) =>
  Effect.map(Queue.unbounded<AudioChunk, ElevenLabsError | Cause.Done>(), (audio) => new Ctx(id, voiceSettings, audio))

// ============================================================================
// The permit
// ============================================================================

/** Whether a permit is of no use to `ctx`: it is finished, or abandoned with its `close_context` written. */
const pastUse = (ctx: Ctx): boolean => ctx.finished || (ctx.abandoned && ctx.endSent)

/**
 * Holds a permit of the pool for `ctx` (waits in the limiter's queue); nothing when it holds one (or it has no
 * use for one any more).
 */
export const ensurePermit = (account: Account, ctx: Ctx): Effect.Effect<void, ElevenLabsError> =>
  ctx.permitLock.withPermit(Effect.suspend(() => {
    if (ctx.permit !== undefined || pastUse(ctx)) return Effect.void
    return Effect.flatMap(
      Scope.fork(account.scope),
      (scope) =>
        account.limiter.acquire({ key: account.keyId, pool: account.pool, lane: account.lane }).pipe(
          Scope.provide(scope),
          Effect.onExit((exit) =>
            Exit.isSuccess(exit) && !pastUse(ctx) ?
              Effect.sync(() => {
                ctx.permit = scope
              }) :
              Scope.close(scope, Exit.void)
          ),
          Effect.catchTag("ConcurrencyLimiterError", fromLimiter(account.operation)),
          Effect.asVoid
        )
    )
  }))

/**
 * Whether the server is done generating for `ctx`: everything it was asked to generate (up to `triggered`) is
 * answered, or only whitespace of it is not and the server has shown it is done (a quiet tail, `watchTail`;
 * the final message finishes the context). Text buffered at the server below the next step of the schedule
 * is not being generated. An abandoned context is done only at its final message or the connection's end.
 */
const done = (ctx: Ctx): boolean => {
  if (ctx.abandoned) return false
  const to = ctx.triggered
  return ctx.ledger.answered >= to || (ctx.ledger.whitespaceTo(to) && ctx.tailDoneAt === to)
}

/**
 * Returns the permit when the server is done generating for the context (`done`) and no step is under way, or
 * when no connection is live (a reconnect's pause holds no permit); `force` (the context is finished)
 * returns it in any case.
 */
export const maybeRelease = (account: Account, ctx: Ctx, force = false): Effect.Effect<void> =>
  Effect.suspend(() => {
    const scope = ctx.permit
    if (scope === undefined) return Effect.void
    if (!force && ctx.sending > 0) return Effect.void
    if (!force && account.connected() && !done(ctx)) return Effect.void
    ctx.permit = undefined
    return Scope.close(scope, Exit.void)
  })

/**
 * How long a whitespace tail must go without a frame before the server counts as done with it: a
 * generation's frames come back to back, so a second of silence after the last one means it ended (the
 * server may never align a trailing space; the simulator always does, and never needs this).
 */
export const tailQuiet: Duration.Duration = Duration.seconds(1)

/**
 * After a frame that left only whitespace unanswered of what the server was asked to generate: if no frame
 * follows within {@link tailQuiet} and no generation is asked meanwhile, the server is done with that tail
 * and the permit goes back. Runs in the session's scope.
 */
export const watchTail = (account: Account, ctx: Ctx): Effect.Effect<void> =>
  Effect.suspend(() => {
    const to = ctx.triggered
    if (ctx.permit === undefined || ctx.ledger.answered >= to || !ctx.ledger.whitespaceTo(to)) return Effect.void
    const frames = ctx.frames
    return Effect.asVoid(Effect.forkIn(
      Effect.andThen(
        Effect.sleep(tailQuiet),
        Effect.suspend(() => {
          if (ctx.frames !== frames || ctx.triggered !== to || !ctx.ledger.whitespaceTo(to)) return Effect.void
          ctx.tailDoneAt = to
          return maybeRelease(account, ctx)
        })
      ),
      account.scope
    ))
  })

// ============================================================================
// Credits
// ============================================================================

/** The credits of `characters` characters on the session's model (the quota guard's multipliers). */
const costOf = (account: Account) => (characters: number): number =>
  account.quota === undefined ? 0 : account.quota.costOf(characters, account.modelId)

/**
 * Reserves the credits of `characters` more characters of `ctx` (in a scope of their own); the reservation
 * is handed to `use`, and given back if `use` does not keep it (fails or is interrupted before it is kept).
 */
export const reserve = <A, E>(
  account: Account,
  ctx: Ctx,
  characters: number,
  use: (keep: () => void) => Effect.Effect<A, E>
): Effect.Effect<A, E | ElevenLabsError> => {
  const quota = account.quota
  const start = ctx.ledger.sent
  const cost = costDelta(costOf(account), start, start + characters)
  if (quota === undefined || cost === 0) return use(() => {})
  return Effect.flatMap(Scope.fork(account.scope), (scope) => {
    let kept = false
    return quota.reserve(cost, { keyId: account.keyId }).pipe(
      Scope.provide(scope),
      Effect.catchTag("QuotaGuardError", fromQuota(account.operation)),
      Effect.flatMap((reservation) =>
        use(() => {
          kept = true
          ctx.held.push({ start, end: start + characters, cost, reservation, scope })
        })
      ),
      Effect.onExit(() => (kept ? Effect.void : Scope.close(scope, Exit.void)))
    )
  })
}

/** Commits the reservations whose characters are all answered. */
export const commitAnswered = (ctx: Ctx): Effect.Effect<void> =>
  Effect.suspend(() => {
    const answered = ctx.ledger.answered
    const due = ctx.held.filter((h) => dueCommit(h, answered) !== undefined)
    if (due.length === 0) return Effect.void
    ctx.held = ctx.held.filter((h) => dueCommit(h, answered) === undefined)
    return Effect.forEach(due, (h) => Effect.andThen(h.reservation.commit(h.cost), Scope.close(h.scope, Exit.void)), {
      discard: true
    })
  })

/** Gives back the reservations of text never written on the live connection (an abandoned context's). */
export const releaseUnwritten = (ctx: Ctx): Effect.Effect<void> =>
  Effect.suspend(() => {
    const unwritten = ctx.held.filter((h) => h.start >= ctx.written)
    if (unwritten.length === 0) return Effect.void
    ctx.held = ctx.held.filter((h) => h.start < ctx.written)
    return Effect.forEach(unwritten, (h) => Scope.close(h.scope, Exit.void), { discard: true })
  })

/** The context is over: commits what was answered of each reservation, gives the rest back. */
export const settleAll = (account: Account, ctx: Ctx): Effect.Effect<void> =>
  Effect.suspend(() => {
    const answered = ctx.ledger.answered
    const held = ctx.held
    ctx.held = []
    return Effect.forEach(held, (h) => {
      const commit = finalCommit(h, answered, costOf(account))
      const close = Scope.close(h.scope, Exit.void)
      return commit === undefined ? close : Effect.andThen(h.reservation.commit(commit), close)
    }, { discard: true })
  })

/**
 * Ends a context with the session's outcome: no more text counts, its reservations are settled, its permit
 * returned, its audio ended (or failed) and its final completed.
 */
export const finish = (account: Account, ctx: Ctx, exit: Exit.Exit<void, ElevenLabsError>): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (ctx.finished) return Effect.void
    ctx.finished = true
    return Effect.andThen(
      Effect.andThen(settleAll(account, ctx), maybeRelease(account, ctx, true)),
      Effect.sync(() => {
        if (Exit.isSuccess(exit)) Queue.endUnsafe(ctx.audio)
        else Queue.failCauseUnsafe(ctx.audio, exit.cause)
        Deferred.doneUnsafe(ctx.final, exit)
      })
    )
  })
