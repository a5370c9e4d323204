/**
 * The metadata ElevenLabs sends in response headers, read once into a plain
 * record. The limiter learns from the concurrency headers, the quota guard
 * commits `character-cost`, and users stitch requests with `request-id`.
 *
 * @since 0.1.0
 */
import type { Headers } from "effect/http"

/** What the response headers of a call said (`docs/api-facts.md` §4.1). */
export interface ResponseMeta {
  /** `request-id`: the id for `previous_request_ids` / `next_request_ids`. */
  readonly requestId?: string | undefined
  /** `history-item-id`. */
  readonly historyItemId?: string | undefined
  /** `character-cost`: credits charged, after the model's discount. */
  readonly characterCost?: number | undefined
  /** `current-concurrent-requests`: in flight on this key and pool, this one included. */
  readonly currentConcurrentRequests?: number | undefined
  /** `maximum-concurrent-requests`: the plan's limit for this pool. */
  readonly maximumConcurrentRequests?: number | undefined
  /** `tts-latency-ms`. */
  readonly ttsLatencyMs?: number | undefined
  /** `x-trace-id`. */
  readonly traceId?: string | undefined
  /** `x-region`. */
  readonly region?: string | undefined
  /** `song-id` (music). */
  readonly songId?: string | undefined
  /** Set by the resilient stack: the audio came from the fallback cache, not from ElevenLabs. */
  readonly fallback?: boolean | undefined
  /** Set by the resilient stack: the result was shared with an identical call in flight. */
  readonly coalesced?: boolean | undefined
}

const int = (value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  const n = Number(value.trim())
  return Number.isFinite(n) && value.trim() !== "" ? n : undefined
}

/** Reads the ElevenLabs headers of a response. Missing or malformed numbers are left out. */
export const fromHeaders = (headers: Headers.Headers): ResponseMeta => ({
  requestId: headers["request-id"],
  historyItemId: headers["history-item-id"],
  characterCost: int(headers["character-cost"]),
  currentConcurrentRequests: int(headers["current-concurrent-requests"]),
  maximumConcurrentRequests: int(headers["maximum-concurrent-requests"]),
  ttsLatencyMs: int(headers["tts-latency-ms"]),
  traceId: headers["x-trace-id"],
  region: headers["x-region"],
  songId: headers["song-id"]
})
