/**
 * A worker process for the ResilientFetch tests (run with `process.execPath`,
 * not a test itself): the official SDK with `fetch: ResilientFetch.make(...)`.
 *
 * argv: <simulator url> <redis url or "-"> <calls> <mode: "close" | "no-close" | "runner">
 *
 * Makes `calls` Flash converts at once (plan `creator`, with the Redis entry
 * when given), prints `{"ok","failed"}` as JSON, then closes the fetch only
 * when told to: without `close()` the process must still exit by itself.
 * `runner`: the same calls through `WithResilience.makeResilientRunner`, never
 * disposed.
 */
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js"
import * as ResilientFetch from "../../src/resilience/ResilientFetch.ts"
import * as WithResilience from "../../src/resilience/WithResilience.ts"

const [url, redis, calls, close] = process.argv.slice(2) as [string, string, string, string]

const fetch = ResilientFetch.make({
  limiter: { plan: "creator" },
  quota: false,
  retry: { exponential: { base: "5 millis", cap: "40 millis" }, requeue: { step: "1 millis" } },
  ...(redis === "-" ? {} : { redis: { url: redis, leaseTime: "5 seconds" } })
})
const runner = close === "runner" ? WithResilience.makeResilientRunner({ limiter: { plan: "creator" } }) : undefined
const sdk = new ElevenLabsClient({
  apiKey: "sim-key",
  baseUrl: url,
  maxRetries: 0,
  ...(runner === undefined ? { fetch } : {})
})
const modelId = "eleven_flash_v2_5"
const one = (text: string) =>
  runner === undefined
    ? sdk.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text, modelId }).then((stream) =>
      new Response(stream).arrayBuffer()
    )
    : runner.run(
      (signal) => sdk.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text, modelId }, { abortSignal: signal }),
      { operation: "textToSpeech.convert", model: modelId, characters: text.length }
    ).then((stream) => new Response(stream).arrayBuffer())
const results = await Promise.allSettled(
  Array.from({ length: Number(calls) }, (_, i) => one(`Worker line ${i} ${process.pid}.`))
)
const failed = results.filter((r) => r.status === "rejected")
process.stdout.write(
  `${
    JSON.stringify({
      ok: results.length - failed.length,
      failed: failed.length,
      first: failed[0] === undefined ? undefined : String((failed[0] as PromiseRejectedResult).reason)
    })
  }\n`
)
if (close === "close") await fetch.close()
