/**
 * The shared path of every generation request after its checks: the pool's
 * gate, the quota, the system's load, admission to the pool, the faults, the
 * latency model, and then the success answer the handler builds.
 *
 * **Details**
 *
 * - Order: `403 subscription_required` (a pool limit of 0) → `401
 *   quota_exceeded` → `429 system_busy` (load, then drawn) → a slot or `429
 *   too_many_concurrent_requests` → a drawn fault → the answer.
 * - Time to the headers: the time to first byte for a stream, plus the
 *   generation time for a buffered body; a stream's chunks are paced over the
 *   generation time. Both carry seeded noise ({@link LatencyProfile.jitter}).
 * - The slot is held until the body ends, fails or is interrupted; the credits
 *   are reserved at admission and charged with the success's headers.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Stream } from "effect"
import type { Pool } from "../resilience/Plans.ts"
import type { Account, Accounts } from "./Accounts.ts"
import { type Answers, type Meta, type Outcome, respond, StreamCut } from "./Answers.ts"
import type { Faults } from "./Faults.ts"
import type { Pools, PoolState } from "./Pools.ts"
import type * as Prng from "./Prng.ts"

/** Time to first byte and generation speed of one model family. */
export interface LatencyProfile {
  /** Milliseconds before the first byte (headers on stream endpoints). */
  readonly ttfbMs: number
  /** Milliseconds of generation per character of text (per second of audio for STT/music). */
  readonly msPerUnit: number
  /** Relative noise, e.g. `0.2` for +/-20 %, drawn from the seed. */
  readonly jitter: number
}

/** The latency profiles per family. */
export interface LatencyModel {
  readonly standard: LatencyProfile
  readonly v3: LatencyProfile
  readonly flash: LatencyProfile
  readonly stt: LatencyProfile
  readonly music: LatencyProfile
}

/** Default latencies: Flash ~75 ms to first byte, Multilingual ~300 ms, v3 ~500 ms. */
export const defaultLatency: LatencyModel = {
  flash: { ttfbMs: 75, msPerUnit: 1, jitter: 0.2 },
  standard: { ttfbMs: 300, msPerUnit: 4, jitter: 0.2 },
  v3: { ttfbMs: 500, msPerUnit: 6, jitter: 0.2 },
  stt: { ttfbMs: 300, msPerUnit: 50, jitter: 0.2 },
  music: { ttfbMs: 1000, msPerUnit: 100, jitter: 0.2 }
}

/** The latency profile of a request: by pool, and by model in the standard pool. */
export const profileOf = (latency: LatencyModel, pool: Pool, modelId: string): LatencyProfile =>
  pool === "flash"
    ? latency.flash
    : pool === "stt"
    ? latency.stt
    : pool === "music"
    ? latency.music
    : modelId === "eleven_v3"
    ? latency.v3
    : latency.standard

/** A request that passed its checks, with what its success looks like. */
export interface Input {
  readonly account: Account
  readonly pool: Pool
  readonly cost: number
  readonly profile: LatencyProfile
  /** Units of work (characters, or seconds of audio). */
  readonly units: number
  /** Whether the body streams as it is generated (headers after the first byte time). */
  readonly streaming: boolean
  readonly success: (meta: Meta) => {
    readonly headers: Record<string, string>
    readonly chunks: ReadonlyArray<Uint8Array>
  }
}

/** Runs one generation request through the model: its answer. */
export type Generate = (input: Input) => Effect.Effect<Outcome>

/** A body of `chunks`: paced `perChunk` ms apart, cut half-way with `cut`. */
const bodyOf = (chunks: ReadonlyArray<Uint8Array>, perChunk: number, cut: boolean) => {
  // A cut body stops half-way: half the chunks, or half the bytes of a one-chunk body.
  const kept = !cut
    ? chunks
    : chunks.length === 1
    ? [chunks[0]!.subarray(0, Math.max(1, Math.floor(chunks[0]!.length / 2)))]
    : chunks.slice(0, Math.max(1, Math.floor(chunks.length / 2)))
  // Paced chunks sleep between them; an unpaced body is just its chunks (no effect per chunk).
  const each = perChunk > 0
    ? Stream.fromIterable(kept).pipe(
      Stream.mapEffect((c, i) => i > 0 ? Effect.as(Effect.sleep(Duration.millis(perChunk)), c) : Effect.succeed(c))
    )
    : kept.length === 1
    ? Stream.succeed(kept[0]!)
    : Stream.fromIterable(kept)
  return {
    body: cut ? Stream.concat(each, Stream.fail(new StreamCut())) : each,
    // One unpaced, uncut chunk: a transport may send it at once.
    whole: perChunk === 0 && !cut && kept.length === 1 ? kept[0] : undefined
  }
}

