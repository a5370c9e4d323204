/**
 * The body-size rule both faces apply before a body is read: past its limit a
 * body gets `413 payload_too_large` at the declared `Content-Length`, or as
 * soon as the bytes counted pass it, so an oversized body is never held in
 * memory.
 *
 * @since 0.1.0
 */
import { Effect, Stream } from "effect"
import * as Endpoints from "../client/Endpoints.ts"
import { concat } from "../internal/Bytes.ts"
import { type Answers, type Outcome, respond } from "./Answers.ts"
import type { IncomingRequest } from "./Checks.ts"
import type * as Counts from "./Counts.ts"

/**
 * The largest request body the simulator reads, in bytes, per kind of request.
 * A body past its limit gets `413 payload_too_large` before it is read
 * (declared `Content-Length`), or as soon as the count passes it (a body of
 * unknown length), so an oversized body is never held in memory.
 */
export interface BodyLimits {
  /**
   * A `multipart/form-data` upload to a row that takes one (`POST /v1/speech-to-text`, speech to
   * speech, audio isolation). Default 100 MiB, a choice: an upload under the limit is held in
   * memory (three to four times its size at the peak, while parsed). The API takes files under 5.0 GB (the OpenAPI document,
   * `Body_Speech_to_Text_v1_speech_to_text_post.file`; docs/api-facts.md §2.2); set
   * `5 * 1024 ** 3` to accept what it accepts, on a machine with the memory.
   */
  readonly upload: number
  /**
   * Every other body (JSON, text, URL-encoded or multipart forms elsewhere). Default 10 MiB,
   * a choice (the sources give no limit): the largest TTS body, 40,000 characters
   * (Flash v2.5), is under 250 KB even with every character `\u`-escaped.
   */
  readonly json: number
}

/** The default {@link BodyLimits}: uploads 100 MiB, other bodies 10 MiB. */
export const defaultBodyLimits: BodyLimits = { upload: 100 * 1024 ** 2, json: 10 * 1024 ** 2 }

/**
 * What the body-size rule reads of a request before its body: method, URL and
 * headers (`content-type` picks the limit, `content-length` is checked first).
 * A Web `Request` and an {@link IncomingRequest} are both one.
 */
export type BodyHead = Pick<IncomingRequest, "method" | "url" | "headers">

/** A body read under the size rule: its bytes, or the `413` to send instead. */
export type BodyRead =
  | { readonly _tag: "Body"; readonly bytes: Uint8Array }
  | { readonly _tag: "Refused"; readonly outcome: Outcome }

/** The rule of one model. */
export interface BodyLimit {
  /** The `413` for a body of `length` bytes past the request's limit, else `undefined`. */
  readonly checkBody: (head: BodyHead, length: number) => Outcome | undefined
  /** Reads a body under the rule (refused at the declared length, or as soon as the count passes the limit). */
  readonly readBody: <E>(head: BodyHead, body: Stream.Stream<Uint8Array, E>) => Effect.Effect<BodyRead, E>
}

/** The rule over `limits`; a refused body counts as a request. */
export const make = (options: {
  readonly limits: BodyLimits
  readonly answers: Answers
  readonly counts: Counts.Counts
}): BodyLimit => {
  const { answers, counts, limits } = options

  /** Uploads are the multipart bodies of the rows that take one (`body: "multipart"`: STT, speech to speech, isolation). */
  const limitOf = (head: BodyHead): number => {
    const contentType = (head.headers.get("content-type") ?? "").toLowerCase()
    if (!contentType.startsWith("multipart/form-data")) return limits.json
    const found = Endpoints.match(head.method, new URL(head.url).pathname)
    return found._tag === "Found" && found.endpoint.body === "multipart" ? limits.upload : limits.json
  }

  const smallest = Math.min(limits.upload, limits.json)

  const checkBody = (head: BodyHead, length: number): Outcome | undefined => {
    if (length <= smallest) return undefined // the common case, without parsing the URL
    const limit = limitOf(head)
    if (length <= limit) return undefined
    counts.requests++
    // The sources give no 413 body: shape A, and `connection: close` as the rest of the body is not read.
    return respond(answers.detail(
      413,
      "payload_too_large",
      `The request body is larger than the ${limit} bytes this endpoint accepts.`,
      { connection: "close" }
    ))
  }

  const readBody = <E>(head: BodyHead, body: Stream.Stream<Uint8Array, E>): Effect.Effect<BodyRead, E> =>
    Effect.suspend(() => {
      const declared = head.headers.get("content-length")
      const refused = declared === null || declared.trim() === "" || !Number.isFinite(Number(declared))
        ? undefined
        : checkBody(head, Number(declared))
      if (refused !== undefined) return Effect.succeed<BodyRead>({ _tag: "Refused", outcome: refused })
      const limit = limitOf(head)
      const chunks: Array<Uint8Array> = []
      let total = 0
      return Stream.runForEachWhile(body, (chunk) =>
        Effect.sync(() => {
          total += chunk.byteLength
          if (total > limit) return false
          chunks.push(chunk)
          return true
        })).pipe(Effect.map((): BodyRead => {
          const over = checkBody(head, total)
          return over !== undefined ? { _tag: "Refused", outcome: over } : { _tag: "Body", bytes: concat(chunks) }
        }))
    })

  return { checkBody, readBody }
}
