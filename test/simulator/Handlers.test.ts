/**
 * The answers of text to speech, speech to text, music and the reads
 * (`Simulator.handle`, virtual time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { type Answer, base, call, get, runAll, ttsRequest, voice } from "./support.ts"

describe("Handlers", () => {
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

  it.effect("characters are code points, as the API (Python) counts them: credits, the limit, the audio and the alignment", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ characterLimits: { eleven_multilingual_v2: 15 } })
      const emoji = "🙂".repeat(15) // 15 code points, 30 UTF-16 units: at the limit
      const mixed = "🙂 hi 🎉🎉" // 7 code points, 10 UTF-16 units
      const [audio, timed, over] = yield* runAll([
        call(sim, ttsRequest(emoji, { query: "?output_format=pcm_16000" })),
        call(sim, ttsRequest(mixed, { path: "/with-timestamps" })),
        call(sim, ttsRequest("🙂".repeat(16)))
      ])
      assert.strictEqual(audio!.headers["character-cost"], "15")
      assert.strictEqual(audio!.bytes.length, 16000 * 2) // 15 characters at 15 a second: 1 s
      assert.strictEqual(timed!.headers["character-cost"], "7")
      assert.deepStrictEqual(timed!.json.alignment.characters, ["🙂", " ", "h", "i", " ", "🎉", "🎉"])
      assert.deepStrictEqual(
        [over!.status, over!.json.detail.message],
        [400, "This request's text has 16 characters and exceeds the character limit of 15 characters."]
      )
      assert.strictEqual((yield* sim.stats).creditsCharged, 22)
      const [sub] = yield* runAll([call(sim, get("/v1/user/subscription"))])
      assert.strictEqual(sub!.json.character_count, 22)
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
        call(
          sim,
          new Request(`${base}/v1/speech-to-text`, { method: "POST", headers: { "xi-api-key": "sim-key" }, body: form })
        ),
        call(
          sim,
          new Request(`${base}/v1/music`, {
            method: "POST",
            headers: { "xi-api-key": "sim-key" },
            body: JSON.stringify({ prompt: "calm piano", music_length_ms: 5000 })
          })
        ),
        call(
          sim,
          new Request(`${base}/v1/speech-to-text`, {
            method: "POST",
            headers: { "xi-api-key": "sim-key" },
            body: new FormData()
          })
        )
      ], 100)
      assert.isTrue(voices!.json.voices.some((v: any) => v.voice_id === voice))
      const multilingual = models!.json.find((m: any) => m.model_id === "eleven_multilingual_v2")
      assert.deepStrictEqual(
        [
          multilingual.concurrency_group,
          multilingual.model_rates.character_cost_multiplier,
          multilingual.max_characters_request_subscribed_user
        ],
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
      const second = yield* call(
        sim,
        get(`/v2/voices?page_size=4&sort=name&next_page_token=${first.json.next_page_token}`)
      )
      assert.deepStrictEqual([names(second), second.json.has_more, second.json.next_page_token], [
        ["Rachel", "Sarah"],
        false,
        null
      ])
      const search = yield* call(sim, get("/v2/voices?search=RACH"))
      assert.deepStrictEqual(names(search), ["Rachel"])
      const british = yield* call(sim, get("/v2/voices?accent=british&gender=male"))
      assert.deepStrictEqual(names(british), ["George"])
      const byId = yield* call(
        sim,
        get(`/v2/voices?voice_ids=${voice}&voice_ids=JBFqnCBsd6RMkjVDRZzb&sort_direction=desc`)
      )
      assert.deepStrictEqual(names(byId), ["George", "Rachel"])
      const personal = yield* call(sim, get("/v2/voices?voice_type=personal"))
      assert.deepStrictEqual([personal.json.voices.length, personal.json.total_count], [0, 0])
      const defaults = yield* call(sim, get("/v2/voices"))
      assert.deepStrictEqual([defaults.json.voices.length, defaults.json.has_more], [6, false])

      const tooBig = yield* call(sim, get("/v2/voices?page_size=101", "wrong-key"))
      assert.deepStrictEqual([tooBig.status, tooBig.json.detail[0].type, tooBig.json.detail[0].loc], [
        422,
        "less_than_equal",
        ["query", "page_size"]
      ])
      const notInt = yield* call(sim, get("/v2/voices?page_size=ten&sort=age"))
      assert.deepStrictEqual(notInt.json.detail.map((d: any) => d.type), ["int_parsing", "enum"])
      const badToken = yield* call(sim, get("/v2/voices?next_page_token=%3Cx%3E"))
      assert.deepStrictEqual([badToken.status, badToken.json.detail[0].loc], [422, ["query", "next_page_token"]])
      const wrongKey = yield* call(sim, get("/v2/voices", "wrong-key"))
      assert.strictEqual(wrongKey.status, 401)
    }))
})
