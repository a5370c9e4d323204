import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Fiber, Layer, Result, Stream } from "effect"
import { Redis } from "effect/persistence"
import { afterAll, beforeAll } from "vitest"
import * as RedisConfig from "../../src/distributed/RedisConfig.ts"
import { keysOf } from "../../src/distributed/RedisConfigLua.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
})

const prefix = "elevenlabs-resilience:config:"
let n = 0
const freshAccount = () => `acct-${++n}`

/** A store and the raw connection under it, as one process would have (its own connections). */
const connect = (url: string = server.url) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RedisConfig.layer().pipe(Layer.provideMerge(SharedState.layerConnection(url, "1 second")), Layer.fresh)
    )
    return { store: Context.get(context, RedisConfig.RedisConfigStore), redis: Context.get(context, Redis.Redis) }
  })

const deploy = (document: unknown, reason = "test"): RedisConfig.PublishInput => ({
  document,
  author: "ops@example",
  kind: "deploy",
  reason
})

/** Polls `check` on the real clock until it holds; fails the test after `within` ms. */
const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, within = 5_000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < within; waited += 10) {
      if (yield* check) return
      yield* Effect.sleep("10 millis")
    }
    return assert.fail(`not within ${within} ms: ${what}`)
  })

/** Runs `changes` in the background, collecting the versions it emits. */
const follow = (store: RedisConfig.Service, account: string, poll: Duration.Input) =>
  Effect.gen(function*() {
    const seen: Array<number> = []
    const fiber = yield* store.changes(account, { poll }).pipe(
      Stream.runForEach((v) => Effect.sync(() => seen.push(v.version))),
      Effect.forkScoped
    )
    return { seen, fiber }
  })

const seenIs = (seen: ReadonlyArray<number>, expected: ReadonlyArray<number>) =>
  Effect.sync(() => JSON.stringify(seen) === JSON.stringify(expected))

const reasonOf = <A>(effect: Effect.Effect<A, { readonly reason: { readonly _tag: string } }>) =>
  Effect.map(Effect.flip(effect), (e) => e.reason._tag)

