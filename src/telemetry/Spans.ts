/**
 * Span names, attribute names and small helpers for tracing ElevenLabs calls:
 * one span per logical call, one child span per attempt, and events for
 * retries, breaker transitions, limit changes and quota warnings.
 *
 * **Details**
 *
 * - The call span is `elevenlabs.<operation>` (kind `internal`), for example
 *   `elevenlabs.textToSpeech.convert`. Its attributes are the `elevenlabs.*`
 *   names of {@link CallAttributes}; `characters` is a count, never the text.
 * - The attempt span is `elevenlabs.<operation>.attempt` (kind `client`) with
 *   the OpenTelemetry HTTP semantic conventions (`http.request.method`,
 *   `url.template`, `http.response.status_code`, `server.address`,
 *   `error.type`) plus `elevenlabs.detail_status`, `elevenlabs.request_id`,
 *   `elevenlabs.retry_delay_ms`.
 * - Undefined attributes are left out, never written as `undefined`.
 * - Event helpers add to the current span and do nothing when there is none.
 *   Their time comes from `Clock`.
 * - The API key never goes in an attribute: nothing here takes one.
 *
 * **Example** (A call with one attempt)
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Spans } from "elevenlabs-resilience/telemetry"
 *
 * const attempt = httpCall.pipe(
 *   Spans.withAttemptSpan("textToSpeech.convert", { method: "POST", urlTemplate: "/v1/text-to-speech/{voice_id}", serverAddress: "api.elevenlabs.io", attempt: 1 })
 * )
 * const call = attempt.pipe(
 *   Effect.tap(() => Spans.annotateCall({ outcome: "success", attempts: 1 })),
 *   Spans.withCallSpan("textToSpeech.convert", { model: "eleven_multilingual_v2", voiceId: "JBFqnCBsd6RMkjVDRZzb", characters: 42, pool: "standard" })
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Effect, Option, Tracer } from "effect"

// ==== Names =================================================================

/** Attribute names of the call span. */
export const callAttributes = {
  operation: "elevenlabs.operation",
  model: "elevenlabs.model",
  voiceId: "elevenlabs.voice_id",
  characters: "elevenlabs.characters",
  lane: "elevenlabs.lane",
  pool: "elevenlabs.pool",
  attempts: "elevenlabs.attempts",
  queueWaitMs: "elevenlabs.queue_wait_ms",
  outcome: "elevenlabs.outcome",
  errorReason: "elevenlabs.error_reason",
  fallbackUsed: "elevenlabs.fallback_used",
  coalesced: "elevenlabs.coalesced"
} as const

/** Attribute names of the attempt span (OpenTelemetry HTTP semantic conventions, plus ElevenLabs details). */
export const attemptAttributes = {
  method: "http.request.method",
  urlTemplate: "url.template",
  statusCode: "http.response.status_code",
  serverAddress: "server.address",
  serverPort: "server.port",
  errorType: "error.type",
  attempt: "elevenlabs.attempt",
  detailStatus: "elevenlabs.detail_status",
  requestId: "elevenlabs.request_id",
  retryDelayMs: "elevenlabs.retry_delay_ms"
} as const

/** Event names. */
export const events = {
  retry: "elevenlabs.retry",
  breakerTransition: "elevenlabs.breaker.transition",
  limitChange: "elevenlabs.limit.change",
  quotaWarning: "elevenlabs.quota.warning"
} as const

/** The call span's name for an operation. */
export const callSpanName = (operation: string): string => `elevenlabs.${operation}`

/** The span of one configuration version applied or refused by a live configuration (`LiveConfig`). */
export const configSpanName = "elevenlabs.config.apply"

/** The attributes of {@link configSpanName}. */
export const configAttributes = {
  source: "elevenlabs.config.source",
  version: "elevenlabs.config.version",
  result: "elevenlabs.config.result"
} as const

/** The attempt span's name for an operation. */
export const attemptSpanName = (operation: string): string => `elevenlabs.${operation}.attempt`

// ==== Attribute models =======================================================

