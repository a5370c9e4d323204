/**
 * Client strategies a simulation compares: how a caller talks to ElevenLabs.
 *
 * **Details**
 *
 * - A {@link Strategy} builds, once per run, a {@link Call}: one logical TTS
 *   request in, one {@link CallOutcome} out (never a failure in the error
 *   channel). It runs over the simulator's in-process `HttpClient` and reports
 *   queue places, retries and breaker moves through the {@link Recorder}.
 * - {@link naive}: the official SDK's defaults, no client-side limit.
 * - {@link pQueueRecipe} (`p-queue-recipe`, formerly `seed-template`): the
 *   ElevenLabs rate-limits guide's recipe (`p-queue` sized from the plan plus
 *   a hand-written `withBackoff`), faithfully, including its quirks.
 * - `resilient` (the full stack of this library) plugs into {@link registry}.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Fiber, Option, PubSub, Random, Redacted, Scope, Semaphore, Stream } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import { classifyResponse } from "../client/Classify.ts"
import * as Endpoints from "../client/Endpoints.ts"
import * as Jitter from "../resilience/Jitter.ts"
import type { PlanName, Pool } from "../resilience/Plans.ts"
import { limitsOf } from "../resilience/Plans.ts"
import * as ResilienceConfig from "../resilience/ResilienceConfig.ts"
import * as Resilient from "../resilience/Resilient.ts"
import type { ResilientOptions } from "../resilience/ResilientOptions.ts"
import type { Arrival, Lane } from "./Patterns.ts"
import { type BreakerState, Recorder } from "./Recorder.ts"

/** One logical request of a simulation. */
export interface SimRequest extends Arrival {
  readonly text: string
}

/** How one logical call ended. */
export type CallOutcome =
  | { readonly _tag: "Success"; readonly credits: number }
  | { readonly _tag: "Failure"; readonly reason: string }

/** One logical call through a strategy. Never fails: failures are outcomes. */
export type Call = (request: SimRequest) => Effect.Effect<CallOutcome>

/** Jitter kinds (`resilience/Jitter.ts` names), passed to strategies that take one. */
export type JitterName = Jitter.JitterName
export const jitterNames = Object.keys(Jitter.byName) as ReadonlyArray<JitterName>

/** What a strategy is told about the run. */
export interface StrategyContext {
  readonly plan: PlanName
  readonly model: string
  readonly pool: Pool
  /** The plan's concurrency limit for `pool`. */
  readonly limit: number
  readonly voiceId: string
  /** Base URL of the simulator's in-process face (no `/v1`). */
  readonly baseUrl: string
  /** True when the transport is the in-process simulator (no sockets to abort). */
  readonly inProcess?: boolean | undefined
  readonly apiKey: Redacted.Redacted<string>
  readonly jitter: JitterName
  /** The parsed `--config` JSON, for strategies that take one (`resilient`). */
  readonly config: unknown
  readonly recorder: Recorder
}

/** A named way of calling the API. */
export interface Strategy {
  readonly name: string
  readonly description: string
  /**
   * Builds the call function once per run. The simulator's `HttpClient`, the
   * run's `Scope` (closed when the run ends) and the run's {@link Recorder}
   * (also in `context.recorder`) are provided.
   */
  readonly make: (
    context: StrategyContext
  ) => Effect.Effect<Call, never, HttpClient.HttpClient | Scope.Scope | Recorder>
}

// ----------------------------------------------------------------------------
// One SDK-shaped attempt
// ----------------------------------------------------------------------------

/** The result of one HTTP attempt, the way the official SDK sees it. */
export type AttemptResult =
  | { readonly _tag: "Ok"; readonly credits: number }
  | {
    readonly _tag: "Status"
    readonly status: number
    /** The reason tag (`ConcurrencyLimited`, `SystemBusy`, `ServerError`, ...). */
    readonly reason: string
    /** `detail.status` of the error body, when there is one. */
    readonly detailStatus: string | undefined
    readonly retryAfter: string | undefined
  }
  | { readonly _tag: "Thrown"; readonly reason: "Transport" | "Timeout" }

