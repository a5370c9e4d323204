/**
 * Runs Debian's `promtool` for the telemetry tests. Missing promtool is a
 * loud failure, never a skip: CI installs the `prometheus` package.
 */
import { spawnSync } from "node:child_process"

export const promtool = (args: ReadonlyArray<string>, input?: string | undefined): { code: number; out: string } => {
  const r = spawnSync("promtool", [...args], { input: input ?? "", encoding: "utf8" })
  if (r.error !== undefined) {
    const code = (r.error as NodeJS.ErrnoException).code
    throw new Error(
      code === "ENOENT"
        ? "promtool is not installed: install Debian's prometheus package (apt-get install prometheus) to run the telemetry tests"
        : `promtool failed to start: ${r.error.message}`
    )
  }
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` }
}

/** Parses Prometheus text exposition samples into `name{a="x",b="y"}` (labels sorted) -> value. */
export const parseExposition = (text: string): Map<string, number> => {
  const samples = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line)
    if (m === null) throw new Error(`unparseable exposition line: ${line}`)
    const labels = [...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, k, v]) => `${k}="${v}"`)
      .sort()
    const raw = m[3]!
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw)
    samples.set(`${m[1]}{${labels.join(",")}}`, value)
  }
  return samples
}

/** The sample key for a name and labels, as {@link parseExposition} writes it. */
export const key = (name: string, labels: Record<string, string> = {}): string =>
  `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(",")}}`
