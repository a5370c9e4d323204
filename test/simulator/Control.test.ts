/**
 * The simulator's control: patches, the record and the `/_simulator/*` routes
 * (`Simulator.handle`, virtual time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { deploymentGuidePlans } from "../../src/resilience/Plans.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { base, call, get, runAll, ttsRequest } from "./support.ts"

describe("Control", () => {
  it.effect("control routes change a running simulator and reject bad patches", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const post = (path: string, body: unknown) =>
        call(sim, new Request(`${base}${path}`, { method: "POST", body: JSON.stringify(body) }))
      const [ok, bad, unknownAccount] = yield* runAll([
        post("/_simulator/config", { account: "key1", limits: { standard: 1 }, faults: { serverError: 0 } }),
        post("/_simulator/config", { faults: { hang: 2 } }),
        post("/_simulator/config", { account: "nobody", credits: { remaining: 1 } })
      ])
      assert.strictEqual(ok!.status, 200)
      assert.strictEqual(bad!.status, 400)
      assert.strictEqual(unknownAccount!.status, 400)
      const [stats] = yield* runAll([call(sim, get("/_simulator/stats"))])
      assert.strictEqual(stats!.json.pools.standard.limit, 1)
      yield* runAll([call(sim, ttsRequest("hello"))])
      assert.strictEqual((yield* sim.stats).requests, 1)
      const [reset] = yield* runAll([post("/_simulator/reset", {})])
      assert.strictEqual(reset!.status, 200)
      const after = yield* sim.stats
      assert.deepStrictEqual([after.requests, after.creditsCharged, after.byStatus], [0, 0, {}])
    }))

  it.effect("a raised limit admits queued requests at once; a plan takes its limits", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        apiKeys: [{ key: "sim-key", limits: { standard: 1 } }],
        queue: { depth: 5, maxWaitMs: 60_000 }
      })
      const holder = yield* Effect.forkChild(call(sim, ttsRequest("h".repeat(1000))))
      yield* TestClock.adjust(1)
      const waiter = yield* Effect.forkChild(call(sim, ttsRequest("w")))
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* sim.stats).pools.standard.queued, 1)
      yield* sim.configure({ limits: { standard: 2 } })
      let stats = yield* sim.stats
      assert.deepStrictEqual([stats.pools.standard.queued, stats.pools.standard.inFlight], [0, 2])
      yield* sim.configure({ plan: "free" })
      stats = yield* sim.stats
      assert.deepStrictEqual([stats.accounts["key1"]!.plan, stats.pools.standard.limit], [
        "free",
        deploymentGuidePlans.free.standard
      ])
      yield* Fiber.interrupt(holder)
      yield* Fiber.interrupt(waiter)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 0)
    }))

  it.effect("credits of one account or all; an unknown account is a SimulatorConfigError", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ apiKeys: ["a", { key: "b", name: "bee" }] })
      yield* sim.configure({ account: "bee", credits: { limit: 1000, used: 100, nextResetUnix: 9999 } })
      yield* sim.setCredits(5000, "key1")
      const { accounts } = yield* sim.stats
      assert.deepStrictEqual(
        [
          accounts["bee"]!.characterLimit,
          accounts["bee"]!.characterCount,
          accounts["bee"]!.nextCharacterCountResetUnix
        ],
        [1000, 100, 9999]
      )
      assert.deepStrictEqual([accounts["key1"]!.characterLimit, accounts["key1"]!.characterCount], [500_000, 495_000])
      const error = yield* Effect.flip(sim.configure({ account: "nobody", plan: "free" }))
      assert.strictEqual(error._tag, "SimulatorConfigError")
      assert.match(error.message, /No simulated account is named "nobody"/)
    }))

  it.effect("control routes: faults, a body that is not JSON, an unknown route; none is counted", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const post = (path: string, body: string) => call(sim, new Request(`${base}${path}`, { method: "POST", body }))
      const [set, notJson, unknown] = yield* runAll([
        post("/_simulator/config", JSON.stringify({ failureRate: 0.5, faults: { serverError: 1, systemBusy: 0 } })),
        post("/_simulator/config", "{nope"),
        call(sim, get("/_simulator/config"))
      ])
      assert.deepStrictEqual([set!.status, set!.json], [200, { ok: true }])
      assert.deepStrictEqual([notJson!.status, notJson!.json.error], [400, "invalid_json"])
      assert.deepStrictEqual([unknown!.status, unknown!.json.error], [404, "not_found"])
      assert.strictEqual((yield* sim.stats).requests, 0)
      const answers = yield* runAll(Array.from({ length: 8 }, () => call(sim, ttsRequest("abc"))))
      // The failure rate's mix, then the faults over it: serverError first in the draw, at 1.
      assert.deepStrictEqual(answers.map((a) => a.status), Array(8).fill(500))
      const stats = yield* sim.stats
      assert.deepStrictEqual([stats.faults["serverError"], stats.requests], [8, 8])
    }))
})
