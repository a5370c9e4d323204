/**
 * `QuotaGuard.reconfigure`: new thresholds, caps, `whenUnknown`, interval and multipliers from now on;
 * reservations, the ledger and the last snapshot kept.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, PubSub } from "effect"
import { TestClock } from "effect/testing"
import { ElevenLabsError, ServerError } from "../../src/client/Errors.ts"
import * as QuotaGuard from "../../src/resilience/QuotaGuard.ts"

/** A guard over a scripted subscription endpoint, its first reading done, and the events since the last call. */
const setup = (initial: QuotaGuard.QuotaSnapshot, options?: QuotaGuard.Options) =>
  Effect.gen(function*() {
    const server = { snapshot: initial, fetches: 0, failing: false }
    const fetch = Effect.suspend(() => {
      server.fetches += 1
      return server.failing
        ? Effect.fail(
          new ElevenLabsError({
            reason: new ServerError({ operation: "user.subscription.get", message: "boom", status: 500 })
          })
        )
        : Effect.succeed(server.snapshot)
    })
    const guard = yield* QuotaGuard.make(options).pipe(
      Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
    )
    const sub = yield* guard.subscribe
    yield* Effect.exit(guard.refresh)
    const events = Effect.gen(function*() {
      const n = yield* PubSub.remaining(sub)
      return n === 0 ? [] : yield* PubSub.takeUpTo(sub, n)
    })
    yield* events
    return { guard, server, events }
  })

const crossings = (events: ReadonlyArray<QuotaGuard.QuotaEvent>) =>
  events.flatMap((e) =>
    e._tag === "ThresholdCrossed" || e._tag === "ThresholdCleared" ? [`${e._tag}:${e.threshold}:${e.percentUsed}`] : []
  )

const reasonOf = <A>(exit: Exit.Exit<A, unknown>) => {
  const error = Exit.isFailure(exit) ? Exit.findErrorOption(exit) : undefined
  assert.isTrue(error?._tag === "Some" && QuotaGuard.isQuotaGuardError(error.value), "a QuotaGuardError")
  return (error as { value: QuotaGuard.QuotaGuardError }).value.reason
}

