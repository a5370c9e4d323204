/**
 * `load-test`'s own rules, without running traffic: the checked plan, its
 * real-time defaults, and what a failed worker passes on.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as LoadTestCli from "../../src/cli/loadTest.ts"
import * as LoadTest from "../../src/simulation/LoadTest.ts"
import { noTrafficOptions } from "../utils/cli.ts"

const input: LoadTestCli.LoadTestInput = {
  ...LoadTestCli.defaults,
  ...noTrafficOptions,
  baseUrl: Option.none(),
  apiKey: Option.none(),
  config: Option.none(),
  timeLimit: Option.none(),
  json: true,
  processes: 1,
  redisUrl: Option.none(),
  worker: false,
  workerIndex: 0,
  startAt: Option.none()
}

describe("load-test", () => {
  it.effect("a diurnal run fits the real-time cap by default: a day compressed into 10 minutes", () =>
    Effect.gen(function*() {
      const plan = yield* LoadTestCli.toPlan({ ...input, pattern: "diurnal" }, undefined)
      assert.strictEqual(plan.resolved.durationMs, 10 * 60_000)
      assert.isAtMost(plan.resolved.durationMs, LoadTest.caps.spanMs)
      // An explicit span is the user's: past the cap it is refused, saying what to do.
      const day = yield* Effect.flip(
        LoadTestCli.toPlan({ ...input, pattern: "diurnal", duration: Option.some("24h") }, undefined)
      )
      assert.match(day.message, /spans at most 1 h.*shorten --duration or rehearse it with "simulate"/)
    }))

  it.effect("steady, chaos and burst default to a few requests", () =>
    Effect.gen(function*() {
      const plan = yield* LoadTestCli.toPlan(input, undefined)
      assert.strictEqual(plan.resolved.requests, LoadTestCli.defaults.requests)
    }))

  it("a failed worker passes on its one-line error, never a stack frame", () => {
    assert.strictEqual(
      LoadTestCli.workerErrorLine(
        "load-test: cannot connect to Redis at 127.0.0.1:1 (ECONNREFUSED); fix --redis-url\n"
      ),
      "cannot connect to Redis at 127.0.0.1:1 (ECONNREFUSED); fix --redis-url"
    )
    const crash = [
      "elevenlabs-resilience: internal error (please report it):",
      "TypeError: Invalid URL",
      "    at new URL (node:internal/url:895:25)",
      "    at RedisClient.parseURL (/app/node_modules/@redis/client/dist/lib/client/index.js:103:76)",
      ""
    ].join("\n")
    assert.strictEqual(LoadTestCli.workerErrorLine(crash), "TypeError: Invalid URL")
    assert.strictEqual(LoadTestCli.workerErrorLine("    at x (y.js:1:1)\n"), "no output")
    assert.strictEqual(LoadTestCli.workerErrorLine(""), "no output")
  })
})
