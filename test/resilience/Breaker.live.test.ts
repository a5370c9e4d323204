/**
 * `Breaker.reconfigure`: new options from now on, the circuits' state kept, on both execute paths and on the
 * Redis store.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Ref, Schedule, Stream } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { TestClock } from "effect/testing"
import { afterAll, beforeAll } from "vitest"
import { ElevenLabsError, ServerError } from "../../src/client/Errors.ts"
import * as RedisBreaker from "../../src/distributed/RedisBreaker.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import * as Breaker from "../../src/resilience/Breaker.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

const serverError = Effect.fail(
  new ElevenLabsError({ reason: new ServerError({ operation: "textToSpeech.convert", message: "boom", status: 500 }) })
)
const ok = Effect.succeed("audio")

const run = (breaker: Breaker.Breaker["Service"], pool = "standard") => <A, E>(attempt: Effect.Effect<A, E>) =>
  attempt.pipe(breaker.execute(pool), Effect.result)

/** Collects the breaker's transitions from now on, as `from>to:openFor`. */
const collect = (breaker: Breaker.Breaker["Service"]) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    yield* breaker.transitions.pipe(
      Stream.runForEach((t) =>
        Effect.sync(() =>
          void seen.push(`${t.from}>${t.to}${t.openFor === undefined ? "" : `:${Duration.toMillis(t.openFor)}`}`)
        )
      ),
      Effect.forkScoped({ startImmediately: true })
    )
    return seen
  })

const openFor = (state: CircuitBreaker.State) => state._tag === "Open" ? Duration.toMillis(state.retryAfter) : -1

const stores = [
  ["Effect's execute", () => CircuitBreaker.layerStoreMemory()],
  ["fast path", () => Breaker.layerStoreMemory()]
] as const

for (const [path, storeLayer] of stores) {
  const withStore = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.provide(self, storeLayer())

  describe(`Breaker.reconfigure (${path})`, () => {
    it.effect("a lower consecutive threshold applies at once and keeps the streak so far", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 5 } })
        yield* run(breaker)(serverError)
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
        yield* breaker.reconfigure({ policy: { _tag: "consecutive", failures: 2 } })
        // The failure before the change still counts: one more makes two in a row.
        yield* run(breaker)(serverError)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
        // A fresh circuit: two failures open it, one does not.
        yield* run(breaker, "flash")(serverError)
        assert.strictEqual(yield* breaker.gauge("flash"), 0)
        yield* run(breaker, "flash")(serverError)
        assert.strictEqual(yield* breaker.gauge("flash"), 2)
      })))

    it.effect("an open circuit stays open for its current opening; the next opening takes the new duration", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({
          policy: { _tag: "consecutive", failures: 1 },
          openDuration: "60 seconds"
        })
        const seen = yield* collect(breaker)
        yield* run(breaker)(serverError)
        assert.strictEqual(openFor(yield* breaker.state("standard")), 60_000)
        yield* breaker.reconfigure({ policy: { _tag: "consecutive", failures: 1 }, openDuration: "10 seconds" })
        yield* TestClock.adjust("20 seconds")
        const rejected = yield* run(breaker)(ok)
        assert.isTrue(
          rejected._tag === "Failure" && Breaker.isBreakerError(rejected.failure) &&
            rejected.failure.reason._tag === "CircuitOpen" &&
            Duration.toMillis(rejected.failure.retryAfter!) === 40_000,
          "still open for the 40 s left of its 60 s opening"
        )
        yield* TestClock.adjust("40 seconds")
        yield* run(breaker)(serverError) // the probe fails: a new opening, of the new length
        assert.strictEqual(openFor(yield* breaker.state("standard")), 10_000)
        yield* TestClock.adjust("10 seconds")
        assert.strictEqual((yield* run(breaker)(ok))._tag, "Success")
        yield* Effect.yieldNow
        // The subscription taken before the change saw every transition after it.
        assert.deepStrictEqual(seen, [
          "Closed>Open:60000",
          "Open>HalfOpen",
          "HalfOpen>Open:10000",
          "Open>HalfOpen",
          "HalfOpen>Closed"
        ])
      })))

    it.effect("a rate window of another size keeps its newest calls: trimmed at the next record", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ policy: { _tag: "rate", threshold: 0.5, size: 10, minimumCalls: 10 } })
        for (let i = 0; i < 4; i++) yield* run(breaker)(ok)
        for (let i = 0; i < 4; i++) yield* run(breaker)(serverError)
        assert.strictEqual(yield* breaker.gauge("standard"), 0, "8 calls: under minimumCalls")
        yield* breaker.reconfigure({ policy: { _tag: "rate", threshold: 0.75, size: 4, minimumCalls: 4 } })
        // The window keeps the four newest calls (all failures) and adds this one: 4 of 4 failed.
        yield* run(breaker)(serverError)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
      })))

    it.effect("invalid options die and change nothing; keyPrefix cannot change", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ keyPrefix: "acct:" })
        const invalid: ReadonlyArray<Breaker.BreakerOptions> = [
          // A valid threshold next to an invalid duration: neither applies.
          { policy: { _tag: "consecutive", failures: 1 }, openDuration: "-1 second" },
          { policy: { _tag: "consecutive", failures: 0 } },
          { policy: { _tag: "rate", threshold: 2 } },
          { policy: { _tag: "rate", size: 4, minimumCalls: 5 } },
          { growth: { factor: 0.5 } },
          { halfOpenRetryAfter: "soon" as Duration.Input },
          { onStoreError: "ignore" as "allow" },
          { keyPrefix: "other:" }
        ]
        for (const options of invalid) {
          const exit = yield* Effect.exit(breaker.reconfigure(options))
          assert.isTrue(Exit.hasDies(exit), `dies on ${JSON.stringify(options)}`)
        }
        // The same prefix, or none, is fine.
        yield* breaker.reconfigure({ keyPrefix: "acct:" })
        yield* breaker.reconfigure({})
        assert.strictEqual(breaker.keyOf("standard"), "acct:standard")
        // Behaviour unchanged: the defaults (5 in a row, 60 s).
        for (let i = 0; i < 4; i++) yield* run(breaker)(serverError)
        assert.strictEqual(yield* breaker.gauge("standard"), 0)
        yield* run(breaker)(serverError)
        assert.strictEqual(openFor(yield* breaker.state("standard")), 60_000)
      })))

    it.effect("a retried attempt built before the change runs under the new options", () =>
      withStore(Effect.gen(function*() {
        const breaker = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 5 } })
        const attempts = yield* Ref.make(0)
        const attempt = Ref.update(attempts, (n) => n + 1).pipe(
          Effect.andThen(serverError),
          breaker.execute("standard")
        )
        yield* Effect.ignore(attempt)
        yield* breaker.reconfigure({ policy: { _tag: "consecutive", failures: 2 } })
        yield* Effect.ignore(attempt)
        assert.strictEqual(yield* breaker.gauge("standard"), 2)
        const rejected = yield* Effect.flip(attempt)
        assert.isTrue(Breaker.isBreakerError(rejected))
        assert.strictEqual(yield* Ref.get(attempts), 2)
      })))
  })
}

