import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Option, Redacted } from "effect"
import { createServer, type IncomingMessage, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as Otel from "../../src/telemetry/Otel.ts"
import * as Spans from "../../src/telemetry/Spans.ts"

/** A loopback OTLP/HTTP collector that records what it receives. */
const collector = Effect.acquireRelease(
  Effect.callback<
    {
      readonly server: Server
      readonly url: string
      readonly received: Array<{ path: string; body: string; auth: string | undefined }>
    }
  >((resume) => {
    const received: Array<{ path: string; body: string; auth: string | undefined }> = []
    const server = createServer((req: IncomingMessage, res) => {
      let body = ""
      req.on("data", (c) => (body += c))
      req.on("end", () => {
        received.push({ path: req.url ?? "", body, auth: req.headers.authorization })
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ server, url: `http://127.0.0.1:${port}`, received }))
    })
  }),
  ({ server }) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
)

const withEnv = (env: Record<string, string>) =>
  Layer.succeed(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))

const program = Effect.gen(function*() {
  yield* Metrics.recordRetry({ reason: "SystemBusy", pool: "standard" })
  yield* Effect.log("call finished")
  yield* Effect.void.pipe(Spans.withCallSpan("textToSpeech.convert", { pool: "standard", characters: 5 }))
})

describe("Otel.layerFromEnv", () => {
  it.live("with OTEL_EXPORTER_OTLP_ENDPOINT set, spans, metrics and logs reach the collector over OTLP/HTTP", () =>
    Effect.gen(function*() {
      const c = yield* collector
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: c.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_SERVICE_NAME: "otel-test",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20t0ken"
      }
      // the layer's scope closes at the end of this block: that flushes everything
      yield* program.pipe(Effect.provide(Otel.layerFromEnv), Effect.provide(withEnv(env)))
      const traces = c.received.filter((r) => r.path === "/v1/traces")
      assert.isAbove(traces.length, 0, JSON.stringify(c.received.map((r) => r.path)))
      const spans = traces.flatMap((t) =>
        JSON.parse(t.body).resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans))
      )
      assert.deepStrictEqual(spans.map((s: any) => s.name), ["elevenlabs.textToSpeech.convert"])
      assert.include(traces[0]!.body, `"otel-test"`)
      assert.strictEqual(traces[0]!.auth, "Bearer t0ken")
      assert.include(
        c.received.filter((r) => r.path === "/v1/metrics").map((r) => r.body).join(""),
        "elevenlabs_retries_total"
      )
      assert.include(c.received.filter((r) => r.path === "/v1/logs").map((r) => r.body).join(""), "call finished")
    }))

  it.live("with the endpoint unset (or OTEL_SDK_DISABLED=true) nothing is exported", () =>
    Effect.gen(function*() {
      const c = yield* collector
      yield* program.pipe(Effect.provide(Otel.layerFromEnv), Effect.provide(withEnv({})))
      yield* program.pipe(
        Effect.provide(Otel.layerFromEnv),
        Effect.provide(withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: c.url, OTEL_SDK_DISABLED: "true" }))
      )
      assert.deepStrictEqual(c.received, [])
    }))

  it.effect("reads the settings; headers stay redacted; gRPC is refused with a config error", () =>
    Effect.gen(function*() {
      const s = yield* Otel.settingsFromEnv.pipe(
        Effect.provide(
          withEnv({
            OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
            OTEL_EXPORTER_OTLP_HEADERS: "x-key=abc,b=c%3Dd"
          })
        )
      )
      assert.isTrue(Option.isSome(s))
      const v = Option.getOrThrow(s)
      assert.strictEqual(v.endpoint, "http://collector:4318")
      assert.strictEqual(v.protocol, "http/protobuf")
      assert.strictEqual(v.serviceName, "elevenlabs-resilience")
      assert.deepStrictEqual(Redacted.value(v.headers!), { "x-key": "abc", b: "c=d" })
      assert.notInclude(String(v.headers), "abc")
      const grpc = yield* Effect.flip(
        Otel.settingsFromEnv.pipe(
          Effect.provide(withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }))
        )
      )
      assert.strictEqual(grpc._tag, "ConfigError")
    }))
})
