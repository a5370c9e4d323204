import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Client from "../../src/client/ElevenLabs.ts"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import type { ResilientOptions } from "../../src/resilience/ResilientOptions.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { runVirtual } from "../utils/virtualTime.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const apiKey = Redacted.make("sim-key")

/** The resilient client over the in-process simulator, both exposed. */
const stack = (sim: Simulator.Options, options: Omit<ResilientOptions, "apiKey"> = {}) =>
  Resilient.layer({ apiKey, ...options }).pipe(Layer.provideMerge(InProcess.layerSimulated(sim)))

const tts = (text: string, model = "eleven_flash_v2_5") =>
  Client.ElevenLabs.use((c) => c.textToSpeech.convert(voice, { text, modelId: model }))

const settle = <A>(self: Effect.Effect<A, ElevenLabsError>) =>
  Effect.match(self, { onSuccess: () => "ok" as const, onFailure: (e) => e.reason._tag })

describe("Resilient", () => {
  it.effect("a burst of 300 Flash requests on pro: no concurrency 429 reaches the server or the caller", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const outcomes = yield* runVirtual(
        Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) => settle(tts(`line ${i} `.repeat(4))), {
          concurrency: "unbounded"
        })
      )
      const stats = yield* sim.stats
      assert.strictEqual(outcomes.filter((o) => o === "ok").length, 300)
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      assert.strictEqual(stats.pools.flash.maxInFlight, 20)
    }).pipe(Effect.provide(stack({ seed: 3, plan: "pro" }, { limiter: { plan: "pro" } }))))

  it.effect("an unknown plan is learned from the answers: few 429s, none reach the caller", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const outcomes = yield* runVirtual(
        Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => settle(tts(`text ${i} `.repeat(3))), {
          concurrency: "unbounded"
        })
      )
      const stats = yield* sim.stats
      assert.deepStrictEqual(outcomes.filter((o) => o !== "ok"), [])
      assert.isAtMost(stats.pools.flash.maxInFlight, 10)
      assert.isAtMost(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 20)
    }).pipe(Effect.provide(stack({ seed: 4, plan: "creator" }, { limiter: { plan: "unknown", initialLimit: 4 } }))))
})
