import { assert, describe, it } from "@effect/vitest"
import { ElevenLabsError as SdkError, ElevenLabsTimeoutError } from "@elevenlabs/elevenlabs-js"
import { Duration, Effect, Schema } from "effect"
import {
  classifyResponse,
  classifySdkError,
  parseConcurrencyLimit,
  parsePermission,
  parseQuota,
  parseRetryAfter
} from "../../src/client/Classify.ts"
import { ElevenLabsError, ElevenLabsErrorReason, reasonPolicies } from "../../src/client/Errors.ts"

const op = "textToSpeech.convert"
const detail = (status: string, message: string) => JSON.stringify({ detail: { status, message } })
const classify = (status: number, body: string | Uint8Array, headers?: Record<string, string>) =>
  classifyResponse({ operation: op, status, body, headers })

/** The messages of docs/api-facts.md §3.2, verbatim. */
const messages = {
  maxChars:
    "This request's text has 627 characters and exceeds the character limit of 333 characters for non signed in accounts.",
  voiceNotFound: "A voice with the voice_id foo was not found.",
  voiceNotFoundOld: "A voice for the voice_id X was not found.",
  voiceDoesNotExist: "A voice with voice_id X does not exist.",
  alreadyCloned: "The voice … has already been added to your VoiceLab.",
  invalidKey: "Invalid API key",
  needsAuth: "Neither authorization header nor xi-api-key received, please provide one.",
  missingPermission: "The API key you used is missing the permission user_read to execute this operation.",
  quota:
    "This request exceeds your quota of 10000. You have 0 credits remaining, while 91 credits are required for this request.",
  unusual: "Unusual activity detected. Free Tier usage disabled. If you are using a proxy/VPN …",
  unauthorized: "Authentication required.",
  formatNotAllowed: "Requested output format pcm_44100 (PCM at 44100hz) is only allowed for Pro tier and above.",
  transcriptNotFound: "Transcript not found.",
  historyNotFound: "A history item with ID 'abc' was not found on the server.",
  concurrency:
    "Too many concurrent requests. Your current subscription is associated with a maximum of 5 concurrent requests (running in parallel). This is done such that a single user does not overwhelm our systems and affect other users negatively. Please upgrade your subscription or contact sales if you want to increase this limit.",
  busy:
    "We are sorry, the system is experiencing heavy traffic, please try again. Higher subscriptions have higher priority.",
  wrong: "We are sorry, something went wrong. You are not charged for this request.",
  internal: "Internal Server error. All such crashes are reported to us automatically."
}

