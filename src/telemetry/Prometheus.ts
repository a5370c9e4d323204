/**
 * Prometheus exposition of the Effect metrics: the text, a `/metrics` route to
 * mount in your own `effect/http` server, and a standalone server layer.
 *
 * **Details**
 *
 * - The text comes from `effect/observability`'s `PrometheusMetrics`, which
 *   reads the Effect metric registry directly. Names are exposed exactly as
 *   defined (no `_total` added or unit suffixes appended, unlike the
 *   OpenTelemetry Prometheus exporter), which is what keeps the production-deployment
 *   guide's names (docs/design.md section 6).
 * - Every metric in the registry is exposed, yours included.
 * - The standalone server listens on port 9090 by default, on all interfaces;
 *   request logging and the "Listening on" line are off (scrapes are noise).
 *
 * **Example** (Serving /metrics in your own router)
 *
 * ```ts
 * import { Layer } from "effect"
 * import { HttpRouter } from "effect/http"
 * import { Prometheus } from "elevenlabs-resilience/telemetry"
 *
 * const routes = Layer.mergeAll(myRoutes, Prometheus.layerRoute())
 * const server = HttpRouter.serve(routes)
 * ```
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Config, Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { createServer } from "node:http"

/** The content type of the Prometheus text format 0.0.4. */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/** Default port of the standalone metrics/health server. */
export const defaultPort = 9090

/** The metrics of the current registry in the Prometheus text exposition format. */
export const exposition: Effect.Effect<string> = PrometheusMetrics.format()

/** An HTTP response carrying {@link exposition}. */
export const response: Effect.Effect<HttpServerResponse.HttpServerResponse> = Effect.map(
  exposition,
  (body) => HttpServerResponse.text(body, { contentType })
)

/**
 * A layer adding `GET /metrics` (or `path`) to the current `HttpRouter`.
 *
 * @example
 * ```ts
 * HttpRouter.serve(Layer.mergeAll(appRoutes, Prometheus.layerRoute()))
 * ```
 */
export const layerRoute = (options?: { readonly path?: `/${string}` | undefined }) =>
  HttpRouter.add("GET", options?.path ?? "/metrics", response)

/** Options of a standalone server. */
export interface ServerOptions {
  /** TCP port; default 9090. `0` picks a free one (read it from `HttpServer.address`). */
  readonly port?: number | undefined
  /** Interface to bind; default all interfaces. */
  readonly host?: string | undefined
}

/**
 * Serves the routes of `routes` on a Node HTTP server of its own. Exposes the
 * `HttpServer`, so callers can read the bound address.
 */
export const serveStandalone = <E, R>(
  routes: Layer.Layer<never, E, R>,
  options?: ServerOptions | undefined
) =>
  HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(
      NodeHttpServer.layerServer(createServer, {
        port: options?.port ?? defaultPort,
        ...(options?.host === undefined ? {} : { host: options.host })
      })
    ),
    Layer.provide(NodeHttpServer.layerHttpServices)
  )

/** A standalone server answering `GET /metrics` only. */
export const layerServer = (options?: ServerOptions | undefined) => serveStandalone(layerRoute(), options)

/**
 * {@link layerServer} with the port from `METRICS_PORT` (default 9090) and the
 * interface from `METRICS_HOST` (default all).
 */
export const layerServerConfig = Layer.unwrap(
  Effect.gen(function*() {
    const { host, port } = yield* Config.all({
      port: Config.Port("METRICS_PORT").pipe(Config.withDefault(defaultPort)),
      host: Config.String("METRICS_HOST").pipe(Config.withDefault(undefined))
    })
    return layerServer({ port, host })
  })
)
