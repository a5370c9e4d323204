/**
 * Steps 7 and 8 of the pipeline (`Pipeline.ts`): the permit of each attempt (the local limiter's lanes and
 * queue, then the distributed permit), the attempt itself with its span, and the adaptive limit taught by the
 * answers.
 *
 * @internal
 */
import { Cause, Clock, Context, Duration, Effect, type Exit, type Fiber, References, Scope, Tracer } from "effect"
import { ElevenLabsError } from "../client/Errors.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import * as RedisPermits from "../distributed/RedisPermits.ts"
import * as Spans from "../telemetry/Spans.ts"
import type * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import * as Deadline from "./Deadline.ts"
import { attemptAttributes, type BoundRequest, Call, callOf, current, running } from "./PipelineCall.ts"
import * as PipelinePolicies from "./PipelinePolicies.ts"
import type { Pool } from "./Plans.ts"
import { fromDistributed, fromLimiter } from "./Refusals.ts"
import * as RetryPolicy from "./RetryPolicy.ts"

import type { PipelineOptions } from "./Pipeline.ts"

/** What the pipeline's parts share: its policies and what it read of its options once. */
export interface Stack {
  readonly policies: PipelinePolicies.Policies
  readonly options: PipelineOptions
  /** What a live configuration changes, read at each call (`Pipeline.reconfigure`). */
  readonly live: PipelinePolicies.LiveSettings
  readonly staticAttemptOf: ReturnType<typeof attemptAttributes>
  /** The context the stack is built in: its metrics registry (see `make`). */
  readonly metricsContext: Context.Context<never>
}

