/**
 * Prometheus alerting rules for the six thresholds of the ElevenLabs
 * production-deployment guide (docs/design.md section 6), over the metrics of
 * {@link Metrics}, as data and as the YAML Prometheus loads.
 *
 * **Details**
 *
 * Critical (the guide's "Critical Alerts"):
 * - `ElevenLabsHighErrorRate`: errors / requests per pool over 5 minutes > 5 %.
 * - `ElevenLabsCircuitBreakerOpen`: breaker state == 2 (open) for 1 minute.
 * - `ElevenLabsQueueDepthHigh`: queued requests per pool (all lanes) > 500.
 *
 * Warning (the guide's "Warning Alerts"):
 * - `ElevenLabsHighLatencyP95`: p95 of the call duration per pool > 2 s.
 * - `ElevenLabsQuotaHigh`: quota used > 90 %.
 * - `ElevenLabsHighRetryRate`: retries / requests per pool over 5 minutes > 20 %.
 *
 * Every threshold, window and `for` is an option; the defaults are the guide's.
 *
 * **Example** (Writing the rules file)
 *
 * ```ts
 * import { AlertRules } from "elevenlabs-resilience/telemetry"
 *
 * const yaml = AlertRules.toYaml(AlertRules.rules({ queueDepth: 200 }))
 * ```
 *
 * @since 0.1.0
 */
import { names } from "./Metrics.ts"

/** One Prometheus alerting rule. */
export interface AlertRule {
  readonly alert: string
  readonly expr: string
  readonly for: string
  readonly labels: { readonly severity: "critical" | "warning" } & Readonly<Record<string, string>>
  readonly annotations: { readonly summary: string; readonly description: string }
}

/** Options of {@link rules}; defaults are the production-deployment guide's thresholds. */
export interface Options {
  /** Rate window of the error, retry and latency rules; default `5m`. */
  readonly window?: string | undefined
  /** Error share that fires `ElevenLabsHighErrorRate`; default 0.05. */
  readonly errorRate?: number | undefined
  /** How long the breaker must stay open; default `1m`. */
  readonly breakerOpenFor?: string | undefined
  /** Queue depth that fires `ElevenLabsQueueDepthHigh`; default 500. */
  readonly queueDepth?: number | undefined
  /** p95 latency in seconds that fires `ElevenLabsHighLatencyP95`; default 2. */
  readonly latencyP95Seconds?: number | undefined
  /** Quota percentage that fires `ElevenLabsQuotaHigh`; default 90. */
  readonly quotaPercentage?: number | undefined
  /** Retries per call that fires `ElevenLabsHighRetryRate`; default 0.2. */
  readonly retryRate?: number | undefined
  /** `for` of the other rules: critical default `1m`, warning default `5m`. */
  readonly criticalFor?: string | undefined
  readonly warningFor?: string | undefined
  /** `for` of `ElevenLabsQuotaHigh` (a warning that should not wait as long); default `1m`. */
  readonly quotaFor?: string | undefined
  /** Labels added to every rule (for example `team`). */
  readonly extraLabels?: Readonly<Record<string, string>> | undefined
}

const pct = (x: number): string => `${Number((x * 100).toFixed(4))}%`

