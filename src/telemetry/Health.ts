/**
 * Health routes for your own `effect/http` server: `/health` (the process is
 * alive), `/ready` (every registered readiness check passes) and `/metrics`
 * (Prometheus text), plus the `HealthChecks` registry other parts feed.
 *
 * **Details**
 *
 * - `/health` always answers 200 `{"status":"alive", ...}` while the process
 *   serves HTTP; it checks nothing else, so an orchestrator never restarts a
 *   process only because ElevenLabs is down.
 * - `/ready` runs every registered check concurrently, each bounded by
 *   `checkTimeout` (default 2 s, on `Clock`). It answers 200 when all are ok
 *   (or none is registered) and 503 otherwise, with every check's details.
 *   A check that fails, dies or times out counts as not ok, with the error.
 * - Registrations are scoped: a check goes away when the scope of whoever
 *   registered it closes. Registering a name again replaces the check.
 * - The composition registers: breaker not open ({@link breakerCheck}), queue
 *   below its alert depth ({@link queueCheck}), quota not exhausted
 *   ({@link quotaCheck}), subscription read within its cache age
 *   ({@link freshnessCheck}).
 *
 * **Example** (Mounting the routes)
 *
 * ```ts
 * import { Layer } from "effect"
 * import { HttpRouter } from "effect/http"
 * import { Health } from "elevenlabs-resilience/telemetry"
 *
 * const server = HttpRouter.serve(Layer.mergeAll(appRoutes, Health.layerRoutes())).pipe(
 *   Layer.provide(Health.HealthChecks.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Duration, Effect, Exit, Layer, Ref } from "effect"
import type { Scope } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import * as Prometheus from "./Prometheus.ts"

// ==== Models ================================================================

/** The outcome of one readiness check. */
export interface CheckResult {
  readonly ok: boolean
  readonly details: Record<string, unknown>
}

/** A readiness check: an effect that reports whether one part is ready. */
export type Check = Effect.Effect<CheckResult>

/** What `/ready` answers. */
export interface ReadinessReport {
  readonly status: "ready" | "not_ready"
  readonly checks: Record<string, CheckResult>
}

// ==== Service ===============================================================

/** The `HealthChecks` service tag. */
/** The registry of readiness checks. */
export class HealthChecks extends Context.Service<HealthChecks, {
  /** Adds (or replaces) the check `name` until the current scope closes. */
  readonly register: (name: string, check: Check) => Effect.Effect<void, never, Scope.Scope>
  /** Runs every check, concurrently, each bounded by the check timeout. */
  readonly run: Effect.Effect<ReadinessReport>
  /** Names of the checks registered now. */
  readonly names: Effect.Effect<ReadonlyArray<string>>
  /**
   * Adds (or replaces) a detail `/health` shows under `name` until the current scope closes: what the
   * process runs (the live configuration's version), never a reason to restart it.
   */
  readonly describe: (name: string, detail: Effect.Effect<unknown>) => Effect.Effect<void, never, Scope.Scope>
  /** The details registered with `describe`, read now. */
  readonly details: Effect.Effect<Record<string, unknown>>
}>()(
  "elevenlabs-resilience/telemetry/HealthChecks"
) {
  /** The registry with the default check timeout (2 s). */
  static readonly layer: Layer.Layer<HealthChecks> = Layer.effect(HealthChecks, Effect.suspend(() => make()))
}

/** @deprecated The shape of {@link HealthChecks}: use `HealthChecks["Service"]` (one name per service, Effect's convention). */
export type HealthChecksService = HealthChecks["Service"]

/** Options of {@link make}. */
export interface Options {
  /** Longest a single check may take before it counts as not ok; default 2 seconds. */
  readonly checkTimeout?: Duration.Input | undefined
}

const errorDetails = (u: unknown): Record<string, unknown> =>
  u instanceof Error ? { error: u.message, name: u.name } : { error: String(u) }

