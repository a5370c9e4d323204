/**
 * The local share `RedisPermits` falls back to while Redis is away (trouble
 * mode `local-fallback`): one semaphore per (key, pool) of `localShare`
 * permits, sized from the last shared limit this process saw and never above
 * the last shared cap it saw (a configured `localShare` included).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Scope, Semaphore } from "effect"
import { AcquireTimeout, DistributedError } from "./DistributedError.ts"
import type { DistributedPermit } from "./RedisPermits.ts"

interface Local {
  readonly semaphore: Semaphore.Semaphore
  share: number
  held: number
}

const capped = (share: number, cap: number | undefined) => (cap !== undefined && cap < share ? cap : share)

/** The local shares of one process. */
export interface LocalShares {
  /** Permits held from the local share, and its size. */
  readonly view: (key: string, pool: string) => { readonly localHeld: number; readonly localShare: number }
  /** Resizes the share after the shared limit (and its cap, `undefined` when none) was read. */
  readonly learnLimit: (key: string, pool: string, limit: number, cap: number | undefined) => Effect.Effect<void>
  /** Takes a permit of the share until `scope` closes, or fails with `AcquireTimeout` at `deadline`. */
  readonly acquire: (
    request: {
      readonly key: string
      readonly pool: string
      readonly id: string
      readonly startedAt: number
      readonly deadline: number
    },
    scope: Scope.Scope
  ) => Effect.Effect<DistributedPermit, DistributedError>
}

/** `shareOf` maps the last known shared limit to this process's share (at least 1). */
export const make = (options: {
  readonly initialOf: (key: string, pool: string) => number
  readonly shareOf: (key: string, pool: string, lastKnownLimit: number) => number
}): LocalShares => {
  const locals = new Map<string, Local>()
  const localOf = (key: string, pool: string): Local => {
    const id = `${key}\u0000${pool}`
    let local = locals.get(id)
    if (local === undefined) {
      const share = options.shareOf(key, pool, options.initialOf(key, pool))
      local = { semaphore: Semaphore.makeUnsafe(share), share, held: 0 }
      locals.set(id, local)
    }
    return local
  }

  const learnLimit = (key: string, pool: string, limit: number, cap: number | undefined) =>
    Effect.suspend(() => {
      const local = localOf(key, pool)
      // The shared limit is capped already; a configured share is not, so the cap applies to it too.
      const share = capped(options.shareOf(key, pool, limit), cap)
      if (share === local.share) return Effect.void
      local.share = share
      return Semaphore.resize(local.semaphore, share)
    })

  const acquire: LocalShares["acquire"] = ({ deadline, id, key, pool, startedAt }, scope) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const local = localOf(key, pool)
        const now0 = yield* Clock.currentTimeMillis
        yield* restore(local.semaphore.take(1)).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(Math.max(0, deadline - now0)),
            orElse: () =>
              Effect.fail(
                new DistributedError({
                  reason: new AcquireTimeout({ key, pool, waitedMillis: Math.max(0, deadline - startedAt) })
                })
              )
          })
        )
        local.held++
        let released = false
        const release = Effect.suspend(() => {
          if (released) return Effect.void
          released = true
          local.held--
          return local.semaphore.release(1)
        }).pipe(Effect.asVoid)
        yield* Scope.addFinalizer(scope, release)
        const now = yield* Clock.currentTimeMillis
        return {
          key,
          pool,
          id,
          source: "local-fallback",
          limit: local.share,
          waitedMillis: now - startedAt,
          release: Effect.uninterruptible(release)
        } satisfies DistributedPermit
      })
    )

  return {
    view: (key, pool) => {
      const local = localOf(key, pool)
      return { localHeld: local.held, localShare: local.share }
    },
    learnLimit,
    acquire
  }
}
