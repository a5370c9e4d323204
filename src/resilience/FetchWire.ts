/**
 * The wire side of `ResilientFetch`: a request made replayable and read for
 * what the pipeline needs (model, billed units, key fingerprint, per-request
 * headers), one attempt on the wire, an answer read to a fresh `Response`,
 * and a streamed body that holds its call's permit until it ends.
 *
 * @internal
 */
import { Clock, Duration, Effect, Exit, Redacted } from "effect"
import { Headers as EffectHeaders } from "effect/http"
import { createHash } from "node:crypto"
import { classifyResponse, timeout } from "../client/Classify.ts"
import * as Endpoints from "../client/Endpoints.ts"
import { ElevenLabsError, type ElevenLabsErrorReason } from "../client/Errors.ts"
import { fromHeaders, type ResponseMeta } from "../client/ResponseMeta.ts"
import * as Validation from "../client/Validation.ts"
import type * as Liveness from "../internal/Liveness.ts"
import * as ConcurrencyLimiter from "./ConcurrencyLimiter.ts"
import * as Deadline from "./Deadline.ts"
import { canonicalJson, type FallbackCodec, partitionOfApiKey } from "./Fallback.ts"
import { readAll, toElevenLabsError } from "./WithResilience.ts"

/** The per-request lane header: `interactive`, `default` or `batch` (not sent upstream). */
export const laneHeader = "x-resilience-lane"

/** The per-request deadline header: whole milliseconds (not sent upstream); overrides the `deadline` option. */
export const deadlineHeader = "x-resilience-deadline"

/** Marks the stack set on a response (`coalesced`, `fallback`), comma-separated, when any. */
export const marksHeader = "x-resilience-marks"

// ============================================================================
// A request, made replayable
// ============================================================================

export interface Prepared {
  readonly method: string
  readonly url: URL
  readonly headers: Headers
  /** Sent again as is by every attempt. */
  readonly body: string | Uint8Array | FormData | URLSearchParams | Blob | undefined
  readonly signal: AbortSignal | undefined
  readonly keyId: string
  readonly lane: ConcurrencyLimiter.Lane | undefined
  /** From the deadline header: milliseconds, or the header's text when it is not a count (refused as the pipeline refuses it). */
  readonly deadline: Duration.Input | undefined
}

const anonymous = "sdk"

export const keyIdOf = (apiKey: string | null | undefined): string =>
  apiKey === null || apiKey === undefined || apiKey === "" ? anonymous : partitionOfApiKey(Redacted.make(apiKey))

const isLane = (u: string | null): u is ConcurrencyLimiter.Lane =>
  u !== null && (ConcurrencyLimiter.lanes as ReadonlyArray<string>).includes(u)

export const prepare = async (input: string | URL | Request, init: RequestInit | undefined): Promise<Prepared> => {
  const request = input instanceof Request ? input : undefined
  const headers = new Headers(init?.headers ?? request?.headers)
  const laneValue = headers.get(laneHeader)
  const deadlineValue = headers.get(deadlineHeader)
  headers.delete(laneHeader)
  headers.delete(deadlineHeader)
  let body = init?.body ?? undefined
  if (body === undefined && request !== undefined && request.body !== null) {
    body = new Uint8Array(await request.arrayBuffer())
  }
  // A stream can be read once: read it now, so that a retry can send it again.
  if (body instanceof ReadableStream) body = new Uint8Array(await new Response(body).arrayBuffer())
  if (body instanceof ArrayBuffer) body = new Uint8Array(body)
  else if (ArrayBuffer.isView(body) && !(body instanceof Uint8Array)) {
    body = new Uint8Array(body.buffer, body.byteOffset, body.byteLength)
  }
  // JSON as bytes (a `Request`, a stream) is read as text, so that its model and characters are seen.
  if (body instanceof Uint8Array && /\bjson\b/i.test(headers.get("content-type") ?? "")) {
    body = new TextDecoder().decode(body)
  }
  return {
    method: (init?.method ?? request?.method ?? "GET").toUpperCase(),
    url: new URL(request?.url ?? String(input)),
    headers,
    body: body as Prepared["body"],
    signal: init?.signal ?? request?.signal ?? undefined,
    keyId: keyIdOf(headers.get("xi-api-key")),
    lane: isLane(laneValue) ? laneValue : undefined,
    deadline: deadlineValue === null
      ? undefined
      : /^\d+$/.test(deadlineValue.trim())
      ? Duration.millis(Number(deadlineValue.trim()))
      : deadlineValue as Duration.Input
  }
}

