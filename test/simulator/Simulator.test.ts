/**
 * The model as a whole (`Simulator.make`, virtual time): a seed and a request
 * sequence give one run, and requests are routed by the endpoint table.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { base, call, get, runAll, ttsRequest, voice } from "./support.ts"

describe("Simulator model", () => {
  it.effect("the same seed and requests give identical records", () =>
    Effect.gen(function*() {
      const run = Effect.gen(function*() {
        const sim = yield* Simulator.make({
          seed: 42,
          plan: "free",
          faults: Simulator.faultMix(0.3)
        })
        const requests = Array.from({ length: 40 }, (_, i) =>
          Effect.flatMap(Effect.sleep(i * 37), () =>
            call(sim, ttsRequest("word ".repeat(5 + (i % 7)), i % 3 === 0 ? { model: "eleven_flash_v2_5" } : {}))))
        const answers = yield* runAll(requests, 25)
        const stats = yield* sim.stats
        return {
          answers: answers.map((
            a
          ) => [a.status, a.headers["request-id"] ?? "", a.headers["x-trace-id"] ?? "", a.bytes.length]),
          stats
        }
      }).pipe(Effect.provide(TestClock.layer()))
      const first = yield* run
      const second = yield* run
      assert.deepStrictEqual(second, first)
      // Real variety, not a trivial run.
      const statuses = new Set(first.answers.map((a) =>
        a[0]
      ))
      assert.isTrue(statuses.has(200) && statuses.has(429), `statuses: ${[...statuses].join(",")}`)
      const third = yield* Effect.provide(
        Effect.gen(function*() {
          const sim = yield* Simulator.make({ seed: 43, plan: "free", faults: Simulator.faultMix(0.3) })
          const [a] = yield* runAll([call(sim, ttsRequest("hello"))])
          return a!.headers["x-trace-id"]
        }),
        TestClock.layer()
      )
      assert.notStrictEqual(third, first.answers[0]![2])
    }))

  it.effect("routes by the endpoint table: a preflight, a known path with another method, an unknown path", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const [preflight, wrongMethod, unknown] = yield* runAll([
        call(sim, new Request(`${base}/v1/text-to-speech/${voice}`, { method: "OPTIONS" })),
        call(sim, get(`/v1/text-to-speech/${voice}`)),
        call(sim, get("/v1/nowhere"))
      ])
      assert.deepStrictEqual(
        [
          preflight!.status,
          new TextDecoder().decode(preflight!.bytes),
          preflight!.headers["access-control-allow-origin"]
        ],
        [200, "OK", "*"]
      )
      assert.deepStrictEqual([wrongMethod!.status, wrongMethod!.json, wrongMethod!.headers["allow"]], [405, {
        detail: "Method Not Allowed"
      }, "POST"])
      assert.deepStrictEqual([unknown!.status, unknown!.json], [404, { detail: "Not Found" }])
      const stats = yield* sim.stats
      assert.deepStrictEqual([stats.requests, stats.byStatus], [3, { "200": 1, "405": 1, "404": 1 }])
    }))
})
