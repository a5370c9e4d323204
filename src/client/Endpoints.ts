/**
 * The endpoint table: one row per ElevenLabs operation the library knows,
 * read by everything that needs a path, a method or a per-endpoint rule.
 *
 * **Details**
 *
 * - A row names the operation (`textToSpeech.convert`: the name of spans,
 *   metric labels and errors, and the method of the `ElevenLabs` service),
 *   its method and path template (`/v1/text-to-speech/{voice_id}`, which is
 *   also the span's `url.template`), what body it sends, how its concurrency
 *   pool is found, how it bills, what comes back, whether a retry may repeat
 *   it, and which local check runs before it is sent.
 * - Readers: the typed client (`ElevenLabs.ts`: path, method, `accept`,
 *   response schema, default model, check), the simulator (`Simulator.ts`:
 *   routing through {@link match}, one handler per row name, the upload body
 *   limit, pool and credits through {@link poolOf} and {@link creditsOf}),
 *   its HTTP server (`Server.ts`: one router route per row through
 *   {@link routerPath}) and the naive strategy of the simulation.
 * - Adding an endpoint: its schemas in `Schemas.ts`, one row in `EndpointTable.ts` (and in
 *   {@link all}), a method on the client, a handler in the simulator (the
 *   compiler asks for it: the handlers are a record over {@link Name}).
 * - `client: false` marks a row the simulator serves but the typed client
 *   does not call (`music.stream`).
 * - Beyond TTS (docs/api-facts.md §2.9–§2.12, §5.6): speech to speech, sound
 *   effects and audio isolation draw from the `standard` pool (the sources
 *   name none) and bill by audio time at a published rate; text to dialogue
 *   finds its pool from its model (`eleven_v3` by default) and bills the
 *   characters of all its lines, as TTS bills its text.
 *
 * **Gotchas**
 *
 * - {@link match} answers `MethodNotAllowed` for a known path with another
 *   method (FastAPI's 405), and strips one trailing `/`, as the API does.
 * - The tests in `test/client` and `test/simulator` keep their paths literal
 *   on purpose: they check the wire against an oracle independent of this table.
 *
 * @example
 * ```ts
 * import { Endpoints } from "elevenlabs-resilience/client"
 *
 * Endpoints.pathOf(Endpoints.textToSpeechConvert, { voice_id: "JBFqnCBsd6RMkjVDRZzb" })
 * // => "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb"
 * Endpoints.match("POST", "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream")
 * // => { _tag: "Found", endpoint: textToSpeechStream, params: { voice_id: "JBFqnCBsd6RMkjVDRZzb" } }
 * Endpoints.poolOf(Endpoints.textToSpeechConvert, "eleven_flash_v2_5") // => "flash"
 * ```
 *
 * @since 0.1.0
 */
import type { Schema } from "effect"
import { type Pool, poolOfModel } from "../resilience/Plans.ts"
import { all, byName, type Known } from "./EndpointTable.ts"
import { audioCreditCost, type AudioRate, creditCost, creditMultiplierOf } from "./Models.ts"
import type { TtsEndpoint } from "./Validation.ts"

// ============================================================================
// Models
// ============================================================================

/** The HTTP methods of the table. */
export type Method = "GET" | "POST"

/** What a request carries: nothing, a JSON body, or a `multipart/form-data` form (an upload). */
export type Body = "none" | "json" | "multipart"

/**
 * Where a request names its model: the `model_id` field of its body (the JSON
 * body, or the form field of a multipart body), and the model the API uses
 * when the field is absent.
 */
export interface ModelSource {
  readonly field: "model_id"
  readonly default: string
}

/**
 * How a request's concurrency pool is found.
 *
 * - `None`: read-only; no pool (the resilience layer gives it a deadline and retries only).
 * - `Fixed`: always the same pool (STT, music; and `standard` for speech to speech, sound effects and audio
 *   isolation, whose pool the sources do not name: docs/api-facts.md §5.6).
 * - `FromModel`: the pool of the request's model (`Plans.poolOfModel`, the default model when it names none):
 *   TTS and text to dialogue.
 */
export type PoolRule =
  | { readonly _tag: "None" }
  | { readonly _tag: "Fixed"; readonly pool: Pool; readonly model?: ModelSource | undefined }
  | { readonly _tag: "FromModel"; readonly model: ModelSource }

