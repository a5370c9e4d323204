/**
 * `guard.guardWith(effect, slotOf)` on the memory store: the slot's cost reserved in one step (kept in
 * `slot.quotaHeld`), committed on success (with `actualCost` when it gives an amount), released on failure
 * or interruption, the account marked exhausted on `QuotaExceeded`; refusals and a bad cost fail with
 * `QuotaGuardError` before the effect runs. One built effect serves every caller, each with its own slot.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import { ElevenLabsError, QuotaExceeded } from "../../src/client/Errors.ts"
import * as QuotaGuard from "../../src/resilience/QuotaGuard.ts"

interface Answer {
  readonly characterCost?: number | undefined
}
/** The call's slot, with what the test's effect does (read from the slot: the effect is built once). */
interface Slot extends QuotaGuard.QuotaSlot<Answer> {
  readonly body: Effect.Effect<Answer, unknown>
}

const CurrentSlot = Context.Reference<Slot>("test/QuotaGuard/Slot", {
  defaultValue: () => {
    throw new Error("no slot provided")
  }
})
const slotOf = (fiber: Fiber.Fiber<unknown, unknown>) => fiber.getRef(CurrentSlot)

const slotFor = (cost: number, body: Effect.Effect<Answer, unknown>, extra?: Partial<Slot>): Slot => ({
  cost,
  body,
  quotaHeld: undefined,
  actualCost: (a) => a.characterCost,
  ...extra
})

/** A guard whose first snapshot is taken, with one `guardWith` effect built once and a count of the bodies run. */
const setup = (snapshot: QuotaGuard.QuotaSnapshot) =>
  Effect.gen(function*() {
    const guard = yield* QuotaGuard.make().pipe(
      Effect.provideService(
        QuotaGuard.SubscriptionSource,
        QuotaGuard.SubscriptionSource.of({ fetch: Effect.succeed(snapshot) })
      )
    )
    yield* Effect.exit(guard.refresh)
    const ran = { count: 0 }
    const guarded = guard.guardWith(
      Effect.withFiber((fiber) => {
        ran.count++
        return slotOf(fiber).body
      }),
      slotOf
    )
    const run = (slot: Slot) => Effect.provideService(guarded, CurrentSlot, slot)
    const numbers = Effect.map(guard.status, (s) => ({ used: s.used, reserved: s.reserved }))
    return { guard, ran, run, numbers }
  })

const quotaExceeded = new ElevenLabsError({
  reason: new QuotaExceeded({
    operation: "textToSpeech.convert",
    message: "quota exceeded",
    status: 401,
    detailStatus: "quota_exceeded",
    quota: 1000,
    remaining: 40,
    required: 100
  })
})

const reasonOf = <A>(exit: Exit.Exit<A, unknown>) => {
  const error = Exit.isFailure(exit) ? Exit.findErrorOption(exit) : undefined
  assert.isTrue(error?._tag === "Some" && QuotaGuard.isQuotaGuardError(error.value), "a QuotaGuardError")
  return (error as { value: QuotaGuard.QuotaGuardError }).value.reason
}

