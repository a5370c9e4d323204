import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { FetchHttpClient } from "effect/http"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Checks from "../../src/cli/checks.ts"
import { ttsModelIds } from "../../src/client/Models.ts"
import * as Catalog from "../../src/simulator/Catalog.ts"
import * as Server from "../../src/simulator/Server.ts"

describe("checks", () => {
  it("the models the CLI accepts are the ones the simulator serves", () => {
    assert.deepStrictEqual([...ttsModelIds], Catalog.ttsModels.map((m) => m.model_id))
    assert.deepStrictEqual(Checks.simulatorVoiceIds, Catalog.premadeVoices.map((v) => v.voice_id))
  })

  it("unknown models and voices: what is wrong, the close match, the choices", () => {
    assert.isUndefined(Checks.modelProblem("eleven_flash_v2_5"))
    assert.match(Checks.modelProblem("eleven_flash_v25")!, /^--model: unknown model "eleven_flash_v25" \(did you mean eleven_flash_v2_5\?\); use one of /)
    assert.notInclude(Checks.modelProblem("gpt-4")!, "did you mean")
    assert.isUndefined(Checks.voiceProblem("21m00Tcm4TlvDq8ikWAM"))
    assert.match(Checks.voiceProblem("21m00Tcm4TlvDq8ikWAN")!, /\(did you mean 21m00Tcm4TlvDq8ikWAM\?\)/)
    assert.strictEqual(Checks.closest("simulat", ["simulate", "simulator"]), "simulate")
    assert.isUndefined(Checks.closest("xyz", ["simulate"]))
  })

  it.effect("--config: a missing file and a directory are FileProblems, bad JSON and bad content InvalidConfig", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "cli-checks-"))
      const file = (name: string, text: string) => {
        writeFileSync(join(dir, name), text)
        return join(dir, name)
      }
      const read = (path: string) => Effect.flip(Checks.readConfig("simulate", Option.some(path)))
      assert.isUndefined(yield* Checks.readConfig("simulate", Option.none()))
      assert.deepStrictEqual(yield* Checks.readConfig("simulate", Option.some(file("ok.json", "{\"quota\":false}"))), { quota: false })
      const missing = yield* read(join(dir, "nope.json"))
      assert.deepStrictEqual([missing.kind, missing.message], ["FileProblem", `--config: cannot read ${join(dir, "nope.json")}: no such file; check the path`])
      assert.strictEqual((yield* read(dir)).kind, "FileProblem")
      // A syntax error never quotes the text (it may hold a key).
      const secret = "sk_0123456789abcdef0123456789abcdef0123456789abcdef"
      const notJson = yield* read(file("bad.json", `{"apiKey": "${secret}",}`))
      assert.strictEqual(notJson.kind, "InvalidConfig")
      assert.notInclude(notJson.message, secret.slice(3))
      const invalid = yield* read(file("invalid.json", JSON.stringify({ retyr: {}, breaker: { failurs: 1 } })))
      assert.strictEqual(invalid.kind, "InvalidConfig")
      assert.include(invalid.message, "retyr: unknown key")
      assert.include(invalid.message, "elevenlabs-resilience validate-config --config")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("paths to write: checked before the run", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "cli-checks-"))
      yield* Checks.writablePath("alerts", "--out", join(dir, "rules.yml"))
      const missing = yield* Effect.flip(Checks.writablePath("alerts", "--out", join(dir, "no", "rules.yml")))
      assert.strictEqual(missing.kind, "FileProblem")
      assert.include(missing.message, `the directory ${join(dir, "no")} does not exist`)
      const isDir = yield* Effect.flip(Checks.writablePath("alerts", "--out", dir))
      assert.include(isDir.message, "is a directory")
      writeFileSync(join(dir, "file"), "")
      const underFile = yield* Effect.flip(Checks.writablePath("alerts", "--out", join(dir, "file", "rules.yml")))
      assert.include(underFile.message, "is not a directory")
      yield* Checks.writableOption("simulate", "--html", Option.none())
    }).pipe(Effect.provide(NodeServices.layer)))

  it.live("a real target is asked: no such model, no such voice, or it cannot say (then the run goes ahead)", () =>
    Effect.gen(function*() {
      const server = yield* Server.serve({ port: 0 })
      const ask = (model: string, voice: string, baseUrl = server.url) =>
        Checks.targetProblem({ baseUrl, apiKey: Redacted.make("sim-key"), model, voice })
      assert.isUndefined(yield* ask("eleven_flash_v2_5", "21m00Tcm4TlvDq8ikWAM"))
      assert.match((yield* ask("eleven_nope", "21m00Tcm4TlvDq8ikWAM"))!, /^--model: http:\/\/127\.0\.0\.1:\d+ has no model "eleven_nope"/)
      assert.match((yield* ask("eleven_flash_v2_5", "mine"))!, /^--voice: .* has no voice "mine" \(GET \/v1\/voices\/mine answered 404\)/)
      // A wrong key: the target cannot say (401), so nothing is refused here.
      assert.isUndefined(
        yield* Checks.targetProblem({ baseUrl: server.url, apiKey: Redacted.make("wrong"), model: "eleven_nope", voice: "mine" })
      )
      // Nothing listening: the run goes ahead and reports what happened.
      assert.isUndefined(yield* ask("eleven_nope", "mine", "http://127.0.0.1:9"))
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
