/**
 * The benchmark runner: runs every benchmark in bench/, each in its own
 * child process (`node --expose-gc bench/run.ts --child <name>`, so memory
 * numbers are exact and one benchmark's heap and JIT state do not leak into
 * the next), prints a table and rewrites BENCHMARKS.md with the machine, the
 * Node version, the date, the exact commands and the goals next to the numbers.
 *
 * Usage: `node bench/run.ts [--quick] [--only goodput,overhead,...] [--no-write]`
 * - `--quick`: reduced sizes (a check that everything runs; numbers are rough).
 * - `--only`: a subset (BENCHMARKS.md is then not rewritten unless `--write`); the goals printed are
 *   those of the subset.
 * - `--no-write`: print only.
 * - `--out FILE`: write the report to FILE instead of BENCHMARKS.md (any selection, quick or not).
 * - `--child <name> [--quick]` typed by hand: that one benchmark in its child process (with its Node
 *   flags), printed with its goals; BENCHMARKS.md is not touched. The runner itself starts its children
 *   with `BENCH_RUNNER=1`, and they then print JSON for it.
 */
import { execFileSync, spawn } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { Goodput } from "./goodput.ts"
import type { Heap } from "./heap.ts"
import { fmt, median, progress, type Result, table } from "./lib.ts"
import type { Memory } from "./memory.ts"
import type { Overhead } from "./overhead.ts"
import type { Simulation } from "./simulation.ts"
import type { Steps } from "./steps.ts"

const here = fileURLToPath(new URL(".", import.meta.url))
const repoRoot = fileURLToPath(new URL("..", import.meta.url))

/** Every benchmark, in run order (CPU-sensitive ones first, on a quiet machine). */
const names = ["overhead", "steps", "limiter", "memory", "heap", "simulation", "goodput", "distributed"] as const
type Name = (typeof names)[number]
/** Ours return rich data (`measure`); the others only `run(): Result[]`. */
const rich: ReadonlySet<Name> = new Set(["overhead", "steps", "memory", "heap", "simulation", "goodput"])

/**
 * Node flags per child besides `--expose-gc`. `memory` queues 100,000 calls through the full stack: at
 * 25 KB each (the stack before issue 24's work) that is 2.5 GB of heap, over V8's default old-space limit
 * on small machines, so its child may use up to 8 GB (or half the machine's memory, if that is less).
 */
const heapMb = Math.max(2048, Math.min(8192, Math.floor(os.totalmem() / 2 ** 20 / 2)))
const nodeFlags: Partial<Record<Name, ReadonlyArray<string>>> = { memory: [`--max-old-space-size=${heapMb}`] }

/** The goals' thresholds (the benchmarks' own constants, repeated so the runner imports none of them). */
const goal = {
  ratio: 1.5,
  bytesPerWaiter: 4096,
  waiters: 100_000,
  simulation: 5_000,
  simulationLongTerm: 10_000,
  simulationRequests: 100_000,
  conservation: 0.97,
  share: 0.95,
  goodputRequests: 1_000
} as const

interface ChildOutput {
  readonly name: Name
  readonly results: ReadonlyArray<Result>
  readonly data?: unknown
  readonly seconds: number
  readonly error?: string
}

// ---------------------------------------------------------------------------
// Child mode: one benchmark, JSON on stdout
// ---------------------------------------------------------------------------

const child = async (name: Name): Promise<void> => {
  const quick = process.argv.includes("--quick")
  const t0 = performance.now()
  const mod = await import(pathToFileURL(`${here}${name}.ts`).href)
  let out: Omit<ChildOutput, "seconds">
  if (rich.has(name)) {
    const data = await mod.measure({ quick })
    out = { name, data, results: mod.toResults(data) }
  } else {
    out = { name, results: await mod.run() }
  }
  process.stdout.write(`\n@@RESULT@@${JSON.stringify({ ...out, seconds: (performance.now() - t0) / 1000 })}\n`)
  // Benchmarks may leave handles (servers, clients) behind: the parent has what it needs.
  process.exit(0)
}

const runChild = (name: Name, quick: boolean, extra: ReadonlyArray<string> = []): Promise<ChildOutput> =>
  new Promise((resolve) => {
    const args = [
      "--expose-gc",
      ...(nodeFlags[name] ?? []),
      fileURLToPath(import.meta.url),
      "--child",
      name,
      ...(quick ? ["--quick"] : []),
      ...extra
    ]
    const t0 = performance.now()
    const p = spawn(process.execPath, args, {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, BENCH_RUNNER: "1" }
    })
    let stdout = ""
    let stderr = ""
    p.stdout.on("data", (c: Buffer) => (stdout += c.toString()))
    p.stderr.on("data", (c: Buffer) => {
      stderr += c.toString()
      // Progress lines through, the rest kept for the error message.
      for (const line of c.toString().split("\n")) if (line.startsWith("[bench]")) process.stderr.write(`${line}\n`)
    })
    p.on("exit", (code) => {
      const seconds = (performance.now() - t0) / 1000
      const marker = stdout.lastIndexOf("@@RESULT@@")
      if (code === 0 && marker >= 0) {
        const parsed = JSON.parse(stdout.slice(marker + "@@RESULT@@".length)) as ChildOutput
        resolve({ ...parsed, seconds })
      } else {
        resolve({
          name,
          results: [],
          seconds,
          error: `exit ${code}: ${(stderr || stdout).trim().split("\n").slice(-6).join(" | ")}`
        })
      }
    })
  })

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

