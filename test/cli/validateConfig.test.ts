import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as ValidateConfig from "../../src/cli/validateConfig.ts"

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/config/${name}.json`, import.meta.url))
const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url))
const secret = "sk_3c1e9f0a5b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5f"

const run = (name: string, options?: { readonly strict?: boolean; readonly env?: boolean }) =>
  ValidateConfig.execute({ configFile: fixture(name), strict: options?.strict ?? false, env: options?.env ?? false })
    .pipe(
      Effect.provide(NodeServices.layer)
    )

describe("validate-config", () => {
  it.effect("a good file: config OK, exit 0, also in strict mode", () =>
    Effect.gen(function*() {
      for (const strict of [false, true]) {
        const out = yield* run("good", { strict })
        assert.strictEqual(out.exitCode, 0)
        assert.lengthOf(out.lines, 1)
        assert.include(out.lines[0]!, "config OK")
      }
    }))

  it.effect("a bad file: one line per problem with its path and a fix, a summary, exit 1", () =>
    Effect.gen(function*() {
      const out = yield* run("bad")
      assert.strictEqual(out.exitCode, 1)
      assert.lengthOf(out.lines, 8)
      const problems = out.lines.slice(0, -1)
      for (const line of problems) {
        assert.match(line, /^error {3}\S+: .+ \(fix: .+\)$/)
      }
      assert.isTrue(problems.some((l) => l.startsWith("error   retyr: unknown key (fix: did you mean \"retry\"")))
      assert.isTrue(problems.some((l) => l.startsWith("error   retry.exponential.base: ")))
      assert.include(out.lines[7]!, "7 errors, 0 warnings: config NOT OK")
    }))

  it.effect("cross-field errors", () =>
    Effect.gen(function*() {
      const out = yield* run("bad-cross")
      assert.strictEqual(out.exitCode, 1)
      assert.isTrue(
        out.lines.some((l) =>
          l.startsWith("error   quota.alertPercent: alertPercent (85) is below warningPercent (95)")
        )
      )
      assert.isTrue(out.lines.some((l) => l.startsWith("error   retry.exponential.cap: ")))
    }))

  it.effect("a risky file passes with a warning; --strict fails it and lists every risk", () =>
    Effect.gen(function*() {
      const lax = yield* run("risky")
      assert.strictEqual(lax.exitCode, 0)
      assert.match(
        lax.lines[0]!,
        /^warning apiKey: an API key or secret is written in the file \(sk_\*\*\* \(51 chars\)\)/
      )
      assert.include(lax.lines[1]!, "config OK (1 warning)")
      const strict = yield* run("risky", { strict: true })
      assert.strictEqual(strict.exitCode, 1)
      assert.lengthOf(strict.lines, 10)
      assert.isTrue(strict.lines.some((l) => l.startsWith("error   retry.exponential.jitter: jitter \"none\"")))
      assert.isTrue(strict.lines.some((l) => l.startsWith("error   breaker: the circuit breaker is off")))
      assert.include(strict.lines[9]!, "1 error, 8 warnings (strict: warnings count as errors): config NOT OK")
      for (const line of [...lax.lines, ...strict.lines]) assert.notInclude(line, secret.slice(3))
    }))

  it.effect("a missing file and invalid JSON are clear errors", () =>
    Effect.gen(function*() {
      const missing = yield* run("does-not-exist")
      assert.strictEqual(missing.exitCode, 1)
      assert.include(missing.lines[0]!, "no such file")
      const invalid = yield* run("invalid")
      assert.strictEqual(invalid.exitCode, 1)
      assert.include(invalid.lines[0]!, "not valid JSON")
    }))

  it.effect("--env applies the environment over the file", () =>
    Effect.gen(function*() {
      const out = yield* run("good", { env: true, strict: true })
      assert.strictEqual(out.exitCode, 1)
      assert.isTrue(out.lines.some((l) => l.startsWith("error   retry.exponential.jitter: jitter \"none\"")))
      // good.json's jitterRatio is now moot: said so, not silently ignored.
      assert.isTrue(out.lines.some((l) => l.startsWith("error   retry.exponential.jitterRatio: ")))
    }).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { ELEVENLABS_JITTER: "none" } })))))

  describe("as a real process", () => {
    const cli = (...args: Array<string>) => {
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ELEVENLABS_")))
      const r = spawnSync(process.execPath, [main, "validate-config", ...args], {
        encoding: "utf8",
        env,
        timeout: 60_000
      })
      return { status: r.status, stdout: r.stdout, stderr: r.stderr }
    }

    it("exit codes and output for good, bad, risky and missing files; the key never printed", () => {
      const good = cli("--config", fixture("good"))
      assert.strictEqual(good.status, 0, good.stderr)
      assert.match(good.stdout.trim(), /good\.json: config OK$/)

      // --config-file: the command's first name for --config, still accepted.
      const bad = cli("--config-file", fixture("bad"))
      assert.strictEqual(bad.status, 1)
      assert.include(bad.stdout, "error   breaker.failurs: unknown key (fix: did you mean \"failures\"")
      assert.include(bad.stdout, "config NOT OK")

      const risky = cli("--config", fixture("risky"))
      assert.strictEqual(risky.status, 0)
      const strict = cli("--config", fixture("risky"), "--strict")
      assert.strictEqual(strict.status, 1)
      assert.include(strict.stdout, "error   apiKey: an API key or secret is written in the file (sk_*** (51 chars))")
      for (const r of [risky, strict]) {
        assert.notInclude(r.stdout + r.stderr, secret)
        assert.notInclude(r.stdout + r.stderr, secret.slice(3, 20))
      }

      // A path that is no file is the user's mistake, not a finding: one line on stderr.
      const missing = cli("--config", fixture("nope"))
      assert.strictEqual(missing.status, 1)
      assert.strictEqual(missing.stdout, "")
      assert.strictEqual(
        missing.stderr.trim(),
        `validate-config: --config: cannot read ${fixture("nope")}: no such file; check the path`
      )
    }, 120_000)
  })
})
