/**
 * A worker process for the live-configuration tests (run with `process.execPath`, not a test itself): a
 * `Resilient.layer` stack with the Redis entry and a live Redis source, under load until SIGTERM.
 *
 * argv: <simulator url> <redis url> <api key> <concurrent callers>
 *
 * Prints `READY` once the stack runs, then a line per version: `APPLIED <version> <epoch ms>` or
 * `REFUSED <version>`, and on SIGTERM `DONE {"ok","failed"}`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Clock, Deferred, Effect, Fiber, Layer, Redacted, Stream } from "effect"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"

const [url, redisUrl, key, callers] = process.argv.slice(2) as [string, string, string, string]

const stack = Resilient.layer({
  apiKey: Redacted.make(key),
  baseUrl: url,
  limiter: { plan: "pro" },
  quota: false,
  retry: { exponential: { base: "5 millis", cap: "40 millis", maxRetries: 1 }, requeue: { step: "1 millis" } },
  redis: { url: redisUrl, leaseTime: "5 seconds" },
  live: { source: { _tag: "redis", poll: "500 millis" } }
}).pipe(Layer.provide(NodeHttpClient.layerUndici))

const program = Effect.gen(function*() {
  const client = yield* Client.ElevenLabs
  const resilience = yield* Resilient.Resilience
  const live = resilience.live!
  const counts = { ok: 0, failed: 0 }
  const stop = yield* Deferred.make<void>()
  yield* live.changes.pipe(
    Stream.runForEach((s) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          if (s.last === "refused") {
            process.stdout.write(`REFUSED ${s.refused?.version}\n`)
          } else {
            process.stdout.write(`APPLIED ${s.version} ${now}\n`)
          }
        }))
    ),
    Effect.forkChild
  )
  // Each text its own: identical calls in flight would be coalesced into one request.
  let n = 0
  const text = () => `A sentence of about one hundred characters, spoken by a live configuration worker: ${n++}.`
  const caller = Effect.forever(
    Effect.suspend(() =>
      client.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text: text(), modelId: "eleven_flash_v2_5" })
    ).pipe(
      Effect.matchEffect({
        onSuccess: () => Effect.sync(() => counts.ok++),
        onFailure: () => Effect.andThen(Effect.sync(() => counts.failed++), Effect.sleep("20 millis"))
      })
    )
  )
  const fibers = yield* Effect.forEach(
    Array.from({ length: Number(callers) }),
    () => Effect.forkChild(caller)
  )
  process.stdout.write("READY\n")
  process.once("SIGTERM", () => Deferred.doneUnsafe(stop, Effect.void))
  yield* Deferred.await(stop)
  yield* Effect.forEach(fibers, Fiber.interrupt, { discard: true })
  process.stdout.write(`DONE ${JSON.stringify(counts)}\n`)
})

await Effect.runPromise(program.pipe(Effect.provide(stack), Effect.scoped))
process.exit(0)
