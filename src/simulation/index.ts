/**
 * Deterministic simulations: traffic patterns, client strategies, the
 * virtual-time runner and its reports.
 *
 * @since 0.1.0
 */
export * as Capacity from "./Capacity.ts"
export * as Html from "./Html.ts"
export * as LoadTest from "./LoadTest.ts"
export * as Observe from "./Observe.ts"
export * as Patterns from "./Patterns.ts"
export * as Progress from "./Progress.ts"
export * as Recorder from "./Recorder.ts"
export * as Report from "./Report.ts"
export * as Runner from "./Runner.ts"
export * as Strategies from "./Strategies.ts"
