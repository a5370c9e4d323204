/**
 * What a real-time session writes on its live connection (`RealtimeEngine.ts` runs the connections), and the
 * one rule that ties writing to the concurrency permit: a message that makes the server generate (by the
 * chunk schedule the session uses, `RealtimeSchedule`) is written only while its context holds a permit;
 * every other message is written at once. Documented in docs/realtime.md (`## Session`, "Accounting").
 *
 * **Details**
 *
 * - Writes are serialized (`wireLock`) and written from the contexts' state, never queued: each context
 *   knows how far its text was written on the current connection. A new connection starts every context
 *   again from its first unanswered character, so the resend after a reconnect is the same code path as a
 *   send: exactly the unanswered suffix, nothing lost, nothing spoken twice.
 * - A caller's step (`send`, `flush`, `end`) asks {@link admit}: it takes the permit first when what it would
 *   write makes the server generate, so the caller waits for it and sees its refusal (`QueueFull`,
 *   `QueueTimeout`). Anything else that finds a message it may not write yet (the resend after a reconnect,
 *   `close`, an abandoned context's `close_context`) leaves its context blocked, and {@link unblock} takes the
 *   permit in the background: a refusal ends the session, as a resend that cannot be made must (an abandoned
 *   context's only waits and asks again).
 * - `close_socket` is written only once every context has everything written and its end sent: the server
 *   stops reading at `close_socket`, so text still waiting for a permit would be lost.
 *
 * @since 0.2.0
 */
import { Clock, Deferred, Duration, Effect, Exit, type Fiber, Queue } from "effect"
import type { ElevenLabsError } from "../client/Errors.ts"
import * as Realtime from "../client/Realtime.ts"
import * as Metrics from "../telemetry/Metrics.ts"
import type { Write } from "./RealtimeConnection.ts"
import { type Ctx, ensurePermit, finish, maybeRelease, releaseUnwritten } from "./RealtimeContext.ts"
import type { Engine } from "./RealtimeEngine.ts"
import { isWhitespace } from "./RealtimeLedger.ts"
import * as Schedule from "./RealtimeSchedule.ts"

/** The units `ctx` has not written on this connection (its text from its first unwritten, unanswered unit). */
const unwritten = (ctx: Ctx): Array<string> => ctx.ledger.unansweredUnits(Math.max(ctx.written, ctx.ledger.answered))

/**
 * Whether the server may generate the buffer at `close_context`. It drops it (the simulator; "no more audio",
 * the multi-context guide), but no source says so of the buffer in as many words: so a buffer that holds
 * anything (under either reading of a flush, `RealtimeSchedule`) is taken as generated there, and
 * `close_context` waits for a permit.
 */
const closeGenerates = (ctx: Ctx): boolean => !Schedule.isEmpty(ctx.buffer)

/** Stops `ctx`'s writing for want of a permit. */
const block = (ctx: Ctx): void => {
  ctx.blocked = true
}

