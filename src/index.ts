/**
 * elevenlabs-resilience: the public barrel.
 *
 * @since 0.1.0
 */
export * from "./client/index.ts"
export * as Distributed from "./distributed/index.ts"
export * from "./resilience/index.ts"
export * as Simulation from "./simulation/index.ts"
export * from "./simulator/index.ts"
export * from "./telemetry/index.ts"
