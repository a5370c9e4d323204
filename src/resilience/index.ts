/**
 * The resilience policies, one module each.
 *
 * @since 0.1.0
 */
export * as Plans from "./Plans.ts"
