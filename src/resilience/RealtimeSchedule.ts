/**
 * The server's chunk schedule, as the client mirrors it: what one context's buffer holds at the server on one
 * connection, and which message makes the server generate. The session takes a concurrency permit before it
 * writes such a message, and writes every other message without one (`RealtimeWrite.ts`). Pure: no effects.
 * Documented in docs/realtime.md (`## Session`, "Accounting").
 *
 * **Details**
 *
 * - The rule is the simulator's (`simulator/RealtimeSession.ts`: `trigger`, `cut`, `flush`), from the
 *   AsyncAPI document's `chunk_length_schedule`: text is buffered; once the buffer holds `schedule[step]`
 *   characters (120, then 160, 250, then 290 by default) a generation starts, cut after the buffer's last
 *   whitespace (a word still arriving stays buffered; all of it when it has none), and the step advances (the
 *   last one repeats); with `try_trigger_generation`, one starts from 50 characters; with `auto_mode`, at every
 *   text message. A flush (and the end of input, and `close_socket`) generates the whole buffer, when it
 *   holds anything.
 * - Whether a flush advances the step is the simulator's choice; the sources do not say. So the mirror runs
 *   both readings side by side, `advanced` (the simulator's) and `kept` (the step stays: 120 again after a
 *   flush at 120), and a message generates when it does under either: the permit is taken at the lower of
 *   the two next steps and held until the further of the two generations is answered. Under the reading the
 *   server does not follow, the client holds a permit early (the safe error); the server never generates
 *   without one.
 * - A text of exactly one space (the init, the single-context keep-alive) and an empty text (the multi-context
 *   keep-alive) add nothing to the buffer, but the trigger rule still runs on them (in `auto_mode` they would
 *   cut a buffer that is not empty).
 * - The buffer is kept as the ledger's units (code points, or the two halves of a pair sent in two pieces),
 *   so the end of a generation is a ledger position; the thresholds count the code points of the joined text,
 *   as the server does.
 *
 * @since 0.2.0
 */
import * as Realtime from "../client/Realtime.ts"
import { characterCount } from "../client/Validation.ts"

/** How the server triggers generations for a session: its chunk schedule and modes. */
export interface Mode {
  /** `chunk_length_schedule` (the server's default when the session sets none). */
  readonly schedule: ReadonlyArray<number>
  /** `auto_mode=true`: every text message generates. */
  readonly autoMode: boolean
  /** `try_trigger_generation` on every text message (the library sends none: `false`). */
  readonly tryTrigger: boolean
}

/** The mode of a session: its `chunkSchedule` or the server's default, `autoMode`, no `try_trigger_generation`. */
export const modeOf = (options: {
  readonly chunkSchedule?: ReadonlyArray<number> | undefined
  readonly autoMode?: boolean | undefined
}): Mode => ({
  schedule: options.chunkSchedule ?? Realtime.limits.chunkSchedule,
  autoMode: options.autoMode === true,
  tryTrigger: false
})

/** One reading of a context's buffer at the server: the units not yet handed to a generation, and the step. */
export interface Reading {
  readonly units: ReadonlyArray<string>
  readonly step: number
}

/**
 * One context's buffer at the server, under both readings of a flush: `advanced`, the simulator's (a flush
 * advances the step), and `kept` (a flush keeps it). Both are suffixes of the same text written since the
 * last flush, so `units`, the shorter, is what neither reading has handed to a generation: a generation
 * either reading started ends where it begins.
 */
export interface Buffer {
  readonly units: ReadonlyArray<string>
  readonly advanced: Reading
  readonly kept: Reading
}

const bufferOf = (advanced: Reading, kept: Reading): Buffer => ({
  units: advanced.units.length <= kept.units.length ? advanced.units : kept.units,
  advanced,
  kept
})

const start: Reading = { units: [], step: 0 }

/** A new context's buffer (a new connection, a context opened again). */
export const empty: Buffer = bufferOf(start, start)

/** Whether the buffer holds nothing under either reading. */
export const isEmpty = (buffer: Buffer): boolean => buffer.advanced.units.length === 0 && buffer.kept.units.length === 0

/** What one message does: the buffer after it, and how many units it handed to a generation. */
export interface Outcome {
  readonly buffer: Buffer
  /**
   * The more of the two readings' counts, each from its own buffer's start: 0 only when neither reading
   * starts a generation, so a message that may generate under either needs a permit.
   */
  readonly generated: number
  /** The count under the simulator's reading alone (`advanced`). */
  readonly advanced: number
}

const isSpace = (unit: string): boolean => unit.length === 1 && /\s/.test(unit)

/** Units up to and including the last whitespace; all of them when there is none (the simulator's `wordCut`). */
export const wordCut = (units: ReadonlyArray<string>): number => {
  for (let i = units.length - 1; i >= 0; i--) {
    if (isSpace(units[i]!)) return i + 1
  }
  return units.length
}

const count = (units: ReadonlyArray<string>): number => characterCount(units.join(""))

const advance = (mode: Mode, step: number): number => Math.min(step + 1, mode.schedule.length - 1)

/** The trigger rule on one reading, after `text` (`undefined` for a text that adds nothing). */
const textOn = (mode: Mode, reading: Reading, text: ReadonlyArray<string> | undefined) => {
  let units = text === undefined ? reading.units : [...reading.units, ...text]
  let step = reading.step
  let generated = 0
  const cut = () => {
    const at = wordCut(units)
    generated += at
    units = units.slice(at)
    step = advance(mode, step)
  }
  if (units.length > 0) {
    if (mode.autoMode) cut()
    else {
      if (mode.tryTrigger && count(units) >= Realtime.limits.chunkMin) cut()
      while (units.length > 0 && count(units) >= mode.schedule[step]!) cut()
    }
  }
  return { reading: { units, step }, generated }
}

/** A text message of `text` (its units): appended (unless `""` or `" "`), then the trigger rule. */
export const onText = (mode: Mode, buffer: Buffer, text: ReadonlyArray<string>): Outcome => {
  const keepAlive = text.length === 0 || (text.length === 1 && text[0] === " ")
  const added = keepAlive ? undefined : text
  const advanced = textOn(mode, buffer.advanced, added)
  const kept = textOn(mode, buffer.kept, added)
  return {
    buffer: bufferOf(advanced.reading, kept.reading),
    generated: Math.max(advanced.generated, kept.generated),
    advanced: advanced.generated
  }
}

/**
 * A flush (or the end of input): the whole buffer, when it holds anything; the step advances under the
 * simulator's reading, and stays under the other.
 */
export const onFlush = (mode: Mode, buffer: Buffer): Outcome => {
  const { advanced, kept } = buffer
  return {
    buffer: bufferOf(
      advanced.units.length === 0 ? advanced : { units: [], step: advance(mode, advanced.step) },
      kept.units.length === 0 ? kept : { units: [], step: kept.step }
    ),
    generated: Math.max(advanced.units.length, kept.units.length),
    advanced: advanced.units.length
  }
}

/** A message to write, as far as the schedule is concerned. */
export type Message =
  | { readonly _tag: "Text"; readonly units: ReadonlyArray<string> }
  | { readonly _tag: "Flush" }

/** Whether writing `messages` in order, from `buffer`, makes the server generate. */
export const generates = (mode: Mode, buffer: Buffer, messages: ReadonlyArray<Message>): boolean => {
  let now = buffer
  for (const message of messages) {
    const out = message._tag === "Text" ? onText(mode, now, message.units) : onFlush(mode, now)
    if (out.generated > 0) return true
    now = out.buffer
  }
  return false
}
