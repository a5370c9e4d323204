/** The base URL of the `HttpServer` in context (a loopback server on a free port in these tests). */
import { Effect } from "effect"
import { HttpServer } from "effect/http"

export const serverUrl = Effect.map(
  Effect.service(HttpServer.HttpServer),
  (server) => HttpServer.formatAddress(server.address)
)

/** GET over real HTTP with Node's fetch; returns status, content type and body text. */
export const get = (path: string) =>
  Effect.gen(function*() {
    const base = yield* serverUrl
    const res = yield* Effect.promise(() => fetch(`${base}${path}`))
    const body = yield* Effect.promise(() => res.text())
    return { status: res.status, type: res.headers.get("content-type"), body }
  })