/** What is known of a call when it starts or ends (all optional). */
export interface CallAttributes {
  readonly model?: string | undefined
  readonly voiceId?: string | undefined
  /** A count of characters; never the text itself. */
  readonly characters?: number | undefined
  readonly lane?: string | undefined
  readonly pool?: string | undefined
  readonly attempts?: number | undefined
  readonly queueWaitMs?: number | undefined
  readonly outcome?: "success" | "error" | "fallback" | undefined
  readonly errorReason?: string | undefined
  readonly fallbackUsed?: boolean | undefined
  readonly coalesced?: boolean | undefined
}

/** What is known of an attempt (all optional but the method). */
export interface AttemptAttributes {
  readonly method?: string | undefined
  readonly urlTemplate?: string | undefined
  readonly statusCode?: number | undefined
  readonly serverAddress?: string | undefined
  readonly serverPort?: number | undefined
  /** `error.type`: the reason tag of a failed attempt. */
  readonly errorType?: string | undefined
  /** 1 for the first attempt. */
  readonly attempt?: number | undefined
  readonly detailStatus?: string | undefined
  readonly requestId?: string | undefined
  readonly retryDelayMs?: number | undefined
}

const mapAttributes = <K extends string>(
  names: { readonly [P in K]: string },
  attrs: { readonly [P in K]?: unknown }
): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  // Over the given attributes (a few), not over every known name.
  for (const k in attrs) {
    const v = attrs[k]
    if (v !== undefined && Object.hasOwn(names, k)) out[names[k]] = v
  }
  return out
}

/** The call attributes under their span names, undefined ones left out. */
export const toCallAttributes = (attrs: CallAttributes): Record<string, unknown> => mapAttributes(callAttributes, attrs)

/** The attempt attributes under their span names, undefined ones left out. */
export const toAttemptAttributes = (attrs: AttemptAttributes): Record<string, unknown> =>
  mapAttributes(attemptAttributes, attrs)

// ==== Span helpers ===========================================================
//
// The spans capture no stack trace (`captureStackTrace: false`): the frame
// Effect would record is this library's, the same for every call, and taking
// it costs an `Error` per span on the request path.

/** Runs `self` in the call span `elevenlabs.<operation>`. */
export const withCallSpan =
  (operation: string, attrs: CallAttributes = {}) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withSpan(self, callSpanName(operation), { ...callSpanOptions(operation, attrs), captureStackTrace: false })

/** The options of a call span (kind internal, the operation and `attrs`), for `Effect.withSpan` or `Effect.useSpan`. */
export const callSpanOptions = (operation: string, attrs: CallAttributes = {}) => ({
  kind: "internal" as const,
  attributes: { [callAttributes.operation]: operation, ...toCallAttributes(attrs) }
})

/** Runs `self` in an attempt span `elevenlabs.<operation>.attempt` (kind client). */
export const withAttemptSpan =
  (operation: string, attrs: AttemptAttributes = {}) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    // `useSpan` (no stack trace taken) and the parent span in one overlay: `withSpan` adds a stack-frame overlay
    // as well, which a span without a stack trace does not need.
    Effect.useSpan(
      attemptSpanName(operation),
      { kind: "client", attributes: toAttemptAttributes(attrs) },
      (span) => Effect.provideService(self, Tracer.ParentSpan, span)
    )

/** Adds call attributes to the current span (the call span when called in it). */
export const annotateCall = (attrs: CallAttributes): Effect.Effect<void> =>
  Effect.annotateCurrentSpan(toCallAttributes(attrs))

/** Sets the given attributes on `span` under their span names, undefined ones left out (as `mapAttributes`). */
const setAttributes = <K extends string>(
  names: { readonly [P in K]: string },
  span: Tracer.Span,
  attrs: { readonly [P in K]?: unknown }
): void => {
  for (const k in attrs) {
    const v = attrs[k]
    if (v !== undefined && Object.hasOwn(names, k)) span.attribute(names[k], v)
  }
}