/** The JSON body as an object, when it is one. */
export const jsonOf = (prepared: Prepared): Record<string, unknown> | undefined => {
  if (typeof prepared.body !== "string") return undefined
  try {
    const parsed: unknown = JSON.parse(prepared.body)
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? parsed as Record<string, unknown>
      : undefined
  } catch {
    return undefined
  }
}

/** The characters a row bills: of `text`, or of every line's `text` (`inputs[].text`); none when absent. */
export const billedCharactersOf = (
  endpoint: Endpoints.Endpoint,
  json: Record<string, unknown> | undefined
): number | undefined => {
  if (endpoint.billing._tag !== "Characters" || json === undefined) return undefined
  if (endpoint.billing.field === "text") {
    return typeof json.text === "string"
      ? Validation.characterCount(json.text)
      : undefined
  }
  if (!Array.isArray(json.inputs)) return undefined
  let n = 0
  for (const line of json.inputs) {
    if (typeof line === "object" && line !== null && typeof (line as { text?: unknown }).text === "string") {
      n += Validation.characterCount((line as { text: string }).text)
    }
  }
  return n
}

/** The credits of a row billed by the audio it makes, when the request sets its length (`duration_seconds`). */
export const creditsOfOutput = (
  endpoint: Endpoints.Endpoint,
  json: Record<string, unknown> | undefined,
  model: string | undefined
) =>
  endpoint.billing._tag === "AudioTime" && endpoint.billing.of === "output" &&
    typeof json?.duration_seconds === "number"
    ? Endpoints.creditsOf(endpoint, json.duration_seconds, model)
    : undefined

export const modelFieldOf = (prepared: Prepared, json: Record<string, unknown> | undefined): string | undefined => {
  const field = json?.model_id ?? (prepared.body instanceof FormData ? prepared.body.get("model_id") : undefined)
  return typeof field === "string" ? field : undefined
}

/** Identical requests of one key: host, path, query and canonical JSON body (hashed; a body not JSON: none). */
export const requestKeyOf = (
  operation: string,
  prepared: Prepared,
  json: Record<string, unknown> | undefined
): string | undefined => {
  if (prepared.body !== undefined && json === undefined) return undefined
  const search = [...prepared.url.searchParams].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  return createHash("sha256")
    .update(
      canonicalJson({
        v: 1,
        operation,
        partition: prepared.keyId,
        host: prepared.url.host,
        path: prepared.url.pathname,
        search,
        body: json
      })
    )
    .digest("hex")
}

// ============================================================================
// Answers
// ============================================================================

/** An answer read to its end: what a fresh `Response` is made of. */
export interface Answered {
  readonly status: number
  readonly statusText: string
  readonly headers: Headers
  readonly body: Uint8Array
  readonly meta: ResponseMeta
}

/**
 * The ElevenLabs answer behind an error's reason, when it was one (handed back as a `Response`). Keyed by the
 * reason: the retry policy ends a call with a copy of the error (with `attempts`) that keeps its reason.
 */
export const answers = new WeakMap<ElevenLabsErrorReason, Answered>()

const recordOf = (headers: Headers): Record<string, string> => {
  const out: Record<string, string> = {}
  headers.forEach((value, name) => {
    out[name] = value
  })
  return out
}

export const metaOf = (headers: Headers): ResponseMeta => fromHeaders(EffectHeaders.fromInput(recordOf(headers)))

/** Statuses whose `Response` must have no body (the Fetch standard's null body statuses). */
const nullBodyStatuses = new Set([101, 103, 204, 205, 304])

