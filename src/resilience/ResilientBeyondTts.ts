/**
 * The `Resilient` composition's operations beyond TTS (speech to speech, sound
 * effects, text to dialogue, audio isolation): each one a plan for the one
 * pipeline, read from its endpoint-table row (pool, default model, billing)
 * and its local check, around the plain client's call.
 *
 * - Credits are reserved where they are known before the call: dialogue by
 *   the characters of all its lines (the TTS rule), sound effects by the
 *   duration the request sets (the published per-second rate). Speech to
 *   speech and isolation bill by the length of the uploaded audio, which is
 *   not known here: nothing is reserved, and an exhausted account still
 *   refuses them (docs/api-facts.md §5.6).
 * - No coalescing or fallback: uploads are not keyed, and the fallback cache
 *   keeps TTS audio.
 *
 * @internal
 */
import { type Effect, type Scope, Stream } from "effect"
import type * as BeyondTts from "../client/BeyondTts.ts"
import type { AudioResult, AudioStream, ElevenLabs } from "../client/ElevenLabs.ts"
import * as Endpoints from "../client/Endpoints.ts"
import type { ElevenLabsError } from "../client/Errors.ts"
import type { ResponseMeta } from "../client/ResponseMeta.ts"
import type * as Schemas from "../client/Schemas.ts"
import * as Validation from "../client/Validation.ts"
import type * as Pipeline from "./Pipeline.ts"
import type * as QuotaGuard from "./QuotaGuard.ts"

/** What the composition lends these operations. */
export interface Kit {
  readonly pipeline: Pipeline.Pipeline
  /** The plain client, built with `validate: false` (the plans carry the checks). */
  readonly raw: ElevenLabs
  readonly quota: QuotaGuard.QuotaGuard | undefined
  readonly validation: Validation.ValidationOptions
}

const metaOf = (a: AudioResult): ResponseMeta => a.meta
const mark = (a: AudioResult, meta: Partial<ResponseMeta>): AudioResult => ({ ...a, meta: { ...a.meta, ...meta } })
const attached = (s: AudioStream, release: Effect.Effect<void>): AudioStream => ({
  ...s,
  audio: Stream.ensuring(s.audio, release)
})

export const make = (kit: Kit): BeyondTts.BeyondTts => {
  const { pipeline, quota, validation } = kit
  const { audioIsolation: isolation, speechToSpeech: sts, textToDialogue: dialogue, textToSoundEffects: sfx } = kit.raw

  /** The row's pool and model for a request naming `modelId` (or none). */
  const placed = <E extends Endpoints.Endpoint>(endpoint: E, modelId: string | undefined) => ({
    operation: endpoint.name,
    pool: Endpoints.poolOf(endpoint, modelId)!,
    model: Endpoints.modelOf(endpoint, modelId)
  })

  const buffered = (
    plan: Omit<Pipeline.PooledPlan<AudioResult>, "metaOf" | "mark">,
    send: Effect.Effect<AudioResult, ElevenLabsError>
  ) => pipeline.buffered<AudioResult>({ ...plan, metaOf, mark }, { send, kind: "client" })

  const streamed = (
    plan: Omit<Pipeline.PooledPlan<AudioStream>, "metaOf" | "mark" | "coalesceKey" | "fallback">,
    send: Effect.Effect<AudioStream, ElevenLabsError, Scope.Scope>
  ) => pipeline.streamed(plan, { send, kind: "client" }, attached)

  /** A dialogue's plan: its lines' characters billed at its model's multiplier (reserved when there is a guard). */
  const dialoguePlan = (
    endpoint: typeof Endpoints.textToDialogueConvert | typeof Endpoints.textToDialogueStream,
    request: Schemas.TextToDialogueBody & { readonly outputFormat?: string | undefined }
  ) => {
    const where = placed(endpoint, request.modelId)
    const characters = Array.isArray(request.inputs)
      ? request.inputs.reduce(
        (n, line) => n + (typeof line.text === "string" ? Validation.characterCount(line.text) : 0),
        0
      )
      : 0
    return {
      ...where,
      characters,
      cost: quota?.costOf(characters, where.model!),
      outputFormat: request.outputFormat,
      invalid: Validation.checkTextToDialogue(where.operation, endpoint.check.variant, request, validation)
    }
  }

  return {
    speechToSpeech: {
      convert: (voiceId, request) => {
        const where = placed(Endpoints.speechToSpeechConvert, request.modelId)
        return buffered({
          ...where,
          voiceId,
          outputFormat: request.outputFormat,
          invalid: Validation.checkSpeechToSpeech(where.operation, "convert", voiceId, request)
        }, sts.convert(voiceId, request))
      },
      stream: (voiceId, request) => {
        const where = placed(Endpoints.speechToSpeechStream, request.modelId)
        return streamed({
          ...where,
          voiceId,
          outputFormat: request.outputFormat,
          invalid: Validation.checkSpeechToSpeech(where.operation, "stream", voiceId, request)
        }, sts.stream(voiceId, request))
      }
    },
    textToSoundEffects: {
      convert: (request) => {
        const endpoint = Endpoints.textToSoundEffectsConvert
        const where = placed(endpoint, request.modelId)
        return buffered({
          ...where,
          // Known only when the request sets the duration (the published rate is per second of it).
          cost: quota === undefined || request.durationSeconds === undefined
            ? undefined
            : Endpoints.creditsOf(endpoint, request.durationSeconds, where.model),
          outputFormat: request.outputFormat,
          invalid: Validation.checkSoundEffects(where.operation, request)
        }, sfx.convert(request))
      }
    },
    textToDialogue: {
      convert: (request) => buffered(dialoguePlan(Endpoints.textToDialogueConvert, request), dialogue.convert(request)),
      stream: (request) => streamed(dialoguePlan(Endpoints.textToDialogueStream, request), dialogue.stream(request))
    },
    audioIsolation: {
      convert: (request) => {
        const where = placed(Endpoints.audioIsolationConvert, undefined)
        return buffered(
          { ...where, invalid: Validation.checkAudioIsolation(where.operation, request) },
          isolation.convert(request)
        )
      },
      stream: (request) => {
        const where = placed(Endpoints.audioIsolationStream, undefined)
        return streamed(
          { ...where, invalid: Validation.checkAudioIsolation(where.operation, request) },
          isolation.stream(request)
        )
      }
    }
  }
}
