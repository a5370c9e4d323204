/**
 * The Redis source in one process, against a real redis-server: versions applied as they are published, the
 * "back to the start configuration" version (a null document), and the source refused without a redis entry.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Redacted } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as RedisConfig from "../../src/distributed/RedisConfig.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import { partitionOfApiKey } from "../../src/resilience/FallbackKey.ts"
import type * as LiveConfig from "../../src/resilience/LiveConfig.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

const apiKey = Redacted.make("sim-key")
const account = partitionOfApiKey(apiKey)

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedisServer()
})
afterAll(async () => {
  await redis?.close()
})

const until = (live: LiveConfig.Live, check: (s: LiveConfig.Status) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 250; i++) {
      if (check(yield* live.status)) return yield* live.status
      yield* Effect.sleep("20 millis")
    }
    return assert.fail(`status never matched: ${JSON.stringify(yield* live.status)}`)
  })

/** A store of its own, on its own connection (the stack's is not exposed). */
const storeOf = Effect.suspend(() =>
  Effect.map(
    Layer.build(RedisConfig.layer().pipe(Layer.provide(SharedState.layerConnection(redis.url)))),
    (context) => Context.get(context, RedisConfig.RedisConfigStore)
  )
)

const flash = "eleven_flash_v2_5"

/** A stack following the account's versions in Redis. */
const followingRedis = Layer.suspend(() =>
  Resilient.layer({
    apiKey,
    limiter: { plan: "pro" },
    quota: false,
    redis: { url: redis.url },
    live: { source: { _tag: "redis", poll: "200 millis" }, env: false }
  }).pipe(Layer.provideMerge(InProcess.layerSimulated({ plan: "pro" })))
)

describe("LiveConfig, Redis source", () => {
  it.live("applies each published version, and a null document restores the start configuration", () =>
    Effect.gen(function*() {
      const built = yield* Layer.build(followingRedis)
      const resilience = Context.get(built, Resilient.Resilience)
      const store = yield* storeOf
      const limit = Effect.map(resilience.limiter.snapshot(resilience.keyId, "flash"), (s) => s.limit)
      assert.strictEqual(yield* limit, 20, "the start configuration: plan pro")

      const v1 = yield* store.publish(account, {
        document: { concurrency: { plan: "pro", caps: { flash: 2 } } },
        author: "test",
        kind: "deploy",
        reason: "lower"
      })
      yield* until(resilience.live!, (s) => s.version === v1.version)
      assert.strictEqual(yield* limit, 2)
      // The shared limit holds the cap for every process of the account.
      assert.strictEqual((yield* resilience.distributed!.snapshot(resilience.keyId, "flash")).cap, 2)

      const v2 = yield* store.publish(account, {
        document: null,
        author: "test",
        kind: "rollback",
        reason: "back to the start"
      })
      const back = yield* until(resilience.live!, (s) => s.version === v2.version)
      assert.deepStrictEqual(back.pendingRestart, [])
      assert.strictEqual(yield* limit, 20)
      assert.isUndefined((yield* resilience.distributed!.snapshot(resilience.keyId, "flash")).cap)
    }).pipe(Effect.scoped))

  it.effect("the Redis source without a redis entry is refused when the stack is built", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(
          Resilient.layer({ apiKey, live: { source: { _tag: "redis" } } }).pipe(
            Layer.provideMerge(InProcess.layerSimulated({}))
          )
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      const reason = (error as { error: { reason: { _tag: string; field?: string } } } | undefined)?.error.reason
      assert.strictEqual(reason?._tag, "InvalidRequest")
      assert.strictEqual(reason?.field, "live")
    }).pipe(Effect.scoped))

  it.live("the calls made under a version are counted under it, not under the next one", () =>
    Effect.gen(function*() {
      const store = yield* storeOf
      // A version that fails every call (a 1 ms headers timeout, one attempt).
      const bad = yield* store.publish(account, {
        document: { concurrency: { plan: "pro" }, timeouts: { headers: "1 millis" }, retry: { maxAttempts: 1 } },
        author: "test",
        kind: "deploy",
        reason: "bad"
      })
      const built = yield* Layer.build(followingRedis)
      const resilience = Context.get(built, Resilient.Resilience)
      const client = Context.get(built, Client.ElevenLabs)
      yield* until(resilience.live!, (s) => s.version === bad.version)
      const convert = client.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text: "Hello there.", modelId: flash })
      yield* Effect.forEach(Array.from({ length: 30 }), () => Effect.exit(convert), { concurrency: 10 })
      const fix = yield* store.publish(account, {
        document: { concurrency: { plan: "pro" } },
        author: "test",
        kind: "deploy",
        reason: "fix"
      })
      yield* until(resilience.live!, (s) => s.version === fix.version)
      // No call under the fix; the reporter's next second passes.
      yield* Effect.sleep("1500 millis")
      assert.deepStrictEqual(yield* store.outcomes(account, fix.version, 0), { calls: 0, errors: 0, breakerOpens: 0 })
      const under = yield* store.outcomes(account, bad.version, 0)
      assert.strictEqual(under.calls, 30)
      assert.strictEqual(under.errors, 30)
    }).pipe(Effect.scoped))

  it.live("a file source is followed even when the stack has a redis entry", () =>
    Effect.gen(function*() {
      const store = yield* storeOf
      yield* store.publish(account, {
        document: { concurrency: { plan: "pro", caps: { flash: 7 } } },
        author: "test",
        kind: "deploy",
        reason: "in Redis"
      })
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "live-file-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const path = join(dir, "elevenlabs.json")
      writeFileSync(path, JSON.stringify({ concurrency: { plan: "pro", caps: { flash: 3 } } }))
      const built = yield* Layer.build(
        Resilient.layer({
          apiKey,
          limiter: { plan: "pro" },
          quota: false,
          redis: { url: redis.url },
          live: { source: { _tag: "file", path, poll: "20 millis" }, env: false }
        }).pipe(Layer.provideMerge(InProcess.layerSimulated({ plan: "pro" })))
      )
      const resilience = Context.get(built, Resilient.Resilience)
      const s = yield* until(resilience.live!, (s) => s.version === 1)
      assert.strictEqual(s.source, "file")
      assert.strictEqual((yield* resilience.limiter.snapshot(resilience.keyId, "flash")).limit, 3)
    }).pipe(Effect.scoped))
})