describe("Classify", () => {
  describe("one example per known detail.status", () => {
    const examples: ReadonlyArray<readonly [number, string, string, string]> = [
      [400, "max_character_limit_exceeded", messages.maxChars, "InvalidRequest"],
      [404, "voice_not_found", messages.voiceNotFound, "NotFound"],
      [400, "voice_not_found", messages.voiceNotFoundOld, "NotFound"],
      [400, "voice_does_not_exist", messages.voiceDoesNotExist, "NotFound"],
      [400, "voice_already_cloned", messages.alreadyCloned, "InvalidRequest"],
      [401, "invalid_api_key", messages.invalidKey, "InvalidApiKey"],
      [401, "needs_authorization", messages.needsAuth, "Unauthorized"],
      [401, "missing_permissions", messages.missingPermission, "MissingPermissions"],
      [401, "quota_exceeded", messages.quota, "QuotaExceeded"],
      [401, "detected_unusual_activity", messages.unusual, "Unauthorized"],
      [401, "unauthorized", messages.unauthorized, "Unauthorized"],
      [403, "only_for_creator+", "Professional voices need Creator.", "Forbidden"],
      [403, "output_format_not_allowed", messages.formatNotAllowed, "Forbidden"],
      [404, "not_found_error", messages.transcriptNotFound, "NotFound"],
      [404, "invalid_id", messages.historyNotFound, "NotFound"],
      [404, "workspace_not_found", "Workspace not found.", "NotFound"],
      [429, "too_many_concurrent_requests", messages.concurrency, "ConcurrencyLimited"],
      [429, "system_busy", messages.busy, "SystemBusy"],
      [429, "concurrent_limit_exceeded", "2 parallel generations", "ConcurrencyLimited"],
      [500, "something_went_wrong", messages.wrong, "ServerError"]
    ]
    for (const [status, code, message, tag] of examples) {
      it(`${status} ${code} → ${tag}`, () => {
        const r = classify(status, detail(code, message), { "x-trace-id": "t" })
        assert.strictEqual(r._tag, tag)
        assert.strictEqual(r.status, status)
        assert.strictEqual(r.detailStatus, code)
        assert.strictEqual(r.message, message)
        assert.strictEqual(r.traceId, "t")
      })
    }

    it("reads the numbers out of the messages", () => {
      const c = classify(429, detail("too_many_concurrent_requests", messages.concurrency))
      assert.strictEqual(c._tag === "ConcurrencyLimited" ? c.limit : -1, 5)
      const q = classify(401, detail("quota_exceeded", messages.quota))
      assert.deepStrictEqual(q._tag === "QuotaExceeded" ? [q.quota, q.remaining, q.required] : [], [10000, 0, 91])
      const p = classify(401, detail("missing_permissions", messages.missingPermission))
      assert.strictEqual(p._tag === "MissingPermissions" ? p.permission : "", "user_read")
    })
  })

  describe("body shapes", () => {
    it("A′: the old quota variant with character_used / character_limit", () => {
      const body = JSON.stringify({
        detail: { status: "quota_exceeded", message: "quota exceeded", character_used: 10059, character_limit: 10000 }
      })
      const r = classify(401, body)
      assert.strictEqual(r._tag, "QuotaExceeded")
      if (r._tag === "QuotaExceeded") {
        assert.strictEqual(r.quota, 10000)
        assert.strictEqual(r.remaining, 0)
      }
    })

    it("B: the newer envelope; status keeps the legacy code, request_id is the trace id", () => {
      const body = JSON.stringify({
        detail: {
          type: "authentication_error",
          code: "unauthorized",
          message: "Invalid API key",
          status: "invalid_api_key",
          request_id: "abcdef0123456789abcdef0123456789"
        }
      })
      const r = classify(401, body)
      assert.strictEqual(r._tag, "InvalidApiKey")
      assert.strictEqual(r.traceId, "abcdef0123456789abcdef0123456789")
      const busy = classify(
        429,
        JSON.stringify({ detail: { type: "rate_limit_error", code: "system_busy", message: "busy" } })
      )
      assert.strictEqual(busy._tag, "SystemBusy")
    })

    it("C: the FastAPI 422 array becomes issues", () => {
      const body = JSON.stringify({
        detail: [
          {
            type: "float_type",
            loc: ["body", "voice_settings", "stability"],
            msg: "Input should be a valid number",
            input: null
          },
          { type: "missing", loc: ["body", "text"], msg: "Field required" }
        ]
      })
      const r = classify(422, body)
      assert.strictEqual(r._tag, "ValidationFailed")
      if (r._tag === "ValidationFailed") {
        assert.deepStrictEqual(r.issues.map((i) => i.loc), [["body", "voice_settings", "stability"], ["body", "text"]])
        assert.include(r.message, "body.text: Field required")
      }
    })

    it("D: the error/message pair", () => {
      const r = classify(
        400,
        JSON.stringify({ error: "invalid_output_format", message: "output_format must be wav or none" })
      )
      assert.strictEqual(r._tag, "InvalidRequest")
      assert.strictEqual(r.detailStatus, "invalid_output_format")
      assert.strictEqual(r.message, "output_format must be wav or none")
    })

    it("413 (a body too large; the simulator's shape A, the API documents none) → InvalidRequest, never retried", () => {
      const r = classify(
        413,
        detail("payload_too_large", "The request body is larger than the 10485760 bytes this endpoint accepts.")
      )
      assert.strictEqual(r._tag, "InvalidRequest")
      assert.strictEqual(r.detailStatus, "payload_too_large")
      assert.strictEqual(reasonPolicies[r._tag].retryClass, "never")
      assert.isFalse(reasonPolicies[r._tag].breakerFailure)
      assert.strictEqual(classify(413, "<html><body>413 Request Entity Too Large</body></html>")._tag, "InvalidRequest")
    })

    it("E: the top-level 500", () => {
      const r = classify(500, JSON.stringify({ status: "internal_server_error", message: messages.internal }))
      assert.strictEqual(r._tag, "ServerError")
      assert.strictEqual(r.detailStatus, "internal_server_error")
    })

    it("F: HTML, empty, truncated JSON, bytes", () => {
      assert.strictEqual(
        classify(503, "<html><body><h1>503 Service Unavailable</h1></body></html>")._tag,
        "ServerError"
      )
      assert.strictEqual(classify(502, "")._tag, "ServerError")
      assert.strictEqual(classify(429, "{\"detail\":{\"status\":\"system_bu")._tag, "RateLimited")
      assert.strictEqual(classify(401, new Uint8Array([0xff, 0xfe, 0x00, 0x80]))._tag, "Unauthorized")
      assert.strictEqual(classify(418, "I'm a teapot")._tag, "InvalidRequest")
      assert.strictEqual(classify(200, "not json")._tag, "InvalidResponse")
    })

    it("hostile JSON found by the property test: members named toString", () => {
      assert.strictEqual(
        classify(200, JSON.stringify({ detail: [{ toString: [] }, [{ toString: [] }]] }))._tag,
        "InvalidResponse"
      )
      assert.strictEqual(classify(422, JSON.stringify({ detail: [[{ toString: null }]] }))._tag, "ValidationFailed")
      assert.strictEqual(classifySdkError(op, [{ toString: null }])._tag, "Transport")
    })

    it("429 concurrency limit from the header when the message has none", () => {
      const r = classify(429, detail("too_many_concurrent_requests", "Too many."), {
        "Maximum-Concurrent-Requests": "15"
      })
      assert.strictEqual(r._tag === "ConcurrencyLimited" ? r.limit : -1, 15)
    })
  })

  describe("Retry-After", () => {
    it("seconds, HTTP date (needs now), retry-after-ms, garbage", () => {
      assert.deepStrictEqual(parseRetryAfter({ "retry-after": "3" }), Duration.seconds(3))
      const now = Date.parse("Sun, 22 Nov 2026 12:00:00 GMT")
      assert.deepStrictEqual(
        parseRetryAfter({ "Retry-After": "Sun, 22 Nov 2026 12:00:05 GMT" }, now),
        Duration.seconds(5)
      )
      assert.deepStrictEqual(parseRetryAfter({ "retry-after": "Sun, 22 Nov 2026 11:00:00 GMT" }, now), Duration.zero)
      assert.isUndefined(parseRetryAfter({ "retry-after": "Sun, 22 Nov 2026 12:00:05 GMT" }))
      assert.deepStrictEqual(parseRetryAfter({ "retry-after-ms": "250" }), Duration.millis(250))
      assert.isUndefined(parseRetryAfter({ "retry-after": "soon" }, now))
      const r = classifyResponse({
        operation: op,
        status: 429,
        body: detail("system_busy", messages.busy),
        headers: { "retry-after": "Sun, 22 Nov 2026 12:00:02 GMT" },
        now
      })
      assert.deepStrictEqual(r._tag === "SystemBusy" ? r.retryAfter : undefined, Duration.seconds(2))
      const s = classify(503, "", { "retry-after": "7" })
      assert.deepStrictEqual(s._tag === "ServerError" ? s.retryAfter : undefined, Duration.seconds(7))
    })

    it("message parsers", () => {
      assert.strictEqual(parseConcurrencyLimit("a maximum of 1,000 concurrent requests"), 1000)
      assert.isUndefined(parseConcurrencyLimit(undefined))
      assert.deepStrictEqual(parseQuota("nothing"), { quota: undefined, remaining: undefined, required: undefined })
      assert.strictEqual(parsePermission("missing the permission speech_to_text to"), "speech_to_text")
    })
  })

  describe("totality", () => {
    const knownCodes = [
      "too_many_concurrent_requests",
      "system_busy",
      "concurrent_limit_exceeded",
      "quota_exceeded",
      "insufficient_credits",
      "invalid_api_key",
      "missing_permissions",
      "voice_not_found",
      "output_format_not_allowed",
      "max_character_limit_exceeded",
      "something_went_wrong"
    ] as const
    const Byte = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 255 }))
    const arbitraries = {
      // Every status from 100 to 699, and the ones with rules of their own more often.
      status: Schema.Union([
        Schema.Int.check(Schema.isBetween({ minimum: 100, maximum: 699 })),
        Schema.Literals([200, 400, 401, 402, 403, 404, 422, 429, 500, 503])
      ]),
      kind: Schema.Literals([
        "A",
        "A2",
        "B",
        "C",
        "D",
        "E",
        "detailString",
        "html",
        "empty",
        "bytes",
        "truncated",
        "json"
      ]),
      code: Schema.Union([Schema.Literals(knownCodes), Schema.String]),
      message: Schema.String,
      n: Schema.Number,
      bytes: Schema.Array(Byte),
      json: Schema.Json,
      headers: Schema.Record(Schema.String, Schema.String),
      retryAfter: Schema.optional(
        Schema.Union([Schema.String, Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: -5, maximum: 1e6 })))])
      )
    }

    const bodyOf = (p: {
      readonly kind: string
      readonly code: string
      readonly message: string
      readonly n: number
      readonly bytes: ReadonlyArray<number>
      readonly json: unknown
    }): string | Uint8Array => {
      switch (p.kind) {
        case "A":
          return JSON.stringify({ detail: { status: p.code, message: p.message } })
        case "A2":
          return JSON.stringify({
            detail: { status: p.code, message: p.message, character_used: p.n, character_limit: p.n }
          })
        case "B":
          return JSON.stringify({
            detail: { type: "x", code: p.code, status: p.code, message: p.message, request_id: p.message }
          })
        case "C":
          return JSON.stringify({ detail: [{ loc: ["body", p.n], msg: p.message, type: p.code }, p.json] })
        case "D":
          return JSON.stringify({ error: p.code, message: p.json })
        case "E":
          return JSON.stringify({ status: p.code, message: p.message })
        case "detailString":
          return JSON.stringify({ detail: p.message })
        case "html":
          return `<html><body>${p.message}</body></html>`
        case "empty":
          return ""
        case "bytes":
          return new Uint8Array(p.bytes)
        case "truncated": {
          const full = JSON.stringify({ detail: { status: p.code, message: p.message } })
          return full.slice(0, Math.abs(Math.trunc(p.n)) % full.length)
        }
        default:
          return JSON.stringify(p.json) ?? ""
      }
    }

    const expected = (status: number, r: ElevenLabsErrorReason): boolean => {
      const tag = r._tag
      if (status === 429) return ["ConcurrencyLimited", "SystemBusy", "RateLimited"].includes(tag)
      if (status === 401) return ["QuotaExceeded", "InvalidApiKey", "MissingPermissions", "Unauthorized"].includes(tag)
      if (status === 402) return ["QuotaExceeded", "InvalidRequest"].includes(tag)
      if (status === 403) return ["QuotaExceeded", "Forbidden"].includes(tag)
      if (status === 404) return tag === "NotFound"
      if (status === 400) return ["InvalidRequest", "NotFound"].includes(tag)
      if (status === 422) return ["ValidationFailed", "InvalidRequest"].includes(tag)
      if (status >= 400 && status < 500) return tag === "InvalidRequest"
      if (status >= 500) return tag === "ServerError"
      return tag === "InvalidResponse"
    }

    it.effect.prop(
      "any status, headers and body → exactly one reason of that status",
      arbitraries,
      (p) =>
        Effect.sync(() => {
          const headers: Record<string, string> = { ...p.headers }
          if (p.retryAfter !== undefined) headers["retry-after"] = String(p.retryAfter)
          const r = classifyResponse({
            operation: op,
            status: p.status,
            headers,
            body: bodyOf(p),
            now: 1_800_000_000_000
          })
          assert.isTrue(r._tag in reasonPolicies)
          assert.strictEqual(r.status, p.status)
          assert.strictEqual(r.operation, op)
          assert.isTrue(expected(p.status, r), `${p.status} gave ${r._tag}`)
          // The reason is a valid member of the schema and wraps into the public error.
          assert.isTrue(Schema.is(ElevenLabsErrorReason)(r))
          const e = new ElevenLabsError({ reason: r })
          assert.isString(e.message)
          assert.isString(JSON.stringify(e))
        }),
      { arbitrary: { runs: 500 } }
    )

    it.effect.prop("SDK errors of any shape classify without throwing", {
      status: arbitraries.status,
      json: Schema.Json,
      message: Schema.String
    }, (p) =>
      Effect.sync(() => {
        const withStatus = classifySdkError(
          op,
          new SdkError({ message: p.message, statusCode: p.status, body: p.json })
        )
        assert.strictEqual(withStatus.status, p.status)
        const without = classifySdkError(op, new SdkError({ message: p.message }))
        assert.isTrue(without._tag === "Transport" || without._tag === "Timeout")
        assert.isTrue(classifySdkError(op, p.json)._tag in reasonPolicies)
      }), { arbitrary: { runs: 300 } })
  })

  describe("classifySdkError", () => {
    const rawResponse = (status: number, headers: Record<string, string>) => ({
      headers: new Headers(headers),
      redirected: false,
      status,
      statusText: "",
      type: "basic" as const,
      url: "https://api.elevenlabs.io/v1/text-to-speech/x"
    })

    it("status errors with a parsed JSON body and headers", () => {
      const e = new SdkError({
        message: "Status code: 429",
        statusCode: 429,
        body: { detail: { status: "too_many_concurrent_requests", message: messages.concurrency } },
        rawResponse: rawResponse(429, { "x-trace-id": "trace-9", "retry-after": "1" })
      })
      const r = classifySdkError(op, e)
      assert.strictEqual(r._tag, "ConcurrencyLimited")
      assert.strictEqual(r.traceId, "trace-9")
      if (r._tag === "ConcurrencyLimited") {
        assert.strictEqual(r.limit, 5)
        assert.deepStrictEqual(r.retryAfter, Duration.seconds(1))
      }
      const q = classifySdkError(
        op,
        new SdkError({ statusCode: 401, body: { detail: { status: "quota_exceeded", message: messages.quota } } })
      )
      assert.strictEqual(q._tag, "QuotaExceeded")
    })

    it("a text body (HTML 503) and a JSON body that came as text", () => {
      assert.strictEqual(
        classifySdkError(op, new SdkError({ statusCode: 503, body: "<html>Service Unavailable</html>" }))._tag,
        "ServerError"
      )
      assert.strictEqual(
        classifySdkError(op, new SdkError({ statusCode: 429, body: detail("system_busy", messages.busy) }))._tag,
        "SystemBusy"
      )
    })

    it("timeouts: ElevenLabsTimeoutError, the \"timeout\" message of Node fetch aborts, the bare string", () => {
      const t1 = classifySdkError(
        op,
        new ElevenLabsTimeoutError("Timeout exceeded when calling POST /v1/text-to-speech/x.")
      )
      assert.strictEqual(t1._tag, "Timeout")
      const t2 = classifySdkError(op, new SdkError({ message: "\"timeout\"" }), { timeout: "60 seconds" })
      assert.strictEqual(t2._tag, "Timeout")
      if (t2._tag === "Timeout") assert.deepStrictEqual(t2.after, Duration.seconds(60))
      assert.strictEqual(classifySdkError(op, "timeout")._tag, "Timeout")
    })

    it("network failures → Transport", () => {
      const e = new SdkError({ message: "fetch failed", cause: new TypeError("fetch failed") })
      assert.strictEqual(classifySdkError(op, e)._tag, "Transport")
      assert.strictEqual(classifySdkError(op, new Error("ECONNRESET"))._tag, "Transport")
      assert.strictEqual(classifySdkError(op, undefined)._tag, "Transport")
    })
  })
})
