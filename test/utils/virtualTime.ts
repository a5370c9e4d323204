import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

/**
 * Runs `self` in a fiber and moves the test clock in steps of `stepMillis`
 * until it is done (at most `maxSteps` steps), then joins it. Virtual time for
 * runs against the in-process simulator.
 */
export const runVirtual = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  options: { readonly stepMillis?: number; readonly maxSteps?: number } = {}
): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(self)
    const step = options.stepMillis ?? 100
    const max = options.maxSteps ?? 100_000
    for (let i = 0; i < max && fiber.pollUnsafe() === undefined; i++) yield* TestClock.adjust(step)
    return yield* Fiber.join(fiber)
  })
