/**
 * Tests of `src/cli/simulate.ts` (kept under test/simulation/, the folder this
 * feature owns).
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Command } from "effect/cli"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Simulate from "../../src/cli/simulate.ts"
import { noTrafficOptions } from "../utils/cli.ts"

const base: Simulate.SimulateInput = {
  ...noTrafficOptions,
  plan: "free",
  model: "eleven_multilingual_v2",
  pattern: "burst",
  requests: Option.some(20),
  chars: "100-300",
  credits: Option.none(),
  seed: 1,
  jitter: "full",
  strategy: "naive",
  compare: false,
  config: Option.none(),
  json: false
}

const failure = (input: Partial<Simulate.SimulateInput>) =>
  Effect.flip(Simulate.execute({ ...base, ...input })).pipe(Effect.provide(NodeServices.layer))

describe("simulate command", () => {
  it.effect("a --config that does not validate is one clear error, before any run", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "sim-cfg-"))
      try {
        const config = join(dir, "bad.json")
        writeFileSync(config, JSON.stringify({ retyr: {} }))
        const e = yield* failure({ strategy: "resilient", config: Option.some(config) })
        assert.include(e.message, "retyr: unknown key")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("text table for one strategy", () =>
    Effect.gen(function*() {
      const { output, reports } = yield* Simulate.execute(base)
      assert.include(output, "strategy")
      assert.include(output, "naive")
      assert.lengthOf(reports, 1)
      assert.strictEqual(reports[0]!.summary.requests, 20)
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("--compare --json --html: every strategy on the same traffic, JSON and an HTML file", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "sim-cli-"))
      try {
        const html = join(dir, "r.html")
        const config = join(dir, "c.json")
        writeFileSync(config, JSON.stringify({ retry: { exponential: { maxRetries: 3 } } }))
        const { output, reports } = yield* Simulate.execute({
          ...base,
          compare: true,
          json: true,
          html: Option.some(html),
          config: Option.some(config)
        })
        const json = JSON.parse(output)
        assert.deepStrictEqual(json.runs.map((r: { strategy: string }) => r.strategy), [
          "resilient",
          "naive",
          "p-queue-recipe"
        ])
        for (const r of json.runs) assert.strictEqual(r.succeeded + r.failed, 20)
        assert.lengthOf(reports, 3)
        assert.include(readFileSync(html, "utf8"), "data-chart=\"in-flight\"")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("bad flags are clear errors", () =>
    Effect.gen(function*() {
      assert.include((yield* failure({ pattern: "wave" })).message, "--pattern must be one of steady, ramp-up, burst")
      assert.include((yield* failure({ plan: "gold" })).message, "--plan must be one of free")
      assert.include((yield* failure({ jitter: "wild" })).message, "--jitter must be one of none, full")
      assert.include((yield* failure({ strategy: "yolo" })).message, "--strategy must be one of")
      assert.include((yield* failure({ chars: "a-b" })).message, "--chars")
      assert.include((yield* failure({ duration: Option.some("soon") })).message, "--duration")
      assert.include((yield* failure({ failureRate: Option.some(1.5) })).message, "--failure-rate")
      assert.include((yield* failure({ concurrency: Option.some(0) })).message, "--concurrency")
      assert.include((yield* failure({ credits: Option.some(-1) })).message, "--credits")
      // Numbers the library would refuse by its option names are refused here by the flags'.
      assert.strictEqual(
        (yield* failure({ requests: Option.some(-5) })).message,
        "--requests must be a positive integer, got -5"
      )
      assert.strictEqual(
        (yield* failure({ pattern: "steady", requests: Option.none(), rps: Option.some(0) })).message,
        "--rps must be a positive number, got 0"
      )
      assert.strictEqual(
        (yield* failure({ plan: "prp" })).message,
        "--plan must be one of free, starter, creator, pro, scale, business; got \"prp\" (did you mean pro?)"
      )
      assert.include((yield* failure({ config: Option.some("/nonexistent/c.json") })).message, "--config: cannot read")
      assert.include(
        (yield* failure({
          pattern: "steady",
          requests: Option.some(5),
          rps: Option.some(1),
          duration: Option.some("5s")
        }))
          .message,
        "at most two"
      )
    }))

  it.effect("resilient is the default comparison's first strategy, with the run's config", () =>
    Effect.gen(function*() {
      const runs = yield* Simulate.toRuns({ ...base, strategy: "resilient" }, { quota: false })
      assert.deepStrictEqual(runs.map((r) => r.strategy.name), ["resilient"])
    }))

  it.effect("flags parse through effect/cli; a bad value fails the command", () =>
    Effect.gen(function*() {
      const run = Command.runWith(Simulate.simulate, { version: "test" })
      yield* run(["--pattern", "steady", "--requests", "10", "--rps", "5", "--plan", "pro"])
      const parse = yield* Effect.flip(run(["--requests", "many"]))
      assert.isDefined(parse)
    }).pipe(Effect.provide(NodeServices.layer)))

  it("subprocess: a bad flag value prints one clear line and exits 1", () => {
    try {
      execFileSync(process.execPath, ["src/cli/main.ts", "simulate", "--pattern", "zigzag"], {
        encoding: "utf8",
        timeout: 60_000,
        stdio: ["ignore", "pipe", "pipe"]
      })
      assert.fail("expected exit code 1")
    } catch (e) {
      const err = e as { status: number; stderr: string }
      assert.strictEqual(err.status, 1)
      assert.include(
        err.stderr,
        "simulate: --pattern must be one of steady, ramp-up, burst, chaos, diurnal, sessions; got \"zigzag\""
      )
    }
  })

  it("a burst of 2,000 Flash requests at once on pro completes 2,000 of 2,000 with the defaults", () => {
    // With a fixed queue bound of 1,000 this failed 980 with QueueFull; admission is now by predicted wait.
    const out = execFileSync(process.execPath, [
      "src/cli/main.ts",
      "simulate",
      "--strategy",
      "resilient",
      "--plan",
      "pro",
      "--model",
      "eleven_flash_v2_5",
      "--pattern",
      "burst",
      "--requests",
      "2000",
      "--json"
    ], { encoding: "utf8", timeout: 120_000 })
    const json = JSON.parse(out)
    assert.deepStrictEqual([json.requests, json.succeeded, json.failed], [2000, 2000, 0])
  })

  it("subprocess smoke run: node src/cli/main.ts simulate ... --json", () => {
    const out = execFileSync(process.execPath, [
      "src/cli/main.ts",
      "simulate",
      "--pattern",
      "ramp-up",
      "--start-rps",
      "1",
      "--end-rps",
      "6",
      "--duration",
      "10s",
      "--plan",
      "creator",
      "--strategy",
      // The deprecated name of p-queue-recipe, still accepted.
      "seed-template",
      "--json"
    ], { encoding: "utf8", timeout: 60_000 })
    const json = JSON.parse(out)
    assert.strictEqual(json.strategy, "p-queue-recipe")
    assert.strictEqual(json.pattern, "ramp-up")
    assert.strictEqual(json.requests, 35)
    assert.strictEqual(json.succeeded + json.failed, 35)
    assert.strictEqual(json.limit, 5)
  })
})
