/**
 * `coalescer.inlineWith(effect, slotOf)`: an inline flight built once, keyed by the caller's slot, with the
 * flight kept in the slot and cleared when the call ends. Callers of one key share one run and get the value
 * itself (a joiner's as its `boundJoin` makes it); an interrupted starter hands over to waiting joiners, or
 * frees the key when nobody joined; failures are shared; no key runs the effect alone.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Duration, Effect, Exit, Fiber, Ref, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Coalescer from "../../src/resilience/Coalescer.ts"

class Upstream extends Schema.TaggedError<Upstream>()("Upstream", { n: Schema.Number }) {}

/** The call's slot; never defaulted: a caller without one of its own is a bug of the test. */
const CurrentSlot = Context.Reference<Coalescer.Slot>("test/Coalescer/Slot", {
  defaultValue: () => {
    throw new Error("no slot provided")
  }
})
const slotOf = (fiber: Fiber.Fiber<unknown, unknown>) => fiber.getRef(CurrentSlot)
const slotFor = (coalesceKey: string | undefined): Coalescer.Slot => ({ coalesceKey, flight: undefined })

/** An upstream call counting its starts, ends and interruptions, and holding a "permit" while it runs. */
const makeUpstream = <A, E>(duration: Duration.Input, result: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const counts = { started: 0, finished: 0, interrupted: 0 }
    const permits = yield* Ref.make(1)
    const call = Effect.acquireUseRelease(
      Ref.update(permits, (n) => n - 1),
      () =>
        Effect.sync(() => void counts.started++).pipe(
          Effect.andThen(Effect.sleep(duration)),
          Effect.andThen(result),
          Effect.tap(() => Effect.sync(() => void counts.finished++)),
          Effect.onInterrupt(() => Effect.sync(() => void counts.interrupted++))
        ),
      () => Ref.update(permits, (n) => n + 1)
    )
    return { counts, permits, call }
  })

/** Runs the one built effect for each slot, each caller on a fiber of its own with its own slot. */
const forkEach = <A, E>(effect: Effect.Effect<A, E>, slots: ReadonlyArray<Coalescer.Slot>) =>
  Effect.forEach(
    slots,
    (slot) => Effect.forkChild(Effect.provideService(effect, CurrentSlot, slot), { startImmediately: true })
  )

const flightsOf = (slots: ReadonlyArray<Coalescer.Slot>) => slots.map((s) => s.flight !== undefined)

