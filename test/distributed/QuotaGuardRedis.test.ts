/**
 * QuotaGuard with its state in Redis (`RedisQuota` in context), against a real
 * redis-server: several guards (separate `make`s, separate connections, as
 * separate processes would have; and real child processes) share reservations,
 * commits and the exhausted state.
 *
 * The "account" the guards protect is a Redis counter `test:{account}:spent`:
 * a successful call adds what it was charged, and the guards' subscription
 * source reads it back, as `/v1/user/subscription` would.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, PubSub, Random, Scope } from "effect"
import { Redis } from "effect/persistence"
import { afterAll, beforeAll } from "vitest"
import { ElevenLabsError, QuotaExceeded } from "../../src/client/Errors.ts"
import * as RedisMode from "../../src/distributed/RedisMode.ts"
import * as RedisQuota from "../../src/distributed/RedisQuota.ts"
import * as RedisQuotaStore from "../../src/distributed/RedisQuotaStore.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import * as QuotaGuard from "../../src/resilience/QuotaGuard.ts"
import { type Run, runNode } from "../utils/childWorker.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"
import { layerAll } from "./layers.ts"

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
})

let n = 0
const nextAccount = () => `qg-${++n}`
const spentKey = (account: string) => `test:{${account}}:spent`

/** A plain connection, for the test's own bookkeeping (the account's "server side"). */
const connection = Effect.gen(function*() {
  const context = yield* Layer.build(SharedState.layerConnection(server.url).pipe(Layer.fresh))
  return Context.get(context, Redis.Redis)
})

/**
 * The subscription as the server would report it: what was charged so far. `lagMs` delays the answer after
 * the reading, as a slow `/v1/user/subscription` would: charges made meanwhile are missing from it.
 */
const spentSource = (redis: Redis.Redis["Service"], account: string, limit: number, lagMs = 0) =>
  Effect.map(
    Effect.orDie(redis.send<string | null>("GET", spentKey(account))),
    (v) => ({ used: Number(v ?? 0), limit })
  ).pipe(
    Effect.delay(lagMs)
  )

/** One "process": its own connection, trouble mode and quota store on `account`, and a guard over them. */
const guardIn = (
  account: string,
  fetch: Effect.Effect<QuotaGuard.QuotaSnapshot>,
  options?: QuotaGuard.Options,
  mode?: RedisMode.Options
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      layerAll(server.url, { quota: { account }, ...(mode === undefined ? {} : { mode }) })
    )
    const guard = yield* QuotaGuard.make(options).pipe(
      Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch })),
      Effect.provide(context)
    )
    return {
      guard,
      quota: Context.get(context, RedisQuota.RedisQuota),
      mode: Context.get(context, RedisMode.RedisMode)
    }
  })

/** Polls `check` on the real clock until it holds (or fails the test after `within`). */
const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, within = 5_000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < within; waited += 25) {
      if (yield* check) return
      yield* Effect.sleep("25 millis")
    }
    return assert.fail(`not within ${within} ms: ${what}`)
  })

