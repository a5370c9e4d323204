/**
 * The breaker's fast path (the memory store of `Breaker.layerStoreMemory`, no `Scope` per attempt) against
 * Effect's `CircuitBreaker.execute` on Effect's memory store: the same attempts give the same results,
 * states and transitions.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Schema, Stream } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { TestClock } from "effect/testing"
import { ElevenLabsError, NotFound, RateLimited, ServerError, SystemBusy } from "../../src/client/Errors.ts"
import * as Breaker from "../../src/resilience/Breaker.ts"

const op = { operation: "textToSpeech.convert", message: "test" }

const Step = Schema.Struct({
  kind: Schema.Literals(["ok", "busy", "server", "notFound", "retryAfter", "die", "interrupt"]),
  /** Milliseconds the attempt takes (in steps of 100 ms), then the clock moves on this many seconds. */
  took: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 5 })),
  wait: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 90 })),
  /** Runs alongside the next step (overlapping attempts: the start-order rule). */
  overlap: Schema.Boolean
})
type Step = typeof Step.Type

const Options = Schema.Struct({
  policy: Schema.Literals(["consecutive", "rate"]),
  failures: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 })),
  growth: Schema.Boolean
})

const attemptOf = (step: Step): Effect.Effect<string, ElevenLabsError> => {
  const after = <A, E>(e: Effect.Effect<A, E>) => Effect.andThen(Effect.sleep(Duration.millis(step.took * 100)), e)
  switch (step.kind) {
    case "ok":
      return after(Effect.succeed("audio"))
    case "busy":
      return after(Effect.fail(new ElevenLabsError({ reason: new SystemBusy({ ...op, status: 429 }) })))
    case "server":
      return after(Effect.fail(new ElevenLabsError({ reason: new ServerError({ ...op, status: 503 }) })))
    case "notFound":
      return after(Effect.fail(new ElevenLabsError({ reason: new NotFound({ ...op, status: 404 }) })))
    case "retryAfter":
      return after(
        Effect.fail(
          new ElevenLabsError({ reason: new RateLimited({ ...op, status: 429, retryAfter: Duration.seconds(150) }) })
        )
      )
    case "die":
      return after(Effect.die("bug"))
    case "interrupt":
      return Effect.never
  }
}

/** Runs the steps through a breaker built on `store` and returns what was observed. */
const trace = (
  steps: ReadonlyArray<Step>,
  options: typeof Options.Type,
  store: Layer.Layer<CircuitBreaker.CircuitBreakerStore>
) =>
  Effect.gen(function*() {
    const breaker = yield* Breaker.make({
      policy: options.policy === "consecutive"
        ? { _tag: "consecutive", failures: options.failures }
        : { _tag: "rate", threshold: 0.5, size: 4, minimumCalls: options.failures },
      openDuration: "30 seconds",
      ...(options.growth ? { growth: { factor: 2, max: "2 minutes" } } : {})
    })
    const transitions: Array<string> = []
    yield* breaker.transitions.pipe(
      Stream.runForEach((t) =>
        Effect.sync(() =>
          void transitions.push(`${t.from}>${t.to}:${t.openFor === undefined ? "" : Duration.toMillis(t.openFor)}`)
        )
      ),
      Effect.forkScoped
    )
    yield* Effect.yieldNow
    const log: Array<string> = []
    const describeExit = (exit: import("effect").Exit.Exit<string, ElevenLabsError | Breaker.BreakerError>) =>
      exit._tag === "Success"
        ? exit.value
        : (() => {
          const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
          if (failure?._tag === "Fail") {
            const e = failure.error
            return Breaker.isBreakerError(e)
              ? `${e.reason._tag}:${e.retryAfter === undefined ? "" : Duration.toMillis(e.retryAfter)}`
              : e.reason._tag
          }
          return exit.cause.reasons.some((r) => r._tag === "Die") ? "die" : "interrupted"
        })()
    let pending: Array<Fiber.Fiber<string, ElevenLabsError | Breaker.BreakerError>> = []
    for (const step of steps) {
      const fiber = yield* Effect.forkChild(attemptOf(step).pipe(breaker.execute("flash")), { startImmediately: true })
      pending.push(fiber)
      if (step.overlap) continue
      yield* TestClock.adjust(Duration.millis(step.took * 100))
      for (const f of pending) {
        if (f.pollUnsafe() === undefined) yield* Fiber.interrupt(f)
        log.push(describeExit(yield* Fiber.await(f)))
      }
      pending = []
      const state = yield* breaker.state("flash")
      log.push(`${state._tag}${state._tag === "Open" ? `:${Duration.toMillis(state.retryAfter)}` : ""}`)
      yield* TestClock.adjust(Duration.seconds(step.wait))
    }
    for (const f of pending) yield* Fiber.interrupt(f)
    yield* Effect.yieldNow
    return { log, transitions }
  }).pipe(Effect.scoped, Effect.provide(Layer.fresh(store)))

describe("Breaker fast path", () => {
  it.effect.prop(
    "the same attempts give the same results, states and transitions as Effect's execute",
    [Schema.Array(Step).check(Schema.isMaxLength(30)), Options],
    ([steps, options]) =>
      Effect.gen(function*() {
        const slow = yield* trace(steps, options, CircuitBreaker.layerStoreMemory())
        const fast = yield* trace(steps, options, Breaker.layerStoreMemory())
        assert.deepStrictEqual(fast, slow)
      }),
    { timeout: 120_000, arbitrary: { runs: 150 } }
  )
})
