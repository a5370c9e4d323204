/**
 * The pure bookkeeping of a real-time TTS session (`RealtimeSession.ts`): per context, the characters sent
 * and the characters the server has answered (spoken, as its alignment says), from which follow the text to
 * resend after a reconnect, whether a concurrency permit is needed, and what the quota reservations commit.
 * No effects and no clock: time is an argument. Documented in docs/realtime.md (`## Session`).
 *
 * **Details**
 *
 * - Characters are Unicode code points, the library's one count (`Validation.characterCount`,
 *   docs/conventions.md). Positions are absolute: the n-th code point the context ever sent.
 * - The boundary: the server's alignment `chars` are the characters of the text it spoke, in order, so the
 *   answered count advances by matching each aligned code point against the text sent. Whitespace is
 *   tolerated on both sides (a space the server aligned that the text did not have, from the init message or
 *   a keep-alive; a space of the text the server did not align); a character that matches nothing stands for
 *   the next character of the text, so the count never falls behind the code-point count.
 * - Answered text is dropped from memory: a session of hours keeps only its unanswered suffix.
 *
 * @since 0.2.0
 */

/** Whether a code point is whitespace (the server may add or drop it: see the module doc). */
export const isWhitespace = (codePoint: string): boolean => /^\s$/u.test(codePoint)

/**
 * How many sent code points at `i` the aligned code point `cp` answers: 1, or 2 for the two halves of a
 * surrogate pair sent in two pieces (each piece counted as a code point of its own) that the server joined;
 * 0 when it does not match.
 */
const matchAt = (pending: ReadonlyArray<string>, i: number, cp: string): number => {
  if (i >= pending.length) return 0
  if (pending[i] === cp) return 1
  return cp.length === 2 && i + 1 < pending.length && pending[i]! + pending[i + 1]! === cp ? 2 : 0
}

/** What one context has sent and what the server has answered. */
export class Ledger {
  /** Code points sent and not yet answered (the suffix of everything sent, from `answered`). */
  private pending: Array<string> = []
  /** Absolute position of the first unanswered code point: the characters answered so far. */
  private answeredCount = 0
  /** Aligned code points that matched nothing sent (see the module doc). */
  private unmatchedCount = 0

  /** Code points sent so far (answered or not). */
  get sent(): number {
    return this.answeredCount + this.pending.length
  }

  /** Code points answered so far. */
  get answered(): number {
    return this.answeredCount
  }

  /** Aligned code points that matched no character sent. */
  get unmatched(): number {
    return this.unmatchedCount
  }

  /** Whether everything sent is answered. */
  get idle(): boolean {
    return this.pending.length === 0
  }

  /**
   * Whether everything sent is answered, a whitespace tail aside (the server need not align it). A context
   * in this state may still be generating (its last frame may carry that whitespace): see
   * `RealtimeContext.maybeRelease` for when its permit goes back.
   */
  get settled(): boolean {
    return this.pending.every(isWhitespace)
  }

  /** Whether every unanswered code point before the absolute position `to` is whitespace. */
  whitespaceTo(to: number): boolean {
    const n = Math.min(this.pending.length, to - this.answeredCount)
    for (let i = 0; i < n; i++) {
      if (!isWhitespace(this.pending[i]!)) return false
    }
    return true
  }

  /** Appends sent text; returns the number of code points it added. */
  append(text: string): number {
    let n = 0
    for (const cp of text) {
      this.pending.push(cp)
      n++
    }
    return n
  }

  /** The unanswered text from absolute position `from` (default: the first unanswered character). */
  unanswered(from: number = this.answeredCount): string {
    return this.unansweredUnits(from).join("")
  }

  /** The unanswered units (code points, or halves of a pair sent in two pieces) from absolute position `from`. */
  unansweredUnits(from: number = this.answeredCount): Array<string> {
    return this.pending.slice(Math.max(0, from - this.answeredCount))
  }

  /**
   * Counts the aligned characters of one audio chunk (each item may hold several code points); returns how
   * many sent code points they answered.
   */
  answer(chars: ReadonlyArray<string>): number {
    const before = this.answeredCount
    let i = 0
    const pending = this.pending
    for (const item of chars) {
      for (const cp of item) {
        const here = matchAt(pending, i, cp)
        if (here > 0) {
          i += here
          continue
        }
        if (isWhitespace(cp)) continue
        let j = i
        while (j < pending.length && isWhitespace(pending[j]!)) j++
        const there = matchAt(pending, j, cp)
        if (there > 0) {
          i = j + there
          continue
        }
        // It stands for the next character of the text (the count never falls behind the code points).
        this.unmatchedCount++
        if (j < pending.length) i = j + 1
      }
    }
    this.pending = i === 0 ? pending : pending.slice(i)
    this.answeredCount += i
    return this.answeredCount - before
  }

  /**
   * Marks what was sent before the absolute position `to` as answered (the server's final message for the
   * context answers what it was given: everything written on the connection, never more); returns the count.
   */
  answerTo(to: number): number {
    const n = Math.max(0, Math.min(this.pending.length, to - this.answeredCount))
    this.answeredCount += n
    this.pending = n === 0 ? this.pending : this.pending.slice(n)
    return n
  }
}

// ============================================================================
// Credits
// ============================================================================

/** One quota reservation of a context: the credits of the code points `[start, end)` it sent. */
export interface Segment {
  readonly start: number
  readonly end: number
  readonly cost: number
}

/**
 * The credits to reserve for sending `[before, after)`: the cumulative cost of `after` characters less that
 * of `before`, so that the reservations of a session add up to `ceil(characters × multiplier)` of all it
 * sent (one rounding, as one HTTP call of the same text), never below zero.
 */
export const costDelta = (costOf: (characters: number) => number, before: number, after: number): number =>
  Math.max(0, costOf(after) - costOf(before))

/**
 * What a segment commits once `answered` characters are answered: `undefined` while it is not fully
 * answered; its whole cost once it is.
 */
export const dueCommit = (segment: Segment, answered: number): number | undefined =>
  answered >= segment.end ? segment.cost : undefined

/**
 * What a segment commits when the session (or its context) ends with `answered` characters answered: the
 * answered part's share of the cumulative cost (within the segment's cost), or `undefined` (nothing was
 * answered: release it all).
 */
export const finalCommit = (
  segment: Segment,
  answered: number,
  costOf: (characters: number) => number
): number | undefined => {
  if (answered <= segment.start) return undefined
  if (answered >= segment.end) return segment.cost
  return Math.min(segment.cost, costDelta(costOf, segment.start, answered))
}

// ============================================================================
// Keep-alive
// ============================================================================

/** The silence after which a keep-alive is sent: half the inactivity timeout (10 s of the default 20 s). */
export const keepAliveInterval = (inactivityMillis: number): number => Math.max(1, Math.floor(inactivityMillis / 2))

/** Milliseconds from `now` until a keep-alive is due, after the last write at `lastWriteAt` (0: due now). */
export const keepAliveDelay = (lastWriteAt: number, now: number, intervalMillis: number): number =>
  Math.max(0, lastWriteAt + intervalMillis - now)