describe("QuotaGuard over Redis", () => {
  it.live(
    "three guards on one Redis never overspend under concurrent random reservations and outcomes",
    () =>
      Effect.gen(function*() {
        let refusedTotal = 0
        let okTotal = 0
        for (let round = 0; round < 4; round++) {
          yield* Effect.gen(function*() {
            const account = nextAccount()
            const redis = yield* connection
            const limit = yield* Random.nextIntBetween(150, 600)
            // Frequent, slow refreshes, so readings that miss recent charges are written to Redis while commits happen.
            const guards = yield* Effect.forEach(
              [0, 1, 2],
              () =>
                Effect.map(
                  guardIn(account, spentSource(redis, account, limit, 20), { refreshInterval: "30 millis" }),
                  (g) => g.guard
                )
            )
            // Calls arrive over time (a think time before each, 12 at once), so the run spans several refreshes.
            const outcomes = yield* Effect.forEach(Array.from({ length: 150 }, (_, i) => i), (i) =>
              Effect.gen(function*() {
                yield* Effect.sleep(yield* Random.nextIntBetween(0, 10))
                const cost = yield* Random.nextIntBetween(1, 60)
                const succeeds = (yield* Random.next) < 0.6
                const actual = yield* Random.nextIntBetween(Math.ceil(cost / 2), cost)
                const pause = yield* Random.nextIntBetween(0, 15)
                const call = Effect.gen(function*() {
                  yield* Effect.sleep(pause)
                  if (!succeeds) {
                    return yield* Effect.fail("the call failed" as const)
                  }
                  yield* Effect.orDie(redis.send("INCRBYFLOAT", spentKey(account), String(actual)))
                  return actual
                })
                return yield* guards[i % 3]!.guard(cost, call, {
                  actualCost: (a) =>
                    a
                }).pipe(
                  Effect.as("ok" as const),
                  Effect.catch((e) => Effect.succeed(QuotaGuard.isQuotaGuardError(e) ? e.reason._tag : "failed"))
                )
              }), { concurrency: 12 })
            const spent = Number((yield* Effect.orDie(redis.send<string | null>("GET", spentKey(account)))) ?? 0)
            assert.isAtMost(spent, limit, `round ${round}: spent ${spent} of ${limit}`)
            assert.isTrue(
              outcomes.every((o) =>
                o === "ok" || o === "failed" || o === "InsufficientQuota"
              ),
              outcomes.join()
            )
            refusedTotal += outcomes.filter((o) => o === "InsufficientQuota").length
            okTotal += outcomes.filter((o) => o === "ok").length
            // Everything settled: nothing held in Redis, and Redis never counts less than was charged.
            const shared = yield* guards[0]!.status
            assert.strictEqual(shared.reserved, 0)
            assert.isAtLeast(shared.used ?? -1, spent)
          }).pipe(Effect.scoped, Random.withSeed(`quota-round-${round}`))
        }
        // The demand (about 150 × 30 credits per round) is far above every limit: the guards did refuse.
        assert.isAbove(refusedTotal, 0)
        assert.isAbove(okTotal, 0)
      }),
    30_000
  )

  it.live("an exhaustion seen by one guard makes the other fail fast; a fresh reading ends it for both", () =>
    Effect.gen(function*() {
      const account = nextAccount()
      const redis = yield* connection
      yield* Effect.orDie(redis.send("SET", spentKey(account), "100"))
      const a = yield* guardIn(account, spentSource(redis, account, 1000), { refreshInterval: "1 hour" })
      const b = yield* guardIn(account, spentSource(redis, account, 1000), { refreshInterval: "1 hour" })
      // First readings written before the mark (a reading from before a mark would overwrite its numbers).
      yield* Effect.all([a.guard.refresh, b.guard.refresh])
      const events = yield* b.guard.subscribe
      let calls = 0
      const call = Effect.sync(() => ++calls)

      // A's call gets quota_exceeded from the server: A marks the account, in Redis.
      const exceeded = new ElevenLabsError({
        reason: new QuotaExceeded({
          operation: "textToSpeech.convert",
          message: "quota exceeded",
          quota: 1000,
          remaining: 3
        })
      })
      const first = yield* Effect.flip(a.guard.guard(10, Effect.fail(exceeded)))
      assert.strictEqual(first, exceeded)

      // B fails fast, without running its call, and knows why.
      const refused = yield* Effect.flip(b.guard.guard(10, call))
      assert.isTrue(QuotaGuard.isQuotaGuardError(refused))
      assert.strictEqual(QuotaGuard.isQuotaGuardError(refused) ? refused.reason._tag : "", "QuotaExhausted")
      assert.strictEqual(calls, 0)
      assert.strictEqual(yield* b.guard.state, "exhausted")
      const tags = Effect.map(PubSub.takeUpTo(events, 100), (es) => es.map((e) => e._tag))
      assert.include(yield* tags, "Exhausted")
      // The server's numbers came with the mark.
      const status = yield* b.guard.status
      assert.strictEqual(status.used, 997)
      assert.strictEqual(status.limit, 1000)

      // B's refresh (started after the mark) shows credits left: the shared state ends, A calls again.
      yield* b.guard.refresh
      assert.strictEqual(yield* a.guard.guard(10, call), 1)
      assert.strictEqual(yield* a.guard.state, "ok")
      assert.strictEqual(yield* b.guard.state, "ok")
      assert.include(yield* tags, "Recovered")
    }).pipe(Effect.scoped))

  it.live("a reading that misses the commits made while it was fetched does not make Redis forget them", () =>
    Effect.gen(function*() {
      const account = nextAccount()
      let spent = 0
      let lagging = false
      const taken = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      // The reading is taken, then the answer is held back (a slow subscription endpoint).
      const source = Effect.gen(function*() {
        const reading = { used: spent, limit: 1000 }
        if (lagging) {
          yield* Deferred.succeed(taken, undefined)
          yield* Deferred.await(gate)
        }
        return reading
      })
      const a = yield* guardIn(account, source, { refreshInterval: "1 hour" })
      const b = yield* guardIn(account, source, { refreshInterval: "1 hour" })
      // Both first fetches done before the endpoint turns slow.
      yield* Effect.all([a.guard.refresh, b.guard.refresh])
      lagging = true
      // A slow endpoint still answers: if a call ends up waiting on a reading too, it is not held forever.
      yield* Effect.forkChild(Effect.andThen(Effect.sleep("3 seconds"), Deferred.succeed(gate, undefined)))
      const refreshing = yield* Effect.forkChild(a.guard.refresh)
      yield* Deferred.await(taken)
      // Meanwhile B's call is charged and committed.
      yield* b.guard.guard(100, Effect.sync(() => (spent += 100)))
      yield* Deferred.succeed(gate, undefined)
      const reading = yield* Fiber.join(refreshing)
      assert.strictEqual(reading.used, 0)
      // The reading said 0; the commit made during the fetch is kept on top of it.
      assert.strictEqual((yield* a.quota.status).used, 100)
      const refused = yield* Effect.flip(a.guard.reserve(950).pipe(Effect.scoped))
      assert.strictEqual(refused.reason._tag, "InsufficientQuota")
      if (refused.reason._tag === "InsufficientQuota") assert.strictEqual(refused.reason.remaining, 900)
    }).pipe(Effect.scoped))

  it.live("reservations are shared; insufficient credits and key caps are decided across guards", () =>
    Effect.gen(function*() {
      const account = nextAccount()
      const redis = yield* connection
      yield* Effect.orDie(redis.send("SET", spentKey(account), "100"))
      const a = yield* guardIn(account, spentSource(redis, account, 300), { keyCaps: { k1: 50 } })
      const b = yield* guardIn(account, spentSource(redis, account, 300), { keyCaps: { k1: 50 } })
      const scope = yield* Scope.make()
      const held = yield* a.guard.reserve(70).pipe(Scope.provide(scope))
      assert.strictEqual((yield* b.guard.status).reserved, 70)
      const insufficient = yield* Effect.flip(b.guard.reserve(140).pipe(Effect.scoped))
      assert.strictEqual(insufficient.reason._tag, "InsufficientQuota")
      if (insufficient.reason._tag === "InsufficientQuota") assert.strictEqual(insufficient.reason.remaining, 130)
      yield* held.commit(60)
      yield* Scope.close(scope, Exit.void)
      // The key cap counts what every guard committed on the key.
      yield* b.guard.guard(20, Effect.void, { keyId: "k1" })
      yield* a.guard.guard(20, Effect.void, { keyId: "k1" })
      const capped = yield* Effect.flip(a.guard.reserve(15, { keyId: "k1" }).pipe(Effect.scoped))
      assert.strictEqual(capped.reason._tag, "InsufficientQuota")
      if (capped.reason._tag === "InsufficientQuota") {
        assert.strictEqual(capped.reason.key, "k1")
        assert.strictEqual(capped.reason.remaining, 10)
      }
      const s = yield* a.quota.status
      assert.strictEqual(s.used, 200)
      assert.strictEqual(s.reserved, 0)
      // An interrupted call leaves nothing reserved in Redis.
      const hanging = yield* Effect.forkChild(b.guard.guard(50, Effect.never))
      yield* eventually("the hanging call's reservation", Effect.map(a.guard.status, (st) => st.reserved === 50))
      yield* Fiber.interrupt(hanging)
      assert.strictEqual((yield* a.quota.status).reserved, 0)
      assert.strictEqual((yield* a.quota.status).used, 200)
      // Bad key ids for Redis are bad input.
      const bad = yield* Effect.flip(a.guard.reserve(1, { keyId: "has space" }).pipe(Effect.scoped))
      assert.strictEqual(bad.reason._tag, "InvalidInput")
    }).pipe(Effect.scoped))

  it.live("the Redis store as a layer (RedisQuotaStore.layer) shares the account with a guard that found RedisQuota", () =>
    Effect.gen(function*() {
      const account = nextAccount()
      const redis = yield* connection
      const found = yield* guardIn(account, spentSource(redis, account, 500), { refreshInterval: "1 hour" })
      const context = yield* Layer.build(layerAll(server.url, { quota: { account } }))
      const store = yield* Layer.build(RedisQuotaStore.layer).pipe(Effect.provide(context))
      const source = QuotaGuard.SubscriptionSource.of({ fetch: spentSource(redis, account, 500) })
      const explicit = yield* QuotaGuard.make({ refreshInterval: "1 hour" }).pipe(
        Effect.provideService(QuotaGuard.SubscriptionSource, source),
        Effect.provide(store)
      )
      yield* Effect.all([found.guard.refresh, explicit.refresh])
      const scope = yield* Scope.make()
      yield* explicit.reserve(300).pipe(Scope.provide(scope))
      assert.strictEqual((yield* found.guard.status).reserved, 300)
      const refused = yield* Effect.flip(found.guard.reserve(201).pipe(Effect.scoped))
      assert.strictEqual(refused.reason._tag, "InsufficientQuota")
      if (refused.reason._tag === "InsufficientQuota") assert.strictEqual(refused.reason.remaining, 200)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual((yield* found.quota.status).reserved, 0)
    }).pipe(Effect.scoped))

  it.live(
    "Redis stopped mid-run: local-fallback keeps working, fail-closed fails typed; restarted, shared again",
    () =>
      Effect.gen(function*() {
        const account = nextAccount()
        let spent = 0
        // The subscription lives outside Redis here (Redis goes away in this test).
        const source = Effect.sync(() => ({ used: spent, limit: 1000 }))
        const fallback = yield* guardIn(account, source, { refreshInterval: "1 hour" }, { mode: "local-fallback" })
        const closed = yield* guardIn(account, source, { refreshInterval: "1 hour" }, { mode: "fail-closed" })
        // A process that expects a peer: in fallback it takes half of what is left.
        const half = yield* guardIn(account, source, { refreshInterval: "1 hour" }, {
          mode: "local-fallback",
          expectedProcesses: 2
        })
        const charge = (credits: number) => Effect.sync(() => (spent += credits))
        // Every first reading written before anything is charged (a reading racing a charge counts it twice: the safe side).
        yield* Effect.all([fallback.guard.refresh, closed.guard.refresh, half.guard.refresh])

        yield* fallback.guard.guard(100, charge(100))
        assert.strictEqual((yield* closed.guard.status).used, 100)
        assert.strictEqual((yield* half.guard.status).used, 100)

        yield* Effect.promise(() => server.stop())
        try {
          // local-fallback: calls keep going, decided on the last shared reading.
          yield* fallback.guard.guard(50, charge(50))
          assert.strictEqual(yield* fallback.mode.state, "local-fallback")
          const tooMuch = yield* Effect.flip(fallback.guard.reserve(900).pipe(Effect.scoped))
          assert.strictEqual(tooMuch.reason._tag, "InsufficientQuota")
          const st = yield* fallback.guard.status
          assert.strictEqual(st.used, 150)
          // The share: (1000 − 100) / 2 = 450 for this process.
          const overShare = yield* Effect.flip(half.guard.reserve(460).pipe(Effect.scoped))
          assert.strictEqual(overShare.reason._tag, "InsufficientQuota")
          if (overShare.reason._tag === "InsufficientQuota") assert.strictEqual(overShare.reason.remaining, 450)
          yield* half.guard.guard(440, Effect.void)
          // fail-closed: a typed refusal, no call.
          let ran = false
          const refused = yield* Effect.flip(closed.guard.guard(50, Effect.sync(() => (ran = true))))
          assert.isTrue(QuotaGuard.isQuotaGuardError(refused))
          if (QuotaGuard.isQuotaGuardError(refused)) {
            assert.strictEqual(refused.reason._tag, "QuotaUnknown")
            assert.isTrue(refused.reason._tag === "QuotaUnknown" && refused.reason.redisUnavailable === true)
          }
          assert.isFalse(ran)
          assert.strictEqual(yield* closed.mode.state, "unavailable")
        } finally {
          yield* Effect.promise(() => server.start())
        }

        // Back: the modes return to shared; Redis is empty (no persistence), so the next call re-seeds it.
        yield* eventually(
          "both modes shared",
          Effect.map(Effect.all([fallback.mode.state, closed.mode.state]), (s) => s.every((x) => x === "shared"))
        )
        yield* fallback.guard.guard(10, charge(10))
        yield* eventually("Redis re-seeded", Effect.map(Effect.orDie(fallback.quota.status), (s) => s.limit === 1000))
        assert.isAtLeast((yield* fallback.quota.status).used ?? -1, 150)
        const scope = yield* Scope.make()
        yield* closed.guard.reserve(200).pipe(Scope.provide(scope))
        assert.strictEqual((yield* fallback.quota.status).reserved, 200)
        assert.strictEqual((yield* fallback.guard.status).reserved, 200)
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual((yield* fallback.quota.status).reserved, 0)
      }).pipe(Effect.scoped),
    20_000
  )
})

