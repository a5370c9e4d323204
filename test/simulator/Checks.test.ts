/**
 * What a request is and FastAPI's checks: at the module (`Checks`), and
 * through the model (`Simulator.handle`, virtual time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Checks from "../../src/simulator/Checks.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { base, call, parts, runAll, ttsRequest, voice } from "./support.ts"

describe("Checks", () => {
  it("checkString: required and missing, optional and null, not a string", () => {
    const items: Array<Checks.ValidationItem> = []
    const body = { text: 3, model_id: null }
    assert.isUndefined(Checks.checkString(items, body, "text", true))
    assert.isUndefined(Checks.checkString(items, body, "model_id", false))
    assert.isUndefined(Checks.checkString(items, body, "voice", true))
    assert.strictEqual(Checks.checkString(items, { text: "hi" }, "text", true), "hi")
    assert.deepStrictEqual(items.map((i) => [i.type, i.loc.join(".")]), [["string_type", "body.text"], [
      "missing",
      "body.voice"
    ]])
  })

  it("checkVoiceSettings: the ranges, the boolean, and an object", () => {
    const items: Array<Checks.ValidationItem> = []
    Checks.checkVoiceSettings(items, {
      voice_settings: { stability: -1, speed: 1.5, style: "x", similarity_boost: 0.5, use_speaker_boost: 1 }
    })
    Checks.checkVoiceSettings(items, { voice_settings: [1] })
    Checks.checkVoiceSettings(items, { voice_settings: null })
    assert.deepStrictEqual(items.map((i) => [i.type, i.loc.slice(1).join("."), i.ctx]), [
      ["greater_than_equal", "voice_settings.stability", { ge: 0 }],
      ["float_type", "voice_settings.style", undefined],
      ["less_than_equal", "voice_settings.speed", { le: 1.2 }],
      ["bool_type", "voice_settings.use_speaker_boost", undefined],
      ["model_attributes_type", "voice_settings", undefined]
    ])
  })

  it("checkFormat: the query or the default, one of the allowed, listed as pydantic lists them", () => {
    const items: Array<Checks.ValidationItem> = []
    const allowed = ["mp3_44100_128", "pcm_16000", "ulaw_8000"]
    assert.strictEqual(Checks.checkFormat(items, new URL("http://x/?a=1"), allowed, "mp3_44100_128"), "mp3_44100_128")
    assert.strictEqual(
      Checks.checkFormat(items, new URL("http://x/?output_format=flac"), allowed, "mp3_44100_128"),
      "flac"
    )
    assert.deepStrictEqual(items, [{
      type: "enum",
      loc: ["query", "output_format"],
      msg: "Input should be 'mp3_44100_128', 'pcm_16000' or 'ulaw_8000'",
      input: "flac",
      ctx: { expected: "'mp3_44100_128', 'pcm_16000' or 'ulaw_8000'" }
    }])
    assert.deepStrictEqual([Checks.quoteList([]), Checks.quoteList(["a"]), Checks.quoteList(["a", "b"])], [
      "",
      "'a'",
      "'a' or 'b'"
    ])
  })

  it.effect("readJson reads bodyText without a promise; objectBody files what is not an object", () =>
    Effect.gen(function*() {
      const request = (bodyText: string) =>
        Checks.textRequest({ method: "POST", url: "http://x/", header: () => null, bodyText })
      const items: Array<Checks.ValidationItem> = []
      assert.deepStrictEqual(Checks.objectBody(items, yield* Checks.readJson(request(`{"text":"a"}`))), { text: "a" })
      assert.isUndefined(Checks.objectBody(items, yield* Checks.readJson(request(""))))
      assert.isUndefined(Checks.objectBody(items, yield* Checks.readJson(request("{x"))))
      assert.isUndefined(Checks.objectBody(items, yield* Checks.readJson(request("[1]"))))
      assert.deepStrictEqual(items.map((i) => [i.type, i.ctx?.["error"]]), [
        ["json_invalid", "Expecting value"],
        ["json_invalid", "Invalid JSON"],
        ["model_attributes_type", undefined]
      ])
    }))

  it.effect("textRequest: headers by any case, a URL-encoded form parsed on demand", () =>
    Effect.gen(function*() {
      const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" }
      const request = Checks.textRequest({
        method: "POST",
        url: "http://x/",
        header: (n) => headers[n] ?? null,
        bodyText: "model_id=scribe_v1&a=b"
      })
      assert.strictEqual(request.headers.get("Content-Type"), "application/x-www-form-urlencoded")
      const form = yield* Effect.promise(() => request.formData())
      assert.deepStrictEqual([form.get("model_id"), form.get("a")], ["scribe_v1", "b"])
    }))

  it("formatForbidden: a format gated to a higher plan is a 403 naming the plan", () => {
    const { accounts, answers } = parts({ apiKeys: [{ key: "s", plan: "starter" }, { key: "p", plan: "pro" }] })
    const [starter, pro] = accounts.all
    const gated = Checks.formatForbidden(answers, starter!, "pcm_44100")
    assert.strictEqual(gated?.status, 403)
    assert.strictEqual(
      JSON.parse(new TextDecoder().decode(gated?.whole)).detail.message,
      "Requested output format pcm_44100 (PCM at 44100hz) is only allowed for Pro tier and above."
    )
    assert.isUndefined(Checks.formatForbidden(answers, pro!, "pcm_44100"))
    assert.isUndefined(Checks.formatForbidden(answers, starter!, "mp3_44100_128"))
  })
})

describe("Checks in the model", () => {
  it.effect("auth, validation and plan errors in the real shapes", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ plan: "starter" })
      const answers = yield* runAll([
        call(sim, ttsRequest("hi", { key: "nope" })),
        call(sim, new Request(`${base}/v1/models`)),
        call(
          sim,
          new Request(`${base}/v1/text-to-speech/unknown`, {
            method: "POST",
            headers: { "xi-api-key": "sim-key" },
            body: JSON.stringify({ text: "hi" })
          })
        ),
        call(
          sim,
          new Request(`${base}/v1/text-to-speech/${voice}`, {
            method: "POST",
            headers: { "xi-api-key": "sim-key" },
            body: JSON.stringify({ model_id: 3 })
          })
        ),
        call(sim, ttsRequest("hi", { path: "/stream", query: "?output_format=wav_44100" })),
        call(sim, ttsRequest("hi", { query: "?output_format=mp3_44100_192" })),
        call(sim, ttsRequest("x".repeat(10_001))),
        call(
          sim,
          new Request(`${base}/v1/text-to-speech/${voice}`, {
            method: "POST",
            headers: { "xi-api-key": "sim-key" },
            body: "{not json"
          })
        ),
        call(
          sim,
          new Request(`${base}/v1/text-to-speech/${voice}`, {
            method: "POST",
            headers: { "xi-api-key": "sim-key" },
            body: JSON.stringify({ text: "a", voice_settings: { stability: 2 } })
          })
        )
      ])
      const [badKey, noKey, noVoice, badBody, wavStream, gated, tooLong, notJson, range] = answers
      assert.deepStrictEqual([badKey!.status, badKey!.json.detail.status], [401, "invalid_api_key"])
      assert.deepStrictEqual([noKey!.status, noKey!.json.detail.status], [401, "needs_authorization"])
      assert.deepStrictEqual([noVoice!.status, noVoice!.json.detail.message], [
        404,
        "A voice with the voice_id unknown was not found."
      ])
      assert.strictEqual(badBody!.status, 422)
      assert.deepStrictEqual(badBody!.json.detail.map((d: any) => [d.type, d.loc.join(".")]), [
        ["missing", "body.text"],
        ["string_type", "body.model_id"]
      ])
      assert.deepStrictEqual([wavStream!.status, wavStream!.json.detail[0].type], [422, "enum"])
      assert.deepStrictEqual([gated!.status, gated!.json.detail.message], [
        403,
        "Requested output format mp3_44100_192 (MP3 at 44100hz, 128kbps) is only allowed for Creator tier and above."
          .replace("128kbps", "192kbps")
      ])
      assert.deepStrictEqual([tooLong!.status, tooLong!.json.detail.status], [400, "max_character_limit_exceeded"])
      assert.deepStrictEqual([notJson!.status, notJson!.json.detail[0].type], [422, "json_invalid"])
      assert.deepStrictEqual([range!.status, range!.json.detail[0].ctx], [422, { le: 1 }])
      const stats = yield* sim.stats
      assert.strictEqual(stats.byStatus["422"], 4)
      assert.strictEqual(stats.byDetailStatus["invalid_api_key"], 1)
    }))
})
