#!/usr/bin/env node
// The published entry point: the compiled CLI (built by `npm run build`, which `prepare` runs).
// A missing peer dependency (`effect`, `@effect/platform-node`) is reported in one line.
try {
  await import("../dist/cli/main.js")
} catch (error) {
  const missing = /Cannot find package '([^']+)'/.exec(String(error?.message))?.[1]
  if (error?.code !== "ERR_MODULE_NOT_FOUND" || missing === undefined) throw error
  console.error(`elevenlabs-resilience: the package ${missing} is not installed; install it: npm install ${missing}`)
  process.exitCode = 1
}
