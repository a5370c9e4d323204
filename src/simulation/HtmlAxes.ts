/**
 * Axis and series helpers of the HTML report that run in the browser AND in
 * Node: the page embeds their source (`Function.prototype.toString`), and the
 * tests call them here. So each one is self-contained: no import, no module
 * constant, nothing but its arguments.
 *
 * @since 0.1.0
 */

/**
 * Tick values for a count axis: integers only, at a 1-2-5 step no smaller
 * than `incr` (the step uPlot found for the space it has) and never below 1,
 * so a queue of 3 reads 0, 1, 2, 3 and never 0.5.
 */
export const integerSplits = (min: number, max: number, incr: number): Array<number> => {
  if (!(Number.isFinite(min) && Number.isFinite(max)) || max < min) return [0]
  const wanted = Math.max(1, Number.isFinite(incr) ? incr : 1)
  let step = 1
  for (let decade = 1; step < wanted; decade *= 10) {
    step = [1, 2, 5, 10].map((m) => m * decade).find((s) => s >= wanted) ?? 10 * decade
  }
  const out: Array<number> = []
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9 && out.length < 1000; v += step) out.push(v || 0) // || 0: no -0 label
  // A step wider than the range: still one whole tick, if the range holds one.
  if (out.length === 0 && Math.ceil(min) <= max) out.push(Math.ceil(min))
  return out
}

/**
 * The y range of a count axis: a whole number with some headroom on top (1
 * when all is 0 or empty), and a little room below 0, so a line at 0 is drawn
 * whole instead of half hidden under the axis.
 */
export const countRange = (dataMax: number | null): [number, number] => {
  const top = Math.max(1, Math.ceil((dataMax ?? 0) * 1.1))
  return [-top * 0.04, top]
}

/** The y range of a measure (latency, rate): 10 % headroom (1 when empty), a little room below 0 as for counts. */
export const valueRange = (dataMax: number | null): [number, number] => {
  const top = dataMax === null || !(dataMax > 0) ? 1 : dataMax * 1.1
  return [-top * 0.04, top]
}

/** A duration for an axis or a legend: `850 ms`, `12.5 s`, `3 min`, `1.5 h`. */
export const formatTime = (ms: number): string => {
  const one = (x: number): string => (Math.round(x * 10) / 10).toLocaleString("en-US")
  if (ms === 0) return "0 s" // and -0, which an axis below 0 can produce
  if (ms >= 3_600_000) return `${one(ms / 3_600_000)} h`
  if (ms >= 60_000) return `${one(ms / 60_000)} min`
  if (ms >= 1000) return `${one(ms / 1000)} s`
  return `${one(ms)} ms`
}

/**
 * The indices of points that no line reaches: a value whose nearest defined
 * neighbours on both sides are gaps (`null`) or the ends. A lone window
 * between two gaps has no segment to draw, so the page draws it as a dot.
 * `undefined` (a time another run of the chart has, not this one) is skipped.
 */
export const isolatedPoints = (ys: ReadonlyArray<number | null | undefined>): Array<number> => {
  const out: Array<number> = []
  let previous: number | null | undefined = null
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i]
    if (y === undefined) continue
    if (y !== null && previous === null) {
      let next: number | null | undefined = null
      for (let j = i + 1; j < ys.length; j++) {
        if (ys[j] !== undefined) {
          next = ys[j]
          break
        }
      }
      if (next === null) out.push(i)
    }
    previous = y
  }
  return out
}

/** Round steps for the time axis, from 1 ms to 1 day. */
export const timeSteps: ReadonlyArray<number> = [1, 2, 5, 10, 20, 50, 100, 200, 500].concat(
  [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000)
)

/** The helpers' source, for the page's script (each one `const name = <source>`). */
export const browserSource = (): string =>
  Object.entries({ integerSplits, countRange, valueRange, formatTime, isolatedPoints })
    .map(([name, fn]) => `const ${name} = ${fn.toString()};`)
    .join("\n")
