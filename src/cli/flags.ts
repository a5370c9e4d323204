/**
 * Flag helpers every command uses, so that `--help` says each flag's
 * default (`effect/cli` renders a flag's description but not its default)
 * and the config file has one name everywhere.
 *
 * @since 0.1.0
 */
import { Effect, type LogLevel, Option, References } from "effect"
import { Flag, GlobalFlag } from "effect/cli"

/** How a default reads in `--help`: booleans as on/off, strings and numbers as they are. */
export const showDefault = (value: unknown): string =>
  typeof value === "boolean" ? (value ? "on" : "off") : String(value)

/**
 * `Flag.withDefault` plus a description that ends with `(default: VALUE)`.
 * `shown` replaces the value in the text where it needs words.
 */
export const withDefault =
  <const B>(description: string, value: B, shown?: string) => <A>(self: Flag.Flag<A>): Flag.Flag<A | B> =>
    Flag.withDescription(Flag.withDefault(self, value), `${description} (default: ${shown ?? showDefault(value)})`)

/**
 * `Flag.optional` plus a description that ends with `(default: WHAT)`,
 * `what` saying what happens without the flag.
 */
export const optional = (description: string, what: string) => <A>(self: Flag.Flag<A>) =>
  Flag.withDescription(Flag.optional(self), `${description} (default: ${what})`)

/** A boolean switch, off unless given. */
export const boolean = (name: string, description: string): Flag.Flag<boolean> =>
  Flag.Boolean(name).pipe(withDefault(description, false))

/**
 * `--config FILE`: the JSON configuration file of the resilient stack
 * (docs/configuration.md). The same name in every command.
 */
export const config = (
  description = "JSON config file of the resilient stack (docs/configuration.md).",
  what = "none: the built-in defaults"
) => Flag.String("config").pipe(optional(description, what))

/**
 * Runs a command with logs at `level` and above only (its retries and limit
 * changes would drown a report or a progress bar), unless the user chose a
 * level with the global `--log-level`, which then holds.
 */
export const quietUnlessAsked =
  (level: LogLevel.LogLevel) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(
      Effect.serviceOption(GlobalFlag.LogLevel),
      (chosen) =>
        Option.isSome(Option.flatten(chosen)) ? self : Effect.provideService(self, References.MinimumLogLevel, level)
    )
