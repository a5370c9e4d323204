/**
 * A real Prometheus server for tests (Debian's `prometheus`, the package that
 * also ships `promtool`): started on a free loopback port with a config of its
 * own in a temp directory (scrape targets, a rules file, fast scrape and
 * evaluation intervals, a temp TSDB), read through its HTTP API, and stopped
 * with its directory removed on `close`, or when this process exits.
 *
 * A missing binary is an error, never a skip: the alert rules are only proven
 * against a real server.
 *
 * @example
 * ```ts
 * const prometheus = await startPrometheus({ targets: ["127.0.0.1:9464"], rules: yaml })
 * const rules = await prometheus.rules() // the alerting rules, their states and alerts
 * await prometheus.close()
 * ```
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

const binary = "prometheus"

/** Throws, loudly, when the `prometheus` server is not installed. */
export const assertPrometheusInstalled = (): void => {
  const probe = spawnSync(binary, ["--version"], { encoding: "utf8" })
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      `the Prometheus server is required by the alerts end-to-end test and was not found (${binary}: ${
        probe.error?.message ?? `exit ${probe.status}`
      }). Install Debian's prometheus package: sudo apt-get install -y prometheus (npm test installs it as root).`
    )
  }
}

/** One alert of a rule, as `/api/v1/rules` lists it. */
export interface RuleAlert {
  readonly labels: Readonly<Record<string, string>>
  readonly annotations: Readonly<Record<string, string>>
  readonly state: "pending" | "firing"
  readonly activeAt: string
  readonly value: string
}

/** One alerting rule, as `/api/v1/rules?type=alert` lists it. */
export interface AlertingRule {
  readonly name: string
  readonly query: string
  readonly duration: number
  readonly state: "inactive" | "pending" | "firing"
  readonly health: string
  readonly lastError?: string | undefined
  readonly lastEvaluation: string
  readonly labels: Readonly<Record<string, string>>
  readonly alerts: ReadonlyArray<RuleAlert>
}

/** One series of a query's answer: a vector's `value` or a matrix's `values`. */
export interface Series {
  readonly metric: Readonly<Record<string, string>>
  readonly value?: readonly [number, string] | undefined
  readonly values?: ReadonlyArray<readonly [number, string]> | undefined
}

export interface PrometheusServer {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string
  /** The server's log so far (standard error), for failure messages. */
  readonly log: () => string
  /** `GET /api/v1/<path>`: the `data` of a successful answer; throws on any other. */
  readonly api: (path: string, params?: Record<string, string>) => Promise<unknown>
  /** An instant query (`/api/v1/query`). */
  readonly query: (promql: string) => Promise<ReadonlyArray<Series>>
  /** Every alerting rule of every group (`/api/v1/rules?type=alert`). */
  readonly rules: () => Promise<ReadonlyArray<AlertingRule>>
  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its directory. */
  readonly close: () => Promise<void>
}

export interface Options {
  /** `host:port` of each `/metrics` to scrape (job `elevenlabs-resilience`). */
  readonly targets: ReadonlyArray<string>
  /** The rules file's text (YAML). */
  readonly rules: string
  /** Default `1s`. */
  readonly scrapeInterval?: string | undefined
  /** Default `1s`. */
  readonly evaluationInterval?: string | undefined
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      srv.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The config file: one scrape job, the rules file, the intervals. JSON is YAML. */
const configOf = (options: Options, rulesFile: string): string =>
  JSON.stringify(
    {
      global: {
        scrape_interval: options.scrapeInterval ?? "1s",
        scrape_timeout: options.scrapeInterval ?? "1s",
        evaluation_interval: options.evaluationInterval ?? "1s"
      },
      rule_files: [rulesFile],
      scrape_configs: [{ job_name: "elevenlabs-resilience", static_configs: [{ targets: options.targets }] }]
    },
    null,
    2
  )

/**
 * Starts Prometheus on a free loopback port and waits until it is ready (its
 * TSDB open, the config and rules loaded). A port taken between the probe and
 * the bind is retried on another port.
 */
export const startPrometheus = async (options: Options): Promise<PrometheusServer> => {
  assertPrometheusInstalled()
  const dir = mkdtempSync(join(tmpdir(), "elevenlabs-resilience-prometheus-"))
  const rulesFile = join(dir, "rules.yml")
  const configFile = join(dir, "prometheus.yml")
  writeFileSync(rulesFile, options.rules)
  writeFileSync(configFile, configOf(options, rulesFile))

  let child: ChildProcess | undefined
  let log = ""
  // Whatever happens to the test (a failed assertion, a timeout, the worker exiting), the server goes too.
  const killOnExit = () => {
    child?.kill("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  }
  process.once("exit", killOnExit)

  const stop = async () => {
    const proc = child
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()))
    proc.kill("SIGTERM")
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000)
    await exited
    clearTimeout(timer)
  }
  const close = async () => {
    await stop()
    child = undefined
    process.removeListener("exit", killOnExit)
    rmSync(dir, { recursive: true, force: true })
  }

  const tryStart = async (port: number): Promise<"ready" | "port-taken"> => {
    const proc = spawn(binary, [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=info"
    ], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] })
    child = proc
    let exited = false
    proc.stderr?.on("data", (c: Buffer) => (log += c.toString()))
    proc.once("exit", () => (exited = true))
    proc.once("error", (e) => {
      exited = true
      log += `\nspawn error: ${e.message}`
    })
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline) {
      if (exited) {
        return /address already in use/.test(log) ? "port-taken" : Promise.reject(
          new Error(`prometheus exited before it was ready (exit ${proc.exitCode ?? proc.signalCode}):\n${log}`)
        )
      }
      const ready = await fetch(`http://127.0.0.1:${port}/-/ready`).then((r) => r.status === 200, () => false)
      if (ready) return "ready"
      await sleep(50)
    }
    throw new Error(`prometheus was not ready on port ${port} after 20 s:\n${log}`)
  }

  try {
    for (let attempt = 1;; attempt++) {
      const port = await freePort()
      const started = await tryStart(port)
      if (started === "ready") {
        const url = `http://127.0.0.1:${port}`
        const api = async (path: string, params: Record<string, string> = {}): Promise<unknown> => {
          const res = await fetch(`${url}/api/v1/${path}?${new URLSearchParams(params).toString()}`)
          const body = await res.json() as { status: string; data?: unknown; error?: string }
          if (res.status !== 200 || body.status !== "success") {
            throw new Error(`prometheus /api/v1/${path} ${JSON.stringify(params)}: ${res.status} ${body.error}`)
          }
          return body.data
        }
        return {
          url,
          log: () => log,
          api,
          query: async (promql) => ((await api("query", { query: promql })) as { result: Array<Series> }).result,
          rules: async () =>
            ((await api("rules", { type: "alert" })) as { groups: Array<{ rules: Array<AlertingRule> }> }).groups
              .flatMap((g) => g.rules),
          close
        }
      }
      if (attempt >= 3) throw new Error(`prometheus could not bind a free port in 3 attempts:\n${log}`)
      log = ""
    }
  } catch (e) {
    await close()
    throw e
  }
}
