/**
 * The traffic-shape flags `simulate` and `load-test` share: the same names,
 * the same meaning, written once.
 *
 * @since 0.1.0
 */
import type { Option } from "effect"
import { Flag } from "effect/cli"
import * as Flags from "./flags.ts"

/** What the shared flags parse to. */
export interface RateInput {
  readonly rps: Option.Option<number>
  readonly startRps: Option.Option<number>
  readonly endRps: Option.Option<number>
  readonly bursts: Option.Option<number>
  readonly concurrency: Option.Option<number>
  readonly html: Option.Option<string>
}

/** The rate, burst, caller and report flags of a traffic run. */
export const rateFlags = {
  rps: Flag.Finite("rps").pipe(
    Flags.optional("Requests per second (steady), end rate (ramp-up), peak (diurnal).", "10, ramp-up 20; or --requests / --duration")
  ),
  startRps: Flag.Finite("start-rps").pipe(Flags.optional("Ramp-up start rate.", "1")),
  endRps: Flag.Finite("end-rps").pipe(Flags.optional("Ramp-up end rate.", "--rps, else 20")),
  bursts: Flag.Int("bursts").pipe(Flags.optional("Number of bursts for the burst pattern.", "1")),
  concurrency: Flag.Int("concurrency").pipe(Flags.optional("Callers at most at once.", "unbounded")),
  html: Flag.String("html").pipe(Flags.optional("Write a self-contained HTML report to FILE.", "no HTML report"))
} as const
