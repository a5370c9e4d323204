/**
 * `flight: "inline"`: the starter runs the shared call on its own fiber (no fork per call); joiners wait for
 * its outcome; an interrupted starter hands the call over to a fiber forked then, only if joiners still wait.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Ref, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Coalescer from "../../src/resilience/Coalescer.ts"

class Upstream extends Schema.TaggedError<Upstream>()("Upstream", { n: Schema.Number }) {}

/** An upstream call that counts its starts, ends and interruptions, and the fibers it ran on. */
const makeUpstream = Effect.gen(function*() {
  const started = yield* Ref.make(0)
  const finished = yield* Ref.make(0)
  const interrupted = yield* Ref.make(0)
  const fibers: Array<number> = []
  const call = <A, E>(duration: Duration.Input, result: Effect.Effect<A, E>) =>
    Effect.withFiber((fiber) => {
      fibers.push(fiber.id)
      return Ref.update(started, (n) => n + 1)
    }).pipe(
      Effect.andThen(Effect.sleep(duration)),
      Effect.andThen(result),
      Effect.tap(() => Ref.update(finished, (n) => n + 1)),
      Effect.onInterrupt(() => Ref.update(interrupted, (n) => n + 1))
    )
  return { started, finished, interrupted, fibers, call }
})

/** An upstream call that holds a "permit" while on the wire, as the limiter would; `permits` reads 1 when none is held. */
const makeGuarded = Effect.gen(function*() {
  const up = yield* makeUpstream
  const permits = yield* Ref.make(1)
  const guarded = Effect.acquireUseRelease(
    Ref.update(permits, (n) => n - 1),
    () => up.call("1 second", Effect.succeed("audio")),
    () => Ref.update(permits, (n) => n + 1)
  )
  return { up, permits, guarded }
})

const forkAll = <A, E>(effects: ReadonlyArray<Effect.Effect<A, E>>) =>
  Effect.forEach(effects, (e) => Effect.forkChild(e, { startImmediately: true }))

const inline = (options?: Omit<Coalescer.CoalescerOptions, "flight">) =>
  Coalescer.make({ ...options, flight: "inline" })