describe("Breaker.reconfigure (Redis store)", () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedisServer()
  })
  afterAll(async () => {
    await server?.close()
  })

  const processBreaker = (options: Breaker.BreakerOptions) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        RedisBreaker.layerBreaker(options).pipe(Layer.provide(SharedState.layerConnection(server.url)), Layer.fresh)
      )
      return Context.get(context, Breaker.Breaker)
    })

  it.live("thresholds and open duration change live; the shared circuit's state and the stream survive", () =>
    Effect.gen(function*() {
      const breaker = yield* processBreaker({
        policy: { _tag: "consecutive", failures: 5 },
        openDuration: "1500 millis",
        keyPrefix: "live-a:"
      })
      const other = yield* processBreaker({ policy: { _tag: "consecutive", failures: 5 }, keyPrefix: "live-a:" })
      const seen = yield* collect(breaker)
      yield* run(breaker)(serverError)
      yield* breaker.reconfigure({ policy: { _tag: "consecutive", failures: 2 }, openDuration: "1500 millis" })
      yield* run(breaker)(serverError) // the streak of 1 in Redis, plus this one
      assert.strictEqual((yield* other.state("standard"))._tag, "Open", "another process sees it open")
      yield* breaker.reconfigure({ policy: { _tag: "consecutive", failures: 2 }, openDuration: "200 millis" })
      // Still the 1.5 s opening it got under the old options.
      yield* Effect.sleep("400 millis")
      const state = yield* breaker.state("standard")
      assert.isTrue(state._tag === "Open" && Duration.toMillis(state.retryAfter) > 500, "still open")
      yield* breaker.state("standard").pipe(
        Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (s) => Breaker.stateNow(s) === "HalfOpen" }),
        Effect.timeout("5 seconds")
      )
      yield* run(breaker)(serverError) // the probe fails: the new 200 ms
      const reopened = yield* breaker.state("standard")
      assert.isTrue(reopened._tag === "Open" && Duration.toMillis(reopened.retryAfter) <= 200)
      const invalid = yield* Effect.exit(breaker.reconfigure({ keyPrefix: "live-b:" }))
      assert.isTrue(Exit.hasDies(invalid))
      yield* Effect.sleep("50 millis")
      assert.deepStrictEqual(seen, ["Closed>Open:1500", "Open>HalfOpen", "HalfOpen>Open:200"])
    }).pipe(Effect.scoped))
})
