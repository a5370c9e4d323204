/**
 * The simulator's real-time TTS engine: the WebSocket endpoints
 * `/v1/text-to-speech/{voice_id}/stream-input` (one context per socket) and
 * `/v1/text-to-speech/{voice_id}/multi-stream-input` (up to five), over the
 * same model as the HTTP face: its accounts and credits, its pools, latency
 * model, audio and seeded generator, and its record. The protocol (paths,
 * limits, frames, messages) is `client/Realtime.ts`; docs/simulator.md
 * ("Real-time WebSocket") and docs/realtime.md describe what is simulated.
 *
 * **Details**
 *
 * - A transport (the in-process `WebSocketConstructor` of
 *   `RealtimeInProcess.ts`, the HTTP server's upgrade in `Server.ts`) accepts
 *   the handshake, then hands the engine the handshake, a {@link Peer} and a
 *   queue of what the client sends ({@link Engine.serve}).
 * - A bad or missing key does not fail the handshake: the session sends an
 *   error frame and closes with 1008, as the sources report. So do a voice or
 *   model the socket does not serve, and an output format the plan may not use.
 * - A generation holds a slot of the key's pool only while it generates; the
 *   model's `pools.<pool>.maxInFlight` counts sockets and HTTP requests alike.
 * - Time is the `Clock` of the fiber that runs the session (virtual under
 *   `TestClock` in process), randomness the model's seeded generator.
 *
 * @since 0.2.0
 */
import { Effect, type Queue } from "effect"
import * as Endpoints from "../client/Endpoints.ts"
import { minimumPlanForFormat, streamOutputFormats } from "../client/Models.ts"
import * as Realtime from "../client/Realtime.ts"
import { type Pool, pools as poolNames } from "../resilience/Plans.ts"
import { type Account, type Accounts, planAtLeast } from "./Accounts.ts"
import * as Catalog from "./Catalog.ts"
import { textRequest } from "./Checks.ts"
import type * as Counts from "./Counts.ts"
import { type LatencyModel, profileOf } from "./Generation.ts"
import type { Pools } from "./Pools.ts"
import type * as Prng from "./Prng.ts"
import * as RealtimeFaults from "./RealtimeFaults.ts"
import { type Query, readQuery } from "./RealtimeMessages.ts"
import * as Session from "./RealtimeSession.ts"

export type { Ending, Inbound, Peer } from "./RealtimeSession.ts"

/** Options of the real-time engine (`Simulator.Options.realtime`). */
export interface Options {
  /** Fault rates per generation. Default none. */
  readonly faults?: Partial<RealtimeFaults.RealtimeFaultRates> | undefined
  /** How long a `stall` stops the audio, in milliseconds. Default 5000. */
  readonly stallMs?: number | undefined
}

/** A change to the engine (the `realtime` field of `POST /_simulator/config`). */
export interface Patch {
  readonly faults?: Partial<RealtimeFaults.RealtimeFaultRates> | undefined
  readonly stallMs?: number | undefined
  /** One-shot faults, one per generation to come, in order. */
  readonly next?: ReadonlyArray<RealtimeFaults.RealtimeFault> | undefined
}

/** What the engine saw (the `realtime` field of the record). */
export interface Stats {
  readonly sessions: {
    readonly open: number
    readonly opened: number
    /** Ended sessions by close code: `1006` for a drop, the client's code when the client closed first. */
    readonly closedByCode: Readonly<Record<string, number>>
  }
  readonly contexts: { readonly open: number; readonly opened: number }
  readonly characters: { readonly received: number; readonly generated: number }
  readonly creditsCharged: number
  readonly generations: {
    readonly started: number
    readonly completed: number
    readonly refused: number
    /** Socket generations in flight per pool, now and at most (their slots are also in `pools`). */
    readonly inFlight: Readonly<Record<Pool, number>>
    readonly maxInFlight: Readonly<Record<Pool, number>>
  }
  readonly frames: {
    readonly received: number
    readonly audio: number
    readonly final: number
    readonly error: number
  }
  /** Error frames and error closes by error id. */
  readonly errors: Readonly<Record<string, number>>
  readonly faults: Readonly<Record<RealtimeFaults.RealtimeFault, number>>
  /** One-shot faults not yet taken. */
  readonly pendingFaults: ReadonlyArray<RealtimeFaults.RealtimeFault>
}

/** What a transport tells the engine of a handshake. */
export interface Handshake {
  /** The request URL: a path with its query, or an absolute URL (any scheme and host). */
  readonly url: string
  /** A handshake header by its lower-case name. */
  readonly header: (name: string) => string | null
}

/** The real-time engine of one model. */
export interface Engine {
  /** Whether `url` is one of the two endpoints (a transport refuses the handshake otherwise). */
  readonly accepts: (url: string) => boolean
  /** Runs one accepted connection until it ends, and sends its ending through `peer`. */
  readonly serve: (
    handshake: Handshake,
    peer: Session.Peer,
    inbound: Queue.Dequeue<Session.Inbound>
  ) => Effect.Effect<Session.Ending>
  readonly stats: () => Stats
  /** Clears the maxima (the counts are in the model's `Counts`). */
  readonly resetStats: () => void
  readonly configure: (patch: Patch) => void
  /** Ends every open session with a close 1001 (the server is going away): a server's shutdown runs it. */
  readonly closeAll: Effect.Effect<void>
}

const zeroPools = (): Record<Pool, number> => ({ standard: 0, flash: 0, stt: 0, music: 0 })

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

