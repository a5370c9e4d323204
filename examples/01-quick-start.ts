/**
 * 01: resilient text to speech in a few lines.
 *
 * Runs against a local ElevenLabs simulator by default; set ELEVENLABS_API_KEY
 * to use the real API (one short Flash request: about 30 credits).
 *
 *   node_modules/.bin/node examples/01-quick-start.ts
 */
import { Effect } from "effect"
import { FetchHttpClient } from "effect/http"
import { ElevenLabs } from "../src/client/index.ts"
import { Resilient } from "../src/resilience/index.ts"
import { flash, main, target, voice } from "./_shared.ts"

main(Effect.gen(function*() {
  const { mode, baseUrl, apiKey } = yield* target()

  // The resilient client provides the same `ElevenLabs` service as the plain one:
  // limiter, retries, breaker, quota guard and deadline are all on by default.
  const program = Effect.gen(function*() {
    const client = yield* ElevenLabs.ElevenLabs
    return yield* client.textToSpeech.convert(voice, {
      text: "Hello from a resilient ElevenLabs client.",
      modelId: flash
    })
  })

  const { audio, contentType, meta } = yield* program.pipe(
    Effect.provide(Resilient.layer({ apiKey, baseUrl, limiter: { plan: "unknown" } })),
    Effect.provide(FetchHttpClient.layer)
  )

  console.log(`target: ${mode}`)
  console.log(`audio: ${audio.byteLength} bytes of ${contentType}`)
  console.log(`request-id: ${meta.requestId ?? "(none)"}, credits charged: ${meta.characterCost ?? "(not reported)"}`)
  console.log(
    `concurrency: ${meta.currentConcurrentRequests ?? "?"} in flight of ${
      meta.maximumConcurrentRequests ?? "?"
    } allowed`
  )
}))
