import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted, Schema } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as LoadTest from "../../src/simulation/LoadTest.ts"
import * as Progress from "../../src/simulation/Progress.ts"
import type * as Recorder from "../../src/simulation/Recorder.ts"
import * as Report from "../../src/simulation/Report.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"
import * as Server from "../../src/simulator/Server.ts"
import { startRedisServer } from "../utils/redisServer.ts"

const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url))

/** A small real-time burst: Flash on free (limit 4), short texts, ~1-2 s. */
const burst = (strategy: Strategies.Strategy, baseUrl: string) =>
  LoadTest.run({
    traffic: { pattern: "burst", requests: 50, chars: { min: 20, max: 40 }, seed: 3 },
    strategy,
    baseUrl,
    apiKey: Redacted.make("sim-key"),
    plan: "free",
    model: "eleven_flash_v2_5",
    simulatorStats: true
  }).pipe(Effect.provide(NodeHttpClient.layerUndici))

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.callback<{ code: number; stdout: string; stderr: string }>((resume) => {
    execFile(
      process.execPath,
      [main, ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        resume(
          Effect.succeed({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
        )
      }
    )
  })

const emptyLog = (): Recorder.Log => ({
  calls: [],
  attempts: [],
  inFlight: [],
  queueDepth: { interactive: [], batch: [] },
  queueWaits: [],
  retries: [],
  breaker: []
})

describe("LoadTest", () => {
  it.live("resilient against a real simulator server: every call ends once, no concurrency 429, in flight within the limit", () =>
    Effect.gen(function*() {
      const server = yield* Server.serve({ port: 0, plan: "free", seed: 3 })
      const report = yield* burst(Strategies.resilient, server.url)
      const s = report.summary
      assert.strictEqual(s.requests, 50)
      assert.strictEqual(s.succeeded + s.failed, 50)
      assert.strictEqual(s.succeeded, 50)
      assert.strictEqual(s.http429.tooManyConcurrentRequests, 0)
      assert.strictEqual(s.limit, 4)
      assert.isAtMost(s.maxInFlight, 4)
      assert.isAbove(s.maxInFlight, 0)
      assert.isAbove(s.creditsUsed, 0)
      // The queue did its job: later requests of the burst waited.
      assert.isAbove(s.queueWaitMs.max, 0)
      // Every attempt the client made reached the server (50 TTS + the quota guard's subscription read).
      assert.isAtLeast((yield* server.simulator.stats).requests, s.attempts)
      assert.isAtLeast(s.attempts, 50)
      const json = JSON.parse(Report.toJson([report])) as { requests: number; series: { inFlight: Array<number> } }
      assert.strictEqual(json.requests, 50)
      assert.isAtMost(Math.max(...json.series.inFlight), 4)
    }))

  it.live("the naive SDK defaults on the same burst meet the server's concurrency 429s (the stats are the server's)", () =>
    Effect.gen(function*() {
      const server = yield* Server.serve({ port: 0, plan: "free", seed: 3 })
      const report = yield* burst(Strategies.naive, server.url)
      const s = report.summary
      assert.strictEqual(s.succeeded + s.failed, 50)
      assert.isAbove(s.http429.tooManyConcurrentRequests, 0)
      assert.isAtMost(s.maxInFlight, 4)
    }))

  it.live("a time limit interrupts calls still running: they count as TimeLimit, nothing is lost", () =>
    Effect.gen(function*() {
      const server = yield* Server.serve({ port: 0, plan: "free", seed: 3, faults: { hang: 1 } })
      const report = yield* LoadTest.run({
        traffic: { pattern: "burst", requests: 6, chars: { min: 20, max: 20 } },
        strategy: Strategies.naive,
        baseUrl: server.url,
        apiKey: Redacted.make("sim-key"),
        plan: "free",
        model: "eleven_flash_v2_5",
        simulatorStats: true,
        timeLimitMs: 300
      }).pipe(Effect.provide(NodeHttpClient.layerUndici))
      assert.strictEqual(report.summary.failed, 6)
      assert.deepStrictEqual(report.summary.failedByReason, { TimeLimit: 6 })
      // A load test runs on the real clock, and its report says so.
      assert.strictEqual(report.summary.clock, "real")
      assert.include(Report.toText([report]), "duration (real time)")
      assert.notInclude(Report.toText([report]), "virtual duration")
    }))

  it.effect("bad traffic and the real-time caps are clear errors", () =>
    Effect.gen(function*() {
      const tooLong = yield* Effect.flip(LoadTest.resolveTraffic({ pattern: "diurnal" }))
      assert.include(tooLong.message, "spans at most 1 h")
      const tooMany = yield* Effect.flip(LoadTest.resolveTraffic({ pattern: "steady", requests: 200_000, rps: 1000 }))
      assert.include(tooMany.message, "at most 100,000 requests")
      const bad = yield* Effect.flip(LoadTest.resolveTraffic({ pattern: "steady", requests: -1 }))
      assert.include(bad.message, "requests must be a positive number")
    }))

  it.effect("merge: logs of several processes join on the earliest start; in-flight counts add up", () =>
    Effect.sync(() => {
      const a = emptyLog()
      a.calls.push({ index: 0, lane: "batch", arrivalMs: 0, endMs: 100, failure: undefined, credits: 5 })
      a.inFlight.push([0, 1], [100, 0])
      const b = emptyLog()
      b.calls.push({ index: 1, lane: "batch", arrivalMs: 0, endMs: 50, failure: "SystemBusy", credits: 0 })
      b.inFlight.push([0, 1], [50, 0])
      const merged = LoadTest.merge([{ startedAt: 1_000, log: a }, { startedAt: 1_020, log: b }])
      assert.strictEqual(merged.startedAt, 1_000)
      assert.deepStrictEqual(merged.log.calls.map((c) => [c.index, c.endMs]), [[0, 100], [1, 70]])
      assert.deepStrictEqual(merged.log.inFlight, [[0, 1], [20, 2], [70, 1], [100, 0]])
      const stats = LoadTest.clientStats(merged.log, "flash", 4)
      assert.strictEqual(stats.pools.flash.maxInFlight, 2)
      assert.strictEqual(stats.creditsCharged, 5)
    }))

  it.live("the CLI: JSON is parseable, bad flags are one clear line and exit 1", () =>
    Effect.gen(function*() {
      const ok = yield* run([
        "load-test",
        "--pattern",
        "burst",
        "--requests",
        "20",
        "--plan",
        "free",
        "--model",
        "eleven_flash_v2_5",
        "--chars",
        "20-30",
        "--json"
      ])
      assert.strictEqual(ok.code, 0, ok.stderr)
      const json = JSON.parse(ok.stdout) as {
        strategy: string
        requests: number
        succeeded: number
        failed: number
        http429: { tooManyConcurrentRequests: number }
      }
      assert.strictEqual(json.strategy, "resilient")
      assert.strictEqual(json.succeeded + json.failed, 20)
      assert.strictEqual(json.http429.tooManyConcurrentRequests, 0)
      const bad = yield* run(["load-test", "--pattern", "wave"])
      assert.strictEqual(bad.code, 1)
      assert.include(
        bad.stderr,
        "--pattern must be one of steady, ramp-up, burst, chaos, diurnal, sessions; got \"wave\""
      )
      const noRedis = yield* run(["load-test", "--processes", "2"])
      assert.strictEqual(noRedis.code, 1)
      assert.include(noRedis.stderr, "--processes N with --strategy resilient needs --redis-url")
      const noKey = yield* run(["load-test", "--base-url", "http://127.0.0.1:9"], { ELEVENLABS_API_KEY: "" })
      assert.strictEqual(noKey.code, 1)
      assert.include(noKey.stderr, "set ELEVENLABS_API_KEY")
    }))

  it.live(
    "four worker processes on plan creator share the limit through Redis: no concurrency 429, in flight within the limit, the pool busy",
    () =>
      Effect.gen(function*() {
        const redis = yield* Effect.acquireRelease(Effect.promise(() => startRedisServer()), (r) =>
          Effect.promise(() => r.close()))
        const out = yield* run([
          "load-test",
          "--processes",
          "4",
          "--redis-url",
          redis.url,
          "--pattern",
          "burst",
          "--requests",
          "80",
          "--plan",
          "creator",
          "--model",
          "eleven_flash_v2_5",
          "--chars",
          "20-30",
          "--json"
        ])
        assert.strictEqual(out.code, 0, out.stderr)
        const json = JSON.parse(out.stdout) as {
          strategy: string
          succeeded: number
          failed: number
          maxInFlight: number
          http429: { tooManyConcurrentRequests: number }
        }
        assert.strictEqual(json.strategy, "resilient x4")
        assert.strictEqual(json.succeeded + json.failed, 80)
        assert.strictEqual(json.succeeded, 80)
        assert.strictEqual(json.http429.tooManyConcurrentRequests, 0)
        // What the simulator saw: never above creator's 10 Flash slots, and kept busy.
        assert.isAtMost(json.maxInFlight, 10)
        assert.isAtLeast(json.maxInFlight, 7)
      }),
    { timeout: 90_000 }
  )

  it.live("the CLI against a simulator given by --base-url: detected by its stats route, the report uses them", () =>
    Effect.gen(function*() {
      const server = yield* Server.serve({ port: 0, plan: "free", seed: 4 })
      const out = yield* run([
        "load-test",
        "--base-url",
        server.url,
        "--api-key",
        "sim-key",
        "--strategy",
        "naive",
        "--plan",
        "free",
        "--model",
        "eleven_flash_v2_5",
        "--pattern",
        "burst",
        "--requests",
        "20",
        "--chars",
        "20"
      ])
      assert.strictEqual(out.code, 0, out.stderr)
      assert.include(out.stdout, `load-test against simulator ${server.url} (real time)`)
      const tooMany = Number(/429 too_many_concurrent\s+(\d+)/.exec(out.stdout)?.[1])
      assert.strictEqual(tooMany, (yield* server.simulator.stats).byDetailStatus["too_many_concurrent_requests"] ?? 0)
      assert.isAbove(tooMany, 0)
    }))

  it.effect("the progress line: bar, counts, in flight, elapsed of the schedule's span; quiet off a TTY", () =>
    Effect.sync(() => {
      const text = Progress.line(
        { total: 40, done: 10, succeeded: 9, failed: 1, inFlight: 4, elapsedMs: 2500, spanMs: 10_000 },
        10,
        "demo"
      )
      assert.strictEqual(text, "demo ███░░░░░░░  25%  10/40 done  ✓ 9  ✗ 1  in flight 4  2.5 s / ~10.0 s")
      assert.include(
        Progress.line({ total: 0, done: 0, succeeded: 0, failed: 0, inFlight: 0, elapsedMs: 0, spanMs: 0 }, 4),
        "████ 100%"
      )
      const notTty = { isTTY: false } as unknown as NodeJS.WriteStream
      assert.isUndefined(Progress.sink({ stream: notTty }))
      assert.isDefined(Progress.sink({ stream: notTty, force: true }))
    }))

  it.effect.prop(
    "merge: the merged in-flight count is, at every instant, the number of attempts of all processes on the wire",
    [
      Schema.Array(
        Schema.Struct({
          offset: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 })),
          attempts: Schema.Array(
            Schema.Tuple([
              Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 })),
              Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 500 }))
            ])
          ).check(Schema.isMaxLength(8))
        })
      ).check(Schema.isMinLength(1), Schema.isMaxLength(4))
    ],
    ([workers]) =>
      Effect.sync(() => {
        let index = 0
        const parts = workers.map(({ attempts, offset }) => {
          const log = emptyLog()
          const events = attempts.flatMap(([start, dur]) => [[start, 1], [start + dur, -1]] as const)
            .sort((a, b) => a[0] - b[0] || a[1] - b[1])
          let n = 0
          for (const [t, d] of events) log.inFlight.push([t, n += d])
          for (const [start, dur] of attempts) {
            log.calls.push({
              index: index++,
              lane: "batch",
              arrivalMs: start,
              endMs: start + dur,
              failure: undefined,
              credits: 1
            })
          }
          return { startedAt: 10_000 + offset, log }
        })
        const merged = LoadTest.merge(parts)
        const origin = Math.min(...parts.map((p) => p.startedAt))
        const intervals = parts.flatMap((p) =>
          p.log.calls.map((c) => [c.arrivalMs + p.startedAt - origin, c.endMs + p.startedAt - origin] as const)
        )
        const lastAt = new Map<number, number>()
        for (const [t, v] of merged.log.inFlight) lastAt.set(t, v)
        for (const [t, v] of lastAt) {
          assert.strictEqual(v, intervals.filter(([a, b]) => a <= t && t < b).length, `at ${t}`)
        }
        if (merged.log.inFlight.length > 0) assert.strictEqual(merged.log.inFlight.at(-1)![1], 0)
        assert.strictEqual(merged.log.calls.length, intervals.length)
        assert.deepStrictEqual(
          merged.log.calls.map((c) => c.index),
          merged.log.calls.map((c) => c.index).sort((a, b) => a - b)
        )
      }),
    { arbitrary: { runs: 100 } }
  )
})
