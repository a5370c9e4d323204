import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Redis } from "effect/persistence"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
import { type Run, runNode } from "../utils/childWorker.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"
import { layerAll } from "./layers.ts"

const workerPath = fileURLToPath(new URL("./permitWorker.ts", import.meta.url))

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
})

const runWorker = (args: ReadonlyArray<string | number>): Run => runNode([workerPath], args)

const inRedis = <A, E>(
  f: (permits: RedisPermits.RedisPermits["Service"], redis: Redis.Redis["Service"]) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    return yield* f(yield* RedisPermits.RedisPermits, yield* Redis.Redis)
  }).pipe(Effect.scoped, Effect.provide(layerAll(server.url)))

describe("RedisPermits across processes", () => {
  it.live("4 processes never exceed the limit, each completes its share, every permit returns", () =>
    Effect.gen(function*() {
      const key = "multi"
      const limit = 3
      const iterations = 12
      yield* inRedis((permits) => permits.setLimit(key, "standard", limit))
      const runs = [1, 2, 3, 4].map((w) =>
        runWorker([server.url, key, "standard", `w${w}`, "work", iterations, 20, 1500])
      )
      // All four connected, then go: fairness is about service, not about who started first.
      yield* inRedis((_, redis) =>
        Effect.gen(function*() {
          for (let i = 0; i < 1000; i++) {
            if (Number(yield* redis.send<string | null>("GET", `test:{${key}}:ready`)) === 4) break
            yield* Effect.sleep("10 millis")
          }
          yield* redis.send("SET", `test:{${key}}:go`, "1")
        })
      )
      const results = yield* Effect.promise(() => Promise.all(runs.map((r) => r.exit)))
      for (const r of results) assert.strictEqual(r.code, 0, r.stderr)
      const reports = results.map((r) => JSON.parse(r.stdout.trim()) as { worker: string; done: number })
      assert.deepStrictEqual(reports.map((r) => r.done), [iterations, iterations, iterations, iterations])
      yield* inRedis((permits, redis) =>
        Effect.gen(function*() {
          const max = Number(yield* redis.send<string>("GET", `test:{${key}}:max`))
          assert.isAtMost(max, limit)
          assert.isAtLeast(max, 2)
          // Fairness: in the first half of all completions, every process already has a fair part.
          const done = yield* redis.send<Array<string>>("LRANGE", `test:{${key}}:done`, "0", "-1")
          assert.strictEqual(done.length, 4 * iterations)
          const firstHalf = done.slice(0, done.length / 2)
          for (const w of ["w1", "w2", "w3", "w4"]) {
            assert.isAtLeast(firstHalf.filter((x) => x === w).length, iterations / 4, `${w} starved: ${done.join(",")}`)
          }
          const snap = yield* permits.snapshot(key, "standard")
          assert.strictEqual(snap.held, 0)
          assert.strictEqual(snap.queued, 0)
        })
      )
    }))

  it.live("a SIGKILLed process's permits come back within the lease", () =>
    Effect.gen(function*() {
      const key = "killed"
      yield* inRedis((permits) => permits.setLimit(key, "flash", 2))
      const holder = runWorker([server.url, key, "flash", "h", "hold", 2, 0, 1200])
      yield* Effect.promise(() => holder.line("HELD"))
      yield* inRedis((permits) =>
        Effect.gen(function*() {
          assert.strictEqual((yield* permits.snapshot(key, "flash")).held, 2)
          holder.child.kill("SIGKILL")
          const started = Date.now()
          // Both permits are taken again, within the lease (1.2 s) plus a margin for a loaded machine.
          yield* Effect.scoped(Effect.gen(function*() {
            yield* permits.acquire({ key, pool: "flash", timeout: "5 seconds" })
            yield* permits.acquire({ key, pool: "flash", timeout: "5 seconds" })
          }))
          const waited = Date.now() - started
          assert.isAtMost(waited, 3000)
          assert.strictEqual((yield* permits.snapshot(key, "flash")).held, 0)
        })
      )
      yield* Effect.promise(() => holder.exit)
    }))
})