export const responseOf = (a: Answered): Response => {
  const headers = new Headers(a.headers)
  const marks = [a.meta.coalesced === true ? "coalesced" : undefined, a.meta.fallback === true ? "fallback" : undefined]
    .filter((m) => m !== undefined)
  if (marks.length > 0) headers.set(marksHeader, marks.join(","))
  // A fresh body per caller: coalesced callers share the bytes, not the stream.
  return new Response(nullBodyStatuses.has(a.status) ? null : a.body.slice(), {
    status: a.status,
    statusText: a.statusText,
    headers
  })
}

/** Reads a body to its end; interrupting the read cancels the body (and with it the download). */
export const readBody = (operation: string, response: Response): Effect.Effect<Uint8Array, ElevenLabsError> =>
  response.body === null ? Effect.succeed(new Uint8Array(0)) : readAll(operation, response.body)

/** Where attempts go: the fetch, and how long one may wait for its response headers. */
export interface Wire {
  readonly transport: () => typeof globalThis.fetch
  /** None: bounded by the deadline only (requests the table does not know). */
  readonly headersTimeout: Duration.Duration | undefined
  /** The longest wait for a chunk of a streamed body the caller reads. */
  readonly idleMillis: number
}

/**
 * One request on the wire, bounded by the headers timeout (or the time the call has left, when shorter); a
 * transport failure or a timeout as an `ElevenLabsError` (a headers timeout is retried, as the client's).
 */
export const sendOnce = (wire: Wire, operation: string, prepared: Prepared, callerSignal = false) => {
  // The attempt's own signal: the caller's abort interrupts the call (the runtime's signal), which aborts it;
  // an attempt handed over to coalesced joiners must not carry the first caller's signal. A response handed
  // back unread (`callerSignal`: pass-through) keeps the caller's too, for its body.
  const sent = Effect.tryPromise({
    try: (signal) =>
      wire.transport()(prepared.url, {
        method: prepared.method,
        headers: prepared.headers,
        body: prepared.body ?? null,
        signal: callerSignal && prepared.signal !== undefined ? AbortSignal.any([signal, prepared.signal]) : signal
      }),
    catch: (e) => toElevenLabsError(operation, e)
  })
  const within = wire.headersTimeout
  return within === undefined ? sent : sent.pipe(
    Deadline.timeoutWithin({
      duration: within,
      orElse: () => Effect.fail(new ElevenLabsError({ reason: timeout(operation, "headers", within) })),
      operation
    })
  )
}

/** A failed answer classified as the library's client does, and remembered for the caller. */
export const failedAnswer = (operation: string, response: Response) =>
  Effect.flatMap(readBody(operation, response), (body) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const headers = recordOf(response.headers)
      const error = new ElevenLabsError({
        reason: classifyResponse({ operation, status: response.status, headers, body, now })
      })
      answers.set(error.reason, {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
        body,
        meta: metaOf(response.headers)
      })
      return Effect.fail(error)
    }))

/** A buffered attempt: the whole answer read inside the permit. */
export const bufferedAttempt = (wire: Wire, operation: string, prepared: Prepared) =>
  Effect.flatMap(
    sendOnce(wire, operation, prepared),
    (response) =>
      !response.ok ?
        failedAnswer(operation, response) :
        Effect.map(readBody(operation, response), (body): Answered => ({
          status: response.status,
          statusText: response.statusText,
          headers: response.headers,
          body,
          meta: metaOf(response.headers)
        }))
  )

export const markAnswered = (a: Answered, meta: Partial<ResponseMeta>): Answered => ({
  ...a,
  meta: { ...a.meta, ...meta }
})
export const metaOfAnswered = (a: Answered): ResponseMeta => a.meta

/** Cached audio: the bytes and their content type; served as a 200 with that type. */
export const answeredCodec: FallbackCodec<Answered> = {
  encode: (a) => ({ audio: a.body, contentType: a.headers.get("content-type") ?? "application/octet-stream" }),
  decode: (cached) => ({
    status: 200,
    statusText: "OK",
    headers: new Headers({ "content-type": cached.contentType }),
    body: cached.audio,
    meta: {}
  })
}