const headerOf = (headers: Readonly<Record<string, string>>, name: string): string | undefined => headers[name]

/**
 * `POST /v1/text-to-speech/{voice}` once, body read to the end, bounded by
 * `timeoutMs` (the SDK's per-attempt timeout).
 */
export const ttsAttempt = (
  client: HttpClient.HttpClient,
  context: StrategyContext,
  request: SimRequest,
  timeoutMs: number
): Effect.Effect<AttemptResult> => {
  const endpoint = Endpoints.textToSpeechConvert
  const http = HttpClientRequest.make(endpoint.method)(
    context.baseUrl + Endpoints.pathOf(endpoint, { voice_id: context.voiceId })
  ).pipe(
    HttpClientRequest.setUrlParam("output_format", "mp3_22050_32"),
    HttpClientRequest.setHeader("xi-api-key", Redacted.value(context.apiKey)),
    HttpClientRequest.bodyJsonUnsafe({ text: request.text, model_id: context.model })
  )
  return client.execute(http).pipe(
    Effect.flatMap((response) => Effect.map(response.arrayBuffer, (body) => ({ response, body }))),
    Effect.timeoutOption(Duration.millis(timeoutMs)),
    Effect.map((answer): AttemptResult => {
      if (Option.isNone(answer)) return { _tag: "Thrown", reason: "Timeout" }
      const { body, response } = answer.value
      const headers = response.headers
      if (response.status >= 200 && response.status < 300) {
        const cost = Number(headerOf(headers, "character-cost"))
        return { _tag: "Ok", credits: Number.isFinite(cost) ? cost : 0 }
      }
      const bytes = new Uint8Array(body)
      const reason = classifyResponse({ operation: endpoint.name, status: response.status, headers, body: bytes })
      return {
        _tag: "Status",
        status: response.status,
        reason: reason._tag,
        detailStatus: detailStatusOf(bytes),
        retryAfter: headerOf(headers, "retry-after")
      }
    }),
    Effect.catch(() => Effect.succeed<AttemptResult>({ _tag: "Thrown", reason: "Transport" }))
  )
}

/** `detail.status` of a JSON error body, if any. */
export const detailStatusOf = (body: Uint8Array): string | undefined => {
  try {
    const json: unknown = JSON.parse(new TextDecoder().decode(body))
    if (typeof json === "object" && json !== null && "detail" in json) {
      const detail = (json as { detail: unknown }).detail
      if (typeof detail === "object" && detail !== null && "status" in detail) {
        const status = (detail as { status: unknown }).status
        return typeof status === "string" ? status : undefined
      }
    }
  } catch {
    return undefined
  }
  return undefined
}

// ----------------------------------------------------------------------------
// naive: the official SDK's defaults
// ----------------------------------------------------------------------------

/** The SDK's per-attempt timeout (`docs/api-facts.md` §6.2): 240 s. */
export const sdkTimeoutMs = 240_000

/**
 * The SDK's retry delay for 0-based retry `i` (`requestWithRetries.js`):
 * `Retry-After` seconds (> 0) capped at 60 s without jitter; else
 * `min(1000 · 2^i, 60000) · (1 + (r − 0.5) · 0.2)`.
 */
export const sdkRetryDelayMs = (i: number, retryAfter: string | undefined, r: number): number => {
  if (retryAfter !== undefined) {
    const seconds = Number(retryAfter)
    if (Number.isInteger(seconds) && seconds > 0) return Math.min(seconds * 1000, 60_000)
  }
  return Math.min(1000 * 2 ** i, 60_000) * (1 + (r - 0.5) * 0.2)
}

/**
 * What most users run today: the official SDK with its defaults. No
 * client-side concurrency limit; up to 2 retries of 408, 429 (both kinds
 * alike) and 5xx; thrown errors (resets, timeouts) are not retried.
 */
