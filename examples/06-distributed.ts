/**
 * 06: several processes, one ElevenLabs account, one plan: shared limits over Redis.
 *
 * Three worker processes each run the resilient stack sized for the WHOLE plan
 * (creator: 10 Flash requests at once). Alone, together they would send up to
 * 30 and collect concurrency 429s; with `redis: { url }` they share permits
 * (and the adaptive limit and breaker) and the server never sees more than 10.
 *
 * Uses `REDIS_URL` when set, otherwise starts a throwaway `redis-server`
 * (Debian's package) on a free loopback port. Runs against a local simulator
 * by default; set ELEVENLABS_API_KEY to use the real API (60 short Flash
 * requests: about 1,500 credits).
 *
 *   node_modules/.bin/node examples/06-distributed.ts
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Redacted } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ElevenLabs } from "../src/client/index.ts"
import { Resilient } from "../src/resilience/index.ts"
import { flash, main, target, voice } from "./_shared.ts"

const workers = 3
const requestsPerWorker = 20

/** One worker: 20 concurrent Flash requests through a stack that shares its limits over Redis. */
const worker = (name: string, baseUrl: string, apiKey: string, redisUrl: string) =>
  Effect.gen(function*() {
    const outcomes = yield* Effect.forEach(
      Array.from({ length: requestsPerWorker }, (_, i) => i),
      (i) =>
        ElevenLabs.ElevenLabs.use((client) =>
          client.textToSpeech.convert(voice, { text: `Worker ${name}, line ${i}. `.repeat(6), modelId: flash })
        ).pipe(Effect.match({ onSuccess: () => "ok", onFailure: (e) => e.reason._tag })),
      { concurrency: "unbounded" }
    ).pipe(
      Effect.provide(Resilient.layer({
        apiKey: Redacted.make(apiKey),
        baseUrl,
        limiter: { plan: "creator" },
        redis: { url: redisUrl, leaseTime: "10 seconds" }
      })),
      Effect.provide(NodeHttpClient.layerUndici)
    )
    console.log(JSON.stringify({ worker: name, outcomes }))
  })

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** `REDIS_URL`, or a redis-server of our own for the example's lifetime. */
const redisUrl = Effect.acquireRelease(
  Effect.promise(async () => {
    const given = process.env["REDIS_URL"]
    if (given !== undefined && given !== "") return { url: given, stop: () => {} }
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), "example-redis-"))
    const child = spawn("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir
    ], {
      stdio: "ignore"
    })
    await new Promise((resolve, reject) => {
      child.once(
        "error",
        () => reject(new Error("redis-server not found: set REDIS_URL or install Debian's redis-server"))
      )
      setTimeout(resolve, 300)
    })
    return {
      url: `redis://127.0.0.1:${port}`,
      stop: () => {
        child.kill("SIGTERM")
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }),
  (redis) => Effect.sync(redis.stop)
)

/** Runs this file as a worker process and collects its outcomes. */
const runWorker = (name: string, baseUrl: string, apiKey: string, redis: string) =>
  Effect.promise(() =>
    new Promise<ReadonlyArray<string>>((resolve, reject) => {
      const child = spawn(process.execPath, [import.meta.filename, "--worker", name], {
        env: { ...process.env, WORKER_BASE_URL: baseUrl, WORKER_API_KEY: apiKey, WORKER_REDIS_URL: redis },
        stdio: ["ignore", "pipe", "inherit"]
      })
      let out = ""
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()))
      child.on("exit", (code) => {
        const line = out.split("\n").find((l) => l.startsWith("{"))
        if (code !== 0 || line === undefined) return reject(new Error(`worker ${name} exited with ${code}`))
        resolve((JSON.parse(line) as { outcomes: ReadonlyArray<string> }).outcomes)
      })
    })
  )

if (process.argv[2] === "--worker") {
  const env = (name: string) => process.env[name] ?? ""
  main(worker(process.argv[3] ?? "?", env("WORKER_BASE_URL"), env("WORKER_API_KEY"), env("WORKER_REDIS_URL")))
} else {
  main(Effect.gen(function*() {
    const { apiKey, baseUrl, mode, simulator } = yield* target({ plan: "creator" })
    const redis = yield* redisUrl
    const names = Array.from({ length: workers }, (_, i) => String.fromCharCode(97 + i))
    const results = yield* Effect.forEach(names, (n) => runWorker(n, baseUrl, Redacted.value(apiKey), redis.url), {
      concurrency: "unbounded"
    })
    const all = results.flat()
    const ok = all.filter((o) => o === "ok").length
    console.log(`target: ${mode}`)
    console.log(`workers: ${workers} processes x ${requestsPerWorker} requests: ${ok} ok, ${all.length - ok} failed`)
    if (simulator !== undefined) {
      const stats = yield* simulator.stats
      console.log(
        `server: ${stats.byDetailStatus["too_many_concurrent_requests"] ?? 0} too_many_concurrent_requests, ` +
          `at most ${stats.pools.flash.maxInFlight} of ${stats.pools.flash.limit} in flight`
      )
    }
  }))
}
