import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { readinessChecks } from "../../src/cli/smoke.ts"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Server from "../../src/simulator/Server.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import * as Health from "../../src/telemetry/Health.ts"
import { runVirtual } from "../utils/virtualTime.ts"

const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url))
const secret = "sk_0123456789abcdef0123456789abcdef0123456789abcdef"

/** Runs the CLI as a process, asynchronously (a simulator in this process must keep answering). */
const smoke = (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) =>
  Effect.callback<{ code: number; stdout: string; stderr: string }>((resume) => {
    const base = { ...process.env }
    delete base["ELEVENLABS_API_KEY"]
    delete base["ELEVENLABS_BASE_URL"]
    execFile(
      process.execPath,
      [main, "smoke", ...args],
      { env: { ...base, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        resume(
          Effect.succeed({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
        )
      }
    )
  })

describe("smoke", () => {
  it.live("passes against the embedded simulator with --simulator, even with a real key set: one PASS line, exit 0", () =>
    Effect.gen(function*() {
      const out = yield* smoke(["--simulator"], { ELEVENLABS_API_KEY: secret })
      assert.strictEqual(out.code, 0, out.stderr)
      const lines = out.stdout.trim().split("\n")
      assert.lengthOf(lines, 1)
      assert.match(
        lines[0]!,
        /^smoke: PASS tts \d+ bytes in \d+ ms \(request \S+, \d+ credits\); breaker closed; quota [\d.]+ % used; config OK; embedded simulator http:\/\/127\.0\.0\.1:\d+, simulator key$/
      )
      assert.notInclude(out.stdout + out.stderr, secret)
    }))

  it.live("without a key it also uses the embedded simulator (no credits)", () =>
    Effect.gen(function*() {
      const out = yield* smoke([])
      assert.strictEqual(out.code, 0, out.stderr)
      assert.include(out.stdout, "smoke: PASS")
      assert.include(out.stdout, "embedded simulator")
    }))

  it.live("a wrong key against a running simulator: 401 InvalidApiKey, one FAIL line, exit 1, the key never printed", () =>
    Effect.gen(function*() {
      const server = yield* Server.serve({ port: 0 })
      const out = yield* smoke(["--base-url", server.url], { ELEVENLABS_API_KEY: secret })
      assert.strictEqual(out.code, 1)
      const lines = out.stderr.trim().split("\n")
      assert.lengthOf(lines, 1)
      assert.match(lines[0]!, /^smoke: FAIL tts InvalidApiKey: /)
      assert.include(lines[0]!, `${server.url}, ELEVENLABS_API_KEY`)
      assert.notInclude(out.stdout + out.stderr, secret)
      assert.strictEqual(out.stdout, "")
    }))

  it.live("a config that does not validate fails before any request", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "smoke-"))
      const bad = join(dir, "bad.json")
      writeFileSync(bad, JSON.stringify({ retry: { exponential: { base: "fast" } } }))
      const out = yield* smoke(["--config", bad, "--simulator"])
      assert.strictEqual(out.code, 1)
      assert.match(out.stderr.trim(), /^smoke: FAIL config: retry\.exponential\.base: /)
      const missing = yield* smoke(["--config", join(dir, "nope.json"), "--simulator"])
      assert.strictEqual(missing.code, 1)
      // A path it cannot read: the same words as every command's --config.
      assert.strictEqual(
        missing.stderr,
        `smoke: FAIL --config: cannot read ${join(dir, "nope.json")}: no such file; check the path\n`
      )
    }))

  it.effect("the readiness checks fail while the breaker is open, and name the check", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const resilience = yield* Resilient.Resilience
      const checks = yield* Health.make()
      for (const [name, check] of readinessChecks(resilience, "flash")) yield* checks.register(name, check)
      assert.deepStrictEqual([...(yield* checks.names)].sort(), ["breaker_flash", "quota"])
      assert.strictEqual((yield* runVirtual(checks.run)).status, "ready")
      yield* sim.setFaults({ serverError: 1 })
      yield* runVirtual(
        Effect.ignore(Client.ElevenLabs.use((c) =>
          c.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", { text: "down", modelId: "eleven_flash_v2_5" })
        )),
        { stepMillis: 1000 }
      )
      const report = yield* runVirtual(checks.run)
      assert.strictEqual(report.status, "not_ready")
      assert.isFalse(report.checks["breaker_flash"]?.ok)
      assert.isTrue(report.checks["quota"]?.ok)
    }).pipe(
      Effect.provide(
        Resilient.layer({ apiKey: Redacted.make("sim-key"), limiter: { plan: "pro" }, budget: false }).pipe(
          Layer.provideMerge(InProcess.layerSimulated({ seed: 1, plan: "pro" }))
        )
      )
    ))
})
