/**
 * The simulator's answers beyond text to speech: speech to speech (the voice
 * changer), sound effects, text to dialogue and audio isolation. One handler
 * per row of the endpoint table, built over the model's own steps: FastAPI's
 * 422 shapes and the plan gate (`Checks.ts`), and the {@link Kit}
 * `Simulator.make` lends (auth, answers, and `generate`, which takes the
 * pool's slot, the quota, the load and the faults exactly as for TTS).
 *
 * **Details**
 *
 * - Order of checks, as for TTS: 422 (the `output_format` query, then the
 *   body or form) → 401 → `404 voice_not_found` → `400 model_not_found`,
 *   `400 max_character_limit_exceeded` → `403 output_format_not_allowed` →
 *   the pool (`403 subscription_required` at a limit of 0, `401
 *   quota_exceeded`, `429 system_busy`, `429 too_many_concurrent_requests`).
 * - Pool and credits come from the rows (`Endpoints.poolOf`,
 *   `Endpoints.creditsOf`): speech to speech, sound effects and isolation take
 *   a `standard` slot and cost their audio seconds at the published rate; a
 *   dialogue takes its model's pool and costs its lines' characters. Every
 *   success carries `character-cost` (docs/api-facts.md §5.6).
 * - The simulator cannot hear: an upload's length is estimated from its head
 *   and size (`Audio.estimateSeconds`, as for STT) and the answer is audio of
 *   that length; a sound lasts its `duration_seconds`, else
 *   {@link defaultSoundSeconds}; a dialogue as long as the speech of its lines.
 *   Work (the latency model's units) is counted in characters of speech
 *   (`charsPerSecond` per second of audio), so these endpoints run at the
 *   speed of TTS on the same pool.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as Endpoints from "../client/Endpoints.ts"
import { characterLimitOf, defaultOutputFormat } from "../client/Models.ts"
import { characterCount, maxDialogueVoices, soundEffectsRanges } from "../client/Validation.ts"
import type { Account } from "./Accounts.ts"
import { type Answers, isPending, type Outcome, type Pending, respond } from "./Answers.ts"
import * as Audio from "./Audio.ts"
import * as Catalog from "./Catalog.ts"
import {
  checkFormat,
  checkString,
  checkVoiceSettings,
  enumItem,
  formatForbidden,
  type IncomingRequest,
  isObject,
  numberIn,
  objectBody,
  readJson,
  tooShort,
  type ValidationItem
} from "./Checks.ts"
import { profileOf } from "./Generation.ts"
import { chunkCount, type Handler, type Kit } from "./Handlers.ts"

type Json = unknown
type Loc = ReadonlyArray<string | number>

/** The rows answered here. */
type Row =
  | typeof Endpoints.speechToSpeechConvert
  | typeof Endpoints.speechToSpeechStream
  | typeof Endpoints.textToSoundEffectsConvert
  | typeof Endpoints.textToDialogueConvert
  | typeof Endpoints.textToDialogueStream
  | typeof Endpoints.audioIsolationConvert
  | typeof Endpoints.audioIsolationStream

/** The operation names answered here. */
export type Name = Row["name"]

/** Seconds of sound when a request leaves `duration_seconds` out (the API picks from the prompt; a choice here). */
export const defaultSoundSeconds = 5

/** `file_format` of an upload (the OpenAPI document's enum). */
const fileFormats: ReadonlyArray<string> = ["pcm_s16le_16", "other"]

/** Pydantic's accepted spellings of a boolean form field. */
const booleans: ReadonlyArray<string> = ["0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"]

// ---- 422 items, in FastAPI's shapes

/** A required string at `loc` (inside a list item, where `checkString`'s `["body", field]` does not reach). */
const stringAt = (items: Array<ValidationItem>, loc: Loc, v: Json, parent: Json): string | undefined => {
  if (v === undefined) items.push({ type: "missing", loc, msg: "Field required", input: parent })
  else if (typeof v !== "string") {
    items.push({ type: "string_type", loc, msg: "Input should be a valid string", input: v })
  } else return v
  return undefined
}

// ---- Multipart forms

const readForm = (request: IncomingRequest) => Effect.promise(() => request.formData().catch(() => undefined))

/** The required upload `field`: missing, or a plain string where a file belongs, is a 422. */
const upload = (items: Array<ValidationItem>, form: FormData | undefined, field: string): File | undefined => {
  const v = form?.get(field) ?? null
  if (v === null) items.push({ type: "missing", loc: ["body", field], msg: "Field required", input: null })
  else if (typeof v === "string") {
    items.push({
      type: "value_error",
      loc: ["body", field],
      msg: "Value error, Expected UploadFile, received: <class 'str'>",
      input: v,
      ctx: { error: {} }
    })
  } else return v
  return undefined
}

