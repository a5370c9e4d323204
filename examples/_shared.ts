/**
 * What every example shares: where to send requests, and how to run.
 *
 * - Without `ELEVENLABS_API_KEY`, an ElevenLabs simulator (the project's own,
 *   `src/simulator/`) is started on a free loopback port for the example's
 *   lifetime, with the key `sim-key`.
 * - With `ELEVENLABS_API_KEY` set, the real API is used
 *   (`ELEVENLABS_BASE_URL` overrides `https://api.elevenlabs.io`). That spends
 *   credits: each example says roughly how many.
 *
 * Not an example itself (the leading underscore keeps it out of the numbered list).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Redacted, References, type Scope } from "effect"
import * as Server from "../src/simulator/Server.ts"
import type * as Simulator from "../src/simulator/Simulator.ts"

/** A premade voice that exists in the real API and the simulator ("Rachel"). */
export const voice = "21m00Tcm4TlvDq8ikWAM"

/** The fastest model, billed at half a credit per character. */
export const flash = "eleven_flash_v2_5"

/** Where an example sends its requests. */
export interface Target {
  readonly mode: "simulator" | "api"
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
  /** The simulator, to inject faults and read its stats; `undefined` against the real API. */
  readonly simulator: Simulator.Service | undefined
}

/** The real API when `ELEVENLABS_API_KEY` is set, else a simulator started in the current scope. */
export const target = (simulator: Server.Options = {}): Effect.Effect<Target, never, Scope.Scope> =>
  Effect.gen(function*() {
    const key = process.env["ELEVENLABS_API_KEY"]
    if (key !== undefined && key !== "") {
      return {
        mode: "api",
        baseUrl: process.env["ELEVENLABS_BASE_URL"] ?? "https://api.elevenlabs.io",
        apiKey: Redacted.make(key),
        simulator: undefined
      } satisfies Target
    }
    const running = yield* Effect.orDie(Server.serve({ port: 0, seed: 42, ...simulator }))
    return { mode: "simulator", baseUrl: running.url, apiKey: Redacted.make("sim-key"), simulator: running.simulator }
  })

/** Runs an example: scoped, library logs above warnings only (the summary is the output), exit code 1 on failure. */
export const main = <E>(program: Effect.Effect<void, E, Scope.Scope>): void =>
  NodeRuntime.runMain(
    program.pipe(Effect.scoped, Effect.provideService(References.MinimumLogLevel, "Error"))
  )

/** Milliseconds with no decimals, for summaries. */
export const ms = (n: number): string => `${Math.round(n)} ms`

/** The median of some numbers (0 for none). */
export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return 0
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}
