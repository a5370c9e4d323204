import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer, Schedule } from "effect"
import { afterAll, beforeAll } from "vitest"
import { ElevenLabsError, ServerError } from "../../src/client/Errors.ts"
import * as RedisBreaker from "../../src/distributed/RedisBreaker.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import * as Breaker from "../../src/resilience/Breaker.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
})

const serverError = Effect.fail(
  new ElevenLabsError({ reason: new ServerError({ operation: "textToSpeech.convert", message: "boom", status: 500 }) })
)

/** Waits until the pool's open time is over (by the store's clock): the next call is the probe. Fails after 10 s. */
const untilHalfOpen = (breaker: Breaker.Breaker["Service"], pool: string) =>
  breaker.state(pool).pipe(
    Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (s) => Breaker.stateNow(s) === "HalfOpen" }),
    Effect.timeout("10 seconds")
  )

/** A breaker as one process would build it: its own connection, the shared Redis store. */
const processBreaker = (options: Breaker.BreakerOptions) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RedisBreaker.layerBreaker(options).pipe(Layer.provide(SharedState.layerConnection(server.url)), Layer.fresh)
    )
    return Context.get(context, Breaker.Breaker)
  })

describe("RedisBreaker", () => {
  it.live("two Breaker instances on the same Redis store see the same open circuit", () =>
    Effect.gen(function*() {
      const options: Breaker.BreakerOptions = {
        policy: { _tag: "consecutive", failures: 3 },
        openDuration: "600 millis",
        keyPrefix: "acct-a:"
      }
      const a = yield* processBreaker(options)
      const b = yield* processBreaker(options)
      for (let i = 0; i < 3; i++) yield* Effect.ignore(serverError.pipe(a.execute("standard")))
      assert.strictEqual((yield* a.state("standard"))._tag, "Open")
      assert.strictEqual((yield* b.state("standard"))._tag, "Open")
      let ran = false
      const rejected = yield* Effect.flip(Effect.sync(() => (ran = true)).pipe(b.execute("standard")))
      assert.isFalse(ran)
      assert.isTrue(Breaker.isBreakerError(rejected))
      if (Breaker.isBreakerError(rejected)) assert.strictEqual(rejected.reason._tag, "CircuitOpen")
      // Other pools and other key prefixes are other circuits.
      assert.strictEqual((yield* b.state("flash"))._tag, "Closed")
      // After the open time, one success through b (the probe) closes it for a too.
      yield* untilHalfOpen(b, "standard")
      assert.strictEqual(yield* Effect.succeed("audio").pipe(b.execute("standard")), "audio")
      assert.strictEqual((yield* a.state("standard"))._tag, "Closed")
    }).pipe(Effect.scoped))

  it.live("a probe interrupted in one process frees the lease: another process probes at once and closes it", () =>
    Effect.gen(function*() {
      const options: Breaker.BreakerOptions = {
        policy: { _tag: "consecutive", failures: 2 },
        openDuration: "300 millis",
        keyPrefix: "acct-p:"
      }
      const a = yield* processBreaker(options)
      const b = yield* processBreaker(options)
      for (let i = 0; i < 2; i++) yield* Effect.ignore(serverError.pipe(a.execute("standard")))
      yield* untilHalfOpen(a, "standard")
      const started = yield* Deferred.make<void>()
      const probe = yield* Deferred.succeed(started, undefined).pipe(
        Effect.andThen(Effect.never),
        a.execute("standard"),
        Effect.forkChild
      )
      // b sees the probe a holds, and is refused while it runs (the lease is 10 s, far longer than this test).
      yield* Deferred.await(started)
      assert.strictEqual((yield* b.state("standard"))._tag, "HalfOpen")
      const refused = yield* Effect.flip(Effect.succeed("audio").pipe(b.execute("standard")))
      assert.isTrue(Breaker.isBreakerError(refused) && refused.reason._tag === "CircuitHalfOpen")
      yield* Fiber.interrupt(probe)
      assert.strictEqual(yield* Effect.succeed("audio").pipe(b.execute("standard")), "audio")
      assert.strictEqual((yield* a.state("standard"))._tag, "Closed")
    }).pipe(Effect.scoped))

  it.live("Redis down: the breaker lets calls through unrecorded (onStoreError allow), and shares again after a restart", () =>
    Effect.gen(function*() {
      const options: Breaker.BreakerOptions = {
        policy: { _tag: "consecutive", failures: 2 },
        openDuration: "10 seconds",
        keyPrefix: "acct-b:"
      }
      const a = yield* processBreaker(options)
      yield* Effect.promise(() => server.stop())
      const during = yield* Effect.succeed("audio").pipe(a.execute("stt"))
      assert.strictEqual(during, "audio")
      const failed = yield* Effect.flip(serverError.pipe(a.execute("stt")))
      assert.strictEqual(failed._tag, "ElevenLabsError")
      yield* Effect.promise(() => server.start())
      // node-redis reconnects with backoff; then failures are recorded again and open the shared circuit.
      for (let i = 0; i < 100; i++) {
        const r = yield* Effect.result(a.state("stt"))
        if (r._tag === "Success") break
        yield* Effect.sleep("100 millis")
      }
      for (let i = 0; i < 2; i++) yield* Effect.ignore(serverError.pipe(a.execute("stt")))
      const b = yield* processBreaker(options)
      assert.strictEqual((yield* b.state("stt"))._tag, "Open")
    }).pipe(
      Effect.scoped,
      Effect.ensuring(Effect.promise(() => (server.running() ? Promise.resolve() : server.start())))
    ))
})
