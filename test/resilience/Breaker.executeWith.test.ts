/**
 * `breaker.executeWith(pool, slotOf)(self)`: on the memory store the attempt's admission and start number are
 * kept in the caller's slot and settled by a frame built once. Failures open the circuit at the threshold
 * (then `self` does not run), successes keep it closed, an interrupted attempt leaves its slot empty and
 * counts for nothing, and an interrupted half-open probe frees the probe. On another store it is `execute`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { TestClock } from "effect/testing"
import { ElevenLabsError, SystemBusy } from "../../src/client/Errors.ts"
import * as Breaker from "../../src/resilience/Breaker.ts"
import type * as BreakerFastPath from "../../src/resilience/BreakerFastPath.ts"

/** The attempt's slot, with what the attempt does (read from the slot: `self` is built once). */
interface Slot extends BreakerFastPath.Slot {
  readonly attempt: Effect.Effect<string, ElevenLabsError>
}

const CurrentSlot = Context.Reference<Slot>("test/Breaker/Slot", {
  defaultValue: () => {
    throw new Error("no slot provided")
  }
})
const slotOf = (fiber: Fiber.Fiber<unknown, unknown>) => fiber.getRef(CurrentSlot)
const slotFor = (attempt: Effect.Effect<string, ElevenLabsError>): Slot => ({
  attempt,
  admission: undefined,
  started: -1
})

const busy = Effect.fail(
  new ElevenLabsError({ reason: new SystemBusy({ operation: "textToSpeech.convert", message: "busy", status: 429 }) })
)
const ok = Effect.succeed("audio")

/** A breaker (3 consecutive failures open it) and one `executeWith` effect built once for every attempt. */
const setup = (store: Layer.Layer<CircuitBreaker.CircuitBreakerStore>) =>
  Effect.gen(function*() {
    const breaker = yield* Breaker.make({ policy: { _tag: "consecutive", failures: 3 }, openDuration: "30 seconds" })
    const ran = { count: 0 }
    const self = Effect.withFiber((fiber) => {
      ran.count++
      return slotOf(fiber).attempt
    })
    const guarded = breaker.executeWith("standard", slotOf)(self)
    const run = (slot: Slot) => Effect.provideService(guarded, CurrentSlot, slot)
    /** Runs one attempt to its end with a fresh slot, and checks the slot is empty afterwards. */
    const once = (attempt: Effect.Effect<string, ElevenLabsError>) =>
      Effect.suspend(() => {
        const slot = slotFor(attempt)
        return Effect.tap(Effect.exit(run(slot)), () => Effect.sync(() => assert.isUndefined(slot.admission)))
      })
    const fork = (slot: Slot) => Effect.forkChild(run(slot), { startImmediately: true })
    const gauge = breaker.gauge("standard")
    return { breaker, ran, run, once, fork, gauge }
  }).pipe(Effect.provide(Layer.fresh(store)))

const rejection = (exit: Exit.Exit<string, unknown>) => {
  const error = Exit.isFailure(exit) ? Exit.findErrorOption(exit) : undefined
  return error?._tag === "Some" && Breaker.isBreakerError(error.value) ? error.value.reason._tag : undefined
}