/** Builds a `HealthChecks` registry. */
export const make = (options?: Options | undefined): Effect.Effect<HealthChecks["Service"]> =>
  Effect.gen(function*() {
    const timeout = Duration.fromInputUnsafe(options?.checkTimeout ?? "2 seconds")
    const checks = yield* Ref.make<ReadonlyMap<string, { readonly id: object; readonly check: Check }>>(new Map())
    const described = yield* Ref.make<
      ReadonlyMap<string, { readonly id: object; readonly check: Effect.Effect<unknown> }>
    >(
      new Map()
    )

    /** Adds `value` under `name` in `ref` for the current scope; removes only its own entry at the end. */
    const scopedEntry = <A>(
      ref: Ref.Ref<ReadonlyMap<string, { readonly id: object; readonly check: A }>>,
      name: string,
      check: A
    ): Effect.Effect<void, never, Scope.Scope> => {
      const id = {}
      return Effect.acquireRelease(
        Ref.update(ref, (m) => new Map(m).set(name, { id, check })),
        () =>
          Ref.update(ref, (m) => {
            // Only remove our own registration, not a later replacement.
            if (m.get(name)?.id !== id) return m
            const next = new Map(m)
            next.delete(name)
            return next
          })
      )
    }
    const register = (name: string, check: Check) => scopedEntry(checks, name, check)
    const describe = (name: string, detail: Effect.Effect<unknown>) => scopedEntry(described, name, detail)
    const details = Effect.flatMap(Ref.get(described), (m) =>
      Effect.map(
        Effect.forEach([...m.entries()], ([name, { check }]) => Effect.map(check, (v) => [name, v] as const)),
        Object.fromEntries
      ))

    const runOne = (check: Check): Effect.Effect<CheckResult> =>
      check.pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.succeed<CheckResult>({
              ok: false,
              details: { error: `check timed out after ${Duration.format(timeout)}` }
            })
        }),
        Effect.exit,
        Effect.map((exit) =>
          Exit.isSuccess(exit)
            ? exit.value
            : { ok: false, details: errorDetails(Cause.squash(exit.cause)) }
        )
      )

    const run = Effect.gen(function*() {
      const current = [...(yield* Ref.get(checks)).entries()]
      const results = yield* Effect.forEach(current, ([name, { check }]) =>
        Effect.map(runOne(check), (r) => [name, r] as const), {
        concurrency: "unbounded"
      })
      const all = Object.fromEntries(results)
      return {
        status: results.every(([, r]) =>
            r.ok
          )
          ? "ready"
          : "not_ready",
        checks: all
      } satisfies ReadinessReport
    })

    return {
      register,
      run,
      names: Effect.map(Ref.get(checks), (m) => [...m.keys()]),
      describe,
      details
    } satisfies HealthChecks["Service"]
  })

/** A `HealthChecks` layer with options. */
export const layer = (options?: Options | undefined): Layer.Layer<HealthChecks> =>
  Layer.effect(HealthChecks, make(options))

/** Registers a check in the `HealthChecks` of the context, for the current scope. */
export const register = (name: string, check: Check): Effect.Effect<void, never, HealthChecks | Scope.Scope> =>
  Effect.flatMap(Effect.service(HealthChecks), (hc) => hc.register(name, check))

// ==== Check constructors (for the composition) ===============================

/** Ready while the breaker of `pool` is not open (half-open lets probes through, so it is ready). */
export const breakerCheck = (pool: string, state: Effect.Effect<"Closed" | "HalfOpen" | "Open">): Check =>
  Effect.map(state, (s) => ({ ok: s !== "Open", details: { pool, state: s } }))

/** Ready while the queue is below `maxDepth` (default 500, the production-deployment guide's alert depth). */
export const queueCheck = (depth: Effect.Effect<number>, maxDepth = 500): Check =>
  Effect.map(depth, (d) => ({ ok: d < maxDepth, details: { depth: d, maxDepth } }))

