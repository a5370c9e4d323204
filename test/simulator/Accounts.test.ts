/**
 * Accounts, plans and credits: at the module (`Accounts.make`), and through
 * the model (`Simulator.handle`, virtual time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { deploymentGuidePlans } from "../../src/resilience/Plans.ts"
import * as Accounts from "../../src/simulator/Accounts.ts"
import { isPending } from "../../src/simulator/Answers.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { call, get, headersOnly, parts, runAll, ttsRequest } from "./support.ts"

describe("Accounts", () => {
  it("authenticate: no key, an unknown key, a known key, and any key when accepted", () => {
    const { accounts } = parts({ apiKeys: ["a", { key: "b", name: "bee", plan: "free" }] })
    const missing = accounts.authenticate(headersOnly({}))
    const unknown = accounts.authenticate(headersOnly({ "xi-api-key": "zzz" }))
    assert.isTrue(isPending(missing) && missing.status === 401)
    assert.isTrue(isPending(unknown) && unknown.status === 401)
    const bee = accounts.authenticate(headersOnly({ "xi-api-key": "b" }))
    assert.isFalse(isPending(bee))
    assert.deepStrictEqual(
      accounts.all.map((a) => [a.name, a.plan, a.characterLimit, a.pools.standard.limit]),
      [["key1", "pro", Accounts.creditsOfPlan.pro, deploymentGuidePlans.pro.standard], [
        "bee",
        "free",
        10_000,
        deploymentGuidePlans.free.standard
      ]]
    )
    const open = parts({ acceptAnyKey: true }).accounts
    const fresh = open.authenticate(headersOnly({ "xi-api-key": "new" }))
    assert.strictEqual(open.authenticate(headersOnly({ "xi-api-key": "new" })), fresh)
    assert.deepStrictEqual(open.all.map((a) => a.name), ["key1", "key2"])
  })

  it.effect("a reservation counts against the quota, and is charged or dropped once", () =>
    Effect.gen(function*() {
      const { accounts, counts } = parts({ apiKeys: [{ key: "k", characterLimit: 100 }] })
      const account = accounts.all[0]!
      const held = accounts.reserve(account, 60)
      const refused = accounts.quotaRefusal(account, 50, 0)
      assert.strictEqual(refused?.status, 401)
      assert.isUndefined(accounts.quotaRefusal(account, 40, 0))
      yield* held.charge
      yield* held.drop
      yield* held.charge
      assert.deepStrictEqual([account.characterCount, account.reserved, counts.creditsCharged], [60, 0, 60])
      const dropped = accounts.reserve(account, 30)
      yield* dropped.drop
      yield* dropped.charge
      assert.deepStrictEqual([account.characterCount, account.reserved, counts.creditsCharged], [60, 0, 60])
    }))

  it("a period rolls when the clock passes its reset: usage back to 0, the next reset a whole period on", () => {
    const { accounts } = parts({ periodSeconds: 100, apiKeys: [{ key: "k", characterCount: 70 }] })
    const account = accounts.all[0]!
    accounts.rollPeriod(account, 99_999)
    assert.deepStrictEqual([account.characterCount, account.nextResetUnix], [70, 100])
    accounts.rollPeriod(account, 350_000)
    assert.deepStrictEqual([account.characterCount, account.nextResetUnix], [0, 400])
  })

  it("setPlan takes the plan's limits; setCredits sets what it is given, remaining past the limit raises it", () => {
    const { accounts } = parts()
    const account = accounts.all[0]!
    accounts.setPlan(account, "free")
    assert.deepStrictEqual([account.plan, account.pools.flash.limit], ["free", deploymentGuidePlans.free.flash])
    accounts.setCredits(account, { limit: 1000, used: 10.7, nextResetUnix: 5000 }, 0)
    assert.deepStrictEqual([account.characterLimit, account.characterCount, account.nextResetUnix], [1000, 10, 5000])
    accounts.setCredits(account, { remaining: 250 }, 0)
    assert.deepStrictEqual([account.characterLimit, account.characterCount], [1000, 750])
    accounts.setCredits(account, { remaining: 4000 }, 0)
    assert.deepStrictEqual([account.characterLimit, account.characterCount], [4000, 0])
  })

  it("the subscription shows the plan's features", () => {
    const { accounts } = parts({ apiKeys: [{ key: "f", plan: "free" }, { key: "c", plan: "creator" }] })
    const [free, creator] = accounts.all.map(Accounts.subscriptionJson)
    assert.deepStrictEqual(
      [
        free!.tier,
        free!.status,
        free!.voice_limit,
        free!.professional_voice_limit,
        free!.can_use_instant_voice_cloning
      ],
      ["free", "free", 3, 0, false]
    )
    assert.deepStrictEqual(
      [
        creator!.tier,
        creator!.status,
        creator!.voice_limit,
        creator!.professional_voice_limit,
        creator!.can_use_professional_voice_cloning
      ],
      ["creator", "active", 30, 1, true]
    )
    assert.isTrue(Accounts.planAtLeast("pro", "creator") && !Accounts.planAtLeast("starter", "creator"))
  })
})

describe("Accounts in the model", () => {
  it.effect("quota: 401 quota_exceeded past the limit, counts reset when the clock passes the reset time", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        periodSeconds: 100,
        apiKeys: [{ key: "sim-key", characterLimit: 20 }]
      })
      const [a, b] = yield* runAll([
        call(sim, ttsRequest("x".repeat(15))),
        Effect.flatMap(Effect.sleep(5000), () => call(sim, ttsRequest("y".repeat(10))))
      ])
      assert.strictEqual(a!.status, 200)
      assert.strictEqual(b!.status, 401)
      assert.strictEqual(b!.json.detail.status, "quota_exceeded")
      assert.strictEqual(
        b!.json.detail.message,
        "This request exceeds your quota of 20. You have 5 credits remaining, while 10 credits are required for this request."
      )
      let [sub] = yield* runAll([call(sim, get("/v1/user/subscription"))])
      assert.strictEqual(sub!.json.next_character_count_reset_unix, 100)
      yield* TestClock.adjust(100_000)
      const [c] = yield* runAll([call(sim, ttsRequest("y".repeat(10)))])
      assert.strictEqual(c!.status, 200)
      ;[sub] = yield* runAll([call(sim, get("/v1/user/subscription"))])
      assert.strictEqual(sub!.json.character_count, 10)
      assert.strictEqual(sub!.json.next_character_count_reset_unix, 200)
      yield* sim.setCredits(3)
      const [d] = yield* runAll([call(sim, ttsRequest("abcd"))])
      assert.match(d!.json.detail.message, /You have 3 credits remaining, while 4 credits/)
    }))
})