/**
 * How a request bills. {@link creditsOf} is the one place that turns a row's billing into credits.
 *
 * - `None`: free (reads).
 * - `Characters`: `ceil(characters x credit multiplier of the request's model)`, known before the call; the
 *   characters of `text` (TTS), or of all the lines' texts together (`inputs[].text`, text to dialogue).
 * - `AudioTime`: by the seconds of audio read (`input`: STT, speech to speech, audio isolation) or made
 *   (`output`: music, sound effects). With a `rate` (a published price, docs/api-facts.md §5.6) the credits
 *   are `ceil(seconds x credits / perSeconds)`; without one (STT, music: the sources give none) they are not
 *   known, before the call or after.
 */
export type Billing =
  | { readonly _tag: "None" }
  | { readonly _tag: "Characters"; readonly field: "text" | "inputs[].text"; readonly multiplier: "model" }
  | { readonly _tag: "AudioTime"; readonly of: "input" | "output"; readonly rate?: AudioRate | undefined }

/**
 * What comes back on success.
 *
 * - `Audio`: the whole audio, buffered (with its content type).
 * - `AudioStream`: audio bytes as they are made; the response lives with the caller's scope.
 * - `Json`: one JSON document, decoded with `schema`.
 * - `Ndjson`: a stream of JSON lines, each decoded with `schema`.
 */
export type Response =
  | { readonly _tag: "Audio" }
  | { readonly _tag: "AudioStream" }
  | { readonly _tag: "Json"; readonly schema: Schema.Top }
  | { readonly _tag: "Ndjson"; readonly schema: Schema.Top }

/**
 * The local check (`Validation.ts`) run before a request is sent.
 *
 * | tag | check |
 * |---|---|
 * | `TextToSpeech` | `checkTextToSpeech(operation, variant, …)` |
 * | `SpeechToText` | `checkSpeechToText` |
 * | `Music` | `checkMusic` |
 * | `SpeechToSpeech` | `checkSpeechToSpeech(operation, variant, …)` |
 * | `SoundEffects` | `checkSoundEffects` |
 * | `TextToDialogue` | `checkTextToDialogue(operation, variant, …)` |
 * | `AudioIsolation` | `checkAudioIsolation` |
 * | `VoiceId` | `checkVoiceId` |
 * | `VoiceSearch` | `checkVoiceSearch` |
 * | `None` | nothing to check |
 */
export type Check =
  | { readonly _tag: "None" }
  | { readonly _tag: "TextToSpeech"; readonly variant: TtsEndpoint }
  | { readonly _tag: "SpeechToText" }
  | { readonly _tag: "Music" }
  | { readonly _tag: "SpeechToSpeech"; readonly variant: TtsEndpoint }
  | { readonly _tag: "SoundEffects" }
  | { readonly _tag: "TextToDialogue"; readonly variant: TtsEndpoint }
  | { readonly _tag: "AudioIsolation" }
  | { readonly _tag: "VoiceId" }
  | { readonly _tag: "VoiceSearch" }

/** The `output_format` query an endpoint accepts, and what the API uses when it is absent. */
export interface OutputFormat {
  readonly formats: ReadonlyArray<string>
  readonly default: string
}

/** One row of the table: one ElevenLabs operation. */
export interface Endpoint<N extends string = string, P extends `/${string}` = `/${string}`> {
  /** The operation: the span `elevenlabs.<name>`, the `operation` metric label and error field, the client method. */
  readonly name: N
  readonly method: Method
  /** The path template, parameters in braces (`{voice_id}`): the span's `url.template` as is. */
  readonly path: P
  readonly body: Body
  readonly pool: PoolRule
  readonly billing: Billing
  readonly response: Response
  /** Whether a retry may repeat the request (the default of the resilience layer's `idempotent` call option). */
  readonly idempotent: boolean
  readonly check: Check
  readonly outputFormat?: OutputFormat | undefined
  /** Whether the typed client (`ElevenLabs.ts`) has the operation; `false` for rows only the simulator serves. */
  readonly client: boolean
}

// ============================================================================
// The table (EndpointTable.ts: one row per operation)
// ============================================================================

