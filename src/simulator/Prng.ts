/**
 * The simulator's seeded pseudo-random generator (mulberry32).
 *
 * The model owns one, so a run's answers depend only on its seed and on the
 * order of the requests it sees; Effect's `Random` service is not used because
 * the server face and the in-process face must draw from the very same
 * sequence whatever fiber context a request runs in.
 *
 * @since 0.1.0
 */

/** A seeded generator of floats in `[0, 1)`. */
export interface Prng {
  /** The next float in `[0, 1)`. */
  readonly next: () => number
  /** An integer in `[0, n)`. */
  readonly int: (n: number) => number
  /** A string of `length` characters from `alphabet`. */
  readonly string: (length: number, alphabet: string) => string
}

/** Letters and digits, for `request-id`-style ids. */
export const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
/** Lower-case hex digits, for `x-trace-id`. */
export const hex = "0123456789abcdef"

/** A generator seeded with `seed` (any number; its low 32 bits are used). */
export const make = (seed: number): Prng => {
  let state = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  const string = (length: number, alphabet: string) => {
    let s = ""
    for (let i = 0; i < length; i++) s += alphabet[int(alphabet.length)]
    return s
  }
  return { next, int, string }
}
