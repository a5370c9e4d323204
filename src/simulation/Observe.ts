/**
 * The transport-side record of a run: a client wrapper through which the
 * recorder sees every attempt (start, end, status, what kind of answer), the
 * same for the virtual-time runner and the real-time load test.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Exit, Stream } from "effect"
import { HttpClient, type HttpClientError } from "effect/http"
import * as InProcess from "../simulator/InProcess.ts"
import type * as Recorder from "./Recorder.ts"
import { detailStatusOf } from "./Strategies.ts"

const empty = new Uint8Array(0)

/** What kind of answer an attempt got, from its status and body. */
export const kindOf = (status: number, body: Uint8Array): Recorder.AttemptKind => {
  if (status >= 200 && status < 300) return "ok"
  if (status === 429) {
    const detail = detailStatusOf(body)
    return detail === "too_many_concurrent_requests"
      ? "too_many_concurrent_requests"
      : detail === "system_busy"
      ? "system_busy"
      : "rate_limited"
  }
  return status >= 500 ? "server_error" : "client_error"
}

/**
 * Wraps a client so the recorder sees every attempt, its body read to the
 * end (so a concurrency slot is held until the last byte, as a real client
 * holds it). With `drainAudio` a success's audio is read and handed on as an
 * empty body, which saves a copy of every body when only the answer's shape
 * matters (simulations); JSON answers, such as the subscription, are handed
 * on whole. An empty body rather than none: a client that reads the stream
 * must see it end, not fail.
 */
export const observe = (
  client: HttpClient.HttpClient,
  recorder: Recorder.Recorder,
  options: { readonly drainAudio?: boolean | undefined } = {}
): HttpClient.HttpClient => {
  let inFlight = 0
  const { log, now } = recorder
  return HttpClient.transform(client, (effect, request) =>
    Effect.suspend(() => {
      const startMs = now()
      inFlight++
      log.inFlight.push([startMs, inFlight])
      let status = 0
      let kind: Recorder.AttemptKind = "transport"
      return effect.pipe(
        Effect.flatMap((response) => {
          const drain = options.drainAudio === true && response.status >= 200 && response.status < 300 &&
            (response.headers["content-type"] ?? "").startsWith("audio/")
          const read: Effect.Effect<Uint8Array, HttpClientError.HttpClientError> = drain
            ? Effect.as(Stream.runDrain(response.stream), empty)
            : Effect.map(response.arrayBuffer, (b) => new Uint8Array(b))
          return Effect.map(read, (body) => {
            status = response.status
            kind = kindOf(status, body)
            return InProcess.fromBytes(request, status, response.headers, body)
          })
        }),
        Effect.onExit((exit) =>
          Effect.sync(() => {
            inFlight--
            const endMs = now()
            log.inFlight.push([endMs, inFlight])
            if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)) kind = "timeout"
            log.attempts.push({ startMs, endMs, status, kind })
          })
        )
      )
    }))
}