export * from "./EndpointTable.ts"

// ============================================================================
// Paths
// ============================================================================

/** The parameter names of a path template: `ParamsOf<"/v1/voices/{voice_id}">` is `"voice_id"`. */
export type ParamsOf<P extends string> = P extends `${string}{${infer N}}${infer Rest}` ? N | ParamsOf<Rest> : never

type ParamsArg<P extends string> = [ParamsOf<P>] extends [never] ?
  [params?: Readonly<Record<string, string>> | undefined]
  : [params: { readonly [K in ParamsOf<P>]: string }]

const paramPattern = /\{([^}]+)\}/g

/** The `url.template` of an endpoint: its path template as is (`/v1/text-to-speech/{voice_id}`). */
export const urlTemplate = (endpoint: Endpoint): `/${string}` => endpoint.path

/** The `url.template` of an operation name, `undefined` for a name not in the table. */
export const urlTemplateOf = (name: string): `/${string}` | undefined => byName.get(name)?.path

/**
 * The path of a request: the template with each parameter URI-encoded
 * (`encodeURIComponent`). A row's parameters are required by its type; a
 * missing one at run time is a defect (thrown).
 */
export const pathOf = <P extends `/${string}`>(endpoint: Endpoint<string, P>, ...[params]: ParamsArg<P>): string => {
  const path: string = endpoint.path
  if (!path.includes("{")) return path
  return path.replace(paramPattern, (_, name: string) => {
    const value = (params as Readonly<Record<string, string>> | undefined)?.[name]
    if (value === undefined) throw new Error(`Endpoints.pathOf: ${endpoint.name} needs the path parameter ${name}`)
    return encodeURIComponent(value)
  })
}

/** The path in the syntax of `effect/http`'s router: `/v1/voices/{voice_id}` is `/v1/voices/:voice_id`. */
export const routerPath = (endpoint: Endpoint): `/${string}` =>
  endpoint.path.replace(paramPattern, ":$1") as `/${string}`

/** What {@link match} finds. */
export type Match =
  | { readonly _tag: "Found"; readonly endpoint: Known; readonly params: Readonly<Record<string, string>> }
  /** A known path with another method: FastAPI's `405 {"detail":"Method Not Allowed"}`, with the methods it takes. */
  | { readonly _tag: "MethodNotAllowed"; readonly allowed: ReadonlyArray<Method> }
  | { readonly _tag: "NotFound" }

const notFound: Match = { _tag: "NotFound" }
const noParams: Readonly<Record<string, string>> = {}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Paths without parameters, looked up whole; templates as one regex each, compiled once. */
const staticRows = new Map<string, Array<Known>>()
const templateRows: Array<{ readonly endpoint: Known; readonly regex: RegExp; readonly names: ReadonlyArray<string> }> =
  []
for (const endpoint of all) {
  const path: string = endpoint.path
  if (!path.includes("{")) {
    const rows = staticRows.get(path)
    if (rows === undefined) staticRows.set(path, [endpoint])
    else rows.push(endpoint)
    continue
  }
  const names: Array<string> = []
  const source = path.split(paramPattern).map((part, i) => {
    if (i % 2 === 0) return escapeRegExp(part)
    names.push(part)
    return "([^/]+)"
  }).join("")
  templateRows.push({ endpoint, regex: new RegExp(`^${source}$`), names })
}

const decode = (s: string) => {
  try {
    return decodeURIComponent(s)
  } catch {
    return s // a malformed escape stays as sent: the handler answers it (404 voice_not_found, say)
  }
}

/**
 * The row a request is for, with its path parameters (decoded). One trailing
 * `/` is ignored. A known path asked with another method is
 * `MethodNotAllowed`; anything else `NotFound`.
 */
export const match = (method: string, pathname: string): Match => {
  const path = pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname
  const wanted = method.toUpperCase()
  let allowed: Array<Method> | undefined
  const rows = staticRows.get(path)
  if (rows !== undefined) {
    for (const endpoint of rows) {
      if (endpoint.method === wanted) return { _tag: "Found", endpoint, params: noParams }
      ;(allowed ??= []).push(endpoint.method)
    }
  }
  for (const { endpoint, names, regex } of templateRows) {
    const found = regex.exec(path)
    if (found === null) continue
    if (endpoint.method !== wanted) {
      ;(allowed ??= []).push(endpoint.method)
      continue
    }
    const params: Record<string, string> = {}
    for (let i = 0; i < names.length; i++) params[names[i]!] = decode(found[i + 1]!)
    return { _tag: "Found", endpoint, params }
  }
  return allowed === undefined ? notFound : { _tag: "MethodNotAllowed", allowed }
}

