/**
 * The shared breaker: `Breaker` (src/resilience/Breaker.ts) on
 * `effect/persistence`'s `CircuitBreaker.layerStoreRedis`, so every process
 * sees the same circuit per pool. Nothing of the state machine is written
 * here: the store's Lua scripts (Redis `TIME`, probe lease renewed while the
 * probe runs, generation fencing) are Effect's.
 *
 * When Redis is unreachable the breaker follows its own `onStoreError`
 * (default `"allow"`: calls run unrecorded), whatever the `RedisMode`: a
 * breaker that cannot record should not stop traffic by itself.
 *
 * @since 0.1.0
 */
import { Duration, Layer } from "effect"
import { CircuitBreaker, Redis } from "effect/persistence"
import * as Breaker from "../resilience/Breaker.ts"

/** Options of the Redis store (defaults: prefix `"elevenlabs-resilience:circuit:"`, probe lease 10 s, idle TTL 1 h). */
export interface StoreOptions {
  readonly prefix?: string | undefined
  readonly probeLease?: Duration.Input | undefined
  readonly idleTimeToLive?: Duration.Input | undefined
}

/** The `CircuitBreakerStore` in Redis. */
export const layerStore = (
  options?: StoreOptions
): Layer.Layer<CircuitBreaker.CircuitBreakerStore, never, Redis.Redis> =>
  CircuitBreaker.layerStoreRedis({
    prefix: options?.prefix ?? "elevenlabs-resilience:circuit:",
    probeLease: options?.probeLease,
    idleTimeToLive: options?.idleTimeToLive
  })

/** `Breaker.layer` on the Redis store: the one-`Layer` swap from `Breaker.layerMemory`. */
export const layerBreaker = (
  options?: Breaker.BreakerOptions & StoreOptions
): Layer.Layer<Breaker.Breaker, never, Redis.Redis> => Breaker.layer(options).pipe(Layer.provide(layerStore(options)))
