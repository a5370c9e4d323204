/**
 * Request coalescing: identical requests in flight at the same time share one
 * upstream call, and so one permit and one credit charge.
 *
 * **Details**
 *
 * - The first caller for a key starts the call in a fiber forked into the
 *   coalescer's own scope, detached from every caller; later callers with the
 *   same key wait for that call's `Exit` and get the same value, the same
 *   typed failure or the same defect.
 * - Each result says whether it was `coalesced` (joined a call someone else
 *   started), so spans and metrics can count saved calls.
 * - A caller that is interrupted only stops waiting: the shared call goes on
 *   for the others.
 * - When every waiter is gone before the call ends, the call is interrupted by
 *   default (`onAllWaitersGone: "interrupt"`): nothing keeps its result, so
 *   finishing it would only hold a permit and spend credits for no one; its
 *   interruption releases its permit and quota reservation like any other.
 *   `"finish"` lets it run to the end instead (for callers that want the
 *   charge taken anyway, e.g. to fill a cache written inside the call).
 * - The key is free again the moment the call ends: results are never kept
 *   beyond the flight (that is the audio cache's job).
 *
 * **Gotchas**
 *
 * - The shared call runs with the context (services, span, lane) of the
 *   caller that started it.
 * - Whole-body operations only (convert, convert-with-timestamps): a stream is
 *   consumed as it arrives and cannot be handed to several callers after the
 *   fact, so streams are not coalesced.
 * - All callers receive the same value object: treat it as read-only.
 * - The key must identify the effect: callers with one key are assumed to ask
 *   for the same thing ({@link keyOf} for TTS requests).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Coalescer } from "elevenlabs-resilience/resilience"
 *
 * declare const convert: (req: { voiceId: string; text: string }) => Effect.Effect<Uint8Array>
 * const program = Effect.gen(function*() {
 *   const coalescer = yield* Coalescer.make()
 *   const req = { voiceId: "v", text: "Hello" }
 *   const [a, b] = yield* Effect.all([
 *     coalescer.coalesce(Coalescer.keyOf(req), convert(req)),
 *     coalescer.coalesce(Coalescer.keyOf(req), convert(req))
 *   ], { concurrency: "unbounded" })
 *   return [a.coalesced, b.coalesced] // => [false, true]: one upstream call
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { requestKey } from "./Fallback.ts"
import type { RequestKeyOptions, SpeechKeyInput } from "./Fallback.ts"

/** What happens to a shared call when every caller waiting for it has gone. */
export type AllWaitersGone = "interrupt" | "finish"

/** Options of {@link make}. */
export interface CoalescerOptions {
  /** Default `"interrupt"`: see the module documentation. */
  readonly onAllWaitersGone?: AllWaitersGone | undefined
}

/** A result and whether it came from a call another caller started. */
export interface Coalesced<A> {
  readonly value: A
  /** `false` for the caller that started the upstream call, `true` for those that joined it. */
  readonly coalesced: boolean
}

/** Options of one {@link Coalescer} `coalesce` call. */
export interface CoalesceOptions<A, E> {
  /**
   * Bounds the wait of a caller who joins a call already in flight (for example by that caller's own
   * deadline). A joiner that gives up leaves the call to the others, as an interrupted one does. It is not
   * applied to the caller who starts the call: that caller's effect carries its own bounds, and they are
   * the shared call's.
   */
  readonly boundJoin?: ((wait: Effect.Effect<A, E>) => Effect.Effect<A, E>) | undefined
}

/** Runtime type identifier of {@link Coalescer}. */
export const TypeId = "~elevenlabs-resilience/Coalescer" as const

