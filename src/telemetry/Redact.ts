/**
 * A guard that the API key appears nowhere: scan any value (string, record,
 * array, map, error, span export, log line) for a secret and say where it is.
 *
 * **Details**
 *
 * - {@link findSecret} walks the value deeply (own enumerable keys and values,
 *   `Map`/`Set` entries, `Error` message/stack/cause) and returns the paths
 *   where the secret occurs as a substring, keys included. Cycles are safe.
 * - `Redacted` values are not opened: a `Redacted` is what keeps a key safe.
 * - An empty secret finds nothing (there is nothing to leak).
 *
 * **Example** (A leak test)
 *
 * ```ts
 * import { Redact } from "elevenlabs-resilience/telemetry"
 *
 * Redact.findSecret({ headers: { "xi-api-key": "sk_123" } }, "sk_123") // => ["headers.xi-api-key"]
 * ```
 *
 * @since 0.1.0
 */
import { Redacted } from "effect"

const secretText = (secret: string | Redacted.Redacted<string>): string =>
  Redacted.isRedacted(secret) ? Redacted.value(secret) : secret

/** The paths in `value` where `secret` occurs ("" for the value itself). */
export const findSecret = (value: unknown, secret: string | Redacted.Redacted<string>): ReadonlyArray<string> => {
  const needle = secretText(secret)
  if (needle === "") return []
  const found: Array<string> = []
  const seen = new Set<object>()
  const join = (path: string, k: string) => (path === "" ? k : `${path}.${k}`)
  const walk = (v: unknown, path: string): void => {
    if (typeof v === "string") {
      if (v.includes(needle)) found.push(path)
      return
    }
    if (typeof v !== "object" || v === null) {
      if ((typeof v === "number" || typeof v === "bigint") && String(v).includes(needle)) found.push(path)
      return
    }
    if (seen.has(v) || Redacted.isRedacted(v)) return
    seen.add(v)
    if (v instanceof Uint8Array) {
      walk(new TextDecoder().decode(v), path)
      return
    }
    if (v instanceof Error) {
      walk(v.message, join(path, "message"))
      walk(v.stack, join(path, "stack"))
      if ("cause" in v) walk(v.cause, join(path, "cause"))
    }
    if (v instanceof Map) {
      for (const [k, x] of v) {
        walk(k, join(path, "<key>"))
        walk(x, join(path, String(k)))
      }
      return
    }
    if (v instanceof Set) {
      let i = 0
      for (const x of v) walk(x, join(path, String(i++)))
      return
    }
    for (const k of Object.keys(v)) {
      if (k.includes(needle)) found.push(join(path, "<key>"))
      walk((v as Record<string, unknown>)[k], join(path, k))
    }
  }
  walk(value, "")
  return found
}

/** Whether `secret` occurs anywhere in `value`. */
export const containsSecret = (value: unknown, secret: string | Redacted.Redacted<string>): boolean =>
  findSecret(value, secret).length > 0

/** `text` with every occurrence of `secret` replaced by `<redacted>`. */
export const scrub = (text: string, secret: string | Redacted.Redacted<string>): string => {
  const needle = secretText(secret)
  return needle === "" ? text : text.split(needle).join("<redacted>")
}
