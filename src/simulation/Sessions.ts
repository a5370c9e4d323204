/**
 * Conversations over the real-time TTS socket, run and reported: the `sessions` traffic shape of `simulate`
 * (virtual time, in-process simulator) and `load-test` (real time, a server). Each conversation holds one
 * resilient session (`RealtimeSession`) and says its turns (`Conversations.ts`); the report counts what a
 * voice agent feels: conversations that ended cleanly or why not, reconnects, text lost or spoken twice (must
 * be zero), and the time from a turn's first text to its first audio.
 *
 * **Details**
 *
 * - Spoken text is checked character by character: the characters the server aligned, in order, against the
 *   characters sent, whitespace aside (the session tolerates spaces the server adds or drops). `lost` counts
 *   characters of a cleanly ended conversation that were never spoken; `duplicated` those spoken again.
 * - A turn's time to first audio runs from its first `send` to the first chunk that speaks a character of it
 *   (not a late chunk of the turn before).
 *
 * @since 0.2.0
 */
import { Clock, Context, Effect, Fiber, Layer, type Redacted, Ref, Schema, type Scope, Stream } from "effect"
import type { HttpClient } from "effect/http"
import type { Socket } from "effect/socket"
import { isElevenLabsError } from "../client/Errors.ts"
import type { PlanName } from "../resilience/Plans.ts"
import * as RealtimeSession from "../resilience/RealtimeSession.ts"
import * as Resilient from "../resilience/Resilient.ts"
import type { ResilientOptions } from "../resilience/ResilientOptions.ts"
import type { Conversation } from "./Conversations.ts"
import { fmt, fmtMs, type Percentiles, percentiles } from "./Report.ts"

/** How one conversation went. */
export interface ConversationResult {
  readonly index: number
  /** `"ok"`, or the reason of the session's one failure. */
  readonly outcome: string
  readonly turns: number
  readonly sent: number
  readonly spoken: number
  readonly lost: number
  readonly duplicated: number
  readonly reconnects: number
  readonly resent: number
  readonly firstAudioMs: ReadonlyArray<number>
  readonly endMs: number
}

const isSpace = /\s/u
const visible = (text: string): Array<string> => [...text].filter((c) => !isSpace.test(c))
/** Characters of `text` that are not whitespace (counted as they arrive, not by re-reading all the text). */
const visibleCount = (text: string): number => {
  let n = 0
  for (const c of text) if (!isSpace.test(c)) n++
  return n
}

/** Characters never spoken and characters spoken again, whitespace aside. */
export const compare = (sent: string, spoken: string): { readonly lost: number; readonly duplicated: number } => {
  const a = visible(sent)
  const b = visible(spoken)
  let same = 0
  while (same < a.length && same < b.length && a[same] === b[same]) same++
  return { lost: a.length - same, duplicated: b.length - same }
}

/**
 * Says one conversation through `realtime` (opened at its start time, which the caller waits for): its turns at
 * their times, each flushed, then the end of input.
 */