const formString = (items: Array<ValidationItem>, form: FormData | undefined, field: string): string | undefined => {
  const v = form?.get(field) ?? null
  if (v === null) return undefined
  if (typeof v !== "string") {
    items.push({ type: "string_type", loc: ["body", field], msg: "Input should be a valid string", input: "<file>" })
    return undefined
  }
  return v
}

/** The form fields every upload may carry, checked as FastAPI parses them. */
const uploadFields = (
  items: Array<ValidationItem>,
  form: FormData | undefined,
  fields: { readonly seed?: true; readonly flags?: ReadonlyArray<string> }
) => {
  const format = formString(items, form, "file_format")
  if (format !== undefined && !fileFormats.includes(format)) {
    items.push(enumItem(["body", "file_format"], fileFormats, format))
  }
  for (const flag of fields.flags ?? []) {
    const v = formString(items, form, flag)
    if (v !== undefined && !booleans.includes(v.toLowerCase())) {
      items.push({
        type: "bool_parsing",
        loc: ["body", flag],
        msg: "Input should be a valid boolean, unable to interpret input",
        input: v
      })
    }
  }
  const seed = fields.seed === true ? formString(items, form, "seed") : undefined
  if (seed !== undefined && !/^[+-]?\d+$/.test(seed.trim())) {
    items.push({
      type: "int_parsing",
      loc: ["body", "seed"],
      msg: "Input should be a valid integer, unable to parse string as an integer",
      input: seed
    })
  }
}

/** The length of an upload, from its head and size only (no copy of the whole file). */
const uploadSeconds = (file: File) =>
  Effect.map(
    Effect.promise(() => file.slice(0, Audio.estimateHeadBytes).arrayBuffer()),
    (head) => Math.max(0.1, Audio.estimateSeconds(new Uint8Array(head), file.size))
  )

// ---- The answer

/** Generates `seconds` of audio in `format` through the row's pool, charging `cost`. */
const produce = (
  kit: Kit,
  account: Account,
  endpoint: Row,
  job: {
    readonly model: string | undefined
    readonly cost: number
    readonly work: number
    readonly seconds: number
    readonly format: string
  }
) => {
  const pool = Endpoints.poolOf(endpoint, job.model)
  const streaming = endpoint.response._tag === "AudioStream"
  return kit.generate({
    account,
    pool,
    cost: job.cost,
    profile: profileOf(kit.latency, pool, job.model ?? ""),
    units: job.work,
    streaming,
    success: (meta) => {
      const audio = Audio.renderShared(job.format, job.seconds)
      return {
        headers: {
          ...kit.answers.successHeaders(meta, job.cost),
          "content-type": Audio.contentTypeOf(job.format),
          ...(streaming ? {} : { "content-length": String(audio.length) })
        },
        // A buffered body is one chunk, as for TTS; a stream one chunk per `chunkSeconds` of audio.
        chunks: streaming ? Audio.chunk(audio, chunkCount(job.seconds, kit.chunkSeconds)) : [audio]
      }
    }
  })
}

/** An upload's answer: billed by its seconds at the row's rate, made as long as it, in `format`. */
const produceUpload = (
  kit: Kit,
  account: Account,
  endpoint: Row,
  file: File,
  model: string | undefined,
  format: string
) =>
  Effect.flatMap(uploadSeconds(file), (seconds) =>
    produce(kit, account, endpoint, {
      model,
      cost: Endpoints.creditsOf(endpoint, seconds, model),
      work: seconds * kit.charsPerSecond,
      seconds,
      format
    }))

/** Auth, then the checks that need the account: the account, or the answer to send instead. */
const admitted = (
  kit: Kit,
  request: IncomingRequest,
  then: (account: Account) => Pending | undefined
): { readonly account: Account } | { readonly refused: Outcome } => {
  const account = kit.accounts.authenticate(request)
  if (isPending(account)) return { refused: respond(account) }
  const refused = then(account)
  return refused === undefined ? { account } : { refused: respond(refused) }
}

const voiceNotFound = (answers: Answers, voiceId: string) =>
  answers.detail(404, "voice_not_found", `A voice with the voice_id ${voiceId} was not found.`)
const modelNotFound = (answers: Answers, modelId: string) =>
  answers.detail(400, "model_not_found", `A model with model ID ${modelId} does not exist.`)

// ---- Handlers

