import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { Account } from "../../src/simulator/Accounts.ts"
import type { Outcome } from "../../src/simulator/Answers.ts"
import * as Generation from "../../src/simulator/Generation.ts"
import { parts } from "./support.ts"

const setup = (options: Parameters<typeof parts>[0] = {}) => {
  const p = parts(options)
  return { ...p, generate: Generation.make(p) }
}

const chunks = (count: number) => Array.from({ length: count }, () => new Uint8Array(10))

/** A request of 50 units at 10 ms each after 100 ms to first byte, no noise: 600 ms buffered. */
const input = (account: Account, overrides: Partial<Generation.Input> = {}): Generation.Input => ({
  account,
  pool: "standard",
  cost: 10,
  profile: { ttfbMs: 100, msPerUnit: 10, jitter: 0 },
  units: 50,
  streaming: false,
  success: () => ({ headers: { "content-type": "audio/mpeg" }, chunks: chunks(4) }),
  ...overrides
})

const status = (o: Outcome) => o._tag === "Respond" ? o.status : o._tag

const detailStatus = (o: Outcome) =>
  o._tag === "Respond" && o.whole !== undefined
    ? JSON.parse(new TextDecoder().decode(o.whole)).detail.status
    : undefined

/** Forks `effect` and moves the clock `ms`: the fiber. */
const after = <A, E>(effect: Effect.Effect<A, E>, ms: number) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect)
    yield* TestClock.adjust(ms)
    return fiber
  })

describe("Generation", () => {
  it.effect("refusals before admission, in order: a pool at 0, the quota, the load, a drawn system_busy", () =>
    Effect.gen(function*() {
      const gated = setup({ systemCapacity: 0, apiKeys: [{ key: "k", characterLimit: 5, limits: { standard: 0 } }] })
      const account = gated.accounts.all[0]!
      const closed = yield* gated.generate(input(account))
      assert.deepStrictEqual([status(closed), detailStatus(closed)], [403, "subscription_required"])
      const quota = yield* gated.generate(input(account, { pool: "flash" }))
      assert.deepStrictEqual([status(quota), detailStatus(quota)], [401, "quota_exceeded"])
      const load = yield* gated.generate(input(account, { pool: "flash", cost: 1 }))
      assert.deepStrictEqual([status(load), detailStatus(load), gated.counts.faults["systemBusyLoad"]], [
        429,
        "system_busy",
        1
      ])
      const drawn = setup({ faults: { systemBusy: 1 } })
      const busy = yield* drawn.generate(input(drawn.accounts.all[0]!))
      assert.deepStrictEqual([status(busy), drawn.counts.faults["systemBusy"]], [429, 1])
      assert.strictEqual(drawn.accounts.all[0]!.pools.standard.admitted, 0)
    }))

  it.effect("buffered: headers after the first byte and the generation; streamed: after the first byte, chunks paced", () =>
    Effect.gen(function*() {
      const { accounts, counts, generate } = setup()
      const account = accounts.all[0]!
      const buffered = yield* after(generate(input(account)), 599)
      assert.isUndefined(buffered.pollUnsafe())
      yield* TestClock.adjust(1)
      const whole = yield* Fiber.join(buffered)
      assert.strictEqual(status(whole), 200)
      assert.deepStrictEqual(whole._tag === "Respond" ? [whole.headers["content-type"], whole.headers["server"]] : [], [
        "audio/mpeg",
        "uvicorn"
      ])
      if (whole._tag === "Respond") yield* Stream.runDrain(whole.body)
      const streamed = yield* after(generate(input(account, { streaming: true })), 100)
      const outcome = yield* Fiber.join(streamed)
      assert.strictEqual(account.pools.standard.inFlight, 1)
      if (outcome._tag !== "Respond") return assert.fail("no answer")
      // 500 ms of generation over 4 chunks: 125 ms between them.
      const read = yield* after(Stream.runCollect(outcome.body), 374)
      assert.isUndefined(read.pollUnsafe())
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* Fiber.join(read)).length, 4)
      assert.deepStrictEqual([account.pools.standard.inFlight, counts.creditsCharged, account.characterCount], [
        0,
        20,
        20
      ])
    }))

  it.effect("a cut stops half-way and is charged; a reset is not, and gives the slot back; a hang holds it", () =>
    Effect.gen(function*() {
      const { accounts, counts, faults, generate } = setup({ faults: { streamCut: 1 } })
      const account = accounts.all[0]!
      const cut = yield* Fiber.join(yield* after(generate(input(account)), 600))
      if (cut._tag !== "Respond") return assert.fail("no answer")
      const seen: Array<Uint8Array> = []
      const error = yield* Stream.runForEach(cut.body, (c) => Effect.sync(() => seen.push(c))).pipe(Effect.flip)
      assert.deepStrictEqual([error._tag, seen.length, cut.whole], ["StreamCut", 2, undefined])
      const one = yield* Fiber.join(
        yield* after(generate(input(account, { success: () => ({ headers: {}, chunks: chunks(1) }) })), 600)
      )
      if (one._tag !== "Respond") return assert.fail("no answer")
      const half = yield* Stream.runForEach(one.body, (c) => Effect.sync(() => seen.push(c))).pipe(Effect.flip)
      assert.deepStrictEqual([half._tag, seen[2]!.length], ["StreamCut", 5])
      assert.deepStrictEqual([counts.creditsCharged, counts.faults["streamCut"]], [20, 2])
      faults.set({ streamCut: 0, connectionReset: 1 })
      const reset = yield* Fiber.join(yield* after(generate(input(account)), 100))
      assert.deepStrictEqual([reset._tag, counts.creditsCharged, account.reserved, account.pools.standard.inFlight], [
        "Reset",
        20,
        0,
        0
      ])
      faults.set({ connectionReset: 0, hang: 1 })
      const hang = yield* after(generate(input(account)), 600_000)
      assert.deepStrictEqual([hang.pollUnsafe(), account.pools.standard.inFlight, account.reserved], [undefined, 1, 10])
      yield* Fiber.interrupt(hang)
      assert.deepStrictEqual([account.pools.standard.inFlight, account.reserved, counts.creditsCharged], [0, 0, 20])
    }))

  it("profileOf: by pool, and by model in the standard pool", () => {
    const latency = Generation.defaultLatency
    assert.strictEqual(Generation.profileOf(latency, "flash", "eleven_v3"), latency.flash)
    assert.strictEqual(Generation.profileOf(latency, "standard", "eleven_v3"), latency.v3)
    assert.strictEqual(Generation.profileOf(latency, "standard", "eleven_multilingual_v2"), latency.standard)
    assert.strictEqual(Generation.profileOf(latency, "music", ""), latency.music)
    assert.strictEqual(Generation.profileOf(latency, "stt", ""), latency.stt)
  })
})
