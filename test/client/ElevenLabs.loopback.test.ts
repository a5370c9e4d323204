/**
 * The client over real sockets: `NodeHttpClient.layerUndici` against a small
 * `node:http` server on loopback. Checks what a mock cannot: the key header on
 * the wire, multipart as undici encodes it, a chunked body cut by the peer,
 * and a refused connection.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as ElevenLabs from "../../src/client/ElevenLabs.ts"

const apiKey = "sk_loopback_SECRET_abcdef"
const voiceId = "JBFqnCBsd6RMkjVDRZzb"

interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

const serve = (handler: (req: Http.IncomingMessage, res: Http.ServerResponse, body: string) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Http.Server; readonly port: number; readonly seen: Array<Seen> }>((resume) => {
      const seen: Array<Seen> = []
      const server = Http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          const body = Buffer.concat(chunks).toString("latin1")
          seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body })
          handler(req, res, body)
        })
      })
      server.listen(
        0,
        "127.0.0.1",
        () => resume(Effect.succeed({ server, port: (server.address() as AddressInfo).port, seen }))
      )
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

const layerAt = (port: number) =>
  ElevenLabs.layer({ apiKey: Redacted.make(apiKey), baseUrl: `http://127.0.0.1:${port}` }).pipe(
    Layer.provide(NodeHttpClient.layerUndici)
  )

describe("ElevenLabs over loopback HTTP", () => {
  it.live("convert, stream and STT over real sockets", () =>
    Effect.gen(function*() {
      const { port, seen } = yield* serve((req, res) => {
        if (req.url?.startsWith("/v1/speech-to-text")) {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ language_code: "en", language_probability: 1, text: "ok", words: [] }))
          return
        }
        res.writeHead(200, { "content-type": "audio/mpeg", "character-cost": "2", "request-id": "r1" })
        res.write("ab")
        setImmediate(() => res.end("cd"))
      })
      const result = yield* Effect.gen(function*() {
        const el = yield* ElevenLabs.ElevenLabs
        const converted = yield* el.textToSpeech.convert(voiceId, { text: "Hi", modelId: "eleven_flash_v2_5" })
        const streamed = yield* Effect.scoped(Effect.gen(function*() {
          const s = yield* el.textToSpeech.stream(voiceId, { text: "Hi" })
          return yield* Stream.runFold(s.audio, () => "", (acc, c) => acc + new TextDecoder().decode(c))
        }))
        const stt = yield* el.speechToText.convert({ file: new Uint8Array([1, 2, 3]), diarize: true })
        return { converted, streamed, stt }
      }).pipe(Effect.provide(layerAt(port)))
      assert.strictEqual(new TextDecoder().decode(result.converted.audio), "abcd")
      assert.strictEqual(result.converted.meta.characterCost, 2)
      assert.strictEqual(result.streamed, "abcd")
      assert.isTrue("text" in result.stt.transcript)
      assert.strictEqual(seen[0]!.headers["xi-api-key"], apiKey)
      assert.strictEqual(seen[0]!.url, `/v1/text-to-speech/${voiceId}?output_format=mp3_44100_128`)
      assert.deepStrictEqual(JSON.parse(seen[0]!.body), { text: "Hi", model_id: "eleven_flash_v2_5" })
      assert.match(String(seen[2]!.headers["content-type"]), /^multipart\/form-data; boundary=/)
      assert.include(seen[2]!.body, "name=\"diarize\"\r\n\r\ntrue")
      assert.include(seen[2]!.body, "name=\"model_id\"\r\n\r\nscribe_v1")
    }))

  it.live("a body cut by the peer mid-way is Transport; an error status is classified", () =>
    Effect.gen(function*() {
      const { port } = yield* serve((req, res) => {
        if (req.url?.startsWith("/v1/models")) {
          res.writeHead(429, { "content-type": "application/json", "x-trace-id": "trace-x" })
          res.end(JSON.stringify({ detail: { status: "system_busy", message: "busy" } }))
          return
        }
        res.writeHead(200, { "content-type": "audio/mpeg" })
        res.write("partial")
        setImmediate(() => res.socket?.destroy())
      })
      const [cut, busy] = yield* Effect.gen(function*() {
        const el = yield* ElevenLabs.ElevenLabs
        const cut = yield* Effect.flip(el.textToSpeech.convert(voiceId, { text: "Hi" }))
        const busy = yield* Effect.flip(el.models.list())
        return [cut, busy] as const
      }).pipe(Effect.provide(layerAt(port)))
      assert.strictEqual(cut.reason._tag, "Transport")
      assert.strictEqual(busy.reason._tag, "SystemBusy")
      assert.strictEqual(busy.reason.traceId, "trace-x")
      for (const e of [cut, busy]) assert.notInclude(JSON.stringify(e) + String(e), apiKey)
    }))

  it.live("connection refused is Transport", () =>
    Effect.gen(function*() {
      // Take a free port, then close it so nothing listens there.
      const port = yield* Effect.scoped(Effect.map(serve(() => {}), (s) => s.port))
      const error = yield* Effect.flip(
        Effect.gen(function*() {
          const el = yield* ElevenLabs.ElevenLabs
          return yield* el.user.get()
        }).pipe(Effect.provide(layerAt(port)))
      )
      assert.strictEqual(error.reason._tag, "Transport")
      assert.notInclude(error.message, apiKey)
    }))
})
