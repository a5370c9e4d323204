/**
 * A worker process for the multi-process permit tests (run with
 * `process.execPath`, not a test itself).
 *
 * argv: <url> <key> <pool> <worker id> <mode: work|hold> <iterations or permits> <hold ms> <lease ms>
 *
 * - work: counts itself in `test:{key}:ready`, waits for `test:{key}:go`, then acquires, holds `hold ms`, releases, `iterations` times; while it
 *   holds, it counts itself in `test:{key}:inflight` and raises
 *   `test:{key}:max` (atomically, one script), and appends its id to
 *   `test:{key}:done` on completion. Prints `{"worker","done"}` as JSON.
 * - hold: acquires `permits` permits, prints `HELD`, and waits to be killed.
 */
import { Effect, Layer } from "effect"
import { Redis } from "effect/persistence"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"

const [url, key, pool, worker, mode, count, holdMs, leaseMs] = process.argv.slice(2) as Array<string>

const enter = `
local n = redis.call("INCR", KEYS[1])
local m = tonumber(redis.call("GET", KEYS[2]) or "0")
if n > m then redis.call("SET", KEYS[2], n) end
return n
`

const program = Effect.gen(function*() {
  const permits = yield* RedisPermits.RedisPermits
  const redis = yield* Redis.Redis
  const inflight = `test:{${key}}:inflight`
  const max = `test:{${key}}:max`
  if (mode === "hold") {
    for (let i = 0; i < Number(count); i++) yield* permits.acquire({ key: key!, pool: pool!, timeout: "10 seconds" })
    process.stdout.write("HELD\n")
    return yield* Effect.never
  }
  // Start together: announce readiness, then wait for the parent's go (start-up times of processes differ).
  yield* redis.send("INCR", `test:{${key}}:ready`)
  while ((yield* redis.send<string | null>("GET", `test:{${key}}:go`)) === null) yield* Effect.sleep(5)
  let done = 0
  for (let i = 0; i < Number(count); i++) {
    yield* Effect.scoped(Effect.gen(function*() {
      yield* permits.acquire({ key: key!, pool: pool!, timeout: "20 seconds" })
      yield* redis.send("EVAL", enter, "2", inflight, max)
      yield* Effect.sleep(Number(holdMs))
      yield* redis.send("DECR", inflight)
      yield* redis.send("RPUSH", `test:{${key}}:done`, worker!)
      done++
    }))
  }
  process.stdout.write(JSON.stringify({ worker, done }) + "\n")
}).pipe(
  Effect.scoped,
  Effect.provide(
    SharedState.layerRedis({ url: url!, permits: { lease: `${Number(leaseMs)} millis` } }).pipe(Layer.fresh)
  )
)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(String(error) + "\n")
    process.exit(1)
  }
)
