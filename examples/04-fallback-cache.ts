/**
 * 04: cached audio during an outage.
 *
 * With the cache on, every successful render is stored (content-addressed:
 * the text and the key never reach the disk, only a hash). When ElevenLabs
 * cannot answer, a request that was rendered before is served from the cache
 * and marked `meta.fallback = true`; a request never rendered still fails,
 * with its real reason.
 *
 * Runs against a local ElevenLabs simulator by default (the outage: every
 * request answers 503); set ELEVENLABS_API_KEY to use the real API (the
 * outage is then a refused connection; 3 short Flash renders, about 60 credits).
 *
 *   node_modules/.bin/node examples/04-fallback-cache.ts
 */
import { Effect } from "effect"
import { FetchHttpClient } from "effect/http"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ElevenLabs } from "../src/client/index.ts"
import { Resilient } from "../src/resilience/index.ts"
import { flash, main, target, voice } from "./_shared.ts"

const lines = ["Welcome back.", "Your order has shipped.", "Thank you for calling."]

main(Effect.gen(function*() {
  const { mode, baseUrl, apiKey, simulator } = yield* target({ plan: "pro" })
  // A file cache, so that a second client (the one that meets the outage) sees the same entries.
  const directory = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "elevenlabs-cache-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const clientAt = (url: string) =>
    Resilient.layer({
      apiKey,
      baseUrl: url,
      limiter: { plan: "unknown" },
      // Short backoffs: the outage is detected in well under a second.
      retry: { exponential: { base: "50 millis", maxRetries: 2 }, linear: { step: "50 millis", maxRetries: 2 } },
      cache: { store: { _tag: "file", directory }, maxEntries: 100 }
    })

  const speak = (text: string) =>
    ElevenLabs.ElevenLabs.use((client) => client.textToSpeech.convert(voice, { text, modelId: flash })).pipe(
      Effect.match({
        onSuccess: (r) =>
          r.meta.fallback === true
            ? `served from cache (meta.fallback = true, ${r.audio.byteLength} bytes)`
            : `rendered by ElevenLabs (${r.audio.byteLength} bytes)`,
        onFailure: (e) => `failed: ${e.reason._tag}`
      })
    )
  const render = (texts: ReadonlyArray<string>) =>
    Effect.forEach(texts, (t) => Effect.map(speak(t), (outcome) => `  "${t}": ${outcome}`))

  console.log(`target: ${mode}`)
  console.log("before the outage:")
  const before = yield* render(lines).pipe(
    Effect.provide(clientAt(baseUrl)),
    Effect.provide(FetchHttpClient.layer)
  )
  before.forEach((l) => console.log(l))

  // The outage.
  if (simulator !== undefined) yield* simulator.setFaults({ serviceUnavailable: 1 })
  const down = simulator !== undefined ? baseUrl : "http://127.0.0.1:9"
  console.log(
    simulator !== undefined
      ? "during the outage (every request answers 503):"
      : "during the outage (connection refused):"
  )
  const during = yield* render([...lines, "A sentence never rendered before."]).pipe(
    Effect.provide(clientAt(down)),
    Effect.provide(FetchHttpClient.layer)
  )
  during.forEach((l) => console.log(l))
  const served = during.filter((l) => l.includes("served from cache")).length
  const fresh = during[during.length - 1] ?? ""
  console.log(
    `summary: ${served} of ${lines.length} cached lines served during the outage; the new line ${
      fresh.includes("failed") ? `failed (${fresh.slice(fresh.indexOf("failed: ") + 8)})` : "did not fail?"
    }`
  )
}))
