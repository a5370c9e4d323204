/**
 * `load-test --pattern sessions`: voice-agent conversations over the real-time socket, in real time, against
 * `--base-url` (the simulator's server or the API) or an embedded simulator server. One process (the shape
 * holds its sessions open; spreading them over processes would need their permits shared over Redis, which
 * the sessions do through the stack's limiter only within a process).
 *
 * @since 0.2.0
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { Effect, Option, Redacted } from "effect"
import type { HttpClient } from "effect/http"
import * as Sessions from "../simulation/Sessions.ts"
import * as SessionsLoad from "../simulation/SessionsLoad.ts"
import * as Server from "../simulator/Server.ts"
import * as Checks from "./checks.ts"
import * as CliFailure from "./CliFailure.ts"
import type { LoadTestInput } from "./loadTest.ts"
import { checkSessions, sessionsPattern } from "./trafficFlags.ts"

/** The key of the embedded simulator's account. */
const simulatorKey = "sim-key"

/** Runs the conversations; the text to print (table or one JSON document). */
export const execute = (
  input: LoadTestInput
): Effect.Effect<string, CliFailure.CliFailure, HttpClient.HttpClient> =>
  Effect.scoped(Effect.gen(function*() {
    const checked = yield* checkSessions("load-test", input)
    if (input.processes !== 1) {
      return yield* CliFailure.make("load-test", `--processes does not apply to --pattern ${sessionsPattern}`)
    }
    if (Option.isSome(input.config)) {
      return yield* CliFailure.make("load-test", `--config does not apply to --pattern ${sessionsPattern}`)
    }
    if (Option.isSome(input.redisUrl)) {
      return yield* CliFailure.make("load-test", `--redis-url does not apply to --pattern ${sessionsPattern}`)
    }
    const embedded = Option.isNone(input.baseUrl)
    if (embedded) {
      yield* Checks.refuse("load-test", Checks.modelProblem(input.model) ?? Checks.voiceProblem(input.voice))
    } else {
      yield* Checks.refuse(
        "load-test",
        Checks.urlProblem("--base-url", input.baseUrl.value, ["http:", "https:"], "https://api.elevenlabs.io")
      )
    }
    const key = Option.getOrUndefined(input.apiKey) ?? process.env["ELEVENLABS_API_KEY"]
    if (!embedded && (key === undefined || key === "")) {
      return yield* CliFailure.make("load-test", "a --base-url target needs a key: --api-key or ELEVENLABS_API_KEY")
    }
    let baseUrl: string
    if (embedded) {
      const server = yield* Server.serve({
        port: 0,
        plan: checked.plan,
        seed: checked.seed,
        apiKeys: [{ key: simulatorKey, name: "sim", plan: checked.plan, characterLimit: 1e12 }],
        realtime: { faults: { drop: checked.failureRate / 2, close1011: checked.failureRate / 2 } }
      }).pipe(
        Effect.mapError((e) =>
          CliFailure.listenFailure("load-test", "the embedded simulator", "127.0.0.1", 0, undefined, e)
        )
      )
      baseUrl = server.url
    } else baseUrl = input.baseUrl.value.replace(/\/+$/, "")
    const summary = yield* SessionsLoad.run({
      conversations: { conversations: checked.conversations, durationMs: checked.durationMs },
      baseUrl,
      apiKey: Redacted.make(embedded ? simulatorKey : key!),
      plan: checked.plan,
      model: input.model,
      voiceId: input.voice,
      seed: checked.seed,
      failureRate: checked.failureRate
    }).pipe(
      Effect.provide(NodeSocket.layerWebSocketConstructor),
      Effect.mapError((e) => CliFailure.make("load-test", e.message))
    )
    return input.json ? JSON.stringify(summary) + "\n" : Sessions.toText(summary)
  }))
