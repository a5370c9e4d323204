import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Redacted } from "effect"
import { TestClock, TestConsole } from "effect/testing"
import * as JsonLogger from "../../src/telemetry/JsonLogger.ts"

const lines = Effect.map(TestConsole.logLines, (ls) => ls.map((l) => JSON.parse(String(l))))

describe("JsonLogger", () => {
  it.effect("writes one JSON line per log with ISO time, level, message, request and user ids, annotations", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678))
      yield* Effect.logInfo("call finished").pipe(
        Effect.annotateLogs({ requestId: "req-1", userId: "user-7", pool: "standard" })
      )
      yield* Effect.logWarning("retrying", 2).pipe(Effect.annotateLogs({ requestId: "req-2" }))
      const out = yield* lines
      assert.deepStrictEqual(out, [
        {
          time: "2026-01-02T03:04:05.678Z",
          level: "info",
          message: "call finished",
          requestId: "req-1",
          userId: "user-7",
          annotations: { pool: "standard" }
        },
        { time: "2026-01-02T03:04:05.678Z", level: "warn", message: ["retrying", 2], requestId: "req-2" }
      ])
    }).pipe(Effect.provide(JsonLogger.layer())))

  it.effect("an error line carries the error message and the pretty cause with its stack", () =>
    Effect.gen(function*() {
      yield* Effect.fail(new Error("ElevenLabs said 503")).pipe(
        Effect.tapCause((cause) => Effect.logError("call failed", cause))
      ).pipe(Effect.ignore)
      const [line] = yield* lines
      assert.strictEqual(line.level, "error")
      assert.strictEqual(line.message, "call failed")
      assert.strictEqual(line.error.message, "ElevenLabs said 503")
      assert.include(line.error.cause, "ElevenLabs said 503")
      assert.include(line.error.cause, "JsonLogger.test.ts") // the stack
    }).pipe(Effect.provide(JsonLogger.layer())))

  it.effect("carries the trace and span ids inside a span", () =>
    Effect.gen(function*() {
      const span = yield* Effect.gen(function*() {
        yield* Effect.log("in span")
        return yield* Effect.currentSpan
      }).pipe(Effect.withSpan("elevenlabs.textToSpeech.convert"))
      const [line] = yield* lines
      assert.strictEqual(line.traceId, span.traceId)
      assert.strictEqual(line.spanId, span.spanId)
    }).pipe(Effect.provide(JsonLogger.layer())))

  it.effect("the minimum level filters, from options or LOG_LEVEL", () =>
    Effect.gen(function*() {
      yield* Effect.logDebug("hidden").pipe(Effect.provide(JsonLogger.layer()))
      yield* Effect.logInfo("hidden too").pipe(Effect.provide(JsonLogger.layer({ minimumLevel: "Warn" })))
      yield* Effect.logDebug("shown").pipe(Effect.provide(JsonLogger.layer({ minimumLevel: "Debug" })))
      yield* Effect.logInfo("hidden by env").pipe(
        Effect.provide(
          JsonLogger.layerFromConfig().pipe(
            Layer.provide(
              Layer.succeed(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: { LOG_LEVEL: "Error" } }))
            )
          )
        )
      )
      yield* Effect.logError("shown by env").pipe(
        Effect.provide(
          JsonLogger.layerFromConfig().pipe(
            Layer.provide(
              Layer.succeed(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: { LOG_LEVEL: "Error" } }))
            )
          )
        )
      )
      assert.deepStrictEqual((yield* lines).map((l) => [l.level, l.message]), [["debug", "shown"], [
        "error",
        "shown by env"
      ]])
    }))

  it.effect("scrubs secrets and never prints a Redacted value", () =>
    Effect.gen(function*() {
      const key = Redacted.make("sk_live_0123456789")
      yield* Effect.log("oops sk_live_0123456789 in text", { key }).pipe(
        Effect.provide(JsonLogger.layer({ redact: [key] }))
      )
      const raw = (yield* TestConsole.logLines).map(String).join("\n")
      assert.notInclude(raw, "sk_live_0123456789")
      assert.include(raw, "<redacted>")
    }))
})
