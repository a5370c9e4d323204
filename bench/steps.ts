/**
 * Run-loop steps per call: the one cost figure machine noise cannot move.
 *
 * Effect's fiber run loop asks the fiber's `Scheduler` (a public
 * `Context.Reference`, `effect/Scheduler`) `shouldYield(fiber)` once per
 * iteration, i.e. once per effect primitive it evaluates. A `Scheduler` that
 * counts those calls, and otherwise answers exactly as the default
 * `MixedScheduler` does (yield after `MaxOpsBeforeYield` operations), counts
 * the run loop's steps without changing a file under node_modules. It also
 * counts the tasks fibers hand to the dispatcher (a fork starting, a yield, a
 * resumption) and, from the fiber ids, the fibers started.
 *
 * What a step is: one evaluation of a primitive by the loop (`flatMap`,
 * `sync`, `provideService`, a fork, a `callback` resuming, ...). Success
 * values that Effect hands straight to the next continuation inside a step
 * (its `succeedWith` fast path) are part of that step. The count is what the
 * scratch copy of Effect's run loop counted in docs/simulation-performance.md
 * ("2026-12-05"), now from a public hook.
 *
 * Both stacks are built under the counting scheduler (so the fibers they fork
 * at start-up, the subscribers and the coalescer's flights, count too), warmed,
 * then measured over `calls` sequential calls over the zero-latency transport
 * of bench/overhead.ts, in several rounds: the rounds must agree (they do, to
 * the step, unless a timer fired), which the report shows.
 *
 * Run alone: `node bench/steps.ts [--quick]`, or `node bench/run.ts --child steps`.
 */
import { Effect, Fiber, Layer, References, Scheduler } from "effect"
import { pathToFileURL } from "node:url"
import type * as Client from "../src/client/ElevenLabs.ts"
import { isQuick, median, progress, type Result } from "./lib.ts"
import { fullStackLayer, plainClientLayer, ttsCall } from "./overhead.ts"

/** The default scheduler's behaviour, plus counters. */
class CountingScheduler implements Scheduler.Scheduler {
  readonly executionMode = "async" as const
  readonly inner = new Scheduler.MixedScheduler()
  steps = 0
  tasks = 0
  shouldYield(fiber: Fiber.Fiber<unknown, unknown>): boolean {
    this.steps++
    return this.inner.shouldYield(fiber)
  }
  makeDispatcher(): Scheduler.SchedulerDispatcher {
    const inner = this.inner.makeDispatcher()
    return {
      scheduleTask: (task, priority) => {
        this.tasks++
        inner.scheduleTask(task, priority)
      },
      flush: () => inner.flush()
    }
  }
}

export interface StepsRow {
  readonly stack: string
  /** Steps per call of each round (equal when the count is deterministic). */
  readonly rounds: ReadonlyArray<number>
  /** Median of the rounds. */
  readonly steps: number
  /** Dispatcher tasks per call (fiber starts, yields, resumptions). */
  readonly tasks: number
  /** Fibers started per call (from fiber ids). */
  readonly fibers: number
}

export interface Steps {
  readonly calls: number
  readonly rows: ReadonlyArray<StepsRow>
}

/** The id the next fiber will get, minus one (forks a probe fiber, which takes an id itself). */
const nextFiberId = Effect.flatMap(Effect.forkChild(Effect.void), (f) => Effect.as(Fiber.await(f), f.id))

const count = (
  stack: string,
  layer: Layer.Layer<Client.ElevenLabs>,
  calls: number,
  rounds: number
): Promise<StepsRow> => {
  const scheduler = new CountingScheduler()
  return Effect.runPromise(
    Effect.gen(function*() {
      const call = (i: number) => ttsCall(i)
      // Warm: lazy start-up work (the quota guard's first read, metric series) is not per call.
      for (let i = 0; i < 200; i++) yield* call(-1 - i)
      const perRound: Array<{ steps: number; tasks: number; fibers: number }> = []
      let next = 0
      for (let r = 0; r < rounds; r++) {
        const id0 = yield* nextFiberId
        const s0 = scheduler.steps
        const t0 = scheduler.tasks
        for (let i = 0; i < calls; i++) yield* call(next++)
        const s1 = scheduler.steps
        const t1 = scheduler.tasks
        const id1 = yield* nextFiberId
        perRound.push({ steps: (s1 - s0) / calls, tasks: (t1 - t0) / calls, fibers: (id1 - id0 - 1) / calls })
      }
      return {
        stack,
        rounds: perRound.map((p) => Math.round(p.steps * 100) / 100),
        steps: median(perRound.map((p) => p.steps)),
        tasks: median(perRound.map((p) => p.tasks)),
        fibers: median(perRound.map((p) => p.fibers))
      }
    }).pipe(
      Effect.provide(layer),
      Effect.provideService(References.MinimumLogLevel, "Error"),
      // Outermost: the layers are built, and every fiber forked, under the counting scheduler.
      Effect.provideService(Scheduler.Scheduler, scheduler)
    )
  )
}

export const measure = async (options: { readonly quick?: boolean } = {}): Promise<Steps> => {
  const calls = options.quick ? 300 : 1_000
  const rounds = 3
  progress(`steps: ${rounds} rounds of ${calls} sequential calls, plain client and full stack`)
  const plain = await count("effect: plain client", plainClientLayer, calls, rounds)
  const full = await count("effect: full stack", fullStackLayer({ maxQueue: 100_000 }), calls, rounds)
  return { calls, rows: [plain, full] }
}

export const stepsOf = (s: Steps, stack: string): StepsRow | undefined => s.rows.find((r) => r.stack === stack)

export const toResults = (s: Steps): ReadonlyArray<Result> =>
  s.rows.map((r) => ({
    name: `steps: ${r.stack}`,
    value: r.steps,
    unit: "run-loop steps/call",
    note: `rounds of ${s.calls} calls: ${r.rounds.join(", ")}; ${r.tasks.toFixed(2)} dispatcher tasks and ${
      r.fibers.toFixed(2)
    } fibers per call`
  }))

export const run = async (): Promise<ReadonlyArray<Result>> => toResults(await measure({ quick: isQuick() }))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await run()) console.log(`${r.name}: ${r.value} ${r.unit} (${r.note})`)
}
