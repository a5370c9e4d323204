/**
 * OpenTelemetry export: traces, metrics and logs over OTLP/HTTP when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` is set ({@link layerFromEnv}), or through the
 * OpenTelemetry JS SDK with your own span processors ({@link layerSdk}).
 *
 * **Details**
 *
 * - {@link layerFromEnv} uses Effect's own OTLP exporters
 *   (`effect/observability` `Otlp.layer`): no OpenTelemetry SDK in the path,
 *   Effect metrics exported as they are, spans from `Effect.withSpan`. It is
 *   on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, as the OpenTelemetry spec
 *   says; Effect's `Otlp.layerFromConfig` would also want
 *   `OTEL_TRACES_EXPORTER=otlp`, so the variables are read here.
 * - Variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL; `/v1/traces`,
 *   `/v1/metrics`, `/v1/logs` are appended), `OTEL_EXPORTER_OTLP_PROTOCOL`
 *   (`http/protobuf`, the default, or `http/json`; gRPC is not supported and
 *   fails with a config error), `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`,
 *   URL-encoded values, read as a secret), `OTEL_SERVICE_NAME` (default
 *   `elevenlabs-resilience`), `OTEL_SERVICE_VERSION`, `OTEL_RESOURCE_ATTRIBUTES`,
 *   `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 60000), `OTEL_BSP_SCHEDULE_DELAY`
 *   (ms, default 5000), `OTEL_SDK_DISABLED` (`true` turns everything off).
 * - Unset endpoint (or disabled): the layer installs nothing; spans stay with
 *   the default in-process tracer and nothing leaves the process.
 * - Pending spans, metrics and logs are flushed when the layer's scope closes.
 * - {@link layerSdk} wraps `@effect/opentelemetry`'s `NodeSdk` for users who
 *   already run OpenTelemetry SDK processors (or for tests with
 *   `InMemorySpanExporter`). Those packages are optional peer dependencies,
 *   loaded only when the layer is built ({@link sdkPackages}); without them
 *   it fails with {@link MissingPeerDependency}.
 *
 * @since 0.1.0
 */
import { Config, Duration, Effect, Layer, Option, Redacted } from "effect"
import { FetchHttpClient } from "effect/http"
import { Otlp, OtlpExporter, OtlpSerialization } from "effect/observability"
import { importPeer, MissingPeerDependency } from "../internal/OptionalPeer.ts"

export { MissingPeerDependency } from "../internal/OptionalPeer.ts"

/** The default `service.name`. */
export const defaultServiceName = "elevenlabs-resilience"

/** What {@link layerFromEnv} read from the environment. */
export interface OtlpSettings {
  readonly endpoint: string
  readonly protocol: "http/protobuf" | "http/json"
  readonly headers: Redacted.Redacted<Record<string, string>> | undefined
  readonly serviceName: string
  readonly serviceVersion: string | undefined
  readonly metricsExportInterval: Duration.Duration
  readonly tracerExportInterval: Duration.Duration
}

const parseHeaders = (raw: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const part of raw.split(",")) {
    const i = part.indexOf("=")
    if (i <= 0) continue
    out[decodeURIComponent(part.slice(0, i).trim())] = decodeURIComponent(part.slice(i + 1).trim())
  }
  return out
}

/**
 * Reads the OTLP settings; `None` when export is off (no endpoint, or
 * `OTEL_SDK_DISABLED=true`).
 */
export const settingsFromEnv: Effect.Effect<Option.Option<OtlpSettings>, Config.ConfigError> = Effect.gen(function*() {
  const disabled = yield* Config.Boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false))
  const endpoint = yield* Config.option(Config.URL("OTEL_EXPORTER_OTLP_ENDPOINT"))
  if (disabled || Option.isNone(endpoint)) return Option.none()
  const c = yield* Config.all({
    protocol: Config.Literals(["http/protobuf", "http/json"], "OTEL_EXPORTER_OTLP_PROTOCOL").pipe(
      Config.withDefault("http/protobuf" as const)
    ),
    headers: Config.option(Config.Redacted("OTEL_EXPORTER_OTLP_HEADERS")),
    serviceName: Config.String("OTEL_SERVICE_NAME").pipe(Config.withDefault(defaultServiceName)),
    serviceVersion: Config.option(Config.String("OTEL_SERVICE_VERSION")),
    metricsMs: Config.Int("OTEL_METRIC_EXPORT_INTERVAL").pipe(Config.withDefault(60_000)),
    tracesMs: Config.Int("OTEL_BSP_SCHEDULE_DELAY").pipe(Config.withDefault(5_000))
  })
  return Option.some({
    endpoint: endpoint.value.toString().replace(/\/+$/, ""),
    protocol: c.protocol,
    headers: Option.match(c.headers, {
      onNone: () => undefined,
      onSome: (h) => Redacted.make(parseHeaders(Redacted.value(h)))
    }),
    serviceName: c.serviceName,
    serviceVersion: Option.getOrUndefined(c.serviceVersion),
    metricsExportInterval: Duration.millis(c.metricsMs),
    tracerExportInterval: Duration.millis(c.tracesMs)
  })
})

