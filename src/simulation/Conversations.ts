/**
 * The `sessions` traffic shape: voice-agent conversations over the real-time TTS socket. Each conversation
 * holds one session for its whole life; it alternates between the user talking (the socket is silent, so the
 * session's keep-alives hold it) and the agent's turns, whose text arrives sentence by sentence as a language
 * model streams it, then is flushed so the turn is spoken. Deterministic: the seed decides every start, pause,
 * sentence and gap, through Effect's `Random`.
 *
 * **Details**
 *
 * - Conversations start spread evenly over the first `rampMs` (default one minute), so a run does not open
 *   every socket in the same millisecond, then run until the end of the run.
 * - A turn: the user talks for `userMs` (default 2 to 8 s), then the agent says `sentences` (default 1 to 3)
 *   sentences of `sentenceChars` (default 40 to 160 characters), each `gapMs` after the last (default 0.3 to
 *   1.2 s: a model streaming), and flushes.
 * - The text is readable English built from a fixed word list, and ends every sentence with a period and a
 *   space, as the socket wants.
 *
 * @since 0.2.0
 */
import { Effect, Random } from "effect"

/** An inclusive range of integers. */
export interface Range {
  readonly min: number
  readonly max: number
}

/** What the shape is asked for; every field but `conversations` and `durationMs` has a default. */
export interface ConversationOptions {
  readonly conversations: number
  readonly durationMs: number
  readonly rampMs?: number | undefined
  readonly userMs?: Range | undefined
  readonly sentences?: Range | undefined
  readonly sentenceChars?: Range | undefined
  readonly gapMs?: Range | undefined
}

/** One sentence of a turn, sent `afterMs` after the previous one (or the turn's start). */
export interface Sentence {
  readonly afterMs: number
  readonly text: string
}

/** One agent turn, starting `atMs` after the conversation's start. */
export interface Turn {
  readonly atMs: number
  readonly sentences: ReadonlyArray<Sentence>
}

/** One conversation: when it starts in the run and its turns. */
export interface Conversation {
  readonly index: number
  readonly startMs: number
  readonly turns: ReadonlyArray<Turn>
}

export const defaults = {
  rampMs: 60_000,
  userMs: { min: 2_000, max: 8_000 },
  sentences: { min: 1, max: 3 },
  sentenceChars: { min: 40, max: 160 },
  gapMs: { min: 300, max: 1_200 }
} as const

/** The problem with the options, if any (one line). */
export const problemOf = (options: ConversationOptions): string | undefined => {
  const { conversations, durationMs } = options
  if (!(Number.isInteger(conversations) && conversations >= 1)) {
    return `conversations must be a positive integer, got ${conversations}`
  }
  if (!(Number.isFinite(durationMs) && durationMs > 0)) return `duration must be positive, got ${durationMs} ms`
  for (
    const [name, r] of [
      ["userMs", options.userMs],
      ["sentences", options.sentences],
      ["sentenceChars", options.sentenceChars],
      ["gapMs", options.gapMs]
    ] as const
  ) {
    if (r !== undefined && !(Number.isInteger(r.min) && Number.isInteger(r.max) && r.min >= 0 && r.min <= r.max)) {
      return `${name} must be a range of whole numbers min <= max, got ${r.min}-${r.max}`
    }
  }
  if (options.sentences !== undefined && options.sentences.min < 1) return "a turn needs at least one sentence"
  if (options.sentenceChars !== undefined && options.sentenceChars.min < 2) {
    return "a sentence needs at least 2 characters"
  }
  return undefined
}

const words = (
  "the a we you it this that can will would should our your now then here there today later " +
  "voice call order account plan booking payment delivery ticket question answer moment minute " +
  "check confirm change update send find help look see know think need want give take make " +
  "quickly simply carefully again also still just only really very well sure right"
).split(" ")

const between = (r: Range) => Random.nextIntBetween(r.min, r.max)

/** A sentence of `chars` characters (including its period and trailing space), from the word list. */
const sentenceOf = (chars: number): Effect.Effect<string> =>
  Effect.gen(function*() {
    let s = ""
    while (s.length < chars) {
      s += (s.length === 0 ? "" : " ") + words[yield* Random.nextIntBetween(0, words.length, { halfOpen: true })]
    }
    const body = s.slice(0, Math.max(1, chars - 2)).trimEnd()
    return `${body.charAt(0).toUpperCase()}${body.slice(1)}. `
  })

/** The conversations of a run, in start order. */
export const schedule = (options: ConversationOptions): Effect.Effect<ReadonlyArray<Conversation>> =>
  Effect.gen(function*() {
    const rampMs = Math.min(options.rampMs ?? defaults.rampMs, options.durationMs)
    const userMs = options.userMs ?? defaults.userMs
    const sentences = options.sentences ?? defaults.sentences
    const sentenceChars = options.sentenceChars ?? defaults.sentenceChars
    const gapMs = options.gapMs ?? defaults.gapMs
    const out: Array<Conversation> = []
    for (let index = 0; index < options.conversations; index++) {
      const startMs = Math.floor((index * rampMs) / options.conversations)
      const turns: Array<Turn> = []
      let at = 0
      for (;;) {
        at += yield* between(userMs)
        const said: Array<Sentence> = []
        const n = yield* between(sentences)
        let length = 0
        for (let k = 0; k < n; k++) {
          const afterMs = k === 0 ? 0 : yield* between(gapMs)
          length += afterMs
          said.push({ afterMs, text: yield* sentenceOf(yield* between(sentenceChars)) })
        }
        if (startMs + at + length >= options.durationMs) break
        turns.push({ atMs: at, sentences: said })
        at += length
      }
      out.push({ index, startMs, turns })
    }
    return out
  })
