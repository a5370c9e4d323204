#!/usr/bin/env node
/**
 * The `elevenlabs-resilience` command line. One file per command lives beside
 * this one; this file only assembles them and runs on Node.
 *
 * @since 0.1.0
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Command } from "effect/cli"
import { commands } from "./commands.ts"

const root = Command.make("elevenlabs-resilience").pipe(
  Command.withDescription(
    "Resilience for the ElevenLabs API: a faithful simulator, deterministic simulations, load tests and config checks."
  ),
  Command.withSubcommands(commands)
)

const version = "0.1.0"

Command.run(root, { version }).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
