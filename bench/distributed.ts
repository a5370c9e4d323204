/**
 * Benchmarks of the distributed permits against a real `redis-server` on
 * loopback: Redis round trips per acquire and per release (counted at the
 * client), and the median latency of each over N sequential runs; plus the
 * round trips a waiting acquire spends polling under contention.
 *
 * Run: `node_modules/.bin/node bench/distributed.ts` (needs Debian's redis-server).
 */
import { NodeRedis } from "@effect/platform-node"
import { Effect, Exit, Layer, Scope } from "effect"
import { pathToFileURL } from "node:url"
import * as RedisPermits from "../src/distributed/RedisPermits.ts"
import * as SharedState from "../src/distributed/SharedState.ts"
import { startRedisServer } from "../test/utils/redisServer.ts"

import { median, type Result } from "./lib.ts"

export type { Result } from "./lib.ts"

const RUNS = 2000

export const run = async (): Promise<ReadonlyArray<Result>> => {
  const server = await startRedisServer()
  try {
    return await Effect.runPromise(
      Effect.gen(function*() {
        const permits = yield* RedisPermits.RedisPermits
        const node = yield* NodeRedis.NodeRedis
        // Count every command that goes to Redis (each is one round trip).
        let commands = 0
        const send = node.client.sendCommand.bind(node.client)
        node.client.sendCommand = ((...args: Parameters<typeof send>) => {
          commands++
          return send(...args)
        }) as typeof send
        yield* permits.setLimit("bench", "standard", 10)
        const request = { key: "bench", pool: "standard" } as const
        // Warm up (scripts loaded, JIT).
        for (let i = 0; i < 200; i++) yield* Effect.scoped(permits.acquire(request))

        const acquireMicros: Array<number> = []
        const releaseMicros: Array<number> = []
        let acquireCommands = 0
        let releaseCommands = 0
        for (let i = 0; i < RUNS; i++) {
          const scope = yield* Scope.make()
          const c0 = commands
          const t0 = performance.now()
          yield* permits.acquire(request).pipe(Scope.provide(scope))
          const t1 = performance.now()
          const c1 = commands
          yield* Scope.close(scope, Exit.void)
          const t2 = performance.now()
          acquireCommands += c1 - c0
          releaseCommands += commands - c1
          acquireMicros.push((t1 - t0) * 1000)
          releaseMicros.push((t2 - t1) * 1000)
        }

        // Contention: 8 fibers, limit 2, each holding 2 ms, 25 times each.
        yield* permits.setLimit("bench-contended", "standard", 2)
        const contended = { key: "bench-contended", pool: "standard", timeout: "30 seconds" } as const
        const before = commands
        const t0 = performance.now()
        yield* Effect.all(
          Array.from(
            { length: 8 },
            () =>
              Effect.forEach(
                Array.from({ length: 25 }),
                () => Effect.scoped(Effect.andThen(permits.acquire(contended), Effect.sleep("2 millis"))),
                {
                  discard: true
                }
              )
          ),
          { concurrency: "unbounded", discard: true }
        )
        const elapsed = performance.now() - t0
        const contendedCommands = (commands - before) / 200

        return [
          {
            name: "distributed acquire: round trips",
            value: acquireCommands / RUNS,
            unit: "commands",
            note: "uncontended; one Lua script"
          },
          {
            name: "distributed release: round trips",
            value: releaseCommands / RUNS,
            unit: "commands",
            note: "one Lua script"
          },
          {
            name: "distributed acquire: median",
            value: Math.round(median(acquireMicros)),
            unit: "µs",
            note: `loopback redis-server, N=${RUNS}`
          },
          {
            name: "distributed release: median",
            value: Math.round(median(releaseMicros)),
            unit: "µs",
            note: `loopback redis-server, N=${RUNS}`
          },
          {
            name: "distributed acquire+release under contention: round trips",
            value: Math.round(contendedCommands * 10) / 10,
            unit: "commands",
            note: "8 fibers, limit 2, 2 ms holds; includes polls (5-100 ms backoff, woken by pub/sub on release)"
          },
          {
            name: "distributed contended throughput",
            value: Math.round(200 / (elapsed / 1000)),
            unit: "permits/s",
            note: "limit 2, 2 ms holds"
          }
        ] satisfies ReadonlyArray<Result>
      }).pipe(
        Effect.scoped,
        Effect.provide(SharedState.layerRedis({ url: server.url }).pipe(Layer.fresh))
      )
    )
  } finally {
    await server.close()
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) {
    console.log(`${r.name}: ${r.value} ${r.unit}${r.note === undefined ? "" : ` (${r.note})`}`)
  }
}
