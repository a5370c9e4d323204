/**
 * The quota ledger alone: its pure functions (no clock, no effects: the time is an argument) and the memory
 * store's cell and holders over them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Schema } from "effect"
import * as Ledger from "../../src/resilience/QuotaLedger.ts"
import { InsufficientQuota, type QuotaEvent } from "../../src/resilience/QuotaModel.ts"
import * as QuotaStore from "../../src/resilience/QuotaStore.ts"

const allow: Ledger.Rules = { whenUnknown: "allow", nextRefreshAt: 60_000, lastError: undefined }

/** A ledger after a first reading of `used` of `limit` (reset time `resetAt`, if any) at time 0. */
const known = (used: number, limit: number, resetAt?: number): Ledger.Ledger =>
  Ledger.applyReading(Ledger.empty, 0, { used, limit, resetAt }, Ledger.tokenOf(Ledger.empty), allow.nextRefreshAt)
    .ledger

const request = (cost: number, keyId?: string, cap?: number) => ({ cost, keyId, cap })

const tags = (events: ReadonlyArray<QuotaEvent>) => events.map((e) => e._tag)

describe("QuotaLedger", () => {
  describe("reserve", () => {
    it("holds what fits in limit - used - reserved and refuses the rest, saying what is left", () => {
      const first = Ledger.reserve(known(200, 1000), 0, request(600), allow)
      assert.isUndefined(first.value)
      assert.strictEqual(first.ledger.reserved, 600)
      const refused = Ledger.reserve(first.ledger, 0, request(201), allow)
      assert.deepStrictEqual(refused.value, new InsufficientQuota({ needed: 201, remaining: 200, percentUsed: 20 }))
      assert.strictEqual(refused.ledger, first.ledger, "a refusal changes nothing")
      assert.isUndefined(Ledger.reserve(first.ledger, 0, request(200), allow).value)
    })

    it("a capped key binds below the account's limit, and says so", () => {
      const l = Ledger.reserve(known(0, 1000), 0, request(200, "batch", 300), allow).ledger
      const settled = Ledger.settle(l, 200, "batch", 200)
      const refused = Ledger.reserve(settled, 0, request(150, "batch", 300), allow)
      assert.deepStrictEqual(
        refused.value,
        new InsufficientQuota({ needed: 150, remaining: 100, percentUsed: 66.7, key: "batch" })
      )
      // Another key, or the same one without a cap, only meets the account's limit.
      assert.isUndefined(Ledger.reserve(settled, 0, request(150, "live", undefined), allow).value)
      assert.isUndefined(Ledger.reserve(settled, 0, request(150, "batch", undefined), allow).value)
    })

    it("with no reading yet, whenUnknown decides; a deny explains with the last refresh error", () => {
      assert.isUndefined(Ledger.reserve(Ledger.empty, 0, request(1e9), allow).value)
      const denied =
        Ledger.reserve(Ledger.empty, 0, request(1), { ...allow, whenUnknown: "deny", lastError: "boom" }).value
      assert.strictEqual(denied?._tag, "QuotaUnknown")
      assert.include(denied?.message ?? "", "No subscription snapshot yet (boom)")
      // Key caps still apply.
      assert.strictEqual(Ledger.reserve(Ledger.empty, 0, request(11, "k", 10), allow).value?._tag, "InsufficientQuota")
    })

    it("while exhausted nothing fits; retryAfter runs to the reset time or the next check, whichever is first", () => {
      const marked = Ledger.markExhausted(known(0, 1000, 300_000), 0, undefined, allow.nextRefreshAt).ledger
      const refused = Ledger.reserve(marked, 30_000, request(0), allow).value
      assert.strictEqual(refused?._tag, "QuotaExhausted")
      if (refused?._tag === "QuotaExhausted") {
        assert.strictEqual(refused.resetAt, 300_000)
        assert.deepStrictEqual(refused.retryAfter, Duration.seconds(30))
      }
    })

    it("a shared store's fallback takes its share of what is left", () => {
      const l = known(100, 1000)
      const overShare = Ledger.reserve(l, 0, request(460), allow, 2).value
      assert.deepStrictEqual(overShare, new InsufficientQuota({ needed: 460, remaining: 450, percentUsed: 10 }))
      assert.isUndefined(Ledger.reserve(l, 0, request(450), allow, 2).value)
    })

    it("rolls the period over first when the reset time has passed", () => {
      const l = Ledger.settle(
        Ledger.reserve(known(0, 1000, 120_000), 0, request(100, "k", 100), allow).ledger,
        100,
        "k",
        100
      )
      assert.strictEqual(Ledger.reserve(l, 119_999, request(1, "k", 100), allow).value?._tag, "InsufficientQuota")
      const after = Ledger.reserve(l, 120_000, request(100, "k", 100), allow)
      assert.isUndefined(after.value)
      assert.deepStrictEqual(tags(after.events), ["PeriodReset"])
      assert.strictEqual(after.fetch, "period")
      assert.strictEqual(after.ledger.used, 0)
    })
  })

  describe("settle", () => {
    it("a commit counts what was spent; a release gives the reservation back; counters follow", () => {
      const held = Ledger.reserve(known(0, 1000), 0, request(100, "k"), allow).ledger
      const committed = Ledger.settle(held, 100, "k", 80)
      assert.deepStrictEqual([committed.used, committed.reserved, committed.committed], [80, 0, 80])
      assert.deepStrictEqual(committed.keys.get("k"), { used: 80, reserved: 0, sharedReserved: 0 })
      const released = Ledger.settle(held, 100, "k", undefined)
      assert.deepStrictEqual([released.used, released.reserved, released.committed], [0, 0, 0])
      // Held in a shared store (cost 0 here): only the commit is counted locally.
      const shared = Ledger.settle(known(0, 1000), 0, undefined, 30)
      assert.deepStrictEqual([shared.used, shared.reserved], [30, 0])
    })
  })

  describe("period rollover", () => {
    it("nothing before the reset time; at it, usage and key usage start from 0 and the exhaustion ends", () => {
      const l = Ledger.markExhausted(
        Ledger.settle(Ledger.reserve(known(500, 1000, 60_000), 0, request(50, "k"), allow).ledger, 50, "k", 50),
        0,
        undefined,
        allow.nextRefreshAt
      ).ledger
      const early = Ledger.rollover(l, 59_999)
      assert.strictEqual(early.ledger, l)
      assert.deepStrictEqual([early.events.length, early.fetch], [0, undefined])
      const rolled = Ledger.rollover(l, 60_000)
      assert.deepStrictEqual(tags(rolled.events), ["PeriodReset", "Recovered"])
      assert.strictEqual(rolled.fetch, "period")
      assert.deepStrictEqual([rolled.ledger.used, rolled.ledger.resetAt, rolled.ledger.exhausted], [
        0,
        undefined,
        undefined
      ])
      assert.strictEqual(rolled.ledger.keys.get("k")?.used, 0)
    })
  })

  describe("exhausted state", () => {
    it("takes the server's numbers and is announced once", () => {
      const first = Ledger.markExhausted(known(0, 1000), 10, { quota: 1000, remaining: 40 }, 60_000)
      assert.deepStrictEqual([first.ledger.used, first.ledger.limit, first.ledger.marks], [960, 1000, 1])
      assert.deepStrictEqual(first.events, [{
        _tag: "Exhausted",
        at: 10,
        resetAt: undefined,
        retryAfterMillis: 59_990
      }])
      const again = Ledger.markExhausted(first.ledger, 20, undefined, 60_000)
      assert.deepStrictEqual([again.events.length, again.ledger.marks], [0, 2])
    })

    it("a reading ends it only when no mark came after its start and it shows credits left", () => {
      const marked = Ledger.markExhausted(known(900, 1000), 0, undefined, 60_000).ledger
      const startedBefore = Ledger.tokenOf(known(900, 1000))
      const stale = Ledger.applyReading(marked, 1, { used: 0, limit: 1000 }, startedBefore, 60_000)
      assert.isDefined(stale.ledger.exhausted)
      const full = Ledger.applyReading(marked, 1, { used: 1000, limit: 1000 }, Ledger.tokenOf(marked), 60_000)
      assert.isDefined(full.ledger.exhausted)
      const fresh = Ledger.applyReading(marked, 1, { used: 950, limit: 1000 }, Ledger.tokenOf(marked), 60_000)
      assert.isUndefined(fresh.ledger.exhausted)
      assert.deepStrictEqual(tags(fresh.events), ["Refreshed", "Recovered"])
    })

    it("a shared store's mark is followed once, and its end too", () => {
      const reading = { used: 10, limit: 100, resetAt: undefined, reserved: 5, keys: [], exhausted: { until: 5_000 } }
      const entered = Ledger.adopt(known(0, 100), 0, reading, 60_000)
      assert.deepStrictEqual(entered.ledger.exhausted, { since: 0, resetAt: 5_000 })
      assert.deepStrictEqual(tags(entered.events), ["Exhausted"])
      assert.strictEqual(Ledger.adopt(entered.ledger, 1, reading, 60_000).events.length, 0)
      const ended = Ledger.adopt(entered.ledger, 2, { ...reading, exhausted: undefined }, 60_000)
      assert.deepStrictEqual([ended.ledger.exhausted, tags(ended.events)], [undefined, ["Recovered"]])
    })
  })

  describe("readings", () => {
    it("commits made after the token are added to the reading's used", () => {
      const l = known(100, 1000)
      const token = Ledger.tokenOf(l)
      const spent = Ledger.settle(Ledger.reserve(l, 0, request(50), allow).ledger, 50, undefined, 40)
      assert.strictEqual(Ledger.applyReading(spent, 1, { used: 100, limit: 1000 }, token, 60_000).ledger.used, 140)
      assert.strictEqual(
        Ledger.applyReading(spent, 1, { used: 100, limit: 1000 }, Ledger.tokenOf(spent), 60_000).ledger.used,
        100
      )
    })

    it("a later reset time starts a new period; a past one is ignored", () => {
      const l = Ledger.settle(Ledger.reserve(known(0, 1000, 10_000), 0, request(10, "k"), allow).ledger, 10, "k", 10)
      const next = Ledger.applyReading(l, 5_000, { used: 0, limit: 1000, resetAt: 20_000 }, Ledger.tokenOf(l), 60_000)
      assert.deepStrictEqual(next.events[0], { _tag: "PeriodReset", at: 5_000, resetAt: 10_000 })
      assert.deepStrictEqual([next.ledger.resetAt, next.ledger.keys.get("k")?.used], [20_000, 0])
      const past = Ledger.applyReading(l, 5_000, { used: 0, limit: 1000, resetAt: 4_000 }, Ledger.tokenOf(l), 60_000)
      assert.strictEqual(past.ledger.resetAt, undefined)
    })

    it("a shared store's answer becomes the view, every process's reservations and key usage with it", () => {
      const l = Ledger.reserve(known(0, 1000), 0, request(10, "k"), allow).ledger
      const shared = {
        used: 300,
        limit: 1000,
        resetAt: undefined,
        reserved: 70,
        keys: [{ keyId: "j", used: 5, reserved: 2 }],
        exhausted: undefined
      }
      const adopted = Ledger.applyReading(l, 1, { used: 250, limit: 1000 }, Ledger.tokenOf(l), 60_000, shared).ledger
      assert.deepStrictEqual([adopted.used, adopted.sharedReserved, adopted.reserved], [300, 70, 10])
      assert.deepStrictEqual(adopted.keys.get("j"), { used: 5, reserved: 0, sharedReserved: 2 })
      // A store that knows nothing says nothing.
      const blank = { ...shared, used: undefined, limit: undefined }
      assert.strictEqual(Ledger.adopt(l, 1, blank, 60_000).ledger, l)
    })
  })

  describe("thresholds", () => {
    const percents = { warning: 80, alert: 90 }
    it("each crossing is announced once, warning first; falling back re-arms", () => {
      const none: Ledger.Announced = { warning: false, alert: false }
      assert.isUndefined(Ledger.crossings(none, known(700, 1000), 0, percents))
      assert.isUndefined(Ledger.crossings(none, Ledger.empty, 0, percents))
      const both = Ledger.crossings(none, known(950, 1000), 0, percents)
      assert.deepStrictEqual(both?.events.map((e) => e._tag === "ThresholdCrossed" && e.threshold), [
        "warning",
        "alert"
      ])
      assert.isUndefined(Ledger.crossings(both!.announced, known(990, 1000), 0, percents))
      const cleared = Ledger.crossings(both!.announced, known(0, 1000), 0, percents)
      assert.deepStrictEqual(tags(cleared!.events), ["ThresholdCleared", "ThresholdCleared"])
      assert.deepStrictEqual(cleared!.announced, none)
      // A limit of 0 allows nothing: fully used.
      assert.strictEqual(Ledger.percentUsed(known(0, 0)), 100)
    })

    it.prop(
      "per threshold, announcements alternate crossed/cleared, starting with crossed, and match the last usage",
      [Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1200 }))).check(Schema.isMaxLength(40))],
      ([usages]) => {
        let announced: Ledger.Announced = { warning: false, alert: false }
        const seen: Record<"warning" | "alert", Array<string>> = { warning: [], alert: [] }
        for (const used of usages) {
          const crossed = Ledger.crossings(announced, known(used, 1000), 0, percents)
          if (crossed === undefined) continue
          announced = crossed.announced
          for (const e of crossed.events) {
            if (e._tag !== "ThresholdCrossed" && e._tag !== "ThresholdCleared") continue
            assert.strictEqual(e._tag === "ThresholdCrossed", e.percentUsed >= percents[e.threshold])
            seen[e.threshold].push(e._tag)
          }
        }
        for (const threshold of ["warning", "alert"] as const) {
          seen[threshold].forEach((tag, i) =>
            assert.strictEqual(tag, i % 2 === 0 ? "ThresholdCrossed" : "ThresholdCleared")
          )
          const last = usages.at(-1)
          assert.strictEqual(announced[threshold], last !== undefined && last / 10 >= percents[threshold])
        }
      }
    )
  })

  describe("properties", () => {
    const Op = Schema.Struct({
      kind: Schema.Literals(["reserve", "commit", "release", "reading"]),
      cost: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 300 })),
      key: Schema.Literals(["a", "b", "none"]),
      pick: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 })),
      percent: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100 }))
    })
    const caps: Record<string, number | undefined> = { a: 250, b: undefined }

    it.prop(
      "used + reserved never exceeds the limit, nor a key's cap; every reservation settles exactly once",
      [
        Schema.Array(Op).check(Schema.isMaxLength(80)),
        Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2000 })),
        Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100 }))
      ],
      ([ops, limit, usedPercent]) => {
        let l = known(Math.floor((limit * usedPercent) / 100), limit)
        const start = l.used!
        const open: Array<{ readonly cost: number; readonly keyId: string | undefined }> = []
        let spent = 0
        const heldFor = (keyId: string | undefined) =>
          open.filter((r) => r.keyId === keyId).reduce((s, r) => s + r.cost, 0)
        const check = () => {
          assert.isAtMost(l.used! + l.reserved, limit)
          assert.strictEqual(l.reserved, open.reduce((s, r) => s + r.cost, 0))
          for (const keyId of ["a", "b"]) {
            const key = l.keys.get(keyId)
            assert.strictEqual(key?.reserved ?? 0, heldFor(keyId))
            if (caps[keyId] !== undefined) assert.isAtMost((key?.used ?? 0) + (key?.reserved ?? 0), caps[keyId]!)
          }
        }
        const settleOne = (pick: number, committed: (cost: number) => number | undefined) => {
          if (open.length === 0) return
          const [r] = open.splice(pick % open.length, 1)
          const amount = committed(r!.cost)
          l = Ledger.settle(l, r!.cost, r!.keyId, amount)
          spent += amount ?? 0
        }
        for (const op of ops) {
          const keyId = op.key === "none" ? undefined : op.key
          switch (op.kind) {
            case "reserve": {
              const decided = Ledger.reserve(
                l,
                0,
                request(op.cost, keyId, keyId === undefined ? undefined : caps[keyId]),
                allow
              )
              l = decided.ledger
              if (decided.value === undefined) open.push({ cost: op.cost, keyId })
              break
            }
            // A charge never exceeds the estimate: otherwise the server, not the ledger, spent more.
            case "commit":
              settleOne(op.pick, (cost) => Math.floor((cost * op.percent) / 100))
              break
            case "release":
              settleOne(op.pick, () => undefined)
              break
            case "reading": {
              // The server's reading, taken before the commits since the token: they are added on top.
              const reading = Ledger.applyReading(
                l,
                0,
                { used: start + spent, limit },
                Ledger.tokenOf(l),
                allow.nextRefreshAt
              )
              assert.strictEqual(reading.ledger.used, l.used)
              l = reading.ledger
              break
            }
          }
          check()
        }
        while (open.length > 0) settleOne(0, () => undefined)
        check()
        assert.deepStrictEqual([l.reserved, l.used, l.committed], [0, start + spent, spent])
      },
      { arbitrary: { runs: 300 } }
    )

    it.effect.prop(
      "a holder settles once, however often it is committed or released",
      [Schema.Array(Schema.Struct({ pick: Schema.Int, commit: Schema.Boolean })).check(Schema.isMaxLength(60))],
      ([settlements]) =>
        Effect.gen(function*() {
          const cell = QuotaStore.makeCell()
          cell.set(known(0, 10_000))
          const held = Array.from({ length: 8 }, (_, i) => {
            assert.isUndefined(cell.apply(Ledger.reserve(cell.get(), 0, request(10 * (i + 1), "k"), allow)).value)
            return QuotaStore.heldIn(cell, 10 * (i + 1), "k")
          })
          const first = new Map<number, number | undefined>()
          for (const { commit, pick } of settlements) {
            const i = Math.abs(pick) % held.length
            const amount = commit ? held[i]!.cost : undefined
            if (!first.has(i)) first.set(i, amount)
            yield* held[i]!.settle(amount)
          }
          for (const h of held) yield* h.settle(undefined)
          const used = Array.from(first.values()).reduce<number>((s, a) => s + (a ?? 0), 0)
          assert.deepStrictEqual([cell.get().reserved, cell.get().keys.get("k")?.reserved, cell.get().used], [
            0,
            0,
            used
          ])
        })
    )
  })
})
