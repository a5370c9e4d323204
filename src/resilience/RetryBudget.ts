/**
 * A per-client retry budget: retries may not exceed a share of recent
 * requests, so an outage cannot multiply the load (Envoy `retry_budget`,
 * Google SRE book "retry budget", Finagle `RetryBudget`).
 *
 * **Details**
 *
 * - A *request* is a logical call ({@link RetryBudget.request} when it
 *   starts, {@link RetryBudget.settle} when it ends); a *retry* is every
 *   attempt after its first. The requests counted are the calls still running
 *   plus those that ended within a sliding window (default 10 s) of `Clock`
 *   time; retries are counted over the same window, both in the same slices
 *   of 100 ms (a tenth of the window when shorter), so memory follows the
 *   window's length, not the call rate; a slice leaves when its start does.
 * - Why running calls count (as Envoy's budget counts active requests): a
 *   batch queued at once has all its calls started at the same instant. If a
 *   call counted only at its start, every call of a batch that outlasts the
 *   window would have left it, and the batch's later retries would be
 *   refused although their share of the traffic is small.
 * - A retry is allowed when, counting it, `retriesInWindow ≤ ratio ×
 *   requestsInWindow` (default ratio 0.2); or, past that, when fewer than
 *   `minRetriesInFlight` (default 3) retries are in flight **and**, counting
 *   it, `retriesInWindow ≤ ratio × requestsInWindow + minRetriesInFlight`.
 *   So a client with little traffic can always have a few retries in flight
 *   (Envoy's `min_retry_concurrency`), yet at every grant the window holds at
 *   most `ratio × requests + minRetriesInFlight` retries: the floor is not a
 *   way to retry forever during an outage with no new traffic.
 * - A granted retry is *in flight* from the grant (before its backoff sleep)
 *   until its attempt ends, however it ends (interruption included).
 * - Written by hand: Effect has no retry budget (`RateLimiter` limits rates
 *   per key, not a ratio of two counters).
 * - Changing it live ({@link RetryBudget.reconfigure}): the new ratio, window
 *   and `minRetriesInFlight` judge every grant from then on; the counts are
 *   kept (running calls, the requests and retries in the window, the retries
 *   in flight, the refusals). A shorter window drops the older entries at the
 *   next grant; a longer one cannot bring back entries the old one already
 *   dropped, so it counts fully only one new window later.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Layer } from "effect"

/** What the budget holds now. */
export interface RetryBudgetSnapshot {
  /** Calls running now plus calls that ended within the window. */
  readonly requestsInWindow: number
  readonly retriesInWindow: number
  readonly retriesInFlight: number
  /** Retries refused since the budget was made. */
  readonly refusedTotal: number
}

/** Options of {@link make}; every field has a default. */
export interface RetryBudgetOptions {
  /** Share of requests that may be retried, in `[0, 1]`. Default `0.2`. */
  readonly ratio?: number | undefined
  /** Sliding window for counting requests and retries. Default 10 seconds. */
  readonly window?: Duration.Input | undefined
  /** Retries that may always be in flight at once (bounded per window, see the module doc). Default `3`. */
  readonly minRetriesInFlight?: number | undefined
}

/** The retry budget of one client. */
export interface RetryBudget {
  /** Counts a logical call as running (until {@link RetryBudget.settle}). */
  readonly request: Effect.Effect<void>
  /** Ends a call counted by `request`: it keeps counting for one window from now. */
  readonly settle: Effect.Effect<void>
  /**
   * {@link RetryBudget.request} and {@link RetryBudget.settle} as plain functions (`settle` takes
   * the clock's time), for a caller that already holds a mask and a clock: the retry policy uses them when
   * present, to count a call without two effects per call.
   */
  readonly requestUnsafe?: (() => void) | undefined
  readonly settleUnsafe?: ((now: number) => void) | undefined
  /**
   * Asks for one retry. On `true` the retry is counted and in flight until
   * `release` is run; on `false` nothing is counted (and the refusal is).
   */
  readonly acquire: Effect.Effect<boolean>
  /** Ends one in-flight retry granted by `acquire`. */
  readonly release: Effect.Effect<void>
  /** What the budget holds now (window pruned to the current time). */
  readonly snapshot: Effect.Effect<RetryBudgetSnapshot>
  /**
   * Judges every grant from now on by new options, keeping the counts (see the module doc). Dies, changing
   * nothing, on invalid options.
   */
  readonly reconfigure: (options: RetryBudgetOptions) => Effect.Effect<void>
}

/** Service tag of the client's retry budget. */
export const RetryBudget = Context.Service<RetryBudget>("elevenlabs-resilience/RetryBudget")

/** @deprecated Use {@link RetryBudget} (one name per service, Effect's convention). */
export type RetryBudgetService = RetryBudget

/**
 * The width of the window's slices: 100 ms, or a tenth of the window when that is shorter. The events of one
 * slice share one entry, so the window holds a number per slice of time, not per call (one per call was
 * about 1 MB at 11,000 calls per second over 10 s).
 */