describe("Breaker.executeWith (memory store: the slot path)", () => {
  it.effect("failures open the circuit at the threshold; then self does not run", () =>
    Effect.gen(function*() {
      const { gauge, once, ran } = yield* setup(Breaker.layerStoreMemory())
      assert.isTrue(Exit.isFailure(yield* once(busy)))
      yield* once(busy)
      assert.strictEqual(yield* gauge, 0, "two failures: still closed")
      yield* once(busy)
      assert.strictEqual(yield* gauge, 2)
      assert.strictEqual(ran.count, 3)
      assert.strictEqual(rejection(yield* once(ok)), "CircuitOpen")
      assert.strictEqual(ran.count, 3, "a rejected attempt never runs")
    }))

  it.effect("successes keep it closed and reset the streak", () =>
    Effect.gen(function*() {
      const { gauge, once, ran } = yield* setup(Breaker.layerStoreMemory())
      for (let i = 0; i < 10; i++) assert.deepStrictEqual(yield* once(ok), Exit.succeed("audio"))
      for (let round = 0; round < 3; round++) {
        yield* once(busy)
        yield* once(busy)
        yield* once(ok)
      }
      assert.deepStrictEqual([yield* gauge, ran.count], [0, 19])
    }))

  it.effect("concurrent attempts keep their own admission; an interrupted one is not a failure", () =>
    Effect.gen(function*() {
      const { fork, gauge, once } = yield* setup(Breaker.layerStoreMemory())
      yield* once(busy)
      yield* once(busy)
      const gate = yield* Deferred.make<void>()
      const slots = [slotFor(Effect.never), slotFor(Effect.as(Deferred.await(gate), "late"))]
      const [waiting, released] = yield* Effect.forEach(slots, fork)
      assert.isTrue(slots.every((s) => s.admission !== undefined), "admitted: the admission is in the slot")
      assert.notStrictEqual(slots[0]!.started, slots[1]!.started)
      yield* Fiber.interrupt(waiting!)
      assert.isUndefined(slots[0]!.admission)
      assert.isDefined(slots[1]!.admission)
      assert.strictEqual(yield* gauge, 0, "the interruption is not the third failure")
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Fiber.join(released!), "late")
      assert.isUndefined(slots[1]!.admission)
      // The success reset the streak; three failures in a row (nothing earlier still running) open it.
      yield* once(busy)
      yield* once(busy)
      assert.strictEqual(yield* gauge, 0)
      yield* once(busy)
      assert.strictEqual(yield* gauge, 2)
    }))

  it.effect("an interrupted attempt leaves no running start behind: later failures still count in a row", () =>
    Effect.gen(function*() {
      const { fork, gauge, once } = yield* setup(Breaker.layerStoreMemory())
      const slot = slotFor(Effect.never)
      const fiber = yield* fork(slot)
      assert.isAtLeast(slot.started, 0)
      yield* Fiber.interrupt(fiber)
      assert.isUndefined(slot.admission)
      // Were the interrupted attempt still counted as running, these would be ignored as having overtaken it.
      for (let i = 0; i < 3; i++) yield* once(busy)
      assert.strictEqual(yield* gauge, 2)
    }))

  it.effect("half-open: an interrupted probe frees the probe; a later call is admitted as the probe", () =>
    Effect.gen(function*() {
      const { fork, gauge, once, ran } = yield* setup(Breaker.layerStoreMemory())
      for (let i = 0; i < 3; i++) yield* once(busy)
      yield* TestClock.adjust("30 seconds")
      const probeSlot = slotFor(Effect.never)
      const probe = yield* fork(probeSlot)
      assert.isTrue(probeSlot.admission?.probe === true)
      assert.strictEqual(yield* gauge, 1)
      assert.strictEqual(rejection(yield* once(ok)), "CircuitHalfOpen")
      yield* Fiber.interrupt(probe)
      assert.isUndefined(probeSlot.admission)
      assert.strictEqual(yield* gauge, 1, "still half-open: the probe proved nothing")
      const ranBefore = ran.count
      assert.deepStrictEqual(yield* once(ok), Exit.succeed("audio"))
      assert.deepStrictEqual([yield* gauge, ran.count], [0, ranBefore + 1])
    }))

  it.effect("interrupted inside Effect.uninterruptible, the attempt still runs to its end and is recorded", () =>
    Effect.gen(function*() {
      const { gauge, once, run } = yield* setup(Breaker.layerStoreMemory())
      const slow = Effect.andThen(Effect.sleep("1 second"), busy)
      const interruptAt500 = (caller: Effect.Effect<string, unknown>) =>
        Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(caller, { startImmediately: true })
          yield* TestClock.adjust("500 millis")
          const interrupter = yield* Effect.forkChild(Fiber.interrupt(fiber), { startImmediately: true })
          yield* TestClock.adjust("500 millis")
          yield* Fiber.join(interrupter)
        })
      yield* once(busy)
      yield* once(busy)
      // An interruptible caller: the attempt is cut short, and ignored.
      const cut = slotFor(slow)
      yield* interruptAt500(run(cut))
      assert.deepStrictEqual([cut.admission, yield* gauge], [undefined, 0])
      // The same built effect, run by an uninterruptible caller: the failure happens and is the third in a row.
      const kept = slotFor(slow)
      yield* interruptAt500(Effect.uninterruptible(run(kept)))
      assert.deepStrictEqual([kept.admission, yield* gauge], [undefined, 2])
    }))
})

describe("Breaker.executeWith (another store: execute)", () => {
  it.effect("behaves as execute and leaves the slot alone", () =>
    Effect.gen(function*() {
      const { gauge, once, ran, run } = yield* setup(CircuitBreaker.layerStoreMemory())
      for (let i = 0; i < 3; i++) yield* once(busy)
      assert.strictEqual(yield* gauge, 2)
      const slot = slotFor(ok)
      assert.strictEqual(rejection(yield* Effect.exit(run(slot))), "CircuitOpen")
      assert.deepStrictEqual([ran.count, slot.admission, slot.started], [3, undefined, -1])
    }))
})
