/**
 * Helpers for the model's tests (`Simulator.handle` in virtual time): requests
 * in the API's shapes, one call read to its end, and a batch run while the
 * test clock moves.
 */
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import { deploymentGuidePlans } from "../../src/resilience/Plans.ts"
import * as Accounts from "../../src/simulator/Accounts.ts"
import * as Answers from "../../src/simulator/Answers.ts"
import * as Checks from "../../src/simulator/Checks.ts"
import * as Counts from "../../src/simulator/Counts.ts"
import * as Faults from "../../src/simulator/Faults.ts"
import * as Pools from "../../src/simulator/Pools.ts"
import * as Prng from "../../src/simulator/Prng.ts"
import type * as Simulator from "../../src/simulator/Simulator.ts"

export const voice = "21m00Tcm4TlvDq8ikWAM"
export const base = "http://sim.test"

/** A TTS request (JSON body) to the premade voice. */
export const ttsRequest = (
  text: string,
  options: { readonly key?: string; readonly model?: string; readonly path?: string; readonly query?: string } = {}
) =>
  new Request(`${base}/v1/text-to-speech/${voice}${options.path ?? ""}${options.query ?? ""}`, {
    method: "POST",
    headers: { "xi-api-key": options.key ?? "sim-key", "content-type": "application/json" },
    body: JSON.stringify({ text, model_id: options.model ?? "eleven_multilingual_v2" })
  })

export const get = (path: string, key = "sim-key") => new Request(`${base}${path}`, { headers: { "xi-api-key": key } })

export interface Answer {
  readonly status: number | "reset" | "cut"
  readonly headers: Readonly<Record<string, string>>
  readonly bytes: Uint8Array
  readonly json: any
}

/** Sends one request and reads the whole body (a cut shows as status "cut"). */
export const call = (sim: Simulator.Service, request: Request) =>
  Effect.gen(function*() {
    const outcome = yield* sim.handle(request)
    if (outcome._tag === "Reset") {
      return { status: "reset", headers: {}, bytes: new Uint8Array(), json: undefined } as Answer
    }
    const chunks = yield* Stream.runCollect(outcome.body).pipe(Effect.result)
    if (chunks._tag === "Failure") {
      return { status: "cut", headers: outcome.headers, bytes: new Uint8Array(), json: undefined } as Answer
    }
    const bytes = new Uint8Array(chunks.success.reduce((n, c) => n + c.length, 0))
    let offset = 0
    for (const c of chunks.success) {
      bytes.set(c, offset)
      offset += c.length
    }
    const isJson = outcome.headers["content-type"] === "application/json"
    return {
      status: outcome.status,
      headers: outcome.headers,
      bytes,
      json: isJson ? JSON.parse(new TextDecoder().decode(bytes)) : undefined
    } as Answer
  })

/** Forks `effects`, moves the clock until all are done, returns their results. */
export const runAll = <A>(effects: ReadonlyArray<Effect.Effect<A>>, step = 50, steps = 2000) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(Effect.all(effects, { concurrency: "unbounded" }))
    for (let i = 0; i < steps && fiber.pollUnsafe() === undefined; i++) yield* TestClock.adjust(step)
    return yield* Fiber.join(fiber)
  })

/** The model's parts, wired as `Simulator.make` wires them, for the tests of one part. */
export const parts = (options: {
  readonly seed?: number
  readonly apiKeys?: ReadonlyArray<string | Accounts.AccountOptions>
  readonly acceptAnyKey?: boolean
  readonly queue?: Pools.QueueOptions
  readonly systemCapacity?: number
  readonly faults?: Partial<Faults.FaultRates>
  readonly retryAfterSeconds?: number
  readonly periodSeconds?: number
  readonly maxSamples?: number
} = {}) => {
  const counts = Counts.make()
  const prng = Prng.make(options.seed ?? 1)
  const answers = Answers.make({ prng, region: "us-central1", counts, retryAfterSeconds: options.retryAfterSeconds })
  const pools = Pools.make({
    maxSamples: options.maxSamples ?? 2000,
    queue: options.queue ?? { depth: 0, maxWaitMs: 0 },
    systemCapacity: options.systemCapacity,
    startMs: 0
  })
  const accounts = Accounts.make({
    specs: options.apiKeys ?? ["sim-key"],
    table: deploymentGuidePlans,
    defaultPlan: "pro",
    acceptAnyKey: options.acceptAnyKey ?? false,
    periodSeconds: options.periodSeconds ?? 30 * 24 * 3600,
    startUnix: 0,
    pools,
    answers,
    counts
  })
  const faults = Faults.make({ prng, rates: { ...Faults.noFaults, ...options.faults }, answers, counts })
  return { counts, prng, answers, pools, accounts, faults }
}

/** A request with only headers, as the checks read it. */
export const headersOnly = (headers: Readonly<Record<string, string>>, url = `${base}/v1/models`) =>
  Checks.textRequest({ method: "GET", url, header: (name) => headers[name] ?? null, bodyText: "" })
