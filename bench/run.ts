/**
 * The benchmark runner: runs every benchmark in bench/, each in its own
 * child process (`node --expose-gc bench/run.ts --child <name>`, so memory
 * numbers are exact and one benchmark's heap and JIT state do not leak into
 * the next), prints a table and rewrites BENCHMARKS.md with the machine, the
 * Node version, the date, the exact commands and the goals next to the numbers.
 *
 * Usage: `node bench/run.ts [--quick] [--only goodput,overhead,...] [--no-write]`
 * - `--quick`: reduced sizes (a check that everything runs; numbers are rough).
 * - `--only`: a subset (BENCHMARKS.md is then not rewritten unless `--write`).
 * - `--no-write`: print only.
 */
import { execFileSync, spawn } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { Goodput } from "./goodput.ts"
import { fmt, median, progress, type Result, table } from "./lib.ts"
import type { Heap } from "./heap.ts"
import type { Memory } from "./memory.ts"
import type { Overhead } from "./overhead.ts"
import type { Simulation } from "./simulation.ts"

const here = fileURLToPath(new URL(".", import.meta.url))
const repoRoot = fileURLToPath(new URL("..", import.meta.url))

/** Every benchmark, in run order (CPU-sensitive ones first, on a quiet machine). */
const names = ["overhead", "limiter", "memory", "heap", "simulation", "goodput", "distributed"] as const
type Name = (typeof names)[number]
/** Ours return rich data (`measure`); the others only `run(): Result[]`. */
const rich: ReadonlySet<Name> = new Set(["overhead", "memory", "heap", "simulation", "goodput"])

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

const runChild = (name: Name, quick: boolean): Promise<ChildOutput> =>
  new Promise((resolve) => {
    const args = ["--expose-gc", fileURLToPath(import.meta.url), "--child", name, ...(quick ? ["--quick"] : [])]
    const t0 = performance.now()
    const p = spawn(process.execPath, args, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] })
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
        resolve({ name, results: [], seconds, error: `exit ${code}: ${(stderr || stdout).trim().split("\n").slice(-6).join(" | ")}` })
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
  readonly met: boolean | undefined
}

const goalsOf = (out: ReadonlyMap<Name, ChildOutput>): Array<Goal> => {
  const goals: Array<Goal> = []
  const g = out.get("goodput")?.data as Goodput | undefined
  if (g) {
    for (const scenario of ["clean", "chaos"] as const) {
      const ours = g.rows.filter((r) => g.ours.includes(r.client) && r.scenario === scenario)
      if (ours.length === 0) continue
      const total = ours.reduce((a, r) => a + r.tooManyConcurrent, 0)
      goals.push({
        goal: `Zero concurrency 429s for our stack (${scenario}, ${g.requests} Flash requests at once, pro)`,
        measured: `${total} \`too_many_concurrent_requests\` over ${ours.length} run(s) (server count); max in flight ${
          Math.max(...ours.map((r) => r.maxInFlight))
        }/${g.limit}`,
        met: total === 0
      })
    }
    for (const [scenario, client] of (["clean", "chaos"] as const).flatMap((s) => g.ours.map((c) => [s, c] as const))) {
      const ours = g.rows.filter((r) => r.client === client && r.scenario === scenario)
      if (ours.length === 0) continue
      const share = median(ours.map((r) => r.share))
      const ceiling = g.rows.find((r) => r.client.startsWith("reference") && r.scenario === scenario)
      const settings = client === "resilient" ? "defaults" : "batch settings of docs/retries.md"
      goals.push({
        goal: `Throughput >= 95 % of the bound (${scenario}, ${settings}; median of ${ours.length} runs)`,
        measured: `${pct(share)} (runs: ${ours.map((r) => pct(r.share)).join(", ")}); ${
          ours.map((r) => r.completed).join(", ")
        } of ${g.requests} completed${ceiling ? ` (harness ceiling, 20 bare workers: ${pct(ceiling.share)})` : ""}`,
        met: share >= 0.95
      })
    }
  } else goals.push({ goal: "Goodput goals", measured: "goodput did not run", met: undefined })
  const o = out.get("overhead")?.data as Overhead | undefined
  if (o) {
    for (const c of [1, 50]) {
      const us = (name: string) => o.rows.find((r) => r.contender === name && r.concurrency === c)?.us ?? Number.NaN
      const lightest = Math.min(us("cockatiel"), us("p-queue + opossum"))
      const lightestName = us("cockatiel") <= us("p-queue + opossum") ? "cockatiel" : "p-queue + opossum"
      const full = us("effect: full stack")
      const policies = full - us("effect: plain client")
      const same = us("effect: same policies")
      goals.push({
        goal: `Overhead per call no worse than the lightest alternative (concurrency ${c}; like for like: limiter + retry + breaker)`,
        measured: `same policies ${fmt(same, 2)} µs vs ${lightestName} ${fmt(lightest, 2)} µs = ${fmt(same / lightest, 1)}x`,
        met: same <= lightest
      })
      goals.push({
        goal: `Overhead per call no worse than the lightest alternative (concurrency ${c}; the full stack with client and telemetry)`,
        measured: `full stack ${fmt(full, 1)} µs vs ${lightestName} ${fmt(lightest, 2)} µs = ${fmt(full / lightest, 0)}x; policies alone (full - plain client) ${
          fmt(policies, 1)
        } µs = ${fmt(policies / lightest, 0)}x`,
        met: full <= lightest
      })
    }
  } else goals.push({ goal: "Overhead goal", measured: "overhead did not run", met: undefined })
  const s = out.get("simulation")?.data as Simulation | undefined
  const head = s?.rows[0]
  if (head) {
    goals.push({
      goal: "Simulation faster than 10,000x real time (24 h diurnal, >= 100,000 requests, full stack as `simulate` runs it)",
      measured: `${fmt(head.ratio, 0)}x (${fmt(head.requests)} requests, ${fmt(head.wallMs / 1000, 1)} s wall, ${fmt(head.usPerRequest, 0)} µs/request)`,
      met: head.ratio > 10_000 && head.requests >= 100_000 && !head.strategy.includes("NOT USABLE")
    })
  } else goals.push({ goal: "Simulation goal", measured: "simulation did not run", met: undefined })
  const h = out.get("heap")?.data as Heap | undefined
  if (h) {
    goals.push({
      goal: `Heap flat over ${fmt(h.calls)} calls through the full stack, after a ${h.warmupSeconds} s warm-up (growth < 1 MB per 100k calls)`,
      measured: `slope ${fmt(h.slopePer100k / 1e6, 2)} MB/100k calls; heap after GC within a ${fmt(h.band / 1e6, 1)} MB band`,
      // A falling heap is not a leak: only growth counts against the goal.
      met: h.gc ? h.slopePer100k < 1e6 : undefined
    })
  } else goals.push({ goal: "Heap flatness goal", measured: "heap did not run", met: undefined })
  return goals
}

