/**
 * Telemetry wired to the resilient stack: the readiness checks of the
 * composition (breaker, queue, quota, subscription freshness) registered in
 * `HealthChecks`, and one layer that brings the resilient client, the
 * telemetry setup and those checks up together.
 *
 * **Details**
 *
 * The checks {@link registerHealthChecks} registers (names with the default
 * `prefix` `"elevenlabs"`):
 *
 * | check | ok when |
 * |---|---|
 * | `elevenlabs.breaker.<pool>` | the pool's circuit is not open, or its open time is over (the next call probes) |
 * | `elevenlabs.queue.<pool>` | the pool's queue (all lanes) is below `queueAlertDepth` (500) |
 * | `elevenlabs.quota` | the quota guard is not in its exhausted state |
 * | `elevenlabs.subscription` | the subscription was read no longer ago than `subscriptionMaxAge` (2 × the refresh interval) |
 *
 * - Breaker checks exist only when the stack has a breaker, quota and
 *   subscription checks only when it has a quota guard.
 * - A circuit whose open time has passed still reads `Open` until a call
 *   probes it. Reporting it as not ready would keep the process out of the
 *   load balancer, which would then send nothing to probe with, and the
 *   process would never become ready again. So such a circuit reports
 *   `HalfOpen` (ready) with its `retryAfter` of 0.
 * - Registrations live as long as the scope that made them (the layer's).
 * - A stack that follows a live configuration (`LiveConfig`) also adds its
 *   status to `/health` under `config`: the version running, when it was
 *   applied, the last refused version and why, and the fields waiting for a
 *   restart.
 *
 * **Example** (The resilient client with telemetry and readiness)
 *
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { ResilientTelemetry } from "elevenlabs-resilience/telemetry"
 *
 * const apiKey = Redacted.make(process.env.ELEVENLABS_API_KEY!)
 * const Live = ResilientTelemetry.layerObserved({
 *   apiKey,
 *   limiter: { plan: "pro" },
 *   telemetry: { server: { port: 9090 }, logs: { redact: [apiKey] } }
 * }).pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 */
import { Duration, Effect, Layer, Option } from "effect"
import type { Config } from "effect"
import type { Scope } from "effect"
import type { HttpClient, HttpServerError } from "effect/http"
import type * as Client from "../client/ElevenLabs.ts"
import type { ElevenLabsError } from "../client/Errors.ts"
import * as Breaker from "../resilience/Breaker.ts"
import { type Pool, pools } from "../resilience/Plans.ts"
import * as Resilient from "../resilience/Resilient.ts"
import type { ResilientOptions } from "../resilience/ResilientOptions.ts"
import * as Health from "./Health.ts"
import * as Telemetry from "./Telemetry.ts"

// ==== Options ===============================================================

/** Options of {@link registerHealthChecks}; every field has a default. */
export interface HealthOptions {
  /** Pools checked (breaker and queue). Default all four: standard, flash, stt, music. */
  readonly pools?: ReadonlyArray<Pool> | undefined
  /** A pool's queue is not ready at this depth (all lanes). Default 500, the queue alert's depth. */
  readonly queueAlertDepth?: number | undefined
  /**
   * Oldest acceptable subscription read. Default 120 seconds (2 × the quota
   * guard's default refresh interval of 60 s). `false` drops the check (for
   * keys without the `user_read` permission, whose reads always fail).
   */
  readonly subscriptionMaxAge?: Duration.Input | false | undefined
  /** Prefix of the check names. Default `"elevenlabs"`. */
  readonly prefix?: string | undefined
}

/** The default queue depth at which a pool is not ready (the production-deployment guide's alert depth). */
export const defaultQueueAlertDepth = 500

/** The default refresh interval of the quota guard, whose double is the default subscription age. */
const defaultRefreshInterval = Duration.seconds(60)

// ==== Checks ================================================================

/**
 * The breaker state a readiness probe should see: an `Open` circuit whose
 * open time is over reads `HalfOpen`, since the next call is let through.
 */
const readinessState = (
  resilience: Resilient.Resilience,
  pool: Pool
): Effect.Effect<"Closed" | "HalfOpen" | "Open"> =>
  resilience.breaker === undefined
    ? Effect.succeed("Closed")
    : Effect.map(
      // A store that cannot answer makes the check not ok, with the error in its details.
      Effect.orDie(resilience.breaker.state(pool)),
      Breaker.stateNow
    )

/**
 * The readiness checks of a resilient stack, by name (pure: nothing is
 * registered). {@link registerHealthChecks} registers exactly these.
 */
