/**
 * The list of subcommands. Each command is a module of its own in this folder.
 *
 * @since 0.1.0
 */
import { Console } from "effect"
import { Command } from "effect/cli"
import { alerts } from "./alerts.ts"
import { loadTest } from "./loadTest.ts"
import { simulator } from "./simulator.ts"
import { simulate } from "./simulate.ts"
import { smoke } from "./smoke.ts"
import { validateConfig } from "./validateConfig.ts"

/** Placeholder demo until the simulator lands: prints what the tool will do. */
const demo = Command.make("demo", {}, () => Console.log("demo: coming with the simulator")).pipe(
  Command.withDescription("Run the demo: a simulator server, a burst with chaos through the full stack, a report.")
)

export const commands = [demo, alerts, loadTest, simulator, simulate, smoke, validateConfig] as const
