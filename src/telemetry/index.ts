/**
 * Observability for elevenlabs-resilience: the Prometheus metrics of the
 * ElevenLabs production-deployment guide (docs/design.md section 6), the
 * `/metrics`, `/health` and `/ready` routes, OTLP export, span helpers, a
 * JSON-lines logger, alert rules and a secret scanner.
 *
 * @since 0.1.0
 */
export * as AlertRules from "./AlertRules.ts"
export * as Health from "./Health.ts"
export { HealthChecks } from "./Health.ts"
export * as JsonLogger from "./JsonLogger.ts"
export * as Metrics from "./Metrics.ts"
export * as Otel from "./Otel.ts"
export * as Prometheus from "./Prometheus.ts"
export * as Redact from "./Redact.ts"
export * as ResilientTelemetry from "./ResilientTelemetry.ts"
export * as Spans from "./Spans.ts"
export * as Telemetry from "./Telemetry.ts"