/** Writes what `ctx` has not written on this connection: init, text, flush, end, each as the permit allows. */
const pumpCtx = Effect.fnUntraced(function*(engine: Engine, ctx: Ctx, write: Write, now: number) {
  ctx.blocked = false
  const id = ctx.id
  const { mode, settings } = engine
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
    if (ctx.endSent || id === undefined) return
    if (closeGenerates(ctx) && ctx.permit === undefined) return block(ctx)
    if (yield* write(Realtime.closeContext(id))) {
      ctx.endSent = true
      ctx.wrote(Schedule.onFlush(mode, ctx.buffer))
    }
    return
  }
  const sent = ctx.ledger.sent
  const units = unwritten(ctx)
  if (units.length > 0) {
    if (ctx.permit === undefined && Schedule.isEmpty(ctx.buffer) && units.every(isWhitespace)) {
      ctx.written = sent // nothing to speak, nothing buffered: no permit is taken for spaces
    } else {
      const out = Schedule.onText(mode, ctx.buffer, units)
      if (out.generated > 0 && ctx.permit === undefined) return block(ctx)
      const from = sent - units.length
      if (!(yield* write(Realtime.text(units.join(""), id)))) return
      const again = Math.max(0, Math.min(sent, ctx.everWritten) - from)
      ctx.resent += again
      engine.resent += again
      if (again > 0) yield* Metrics.recordCharactersResent(engine.account.pool, again)
      ctx.written = sent
      ctx.everWritten = Math.max(ctx.everWritten, sent)
      ctx.lastWriteAt = now
      if (ctx.wrote(out)) engine.lastSignAt = now
    }
  }
  if (ctx.flushAt > ctx.flushedAt && ctx.written >= ctx.flushAt) {
    const out = Schedule.onFlush(mode, ctx.buffer)
    if (out.generated > 0 && ctx.permit === undefined) return block(ctx)
    if (!(yield* write(Realtime.flush(id)))) return
    ctx.flushedAt = ctx.flushAt
    ctx.lastWriteAt = now
    engine.lastSignAt = now
    ctx.wrote(out)
  }
  if (ctx.ended && !ctx.endSent && ctx.written >= sent) {
    const out = Schedule.onFlush(mode, ctx.buffer)
    if (out.generated > 0 && ctx.permit === undefined) return block(ctx)
    const flushed = yield* write(id === undefined ? Realtime.endOfInput : Realtime.flush(id))
    if (flushed) ctx.wrote(out)
    if (flushed && (id === undefined || (yield* write(Realtime.closeContext(id))))) {
      ctx.endSent = true
      ctx.lastWriteAt = now
      engine.lastSignAt = now
    }
  }
})

/** {@link pump}'s writing, under the `wireLock` its caller holds. */
const pumpLocked = (engine: Engine): Effect.Effect<void> =>
  Effect.gen(function*() {
    const write = engine.write
    if (write === undefined) return
    const now = yield* Clock.currentTimeMillis
    for (const ctx of engine.contexts.values()) {
      if (!ctx.finished) yield* pumpCtx(engine, ctx, write, now)
    }
    // Every context written to its end first (an ended context has all its text written: see pumpCtx).
    if (
      engine.closing && !engine.closeSent && engine.liveContexts().every((c) => c.endSent) &&
      (yield* write(Realtime.closeSocket))
    ) engine.closeSent = true
  })

/**
 * Writes everything not yet written that may be written, on the live connection (nothing while there is
 * none); a context left blocked gets its permit in the background ({@link unblock}).
 */
export const pump = (engine: Engine): Effect.Effect<void> =>
  Effect.andThen(engine.wireLock.withPermit(pumpLocked(engine)), unblock(engine))

/** How long an abandoned context whose permit was refused waits before it asks again. */
const abandonedRetry = Duration.seconds(1)

/**
 * Takes the permit of a blocked context, then writes. A refusal ends the session (the text cannot be written
 * without it), but for an abandoned context, which asks again after a pause. Counted as a step under way, so
 * the permit is not given back between its acquisition and the write.
 */
const acquireFor = (engine: Engine, ctx: Ctx): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { account } = engine
    while (ctx.blocked && !ctx.finished) {
      const refused = yield* Effect.acquireUseRelease(
        Effect.sync(() => ctx.sending++),
        () => Effect.andThen(ensurePermit(account, ctx), Effect.as(pump(engine), undefined)),
        () =>
          Effect.suspend(() => {
            ctx.sending--
            return maybeRelease(account, ctx)
          })
      ).pipe(Effect.catch((error: ElevenLabsError) => Effect.succeed(error)))
      // Written (a context still blocked after that is left to the next write's `unblock`: no busy loop).
      if (refused === undefined) return
      if (!ctx.abandoned) return yield* Deferred.fail(engine.fatal, refused)
      yield* Effect.sleep(abandonedRetry)
    }
  })

/** Whether `fiber` has not ended (an unstarted fiber interrupted with its scope has an exit). */
const running = (fiber: Fiber.Fiber<void> | undefined): boolean =>
  fiber !== undefined && fiber.pollUnsafe() === undefined

/**
 * Takes, in the background (in the live connection's scope: they end with it), the permits of the contexts
 * the last write left blocked: one fiber per context at a time.
 */
