/**
 * Traffic patterns: deterministic arrival schedules for simulations.
 *
 * **Details**
 *
 * - Each pattern is a rate curve `r(t)` over a run of `durationMs`; arrival
 *   `i` (0-based, of `n`) happens at `Λ⁻¹((i + ½) · Λ(D) / n)`, where `Λ` is
 *   the cumulative rate. There is no Poisson noise: the shape is exact, so a
 *   chart of the schedule is the curve itself. The seed drives the text
 *   lengths and the lanes (interactive or batch) through Effect's `Random`.
 * - `steady`: `r(t) = rps`. `chaos` is `steady` plus the simulator's fault mix.
 * - `ramp-up`: `r(t) = r0 + (r1 − r0) · t / D`.
 * - `burst`: `n` requests split over `bursts` instants `k · D / bursts`.
 * - `diurnal`: `r(t) = peak · (0.55 − 0.45 · cos(2π (t / D − 1/6)))`, trough
 *   (10 % of peak) at 04:00 and peak at 16:00 of a 24 h day.
 *
 * @since 0.1.0
 */
import { Effect, Random, Schema } from "effect"

/** The built-in traffic patterns. */
export const patternNames = ["steady", "ramp-up", "burst", "chaos", "diurnal"] as const
export type PatternName = (typeof patternNames)[number]

/** Whether a string names a pattern. */
export const isPatternName = (s: string): s is PatternName => (patternNames as ReadonlyArray<string>).includes(s)

/** The priority lanes arrivals are spread over. */
export type Lane = "interactive" | "batch"
export const lanes: ReadonlyArray<Lane> = ["interactive", "batch"]

/** One request of a schedule. */
export interface Arrival {
  /** Position in the schedule, 0-based; also the request id. */
  readonly index: number
  /** Virtual time of arrival, in ms from the start of the run. */
  readonly atMs: number
  /** Length of the text to synthesise. */
  readonly chars: number
  readonly lane: Lane
}

/** A text-length range, inclusive. `{ min: n, max: n }` for a fixed length. */
export interface CharRange {
  readonly min: number
  readonly max: number
}

/** What a pattern is asked for; every field has a default (see {@link resolve}). */
export interface TrafficOptions {
  readonly pattern: PatternName
  readonly requests?: number | undefined
  readonly durationMs?: number | undefined
  readonly rps?: number | undefined
  readonly startRps?: number | undefined
  readonly endRps?: number | undefined
  /** Number of bursts for `burst` (default 1). */
  readonly bursts?: number | undefined
  readonly chars?: CharRange | undefined
  /** Share of arrivals in the interactive lane, 0..1 (default 0.2). */
  readonly interactiveShare?: number | undefined
  readonly seed?: number | undefined
}

/** A fully resolved traffic description: what will run. */
export interface Traffic {
  readonly pattern: PatternName
  readonly requests: number
  readonly durationMs: number
  /** Steady/chaos rate, diurnal peak, ramp end rate (0 for a single burst). */
  readonly rps: number
  readonly startRps: number
  readonly endRps: number
  readonly bursts: number
  readonly chars: CharRange
  readonly interactiveShare: number
  readonly seed: number
}

/** Bad traffic options. */
export class InvalidTraffic extends Schema.Error<InvalidTraffic>("elevenlabs-resilience/InvalidTraffic")({
  _tag: Schema.tag("InvalidTraffic"),
  message: Schema.String
}) {}

const defaults = {
  rps: 10,
  requests: 1_000,
  chars: { min: 100, max: 1_000 },
  interactiveShare: 0.2,
  seed: 1,
  diurnalMs: 24 * 3_600_000,
  burstRequests: 100,
  burstMs: 60_000
} as const

const positive = (name: string, v: number | undefined): Effect.Effect<void, InvalidTraffic> =>
  v === undefined || (Number.isFinite(v) && v > 0)
    ? Effect.void
    : Effect.fail(new InvalidTraffic({ message: `${name} must be a positive number, got ${v}` }))