const render = (out: ReadonlyMap<Name, ChildOutput>, quick: boolean, totalSeconds: number): string => {
  const mc = machine()
  const lines: Array<string> = []
  const p = (s = "") => lines.push(s)
  p("# Benchmarks")
  p()
  p("Written by `npm run bench` (bench/run.ts); do not edit by hand — rerun it. How to run and what each")
  p("benchmark measures: [docs/benchmarks.md](docs/benchmarks.md).")
  p()
  if (quick) p("> **Quick mode** (`--quick`): reduced sizes; the numbers are rough and the size-dependent goals cannot be met.\n")
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
  for (const n of names) p(`node --expose-gc bench/run.ts --child ${n}${quick ? " --quick" : ""}`)
  p("```")
  p()
  p("Absolute times on this shared machine are noisy: each number is a median of several runs where noted,")
  p("and comparisons are ratios measured in the same run.")
  p()
  p("## Goals")
  p()
  const goals = goalsOf(out)
  p(table(["Goal", "Measured (this run)", "Status"], goals.map((g) => [g.goal, g.measured, g.met === undefined ? "not measured" : yes(g.met)])))
  p()
  const missed = goals.filter((g) => g.met === false).length
  p(missed === 0 ? "Every measured goal is met in this run." : `${missed} of ${goals.length} goals are **not met** in this run (see above; nothing is hidden).`)
  p()

  const g = out.get("goodput")?.data as Goodput | undefined
  p("## 1-2. Goodput at the plan limit, real HTTP")
  p()
  if (g) {
    p(`${fmt(g.requests)} Flash TTS requests (${100} characters each, all distinct) released at once against the simulator's HTTP`)
    p(`server on plan \`pro\` (Flash pool limit ${g.limit}), run in a child process (\`src/cli/main.ts simulator --port 0\`).`)
    p("Before each client: `POST /_simulator/reset` and fresh credits; the 429s and attempts are the server's")
    p("(`GET /_simulator/stats`). Chaos adds 10 % `system_busy` and 2 % 5xx (1 % 500 JSON, 1 % 503 HTML).")
    p()
    p(`**Bound** = limit / mean service time. The service time is each client's own successful answers' \`tts-latency-ms\``)
    p(`(the server's time to headers = its slot-holding time; the small body follows at once). The latency model says`)
    p(`${g.modelServiceMs} ms on average (Flash: 75 ms + 1 ms per character, +/-20 % noise), i.e. ${fmt(g.limit / (g.modelServiceMs / 1000), 1)}/s.`)
    p("Throughput = completed / wall time from the release to the last answer (a tail of retried requests counts).")
    p()
    for (const scenario of ["clean", "chaos"] as const) {
      const rows = g.rows.filter((r) => r.scenario === scenario)
      if (rows.length === 0) continue
      p(`**${scenario}**`)
      p()
      p(table(
        ["client", "completed", "failed (by reason)", "429 concurrency", "429 system_busy", "5xx", "attempts", "max in flight", "wall", "throughput", "service", "bound", "share"],
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
      for (const r of rows) if (r.note !== undefined) p(`${r.client} #${r.run}: ${r.note}.`)
      p()
    }
    p("Clients: " + [...new Map(g.rows.filter((r) => !r.client.startsWith("reference")).map((r) => [r.client, r.description])).entries()].map(([c, d]) => `\`${c}\` — ${d}`).join("; ") + ".")
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
    p(`Median µs per call of ${o.runs} runs of ${fmt(o.n)} calls at a fixed concurrency, contenders interleaved run by run.`)
    p("The anchors (cockatiel: retry + breaker + bulkhead via `wrap`; p-queue concurrency 20 + opossum defaults) and `bare`")
    p("call `() => Promise.resolve(bytes)`. Ours call a zero-latency `HttpClient` (a Web `Response` of 1 KiB audio and the")
    p("concurrency headers, at once): `plain client` is the ElevenLabs client without policies, `full stack` is `Resilient.layer`.")
    p("`same policies` is the like-for-like row: this library's limiter (pool of 20), retry policy and breaker (5 consecutive)")
    p("around `Effect.succeed(bytes)`, as cockatiel's three policies are around `Promise.resolve(bytes)`.")
    p()
    const base = (c: number, name: string) => o.rows.find((r) => r.concurrency === c && r.contender === name)?.us ?? Number.NaN
    p(table(["contender", "c=1 µs/call", "c=1 ratio to full stack", "c=50 µs/call", "c=50 ratio to full stack"], [
      ...new Set(o.rows.map((r) => r.contender))
    ].map((name) => [
      name,
      fmt(base(1, name), 2),
      `${fmt(base(1, "effect: full stack") / base(1, name), 1)}x`,
      fmt(base(50, name), 2),
      `${fmt(base(50, "effect: full stack") / base(50, name), 1)}x`
    ])))
    p()
    const g2 = out.get("goodput")?.data as Goodput | undefined
    const serviceMs = g2?.modelServiceMs ?? 175
    p(`In context: the full stack's ${fmt(base(50, "effect: full stack"), 0)} µs per call (c=50) is ${
      fmt(base(50, "effect: full stack") / (serviceMs * 10), 2)
    } % of the ${serviceMs} ms mean service time of a 100-character Flash request, and caps one core at about ${
      fmt(1e6 / base(50, "effect: full stack"), 0)
    } calls/s.`)
    p()
    p("Runs (µs/call): " + o.rows.map((r) => `${r.contender} c=${r.concurrency}: ${r.runs.join(", ")}`).join("; ") + ".")
  } else p(`Not run: ${out.get("overhead")?.error ?? "skipped"}`)
  p()

  const m = out.get("memory")?.data as Memory | undefined
  const lim = out.get("limiter")
  p("## 4. Memory")
  p()
  if (lim && lim.results.length > 0) {
    p("The limiter alone (bench/limiter.ts):")
    p()
    p(table(["benchmark", "value", "note"], lim.results.map((r) => [r.name, `${fmt(r.value, r.value < 10 ? 3 : 0)} ${r.unit}`, r.note ?? ""])))
    p()
  } else p(`bench/limiter.ts: ${lim?.error ?? "not present"}\n`)
  if (m) {
    p(`The full stack: ${fmt(m.waiters.waiters)} calls at once over a transport whose TTS answers never come (20 hold the Flash`)
    p(`permits, the rest queue): **${fmt(m.waiters.heapPerWaiter)} B heap** and ${fmt(m.waiters.rssPerWaiter)} B RSS per waiting call`)
    p(`(enqueued in ${fmt(m.waiters.enqueueMs)} ms; after interrupting every caller the limiter is ${m.waiters.drainedClean ? "empty" : "NOT empty"}).`)
    p(`With coalescing, quota, breaker, retry and budget switched off (client, limiter, deadline and telemetry left):`)
    p(`${fmt(m.waitersPoliciesOff.heapPerWaiter)} B per waiting call. A waiting call holds its fiber, its spans, its deadline, its`)
    p("request, its quota reservation and its coalescing entry besides the limiter's waiter.")
    p()
    if (!m.gc) p("\n(No `--expose-gc`: the numbers include garbage.)")
  } else p(`Full stack: ${out.get("memory")?.error ?? "skipped"}`)
  p()
  const h = out.get("heap")?.data as Heap | undefined
  if (h) {
    p(`Heap after a full GC while ${fmt(h.calls)} calls go through the full stack (bench/heap.ts, its own process; zero-latency`)
    p(`transport, concurrency 50, ${fmt(h.usPerCall, 0)} µs/call in this run), after ${fmt(h.warmupCalls)} warm-up calls in ${h.warmupSeconds} s. The warm-up is`)
    p("longer than the retry budget's 10-second window, which holds one timestamp per call that ended in it and so grows")
    p("with the call rate until it is full: fitted, that growth would measure the window, not a leak. The heap at the end of")
    p(`the warm-up (${fmt(h.warmupHeap / 1e6, 1)} MB, the first row) is not fitted either: it is the noisiest point, and at one end`)
    p("of the line it alone can set the sign of the slope.")
    p()
    p(table(["calls after the warm-up", "heap used after GC"], [[0, h.warmupHeap] as const, ...h.points].map(([c, b]) => [fmt(c), `${fmt(b / 1e6, 1)} MB`])))
    p()
    p(`Least-squares slope through the 10 checkpoints (every row but the first): **${fmt(h.slopePer100k / 1e6, 2)} MB per 100,000 calls**.`)
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
    p("A 24-hour `diurnal` day (plan `pro`, Multilingual, 100-1000 characters, 20 % interactive) in virtual time against")
    p("the in-process simulator. The headline row is `resilient (Runner.run)`: what `simulate --pattern diurnal --duration 24h`")
    p("runs (the full stack with the config defaults, tracing off, the report from the recorder). `naive` is the same runner")
    p("with plain HTTP attempts: the simulator's and the runner's own cost. `direct driver`: `Resilient.layer` over")
    p("`InProcess.layerSimulated` with their defaults (tracing on, transport spans), as an application test drives it.")
    p()
    p(table(["driver / strategy", "requests", "ok", "failed", "virtual", "wall", "µs/request", "virtual/wall", "max in flight", "429 concurrency"], s.rows.map((r) => [
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
    ])))
    p()
    p("For 10,000x on a 24-hour day, 100,000 requests must cost under 86 µs of wall time each (stack + simulator).")
  } else p(`Not run: ${out.get("simulation")?.error ?? "skipped"}`)
  p()

  const d = out.get("distributed")
  p("## 6. Distributed (Redis)")
  p()
  if (d && d.results.length > 0) {
    p("bench/distributed.ts, against a real `redis-server` on loopback:")
    p()
    p(table(["benchmark", "value", "note"], d.results.map((r) => [r.name, `${fmt(r.value, r.value < 10 ? 3 : 1)} ${r.unit}`, r.note ?? ""])))
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
  if (childAt >= 0) return child(argv[childAt + 1] as Name)
  const quick = argv.includes("--quick")
  const onlyAt = argv.indexOf("--only")
  const only = onlyAt >= 0 ? new Set((argv[onlyAt + 1] ?? "").split(",")) : undefined
  const selected = names.filter((n) => (only === undefined || only.has(n)) && existsSync(`${here}${n}.ts`))
  const write = !argv.includes("--no-write") && (only === undefined || argv.includes("--write"))
  const t0 = performance.now()
  const out = new Map<Name, ChildOutput>()
  for (const name of selected) {
    progress(`${name}: starting`)
    const result = await runChild(name, quick)
    out.set(name, result)
    progress(`${name}: ${result.error ? `FAILED ${result.error}` : "done"} in ${result.seconds.toFixed(1)} s`)
  }
  const total = (performance.now() - t0) / 1000
  const rows = [...out.values()].flatMap((c) =>
    c.error ? [[c.name, "FAILED", c.error.slice(0, 100)]] : c.results.map((r) => [r.name, `${fmt(r.value, Math.abs(r.value) < 10 ? 3 : 1)} ${r.unit}`, r.note ?? ""])
  )
  console.log(table(["benchmark", "value", "note"], rows))
  console.log()
  for (const goal of goalsOf(out)) console.log(`${goal.met === undefined ? "?" : goal.met ? "met    " : "NOT MET"}  ${goal.goal}: ${goal.measured}`)
  console.log(`\ntotal ${total.toFixed(0)} s`)
  if (write) {
    writeFileSync(`${repoRoot}BENCHMARKS.md`, render(out, quick, total))
    console.log("BENCHMARKS.md written")
  }
}

await main()
