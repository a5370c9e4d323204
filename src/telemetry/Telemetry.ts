/**
 * One layer for the whole observability setup: the JSON logger, OTLP export
 * from the environment, the `HealthChecks` registry and, optionally, the
 * standalone `/health` `/ready` `/metrics` server.
 *
 * **Details**
 *
 * - `logs` (default on, level Info): {@link JsonLogger.layer}; `false` keeps
 *   your loggers. `logLevelFromEnv: true` reads `LOG_LEVEL` instead.
 * - `otlp` (default `"env"`): {@link Otel.layerFromEnv}; `false` turns it off.
 * - `server` (default off): {@link Health.layerServer} on its options (port
 *   9090 unless given). Off by default because most services mount
 *   {@link Health.layerRoutes} in their own server.
 * - The layer provides `HealthChecks`, the one the server's `/ready` reads, so
 *   the composition registers its checks there.
 *
 * **Example** (A service with everything on)
 *
 * ```ts
 * import { Telemetry } from "elevenlabs-resilience/telemetry"
 *
 * const TelemetryLive = Telemetry.layer({ server: { port: 9090 }, logs: { redact: [apiKey] } })
 * ```
 *
 * @since 0.1.0
 */
import { Layer } from "effect"
import type { Scope } from "effect"
import * as Health from "./Health.ts"
import * as JsonLogger from "./JsonLogger.ts"
import * as Otel from "./Otel.ts"
import type * as Prometheus from "./Prometheus.ts"

/** Options of {@link layer}. */
export interface Options {
  /** JSON-lines logs; default on at Info. `false` leaves the loggers alone. */
  readonly logs?: (JsonLogger.LayerOptions & { readonly logLevelFromEnv?: boolean | undefined }) | false | undefined
  /** OTLP export; default `"env"` (on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set). */
  readonly otlp?: "env" | false | undefined
  /** Standalone health/metrics server; default off. */
  readonly server?: (Prometheus.ServerOptions & Health.RouteOptions) | false | undefined
  /** Longest a readiness check may take; default 2 seconds. */
  readonly checkTimeout?: Health.Options["checkTimeout"]
}

const hide = <A, E, R>(layer: Layer.Layer<A, E, R>): Layer.Layer<never, E, Exclude<R, Scope.Scope>> =>
  Layer.effectDiscard(Layer.build(layer))

/** The observability layer; provides `HealthChecks`. */
export const layer = (options?: Options | undefined) => {
  const checks = Health.layer({ checkTimeout: options?.checkTimeout })
  const logs = options?.logs === false
    ? Layer.empty
    : options?.logs?.logLevelFromEnv === true
    ? JsonLogger.layerFromConfig(options.logs)
    : JsonLogger.layer(options?.logs)
  // Built for their effect only: the OTLP flusher and the server's HttpServer stay private,
  // so they cannot clash with the user's own.
  const otlp = options?.otlp === false ? Layer.empty : hide(Otel.layerFromEnv)
  const server = options?.server === undefined || options.server === false
    ? Layer.empty
    : hide(Health.layerServer(options.server))
  return Layer.mergeAll(logs, otlp, server.pipe(Layer.provide(checks)), checks)
}