export const converse = (
  realtime: RealtimeSession.Connector,
  conversation: Conversation,
  session: RealtimeSession.SessionOptions
): Effect.Effect<ConversationResult> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    let sentText = ""
    let spokenText = ""
    let sentVisible = 0
    let spokenVisible = 0
    const firstAudioMs: Array<number> = []
    // The turn waiting for its first audio: where its text starts (in visible characters) and when it began.
    const awaiting = yield* Ref.make<{ readonly from: number; readonly at: number } | undefined>(undefined)
    let turns = 0
    const result = (
      outcome: string,
      stats: RealtimeSession.SpeechStats | undefined,
      reconnects: number,
      end: number
    ) => {
      const { lost, duplicated } = compare(sentText, spokenText)
      return {
        index: conversation.index,
        outcome,
        turns,
        sent: [...sentText].length,
        spoken: [...spokenText].length,
        lost: outcome === "ok" ? lost : 0,
        duplicated,
        reconnects,
        resent: stats?.resent ?? 0,
        firstAudioMs,
        endMs: end
      } satisfies ConversationResult
    }
    const run = Effect.scoped(Effect.gen(function*() {
      const s = yield* realtime.open(session)
      const listener = yield* Effect.forkScoped(Stream.runForEach(s.audio, (chunk) =>
        Effect.gen(function*() {
          const chars = chunk.alignment?.chars.join("") ?? ""
          spokenText += chars
          spokenVisible += visibleCount(chars)
          const turn = yield* Ref.get(awaiting)
          if (turn !== undefined && spokenVisible > turn.from) {
            firstAudioMs.push((yield* Clock.currentTimeMillis) - turn.at)
            yield* Ref.set(awaiting, undefined)
          }
        })))
      for (const turn of conversation.turns) {
        const wait = startedAt + turn.atMs - (yield* Clock.currentTimeMillis)
        if (wait > 0) yield* Effect.sleep(wait)
        for (const [k, sentence] of turn.sentences.entries()) {
          if (sentence.afterMs > 0) yield* Effect.sleep(sentence.afterMs)
          if (k === 0) {
            yield* Ref.set(awaiting, { from: sentVisible, at: yield* Clock.currentTimeMillis })
          }
          yield* s.send(sentence.text)
          sentText += sentence.text
          sentVisible += visibleCount(sentence.text)
        }
        yield* s.flush
        turns++
      }
      yield* s.end
      yield* Fiber.join(listener)
      return { stats: yield* s.stats, reconnects: yield* s.reconnects }
    }))
    return yield* run.pipe(
      Effect.flatMap(({ reconnects, stats }) =>
        Effect.map(Clock.currentTimeMillis, (end) => result("ok", stats, reconnects, end - startedAt))
      ),
      Effect.catch((error) =>
        Effect.map(
          Clock.currentTimeMillis,
          (end) => result(isElevenLabsError(error) ? error.reason._tag : "Error", undefined, 0, end - startedAt)
        )
      )
    )
  })

/**
 * The real-time connector of a resilient stack on `plan` (the stack's options besides, if given), built in the
 * caller's scope: the stack's background fibers (quota refresh, limiter timer) live as long as the run.
 */
export const connector = (options: {
  readonly apiKey: Redacted.Redacted<string>
  readonly baseUrl: string
  readonly plan: PlanName
  readonly stack?: Omit<ResilientOptions, "apiKey" | "baseUrl"> | undefined
}): Effect.Effect<
  RealtimeSession.Connector,
  SessionsError,
  Scope.Scope | HttpClient.HttpClient | Socket.WebSocketConstructor
> =>
  Layer.build(
    RealtimeSession.layer({ apiKey: options.apiKey, baseUrl: options.baseUrl }).pipe(
      Layer.provide(Resilient.layer({
        limiter: { plan: options.plan },
        ...options.stack,
        apiKey: options.apiKey,
        baseUrl: options.baseUrl
      }))
    )
  ).pipe(
    Effect.map((context) => Context.get(context, RealtimeSession.RealtimeTts)),
    Effect.mapError((e) => new SessionsError({ message: `the resilient stack did not build: ${e.message}` }))
  )

/** The stack of a sessions run did not build. */
export class SessionsError extends Schema.Error<SessionsError>("elevenlabs-resilience/SessionsError")({
  _tag: Schema.tag("SessionsError"),
  message: Schema.String
}) {}

/** Starts each conversation at its start time (from now) and waits for all of them. */
export const sayAll = (
  realtime: RealtimeSession.Connector,
  schedule: ReadonlyArray<Conversation>,
  session: RealtimeSession.SessionOptions
): Effect.Effect<ReadonlyArray<ConversationResult>> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const fibers: Array<Fiber.Fiber<ConversationResult>> = []
    for (const conversation of schedule) {
      const wait = start + conversation.startMs - (yield* Clock.currentTimeMillis)
      if (wait > 0) yield* Effect.sleep(wait)
      fibers.push(yield* Effect.forkChild(converse(realtime, conversation, session)))
    }
    return yield* Fiber.joinAll(fibers)
  })

