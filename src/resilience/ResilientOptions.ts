/**
 * The options of the whole resilient stack, as TypeScript values: one field
 * per policy, each the policy's own options (so every policy stays usable
 * alone with the same vocabulary). `ResilienceConfig` (the JSON / environment
 * form) decodes into this.
 *
 * `false` switches a policy off; `undefined` keeps its defaults.
 *
 * @since 0.1.0
 */
import type { Duration, Redacted } from "effect"
import type { BreakerOptions } from "./Breaker.ts"
import type { CoalescerOptions } from "./Coalescer.ts"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import type { AudioCacheOptions } from "./Fallback.ts"
import type { LiveOptions } from "./LiveConfig.ts"
import type * as QuotaGuard from "./QuotaGuard.ts"
import type { RetryBudgetOptions } from "./RetryBudget.ts"
import type { ExponentialOptions, LinearOptions, RequeueOptions } from "./RetryPolicy.ts"

/** Retry options of the stack (the budget is configured beside them). */
export interface RetrySettings {
  readonly requeue?: RequeueOptions | undefined
  readonly exponential?: ExponentialOptions | undefined
  readonly linear?: LinearOptions | undefined
  /** Cap on all attempts of a call, across classes. Default: none (each class has its own cap). */
  readonly maxAttempts?: number | undefined
}

/** Where cached audio lives. */
export type CacheSettings = AudioCacheOptions & {
  /** `memory` (default) or a directory on disk. */
  readonly store?: { readonly _tag: "memory" } | { readonly _tag: "file"; readonly directory: string } | undefined
}

/** Redis for shared state across processes. */
export interface RedisSettings {
  /** `redis://host:port`. */
  readonly url: string
  /** What happens when Redis is unreachable. Default `local-fallback`. */
  readonly onUnavailable?: "fail-closed" | "local-fallback" | undefined
  /** Processes expected to share the key: the local share of the limit is `limit / processes`. Default 1. */
  readonly expectedProcesses?: number | undefined
  /** Lease of a distributed permit; renewed while a request is in flight. Default 30 s. */
  readonly leaseTime?: Duration.Input | undefined
}

/** Everything the `Resilient` layer needs. */
export interface ResilientOptions {
  /** The API key, sent as `xi-api-key`. */
  readonly apiKey: Redacted.Redacted<string>
  /** Default `https://api.elevenlabs.io`. */
  readonly baseUrl?: string | undefined
  /** Time to response headers, per attempt. Default 30 s. */
  readonly headersTimeout?: Duration.Input | undefined
  /** Longest pause between two body chunks, per attempt. Default 30 s. */
  readonly idleTimeout?: Duration.Input | undefined
  /** Whether closing a request's scope aborts it (the client's `scopedRequests`). Default `true`; off for in-process transports. */
  readonly scopedRequests?: boolean | undefined
  /** Per-model character limits overriding the built-in table. */
  readonly characterLimits?: Readonly<Record<string, number>> | undefined
  /** Total bound of one call, queueing and retries included. Default 180 s. */
  readonly deadline?: Duration.Input | undefined
  /** Plan, pools, lanes, queue bounds and the adaptive limit. */
  readonly limiter?: ConcurrencyLimiter.Options | undefined
  /** Retry schedules per class. `false`: no retries at all. */
  readonly retry?: RetrySettings | false | undefined
  /** Retry budget. `false`: unbounded by load (only the schedules' caps). */
  readonly budget?: RetryBudgetOptions | false | undefined
  /** Circuit breaker per pool. `false`: no breaker. */
  readonly breaker?: BreakerOptions | false | undefined
  /** Credit quota guard. `false`: no guard (the server still enforces its quota). */
  readonly quota?: QuotaGuard.Options | false | undefined
  /** Coalescing of identical in-flight requests. `false` switches it off. Default on. */
  readonly coalesce?: CoalescerOptions | false | undefined
  /** Cached-audio fallback. Default off (`undefined` or `false`). */
  readonly cache?: CacheSettings | false | undefined
  /** Shared state over Redis. Default none (one process). */
  readonly redis?: RedisSettings | undefined
  /**
   * Follow a configuration source and apply its new versions without a restart (`LiveConfig`,
   * docs/deployment.md). Default none.
   */
  readonly live?: LiveOptions | undefined
}

/**
 * The policy half of {@link ResilientOptions}: what `Pipeline.make` builds the
 * policies from, shared by both doors (`Resilient` and `WithResilience`). The
 * rest of `ResilientOptions` (`apiKey`, `baseUrl`, the attempt timeouts,
 * `scopedRequests`, `characterLimits`) configures this library's own client.
 */
export type PolicyOptions = Pick<
  ResilientOptions,
  "deadline" | "limiter" | "retry" | "budget" | "breaker" | "quota" | "coalesce" | "cache" | "redis"
>

/** The defaults the stack applies where the policies themselves have none. */
export const stackDefaults = {
  deadline: "180 seconds" satisfies Duration.Input
} as const
