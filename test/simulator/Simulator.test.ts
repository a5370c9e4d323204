import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Simulator from "../../src/simulator/Simulator.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const base = "http://sim.test"

const ttsRequest = (
  text: string,
  options: { readonly key?: string; readonly model?: string; readonly path?: string; readonly query?: string } = {}
) =>
  new Request(`${base}/v1/text-to-speech/${voice}${options.path ?? ""}${options.query ?? ""}`, {
    method: "POST",
    headers: { "xi-api-key": options.key ?? "sim-key", "content-type": "application/json" },
    body: JSON.stringify({ text, model_id: options.model ?? "eleven_multilingual_v2" })
  })

const get = (path: string, key = "sim-key") => new Request(`${base}${path}`, { headers: { "xi-api-key": key } })

interface Answer {
  readonly status: number | "reset" | "cut"
  readonly headers: Readonly<Record<string, string>>
  readonly bytes: Uint8Array
  readonly json: any
}

/** Sends one request and reads the whole body (a cut shows as status "cut"). */
const call = (sim: Simulator.Service, request: Request) =>
  Effect.gen(function*() {
    const outcome = yield* sim.handle(request)
    if (outcome._tag === "Reset") return { status: "reset", headers: {}, bytes: new Uint8Array(), json: undefined } as Answer
    const chunks = yield* Stream.runCollect(outcome.body).pipe(Effect.result)
    if (chunks._tag === "Failure") return { status: "cut", headers: outcome.headers, bytes: new Uint8Array(), json: undefined } as Answer
    const bytes = new Uint8Array(chunks.success.reduce((n, c) => n + c.length, 0))
    let offset = 0
    for (const c of chunks.success) {
      bytes.set(c, offset)
      offset += c.length
    }
    const isJson = outcome.headers["content-type"] === "application/json"
    return {
      status: outcome.status,
      headers: outcome.headers,
      bytes,
      json: isJson ? JSON.parse(new TextDecoder().decode(bytes)) : undefined
    } as Answer
  })

/** Forks `effects`, moves the clock until all are done, returns their results. */
const runAll = <A>(effects: ReadonlyArray<Effect.Effect<A>>, step = 50, steps = 2000) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(Effect.all(effects, { concurrency: "unbounded" }))
    for (let i = 0; i < steps && fiber.pollUnsafe() === undefined; i++) yield* TestClock.adjust(step)
    return yield* Fiber.join(fiber)
  })

