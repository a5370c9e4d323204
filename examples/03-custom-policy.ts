/**
 * 03: a custom policy from a JSON configuration.
 *
 * The configuration below (the same form as an `elevenlabs.json` file, see
 * docs/configuration.md) sets decorrelated jitter on a short exponential
 * backoff, a tight retry budget and a quick breaker. It is validated by
 * `ResilienceConfig` (unknown keys, bad durations and secrets are refused)
 * and turned into the `Resilient` layer's options. Then three phases:
 * 10 % `system_busy` (retried), a full outage (the breaker opens and calls
 * fail fast), and recovery (a half-open probe closes the breaker).
 *
 * Runs against a local ElevenLabs simulator by default; set ELEVENLABS_API_KEY
 * to use the real API (faults cannot be injected there, so only the first
 * phase runs, without faults: 30 short Flash requests, about 500 credits).
 *
 *   node_modules/.bin/node examples/03-custom-policy.ts
 */
import { Duration, Effect, PubSub } from "effect"
import { FetchHttpClient } from "effect/http"
import { ElevenLabs } from "../src/client/index.ts"
import { ResilienceConfig, Resilient } from "../src/resilience/index.ts"
import { flash, main, target, voice } from "./_shared.ts"

const json = `{
  "concurrency": { "plan": "pro" },
  "retry": {
    "exponential": { "base": "40 millis", "factor": 2, "cap": "400 millis", "maxRetries": 4, "jitter": "decorrelated" },
    "linear": { "step": "40 millis", "maxRetries": 2 }
  },
  "budget": { "ratio": 0.2, "window": "10 seconds", "minRetriesInFlight": 3 },
  "breaker": { "policy": "consecutive", "failures": 3, "openDuration": "500 millis" },
  "timeouts": { "deadline": "5 seconds" }
}`

main(Effect.gen(function*() {
  const { mode, baseUrl, apiKey, simulator } = yield* target({
    plan: "pro",
    faults: { systemBusy: 0.1 },
    latency: { flash: { ttfbMs: 30, msPerUnit: 0.5, jitter: 0.2 } }
  })

  // Any problem (a typo, a negative duration, a key pasted into the file) fails here, with its path.
  const config = yield* ResilienceConfig.fromRaw({ ...JSON.parse(json), baseUrl }, "examples/03 inline config")
  const options = ResilienceConfig.toResilientOptions(config, apiKey)

  const tally = (outcomes: ReadonlyArray<string>) => {
    const counts = new Map<string, number>()
    for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1)
    return [...counts].map(([k, n]) => `${n} ${k}`).join(", ")
  }

  const program = Effect.gen(function*() {
    const client = yield* ElevenLabs.ElevenLabs
    const { retries, breaker } = yield* Resilient.Resilience
    const seen = yield* PubSub.subscribe(retries)
    const breakerState = breaker === undefined
      ? Effect.succeed("off")
      : Effect.map(Effect.orDie(breaker.gauge("flash")), (g) => ["closed", "half-open", "open"][g] ?? "?")
    const call = (text: string) =>
      client.textToSpeech.convert(voice, { text, modelId: flash }).pipe(
        Effect.match({ onSuccess: () => "ok", onFailure: (e) => e.reason._tag })
      )
    const batch = (prefix: string, n: number) =>
      Effect.forEach(Array.from({ length: n }, (_, i) => `${prefix} ${i}.`), call, { concurrency: 4 })

    const busy = yield* batch("Busy hour line", 30)
    const busyRetries = yield* PubSub.takeUpTo(seen, 1000)
    console.log(`target: ${mode}`)
    console.log(`phase 1 (${mode === "simulator" ? "10 % system_busy" : "no injected faults"}): ${tally(busy)}`)
    console.log(
      `  retries: ${busyRetries.length} (${
        busyRetries.filter((e) => e.reason === "SystemBusy").length
      } after system_busy), delays ${
        busyRetries.map((e) => Math.round(Duration.toMillis(e.delay))).slice(0, 8).join(", ") || "-"
      }${busyRetries.length > 8 ? ", ..." : ""} ms (decorrelated jitter)`
    )
    if (simulator === undefined) return

    yield* simulator.setFaults({ systemBusy: 0, serverError: 1 })
    const outage = yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => `Outage line ${i}.`), call)
    const reached = (yield* simulator.stats).faults["serverError"] ?? 0
    console.log(`phase 2 (every request answers 500): ${tally(outage)}; breaker ${yield* breakerState}`)
    console.log(`  only ${reached} requests reached the server: after 3 failed attempts the rest failed fast`)

    yield* simulator.setFaults({ serverError: 0 })
    yield* Effect.sleep("600 millis")
    // One at a time: the first call is the half-open probe; its success closes the breaker.
    const recovered = yield* Effect.forEach(Array.from({ length: 6 }, (_, i) => `Recovered line ${i}.`), call)
    console.log(`phase 3 (faults cleared, open time passed): ${tally(recovered)}; breaker ${yield* breakerState}`)
    const stats = yield* simulator.stats
    console.log(`server: ${stats.requests} requests seen, faults ${JSON.stringify(stats.faults)}`)
  })

  yield* program.pipe(Effect.provide(Resilient.layer(options)), Effect.provide(FetchHttpClient.layer))
}))