/** The connection's setup once its account is known: the voice, the model and the format checked. */
const setupOf = (latency: LatencyModel) => (query: Query, account: Account): Session.Setup | Session.Refusal => {
  if (Catalog.voiceOf(query.voiceId) === undefined) {
    return { error: "voice_id_does_not_exist", message: `A voice with the voice_id ${query.voiceId} was not found.` }
  }
  const { modelId, outputFormat: format } = query
  if (Realtime.unservedModels.includes(modelId)) {
    return {
      error: "unsupported_model",
      message: `The model ${modelId} is not available on the WebSocket endpoints; use the HTTP endpoints for it.`
    }
  }
  if (!Catalog.ttsModels.some((m) => m.model_id === modelId)) {
    return { error: "model_not_found", message: `A model with model ID ${modelId} does not exist.` }
  }
  if (!(streamOutputFormats as ReadonlyArray<string>).includes(format)) {
    return { error: "invalid_output_format", message: `The output format ${format} is not supported.` }
  }
  const needed = minimumPlanForFormat(format)
  if (needed !== undefined && !planAtLeast(account.plan, needed)) {
    return {
      error: "output_format_not_allowed",
      message: `Requested output format ${format} is only allowed for ${capitalize(needed)} tier and above.`
    }
  }
  const pool = Endpoints.poolOf(Endpoints.textToSpeechStream, modelId)
  return { account, modelId, pool, profile: profileOf(latency, pool, modelId), format }
}

/** The engine of a model, over its parts. */
export const make = (model: {
  readonly prng: Prng.Prng
  readonly accounts: Accounts
  readonly pools: Pools
  readonly counts: Counts.Counts
  readonly latency: LatencyModel
  readonly charsPerSecond: number
  readonly chunkSeconds: number
  readonly acceptAnyKey: boolean
  readonly options?: Options | undefined
}): Engine => {
  const { accounts, counts } = model
  const faults = RealtimeFaults.make({
    prng: model.prng,
    rates: model.options?.faults,
    stallMs: model.options?.stallMs
  })
  const live = { sessions: 0, contexts: 0, inFlight: zeroPools(), maxInFlight: zeroPools() }
  const enders = new Set<(ending: Session.Ending) => Effect.Effect<void>>()

  const authenticate = (key: string | undefined): Account | Session.Refusal => {
    if (key === undefined || key === "") {
      return {
        error: "needs_authorization",
        message: "Neither authorization header nor xi-api-key received, please provide one."
      }
    }
    const found = accounts.all.find((a) => a.key === key)
    if (found !== undefined) return found
    if (model.acceptAnyKey) {
      // A fresh account, as the HTTP face makes one (found keys never reach this: no answer is built).
      const made = accounts.authenticate(textRequest({
        method: "GET",
        url: "ws://elevenlabs.simulator/",
        header: (name) => (name === "xi-api-key" ? key : null),
        bodyText: ""
      }))
      if ("name" in made) return made
    }
    return { error: "invalid_api_key", message: "Invalid API key" }
  }

  const deps: Session.Deps = {
    env: {
      prng: model.prng,
      accounts,
      pools: model.pools,
      faults,
      counts,
      charsPerSecond: model.charsPerSecond,
      chunkSeconds: model.chunkSeconds,
      inFlight: (pool, delta) => {
        live.inFlight[pool] += delta
        if (live.inFlight[pool] > live.maxInFlight[pool]) live.maxInFlight[pool] = live.inFlight[pool]
      }
    },
    counts,
    authenticate,
    setupOf: setupOf(model.latency),
    contexts: (delta) => {
      live.contexts += delta
    },
    register: (end) => {
      enders.add(end)
      return () => {
        enders.delete(end)
      }
    }
  }

  const serve: Engine["serve"] = (handshake, peer, inbound) =>
    Effect.suspend(() => {
      const query = readQuery(handshake.url)
      if (query === undefined) return Effect.die(new Error(`not a real-time endpoint: ${handshake.url}`))
      const header = handshake.header("xi-api-key")
      const key = header !== null && header !== "" ? header : query.authorization
      live.sessions++
      return Session.run(deps, query, key, peer, inbound).pipe(Effect.ensuring(Effect.sync(() => {
        live.sessions--
      })))
    })

  const stats = (): Stats => {
    const r = counts.realtime
    return {
      sessions: { open: live.sessions, opened: r.sessionsOpened, closedByCode: { ...r.closedByCode } },
      contexts: { open: live.contexts, opened: r.contextsOpened },
      characters: { received: r.charactersReceived, generated: r.charactersGenerated },
      creditsCharged: r.creditsCharged,
      generations: {
        started: r.generationsStarted,
        completed: r.generationsCompleted,
        refused: r.generationsRefused,
        inFlight: { ...live.inFlight },
        maxInFlight: { ...live.maxInFlight }
      },
      frames: {
        received: r.framesReceived,
        audio: r.framesSent["audio"] ?? 0,
        final: r.framesSent["final"] ?? 0,
        error: r.framesSent["error"] ?? 0
      },
      errors: { ...r.errors },
      faults: { drop: r.faults["drop"] ?? 0, close1011: r.faults["close1011"] ?? 0, stall: r.faults["stall"] ?? 0 },
      pendingFaults: faults.pending()
    }
  }

  return {
    accepts: (url) => readQuery(url) !== undefined,
    serve,
    stats,
    resetStats: () => {
      for (const p of poolNames) live.maxInFlight[p] = live.inFlight[p]
    },
    configure: (patch) => {
      if (patch.faults !== undefined) faults.set(patch.faults)
      if (patch.stallMs !== undefined) faults.setStallMs(patch.stallMs)
      if (patch.next !== undefined) faults.trigger(patch.next)
    },
    closeAll: Effect.suspend(() =>
      Effect.forEach(
        [...enders],
        (end) => end({ _tag: "Close", code: 1001, reason: "The server is shutting down." }),
        { discard: true }
      )
    )
  }
}
