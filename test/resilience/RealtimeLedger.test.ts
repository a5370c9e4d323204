/**
 * The real-time session's pure bookkeeping: the resend boundary (what was answered, what is resent after a
 * drop), the credits of its reservations, the keep-alive timing. The property tests play a model server that
 * speaks exactly the text it received, in alignment chunks of random sizes, and loses what it had not spoken
 * when the connection drops; the client resends `unanswered()` after each drop.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Ledger from "../../src/resilience/RealtimeLedger.ts"

const Op = Schema.Struct({
  /** 0-5 send a chunk, 6-8 the server speaks, 9 the connection drops. */
  kind: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 9 })),
  size: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 7 }))
})

const Texts = Schema.Array(Schema.String).check(Schema.isMaxLength(12))
const Ops = Schema.Array(Op).check(Schema.isMaxLength(60))

/** Splits code points into alignment items of 1..size code points (one item may hold several, as LiveKit notes). */
const itemsOf = (cps: ReadonlyArray<string>, size: number): Array<string> => {
  const items: Array<string> = []
  for (let i = 0; i < cps.length; i += size) items.push(cps.slice(i, i + size).join(""))
  return items
}

/**
 * Plays `ops` between a client ledger and a model server. `extraSpaces`: the server also aligns a space for
 * the init message of each connection and for keep-alives (spaces the ledger never sent). Returns what the
 * server spoke, what the client sent, and the characters it resent.
 */
const play = (texts: ReadonlyArray<string>, ops: ReadonlyArray<typeof Op.Type>, extraSpaces: boolean) => {
  const ledger = new Ledger.Ledger()
  let buffer: Array<string> = extraSpaces ? [" "] : [] // what the server received and has not spoken
  let written = 0 // how far the client wrote on this connection (absolute)
  let everWritten = 0
  let resent = 0
  let sentText = ""
  const spoken: Array<string> = []
  let next = 0
  const write = () => {
    const from = Math.max(written, ledger.answered)
    const text = ledger.unanswered(from)
    resent += Math.max(0, Math.min(ledger.sent, everWritten) - from)
    buffer.push(...text)
    written = ledger.sent
    everWritten = Math.max(everWritten, written)
  }
  const speak = (n: number, itemSize: number) => {
    const cps = buffer.slice(0, n)
    buffer = buffer.slice(n)
    if (cps.length === 0) return
    spoken.push(...cps)
    ledger.answer(itemsOf(cps, itemSize))
  }
  for (const op of ops) {
    if (op.kind <= 5 && next < texts.length) {
      const text = texts[next++]!
      sentText += text
      ledger.append(text)
      write()
      if (extraSpaces && op.kind === 0) buffer.push(" ") // a keep-alive
    } else if (op.kind <= 8) {
      speak(op.size * (op.kind - 5), op.size)
    } else {
      // A drop: the server forgets what it had not spoken; the client reconnects and resends from `answered`.
      buffer = extraSpaces ? [" "] : []
      written = ledger.answered
      write()
    }
  }
  while (next < texts.length) {
    const text = texts[next++]!
    sentText += text
    ledger.append(text)
    write()
  }
  speak(buffer.length, 3)
  return { ledger, spoken: spoken.join(""), sentText, resent }
}

const noSpaces = (s: string) => [...s].filter((cp) => !Ledger.isWhitespace(cp)).join("")

