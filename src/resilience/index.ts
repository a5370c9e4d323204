/**
 * The resilience policies, one module each, and their composition.
 *
 * @since 0.1.0
 */
export * as AdaptiveLimit from "./AdaptiveLimit.ts"
export * as Breaker from "./Breaker.ts"
export * as Coalescer from "./Coalescer.ts"
export * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
export * as Cost from "./Cost.ts"
export * as Deadline from "./Deadline.ts"
export * as Fallback from "./Fallback.ts"
export * as Jitter from "./Jitter.ts"
export * as LiveConfig from "./LiveConfig.ts"
export * as Pipeline from "./Pipeline.ts"
export * as Plans from "./Plans.ts"
export * as QuotaGuard from "./QuotaGuard.ts"
export * as RealtimeSession from "./RealtimeSession.ts"
export * as RequestRateLimiter from "./RequestRateLimiter.ts"
export * as ResilienceConfig from "./ResilienceConfig.ts"
export * as Resilient from "./Resilient.ts"
export * as ResilientFetch from "./ResilientFetch.ts"
export * as RetryBudget from "./RetryBudget.ts"
export * as RetryPolicy from "./RetryPolicy.ts"
export * as WithResilience from "./WithResilience.ts"
