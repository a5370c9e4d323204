/**
 * A scripted `HttpClient` for the client tests: records every request (and
 * the redacted header names in force when it was sent) and answers with a
 * `Response` from the script.
 */
import { Effect, Layer, Redacted } from "effect"
import { Headers, HttpClient, HttpClientRequest, HttpClientResponse } from "effect/http"
import * as ElevenLabs from "../../src/client/ElevenLabs.ts"

export const apiKey = "sk_test_SECRET_0123456789abcdefFEDCBA"

export interface Recorded {
  readonly request: HttpClientRequest.HttpClientRequest
  readonly url: URL
  readonly redactedNames: ReadonlyArray<string | RegExp>
  /** The abort signal of the request: aborted when the client gives the request up. */
  readonly signal: AbortSignal
}

export type Reply = (request: HttpClientRequest.HttpClientRequest, url: URL) => Effect.Effect<Response>

export interface Mock {
  readonly requests: Array<Recorded>
  readonly client: HttpClient.HttpClient
  readonly layer: Layer.Layer<ElevenLabs.ElevenLabs>
}

/** A mock transport and the ElevenLabs layer over it. */
export const mock = (reply: Reply, options?: Partial<ElevenLabs.Options>): Mock => {
  const requests: Array<Recorded> = []
  const client = HttpClient.make((request, url, signal) =>
    Effect.withFiber((fiber) => {
      requests.push({ request, url, signal, redactedNames: fiber.getRef(Headers.CurrentRedactedNames) })
      return Effect.map(reply(request, url), (response) => HttpClientResponse.fromWeb(request, response))
    })
  )
  const layer = ElevenLabs.layer({ apiKey: Redacted.make(apiKey), baseUrl: "https://api.test", ...options }).pipe(
    Layer.provide(Layer.succeed(HttpClient.HttpClient, client))
  )
  return { requests, client, layer }
}

/** A JSON answer. */
export const json = (body: unknown, init?: { status?: number; headers?: Record<string, string> }) =>
  Effect.succeed(
    new Response(typeof body === "string" ? body : JSON.stringify(body), {
      status: init?.status ?? 200,
      headers: { "content-type": "application/json", ...init?.headers }
    })
  )

/** A body sent as the given chunks, then closed (or left open with `stall`). */
export const chunked = (
  chunks: ReadonlyArray<Uint8Array | string>,
  options?: { readonly stall?: boolean; readonly cut?: boolean }
) => {
  const encoder = new TextEncoder()
  let i = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks[i++]
      if (next !== undefined) {
        controller.enqueue(typeof next === "string" ? encoder.encode(next) : next)
        return
      }
      if (options?.cut) {
        controller.error(new TypeError("terminated: other side closed"))
        return
      }
      if (options?.stall) return new Promise<void>(() => {})
      controller.close()
    }
  })
}

/** An audio answer with ElevenLabs' success headers. */
export const audio = (
  body: ReadableStream<Uint8Array> | Uint8Array | string,
  headers?: Record<string, string>,
  status = 200
) =>
  Effect.succeed(
    new Response(body as ConstructorParameters<typeof Response>[0], {
      status,
      headers: {
        "content-type": "audio/mpeg",
        "request-id": "npQR4Xoyx4KHXQHSEy4s",
        "history-item-id": "OC6wybolpiQDhzjCRd1o",
        "character-cost": "5",
        "current-concurrent-requests": "1",
        "maximum-concurrent-requests": "10",
        "x-trace-id": "0123456789abcdef0123456789abcdef",
        ...headers
      }
    })
  )

/** Reads a request's JSON body. */
export const jsonBody = (request: HttpClientRequest.HttpClientRequest): unknown => {
  const body = request.body
  if (body._tag !== "Uint8Array") throw new Error(`expected a JSON body, got ${body._tag}`)
  return JSON.parse(new TextDecoder().decode(body.body))
}
