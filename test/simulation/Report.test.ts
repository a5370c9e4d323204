import { assert, describe, it } from "@effect/vitest"
import * as Patterns from "../../src/simulation/Patterns.ts"
import * as Recorder from "../../src/simulation/Recorder.ts"
import * as Report from "../../src/simulation/Report.ts"
import type * as Simulator from "../../src/simulator/Simulator.ts"

const traffic: Patterns.Traffic = {
  pattern: "steady",
  requests: 4,
  durationMs: 4000,
  rps: 1,
  startRps: 1,
  endRps: 1,
  bursts: 0,
  chars: { min: 10, max: 10 },
  interactiveShare: 0.2,
  seed: 1
}

const pool = { inFlight: 0, maxInFlight: 2, limit: 2, queued: 0, maxQueued: 0, admitted: 4, rejected: 1, samples: [] }
const stats = {
  now: 0,
  requests: 5,
  byStatus: { "200": 4, "429": 1 },
  byDetailStatus: { too_many_concurrent_requests: 1 },
  faults: {},
  creditsCharged: 40,
  pools: { standard: pool, flash: pool, stt: pool, music: pool },
  accounts: {}
} as unknown as Simulator.Stats

describe("Report", () => {
  it("percentiles are nearest-rank", () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1)
    assert.deepStrictEqual(Report.percentiles(samples), { p50: 50, p95: 95, p99: 99, max: 100 })
    assert.deepStrictEqual(Report.percentiles([]), { p50: 0, p95: 0, p99: 0, max: 0 })
  })

  it("summary: counts, Little's bound and utilization from the log", () => {
    const log = Recorder.emptyLog()
    // four successes holding a slot 1 s each, one 429; limit 2 -> bound 2/s
    for (let i = 0; i < 4; i++) {
      log.attempts.push({ startMs: i * 1000, endMs: i * 1000 + 1000, status: 200, kind: "ok" })
      log.calls.push({
        index: i,
        lane: "batch",
        arrivalMs: i * 1000,
        endMs: i * 1000 + 1000,
        failure: undefined,
        credits: 10
      })
    }
    log.attempts.push({ startMs: 0, endMs: 0, status: 429, kind: "too_many_concurrent_requests" })
    log.retries.push([0, "ConcurrencyLimited"])
    log.breaker.push([100, "open"], [2100, "half-open"], [2200, "closed"])
    log.queueWaits.push([0, 10], [1000, 30])
    const r = Report.build({
      strategy: "x",
      plan: "free",
      model: "m",
      pool: "standard",
      limit: 2,
      traffic,
      failureRate: 0,
      log,
      stats,
      virtualDurationMs: 4000,
      wallMs: 5
    })
    const s = r.summary
    assert.strictEqual(s.succeeded, 4)
    assert.strictEqual(s.failed, 0)
    assert.strictEqual(s.attempts, 5)
    assert.strictEqual(s.retries, 1)
    assert.strictEqual(s.throughputPerSec, 1)
    assert.strictEqual(s.littleBoundPerSec, 2)
    assert.strictEqual(s.utilization, 0.5)
    assert.deepStrictEqual(s.http429, { tooManyConcurrentRequests: 1, systemBusy: 0 })
    assert.deepStrictEqual(s.breaker, { opened: 1, transitions: 3 })
    assert.deepStrictEqual(s.latencyMs, { p50: 1000, p95: 1000, p99: 1000, max: 1000 })
    assert.strictEqual(s.queueWaitMs.max, 30)
    assert.strictEqual(s.creditsUsed, 40)
    assert.strictEqual(s.maxInFlight, 2)
    // series: one value per window, breaker open (2) from t = 100 ms
    assert.strictEqual(r.series.startMs.length, r.series.inFlight.length)
    assert.strictEqual(r.series.breaker[0], 0)
    assert.strictEqual(r.series.breaker[Math.floor(100 / r.series.windowMs)], 2)
    assert.strictEqual(r.series.breaker[r.series.breaker.length - 1], 0)
    assert.strictEqual(r.series.http429.tooManyConcurrentRequests.reduce((a, b) => a + b, 0), 1)
    // text and JSON
    const text = Report.toText([r, r])
    assert.include(text, "Little bound")
    assert.include(text, "50 %")
    assert.include(text, "virtual duration")
    const json = JSON.parse(Report.toJson([r]))
    for (
      const key of [
        "strategy",
        "plan",
        "model",
        "pool",
        "limit",
        "pattern",
        "seed",
        "requests",
        "succeeded",
        "failed",
        "failedByReason",
        "http429",
        "attempts",
        "retries",
        "maxInFlight",
        "throughputPerSec",
        "littleBoundPerSec",
        "utilization",
        "latencyMs",
        "queueWaitMs",
        "creditsUsed",
        "breaker",
        "virtualDurationMs",
        "wallMs",
        "series"
      ]
    ) assert.property(json, key)
    assert.lengthOf(JSON.parse(Report.toJson([r, r])).runs, 2)
  })

  it("series: calls ended and succeeded per window, and every 429 kind per window", () => {
    const log = Recorder.emptyLog()
    // 4 s in 120 windows of 34 ms: two calls end in window 0 (one fails), one at 3,000 ms (window 88)
    log.calls.push(
      { index: 0, lane: "batch", arrivalMs: 0, endMs: 10, failure: undefined, credits: 10 },
      { index: 1, lane: "batch", arrivalMs: 0, endMs: 20, failure: "SystemBusy", credits: 0 },
      { index: 2, lane: "batch", arrivalMs: 2000, endMs: 3000, failure: undefined, credits: 10 }
    )
    log.attempts.push(
      { startMs: 0, endMs: 5, status: 429, kind: "too_many_concurrent_requests" },
      { startMs: 0, endMs: 15, status: 429, kind: "system_busy" },
      { startMs: 2000, endMs: 2100, status: 429, kind: "rate_limited" },
      { startMs: 2100, endMs: 3000, status: 200, kind: "ok" }
    )
    const r = Report.build({
      strategy: "x",
      plan: "free",
      model: "m",
      pool: "standard",
      limit: 2,
      traffic,
      failureRate: 0,
      log,
      stats,
      virtualDurationMs: 4000,
      wallMs: 1
    })
    const { series } = r
    const at = (t: number) => Math.floor(t / series.windowMs)
    const only = (values: ReadonlyArray<number>, expected: Record<number, number>) =>
      values.forEach((v, k) => assert.strictEqual(v, expected[k] ?? 0, `window ${k}`))
    assert.strictEqual(series.windowMs, 34)
    only(series.ended, { 0: 2, [at(3000)]: 1 })
    only(series.succeeded, { 0: 1, [at(3000)]: 1 })
    only(series.http429.tooManyConcurrentRequests, { 0: 1 })
    only(series.http429.systemBusy, { 0: 1 })
    only(series.http429.rateLimited, { [at(2100)]: 1 })
    // a window with no ended call keeps latency 0 here; the charts read `ended` to draw a gap
    assert.strictEqual(series.latencyMs.p50[1], 0)
    assert.strictEqual(series.latencyMs.p50[at(3000)], 1000)
  })
})
