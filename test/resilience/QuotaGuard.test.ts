import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Logger, PubSub, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { ElevenLabsError, QuotaExceeded, ServerError } from "../../src/client/Errors.ts"
import * as Deadline from "../../src/resilience/Deadline.ts"
import * as QuotaGuard from "../../src/resilience/QuotaGuard.ts"

// ---- fixtures

/** A scripted subscription endpoint: counts fetches, can be slow or failing. */
const makeServer = (initial: QuotaGuard.QuotaSnapshot) => {
  const server = {
    snapshot: initial,
    fetches: 0,
    failing: false,
    delay: undefined as Duration.Duration | undefined
  }
  const fetch = Effect.gen(function*() {
    server.fetches += 1
    if (server.delay !== undefined) yield* Effect.sleep(server.delay)
    if (server.failing) {
      return yield* Effect.fail(
        new ElevenLabsError({
          reason: new ServerError({ operation: "user.subscription.get", message: "boom", status: 500 })
        })
      )
    }
    return server.snapshot
  })
  return { server, fetch }
}

/** A guard over a scripted server, its first fetch done, and a subscription to its events. */
const setup = (initial: QuotaGuard.QuotaSnapshot, options?: QuotaGuard.Options) =>
  Effect.gen(function*() {
    const { fetch, server } = makeServer(initial)
    const guard = yield* QuotaGuard.make(options).pipe(
      Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
    )
    const sub = yield* guard.subscribe
    yield* Effect.exit(guard.refresh) // joins the first fetch, started by make
    /** The events published since the last call. */
    const events = Effect.gen(function*() {
      const n = yield* PubSub.remaining(sub)
      return n === 0 ? [] : yield* PubSub.takeUpTo(sub, n)
    })
    yield* events
    return { guard, server, events }
  })

const quotaExceeded = new ElevenLabsError({
  reason: new QuotaExceeded({
    operation: "textToSpeech.convert",
    message: "This request exceeds your quota of 1000. You have 40 credits remaining, while 100 credits are required.",
    status: 401,
    detailStatus: "quota_exceeded",
    quota: 1000,
    remaining: 40,
    required: 100
  })
})

const reasonOf = <A>(exit: Exit.Exit<A, unknown>) => {
  assert.isTrue(Exit.isFailure(exit))
  const error = Exit.isFailure(exit) ? Exit.findErrorOption(exit) : undefined
  assert.isTrue(error?._tag === "Some" && QuotaGuard.isQuotaGuardError(error.value))
  return (error as { value: QuotaGuard.QuotaGuardError }).value.reason
}

const tags = (events: ReadonlyArray<QuotaGuard.QuotaEvent>) => events.map((e) => e._tag)

