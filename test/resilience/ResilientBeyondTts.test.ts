/**
 * The `Resilient` composition's operations beyond TTS over the in-process
 * simulator (virtual time): each through the pipeline in its row's pool, the
 * credits reserved where they are known before the call, local refusals typed
 * and never sent, stream permits held to the stream's end.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted, Stream } from "effect"
import * as Client from "../../src/client/ElevenLabs.ts"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { runVirtual } from "../utils/virtualTime.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const other = "AZnzlk1XvdvUeBnXmlld"
/** Raw bytes the simulator reads as 16 kHz s16le: 32,000 a second. */
const seconds = (n: number) => new Uint8Array(32_000 * n)

const stack = (sim: Simulator.Options) =>
  Resilient.layer({ apiKey: Redacted.make("sim-key"), limiter: { plan: "pro" } }).pipe(
    Layer.provideMerge(InProcess.layerSimulated(sim))
  )

const refusal = <A, R>(self: Effect.Effect<A, ElevenLabsError, R>) =>
  Effect.match(self, {
    onSuccess: () => "ok",
    onFailure: (e) => e.reason._tag === "InvalidRequest" ? `InvalidRequest ${e.reason.field}` : e.reason._tag
  })

describe("Resilient: the endpoints beyond TTS", () => {
  it.effect("every operation answers through the pipeline; streams give their permit back at their end", () =>
    Effect.gen(function*() {
      const el = yield* Client.ElevenLabs
      const { keyId, limiter } = yield* Resilient.Resilience
      const inputs = [{ text: "Hello there.", voiceId: voice }, { text: "General Kenobi.", voiceId: other }]
      const bytes = yield* runVirtual(Effect.scoped(Effect.gen(function*() {
        const sizes = [
          (yield* el.speechToSpeech.convert(voice, { audio: seconds(1) })).audio.byteLength,
          (yield* el.textToSoundEffects.convert({ text: "A door creaks", durationSeconds: 2 })).audio.byteLength,
          (yield* el.textToDialogue.convert({ inputs })).audio.byteLength,
          (yield* el.audioIsolation.convert({ audio: seconds(1) })).audio.byteLength
        ]
        for (
          const open of [
            el.speechToSpeech.stream(voice, { audio: seconds(1) }),
            el.textToDialogue.stream({ inputs }),
            el.audioIsolation.stream({ audio: seconds(1) })
          ]
        ) {
          const s = yield* open
          assert.strictEqual(
            (yield* limiter.snapshot(keyId, "standard")).inFlight,
            1,
            "held while the stream is unread"
          )
          sizes.push(yield* Stream.runFold(s.audio, () => 0, (n, chunk) => n + chunk.byteLength))
          assert.strictEqual((yield* limiter.snapshot(keyId, "standard")).inFlight, 0, "given back at the stream's end")
        }
        return sizes
      })))
      for (const n of bytes) assert.isAbove(n, 0)
      const sim = yield* Simulator.Simulator
      // The seven, and the quota guard's read of the subscription.
      assert.strictEqual((yield* sim.stats).byStatus["200"], 8)
    }).pipe(Effect.provide(stack({ seed: 1, plan: "pro" }))))

  it.effect("dialogue and sound effects with a duration reserve their credits; local refusals are typed and never sent", () =>
    Effect.gen(function*() {
      const el = yield* Client.ElevenLabs
      const { quota } = yield* Resilient.Resilience
      const sim = yield* Simulator.Simulator
      yield* quota!.refresh
      const before = (yield* quota!.status).used!
      yield* runVirtual(el.textToSoundEffects.convert({ text: "Rain on a roof", durationSeconds: 2 }))
      // 40 credits a second of a set duration: the published rate (docs/api-facts.md §5.6).
      assert.strictEqual((yield* quota!.status).used! - before, 80)
      const refusals = yield* Effect.all([
        refusal(el.textToSoundEffects.convert({ text: "rain", durationSeconds: 31 })),
        refusal(el.textToDialogue.convert({ inputs: [] })),
        refusal(el.speechToSpeech.convert("bad voice!", { audio: seconds(1) })),
        refusal(el.audioIsolation.convert({ audio: new Uint8Array() }))
      ])
      assert.deepStrictEqual(refusals, [
        "InvalidRequest durationSeconds",
        "InvalidRequest inputs",
        "InvalidRequest voiceId",
        "InvalidRequest audio"
      ])
      assert.strictEqual((yield* sim.stats).requests, 2, "the subscription read and the one sound effect")
    }).pipe(Effect.provide(stack({ seed: 2, plan: "pro" }))))
})
