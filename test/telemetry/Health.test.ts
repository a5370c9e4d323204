import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Ref, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Health from "../../src/telemetry/Health.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import { get } from "./serverUrl.ts"

const server = Health.layerServer({ port: 0, host: "127.0.0.1" }).pipe(Layer.provideMerge(Health.HealthChecks.layer))

describe("Health", () => {
  it.live("answers /health, /ready and /metrics over real HTTP, /ready following the registered checks", () =>
    Effect.gen(function*() {
      const health = yield* get("/health")
      assert.strictEqual(health.status, 200)
      assert.strictEqual(JSON.parse(health.body).status, "alive")

      // nothing registered: ready
      let ready = yield* get("/ready")
      assert.strictEqual(ready.status, 200)
      assert.deepStrictEqual(JSON.parse(ready.body), { status: "ready", checks: {} })

      const breaker = yield* Ref.make<"Closed" | "HalfOpen" | "Open">("Closed")
      const depth = yield* Ref.make(10)
      yield* Health.register("breaker.standard", Health.breakerCheck("standard", Ref.get(breaker)))
      yield* Health.register("queue", Health.queueCheck(Ref.get(depth)))
      yield* Health.register("quota", Health.quotaCheck(Effect.succeed({ exhausted: false, usedPercentage: 42 })))

      ready = yield* get("/ready")
      assert.strictEqual(ready.status, 200)
      assert.strictEqual(ready.type, "application/json")
      assert.deepStrictEqual(JSON.parse(ready.body), {
        status: "ready",
        checks: {
          "breaker.standard": { ok: true, details: { pool: "standard", state: "Closed" } },
          queue: { ok: true, details: { depth: 10, maxDepth: 500 } },
          quota: { ok: true, details: { exhausted: false, usedPercentage: 42 } }
        }
      })

      yield* Ref.set(breaker, "Open")
      yield* Ref.set(depth, 500)
      ready = yield* get("/ready")
      assert.strictEqual(ready.status, 503)
      const report = JSON.parse(ready.body)
      assert.strictEqual(report.status, "not_ready")
      assert.deepStrictEqual(report.checks["breaker.standard"], {
        ok: false,
        details: { pool: "standard", state: "Open" }
      })
      assert.deepStrictEqual(report.checks.queue, { ok: false, details: { depth: 500, maxDepth: 500 } })
      assert.strictEqual(report.checks.quota.ok, true)

      yield* Metrics.setQueueDepth("standard", "batch", 500)
      const metrics = yield* get("/metrics")
      assert.strictEqual(metrics.status, 200)
      assert.include(metrics.body, `elevenlabs_queue_depth{pool="standard",lane="batch"} 500`)
    }).pipe(Effect.provide(server)))

  it.effect("a failing, dying or hanging check is not ok and names its error; scoped registration goes away", () =>
    Effect.gen(function*() {
      const hc = yield* Health.make({ checkTimeout: "1 second" })
      const scope = yield* Scope.make()
      yield* hc.register("fails", Effect.die(new Error("boom"))).pipe(Scope.provide(scope))
      yield* hc.register("hangs", Effect.never)
      yield* hc.register("fine", Effect.succeed({ ok: true, details: {} }))
      const fiber = yield* Effect.forkChild(hc.run)
      yield* TestClock.adjust("1 second")
      const report = yield* Fiber.join(fiber)
      assert.strictEqual(report.status, "not_ready")
      assert.deepStrictEqual(report.checks["fails"], { ok: false, details: { error: "boom", name: "Error" } })
      assert.strictEqual(report.checks["hangs"]!.ok, false)
      assert.include(String(report.checks["hangs"]!.details["error"]), "timed out")

      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* hc.names, ["hangs", "fine"])
    }))

  it.effect("freshnessCheck compares the last success with the Clock", () =>
    Effect.gen(function*() {
      const last = yield* Ref.make<number | undefined>(undefined)
      const check = Health.freshnessCheck(Ref.get(last), "60 seconds")
      assert.strictEqual((yield* check).ok, false)
      yield* Ref.set(last, 0)
      yield* TestClock.adjust("60 seconds")
      assert.deepStrictEqual(yield* check, { ok: true, details: { ageMillis: 60_000, maxAgeMillis: 60_000 } })
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* check).ok, false)
    }))
})