describe("QuotaGuard", () => {
  describe("subscription cache", () => {
    it.effect("refreshes every 60 s: none before, one after", () =>
      Effect.gen(function*() {
        const { server } = yield* setup({ used: 0, limit: 1000 })
        assert.strictEqual(server.fetches, 1)
        yield* TestClock.adjust("59 seconds")
        assert.strictEqual(server.fetches, 1)
        yield* TestClock.adjust("1 second")
        assert.strictEqual(server.fetches, 2)
        yield* TestClock.adjust("60 seconds")
        assert.strictEqual(server.fetches, 3)
      }))

    it.effect("takes a configured interval", () =>
      Effect.gen(function*() {
        const { server } = yield* setup({ used: 0, limit: 1000 }, { refreshInterval: "10 seconds" })
        yield* TestClock.adjust("9 seconds")
        assert.strictEqual(server.fetches, 1)
        yield* TestClock.adjust("1 second")
        assert.strictEqual(server.fetches, 2)
      }))

    it.effect("picks up the server's new numbers on refresh", () =>
      Effect.gen(function*() {
        const { guard, server } = yield* setup({ used: 100, limit: 1000 })
        assert.strictEqual((yield* guard.status).used, 100)
        server.snapshot = { used: 400, limit: 2000 }
        yield* TestClock.adjust("60 seconds")
        const status = yield* guard.status
        assert.strictEqual(status.used, 400)
        assert.strictEqual(status.limit, 2000)
        assert.strictEqual(yield* guard.percentUsed, 20)
      }))

    it.effect("single-flight: many concurrent callers cause one fetch", () =>
      Effect.gen(function*() {
        const { guard, server } = yield* setup({ used: 0, limit: 1000 })
        server.delay = Duration.seconds(2)
        server.snapshot = { used: 10, limit: 1000 }
        const fibers = yield* Effect.forEach(
          Array.from({ length: 50 }, () => guard.refresh),
          (r) => Effect.forkChild(r)
        )
        yield* TestClock.adjust("2 seconds")
        const results = yield* Effect.forEach(fibers, Fiber.join)
        assert.strictEqual(server.fetches, 2) // the first one at start, then one for all 50
        assert.isTrue(results.every((s) => s.used === 10))
      }))

    it.effect("a refresh serves every caller: it does not run under the deadline of the caller that started it", () =>
      Effect.gen(function*() {
        const seen: Array<Deadline.CallDeadline | undefined> = []
        const fetch = Effect.map(Effect.service(Deadline.CurrentDeadline), (d) => {
          seen.push(d)
          return { used: 0, limit: 1000 }
        })
        const guard = yield* QuotaGuard.make().pipe(
          Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
        )
        yield* guard.refresh // joins the first fetch, started by make
        yield* guard.refresh.pipe(Deadline.bind("100 millis"))
        assert.strictEqual(seen.length, 2)
        assert.isTrue(seen.every((d) => d === undefined))
      }))

    it.effect("single-flight: callers reserving before the first snapshot all wait for the one fetch", () =>
      Effect.gen(function*() {
        const { fetch, server } = makeServer({ used: 0, limit: 1000 })
        server.delay = Duration.seconds(1)
        const guard = yield* QuotaGuard.make().pipe(
          Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
        )
        const fiber = yield* Effect.forkChild(
          Effect.forEach(
            Array.from({ length: 20 }, (_, i) => i),
            () => guard.guard(100, Effect.succeed("ok")).pipe(Effect.exit),
            {
              concurrency: "unbounded"
            }
          )
        )
        yield* TestClock.adjust("1 second")
        const exits = yield* Fiber.join(fiber)
        assert.strictEqual(server.fetches, 1)
        // With the snapshot known, exactly 10 of 100 credits fit in 1000.
        assert.strictEqual(exits.filter(Exit.isSuccess).length, 10)
        assert.strictEqual((yield* guard.status).used, 1000)
      }))

    it.effect("a call that waited for the first snapshot is still interruptible once it runs", () =>
      Effect.gen(function*() {
        const { fetch, server } = makeServer({ used: 0, limit: 1000 })
        server.delay = Duration.seconds(1)
        const guard = yield* QuotaGuard.make().pipe(
          Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
        )
        const fiber = yield* Effect.forkChild(guard.guard(100, Effect.never))
        yield* TestClock.adjust("1 second")
        // Reserved and running the (never-ending) call now.
        while ((yield* guard.status).reserved !== 100) yield* Effect.yieldNow
        const exit = yield* Fiber.interrupt(fiber).pipe(Effect.timeoutOption("1 second"), Effect.forkChild)
        yield* TestClock.adjust("1 second")
        assert.isTrue((yield* Fiber.join(exit))._tag === "Some", "the interruption completed")
        assert.strictEqual((yield* guard.status).reserved, 0)
      }))

    it.effect("reserve and guard wait for the first snapshot alike: once, bounded by the call's deadline", () =>
      Effect.gen(function*() {
        const { fetch, server } = makeServer({ used: 0, limit: 1000 })
        server.delay = Duration.seconds(1)
        const guard = yield* QuotaGuard.make().pipe(
          Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
        )
        // Bounded: past its deadline the call stops waiting and decides without a snapshot (allowed by default).
        const bounded = yield* Effect.forkChild(
          Effect.exit(guard.reserve(2000).pipe(Effect.scoped, Deadline.bind("100 millis")))
        )
        const boundedGuard = yield* Effect.forkChild(
          Effect.exit(guard.guard(2000, Effect.void).pipe(Deadline.bind("100 millis")))
        )
        // Unbounded: it waits for the snapshot, which then refuses it.
        const unbounded = yield* Effect.forkChild(Effect.exit(Effect.scoped(guard.reserve(2000))))
        yield* TestClock.adjust("100 millis")
        assert.isTrue(Exit.isSuccess(yield* Fiber.join(bounded)))
        assert.isTrue(Exit.isSuccess(yield* Fiber.join(boundedGuard)))
        assert.isUndefined(unbounded.pollUnsafe())
        yield* TestClock.adjust("900 millis")
        assert.strictEqual(reasonOf(yield* Fiber.join(unbounded))._tag, "InsufficientQuota")
        assert.strictEqual(server.fetches, 1)
      }))

    it.effect("a failed refresh keeps the last snapshot and reports its age", () =>
      Effect.gen(function*() {
        const { events, guard, server } = yield* setup({ used: 300, limit: 1000 })
        server.failing = true
        yield* TestClock.adjust("60 seconds")
        const status = yield* guard.status
        assert.strictEqual(status.used, 300)
        assert.strictEqual(status.snapshotAgeMillis, 60_000)
        assert.include(status.lastRefreshError ?? "", "boom")
        const failed = (yield* events).find((e) => e._tag === "RefreshFailed")
        assert.deepStrictEqual(failed?._tag === "RefreshFailed" ? failed.snapshotAgeMillis : undefined, 60_000)
        assert.isTrue(Exit.isFailure(yield* Effect.exit(guard.refresh)))
        // Reservations still work against the kept snapshot.
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(700, Effect.void))))
        assert.strictEqual(reasonOf(yield* Effect.exit(guard.guard(1, Effect.void)))._tag, "InsufficientQuota")
        server.failing = false
        server.snapshot = { used: 0, limit: 1000 }
        yield* TestClock.adjust("60 seconds")
        assert.strictEqual((yield* guard.status).lastRefreshError, undefined)
      }))

    it.effect("without any snapshot, allows by default and denies with whenUnknown: deny", () =>
      Effect.gen(function*() {
        const { fetch, server } = makeServer({ used: 0, limit: 10 })
        server.failing = true
        const provide = Effect.provideService(
          QuotaGuard.SubscriptionSource,
          QuotaGuard.SubscriptionSource.of({ fetch })
        )
        const open = yield* QuotaGuard.make().pipe(provide)
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(open.guard(500, Effect.void))))
        assert.strictEqual(yield* open.state, "unknown")
        const closed = yield* QuotaGuard.make({ whenUnknown: "deny" }).pipe(provide)
        assert.strictEqual(reasonOf(yield* Effect.exit(closed.guard(500, Effect.void)))._tag, "QuotaUnknown")
      }))

    it.effect("ignores a snapshot out of range", () =>
      Effect.gen(function*() {
        const { guard, server } = yield* setup({ used: 100, limit: 1000 })
        server.snapshot = { used: Number.NaN, limit: 1000 }
        assert.isTrue(Exit.isFailure(yield* Effect.exit(guard.refresh)))
        assert.strictEqual((yield* guard.status).used, 100)
      }))

    it.effect("adapts /v1/user/subscription fields, reset time from seconds to ms", () =>
      Effect.sync(() => {
        assert.deepStrictEqual(
          QuotaGuard.snapshotFromSubscription({
            character_count: 1000,
            character_limit: 10000,
            next_character_count_reset_unix: 1738356858
          }),
          { used: 1000, limit: 10000, resetAt: 1738356858000 }
        )
        assert.strictEqual(
          QuotaGuard.snapshotFromSubscription({
            character_count: 1,
            character_limit: 2,
            next_character_count_reset_unix: null
          })
            .resetAt,
          undefined
        )
      }))
  })

  describe("reservations", () => {
    it.effect("reserve holds credits; a call that does not fit fails at once with no request", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 200, limit: 1000 })
        const scope = yield* Scope.make()
        const r = yield* guard.reserve(600).pipe(Scope.provide(scope))
        assert.strictEqual((yield* guard.status).reserved, 600)
        let requests = 0
        const call = Effect.sync(() => void requests++)
        const reason = reasonOf(yield* Effect.exit(guard.guard(201, call)))
        assert.strictEqual(requests, 0)
        assert.deepStrictEqual(
          reason,
          new QuotaGuard.InsufficientQuota({ needed: 201, remaining: 200, percentUsed: 20 })
        )
        assert.include(reason.message, "need 201 credits, 200 remaining (20% used)")
        yield* guard.guard(200, call)
        assert.strictEqual(requests, 1)
        yield* r.commit(550)
        const status = yield* guard.status
        assert.deepStrictEqual([status.used, status.reserved, status.remaining], [950, 0, 50])
        // Settled once: a second commit or a release changes nothing, nor does closing the scope.
        yield* r.commit(1)
        yield* r.release
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual((yield* guard.status).used, 950)
      }))

    it.effect("closing the scope without a commit releases", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 })
        yield* Effect.scoped(guard.reserve(700))
        const status = yield* guard.status
        assert.deepStrictEqual([status.used, status.reserved], [0, 0])
      }))

    it.effect("failure releases the reservation", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 })
        const exit = yield* Effect.exit(guard.guard(700, Effect.fail("nope")))
        assert.deepStrictEqual(exit, Exit.fail("nope"))
        const status = yield* guard.status
        assert.deepStrictEqual([status.used, status.reserved], [0, 0])
      }))

    it.effect("interruption releases the reservation", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 })
        const fiber = yield* Effect.forkChild(guard.guard(700, Effect.never))
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* guard.status).reserved, 700)
        yield* Fiber.interrupt(fiber)
        const status = yield* guard.status
        assert.deepStrictEqual([status.used, status.reserved], [0, 0])
      }))

    it.effect("commits the character-cost header's value, else the estimate", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 })
        const actualCost = (r: { readonly characterCost?: number | undefined }) => r.characterCost
        yield* guard.guard(100, Effect.succeed({ characterCost: 80 }), { actualCost })
        assert.strictEqual((yield* guard.status).used, 80)
        yield* guard.guard(100, Effect.succeed({}), { actualCost })
        assert.strictEqual((yield* guard.status).used, 180)
        // A malformed header value falls back to the estimate.
        yield* guard.guard(50, Effect.succeed({ characterCost: Number.NaN }), { actualCost })
        assert.strictEqual((yield* guard.status).used, 230)
      }))

    it.effect("rejects a bad cost with InvalidInput", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 })
        for (const cost of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
          assert.strictEqual(reasonOf(yield* Effect.exit(guard.guard(cost, Effect.void)))._tag, "InvalidInput")
        }
        assert.strictEqual(reasonOf(yield* Effect.exit(guard.setKeyCap("k", -5)))._tag, "InvalidInput")
        const bad = yield* Effect.exit(
          QuotaGuard.make({ warningPercent: 95, alertPercent: 90 }).pipe(
            Effect.provideService(
              QuotaGuard.SubscriptionSource,
              QuotaGuard.SubscriptionSource.of({
                fetch: Effect.succeed({ used: 0, limit: 1 })
              })
            )
          )
        )
        assert.strictEqual(reasonOf(bad)._tag, "InvalidInput")
        for (
          const options of [{ refreshInterval: 0 }, { eventBuffer: 0 }, { keyCaps: { k: -1 } }, { warningPercent: -1 }]
        ) {
          const exit = yield* Effect.exit(
            QuotaGuard.make(options).pipe(
              Effect.provideService(
                QuotaGuard.SubscriptionSource,
                QuotaGuard.SubscriptionSource.of({
                  fetch: Effect.succeed({ used: 0, limit: 1 })
                })
              )
            )
          )
          assert.strictEqual(reasonOf(exit)._tag, "InvalidInput")
        }
      }))

    it.effect("estimates with the built-in table or /v1/models multipliers", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 }, { multipliers: { voice_x: 2 } })
        assert.strictEqual(guard.costOf(1001, "eleven_flash_v2_5"), 501)
        assert.strictEqual(guard.costOf(1001, "eleven_multilingual_v2"), 1001)
        assert.strictEqual(guard.costOf(10, "voice_x"), 20)
        yield* guard.setMultipliers({ eleven_multilingual_v2: 0.25 })
        assert.strictEqual(guard.costOf(1001, "eleven_multilingual_v2"), 251)
        assert.strictEqual(guard.costOf(10, "voice_x"), 10)
      }))

    it.effect.prop(
      "concurrent reservations never make used + reserved exceed the limit",
      [
        Schema.Array(
          Schema.Struct({
            cost: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 300 })),
            delay: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 5 })),
            outcome: Schema.Literals(["success", "failure", "interrupt"]),
            charged: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100 }))
          })
        ).check(Schema.isMaxLength(40)),
        Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2000 }))
      ],
      ([calls, limit]) =>
        Effect.gen(function*() {
          const { guard } = yield* setup({ used: 0, limit })
          let violations = 0
          let committed = 0
          const check = Effect.map(guard.status, (s) => {
            if ((s.used ?? 0) + s.reserved > limit) violations++
          })
          const fibers = yield* Effect.forEach(calls, (c) => {
            // The charge never exceeds the estimate: otherwise the server, not us, spent more.
            const charged = Math.floor((c.cost * c.charged) / 100)
            const body = Effect.sleep(Duration.millis(c.delay * 100)).pipe(
              Effect.andThen(check),
              Effect.andThen(c.outcome === "failure" ? Effect.fail("failed" as const) : Effect.succeed(charged)),
              Effect.tap(() => Effect.sync(() => void (committed += charged)))
            )
            return Effect.forkChild(
              guard.guard(c.cost, c.outcome === "interrupt" ? Effect.andThen(check, Effect.never) : body, {
                actualCost: (n) => n
              }).pipe(Effect.exit, Effect.tap(() => check))
            )
          })
          yield* TestClock.adjust("1 second")
          yield* Effect.forEach(fibers, Fiber.interrupt)
          const status = yield* guard.status
          assert.strictEqual(violations, 0)
          assert.strictEqual(status.reserved, 0)
          assert.strictEqual(status.used, committed)
          assert.isAtMost(committed, limit)
        }),
      { arbitrary: { runs: 60 } }
    )
  })

  describe("thresholds", () => {
    it.effect("announce warning and alert once per crossing, with a Warning log line", () => {
      const lines: Array<{ level: string; message: string }> = []
      const collector = Logger.make((o) => void lines.push({ level: o.logLevel, message: String(o.message) }))
      return Effect.gen(function*() {
        const { events, guard, server } = yield* setup({ used: 0, limit: 1000, resetAt: 3_600_000 })
        yield* guard.guard(700, Effect.void)
        assert.deepStrictEqual(yield* events, [])
        assert.strictEqual(yield* guard.state, "ok")
        yield* guard.guard(150, Effect.void) // 85 %
        let seen = yield* events
        assert.deepStrictEqual(seen.map((e) => e._tag === "ThresholdCrossed" && e.threshold), ["warning"])
        assert.strictEqual(yield* guard.state, "warning")
        yield* guard.guard(10, Effect.void) // 86 %: no new announcement
        assert.deepStrictEqual(yield* events, [])
        yield* guard.guard(50, Effect.void) // 91 %
        seen = yield* events
        assert.deepStrictEqual(seen.map((e) => e._tag === "ThresholdCrossed" && e.threshold), ["alert"])
        assert.strictEqual(yield* guard.state, "alert")
        yield* guard.guard(10, Effect.void)
        assert.deepStrictEqual(yield* events, [])
        const warnings = lines.filter((l) => l.level === "Warn" && l.message.includes("quota warning"))
        assert.strictEqual(warnings.length, 1)
        assert.strictEqual(lines.filter((l) => l.message.includes("quota alert")).length, 1)

        // A new period (the server's reset time moved on) re-arms both.
        server.snapshot = { used: 0, limit: 1000, resetAt: 7_200_000 }
        yield* TestClock.adjust("60 seconds")
        seen = yield* events
        assert.deepStrictEqual(tags(seen).filter((t) => t.startsWith("Threshold")), [
          "ThresholdCleared",
          "ThresholdCleared"
        ])
        assert.strictEqual(yield* guard.state, "ok")
        yield* guard.guard(900, Effect.void)
        seen = yield* events
        assert.deepStrictEqual(
          seen.flatMap((e) => (e._tag === "ThresholdCrossed" ? [e.threshold] : [])),
          ["warning", "alert"]
        )
        assert.strictEqual(lines.filter((l) => l.level === "Warn" && l.message.includes("quota warning")).length, 2)
      }).pipe(Effect.provide(Logger.layer([collector])))
    })

    it.effect("takes configured thresholds", () =>
      Effect.gen(function*() {
        const { events, guard } = yield* setup({ used: 0, limit: 100 }, { warningPercent: 50, alertPercent: 60 })
        yield* guard.guard(55, Effect.void)
        assert.strictEqual(yield* guard.state, "warning")
        yield* guard.guard(5, Effect.void)
        assert.strictEqual(yield* guard.state, "alert")
        assert.deepStrictEqual(tags(yield* events), ["ThresholdCrossed", "ThresholdCrossed"])
      }))

    it.effect("a refreshed snapshot can cross a threshold too", () =>
      Effect.gen(function*() {
        const { events, server } = yield* setup({ used: 0, limit: 1000 })
        server.snapshot = { used: 950, limit: 1000 }
        yield* TestClock.adjust("60 seconds")
        assert.deepStrictEqual(
          (yield* events).flatMap((e) => (e._tag === "ThresholdCrossed" ? [e.threshold] : [])),
          ["warning", "alert"]
        )
      }))
  })

  describe("exhausted state", () => {
    it.effect("quota_exceeded makes every call fail fast until the reset time passes", () =>
      Effect.gen(function*() {
        const resetAt = 5 * 60_000
        const { events, guard, server } = yield* setup({ used: 0, limit: 1000, resetAt })
        let requests = 0
        const exit = yield* Effect.exit(
          guard.guard(100, Effect.andThen(Effect.sync(() => void requests++), Effect.fail(quotaExceeded)))
        )
        assert.deepStrictEqual(exit, Exit.fail(quotaExceeded))
        assert.strictEqual(yield* guard.state, "exhausted")
        // The server's numbers were taken: 960 of 1000 used.
        assert.strictEqual((yield* guard.status).used, 960)
        assert.deepStrictEqual(tags(yield* events).filter((t) => t === "Exhausted"), ["Exhausted"])

        // The refreshes in between show no room: still exhausted.
        server.snapshot = { used: 1000, limit: 1000, resetAt }
        yield* TestClock.adjust("1 minute")
        const reason = reasonOf(yield* Effect.exit(guard.guard(1, Effect.sync(() => void requests++))))
        assert.strictEqual(requests, 1)
        assert.strictEqual(reason._tag, "QuotaExhausted")
        if (reason._tag === "QuotaExhausted") {
          assert.strictEqual(reason.resetAt, resetAt)
          // The next subscription check (at 2 min) comes before the reset (at 5 min).
          assert.deepStrictEqual(reason.retryAfter, Duration.minutes(1))
        }
        yield* TestClock.adjust("3 minutes")
        assert.strictEqual(yield* guard.state, "exhausted")
        const later = reasonOf(yield* Effect.exit(guard.guard(1, Effect.void)))
        assert.deepStrictEqual(later._tag === "QuotaExhausted" ? later.retryAfter : undefined, Duration.minutes(1))

        server.snapshot = { used: 0, limit: 1000, resetAt: resetAt + 30 * 86_400_000 }
        yield* TestClock.adjust("1 minute") // the clock reaches the reset time
        assert.notStrictEqual(yield* guard.state, "exhausted")
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(500, Effect.sync(() => void requests++)))))
        assert.strictEqual(requests, 2)
        const seen = tags(yield* events)
        assert.include(seen, "Recovered")
        assert.include(seen, "PeriodReset")
      }))

    it.effect("a subscription fetched after the mark that shows room ends it", () =>
      Effect.gen(function*() {
        const { events, guard, server } = yield* setup({ used: 900, limit: 1000 })
        yield* guard.markExhausted()
        const reason = reasonOf(yield* Effect.exit(guard.guard(1, Effect.void)))
        // No reset time known: the error points at the next subscription check.
        assert.deepStrictEqual(reason._tag === "QuotaExhausted" ? reason.retryAfter : undefined, Duration.minutes(1))
        assert.include(reason.message, "1m")
        server.snapshot = { used: 950, limit: 1000 }
        yield* TestClock.adjust("60 seconds")
        assert.strictEqual(yield* guard.state, "alert")
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(50, Effect.void))))
        assert.strictEqual(reasonOf(yield* Effect.exit(guard.guard(1, Effect.void)))._tag, "InsufficientQuota")
        const recovered = (yield* events).find((e) => e._tag === "Recovered")
        assert.deepStrictEqual(recovered?._tag === "Recovered" ? recovered.by : undefined, "refresh")
      }))

    it.effect("a mark made before a reading's fiber starts is newer than the reading: the reading does not end it", () =>
      Effect.gen(function*() {
        const { fetch } = makeServer({ used: 0, limit: 1000 })
        const guard = yield* QuotaGuard.make().pipe(
          Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
        )
        // The first reading was asked for by `make`; its fiber has not run yet.
        yield* guard.markExhausted()
        assert.deepStrictEqual(yield* guard.refresh, { used: 0, limit: 1000 })
        assert.strictEqual(yield* guard.state, "exhausted")
        // A reading asked for after the mark does.
        yield* guard.refresh
        assert.strictEqual(yield* guard.state, "ok")
      }))

    it.effect("an on-demand refresh showing room ends it too; the exhaustion is announced once", () =>
      Effect.gen(function*() {
        const { events, guard, server } = yield* setup({ used: 0, limit: 1000 })
        yield* guard.markExhausted({ quota: 1000, remaining: 0 })
        yield* guard.markExhausted({ quota: 1000, remaining: 0 })
        assert.deepStrictEqual(tags(yield* events).filter((t) => t === "Exhausted"), ["Exhausted"])
        server.snapshot = { used: 0, limit: 2000 }
        yield* guard.refresh
        assert.strictEqual(yield* guard.state, "ok")
      }))
  })

  describe("telemetry", () => {
    it.effect("events is a Stream of what happened; status reports state and percent", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 850, limit: 1000, resetAt: 600_000 })
        const fiber = yield* Effect.forkChild(Stream.runCollect(Stream.take(guard.events, 3)))
        yield* Effect.yieldNow
        yield* guard.markExhausted()
        yield* TestClock.adjust("1 minute")
        const events = yield* Fiber.join(fiber)
        // The refresh at 60 s shows 150 credits left: the exhaustion ends.
        assert.deepStrictEqual(tags(events), ["Exhausted", "Refreshed", "Recovered"])
        const status = yield* guard.status
        assert.strictEqual(status.state, "warning")
        assert.strictEqual(status.percentUsed, 85)
        assert.strictEqual(status.snapshotAgeMillis, 0)
        assert.strictEqual(status.nextRefreshAt, 120_000)
      }))
  })

  describe("store", () => {
    it.effect("guards over one QuotaStore share its ledger; the default is a memory store per guard", () =>
      Effect.gen(function*() {
        const { fetch } = makeServer({ used: 0, limit: 1000 })
        const source = Effect.provideService(QuotaGuard.SubscriptionSource, QuotaGuard.SubscriptionSource.of({ fetch }))
        const store = yield* Layer.build(QuotaGuard.layerStoreMemory())
        const a = yield* QuotaGuard.make().pipe(source, Effect.provide(store))
        const b = yield* QuotaGuard.make().pipe(source, Effect.provide(store))
        const own = yield* QuotaGuard.make().pipe(source)
        yield* Effect.all([a.refresh, b.refresh, own.refresh])
        const held = yield* Effect.forkChild(a.guard(600, Effect.never))
        yield* Effect.yieldNow
        assert.strictEqual((yield* b.status).reserved, 600)
        assert.strictEqual(reasonOf(yield* Effect.exit(b.guard(500, Effect.void)))._tag, "InsufficientQuota")
        assert.strictEqual((yield* own.status).reserved, 0)
        yield* Fiber.interrupt(held)
        yield* b.guard(500, Effect.void)
        assert.strictEqual((yield* a.status).used, 500)
      }))
  })

  describe("per-key budgets", () => {
    it.effect("a key's cap binds below the account's limit; other keys are not affected", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 }, { keyCaps: { batch: 300 } })
        yield* guard.guard(200, Effect.void, { keyId: "batch" })
        const reason = reasonOf(yield* Effect.exit(guard.guard(150, Effect.void, { keyId: "batch" })))
        assert.deepStrictEqual(
          reason,
          new QuotaGuard.InsufficientQuota({ needed: 150, remaining: 100, percentUsed: 66.7, key: "batch" })
        )
        yield* guard.guard(600, Effect.void, { keyId: "live" })
        // The account's limit still binds for a capped key: 200 left on the account, 100 on the key.
        yield* guard.guard(100, Effect.void, { keyId: "batch" })
        const account = reasonOf(yield* Effect.exit(guard.guard(150, Effect.void, { keyId: "live" })))
        assert.deepStrictEqual(
          account,
          new QuotaGuard.InsufficientQuota({ needed: 150, remaining: 100, percentUsed: 90 })
        )
        const status = yield* guard.status
        assert.deepStrictEqual(status.keys.find((k) => k.keyId === "batch"), {
          keyId: "batch",
          cap: 300,
          used: 300,
          reserved: 0,
          remaining: 0
        })
      }))

    it.effect("reservations count against the key until settled; setKeyCap changes it", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000 })
        yield* guard.setKeyCap("k", 100)
        const fiber = yield* Effect.forkChild(guard.guard(80, Effect.never, { keyId: "k" }))
        yield* TestClock.adjust("1 second")
        assert.strictEqual(
          reasonOf(yield* Effect.exit(guard.guard(30, Effect.void, { keyId: "k" })))._tag,
          "InsufficientQuota"
        )
        yield* Fiber.interrupt(fiber)
        yield* guard.guard(30, Effect.void, { keyId: "k" })
        yield* guard.setKeyCap("k", undefined)
        yield* guard.guard(500, Effect.void, { keyId: "k" })
        assert.strictEqual((yield* guard.status).used, 530)
      }))

    it.effect("key budgets start again with the period", () =>
      Effect.gen(function*() {
        const { guard } = yield* setup({ used: 0, limit: 1000, resetAt: 120_000 }, { keyCaps: { k: 100 } })
        yield* guard.guard(100, Effect.void, { keyId: "k" })
        assert.strictEqual(
          reasonOf(yield* Effect.exit(guard.guard(1, Effect.void, { keyId: "k" })))._tag,
          "InsufficientQuota"
        )
        yield* TestClock.adjust("2 minutes")
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(guard.guard(100, Effect.void, { keyId: "k" }))))
      }))
  })
})
