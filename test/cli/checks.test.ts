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
    assert.match(
      Checks.modelProblem("eleven_flash_v25")!,
      /^--model: unknown model "eleven_flash_v25" \(did you mean eleven_flash_v2_5\?\); use one of /
    )
    assert.notInclude(Checks.modelProblem("gpt-4")!, "did you mean")
    assert.isUndefined(Checks.voiceProblem("21m00Tcm4TlvDq8ikWAM"))
    assert.match(Checks.voiceProblem("21m00Tcm4TlvDq8ikWAN")!, /\(did you mean 21m00Tcm4TlvDq8ikWAM\?\)/)
  })

  it("values: choices with a close match, numbers, durations, URLs without their credentials", () => {
    assert.isUndefined(Checks.choiceProblem("--plan", "pro", ["free", "pro"]))
    assert.strictEqual(
      Checks.choiceProblem("--plan", "prp", ["free", "pro"]),
      `--plan must be one of free, pro; got "prp" (did you mean pro?)`
    )
    assert.strictEqual(
      Checks.numberProblem("--rps", 0, false, "a positive number"),
      "--rps must be a positive number, got 0"
    )
    assert.strictEqual(Checks.parseDuration("90"), 90_000)
    assert.strictEqual(Checks.parseDuration("500ms"), 500)
    assert.strictEqual(Checks.parseDuration("2m"), 120_000)
    assert.strictEqual(Checks.parseDuration("24h"), 86_400_000)
    assert.strictEqual(Checks.parseDuration("1d"), 86_400_000)
    assert.isUndefined(Checks.parseDuration("soon"))
    const http = ["http:", "https:"]
    assert.isUndefined(Checks.urlProblem("--base-url", "http://127.0.0.1:8787", http, "https://api.elevenlabs.io"))
    assert.strictEqual(
      Checks.urlProblem("--base-url", "nope", http, "https://api.elevenlabs.io"),
      `--base-url must be a http or https URL such as https://api.elevenlabs.io; got "nope"`
    )
    assert.match(Checks.urlProblem("--base-url", "ftp://x", http, "https://api.elevenlabs.io")!, /got "ftp:\/\/x"$/)
    const redis = ["redis:", "rediss:"]
    assert.isUndefined(Checks.urlProblem("--redis-url", "rediss://u:p@cache:6380", redis, "redis://127.0.0.1:6379"))
    const bad = Checks.urlProblem("--redis-url", "http://user:hunter2@cache", redis, "redis://127.0.0.1:6379")!
    assert.strictEqual(
      bad,
      `--redis-url must be a redis or rediss URL such as redis://127.0.0.1:6379; got "http://***@cache"`
    )
  })

  it.effect("--config: a missing file, a directory, bad JSON and bad content are each one line naming the problem", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "cli-checks-"))
      const file = (name: string, text: string) => {
        writeFileSync(join(dir, name), text)
        return join(dir, name)
      }
      const read = (path: string) => Effect.flip(Checks.readConfig("simulate", Option.some(path)))
      assert.isUndefined(yield* Checks.readConfig("simulate", Option.none()))
      assert.deepStrictEqual(yield* Checks.readConfig("simulate", Option.some(file("ok.json", "{\"quota\":false}"))), {
        quota: false
      })
      const missing = yield* read(join(dir, "nope.json"))
      assert.strictEqual(
        missing.message,
        `--config: cannot read ${join(dir, "nope.json")}: no such file; check the path`
      )
      assert.strictEqual((yield* read(dir)).message, `--config: ${dir} is a directory; give the path of a JSON file`)
      // A syntax error never quotes the text (it may hold a key).
      const secret = "sk_0123456789abcdef0123456789abcdef0123456789abcdef"
      const notJson = yield* read(file("bad.json", `{"apiKey": "${secret}",}`))
      assert.match(notJson.message, /not valid JSON/)
      assert.notInclude(notJson.message, secret.slice(3))
      const invalid = yield* read(file("invalid.json", JSON.stringify({ retyr: {}, breaker: { failurs: 1 } })))
      assert.include(invalid.message, "retyr: unknown key")
      assert.include(invalid.message, "elevenlabs-resilience validate-config --config")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("paths to write: checked before the run", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "cli-checks-"))
      yield* Checks.writablePath("alerts", "--out", join(dir, "rules.yml"))
      const missing = yield* Effect.flip(Checks.writablePath("alerts", "--out", join(dir, "no", "rules.yml")))
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
      assert.match(
        (yield* ask("eleven_nope", "21m00Tcm4TlvDq8ikWAM"))!,
        /^--model: http:\/\/127\.0\.0\.1:\d+ has no model "eleven_nope"/
      )
      assert.match(
        (yield* ask("eleven_flash_v2_5", "mine"))!,
        /^--voice: .* has no voice "mine" \(GET \/v1\/voices\/mine answered 404\)/
      )
      // A wrong key: the target cannot say (401), so nothing is refused here.
      assert.isUndefined(
        yield* Checks.targetProblem({
          baseUrl: server.url,
          apiKey: Redacted.make("wrong"),
          model: "eleven_nope",
          voice: "mine"
        })
      )
      // Nothing listening: the run goes ahead and reports what happened.
      assert.isUndefined(yield* ask("eleven_nope", "mine", "http://127.0.0.1:9"))
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
