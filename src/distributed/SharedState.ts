/**
 * One layer for the state several processes share over Redis: the `Redis`
 * connection (`NodeRedis`, node-redis 5), the trouble mode, the distributed
 * permits, the shared quota store and the breaker's `CircuitBreakerStore`.
 *
 * Swapping memory for Redis is one `Layer` change:
 *
 * ```ts
 * // one process
 * const app = program.pipe(Effect.provide(Breaker.layerMemory()))
 * // every process shares the circuits, permits and quota
 * const app = program.pipe(
 *   Effect.provide(Breaker.layer().pipe(Layer.provideMerge(SharedState.layerRedis({ url: "redis://redis:6379" }))))
 * )
 * ```
 *
 * `layerRedisConfig` reads the one config entry `redis.url` (or the environment
 * variable `ELEVENLABS_REDIS_URL`) plus optional `redis.onUnavailable` and
 * `redis.expectedProcesses`; `optionsFromSettings` maps the configuration's
 * `redis` section (`ResilientOptions.redis`).
 *
 * **Gotchas**
 *
 * - The client is created with `disableOfflineQueue: true`: while the socket
 *   is down commands fail at once instead of piling up, so the trouble mode
 *   takes over without waiting for the command timeout.
 * - Building the layer connects; if Redis is down at start-up, the layer fails
 *   with a `RedisError` (a process does not start in fallback).
 * - The client, node-redis (`redis`), is an optional peer dependency, loaded
 *   when the connection layer is built: without it the layer fails with
 *   {@link MissingPeerDependency} (`npm install redis`).
 *
 * @since 0.1.0
 */
import type * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Config, Duration, Effect, Layer } from "effect"
import { CircuitBreaker, Redis } from "effect/persistence"
import { importPeer, MissingPeerDependency } from "../internal/OptionalPeer.ts"
import * as RedisBreaker from "./RedisBreaker.ts"
import * as RedisMode from "./RedisMode.ts"
import * as RedisPermits from "./RedisPermits.ts"
import * as RedisQuota from "./RedisQuota.ts"

export { MissingPeerDependency } from "../internal/OptionalPeer.ts"

/** Options of {@link layerRedis}. */
export interface Options {
  /** `redis://host:port[/db]` (credentials may be in the URL; it is never logged). */
  readonly url: string
  /** Trouble mode and its tuning. */
  readonly mode?: RedisMode.Options | undefined
  readonly permits?: RedisPermits.Options | undefined
  readonly quota?: RedisQuota.Options | undefined
  readonly breaker?: RedisBreaker.StoreOptions | undefined
  /** Time to connect (first connection and reconnections). Default 5 seconds. */
  readonly connectTimeout?: Duration.Input | undefined
}

/** Everything {@link layerRedis} provides. */
export type Services =
  | Redis.Redis
  | NodeRedis.NodeRedis
  | RedisMode.RedisMode
  | RedisPermits.RedisPermits
  | RedisQuota.RedisQuota
  | CircuitBreaker.CircuitBreakerStore

/**
 * The `NodeRedis` connection with the options the stores rely on. node-redis
 * is loaded when the layer is built (it is an optional peer dependency).
 */
export const layerConnection = (
  url: string,
  connectTimeout?: Duration.Input | undefined
): Layer.Layer<Redis.Redis | NodeRedis.NodeRedis, Redis.RedisError | MissingPeerDependency> =>
  Layer.unwrap(Effect.map(
    importPeer(
      () => import("@effect/platform-node/NodeRedis"),
      "Redis shared state (SharedState.layerRedis)",
      ["redis"]
    ),
    (nodeRedis) =>
      nodeRedis.layer({
        url,
        disableOfflineQueue: true,
        socket: { connectTimeout: Duration.toMillis(Duration.fromInputUnsafe(connectTimeout ?? "5 seconds")) }
      })
  ))

/** The stores over an existing `Redis` service (for users who build their own connection). */
export const layerStores = (
  options?: Omit<Options, "url" | "connectTimeout">
): Layer.Layer<
  RedisMode.RedisMode | RedisPermits.RedisPermits | RedisQuota.RedisQuota | CircuitBreaker.CircuitBreakerStore,
  never,
  Redis.Redis
> =>
  Layer.mergeAll(
    RedisPermits.layer(options?.permits),
    RedisQuota.layer(options?.quota),
    RedisBreaker.layerStore(options?.breaker)
  ).pipe(Layer.provideMerge(RedisMode.layer(options?.mode)))

/** Connection and every store. */
export const layerRedis = (options: Options): Layer.Layer<Services, Redis.RedisError | MissingPeerDependency> =>
  layerStores(options).pipe(Layer.provideMerge(layerConnection(options.url, options.connectTimeout)))

/** The `redis` section of `ResilientOptions` (docs/configuration.md). */
export interface Settings {
  readonly url: string
  readonly onUnavailable?: "fail-closed" | "local-fallback" | undefined
  readonly expectedProcesses?: number | undefined
  /** Lease of a distributed permit (and of a quota reservation). */
  readonly leaseTime?: Duration.Input | undefined
}

/** {@link Options} from the configuration's `redis` section. */
export const optionsFromSettings = (settings: Settings, options?: Omit<Options, "url">): Options => ({
  ...options,
  url: settings.url,
  mode: {
    ...options?.mode,
    ...(settings.onUnavailable === undefined ? {} : { mode: settings.onUnavailable }),
    ...(settings.expectedProcesses === undefined ? {} : { expectedProcesses: settings.expectedProcesses })
  },
  permits: { ...options?.permits, ...(settings.leaseTime === undefined ? {} : { lease: settings.leaseTime }) },
  quota: { ...options?.quota, ...(settings.leaseTime === undefined ? {} : { lease: settings.leaseTime }) }
})

/**
 * {@link layerRedis} from `Config`: the URL from `ELEVENLABS_REDIS_URL` or the nested entry `redis.url`;
 * optional `redis.onUnavailable` and `redis.expectedProcesses`.
 */
export const layerRedisConfig = (
  options?: Omit<Options, "url">
): Layer.Layer<Services, Redis.RedisError | MissingPeerDependency | Config.ConfigError> =>
  Layer.unwrap(
    Effect.gen(function*() {
      const url = yield* Config.String("ELEVENLABS_REDIS_URL").pipe(
        Config.orElse(() => Config.String("url").pipe(Config.nested("redis")))
      )
      const rest = yield* Config.all({
        onUnavailable: Config.Literals(["fail-closed", "local-fallback"], "onUnavailable").pipe(Config.option),
        expectedProcesses: Config.Int("expectedProcesses").pipe(Config.option)
      }).pipe(Config.nested("redis"))
      return layerRedis(optionsFromSettings({
        url,
        ...(rest.onUnavailable._tag === "Some" ? { onUnavailable: rest.onUnavailable.value } : {}),
        ...(rest.expectedProcesses._tag === "Some" ? { expectedProcesses: rest.expectedProcesses.value } : {})
      }, options))
    })
  )