describe("QuotaGuard.reconfigure", () => {
  it.effect("thresholds lowered under the usage are announced at once; earlier reservations settle as before", () =>
    Effect.gen(function*() {
      const { events, guard } = yield* setup({ used: 500, limit: 1000 })
      // Reservations taken before the change, one on each path (scoped store reservation, guarded call).
      const r1 = yield* guard.reserve(100)
      const r2 = yield* guard.reserve(50)
      assert.strictEqual((yield* guard.status).reserved, 150)
      assert.strictEqual(yield* guard.state, "ok")

      yield* guard.reconfigure({ warningPercent: 30, alertPercent: 40 })
      assert.deepStrictEqual(crossings(yield* events), [
        "ThresholdCrossed:warning:50",
        "ThresholdCrossed:alert:50"
      ])
      assert.strictEqual(yield* guard.state, "alert")
      const before = yield* guard.status
      assert.deepStrictEqual([before.used, before.limit, before.reserved, before.remaining], [500, 1000, 150, 350])

      yield* r1.commit(120)
      yield* r2.release
      const after = yield* guard.status
      assert.deepStrictEqual([after.used, after.reserved, after.remaining], [620, 0, 380])
      assert.deepStrictEqual(crossings(yield* events), [], "announced once, not again at the next change")

      // Raised above the usage again: cleared at once.
      yield* guard.reconfigure({ warningPercent: 80, alertPercent: 90 })
      assert.deepStrictEqual(crossings(yield* events), [
        "ThresholdCleared:warning:62",
        "ThresholdCleared:alert:62"
      ])
      assert.strictEqual(yield* guard.state, "ok")
      // A call guarded after the change commits against the same ledger.
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(300, Effect.succeed("audio")))))
      assert.strictEqual((yield* guard.status).used, 920)
      assert.deepStrictEqual(crossings(yield* events), ["ThresholdCrossed:warning:92", "ThresholdCrossed:alert:92"])
    }))

  it.effect("keyCaps become the new ones; usage and reservations per key are kept", () =>
    Effect.gen(function*() {
      const { guard } = yield* setup({ used: 0, limit: 10_000 }, { keyCaps: { batch: 100, live: 500 } })
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(60, Effect.void, { keyId: "batch" }))))
      const held = yield* guard.reserve(20, { keyId: "batch" })
      yield* guard.reconfigure({ keyCaps: { batch: 90 } })
      // 60 used + 20 reserved: 10 left under the new cap of 90.
      const refused = reasonOf(yield* Effect.exit(guard.guard(11, Effect.void, { keyId: "batch" })))
      assert.isTrue(refused._tag === "InsufficientQuota" && refused.key === "batch" && refused.remaining === 10)
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(10, Effect.void, { keyId: "batch" }))))
      yield* held.commit()
      const keys = (yield* guard.status).keys
      assert.deepStrictEqual(keys.find((k) => k.keyId === "batch"), {
        keyId: "batch",
        cap: 90,
        used: 90,
        reserved: 0,
        remaining: 0
      })
      // `live` lost its cap: listed, uncapped.
      assert.strictEqual(keys.find((k) => k.keyId === "live")?.cap, undefined)
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(900, Effect.void, { keyId: "live" }))))
    }))

  it.effect("multipliers from now on; absent multipliers keep the current table", () =>
    Effect.gen(function*() {
      const { guard } = yield* setup({ used: 0, limit: 1000 }, { multipliers: { eleven_flash_v2_5: 1 } })
      assert.strictEqual(guard.costOf(1000, "eleven_flash_v2_5"), 1000)
      yield* guard.reconfigure({ multipliers: { eleven_flash_v2_5: 3 } })
      assert.strictEqual(guard.costOf(1000, "eleven_flash_v2_5"), 3000)
      // What `/v1/models` taught it stays through a change that does not name multipliers.
      yield* guard.setMultipliers({ eleven_flash_v2_5: 2 })
      yield* guard.reconfigure({ warningPercent: 70 })
      assert.strictEqual(guard.costOf(1000, "eleven_flash_v2_5"), 2000)
      // An empty table: the built-in one (flash: half a credit per character).
      yield* guard.reconfigure({ multipliers: {} })
      assert.strictEqual(guard.costOf(1000, "eleven_flash_v2_5"), 500)
    }))

  it.effect("whenUnknown: deny applies at once to a guard with no snapshot", () =>
    Effect.gen(function*() {
      const { guard, server } = yield* Effect.gen(function*() {
        const server = { fetches: 0 }
        const fetch = Effect.suspend(() => {
          server.fetches += 1
          return Effect.fail(
            new ElevenLabsError({
              reason: new ServerError({ operation: "user.subscription.get", message: "boom", status: 500 })
            })
          )
        })
        const guard = yield* QuotaGuard.make().pipe(
          Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
        )
        yield* Effect.exit(guard.refresh)
        return { guard, server }
      })
      assert.strictEqual(server.fetches, 1)
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(10, Effect.void))))
      yield* guard.reconfigure({ whenUnknown: "deny" })
      assert.strictEqual(reasonOf(yield* Effect.exit(guard.guard(10, Effect.void)))._tag, "QuotaUnknown")
      yield* guard.reconfigure({ whenUnknown: "allow" })
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(10, Effect.void))))
    }))

  it.effect("a shorter refresh interval takes effect at once; a longer one pushes the next reading back", () =>
    Effect.gen(function*() {
      const { guard, server } = yield* setup({ used: 0, limit: 1000 }) // read at 0 s, next at 60 s
      yield* TestClock.adjust("10 seconds")
      yield* guard.reconfigure({ refreshInterval: "20 seconds" })
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual(server.fetches, 1)
      yield* TestClock.adjust("1 second") // 20 s after the last reading started
      assert.strictEqual(server.fetches, 2)
      yield* TestClock.adjust("20 seconds")
      assert.strictEqual(server.fetches, 3) // at 40 s
      yield* guard.reconfigure({ refreshInterval: "2 minutes" })
      yield* TestClock.adjust("100 seconds") // 140 s: the old 20 s rhythm would have read 5 more times
      assert.strictEqual(server.fetches, 3)
      yield* TestClock.adjust("20 seconds") // 160 s = 40 s + 2 minutes
      assert.strictEqual(server.fetches, 4)
      assert.strictEqual((yield* guard.status).nextRefreshAt, 280_000)
    }))

  it.effect("a due reading starts at once when the new interval is already over", () =>
    Effect.gen(function*() {
      const { guard, server } = yield* setup({ used: 0, limit: 1000 })
      yield* TestClock.adjust("30 seconds")
      yield* guard.reconfigure({ refreshInterval: "10 seconds" })
      // Started by the time `reconfigure` returns: the next one is due 10 s from now.
      assert.strictEqual((yield* guard.status).nextRefreshAt, 40_000)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(server.fetches, 2)
    }))

  it.effect("invalid options die and change nothing; eventBuffer cannot change", () =>
    Effect.gen(function*() {
      const { events, guard } = yield* setup({ used: 850, limit: 1000 }, { keyCaps: { k: 100 }, eventBuffer: 64 })
      yield* events
      const invalid: ReadonlyArray<QuotaGuard.Options> = [
        // A valid threshold next to an invalid cap: neither applies.
        { warningPercent: 10, alertPercent: 20, keyCaps: { k: -1 } },
        { warningPercent: 95, alertPercent: 90 },
        { alertPercent: Number.NaN },
        { refreshInterval: "0 seconds" },
        { refreshInterval: "soon" as "1 second" },
        { whenUnknown: "maybe" as "allow" },
        { multipliers: { voice_x: -1 } },
        { eventBuffer: 0 },
        { eventBuffer: 128 }
      ]
      for (const options of invalid) {
        const exit = yield* Effect.exit(guard.reconfigure({ keyCaps: { k: 100 }, ...options }))
        assert.isTrue(Exit.hasDies(exit), `dies on ${JSON.stringify(options)}`)
      }
      assert.deepStrictEqual(crossings(yield* events), [], "no threshold moved")
      assert.strictEqual(yield* guard.state, "warning", "still 80/90 at 85 %")
      assert.strictEqual((yield* guard.status).keys.find((k) => k.keyId === "k")?.cap, 100)
      // The same event buffer, or none, is fine.
      yield* guard.reconfigure({ keyCaps: { k: 100 }, eventBuffer: 64 })
      yield* guard.reconfigure({ keyCaps: { k: 100 } })
      assert.strictEqual(yield* guard.state, "warning")
    }))
})
