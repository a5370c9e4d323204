/**
 * Shared helpers of the benchmarks: the result row, medians, timing, GC and
 * the text table. Benchmarks are Node-facing edges: they use
 * `performance.now()` and real time on purpose (they measure the machine).
 */

/** One benchmark number, the shape every `bench/*.ts` `run` returns. */
export interface Result {
  readonly name: string
  readonly value: number
  readonly unit: string
  readonly note?: string
}

/** Median (mean of the two middle values for an even count). */
export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

export const mean = (xs: ReadonlyArray<number>): number =>
  xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length

/** Milliseconds since an arbitrary origin (monotonic). */
export const nowMs = (): number => performance.now()

/** Times an async thunk in milliseconds. */
export const timeMs = async <A>(f: () => Promise<A>): Promise<{ readonly ms: number; readonly value: A }> => {
  const t0 = performance.now()
  const value = await f()
  return { ms: performance.now() - t0, value }
}

const gcFn = (globalThis as { gc?: () => void }).gc

/** True when Node runs with `--expose-gc` (memory numbers are then exact). */
export const hasGc = gcFn !== undefined

/** Full collection (twice, so finalizers' garbage goes too); a no-op without `--expose-gc`. */
export const collect = (): void => {
  if (gcFn) {
    gcFn()
    gcFn()
  }
}

/** Rounds to `digits` decimals (for tables and the JSON of results). */
export const round = (x: number, digits = 2): number => {
  if (!Number.isFinite(x)) return x
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** `1234567.8` -> `1,234,568` (digits 0) or `1,234,567.8`. */
export const fmt = (x: number, digits = 0): string =>
  Number.isFinite(x)
    ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : String(x)

/** A Markdown table (also readable as plain text). */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string | number>>): string => {
  const cells = [header.map(String), ...rows.map((r) => r.map(String))]
  const widths = header.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? "").length)))
  const line = (r: ReadonlyArray<string>) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  return [line(cells[0]!), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.slice(1).map(line)].join(
    "\n"
  )
}

/** Whether `--quick` was given (the reduced mode). */
export const isQuick = (): boolean => process.argv.includes("--quick")

/** Logs a progress line on stderr (stdout carries the results). */
export const progress = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`)
}
