/**
 * `elevenlabs-resilience alerts [--out FILE]`: writes the Prometheus alerting
 * rules for the six thresholds of the ElevenLabs production-deployment guide
 * (see docs/observability.md), to a file
 * or to standard output.
 *
 * @since 0.1.0
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as AlertRules from "../telemetry/AlertRules.ts"
import * as Checks from "./checks.ts"
import * as Flags from "./flags.ts"

const out = Flag.Path("out").pipe(Flags.optional("Write the rules to FILE.", "standard output"))

/** The `alerts` command. */
export const alerts = Command.make("alerts", { out }, ({ out }) =>
  Effect.gen(function*() {
    const yaml = AlertRules.defaultYaml()
    if (Option.isNone(out)) return yield* Console.log(yaml.trimEnd())
    // A missing directory or a path that is not writable: one line (main.ts prints it), exit code 1.
    yield* Checks.writablePath("alerts", "--out", out.value)
    yield* Checks.writeFile("alerts", "--out", out.value, yaml)
    yield* Console.log(`alerts: wrote ${AlertRules.rules().length} rules to ${out.value}`)
  })).pipe(
    Command.withDescription(
      "Write Prometheus alerting rules (YAML) for the ElevenLabs metrics: error rate, breaker, queue, p95, quota, retries."
    )
  )