// ---- child processes

/** The worker, as an ES module run with `node --input-type=module -e` (argv: url account mode count limit leaseMs). */
const workerSource = `
const [url, account, mode, count, limit, leaseMs] = process.argv.slice(1)
const root = "file://" + process.cwd() + "/"
const { Effect, Random } = await import("effect")
const { Redis } = await import("effect/persistence")
const QuotaGuard = await import(new URL("src/resilience/QuotaGuard.ts", root).href)
const SharedState = await import(new URL("src/distributed/SharedState.ts", root).href)
const spentKey = "test:{" + account + "}:spent"
const program = Effect.gen(function*() {
  const redis = yield* Redis.Redis
  const fetch = Effect.map(Effect.orDie(redis.send("GET", spentKey)), (v) => ({ used: Number(v ?? 0), limit: Number(limit) }))
  const guard = yield* QuotaGuard.make({ refreshInterval: "40 millis" }).pipe(
    Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
  )
  if (mode === "hold") {
    yield* guard.reserve(Number(count))
    process.stdout.write("HELD\\n")
    return yield* Effect.never
  }
  yield* redis.send("INCR", "test:{" + account + "}:ready")
  while ((yield* redis.send("GET", "test:{" + account + "}:go")) === null) yield* Effect.sleep(5)
  const outcomes = yield* Effect.forEach(Array.from({ length: Number(count) }), () => Effect.gen(function*() {
    const cost = yield* Random.nextIntBetween(1, 40)
    const succeeds = (yield* Random.next) < 0.7
    const actual = yield* Random.nextIntBetween(Math.ceil(cost / 2), cost)
    const pause = yield* Random.nextIntBetween(0, 10)
    const call = Effect.gen(function*() {
      yield* Effect.sleep(pause)
      if (!succeeds) return yield* Effect.fail("failed")
      yield* Effect.orDie(redis.send("INCRBYFLOAT", spentKey, String(actual)))
      return actual
    })
    return yield* guard.guard(cost, call, { actualCost: (a) => a }).pipe(
      Effect.as("ok"),
      Effect.catch((e) => Effect.succeed(QuotaGuard.isQuotaGuardError(e) ? "refused" : "failed"))
    )
  }), { concurrency: 8 })
  const countOf = (o) => outcomes.filter((x) => x === o).length
  process.stdout.write(JSON.stringify({ ok: countOf("ok"), refused: countOf("refused"), failed: countOf("failed") }) + "\\n")
}).pipe(
  Effect.scoped,
  Effect.provide(SharedState.layerRedis({ url, quota: { account, lease: leaseMs + " millis" } }))
)
Effect.runPromise(program).then(() => process.exit(0), (error) => {
  process.stderr.write(String(error) + "\\n")
  process.exit(1)
})
`

