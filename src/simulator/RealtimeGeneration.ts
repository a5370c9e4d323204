/**
 * One generation of a real-time session: a run of buffered text spoken as
 * audio frames, each with the alignment of exactly the characters it speaks.
 *
 * **Details**
 *
 * - Text is cut at word boundaries ({@link wordCut}): a generation ends after
 *   the last whitespace of the buffer (a word still arriving stays buffered),
 *   or takes the whole buffer when it has no whitespace or is flushed.
 * - The frames of a generation carry its characters (code points, spaces
 *   included) in order: joined, the `chars` of every frame give back exactly
 *   the text of the generation ({@link framesOf}). A client can count aligned
 *   characters to know how much of its text was spoken.
 * - A generation holds a slot of its (key, pool) from admission until its last
 *   frame is sent: the time to first byte, then the frames paced over the
 *   generation time of the latency model ("only the time where our model is
 *   generating audio counts towards your concurrency limit", the models page).
 *   Past the limit it answers as the HTTP face does (the queue when one is
 *   configured, else `too_many_concurrent_requests`), as an error frame.
 * - Credits: the characters whose frames went out are charged, at the model's
 *   multiplier, counted over the whole session so the session pays
 *   `ceil(characters x multiplier)` once (the endpoint table's rule,
 *   `Endpoints.creditsOf`). The generation's cost is reserved at admission, so
 *   concurrent generations cannot overspend the quota (`quota_exceeded`).
 *
 * @since 0.2.0
 */
import { Clock, Duration, Effect } from "effect"
import * as Endpoints from "../client/Endpoints.ts"
import * as Realtime from "../client/Realtime.ts"
import type { Pool } from "../resilience/Plans.ts"
import type { Account, Accounts } from "./Accounts.ts"
import * as Audio from "./Audio.ts"
import type * as Counts from "./Counts.ts"
import type { LatencyProfile } from "./Generation.ts"
import type { Pools } from "./Pools.ts"
import type * as Prng from "./Prng.ts"
import type { RealtimeFault, RealtimeFaults } from "./RealtimeFaults.ts"

// ============================================================================
// Text and frames (pure)
// ============================================================================

/** The index (UTF-16) just after the last whitespace of `buffer`; its length when it has none. */
export const wordCut = (buffer: string): number => {
  for (let i = buffer.length - 1; i >= 0; i--) {
    if (/\s/.test(buffer[i]!)) return i + 1
  }
  return buffer.length
}

/** `items` in `n` consecutive runs of nearly equal length (no run empty when `n <= items.length`). */
export const splitEven = <A>(items: ReadonlyArray<A>, n: number): Array<Array<A>> => {
  const runs: Array<Array<A>> = []
  for (let i = 0; i < n; i++) {
    runs.push(items.slice(Math.floor((i * items.length) / n), Math.floor(((i + 1) * items.length) / n)))
  }
  return runs
}

/** The alignment of `chars` spread evenly over `durationMs`, times relative to the frame (whole ms). */
export const alignmentOf = (chars: ReadonlyArray<string>, durationMs: number): Realtime.Alignment => {
  const step = chars.length === 0 ? 0 : durationMs / chars.length
  const starts = chars.map((_, i) => Math.round(i * step))
  return {
    chars,
    charStartTimesMs: starts,
    charDurationsMs: chars.map((_, i) => Math.round((i + 1) * step) - starts[i]!)
  }
}

/** One audio frame of a generation: its bytes and the characters it speaks. */
export interface Frame {
  readonly audio: Uint8Array
  readonly alignment: Realtime.Alignment
}

/**
 * The frames of `text`: its audio (`charsPerSecond`) cut in one frame per `chunkSeconds` (at most 200, at
 * most one per character, at least `minFrames` when the text has that many characters), the characters
 * shared out in order.
 */
export const framesOf = (options: {
  readonly text: string
  readonly format: string
  readonly charsPerSecond: number
  readonly chunkSeconds: number
  readonly minFrames: number
}): Array<Frame> => {
  const chars = Array.from(options.text)
  if (chars.length === 0) return []
  const seconds = Audio.speechSeconds(chars.length, options.charsPerSecond)
  const wanted = Math.max(1, Math.min(200, Math.ceil(seconds / options.chunkSeconds)), options.minFrames)
  const audio = Audio.renderShared(options.format, seconds)
  const pieces = Audio.chunk(audio, Math.min(wanted, chars.length))
  const runs = splitEven(chars, pieces.length)
  return pieces.map((piece, i) => {
    const run = runs[i]!
    return { audio: piece, alignment: alignmentOf(run, (seconds * 1000 * run.length) / chars.length) }
  })
}

// ============================================================================
// Running one generation
// ============================================================================

/** How a generation ended. */
export type Ending =
  | { readonly _tag: "Done" }
  | { readonly _tag: "Refused"; readonly error: string; readonly message: string }
  | { readonly _tag: "Fault"; readonly fault: "drop" | "close1011" }

/** The credits of a session so far: characters charged, at one model's multiplier. */
export interface Billing {
  readonly modelId: string
  characters: number
}

const creditsFor = (characters: number, modelId: string): number =>
  Endpoints.creditsOf(Endpoints.textToSpeechStream, characters, modelId)

/** The cost of `more` characters after those already charged. */
export const creditsOfMore = (billing: Billing, more: number): number =>
  creditsFor(billing.characters + more, billing.modelId) - creditsFor(billing.characters, billing.modelId)

