/**
 * Runs the real CLI (`src/cli/main.ts`) as a process, as a user would, and
 * checks what the CLI promises of every mistake: one line on standard
 * error, exit code 1, nothing on standard output, no stack trace, no help.
 */
import { assert } from "@effect/vitest"
import { Effect, Option } from "effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

export const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url))

/** What a run printed and how it ended. */
export interface Ran {
  readonly args: ReadonlyArray<string>
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `main.ts ...args` on this Node (24), without the caller's
 * `ELEVENLABS_*` variables (plus `env`), asynchronously: a server in the
 * test's process keeps answering while the CLI runs.
 */
export const cli = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  timeoutMs = 60_000
): Effect.Effect<Ran> =>
  Effect.callback<Ran>((resume) => {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ELEVENLABS_")))
    const child = execFile(
      process.execPath,
      [main, ...args],
      { env: { ...base, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resume(Effect.succeed({ args, code, stdout, stderr }))
      }
    )
    return Effect.sync(() => void child.kill())
  })

/** Several runs, a few at a time (the machine is shared). */
export const cliAll = (runs: ReadonlyArray<ReadonlyArray<string>>, env: Record<string, string> = {}) =>
  Effect.forEach(runs, (args) => cli(args, env), { concurrency: 3 })

/** A stack frame line as Node prints them. */
export const stackFrame = /^\s+at /m

/**
 * The CLI refused the run the way it promises: exit code 1, nothing on
 * standard output, ONE line on standard error, matching `expected`, no
 * stack trace and no help text.
 */
export const assertRefused = (ran: Ran, expected: RegExp | string): string => {
  const label = `${ran.args.join(" ")}\nstdout: ${ran.stdout}\nstderr: ${ran.stderr}`
  assert.strictEqual(ran.code, 1, label)
  assert.strictEqual(ran.stdout, "", label)
  const lines = ran.stderr.trimEnd().split("\n")
  assert.lengthOf(lines, 1, label)
  assert.notMatch(ran.stderr, stackFrame, label)
  assert.notInclude(ran.stderr, "USAGE", label)
  assert.notInclude(ran.stderr, "FLAGS", label)
  if (typeof expected === "string") assert.include(lines[0]!, expected, label)
  else assert.match(lines[0]!, expected, label)
  return lines[0]!
}

/** The optional traffic flags of `simulate` and `load-test`, none given (as `effect/cli` parses them). */
export const noTrafficOptions = {
  requests: Option.none<number>(),
  duration: Option.none<string>(),
  rps: Option.none<number>(),
  startRps: Option.none<number>(),
  endRps: Option.none<number>(),
  bursts: Option.none<number>(),
  concurrency: Option.none<number>(),
  failureRate: Option.none<number>(),
  html: Option.none<string>(),
  conversations: Option.none<number>()
} as const