/** Ready while the quota is not exhausted. `remaining` is the credits left when known. */
export const quotaCheck = (
  state: Effect.Effect<
    {
      readonly exhausted: boolean
      readonly usedPercentage?: number | undefined
      readonly remaining?: number | undefined
    }
  >
): Check =>
  Effect.map(state, (s) => ({
    ok: !s.exhausted,
    details: {
      exhausted: s.exhausted,
      ...(s.usedPercentage === undefined ? {} : { usedPercentage: s.usedPercentage }),
      ...(s.remaining === undefined ? {} : { remaining: s.remaining })
    }
  }))

/**
 * Ready while something was last refreshed (for example the subscription read)
 * no longer ago than `maxAge`. `lastSuccessMillis` is a `Clock` time, or
 * undefined when it never succeeded.
 */
export const freshnessCheck = (lastSuccessMillis: Effect.Effect<number | undefined>, maxAge: Duration.Input): Check =>
  Effect.gen(function*() {
    const last = yield* lastSuccessMillis
    const now = yield* Clock.currentTimeMillis
    const maxAgeMillis = Duration.toMillis(Duration.fromInputUnsafe(maxAge))
    if (last === undefined) return { ok: false, details: { error: "never succeeded", maxAgeMillis } }
    const ageMillis = now - last
    return { ok: ageMillis <= maxAgeMillis, details: { ageMillis, maxAgeMillis } }
  })

// ==== HTTP ==================================================================

const jsonResponse = (body: unknown, status: number): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(
    JSON.stringify(body, (_, v) => (typeof v === "bigint" ? v.toString() : v)),
    { status, contentType: "application/json" }
  )

/** Paths of the routes. */
export interface RouteOptions {
  readonly healthPath?: `/${string}` | undefined
  readonly readyPath?: `/${string}` | undefined
  readonly metricsPath?: `/${string}` | undefined
}

/**
 * `GET /health`: 200 while the process serves HTTP, with the details registered with `describe` (such as
 * `config`, the live configuration's version) when a `HealthChecks` is in context.
 */
export const healthResponse: Effect.Effect<HttpServerResponse.HttpServerResponse> = Effect.gen(function*() {
  const now = yield* Clock.currentTimeMillis
  const checks = yield* Effect.serviceOption(HealthChecks)
  const details = checks._tag === "Some" ? yield* checks.value.details : {}
  return jsonResponse({ status: "alive", time: new Date(now).toISOString(), ...details }, 200)
})

/** Adds a `/health` detail in the `HealthChecks` of the context, for the current scope. */
export const describe = (
  name: string,
  detail: Effect.Effect<unknown>
): Effect.Effect<void, never, HealthChecks | Scope.Scope> =>
  Effect.flatMap(Effect.service(HealthChecks), (hc) => hc.describe(name, detail))

/** `GET /ready`: 200 when every check is ok, 503 otherwise, with the report. */
export const readyResponse: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HealthChecks> = Effect.gen(
  function*() {
    const report = yield* (yield* Effect.service(HealthChecks)).run
    return jsonResponse(report, report.status === "ready" ? 200 : 503)
  }
)

/** A layer adding `/health`, `/ready` and `/metrics` to the current `HttpRouter`. */
export const layerRoutes = (options?: RouteOptions | undefined) =>
  Layer.mergeAll(
    HttpRouter.add("GET", options?.healthPath ?? "/health", healthResponse),
    HttpRouter.add("GET", options?.readyPath ?? "/ready", readyResponse),
    Prometheus.layerRoute({ path: options?.metricsPath ?? "/metrics" })
  )

/**
 * A standalone server (default port 9090) with `/health`, `/ready` and
 * `/metrics`. Needs `HealthChecks`.
 */
export const layerServer = (options?: (Prometheus.ServerOptions & RouteOptions) | undefined) =>
  Prometheus.serveStandalone(layerRoutes(options), options)
