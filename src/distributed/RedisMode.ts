/**
 * What the Redis-backed stores do when Redis is in trouble, and the state
 * they are in: `shared` (Redis answers), `local-fallback` (Redis is gone and
 * each process works with a local share of the limit) or `unavailable`
 * (Redis is gone and the mode is `fail-closed`: calls fail with
 * `RedisUnavailable`).
 *
 * **Details**
 *
 * - Every command of the stores goes through {@link RedisMode["Service"].run}: it
 *   is bounded by `commandTimeout` (default 1 s) so an outage never hangs a
 *   caller, and its outcome moves the state. A failure that is an answer from
 *   Redis (a script error) is `RedisCommandFailed` and does not move it.
 * - Entering trouble logs one Warning; coming back logs one Info. The state is
 *   readable (`state`, `gaugeValue` for a metric, `changes` as a Stream) and
 *   kept in the gauge `elevenlabs_distributed_redis_state` (0 shared,
 *   1 local-fallback, 2 unavailable) for a health detail.
 * - Recovery: while in trouble a fiber of the layer pings Redis every
 *   `pingInterval` (default 1 s, from `Clock`); the next successful command
 *   (ping or not) returns the state to `shared`.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Layer, Metric, PubSub, Schedule, Stream } from "effect"
import { Redis } from "effect/persistence"
import { DistributedError, RedisCommandFailed, unavailable } from "./DistributedError.ts"

/** What to do when Redis cannot be reached. */
export type TroubleMode = "fail-closed" | "local-fallback"

/** The state of the shared stores, for a metric and a health detail. */
export type RedisState = "shared" | "local-fallback" | "unavailable"

/** A change of {@link RedisState}. */
export interface RedisStateChange {
  readonly from: RedisState
  readonly to: RedisState
  readonly at: number
  /** Why (the failing operation and error), on a move into trouble. */
  readonly detail?: string | undefined
}

/** Options of {@link make}. */
export interface Options {
  /** Default `"local-fallback"`. */
  readonly mode?: TroubleMode | undefined
  /** Upper bound of one Redis command. Default 1 second. */
  readonly commandTimeout?: Duration.Input | undefined
  /** How often Redis is pinged while in trouble. Default 1 second. */
  readonly pingInterval?: Duration.Input | undefined
  /** Processes expected to share a key, for the local share (limit / expectedProcesses). Default 1. */
  readonly expectedProcesses?: number | undefined
}

/** Service tag of {@link RedisMode["Service"]}. */
export class RedisMode extends Context.Service<RedisMode, {
  readonly mode: TroubleMode
  readonly expectedProcesses: number
  /** The current state. */
  readonly state: Effect.Effect<RedisState>
  /** The current state, read synchronously (for code already inside an effect). */
  readonly stateUnsafe: () => RedisState
  /** 0 shared, 1 local-fallback, 2 unavailable. */
  readonly gaugeValue: Effect.Effect<0 | 1 | 2>
  /** Every change of state. */
  readonly changes: Stream.Stream<RedisStateChange>
  /**
   * Runs one Redis command under the command timeout. An outage (or a timeout)
   * moves the state into trouble and fails with `RedisUnavailable`; a success
   * moves it back to `shared`.
   */
  readonly run: <A>(
    operation: string,
    command: Effect.Effect<A, Redis.RedisError>
  ) => Effect.Effect<A, DistributedError>
}>()("elevenlabs-resilience/distributed/RedisMode") {}

/** @deprecated The shape of {@link RedisMode}: use `RedisMode["Service"]` (one name per service, Effect's convention). */
export type RedisModeService = RedisMode["Service"]

/** The gauge of the state: 0 shared, 1 local-fallback, 2 unavailable. */
export const stateGauge = Metric.gauge("elevenlabs_distributed_redis_state", {
  description: "Shared state over Redis: 0 shared, 1 local-fallback, 2 unavailable"
})