/** What the engine lends each generation. */
export interface Env {
  readonly prng: Prng.Prng
  readonly accounts: Accounts
  readonly pools: Pools
  readonly faults: RealtimeFaults
  readonly counts: Counts.Counts
  readonly charsPerSecond: number
  readonly chunkSeconds: number
  /** The engine's count of generations in flight per pool (its own record). */
  readonly inFlight: (pool: Pool, delta: 1 | -1) => void
}

/** One generation to run. */
export interface Job {
  readonly account: Account
  readonly pool: Pool
  readonly profile: LatencyProfile
  readonly format: string
  readonly text: string
  readonly contextId: string | undefined
  readonly billing: Billing
  readonly send: (frame: string) => Effect.Effect<void>
}

const tooManyConcurrent = (limit: number) =>
  // The HTTP face's message (Answers.tooManyConcurrent), which names the limit.
  `Too many concurrent requests. Your current subscription is associated with a maximum of ${limit} concurrent requests (running in parallel). This is done such that a single user does not overwhelm our systems and affect other users negatively. Please upgrade your subscription or contact sales if you want to increase this limit.`

/** The refusal before a slot, as the HTTP face orders them: the pool's gate, the quota, the load. */
const refusal = (env: Env, job: Job, cost: number, now: number): Ending | undefined => {
  const { account } = job
  const state = account.pools[job.pool]
  if (state.limit <= 0) return { _tag: "Refused", error: "subscription_required", message: "Subscription required." }
  env.accounts.rollPeriod(account, now)
  const remaining = account.characterLimit - account.characterCount - account.reserved
  if (cost > remaining) {
    return {
      _tag: "Refused",
      error: "quota_exceeded",
      message: `This request exceeds your quota of ${account.characterLimit}. You have ${
        Math.max(0, remaining)
      } credits remaining, while ${cost} credits are required for this request.`
    }
  }
  if (env.pools.full()) {
    return {
      _tag: "Refused",
      error: "system_busy",
      message:
        "We are sorry, the system is experiencing heavy traffic, please try again. Higher subscriptions have higher priority."
    }
  }
  return undefined
}

/** Sends the frames, paced, acting on `fault` after half of them; the characters sent so far in `sent`. */
const sendFrames = (
  env: Env,
  job: Job,
  frames: ReadonlyArray<Frame>,
  pace: { readonly ttfb: number; readonly generation: number },
  fault: RealtimeFault | undefined,
  sent: { characters: number }
) =>
  Effect.gen(function*() {
    const every = frames.length === 0 ? 0 : pace.generation / frames.length
    const cutAt = Math.max(1, Math.floor(frames.length / 2))
    yield* Effect.sleep(Duration.millis(pace.ttfb))
    for (let i = 0; i < frames.length; i++) {
      if (i === cutAt && fault !== undefined) {
        env.counts.realtime.faults[fault] = (env.counts.realtime.faults[fault] ?? 0) + 1
        if (fault !== "stall") return { _tag: "Fault", fault } as const
        yield* Effect.sleep(Duration.millis(env.faults.stallMs()))
      }
      yield* Effect.sleep(Duration.millis(Math.round((i + 1) * every) - Math.round(i * every)))
      const frame = frames[i]!
      yield* job.send(Realtime.serverFrame.audio(frame.audio, frame.alignment, job.contextId))
      sent.characters += frame.alignment.chars.length
    }
    return { _tag: "Done" } as const
  })

/**
 * Runs one generation: the refusals, a slot, the latency model, the frames; the slot given back and the
 * characters sent charged however it ends (done, refused, faulted or interrupted).
 */
export const run = (env: Env, job: Job): Effect.Effect<Ending> =>
  Effect.gen(function*() {
    const characters = Array.from(job.text).length
    if (characters === 0) return { _tag: "Done" } as const
    const realtime = () => env.counts.realtime
    const cost = creditsOfMore(job.billing, characters)
    const refused = refusal(env, job, cost, yield* Clock.currentTimeMillis)
    const state = job.account.pools[job.pool]
    if (refused === undefined && (yield* env.pools.admit(state))) {
      realtime().generationsStarted++
      env.inFlight(job.pool, 1)
      const reservation = env.accounts.reserve(job.account, cost)
      const sent = { characters: 0 }
      // The slot and the credits are settled once, however the generation ends.
      const settle = Effect.suspend(() => {
        env.inFlight(job.pool, -1)
        const charged = creditsOfMore(job.billing, sent.characters)
        job.billing.characters += sent.characters
        realtime().charactersGenerated += sent.characters
        realtime().creditsCharged += charged
        return reservation.drop.pipe(
          Effect.andThen(charged > 0 ? env.accounts.reserve(job.account, charged).charge : Effect.void),
          Effect.andThen(env.pools.release(state))
        )
      })
      const noise = () => 1 + job.profile.jitter * (2 * env.prng.next() - 1)
      const ttfb = Math.max(0, Math.round(job.profile.ttfbMs * noise()))
      const generation = Math.max(0, Math.round(characters * job.profile.msPerUnit * noise()))
      // A fault acts between two frames: a one-character generation takes none (and leaves a trigger queued).
      const fault = characters >= 2 ? env.faults.draw() : undefined
      const frames = framesOf({
        text: job.text,
        format: job.format,
        charsPerSecond: env.charsPerSecond,
        chunkSeconds: env.chunkSeconds,
        minFrames: fault === undefined ? 1 : 2
      })
      const ending = yield* sendFrames(env, job, frames, { ttfb, generation }, fault, sent).pipe(
        Effect.ensuring(settle)
      )
      if (ending._tag === "Done") realtime().generationsCompleted++
      return ending
    }
    realtime().generationsRefused++
    return refused ??
      { _tag: "Refused", error: "too_many_concurrent_requests", message: tooManyConcurrent(state.limit) }
  })