const speechToSpeech = (
  kit: Kit,
  request: IncomingRequest,
  url: URL,
  endpoint: typeof Endpoints.speechToSpeechConvert | typeof Endpoints.speechToSpeechStream,
  voiceId: string
) =>
  Effect.gen(function*() {
    const { answers } = kit
    const items: Array<ValidationItem> = []
    const format = checkFormat(items, url, endpoint.outputFormat.formats, endpoint.outputFormat.default)
    const form = yield* readForm(request)
    const file = upload(items, form, "audio")
    const modelId = formString(items, form, "model_id") ?? endpoint.pool.model.default
    const settings = formString(items, form, "voice_settings")
    if (settings !== undefined && settings !== "") {
      // A JSON-encoded string field: decoded, then held to the TTS ranges (a choice: the form says "string").
      let parsed: Json
      try {
        parsed = JSON.parse(settings)
      } catch {
        items.push({
          type: "json_invalid",
          loc: ["body", "voice_settings"],
          msg: "JSON decode error",
          input: settings,
          ctx: { error: "Invalid JSON" }
        })
      }
      if (parsed !== undefined) checkVoiceSettings(items, { voice_settings: parsed })
    }
    uploadFields(items, form, { seed: true, flags: ["remove_background_noise"] })
    if (items.length > 0 || file === undefined) return respond(answers.validation(items))
    const admission = admitted(kit, request, (a) =>
      Catalog.voiceOf(voiceId) === undefined
        ? voiceNotFound(answers, voiceId)
        : !Catalog.stsModels.includes(modelId)
        ? modelNotFound(answers, modelId)
        : formatForbidden(answers, a, format))
    if ("refused" in admission) return admission.refused
    return yield* produceUpload(kit, admission.account, endpoint, file, modelId, format)
  })

const soundEffects = (
  kit: Kit,
  request: IncomingRequest,
  url: URL,
  endpoint: typeof Endpoints.textToSoundEffectsConvert
) =>
  Effect.gen(function*() {
    const { answers } = kit
    const items: Array<ValidationItem> = []
    const format = checkFormat(items, url, endpoint.outputFormat.formats, endpoint.outputFormat.default)
    const body = objectBody(items, yield* readJson(request))
    let text: string | undefined
    let duration: number | undefined
    let modelId: string = endpoint.pool.model.default
    if (body !== undefined) {
      text = checkString(items, body, "text", true)
      if (text === "") items.push(tooShort(["body", "text"], text))
      const loop = body["loop"]
      if (loop !== undefined && typeof loop !== "boolean") {
        items.push({ type: "bool_type", loc: ["body", "loop"], msg: "Input should be a valid boolean", input: loop })
      }
      // The bounds the document states in its descriptions, refused as 422s (a choice: it declares no minimum or maximum).
      const [dMin, dMax] = soundEffectsRanges.durationSeconds
      const [pMin, pMax] = soundEffectsRanges.promptInfluence
      duration = numberIn(items, ["body", "duration_seconds"], body["duration_seconds"], dMin, dMax)
      numberIn(items, ["body", "prompt_influence"], body["prompt_influence"], pMin, pMax)
      const model = body["model_id"]
      if (model !== undefined && (typeof model !== "string" || !Catalog.soundEffectsModels.includes(model))) {
        items.push(enumItem(["body", "model_id"], Catalog.soundEffectsModels, model))
      } else if (typeof model === "string") modelId = model
    }
    if (items.length > 0 || text === undefined) return respond(answers.validation(items))
    const admission = admitted(kit, request, (a) => formatForbidden(answers, a, format))
    if ("refused" in admission) return admission.refused
    const seconds = duration ?? defaultSoundSeconds
    const cost = Endpoints.creditsOf(endpoint, seconds, modelId)
    return yield* produce(kit, admission.account, endpoint, {
      model: modelId,
      cost,
      work: seconds * kit.charsPerSecond,
      seconds,
      format
    })
  })

/** The `inputs` of a dialogue: its lines, or `undefined` with the 422 items added. */
const dialogueLines = (items: Array<ValidationItem>, v: Json) => {
  const loc = ["body", "inputs"] as const
  if (v === undefined) return void items.push({ type: "missing", loc, msg: "Field required", input: v })
  if (!Array.isArray(v)) {
    return void items.push({ type: "list_type", loc, msg: "Input should be a valid list", input: v })
  }
  if (v.length === 0) {
    // The document gives no minimum; an empty script is refused here (a choice).
    return void items.push({
      type: "too_short",
      loc,
      msg: "List should have at least 1 item after validation, not 0",
      input: v,
      ctx: { field_type: "List", min_length: 1, actual_length: 0 }
    })
  }
  const before = items.length
  const lines: Array<{ readonly text: string; readonly voiceId: string }> = []
  for (const [i, item] of v.entries()) {
    if (!isObject(item)) {
      items.push({
        type: "model_type",
        loc: [...loc, i],
        msg: "Input should be a valid dictionary or instance of DialogueInput",
        input: item
      })
      continue
    }
    const text = stringAt(items, [...loc, i, "text"], item["text"], item)
    const voiceId = stringAt(items, [...loc, i, "voice_id"], item["voice_id"], item)
    if (text === "") items.push(tooShort([...loc, i, "text"], text))
    if (text !== undefined && voiceId !== undefined) lines.push({ text, voiceId })
  }
  if (items.length > before) return undefined
  const voices = new Set(lines.map((l) => l.voiceId)).size
  if (voices > maxDialogueVoices) {
    // The document states the bound; how it refuses is not said: a 422 here.
    return void items.push({
      type: "value_error",
      loc,
      msg: `Value error, The maximum number of unique voice IDs is ${maxDialogueVoices}`,
      input: v,
      ctx: { error: {} }
    })
  }
  return lines
}

