/**
 * The list of subcommands. Each command is a module of its own in this folder.
 *
 * @since 0.1.0
 */
import { alerts } from "./alerts.ts"
import { capacity } from "./capacity.ts"
import { config } from "./config.ts"
import { demo } from "./demo.ts"
import { loadTest } from "./loadTest.ts"
import { simulate } from "./simulate.ts"
import { simulator } from "./simulator.ts"
import { smoke } from "./smoke.ts"
import { validateConfig } from "./validateConfig.ts"

export const commands = [demo, alerts, capacity, config, loadTest, simulator, simulate, smoke, validateConfig] as const
