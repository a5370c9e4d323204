import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Duration, Effect, Exit, Fiber, Layer, Redacted, Stream, Tracer } from "effect"
import { HttpClient, HttpClientError, HttpClientResponse } from "effect/http"
import { TestClock } from "effect/testing"
import * as ElevenLabs from "../../src/client/ElevenLabs.ts"
import type { ElevenLabsError } from "../../src/client/Errors.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import { apiKey, audio, chunked, json, jsonBody, mock } from "./mockTransport.ts"

const voiceId = "JBFqnCBsd6RMkjVDRZzb"
const run = <A, E, R, LE = never>(
  m: { readonly layer: Layer.Layer<ElevenLabs.ElevenLabs, LE> },
  f: (el: ElevenLabs.ElevenLabs) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const el = yield* ElevenLabs.ElevenLabs
    return yield* f(el)
  }).pipe(Effect.provide(m.layer))

const failure = <A, R>(effect: Effect.Effect<A, ElevenLabsError, R>) => Effect.flip(effect)

/** Lets the web stream's promises run (real event-loop turns) so the body pull is under way before the clock moves. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(
  Effect.repeat({ times: 20 })
)

const errorBody = (status: string, message: string) => ({ detail: { status, message } })

/** Every way an error could show the key. */
const assertNoKey = (error: ElevenLabsError) => {
  for (
    const text of [
      error.message,
      String(error),
      error.toString(),
      JSON.stringify(error),
      JSON.stringify(error.reason),
      error.reason.message
    ]
  ) {
    assert.notInclude(text, apiKey)
  }
}

/** A tracer that keeps every span it makes, for the span tests. */
const recording = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer }
}

