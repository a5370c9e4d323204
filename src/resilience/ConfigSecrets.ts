/**
 * The secret scan of a configuration file: the API key and other credentials
 * have no place in it. Each one found is a problem with its path and a
 * redacted form; no message ever holds the value.
 *
 * **Details**
 *
 * - A field named like a credential (`apiKey`, `api_key`, `xi-api-key`,
 *   `ELEVENLABS_API_KEY`, any `…secret`, `…password`, `…token`), a value shaped
 *   like an ElevenLabs key (`sk_` + hex), any other long secret-looking string,
 *   and a password inside a URL are found.
 * - {@link scrub} rewrites any text that may quote one (schema messages, JSON
 *   syntax errors), so nothing key-shaped leaves the configuration modules.
 *
 * @since 0.1.0
 */
import { pathString, type Problem, problem } from "./ConfigProblem.ts"

// Covers every name of the API key too (`api_key`, `xi-api-key`, `ELEVENLABS_API_KEY`: all end in `api…key`).
const secretName = /(secret|password|passwd|token|api[-_]?key)$/i
const skKey = /^sk_[0-9a-f]{16,}$/i
const secretLooking = (s: string): boolean =>
  skKey.test(s) ||
  (s.length >= 32 && /^[A-Za-z0-9_\-+/=]+$/.test(s) && /[0-9]/.test(s) && /[A-Za-z]/.test(s) && !s.includes("/"))

/** A redacted form of a secret: its length, and the `sk_` prefix of an ElevenLabs key (nothing else of it). */
export const redact = (secret: string): string =>
  `${secret.toLowerCase().startsWith("sk_") ? secret.slice(0, 3) : ""}*** (${secret.length} chars)`

/** A credential found in raw JSON. */
export interface Secret {
  readonly path: string
  readonly value: string
  readonly kind: "field" | "value" | "url-password"
}

/** Every place in raw JSON that holds something that looks like a credential. */
export const findSecrets = (
  raw: unknown,
  path: ReadonlyArray<PropertyKey> = [],
  out: Array<Secret> = []
): Array<Secret> => {
  if (typeof raw === "string") {
    const url = /^[a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:([^@\s]+)@/i.exec(raw)
    if (url?.[1] !== undefined) out.push({ path: pathString(path), value: url[1], kind: "url-password" })
    else if (secretLooking(raw)) out.push({ path: pathString(path), value: raw, kind: "value" })
  } else if (Array.isArray(raw)) {
    raw.forEach((v, i) => findSecrets(v, [...path, i], out))
  } else if (typeof raw === "object" && raw !== null) {
    for (const [k, v] of Object.entries(raw)) {
      if (secretName.test(k)) {
        out.push({
          path: pathString([...path, k]),
          value: typeof v === "string" ? v : JSON.stringify(v) ?? "",
          kind: "field"
        })
      } else {
        findSecrets(v, [...path, k], out)
      }
    }
  }
  return out
}

/** Drops the fields named like credentials (reported by the secret scan, not as unknown keys). */
export const withoutSecretFields = (raw: unknown): unknown => {
  if (Array.isArray(raw)) return raw.map(withoutSecretFields)
  if (typeof raw !== "object" || raw === null) return raw
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(raw)) {
    if (!secretName.test(k)) out[k] = withoutSecretFields(v)
  }
  return out
}

/** A text with every secret found replaced by its redacted form. */
export const scrub = (text: string, secrets: ReadonlyArray<Secret>): string => {
  let out = text
  for (const s of secrets) if (s.value.length > 0) out = out.split(s.value).join(redact(s.value))
  // Belt and braces: nothing shaped like a key leaves this module, found or not.
  return out.replace(/sk_[0-9a-f]{8,}/gi, (m) => redact(m))
}

/** A problem per secret: a warning, an error in strict mode. */
export const secretProblems = (secrets: ReadonlyArray<Secret>, strict: boolean): Array<Problem> =>
  secrets.map((s) => {
    const severity = strict ? "error" : "warning"
    switch (s.kind) {
      case "field":
        return problem(
          severity,
          s.path,
          `an API key or secret is written in the file (${redact(s.value)}); the file form has no such field`,
          "remove it and set ELEVENLABS_API_KEY in the environment (or a secret manager)"
        )
      case "url-password":
        return problem(
          severity,
          s.path,
          `the URL carries a password (${redact(s.value)})`,
          "remove the password from the file and set the full URL in ELEVENLABS_REDIS_URL"
        )
      case "value":
        return problem(
          severity,
          s.path,
          `this value looks like an API key or secret (${redact(s.value)})`,
          "remove it from the file; the API key comes from ELEVENLABS_API_KEY"
        )
    }
  })
