/**
 * The faults of the real-time sockets: what can go wrong in the middle of a
 * generation, drawn from the model's seeded generator at a configured rate,
 * or triggered once on demand.
 *
 * **Details**
 *
 * - Three faults, each acting after some but not all of a generation's audio
 *   frames have gone out (half of them, rounded down, at least one):
 *   `drop` ends the connection without a close frame (the client sees 1006),
 *   `close1011` closes it with 1011, `stall` stops sending audio for
 *   {@link RealtimeFaults.stallMs} and then goes on.
 * - One-shot triggers ({@link RealtimeFaults.trigger}) are taken first, one per
 *   generation, in the order given; otherwise one number is drawn per
 *   generation, and only when a rate is above 0 (a run without socket faults
 *   draws nothing, so it leaves the HTTP face's sequence as it was).
 *
 * @since 0.2.0
 */
import type * as Prng from "./Prng.ts"

/** The probability of each fault, per generation (0 to 1). */
export interface RealtimeFaultRates {
  /** The connection ends mid-utterance with no close frame (1006 at the client). */
  readonly drop: number
  /** The server closes with 1011 mid-utterance. */
  readonly close1011: number
  /** The audio stops for `stallMs`, then resumes. */
  readonly stall: number
}

/** The faults, in draw order. */
export const realtimeFaults = ["drop", "close1011", "stall"] as const

/** A fault of a generation. */
export type RealtimeFault = (typeof realtimeFaults)[number]

/** No faults. */
export const noRealtimeFaults: RealtimeFaultRates = { drop: 0, close1011: 0, stall: 0 }

/** Default length of a stall, in milliseconds. */
export const defaultStallMs = 5_000

/** The socket faults of one model. */
export interface RealtimeFaults {
  readonly rates: () => RealtimeFaultRates
  /** Replaces some rates (the others are kept). */
  readonly set: (rates: Partial<RealtimeFaultRates>) => void
  readonly stallMs: () => number
  readonly setStallMs: (ms: number) => void
  /** Queues one-shot faults: each of the next generations takes one, in order. */
  readonly trigger: (faults: ReadonlyArray<RealtimeFault>) => void
  /** One-shot faults not yet taken. */
  readonly pending: () => ReadonlyArray<RealtimeFault>
  /** The fault of a generation about to start, if any. */
  readonly draw: () => RealtimeFault | undefined
}

/** The socket faults of a model, over its generator. */
export const make = (options: {
  readonly prng: Prng.Prng
  readonly rates?: Partial<RealtimeFaultRates> | undefined
  readonly stallMs?: number | undefined
}): RealtimeFaults => {
  let rates: RealtimeFaultRates = { ...noRealtimeFaults, ...options.rates }
  let stallMs = options.stallMs ?? defaultStallMs
  const next: Array<RealtimeFault> = []
  return {
    rates: () => rates,
    set: (patch) => {
      rates = { ...rates, ...patch }
    },
    stallMs: () => stallMs,
    setStallMs: (ms) => {
      stallMs = Math.max(0, ms)
    },
    trigger: (faults) => {
      next.push(...faults)
    },
    pending: () => next.slice(),
    draw: () => {
      const once = next.shift()
      if (once !== undefined) return once
      if (rates.drop <= 0 && rates.close1011 <= 0 && rates.stall <= 0) return undefined
      const r = options.prng.next()
      let acc = 0
      for (const f of realtimeFaults) {
        acc += rates[f]
        if (r < acc) return f
      }
      return undefined
    }
  }
}
