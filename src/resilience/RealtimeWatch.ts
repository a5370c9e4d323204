/**
 * The timers of one live connection of a real-time session (`RealtimeEngine.ts` forks them when a
 * connection opens; they end with it): the keep-alives, and the read-idle bound. Documented in
 * docs/realtime.md (`## Session`, "Keep-alive" and "Reconnect, and the boundary").
 *
 * @since 0.2.0
 */
import { Clock, Deferred, Duration, Effect } from "effect"
import { ElevenLabsError, Timeout } from "../client/Errors.ts"
import * as Realtime from "../client/Realtime.ts"
import type { Ctx } from "./RealtimeContext.ts"
import type { Engine } from "./RealtimeEngine.ts"
import { keepAliveDelay, keepAliveInterval } from "./RealtimeLedger.ts"
import * as Schedule from "./RealtimeSchedule.ts"

/**
 * The contexts that get keep-alives: every context the server holds for this connection, until its final
 * message: open ones, and on `multi-stream-input` also those that sent their end (or were abandoned) and wait
 * for their final, since a long generation may outlast the inactivity timeout. None once `close_socket` is
 * written (the server then ends every context itself), and none after the end of input on `stream-input`
 * (the server accepts no message after it).
 */
const kept = (engine: Engine): Array<Ctx> =>
  engine.closeSent ? [] : engine.liveContexts().filter((c) => c.initSent && (engine.multi || !c.endSent))

/**
 * Sends a keep-alive for each context silent for half the inactivity timeout, until the connection ends. A
 * keep-alive adds nothing to the server's buffer, but the trigger rule runs on it: in `auto_mode` it would
 * generate a buffer that holds anything (which whole sentences, each cut at its last space, never leave), so
 * it is not written then without a permit.
 */
export const keepAlive = (engine: Engine): Effect.Effect<never> => {
  const interval = keepAliveInterval(engine.options.settings.inactivityMillis)
  const tick = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const live = kept(engine)
    const delay = live.length === 0
      ? interval
      : Math.min(...live.map((c) => keepAliveDelay(c.lastWriteAt, now, interval)))
    if (delay > 0) return yield* Effect.sleep(Duration.millis(delay))
    yield* engine.wireLock.withPermit(Effect.gen(function*() {
      const write = engine.write
      if (write === undefined) return
      const at = yield* Clock.currentTimeMillis
      for (const c of kept(engine)) {
        if (keepAliveDelay(c.lastWriteAt, at, interval) > 0) continue
        const out = Schedule.onText(engine.mode, c.buffer, [])
        if (out.generated > 0 && c.permit === undefined) continue
        if (yield* write(Realtime.keepAlive(c.id))) {
          c.lastWriteAt = at
          if (c.wrote(out)) engine.lastSignAt = at
        }
      }
    }))
  })
  return Effect.forever(tick)
}

/**
 * Whether audio is awaited on the connection: a context sent its end (or was abandoned) and waits for its
 * final, or asked the server to generate text (a flush, or a send that reached the next step of the chunk
 * schedule) that it has not spoken yet.
 */
export const awaiting = (engine: Engine): boolean =>
  engine.liveContexts().some((c) => c.initSent && (c.endSent || !c.ledger.whitespaceTo(surelyTriggered(c))))

/**
 * The end of the text the server was surely asked to generate: handed to a generation under both readings of
 * a flush (`RealtimeSchedule`). The permit is held from the earlier reading (`triggered`), but silence is a
 * failure only after the later one: a server that keeps its step after a flush has nothing to say yet.
 */
const surelyTriggered = (c: Ctx): number =>
  Math.min(c.triggered, c.written - Math.max(c.buffer.advanced.units.length, c.buffer.kept.units.length))

/**
 * The read-idle bound: once audio is awaited and nothing came from the server for `idleMillis` (counted
 * from its last frame, or from the flush or end that asked for the audio), fails the connection through
 * `abort` as `Timeout` (phase `idle`), which reconnects and resends.
 */
export const idleWatch = (
  engine: Engine,
  idleMillis: number,
  abort: Deferred.Deferred<never, ElevenLabsError>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      if (!awaiting(engine)) {
        yield* Effect.sleep(Duration.millis(idleMillis))
        continue
      }
      const due = engine.lastSignAt + idleMillis
      if (now < due) {
        yield* Effect.sleep(Duration.millis(due - now))
        continue
      }
      const after = Duration.millis(idleMillis)
      return yield* Deferred.fail(
        abort,
        new ElevenLabsError({
          reason: new Timeout({
            operation: engine.options.settings.operation,
            message: `no frame from the server for ${Duration.format(after)} while audio was awaited`,
            phase: "idle",
            after
          })
        })
      )
    }
  })