/** The generation path of a model. */
export const make = (model: {
  readonly prng: Prng.Prng
  readonly accounts: Accounts
  readonly pools: Pools
  readonly faults: Faults
  readonly answers: Answers
}): Generate => {
  const { accounts, answers, faults, pools, prng } = model

  const noise = (profile: LatencyProfile) => 1 + profile.jitter * (2 * prng.next() - 1)

  /** The answer before admission when there is one: the pool's gate, the quota, the load. */
  const refusal = (input: Input, state: PoolState, now: number) => {
    if (state.limit <= 0) return answers.detail(403, "subscription_required", "Subscription required.")
    const quota = accounts.quotaRefusal(input.account, input.cost, now)
    if (quota !== undefined) return quota
    if (pools.full()) {
      faults.count("systemBusyLoad")
      return answers.systemBusy()
    }
    if (faults.drawSystemBusy()) {
      faults.count("systemBusy")
      return answers.systemBusy()
    }
    return undefined
  }

  /** An admitted request: latency, a drawn fault or the success, holding `release` until its body ends. */
  const answer = (
    input: Input,
    state: PoolState,
    charge: Effect.Effect<void>,
    drop: Effect.Effect<void>,
    release: Effect.Effect<void>
  ) =>
    Effect.gen(function*() {
      const ttfb = Math.max(0, Math.round(input.profile.ttfbMs * noise(input.profile)))
      const generation = Math.max(0, Math.round(input.units * input.profile.msPerUnit * noise(input.profile)))
      const fault = faults.draw(true)
      if (fault === "hang") {
        faults.count("hang")
        return yield* Effect.never
      }
      if (fault === "connectionReset") {
        yield* Effect.sleep(Duration.millis(ttfb))
        faults.count("connectionReset")
        yield* drop
        yield* release
        return { _tag: "Reset" } as const
      }
      if (fault === "serverError" || fault === "internalServerError" || fault === "serviceUnavailable") {
        yield* Effect.sleep(Duration.millis(ttfb))
        const pending = faults.answer(fault)
        faults.count(fault)
        yield* drop
        return respond({ ...pending, body: Stream.ensuring(pending.body, release) })
      }
      const headersAfter = input.streaming ? ttfb : ttfb + generation
      yield* Effect.sleep(Duration.millis(headersAfter))
      const { chunks, headers } = input.success({
        latencyMs: headersAfter,
        inFlight: state.inFlight,
        limit: state.limit
      })
      yield* charge
      answers.record(200, undefined)
      const cut = fault === "streamCut"
      if (cut) faults.count("streamCut")
      const perChunk = input.streaming && chunks.length > 0 ? Math.round(generation / chunks.length) : 0
      const { body, whole } = bodyOf(chunks, perChunk, cut)
      return respond({
        status: 200,
        headers: { ...answers.commonHeaders(headers["content-type"] ?? "application/octet-stream"), ...headers },
        body: Stream.ensuring(body, release),
        whole
      })
    })

  return (input) =>
    Effect.gen(function*() {
      const state = input.account.pools[input.pool]
      const refused = refusal(input, state, yield* Clock.currentTimeMillis)
      if (refused !== undefined) return respond(refused)
      if (!(yield* pools.admit(state))) return respond(answers.tooManyConcurrent(state.limit))
      const { charge, drop } = accounts.reserve(input.account, input.cost)
      // The slot is given back once, when the body ends, fails or is interrupted.
      let held = true
      const release = Effect.suspend(() => {
        if (!held) return Effect.void
        held = false
        return pools.release(state)
      })
      return yield* answer(input, state, charge, drop, release).pipe(
        Effect.onExit((exit) => exit._tag === "Failure" ? Effect.andThen(drop, release) : Effect.void)
      )
    })
}