describe("Simulator model", () => {
  it.effect("answers TTS with cost, concurrency headers and audio of a length proportional to the text", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ seed: 1 })
      const [a] = yield* runAll([call(sim, ttsRequest("x".repeat(150), { query: "?output_format=pcm_16000" }))])
      assert.strictEqual(a!.status, 200)
      assert.strictEqual(a!.headers["character-cost"], "150")
      assert.strictEqual(a!.headers["content-type"], "audio/pcm")
      assert.strictEqual(a!.bytes.length, 10 * 16000 * 2) // 150 chars at 15 chars/s = 10 s
      const [f] = yield* runAll([call(sim, ttsRequest("x".repeat(151), { model: "eleven_flash_v2_5" }))])
      assert.strictEqual(f!.headers["character-cost"], "76") // ceil(151 x 0.5)
      assert.strictEqual(f!.headers["maximum-concurrent-requests"], "20")
      const stats = yield* sim.stats
      assert.strictEqual(stats.creditsCharged, 226)
      const [sub] = yield* runAll([call(sim, get("/v1/user/subscription"))])
      assert.strictEqual(sub!.json.character_count, 226)
    }))

  it.effect("the same seed and requests give identical records", () =>
    Effect.gen(function*() {
      const run = Effect.gen(function*() {
        const sim = yield* Simulator.make({
          seed: 42,
          plan: "free",
          faults: Simulator.faultMix(0.3)
        })
        const requests = Array.from({ length: 40 }, (_, i) =>
          Effect.flatMap(Effect.sleep(i * 37), () =>
            call(sim, ttsRequest("word ".repeat(5 + (i % 7)), i % 3 === 0 ? { model: "eleven_flash_v2_5" } : {})))
        )
        const answers = yield* runAll(requests, 25)
        const stats = yield* sim.stats
        return {
          answers: answers.map((a) => [a.status, a.headers["request-id"] ?? "", a.headers["x-trace-id"] ?? "", a.bytes.length]),
          stats
        }
      }).pipe(Effect.provide(TestClock.layer()))
      const first = yield* run
      const second = yield* run
      assert.deepStrictEqual(second, first)
      // Real variety, not a trivial run.
      const statuses = new Set(first.answers.map((a) => a[0]))
      assert.isTrue(statuses.has(200) && statuses.has(429), `statuses: ${[...statuses].join(",")}`)
      const third = yield* Effect.provide(
        Effect.gen(function*() {
          const sim = yield* Simulator.make({ seed: 43, plan: "free", faults: Simulator.faultMix(0.3) })
          const [a] = yield* runAll([call(sim, ttsRequest("hello"))])
          return a!.headers["x-trace-id"]
        }),
        TestClock.layer()
      )
      assert.notStrictEqual(third, first.answers[0]![2])
    }))

  it.effect.prop(
    "without a queue, in-flight per pool never exceeds the limit; every request gets 200 or 429",
    [
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4 })),
      Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 400 }))).check(Schema.isMaxLength(20)),
      Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 }))
    ],
    ([limit, lengths, seed]) =>
      Effect.gen(function*() {
        const sim = yield* Simulator.make({ seed, apiKeys: [{ key: "sim-key", limits: { standard: limit } }] })
        const answers = yield* runAll(
          lengths.map((n, i) => Effect.flatMap(Effect.sleep((i * 13) % 200), () => call(sim, ttsRequest("a".repeat(n))))),
          20
        )
        const stats = yield* sim.stats
        const pool = stats.accounts["key1"]!.pools.standard
        assert.isTrue(pool.maxInFlight <= limit)
        for (const s of pool.samples) assert.isTrue(s.inFlight <= limit)
        assert.strictEqual(pool.inFlight, 0)
        for (const a of answers) assert.include([200, 429], a.status)
        assert.strictEqual(answers.filter((a) => a.status === 200).length, pool.admitted)
      }),
    { arbitrary: { runs: 40 } }
  )

  it.effect.prop(
    "with a queue and callers that give up at random, no slot or queue place is left behind",
    [
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 3 })),
      Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 4 })),
      Schema.Array(Schema.Struct({
        chars: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 300 })),
        at: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2000 })),
        giveUpAfter: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4000 }))
      })).check(Schema.isMaxLength(16))
    ],
    ([limit, depth, calls]) =>
      Effect.gen(function*() {
        const sim = yield* Simulator.make({
          apiKeys: [{ key: "sim-key", limits: { standard: limit } }],
          queue: { depth, maxWaitMs: 1500 },
          faults: { hang: 0.1, streamCut: 0.1 }
        })
        yield* runAll(
          calls.map((c) =>
            call(sim, ttsRequest("p".repeat(c.chars))).pipe(
              Effect.delay(c.at),
              Effect.timeoutOption(c.at + c.giveUpAfter)
            )
          ),
          25
        )
        const pool = (yield* sim.stats).accounts["key1"]!.pools.standard
        assert.strictEqual(pool.inFlight, 0)
        assert.strictEqual(pool.queued, 0)
        assert.isTrue(pool.maxInFlight <= limit)
        assert.isTrue(pool.maxQueued <= depth)
      }),
    { arbitrary: { runs: 40 } }
  )

  it.effect("a queue holds requests past the limit until a slot frees, then times out to a 429", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        apiKeys: [{ key: "sim-key", limits: { standard: 1 } }],
        queue: { depth: 2, maxWaitMs: 5_000 },
        latency: { standard: { ttfbMs: 100, msPerUnit: 10, jitter: 0 } }
      })
      // 100 chars: 100 + 1000 ms each. Four at once: one runs, two queue, one is refused.
      const answers = yield* runAll(Array.from({ length: 4 }, () => call(sim, ttsRequest("q".repeat(100)))), 10)
      assert.deepStrictEqual(answers.map((a) => a.status).sort(), [200, 200, 200, 429])
      let stats = yield* sim.stats
      assert.strictEqual(stats.pools.standard.maxQueued, 2)
      assert.strictEqual(stats.pools.standard.maxInFlight, 1)
      // 4000 chars take 40 s: the queued ones give up after 5 s.
      const slow = yield* runAll([
        call(sim, ttsRequest("s".repeat(4000))),
        Effect.flatMap(Effect.sleep(10), () => call(sim, ttsRequest("t"))),
        Effect.flatMap(Effect.sleep(10), () => call(sim, ttsRequest("u")))
      ], 100)
      assert.deepStrictEqual(slow.map((a) => a.status), [200, 429, 429])
      stats = yield* sim.stats
      assert.strictEqual(stats.pools.standard.queued, 0)
      assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"], 3)
    }))

  it.effect("an interrupted queued request leaves no place behind", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        apiKeys: [{ key: "sim-key", limits: { standard: 1 } }],
        queue: { depth: 5, maxWaitMs: 60_000 }
      })
      const holder = yield* Effect.forkChild(call(sim, ttsRequest("h".repeat(1000))))
      yield* TestClock.adjust(1)
      const waiter = yield* Effect.forkChild(call(sim, ttsRequest("w")))
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* sim.stats).pools.standard.queued, 1)
      yield* Fiber.interrupt(waiter)
      assert.strictEqual((yield* sim.stats).pools.standard.queued, 0)
      yield* TestClock.adjust(60_000)
      const done = yield* Fiber.join(holder)
      assert.strictEqual(done.status, 200)
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 0)
    }))

  it.effect("a limit lowered mid-run (20 -> 10) refuses new requests until in-flight drops below it", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ latency: { flash: { ttfbMs: 10, msPerUnit: 10, jitter: 0 } } })
      const streams = yield* Effect.forEach(Array.from({ length: 20 }), () => sim.handle(ttsRequest("f".repeat(100), { model: "eleven_flash_v2_5", path: "/stream" })).pipe(Effect.forkChild))
      yield* TestClock.adjust(20)
      const outcomes = yield* Effect.forEach(streams, Fiber.join)
      assert.strictEqual((yield* sim.stats).pools.flash.inFlight, 20)
      yield* sim.setLimit("flash", 10)
      const [refused] = yield* runAll([call(sim, ttsRequest("r", { model: "eleven_flash_v2_5" }))])
      assert.strictEqual(refused!.status, 429)
      assert.match(refused!.json.detail.message, /maximum of 10 concurrent requests/)
      // Drain the held bodies: the slots come back, and new requests get in again.
      yield* runAll(outcomes.map((o) => o._tag === "Respond" ? Stream.runDrain(o.body).pipe(Effect.orDie) : Effect.void), 100)
      const [ok] = yield* runAll([call(sim, ttsRequest("r", { model: "eleven_flash_v2_5" }))])
      assert.strictEqual(ok!.status, 200)
      assert.strictEqual(ok!.headers["maximum-concurrent-requests"], "10")
    }))

  it.effect("quota: 401 quota_exceeded past the limit, counts reset when the clock passes the reset time", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({
        periodSeconds: 100,
        apiKeys: [{ key: "sim-key", characterLimit: 20 }]
      })
      const [a, b] = yield* runAll([call(sim, ttsRequest("x".repeat(15))), Effect.flatMap(Effect.sleep(5000), () => call(sim, ttsRequest("y".repeat(10))))])
      assert.strictEqual(a!.status, 200)
      assert.strictEqual(b!.status, 401)
      assert.strictEqual(b!.json.detail.status, "quota_exceeded")
      assert.strictEqual(
        b!.json.detail.message,
        "This request exceeds your quota of 20. You have 5 credits remaining, while 10 credits are required for this request."
      )
      let [sub] = yield* runAll([call(sim, get("/v1/user/subscription"))])
      assert.strictEqual(sub!.json.next_character_count_reset_unix, 100)
      yield* TestClock.adjust(100_000)
      const [c] = yield* runAll([call(sim, ttsRequest("y".repeat(10)))])
      assert.strictEqual(c!.status, 200)
      ;[sub] = yield* runAll([call(sim, get("/v1/user/subscription"))])
      assert.strictEqual(sub!.json.character_count, 10)
      assert.strictEqual(sub!.json.next_character_count_reset_unix, 200)
      yield* sim.setCredits(3)
      const [d] = yield* runAll([call(sim, ttsRequest("abcd"))])
      assert.match(d!.json.detail.message, /You have 3 credits remaining, while 4 credits/)
    }))

  it.effect("a hang holds its slot until the caller gives up", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ faults: { hang: 1 } })
      const fiber = yield* Effect.forkChild(call(sim, ttsRequest("hang")))
      yield* TestClock.adjust(600_000)
      assert.isUndefined(fiber.pollUnsafe())
      assert.strictEqual((yield* sim.stats).pools.standard.inFlight, 1)
      yield* Fiber.interrupt(fiber)
      const stats = yield* sim.stats
      assert.strictEqual(stats.pools.standard.inFlight, 0)
      assert.strictEqual(stats.faults["hang"], 1)
      assert.strictEqual(stats.creditsCharged, 0)
    }))

  it.effect("faults: 500 shapes, 503 HTML, reset and cut; failures are not charged, cuts are", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const one = (f: Partial<Simulator.FaultRates>) =>
        Effect.gen(function*() {
          yield* sim.setFaults({ ...Simulator.noFaults, ...f })
          const [a] = yield* runAll([call(sim, ttsRequest("abcde"))])
          return a!
        })
      const a = yield* one({ serverError: 1 })
      assert.deepStrictEqual([a.status, a.json.detail.status], [500, "something_went_wrong"])
      const e = yield* one({ internalServerError: 1 })
      assert.deepStrictEqual([e.status, e.json.status], [500, "internal_server_error"])
      const h = yield* one({ serviceUnavailable: 1 })
      assert.strictEqual(h.status, 503)
      assert.strictEqual(h.headers["content-type"], "text/html; charset=UTF-8")
      assert.strictEqual((yield* one({ connectionReset: 1 })).status, "reset")
      assert.strictEqual((yield* sim.stats).creditsCharged, 0)
      assert.strictEqual((yield* one({ streamCut: 1 })).status, "cut")
      const stats = yield* sim.stats
      assert.strictEqual(stats.creditsCharged, 5)
      assert.strictEqual(stats.pools.standard.inFlight, 0)
      assert.match(a.headers["x-trace-id"]!, /^[0-9a-f]{32}$/)
      assert.strictEqual(a.headers["x-region"], "us-central1")
    }))

  it.effect("system_busy: by probability, and by load over a shared capacity; Retry-After on request", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ systemCapacity: 1, retryAfterSeconds: 3, apiKeys: ["k1", "k2"] })
      const [a, b] = yield* runAll([call(sim, ttsRequest("x".repeat(50), { key: "k1" })), call(sim, ttsRequest("y", { key: "k2" }))])
      assert.strictEqual(a!.status, 200)
      assert.deepStrictEqual([b!.status, b!.json.detail.status, b!.headers["retry-after"]], [429, "system_busy", "3"])
      yield* sim.configure({ systemCapacity: null, faults: { systemBusy: 1 } })
      const [c] = yield* runAll([call(sim, ttsRequest("z", { key: "k1" }))])
      assert.strictEqual(c!.json.detail.status, "system_busy")
      assert.strictEqual((yield* sim.stats).faults["systemBusyLoad"], 1)
    }))

  it.effect("auth, validation and plan errors in the real shapes", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ plan: "starter" })
      const answers = yield* runAll([
        call(sim, ttsRequest("hi", { key: "nope" })),
        call(sim, new Request(`${base}/v1/models`)),
        call(sim, new Request(`${base}/v1/text-to-speech/unknown`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: JSON.stringify({ text: "hi" }) })),
        call(sim, new Request(`${base}/v1/text-to-speech/${voice}`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: JSON.stringify({ model_id: 3 }) })),
        call(sim, ttsRequest("hi", { path: "/stream", query: "?output_format=wav_44100" })),
        call(sim, ttsRequest("hi", { query: "?output_format=mp3_44100_192" })),
        call(sim, ttsRequest("x".repeat(10_001))),
        call(sim, new Request(`${base}/v1/text-to-speech/${voice}`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: "{not json" })),
        call(sim, new Request(`${base}/v1/text-to-speech/${voice}`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: JSON.stringify({ text: "a", voice_settings: { stability: 2 } }) }))
      ])
      const [badKey, noKey, noVoice, badBody, wavStream, gated, tooLong, notJson, range] = answers
      assert.deepStrictEqual([badKey!.status, badKey!.json.detail.status], [401, "invalid_api_key"])
      assert.deepStrictEqual([noKey!.status, noKey!.json.detail.status], [401, "needs_authorization"])
      assert.deepStrictEqual([noVoice!.status, noVoice!.json.detail.message], [404, "A voice with the voice_id unknown was not found."])
      assert.strictEqual(badBody!.status, 422)
      assert.deepStrictEqual(badBody!.json.detail.map((d: any) => [d.type, d.loc.join(".")]), [
        ["missing", "body.text"],
        ["string_type", "body.model_id"]
      ])
      assert.deepStrictEqual([wavStream!.status, wavStream!.json.detail[0].type], [422, "enum"])
      assert.deepStrictEqual([gated!.status, gated!.json.detail.message], [
        403,
        "Requested output format mp3_44100_192 (MP3 at 44100hz, 128kbps) is only allowed for Creator tier and above.".replace("128kbps", "192kbps")
      ])
      assert.deepStrictEqual([tooLong!.status, tooLong!.json.detail.status], [400, "max_character_limit_exceeded"])
      assert.deepStrictEqual([notJson!.status, notJson!.json.detail[0].type], [422, "json_invalid"])
      assert.deepStrictEqual([range!.status, range!.json.detail[0].ctx], [422, { le: 1 }])
      const stats = yield* sim.stats
      assert.strictEqual(stats.byStatus["422"], 4)
      assert.strictEqual(stats.byDetailStatus["invalid_api_key"], 1)
    }))

  it.effect("control routes change a running simulator and reject bad patches", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const post = (path: string, body: unknown) =>
        call(sim, new Request(`${base}${path}`, { method: "POST", body: JSON.stringify(body) }))
      const [ok, bad, unknownAccount] = yield* runAll([
        post("/_simulator/config", { account: "key1", limits: { standard: 1 }, faults: { serverError: 0 } }),
        post("/_simulator/config", { faults: { hang: 2 } }),
        post("/_simulator/config", { account: "nobody", credits: { remaining: 1 } })
      ])
      assert.strictEqual(ok!.status, 200)
      assert.strictEqual(bad!.status, 400)
      assert.strictEqual(unknownAccount!.status, 400)
      const [stats] = yield* runAll([call(sim, get("/_simulator/stats"))])
      assert.strictEqual(stats!.json.pools.standard.limit, 1)
      yield* runAll([call(sim, ttsRequest("hello"))])
      assert.strictEqual((yield* sim.stats).requests, 1)
      const [reset] = yield* runAll([post("/_simulator/reset", {})])
      assert.strictEqual(reset!.status, 200)
      const after = yield* sim.stats
      assert.deepStrictEqual([after.requests, after.creditsCharged, after.byStatus], [0, 0, {}])
    }))

  it.effect("voices, models, user, STT and music", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const form = new FormData()
      form.append("model_id", "scribe_v1")
      form.append("file", new Blob([new Uint8Array(32000 * 4)]), "a.pcm")
      const [voices, models, user, stt, music, sttBad] = yield* runAll([
        call(sim, get("/v1/voices")),
        call(sim, get("/v1/models")),
        call(sim, get("/v1/user")),
        call(sim, new Request(`${base}/v1/speech-to-text`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: form })),
        call(sim, new Request(`${base}/v1/music`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: JSON.stringify({ prompt: "calm piano", music_length_ms: 5000 }) })),
        call(sim, new Request(`${base}/v1/speech-to-text`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: new FormData() }))
      ], 100)
      assert.isTrue(voices!.json.voices.some((v: any) => v.voice_id === voice))
      const multilingual = models!.json.find((m: any) => m.model_id === "eleven_multilingual_v2")
      assert.deepStrictEqual(
        [multilingual.concurrency_group, multilingual.model_rates.character_cost_multiplier, multilingual.max_characters_request_subscribed_user],
        ["standard", 1, 10_000]
      )
      assert.strictEqual(user!.json.subscription.tier, "pro")
      assert.strictEqual(stt!.status, 200)
      assert.strictEqual(stt!.json.audio_duration_secs, 4)
      assert.isTrue(stt!.json.words.length >= 10)
      assert.strictEqual(music!.status, 200)
      assert.match(music!.headers["song-id"]!, /^[A-Za-z0-9]{20}$/)
      assert.strictEqual(music!.bytes[0], 0xff)
      assert.deepStrictEqual([sttBad!.status, sttBad!.json.detail[0].loc], [422, ["body", "model_id"]])
    }))

  it.effect("GET /v2/voices filters, sorts and pages; a bad query is a 422 before the key is checked", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make()
      const names = (a: Answer) => a.json.voices.map((v: any) => v.name)
      const first = yield* call(sim, get("/v2/voices?page_size=4&sort=name"))
      assert.deepStrictEqual(
        [first.status, names(first), first.json.has_more, first.json.total_count],
        [200, ["Clyde", "Domi", "Drew", "George"], true, 6]
      )
      const second = yield* call(sim, get(`/v2/voices?page_size=4&sort=name&next_page_token=${first.json.next_page_token}`))
      assert.deepStrictEqual([names(second), second.json.has_more, second.json.next_page_token], [["Rachel", "Sarah"], false, null])
      const search = yield* call(sim, get("/v2/voices?search=RACH"))
      assert.deepStrictEqual(names(search), ["Rachel"])
      const british = yield* call(sim, get("/v2/voices?accent=british&gender=male"))
      assert.deepStrictEqual(names(british), ["George"])
      const byId = yield* call(sim, get(`/v2/voices?voice_ids=${voice}&voice_ids=JBFqnCBsd6RMkjVDRZzb&sort_direction=desc`))
      assert.deepStrictEqual(names(byId), ["George", "Rachel"])
      const personal = yield* call(sim, get("/v2/voices?voice_type=personal"))
      assert.deepStrictEqual([personal.json.voices.length, personal.json.total_count], [0, 0])
      const defaults = yield* call(sim, get("/v2/voices"))
      assert.deepStrictEqual([defaults.json.voices.length, defaults.json.has_more], [6, false])

      const tooBig = yield* call(sim, get("/v2/voices?page_size=101", "wrong-key"))
      assert.deepStrictEqual([tooBig.status, tooBig.json.detail[0].type, tooBig.json.detail[0].loc], [422, "less_than_equal", ["query", "page_size"]])
      const notInt = yield* call(sim, get("/v2/voices?page_size=ten&sort=age"))
      assert.deepStrictEqual(notInt.json.detail.map((d: any) => d.type), ["int_parsing", "enum"])
      const badToken = yield* call(sim, get("/v2/voices?next_page_token=%3Cx%3E"))
      assert.deepStrictEqual([badToken.status, badToken.json.detail[0].loc], [422, ["query", "next_page_token"]])
      const wrongKey = yield* call(sim, get("/v2/voices", "wrong-key"))
      assert.strictEqual(wrongKey.status, 401)
    }))
})
