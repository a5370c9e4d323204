/**
 * Shared state over Redis: distributed permits, shared quota, shared breaker
 * store, the trouble mode when Redis is away, and the versioned live
 * configuration store.
 *
 * @since 0.1.0
 */
export * as DistributedError from "./DistributedError.ts"
export * as RedisBreaker from "./RedisBreaker.ts"
export * as RedisConfig from "./RedisConfig.ts"
export * as RedisMode from "./RedisMode.ts"
export * as RedisPermits from "./RedisPermits.ts"
export * as RedisQuota from "./RedisQuota.ts"
export * as SharedState from "./SharedState.ts"
