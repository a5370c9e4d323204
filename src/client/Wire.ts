/**
 * How the typed client puts query parameters and multipart fields on the
 * wire, the way the official SDK does (docs/api-facts.md §2.2): values as
 * strings (`"true"`, `"2"`), absent ones left out, a file as a `Blob` with a
 * name. Shared by speech to text, speech to speech and audio isolation.
 *
 * @since 0.1.0
 */
import { type AudioFile, audioFileOf } from "./Schemas.ts"

/** A query or form value; `undefined` is left out. */
export type FieldValue = string | number | boolean | undefined

/** The fields of `record` named in `keys` that are present: a request's body, without its query fields. */
export const pick = (record: object, keys: ReadonlyArray<string>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const k of keys) {
    const v = (record as Record<string, unknown>)[k]
    if (v !== undefined) out[k] = v
  }
  return out
}

/** Query parameters: the given ones, as strings. */
export const query = (params: Readonly<Record<string, FieldValue>>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(params)) if (v !== undefined) out[k] = String(v)
  return out
}

/** Appends a form field unless it is absent; booleans and numbers go as strings. */
export const appendField = (form: FormData, name: string, value: FieldValue): void => {
  if (value !== undefined) form.append(name, String(value))
}

/** Appends an upload as a `Blob` named `fileName` (default `audio`), typed `contentType` (default `application/octet-stream`). */
export const appendFile = (form: FormData, name: string, upload: AudioFile | Uint8Array): void => {
  const file = audioFileOf(upload)
  const blob = new Blob([file.data as Uint8Array<ArrayBuffer>], {
    type: file.contentType ?? "application/octet-stream"
  })
  form.append(name, blob, file.fileName ?? "audio")
}