describe("Coalescer.inlineWith", () => {
  it.effect("callers of one key share one run; each gets the value; the slot's flight is cleared", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make({ flight: "detached" })
      const up = yield* makeUpstream("1 second", Effect.succeed("audio"))
      // Built once, run by every caller; joiners mark what they get.
      const shared = coalescer.inlineWith(up.call, slotOf, { boundJoin: Effect.map((v) => `${v}!`) })
      const slots = Array.from({ length: 5 }, () => slotFor("k"))
      const fibers = yield* forkEach(shared, slots)
      assert.strictEqual(yield* coalescer.inFlight, 1)
      assert.deepStrictEqual(flightsOf(slots), [true, false, false, false, false], "only the starter's slot holds it")
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(results, ["audio", "audio!", "audio!", "audio!", "audio!"])
      assert.deepStrictEqual([up.counts.started, up.counts.finished, yield* Ref.get(up.permits)], [1, 1, 1])
      assert.deepStrictEqual(flightsOf(slots), [false, false, false, false, false])
      assert.strictEqual(yield* coalescer.inFlight, 0)
      // The key is free again: a later caller starts a run of its own.
      const later = slotFor("k")
      const again = yield* forkEach(shared, [later])
      assert.isTrue(later.flight !== undefined)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(again[0]!), "audio")
      assert.deepStrictEqual([up.counts.started, later.flight], [2, undefined])
    }))

  it.effect("different keys do not share", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream("1 second", Effect.succeed("audio"))
      const shared = coalescer.inlineWith(up.call, slotOf)
      const slots = [slotFor("a"), slotFor("b"), slotFor("a"), slotFor("b")]
      const fibers = yield* forkEach(shared, slots)
      assert.deepStrictEqual([yield* coalescer.inFlight, up.counts.started], [2, 2])
      assert.deepStrictEqual(flightsOf(slots), [true, true, false, false])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Effect.forEach(fibers, Fiber.join), ["audio", "audio", "audio", "audio"])
      assert.deepStrictEqual([yield* coalescer.inFlight, up.counts.started], [0, 2])
    }))

  it.effect("a starter interrupted while joiners wait hands the call over; they still get a value", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream("1 second", Effect.succeed("audio"))
      const shared = coalescer.inlineWith(up.call, slotOf)
      const slots = [slotFor("k"), slotFor("k"), slotFor("k")]
      const [starter, ...joiners] = yield* forkEach(shared, slots)
      yield* TestClock.adjust("500 millis")
      yield* Fiber.interrupt(starter!)
      yield* Effect.yieldNow
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(starter!)))
      assert.isUndefined(slots[0]!.flight, "the starter's slot no longer holds the flight")
      // The first run was interrupted (its permit released); a second one runs for the joiners.
      assert.deepStrictEqual([up.counts.started, up.counts.interrupted, yield* Ref.get(up.permits)], [2, 1, 0])
      assert.strictEqual(yield* coalescer.inFlight, 1)
      // A caller arriving now joins the handed-over run.
      const late = slotFor("k")
      const [lateFiber] = yield* forkEach(shared, [late])
      assert.isUndefined(late.flight)
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach([...joiners, lateFiber!], Fiber.join)
      assert.deepStrictEqual(results, ["audio", "audio", "audio"])
      assert.deepStrictEqual([up.counts.started, up.counts.finished, yield* Ref.get(up.permits)], [2, 1, 1])
      assert.deepStrictEqual([yield* coalescer.inFlight, ...flightsOf([...slots, late])], [
        0,
        false,
        false,
        false,
        false
      ])
    }))

  it.effect("a starter interrupted with nobody joined ends the upstream and frees the key", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream("1 second", Effect.succeed("audio"))
      const shared = coalescer.inlineWith(up.call, slotOf)
      const slot = slotFor("k")
      const [starter] = yield* forkEach(shared, [slot])
      yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(starter!)
      assert.deepStrictEqual(
        [up.counts.started, up.counts.interrupted, yield* Ref.get(up.permits), yield* coalescer.inFlight],
        [1, 1, 1, 0]
      )
      assert.isUndefined(slot.flight)
      // A new caller starts afresh (it does not join anything left behind).
      const fresh = slotFor("k")
      const [next] = yield* forkEach(shared, [fresh])
      assert.deepStrictEqual([up.counts.started, fresh.flight !== undefined], [2, true])
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(next!), "audio")
      assert.deepStrictEqual([up.counts.finished, fresh.flight, yield* coalescer.inFlight], [1, undefined, 0])
    }))

  it.effect("failures and defects are shared", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const failing = yield* makeUpstream("1 second", Effect.fail(new Upstream({ n: 7 })))
      const dying = yield* makeUpstream("1 second", Effect.die("boom"))
      const failSlots = [slotFor("f"), slotFor("f"), slotFor("f")]
      const dieSlots = [slotFor("d"), slotFor("d")]
      const failed = yield* forkEach(coalescer.inlineWith(failing.call, slotOf), failSlots)
      const died = yield* forkEach(coalescer.inlineWith(dying.call, slotOf), dieSlots)
      yield* TestClock.adjust("1 second")
      for (const exit of yield* Effect.forEach(failed, Fiber.await)) {
        assert.deepStrictEqual(exit, Exit.fail(new Upstream({ n: 7 })))
      }
      for (const exit of yield* Effect.forEach(died, Fiber.await)) {
        assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      }
      assert.deepStrictEqual([failing.counts.started, dying.counts.started, yield* coalescer.inFlight], [1, 1, 0])
      assert.isTrue(flightsOf([...failSlots, ...dieSlots]).every((held) => !held))
    }))

  it.effect("no key: the effect runs once per caller, unshared and unregistered", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream("1 second", Effect.succeed("audio"))
      const shared = coalescer.inlineWith(up.call, slotOf, { boundJoin: Effect.map((v) => `${v}!`) })
      const slots = [slotFor(undefined), slotFor(undefined), slotFor(undefined)]
      const fibers = yield* forkEach(shared, slots)
      assert.deepStrictEqual([up.counts.started, yield* coalescer.inFlight], [3, 0])
      assert.deepStrictEqual(flightsOf(slots), [false, false, false])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Effect.forEach(fibers, Fiber.join), ["audio", "audio", "audio"])
      assert.deepStrictEqual([up.counts.started, up.counts.finished], [3, 3])
    }))
})
