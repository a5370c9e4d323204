/**
 * The simulator's injected faults: their rates, the seeded draw, and the
 * answers of those that answer (the 500 shapes and the 503 page).
 *
 * **Details**
 *
 * - `system_busy` is drawn before admission (it holds no slot,
 *   {@link Faults.drawSystemBusy}); every other fault at most once per admitted
 *   request ({@link Faults.draw}), in a fixed order over one draw, so a seed
 *   gives one run.
 * - Each fault is counted as it happens (`Stats.faults`).
 *
 * @since 0.1.0
 */
import { Stream } from "effect"
import type { Answers, Pending } from "./Answers.ts"
import * as Counts from "./Counts.ts"
import type * as Prng from "./Prng.ts"

/** The probability of each injected fault, per admitted request (0 to 1). */
export interface FaultRates {
  /** `429 system_busy` (drawn before admission; holds no slot). */
  readonly systemBusy: number
  /** `500` shape A: `{"detail":{"status":"something_went_wrong",...}}`. */
  readonly serverError: number
  /** `500` shape E: top-level `{"status":"internal_server_error",...}`. */
  readonly internalServerError: number
  /** `503` with an HTML body (a load-balancer page). */
  readonly serviceUnavailable: number
  /** The connection is reset before any response. */
  readonly connectionReset: number
  /** No headers ever (until the client gives up). */
  readonly hang: number
  /** Success headers, then the body stops half-way and the connection ends. */
  readonly streamCut: number
}

/** No faults. */
export const noFaults: FaultRates = {
  systemBusy: 0,
  serverError: 0,
  internalServerError: 0,
  serviceUnavailable: 0,
  connectionReset: 0,
  hang: 0,
  streamCut: 0
}

/**
 * The mix `--failure-rate R` stands for: R split as 40 % `system_busy`, 20 %
 * `500` shape A, 10 % `500` shape E, 10 % `503` HTML, 10 % reset, 10 % stream cut.
 * Hangs are left out because they stall a client for its whole timeout.
 */
export const faultMix = (rate: number): FaultRates => ({
  systemBusy: rate * 0.4,
  serverError: rate * 0.2,
  internalServerError: rate * 0.1,
  serviceUnavailable: rate * 0.1,
  connectionReset: rate * 0.1,
  hang: 0,
  streamCut: rate * 0.1
})

/** A fault drawn for an admitted request. */
export type Fault = Exclude<keyof FaultRates, "systemBusy">

/** A fault that is an answer (rather than a reset, a hang or a cut). */
export type AnsweringFault = "serverError" | "internalServerError" | "serviceUnavailable"

/** The draw order over one number: a seed's sequence depends on it. */
const order: ReadonlyArray<Fault> = [
  "serverError",
  "internalServerError",
  "serviceUnavailable",
  "connectionReset",
  "hang",
  "streamCut"
]

const unavailablePage = new TextEncoder().encode(
  "<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 503 (Service Unavailable)!!1</title><p><b>503.</b> <ins>That's an error.</ins><p>The service you requested is not available at this time.<p>Service error -27. <ins>That's all we know.</ins></html>\n"
)

/** The faults of one model. */
export interface Faults {
  readonly rates: () => FaultRates
  /** Replaces some rates (the others are kept). */
  readonly set: (rates: Partial<FaultRates>) => void
  /** Whether this request gets `429 system_busy` (draws only when the rate is above 0). */
  readonly drawSystemBusy: () => boolean
  /** At most one fault for an admitted request; a stream cut only when `allowCut`. */
  readonly draw: (allowCut: boolean) => Fault | undefined
  /** The answer of an answering fault. */
  readonly answer: (fault: AnsweringFault) => Pending
  /** Counts a fault (or `systemBusyLoad`) that happened. */
  readonly count: (fault: keyof FaultRates | "systemBusyLoad") => void
}

/** The faults of a model, over its generator and answers. */
export const make = (options: {
  readonly prng: Prng.Prng
  readonly rates: FaultRates
  readonly answers: Answers
  readonly counts: Counts.Counts
}): Faults => {
  const { answers, counts, prng } = options
  let rates = options.rates
  return {
    rates: () => rates,
    set: (patch) => {
      rates = { ...rates, ...patch }
    },
    drawSystemBusy: () => rates.systemBusy > 0 && prng.next() < rates.systemBusy,
    draw: (allowCut) => {
      const r = prng.next()
      let acc = 0
      for (const f of order) {
        if (f === "streamCut" && !allowCut) continue
        acc += rates[f]
        if (r < acc) return f
      }
      return undefined
    },
    answer: (fault) => {
      switch (fault) {
        case "serverError":
          return answers.detail(
            500,
            "something_went_wrong",
            "We are sorry, something went wrong. You are not charged for this request."
          )
        case "internalServerError":
          return answers.json(500, {
            status: "internal_server_error",
            message: "Internal Server error. All such crashes are reported to us automatically."
          })
        case "serviceUnavailable":
          answers.record(503, undefined)
          return {
            status: 503,
            headers: {
              ...answers.commonHeaders("text/html; charset=UTF-8"),
              "content-length": String(unavailablePage.length)
            },
            body: Stream.succeed(unavailablePage),
            whole: unavailablePage
          }
      }
    },
    count: (fault) => Counts.bump(counts.faults, fault)
  }
}
