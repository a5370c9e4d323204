/**
 * The defaults of the configuration: what applies where the file and the
 * environment are silent.
 *
 * @since 0.1.0
 */
import type { JitterKind, logLevels } from "./ConfigSchema.ts"
import type { AcceptedPlanTableName, PlanName } from "./Plans.ts"

/**
 * The defaults applied where the file is silent (the numbers of docs/design.md section 6; each
 * equals the default of the policy it feeds, which a test checks).
 */
export const defaults = {
  baseUrl: "https://api.elevenlabs.io",
  concurrency: {
    plan: "unknown" as PlanName | "unknown",
    planTable: "deployment-guide" as AcceptedPlanTableName,
    initialLimit: 2,
    minLimit: 1,
    maxLimit: 1000,
    decreaseFactor: 0.9,
    additiveIncrease: 1,
    maxQueue: 50_000,
    queueTimeout: "120 seconds",
    laneAging: { interactive: 0, default: "5 seconds", batch: "30 seconds" }
  },
  retry: {
    requeue: { step: "50 millis", maxDelay: "1 second", maxRetries: 20 },
    exponential: {
      base: "1 second",
      factor: 2,
      cap: "32 seconds",
      maxRetries: 5,
      jitter: "full" as JitterKind,
      jitterRatio: 0.2,
      jitterMax: "500 millis",
      retryAfterMax: "60 seconds",
      honorRetryAfter: true
    },
    linear: { step: "1 second", maxDelay: "10 seconds", maxRetries: 3 }
  },
  budget: { ratio: 0.2, window: "10 seconds", minRetriesInFlight: 3 },
  breaker: {
    policy: "consecutive" as "consecutive" | "rate",
    failures: 5,
    threshold: 0.5,
    size: 20,
    minimumCalls: 10,
    openDuration: "60 seconds",
    maxRetryAfter: "5 minutes",
    halfOpenRetryAfter: "1 second",
    onStoreError: "allow" as "allow" | "fail"
  },
  quota: {
    refreshInterval: "60 seconds",
    warningPercent: 80,
    alertPercent: 90,
    whenUnknown: "allow" as "allow" | "deny"
  },
  timeouts: { headers: "30 seconds", idle: "30 seconds", deadline: "180 seconds" },
  coalesce: { onAllWaitersGone: "interrupt" as "interrupt" | "finish" },
  cache: {
    store: "memory" as "memory" | "file",
    maxEntries: 1000,
    maxBytes: 256 * 1024 * 1024,
    prefix: "elevenlabs-audio-"
  },
  telemetry: { logLevel: "Info" as (typeof logLevels)[number], metricsPort: false as number | false, otlp: true },
  redis: {
    onUnavailable: "local-fallback" as "fail-closed" | "local-fallback",
    expectedProcesses: 1,
    leaseTime: "30 seconds"
  }
} as const
