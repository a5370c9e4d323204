/**
 * 02: interactive and batch work sharing one plan.
 *
 * A batch of 60 Flash requests floods the pool (10 concurrent on `creator`);
 * while it runs, 8 interactive requests arrive one after another. The limiter
 * serves the `interactive` lane first, so each interactive request waits for
 * at most one free slot instead of the whole batch queue.
 *
 * Runs against a local ElevenLabs simulator (plan `creator`) by default; set
 * ELEVENLABS_API_KEY to use the real API (68 short Flash requests: about 1,000
 * credits; the plan's limit is then learned from the response headers).
 *
 *   node_modules/.bin/node examples/02-priority-lanes.ts
 */
import { Duration, Effect, Fiber } from "effect"
import { FetchHttpClient } from "effect/http"
import { ElevenLabs } from "../src/client/index.ts"
import { Resilient } from "../src/resilience/index.ts"
import { flash, main, median, ms, target, voice } from "./_shared.ts"

main(Effect.gen(function*() {
  const { mode, baseUrl, apiKey, simulator } = yield* target({ plan: "creator" })
  const plan = mode === "simulator" ? "creator" : "unknown"

  const speak = (text: string, lane: "interactive" | "batch") =>
    ElevenLabs.ElevenLabs.use((client) => client.textToSpeech.convert(voice, { text, modelId: flash })).pipe(
      Resilient.withCallOptions({ lane }),
      Effect.timed,
      Effect.map(([elapsed]) => Duration.toMillis(elapsed))
    )

  const program = Effect.gen(function*() {
    // The batch: 60 chapters' worth of short lines, all submitted at once.
    const batch = yield* Effect.forEach(
      Array.from({ length: 60 }, (_, i) => i),
      (i) => speak(`Chapter line number ${i}, read aloud for the audiobook.`, "batch"),
      { concurrency: "unbounded" }
    ).pipe(Effect.forkChild)

    // Interactive requests arrive while the batch queue is full.
    yield* Effect.sleep("100 millis")
    const interactive: Array<number> = []
    for (let i = 0; i < 8; i++) {
      interactive.push(yield* speak(`Reply ${i} to the user.`, "interactive"))
    }
    const batchLatencies = yield* Fiber.join(batch)
    return { interactive, batch: batchLatencies }
  })

  const { interactive, batch } = yield* program.pipe(
    Effect.provide(Resilient.layer({ apiKey, baseUrl, limiter: { plan } })),
    Effect.provide(FetchHttpClient.layer)
  )

  console.log(`target: ${mode} (limiter plan: ${plan})`)
  console.log(`batch: ${batch.length} requests, median ${ms(median(batch))}, slowest ${ms(Math.max(...batch))}`)
  console.log(
    `interactive: ${interactive.length} requests during the batch, median ${ms(median(interactive))}, slowest ${
      ms(Math.max(...interactive))
    }`
  )
  if (simulator !== undefined) {
    const stats = yield* simulator.stats
    console.log(
      `server: ${stats.byStatus["200"] ?? 0} answers 200 (TTS and the quota guard's subscription read), ${
        stats.byDetailStatus["too_many_concurrent_requests"] ?? 0
      } too_many_concurrent_requests, at most ${stats.pools.flash.maxInFlight} of ${stats.pools.flash.limit} in flight`
    )
  }
  console.log(
    median(interactive) < median(batch)
      ? "result: interactive requests jumped the batch queue"
      : "result: interactive requests were NOT faster than the batch this run"
  )
}))