const dialogue = (
  kit: Kit,
  request: IncomingRequest,
  url: URL,
  endpoint: typeof Endpoints.textToDialogueConvert | typeof Endpoints.textToDialogueStream
) =>
  Effect.gen(function*() {
    const { answers } = kit
    const items: Array<ValidationItem> = []
    const format = checkFormat(items, url, endpoint.outputFormat.formats, endpoint.outputFormat.default)
    const body = objectBody(items, yield* readJson(request))
    let lines: ReadonlyArray<{ readonly text: string; readonly voiceId: string }> | undefined
    let modelId = endpoint.pool.model.default
    if (body !== undefined) {
      lines = dialogueLines(items, body["inputs"])
      modelId = checkString(items, body, "model_id", false) ?? modelId
      const settings = body["settings"]
      if (settings !== undefined && settings !== null) {
        if (!isObject(settings)) {
          items.push({
            type: "model_type",
            loc: ["body", "settings"],
            msg: "Input should be a valid dictionary or instance of ModelSettingsResponseModel",
            input: settings
          })
        } else numberIn(items, ["body", "settings", "stability"], settings["stability"], 0, 1)
      }
    }
    if (items.length > 0 || lines === undefined) return respond(answers.validation(items))
    const script = lines
    const characters = script.reduce((n, l) => n + characterCount(l.text), 0)
    const limit = characterLimitOf(modelId, kit.characterLimits)
    const admission = admitted(kit, request, (a) => {
      const unknown = script.find((l) => Catalog.voiceOf(l.voiceId) === undefined)
      if (unknown !== undefined) return voiceNotFound(answers, unknown.voiceId)
      if (!Catalog.ttsModels.some((m) => m.model_id === modelId)) return modelNotFound(answers, modelId)
      // The model's TTS limit over the whole script, as the client checks it (a choice: no dialogue limit is published).
      if (characters > limit) {
        return answers.detail(
          400,
          "max_character_limit_exceeded",
          `This request's text has ${characters} characters and exceeds the character limit of ${limit} characters.`
        )
      }
      return formatForbidden(answers, a, format)
    })
    if ("refused" in admission) return admission.refused
    const cost = Endpoints.creditsOf(endpoint, characters, modelId)
    const seconds = Audio.speechSeconds(characters, kit.charsPerSecond)
    return yield* produce(kit, admission.account, endpoint, { model: modelId, cost, work: characters, seconds, format })
  })

const isolation = (
  kit: Kit,
  request: IncomingRequest,
  endpoint: typeof Endpoints.audioIsolationConvert | typeof Endpoints.audioIsolationStream
) =>
  Effect.gen(function*() {
    const { answers } = kit
    const items: Array<ValidationItem> = []
    const form = yield* readForm(request)
    const file = upload(items, form, "audio")
    uploadFields(items, form, {})
    if (endpoint.response._tag === "Audio") formString(items, form, "preview_b64")
    if (items.length > 0 || file === undefined) return respond(answers.validation(items))
    const admission = admitted(kit, request, () => undefined)
    if ("refused" in admission) return admission.refused
    // No output_format: the document declares `audio/mpeg`, so MP3 at the TTS default.
    return yield* produceUpload(kit, admission.account, endpoint, file, undefined, defaultOutputFormat)
  })

/** Builds the handlers of the rows beyond TTS over the model's kit. */
export const make = (kit: Kit): { readonly [N in Name]: Handler } => ({
  "speechToSpeech.convert": (request, url, params) =>
    speechToSpeech(kit, request, url, Endpoints.speechToSpeechConvert, params["voice_id"]!),
  "speechToSpeech.stream": (request, url, params) =>
    speechToSpeech(kit, request, url, Endpoints.speechToSpeechStream, params["voice_id"]!),
  "textToSoundEffects.convert": (request, url) => soundEffects(kit, request, url, Endpoints.textToSoundEffectsConvert),
  "textToDialogue.convert": (request, url) => dialogue(kit, request, url, Endpoints.textToDialogueConvert),
  "textToDialogue.stream": (request, url) => dialogue(kit, request, url, Endpoints.textToDialogueStream),
  "audioIsolation.convert": (request) => isolation(kit, request, Endpoints.audioIsolationConvert),
  "audioIsolation.stream": (request) => isolation(kit, request, Endpoints.audioIsolationStream)
})