const gaugeOf = (s: RedisState): 0 | 1 | 2 => (s === "shared" ? 0 : s === "local-fallback" ? 1 : 2)

const describe = (cause: unknown): string => {
  if (cause instanceof Error) return `${cause.name}: ${cause.message}`
  return String(cause)
}

/** Whether a Redis error is an answer from the server (so Redis is up). */
const isReply = (cause: unknown): boolean =>
  cause instanceof Error && (cause.name === "ErrorReply" || cause.constructor.name === "ErrorReply" ||
    /^(ERR|WRONGTYPE|NOSCRIPT|BUSY|NOPERM)\b/.test(cause.message))

/** Builds the tracker and its ping fiber (which lives as long as the scope). */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const redis = yield* Redis.Redis
  const mode = options.mode ?? "local-fallback"
  const commandTimeout = Duration.fromInputUnsafe(options.commandTimeout ?? "1 second")
  const pingInterval = Duration.fromInputUnsafe(options.pingInterval ?? "1 second")
  const expectedProcesses = Math.max(1, Math.floor(options.expectedProcesses ?? 1))
  const troubleState: RedisState = mode === "fail-closed" ? "unavailable" : "local-fallback"
  const pubsub = yield* PubSub.sliding<RedisStateChange>(64)
  let current: RedisState = "shared"
  yield* Metric.update(stateGauge, 0)

  const move = (to: RedisState, detail?: string) =>
    Effect.gen(function*() {
      if (current === to) return
      const from = current
      current = to
      const at = yield* Clock.currentTimeMillis
      yield* Metric.update(stateGauge, gaugeOf(to))
      if (to === "shared") yield* Effect.logInfo(`Redis reachable again: shared state resumed (was ${from})`)
      else {
        yield* Effect.logWarning(
          `Redis unreachable (${detail ?? "unknown"}): ${
            to === "local-fallback" ? "falling back to a local share of each limit" : "calls fail with RedisUnavailable"
          }`
        )
      }
      yield* PubSub.publish(pubsub, detail === undefined ? { from, to, at } : { from, to, at, detail })
    })

  const run = <A>(operation: string, command: Effect.Effect<A, Redis.RedisError>): Effect.Effect<A, DistributedError> =>
    command.pipe(
      Effect.timeoutOrElse({
        duration: commandTimeout,
        orElse: () =>
          Effect.fail(new Redis.RedisError({ cause: new Error(`timed out after ${Duration.format(commandTimeout)}`) }))
      }),
      Effect.matchEffect({
        onSuccess: (a) => Effect.as(move("shared"), a),
        onFailure: (error) => {
          if (isReply(error.cause)) {
            return Effect.andThen(
              move("shared"),
              Effect.fail(
                new DistributedError({ reason: new RedisCommandFailed({ operation, message: describe(error.cause) }) })
              )
            )
          }
          const message = describe(error.cause)
          return Effect.andThen(
            move(troubleState, `${operation}: ${message}`),
            Effect.fail(unavailable(operation, message))
          )
        }
      })
    )

  // Only pings while in trouble: in the shared state the commands themselves tell.
  yield* Effect.suspend(() => current === "shared" ? Effect.void : Effect.ignore(run("ping", redis.send("PING")))).pipe(
    Effect.repeat(Schedule.spaced(pingInterval)),
    Effect.interruptible,
    Effect.forkScoped
  )

  return RedisMode.of({
    mode,
    expectedProcesses,
    state: Effect.sync(() => current),
    stateUnsafe: () => current,
    gaugeValue: Effect.sync(() => gaugeOf(current)),
    changes: Stream.fromPubSub(pubsub),
    run
  })
})

/** Provides {@link RedisMode} over the current `Redis` service. */
export const layer = (options?: Options): Layer.Layer<RedisMode, never, Redis.Redis> =>
  Layer.effect(RedisMode, make(options))