describe("RedisConfig", () => {
  it.live("publish 1, 2, 3: current, get and history newest first with previous links; the document kept exactly", () =>
    Effect.gen(function*() {
      const { redis, store } = yield* connect()
      const account = freshAccount()
      assert.isUndefined(yield* store.current(account))
      assert.deepStrictEqual(yield* store.history(account), [])
      // Braces, quotes, an empty array and a big float: the record is spliced as text, never re-encoded.
      const tricky = { a: "}{\"],", list: [], nested: { x: [1, 2.5, -0.000001, 1e21] }, u: "é 🎙" }
      const before = yield* store.now
      const v1 = yield* store.publish(account, deploy(tricky, "first"))
      const v2 = yield* store.publish(account, deploy({ step: 2 }, "second"))
      const v3 = yield* store.publish(account, deploy({ step: 3 }, "third"))
      const after = yield* store.now

      assert.deepStrictEqual(v1, {
        version: 1,
        at: v1.at,
        author: "ops@example",
        kind: "deploy",
        reason: "first",
        document: tricky
      })
      assert.isTrue(v1.at >= before && v3.at <= after && v1.at <= v2.at && v2.at <= v3.at)
      assert.strictEqual(v2.previous, 1)
      assert.strictEqual(v3.previous, 2)
      const stored = yield* redis.send<string>("HGET", keysOf(prefix, account).versions, "1")
      assert.include(stored, `"document":${JSON.stringify(tricky)}`)

      assert.deepStrictEqual(yield* store.current(account), v3)
      assert.deepStrictEqual(yield* store.get(account, 2), v2)
      assert.isUndefined(yield* store.get(account, 4))
      const history = yield* store.history(account)
      assert.deepStrictEqual(history.map((v) => [v.version, v.previous, v.reason]), [
        [3, 2, "third"],
        [2, 1, "second"],
        [1, undefined, "first"]
      ])
      assert.deepStrictEqual((yield* store.history(account, { limit: 2 })).map((v) => v.version), [3, 2])
    }))

  it.live("a rollback is a new version restoring an existing one", () =>
    Effect.gen(function*() {
      const { store } = yield* connect()
      const account = freshAccount()
      const v1 = yield* store.publish(account, deploy({ limit: 5 }))
      yield* store.publish(account, deploy({ limit: 50 }))
      const back = yield* store.publish(account, {
        document: v1.document,
        author: "deploy-bot",
        kind: "rollback",
        reason: "rolled back: error rate 12 % > 5 %",
        restores: 1
      }, { expectCurrent: 2 })
      assert.deepStrictEqual([back.version, back.kind, back.restores, back.previous], [3, "rollback", 1, 2])
      assert.deepStrictEqual((yield* store.current(account))?.document, { limit: 5 })

      const missing = yield* Effect.flip(
        store.publish(account, { ...deploy({}), kind: "rollback", restores: 9 })
      )
      assert.strictEqual(missing.reason._tag, "InvalidDistributedRequest")
      assert.strictEqual(
        yield* reasonOf(store.publish(account, { ...deploy({}), restores: 1 })),
        "InvalidDistributedRequest"
      )
      // Neither failure took a version.
      assert.strictEqual((yield* store.current(account))?.version, 3)
      assert.strictEqual((yield* store.history(account)).length, 3)
    }))

  it.live("expectCurrent: of concurrent publishes expecting the same version exactly one wins", () =>
    Effect.gen(function*() {
      const a = yield* connect()
      const b = yield* connect()
      const account = freshAccount()
      // 0: nothing published yet.
      yield* a.store.publish(account, deploy({ base: true }), { expectCurrent: 0 })
      const again = yield* Effect.flip(b.store.publish(account, deploy({}), { expectCurrent: 0 }))
      assert.strictEqual(again.reason._tag, "VersionConflict")

      const results = yield* Effect.all(
        Array.from(
          { length: 8 },
          (_, i) => Effect.result((i % 2 === 0 ? a : b).store.publish(account, deploy({ i }), { expectCurrent: 1 }))
        ),
        { concurrency: "unbounded" }
      )
      const won = results.filter(Result.isSuccess).map((r) => r.success)
      assert.strictEqual(won.length, 1)
      assert.deepStrictEqual([won[0]!.version, won[0]!.previous], [2, 1])
      for (const r of results.filter(Result.isFailure)) {
        const reason = r.failure.reason
        assert.strictEqual(reason._tag, "VersionConflict")
        if (reason._tag === "VersionConflict") assert.deepStrictEqual([reason.expected, reason.actual], [1, 2])
      }
      // The losers left no trace: no gap in the versions.
      assert.deepStrictEqual((yield* a.store.history(account)).map((v) => v.version), [2, 1])
      const next = yield* b.store.publish(account, deploy({}), { expectCurrent: 2 })
      assert.strictEqual(next.version, 3)
    }))

  it.live("changes: two subscribers see the current version, then a new one within a second (pub/sub, not the poll)", () =>
    Effect.gen(function*() {
      const account = freshAccount()
      const p1 = yield* connect()
      const p2 = yield* connect()
      const deployer = yield* connect()
      yield* deployer.store.publish(account, deploy({ v: 1 }))
      // A poll far longer than the test: only the notification can deliver version 2 in time.
      const s1 = yield* follow(p1.store, account, "1 minute")
      const s2 = yield* follow(p2.store, account, "1 minute")
      yield* eventually(
        "both see version 1",
        seenIs(s1.seen, [1]).pipe(Effect.zipWith(seenIs(s2.seen, [1]), (x, y) => x && y))
      )

      yield* deployer.store.publish(account, deploy({ v: 2 }))
      yield* eventually(
        "both see version 2",
        seenIs(s1.seen, [1, 2]).pipe(Effect.zipWith(seenIs(s2.seen, [1, 2]), (x, y) => x && y)),
        1_000
      )
      yield* deployer.store.publish(account, deploy({ v: 3 }))
      yield* eventually("both see version 3", seenIs(s2.seen, [1, 2, 3]), 1_000)
      yield* eventually("both see version 3", seenIs(s1.seen, [1, 2, 3]), 1_000)
      yield* Fiber.interrupt(s1.fiber)
      yield* Fiber.interrupt(s2.fiber)
    }))

  it.live("changes: a missed notification is caught by the poll, and no version is emitted twice in a row", () =>
    Effect.gen(function*() {
      const { redis, store } = yield* connect()
      const account = freshAccount()
      yield* store.publish(account, deploy({ v: 1 }))
      yield* store.publish(account, deploy({ v: 2 }))
      const s = yield* follow(store, account, "200 millis")
      yield* eventually("sees version 2", seenIs(s.seen, [2]))
      // A change of `current` nobody published (as if the message was lost).
      yield* redis.send("SET", keysOf(prefix, account).current, "1")
      yield* eventually("the poll finds version 1", seenIs(s.seen, [2, 1]), 1_000)
      // Several polls (and a message for an unchanged version) later: still once each.
      yield* redis.send("PUBLISH", keysOf(prefix, account).channel, "1")
      yield* Effect.sleep("700 millis")
      assert.deepStrictEqual(s.seen, [2, 1])
    }))

  it.live("changes on an account with nothing published emits the first publish", () =>
    Effect.gen(function*() {
      const { store } = yield* connect()
      const account = freshAccount()
      const s = yield* follow(store, account, "1 minute")
      yield* Effect.sleep("100 millis")
      assert.deepStrictEqual(s.seen, [])
      yield* store.publish(account, deploy({}))
      yield* eventually("sees version 1", seenIs(s.seen, [1]), 1_000)
    }))

  it.live("outcomes: summed over buckets and processes, by version and from a time", () =>
    Effect.gen(function*() {
      const a = yield* connect()
      const b = yield* connect()
      const account = freshAccount()
      const start = yield* a.store.now
      yield* a.store.recordOutcomes(account, 1, { calls: 10, errors: 1, breakerOpens: 0 })
      yield* b.store.recordOutcomes(account, 1, { calls: 5, errors: 2, breakerOpens: 1 })
      yield* a.store.recordOutcomes(account, 2, { calls: 7, errors: 7, breakerOpens: 3 })
      // Into the next Redis second, so the earlier buckets are before `since`.
      const startSecond = Math.floor((yield* a.store.now) / 1000)
      yield* eventually(
        "the next Redis second",
        Effect.map(a.store.now, (t) => Math.floor(t / 1000) > startSecond),
        2_000
      )
      const since = yield* a.store.now
      yield* b.store.recordOutcomes(account, 1, { calls: 4, errors: 0, breakerOpens: 0 })
      yield* a.store.recordOutcomes(account, 1, { calls: 0, errors: 0, breakerOpens: 0 })

      assert.deepStrictEqual(yield* a.store.outcomes(account, 1, start), { calls: 19, errors: 3, breakerOpens: 1 })
      assert.deepStrictEqual(yield* b.store.outcomes(account, 1, since), { calls: 4, errors: 0, breakerOpens: 0 })
      assert.deepStrictEqual(yield* b.store.outcomes(account, 2, start), { calls: 7, errors: 7, breakerOpens: 3 })
      assert.deepStrictEqual(yield* b.store.outcomes(account, 2, since), { calls: 0, errors: 0, breakerOpens: 0 })
      assert.deepStrictEqual(yield* a.store.outcomes(account, 3, start), { calls: 0, errors: 0, breakerOpens: 0 })
      assert.deepStrictEqual(yield* a.store.outcomes(account, 1, since + 60_000), {
        calls: 0,
        errors: 0,
        breakerOpens: 0
      })
      // Buckets expire (an hour).
      const buckets = yield* a.redis.send<ReadonlyArray<string>>("KEYS", `${keysOf(prefix, account).outcomes(1)}*`)
      assert.strictEqual(buckets.length, 2)
      for (const key of buckets) {
        const ttl = Number(yield* a.redis.send("TTL", key))
        assert.isTrue(ttl > 3500 && ttl <= 3600, `ttl ${ttl}`)
      }
    }))

  it.live("accounts are isolated", () =>
    Effect.gen(function*() {
      const { store } = yield* connect()
      const x = freshAccount()
      const y = freshAccount()
      const sy = yield* follow(store, y, "200 millis")
      yield* store.publish(x, deploy({ x: 1 }))
      yield* store.publish(x, deploy({ x: 2 }))
      yield* store.publish(y, deploy({ y: 1 }))
      yield* store.recordOutcomes(x, 1, { calls: 3, errors: 3, breakerOpens: 3 })
      assert.strictEqual((yield* store.current(x))?.version, 2)
      assert.deepStrictEqual(yield* store.current(y), (yield* store.history(y))[0])
      assert.deepStrictEqual((yield* store.history(y)).map((v) => v.document), [{ y: 1 }])
      assert.deepStrictEqual(yield* store.outcomes(y, 1, 0), { calls: 0, errors: 0, breakerOpens: 0 })
      // The follower of y saw only y's version, and a conflict check on y ignores x.
      yield* eventually("y's follower sees y:1", seenIs(sy.seen, [1]))
      yield* store.publish(y, deploy({ y: 2 }), { expectCurrent: 1 })
      yield* eventually("y's follower sees y:2", seenIs(sy.seen, [1, 2]))
      assert.strictEqual((yield* store.current(x))?.version, 2)
    }))

  it.live("bad input fails typed and writes nothing", () =>
    Effect.gen(function*() {
      const { redis, store } = yield* connect()
      const account = freshAccount()
      const cyclic: Record<string, unknown> = {}
      cyclic["self"] = cyclic
      const bad = [
        store.publish("", deploy({})),
        store.publish("a{b}", deploy({})),
        store.publish(account, deploy(undefined)),
        store.publish(account, deploy(cyclic)),
        store.publish(account, deploy({ n: 1n })),
        store.publish(account, { ...deploy({}), author: "" }),
        store.publish(account, deploy({}), { expectCurrent: -1 }),
        store.get(account, 0),
        store.get(account, 1.5),
        store.history(account, { limit: 0 }),
        store.recordOutcomes(account, 1, { calls: -1, errors: 0, breakerOpens: 0 }),
        store.recordOutcomes(account, 1, { calls: 1.5, errors: 0, breakerOpens: 0 }),
        store.outcomes(account, 1, Number.NaN)
      ]
      for (const effect of bad) {
        assert.strictEqual(yield* reasonOf<unknown>(effect), "InvalidDistributedRequest")
      }
      assert.deepStrictEqual(yield* redis.send("KEYS", `${prefix}{${account}}:*`), [])
      assert.strictEqual(
        yield* reasonOf(Stream.runDrain(store.changes("", { poll: "1 minute" }))),
        "InvalidDistributedRequest"
      )
    }))

  it.live("a malformed stored record fails typed without quoting it", () =>
    Effect.gen(function*() {
      const { redis, store } = yield* connect()
      const account = freshAccount()
      const keys = keysOf(prefix, account)
      yield* redis.send("HSET", keys.versions, "1", "{\"version\":1,\"document\":\"s3cr3t\"}")
      yield* redis.send("SET", keys.current, "1")
      const error = yield* Effect.flip(store.current(account))
      assert.strictEqual(error.reason._tag, "RedisCommandFailed")
      assert.notInclude(error.message, "s3cr3t")
      yield* redis.send("SET", keys.current, "2")
      assert.strictEqual(yield* reasonOf(store.current(account)), "RedisCommandFailed")
    }))

  it.live("Redis down: typed RedisUnavailable; a running stream survives the outage and follows again", () =>
    Effect.gen(function*() {
      const own = yield* Effect.acquireRelease(
        Effect.promise(() => startRedisServer()),
        (s) => Effect.promise(() => s.close())
      )
      const { store } = yield* connect(own.url)
      const account = freshAccount()
      yield* store.publish(account, deploy({ v: 1 }))
      yield* store.publish(account, deploy({ v: 2 }))
      const s = yield* follow(store, account, "200 millis")
      yield* eventually("sees version 2", seenIs(s.seen, [2]))

      yield* Effect.promise(() => own.stop())
      assert.strictEqual(yield* reasonOf(store.current(account)), "RedisUnavailable")
      assert.strictEqual(yield* reasonOf(store.now), "RedisUnavailable")
      assert.strictEqual(
        yield* reasonOf(Stream.runDrain(store.changes(account, { poll: "1 minute" }))),
        "RedisUnavailable"
      )
      yield* Effect.sleep("300 millis")
      // Back, empty (no persistence): the next publish is version 1 again, which differs from the last seen.
      yield* Effect.promise(() => own.start())
      yield* eventually("the store reconnects", Effect.map(Effect.result(store.now), Result.isSuccess))
      yield* store.publish(account, deploy({ v: "after" }))
      yield* eventually("the stream follows again", seenIs(s.seen, [2, 1]))
      assert.isUndefined(s.fiber.pollUnsafe())
    }))
})
