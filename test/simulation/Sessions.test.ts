import { assert, describe, it } from "@effect/vitest"
import { Effect, Random } from "effect"
import { execFileSync } from "node:child_process"
import * as Conversations from "../../src/simulation/Conversations.ts"
import * as Sessions from "../../src/simulation/Sessions.ts"
import * as SessionsRun from "../../src/simulation/SessionsRun.ts"

const withoutWall = (s: Sessions.SessionsSummary) => ({ ...s, wallMs: 0 })

describe("sessions shape", () => {
  it("compare: lost and twice-spoken characters, whitespace aside", () => {
    assert.deepStrictEqual(Sessions.compare("Hello there. ", "Hello there."), { lost: 0, duplicated: 0 })
    assert.deepStrictEqual(Sessions.compare("Hello there. ", "Hello th"), { lost: 4, duplicated: 0 })
    assert.deepStrictEqual(Sessions.compare("Hi. ", "Hi. Hi. "), { lost: 0, duplicated: 3 })
    assert.deepStrictEqual(Sessions.compare("ab 😀 c", "ab😀c"), { lost: 0, duplicated: 0 })
  })

  it.effect("conversations: seeded, inside the run, sentences that end with a period and a space", () =>
    Effect.gen(function*() {
      const options = { conversations: 5, durationMs: 120_000 }
      const a = yield* Random.withSeed(Conversations.schedule(options), 7)
      const b = yield* Random.withSeed(Conversations.schedule(options), 7)
      const c = yield* Random.withSeed(Conversations.schedule(options), 8)
      assert.deepStrictEqual(a, b)
      assert.notDeepEqual(a, c)
      assert.deepStrictEqual(a.map((x) => x.startMs), [0, 12_000, 24_000, 36_000, 48_000])
      for (const conversation of a) {
        assert.isAbove(conversation.turns.length, 0)
        for (const turn of conversation.turns) {
          const length = turn.sentences.reduce((n, s) => n + s.afterMs, 0)
          assert.isBelow(conversation.startMs + turn.atMs + length, options.durationMs)
          for (const s of turn.sentences) {
            assert.match(s.text, /^[A-Z][a-z ]*\. $/)
            assert.isAtLeast(s.text.length, 3)
            assert.isAtMost(s.text.length, 160)
          }
        }
      }
      assert.match(Conversations.problemOf({ conversations: 0, durationMs: 1 }) ?? "", /positive integer/)
      assert.match(
        Conversations.problemOf({ conversations: 1, durationMs: 1, gapMs: { min: 5, max: 1 } }) ?? "",
        /min <= max/
      )
    }))

  it.effect(
    "a run under faults: every character spoken exactly once, the pool respected, the same report twice",
    () =>
      Effect.gen(function*() {
        const options: SessionsRun.SessionsRunOptions = {
          conversations: { conversations: 12, durationMs: 90_000 },
          plan: "creator",
          failureRate: 0.05,
          seed: 3
        }
        const a = yield* SessionsRun.run(options)
        const b = yield* SessionsRun.run(options)
        assert.deepStrictEqual(withoutWall(a), withoutWall(b))
        assert.strictEqual(a.conversations, 12)
        assert.isAbove(a.reconnects, 0)
        assert.strictEqual(a.lostCharacters, 0)
        assert.strictEqual(a.duplicatedCharacters, 0)
        assert.isAtMost(a.maxInFlight, a.limit)
        assert.strictEqual(a.concurrency429, 0)
        assert.isAbove(a.timeToFirstAudioMs.p50, 0)
        assert.isAbove(a.turns, 12)
        assert.match(Sessions.toText(a), /lost text \(must be 0\)\s+0 characters/)
      }),
    { timeout: 120_000 }
  )

  it("simulate --pattern sessions: one JSON document; flags that do not apply are one line", () => {
    const out = execFileSync(process.execPath, [
      "src/cli/main.ts",
      "simulate",
      "--pattern",
      "sessions",
      "--conversations",
      "4",
      "--duration",
      "30s",
      "--model",
      "eleven_flash_v2_5",
      "--json"
    ], { encoding: "utf8", timeout: 60_000 })
    const json = JSON.parse(out) as Sessions.SessionsSummary
    assert.strictEqual(json.shape, "sessions")
    assert.strictEqual(json.conversations, 4)
    assert.strictEqual(json.completed, 4)
    for (
      const [flag, value, message] of [
        ["--rps", "3", "--rps does not apply to --pattern sessions"],
        ["--conversations", "0", "--conversations"],
        ["--strategy", "naive", "runs the resilient strategy only"]
      ] as const
    ) {
      try {
        execFileSync(process.execPath, ["src/cli/main.ts", "simulate", "--pattern", "sessions", flag, value], {
          encoding: "utf8",
          timeout: 60_000,
          stdio: ["ignore", "pipe", "pipe"]
        })
        assert.fail(`expected ${flag} ${value} to be refused`)
      } catch (e) {
        const err = e as { status: number; stderr: string }
        assert.strictEqual(err.status, 1)
        assert.strictEqual(err.stderr.trim().split("\n").length, 1, err.stderr)
        assert.include(err.stderr, message)
      }
    }
  })

  it("load-test --pattern sessions: real time against the embedded simulator's server, faults, nothing lost", () => {
    const out = execFileSync(process.execPath, [
      "src/cli/main.ts",
      "load-test",
      "--pattern",
      "sessions",
      "--conversations",
      "4",
      "--duration",
      "8s",
      "--plan",
      "creator",
      "--model",
      "eleven_flash_v2_5",
      "--failure-rate",
      "0.3",
      "--json"
    ], { encoding: "utf8", timeout: 90_000 })
    const json = JSON.parse(out) as Sessions.SessionsSummary
    assert.strictEqual(json.clock, "real")
    assert.strictEqual(json.conversations, 4)
    assert.strictEqual(json.lostCharacters, 0)
    assert.strictEqual(json.duplicatedCharacters, 0)
    assert.isAbove(json.charactersSpoken, 0)
    assert.isAtMost(json.maxInFlight, json.limit)
  }, 120_000)
})