const sliceOf = (windowMillis: number): number => Math.min(100, windowMillis / 10)

/**
 * The events of a sliding window, counted per slice of clock time (slices start at multiples of their width,
 * the same for requests and retries, so the two leave the window together). A slice leaves the window when its
 * start does: its events up to a slice early. Pruning is O(1) amortised.
 */
class Window {
  private readonly starts: Array<number> = []
  private readonly counts: Array<number> = []
  private head = 0
  private total = 0
  add(now: number, slice: number) {
    const start = Math.floor(now / slice) * slice
    const last = this.starts.length - 1
    if (last >= this.head && this.starts[last] === start) this.counts[last] = this.counts[last]! + 1
    else {
      this.starts.push(start)
      this.counts.push(1)
    }
    this.total++
  }
  prune(cutoff: number) {
    while (this.head < this.starts.length && this.starts[this.head]! <= cutoff) this.total -= this.counts[this.head++]!
    // Compact once the dead prefix dominates, so memory follows the window.
    if (this.head > 256 && this.head * 2 > this.starts.length) {
      this.starts.splice(0, this.head)
      this.counts.splice(0, this.head)
      this.head = 0
    }
  }
  get size() {
    return this.total
  }
}

/**
 * Builds a retry budget. Bad options throw a `RangeError` (a programming error).
 *
 * @example
 * ```ts
 * const budget = yield* RetryBudget.make({ ratio: 0.1, window: "1 minute" })
 * ```
 */
export const make = (options?: RetryBudgetOptions): Effect.Effect<RetryBudget> => Effect.sync(() => makeUnsafe(options))

/** The options, checked, with their defaults. */
interface Settings {
  readonly ratio: number
  readonly windowMillis: number
  readonly minInFlight: number
}

/** Checks every option at once; bad options throw a `RangeError` (a programming error). */
export const settingsOf = (options: RetryBudgetOptions | undefined): Settings => {
  const ratio = options?.ratio ?? 0.2
  const window = Duration.fromInput(options?.window ?? "10 seconds")
  const windowMillis = window._tag === "Some" ? Duration.toMillis(window.value) : Number.NaN
  const minInFlight = options?.minRetriesInFlight ?? 3
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`RetryBudget: ratio must be in [0, 1], got ${ratio}`)
  if (!(windowMillis > 0)) throw new RangeError(`RetryBudget: window must be > 0`)
  if (!Number.isInteger(minInFlight) || minInFlight < 0) {
    throw new RangeError(`RetryBudget: minRetriesInFlight must be an integer >= 0, got ${minInFlight}`)
  }
  return { ratio, windowMillis, minInFlight }
}

/** Synchronous {@link make}. */
export const makeUnsafe = (options?: RetryBudgetOptions): RetryBudget => {
  // Read at every grant and prune; replaced whole by `reconfigure`.
  let settings = settingsOf(options)
  /** End times of calls that ended; running calls are `running`. */
  const requests = new Window()
  const retries = new Window()
  let running = 0
  let inFlight = 0
  let refused = 0

  const prune = (now: number) => {
    const cutoff = now - settings.windowMillis
    requests.prune(cutoff)
    retries.prune(cutoff)
  }

  const settleUnsafe = (now: number): void => {
    prune(now)
    running = Math.max(0, running - 1)
    requests.add(now, sliceOf(settings.windowMillis))
  }

  return {
    request: Effect.sync(() => {
      running++
    }),
    settle: Effect.map(Clock.currentTimeMillis, (now) => settleUnsafe(now)),
    requestUnsafe: () => {
      running++
    },
    settleUnsafe,
    acquire: Effect.map(Clock.currentTimeMillis, (now) => {
      prune(now)
      const { minInFlight, ratio } = settings
      const allowance = ratio * (running + requests.size)
      // `+ 1 <=` rather than `<`: the allowance can be fractional, and the
      // bound must hold after this retry is counted.
      const after = retries.size + 1
      const allowed = after <= allowance || (inFlight < minInFlight && after <= allowance + minInFlight)
      if (allowed) {
        retries.add(now, sliceOf(settings.windowMillis))
        inFlight++
      } else {
        refused++
      }
      return allowed
    }),
    release: Effect.sync(() => {
      inFlight = Math.max(0, inFlight - 1)
    }),
    snapshot: Effect.map(Clock.currentTimeMillis, (now) => {
      prune(now)
      return {
        requestsInWindow: running + requests.size,
        retriesInWindow: retries.size,
        retriesInFlight: inFlight,
        refusedTotal: refused
      }
    }),
    reconfigure: (next) =>
      Effect.sync(() => {
        settings = settingsOf(next)
      })
  }
}

/** Provides the client's {@link RetryBudget}. */
export const layer = (options?: RetryBudgetOptions): Layer.Layer<RetryBudget> =>
  Layer.effect(RetryBudget, make(options))
