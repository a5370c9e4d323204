/**
 * The request-body size rule on both faces: a body past its limit gets
 * `413 payload_too_large` before it is read (declared `Content-Length`) or as
 * soon as the count passes the limit (a body of unknown length), and bodies
 * under the limit are answered as before.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { HttpBody, HttpClient, HttpClientRequest } from "effect/http"
import { TestClock } from "effect/testing"
import { connect } from "node:net"
import { classifyResponse } from "../../src/client/Classify.ts"
import { isRetryable, reasonPolicies } from "../../src/client/Errors.ts"
import * as Answers from "../../src/simulator/Answers.ts"
import * as BodyLimit from "../../src/simulator/BodyLimit.ts"
import * as Counts from "../../src/simulator/Counts.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Prng from "../../src/simulator/Prng.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const ttsBody = (text: string) => JSON.stringify({ text, model_id: "eleven_flash_v2_5" })
const fast: Simulator.Options["latency"] = {
  flash: { ttfbMs: 1, msPerUnit: 0.01, jitter: 0 },
  stt: { ttfbMs: 1, msPerUnit: 0.1, jitter: 0 }
}

interface RawAnswer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /** Milliseconds from the last byte written to the server closing the connection. */
  readonly closedAfterMs: number
}

/**
 * Writes `head` and then `body` on a raw socket, never ending the request, and
 * reads until the server closes the connection: what a client sees when it
 * has promised more than it sends.
 */
const rawExchange = (port: number, head: string, body: string | Buffer = "") =>
  Effect.promise(() =>
    new Promise<RawAnswer>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1")
      const chunks: Array<Buffer> = []
      let sentAt = 0
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`no close within 5 s; got ${JSON.stringify(Buffer.concat(chunks).toString("latin1"))}`))
      }, 5_000)
      socket.on("connect", () => {
        socket.write(head)
        socket.write(body, () => (sentAt = performance.now()))
      })
      socket.on("data", (d: Buffer) => chunks.push(d))
      socket.on("error", () => {}) // a reset after the answer is fine: the answer is what is checked
      socket.on("close", () => {
        clearTimeout(timer)
        const text = Buffer.concat(chunks).toString("latin1")
        const end = text.indexOf("\r\n\r\n")
        const lines = text.slice(0, end).split("\r\n")
        const headers: Record<string, string> = {}
        for (const line of lines.slice(1)) {
          const i = line.indexOf(":")
          headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
        }
        resolve({
          status: Number(lines[0]?.split(" ")[1]),
          headers,
          body: text.slice(end + 4),
          closedAfterMs: performance.now() - sentAt
        })
      })
    })
  )

const requestHead = (path: string, headers: Record<string, string>) =>
  `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nxi-api-key: sim-key\r\n` +
  Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n"

const assertTooLarge = (answer: RawAnswer, limit: number) => {
  assert.strictEqual(answer.status, 413, JSON.stringify(answer))
  assert.strictEqual(answer.headers["connection"], "close")
  assert.strictEqual(answer.headers["content-type"], "application/json")
  assert.deepStrictEqual(JSON.parse(answer.body), {
    detail: {
      status: "payload_too_large",
      message: `The request body is larger than the ${limit} bytes this endpoint accepts.`
    }
  })
}