/** Sets call attributes on `span` directly (no effect: for a span the caller holds, such as the pipeline's). */
export const setCallAttributes = (span: Tracer.Span, attrs: CallAttributes): void =>
  setAttributes(callAttributes, span, attrs)

/** Sets attempt attributes on `span` directly (no effect: for a span the caller holds, such as the pipeline's). */
export const setAttemptAttributes = (span: Tracer.Span, attrs: AttemptAttributes): void =>
  setAttributes(attemptAttributes, span, attrs)

/** Adds attempt attributes (status code, detail status, request id, ...) to the current span. */
export const annotateAttempt = (attrs: AttemptAttributes): Effect.Effect<void> =>
  Effect.annotateCurrentSpan(toAttemptAttributes(attrs))

/** Adds an event to the current span, timed by `Clock`; nothing when there is no span. */
export const addEvent = (name: string, attributes: Record<string, unknown>): Effect.Effect<void> =>
  Effect.gen(function*() {
    const span = yield* Effect.option(Effect.currentSpan)
    if (Option.isNone(span)) return
    const now = yield* Clock.currentTimeNanos
    const clean: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(attributes)) if (v !== undefined) clean[k] = v
    span.value.event(name, now, clean)
  })

/** A retry is scheduled: which attempt failed, why, and the delay before the next. */
export const retryEvent = (options: {
  readonly attempt: number
  readonly reason: string
  readonly delayMs: number
}): Effect.Effect<void> =>
  addEvent(events.retry, {
    [attemptAttributes.attempt]: options.attempt,
    [callAttributes.errorReason]: options.reason,
    [attemptAttributes.retryDelayMs]: options.delayMs
  })

/** A breaker changed state. */
export const breakerTransitionEvent = (options: {
  readonly pool: string
  readonly from: string
  readonly to: string
}): Effect.Effect<void> =>
  addEvent(events.breakerTransition, {
    [callAttributes.pool]: options.pool,
    "elevenlabs.breaker.from": options.from,
    "elevenlabs.breaker.to": options.to
  })

/** A pool's concurrency limit changed (adaptive limit, header, plan). */
export const limitChangeEvent = (options: {
  readonly pool: string
  readonly from: number
  readonly to: number
  readonly cause?: string | undefined
}): Effect.Effect<void> =>
  addEvent(events.limitChange, {
    [callAttributes.pool]: options.pool,
    "elevenlabs.limit.from": options.from,
    "elevenlabs.limit.to": options.to,
    "elevenlabs.limit.cause": options.cause
  })

/** Quota usage crossed the warning level. */
export const quotaWarningEvent = (options: {
  readonly usedPercentage: number
  readonly remaining?: number | undefined
}): Effect.Effect<void> =>
  addEvent(events.quotaWarning, {
    "elevenlabs.quota.used_percentage": options.usedPercentage,
    "elevenlabs.quota.remaining": options.remaining
  })

// ==== Real-time sessions =====================================================
//
// A WebSocket session (`RealtimeSession`) is one call span, `elevenlabs.<operation>` (for example
// `elevenlabs.textToSpeech.streamInput`), with the call attributes above and these; each reconnect is a child
// span `elevenlabs.<operation>.reconnect`. Counts only: never the text, the URL's query or the key.

/** Attribute names of the session and reconnect spans. */
export const realtimeAttributes = {
  /** Reconnects the session made (session span). */
  reconnects: "elevenlabs.realtime.reconnects",
  /** The reconnect's number, 1 for the first (reconnect span). */
  reconnect: "elevenlabs.realtime.reconnect",
  /** Characters answered (aligned) by the server. */
  charactersAnswered: "elevenlabs.realtime.characters_answered",
  /** Characters sent again after reconnects. */
  charactersResent: "elevenlabs.realtime.characters_resent",
  /** Contexts opened (multi-context connections). */
  contexts: "elevenlabs.realtime.contexts"
} as const

/** The reconnect span's name for an operation. */
export const reconnectSpanName = (operation: string): string => `elevenlabs.${operation}.reconnect`