const git = (...args: Array<string>): string => {
  try {
    return execFileSync("git", args, { cwd: repoRoot, encoding: "utf8" }).trim()
  } catch {
    return "unknown"
  }
}

const machine = () => {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    commit: git("rev-parse", "--short", "HEAD"),
    dirty: git("status", "--porcelain", "--", "src", "bench").length > 0
  }
}

const pct = (x: number): string => `${(x * 100).toFixed(1)} %`
const yes = (ok: boolean): string => (ok ? "**met**" : "**NOT met**")
const reasonsOf = (r: Readonly<Record<string, number>>): string =>
  Object.entries(r).map(([k, v]) => `${k}: ${v}`).join(", ") || "-"

interface Goal {
  readonly goal: string
  readonly measured: string
  /** undefined: not measured, or (with `reduced`) measured at a reduced size and not judged. */
  readonly met: boolean | undefined
  readonly reduced?: true
}

const statusOf = (g: Goal): string =>
  g.met === undefined ? (g.reduced ? "not judged (reduced size)" : "not measured") : yes(g.met)

const ms = (x: number): string => `${fmt(x / 1000, 2)} s`

/**
 * The goals, each with the number it is judged on. `selected`: the benchmarks that were asked for (a goal
 * whose benchmark was not asked for is left out; one that was asked for and failed says so).
 */
