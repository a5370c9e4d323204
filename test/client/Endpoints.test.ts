import { assert, describe, it } from "@effect/vitest"
import { Effect, Scope, Stream } from "effect"
import * as ElevenLabs from "../../src/client/ElevenLabs.ts"
import * as Endpoints from "../../src/client/Endpoints.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { json, mock } from "./mockTransport.ts"

const voiceId = "21m00Tcm4TlvDq8ikWAM"
const pathOf = (endpoint: Endpoints.Known, id = voiceId) => Endpoints.pathOf(endpoint, { voice_id: id })
const hasParams = (endpoint: Endpoints.Endpoint) => endpoint.path.includes("{")

/** One call of the typed client per row it implements (the compiler asks for a new row's). */
const clientCalls: {
  readonly [N in Endpoints.ClientName]: (el: ElevenLabs.ElevenLabs) => Effect.Effect<unknown, unknown, Scope.Scope>
} = {
  "textToSpeech.convert": (el) => el.textToSpeech.convert(voiceId, { text: "Hi" }),
  "textToSpeech.convertWithTimestamps": (el) => el.textToSpeech.convertWithTimestamps(voiceId, { text: "Hi" }),
  "textToSpeech.stream": (el) => el.textToSpeech.stream(voiceId, { text: "Hi" }),
  "textToSpeech.streamWithTimestamps": (el) => el.textToSpeech.streamWithTimestamps(voiceId, { text: "Hi" }),
  "speechToText.convert": (el) => el.speechToText.convert({ file: new Uint8Array([1, 2, 3]) }),
  "music.compose": (el) => el.music.compose({ prompt: "calm piano" }),
  "speechToSpeech.convert": (el) => el.speechToSpeech.convert(voiceId, { audio: new Uint8Array([1, 2, 3]) }),
  "speechToSpeech.stream": (el) => el.speechToSpeech.stream(voiceId, { audio: new Uint8Array([1, 2, 3]) }),
  "textToSoundEffects.convert": (el) => el.textToSoundEffects.convert({ text: "a door creaks" }),
  "textToDialogue.convert": (el) => el.textToDialogue.convert({ inputs: [{ text: "Hi", voiceId }] }),
  "textToDialogue.stream": (el) => el.textToDialogue.stream({ inputs: [{ text: "Hi", voiceId }] }),
  "audioIsolation.convert": (el) => el.audioIsolation.convert({ audio: new Uint8Array([1, 2, 3]) }),
  "audioIsolation.stream": (el) => el.audioIsolation.stream({ audio: new Uint8Array([1, 2, 3]) }),
  "user.get": (el) => el.user.get(),
  "user.subscription": (el) => el.user.subscription(),
  "voices.list": (el) => el.voices.list(),
  "voices.get": (el) => el.voices.get(voiceId),
  "voices.search": (el) => el.voices.search({ search: "narration" }),
  "models.list": (el) => el.models.list()
}

/** The service member a row's name points at (`textToSpeech.convert` → `el.textToSpeech.convert`). */
const memberOf = (el: ElevenLabs.ElevenLabs, name: string): unknown =>
  name.split(".").reduce<unknown>((o, key) => (o as Record<string, unknown> | undefined)?.[key], el)

