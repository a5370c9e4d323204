/**
 * The typed ElevenLabs client: the service, its endpoint table, schemas,
 * errors, the classification of answers into reasons, local validation and
 * model tables.
 *
 * @since 0.1.0
 */
export * as Classify from "./Classify.ts"
export { classifySdkError } from "./Classify.ts"
export * as ElevenLabs from "./ElevenLabs.ts"
export * as Endpoints from "./Endpoints.ts"
export * as Errors from "./Errors.ts"
export { ElevenLabsError, isElevenLabsError } from "./Errors.ts"
export * as Models from "./Models.ts"
export * as Realtime from "./Realtime.ts"
export * as ResponseMeta from "./ResponseMeta.ts"
export * as Schemas from "./Schemas.ts"
export * as Validation from "./Validation.ts"