/** OTLP export of traces, metrics and logs from explicit settings. */
export const layerOtlp = (settings: OtlpSettings): Layer.Layer<OtlpExporter.Flusher> =>
  Otlp.layer({
    baseUrl: settings.endpoint,
    resource: {
      serviceName: settings.serviceName,
      ...(settings.serviceVersion === undefined ? {} : { serviceVersion: settings.serviceVersion })
    },
    ...(settings.headers === undefined ? {} : { headers: Redacted.value(settings.headers) }),
    metricsExportInterval: settings.metricsExportInterval,
    tracerExportInterval: settings.tracerExportInterval,
    // Keep the console/JSON logger: OTLP logs are in addition to it.
    loggerMergeWithExisting: true
  }).pipe(
    Layer.provide(settings.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf),
    Layer.provide(FetchHttpClient.layer)
  )

/**
 * OTLP export configured from the standard `OTEL_*` variables; installs
 * nothing when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset.
 */
export const layerFromEnv: Layer.Layer<OtlpExporter.Flusher, Config.ConfigError> = Layer.unwrap(
  Effect.map(
    settingsFromEnv,
    Option.match({ onNone: () => OtlpExporter.layerFlusher, onSome: layerOtlp })
  )
)

/**
 * What {@link layerSdk} needs installed (optional peer dependencies of this
 * package): `npm install` these to use it.
 */
export const sdkPackages: ReadonlyArray<string> = [
  "@effect/opentelemetry",
  "@opentelemetry/api",
  "@opentelemetry/api-logs",
  "@opentelemetry/resources",
  "@opentelemetry/sdk-logs",
  "@opentelemetry/sdk-metrics",
  "@opentelemetry/sdk-trace-base",
  "@opentelemetry/sdk-trace-node",
  "@opentelemetry/semantic-conventions"
]

/**
 * An OpenTelemetry `SpanProcessor` (`@opentelemetry/sdk-trace-base`), by
 * shape: these types do not depend on the optional OpenTelemetry packages.
 */
export interface SpanProcessor {
  onStart(span: unknown, parentContext: unknown): void
  onEnd(span: unknown): void
  forceFlush(): Promise<void>
  shutdown(): Promise<void>
}

/** An OpenTelemetry `MetricReader` (`@opentelemetry/sdk-metrics`), by shape. */
export interface MetricReader {
  setMetricProducer(metricProducer: unknown): void
  collect(options?: unknown): Promise<unknown>
  forceFlush(options?: unknown): Promise<void>
  shutdown(options?: unknown): Promise<void>
}

/** Options of {@link layerSdk}. */
export interface SdkOptions {
  readonly spanProcessors?: ReadonlyArray<SpanProcessor> | undefined
  readonly metricReaders?: ReadonlyArray<MetricReader> | undefined
  readonly serviceName?: string | undefined
  readonly serviceVersion?: string | undefined
}

type NodeSdkConfiguration = import("@effect/opentelemetry/NodeSdk").Configuration

/**
 * Traces (and metrics) through the OpenTelemetry JS SDK, via
 * `@effect/opentelemetry`'s `NodeSdk`: Effect spans go to your span
 * processors, Effect metrics to your metric readers. The packages of
 * {@link sdkPackages} are loaded when the layer is built; if one is missing
 * it fails with {@link MissingPeerDependency} (naming the `npm install` line).
 */
export const layerSdk = (options: SdkOptions): Layer.Layer<never, MissingPeerDependency> =>
  Layer.unwrap(
    Effect.map(
      importPeer(() => import("@effect/opentelemetry/NodeSdk"), "Otel.layerSdk", sdkPackages),
      (NodeSdk) =>
        NodeSdk.layer(() => ({
          ...(options.spanProcessors === undefined
            ? {}
            : { spanProcessor: options.spanProcessors as NodeSdkConfiguration["spanProcessor"] }),
          ...(options.metricReaders === undefined
            ? {}
            : { metricReader: options.metricReaders as NodeSdkConfiguration["metricReader"] }),
          resource: {
            serviceName: options.serviceName ?? defaultServiceName,
            ...(options.serviceVersion === undefined ? {} : { serviceVersion: options.serviceVersion })
          }
        }))
    )
  )