// ============================================================================
// A streamed body, and the permit it holds
// ============================================================================

/**
 * What a streamed body holds (its permit, through `release`) and how it ends. It never refers to the
 * caller's stream, so a stream dropped unread can be collected, and its lease ended then.
 */
class BodyLease {
  ended = false
  /** Why the body was cut (an abort, `close()`, an idle wait): the caller's next read fails with it. */
  failure: unknown = undefined
  readonly reader: ReadableStreamDefaultReader<Uint8Array>
  readonly release: (exit: Exit.Exit<unknown, unknown>) => void
  readonly leave: () => void
  constructor(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    release: (exit: Exit.Exit<unknown, unknown>) => void,
    leave: () => void
  ) {
    this.reader = reader
    this.release = release
    this.leave = leave
  }
}

/** The leases of streamed bodies still open, by fetch (cut by `close()`). */
export type OpenBodies = Set<BodyLease>

const endLease = (lease: BodyLease, open: OpenBodies, exit: Exit.Exit<unknown, unknown>) => {
  if (lease.ended) return
  lease.ended = true
  open.delete(lease)
  collected.unregister(lease)
  lease.release(exit)
  lease.leave()
}

export const cutLease = (lease: BodyLease, open: OpenBodies, reason: unknown) => {
  if (lease.ended) return
  lease.failure = reason
  void lease.reader.cancel(reason).catch(() => undefined)
  endLease(lease, open, Exit.interrupt())
}

/** Bodies dropped unread: their permit comes back when they are collected. */
const collected = new FinalizationRegistry<{ readonly lease: BodyLease; readonly open: OpenBodies }>((
  { lease, open }
) => cutLease(lease, open, new Error("ResilientFetch: the body was dropped unread")))

/**
 * The caller's copy of a streamed body. Its permit comes back (`release`, once) at its last byte, its cancel,
 * its failure, the caller's abort, a wait longer than `idleMillis` for a chunk, `close()`, or its collection
 * (dropped unread). While it is open the process stays alive (`liveness`).
 */
export const heldBody = (
  operation: string,
  upstream: Response,
  signal: AbortSignal | undefined,
  idleMillis: number,
  open: OpenBodies,
  liveness: Liveness.Liveness,
  release: (exit: Exit.Exit<unknown, unknown>) => void
): ReadableStream<Uint8Array> | null => {
  if (upstream.body === null) {
    release(Exit.void)
    return null
  }
  liveness.enter()
  const lease = new BodyLease(upstream.body.getReader(), release, liveness.leave)
  const onAbort = () => cutLease(lease, open, signal?.reason)
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (lease.failure !== undefined) return controller.error(lease.failure)
      // A wall-clock timer, not Effect's Clock: the caller reads this body from Promise code, outside the
      // runtime, so there is no fiber (or TestClock) whose time it could follow.
      const idle = setTimeout(
        () =>
          cutLease(
            lease,
            open,
            new ElevenLabsError({ reason: timeout(operation, "idle", Duration.millis(idleMillis)) })
          ),
        idleMillis
      )
      try {
        const { done, value } = await lease.reader.read()
        if (lease.failure !== undefined) return controller.error(lease.failure)
        if (done) {
          endLease(lease, open, Exit.void)
          controller.close()
        } else controller.enqueue(value)
      } catch (e) {
        endLease(lease, open, Exit.die(e))
        controller.error(lease.failure ?? e)
      } finally {
        clearTimeout(idle)
        if (lease.ended) signal?.removeEventListener("abort", onAbort)
      }
    },
    cancel(reason) {
      signal?.removeEventListener("abort", onAbort)
      endLease(lease, open, Exit.void)
      return lease.reader.cancel(reason)
    }
  })
  open.add(lease)
  collected.register(stream, { lease, open }, lease)
  if (signal?.aborted === true) onAbort()
  else signal?.addEventListener("abort", onAbort, { once: true })
  return stream
}
