/**
 * `elevenlabs-resilience alerts [--out FILE]`: writes the Prometheus alerting
 * rules for the seeds' six thresholds (see docs/observability.md), to a file
 * or to standard output.
 *
 * @since 0.1.0
 */
import { Console, Effect, FileSystem, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as AlertRules from "../telemetry/AlertRules.ts"

const out = Flag.Path("out").pipe(
  Flag.withDescription("Write the rules to FILE instead of standard output."),
  Flag.optional
)

/** The `alerts` command. */
export const alerts = Command.make("alerts", { out }, ({ out }) =>
  Effect.gen(function*() {
    const yaml = AlertRules.defaultYaml()
    if (Option.isNone(out)) return yield* Console.log(yaml.trimEnd())
    const fs = yield* FileSystem.FileSystem
    yield* fs.writeFileString(out.value, yaml)
    yield* Console.log(`alerts: wrote ${AlertRules.rules().length} rules to ${out.value}`)
  })).pipe(
    Command.withDescription("Write Prometheus alerting rules (YAML) for the ElevenLabs metrics: error rate, breaker, queue, p95, quota, retries.")
  )
