import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as VirtualTime from "../../src/simulation/VirtualTime.ts"

const day = 86_400_000
const options = { stepMs: 3_600_000, horizonMs: 40 * day, tooLong: () => "too long" as const }
const now = Clock.currentTimeMillis

describe("VirtualTime", () => {
  it.live("a month of sleeps runs at once, the clock at each sleeper's time", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const seen = yield* VirtualTime.run(
        Effect.gen(function*() {
          const times: Array<number> = []
          for (let i = 0; i < 30; i++) {
            yield* Effect.sleep(Duration.days(1))
            times.push(yield* now)
          }
          return times
        }),
        options
      )
      assert.deepStrictEqual(seen, Array.from({ length: 30 }, (_, i) => (i + 1) * day))
      assert.isBelow(Date.now() - started, 5_000)
    }))

  it.live("sleepers wake in time order, equal times in the order they went to sleep", () =>
    Effect.gen(function*() {
      const log = yield* VirtualTime.run(
        Effect.gen(function*() {
          const log: Array<string> = []
          const sleeper = (name: string, ms: number) =>
            Effect.andThen(Effect.sleep(Duration.millis(ms)), Effect.sync(() => log.push(name)))
          const fibers = yield* Effect.forEach(
            [["c", 30], ["a", 10], ["b1", 20], ["b2", 20], ["b3", 20]] as const,
            ([name, ms]) => Effect.forkChild(sleeper(name, ms))
          )
          yield* Fiber.awaitAll(fibers)
          return log
        }),
        options
      )
      assert.deepStrictEqual(log, ["a", "b1", "b2", "b3", "c"])
    }))

  it.live("the work a wake causes (forks, yields, a resolved promise) ends before the next wake", () =>
    Effect.gen(function*() {
      const log = yield* VirtualTime.run(
        Effect.gen(function*() {
          const log: Array<string> = []
          const busy = Effect.gen(function*() {
            yield* Effect.sleep("1 millis")
            const child = yield* Effect.forkChild(Effect.gen(function*() {
              for (let i = 0; i < 5_000; i++) yield* Effect.yieldNow
              yield* Effect.promise(() => Promise.resolve())
              log.push(`child at ${yield* now}`)
            }))
            yield* Fiber.join(child)
            log.push(`busy at ${yield* now}`)
          })
          const next = Effect.andThen(
            Effect.sleep("2 millis"),
            Effect.flatMap(now, (t) => Effect.sync(() => log.push(`next at ${t}`)))
          )
          yield* Fiber.awaitAll([yield* Effect.forkChild(busy), yield* Effect.forkChild(next)])
          return log
        }),
        options
      )
      assert.deepStrictEqual(log, ["child at 1", "busy at 1", "next at 2"])
    }))

  it.live("an interrupted sleep wakes nobody and does not move the clock", () =>
    Effect.gen(function*() {
      const [winner, at] = yield* VirtualTime.run(
        Effect.gen(function*() {
          const winner = yield* Effect.raceFirst(
            Effect.as(Effect.sleep("10 seconds"), "slow"),
            Effect.as(Effect.sleep("5 seconds"), "fast")
          )
          yield* Effect.sleep("100 seconds")
          return [winner, yield* now] as const
        }),
        options
      )
      assert.deepStrictEqual([winner, at], ["fast", 105_000])
    }))

  it.live("past the horizon the body is interrupted (its finalizers run) and the run fails", () =>
    Effect.gen(function*() {
      let finalized = false
      const exit = yield* VirtualTime.run(
        Effect.forever(Effect.sleep("1 hour")).pipe(Effect.ensuring(Effect.sync(() => (finalized = true)))),
        { ...options, horizonMs: 2 * day }
      ).pipe(Effect.flip)
      assert.strictEqual(exit, "too long")
      assert.isTrue(finalized)
      // A body that waits on nothing the clock can wake reaches the horizon too, stepMs per turn.
      const stuck = yield* VirtualTime.run(Effect.never, { ...options, stepMs: day, horizonMs: 10 * day }).pipe(
        Effect.flip
      )
      assert.strictEqual(stuck, "too long")
    }))

  it.live("nothing is woken past the horizon; an infinite sleep never ends", () =>
    Effect.gen(function*() {
      let woke = false
      const late = yield* VirtualTime.run(
        Effect.andThen(Effect.sleep("30 days"), Effect.sync(() => (woke = true))),
        { ...options, horizonMs: 10_000 }
      ).pipe(Effect.flip)
      assert.deepStrictEqual([late, woke], ["too long", false])
      const forever = yield* VirtualTime.run(Effect.as(Effect.sleep(Duration.infinity), "woke"), {
        ...options,
        stepMs: day,
        horizonMs: 10 * day
      }).pipe(Effect.flip)
      assert.strictEqual(forever, "too long")
    }))

  it.live("a stopped run ends once the body's finalizers are done, even those that sleep", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const body = Effect.never.pipe(
        Effect.onInterrupt(() =>
          Effect.andThen(
            Effect.sleep("1 hour"),
            Effect.flatMap(now, (t) => Effect.sync(() => log.push(`done at ${t}`)))
          )
        )
      )
      const error = yield* VirtualTime.run(body, { ...options, stepMs: day, horizonMs: 2 * day }).pipe(Effect.flip)
      assert.strictEqual(error, "too long")
      assert.strictEqual(log.length, 1)
      // The caller's interruption waits the same way.
      const fiber = yield* VirtualTime.run(body, options).pipe(Effect.forkChild)
      yield* Effect.sleep("20 millis")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(log.length, 2)
    }))

  it.live("interrupting the run interrupts the body", () =>
    Effect.gen(function*() {
      let finalized = false
      const fiber = yield* VirtualTime.run(
        Effect.never.pipe(Effect.ensuring(Effect.sync(() => (finalized = true)))),
        { ...options, stepMs: 1 }
      ).pipe(Effect.forkChild)
      yield* Effect.sleep("20 millis")
      yield* Fiber.interrupt(fiber)
      assert.isTrue(finalized)
    }))

  // The same program of sleeps and forks, in virtual time and under TestClock: the same events at the same times.
  const Program = Schema.Array(Schema.Struct({
    delay: Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 50 }))),
    children: Schema.Array(Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 50 }))))
  }))
  type Program = typeof Program.Type
  const program = (p: Program) =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const fibers = yield* Effect.forEach(p, ({ children, delay }, i) =>
        Effect.forkChild(Effect.gen(function*() {
          yield* Effect.sleep(Duration.millis(delay))
          log.push(`${i}@${yield* now}`)
          const kids = yield* Effect.forEach(children, (d, j) =>
            Effect.forkChild(Effect.andThen(
              Effect.sleep(Duration.millis(d)),
              Effect.flatMap(now, (t) => Effect.sync(() => log.push(`${i}.${j}@${t}`)))
            )))
          yield* Fiber.awaitAll(kids)
        })))
      yield* Fiber.awaitAll(fibers)
      return log
    })

  // Both start inside a wake-up (as the runner does): TestClock.adjust does not wait for the work of fibers
  // started before its first wake, which would move its clock under them.
  it.live.prop(
    "wakes as TestClock.adjust does: same events, same order, same times",
    [Program],
    ([p]) =>
      Effect.gen(function*() {
        const started = Effect.andThen(Effect.sleep("1 millis"), program(p))
        const virtual = yield* VirtualTime.run(started, options)
        const tested = yield* Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(started)
          while (fiber.pollUnsafe() === undefined) yield* TestClock.adjust("10 millis")
          return yield* Fiber.join(fiber)
        }).pipe(Effect.provide(TestClock.layer()))
        assert.deepStrictEqual(virtual, tested)
      })
  )
})
