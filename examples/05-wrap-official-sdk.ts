/**
 * 05: the official `@elevenlabs/elevenlabs-js` SDK through the wrapper.
 *
 * Existing SDK calls keep their shape: each is passed, as a function, to
 * `resilient.run(...)`, which applies the same policies as the resilient
 * client (limiter with lanes and the adaptive limit, retries per error class
 * with the budget, breaker, deadline, quota reservation). The SDK is built
 * with `maxRetries: 0`: the wrapper's retries replace its loop. A burst of 40
 * converts goes out at once; the limiter keeps it within the plan, learning
 * the limit from the `withRawResponse()` headers. A call for a missing voice
 * shows the SDK's error, classified.
 *
 * Runs against a local ElevenLabs simulator (plan `creator`) by default; set
 * ELEVENLABS_API_KEY to use the real API (41 short Flash requests, about 700 credits).
 *
 *   node_modules/.bin/node examples/05-wrap-official-sdk.ts
 */
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
import { Effect, Redacted } from "effect"
import { isElevenLabsError } from "../src/client/Errors.ts"
import { makeResilientRunner } from "../src/resilience/WithResilience.ts"
import { flash, main, target, voice } from "./_shared.ts"

main(Effect.gen(function*() {
  const { mode, baseUrl, apiKey, simulator } = yield* target({ plan: "creator" })

  // ---- from here on, plain Promise code, as in an application that already uses the SDK ----
  const summary = yield* Effect.promise(async () => {
    const sdk = new ElevenLabsClient({ apiKey: Redacted.value(apiKey), baseUrl, maxRetries: 0 })
    const resilient = makeResilientRunner({
      apiKey, // only fingerprinted, to key the limiter and breaker
      limiter: { plan: "unknown", initialLimit: 2 }, // learn the plan from the response headers
      subscription: () => sdk.user.subscription.get() // lets the quota guard reserve credits
    })
    try {
      const texts = Array.from({ length: 40 }, (_, i) => `Notification number ${i} is ready.`)
      const audios = await Promise.all(texts.map((text) =>
        resilient.run(
          (signal) =>
            sdk.textToSpeech.convert(voice, { text, modelId: flash }, { abortSignal: signal }).withRawResponse(),
          { operation: "textToSpeech.convert", model: flash, characters: text.length, lane: "batch" }
        ).then(async ({ data }) => (await new Response(data).arrayBuffer()).byteLength)
      ))

      let notFound = "no error?"
      try {
        await resilient.run(() => sdk.textToSpeech.convert("no-such-voice", { text: "Hi", modelId: flash }), {
          operation: "textToSpeech.convert",
          model: flash,
          lane: "interactive"
        })
      } catch (e) {
        notFound = isElevenLabsError(e)
          ? `ElevenLabsError ${e.reason._tag} (${e.reason.status} ${
            e.reason.detailStatus ?? ""
          }) after ${e.attempts} attempt(s)`
          : `unexpected ${String(e)}`
      }

      const policies = await resilient.policies()
      const flashPool = await Effect.runPromise(policies.limiter.snapshot(policies.keyId, "flash"))
      return { audios, notFound, limit: flashPool.limit, ceiling: flashPool.ceiling }
    } finally {
      await resilient.dispose()
    }
  })

  console.log(`target: ${mode}`)
  console.log(
    `burst: ${summary.audios.length} SDK converts succeeded, ${
      summary.audios.reduce((a, b) => a + b, 0)
    } bytes of audio`
  )
  console.log(`learned flash limit: ${summary.limit} (server ceiling ${summary.ceiling ?? "unknown"})`)
  console.log(`missing voice: ${summary.notFound}`)
  if (simulator !== undefined) {
    const stats = yield* simulator.stats
    console.log(
      `server: ${
        stats.byDetailStatus["too_many_concurrent_requests"] ?? 0
      } too_many_concurrent_requests, at most ${stats.pools.flash.maxInFlight} of ${stats.pools.flash.limit} in flight, ${stats.creditsCharged} credits charged`
    )
  }
}))
