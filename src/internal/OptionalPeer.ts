/**
 * Optional peer dependencies, loaded when the feature that needs them is
 * built, never when the library is imported.
 *
 * **Details**
 *
 * - `redis` (Redis shared state) and the OpenTelemetry SDK packages
 *   (`Otel.layerSdk`) are optional peers: an application that uses neither
 *   does not install them. The modules that need them import them with a
 *   dynamic `import()` inside the layer ({@link importPeer}), so importing
 *   `elevenlabs-resilience` (or any of its subpaths) never loads them.
 * - When one is missing, building the layer fails with
 *   {@link MissingPeerDependency}, whose message names the package and the
 *   `npm install` line.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"

/** An optional peer dependency that a feature needs is not installed. */
export class MissingPeerDependency extends Schema.Error<MissingPeerDependency>(
  "elevenlabs-resilience/MissingPeerDependency"
)({
  _tag: Schema.tag("MissingPeerDependency"),
  /** What needed it (`SharedState.layerRedis`, `Otel.layerSdk`). */
  feature: Schema.String,
  /** The package that could not be loaded. */
  packageName: Schema.String,
  /** Everything the feature needs: `npm install <install...>`. */
  install: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `${this.feature} needs the package ${this.packageName}, which is not installed: ` +
      `npm install ${this.install.join(" ")}`
  }
}

/**
 * For a "module not found" error (or one wrapping it as its `cause`, as
 * loaders and test runners do): the package it names (`""` when it names
 * none). `undefined` for any other error.
 */
const missingPackageOf = (cause: unknown, depth = 0): string | undefined => {
  if (typeof cause !== "object" || cause === null || depth > 4) return undefined
  const code = (cause as { readonly code?: unknown }).code
  const message = String((cause as { readonly message?: unknown }).message ?? "")
  const named = /Cannot find (?:package|module) '([^']+)'/.exec(message)?.[1]
  if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND" && named === undefined) {
    return missingPackageOf((cause as { readonly cause?: unknown }).cause, depth + 1)
  }
  // A bare specifier names the package (`redis`, `@scope/name/sub` -> `@scope/name`); a path does not.
  if (named === undefined || /^(\.|\/|\\|file:|[A-Za-z]:)/.test(named)) return ""
  const parts = named.split("/")
  return named.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0] ?? named
}

/**
 * Loads an optional peer (`load` is `() => import("...")`, written at the call
 * site so that bundlers and type checkers see the specifier). A missing
 * package fails with {@link MissingPeerDependency}; any other loading error is
 * a defect.
 */
export const importPeer = <A>(
  load: () => Promise<A>,
  feature: string,
  install: ReadonlyArray<string>
): Effect.Effect<A, MissingPeerDependency> =>
  Effect.tryPromise({ try: load, catch: (cause) => cause }).pipe(
    Effect.catch((cause) => {
      const missing = missingPackageOf(cause)
      return missing === undefined
        ? Effect.die(cause)
        : Effect.fail(
          new MissingPeerDependency({
            feature,
            packageName: missing === "" ? install.join(" or ") : missing,
            install: [...install]
          })
        )
    })
  )