export const naive: Strategy = {
  name: "naive",
  description: "official SDK defaults: no limit, 2 retries of 408/429/5xx alike, 1 s x 2^i +-10 %",
  make: (context) =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      return (request: SimRequest) =>
        Effect.gen(function*() {
          for (let i = 0;; i++) {
            const result = yield* ttsAttempt(client, context, request, sdkTimeoutMs)
            if (result._tag === "Ok") return { _tag: "Success", credits: result.credits } as const
            if (result._tag === "Thrown") return { _tag: "Failure", reason: result.reason } as const
            const retryable = result.status === 408 || result.status === 429 || result.status >= 500
            if (!retryable || i >= 2) return { _tag: "Failure", reason: result.reason } as const
            const delay = sdkRetryDelayMs(i, result.retryAfter, yield* Random.next)
            yield* context.recorder.retry(result.reason)
            yield* Effect.sleep(Duration.millis(delay))
          }
        })
    })
}

// ----------------------------------------------------------------------------
// p-queue-recipe: the rate-limits guide's p-queue + hand-written withBackoff
// ----------------------------------------------------------------------------

/** The recipe's one-number-per-plan table (its `CONCURRENCY_LIMITS`): the standard pool. */
export const recipeConcurrencyOf = (plan: PlanName): number => limitsOf(plan).standard

/** @deprecated Renamed {@link recipeConcurrencyOf}. */
export const seedConcurrencyOf = recipeConcurrencyOf

/** `withBackoff`'s delay for 0-based `attempt`: `min(1000 · 2^attempt + r · 500, 32000)`. */
export const recipeBackoffMs = (attempt: number, r: number): number => Math.min(1000 * 2 ** attempt + r * 500, 32_000)

/** @deprecated Renamed {@link recipeBackoffMs}. */
export const seedBackoffMs = recipeBackoffMs

/**
 * The rate-limits guide's recipe (`p-queue-recipe`), faithfully:
 *
 * - a `p-queue` with `concurrency` from their plan table (the standard-pool
 *   number whatever the model), `timeout: 120_000, throwOnTimeout: true`; the
 *   timeout starts when the task starts, and on timeout the caller gets a
 *   `TimeoutError` and the slot is freed while the task keeps running (p-queue
 *   does not cancel it);
 * - inside the slot, `withBackoff`: up to 5 retries; 400/401/404 never
 *   retried; `too_many_concurrent_requests` after `50 · (attempt + 1)` ms;
 *   everything else (other 429s, 5xx, 403, 422, resets, timeouts) after
 *   `min(1000 · 2^attempt + random · 500, 32000)` ms, the slot held while it
 *   sleeps;
 * - the SDK underneath with `maxRetries: 0` and its 240 s attempt timeout.
 */
