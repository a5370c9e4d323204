/**
 * `Effect.uninterruptibleMask` for a body built once.
 *
 * `Effect.uninterruptibleMask((restore) => body)` calls its function on every run, and `restore(effect)` makes
 * a new effect each time; an exit frame around it then holds that effect (and its closure) for as long as the
 * fiber waits inside. On a path where thousands of calls wait in a queue, that is a few hundred bytes each.
 * {@link builtOnce} builds the body twice up front, once with `Effect.interruptible` as `restore` and once with
 * the identity, and each run picks the one its caller's interruptibility calls for, which is what `restore`
 * would have done.
 *
 * @internal
 */
import { Effect } from "effect"

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

const identity: Restore = (effect) => effect
const interruptible: Restore = (effect) => Effect.interruptible(effect)
const probe = Effect.void

/**
 * Whether `restore` (an `Effect.uninterruptibleMask` argument) makes its effect interruptible, that is, whether
 * the caller was interruptible. In Effect 4 it is the identity exactly when the caller was already
 * uninterruptible (test/internal/Mask.test.ts fails if a later version always wraps).
 */
export const restores = (restore: Restore): boolean => restore(probe) !== probe

/**
 * An uninterruptible region whose body is built once, with `restore` applied at build time. The body must not
 * close over per-run values: per-run state lives in a record the fiber carries (its context).
 */
export const builtOnce = <A, E, R>(build: (restore: Restore) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const restored = build(interruptible)
  const unrestored = build(identity)
  return Effect.uninterruptibleMask((restore) => restores(restore) ? restored : unrestored)
}
