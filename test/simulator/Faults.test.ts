/**
 * Injected faults: at the module (`Faults.make`), and through the model
 * (`Simulator.handle`, virtual time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as Faults from "../../src/simulator/Faults.ts"
import * as Prng from "../../src/simulator/Prng.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { call, parts, runAll, ttsRequest } from "./support.ts"

describe("Faults", () => {
  it("faultMix splits the rate, without hangs", () => {
    const mix = Faults.faultMix(0.5)
    assert.closeTo(Object.values(mix).reduce((n, r) => n + r, 0), 0.5, 1e-12)
    assert.deepStrictEqual([mix.systemBusy, mix.serverError, mix.hang], [0.2, 0.1, 0])
  })

  it("draw: one number of the seed per admitted request, the faults in a fixed order; a cut only where allowed", () => {
    const { faults } = parts({ seed: 5, faults: { connectionReset: 0.5, streamCut: 0.5 } })
    const seed = Prng.make(5)
    const first = seed.next()
    assert.strictEqual(faults.draw(true), first < 0.5 ? "connectionReset" : "streamCut")
    const second = seed.next()
    assert.strictEqual(faults.draw(false), second < 0.5 ? "connectionReset" : undefined)
    faults.set({ connectionReset: 0, streamCut: 0, serverError: 1 })
    assert.strictEqual(faults.draw(true), "serverError")
    assert.deepStrictEqual(faults.rates(), { ...Faults.noFaults, serverError: 1 })
  })

  it("drawSystemBusy draws nothing from the seed at a rate of 0", () => {
    const { faults, prng } = parts({ seed: 9 })
    assert.isFalse(faults.drawSystemBusy())
    assert.strictEqual(prng.next(), Prng.make(9).next())
    faults.set({ systemBusy: 1 })
    assert.isTrue(faults.drawSystemBusy())
  })

  it("the answering faults in their shapes, counted by status; count files a fault", () => {
    const { counts, faults } = parts()
    const a = faults.answer("serverError")
    const e = faults.answer("internalServerError")
    const h = faults.answer("serviceUnavailable")
    assert.deepStrictEqual([a.status, e.status, h.status], [500, 500, 503])
    assert.strictEqual(h.headers["content-type"], "text/html; charset=UTF-8")
    assert.strictEqual(h.headers["content-length"], String(h.whole!.length))
    assert.deepStrictEqual(counts.byStatus, { "500": 2, "503": 1 })
    assert.deepStrictEqual(counts.byDetailStatus, { something_went_wrong: 1, internal_server_error: 1 })
    faults.count("hang")
    faults.count("systemBusyLoad")
    assert.deepStrictEqual([counts.faults["hang"], counts.faults["systemBusyLoad"], counts.faults["streamCut"]], [
      1,
      1,
      0
    ])
  })
})

describe("Faults in the model", () => {
  it.effect("a hang holds its slot until the caller gives up", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ faults: { hang: 1 } })
      const fiber = yield* Effect.forkChild(call(sim, ttsRequest("hang")))
      yield* TestClock.adjust(600_000)
      assert.isUndefined(fiber.pollUnsafe())
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 1)
      yield* Fiber.interrupt(fiber)
      const stats = yield* sim.stats
      assert.strictEqual(stats.pools.standard.inFlight, 0)
      assert.strictEqual(stats.faults["hang"], 1)
      assert.strictEqual(stats.creditsCharged, 0)
    }))
  it.effect("faults: 500 shapes, 503 HTML, reset and cut; failures are not charged, cuts are", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const one = (f: Partial<Simulator.FaultRates>) =>
        Effect.gen(function*() {
          yield* sim.setFaults({ ...Simulator.noFaults, ...f })
          const [a] = yield* runAll([call(sim, ttsRequest("abcde"))])
          return a!
        })
      const a = yield* one({ serverError: 1 })
      assert.deepStrictEqual([a.status, a.json.detail.status], [500, "something_went_wrong"])
      const e = yield* one({ internalServerError: 1 })
      assert.deepStrictEqual([e.status, e.json.status], [500, "internal_server_error"])
      const h = yield* one({ serviceUnavailable: 1 })
      assert.strictEqual(h.status, 503)
      assert.strictEqual(h.headers["content-type"], "text/html; charset=UTF-8")
      assert.strictEqual((yield* one({ connectionReset: 1 })).status, "reset")
      assert.strictEqual((yield* sim.stats).creditsCharged, 0)
      assert.strictEqual((yield* one({ streamCut: 1 })).status, "cut")
      const stats = yield* sim.stats
      assert.strictEqual(stats.creditsCharged, 5)
      assert.strictEqual(stats.pools.standard.inFlight, 0)
      assert.match(a.headers["x-trace-id"]!, /^[0-9a-f]{32}$/)
      assert.strictEqual(a.headers["x-region"], "us-central1")
    }))
  it.effect("system_busy: by probability, and by load over a shared capacity; Retry-After on request", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ systemCapacity: 1, retryAfterSeconds: 3, apiKeys: ["k1", "k2"] })
      const [a, b] = yield* runAll([
        call(sim, ttsRequest("x".repeat(50), { key: "k1" })),
        call(sim, ttsRequest("y", { key: "k2" }))
      ])
      assert.strictEqual(a!.status, 200)
      assert.deepStrictEqual([b!.status, b!.json.detail.status, b!.headers["retry-after"]], [429, "system_busy", "3"])
      yield* sim.configure({ systemCapacity: null, faults: { systemBusy: 1 } })
      const [c] = yield* runAll([call(sim, ttsRequest("z", { key: "k1" }))])
      assert.strictEqual(c!.json.detail.status, "system_busy")
      assert.strictEqual((yield* sim.stats).faults["systemBusyLoad"], 1)
    }))
})