export const pQueueRecipe: Strategy = {
  name: "p-queue-recipe",
  description:
    "the rate-limits guide's recipe: p-queue(plan concurrency, 120 s timeout) + withBackoff (5 retries, 1 s x 2^n + 0-500 ms, cap 32 s)",
  make: (context) =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const scope = yield* Scope.Scope
      const queue = yield* Semaphore.make(recipeConcurrencyOf(context.plan))
      const { recorder } = context
      const maxRetries = 5

      const withBackoff = (request: SimRequest): Effect.Effect<CallOutcome> =>
        Effect.gen(function*() {
          for (let attempt = 0; attempt <= maxRetries; attempt++) {
            const result = yield* ttsAttempt(client, context, request, sdkTimeoutMs)
            if (result._tag === "Ok") return { _tag: "Success", credits: result.credits } as const
            const status = result._tag === "Status" ? result.status : undefined
            if (status === 401 || status === 400 || status === 404) {
              return { _tag: "Failure", reason: result.reason } as const
            }
            if (attempt === maxRetries) return { _tag: "Failure", reason: result.reason } as const
            const tooMany = result._tag === "Status" && result.detailStatus === "too_many_concurrent_requests"
            const delay = tooMany ? 50 * (attempt + 1) : recipeBackoffMs(attempt, yield* Random.next)
            yield* recorder.retry(result.reason)
            yield* Effect.sleep(Duration.millis(delay))
          }
          return { _tag: "Failure", reason: "Unreachable" } as const
        })

      return (request: SimRequest) =>
        Effect.gen(function*() {
          const enqueued = recorder.now()
          yield* recorder.queue(request.lane, 1)
          let queued = true
          const leave = Effect.suspend(() => {
            if (!queued) return Effect.void
            queued = false
            return recorder.queue(request.lane, -1)
          })
          return yield* queue.withPermits(1)(
            Effect.gen(function*() {
              yield* leave
              yield* recorder.queueWait(request.lane, recorder.now() - enqueued)
              // p-queue frees the slot on timeout but does not cancel the task:
              // it runs on, detached, and may still hold a server slot.
              // Started at once: under the test clock a fiber forked here but not yet
              // run would let the queue timeout below fire first.
              const task = yield* Effect.forkIn(withBackoff(request), scope, { startImmediately: true })
              const settled = yield* Fiber.join(task).pipe(Effect.timeoutOption(Duration.seconds(120)))
              return Option.getOrElse(settled, (): CallOutcome => ({ _tag: "Failure", reason: "QueueTimeout" }))
            })
          ).pipe(Effect.onInterrupt(() => leave))
        })
    })
}

/** @deprecated Renamed {@link pQueueRecipe} (strategy name `p-queue-recipe`). */
export const seedTemplate: Strategy = pQueueRecipe

// ----------------------------------------------------------------------------
// resilient: this library's full stack
// ----------------------------------------------------------------------------

/**
 * The options the `resilient` strategy builds its stack with: the `--config`
 * JSON through `ResilienceConfig` (defaults otherwise), the run's jitter, the
 * config's plan or else the run's, and always the run's base URL. Throws on a
 * config that does not validate (callers validate `--config` first).
 */
export const resilientOptionsOf = (context: StrategyContext): ResilientOptions => {
  const { config, problems } = ResilienceConfig.validate(context.config ?? {})
  if (config === undefined || ResilienceConfig.isBlocking(problems)) {
    throw new Error(`--config: ${problems.map((p) => `${p.path}: ${p.message}`).join("; ")}`)
  }
  const options = ResilienceConfig.toResilientOptions(config, context.apiKey)
  return {
    ...options,
    baseUrl: context.baseUrl,
    ...(context.inProcess === true ? { scopedRequests: false } : {}),
    retry: options.retry === false
      ? false
      : { ...options.retry, exponential: { ...options.retry?.exponential, jitter: Jitter.byName[context.jitter] } },
    limiter: { ...options.limiter, plan: config.concurrency?.plan ?? context.plan }
  }
}

const breakerStateOf = (to: "Closed" | "Open" | "HalfOpen"): BreakerState =>
  to === "Open" ? "open" : to === "HalfOpen" ? "half-open" : "closed"

/** Hooks of {@link makeResilient}. */
export interface ResilientHooks {
  /** Runs once the stack is built, in the run's scope (e.g. to register health checks). */
  readonly onStack?:
    | ((resilience: Resilient.Resilience, pool: Pool) => Effect.Effect<void, never, Scope.Scope>)
    | undefined
}

/**
 * This library's full stack as a strategy: `Resilient.make` over the run's
 * transport with {@link resilientOptionsOf}, each request a TTS `convert` in
 * its lane. The limiter's queue (its `Queued` / `Waited` / `QueueTimeout`
 * events), the retries and the breaker's transitions go to the recorder;
 * `hooks.onStack` sees the built stack (the demo registers its readiness
 * checks there).
 */
