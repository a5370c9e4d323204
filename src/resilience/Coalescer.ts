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
 * - `flight: "inline"` runs the call on the starter's own fiber instead: no
 *   fork per call. Joiners wait as before. If the starter is interrupted
 *   while joiners still wait, the call is started again in a fiber forked
 *   then (the only fork, and only when someone joined) and the joiners get
 *   that call's outcome; with nobody waiting, the starter's interruption
 *   ends the call.
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
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { requestKey } from "./Fallback.ts"
import type { RequestKeyOptions, SpeechKeyInput } from "./Fallback.ts"

/** What happens to a shared call when every caller waiting for it has gone. */
export type AllWaitersGone = "interrupt" | "finish"

/**
 * Where a shared call runs.
 *
 * - `"detached"` (default): in a fiber forked into the coalescer's scope for every call, so a starter that is
 *   interrupted only stops waiting and the call goes on for the others.
 * - `"inline"`: on the starter's own fiber, with no fork. The call ends with the starter: interrupting the
 *   starter interrupts the call. If others joined and still wait, the call is started again for them in a
 *   fiber forked then (into the coalescer's scope, with the starter's context), so they still get one
 *   outcome. That is the only fork, and it happens only when someone joined and the starter was interrupted.
 */
export type Flight = "detached" | "inline"

/** Options of {@link make}. */
export interface CoalescerOptions {
  /** Default `"interrupt"`: see the module documentation. */
  readonly onAllWaitersGone?: AllWaitersGone | undefined
  /** Default `"detached"`: see {@link Flight}. */
  readonly flight?: Flight | undefined
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
  /** Where this call runs if it starts a flight; default: the coalescer's `flight` option. */
  readonly flight?: Flight | undefined
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
  /**
   * `coalesce` with an inline flight, built once around `effect` for a caller that keeps one record per call
   * (a {@link Slot}, read from the fiber by `slotOf`): the key is the slot's, and the flight the call starts
   * is kept in the slot, so a starter holds no closure, mask or frame of its own (a pipeline with thousands of
   * calls waiting in a queue). Joiners wait as with `coalesce`; both get the value itself (a joiner's as its
   * `boundJoin` makes it). No key: `effect` alone.
   *
   * The slot must be the same object from the start of the call to its end (the exit frame reads it), and
   * belong to this call only.
   */
  readonly inlineWith: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    slotOf: (fiber: Fiber.Fiber<unknown, unknown>) => Slot,
    options?: CoalesceOptions<A, E> | undefined
  ) => Effect.Effect<A, E, R>
  /** Keys with a call in flight now. */
  readonly inFlight: Effect.Effect<number>
}