describe("ElevenLabs", () => {
  describe("text to speech", () => {
    it.effect("convert: POST, path, query, key header, snake_case body, audio and metadata", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["ab", "cd"])))
        const result = yield* run(m, (el) =>
          el.textToSpeech.convert(voiceId, {
            text: "Hello world",
            modelId: "eleven_flash_v2_5",
            outputFormat: "wav_44100",
            enableLogging: false,
            voiceSettings: { stability: 0.4, similarityBoost: 0.8, useSpeakerBoost: true, speed: 1.1 },
            previousRequestIds: ["a"],
            applyTextNormalization: "on"
          }))
        assert.strictEqual(new TextDecoder().decode(result.audio), "abcd")
        assert.strictEqual(result.contentType, "audio/mpeg")
        assert.strictEqual(result.meta.requestId, "npQR4Xoyx4KHXQHSEy4s")
        assert.strictEqual(result.meta.characterCost, 5)
        assert.strictEqual(result.meta.maximumConcurrentRequests, 10)
        assert.strictEqual(result.meta.traceId, "0123456789abcdef0123456789abcdef")
        assert.strictEqual(m.requests.length, 1)
        const { request, url, redactedNames } = m.requests[0]!
        assert.strictEqual(request.method, "POST")
        assert.strictEqual(url.origin + url.pathname, `https://api.test/v1/text-to-speech/${voiceId}`)
        assert.strictEqual(url.searchParams.get("output_format"), "wav_44100")
        assert.strictEqual(url.searchParams.get("enable_logging"), "false")
        assert.strictEqual(request.headers["xi-api-key"], apiKey)
        assert.include(redactedNames, "xi-api-key")
        assert.deepStrictEqual(jsonBody(request), {
          text: "Hello world",
          model_id: "eleven_flash_v2_5",
          voice_settings: { stability: 0.4, similarity_boost: 0.8, use_speaker_boost: true, speed: 1.1 },
          previous_request_ids: ["a"],
          apply_text_normalization: "on"
        })
      }))

    it.effect("convert uses the default output format", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("x"))
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" }))
        assert.strictEqual(m.requests[0]!.url.searchParams.get("output_format"), "mp3_44100_128")
      }))

    it.effect("stream: bytes arrive as sent, in any chunking, and the response lives with the scope", () =>
      Effect.gen(function*() {
        const payload = "0123456789abcdefghij"
        for (const cuts of [[20], [1, 19], [3, 3, 3, 11], [7, 13]]) {
          const parts: Array<string> = []
          let at = 0
          for (const n of cuts) {
            parts.push(payload.slice(at, at + n))
            at += n
          }
          const m = mock(() => audio(chunked(parts)))
          const bytes = yield* Effect.scoped(run(m, (el) =>
            Effect.gen(function*() {
              const s = yield* el.textToSpeech.stream(voiceId, { text: "Hi", outputFormat: "pcm_16000" })
              assert.strictEqual(s.meta.currentConcurrentRequests, 1)
              const chunks = yield* Stream.runCollect(s.audio)
              assert.strictEqual(chunks.length, parts.length)
              return chunks.map((c) => new TextDecoder().decode(c)).join("")
            })))
          assert.strictEqual(bytes, payload)
          assert.strictEqual(m.requests[0]!.url.pathname, `/v1/text-to-speech/${voiceId}/stream`)
          assert.strictEqual(m.requests[0]!.url.searchParams.get("output_format"), "pcm_16000")
        }
      }))

    it.effect("convertWithTimestamps decodes the JSON into camelCase", () =>
      Effect.gen(function*() {
        const alignment = {
          characters: ["H", "i"],
          character_start_times_seconds: [0, 0.1],
          character_end_times_seconds: [0.1, 0.2]
        }
        const m = mock(() =>
          json({ audio_base64: "AAA=", alignment, normalized_alignment: null }, { headers: { "character-cost": "2" } })
        )
        const r = yield* run(m, (el) => el.textToSpeech.convertWithTimestamps(voiceId, { text: "Hi" }))
        assert.strictEqual(r.audioBase64, "AAA=")
        assert.deepStrictEqual(r.alignment?.characterEndTimesSeconds, [0.1, 0.2])
        assert.isNull(r.normalizedAlignment)
        assert.strictEqual(r.meta.characterCost, 2)
        assert.strictEqual(m.requests[0]!.url.pathname, `/v1/text-to-speech/${voiceId}/with-timestamps`)
      }))

    it.effect("streamWithTimestamps decodes NDJSON split across arbitrary chunk boundaries", () =>
      Effect.gen(function*() {
        const lines = [0, 1, 2].map((i) =>
          JSON.stringify({
            audio_base64: `QUJD${i}`,
            alignment: { characters: ["é"], character_start_times_seconds: [i], character_end_times_seconds: [i + 1] },
            normalized_alignment: null
          })
        )
        const text = lines.join("\n") + "\n"
        const bytes = new TextEncoder().encode(text)
        // Cut every 5 bytes: lines and even the two bytes of "é" are split across chunks.
        const parts: Array<Uint8Array> = []
        for (let i = 0; i < bytes.length; i += 5) parts.push(bytes.slice(i, i + 5))
        const m = mock(() => audio(chunked(parts), { "content-type": "application/json" }))
        const chunks = yield* Effect.scoped(run(m, (el) =>
          Effect.gen(function*() {
            const s = yield* el.textToSpeech.streamWithTimestamps(voiceId, { text: "Hi" })
            return yield* Stream.runCollect(s.chunks)
          })))
        assert.deepStrictEqual(chunks.map((c) => c.audioBase64), ["QUJD0", "QUJD1", "QUJD2"])
        assert.deepStrictEqual(chunks.map((c) => c.alignment?.characters[0]), ["é", "é", "é"])
        assert.strictEqual(m.requests[0]!.url.pathname, `/v1/text-to-speech/${voiceId}/stream/with-timestamps`)
      }))

    it.effect("a malformed NDJSON line is InvalidResponse", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["{\"audio_base64\":\"A\"}\n", "not json\n"])))
        const error = yield* failure(Effect.scoped(run(m, (el) =>
          Effect.flatMap(el.textToSpeech.streamWithTimestamps(voiceId, { text: "Hi" }), (s) =>
            Stream.runCollect(s.chunks)))))
        assert.strictEqual(error.reason._tag, "InvalidResponse")
      }))
  })

  describe("speech to text", () => {
    it.effect("sends multipart fields as the SDK does and decodes a transcript", () =>
      Effect.gen(function*() {
        const m = mock(() =>
          json({
            language_code: "en",
            language_probability: 0.98,
            text: "hello",
            words: [{ text: "hello", start: 0, end: 0.5, type: "word", speaker_id: "speaker_0", logprob: -0.1 }],
            transcription_id: "t1"
          })
        )
        const r = yield* run(m, (el) =>
          el.speechToText.convert({
            file: { data: new Uint8Array([1, 2, 3]), fileName: "a.mp3", contentType: "audio/mpeg" },
            modelId: "scribe_v2",
            diarize: true,
            numSpeakers: 2,
            tagAudioEvents: false,
            keyterms: ["Effect", "ElevenLabs"],
            enableLogging: false
          }))
        assert.isTrue("text" in r.transcript)
        if ("text" in r.transcript) {
          assert.strictEqual(r.transcript.text, "hello")
          assert.strictEqual(r.transcript.words[0]?.speakerId, "speaker_0")
        }
        const { request, url } = m.requests[0]!
        assert.strictEqual(request.method, "POST")
        assert.strictEqual(url.pathname, "/v1/speech-to-text")
        assert.strictEqual(url.searchParams.get("enable_logging"), "false")
        assert.strictEqual(request.headers["xi-api-key"], apiKey)
        assert.strictEqual(request.body._tag, "FormData")
        if (request.body._tag !== "FormData") return
        const form = request.body.formData
        assert.strictEqual(form.get("model_id"), "scribe_v2")
        assert.strictEqual(form.get("diarize"), "true")
        assert.strictEqual(form.get("num_speakers"), "2")
        assert.strictEqual(form.get("tag_audio_events"), "false")
        assert.deepStrictEqual(form.getAll("keyterms"), ["Effect", "ElevenLabs"])
        assert.isNull(form.get("source_url"))
        const file = form.get("file") as File
        assert.strictEqual(file.name, "a.mp3")
        assert.deepStrictEqual([...new Uint8Array(yield* Effect.promise(() => file.arrayBuffer()))], [1, 2, 3])
      }))

    it.effect("sends source_url and decodes multichannel and webhook answers", () =>
      Effect.gen(function*() {
        let answer: unknown = { transcripts: [{ language_code: "en", language_probability: 1, text: "a", words: [] }] }
        const m = mock(() => json(answer))
        const multi = yield* run(m, (el) => el.speechToText.convert({ sourceUrl: "https://example.com/a.mp3" }))
        assert.isTrue("transcripts" in multi.transcript)
        const form = (m.requests[0]!.request.body as { formData: FormData }).formData
        assert.strictEqual(form.get("source_url"), "https://example.com/a.mp3")
        assert.strictEqual(form.get("model_id"), "scribe_v1")
        assert.isNull(form.get("file"))
        answer = { message: "Request accepted.", request_id: "abc123" }
        const ack = yield* run(m, (el) =>
          el.speechToText.convert({ sourceUrl: "https://example.com/a.mp3", webhook: true }))
        assert.deepStrictEqual(ack.transcript, { message: "Request accepted.", requestId: "abc123" })
      }))
  })

  describe("account, voices, models, music", () => {
    it.effect("user.get and user.subscription", () =>
      Effect.gen(function*() {
        const subscription = {
          tier: "creator",
          character_count: 1000,
          character_limit: 100000,
          max_character_limit_extension: null,
          max_credit_limit_extension: "unlimited",
          can_extend_character_limit: true,
          allowed_to_extend_character_limit: true,
          next_character_count_reset_unix: 1738356858,
          voice_slots_used: 1,
          professional_voice_slots_used: 0,
          professional_voice_slots_used_in_workspace: 0,
          voice_limit: 30,
          voice_add_edit_counter: 0,
          professional_voice_limit: 1,
          can_extend_voice_limit: false,
          can_use_instant_voice_cloning: true,
          can_use_professional_voice_cloning: true,
          currency: "usd",
          current_overage: { amount: "0", currency: "usd" },
          status: "active",
          billing_period: "monthly_period",
          character_refresh_period: "monthly_period",
          next_invoice: {
            amount_due_cents: 2200,
            discounts: [],
            next_payment_attempt_unix: 1,
            payment_intent_status: "x"
          },
          open_invoices: [],
          has_open_invoices: false,
          pending_change: { kind: "cancellation", timestamp_seconds: 5 },
          a_field_from_the_future: 1
        }
        const m = mock((_, url) =>
          url.pathname === "/v1/user/subscription"
            ? json(subscription)
            : json({ user_id: "u1", subscription, is_new_user: false, created_at: 1, seat_type: "workspace_admin" })
        )
        const sub = yield* run(m, (el) => el.user.subscription())
        assert.strictEqual(sub.tier, "creator")
        assert.strictEqual(sub.characterLimit - sub.characterCount, 99000)
        assert.strictEqual(sub.maxCreditLimitExtension, "unlimited")
        assert.strictEqual(sub.nextInvoice?.amountDueCents, 2200)
        assert.strictEqual(sub.pendingChange?.kind, "cancellation")
        const user = yield* run(m, (el) => el.user.get())
        assert.strictEqual(user.userId, "u1")
        assert.strictEqual(user.subscription.nextCharacterCountResetUnix, 1738356858)
        assert.deepStrictEqual(m.requests.map((r) => [r.request.method, r.url.pathname]), [
          ["GET", "/v1/user/subscription"],
          ["GET", "/v1/user"]
        ])
      }))

    it.effect("voices.list (show_legacy), voices.get, models.list", () =>
      Effect.gen(function*() {
        const voice = {
          voice_id: voiceId,
          name: "George",
          category: "premade",
          labels: { accent: "british" },
          available_for_tiers: [],
          high_quality_base_model_ids: []
        }
        const m = mock((_, url) => {
          if (url.pathname === "/v1/voices") return json({ voices: [voice] })
          if (url.pathname === `/v1/voices/${voiceId}`) return json(voice)
          return json([{
            model_id: "eleven_flash_v2_5",
            name: "Flash v2.5",
            can_do_text_to_speech: true,
            concurrency_group: "turbo",
            model_rates: { character_cost_multiplier: 0.5, cost_discount_multiplier: 1 },
            languages: [{ language_id: "en", name: "English" }]
          }])
        })
        const voices = yield* run(m, (el) => el.voices.list({ showLegacy: true }))
        assert.strictEqual(voices.voices[0]?.voiceId, voiceId)
        assert.strictEqual(m.requests[0]!.url.searchParams.get("show_legacy"), "true")
        const one = yield* run(m, (el) => el.voices.get(voiceId))
        assert.strictEqual(one.labels?.accent, "british")
        const models = yield* run(m, (el) => el.models.list())
        assert.strictEqual(models[0]?.concurrencyGroup, "turbo")
        assert.strictEqual(models[0]?.modelRates?.characterCostMultiplier, 0.5)
        yield* run(m, (el) => el.voices.list())
        assert.isNull(m.requests[3]!.url.searchParams.get("show_legacy"))
      }))

    it.effect("voices.search: snake_case query, lists as repeated keys, the page decoded", () =>
      Effect.gen(function*() {
        const m = mock(() =>
          json({
            voices: [{ voice_id: voiceId, name: "George" }],
            has_more: true,
            total_count: 21,
            next_page_token: "4"
          })
        )
        const page = yield* run(
          m,
          (el) =>
            el.voices.search({
              pageSize: 1,
              search: "george",
              sortDirection: "desc",
              voiceIds: [voiceId, "21m00Tcm4TlvDq8ikWAM"],
              includeTotalCount: false
            })
        )
        assert.deepStrictEqual([page.voices[0]?.voiceId, page.hasMore, page.totalCount, page.nextPageToken], [
          voiceId,
          true,
          21,
          "4"
        ])
        const { url } = m.requests[0]!
        assert.strictEqual(url.pathname, "/v2/voices")
        assert.deepStrictEqual([...url.searchParams], [
          ["page_size", "1"],
          ["search", "george"],
          ["sort_direction", "desc"],
          ["voice_ids", voiceId],
          ["voice_ids", "21m00Tcm4TlvDq8ikWAM"],
          ["include_total_count", "false"]
        ])
        yield* run(m, (el) => el.voices.search())
        assert.strictEqual(m.requests[1]!.url.search, "")
      }))

    it.effect("voices.search pages over the simulator's catalog to the end, and filters as it does", () =>
      Effect.gen(function*() {
        const el = yield* ElevenLabs.ElevenLabs
        const all = (yield* el.voices.list()).voices.map((v) => v.voiceId)
        const seen: Array<string> = []
        let token: string | undefined
        for (let pages = 1;; pages++) {
          const page = yield* el.voices.search({ pageSize: 4, sort: "name", nextPageToken: token })
          assert.isAtMost(page.voices.length, 4)
          assert.strictEqual(page.totalCount, all.length)
          seen.push(...page.voices.map((v) => v.voiceId))
          if (!page.hasMore) {
            assert.isUndefined(page.nextPageToken ?? undefined)
            assert.strictEqual(pages, Math.ceil(all.length / 4))
            break
          }
          token = page.nextPageToken ?? undefined
        }
        assert.deepStrictEqual([...seen].sort(), [...all].sort())
        const names = (yield* el.voices.search({ pageSize: 100, sort: "name" })).voices.map((v) => v.name ?? "")
        assert.deepStrictEqual(names, [...names].sort((a, b) => a.localeCompare(b)))
        const british = yield* el.voices.search({ accent: "british", pageSize: 100 })
        assert.isAbove(british.voices.length, 0)
        assert.isTrue(british.voices.every((v) => v.labels?.accent === "british"))
        const byId = yield* el.voices.search({ voiceIds: [voiceId] })
        assert.deepStrictEqual(byId.voices.map((v) => v.voiceId), [voiceId])
      }).pipe(
        Effect.provide(
          ElevenLabs.layer({ apiKey: Redacted.make("sim-key") }).pipe(
            Layer.provide(InProcess.layerSimulated({ seed: 1 }))
          )
        )
      ))

    it.effect("music.compose returns audio and song-id", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("music!", { "song-id": "song_1" }))
        const r = yield* run(m, (el) =>
          el.music.compose({
            prompt: "calm piano",
            musicLengthMs: 10_000,
            forceInstrumental: true,
            outputFormat: "mp3_48000_192"
          }))
        assert.strictEqual(r.songId, "song_1")
        assert.strictEqual(new TextDecoder().decode(r.audio), "music!")
        const { request, url } = m.requests[0]!
        assert.strictEqual(url.pathname, "/v1/music")
        assert.strictEqual(url.searchParams.get("output_format"), "mp3_48000_192")
        assert.deepStrictEqual(jsonBody(request), {
          prompt: "calm piano",
          music_length_ms: 10000,
          force_instrumental: true
        })
      }))

    it.effect("a 200 whose body does not decode is InvalidResponse", () =>
      Effect.gen(function*() {
        const m = mock(() => json({ not: "voices" }))
        const e1 = yield* failure(run(m, (el) => el.voices.list()))
        assert.strictEqual(e1.reason._tag, "InvalidResponse")
        assert.strictEqual(e1.reason.status, 200)
        const m2 = mock(() => json("<html>oops</html>"))
        const e2 = yield* failure(run(m2, (el) => el.models.list()))
        assert.strictEqual(e2.reason._tag, "InvalidResponse")
      }))
  })

  describe("errors", () => {
    const cases: ReadonlyArray<readonly [string, number, unknown, string, Record<string, string>?]> = [
      [
        "concurrency",
        429,
        errorBody(
          "too_many_concurrent_requests",
          "Too many concurrent requests. Your current subscription is associated with a maximum of 5 concurrent requests (running in parallel)."
        ),
        "ConcurrencyLimited"
      ],
      [
        "system busy",
        429,
        errorBody(
          "system_busy",
          "We are sorry, the system is experiencing heavy traffic, please try again. Higher subscriptions have higher priority."
        ),
        "SystemBusy",
        { "retry-after": "2" }
      ],
      ["other 429", 429, { detail: "slow down" }, "RateLimited"],
      [
        "quota",
        401,
        errorBody(
          "quota_exceeded",
          "This request exceeds your quota of 10000. You have 0 credits remaining, while 91 credits are required for this request."
        ),
        "QuotaExceeded"
      ],
      ["invalid key", 401, errorBody("invalid_api_key", "Invalid API key"), "InvalidApiKey"],
      [
        "missing permission",
        401,
        errorBody(
          "missing_permissions",
          "The API key you used is missing the permission text_to_speech to execute this operation."
        ),
        "MissingPermissions"
      ],
      ["other 401", 401, errorBody("detected_unusual_activity", "Unusual activity detected."), "Unauthorized"],
      [
        "403",
        403,
        errorBody(
          "output_format_not_allowed",
          "Requested output format pcm_44100 (PCM at 44100hz) is only allowed for Pro tier and above."
        ),
        "Forbidden"
      ],
      ["404", 404, errorBody("voice_not_found", "A voice with the voice_id foo was not found."), "NotFound"],
      [
        "400",
        400,
        errorBody(
          "max_character_limit_exceeded",
          "This request's text has 627 characters and exceeds the character limit of 333 characters for non signed in accounts."
        ),
        "InvalidRequest"
      ],
      ["422", 422, {
        detail: [{
          type: "float_type",
          loc: ["body", "voice_settings", "stability"],
          msg: "Input should be a valid number",
          input: null
        }]
      }, "ValidationFailed"],
      [
        "500 A",
        500,
        errorBody("something_went_wrong", "We are sorry, something went wrong. You are not charged for this request."),
        "ServerError"
      ],
      ["500 E", 500, { status: "internal_server_error", message: "Internal Server error." }, "ServerError"],
      ["503 HTML", 503, "<html><body>Service Unavailable</body></html>", "ServerError"]
    ]
    for (const [name, status, body, tag, headers] of cases) {
      it.effect(`${name} → ${tag}, the key nowhere in the error`, () =>
        Effect.gen(function*() {
          const m = mock(() => json(body, { status, headers: { "x-trace-id": "trace-1", ...headers } }))
          const error = yield* failure(run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })))
          assert.strictEqual(error.reason._tag, tag)
          assert.strictEqual(error.reason.status, status)
          assert.strictEqual(error.reason.traceId, "trace-1")
          assert.strictEqual(error.reason.operation, "textToSpeech.convert")
          assertNoKey(error)
        }))
    }

    it.effect("the same errors on a stream fail the call, before any byte", () =>
      Effect.gen(function*() {
        const m = mock(() => json(errorBody("system_busy", "busy"), { status: 429 }))
        const error = yield* failure(Effect.scoped(run(m, (el) => el.textToSpeech.stream(voiceId, { text: "Hi" }))))
        assert.strictEqual(error.reason._tag, "SystemBusy")
      }))

    it.effect("connection refused → Transport", () =>
      Effect.gen(function*() {
        const refusing = HttpClient.make((request) =>
          Effect.fail(
            new HttpClientError.HttpClientError({
              reason: new HttpClientError.TransportError({
                request,
                cause: Object.assign(new TypeError("fetch failed"), {
                  cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" })
                })
              })
            })
          )
        )
        const layer = ElevenLabs.layer({ apiKey: Redacted.make(apiKey) }).pipe(
          Layer.provide(Layer.succeed(HttpClient.HttpClient, refusing))
        )
        const error = yield* failure(run({ layer }, (el) => el.user.get()))
        assert.strictEqual(error.reason._tag, "Transport")
        assert.include(error.reason.message, "ECONNREFUSED")
        assertNoKey(error)
      }))

    it.effect("a body cut mid-way → Transport (convert and stream)", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["abc"], { cut: true })))
        const e1 = yield* failure(run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })))
        assert.strictEqual(e1.reason._tag, "Transport")
        const e2 = yield* failure(Effect.scoped(run(m, (el) =>
          Effect.flatMap(el.textToSpeech.stream(voiceId, { text: "Hi" }), (s) =>
            Stream.runCollect(s.audio)))))
        assert.strictEqual(e2.reason._tag, "Transport")
      }))
  })

  describe("timeouts", () => {
    it.effect("no headers within 30 s → Timeout phase headers", () =>
      Effect.gen(function*() {
        const m = mock(() => Effect.never)
        const fiber = yield* Effect.forkChild(failure(run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" }))))
        yield* TestClock.adjust("29 seconds")
        assert.isUndefined(fiber.pollUnsafe())
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error.reason._tag, "Timeout")
        if (error.reason._tag === "Timeout") {
          assert.strictEqual(error.reason.phase, "headers")
          assert.deepStrictEqual(error.reason.after, Duration.seconds(30))
        }
      }))

    it.effect("a stream that stalls → Timeout phase idle, after the bytes already sent", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["abc"], { stall: true })), { idleTimeout: "5 seconds" })
        const received: Array<string> = []
        const fiber = yield* Effect.forkChild(failure(Effect.scoped(run(m, (el) =>
          Effect.flatMap(el.textToSpeech.stream(voiceId, { text: "Hi" }), (s) =>
            Stream.runForEach(s.audio, (c) =>
              Effect.sync(() =>
                received.push(new TextDecoder().decode(c))
              )))))))
        yield* settle
        yield* TestClock.adjust("4 seconds")
        assert.deepStrictEqual(received, ["abc"])
        assert.isUndefined(fiber.pollUnsafe())
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error.reason._tag, "Timeout")
        if (error.reason._tag === "Timeout") {
          assert.strictEqual(error.reason.phase, "idle")
        }
      }))

    it.effect("the idle bound applies to a buffered convert body too", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["abc"], { stall: true })))
        const fiber = yield* Effect.forkChild(failure(run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" }))))
        yield* settle
        yield* TestClock.adjust("29 seconds")
        assert.isUndefined(fiber.pollUnsafe())
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error.reason._tag, "Timeout")
        if (error.reason._tag === "Timeout") assert.strictEqual(error.reason.phase, "idle")
      }))

    it.effect("a timed-out stream request is aborted at once, not when the caller's scope ends", () =>
      Effect.gen(function*() {
        const m = mock(() => Effect.never)
        const fiber = yield* Effect.forkChild(Effect.scoped(run(m, (el) =>
          Effect.gen(function*() {
            const error = yield* Effect.flip(el.textToSpeech.stream(voiceId, { text: "Hi" }))
            return { tag: error.reason._tag, abortedInsideScope: m.requests[0]!.signal.aborted }
          }))))
        yield* TestClock.adjust("30 seconds")
        assert.deepStrictEqual(yield* Fiber.join(fiber), { tag: "Timeout", abortedInsideScope: true })
      }))

    it.effect("a successful stream request stays open until its scope closes", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["a", "b"])))
        const openInside = yield* Effect.scoped(run(m, (el) =>
          Effect.gen(function*() {
            const s = yield* el.textToSpeech.stream(voiceId, { text: "Hi" })
            const before = m.requests[0]!.signal.aborted
            yield* Stream.runDrain(s.audio)
            return !before
          })))
        assert.isTrue(openInside)
        assert.isTrue(m.requests[0]!.signal.aborted)
      }))

    it.effect("headers timeout is configurable", () =>
      Effect.gen(function*() {
        const m = mock(() => Effect.never, { headersTimeout: "2 seconds" })
        const fiber = yield* Effect.forkChild(failure(run(m, (el) => el.user.get())))
        yield* TestClock.adjust("2 seconds")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error.reason._tag, "Timeout")
      }))
  })

  describe("transport spans", () => {
    it.effect("by default the transport makes its http.client span, and the request carries its trace context", () =>
      Effect.gen(function*() {
        const { spans, tracer } = recording()
        const m = mock(() => audio("x"))
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
          Effect.withSpan("caller"),
          Effect.provideService(Tracer.Tracer, tracer)
        )
        const client = spans.find((s) => s.kind === "client")
        assert.isDefined(client)
        assert.include(m.requests[0]!.request.headers["traceparent"]!, client!.spanId)
      }))

    it.effect("transportSpans: false makes none, and the request carries the current span's trace context", () =>
      Effect.gen(function*() {
        const { spans, tracer } = recording()
        const m = mock(() => audio("x"), { transportSpans: false })
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
          Effect.withSpan("caller"),
          Effect.provideService(Tracer.Tracer, tracer)
        )
        assert.deepStrictEqual(spans.map((s) => s.name), ["caller"])
        const caller = spans[0]!
        assert.strictEqual(
          m.requests[0]!.request.headers["traceparent"],
          `00-${caller.traceId.padStart(32, "0")}-${caller.spanId}-01`
        )
        // Propagation off: no trace headers at all.
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
          Effect.withSpan("caller"),
          Effect.provideService(Tracer.Tracer, tracer),
          Effect.provideService(HttpClient.TracerPropagationEnabled, false)
        )
        assert.isUndefined(m.requests[1]!.request.headers["traceparent"])
        assert.isUndefined(m.requests[1]!.request.headers["b3"])
      }))

    it.effect("transportSpans: false skips a span marked DisablePropagation, as Effect's client span does", () =>
      Effect.gen(function*() {
        const { spans, tracer } = recording()
        const m = mock(() => audio("x"), { transportSpans: false })
        const hidden = { annotations: Context.make(Tracer.DisablePropagation, true) }
        const convert = run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" }))
        yield* convert.pipe(
          Effect.withSpan("private", hidden),
          Effect.withSpan("outer"),
          Effect.provideService(Tracer.Tracer, tracer)
        )
        const outer = spans.find((s) => s.name === "outer")!
        assert.strictEqual(m.requests[0]!.request.headers["traceparent"], `00-${outer.traceId}-${outer.spanId}-01`)
        // Nothing left to propagate: no header (not the placeholder ids of a hidden span).
        yield* convert.pipe(Effect.withSpan("private", hidden), Effect.provideService(Tracer.Tracer, tracer))
        assert.isUndefined(m.requests[1]!.request.headers["traceparent"])
      }))

    it.effect("transportSpans: false leaves the spans of requests a transformClient hook makes of its own", () =>
      Effect.gen(function*() {
        const { spans, tracer } = recording()
        const other = HttpClient.make((request) =>
          Effect.succeed(HttpClientResponse.fromWeb(request, new Response("ok")))
        )
        const m = mock(() => audio("x"), {
          transportSpans: false,
          transformClient: (client) => HttpClient.tap(client, () => Effect.ignore(other.get("https://other.test/ping")))
        })
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
          Effect.withSpan("caller"),
          Effect.provideService(Tracer.Tracer, tracer)
        )
        const clientSpans = spans.filter((s) => s.kind === "client")
        assert.strictEqual(clientSpans.length, 1, "the hook's request only")
        assert.strictEqual(clientSpans[0]!.attributes.get("url.full"), "https://other.test/ping")
      }))

    it.effect("transportSpans: false continues an external parent (a trace from elsewhere)", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("x"), { transportSpans: false })
        const traceId = "0af7651916cd43dd8448eb211c80319c"
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
          Effect.withParentSpan(Tracer.externalSpan({ traceId, spanId: "b7ad6b7169203331", sampled: true }))
        )
        assert.strictEqual(m.requests[0]!.request.headers["traceparent"], `00-${traceId}-b7ad6b7169203331-01`)
      }))
  })

  describe("the key stays out of spans", () => {
    it.effect("with every header captured, the client span shows xi-api-key as <redacted>", () =>
      Effect.gen(function*() {
        const { spans, tracer } = recording()
        const m = mock(() => audio("x"))
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })).pipe(
          Effect.provideService(Tracer.Tracer, tracer),
          Effect.provideService(HttpClient.TracerHeaderFilter, () => true)
        )
        const attributes = spans.flatMap((span) => [...span.attributes.entries()])
        assert.deepInclude(attributes, ["http.request.header.xi-api-key", "<redacted>"])
        for (const [, value] of attributes) assert.notInclude(String(value), apiKey)
      }))
  })

  describe("local validation makes no request", () => {
    const bad: ReadonlyArray<
      readonly [string, (el: ElevenLabs.ElevenLabs) => Effect.Effect<unknown, ElevenLabsError, any>, string]
    > = [
      ["blank text", (el) => el.textToSpeech.convert(voiceId, { text: "  \n " }), "text"],
      [
        "text over the model limit",
        (el) => el.textToSpeech.convert(voiceId, { text: "a".repeat(3001), modelId: "eleven_v3" }),
        "text"
      ],
      [
        "wav on stream",
        (el) => el.textToSpeech.stream(voiceId, { text: "Hi", outputFormat: "wav_44100" as never }),
        "outputFormat"
      ],
      [
        "stability 1.5",
        (el) => el.textToSpeech.convert(voiceId, { text: "Hi", voiceSettings: { stability: 1.5 } }),
        "voiceSettings.stability"
      ],
      [
        "speed 2",
        (el) => el.textToSpeech.streamWithTimestamps(voiceId, { text: "Hi", voiceSettings: { speed: 2 } }),
        "voiceSettings.speed"
      ],
      ["voice id with a slash", (el) => el.textToSpeech.convert("abc/../x", { text: "Hi" }), "voiceId"],
      ["empty voice id", (el) => el.voices.get(""), "voiceId"],
      ["STT without audio", (el) => el.speechToText.convert({}), "file"],
      [
        "STT with both",
        (el) => el.speechToText.convert({ file: new Uint8Array([1]), sourceUrl: "https://x" }),
        "sourceUrl"
      ],
      ["music without prompt", (el) => el.music.compose({}), "prompt"],
      ["voice search page of 0", (el) => el.voices.search({ pageSize: 0 }), "pageSize"],
      ["voice search page of 101", (el) => el.voices.search({ pageSize: 101 }), "pageSize"],
      [
        "voice search with a notice period of 1.5 days",
        (el) => el.voices.search({ minNoticePeriodDays: 1.5 }),
        "minNoticePeriodDays"
      ],
      [
        "voice search of 101 ids",
        (el) => el.voices.search({ voiceIds: Array.from({ length: 101 }, () => voiceId) }),
        "voiceIds"
      ]
    ]
    for (const [name, call, field] of bad) {
      it.effect(name, () =>
        Effect.gen(function*() {
          const m = mock(() => Effect.die("the transport must not be called"))
          const error = yield* failure(Effect.scoped(run(m, call)))
          assert.strictEqual(error.reason._tag, "InvalidRequest")
          if (error.reason._tag === "InvalidRequest") assert.strictEqual(error.reason.field, field)
          assert.isUndefined(error.reason.status)
          assert.strictEqual(m.requests.length, 0)
        }))
    }

    it.effect("character limits can be overridden", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("x"), { characterLimits: { eleven_v3: 5000 } })
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "a".repeat(4000), modelId: "eleven_v3" }))
        assert.strictEqual(m.requests.length, 1)
      }))
  })

  describe("validate: false (the resilient stack checks at its own door)", () => {
    it.effect("sends what it would have refused, and the server's 400 is the answer", () =>
      Effect.gen(function*() {
        const m = mock(() => audio("x"), { validate: false })
        yield* run(m, (el) => el.textToSpeech.convert(voiceId, { text: "  \n " }))
        yield* run(m, (el) => el.music.compose({}))
        assert.strictEqual(m.requests.length, 2)
      }))
  })

  describe("layerConfig", () => {
    it.effect("reads the key, base URL and timeouts from the ConfigProvider", () =>
      Effect.gen(function*() {
        const m = mock(() => Effect.never)
        const layer = ElevenLabs.layerConfig().pipe(
          Layer.provide(Layer.succeed(HttpClient.HttpClient, m.client)),
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
            ELEVENLABS_API_KEY: "cfg-key-123",
            ELEVENLABS_BASE_URL: "http://127.0.0.1:8787",
            ELEVENLABS_HEADERS_TIMEOUT: "3 seconds"
          })))
        )
        const fiber = yield* Effect.forkChild(Effect.flip(run({ layer }, (el) => el.models.list())))
        yield* TestClock.adjust("3 seconds")
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error._tag === "ElevenLabsError" ? error.reason._tag : error._tag, "Timeout")
        assert.strictEqual(m.requests[0]!.url.href, "http://127.0.0.1:8787/v1/models")
        assert.strictEqual(m.requests[0]!.request.headers["xi-api-key"], "cfg-key-123")
      }))

    it.effect("reads ELEVENLABS_IDLE_TIMEOUT", () =>
      Effect.gen(function*() {
        const m = mock(() => audio(chunked(["a"], { stall: true })))
        const layer = ElevenLabs.layerConfig().pipe(
          Layer.provide(Layer.succeed(HttpClient.HttpClient, m.client)),
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
            ELEVENLABS_API_KEY: "k",
            ELEVENLABS_IDLE_TIMEOUT: "2 seconds"
          })))
        )
        const fiber = yield* Effect.forkChild(
          Effect.flip(run({ layer }, (el) => el.textToSpeech.convert(voiceId, { text: "Hi" })))
        )
        yield* settle
        yield* TestClock.adjust("2 seconds")
        const error = yield* Fiber.join(fiber)
        assert.isTrue(
          error._tag === "ElevenLabsError" && error.reason._tag === "Timeout" && error.reason.phase === "idle"
        )
      }))

    it.effect("fails without ELEVENLABS_API_KEY, defaults the base URL", () =>
      Effect.gen(function*() {
        const m = mock(() => json([]))
        const provide = (env: Record<string, string>) =>
          ElevenLabs.layerConfig().pipe(
            Layer.provide(Layer.succeed(HttpClient.HttpClient, m.client)),
            Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
          )
        const exit = yield* Effect.exit(Effect.provide(
          Effect.gen(function*() {
            return yield* ElevenLabs.ElevenLabs
          }),
          provide({})
        ))
        assert.isTrue(Exit.isFailure(exit))
        yield* run({ layer: provide({ ELEVENLABS_API_KEY: "k" }) }, (el) => el.models.list())
        assert.strictEqual(m.requests[0]!.url.href, "https://api.elevenlabs.io/v1/models")
      }))
  })
})