// ============================================================================
// Rules
// ============================================================================

/** The source of an endpoint's model, `undefined` for an endpoint that takes none. */
export const modelSourceOf = (endpoint: Endpoint): ModelSource | undefined =>
  endpoint.pool._tag === "None" ? undefined : endpoint.pool.model

/** The model a request uses: the one it names, else the endpoint's default; `undefined` for an endpoint without models. */
export const modelOf = (endpoint: Endpoint, model: string | undefined): string | undefined => {
  const source = modelSourceOf(endpoint)
  return source === undefined ? undefined : model ?? source.default
}

/**
 * The concurrency pool of a request: the fixed one, or the pool of its model
 * (a `concurrency_group` from `/v1/models` wins when given); `undefined` for
 * a read-only endpoint.
 */
export const poolOf = <E extends Endpoint>(
  endpoint: E,
  model: string | undefined,
  concurrencyGroup?: string | undefined
): PoolOf<E> => poolOfRule(endpoint.pool, model, concurrencyGroup) as PoolOf<E>

/** `Pool` for a row known to have one (`Fixed`, `FromModel`), else `Pool | undefined`. */
export type PoolOf<E extends Endpoint> = [E["pool"]] extends [{ readonly _tag: "Fixed" | "FromModel" }] ? Pool
  : Pool | undefined

const poolOfRule = (
  rule: PoolRule,
  model: string | undefined,
  concurrencyGroup: string | undefined
): Pool | undefined => {
  switch (rule._tag) {
    case "None":
      return undefined
    case "Fixed":
      return rule.pool
    case "FromModel":
      return poolOfModel(model ?? rule.model.default, concurrencyGroup)
  }
}

/**
 * The credits a request costs, the one rule for every row:
 *
 * - `Characters`: `units` is the characters (of `text`, or of all the dialogue's lines), and the cost
 *   `ceil(characters x multiplier)` with the multiplier of the request's model (`Models.creditMultiplierOf`
 *   unless another is given, e.g. the ones `/v1/models` reports). The caller counts the characters (the
 *   API counts code points).
 * - `AudioTime` with a rate: `units` is the seconds of audio (read or made, as the row says), and the cost
 *   `ceil(seconds x credits / perSeconds)` (`Models.audioCreditCost`); the model plays no part.
 * - `AudioTime` without a rate (STT, music) and `None`: `undefined`.
 */
export const creditsOf = <E extends Endpoint>(
  endpoint: E,
  units: number,
  model: string | undefined,
  multiplierOf: (model: string) => number = creditMultiplierOf
): CreditsOf<E> => {
  const billing = endpoint.billing
  switch (billing._tag) {
    case "Characters": {
      const resolved = modelOf(endpoint, model)
      return creditCost(units, resolved === undefined ? 1 : multiplierOf(resolved)) as CreditsOf<E>
    }
    case "AudioTime":
      return (billing.rate === undefined ? undefined : audioCreditCost(units, billing.rate)) as CreditsOf<E>
    case "None":
      return undefined as CreditsOf<E>
  }
}

/** `number` for a row billed by characters or at an audio rate, `undefined` for one that is not, else `number | undefined`. */
export type CreditsOf<E extends Endpoint> = [E["billing"]] extends
  [{ readonly _tag: "Characters" } | { readonly _tag: "AudioTime"; readonly rate: AudioRate }] ? number
  : [E["billing"]] extends [{ readonly _tag: "None" } | { readonly _tag: "AudioTime"; readonly rate?: undefined }] ?
    undefined
  : number | undefined

/** The `accept` header of a request: `*\/*` for audio (the server picks the content type), JSON otherwise. */
export const acceptOf = (endpoint: Endpoint): "*/*" | "application/json" =>
  endpoint.response._tag === "Audio" || endpoint.response._tag === "AudioStream" ? "*/*" : "application/json"
