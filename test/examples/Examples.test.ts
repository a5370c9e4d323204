/**
 * Runs every numbered example as its own process (the way a user would:
 * `node examples/NN-name.ts`), against the simulator it starts itself
 * (`ELEVENLABS_API_KEY` removed from the environment), and checks the exit
 * code and the lines that say the example did what it claims.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { readdirSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dirname, "..", "..")
const examples = join(root, "examples")

const run = (file: string) =>
  new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env }
    delete env["ELEVENLABS_API_KEY"]
    delete env["ELEVENLABS_BASE_URL"]
    execFile(process.execPath, [join(examples, file)], { cwd: root, env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resolve({ code, stdout, stderr })
    })
  })

/**
 * What each example must print (regular expressions over its whole output). The in-flight peak is
 * checked against the limit, not for saturation: on a loaded machine a burst may not fill every slot.
 */
const expectations: Record<string, ReadonlyArray<RegExp>> = {
  "01-quick-start.ts": [/^target: simulator$/m, /^audio: \d{3,} bytes of audio\/mpeg$/m, /credits charged: \d+/],
  "02-priority-lanes.ts": [
    /^batch: 60 requests, median \d+ ms/m,
    /^interactive: 8 requests during the batch/m,
    / 0 too_many_concurrent_requests, at most (?:[1-9]|10) of 10 in flight/
  ],
  "03-custom-policy.ts": [
    /^phase 1 \(10 % system_busy\): /m,
    /^phase 2 \(every request answers 500\): 8 CircuitOpen; breaker open$/m,
    /^phase 3 \(faults cleared, open time passed\): 6 ok; breaker closed$/m
  ],
  "04-fallback-cache.ts": [
    /"Welcome back\.": served from cache \(meta\.fallback = true/,
    /^summary: 3 of 3 cached lines served during the outage; the new line failed/m
  ],
  "05-wrap-official-sdk.ts": [
    /^burst: 40 SDK converts succeeded/m,
    /^learned flash limit: 10 \(server ceiling 10\)$/m,
    /^missing voice: ElevenLabsError NotFound \(404 voice_not_found\) after 1 attempt\(s\)$/m,
    /^server: 0 too_many_concurrent_requests, at most (?:[1-9]|10) of 10 in flight/m
  ],
  "07-sdk-resilient-fetch.ts": [
    /^batch: 60 SDK converts succeeded/m,
    /^stream: \d+ bytes; permits held while reading 1, after the last byte 0$/m,
    /^beyond TTS: sound effect \d+ bytes, dialogue \d+ bytes$/m,
    /^refused locally: InvalidRequest \(durationSeconds\), not sent$/m,
    /^missing voice: the SDK's error, status 404$/m,
    /^server: 0 too_many_concurrent_requests, at most (?:[1-9]|10) of 10 in flight$/m
  ],
  "08-voice-agent-realtime.ts": [
    /^turns: 3, characters sent (\d+), answered \1$/m,
    /^reconnects: 1, characters resent: [1-9]\d*$/m,
    /^spoken exactly once: yes$/m,
    /^audio: [1-9]\d* bytes in /m
  ],
  "06-distributed.ts": [
    /^workers: 3 processes x 20 requests: 60 ok, 0 failed$/m,
    /^server: 0 too_many_concurrent_requests, at most (?:[1-9]|10) of 10 in flight$/m
  ]
}

describe.concurrent("examples", () => {
  it("every numbered example has expectations here", () => {
    const numbered = readdirSync(examples).filter((f) => /^\d\d-.*\.ts$/.test(f)).sort()
    assert.deepStrictEqual(numbered, Object.keys(expectations).sort())
  })

  for (const [file, patterns] of Object.entries(expectations)) {
    it(`${file} runs against the simulator and prints its summary`, async () => {
      const { code, stdout, stderr } = await run(file)
      assert.strictEqual(code, 0, `exit code ${code}; stderr:\n${stderr}`)
      for (const pattern of patterns) assert.match(stdout, pattern)
    }, 60_000)
  }
})
