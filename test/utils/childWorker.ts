/**
 * A Node child process run as a test worker (no tests here): its output is
 * collected, and `line(pattern)` waits for a line of it.
 */
import { type ChildProcess, spawn } from "node:child_process"

export interface Run {
  readonly child: ChildProcess
  readonly exit: Promise<{ code: number | null; stdout: string; stderr: string }>
  /** Resolves once the output contains `pattern`; rejects if the worker exits first. */
  readonly line: (pattern: string) => Promise<void>
  /** The standard output so far. */
  readonly output: () => string
}

/** Runs `node <nodeArgs...> <args...>` with this process's Node. */
export const runNode = (nodeArgs: ReadonlyArray<string>, args: ReadonlyArray<string | number>): Run => {
  const child = spawn(process.execPath, [...nodeArgs, ...args.map(String)], { stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  const waiters: Array<{ pattern: string; resolve: () => void }> = []
  child.stdout!.on("data", (c) => {
    stdout += c.toString()
    for (const w of waiters.filter((w) => stdout.includes(w.pattern))) w.resolve()
  })
  child.stderr!.on("data", (c) => (stderr += c.toString()))
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once("exit", (code) => resolve({ code, stdout, stderr }))
  )
  return {
    child,
    exit,
    output: () => stdout,
    line: (pattern) =>
      new Promise((resolve, reject) => {
        if (stdout.includes(pattern)) return resolve()
        waiters.push({ pattern, resolve })
        void exit.then((r) => reject(new Error(`worker exited (${r.code}) before "${pattern}": ${r.stderr}`)))
      })
  }
}