/** The diurnal shape, 0.1..1 of the peak, at fraction `x` of the day. */
export const diurnalShape = (x: number): number => 0.55 - 0.45 * Math.cos(2 * Math.PI * (x - 1 / 6))

/** Fills in defaults and checks consistency. */
export const resolve = (o: TrafficOptions): Effect.Effect<Traffic, InvalidTraffic> =>
  Effect.gen(function*() {
    yield* positive("requests", o.requests)
    yield* positive("duration", o.durationMs)
    yield* positive("rps", o.rps)
    yield* positive("start-rps", o.startRps)
    yield* positive("end-rps", o.endRps)
    yield* positive("bursts", o.bursts)
    if (o.requests !== undefined && !Number.isInteger(o.requests)) {
      return yield* new InvalidTraffic({ message: `requests must be an integer, got ${o.requests}` })
    }
    const chars = o.chars ?? defaults.chars
    if (!Number.isInteger(chars.min) || !Number.isInteger(chars.max) || chars.min < 1 || chars.max < chars.min) {
      return yield* new InvalidTraffic({
        message: `chars must be N or a-b with 1 <= a <= b, got ${chars.min}-${chars.max}`
      })
    }
    const share = o.interactiveShare ?? defaults.interactiveShare
    if (!(share >= 0 && share <= 1)) {
      return yield* new InvalidTraffic({ message: `interactive share must be within 0..1, got ${share}` })
    }
    const seed = o.seed ?? defaults.seed
    const base = { pattern: o.pattern, chars, interactiveShare: share, seed }
    switch (o.pattern) {
      case "steady":
      case "chaos": {
        if (o.requests !== undefined && o.rps !== undefined && o.durationMs !== undefined) {
          return yield* new InvalidTraffic({ message: "give at most two of --requests, --rps, --duration" })
        }
        const rps = o.rps ?? (o.requests !== undefined && o.durationMs !== undefined
          ? o.requests / (o.durationMs / 1000)
          : defaults.rps)
        const requests = o.requests ??
          (o.durationMs !== undefined ? Math.max(1, Math.round(rps * o.durationMs / 1000)) : defaults.requests)
        return { ...base, requests, rps, startRps: rps, endRps: rps, bursts: 0, durationMs: (requests / rps) * 1000 }
      }
      case "ramp-up": {
        const r0 = o.startRps ?? 1
        const r1 = o.endRps ?? o.rps ?? 20
        const mean = (r0 + r1) / 2
        const durationMs = o.durationMs ?? (o.requests !== undefined ? (o.requests / mean) * 1000 : 60_000)
        const requests = o.requests ?? Math.max(1, Math.round(mean * durationMs / 1000))
        return { ...base, requests, rps: r1, startRps: r0, endRps: r1, bursts: 0, durationMs }
      }
      case "burst": {
        const bursts = o.bursts ?? 1
        if (!Number.isInteger(bursts)) {
          return yield* new InvalidTraffic({ message: `bursts must be an integer, got ${bursts}` })
        }
        const requests = o.requests ?? defaults.burstRequests
        if (requests < bursts) {
          return yield* new InvalidTraffic({ message: `burst needs at least one request per burst (${bursts})` })
        }
        const durationMs = bursts === 1 ? 0 : o.durationMs ?? defaults.burstMs
        return { ...base, requests, rps: 0, startRps: 0, endRps: 0, bursts, durationMs }
      }
      case "diurnal": {
        const durationMs = o.durationMs ?? defaults.diurnalMs
        if (o.requests !== undefined && o.rps !== undefined) {
          return yield* new InvalidTraffic({
            message: "diurnal takes --rps (the peak) or --requests (the day's total), not both"
          })
        }
        const seconds = durationMs / 1000
        const peak = o.rps ?? (o.requests !== undefined ? o.requests / (0.55 * seconds) : defaults.rps)
        const requests = o.requests ?? Math.max(1, Math.round(0.55 * peak * seconds))
        return { ...base, requests, rps: peak, startRps: peak * 0.1, endRps: peak * 0.1, bursts: 0, durationMs }
      }
    }
  })