const goalsOf = (out: ReadonlyMap<Name, ChildOutput>, selected: ReadonlySet<Name> = new Set(names)): Array<Goal> => {
  const goals: Array<Goal> = []
  const missing = (name: Name, what: string) => {
    if (selected.has(name)) {
      goals.push({ goal: what, measured: `${name} did not run: ${out.get(name)?.error ?? "skipped"}`, met: undefined })
    }
  }

  const o = out.get("overhead")?.data as Overhead | undefined
  const st = out.get("steps")?.data as Steps | undefined
  const stepsOf = (stack: string) => st?.rows.find((r) => r.stack === stack)?.steps ?? Number.NaN
  if (o?.pairs) {
    for (const p of o.pairs) {
      const steps = p.concurrency === 1 && st
        ? `; deterministic run-loop steps per call (one call at a time): full ${
          fmt(stepsOf("effect: full stack"))
        } / plain ${fmt(stepsOf("effect: plain client"))} = ${
          fmt(stepsOf("effect: full stack") / stepsOf("effect: plain client"), 2)
        }x`
        : ""
      goals.push({
        goal: `Full stack / plain client per call <= ${goal.ratio}x (concurrency ${p.concurrency}${
          p.concurrency === 50 ? ", 30 of them queued by the full stack" : ""
        }; zero-latency transport; both in one process, ${p.rounds} alternating rounds of ${
          fmt(p.callsPerRound)
        } calls, median of the ratios of the ABBA blocks)`,
        measured: `**${fmt(p.ratio, 2)}x** (full ${fmt(p.full, 1)} µs vs plain ${
          fmt(p.plain, 1)
        } µs per call; blocks' ratios ${fmt(Math.min(...p.ratios), 2)}–${fmt(Math.max(...p.ratios), 2)}); in CPU time ${
          fmt(p.cpuRatio, 2)
        }x${steps}`,
        met: p.ratio <= goal.ratio
      })
    }
  } else missing("overhead", `Full stack / plain client per call <= ${goal.ratio}x`)

  const m = out.get("memory")?.data as Memory | undefined
  if (m) {
    const w = m.waiters
    const sized = w.waiters >= goal.waiters
    goals.push({
      goal: `Heap per waiting call <= 4 KB (${fmt(goal.bytesPerWaiter)} B) with ${
        fmt(goal.waiters)
      } calls queued through the full stack`,
      measured: `**${fmt(w.heapPerWaiter)} B** heap, ${fmt(w.rssPerWaiter)} B RSS per waiting call (${
        fmt(w.waiters)
      } waiting${sized ? "" : `: fewer than the goal's ${fmt(goal.waiters)}, so not judged`}; ${
        fmt(w.heapPerWaiter * w.waiters / 2 ** 30, 2)
      } GiB in all; ${fmt(m.waitersPoliciesOff.heapPerWaiter)} B with the optional policies off)`,
      met: sized && m.gc ? w.heapPerWaiter <= goal.bytesPerWaiter : undefined,
      ...(sized ? {} : { reduced: true as const })
    })
  } else missing("memory", "Heap per waiting call <= 4 KB at 100,000 queued")

  const s = out.get("simulation")?.data as Simulation | undefined
  const head = s?.rows[0]
  if (s && head) {
    const naive = s.rows.find((r) => r.strategy.startsWith("naive"))
    const usable = !head.strategy.includes("NOT USABLE")
    const sized = head.requests >= goal.simulationRequests
    goals.push({
      goal: `Simulation >= ${fmt(goal.simulation)}x real time (24 h diurnal, ${
        fmt(goal.simulationRequests)
      } requests, the full stack as \`simulate --strategy resilient\` runs it); long-term goal ${
        fmt(goal.simulationLongTerm)
      }x`,
      measured: `**${fmt(head.ratio)}x** (${fmt(head.requests)} requests in ${
        fmt(head.virtualMs / 3_600_000, 1)
      } h virtual, ${fmt(head.wallMs / 1000, 1)} s wall, ${fmt(head.usPerRequest)} µs/request)${
        naive
          ? `; no stack (naive) in the same run: ${fmt(naive.ratio)}x, ${
            fmt(naive.usPerRequest)
          } µs/request, so the stack's own share is ${fmt(head.usPerRequest - naive.usPerRequest)} µs/request`
          : ""
      }; long-term ${fmt(goal.simulationLongTerm)}x: ${head.ratio >= goal.simulationLongTerm ? "met" : "not met"}${
        sized ? "" : `; fewer than ${fmt(goal.simulationRequests)} requests, so not judged`
      }`,
      met: sized ? usable && head.ratio >= goal.simulation : undefined,
      ...(sized ? {} : { reduced: true as const })
    })
  } else missing("simulation", `Simulation >= ${fmt(goal.simulation)}x real time`)

  const g = out.get("goodput")?.data as Goodput | undefined
  if (g) {
    for (const client of g.ours) {
      const runs = g.rows.filter((r) => r.client === client && r.scenario === "chaos" && r.conservation !== undefined)
      if (runs.length === 0) continue
      const shares = runs.map((r) => r.conservation!.share)
      const share = median(shares)
      const settings = client === "resilient" ? "defaults" : "batch settings of docs/retries.md"
      goals.push({
        goal: `Work conservation under chaos: while a call waits in the queue, permits in use >= ${
          pct(goal.conservation)
        } of the current limit (${settings}; ${fmt(g.requests)} requests at once; median of ${runs.length} run(s))`,
        measured: `**${pct(share)}** (runs: ${shares.map(pct).join(", ")}; time with a queue ${
          runs.map((r) => ms(r.conservation!.queuedMs)).join(", ")
        }). Not goals: attempts on the wire while calls wait ${
          runs.map((r) => (r.conservation!.wireShare === undefined ? "-" : pct(r.conservation!.wireShare))).join(", ")
        } of the limit; the retry tail after the queue emptied ${
          runs.map((r) => ms(r.conservation!.tailMs)).join(", ")
        } (the backoff policy's), throughput ${runs.map((r) => pct(r.share)).join(", ")} of the bound`,
        met: share >= goal.conservation
      })
    }
    for (const client of g.ours) {
      const ours = g.rows.filter((r) => r.client === client && r.scenario === "clean")
      if (ours.length === 0) continue
      const share = median(ours.map((r) => r.share))
      const ceiling = g.rows.find((r) => r.client.startsWith("reference") && r.scenario === "clean")
      const settings = client === "resilient" ? "defaults" : "batch settings of docs/retries.md"
      goals.push({
        goal: `Clean goodput >= ${pct(goal.share)} of the bound (${settings}; ${
          fmt(g.requests)
        } Flash requests at once, pro; median of ${ours.length} run(s))`,
        measured: `**${pct(share)}** (runs: ${ours.map((r) => pct(r.share)).join(", ")}); ${
          ours.map((r) => r.completed).join(", ")
        } of ${g.requests} completed${ceiling ? ` (harness ceiling, 20 bare workers: ${pct(ceiling.share)})` : ""}${
          g.requests < goal.goodputRequests ? `; fewer than ${fmt(goal.goodputRequests)} requests, so not judged` : ""
        }`,
        met: g.requests >= goal.goodputRequests ? share >= goal.share : undefined,
        ...(g.requests >= goal.goodputRequests ? {} : { reduced: true as const })
      })
    }
    for (const scenario of ["clean", "chaos"] as const) {
      const ours = g.rows.filter((r) => g.ours.includes(r.client) && r.scenario === scenario)
      if (ours.length === 0) continue
      const total = ours.reduce((a, r) => a + r.tooManyConcurrent, 0)
      goals.push({
        goal: `Zero concurrency 429s for our stack (${scenario}, ${fmt(g.requests)} Flash requests at once, pro)`,
        measured: `${total} \`too_many_concurrent_requests\` over ${ours.length} run(s) (server count); max in flight ${
          Math.max(...ours.map((r) => r.maxInFlight))
        }/${g.limit}`,
        met: total === 0
      })
    }
  } else missing("goodput", "Goodput goals (work conservation, clean goodput, zero concurrency 429s)")

  const h = out.get("heap")?.data as Heap | undefined
  if (h) {
    goals.push({
      goal: `Heap flat over ${
        fmt(h.calls)
      } calls through the full stack, after a ${h.warmupSeconds} s warm-up (growth < 1 MB per 100k calls)`,
      measured: `slope ${fmt(h.slopePer100k / 1e6, 2)} MB/100k calls; heap after GC within a ${
        fmt(h.band / 1e6, 1)
      } MB band`,
      // A falling heap is not a leak: only growth counts against the goal.
      met: h.gc && h.calls >= 100_000 ? h.slopePer100k < 1e6 : undefined,
      ...(h.calls >= 100_000 ? {} : { reduced: true as const })
    })
  } else missing("heap", "Heap flatness goal")
  return goals
}