export const makeResilient = (hooks?: ResilientHooks | undefined): Strategy => ({
  name: "resilient",
  description:
    "this library: plan-aware limiter with lanes and AIMD, retries per class with jitter and budget, breaker, quota",
  make: (context) =>
    Effect.gen(function*() {
      const options = yield* Effect.try({ try: () => resilientOptionsOf(context), catch: (e) => e }).pipe(Effect.orDie)
      // The run's base URL is the simulator's or one the CLI checked: a bad one is a bug here.
      const { resilience, service } = yield* Resilient.make(options).pipe(Effect.orDie)
      if (hooks?.onStack !== undefined) yield* hooks.onStack(resilience, context.pool)
      const { recorder } = context
      const retries = yield* PubSub.subscribe(resilience.retries)
      yield* PubSub.take(retries).pipe(
        Effect.flatMap((e) => recorder.retry(e.reason)),
        Effect.forever,
        Effect.forkScoped
      )
      // The limiter's own events give the queue: joined (Queued), left with a permit (Waited) or not (QueueTimeout).
      yield* resilience.limiter.events.pipe(
        Stream.runForEach((e) => {
          if (e.key !== resilience.keyId || e._tag === "LimitChanged" || e.pool !== context.pool) return Effect.void
          const lane: Lane = e.lane === "interactive" ? "interactive" : "batch"
          switch (e._tag) {
            case "Queued":
              return recorder.queue(lane, 1)
            case "Waited":
              return Effect.andThen(recorder.queue(lane, -1), recorder.queueWait(lane, e.waitedMillis))
            case "QueueTimeout":
              return recorder.queue(lane, -1)
            default:
              return Effect.void
          }
        }),
        Effect.forkScoped
      )
      if (resilience.breaker !== undefined) {
        yield* resilience.breaker.transitions.pipe(
          Stream.runForEach((t) => recorder.breakerState(breakerStateOf(t.to))),
          Effect.forkScoped
        )
      }
      return (request: SimRequest): Effect.Effect<CallOutcome> =>
        service.textToSpeech.convert(context.voiceId, {
          text: request.text,
          modelId: context.model,
          outputFormat: "mp3_22050_32"
        }).pipe(
          Resilient.withCallOptions({ lane: request.lane }),
          Effect.match({
            onSuccess: (r): CallOutcome => ({ _tag: "Success", credits: r.meta.characterCost ?? 0 }),
            onFailure: (e): CallOutcome => ({ _tag: "Failure", reason: e.reason._tag })
          })
        )
    })
})

/** This library's full stack, with no hooks. */
export const resilient: Strategy = makeResilient()

// ----------------------------------------------------------------------------
// The registry
// ----------------------------------------------------------------------------

/** Names `--strategy` accepts. `resilient` is this library's full stack. */
export const strategyNames = ["resilient", "naive", "p-queue-recipe"] as const
export type StrategyName = (typeof strategyNames)[number]

/** Earlier names of strategies, still accepted by {@link find}: `seed-template` is `p-queue-recipe`. */
export const deprecatedStrategyNames: Readonly<Record<string, StrategyName>> = { "seed-template": "p-queue-recipe" }

/** The current name of a strategy name (a deprecated one mapped, any other unchanged). */
export const canonicalStrategyName = (name: string): string => deprecatedStrategyNames[name] ?? name

/** Whether `--strategy` accepts a name (deprecated names included). */
export const isStrategyName = (name: string): boolean =>
  (strategyNames as ReadonlyArray<string>).includes(canonicalStrategyName(name))

/** The strategies available in this build, in `--compare` order. */
export const registry: ReadonlyArray<Strategy> = [resilient, naive, pQueueRecipe]

/** A strategy by name, from {@link registry} unless another list is given. */
export const find = (name: string, available: ReadonlyArray<Strategy> = registry): Strategy | undefined =>
  available.find((s) => s.name === canonicalStrategyName(name))
