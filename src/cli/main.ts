#!/usr/bin/env node
/**
 * The `elevenlabs-resilience` command line. One file per command lives beside
 * this one; this file only assembles them and runs on Node, with the CLI's
 * output rules (`output.ts`): the result on standard output, logs and
 * progress on standard error, every mistake one line and exit code 1.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect } from "effect"
import { Command } from "effect/cli"
import { commands } from "./commands.ts"
import * as Output from "./output.ts"

const root = Command.make("elevenlabs-resilience").pipe(
  Command.withDescription(
    "Resilience for the ElevenLabs API: a faithful simulator, deterministic simulations, load tests and config checks."
  ),
  Command.withSubcommands(commands)
)

const version = "0.1.0"

Command.run(root, { version }).pipe(
  Output.reportFailures,
  Effect.provide(Output.layer),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