const render = (
  out: ReadonlyMap<Name, ChildOutput>,
  quick: boolean,
  totalSeconds: number,
  selected: ReadonlySet<Name>
): string => {
  const mc = machine()
  const lines: Array<string> = []
  const p = (s = "") => lines.push(s)
  p("# Benchmarks")
  p()
  p("Written by `npm run bench` (bench/run.ts); do not edit by hand — rerun it. How to run and what each")
  p("benchmark measures: [docs/benchmarks.md](docs/benchmarks.md).")
  p()
  if (quick) {
    p("> **Quick mode** (`--quick`): reduced sizes; the numbers are rough and the size-dependent goals are not judged.\n")
  }
  p("## Machine and run")
  p()
  p(table(["", ""], [
    ["CPU", `${mc.cpu} (${mc.cores} cores, shared machine)`],
    ["Memory", `${mc.memoryGiB} GiB`],
    ["OS", mc.os],
    ["Node", mc.node],
    ["Date", mc.date],
    ["Commit", `${mc.commit}${mc.dirty ? " (with uncommitted changes in src/ or bench/)" : ""}`],
    ["Total wall time", `${fmt(totalSeconds, 0)} s`]
  ]))
  p()
  p("Commands (from a fresh clone, after `npm ci`):")
  p()
  p("```")
  p(`npm run bench${quick ? " -- --quick" : ""}            # = node bench/run.ts: every benchmark, then this file`)
  p("# each benchmark runs in its own child process:")
  for (const n of names) {
    p(`node --expose-gc ${(nodeFlags[n] ?? []).map((f) => `${f} `).join("")}bench/run.ts --child ${n}${
      quick ? " --quick" : ""
    }`)
  }
  p("```")
  p()
  p("Absolute times on this shared machine are noisy: each number is a median of several runs where noted,")
  p("and comparisons are ratios measured in the same run.")
  p()
  p("## Goals")
  p()
  p("Each goal measures something a user of the stack feels: what the stack adds to a call compared with the plain")
  p("client, what a queued call costs in memory, how fast a simulated day runs, and whether the limiter keeps every")
  p("permit busy while calls wait. cockatiel, p-queue + opossum and the official SDK are in the tables below for")
  p("context; they are not goals (a policy on Effect's runtime cannot be as cheap as one on bare promises, like for like:")
  p("see docs/benchmarks.md).")
  p()
  const goals = goalsOf(out, selected)
  p(table(["Goal", "Measured (this run)", "Status"], goals.map((g) => [g.goal, g.measured, statusOf(g)])))
  p()
  const missed = goals.filter((g) => g.met === false).length
  p(
    missed === 0
      ? "Every measured goal is met in this run."
      : `${missed} of ${goals.length} goals are **not met** in this run (see above; nothing is hidden).`
  )
  p()

  const g = out.get("goodput")?.data as Goodput | undefined
  p("## 1-2. Goodput at the plan limit, real HTTP")
  p()
  if (g) {
    p(`${
      fmt(g.requests)
    } Flash TTS requests (${100} characters each, all distinct) released at once against the simulator's HTTP`)
    p(`server on plan \`pro\` (Flash pool limit ${g.limit}), run in a child process (\`src/cli/main.ts simulator --port 0\`).`)
    p("Before each client: `POST /_simulator/reset` and fresh credits; the 429s and attempts are the server's")
    p("(`GET /_simulator/stats`). Chaos adds 10 % `system_busy` and 2 % 5xx (1 % 500 JSON, 1 % 503 HTML).")
    p()
    p(`**Bound** = limit / mean service time. The service time is each client's own successful answers' \`tts-latency-ms\``)
    p(`(the server's time to headers = its slot-holding time; the small body follows at once). The latency model says`)
    p(`${g.modelServiceMs} ms on average (Flash: 75 ms + 1 ms per character, +/-20 % noise), i.e. ${
      fmt(g.limit / (g.modelServiceMs / 1000), 1)
    }/s.`)
    p("Throughput = completed / wall time from the release to the last answer (a tail of retried requests counts).")
    p()
    for (const scenario of ["clean", "chaos"] as const) {
      const rows = g.rows.filter((r) => r.scenario === scenario)
      if (rows.length === 0) continue
      p(`**${scenario}**`)
      p()
      p(table(
        [
          "client",
          "completed",
          "failed (by reason)",
          "429 concurrency",
          "429 system_busy",
          "5xx",
          "attempts",
          "max in flight",
          "wall",
          "throughput",
          "service",
          "bound",
          "share"
        ],
        rows.map((r) => [
          g.ours.includes(r.client) ? `${r.client} #${r.run}` : r.client,
          `${r.completed}/${r.requests}`,
          r.failed === 0 ? "0" : `${r.failed} (${reasonsOf(r.failedByReason)})`,
          r.tooManyConcurrent,
          r.systemBusy,
          r.http5xx,
          r.attempts,
          `${r.maxInFlight}/${g.limit}`,
          `${fmt(r.wallMs / 1000, 2)} s`,
          `${r.throughput}/s`,
          `${r.meanServiceMs} ms`,
          `${r.bound}/s`,
          pct(r.share)
        ])
      ))
      p()
      for (const r of rows) {
        if (r.note !== undefined && r.conservation === undefined) p(`${r.client} #${r.run}: ${r.note}.`)
      }
    }
    const cons = g.rows.filter((r) => r.conservation !== undefined)
    if (cons.length > 0) {
      p("**Work conservation** (our clients; the goal is judged under chaos). Our client's limiter is sampled every 2 ms during")
      p("the burst. While at least one call waits in its queue, the permits in use as a share of the limit at that moment,")
      p("time-weighted: a permit left idle while a call waits is lost throughput that no backoff explains. The tail is the")
      p("time from the last moment a call waited to the last answer: the calls still retrying then sleep their backoff, which")
      p("is the retry policy's choice (`system_busy` asks for it), not the limiter's. The throughput share above includes that tail.")
      p("The limiter hands a released permit to the next waiter synchronously, so its share is 100 % unless a permit is held back")
      p("(a regression this goal catches). \"On the wire\" counts the TTS attempts between sending and the response headers, through")
      p("the `HttpClient` under the stack: the server's view. The gap between the two is the client's own work inside a permit")
      p("(building the request before sending, reading the body and releasing after the headers); it is reported, not a goal.")
      p()
      p(table(
        [
          "client",
          "scenario",
          "permits in use while calls wait",
          "attempts on the wire while calls wait",
          "time with a queue",
          "tail after the queue emptied",
          "permits in use / on the wire, whole burst",
          "lowest limit"
        ],
        cons.map((r) => [
          `${r.client} #${r.run}`,
          r.scenario,
          pct(r.conservation!.share),
          r.conservation!.wireShare === undefined ? "-" : pct(r.conservation!.wireShare),
          ms(r.conservation!.queuedMs),
          ms(r.conservation!.tailMs),
          `${fmt(r.conservation!.meanInFlight, 1)} / ${
            r.conservation!.meanOnWire === undefined ? "-" : fmt(r.conservation!.meanOnWire, 1)
          } of ${g.limit}`,
          r.conservation!.minLimit
        ])
      ))
      p()
    }
    p(
      "Clients: " + [...new Map(
        g.rows.filter((r) => !r.client.startsWith("reference")).map((r) => [r.client, r.description])
      ).entries()].map(([c, d]) => `\`${c}\` — ${d}`).join("; ") + "."
    )
    p("`reference: 20 workers` is not a contender but the harness's ceiling: exactly 20 plain `fetch` workers, each taking the")
    p("next request the moment a body ends, failures retried at once — what this machine, loopback and the simulator allow.")
    p("The rate-limits guide's queue is sized 10 from its table's Pro row although the Flash pool is 20, as the guide writes it;")
    p("their per-retry `console.warn` and per-error `console.error` are replaced by counters.")
  } else p(`Not run: ${out.get("goodput")?.error ?? "skipped"}`)
  p()

  const o = out.get("overhead")?.data as Overhead | undefined
  p("## 3. Overhead per call")
  p()
  if (o) {
    p("**The goal's measurement.** The plain client (this library's `ElevenLabs` client, no policies) and the full stack")
    p("(`Resilient.layer`: validate, coalesce, quota, deadline, retry + budget, breaker, limiter, metrics, spans) are built once")
    p("each in one process, over the same zero-latency `HttpClient` (a Web `Response` of 1 KiB audio and the concurrency headers,")
    p("at once), warmed, and then run in alternating rounds (plain then full, full then plain, ...), so that whatever the shared")
    p("machine does hits both. The ratio is taken per ABBA block (two rounds of each, each side once first and once second); the")
    p("goal is judged on the median of those ratios. Rounds hold thousands of calls: a young-generation collection comes every")
    p("~65 ms and takes 10-12 ms here, so a shorter round either holds one or not and its time is bimodal (docs/benchmarks.md).")
    p()
    if (o.pairs) {
      p(table(
        [
          "concurrency",
          "rounds x calls",
          "plain client µs/call",
          "full stack µs/call",
          "full - plain µs",
          "full / plain (median of blocks)",
          "blocks' ratios",
          "CPU µs/call, plain / full",
          "full / plain in CPU time"
        ],
        o.pairs.map((pr) => [
          pr.concurrency,
          `${pr.rounds} x ${fmt(pr.callsPerRound)}`,
          fmt(pr.plain, 1),
          fmt(pr.full, 1),
          fmt(pr.full - pr.plain, 1),
          `**${fmt(pr.ratio, 2)}x**`,
          `${fmt(Math.min(...pr.ratios), 2)}–${fmt(Math.max(...pr.ratios), 2)}`,
          `${fmt(pr.plainCpu, 1)} / ${fmt(pr.fullCpu, 1)}`,
          `${fmt(pr.cpuRatio, 2)}x`
        ])
      ))
      p()
      p("CPU time is this process's user + system time over the same rounds (V8's GC threads included): other processes on a")
      p("shared machine move it much less than wall time, so it is shown as a cross-check. The goal is judged on wall time.")
      p()
      p(
        "Rounds (µs/call, plain / full): " + o.pairs.map((pr) =>
          `c=${pr.concurrency}: ${pr.plainRuns.map((x, i) => `${x}/${pr.fullRuns[i]}`).join(", ")}`
        ).join("; ") + "."
      )
      p()
    }
    p(`**For context (not goals).** The anchors (cockatiel: retry + breaker + bulkhead via \`wrap\`; p-queue concurrency 20 + opossum`)
    p("defaults) and `bare` call `() => Promise.resolve(bytes)`; `same policies` is this library's limiter (pool of 20), retry policy")
    p("and breaker (5 consecutive) around `Effect.succeed(bytes)`, as cockatiel's three policies are around `Promise.resolve(bytes)`.")
    p(`Median of ${o.runs} runs of ${
      fmt(o.n)
    } calls each, interleaved run by run; the plain client and full stack rows are the rounds above.`)
    p()
    const base = (c: number, name: string) =>
      o.rows.find((r) => r.concurrency === c && r.contender === name)?.us ?? Number.NaN
    p(table(
      ["contender", "c=1 µs/call", "c=1 ratio to full stack", "c=50 µs/call", "c=50 ratio to full stack"],
      [
        ...new Set(o.rows.map((r) => r.contender))
      ].map((name) => [
        name,
        fmt(base(1, name), 2),
        `${fmt(base(1, "effect: full stack") / base(1, name), 1)}x`,
        fmt(base(50, name), 2),
        `${fmt(base(50, "effect: full stack") / base(50, name), 1)}x`
      ])
    ))
    p()
    const g2 = out.get("goodput")?.data as Goodput | undefined
    const serviceMs = g2?.modelServiceMs ?? 175
    p(`In context: the full stack's ${fmt(base(50, "effect: full stack"), 0)} µs per call (c=50) is ${
      fmt(base(50, "effect: full stack") / (serviceMs * 10), 2)
    } % of the ${serviceMs} ms mean service time of a 100-character Flash request, and caps one core at about ${
      fmt(1e6 / base(50, "effect: full stack"), 0)
    } calls/s.`)
    p()
    p(
      "Anchor runs (µs/call): " + o.rows.filter((r) =>
        !r.contender.startsWith("effect: plain") && !r.contender.startsWith("effect: full")
      ).map((r) =>
        `${r.contender} c=${r.concurrency}: ${r.runs.join(", ")}`
      ).join("; ") + "."
    )
  } else p(`Not run: ${out.get("overhead")?.error ?? "skipped"}`)
  p()
  const st = out.get("steps")?.data as Steps | undefined
  p("### Run-loop steps per call")
  p()
  if (st) {
    p("The one cost figure machine noise cannot move (bench/steps.ts). Effect's run loop asks the fiber's `Scheduler` (a public")
    p("`Context.Reference`) `shouldYield` once per primitive it evaluates; a scheduler that counts those calls and otherwise decides")
    p("as the default one does counts the steps, with nothing under node_modules changed. Both stacks are built under it (their")
    p(`start-up fibers count too), warmed with 200 calls, then measured over rounds of ${
      fmt(st.calls)
    } sequential calls over the zero-latency`)
    p("transport. Equal rounds mean the count is exact. Dispatcher tasks are fibers started later and yields; fibers come from the fiber ids.")
    p()
    p(table(
      ["stack", "run-loop steps per call", "rounds", "dispatcher tasks per call", "fibers started per call"],
      st.rows.map((r) => [
        r.stack,
        fmt(r.steps, r.steps % 1 === 0 ? 0 : 2),
        r.rounds.join(", "),
        fmt(r.tasks, 2),
        fmt(r.fibers, 2)
      ])
    ))
    const plain = st.rows.find((r) => r.stack === "effect: plain client")
    const full = st.rows.find((r) => r.stack === "effect: full stack")
    if (plain && full) {
      p()
      p(`Full stack / plain client: ${fmt(full.steps / plain.steps, 2)}x the steps (${
        fmt(full.steps - plain.steps)
      } steps more per call). A step costs`)
      p("0.15 to 0.75 µs depending on what it does (docs/simulation-performance.md), so the step ratio and the time ratio differ.")
    }
  } else p(`Not run: ${out.get("steps")?.error ?? "skipped"}`)
  p()

  const m = out.get("memory")?.data as Memory | undefined
  const lim = out.get("limiter")
  p("## 4. Memory")
  p()
  if (lim && lim.results.length > 0) {
    p("The limiter alone (bench/limiter.ts):")
    p()
    p(table(
      ["benchmark", "value", "note"],
      lim.results.map((r) => [r.name, `${fmt(r.value, r.value < 10 ? 3 : 0)} ${r.unit}`, r.note ?? ""])
    ))
    p()
  } else p(`bench/limiter.ts: ${lim?.error ?? "not present"}\n`)
  if (m) {
    p(`The full stack: ${
      fmt(m.waiters.waiters)
    } calls at once over a transport whose TTS answers never come (20 hold the Flash`)
    p(`permits, the rest queue): **${fmt(m.waiters.heapPerWaiter)} B heap** and ${
      fmt(m.waiters.rssPerWaiter)
    } B RSS per waiting call, ${fmt(m.waiters.heapPerWaiter * m.waiters.waiters / 2 ** 30, 2)} GiB of heap`)
    p(`in all (goal: ${fmt(goal.bytesPerWaiter)} B, i.e. ${
      fmt(goal.bytesPerWaiter * goal.waiters / 2 ** 30, 2)
    } GiB for ${fmt(goal.waiters)}). Enqueued in ${
      fmt(m.waiters.enqueueMs)
    } ms; after interrupting every caller the limiter is ${m.waiters.drainedClean ? "empty" : "NOT empty"}.`)
    p(`With coalescing, quota, breaker, retry and budget switched off (client, limiter, deadline and telemetry left):`)
    p(`${fmt(m.waitersPoliciesOff.heapPerWaiter)} B heap per waiting call (${
      fmt(m.waitersPoliciesOff.waiters)
    } waiting; its RSS says nothing, since it reuses the heap the first run grew). A waiting call holds its fiber, its spans, its deadline, its`)
    p("request, its quota reservation and its coalescing entry besides the limiter's waiter.")
    p(`The child runs with V8's heap limit at ${
      m.heapLimitMb === undefined ? "its default" : `${fmt(m.heapLimitMb)} MB`
    } (\`${(nodeFlags.memory ?? []).join(" ")}\`), so that it survives the waiters at today's size.`)
    if (!m.gc) p("\n(No `--expose-gc`: the numbers include garbage.)")
  } else p(`Full stack: ${out.get("memory")?.error ?? "skipped"}`)
  p()
  const h = out.get("heap")?.data as Heap | undefined
  if (h) {
    p(`Heap after a full GC while ${
      fmt(h.calls)
    } calls go through the full stack (bench/heap.ts, its own process; zero-latency`)
    p(`transport, concurrency 50, ${fmt(h.usPerCall, 0)} µs/call in this run), after ${
      fmt(h.warmupCalls)
    } warm-up calls in ${h.warmupSeconds} s. The warm-up is`)
    p("longer than the retry budget's 10-second window (which counts in slices of 100 ms, so it does not grow with the call")
    p("rate) and long enough for the JIT to settle. The heap at the end of")
    p(`the warm-up (${
      fmt(h.warmupHeap / 1e6, 1)
    } MB, the first row) is not fitted either: it is the noisiest point, and at one end`)
    p("of the line it alone can set the sign of the slope.")
    p()
    p(table(
      ["calls after the warm-up", "heap used after GC"],
      [[0, h.warmupHeap] as const, ...h.points].map(([c, b]) => [fmt(c), `${fmt(b / 1e6, 1)} MB`])
    ))
    p()
    p(`Least-squares slope through the 10 checkpoints (every row but the first): **${
      fmt(h.slopePer100k / 1e6, 2)
    } MB per 100,000 calls**.`)
    p("1,000,000 calls (`node --expose-gc bench/heap.ts --long`) are not part of `npm run bench`: at the measured cost per")
    p("call they alone take about 5 minutes, which with the rest leaves no margin in the 10-minute budget. One such run is recorded")
    p("in docs/benchmarks.md.")
    if (!h.gc) p("\n(No `--expose-gc`: the numbers include garbage.)")
  } else p(`Heap flatness: ${out.get("heap")?.error ?? "skipped"}`)
  p()

  const s = out.get("simulation")?.data as Simulation | undefined
  p("## 5. Simulation speed")
  p()
  if (s) {
    if (quick) {
      p("Quick mode: a tenth of the requests in a tenth of the day (the same arrival rate); the direct driver runs 2,000 requests.\n")
    }
    p("A 24-hour `diurnal` day (plan `pro`, Multilingual, 100-1000 characters, 20 % interactive) in virtual time against")
    p("the in-process simulator. The headline row is `resilient (Runner.run)`: what `simulate --pattern diurnal --duration 24h`")
    p("runs (the full stack with the config defaults, tracing off, the report from the recorder). `naive` is the same runner")
    p("with plain HTTP attempts: the simulator's and the runner's own cost. `direct driver`: `Resilient.layer` over")
    p("`InProcess.layerSimulated` with their defaults (tracing on, transport spans), as an application test drives it.")
    p()
    p(table(
      [
        "driver / strategy",
        "requests",
        "ok",
        "failed",
        "virtual",
        "wall",
        "µs/request",
        "virtual/wall",
        "max in flight",
        "429 concurrency"
      ],
      s.rows.map((r) => [
        r.strategy,
        fmt(r.requests),
        fmt(r.succeeded),
        fmt(r.failed),
        `${fmt(r.virtualMs / 3_600_000, 2)} h`,
        `${fmt(r.wallMs / 1000, 1)} s`,
        fmt(r.usPerRequest, 0),
        `${fmt(r.ratio, 0)}x`,
        `${r.maxInFlight}/${r.limit}`,
        r.tooManyConcurrent
      ])
    ))
    p()
    p(`For ${fmt(goal.simulation)}x on a 24-hour day, 100,000 requests must cost under ${
      fmt(86_400_000_000 / goal.simulation / 100_000)
    } µs of wall time each (stack + simulator + runner);`)
    p(`for the long-term ${fmt(goal.simulationLongTerm)}x, under ${
      fmt(86_400_000_000 / goal.simulationLongTerm / 100_000)
    } µs. The naive row is what the simulator and the runner cost alone, in the same run.`)
  } else p(`Not run: ${out.get("simulation")?.error ?? "skipped"}`)
  p()

  const d = out.get("distributed")
  p("## 6. Distributed (Redis)")
  p()
  if (d && d.results.length > 0) {
    p("bench/distributed.ts, against a real `redis-server` on loopback:")
    p()
    p(table(
      ["benchmark", "value", "note"],
      d.results.map((r) => [r.name, `${fmt(r.value, r.value < 10 ? 3 : 1)} ${r.unit}`, r.note ?? ""])
    ))
  } else p(d?.error ? `Failed: ${d.error}` : "bench/distributed.ts is not present in this checkout.")
  p()
  p("## Wall time per benchmark")
  p()
  p(table(["benchmark", "seconds"], [...out.values()].map((c) => [c.name, fmt(c.seconds, 1)])))
  p()
  return lines.join("\n")
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

const main = async () => {
  const argv = process.argv.slice(2)
  const childAt = argv.indexOf("--child")
  if (childAt >= 0 && process.env["BENCH_RUNNER"] === "1") return child(argv[childAt + 1] as Name)
  const quick = argv.includes("--quick")
  const onlyAt = argv.indexOf("--only")
  // `--child NAME` typed by hand: that one, printed, BENCHMARKS.md untouched; other arguments go to the child.
  const only = childAt >= 0
    ? new Set([argv[childAt + 1] ?? ""])
    : onlyAt >= 0
    ? new Set((argv[onlyAt + 1] ?? "").split(","))
    : undefined
  const extra = childAt >= 0
    ? argv.filter((a, i) =>
      i !== childAt && i !== childAt + 1 && a !== "--quick" && a !== "--out" && argv[i - 1] !== "--out"
    )
    : []
  for (const n of only ?? []) {
    if (!(names as ReadonlyArray<string>).includes(n)) {
      console.error(`unknown benchmark "${n}"; known: ${names.join(", ")}`)
      process.exit(2)
    }
  }
  const selected = names.filter((n) => (only === undefined || only.has(n)) && existsSync(`${here}${n}.ts`))
  const outAt = argv.indexOf("--out")
  const outPath = outAt >= 0 ? argv[outAt + 1] : undefined
  const write = outPath !== undefined ||
    (childAt < 0 && !argv.includes("--no-write") && (only === undefined || argv.includes("--write")))
  const t0 = performance.now()
  const out = new Map<Name, ChildOutput>()
  for (const name of selected) {
    progress(`${name}: starting${quick ? " (quick)" : ""}`)
    const result = await runChild(name, quick, extra)
    out.set(name, result)
    progress(`${name}: ${result.error ? `FAILED ${result.error}` : "done"} in ${result.seconds.toFixed(1)} s`)
  }
  const total = (performance.now() - t0) / 1000
  const rows = [...out.values()].flatMap((c) =>
    c.error
      ? [[c.name, "FAILED", c.error.slice(0, 100)]]
      : c.results.map((r) => [r.name, `${fmt(r.value, Math.abs(r.value) < 10 ? 3 : 1)} ${r.unit}`, r.note ?? ""])
  )
  console.log(table(["benchmark", "value", "note"], rows))
  console.log()
  for (const goal of goalsOf(out, new Set(selected))) {
    console.log(
      `${
        goal.met === undefined ? (goal.reduced ? "reduced" : "?      ") : goal.met ? "met    " : "NOT MET"
      }  ${goal.goal}: ${goal.measured.replaceAll("**", "")}`
    )
  }
  const st = out.get("steps")?.data as Steps | undefined
  const stepsAt = (stack: string) => st?.rows.find((r) => r.stack === stack)?.steps ?? Number.NaN
  if (st) {
    const f = (x: number) => fmt(x, Number.isInteger(x) ? 0 : 2)
    console.log(
      `info     Run-loop steps per call (deterministic, no goal): full ${f(stepsAt("effect: full stack"))} / plain ${
        f(stepsAt("effect: plain client"))
      } = ${fmt(stepsAt("effect: full stack") / stepsAt("effect: plain client"), 2)}x`
    )
  }
  console.log(`\ntotal ${total.toFixed(0)} s${quick ? " (quick mode: reduced sizes, rough numbers)" : ""}`)
  if (write) {
    const path = outPath ?? `${repoRoot}BENCHMARKS.md`
    writeFileSync(path, render(out, quick, total, new Set(selected)))
    console.log(`${outPath ?? "BENCHMARKS.md"} written`)
  }
}

await main()