/** A call's record for {@link Coalescer.inlineWith}: its key, and the flight it started (set and cleared there). */
export interface Slot {
  readonly coalesceKey: string | undefined
  flight: unknown
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

interface InFlight {
  /** Settled with the call's exit; made on the first join in inline mode (a call nobody joins needs none). */
  deferred: Deferred.Deferred<unknown, unknown> | undefined
  /** The forked call: every call in detached mode, a handed-over call in inline mode. */
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  /** Callers waiting for the deferred (detached: every caller; inline: the joiners). */
  waiters: number
}

/**
 * Builds a coalescer whose shared calls live in the current scope: closing it
 * interrupts the calls still in flight (their waiters see the interruption).
 */
export const make = Effect.fnUntraced(function*(options?: CoalescerOptions | undefined) {
  const onAllWaitersGone: AllWaitersGone = options?.onAllWaitersGone ?? "interrupt"
  const inline = options?.flight === "inline"
  const scope = yield* Scope.Scope
  const flights = new Map<string, InFlight>()

  const deferredOf = (flight: InFlight): Deferred.Deferred<unknown, unknown> =>
    flight.deferred ??= Deferred.makeUnsafe<unknown, unknown>()

  // Synchronous, so no caller can join between the end of the call and the
  // release of its key.
  const settleUnsafe = (key: string, flight: InFlight, exit: Exit.Exit<unknown, unknown>) => {
    if (flights.get(key) === flight) flights.delete(key)
    if (flight.deferred !== undefined) Deferred.doneUnsafe(flight.deferred, exit)
  }

  /**
   * The call in a fiber of the coalescer's scope, settling the flight when it ends. An observer rather than
   * an `onExit` inside the fiber: a fiber interrupted before it first runs (the scope closed at once) never
   * runs its effect, and its waiters must still hear of it.
   */
  const forkFlight = <A, E, R>(key: string, flight: InFlight, effect: Effect.Effect<A, E, R>) =>
    Effect.map(Effect.forkIn(Effect.interruptible(effect), scope, { startImmediately: false }), (fiber) => {
      fiber.addObserver((exit) => settleUnsafe(key, flight, exit))
      return fiber
    })

  const leave = (key: string, flight: InFlight) =>
    Effect.suspend(() => {
      flight.waiters -= 1
      // Inline: a starter still running keeps the call; a hand-over not forked yet checks the count itself.
      if (flight.waiters > 0 || onAllWaitersGone === "finish" || flight.fiber === undefined) return Effect.void
      // Free the key first: a caller arriving now starts a fresh call rather
      // than joining one being cancelled.
      if (flights.get(key) === flight) flights.delete(key)
      // Waiting for the interruption means the last caller's own interruption
      // completes only once the call has released what it held.
      return Fiber.interrupt(flight.fiber)
    })

  /** A caller waiting for the flight's outcome (every caller in detached mode; joiners in inline mode). */
  const wait = <A, E>(
    key: string,
    flight: InFlight,
    coalesced: boolean,
    restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
    options: CoalesceOptions<A, E> | undefined
  ): Effect.Effect<Coalesced<A>, E> => {
    flight.waiters += 1
    const deferred = deferredOf(flight)
    const awaited = Deferred.await(deferred) as Effect.Effect<A, E>
    const bound = coalesced ? options?.boundJoin : undefined
    return restore(bound === undefined ? awaited : bound(awaited)).pipe(
      // Interrupted, or given up by the bound, while the call still runs: leave it to the others.
      Effect.onExit((exit) =>
        Exit.isSuccess(exit) || Deferred.isDoneUnsafe(deferred) ? Effect.void : leave(key, flight)
      ),
      // Once the call has ended its waiter count no longer matters.
      Effect.map((value) => ({ value, coalesced }))
    )
  }

  /** A new flight, in flight under `key` from now on. */
  const register = (key: string): InFlight => {
    const started: InFlight = { deferred: undefined, fiber: undefined, waiters: 0 }
    flights.set(key, started)
    return started
  }

  /** Joins the flight of `key` if there is one; otherwise registers a new flight and runs `start` (both modes). */
  const joinOrStart = <A, E, R>(
    key: string,
    options: CoalesceOptions<A, E> | undefined,
    start: (
      started: InFlight,
      restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
    ) => Effect.Effect<Coalesced<A>, E, R>
  ): Effect.Effect<Coalesced<A>, E, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const joined = flights.get(key)
        if (joined !== undefined) return wait(key, joined, true, restore, options)
        return start(register(key), restore)
      })
    )

  const detached = <A, E, R>(
    key: string,
    effect: Effect.Effect<A, E, R>,
    options?: CoalesceOptions<A, E> | undefined
  ): Effect.Effect<Coalesced<A>, E, R> =>
    joinOrStart(key, options, (started, restore) => {
      deferredOf(started)
      return Effect.flatMap(forkFlight(key, started, effect), (fiber) => {
        started.fiber = fiber
        return wait(key, started, false, restore, options)
      })
    })

  /**
   * The starter's call ended. Interrupted while joiners wait: hand the call over to a fiber forked now
   * (its first run was interrupted, which released what it held). Otherwise its exit is the flight's.
   */
  const starterDone = <A, E, R>(
    key: string,
    flight: InFlight,
    effect: Effect.Effect<A, E, R>,
    exit: Exit.Exit<A, E>
  ) => {
    // Called as the starter's call exits (synchronously, so no caller joins in between).
    if (!(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)) || flight.waiters === 0) {
      settleUnsafe(key, flight, exit)
      return undefined
    }
    return Effect.flatMap(forkFlight(key, flight, effect), (fiber) => {
      flight.fiber = fiber
      // Every joiner left while the hand-over was being forked.
      if (flight.waiters > 0 || onAllWaitersGone === "finish") return Effect.void
      if (flights.get(key) === flight) flights.delete(key)
      return Fiber.interrupt(fiber)
    })
  }

  const inlined = <A, E, R>(
    key: string,
    effect: Effect.Effect<A, E, R>,
    options?: CoalesceOptions<A, E> | undefined
  ): Effect.Effect<Coalesced<A>, E, R> =>
    joinOrStart(
      key,
      options,
      (started, restore) =>
        Effect.onExitPrimitive(restore(effect), (exit) => starterDone(key, started, effect, exit)).pipe(
          Effect.map((value) => ({ value, coalesced: false }))
        )
    )

  const valueOf = <A>(shared: Coalesced<A>): A => shared.value

  // The flight is registered in the step after the exit frame is pushed, so the frame settles whatever the
  // slot holds however the call ends (nothing if it ended before registering): no mask is needed.
  const inlineWith = <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    slotOf: (fiber: Fiber.Fiber<unknown, unknown>) => Slot,
    options?: CoalesceOptions<A, E> | undefined
  ): Effect.Effect<A, E, R> =>
    Effect.onExitPrimitive(
      Effect.withFiber((fiber) => {
        const slot = slotOf(fiber)
        const key = slot.coalesceKey
        if (key === undefined) return effect
        if (flights.has(key)) return Effect.map(inlined(key, effect, options), valueOf)
        slot.flight = register(key)
        return effect
      }),
      (exit) => {
        const slot = slotOf(Fiber.getCurrent()!)
        const flight = slot.flight as InFlight | undefined
        if (flight === undefined) return undefined
        slot.flight = undefined
        return starterDone(slot.coalesceKey!, flight, effect, exit)
      }
    )

  return Coalescer.of({
    [TypeId]: TypeId,
    coalesce: (key, effect, options) =>
      (options?.flight === undefined ? inline : options.flight === "inline")
        ? inlined(key, effect, options)
        : detached(key, effect, options),
    inlineWith,
    inFlight: Effect.sync(() => flights.size)
  })
})

/** A {@link Coalescer} service whose calls live as long as the layer. */
export const layer = (options?: CoalescerOptions | undefined): Layer.Layer<Coalescer> =>
  Layer.effect(Coalescer, make(options))