/** The six rules, with the production-deployment guide's thresholds unless overridden. */
export const rules = (options?: Options | undefined): ReadonlyArray<AlertRule> => {
  const w = options?.window ?? "5m"
  const errorRate = options?.errorRate ?? 0.05
  const queueDepth = options?.queueDepth ?? 500
  const p95 = options?.latencyP95Seconds ?? 2
  const quota = options?.quotaPercentage ?? 90
  const retryRate = options?.retryRate ?? 0.2
  const criticalFor = options?.criticalFor ?? "1m"
  const warningFor = options?.warningFor ?? "5m"
  const extra = options?.extraLabels ?? {}
  const critical = { ...extra, severity: "critical" as const }
  const warning = { ...extra, severity: "warning" as const }
  return [
    {
      alert: "ElevenLabsHighErrorRate",
      expr:
        `sum by (pool) (rate(${names.errors}[${w}])) / sum by (pool) (rate(${names.requests}[${w}])) > ${errorRate}`,
      for: criticalFor,
      labels: critical,
      annotations: {
        summary: `ElevenLabs error rate above ${pct(errorRate)} in pool {{ $labels.pool }}`,
        description: `More than ${
          pct(errorRate)
        } of ElevenLabs calls in pool {{ $labels.pool }} failed over the last ${w} (${names.errors} / ${names.requests}).`
      }
    },
    {
      alert: "ElevenLabsCircuitBreakerOpen",
      expr: `max by (pool) (${names.breakerState}) == 2`,
      for: options?.breakerOpenFor ?? "1m",
      labels: critical,
      annotations: {
        summary: "ElevenLabs circuit breaker open in pool {{ $labels.pool }}",
        description: `The circuit breaker of pool {{ $labels.pool }} has been open for more than ${
          options?.breakerOpenFor ?? "1m"
        }: calls fail fast.`
      }
    },
    {
      alert: "ElevenLabsQueueDepthHigh",
      expr: `sum by (pool) (${names.queueDepth}) > ${queueDepth}`,
      for: criticalFor,
      labels: critical,
      annotations: {
        summary: `More than ${queueDepth} ElevenLabs requests queued in pool {{ $labels.pool }}`,
        description:
          `More than ${queueDepth} requests wait for a concurrency permit in pool {{ $labels.pool }} (all lanes): the plan's concurrency is too small for the traffic.`
      }
    },
    {
      alert: "ElevenLabsHighLatencyP95",
      expr: `histogram_quantile(0.95, sum by (pool, le) (rate(${names.requestDuration}_bucket[${w}]))) > ${p95}`,
      for: warningFor,
      labels: warning,
      annotations: {
        summary: `ElevenLabs p95 latency above ${p95}s in pool {{ $labels.pool }}`,
        description:
          `The 95th percentile of ElevenLabs call duration (queueing and retries included) in pool {{ $labels.pool }} is above ${p95}s over the last ${w}.`
      }
    },
    {
      alert: "ElevenLabsQuotaHigh",
      expr: `max(${names.quotaUsed}) > ${quota}`,
      for: options?.quotaFor ?? "1m",
      labels: warning,
      annotations: {
        summary: `ElevenLabs quota usage above ${quota}%`,
        description:
          `More than ${quota}% of the subscription period's credits are used; calls will fail with quota_exceeded when they run out.`
      }
    },
    {
      alert: "ElevenLabsHighRetryRate",
      expr:
        `sum by (pool) (rate(${names.retries}[${w}])) / sum by (pool) (rate(${names.requests}[${w}])) > ${retryRate}`,
      for: warningFor,
      labels: warning,
      annotations: {
        summary: `ElevenLabs retry rate above ${pct(retryRate)} in pool {{ $labels.pool }}`,
        description:
          `More than ${retryRate} retries per ElevenLabs call in pool {{ $labels.pool }} over the last ${w} (${names.retries} / ${names.requests}).`
      }
    }
  ]
}

// JSON strings are valid YAML double-quoted scalars, so quoting is exact.
const q = (s: string): string => JSON.stringify(s)

/** Renders rules as a Prometheus rules file (one group). */
export const toYaml = (
  list: ReadonlyArray<AlertRule>,
  options?: { readonly groupName?: string | undefined } | undefined
): string => {
  const lines = ["groups:", `  - name: ${q(options?.groupName ?? "elevenlabs-resilience")}`, "    rules:"]
  for (const r of list) {
    lines.push(`      - alert: ${r.alert}`)
    lines.push(`        expr: ${q(r.expr)}`)
    lines.push(`        for: ${r.for}`)
    lines.push("        labels:")
    for (const [k, v] of Object.entries(r.labels)) lines.push(`          ${k}: ${q(v)}`)
    lines.push("        annotations:")
    for (const [k, v] of Object.entries(r.annotations)) lines.push(`          ${k}: ${q(v)}`)
  }
  return lines.join("\n") + "\n"
}

/** The rules file with the production-deployment guide's thresholds. */
export const defaultYaml = (): string => toYaml(rules())