describe("QuotaGuard.guardWith (memory store)", () => {
  it.effect("holds the cost in the slot while the effect runs, then commits actualCost, else the cost", () =>
    Effect.gen(function*() {
      const { numbers, run } = yield* setup({ used: 0, limit: 1000 })
      const seen: Array<unknown> = []
      const peek = Effect.andThen(
        numbers,
        (n) => Effect.withFiber((fiber) => Effect.sync(() => void seen.push(n, slotOf(fiber).quotaHeld)))
      )
      const charged = slotFor(100, Effect.as(peek, { characterCost: 80 }))
      assert.deepStrictEqual(yield* run(charged), { characterCost: 80 })
      assert.deepStrictEqual(seen, [{ used: 0, reserved: 100 }, 100])
      assert.isUndefined(charged.quotaHeld)
      assert.deepStrictEqual(yield* numbers, { used: 80, reserved: 0 })
      // No amount from the reader (or a malformed one): the estimate is committed.
      yield* run(slotFor(50, Effect.succeed({})))
      yield* run(slotFor(30, Effect.succeed({ characterCost: Number.NaN })))
      yield* run(slotFor(20, Effect.succeed({ characterCost: 5 }), { actualCost: undefined }))
      assert.deepStrictEqual(yield* numbers, { used: 180, reserved: 0 })
    }))

  it.effect("failure releases: nothing reserved, nothing used, the slot cleared", () =>
    Effect.gen(function*() {
      const { numbers, run } = yield* setup({ used: 0, limit: 1000 })
      const slot = slotFor(700, Effect.fail("nope"))
      assert.deepStrictEqual(yield* Effect.exit(run(slot)), Exit.fail("nope"))
      assert.deepStrictEqual(yield* numbers, { used: 0, reserved: 0 })
      assert.isUndefined(slot.quotaHeld)
      const died = slotFor(700, Effect.die("bug"))
      assert.isTrue(Exit.hasDies(yield* Effect.exit(run(died))))
      assert.deepStrictEqual([yield* numbers, died.quotaHeld], [{ used: 0, reserved: 0 }, undefined])
    }))

  it.effect("interrupting callers waiting inside the effect releases what they hold", () =>
    Effect.gen(function*() {
      const { numbers, run } = yield* setup({ used: 0, limit: 1000 })
      const slots = [slotFor(300, Effect.never), slotFor(200, Effect.never), slotFor(100, Effect.never)]
      const fibers = yield* Effect.forEach(slots, (slot) => Effect.forkChild(run(slot), { startImmediately: true }))
      assert.deepStrictEqual(yield* numbers, { used: 0, reserved: 600 })
      assert.deepStrictEqual(slots.map((s) => s.quotaHeld), [300, 200, 100])
      yield* Fiber.interrupt(fibers[1]!)
      assert.deepStrictEqual([yield* numbers, slots[1]!.quotaHeld], [{ used: 0, reserved: 400 }, undefined])
      yield* Effect.forEach(fibers, Fiber.interrupt)
      assert.deepStrictEqual(yield* numbers, { used: 0, reserved: 0 })
      assert.deepStrictEqual(slots.map((s) => s.quotaHeld), [undefined, undefined, undefined])
    }))

  it.effect("QuotaExceeded marks the guard exhausted and releases; the next call is refused without running", () =>
    Effect.gen(function*() {
      const { guard, numbers, ran, run } = yield* setup({ used: 0, limit: 1000, resetAt: 5 * 60_000 })
      const slot = slotFor(100, Effect.fail(quotaExceeded))
      assert.deepStrictEqual(yield* Effect.exit(run(slot)), Exit.fail(quotaExceeded))
      assert.strictEqual(yield* guard.state, "exhausted")
      assert.deepStrictEqual([(yield* numbers).reserved, slot.quotaHeld], [0, undefined])
      const next = slotFor(1, Effect.succeed({}))
      assert.strictEqual(reasonOf(yield* Effect.exit(run(next)))._tag, "QuotaExhausted")
      assert.deepStrictEqual([ran.count, next.quotaHeld, (yield* numbers).reserved], [1, undefined, 0])
    }))

  it.effect("an insufficient quota or a bad cost is refused before the effect starts", () =>
    Effect.gen(function*() {
      const { numbers, ran, run } = yield* setup({ used: 900, limit: 1000 })
      const slot = slotFor(101, Effect.succeed({}))
      const reason = reasonOf(yield* Effect.exit(run(slot)))
      assert.deepStrictEqual(reason, new QuotaGuard.InsufficientQuota({ needed: 101, remaining: 100, percentUsed: 90 }))
      for (const cost of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
        assert.strictEqual(reasonOf(yield* Effect.exit(run(slotFor(cost, Effect.succeed({})))))._tag, "InvalidInput")
      }
      assert.deepStrictEqual([ran.count, slot.quotaHeld, yield* numbers], [0, undefined, { used: 900, reserved: 0 }])
      // Exactly what is left is still granted.
      yield* run(slotFor(100, Effect.succeed({})))
      assert.deepStrictEqual([ran.count, yield* numbers], [1, { used: 1000, reserved: 0 }])
    }))

  it.effect.prop(
    "concurrent callers, some interrupted while they wait: never over the limit, nothing left reserved",
    [
      Schema.Array(Schema.Struct({
        cost: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 300 })),
        delay: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 5 })),
        outcome: Schema.Literals(["success", "failure", "never"]),
        // 0: not interrupted; otherwise interrupted at this many 100 ms steps.
        quitAt: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 7 })),
        charged: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100 }))
      })).check(Schema.isMaxLength(30)),
      Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2000 }))
    ],
    ([calls, limit]) =>
      Effect.gen(function*() {
        const { guard, numbers, run } = yield* setup({ used: 0, limit })
        let violations = 0
        let committed = 0
        const check = Effect.map(numbers, (n) => {
          if ((n.used ?? 0) + n.reserved > limit) violations++
        })
        const slots = calls.map((c) => {
          const charged = Math.floor((c.cost * c.charged) / 100)
          const answer = c.outcome === "failure"
            ? Effect.fail("failed")
            : c.outcome === "never"
            ? Effect.never
            : Effect.succeed({ characterCost: charged }).pipe(
              Effect.tap(() => Effect.sync(() => void (committed += charged)))
            )
          return slotFor(
            c.cost,
            Effect.sleep(Duration.millis(c.delay * 100)).pipe(Effect.andThen(check), Effect.andThen(answer))
          )
        })
        const fibers = yield* Effect.forEach(slots, (slot) =>
          Effect.forkChild(Effect.andThen(Effect.exit(run(slot)), check), { startImmediately: true }))
        const quits = calls.flatMap((c, i) => (c.quitAt === 0 ? [] : [{ at: c.quitAt, fiber: fibers[i]! }]))
        for (let step = 1; step <= 8; step++) {
          yield* TestClock.adjust("100 millis")
          yield* Effect.forEach(
            quits.filter((q) =>
              q.at === step
            ),
            (q) => Fiber.interrupt(q.fiber)
          )
          yield* check
        }
        yield* Effect.forEach(fibers, Fiber.interrupt)
        assert.strictEqual(violations, 0)
        assert.deepStrictEqual(yield* numbers, { used: committed, reserved: 0 })
        assert.isTrue(slots.every((s) => s.quotaHeld === undefined), "no slot still holds credits")
        assert.isAtMost(committed, limit)
        assert.strictEqual((yield* guard.status).remaining, limit - committed)
      }),
    { arbitrary: { runs: 60 } }
  )
})
