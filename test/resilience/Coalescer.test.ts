import { assert, describe, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Ref, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Coalescer from "../../src/resilience/Coalescer.ts"
import { requestKey } from "../../src/resilience/Fallback.ts"

class Upstream extends Schema.TaggedError<Upstream>()("Upstream", { n: Schema.Number }) {}

/** An upstream call that counts its starts, ends and interruptions. */
const makeUpstream = Effect.gen(function*() {
  const started = yield* Ref.make(0)
  const finished = yield* Ref.make(0)
  const interrupted = yield* Ref.make(0)
  const call = <A, E>(duration: Duration.Input, result: Effect.Effect<A, E>) =>
    Ref.update(started, (n) => n + 1).pipe(
      Effect.andThen(Effect.sleep(duration)),
      Effect.andThen(result),
      Effect.tap(() => Ref.update(finished, (n) => n + 1)),
      Effect.onInterrupt(() => Ref.update(interrupted, (n) => n + 1))
    )
  return { started, finished, interrupted, call }
})

const forkAll = <A, E>(effects: ReadonlyArray<Effect.Effect<A, E>>) =>
  Effect.forEach(effects, (e) => Effect.forkChild(e, { startImmediately: true }))

describe("Coalescer", () => {
  it.effect("N concurrent identical calls share one upstream execution", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const fibers = yield* forkAll(
        Array.from({ length: 5 }, () => coalescer.coalesce("k", up.call("1 second", Effect.succeed("audio"))))
      )
      assert.strictEqual(yield* coalescer.inFlight, 1)
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.strictEqual(yield* Ref.get(up.started), 1)
      assert.deepStrictEqual(results.map((r) => r.value), ["audio", "audio", "audio", "audio", "audio"])
      assert.strictEqual(results.filter((r) => r.coalesced).length, 4)
      assert.isFalse(results[0]?.coalesced)
      assert.strictEqual(yield* coalescer.inFlight, 0)
    }))

  it.effect("different keys do not share", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const fibers = yield* forkAll([
        coalescer.coalesce("a", up.call("1 second", Effect.succeed("a"))),
        coalescer.coalesce("b", up.call("1 second", Effect.succeed("b")))
      ])
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.strictEqual(yield* Ref.get(up.started), 2)
      assert.deepStrictEqual(results, [{ value: "a", coalesced: false }, { value: "b", coalesced: false }])
    }))

  it.effect("a failure is shared by all waiters", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const failure = new Upstream({ n: 1 })
      const fibers = yield* forkAll(
        Array.from({ length: 3 }, () => coalescer.coalesce("k", up.call("1 second", Effect.fail(failure))))
      )
      yield* TestClock.adjust("1 second")
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      assert.strictEqual(yield* Ref.get(up.started), 1)
      for (const exit of exits) assert.deepStrictEqual(exit, Exit.fail(failure))
      // and the key is free again
      assert.strictEqual(yield* coalescer.inFlight, 0)
    }))

  it.effect("the key is free once the call ends: no result outlives its flight", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const first = yield* coalescer.coalesce("k", up.call("0 millis", Effect.succeed(1)))
      const second = yield* coalescer.coalesce("k", up.call("0 millis", Effect.succeed(2)))
      assert.deepStrictEqual([first, second], [{ value: 1, coalesced: false }, { value: 2, coalesced: false }])
      assert.strictEqual(yield* Ref.get(up.started), 2)
    }))

  it.effect("interrupting one waiter (even the one that started the call) leaves the others and the call", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const fibers = yield* forkAll(
        Array.from({ length: 3 }, () => coalescer.coalesce("k", up.call("1 second", Effect.succeed("audio"))))
      )
      yield* TestClock.adjust("500 millis")
      yield* Fiber.interrupt(fibers[0]!)
      yield* Fiber.interrupt(fibers[1]!)
      assert.strictEqual(yield* Ref.get(up.interrupted), 0)
      yield* TestClock.adjust("500 millis")
      assert.deepStrictEqual(yield* Fiber.join(fibers[2]!), { value: "audio", coalesced: true })
      assert.strictEqual(yield* Ref.get(up.started), 1)
      assert.strictEqual(yield* Ref.get(up.finished), 1)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(fibers[0]!)))
    }))

  it.effect("boundJoin bounds joiners only; a joiner that gives up leaves the call to the others, the last one cancels it", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const impatient = {
        boundJoin: Effect.timeoutOrElse({ duration: "1 second", orElse: () => Effect.fail(new Upstream({ n: -1 })) })
      }
      const call = up.call("5 seconds", Effect.succeed("audio"))
      // The starter's bound is not applied: its own effect carries its bounds.
      const [starter, patient] = yield* forkAll([
        coalescer.coalesce("k", call, impatient),
        coalescer.coalesce("k", call)
      ])
      const [joiner] = yield* forkAll([Effect.flip(coalescer.coalesce("k", call, impatient))])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(joiner!), new Upstream({ n: -1 }))
      yield* TestClock.adjust("4 seconds")
      assert.deepStrictEqual([(yield* Fiber.join(starter!)).value, (yield* Fiber.join(patient!)).value], [
        "audio",
        "audio"
      ])
      assert.deepStrictEqual([yield* Ref.get(up.started), yield* Ref.get(up.interrupted)], [1, 0])

      // The starter interrupted and the only joiner given up: nobody waits, so the call is cancelled.
      const [alone, quitter] = yield* forkAll([
        coalescer.coalesce("k2", call),
        Effect.flip(coalescer.coalesce("k2", call, impatient))
      ])
      yield* Fiber.interrupt(alone!)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(quitter!)
      assert.strictEqual(yield* Ref.get(up.interrupted), 1)
      assert.strictEqual(yield* coalescer.inFlight, 0)
    }))

  it.effect("when all waiters are gone the call is interrupted (default), and its resources released", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const permits = yield* Ref.make(1)
      // The shared call holds a "permit" while on the wire, as the limiter would.
      const guarded = Effect.acquireUseRelease(
        Ref.update(permits, (n) => n - 1),
        () => up.call("1 second", Effect.succeed("audio")),
        () => Ref.update(permits, (n) => n + 1)
      )
      const fibers = yield* forkAll([coalescer.coalesce("k", guarded), coalescer.coalesce("k", guarded)])
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Ref.get(permits), 0)
      yield* Fiber.interrupt(fibers[0]!)
      assert.strictEqual(yield* Ref.get(up.interrupted), 0)
      yield* Fiber.interrupt(fibers[1]!)
      // The last waiter's interruption returns only once the call has let go.
      assert.strictEqual(yield* Ref.get(up.interrupted), 1)
      assert.strictEqual(yield* Ref.get(permits), 1)
      assert.strictEqual(yield* coalescer.inFlight, 0)
      // A new caller starts afresh.
      const next = yield* Effect.forkChild(coalescer.coalesce("k", guarded))
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(next), { value: "audio", coalesced: false })
      assert.strictEqual(yield* Ref.get(up.started), 2)
    }))

  it.effect("with onAllWaitersGone: \"finish\" the call runs to its end", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make({ onAllWaitersGone: "finish" })
      const up = yield* makeUpstream
      const fibers = yield* forkAll([
        coalescer.coalesce("k", up.call("1 second", Effect.succeed("audio"))),
        coalescer.coalesce("k", up.call("1 second", Effect.succeed("audio")))
      ])
      yield* TestClock.adjust("100 millis")
      yield* Effect.forEach(fibers, Fiber.interrupt)
      assert.strictEqual(yield* coalescer.inFlight, 1)
      // A caller arriving now still joins the running call.
      const late = yield* Effect.forkChild(coalescer.coalesce("k", up.call("1 second", Effect.succeed("late"))))
      yield* TestClock.adjust("900 millis")
      assert.deepStrictEqual(yield* Fiber.join(late), { value: "audio", coalesced: true })
      assert.strictEqual(yield* Ref.get(up.interrupted), 0)
      assert.strictEqual(yield* Ref.get(up.finished), 1)
      assert.strictEqual(yield* coalescer.inFlight, 0)
    }))

  it.effect("closing the coalescer's scope interrupts calls in flight; their waiters see it", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const coalescer = yield* Coalescer.make().pipe(Scope.provide(scope))
      const up = yield* makeUpstream
      const waiter = yield* Effect.forkChild(coalescer.coalesce("k", up.call("1 second", Effect.succeed(1))))
      yield* TestClock.adjust("10 millis")
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Fiber.await(waiter)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause))
      assert.strictEqual(yield* Ref.get(up.interrupted), 1)
    }))

  it.effect("a defect is shared too", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const fibers = yield* forkAll([
        coalescer.coalesce("k", Effect.sleep("1 second").pipe(Effect.andThen(Effect.die("boom")))),
        coalescer.coalesce("k", Effect.sleep("1 second").pipe(Effect.andThen(Effect.die("boom"))))
      ])
      yield* TestClock.adjust("1 second")
      for (const exit of yield* Effect.forEach(fibers, Fiber.await)) {
        assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      }
    }))

  it("keyOf is the audio cache's content address", () => {
    const req = { voiceId: "v", text: "Hello", modelId: "eleven_flash_v2_5" }
    assert.strictEqual(Coalescer.keyOf(req), requestKey(req))
    assert.notStrictEqual(Coalescer.keyOf(req, { partition: "a" }), Coalescer.keyOf(req, { partition: "b" }))
  })

  it.effect.prop(
    "upstream executions = distinct (key, overlapping window) groups; every caller gets exactly one result",
    [
      Schema.Array(Schema.Struct({
        key: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2 })),
        slot: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 8 })),
        dur: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 6 }))
      })).check(Schema.isMinLength(1), Schema.isMaxLength(12))
    ],
    ([calls]) =>
      Effect.gen(function*() {
        const n = calls.length
        // Distinct even arrivals and odd durations: no arrival coincides with an
        // end, so the expected grouping is unambiguous.
        const schedule = calls.map((c, i) => ({
          i,
          key: c.key,
          arrival: 2 * (c.slot * n + i),
          duration: 2 * c.dur + 1
        }))
        const expectedLeader = new Map<number, number>()
        let expectedGroups = 0
        for (const key of [0, 1, 2]) {
          let end = -1
          let leader = -1
          for (const c of schedule.filter((s) => s.key === key).sort((a, b) => a.arrival - b.arrival)) {
            if (c.arrival >= end) {
              leader = c.i
              end = c.arrival + c.duration
              expectedGroups += 1
            }
            expectedLeader.set(c.i, leader)
          }
        }

        const coalescer = yield* Coalescer.make()
        const started = yield* Ref.make(0)
        const fibers = yield* forkAll(schedule.map((c) =>
          Effect.sleep(c.arrival).pipe(
            Effect.andThen(coalescer.coalesce(
              String(c.key),
              Ref.update(started, (x) => x + 1).pipe(Effect.andThen(Effect.sleep(c.duration)), Effect.as(c.i))
            ))
          )
        ))
        const horizon = Math.max(...schedule.map((c) => c.arrival + c.duration))
        for (let t = 0; t <= horizon; t++) yield* TestClock.adjust(1)
        const results = yield* Effect.forEach(fibers, Fiber.join)

        assert.strictEqual(yield* Ref.get(started), expectedGroups)
        assert.strictEqual(results.length, n)
        results.forEach((r, i) => {
          assert.strictEqual(r.value, expectedLeader.get(i))
          assert.strictEqual(r.coalesced, expectedLeader.get(i) !== i)
        })
        assert.strictEqual(yield* coalescer.inFlight, 0)
      }),
    { timeout: 60_000, arbitrary: { runs: 60 } }
  )
})