describe("Coalescer, inline flight", () => {
  it.effect("the starter runs the call on its own fiber; joiners share it", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const up = yield* makeUpstream
      const fibers = yield* forkAll(
        Array.from({ length: 5 }, () => coalescer.coalesce("k", up.call("1 second", Effect.succeed("audio"))))
      )
      assert.strictEqual(yield* coalescer.inFlight, 1)
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.strictEqual(yield* Ref.get(up.started), 1)
      assert.deepStrictEqual(up.fibers, [fibers[0]!.id], "no fiber forked: the call ran on the starter's")
      assert.deepStrictEqual(results.map((r) => [r.value, r.coalesced]), [
        ["audio", false],
        ["audio", true],
        ["audio", true],
        ["audio", true],
        ["audio", true]
      ])
      assert.strictEqual(yield* coalescer.inFlight, 0)
      // The key is free once the call ends.
      const again = yield* coalescer.coalesce("k", up.call(0, Effect.succeed("again")))
      assert.deepStrictEqual(again, { value: "again", coalesced: false })
    }))

  it.effect("failures and defects are shared", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const up = yield* makeUpstream
      const failed = yield* forkAll(
        Array.from(
          { length: 3 },
          () => coalescer.coalesce("f", up.call("1 second", Effect.fail(new Upstream({ n: 1 }))))
        )
      )
      const died = yield* forkAll(
        Array.from({ length: 2 }, () => coalescer.coalesce("d", up.call("1 second", Effect.die("boom"))))
      )
      yield* TestClock.adjust("1 second")
      for (const exit of yield* Effect.forEach(failed, Fiber.await)) {
        assert.deepStrictEqual(exit, Exit.fail(new Upstream({ n: 1 })))
      }
      for (const exit of yield* Effect.forEach(died, Fiber.await)) {
        assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      }
      assert.strictEqual(yield* Ref.get(up.started), 2)
      assert.strictEqual(yield* coalescer.inFlight, 0)
    }))

  it.effect("an interrupted starter with nobody joined ends the call: nothing is left behind", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const { guarded, permits, up } = yield* makeGuarded
      const [starter] = yield* forkAll([coalescer.coalesce("k", guarded)])
      yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(starter!)
      assert.deepStrictEqual(
        [
          yield* Ref.get(up.interrupted),
          yield* Ref.get(permits),
          yield* coalescer.inFlight,
          yield* Ref.get(up.started)
        ],
        [1, 1, 0, 1]
      )
    }))

  it.effect("an interrupted starter hands the call over to the joiners: started again once, in one forked fiber", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const { guarded, permits, up } = yield* makeGuarded
      const fibers = yield* forkAll([
        coalescer.coalesce("k", guarded),
        coalescer.coalesce("k", guarded),
        coalescer.coalesce("k", guarded)
      ])
      yield* TestClock.adjust("500 millis")
      yield* Fiber.interrupt(fibers[0]!)
      yield* Effect.yieldNow
      // The first run released its permit; the hand-over holds one now.
      assert.deepStrictEqual([yield* Ref.get(up.interrupted), yield* Ref.get(up.started), yield* Ref.get(permits)], [
        1,
        2,
        0
      ])
      assert.strictEqual(yield* coalescer.inFlight, 1)
      // A caller arriving now joins the handed-over call.
      const late = yield* Effect.forkChild(coalescer.coalesce("k", guarded), { startImmediately: true })
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach([fibers[1]!, fibers[2]!, late], Fiber.join)
      assert.deepStrictEqual(results.map((r) => [r.value, r.coalesced]), [["audio", true], ["audio", true], [
        "audio",
        true
      ]])
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(fibers[0]!)))
      assert.strictEqual(up.fibers.length, 2)
      assert.notInclude(fibers.map((f) => f.id), up.fibers[1], "the second run is on a fiber of its own")
      assert.deepStrictEqual(
        [yield* Ref.get(up.started), yield* Ref.get(up.finished), yield* Ref.get(permits), yield* coalescer.inFlight],
        [2, 1, 1, 0]
      )
    }))

  it.effect("a joiner that leaves never cancels the starter's call; the last joiner of a handed-over call does", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const up = yield* makeUpstream
      const impatient = {
        boundJoin: Effect.timeoutOrElse({ duration: "1 second", orElse: () => Effect.fail(new Upstream({ n: -1 })) })
      }
      const call = up.call("5 seconds", Effect.succeed("audio"))
      const [starter] = yield* forkAll([coalescer.coalesce("k", call, impatient)])
      const [joiner, quitter] = yield* forkAll([
        coalescer.coalesce("k", call),
        Effect.flip(coalescer.coalesce("k", call, impatient))
      ])
      yield* TestClock.adjust("1 second")
      // The starter's own bound is not applied; the impatient joiner gave up.
      assert.deepStrictEqual(yield* Fiber.join(quitter!), new Upstream({ n: -1 }))
      yield* Fiber.interrupt(joiner!)
      yield* TestClock.adjust("4 seconds")
      assert.deepStrictEqual(yield* Fiber.join(starter!), { value: "audio", coalesced: false })
      assert.deepStrictEqual([yield* Ref.get(up.started), yield* Ref.get(up.interrupted)], [1, 0])

      // Handed over, then every joiner leaves: the handed-over call is cancelled (the default).
      const [s2, j2] = yield* forkAll([coalescer.coalesce("k2", call), coalescer.coalesce("k2", call)])
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(s2!)
      yield* Effect.yieldNow
      assert.deepStrictEqual([yield* Ref.get(up.started), yield* coalescer.inFlight], [3, 1])
      yield* Fiber.interrupt(j2!)
      assert.deepStrictEqual([yield* Ref.get(up.interrupted), yield* coalescer.inFlight], [2, 0])
    }))

  it.effect("with onAllWaitersGone: \"finish\" a handed-over call runs to its end", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline({ onAllWaitersGone: "finish" })
      const up = yield* makeUpstream
      const call = up.call("1 second", Effect.succeed("audio"))
      const fibers = yield* forkAll([coalescer.coalesce("k", call), coalescer.coalesce("k", call)])
      yield* TestClock.adjust("100 millis")
      yield* Effect.forEach(fibers, Fiber.interrupt)
      assert.strictEqual(yield* coalescer.inFlight, 1)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual([yield* Ref.get(up.started), yield* Ref.get(up.finished), yield* coalescer.inFlight], [
        2,
        1,
        0
      ])
    }))

  it.effect("closing the coalescer's scope interrupts a handed-over call; its joiners see it", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const coalescer = yield* Coalescer.make({ flight: "inline" }).pipe(Scope.provide(scope))
      const up = yield* makeUpstream
      const [starter, joiner] = yield* forkAll([
        coalescer.coalesce("k", up.call("1 second", Effect.succeed(1))),
        coalescer.coalesce("k", up.call("1 second", Effect.succeed(1)))
      ])
      yield* TestClock.adjust("10 millis")
      yield* Fiber.interrupt(starter!)
      yield* Effect.yieldNow
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Fiber.await(joiner!)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause))
      assert.strictEqual(yield* Ref.get(up.interrupted), 2)

      // Closed before the handed-over call had even started: its joiners still hear of it.
      const scope2 = yield* Scope.make()
      const coalescer2 = yield* Coalescer.make({ flight: "inline" }).pipe(Scope.provide(scope2))
      const [s2, j2] = yield* forkAll([
        coalescer2.coalesce("k", up.call("1 second", Effect.succeed(1))),
        coalescer2.coalesce("k", up.call("1 second", Effect.succeed(1)))
      ])
      yield* Fiber.interrupt(s2!)
      yield* Scope.close(scope2, Exit.void)
      const exit2 = yield* Fiber.await(j2!)
      assert.isTrue(Exit.isFailure(exit2) && Cause.hasInterrupts(exit2.cause))
      assert.strictEqual(yield* coalescer2.inFlight, 0)
    }))

  it.effect.prop(
    "without interruptions, upstream calls = distinct (key, overlapping window) groups, as in detached mode",
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
        const coalescer = yield* inline()
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
        results.forEach((r, i) => {
          assert.strictEqual(r.value, expectedLeader.get(i))
          assert.strictEqual(r.coalesced, expectedLeader.get(i) !== i)
        })
        assert.strictEqual(yield* coalescer.inFlight, 0)
      }),
    { timeout: 60_000, arbitrary: { runs: 60 } }
  )

  it.effect.prop(
    "with interruptions: one outcome per caller, one upstream call per key at a time, nothing left behind",
    [
      Schema.Array(Schema.Struct({
        key: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
        slot: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 6 })),
        dur: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 5 })),
        // 0: never interrupted; otherwise interrupted this many units after arriving.
        quitAfter: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 8 })),
        fails: Schema.Boolean
      })).check(Schema.isMinLength(1), Schema.isMaxLength(10)),
      Schema.Literals(["interrupt", "finish"])
    ],
    ([calls, onAllWaitersGone]) =>
      Effect.gen(function*() {
        const n = calls.length
        // Arrivals at 0 mod 4, interruptions at 2 mod 4, starters' calls end at 1 mod 4 and handed-over
        // ones at 3 mod 4: no two kinds of event share an instant.
        const schedule = calls.map((c, i) => ({
          ...c,
          i,
          arrival: 4 * (c.slot * n + i),
          duration: 4 * c.dur + 1,
          quitAt: c.quitAfter === 0 ? undefined : 4 * (c.slot * n + i) + 4 * c.quitAfter - 2
        }))
        const coalescer = yield* inline({ onAllWaitersGone })
        let nextRun = 0
        const running = [0, 0]
        let maxRunning = 0
        const runs = { started: 0, finished: 0, interrupted: 0 }
        const finishedRuns = new Set<number>()
        const upstream = (c: (typeof schedule)[number]) =>
          Effect.suspend(() => {
            const run = nextRun++
            runs.started++
            running[c.key]!++
            maxRunning = Math.max(maxRunning, running[c.key]!)
            return Effect.sleep(c.duration).pipe(
              Effect.andThen(c.fails ? Effect.fail(new Upstream({ n: run })) : Effect.succeed({ owner: c.i, run })),
              Effect.onExit((exit) =>
                Effect.sync(() => {
                  running[c.key]!--
                  if (Exit.isSuccess(exit) || !Cause.hasInterruptsOnly(exit.cause)) {
                    runs.finished++
                    finishedRuns.add(run)
                  } else runs.interrupted++
                })
              )
            )
          })
        const fibers = yield* forkAll(schedule.map((c) =>
          Effect.sleep(c.arrival).pipe(Effect.andThen(coalescer.coalesce(String(c.key), upstream(c))))
        ))
        const quitters = schedule.flatMap((c) =>
          c.quitAt === undefined ? [] : [Effect.sleep(c.quitAt).pipe(Effect.andThen(Fiber.interrupt(fibers[c.i]!)))]
        )
        yield* forkAll(quitters)
        const horizon = Math.max(...schedule.map((c) =>
              c.arrival + c.duration + (c.quitAt ?? 0)
            )) * 2 + 8
        for (let t = 0; t <= horizon; t++) yield* TestClock.adjust(1)

        const exits = yield* Effect.forEach(fibers, Fiber.await)
        const delivered = new Set<number>()
        exits.forEach((exit, i) => {
          const c = schedule[i]!
          if (Exit.isSuccess(exit)) {
            const { value, coalesced } = exit.value
            assert.strictEqual(schedule[value.owner]!.key, c.key, "a value from a call of the same key")
            assert.strictEqual(coalesced, value.owner !== i)
            delivered.add(value.run)
          } else if (Cause.hasInterruptsOnly(exit.cause)) {
            assert.isDefined(c.quitAt, "only callers the test interrupted end interrupted")
          } else {
            const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
            assert.isTrue(failure !== undefined && failure._tag === "Fail" && failure.error instanceof Upstream)
            if (failure?._tag === "Fail") delivered.add(failure.error.n)
          }
        })
        assert.isAtMost(maxRunning, 1, "one upstream call per key at a time")
        assert.deepStrictEqual(running, [0, 0])
        assert.strictEqual(runs.started, runs.finished + runs.interrupted, "every call ended")
        assert.strictEqual(yield* coalescer.inFlight, 0)
        if (onAllWaitersGone === "interrupt") {
          // A call that ran to its end had someone to give its outcome to.
          for (const run of finishedRuns) assert.isTrue(delivered.has(run), `run ${run} finished for nobody`)
        }
      }),
    { timeout: 120_000, arbitrary: { runs: 150 } }
  )
})

