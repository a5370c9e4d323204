/**
 * `Mask.builtOnce`: an uninterruptible region whose body is built exactly twice up front (with
 * `Effect.interruptible` and with the identity as `restore`). An interruptible caller can interrupt the
 * restored part (the unrestored part still runs its finalizer, and is itself uninterruptible); a caller
 * already uninterruptible cannot stop the restored part before it completes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as Mask from "../../src/internal/Mask.ts"

/** A region that records what ran: a 1 s unrestored step, then a restored wait, under an unrestored finalizer. */
const makeRegion = (restored: Effect.Effect<void>) => {
  const seen = { builds: 0, prefixDone: 0, restoredDone: 0, finalized: 0 }
  const region = Mask.builtOnce((restore) => {
    seen.builds++
    return Effect.sleep("1 second").pipe(
      Effect.andThen(Effect.sync(() => void seen.prefixDone++)),
      Effect.andThen(restore(restored)),
      Effect.andThen(Effect.sync(() => void seen.restoredDone++)),
      Effect.onExit(() => Effect.sync(() => void seen.finalized++))
    )
  })
  return { seen, region }
}

// Detached: a region wrongly left uninterruptible fails its assertion instead of hanging the test's end.
const fork = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkDetach(effect, { startImmediately: true })

describe("Mask.builtOnce", () => {
  it.effect("an interruptible caller can interrupt the restored part; the unrestored finalizer runs", () =>
    Effect.gen(function*() {
      const { region, seen } = makeRegion(Effect.never)
      const fiber = yield* fork(region)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual([seen.prefixDone, seen.restoredDone, seen.finalized], [1, 0, 0])
      yield* fork(Fiber.interrupt(fiber))
      yield* Effect.yieldNow
      const exit = fiber.pollUnsafe()
      assert.isTrue(exit !== undefined && Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause))
      assert.deepStrictEqual([seen.prefixDone, seen.restoredDone, seen.finalized], [1, 0, 1])
    }))

  it.effect("the unrestored part stays uninterruptible for an interruptible caller", () =>
    Effect.gen(function*() {
      const { region, seen } = makeRegion(Effect.never)
      const fiber = yield* fork(region)
      yield* TestClock.adjust("500 millis")
      const interrupter = yield* fork(Fiber.interrupt(fiber))
      yield* Effect.yieldNow
      // Still in the unrestored 1 s step: the interruption waits for it.
      assert.isUndefined(fiber.pollUnsafe())
      assert.isUndefined(interrupter.pollUnsafe())
      yield* TestClock.adjust("500 millis")
      yield* Effect.yieldNow
      // Interrupted as soon as it reached the restored part.
      const exit = fiber.pollUnsafe()
      assert.isTrue(exit !== undefined && Exit.hasInterrupts(exit))
      assert.deepStrictEqual([seen.prefixDone, seen.restoredDone, seen.finalized], [1, 0, 1])
      yield* Fiber.join(interrupter)
    }))

  it.effect("inside Effect.uninterruptible the restored part runs to its end despite an interruption", () =>
    Effect.gen(function*() {
      const { region, seen } = makeRegion(Effect.sleep("2 seconds"))
      const fiber = yield* fork(Effect.uninterruptible(region))
      yield* TestClock.adjust("1500 millis")
      // Inside the restored part now.
      assert.deepStrictEqual([seen.prefixDone, seen.restoredDone], [1, 0])
      const interrupter = yield* fork(Fiber.interrupt(fiber))
      yield* TestClock.adjust("1 second")
      assert.isUndefined(fiber.pollUnsafe(), "the restored 2 s wait is not cut short")
      yield* TestClock.adjust("500 millis")
      yield* Fiber.join(interrupter)
      assert.deepStrictEqual([seen.prefixDone, seen.restoredDone, seen.finalized], [1, 1, 1])
      yield* Fiber.await(fiber)
    }))

  it.effect("a caller whose own restore re-enables interruption gets the interruptible body", () =>
    Effect.gen(function*() {
      const { region, seen } = makeRegion(Effect.never)
      const fiber = yield* fork(Effect.uninterruptibleMask((restore) => restore(region)))
      yield* TestClock.adjust("1 second")
      yield* fork(Fiber.interrupt(fiber))
      yield* Effect.yieldNow
      assert.isDefined(fiber.pollUnsafe())
      assert.deepStrictEqual([seen.prefixDone, seen.restoredDone, seen.finalized], [1, 0, 1])
    }))

  it.effect("the body is built exactly twice, however many runs, in either mode", () =>
    Effect.gen(function*() {
      const { region, seen } = makeRegion(Effect.void)
      assert.strictEqual(seen.builds, 2, "both versions built up front")
      const runs = Effect.forEach(
        Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? region : Effect.uninterruptible(region))),
        fork
      )
      for (let round = 0; round < 2; round++) {
        const fibers = yield* runs
        yield* TestClock.adjust("1 second")
        yield* Fiber.joinAll(fibers)
      }
      assert.strictEqual(seen.builds, 2)
      assert.deepStrictEqual([seen.prefixDone, seen.restoredDone, seen.finalized], [20, 20, 20])
    }))
})