/** The summary of a sessions run. */
export interface SessionsSummary {
  readonly shape: "sessions"
  readonly clock: "virtual" | "real"
  readonly plan: string
  readonly model: string
  readonly pool: string
  readonly limit: number
  readonly seed: number
  readonly failureRate: number
  readonly conversations: number
  readonly completed: number
  readonly failed: number
  readonly failedByReason: Readonly<Record<string, number>>
  readonly turns: number
  readonly charactersSent: number
  readonly charactersSpoken: number
  /** Characters of cleanly ended conversations never spoken: must be 0. */
  readonly lostCharacters: number
  /** Characters spoken twice: must be 0. */
  readonly duplicatedCharacters: number
  readonly reconnects: number
  readonly resentCharacters: number
  readonly timeToFirstAudioMs: Percentiles
  /** Generations in flight at the server, at most (its count), against the pool's limit. */
  readonly maxInFlight: number
  readonly concurrency429: number
  readonly durationMs: number
  readonly wallMs: number
}

/** Sums the results of a run. */
export const summarize = (
  results: ReadonlyArray<ConversationResult>,
  run: Pick<
    SessionsSummary,
    "clock" | "plan" | "model" | "pool" | "limit" | "seed" | "failureRate" | "maxInFlight" | "concurrency429" | "wallMs"
  >
): SessionsSummary => {
  const failedByReason: Record<string, number> = {}
  let completed = 0
  for (const r of results) {
    if (r.outcome === "ok") completed++
    else failedByReason[r.outcome] = (failedByReason[r.outcome] ?? 0) + 1
  }
  const sum = (f: (r: ConversationResult) => number) => results.reduce((n, r) => n + f(r), 0)
  return {
    shape: "sessions",
    ...run,
    conversations: results.length,
    completed,
    failed: results.length - completed,
    failedByReason,
    turns: sum((r) => r.turns),
    charactersSent: sum((r) => r.sent),
    charactersSpoken: sum((r) => r.spoken),
    lostCharacters: sum((r) => r.lost),
    duplicatedCharacters: sum((r) => r.duplicated),
    reconnects: sum((r) => r.reconnects),
    resentCharacters: sum((r) => r.resent),
    timeToFirstAudioMs: percentiles(results.flatMap((r) => r.firstAudioMs)),
    durationMs: results.reduce((m, r) => Math.max(m, r.endMs), 0)
  }
}

/** The text table of a sessions run. */
export const toText = (s: SessionsSummary): string => {
  const reasons = Object.entries(s.failedByReason).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") || "-"
  const t = s.timeToFirstAudioMs
  const rows: ReadonlyArray<readonly [string, string]> = [
    ["shape", `sessions (${s.clock === "real" ? "load test, real time" : "simulation, virtual time"})`],
    ["plan / model", `${s.plan} / ${s.model}`],
    ["pool (limit)", `${s.pool} (${s.limit})`],
    ["seed / failure rate", `${s.seed} / ${s.failureRate}`],
    ["conversations", fmt(s.conversations)],
    ["completed", fmt(s.completed)],
    ["failed", fmt(s.failed)],
    ["failed by reason", reasons],
    ["turns", fmt(s.turns)],
    ["characters sent / spoken", `${fmt(s.charactersSent)} / ${fmt(s.charactersSpoken)}`],
    ["lost text (must be 0)", `${fmt(s.lostCharacters)} characters`],
    ["spoken twice (must be 0)", `${fmt(s.duplicatedCharacters)} characters`],
    ["reconnects / resent", `${fmt(s.reconnects)} / ${fmt(s.resentCharacters)} characters`],
    ["time to first audio p50/p95/p99", `${fmtMs(t.p50)} / ${fmtMs(t.p95)} / ${fmtMs(t.p99)}`],
    ["max in flight (server)", `${fmt(s.maxInFlight)} of ${fmt(s.limit)}`],
    ["429 too_many_concurrent", fmt(s.concurrency429)],
    [s.clock === "real" ? "duration (real time)" : "virtual duration", fmtMs(s.durationMs)],
    ["wall time", `${fmt(Math.round(s.wallMs))} ms`]
  ]
  const width = Math.max(...rows.map(([label]) => label.length))
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join("\n") + "\n"
}
