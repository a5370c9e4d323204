/**
 * `elevenlabs-resilience alerts [--out FILE] [--window DURATION] [--for DURATION]`:
 * writes the Prometheus alerting rules for the six thresholds of the
 * ElevenLabs production-deployment guide (see docs/observability.md), to a
 * file or to standard output.
 *
 * Without `--window` and `--for` the rules are the guide's (`AlertRules.defaultYaml`).
 * The two flags shorten the durations, to rehearse the alerts against a real
 * Prometheus in seconds rather than minutes (docs/observability.md, "Rehearsing
 * the alerts"): `--window` is the rate window of the error, retry and latency
 * rules, `--for` the `for` of every rule.
 *
 * @since 0.1.0
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as AlertRules from "../telemetry/AlertRules.ts"
import * as Checks from "./checks.ts"
import * as Flags from "./flags.ts"

const out = Flag.Path("out").pipe(Flags.optional("Write the rules to FILE.", "standard output"))
const window = Flag.String("window").pipe(
  Flags.optional("Rate window of the error, retry and latency rules, a Prometheus duration such as 30s.", "5m")
)
const forFlag = Flag.String("for").pipe(
  Flags.optional(
    "How long every rule's condition must hold before it fires, a Prometheus duration such as 10s.",
    "1m for the critical rules and the quota rule, 5m for the latency and retry rules"
  )
)

/** A Prometheus duration: units from years down to milliseconds, each at most once and in that order (`1m30s`). */
const prometheusDuration = /^(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?$/

/** Why `value` of `flag` is not a Prometheus duration (positive unless `zero`), or `undefined`. */
const durationProblem = (flag: string, value: string, zero: boolean): string | undefined =>
  value === "" || !prometheusDuration.test(value)
    ? `${flag} must be a Prometheus duration (digits and units y, w, d, h, m, s, ms, such as 30s or 1m30s); got "${value}"`
    : !zero && /^[0a-z]+$/.test(value)
    ? `${flag} must be longer than 0, got "${value}"`
    : undefined

/** The rule options of the flags: the guide's defaults unless a flag is given. */
const optionsOf = (window: Option.Option<string>, forAll: Option.Option<string>): AlertRules.Options => ({
  window: Option.getOrUndefined(window),
  ...Option.match(forAll, {
    onNone: () => ({}),
    onSome: (d) => ({ criticalFor: d, warningFor: d, quotaFor: d, breakerOpenFor: d })
  })
})

/** The `alerts` command. */
export const alerts = Command.make(
  "alerts",
  { out, window, for: forFlag },
  ({ for: forAll, out, window }) =>
    Effect.gen(function*() {
      if (Option.isSome(window)) yield* Checks.refuse("alerts", durationProblem("--window", window.value, false))
      if (Option.isSome(forAll)) yield* Checks.refuse("alerts", durationProblem("--for", forAll.value, true))
      const list = AlertRules.rules(optionsOf(window, forAll))
      const yaml = AlertRules.toYaml(list)
      if (Option.isNone(out)) return yield* Console.log(yaml.trimEnd())
      // A missing directory or a path that is not writable: one line (main.ts prints it), exit code 1.
      yield* Checks.writablePath("alerts", "--out", out.value)
      yield* Checks.writeFile("alerts", "--out", out.value, yaml)
      yield* Console.log(`alerts: wrote ${list.length} rules to ${out.value}`)
    })
).pipe(
  Command.withDescription(
    "Write Prometheus alerting rules (YAML) for the ElevenLabs metrics: error rate, breaker, queue, p95, quota, retries."
  )
)