describe("Endpoints", () => {
  it("every row's template round-trips through match, with its parameters decoded", () => {
    for (const endpoint of Endpoints.all) {
      for (const id of [voiceId, "a b/c?d#é%"]) {
        if (!hasParams(endpoint) && id !== voiceId) continue
        const path = pathOf(endpoint, id)
        for (const [method, candidate] of [[endpoint.method, path], [endpoint.method.toLowerCase(), `${path}/`]]) {
          const found = Endpoints.match(method!, candidate!)
          assert.strictEqual(found._tag, "Found", `${method} ${candidate}`)
          if (found._tag !== "Found") continue
          assert.strictEqual(found.endpoint.name, endpoint.name)
          assert.deepStrictEqual(found.params, hasParams(endpoint) ? { voice_id: id } : {})
        }
      }
    }
  })

  it("no two rows share a name, nor a method and path", () => {
    const names = Endpoints.all.map((e) => e.name)
    assert.strictEqual(new Set(names).size, names.length)
    const routes = Endpoints.all.map((e) => `${e.method} ${e.path}`)
    assert.strictEqual(new Set(routes).size, routes.length)
    assert.deepStrictEqual([...Endpoints.byName.keys()], names)
  })

  it("a known path with another method is MethodNotAllowed; anything else NotFound", () => {
    assert.deepStrictEqual(Endpoints.match("GET", `/v1/text-to-speech/${voiceId}`), {
      _tag: "MethodNotAllowed",
      allowed: ["POST"]
    })
    assert.deepStrictEqual(Endpoints.match("DELETE", "/v1/voices/x"), { _tag: "MethodNotAllowed", allowed: ["GET"] })
    assert.deepStrictEqual(Endpoints.match("POST", "/v1/user/"), { _tag: "MethodNotAllowed", allowed: ["GET"] })
    for (
      const path of ["/v1/nope", "/v1/text-to-speech", `/v1/text-to-speech/${voiceId}/extra`, "/v1/user//", "/", ""]
    ) {
      assert.deepStrictEqual(Endpoints.match("POST", path), { _tag: "NotFound" }, path)
    }
    // A malformed escape is kept as sent, not a defect.
    const odd = Endpoints.match("GET", "/v1/voices/%E0%A4%A")
    assert.deepStrictEqual(odd._tag === "Found" ? odd.params : undefined, { voice_id: "%E0%A4%A" })
  })

  it("paths, router paths and url templates", () => {
    assert.strictEqual(Endpoints.pathOf(Endpoints.voicesGet, { voice_id: "a b/c" }), "/v1/voices/a%20b%2Fc")
    assert.strictEqual(Endpoints.pathOf(Endpoints.modelsList), "/v1/models")
    assert.strictEqual(
      Endpoints.routerPath(Endpoints.textToSpeechStreamWithTimestamps),
      "/v1/text-to-speech/:voice_id/stream/with-timestamps"
    )
    assert.strictEqual(Endpoints.urlTemplate(Endpoints.textToSpeechConvert), "/v1/text-to-speech/{voice_id}")
    assert.strictEqual(Endpoints.urlTemplateOf("voices.get"), "/v1/voices/{voice_id}")
    assert.strictEqual(Endpoints.urlTemplateOf("nope"), undefined)
    const convert = Endpoints.byName.get("textToSpeech.convert")
    assert.deepStrictEqual([convert?.method, convert?.path], ["POST", "/v1/text-to-speech/{voice_id}"])
    assert.throws(() => Endpoints.pathOf(Endpoints.voicesGet as Endpoints.Endpoint), /voice_id/)
  })

  it("pools, models, credits and accept headers", () => {
    assert.strictEqual(Endpoints.poolOf(Endpoints.textToSpeechConvert, undefined), "standard")
    assert.strictEqual(Endpoints.poolOf(Endpoints.textToSpeechStream, "eleven_flash_v2_5"), "flash")
    assert.strictEqual(Endpoints.poolOf(Endpoints.textToSpeechStream, "my_model", "turbo"), "flash")
    assert.strictEqual(Endpoints.poolOf(Endpoints.speechToTextConvert, "scribe_v2"), "stt")
    assert.strictEqual(Endpoints.poolOf(Endpoints.musicStream, undefined), "music")
    assert.strictEqual(Endpoints.poolOf(Endpoints.userGet, undefined), undefined)
    assert.strictEqual(Endpoints.modelOf(Endpoints.textToSpeechConvert, undefined), "eleven_multilingual_v2")
    assert.strictEqual(Endpoints.modelOf(Endpoints.speechToTextConvert, undefined), "scribe_v1")
    assert.strictEqual(Endpoints.modelOf(Endpoints.musicCompose, "music_v2"), "music_v2")
    assert.strictEqual(Endpoints.modelOf(Endpoints.voicesGet, "x"), undefined)
    assert.strictEqual(Endpoints.creditsOf(Endpoints.textToSpeechConvert, 151, "eleven_flash_v2_5"), 76)
    assert.strictEqual(Endpoints.creditsOf(Endpoints.textToSpeechConvert, 151, undefined), 151)
    assert.strictEqual(Endpoints.creditsOf(Endpoints.textToSpeechConvert, 10, "m", () => 0.3), 3)
    assert.strictEqual(Endpoints.creditsOf(Endpoints.speechToTextConvert, 10, undefined), undefined)
    assert.strictEqual(Endpoints.creditsOf(Endpoints.modelsList, 10, undefined), undefined)
    assert.strictEqual(Endpoints.acceptOf(Endpoints.textToSpeechStream), "*/*")
    assert.strictEqual(Endpoints.acceptOf(Endpoints.textToSpeechStreamWithTimestamps), "application/json")
    for (const endpoint of Endpoints.all) {
      // A pool found from the model needs a model; a read has neither pool nor bill nor body; a write bills.
      if (endpoint.pool._tag === "None") {
        assert.deepStrictEqual(
          [endpoint.method, endpoint.body, endpoint.billing._tag],
          ["GET", "none", "None"],
          endpoint.name
        )
      } else {
        assert.notStrictEqual(endpoint.billing._tag, "None", endpoint.name)
        if (endpoint.pool._tag === "FromModel") {
          assert.notStrictEqual(Endpoints.modelSourceOf(endpoint), undefined, endpoint.name)
        }
      }
    }
  })

  it("beyond TTS: pools, default models and credits as decided (docs/api-facts.md §5.6)", () => {
    // Speech to speech, sound effects and isolation: the standard pool whatever the model (the sources name none).
    for (const endpoint of [Endpoints.speechToSpeechConvert, Endpoints.speechToSpeechStream]) {
      assert.strictEqual(Endpoints.poolOf(endpoint, undefined), "standard")
      assert.strictEqual(Endpoints.poolOf(endpoint, "eleven_multilingual_sts_v2"), "standard")
      assert.strictEqual(Endpoints.modelOf(endpoint, undefined), "eleven_english_sts_v2")
      // 1000 credits per minute of input audio, rounded up.
      assert.strictEqual(Endpoints.creditsOf(endpoint, 60, undefined), 1000)
      assert.strictEqual(Endpoints.creditsOf(endpoint, 4, "eleven_multilingual_sts_v2"), 67)
      assert.strictEqual(Endpoints.acceptOf(endpoint), "*/*")
    }
    assert.strictEqual(Endpoints.poolOf(Endpoints.textToSoundEffectsConvert, undefined), "standard")
    assert.strictEqual(Endpoints.modelOf(Endpoints.textToSoundEffectsConvert, undefined), "eleven_text_to_sound_v2")
    assert.strictEqual(Endpoints.creditsOf(Endpoints.textToSoundEffectsConvert, 2.5, undefined), 100) // 40 per second
    assert.strictEqual(Endpoints.creditsOf(Endpoints.textToSoundEffectsConvert, 0.3, undefined), 12) // no float noise
    for (const endpoint of [Endpoints.audioIsolationConvert, Endpoints.audioIsolationStream]) {
      assert.strictEqual(Endpoints.poolOf(endpoint, undefined), "standard")
      assert.strictEqual(Endpoints.modelOf(endpoint, undefined), undefined)
      assert.strictEqual(Endpoints.creditsOf(endpoint, 90, undefined), 1500)
    }
    // Text to dialogue: the model decides, as for TTS (eleven_v3 by default), and the lines' characters bill.
    for (const endpoint of [Endpoints.textToDialogueConvert, Endpoints.textToDialogueStream]) {
      assert.strictEqual(Endpoints.modelOf(endpoint, undefined), "eleven_v3")
      assert.strictEqual(Endpoints.poolOf(endpoint, undefined), "standard")
      assert.strictEqual(Endpoints.poolOf(endpoint, "eleven_flash_v2_5"), "flash")
      assert.strictEqual(Endpoints.creditsOf(endpoint, 101, undefined), 101)
      assert.strictEqual(Endpoints.creditsOf(endpoint, 101, "eleven_flash_v2_5"), 51)
    }
    // STT and music bill by time at no published rate: unknown.
    assert.strictEqual(Endpoints.creditsOf(Endpoints.musicCompose, 30, undefined), undefined)
  })

  it.effect("every client row is the service member of its name, and sends that row's method, path and accept", () =>
    Effect.gen(function*() {
      const m = mock(() => json({ detail: { status: "not_found", message: "scripted" } }, { status: 404 }))
      const el = yield* Effect.provide(
        Effect.gen(function*() {
          return yield* ElevenLabs.ElevenLabs
        }),
        m.layer
      )
      for (const endpoint of Endpoints.all) {
        const member = memberOf(el, endpoint.name)
        assert.strictEqual(typeof member === "function", endpoint.client, endpoint.name)
        if (!endpoint.client) continue
        const before = m.requests.length
        yield* Effect.scoped(Effect.exit(clientCalls[endpoint.name as Endpoints.ClientName](el)))
        assert.strictEqual(m.requests.length, before + 1, endpoint.name)
        const { request, url } = m.requests[before]!
        const found = Endpoints.match(request.method, url.pathname)
        assert.strictEqual(found._tag === "Found" ? found.endpoint.name : found._tag, endpoint.name)
        assert.deepStrictEqual(
          found._tag === "Found" ? found.params : {},
          hasParams(endpoint) ? { voice_id: voiceId } : {}
        )
        assert.strictEqual(request.headers["accept"], Endpoints.acceptOf(endpoint), endpoint.name)
      }
    }))

  it("every row is a route of the server, and every non-control route a row", () => {
    const key = (method: string, path: string) => `${method} ${path}`
    const served = new Set(Server.routes.map(([method, path]) => key(method, path)))
    for (const endpoint of Endpoints.all) {
      assert.isTrue(served.has(key(endpoint.method, Endpoints.routerPath(endpoint))), endpoint.name)
    }
    const rows = new Set(Endpoints.all.map((e) => key(e.method, Endpoints.routerPath(e))))
    const others = Server.routes.filter(([method, path]) => !rows.has(key(method, path))).map(([m, p]) => key(m, p))
    assert.deepStrictEqual(others, Server.controlRoutes.map(([m, p]) => key(m, p)))
  })

  it.effect("every row has a simulator handler; a known path with another method is a 405", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make({ seed: 1 })
      const answer = (method: string, path: string, body?: string) =>
        Effect.gen(function*() {
          // No key and an empty body: each handler answers at once (422 or 401), with no latency to wait for.
          const outcome = yield* sim.handle(
            new Request(`http://sim.test${path}`, {
              method,
              ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } })
            })
          )
          if (outcome._tag !== "Respond") return yield* Effect.die(`${method} ${path}: a reset`)
          const chunks = yield* Stream.runCollect(outcome.body)
          const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])))
          return { status: outcome.status, headers: outcome.headers, text }
        })
      for (const endpoint of Endpoints.all) {
        const a = yield* answer(endpoint.method, pathOf(endpoint), endpoint.body === "json" ? "{}" : undefined)
        assert.notInclude([404, 405], a.status, `${endpoint.name}: ${a.status} ${a.text}`)
      }
      const wrong = yield* answer("GET", "/v1/music")
      assert.deepStrictEqual([wrong.status, wrong.headers["allow"], JSON.parse(wrong.text)], [405, "POST", {
        detail: "Method Not Allowed"
      }])
      const unknown = yield* answer("GET", "/v1/nope")
      assert.deepStrictEqual([unknown.status, JSON.parse(unknown.text)], [404, { detail: "Not Found" }])
    }))
})