describe("request body limits", () => {
  describe("server face (real HTTP over loopback)", () => {
    it.live("a declared Content-Length past the limit is refused at once, without the body", () =>
      Effect.gen(function*() {
        const { port, simulator } = yield* Server.serve({ port: 0, latency: fast })
        const before = process.memoryUsage().arrayBuffers
        // 200 MB promised, 13 bytes sent: the answer can only come before the body.
        const answer = yield* rawExchange(
          port,
          requestHead(`/v1/text-to-speech/${voice}`, {
            "content-type": "application/json",
            "content-length": "200000000"
          }),
          "{\"text\":\"hi\","
        )
        assertTooLarge(answer, Simulator.defaultBodyLimits.json)
        assert.isBelow(answer.closedAfterMs, 2_000)
        assert.isBelow(process.memoryUsage().arrayBuffers - before, 50 * 1024 * 1024)
        const stats = yield* simulator.stats
        assert.strictEqual(stats.byStatus["413"], 1)
        assert.strictEqual(stats.byDetailStatus["payload_too_large"], 1)
      }).pipe(Effect.scoped))

    it.live("with Expect: 100-continue the 413 comes instead of the 100", () =>
      Effect.gen(function*() {
        const { port } = yield* Server.serve({ port: 0, latency: fast })
        const answer = yield* rawExchange(
          port,
          requestHead(`/v1/text-to-speech/${voice}`, {
            "content-type": "application/json",
            "content-length": "200000000",
            "expect": "100-continue"
          })
        )
        assertTooLarge(answer, Simulator.defaultBodyLimits.json)
      }).pipe(Effect.scoped))

    it.live("an upload has its own limit, 100 MiB by default (it is held in memory): 200 MB to speech to text is refused", () =>
      Effect.gen(function*() {
        // The API takes files under 5 GB, but an upload under the limit is buffered: the default stays small.
        assert.strictEqual(Simulator.defaultBodyLimits.upload, 100 * 1024 ** 2)
        const { port } = yield* Server.serve({ port: 0, latency: fast })
        const answer = yield* rawExchange(
          port,
          requestHead("/v1/speech-to-text", {
            "content-type": "multipart/form-data; boundary=x",
            "content-length": String(200 * 1000 ** 2)
          }),
          "--x\r\n"
        )
        assertTooLarge(answer, 104_857_600)
      }).pipe(Effect.scoped))

    it.live("a chunked body is counted as it arrives and refused once past the limit, before it ends", () =>
      Effect.gen(function*() {
        const { port } = yield* Server.serve({ port: 0, latency: fast, bodyLimits: { json: 1024 } })
        // 2000 bytes in one chunk and no final chunk: the request never ends on its own.
        const chunk = "x".repeat(2000)
        const answer = yield* rawExchange(
          port,
          requestHead(`/v1/text-to-speech/${voice}`, {
            "content-type": "application/json",
            "transfer-encoding": "chunked"
          }),
          `${chunk.length.toString(16)}\r\n${chunk}\r\n`
        )
        assertTooLarge(answer, 1024)
        assert.isBelow(answer.closedAfterMs, 2_000)
      }).pipe(Effect.scoped))

    it.live("bodies under the limit are answered as before: with Content-Length, chunked, multipart", () =>
      Effect.gen(function*() {
        const { url, simulator } = yield* Server.serve({
          port: 0,
          latency: fast,
          bodyLimits: { json: 1024, upload: 64 * 1024 }
        })
        const statuses = yield* Effect.promise(async () => {
          const tts = (body: string | ReadableStream<Uint8Array>, extra: RequestInit = {}) =>
            fetch(`${url}/v1/text-to-speech/${voice}`, {
              method: "POST",
              headers: { "xi-api-key": "sim-key", "content-type": "application/json" },
              body,
              ...extra
            }).then(async (r) => (await r.arrayBuffer(), r.status))
          const withLength = await tts(ttsBody("Under the limit."))
          const bytes = new TextEncoder().encode(ttsBody("Chunked, under the limit."))
          const chunked = await tts(
            new ReadableStream({
              start(controller) {
                controller.enqueue(bytes.slice(0, 10))
                controller.enqueue(bytes.slice(10))
                controller.close()
              }
            }),
            { duplex: "half" } as RequestInit
          )
          const overByOne = await tts(ttsBody("x".repeat(1024)))
          // 32 KB of audio is over the JSON limit but under the upload limit.
          const form = new FormData()
          form.set("model_id", "scribe_v1")
          form.set("file", new Blob([new Uint8Array(32_000)], { type: "audio/wav" }), "a.wav")
          const stt = await fetch(`${url}/v1/speech-to-text`, {
            method: "POST",
            headers: { "xi-api-key": "sim-key" },
            body: form
          })
          await stt.arrayBuffer()
          return { withLength, chunked, overByOne, stt: stt.status }
        })
        assert.deepStrictEqual(statuses, { withLength: 200, chunked: 200, overByOne: 413, stt: 200 })
        assert.strictEqual((yield* simulator.stats).byStatus["413"], 1)
      }).pipe(Effect.scoped))
  })

  describe("in-process face (the same rule)", () => {
    const tts = (text: string) =>
      HttpClientRequest.post(`/v1/text-to-speech/${voice}`).pipe(
        HttpClientRequest.setHeader("xi-api-key", "sim-key"),
        HttpClientRequest.bodyJsonUnsafe({ text, model_id: "eleven_flash_v2_5" })
      )
    const layer = InProcess.layerSimulated({ latency: fast, bodyLimits: { json: 1024, upload: 64 * 1024 } })

    const json = (response: { readonly json: Effect.Effect<unknown, unknown> }) => Effect.orDie(response.json)

    it.effect("a JSON body past the limit gets the 413 with the API's error shape; one under it is answered", () =>
      Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        const refused = yield* client.execute(tts("x".repeat(1024)))
        assert.strictEqual(refused.status, 413)
        assert.deepStrictEqual(yield* json(refused), {
          detail: {
            status: "payload_too_large",
            message: "The request body is larger than the 1024 bytes this endpoint accepts."
          }
        })
        const fiber = yield* Effect.forkChild(client.execute(tts("Under the limit.")))
        yield* TestClock.adjust("5 seconds")
        assert.strictEqual((yield* Fiber.join(fiber)).status, 200)
      }).pipe(Effect.provide(layer)))

    it.effect("a streamed body: a declared length past the limit is refused unread; an endless one is cut off", () =>
      Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        const request = HttpClientRequest.post(`/v1/text-to-speech/${voice}`).pipe(
          HttpClientRequest.setHeader("xi-api-key", "sim-key")
        )
        let pulled = 0
        const counted = Stream.fromEffectRepeat(Effect.sync(() => {
          pulled++
          return new Uint8Array(100)
        }))
        const declared = yield* client.execute(
          HttpClientRequest.setBody(request, HttpBody.stream(counted, "application/json", 200_000_000))
        )
        assert.strictEqual(declared.status, 413)
        assert.strictEqual(pulled, 0)
        const endless = yield* client.execute(
          HttpClientRequest.setBody(request, HttpBody.stream(counted, "application/json"))
        )
        assert.strictEqual(endless.status, 413)
        // Read to just past the limit (1024 bytes: 11 chunks of 100) and a little read-ahead, not forever.
        assert.isBelow(pulled, 100)
        const under = new TextEncoder().encode(ttsBody("A streamed body under the limit."))
        const fiber = yield* Effect.forkChild(client.execute(
          HttpClientRequest.setBody(
            request,
            HttpBody.stream(Stream.make(under.subarray(0, 10), under.subarray(10)), "application/json")
          )
        ))
        yield* TestClock.adjust("5 seconds")
        assert.strictEqual((yield* Fiber.join(fiber)).status, 200)
      }).pipe(Effect.provide(layer)))

    // Live: a form is encoded through promises, which TestClock does not wait for.
    it.live("form data to speech to text goes by the upload limit", () =>
      Effect.gen(function*() {
        const client = yield* HttpClient.HttpClient
        const upload = (size: number) => {
          const form = new FormData()
          form.set("model_id", "scribe_v1")
          form.set("file", new Blob([new Uint8Array(size)], { type: "audio/wav" }), "a.wav")
          return HttpClientRequest.post("/v1/speech-to-text").pipe(
            HttpClientRequest.setHeader("xi-api-key", "sim-key"),
            HttpClientRequest.bodyFormData(form)
          )
        }
        const refused = yield* client.execute(upload(100_000))
        assert.strictEqual(refused.status, 413)
        assert.include(((yield* json(refused)) as { detail: { message: string } }).detail.message, "65536 bytes")
        assert.strictEqual((yield* client.execute(upload(32_000))).status, 200)
        // Past the limit only once encoded (the parts alone are under it): the exact count refuses it.
        const encodedOver = yield* client.execute(upload(64 * 1024 - 100))
        assert.strictEqual(encodedOver.status, 413)
        const stats = yield* (yield* Simulator.Simulator).stats
        assert.strictEqual(stats.byStatus["413"], 2)
      }).pipe(Effect.provide(layer)))
  })

  it("the client classifies the 413 as a request error that is never retried", () => {
    const reason = classifyResponse({
      operation: "textToSpeech.convert",
      status: 413,
      body: JSON.stringify({
        detail: {
          status: "payload_too_large",
          message: "The request body is larger than the 1024 bytes this endpoint accepts."
        }
      })
    })
    assert.strictEqual(reason._tag, "InvalidRequest")
    assert.strictEqual(reason.detailStatus, "payload_too_large")
    assert.isFalse(isRetryable(reason))
    assert.isFalse(reasonPolicies[reason._tag].breakerFailure)
  })

  describe("the rule (BodyLimit.make)", () => {
    const rule = () => {
      const counts = Counts.make()
      const answers = Answers.make({ prng: Prng.make(1), region: "us-central1", counts, retryAfterSeconds: undefined })
      return { counts, limit: BodyLimit.make({ limits: { upload: 100, json: 10 }, answers, counts }) }
    }
    const head = (path: string, headers: Readonly<Record<string, string>>): BodyLimit.BodyHead => ({
      method: "POST",
      url: `http://sim.test${path}`,
      headers: { get: (name) => headers[name.toLowerCase()] ?? null }
    })
    const tts = `/v1/text-to-speech/${voice}`

    it("an upload's limit only for a multipart body to a row that takes one; each refusal counts as a request", () => {
      const { counts, limit } = rule()
      const multipart = { "content-type": "multipart/form-data; boundary=x" }
      assert.isUndefined(limit.checkBody(head("/v1/speech-to-text", multipart), 100))
      assert.strictEqual(limit.checkBody(head("/v1/speech-to-text", multipart), 101)?._tag, "Respond")
      assert.isDefined(limit.checkBody(head(tts, multipart), 11))
      assert.isDefined(limit.checkBody(head("/v1/speech-to-text", { "content-type": "application/json" }), 11))
      assert.isUndefined(limit.checkBody(head(tts, {}), 10))
      assert.deepStrictEqual([counts.requests, counts.byDetailStatus["payload_too_large"]], [3, 3])
    })

    it.effect("readBody: refused at a declared length without a pull, else as soon as the count passes", () =>
      Effect.gen(function*() {
        const { limit } = rule()
        const untouched = Stream.die("pulled")
        const declared = yield* limit.readBody(head(tts, { "content-length": "11" }), untouched)
        assert.strictEqual(declared._tag, "Refused")
        let pulled = 0
        const endless = Stream.forever(Stream.sync(() => {
          pulled++
          return new Uint8Array(4)
        }))
        const counted = yield* limit.readBody(head(tts, {}), endless)
        assert.deepStrictEqual([counted._tag, pulled], ["Refused", 3])
        const read = yield* limit.readBody(
          head(tts, { "content-length": "8" }),
          Stream.make(new Uint8Array(4), new Uint8Array(4))
        )
        assert.deepStrictEqual(read._tag === "Body" ? read.bytes.length : read._tag, 8)
      }))
  })
})