/** The rate (requests per second) the pattern intends at virtual time `t` ms. */
export const rateAt = (t: Traffic, atMs: number): number => {
  switch (t.pattern) {
    case "steady":
    case "chaos":
      return t.rps
    case "ramp-up":
      return t.startRps + (t.endRps - t.startRps) * (atMs / t.durationMs)
    case "diurnal":
      return t.rps * diurnalShape(atMs / t.durationMs)
    case "burst":
      return 0
  }
}

/** Cumulative intended arrivals (unscaled) up to `atMs`. */
const cumulative = (t: Traffic, atMs: number): number => {
  const s = atMs / 1000
  switch (t.pattern) {
    case "steady":
    case "chaos":
      return t.rps * s
    case "ramp-up": {
      const a = (t.endRps - t.startRps) / (t.durationMs / 1000)
      return t.startRps * s + (a * s * s) / 2
    }
    case "diurnal": {
      const d = t.durationMs / 1000
      const w = (2 * Math.PI) / d
      return t.rps * (0.55 * s - (0.45 / w) * (Math.sin(w * s - Math.PI / 3) - Math.sin(-Math.PI / 3)))
    }
    case "burst":
      return 0
  }
}

/** Arrival time of the `i`-th of the schedule's requests. */
const timeOf = (t: Traffic, i: number): number => {
  if (t.pattern === "burst") {
    const per = t.requests / t.bursts
    const k = Math.min(t.bursts - 1, Math.floor(i / per))
    return t.bursts === 1 ? 0 : Math.round((k * t.durationMs) / t.bursts)
  }
  const total = cumulative(t, t.durationMs)
  const target = ((i + 0.5) / t.requests) * total
  if (t.pattern === "steady" || t.pattern === "chaos") return (target / t.rps) * 1000
  if (t.pattern === "ramp-up") {
    const a = (t.endRps - t.startRps) / (t.durationMs / 1000)
    const s = Math.abs(a) < 1e-12
      ? target / t.startRps
      : (-t.startRps + Math.sqrt(t.startRps ** 2 + 2 * a * target)) / a
    return s * 1000
  }
  // diurnal: Λ is increasing, bisect
  let lo = 0
  let hi = t.durationMs
  for (let k = 0; k < 50 && hi - lo > 1e-3; k++) {
    const mid = (lo + hi) / 2
    if (cumulative(t, mid) < target) lo = mid
    else hi = mid
  }
  return (lo + hi) / 2
}

/**
 * The arrival schedule of a resolved traffic description, sorted by time.
 * Times are rounded to the millisecond; the same seed gives the same
 * schedule.
 */
export const schedule = (t: Traffic): Effect.Effect<ReadonlyArray<Arrival>> =>
  Effect.gen(function*() {
    const out: Array<Arrival> = new Array(t.requests)
    const span = t.chars.max - t.chars.min + 1
    for (let i = 0; i < t.requests; i++) {
      const u1 = yield* Random.next
      const u2 = yield* Random.next
      out[i] = {
        index: i,
        atMs: Math.round(timeOf(t, i)),
        chars: t.chars.min + Math.min(span - 1, Math.floor(u1 * span)),
        lane: u2 < t.interactiveShare ? "interactive" : "batch"
      }
    }
    return out
  }).pipe(Random.withSeed(t.seed))

/** Parses `--chars`: `N` or `a-b`. */
export const parseChars = (s: string): Effect.Effect<CharRange, InvalidTraffic> => {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(s)
  if (m === null) return Effect.fail(new InvalidTraffic({ message: `--chars must be N or a-b, got "${s}"` }))
  const min = Number(m[1])
  const max = m[2] === undefined ? min : Number(m[2])
  if (min < 1 || max < min) {
    return Effect.fail(new InvalidTraffic({ message: `--chars must be N or a-b with 1 <= a <= b, got "${s}"` }))
  }
  return Effect.succeed({ min, max })
}
