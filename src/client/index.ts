/**
 * The typed ElevenLabs client: its errors, models and (soon) its service.
 *
 * @since 0.1.0
 */
export * as Errors from "./Errors.ts"
export * as Models from "./Models.ts"
export { ElevenLabsError, isElevenLabsError } from "./Errors.ts"
