import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import { ElevenLabsError, ServerError } from "../../src/client/Errors.ts"
import * as RedisBreaker from "../../src/distributed/RedisBreaker.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import * as Breaker from "../../src/resilience/Breaker.ts"
import { startRedisServer, type RedisServer } from "../utils/redisServer.ts"

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
      const options: Breaker.BreakerOptions = { policy: { _tag: "consecutive", failures: 3 }, openDuration: "600 millis", keyPrefix: "acct-a:" }
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
      yield* Effect.sleep("700 millis")
      assert.strictEqual(yield* Effect.succeed("audio").pipe(b.execute("standard")), "audio")
      assert.strictEqual((yield* a.state("standard"))._tag, "Closed")
    }).pipe(Effect.scoped))
})
