import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Demo from "../../src/cli/demo.ts"

const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url))

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
  /** What `/health` answered while the demo ran. */
  readonly health: { readonly status: number; readonly body: string } | undefined
  /** What `/ready` answered while the demo ran. */
  readonly ready: { readonly status: number; readonly body: string } | undefined
  readonly metrics: string | undefined
}

/** Runs the demo as a process; as soon as it prints its health URL, asks it. */
const demo = (args: ReadonlyArray<string>, extraEnv: Record<string, string> = {}) =>
  Effect.callback<Ran>((resume) => {
    const env = { ...process.env, ...extraEnv }
    const child = spawn(process.execPath, [main, "demo", ...args], { env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let asked: Promise<void> | undefined
    let health: Ran["health"]
    let ready: Ran["health"]
    let metrics: string | undefined
    let closed = false
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString()
      const url = /health\s+(http:\/\/\S+)\/health/.exec(stdout)?.[1]
      if (url !== undefined && asked === undefined) {
        asked = (async () => {
          const h = await fetch(`${url}/health`)
          health = { status: h.status, body: await h.text() }
          const r = await fetch(`${url}/ready`)
          ready = { status: r.status, body: await r.text() }
          // The registry fills as requests run: poll until the composition's metrics show (or the demo ends).
          while (!closed) {
            const text = await (await fetch(`${url}/metrics`)).text()
            if (text.includes("elevenlabs_")) {
              metrics = text
              break
            }
            await new Promise((r) => setTimeout(r, 100))
          }
        })().catch(() => undefined)
      }
    })
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.on("close", (code) => {
      closed = true
      void (asked ?? Promise.resolve()).then(() =>
        resume(Effect.succeed({ code: code ?? 1, stdout, stderr, health, ready, metrics }))
      )
    })
    return Effect.sync(() => void child.kill())
  })

describe("demo", () => {
  it.live(
    "--seconds 3: exit 0, the report printed, report.html written, /health answered while it ran; a real key is never used",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "demo-"))
        const html = join(dir, "out.html")
        // A key in the environment must not be read: the demo only talks to its own simulator.
        const secret = "sk_feedfacefeedfacefeedfacefeedfacefeedfacefeedface"
        const out = yield* demo(["--seconds", "3", "--html", html], {
          ELEVENLABS_API_KEY: secret,
          ELEVENLABS_BASE_URL: "http://127.0.0.1:9"
        })
        assert.strictEqual(out.code, 0, out.stderr)
        assert.strictEqual(out.stderr, "")
        assert.match(out.stdout, /simulator\s+http:\/\/127\.0\.0\.1:\d+/)
        assert.match(out.stdout, /metrics\s+http:\/\/127\.0\.0\.1:\d+\/metrics/)
        assert.match(out.stdout, /strategy\s+resilient/)
        const requests = Number(/requests\s+(\d+)/.exec(out.stdout)?.[1])
        const succeeded = Number(/succeeded\s+(\d+)/.exec(out.stdout)?.[1])
        const failed = Number(/failed\s+(\d+)/.exec(out.stdout)?.[1])
        assert.isAbove(requests, 0)
        assert.strictEqual(succeeded + failed, requests)
        assert.match(out.stdout, /429 too_many_concurrent\s+0\n/)
        assert.include(out.stdout, `HTML report (charts): ${html}`)
        assert.include(
          out.stdout,
          "ELEVENLABS_API_KEY=sk_... npx elevenlabs-resilience load-test --base-url https://api.elevenlabs.io"
        )
        assert.isTrue(existsSync(html))
        const page = readFileSync(html, "utf8")
        assert.include(page, "data-chart=\"in-flight\"")
        assert.include(page, "resilient")
        assert.notInclude(out.stdout + out.stderr + page, secret)
        assert.include(out.stdout, "no real key, no credits")
        assert.strictEqual(out.health?.status, 200)
        // /ready runs the stack's checks: breaker and quota, registered once the stack is built.
        assert.include([200, 503], out.ready?.status)
        assert.include(out.health?.body, "\"status\":\"alive\"")
        // The composition's metrics were being recorded and served.
        assert.include(out.metrics, "elevenlabs_")
      }),
    { timeout: 60_000 }
  )

  it.live("bad flags: one clear line, exit 1", () =>
    Effect.gen(function*() {
      const out = yield* demo(["--seconds", "0"])
      assert.strictEqual(out.code, 1)
      assert.include(out.stderr, "demo: --seconds must be within 1..600, got 0")
      const plan = yield* demo(["--plan", "gold", "--seconds", "3"])
      assert.strictEqual(plan.code, 1)
      assert.include(
        plan.stderr,
        "demo: --plan must be one of free, starter, creator, pro, scale, business; got \"gold\""
      )
      // A metrics port already taken: a clear error, not a crash.
      const taken = yield* Effect.acquireRelease(
        Effect.callback<import("node:net").Server>((resume) => {
          const server = createServer()
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const address = taken.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const busy = yield* demo([
        "--seconds",
        "2",
        "--metrics-port",
        String(port),
        "--html",
        join(tmpdir(), "unused.html")
      ])
      assert.strictEqual(busy.code, 1)
      assert.strictEqual(
        busy.stderr.trim(),
        `demo: cannot serve /health and /metrics on 127.0.0.1:${port}: the port is in use; choose another --metrics-port (0 picks a free one)`
      )
    }))

  it.effect("the traffic fits the length: about 0.75 x what the pool serves in that time, bursts every ~10 s", () =>
    Effect.sync(() => {
      const t30 = Demo.trafficOf(30, "creator", 1)
      assert.strictEqual(t30.pattern, "burst")
      assert.strictEqual(t30.bursts, 3)
      assert.strictEqual(t30.durationMs, 18_000)
      assert.strictEqual(t30.requests, Math.round((5 / 1.1) * 30 * 0.75))
      const t3 = Demo.trafficOf(3, "creator", 1)
      assert.strictEqual(t3.bursts, 1)
      assert.isBelow(t3.requests!, t30.requests!)
    }))
})
