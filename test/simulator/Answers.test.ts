import { assert, describe, it } from "@effect/vitest"
import * as Answers from "../../src/simulator/Answers.ts"
import * as Counts from "../../src/simulator/Counts.ts"
import * as Prng from "../../src/simulator/Prng.ts"

const make = (options: { readonly retryAfterSeconds?: number; readonly seed?: number } = {}) => {
  const counts = Counts.make()
  const answers = Answers.make({
    prng: Prng.make(options.seed ?? 1),
    region: "europe-west4",
    counts,
    retryAfterSeconds: options.retryAfterSeconds
  })
  return { answers, counts }
}

const text = (p: Answers.Pending) => new TextDecoder().decode(p.whole)

describe("Answers", () => {
  it("JSON answers carry the common headers and are counted by status and error code", () => {
    const { answers, counts } = make()
    const a = answers.detail(401, "invalid_api_key", "Invalid API key")
    assert.deepStrictEqual(JSON.parse(text(a)), { detail: { status: "invalid_api_key", message: "Invalid API key" } })
    assert.deepStrictEqual(
      [a.headers["content-type"], a.headers["server"], a.headers["x-region"], a.headers["content-length"]],
      ["application/json", "uvicorn", "europe-west4", String(a.whole!.length)]
    )
    assert.match(a.headers["x-trace-id"]!, /^[0-9a-f]{32}$/)
    answers.validation([{ type: "missing", loc: ["body", "text"], msg: "Field required", input: {} }])
    answers.json(500, { status: "internal_server_error", message: "x" })
    answers.json(200, { status: "not_an_error" })
    answers.notFound()
    answers.record(503, undefined)
    assert.deepStrictEqual(counts.byStatus, { "401": 1, "422": 1, "500": 1, "200": 1, "404": 1, "503": 1 })
    assert.deepStrictEqual(counts.byDetailStatus, { invalid_api_key: 1, validation_error: 1, internal_server_error: 1 })
  })

  it("Retry-After on the 429s only when set, and as set", () => {
    const { answers } = make({ retryAfterSeconds: 3 })
    assert.strictEqual(answers.systemBusy().headers["retry-after"], "3")
    assert.strictEqual(answers.tooManyConcurrent(2).headers["retry-after"], "3")
    assert.match(JSON.parse(text(answers.tooManyConcurrent(2))).detail.message, /maximum of 2 concurrent requests/)
    answers.setRetryAfter(undefined)
    assert.isUndefined(answers.systemBusy().headers["retry-after"])
    assert.isUndefined(make().answers.tooManyConcurrent(1).headers["retry-after"])
  })

  it("success headers: ids from the seed, character-cost only with a cost", () => {
    const meta = { latencyMs: 120, inFlight: 2, limit: 5 }
    const first = make({ seed: 4 }).answers.successHeaders(meta, 30)
    assert.deepStrictEqual(make({ seed: 4 }).answers.successHeaders(meta, 30), first)
    assert.match(first["request-id"]!, /^[A-Za-z0-9]{20}$/)
    assert.deepStrictEqual(
      [
        first["character-cost"],
        first["current-concurrent-requests"],
        first["maximum-concurrent-requests"],
        first["tts-latency-ms"]
      ],
      ["30", "2", "5", "120"]
    )
    assert.notProperty(make().answers.successHeaders(meta, undefined), "character-cost")
  })

  it("respond makes an Outcome of an answer; isPending tells an answer from a value", () => {
    const { answers } = make()
    const pending = answers.notFound()
    const outcome = Answers.respond(pending)
    assert.deepStrictEqual(outcome, {
      _tag: "Respond",
      status: 404,
      headers: pending.headers,
      body: pending.body,
      whole: pending.whole
    })
    assert.isTrue(Answers.isPending(pending))
    assert.isFalse(Answers.isPending({ name: "key1" }))
  })
})
