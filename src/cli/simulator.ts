/**
 * `elevenlabs-resilience simulator`: serves the ElevenLabs simulator over
 * HTTP until stopped (SIGINT/SIGTERM). See docs/simulator.md.
 *
 * @since 0.1.0
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { canonicalPlanTableName, isPlanTableName, planNames, planTableNames, planTableOf } from "../resilience/Plans.ts"
import * as Server from "../simulator/Server.ts"
import * as Simulator from "../simulator/Simulator.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import * as Flags from "./flags.ts"

const rate = (name: string, description: string, what = "0") =>
  Flag.Finite(name).pipe(
    Flag.filter((r) => r >= 0 && r <= 1, (r) => `--${name} must be between 0 and 1, got ${r}`),
    Flags.optional(description, what)
  )

const nonNegativeInt = (name: string) =>
  Flag.Int(name).pipe(Flag.filter((n) => n >= 0, (n) => `--${name} must be 0 or more, got ${n}`))

const flags = {
  port: Flag.Int("port").pipe(
    Flag.filter((p) => p >= 0 && p <= 65535, (p) => `--port must be between 0 and 65535, got ${p}`),
    Flags.withDefault("TCP port to listen on; 0 picks a free one.", 8787)
  ),
  host: Flag.String("host").pipe(Flags.withDefault("Interface to bind.", "127.0.0.1")),
  plan: Flag.Literals("plan", planNames).pipe(
    Flags.withDefault("Plan of every API key: concurrency limits and monthly credits.", "pro" as const)
  ),
  // The old names (`seeds`, `docs`) are still accepted, but not offered.
  planTable: Flag.String("plan-table").pipe(
    Flag.filterMap(
      (name) => isPlanTableName(name) ? Option.some(canonicalPlanTableName(name)) : Option.none(),
      (name) => Checks.notOneOf("--plan-table", name, planTableNames)
    ),
    Flags.withDefault(
      "Concurrency table: deployment-guide, the per-pool numbers of a community production-deployment guide (STT 8/12/20/40/60/60), " +
        "or models-page, the models page's of August 2025 (STT 10/15/25/50/75/75).",
      planTableNames[0]
    )
  ),
  seed: Flag.Int("seed").pipe(Flags.withDefault("Seed of the simulator's random draws.", 1)),
  failureRate: rate(
    "failure-rate",
    "Total fault rate, split 40% system_busy, 20% 500 (detail), 10% 500 (top-level), 10% 503 HTML, 10% reset, 10% stream cut."
  ),
  systemBusyRate: rate("system-busy-rate", "Rate of 429 system_busy.", "its share of --failure-rate, else 0"),
  serverErrorRate: rate(
    "server-error-rate",
    "Rate of 500 something_went_wrong.",
    "its share of --failure-rate, else 0"
  ),
  internalErrorRate: rate(
    "internal-error-rate",
    "Rate of 500 internal_server_error (top-level body).",
    "its share of --failure-rate, else 0"
  ),
  unavailableRate: rate("unavailable-rate", "Rate of 503 with an HTML body.", "its share of --failure-rate, else 0"),
  resetRate: rate("reset-rate", "Rate of connection resets.", "its share of --failure-rate, else 0"),
  hangRate: rate("hang-rate", "Rate of requests that never answer."),
  cutRate: rate("cut-rate", "Rate of bodies cut half-way.", "its share of --failure-rate, else 0"),
  queueDepth: nonNegativeInt("queue-depth").pipe(
    Flags.withDefault("Requests that may queue per key and pool past the limit.", 0)
  ),
  queueWaitMs: nonNegativeInt("queue-wait-ms").pipe(
    Flags.withDefault("How long a queued request waits before its 429.", 30_000)
  ),
  apiKey: Flag.String("api-key").pipe(
    Flag.withDescription("An accepted xi-api-key (repeat for several keys). (default: sim-key)"),
    Flag.atLeast(0)
  ),
  acceptAnyKey: Flags.boolean("accept-any-key", "Accept any non-empty key, each as a fresh account."),
  retryAfter: nonNegativeInt("retry-after").pipe(
    Flags.optional("Send Retry-After: N on every 429 (the real API sends none).", "none")
  ),
  systemCapacity: nonNegativeInt("system-capacity").pipe(
    Flags.optional("Shared in-flight capacity across all keys; past it, 429 system_busy.", "unlimited")
  ),
  credits: nonNegativeInt("credits").pipe(Flags.optional("Credits per period (character_limit).", "the plan's")),
  creditsUsed: nonNegativeInt("credits-used").pipe(Flags.withDefault("Credits already used at start.", 0)),
  charsPerSecond: Flag.Finite("chars-per-second").pipe(
    Flag.filter((n) => n > 0, (n) => `--chars-per-second must be positive, got ${n}`),
    Flags.withDefault("Characters of text per second of generated speech.", 15)
  ),
  latencyScale: Flag.Finite("latency-scale").pipe(
    Flag.filter((n) => n >= 0, (n) => `--latency-scale must be 0 or more, got ${n}`),
    Flags.withDefault("Multiplies every latency (0 answers at once, 2 is twice as slow).", 1)
  ),
  periodSeconds: Flag.Int("period-seconds").pipe(
    Flag.filter((n) => n > 0, (n) => `--period-seconds must be positive, got ${n}`),
    Flags.withDefault("Length of a quota period; credits reset when it ends.", 30 * 24 * 3600, "2592000 (30 days)")
  ),
  chunkSeconds: Flag.Finite("chunk-seconds").pipe(
    Flag.filter((n) => n > 0, (n) => `--chunk-seconds must be positive, got ${n}`),
    Flags.withDefault("Seconds of audio per streamed chunk.", 0.5)
  ),
  region: Flag.String("region").pipe(Flags.withDefault("x-region header value.", "us-central1")),
  maxBodyBytes: Flag.Int("max-body-bytes").pipe(
    Flag.filter((n) => n > 0, (n) => `--max-body-bytes must be positive, got ${n}`),
    Flags.optional(
      "Largest request body (JSON, text, non-upload multipart), in bytes; past it, a 413.",
      "10485760 (10 MiB)"
    )
  ),
  maxUploadBytes: Flag.Int("max-upload-bytes").pipe(
    Flag.filter((n) => n > 0, (n) => `--max-upload-bytes must be positive, got ${n}`),
    Flags.optional(
      "Largest multipart upload to speech to text, in bytes; past it, a 413. An upload is held in memory (3-4x its size); " +
        "the API takes files under 5 GB (5368709120 here).",
      "104857600 (100 MiB)"
    )
  )
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
      planTable: planTableOf(f.planTable),
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
      region: f.region,
      bodyLimits: {
        ...(Option.isSome(f.maxBodyBytes) ? { json: f.maxBodyBytes.value } : {}),
        ...(Option.isSome(f.maxUploadBytes) ? { upload: f.maxUploadBytes.value } : {})
      }
    }).pipe(
      // A port in use (or privileged, or a host not of this machine): one line, exit code 1 (main.ts prints it).
      Effect.mapError((e) => CliFailure.listenFailure("simulator", "the simulator", f.host, f.port, "--port", e))
    )
    yield* Console.log(`ElevenLabs simulator listening on ${running.url}`)
    yield* Console.log(
      `plan ${f.plan} (${f.planTable} table), seed ${f.seed}, ${keys.length} key(s)${
        f.acceptAnyKey ? " (any key accepted)" : ""
      }; ` +
        `stats at ${running.url}/_simulator/stats; Ctrl-C to stop`
    )
    return yield* Effect.never
  }))).pipe(
    Command.withDescription(
      "Serve a faithful ElevenLabs simulator (plans, concurrency 429s, quota, latency, faults) on a local port."
    )
  )
