/**
 * `elevenlabs-resilience simulator`: serves the ElevenLabs simulator over
 * HTTP until stopped (SIGINT/SIGTERM). See docs/simulator.md.
 *
 * @since 0.1.0
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { docsPlans, planNames, seedPlans } from "../resilience/Plans.ts"
import * as Server from "../simulator/Server.ts"
import * as Simulator from "../simulator/Simulator.ts"

const rate = (name: string, description: string) =>
  Flag.Finite(name).pipe(
    Flag.withDescription(description),
    Flag.filter((r) => r >= 0 && r <= 1, (r) => `--${name} must be between 0 and 1, got ${r}`),
    Flag.optional
  )

const nonNegativeInt = (name: string, description: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(description),
    Flag.filter((n) => n >= 0, (n) => `--${name} must be 0 or more, got ${n}`)
  )

const flags = {
  port: Flag.Int("port").pipe(
    Flag.withDescription("TCP port to listen on; 0 picks a free one."),
    Flag.filter((p) => p >= 0 && p <= 65535, (p) => `--port must be between 0 and 65535, got ${p}`),
    Flag.withDefault(8787)
  ),
  host: Flag.String("host").pipe(Flag.withDescription("Interface to bind."), Flag.withDefault("127.0.0.1")),
  plan: Flag.Literals("plan", planNames).pipe(
    Flag.withDescription("Plan of every API key: concurrency limits and monthly credits."),
    Flag.withDefault("pro" as const)
  ),
  planTable: Flag.Literals("plan-table", ["seeds", "docs"] as const).pipe(
    Flag.withDescription("Concurrency table: the seeds' (STT 8/12/20/40/60/60) or the docs' (STT 10/15/25/50/75/75)."),
    Flag.withDefault("seeds" as const)
  ),
  seed: Flag.Int("seed").pipe(Flag.withDescription("Seed of the simulator's random draws."), Flag.withDefault(1)),
  failureRate: rate(
    "failure-rate",
    "Total fault rate, split 40% system_busy, 20% 500 (detail), 10% 500 (top-level), 10% 503 HTML, 10% reset, 10% stream cut."
  ),
  systemBusyRate: rate("system-busy-rate", "Rate of 429 system_busy."),
  serverErrorRate: rate("server-error-rate", "Rate of 500 something_went_wrong."),
  internalErrorRate: rate("internal-error-rate", "Rate of 500 internal_server_error (top-level body)."),
  unavailableRate: rate("unavailable-rate", "Rate of 503 with an HTML body."),
  resetRate: rate("reset-rate", "Rate of connection resets."),
  hangRate: rate("hang-rate", "Rate of requests that never answer."),
  cutRate: rate("cut-rate", "Rate of bodies cut half-way."),
  queueDepth: nonNegativeInt("queue-depth", "Requests that may queue per key and pool past the limit.").pipe(
    Flag.withDefault(0)
  ),
  queueWaitMs: nonNegativeInt("queue-wait-ms", "How long a queued request waits before its 429.").pipe(
    Flag.withDefault(30_000)
  ),
  apiKey: Flag.String("api-key").pipe(
    Flag.withDescription("An accepted xi-api-key (repeat for several keys). Default: sim-key."),
    Flag.atLeast(0)
  ),
  acceptAnyKey: Flag.Boolean("accept-any-key").pipe(
    Flag.withDescription("Accept any non-empty key, each as a fresh account."),
    Flag.withDefault(false)
  ),
  retryAfter: nonNegativeInt("retry-after", "Send Retry-After: N on every 429 (the real API sends none).").pipe(
    Flag.optional
  ),
  systemCapacity: nonNegativeInt(
    "system-capacity",
    "Shared in-flight capacity across all keys; past it, 429 system_busy."
  ).pipe(Flag.optional),
  credits: nonNegativeInt("credits", "Credits per period (character_limit). Default by plan.").pipe(Flag.optional),
  creditsUsed: nonNegativeInt("credits-used", "Credits already used at start.").pipe(Flag.withDefault(0)),
  charsPerSecond: Flag.Finite("chars-per-second").pipe(
    Flag.withDescription("Characters of text per second of generated speech."),
    Flag.filter((n) => n > 0, (n) => `--chars-per-second must be positive, got ${n}`),
    Flag.withDefault(15)
  ),
  latencyScale: Flag.Finite("latency-scale").pipe(
    Flag.withDescription("Multiplies every latency (0 answers at once, 2 is twice as slow)."),
    Flag.filter((n) => n >= 0, (n) => `--latency-scale must be 0 or more, got ${n}`),
    Flag.withDefault(1)
  ),
  periodSeconds: Flag.Int("period-seconds").pipe(
    Flag.withDescription("Length of a quota period; credits reset when it ends."),
    Flag.filter((n) => n > 0, (n) => `--period-seconds must be positive, got ${n}`),
    Flag.withDefault(30 * 24 * 3600)
  ),
  chunkSeconds: Flag.Finite("chunk-seconds").pipe(
    Flag.withDescription("Seconds of audio per streamed chunk."),
    Flag.filter((n) => n > 0, (n) => `--chunk-seconds must be positive, got ${n}`),
    Flag.withDefault(0.5)
  ),
  region: Flag.String("region").pipe(Flag.withDescription("x-region header value."), Flag.withDefault("us-central1"))
}

const scaled = (scale: number): Simulator.LatencyModel => {
  const s = (p: Simulator.LatencyProfile): Simulator.LatencyProfile => ({
    ttfbMs: p.ttfbMs * scale,
    msPerUnit: p.msPerUnit * scale,
    jitter: p.jitter
  })
  const d = Simulator.defaultLatency
  return { standard: s(d.standard), v3: s(d.v3), flash: s(d.flash), stt: s(d.stt), music: s(d.music) }
}

/** The `simulator` command. */
export const simulator = Command.make("simulator", flags, (f) =>
  Effect.scoped(Effect.gen(function*() {
    const rates: Partial<Simulator.FaultRates> = {
      ...(Option.isSome(f.failureRate) ? Simulator.faultMix(f.failureRate.value) : {}),
      ...Option.match(f.systemBusyRate, { onNone: () => ({}), onSome: (v) => ({ systemBusy: v }) }),
      ...Option.match(f.serverErrorRate, { onNone: () => ({}), onSome: (v) => ({ serverError: v }) }),
      ...Option.match(f.internalErrorRate, { onNone: () => ({}), onSome: (v) => ({ internalServerError: v }) }),
      ...Option.match(f.unavailableRate, { onNone: () => ({}), onSome: (v) => ({ serviceUnavailable: v }) }),
      ...Option.match(f.resetRate, { onNone: () => ({}), onSome: (v) => ({ connectionReset: v }) }),
      ...Option.match(f.hangRate, { onNone: () => ({}), onSome: (v) => ({ hang: v }) }),
      ...Option.match(f.cutRate, { onNone: () => ({}), onSome: (v) => ({ streamCut: v }) })
    }
    const keys = f.apiKey.length > 0 ? f.apiKey : ["sim-key"]
    const running = yield* Server.serve({
      port: f.port,
      host: f.host,
      seed: f.seed,
      plan: f.plan,
      planTable: f.planTable === "docs" ? docsPlans : seedPlans,
      apiKeys: keys.map((key) => ({
        key,
        characterCount: f.creditsUsed,
        ...(Option.isSome(f.credits) ? { characterLimit: f.credits.value } : {})
      })),
      acceptAnyKey: f.acceptAnyKey,
      faults: rates,
      queue: { depth: f.queueDepth, maxWaitMs: f.queueWaitMs },
      ...(Option.isSome(f.retryAfter) ? { retryAfterSeconds: f.retryAfter.value } : {}),
      ...(Option.isSome(f.systemCapacity) ? { systemCapacity: f.systemCapacity.value } : {}),
      charsPerSecond: f.charsPerSecond,
      latency: scaled(f.latencyScale),
      periodSeconds: f.periodSeconds,
      chunkSeconds: f.chunkSeconds,
      region: f.region
    })
    yield* Console.log(`ElevenLabs simulator listening on ${running.url}`)
    yield* Console.log(
      `plan ${f.plan}, seed ${f.seed}, ${keys.length} key(s)${f.acceptAnyKey ? " (any key accepted)" : ""}; ` +
        `stats at ${running.url}/_simulator/stats; Ctrl-C to stop`
    )
    return yield* Effect.never
  }))).pipe(
    Command.withDescription(
      "Serve a faithful ElevenLabs simulator (plans, concurrency 429s, quota, latency, faults) on a local port."
    )
  )
