/**
 * 07: the official `@elevenlabs/elevenlabs-js` SDK with `fetch: ResilientFetch.make(...)`.
 *
 * One line adopts the whole library: the SDK's calls stay exactly as its
 * documentation writes them, and each request goes through the policies
 * (limiter with lanes and the adaptive limit, the two 429s told apart, retries
 * with the budget, breaker, deadline, quota). A batch of 60 converts goes out
 * at once with `Promise.all`; a streamed call keeps its permit until its last
 * byte; a sound effect and a dialogue use the endpoints beyond TTS; a call the
 * local checks refuse never leaves; a missing voice comes back as the SDK's own
 * 404 error. It never calls `close()` (see docs/sdk.md, Lifecycle).
 *
 * Runs against a local ElevenLabs simulator (plan `creator`) by default; set
 * ELEVENLABS_API_KEY to use the real API (about 63 short requests, about 2,000 credits).
 *
 *   node_modules/.bin/node examples/07-sdk-resilient-fetch.ts
 */
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
import { Effect, Redacted } from "effect"
import { isElevenLabsError } from "../src/client/Errors.ts"
import * as ResilientFetch from "../src/resilience/ResilientFetch.ts"
import { flash, main, target, voice } from "./_shared.ts"

main(Effect.gen(function*() {
  const { mode, baseUrl, apiKey, simulator } = yield* target({ plan: "creator" })

  // ---- from here on, plain Promise code, as in an application that already uses the SDK ----
  const summary = yield* Effect.promise(async () => {
    const fetch = ResilientFetch.make({ limiter: { plan: "unknown", initialLimit: 2 } }) // learn the plan from the headers
    const elevenlabs = new ElevenLabsClient({ apiKey: Redacted.value(apiKey), baseUrl, maxRetries: 0, fetch })

    const texts = Array.from({ length: 60 }, (_, i) => `Notification number ${i} is ready.`)
    const batch = await Promise.all(
      texts.map((text) =>
        elevenlabs.textToSpeech.convert(voice, { text, modelId: flash }).then((s) => new Response(s).arrayBuffer())
      )
    )

    const stream = await elevenlabs.textToSpeech.stream(voice, { text: "Read as it arrives.", modelId: flash })
    const policies = await fetch.policies(Redacted.value(apiKey))
    const flashPool = () => Effect.runPromise(policies.limiter.snapshot(policies.keyId, "flash"))
    const heldWhileReading = (await flashPool()).inFlight
    const streamed = (await new Response(stream).arrayBuffer()).byteLength
    await new Promise((resolve) => setTimeout(resolve, 20))
    const heldAfter = (await flashPool()).inFlight

    const sound = await elevenlabs.textToSoundEffects.convert({ text: "A door creaks open", durationSeconds: 2 })
      .then((s) => new Response(s).arrayBuffer())
    const dialogue = await elevenlabs.textToDialogue.convert({
      inputs: [{ text: "Are we there yet?", voiceId: voice }, { text: "Almost.", voiceId: "AZnzlk1XvdvUeBnXmlld" }]
    }).then((s) => new Response(s).arrayBuffer())

    // A refused call rejects the fetch; the SDK then leaves its own request timer running until it fires
    // (`timeoutInSeconds`, 240 s by default: docs/sdk.md, Lifecycle), so this one sets a short one.
    const refused = await elevenlabs.textToSoundEffects.convert({ text: "thunder", durationSeconds: 45 }, {
      timeoutInSeconds: 2
    })
      .then(() => "sent?", (e: unknown) => {
        const ours = (e as { cause?: unknown }).cause
        return isElevenLabsError(ours)
          ? `${ours.reason._tag} (${ours.reason._tag === "InvalidRequest" ? ours.reason.field : ""}), not sent`
          : String(e)
      })
    const missing = await elevenlabs.textToSpeech.convert("no-such-voice", { text: "Hi", modelId: flash })
      .then(() => "found?", (e: unknown) => `the SDK's error, status ${(e as { statusCode?: number }).statusCode}`)
    return {
      batch,
      streamed,
      heldWhileReading,
      heldAfter,
      sound: sound.byteLength,
      dialogue: dialogue.byteLength,
      refused,
      missing,
      limit: (await flashPool()).limit
    }
  })

  console.log(`target: ${mode}`)
  console.log(
    `batch: ${summary.batch.length} SDK converts succeeded, ${
      summary.batch.reduce((a, b) => a + b.byteLength, 0)
    } bytes of audio`
  )
  console.log(
    `stream: ${summary.streamed} bytes; permits held while reading ${summary.heldWhileReading}, after the last byte ${summary.heldAfter}`
  )
  console.log(`beyond TTS: sound effect ${summary.sound} bytes, dialogue ${summary.dialogue} bytes`)
  console.log(`refused locally: ${summary.refused}`)
  console.log(`missing voice: ${summary.missing}`)
  console.log(`learned flash limit: ${summary.limit}`)
  if (simulator !== undefined) {
    const stats = yield* simulator.stats
    console.log(
      `server: ${
        stats.byDetailStatus["too_many_concurrent_requests"] ?? 0
      } too_many_concurrent_requests, at most ${stats.pools.flash.maxInFlight} of ${stats.pools.flash.limit} in flight`
    )
  }
  // No close(): a process exits once its calls are done (docs/sdk.md, Lifecycle).
}))
