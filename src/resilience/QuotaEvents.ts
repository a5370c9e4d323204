/**
 * The quota guard's events: what the store's steps report, plus the
 * threshold crossings they cause, logged and published on a sliding
 * `PubSub` (a slow subscriber loses the oldest events, never blocks the
 * guard).
 *
 * Thresholds are the guard's, not the store's: each guard announces a
 * crossing of its `warningPercent`/`alertPercent` once, judged on the ledger
 * its store shows after every change (`QuotaLedger.crossings`). New
 * thresholds (`setPercents`) are judged against what was announced under the
 * old ones, so moving a threshold past the current usage announces (or
 * clears) it once.
 *
 * @since 0.1.0
 */
import { Duration, Effect, PubSub, type Scope, Stream } from "effect"
import * as Ledger from "./QuotaLedger.ts"
import type { QuotaEvent } from "./QuotaModel.ts"

/** Publishes a guard's events. */
export interface Announcer {
  /**
   * `events` and the threshold crossings the ledger now shows, as one effect to run; `undefined` when there
   * is nothing to publish. The crossings are judged now, synchronously, so each is announced once.
   */
  readonly announce: (events: ReadonlyArray<QuotaEvent>, now: number) => Effect.Effect<void> | undefined
  /** {@link announce}, always an effect. */
  readonly publish: (events: ReadonlyArray<QuotaEvent>, now: number) => Effect.Effect<void>
  /** New thresholds, judged from the next announcement on (which re-arms or announces against them). */
  readonly setPercents: (warningPercent: number, alertPercent: number) => void
  readonly events: Stream.Stream<QuotaEvent>
  readonly subscribe: Effect.Effect<PubSub.Subscription<QuotaEvent>, never, Scope.Scope>
}

const logEvent = (e: QuotaEvent, l: Ledger.Ledger): Effect.Effect<void> => {
  switch (e._tag) {
    case "ThresholdCrossed": {
      const text = `ElevenLabs quota ${e.threshold}: ${Ledger.round1(e.percentUsed)}% used (${l.used ?? "?"} of ${
        l.limit ?? "?"
      } credits)`
      return e.threshold === "alert" ? Effect.logError(text) : Effect.logWarning(text)
    }
    case "Exhausted":
      return Effect.logError(
        `ElevenLabs quota exhausted; calls fail fast${
          e.retryAfterMillis === undefined ? "" : ` for ${Duration.format(Duration.millis(e.retryAfterMillis))}`
        }`
      )
    case "RefreshFailed":
      return Effect.logWarning(
        `ElevenLabs subscription refresh failed (${e.error}); keeping a snapshot ${
          e.snapshotAgeMillis === undefined ? "(none yet)" : `${e.snapshotAgeMillis} ms old`
        }`
      )
    case "Recovered":
      return Effect.logInfo(`ElevenLabs quota available again (${e.by})`)
    default:
      return Effect.void
  }
}

/** An announcer over the ledger `ledger()` shows, keeping `buffer` events for a slow subscriber. */
export const make = (options: {
  readonly buffer: number
  readonly ledger: () => Ledger.Ledger
  readonly warningPercent: number
  readonly alertPercent: number
}): Effect.Effect<Announcer> =>
  Effect.map(PubSub.sliding<QuotaEvent>(options.buffer), (pubsub) => {
    let percents = { warning: options.warningPercent, alert: options.alertPercent }
    let announced: Ledger.Announced = { warning: false, alert: false }
    const emit = (events: ReadonlyArray<QuotaEvent>): Effect.Effect<void> =>
      Effect.forEach(events, (e) => Effect.andThen(logEvent(e, options.ledger()), PubSub.publish(pubsub, e)), {
        discard: true
      })
    const announce = (events: ReadonlyArray<QuotaEvent>, now: number): Effect.Effect<void> | undefined => {
      const crossed = Ledger.crossings(announced, options.ledger(), now, percents)
      if (crossed === undefined) return events.length === 0 ? undefined : emit(events)
      announced = crossed.announced
      return emit(events.length === 0 ? crossed.events : [...events, ...crossed.events])
    }
    return {
      announce,
      publish: (events, now) => Effect.suspend(() => announce(events, now) ?? Effect.void),
      setPercents: (warning, alert) => {
        percents = { warning, alert }
      },
      events: Stream.fromPubSub(pubsub),
      subscribe: PubSub.subscribe(pubsub)
    }
  })
