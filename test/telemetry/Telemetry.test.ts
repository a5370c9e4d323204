import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { TestConsole } from "effect/testing"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import * as Health from "../../src/telemetry/Health.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"

/** A free loopback port (the server layer hides its HttpServer, so the port is chosen up front). */
const freePort = Effect.callback<number>((resume) => {
  const s = createServer()
  s.listen(0, "127.0.0.1", () => {
    const { port } = s.address() as AddressInfo
    s.close(() => resume(Effect.succeed(port)))
  })
})

describe("Telemetry.layer", () => {
  it.live("logs JSON, serves /ready from the HealthChecks it provides, and exports nothing without an endpoint", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      yield* Effect.gen(function*() {
        yield* Health.register("quota", Effect.succeed({ ok: false, details: { exhausted: true } }))
        yield* Effect.logInfo("ready?").pipe(Effect.annotateLogs({ requestId: "r-9" }))
        const res = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/ready`))
        assert.strictEqual(res.status, 503)
        const body = yield* Effect.promise(() => res.json())
        assert.deepStrictEqual(body, {
          status: "not_ready",
          checks: { quota: { ok: false, details: { exhausted: true } } }
        })
        const health = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/health`))
        assert.strictEqual(health.status, 200)
      }).pipe(
        Effect.provide(
          Telemetry.layer({ server: { port, host: "127.0.0.1" } }).pipe(
            Layer.provide(Layer.succeed(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: {} }))),
            Layer.provideMerge(TestConsole.layer)
          )
        ),
        Effect.andThen(
          Effect.gen(function*() {
            // the server was closed with the layer's scope
            const closed = yield* Effect.promise(() =>
              fetch(`http://127.0.0.1:${port}/health`).then(() => false, () => true)
            )
            assert.isTrue(closed)
          })
        )
      )
    }))

  it.effect("logs go through the JSON logger", () =>
    Effect.gen(function*() {
      yield* Effect.logWarning("slow").pipe(Effect.provide(Telemetry.layer({ otlp: false })))
      const [line] = yield* TestConsole.logLines
      const parsed = JSON.parse(String(line))
      assert.strictEqual(parsed.level, "warn")
      assert.strictEqual(parsed.message, "slow")
    }))
})
