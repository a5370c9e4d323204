/**
 * The entry and the exit of a call through the pipeline (`Pipeline.ts`): the call span, the call's state
 * (`Call`) published in one context overlay, and the one exit frame that records the call, ends the span and
 * puts the caller's context back. Not `useSpan` and `updateContext`: each leaves a closure of its own on a
 * waiting call's stack.
 *
 * @internal
 */
import { Cause, Clock, Context, Duration, Effect, Exit, type Fiber, References, Tracer } from "effect"
import { ElevenLabsError } from "../client/Errors.ts"
import * as Mask from "../internal/Mask.ts"
import * as Spans from "../telemetry/Spans.ts"
import * as Deadline from "./Deadline.ts"
import {
  type Attempt,
  Call,
  callDeadlineOf,
  type CallPlan,
  current,
  CurrentCallOptions,
  invalidDeadline,
  outcomeOf,
  type PooledPlan,
  recordCall,
  running,
  spanOptionsOf
} from "./PipelineCall.ts"
import type * as PipelinePolicies from "./PipelinePolicies.ts"

/** A pipeline's program with its exit frame, for a caller that was interruptible and for one that was not. */
export interface Programs<A, E, R> {
  readonly restored: Effect.Effect<A, E, R>
  readonly unrestored: Effect.Effect<A, E, R>
}

/** Whether a failed call counts against the stack: not an interruption, not the caller's invalid request. */
const countsAsError = (cause: Cause.Cause<ElevenLabsError>): boolean => {
  if (Cause.hasInterruptsOnly(cause)) return false
  const error = Cause.findErrorOption(cause)
  return error._tag === "None" || error.value.reason._tag !== "InvalidRequest"
}

/** The entry and exit of the calls of one pipeline (see the module doc). */
export const makeEntry = (stack: {
  readonly keyId: string
  readonly live: PipelinePolicies.LiveSettings
  /** The context the stack is built in: its metrics registry. */
  readonly metricsContext: Context.Context<never>
}) => {
  const { keyId, live, metricsContext } = stack
  /**
   * Starts a call: its span, its state, the overlay (span and state), then `program`, built once, which reads
   * the call from the overlay and whose one exit frame (`finish`) ends the span and puts the caller's context
   * back. A plan refused by the adapter or a deadline that is not one fails here, recorded as any failed call.
   * (Not `useSpan` and `updateContext`: each leaves a closure of its own on a waiting call's stack.)
   */
  const enter = <A, E, R>(
    plan: CallPlan<any>,
    attempt: Attempt<any, any>,
    pooled: boolean,
    program: Programs<A, E, R>
  ): Effect.Effect<A, E | ElevenLabsError, R> =>
    // Under a mask: the run loop may yield between any two steps, and an interruption then must not find a
    // span made but not ended, or the overlay set but no frame to take it off. The body inside the frame
    // runs with the caller's interruptibility (`program.restored` when the caller was interruptible).
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        Effect.makeSpan(Spans.callSpanName(plan.operation), spanOptionsOf(plan, pooled)),
        (span): Effect.Effect<A, E | ElevenLabsError, R> => {
          const fiber = running()
          const call = fiber.getRef(CurrentCallOptions)
          const lane = call.lane ?? "default"
          if (pooled) span.attribute(Spans.callAttributes.lane, lane)
          const total = call.deadline === undefined ? live.deadline : callDeadlineOf(call.deadline)
          const refused = plan.invalid !== undefined
            ? new ElevenLabsError({ reason: plan.invalid })
            : total === undefined
            ? invalidDeadline(plan.operation, call)
            : undefined
          if (refused !== undefined || total === undefined) {
            const exit = Exit.fail(refused!)
            try {
              Spans.setCallAttributes(
                span,
                pooled ? recordCall(plan as PooledPlan<any>, exit, 0, metricsContext) : outcomeOf(exit)
              )
            } finally {
              endSpan(fiber, span, exit)
            }
            return exit
          }
          const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
          const outer = fiber.getRef(Deadline.CurrentDeadline)
          const end = now + Duration.toMillis(total)
          // Nested deadlines never extend an outer one.
          const at = outer === undefined ? end : Math.min(outer.at, end)
          const caller = fiber.context
          const state = new Call(plan, attempt, total, at, now, lane, call.idempotent !== false, span, keyId, caller)
          // Still under the mask: the next step pushes the exit frame that puts `caller` back.
          fiber.setContext(
            Context.add(Context.add(caller, Tracer.ParentSpan, span), Deadline.CurrentDeadline, state)
          )
          return Mask.restores(restore) ? program.restored : program.unrestored
        }
      )
    )

  /** Ends the call span as `useSpan` does (the clock's time when tracer timing is on). */
  const endSpan = (fiber: Fiber.Fiber<unknown, unknown>, span: Tracer.Span, exit: Exit.Exit<unknown, unknown>) => {
    if (span.status._tag === "Ended") return
    span.end(
      fiber.getRef(References.TracerTimingEnabled)
        ? fiber.getRef(Clock.Clock).currentTimeNanosUnsafe()
        : BigInt(0),
      exit
    )
  }

  /** The end of every call: its span, and the caller's context back. */
  const leave = (fiber: Fiber.Fiber<unknown, unknown>, call: Call, exit: Exit.Exit<unknown, unknown>): undefined => {
    endSpan(fiber, call.span, exit)
    fiber.setContext(call.caller)
    return undefined
  }

  const outcomes = { calls: 0, errors: 0 }

  /** The end of a pooled call: metrics, the outcome counts and the call span's outcome (synchronously). */
  const finishPooled = (exit: Exit.Exit<unknown, ElevenLabsError>): undefined => {
    const fiber = running()
    const call = current(fiber)
    // The span ends and the context comes back even if recording throws (a plan's `metaOf`, a tracer).
    try {
      outcomes.calls++
      if (exit._tag === "Failure" && countsAsError(exit.cause)) outcomes.errors++
      const seconds = (fiber.getRef(Clock.Clock).currentTimeMillisUnsafe() - call.start) / 1000
      Spans.setCallAttributes(call.span, recordCall(call.plan as PooledPlan<any>, exit, seconds, metricsContext))
    } finally {
      leave(fiber, call, exit)
    }
    return undefined
  }

  /** The end of a read-only call: the span's outcome. */
  const finishReadOnly = (exit: Exit.Exit<unknown, ElevenLabsError>): undefined => {
    const fiber = running()
    const call = current(fiber)
    try {
      Spans.setCallAttributes(call.span, outcomeOf(exit))
    } finally {
      leave(fiber, call, exit)
    }
    return undefined
  }

  /** A program built for both kinds of caller (`enter` runs it under a mask; see there). */
  const programsOf = <A, E, R>(
    body: Effect.Effect<A, E, R>,
    finish: (exit: Exit.Exit<A, E>) => undefined
  ): Programs<A, E, R> => ({
    restored: Effect.onExitPrimitive(Effect.interruptible(body), finish),
    unrestored: Effect.onExitPrimitive(body, finish)
  })

  return { enter, finishPooled, finishReadOnly, outcomes, programsOf }
}