const runWorker = (args: ReadonlyArray<string | number>): Run =>
  runNode(["--input-type=module", "-e", workerSource], args)

describe("QuotaGuard over Redis, across processes", () => {
  it.live("two processes never overspend; every reservation is settled", () =>
    Effect.gen(function*() {
      const account = nextAccount()
      const redis = yield* connection
      const limit = 400
      const workers = [
        runWorker([server.url, account, "work", 50, limit, 1500]),
        runWorker([server.url, account, "work", 50, limit, 1500])
      ]
      yield* Effect.addFinalizer(() => Effect.sync(() => workers.forEach((w) => w.child.kill("SIGKILL"))))
      yield* eventually(
        "both workers ready",
        Effect.map(Effect.orDie(redis.send<string | null>("GET", `test:{${account}}:ready`)), (v) => v === "2"),
        20_000
      )
      yield* Effect.orDie(redis.send("SET", `test:{${account}}:go`, "1"))
      const results = yield* Effect.promise(() => Promise.all(workers.map((w) => w.exit)))
      for (const r of results) assert.strictEqual(r.code, 0, r.stderr)
      // The last line is the worker's tally (threshold warnings are logged before it).
      const counts = results.map((r) =>
        JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { ok: number; refused: number; failed: number }
      )
      const spent = Number((yield* Effect.orDie(redis.send<string | null>("GET", `test:{${account}}:spent`))) ?? 0)
      assert.isAtMost(spent, limit)
      // Both did work, and the limit was reached: some calls were refused.
      for (const c of counts) assert.isAbove(c.ok, 0)
      assert.isAbove(counts.reduce((s, c) => s + c.refused, 0), 0)
      const store = yield* Effect.map(
        Layer.build(layerAll(server.url, { quota: { account } })),
        (context) => Context.get(context, RedisQuota.RedisQuota)
      )
      const status = yield* Effect.orDie(store.status)
      assert.strictEqual(status.reserved, 0)
      assert.strictEqual(status.reservations, 0)
      assert.isAtLeast(status.used ?? -1, spent)
    }).pipe(Effect.scoped), 60_000)

  it.live("a killed process's reservation comes back with its lease", () =>
    Effect.gen(function*() {
      const account = nextAccount()
      const redis = yield* connection
      const holder = runWorker([server.url, account, "hold", 80, 100, 1500])
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.child.kill("SIGKILL")))
      yield* Effect.promise(() => holder.line("HELD"))
      const local = yield* guardIn(account, spentSource(redis, account, 100), { refreshInterval: "1 hour" })
      const held = yield* Effect.orDie(local.quota.status)
      assert.strictEqual(held.reserved, 80)
      assert.strictEqual((yield* local.guard.status).reserved, 80)
      // Renewed while the holder lives: past its first lease (1.5 s, by Redis time), it is still held.
      yield* eventually(
        "Redis time past the holder's first lease",
        Effect.map(Effect.orDie(local.quota.status), (s) => s.now >= held.now + 1500 + 100)
      )
      const refused = yield* Effect.flip(local.guard.reserve(30).pipe(Effect.scoped))
      assert.strictEqual(refused.reason._tag, "InsufficientQuota")
      holder.child.kill("SIGKILL")
      yield* Effect.promise(() => holder.exit)
      yield* eventually(
        "the killed holder's credits return",
        Effect.map(local.guard.status, (s) => s.reserved === 0),
        4_000
      )
      yield* local.guard.guard(30, Effect.void)
      assert.strictEqual((yield* local.quota.status).used, 30)
    }).pipe(Effect.scoped), 30_000)
})