/** Shares identical in-flight calls. */
export interface Coalescer {
  readonly [TypeId]: typeof TypeId
  /**
   * Runs `effect` under `key`, or joins the call already in flight under it.
   * Fails with the shared call's failure.
   */
  readonly coalesce: <A, E, R>(
    key: string,
    effect: Effect.Effect<A, E, R>,
    options?: CoalesceOptions<A, E> | undefined
  ) => Effect.Effect<Coalesced<A>, E, R>
  /** Keys with a call in flight now. */
  readonly inFlight: Effect.Effect<number>
}

/** The {@link Coalescer} service tag. */
export const Coalescer = Context.Service<Coalescer>(TypeId)

/**
 * The coalescing key of a TTS request: the same content address as the audio
 * cache (`Fallback.requestKey`), so the same fields decide both. Pass the
 * `operation` for with-timestamps calls and a `partition` per tenant or API key.
 */
export const keyOf = (request: SpeechKeyInput, options?: RequestKeyOptions | undefined): string =>
  requestKey(request, options)

interface Flight {
  readonly deferred: Deferred.Deferred<unknown, unknown>
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  waiters: number
}

/**
 * Builds a coalescer whose shared calls live in the current scope: closing it
 * interrupts the calls still in flight (their waiters see the interruption).
 */
export const make = Effect.fnUntraced(function*(options?: CoalescerOptions | undefined) {
  const onAllWaitersGone: AllWaitersGone = options?.onAllWaitersGone ?? "interrupt"
  const scope = yield* Scope.Scope
  const flights = new Map<string, Flight>()

  // Synchronous, so no caller can join between the end of the call and the
  // release of its key.
  const settle = (key: string, flight: Flight, exit: Exit.Exit<unknown, unknown>) =>
    Effect.sync(() => {
      if (flights.get(key) === flight) flights.delete(key)
      Deferred.doneUnsafe(flight.deferred, exit)
    })

  const leave = (key: string, flight: Flight) =>
    Effect.suspend(() => {
      flight.waiters -= 1
      if (flight.waiters > 0 || onAllWaitersGone === "finish" || flight.fiber === undefined) return Effect.void
      // Free the key first: a caller arriving now starts a fresh call rather
      // than joining one being cancelled.
      if (flights.get(key) === flight) flights.delete(key)
      // Waiting for the interruption means the last caller's own interruption
      // completes only once the call has released what it held.
      return Fiber.interrupt(flight.fiber)
    })

  const coalesce = <A, E, R>(
    key: string,
    effect: Effect.Effect<A, E, R>,
    options?: CoalesceOptions<A, E> | undefined
  ): Effect.Effect<Coalesced<A>, E, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        let flight = flights.get(key)
        const coalesced = flight !== undefined
        if (flight === undefined) {
          const started: Flight = { deferred: Deferred.makeUnsafe<unknown, unknown>(), fiber: undefined, waiters: 0 }
          flight = started
          flights.set(key, started)
          started.fiber = yield* Effect.interruptible(effect).pipe(
            Effect.onExit((exit) => settle(key, started, exit)),
            Effect.forkIn(scope, { startImmediately: false })
          )
        }
        flight.waiters += 1
        const joined = flight
        const wait = Deferred.await(joined.deferred) as Effect.Effect<A, E>
        const bound = coalesced ? options?.boundJoin : undefined
        const value = yield* restore(bound === undefined ? wait : bound(wait)).pipe(
          // Interrupted, or given up by the bound, while the call still runs: leave it to the others.
          Effect.onExit((exit) =>
            Exit.isSuccess(exit) || Deferred.isDoneUnsafe(joined.deferred) ? Effect.void : leave(key, joined)
          )
        )
        // Once the call has ended its waiter count no longer matters.
        return { value, coalesced }
      })
    )

  return Coalescer.of({
    [TypeId]: TypeId,
    coalesce,
    inFlight: Effect.sync(() => flights.size)
  })
})

/** A {@link Coalescer} service whose calls live as long as the layer. */
export const layer = (options?: CoalescerOptions | undefined): Layer.Layer<Coalescer> =>
  Layer.effect(Coalescer, make(options))