export const unblock = (engine: Engine): Effect.Effect<void> =>
  Effect.suspend(() => {
    const scope = engine.connectionScope
    if (scope === undefined) return Effect.void
    const waiting = [...engine.contexts.values()].filter((c) => c.blocked && !c.finished && !running(c.acquirer))
    return Effect.forEach(waiting, (ctx) =>
      Effect.map(Effect.forkIn(acquireFor(engine, ctx), scope), (fiber) => {
        ctx.acquirer = fiber
      }), { discard: true })
  })

/** A step a caller is about to take, beyond what its context has left to write. */
export interface Step {
  readonly text?: ReadonlyArray<string> | undefined
  readonly flush?: boolean | undefined
  readonly end?: boolean | undefined
}

/**
 * Whether `ctx`, holding no permit, would need one to write what it has left to write and `step`, in the
 * order {@link pumpCtx} writes them (text, flush, end) on the live connection. With no live connection,
 * nothing is written now: no (the next connection's write decides).
 */
export const wantsPermit = (engine: Engine, ctx: Ctx, step: Step): boolean => {
  if (!engine.connected || ctx.finished || ctx.abandoned) return false
  const messages: Array<Schedule.Message> = []
  const units = [...unwritten(ctx), ...(step.text ?? [])]
  if (units.length > 0 && !(Schedule.isEmpty(ctx.buffer) && units.every(isWhitespace))) {
    messages.push({ _tag: "Text", units })
  }
  if (step.flush === true || ctx.flushAt > ctx.flushedAt) messages.push({ _tag: "Flush" })
  if (step.end === true || (ctx.ended && !ctx.endSent)) messages.push({ _tag: "Flush" })
  return Schedule.generates(engine.mode, ctx.buffer, messages)
}

/**
 * A caller's step on `ctx` (under its `sendLock`): takes the permit first when writing the step makes the
 * server generate (waiting for it; its refusal is the step's), then, under the `wireLock`, applies the step
 * (`apply`) and writes, so nothing changes between the decision and the write. `check` fails the step once
 * the context or the session is over.
 */
export const admit = (
  engine: Engine,
  ctx: Ctx,
  step: Step,
  check: Effect.Effect<void, ElevenLabsError>,
  apply: () => void
): Effect.Effect<void, ElevenLabsError> =>
  Effect.acquireUseRelease(
    Effect.sync(() => ctx.sending++),
    () =>
      Effect.gen(function*() {
        while (true) {
          yield* check
          if (ctx.permit === undefined && wantsPermit(engine, ctx, step)) yield* ensurePermit(engine.account, ctx)
          const written = yield* engine.wireLock.withPermit(Effect.suspend(() => {
            if (ctx.permit === undefined && wantsPermit(engine, ctx, step)) return Effect.succeed(false)
            apply()
            return Effect.as(pumpLocked(engine), true)
          }))
          if (written) return
        }
      }),
    () =>
      Effect.suspend(() => {
        ctx.sending--
        return maybeRelease(engine.account, ctx)
      })
  ).pipe(Effect.andThen(unblock(engine)))

/**
 * A context whose scope closed before its final message: `close_context` (no flush), its audio ended. The
 * server still finishes the generations it started, so the context keeps its permit (when text it asked to
 * be generated is unanswered, or its buffer holds text: see `closeGenerates`) and the reservations of the
 * text it wrote until its final message or the connection's end; the reservations of text never written go
 * back now. It counts as open until then (the server frees the slot at its final). With nothing of it at the
 * server (no connection, or its init not yet written), it is over at once.
 */
export const abandon = (engine: Engine, ctx: Ctx): Effect.Effect<void> =>
  Effect.andThen(
    engine.wireLock.withPermit(Effect.suspend(() => {
      if (ctx.finished || ctx.abandoned) return Effect.void
      ctx.abandoned = true
      Queue.endUnsafe(ctx.audio)
      Deferred.doneUnsafe(ctx.final, Exit.void)
      const { account } = engine
      if (!engine.connected || !ctx.initSent) {
        engine.retire(ctx)
        return finish(account, ctx, Exit.void)
      }
      const generating = !ctx.ledger.whitespaceTo(ctx.triggered) || closeGenerates(ctx)
      return Effect.andThen(releaseUnwritten(ctx), generating ? Effect.void : maybeRelease(account, ctx, true))
    })),
    pump(engine)
  )