/** The attempt step and the permits around it. */
export const makeAttempts = (stack: Stack) => {
  const { live, policies, staticAttemptOf } = stack
  const { distributed, keyId, limiter } = policies

  // ---- the adaptive limit, taught by the answers ----------------------------

  /** Feeds the adaptive limit (and the shared one) from an answer's headers. */
  const teach = (permit: ConcurrencyLimiter.Permit, meta: ResponseMeta): Effect.Effect<void> =>
    distributed === undefined
      ? permit.onResponse(meta)
      : Effect.andThen(permit.onResponse(meta), distributed.onResponse(keyId, permit.pool, RedisPermits.signalOf(meta)))

  /** The client's headers hook: teaches the permit of the current call's attempt. */
  const teachCurrent = (meta: ResponseMeta): Effect.Effect<void> =>
    Effect.withFiber((fiber) => {
      const permit = callOf(fiber)?.permit
      return permit === undefined ? Effect.void : teach(permit, meta)
    })

  /** Feeds the adaptive limit (and the shared one) from a concurrency 429. */
  const teachLimited = (permit: ConcurrencyLimiter.Permit, limit: number | undefined): Effect.Effect<void> =>
    distributed === undefined
      ? permit.onConcurrencyLimited(limit)
      : Effect.andThen(permit.onConcurrencyLimited(limit), distributed.onConcurrencyLimited(keyId, permit.pool, limit))

  // ---- step 8: one attempt ----------------------------------------------------

  /**
   * The end of an attempt, in its one exit frame (a function built once, not a closure per attempt): the
   * attempt span (the current span here, when traced) gets its answer (status and request id, or the error's
   * status, detail and reason), and the adaptive limit is fed: from a concurrency 429, and for an opaque
   * attempt (a promise) from a success's headers. An interruption records nothing.
   */
  const attemptEnded = (exit: Exit.Exit<unknown, ElevenLabsError>): Effect.Effect<void> | undefined => {
    const fiber = running()
    const call = current(fiber)
    const permit = call.permit
    const span = fiber.getRef(References.TracerEnabled)
      ? Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
      : undefined
    if (exit._tag === "Success") {
      // Only 2xx answers succeed, and every ElevenLabs success is a 200.
      const meta = call.plan.metaOf(exit.value)
      if (span?._tag === "Span") Spans.setAttemptAttributes(span, { statusCode: 200, requestId: meta?.requestId })
      return permit === undefined || call.attempt.kind === "client" || meta === undefined
        ? undefined
        : teach(permit, meta)
    }
    const error = Cause.findErrorOption(exit.cause)
    if (error._tag === "None") return undefined
    const { reason } = error.value
    if (span?._tag === "Span") {
      Spans.setAttemptAttributes(span, {
        statusCode: reason.status,
        detailStatus: reason.detailStatus,
        errorType: reason._tag
      })
    }
    return permit === undefined || reason._tag !== "ConcurrencyLimited" ? undefined : teachLimited(permit, reason.limit)
  }

  /**
   * One attempt and its span, ended by `attemptEnded`. A client attempt reports its headers as they arrive
   * (`teachCurrent`) and bounds its own waits; an opaque one (a promise) is learnt from once it ends and is
   * raced against the time left here, inside the permit, so only calls in flight race.
   */
  const sendOne = (call: Call, permit: ConcurrencyLimiter.Permit | undefined, attempt: number) =>
    Effect.withFiber((fiber) => {
      const { operation } = call
      const client = call.attempt.kind === "client"
      // With tracing off (`Effect.withTracerEnabled(false)`: simulations) the span and its annotations would
      // be no-ops: what is left is what teaches the limiter.
      const traced = fiber.getRef(References.TracerEnabled)
      const send: Effect.Effect<unknown, ElevenLabsError, unknown> = client
        ? call.attempt.send
        : Deadline.enforce({ operation })(call.attempt.send)
      const ended = traced || permit !== undefined ? Effect.onExitPrimitive(send, attemptEnded) : send
      return traced
        ? Spans.withAttemptSpan(operation, {
          ...staticAttemptOf(operation),
          attempt,
          retryDelayMs: call.delay === undefined ? undefined : Duration.toMillis(call.delay)
        })(ended)
        : ended
    })

  /** A read-only attempt (no permit). */
  const readAttempt = Effect.withFiber((fiber) => {
    const call = current(fiber)
    const attempt = fiber.getRef(RetryPolicy.CurrentAttempt).attempt
    Spans.setCallAttributes(call.span, { attempts: attempt })
    return sendOne(call, undefined, attempt)
  })

  // ---- step 7: the permits ----------------------------------------------------

  /**
   * The queue wait is bounded by the time the call has left. When that bound, not the queue timeout, ran
   * out, the call's deadline expired while it waited, and it fails as the deadline does; else `orElse`.
   */
  const expiredInQueue = (
    operation: string,
    bound: Deadline.PhaseBound,
    orElse: Effect.Effect<never, ElevenLabsError>
  ) => bound.deadline === undefined ? orElse : Effect.fail(Deadline.expired(bound.deadline, operation))

  /**
   * The permit request of the current attempt. Its queue timeout is the limiter's, or the time the call has
   * left when that is shorter (`bound.deadline` is then set: the queue's expiry is the deadline's).
   */
  const requestOf = (fiber: Fiber.Fiber<unknown, unknown>, call: Call, pool: Pool): BoundRequest => {
    const bound = Deadline.boundOf(live.queueTimeoutMillis, call, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
    return {
      key: keyId,
      pool,
      lane: call.lane,
      front: fiber.getRef(RetryPolicy.CurrentAttempt).previous !== undefined,
      timeout: bound.millis,
      bound
    }
  }

  /**
   * The distributed permit, taken after the local one (so the local lanes order callers first) and held
   * in the current scope. Its wait has the same bound as the local queue's (the time left, when shorter).
   */
  const sharedPermit = (call: Call, request: BoundRequest): Effect.Effect<void, ElevenLabsError, Scope.Scope> =>
    distributed === undefined ?
      Effect.void :
      Effect.flatMap(
        Deadline.phaseBound(live.queueTimeout),
        (bound) =>
          distributed.acquire({ key: keyId, pool: request.pool, timeout: Duration.millis(bound.millis) }).pipe(
            Effect.catchTag("DistributedError", (error) => {
              const refused = fromDistributed(call.operation, request.pool, request.lane ?? "default")(error)
              return error.reason._tag === "AcquireTimeout" ? expiredInQueue(call.operation, bound, refused) : refused
            }),
            Effect.asVoid
          )
      )

  /** The permit's bookkeeping on the call and its span; returns the attempt's number. */
  const admitted = (fiber: Fiber.Fiber<unknown, unknown>, call: Call, permit: ConcurrencyLimiter.Permit): number => {
    call.permit = permit
    call.queueWaitMs += permit.waitedMillis
    const attempt = fiber.getRef(RetryPolicy.CurrentAttempt).attempt
    Spans.setCallAttributes(call.span, { attempts: attempt, queueWaitMs: call.queueWaitMs })
    return attempt
  }

  /** The attempt, once the permit is granted (after the wait: allocating here costs a waiting call nothing). */
  const underPermit = (permit: ConcurrencyLimiter.Permit) => {
    const fiber = running()
    const call = current(fiber)
    const sent = sendOne(call, permit, admitted(fiber, call, permit))
    return distributed === undefined ? sent : Effect.scoped(Effect.andThen(sharedPermit(call, call.request!), sent))
  }

  /** A limiter refusal: `QueueFull`, `QueueTimeout`, or the deadline when it ran out in the queue. */
  const queueRefused = (error: ConcurrencyLimiter.ConcurrencyLimiterError) =>
    Effect.withFiber<never, ElevenLabsError>((fiber) => {
      const call = current(fiber)
      const refused = fromLimiter(call.operation)(error)
      return error.reason._tag === "QueueTimeout"
        ? expiredInQueue(call.operation, call.request!.bound, refused)
        : refused
    })

  /** Step 7-8: the attempt under a permit of the call's pool. */
  const limited = Effect.catchTag(
    Effect.withFiber((fiber) => {
      const call = current(fiber)
      const request = requestOf(fiber, call, call.pool!)
      call.request = request
      return limiter.usePermit(request, underPermit)
    }),
    "ConcurrencyLimiterError",
    queueRefused
  )

  return { limited, queueRefused, readAttempt, requestOf, sendOne, sharedPermit, admitted, teachCurrent }
}