describe("Coalescer, flight chosen per call", () => {
  /** The id of the fiber an effect runs on. */
  const fiberIdHere = Effect.withFiber((fiber) => Effect.succeed(fiber.id))

  it.effect("a detached coalescer with { flight: \"inline\" } runs that call on the caller's own fiber", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const self = yield* fiberIdHere
      // The coalescer's own default: forked.
      const detachedRun = yield* coalescer.coalesce("k", fiberIdHere)
      assert.notStrictEqual(detachedRun.value, self, "the default flight of Coalescer.make is detached")
      // The per-call override: the starter's own fiber.
      const inlineRun = yield* coalescer.coalesce("k", fiberIdHere, { flight: "inline" })
      assert.deepStrictEqual(inlineRun, { value: self, coalesced: false })
      assert.strictEqual(yield* coalescer.inFlight, 0)

      // Forked callers: the starter runs the call itself, the joiner (whatever its own flight) shares it.
      const up = yield* makeUpstream
      const call = up.call("1 second", Effect.succeed("audio"))
      const [starter, joiner] = yield* forkAll([
        coalescer.coalesce("k2", call, { flight: "inline" }),
        coalescer.coalesce("k2", call)
      ])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(starter!), { value: "audio", coalesced: false })
      assert.deepStrictEqual(yield* Fiber.join(joiner!), { value: "audio", coalesced: true })
      assert.deepStrictEqual(up.fibers, [starter!.id], "no fiber forked: the call ran on the starter's")
      assert.strictEqual(yield* Ref.get(up.started), 1)
    }))

  it.effect("a detached coalescer with { flight: \"inline\" }: an interrupted starter hands the call over to its joiner", () =>
    Effect.gen(function*() {
      const coalescer = yield* Coalescer.make()
      const up = yield* makeUpstream
      const call = up.call("1 second", Effect.succeed("audio"))
      const [starter, joiner] = yield* forkAll([
        coalescer.coalesce("k", call, { flight: "inline" }),
        coalescer.coalesce("k", call)
      ])
      yield* TestClock.adjust("500 millis")
      yield* Fiber.interrupt(starter!)
      yield* Effect.yieldNow
      // Inline: the starter's run ended with it, and a fresh one was started for the joiner.
      assert.deepStrictEqual([yield* Ref.get(up.started), yield* Ref.get(up.interrupted)], [2, 1])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(joiner!), { value: "audio", coalesced: true })
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(starter!)))
      assert.strictEqual(up.fibers[0], starter!.id)
      assert.notStrictEqual(up.fibers[1], starter!.id)
      assert.notStrictEqual(up.fibers[1], joiner!.id)
      assert.deepStrictEqual([yield* Ref.get(up.finished), yield* coalescer.inFlight], [1, 0])
    }))

  it.effect("an inline coalescer with { flight: \"detached\" } runs that call on another fiber", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const self = yield* fiberIdHere
      const inlineRun = yield* coalescer.coalesce("k", fiberIdHere)
      assert.strictEqual(inlineRun.value, self, "the coalescer's own flight is inline")
      const detachedRun = yield* coalescer.coalesce("k", fiberIdHere, { flight: "detached" })
      assert.notStrictEqual(detachedRun.value, self)
      assert.isFalse(detachedRun.coalesced)

      const up = yield* makeUpstream
      const [starter] = yield* forkAll([
        coalescer.coalesce("k2", up.call("1 second", Effect.succeed("audio")), { flight: "detached" })
      ])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(starter!), { value: "audio", coalesced: false })
      assert.strictEqual(up.fibers.length, 1)
      assert.notStrictEqual(up.fibers[0], starter!.id, "the call ran on a forked fiber, not the starter's")
    }))

  it.effect("an inline coalescer with { flight: \"detached\" }: an interrupted starter leaves the one call running for its joiner", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const { guarded, permits, up } = yield* makeGuarded
      const [starter, joiner] = yield* forkAll([
        coalescer.coalesce("k", guarded, { flight: "detached" }),
        coalescer.coalesce("k", guarded)
      ])
      yield* TestClock.adjust("500 millis")
      yield* Fiber.interrupt(starter!)
      yield* Effect.yieldNow
      // The starter only stopped waiting: the call goes on, holding its permit, and nothing was started again.
      assert.deepStrictEqual(
        [
          yield* Ref.get(up.started),
          yield* Ref.get(up.interrupted),
          yield* Ref.get(permits),
          yield* coalescer.inFlight
        ],
        [1, 0, 0, 1]
      )
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(starter!)))
      yield* TestClock.adjust("500 millis")
      assert.deepStrictEqual(yield* Fiber.join(joiner!), { value: "audio", coalesced: true })
      assert.deepStrictEqual(
        [
          yield* Ref.get(up.started),
          yield* Ref.get(up.finished),
          yield* Ref.get(up.interrupted),
          yield* Ref.get(permits)
        ],
        [1, 1, 0, 1]
      )
      assert.strictEqual(up.fibers.length, 1)
      assert.notInclude([starter!.id, joiner!.id], up.fibers[0], "the one run was on a fiber of its own")
      assert.strictEqual(yield* coalescer.inFlight, 0)
    }))

  it.effect("an inline coalescer with { flight: \"detached\" }: the call is cancelled once every waiter is gone", () =>
    Effect.gen(function*() {
      const coalescer = yield* inline()
      const up = yield* makeUpstream
      const call = up.call("1 second", Effect.succeed("audio"))
      const fibers = yield* forkAll([
        coalescer.coalesce("k", call, { flight: "detached" }),
        coalescer.coalesce("k", call)
      ])
      yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(fibers[0]!)
      assert.deepStrictEqual([yield* Ref.get(up.interrupted), yield* coalescer.inFlight], [0, 1])
      yield* Fiber.interrupt(fibers[1]!)
      assert.deepStrictEqual([yield* Ref.get(up.started), yield* Ref.get(up.interrupted), yield* coalescer.inFlight], [
        1,
        1,
        0
      ])
    }))
})
