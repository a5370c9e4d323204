/**
 * The traffic-shape flags `simulate` and `load-test` share: the same names,
 * the same meaning, written once.
 *
 * @since 0.1.0
 */
import type { Option } from "effect"
import { Flag } from "effect/cli"

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
  rps: Flag.Finite("rps").pipe(Flag.optional, Flag.withDescription("Requests per second (steady), end rate (ramp-up), peak (diurnal).")),
  startRps: Flag.Finite("start-rps").pipe(Flag.optional, Flag.withDescription("Ramp-up start rate (default 1).")),
  endRps: Flag.Finite("end-rps").pipe(Flag.optional, Flag.withDescription("Ramp-up end rate (default --rps or 20).")),
  bursts: Flag.Int("bursts").pipe(Flag.optional, Flag.withDescription("Number of bursts for the burst pattern (default 1).")),
  concurrency: Flag.Int("concurrency").pipe(Flag.optional, Flag.withDescription("Callers at most at once (default unbounded).")),
  html: Flag.String("html").pipe(Flag.optional, Flag.withDescription("Write a self-contained HTML report to FILE."))
} as const
