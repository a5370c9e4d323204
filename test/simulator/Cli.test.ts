/**
 * The `simulator` command as a user runs it: a real process on a free port,
 * stopped with SIGTERM.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url))

const run = (args: ReadonlyArray<string>) => {
  const child = spawn(process.execPath, [main, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  child.stdout.on("data", (d) => (out += String(d)))
  child.stderr.on("data", (d) => (out += String(d)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return { child, exited, output: () => out }
}

describe("simulator command", () => {
  it.live("serves on the port it prints, with the keys it is given, and stops on SIGTERM", () =>
    Effect.promise(async () => {
      const proc = run(["simulator", "--port", "0", "--plan", "free", "--api-key", "k1", "--api-key", "k2"])
      let url: string | undefined
      for (let i = 0; i < 200 && url === undefined; i++) {
        url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(proc.output())?.[1]
        if (url === undefined) await new Promise((r) => setTimeout(r, 25))
      }
      assert.isDefined(url, proc.output())
      const ok = await fetch(`${url}/v1/user/subscription`, { headers: { "xi-api-key": "k2" } })
      assert.strictEqual(ok.status, 200)
      assert.strictEqual(((await ok.json()) as { tier: string }).tier, "free")
      const bad = await fetch(`${url}/v1/user/subscription`, { headers: { "xi-api-key": "sim-key" } })
      assert.strictEqual(bad.status, 401)
      proc.child.kill("SIGTERM")
      const code = await proc.exited
      // NodeRuntime.runMain ends an interrupted program with 130, after the server's finalizers ran.
      assert.include([0, 130], code, `exit code ${code}`)
      assert.notMatch(proc.output(), /Error/)
    }))

  it.live("refuses a bad flag with a message naming it", () =>
    Effect.promise(async () => {
      const proc = run(["simulator", "--failure-rate", "2"])
      const code = await proc.exited
      assert.notStrictEqual(code, 0)
      assert.match(proc.output(), /--failure-rate must be between 0 and 1/)
    }))
})
