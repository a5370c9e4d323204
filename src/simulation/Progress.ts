/**
 * A one-line terminal progress bar for real-time runs (load tests, the demo).
 *
 * This is a Node-facing edge (a display), so it redraws on a real
 * `setInterval` rather than on Effect's `Clock`: the bar must move with the
 * wall clock whatever the program's clock is.
 *
 * **Details**
 *
 * - {@link sink} returns a {@link ProgressSink} for {@link LoadTest}: it draws
 *   every 100 ms while the run's scope is open, then clears its line.
 * - Draws on standard error by default, so standard output stays the
 *   report (`--json` is one JSON document even on a terminal).
 * - Quiet (draws nothing) when the stream is not a TTY, so piped output and
 *   CI logs stay clean.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { ProgressSink, ProgressState } from "./LoadTest.ts"

/** Options of {@link sink}. */
export interface Options {
  /** Where to draw. Default `process.stderr`. */
  readonly stream?: NodeJS.WriteStream | undefined
  /** Draw even when the stream is not a TTY (tests). Default false. */
  readonly force?: boolean | undefined
  /** Text before the bar. Default none. */
  readonly label?: string | undefined
  /** Redraw period in ms. Default 100. */
  readonly intervalMs?: number | undefined
  /** Bar width in cells. Default 30. */
  readonly width?: number | undefined
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

/** One line of the bar for a state (no terminal codes). */
export const line = (s: ProgressState, width = 30, label?: string | undefined): string => {
  const ratio = s.total === 0 ? 1 : Math.min(1, s.done / s.total)
  const full = Math.round(ratio * width)
  const bar = "█".repeat(full) + "░".repeat(width - full)
  const pct = `${Math.floor(ratio * 100)}`.padStart(3)
  return `${
    label === undefined ? "" : `${label} `
  }${bar} ${pct}%  ${s.done}/${s.total} done  ✓ ${s.succeeded}  ✗ ${s.failed}  in flight ${s.inFlight}  ${
    seconds(s.elapsedMs)
  }${s.spanMs > 0 ? ` / ~${seconds(s.spanMs)}` : ""}`
}

/** Whether a bar would be drawn on `stream`. */
export const enabled = (options?: Options | undefined): boolean =>
  options?.force === true || (options?.stream ?? process.stderr).isTTY === true

/** A progress display for {@link LoadTest}; `undefined` when it would be quiet. */
export const sink = (options?: Options | undefined): ProgressSink | undefined => {
  if (!enabled(options)) return undefined
  const stream = options?.stream ?? process.stderr
  const width = options?.width ?? 30
  const draw = (text: string) => stream.write(`\r\x1b[2K${text}`)
  return (read) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        draw(line(read(), width, options?.label))
        return setInterval(() => draw(line(read(), width, options?.label)), options?.intervalMs ?? 100)
      }),
      (timer) =>
        Effect.sync(() => {
          clearInterval(timer)
          draw("")
        })
    ).pipe(Effect.asVoid)
}
