/**
 * Durations of the configuration's file form: `"<n> <unit>"` (`"30 seconds"`,
 * `"500 millis"`; units nanos … weeks) or a number of milliseconds, read by
 * Effect's own codecs (`Schema.DurationFromString`, `Schema.DurationFromMillis`).
 *
 * **Details**
 *
 * - The decoded configuration keeps a duration as it was written (`"90 seconds"`
 *   stays `"90 seconds"`), so what a loaded configuration shows is what the file
 *   says; {@link millisOf} and {@link durationInput} read it.
 * - `"30"`, `"30 secs"`, `"1.5seconds"` and negative values are not durations
 *   (`Duration.fromInput` wants a number, whitespace and a unit).
 *
 * @since 0.1.0
 */
import { Duration, Option, Schema } from "effect"

/** A duration as written in the file: `"30 seconds"`, `"500 millis"` or a number of milliseconds. */
export type DurationValue = number | string

const decodeDuration = Schema.decodeUnknownOption(Schema.Union([Schema.DurationFromMillis, Schema.DurationFromString]))

/**
 * Milliseconds of a written duration, `undefined` when it is not one (or is
 * negative). `"Infinity"` gives `Infinity`.
 */
export const millisOf = (value: DurationValue): number | undefined => {
  // `DurationFromMillis` reads NaN as zero and takes Infinity; a number in the file is a finite count.
  if (typeof value === "number" && !Number.isFinite(value)) return undefined
  const ms = Option.map(decodeDuration(typeof value === "string" ? value.trim() : value), Duration.toMillis)
  return Option.isSome(ms) && ms.value >= 0 ? ms.value : undefined
}

/** The `Duration.Input` of a written duration (for the policies' options). */
export const durationInput = (value: DurationValue): Duration.Input =>
  typeof value === "number" ? value : (value.trim() as Duration.Input)

const expected = `a duration such as "30 seconds", "500 millis" or a number of milliseconds (>= 0)`

/** A finite, non-negative duration. */
export const FiniteDuration = Schema.Union([Schema.Number, Schema.String]).check(
  Schema.makeFilter((u: DurationValue) => (Number.isFinite(millisOf(u)) ? undefined : `Expected ${expected}`), {
    expected
  })
)

/** A non-negative duration, or `"Infinity"` to switch the bound off. */
export const DurationOrInfinity = Schema.Union([Schema.Number, Schema.String]).check(
  Schema.makeFilter(
    (u: DurationValue) => (millisOf(u) !== undefined ? undefined : `Expected ${expected}, or "Infinity"`),
    {
      expected: `${expected}, or "Infinity"`
    }
  )
)
