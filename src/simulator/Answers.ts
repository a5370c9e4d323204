/**
 * The simulator's answers: what a request gets back ({@link Outcome}), the
 * headers every answer carries, and the error bodies in the API's shapes.
 *
 * **Details**
 *
 * - Every JSON answer is counted as it is built: by status, and by its error
 *   code (`detail.status`, shape A; `validation_error` for a FastAPI 422 list;
 *   a top-level `status`, shape E).
 * - Each answer draws its `x-trace-id` from the model's seeded generator, and
 *   a success its `request-id` and `history-item-id`: building answers is part
 *   of a seed's sequence, so their order is kept.
 *
 * @since 0.1.0
 */
import { Data, Stream } from "effect"
import type { ValidationItem } from "./Checks.ts"
import * as Counts from "./Counts.ts"
import * as Prng from "./Prng.ts"

/** The body of an answer stopped half-way (a stream cut); a transport ends the connection. */
export class StreamCut extends Data.TaggedError("StreamCut")<{}> {}

/** What the model answers to one request. */
export type Outcome =
  | {
    readonly _tag: "Respond"
    readonly status: number
    readonly headers: Readonly<Record<string, string>>
    readonly body: Stream.Stream<Uint8Array, StreamCut>
    /**
     * The whole body when it is one unpaced buffer: a transport may send these
     * bytes at once, after running `body` to its end (which releases the slot).
     */
    readonly whole?: Uint8Array | undefined
  }
  | { readonly _tag: "Reset" }

/** An answer being built: what a handler returns before {@link respond} makes it an {@link Outcome}. */
export interface Pending {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Stream.Stream<Uint8Array, StreamCut>
  readonly whole?: Uint8Array | undefined
}

/** What a success's headers report of its generation. */
export interface Meta {
  readonly latencyMs: number
  readonly inFlight: number
  readonly limit: number
}

/** The {@link Outcome} of a built answer. */
export const respond = (p: Pending): Outcome => ({
  _tag: "Respond",
  status: p.status,
  headers: p.headers,
  body: p.body,
  whole: p.whole
})

/** Whether a step gave an answer to send (rather than its value, which is never one). */
export const isPending = <A extends object>(u: A | Pending): u is Pending => "status" in u

const encoder = new TextEncoder()

/** The answers of one model, over its generator, region and counts. */
export interface Answers {
  /** The headers of every answer (uvicorn, trace id, region, CORS). */
  readonly commonHeaders: (contentType: string) => Record<string, string>
  /** Counts an answer that is not built by {@link json}. */
  readonly record: (status: number, detailStatus: string | undefined) => void
  readonly json: (status: number, body: unknown, extra?: Record<string, string>) => Pending
  /** Shape A: `{"detail":{"status":code,"message":...}}`. */
  readonly detail: (status: number, code: string, message: string, extra?: Record<string, string>) => Pending
  /** FastAPI's `422 {"detail":[...]}`. */
  readonly validation: (items: ReadonlyArray<ValidationItem>) => Pending
  readonly notFound: () => Pending
  readonly tooManyConcurrent: (limit: number) => Pending
  readonly systemBusy: () => Pending
  /** A generation's headers; `character-cost` only when `cost` is given. */
  readonly successHeaders: (meta: Meta, cost: number | undefined) => Record<string, string>
  /** `Retry-After` on every 429 when set (the real API sends none). */
  readonly setRetryAfter: (seconds: number | undefined) => void
}

/** The error code of a JSON error body, as the counts file it. */
const detailStatusOf = (body: unknown): string | undefined => {
  const detail = (body as { detail?: { status?: unknown } } | null)?.detail
  const top = (body as { status?: unknown } | null)?.status
  return typeof detail === "object" && detail !== null && !Array.isArray(detail) && typeof detail.status === "string"
    ? detail.status
    : Array.isArray(detail)
    ? "validation_error"
    : typeof top === "string"
    ? top
    : undefined
}

/** The answers of a model. */
export const make = (options: {
  readonly prng: Prng.Prng
  readonly region: string
  readonly counts: Counts.Counts
  readonly retryAfterSeconds: number | undefined
}): Answers => {
  const { counts, prng, region } = options
  let retryAfterSeconds = options.retryAfterSeconds

  const commonHeaders = (contentType: string): Record<string, string> => ({
    "content-type": contentType,
    "server": "uvicorn",
    "x-trace-id": prng.string(32, Prng.hex),
    "x-region": region,
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "*",
    "access-control-allow-methods": "POST, PATCH, OPTIONS, DELETE, GET, PUT",
    "access-control-max-age": "600"
  })

  const record = (status: number, detailStatus: string | undefined) => {
    Counts.bump(counts.byStatus, String(status))
    if (detailStatus !== undefined) Counts.bump(counts.byDetailStatus, detailStatus)
  }

  const json = (status: number, body: unknown, extra?: Record<string, string>): Pending => {
    const bytes = encoder.encode(JSON.stringify(body))
    record(status, status >= 400 ? detailStatusOf(body) : undefined)
    return {
      status,
      headers: { ...commonHeaders("application/json"), "content-length": String(bytes.length), ...extra },
      body: Stream.succeed(bytes),
      whole: bytes
    }
  }

  const detail = (status: number, code: string, message: string, extra?: Record<string, string>): Pending =>
    json(status, { detail: { status: code, message } }, extra)

  const retryAfterHeader = (): Record<string, string> =>
    retryAfterSeconds === undefined ? {} : { "retry-after": String(retryAfterSeconds) }

  return {
    commonHeaders,
    record,
    json,
    detail,
    validation: (items) => json(422, { detail: items }),
    notFound: () => json(404, { detail: "Not Found" }),
    tooManyConcurrent: (limit) =>
      detail(
        429,
        "too_many_concurrent_requests",
        `Too many concurrent requests. Your current subscription is associated with a maximum of ${limit} concurrent requests (running in parallel). This is done such that a single user does not overwhelm our systems and affect other users negatively. Please upgrade your subscription or contact sales if you want to increase this limit.`,
        retryAfterHeader()
      ),
    systemBusy: () =>
      detail(
        429,
        "system_busy",
        "We are sorry, the system is experiencing heavy traffic, please try again. Higher subscriptions have higher priority.",
        retryAfterHeader()
      ),
    successHeaders: (meta, cost) => ({
      "request-id": prng.string(20, Prng.alphanumeric),
      "history-item-id": prng.string(20, Prng.alphanumeric),
      ...(cost === undefined ? {} : { "character-cost": String(cost) }),
      "current-concurrent-requests": String(meta.inFlight),
      "maximum-concurrent-requests": String(meta.limit),
      "tts-latency-ms": String(meta.latencyMs),
      "access-control-expose-headers":
        "request-id, history-item-id, character-cost, regeneration-count, generation-info, current-concurrent-requests, maximum-concurrent-requests"
    }),
    setRetryAfter: (seconds) => {
      retryAfterSeconds = seconds
    }
  }
}