describe("RealtimeLedger", () => {
  describe("the resend boundary", () => {
    it.effect.prop(
      "over any chunking and drops, every character is spoken exactly once, in order",
      [Texts, Ops],
      ([texts, ops]) =>
        Effect.sync(() => {
          const { ledger, resent, sentText, spoken } = play(texts, ops, false)
          assert.strictEqual(spoken, sentText)
          assert.strictEqual(ledger.answered, ledger.sent)
          // Code points per send (a surrogate pair split over two sends counts two, as the session counts it).
          assert.strictEqual(ledger.sent, texts.reduce((n, t) => n + [...t].length, 0))
          assert.strictEqual(ledger.unmatched, 0)
          assert.isAtLeast(resent, 0)
          assert.isTrue(ledger.settled)
        })
    )

    it.effect.prop(
      "spaces the server adds (init, keep-alives) do not move the boundary: nothing lost, nothing twice",
      [Texts, Ops],
      ([texts, ops]) =>
        Effect.sync(() => {
          const { ledger, sentText, spoken } = play(texts, ops, true)
          assert.strictEqual(noSpaces(spoken), noSpaces(sentText))
          assert.isTrue(ledger.settled)
        })
    )

    it("resends exactly the unanswered suffix, in code points", () => {
      const ledger = new Ledger.Ledger()
      ledger.append("héllo 👋 world ")
      assert.strictEqual(ledger.sent, 14)
      assert.strictEqual(ledger.answer(["h", "é", "l", "l", "o", " ", "👋"]), 7)
      assert.strictEqual(ledger.unanswered(), " world ")
      assert.strictEqual(ledger.unanswered(10), "rld ")
      assert.isFalse(ledger.settled)
      assert.strictEqual(ledger.answer(["wor", "ld"]), 6)
      // The trailing space need not be aligned: nothing is pending.
      assert.isTrue(ledger.settled)
      assert.strictEqual(ledger.unanswered(), " ")
    })

    it("a space of the text the server did not align is skipped; a character that matches nothing still counts", () => {
      const ledger = new Ledger.Ledger()
      ledger.append("a  b c ")
      assert.strictEqual(ledger.answer(["a", "b"]), 4)
      assert.strictEqual(ledger.answer(["x"]), 2) // " c": the mismatch advances by one, over the space first
      assert.strictEqual(ledger.unmatched, 1)
      assert.strictEqual(ledger.answerTo(ledger.sent), 1)
      assert.strictEqual(ledger.answered, ledger.sent)
    })

    it("a final answers what was written, never more; whitespaceTo looks only before its position", () => {
      const ledger = new Ledger.Ledger()
      ledger.append("Said. ")
      ledger.append("Not yet written. ")
      assert.isFalse(ledger.whitespaceTo(6))
      assert.strictEqual(ledger.answer(["S", "a", "i", "d", "."]), 5)
      assert.isTrue(ledger.whitespaceTo(6), "only the space before position 6 is unanswered")
      assert.isFalse(ledger.whitespaceTo(ledger.sent))
      assert.isFalse(ledger.idle)
      // The text from 6 on was never written on the connection: the final does not answer it.
      assert.strictEqual(ledger.answerTo(6), 1)
      assert.strictEqual(ledger.answered, 6)
      assert.strictEqual(ledger.unanswered(), "Not yet written. ")
      assert.strictEqual(ledger.answerTo(3), 0)
      assert.strictEqual(ledger.answerTo(ledger.sent), 17)
      assert.isTrue(ledger.idle)
    })
  })

  describe("credits", () => {
    const flash = (n: number) => Math.ceil(n * 0.5)

    it.prop(
      "the reservations of a session add up to one rounding of everything sent",
      [Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 300 }))).check(Schema.isMaxLength(30))],
      ([chunks]) => {
        let sent = 0
        let reserved = 0
        for (const n of chunks) {
          reserved += Ledger.costDelta(flash, sent, sent + n)
          sent += n
        }
        assert.strictEqual(reserved, flash(sent))
      }
    )

    it("a segment commits its cost once answered, and its answered share when the session ends", () => {
      const segment = { start: 10, end: 30, cost: Ledger.costDelta(flash, 10, 30) }
      assert.strictEqual(segment.cost, 10)
      assert.isUndefined(Ledger.dueCommit(segment, 29))
      assert.strictEqual(Ledger.dueCommit(segment, 30), 10)
      assert.isUndefined(Ledger.finalCommit(segment, 10, flash))
      assert.strictEqual(Ledger.finalCommit(segment, 21, flash), 6)
      assert.strictEqual(Ledger.finalCommit(segment, 40, flash), 10)
    })
  })

  describe("keep-alive timing", () => {
    it("is half the inactivity timeout: a silent caller's keep-alives come every 10 s of the default 20 s", () => {
      assert.strictEqual(Ledger.keepAliveInterval(20_000), 10_000)
      assert.strictEqual(Ledger.keepAliveInterval(180_000), 90_000)
      assert.strictEqual(Ledger.keepAliveDelay(0, 4_000, 10_000), 6_000)
      assert.strictEqual(Ledger.keepAliveDelay(0, 12_000, 10_000), 0)
    })

    it.effect("under TestClock, a loop on the delays writes one keep-alive per interval of silence, none while writing", () =>
      Effect.gen(function*() {
        const interval = Ledger.keepAliveInterval(20_000)
        let lastWriteAt = 0
        const keepAlives: Array<number> = []
        const loop = Effect.gen(function*() {
          while (true) {
            const now = yield* Clock.currentTimeMillis
            const delay = Ledger.keepAliveDelay(lastWriteAt, now, interval)
            if (delay > 0) {
              yield* Effect.sleep(delay)
              continue
            }
            keepAlives.push(now)
            lastWriteAt = now
          }
        })
        const fiber = yield* Effect.forkChild(loop)
        // The caller writes at 5 s and 12 s, then is silent for 60 s.
        yield* TestClock.adjust(5_000)
        lastWriteAt = 5_000
        yield* TestClock.adjust(7_000)
        lastWriteAt = 12_000
        yield* TestClock.adjust(60_000)
        assert.deepStrictEqual(keepAlives, [22_000, 32_000, 42_000, 52_000, 62_000, 72_000])
        yield* Fiber.interrupt(fiber)
      }))
  })
})