export const checksOf = (
  resilience: Resilient.Resilience,
  options?: HealthOptions | undefined
): ReadonlyArray<readonly [string, Health.Check]> => {
  const prefix = options?.prefix ?? "elevenlabs"
  const checked = options?.pools ?? pools
  const maxDepth = options?.queueAlertDepth ?? defaultQueueAlertDepth
  const out: Array<readonly [string, Health.Check]> = []
  if (resilience.breaker !== undefined) {
    for (const pool of checked) {
      out.push([`${prefix}.breaker.${pool}`, Health.breakerCheck(pool, readinessState(resilience, pool))])
    }
  }
  for (const pool of checked) {
    const depth = Effect.map(resilience.limiter.snapshot(resilience.keyId, pool), (s) => s.queueDepth)
    out.push([
      `${prefix}.queue.${pool}`,
      Effect.map(Health.queueCheck(depth, maxDepth), (r) => ({ ok: r.ok, details: { pool, ...r.details } }))
    ])
  }
  const quota = resilience.quota
  if (quota !== undefined) {
    out.push([
      `${prefix}.quota`,
      Health.quotaCheck(Effect.map(quota.status, (s) => ({
        exhausted: s.state === "exhausted",
        usedPercentage: s.percentUsed,
        remaining: s.remaining
      })))
    ])
    const maxAge = options?.subscriptionMaxAge
    if (maxAge !== false) {
      const age = maxAge ?? Duration.times(defaultRefreshInterval, 2)
      out.push([
        `${prefix}.subscription`,
        Effect.flatMap(
          quota.status,
          (s) =>
            Effect.map(Health.freshnessCheck(Effect.succeed(s.fetchedAt), age), (r) => ({
              ok: r.ok,
              details: {
                ...r.details,
                ...(s.lastRefreshError === undefined ? {} : { lastRefreshError: s.lastRefreshError })
              }
            }))
        )
      ])
    }
  }
  return out
}

/**
 * Registers the readiness checks of the resilient stack in `HealthChecks`,
 * for the current scope.
 *
 * @example
 * ```ts
 * yield* ResilientTelemetry.registerHealthChecks({ queueAlertDepth: 200 })
 * ```
 */
export const registerHealthChecks = (
  options?: HealthOptions | undefined
): Effect.Effect<void, never, Resilient.Resilience | Health.HealthChecks | Scope.Scope> =>
  Effect.gen(function*() {
    const resilience = yield* Resilient.Resilience
    const registry = yield* Health.HealthChecks
    yield* Effect.forEach(checksOf(resilience, options), ([name, check]) => registry.register(name, check), {
      discard: true
    })
    // The live configuration's running version, as a `/health` detail (never a readiness condition: a refused
    // version leaves the process running the one before, which is fine to serve with).
    const live = resilience.live
    if (live !== undefined) yield* registry.describe("config", live.status)
  })

/** A layer that registers the stack's checks while it lives (needs both services). */
export const layer = (
  options?: HealthOptions | undefined
): Layer.Layer<never, never, Resilient.Resilience | Health.HealthChecks> =>
  Layer.effectDiscard(registerHealthChecks(options))

// ==== One layer for users ===================================================

/** Options of {@link layerObserved}: the stack's, plus telemetry and health. */
export interface ObservedOptions extends ResilientOptions {
  /** The telemetry setup ({@link Telemetry.layer}); default its defaults (JSON logs, OTLP from env). */
  readonly telemetry?: Telemetry.Options | undefined
  /**
   * Readiness checks. Default: every check; the subscription age is 2 × the
   * quota's `refreshInterval`.
   */
  readonly health?: HealthOptions | undefined
}

/**
 * The resilient `ElevenLabs` client, telemetry ({@link Telemetry.layer}) and
 * the stack's readiness checks in one layer. The API key is added to the JSON
 * logger's `redact` list. Provide the transport (`HttpClient`).
 */
export const layerObserved = (
  options: ObservedOptions
): Layer.Layer<
  Client.ElevenLabs | Resilient.Resilience | Health.HealthChecks,
  Config.ConfigError | HttpServerError.ServeError | ElevenLabsError,
  HttpClient.HttpClient
> => {
  const { health, telemetry, ...stack } = options
  const logs = telemetry?.logs === false
    ? false
    : { ...telemetry?.logs, redact: [...(telemetry?.logs?.redact ?? []), options.apiKey] }
  const refreshInput = stack.quota === false ? undefined : stack.quota?.refreshInterval
  // A bad interval is the quota guard's to report (a typed error when the stack is built).
  const refresh = refreshInput === undefined
    ? defaultRefreshInterval
    : Option.getOrElse(Duration.fromInput(refreshInput), () => defaultRefreshInterval)
  const subscriptionMaxAge = health?.subscriptionMaxAge ?? Duration.times(refresh, 2)
  const observability = Telemetry.layer({ ...telemetry, logs })
  const resilient = Resilient.layer(stack)
  // The stack is built inside the telemetry layer, so its background fibers (breaker and
  // limit-change logs) use the JSON logger too.
  return layer({ ...health, subscriptionMaxAge }).pipe(
    Layer.provideMerge(resilient),
    Layer.provideMerge(observability)
  )
}
