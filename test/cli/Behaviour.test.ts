/**
 * The rules every command of the CLI keeps, checked on the real CLI as a
 * user runs it (a process per run):
 *
 * - `--json` prints exactly one JSON document on standard output, nothing
 *   else (logs and progress go to standard error).
 * - `--help` says the default of every flag; `simulate` and `load-test`
 *   default to the `resilient` strategy.
 * - A mistake (a wrong flag type, an unknown flag, an unknown plan, model or
 *   voice, a number out of range, a bad path, URL or config file, a port in
 *   use, an unreachable Redis) is ONE line on standard error naming the flag,
 *   exit code 1, no stack trace, no help.
 * - `--log-level` holds even where a command is quiet by default.
 * - `--config` is the config flag's name everywhere (`--config-file` is an
 *   alias of `validate-config`); the renamed plan tables and strategy keep
 *   their old names as aliases, which `--help` no longer offers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { createServer, type Server as NetServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Server from "../../src/simulator/Server.ts"
import { assertRefused, cli, cliAll, main, stackFrame } from "../utils/cli.ts"

const commands = [
  "demo",
  "alerts",
  "capacity",
  "load-test",
  "simulator",
  "simulate",
  "smoke",
  "validate-config"
] as const

/** A scratch directory with a config that is not JSON, one that does not validate, and a good one. */
const scratch = () => {
  const dir = mkdtempSync(join(tmpdir(), "cli-behaviour-"))
  const notJson = join(dir, "not-json.json")
  writeFileSync(notJson, "{ \"retry\": { ")
  const invalid = join(dir, "invalid.json")
  writeFileSync(invalid, JSON.stringify({ retyr: {} }))
  const good = join(dir, "good.json")
  writeFileSync(good, JSON.stringify({ retry: { exponential: { maxRetries: 3 } } }))
  return { dir, notJson, invalid, good, missing: join(dir, "nope.json"), noDir: join(dir, "no", "such", "dir") }
}

/** A TCP port held by this process for the test's scope. */
const busyPort = Effect.acquireRelease(
  Effect.callback<NetServer>((resume) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
).pipe(Effect.map((server) => {
  const address = server.address()
  return typeof address === "object" && address !== null ? address.port : 0
}))

/** Standard output as one JSON document (the whole of it), and nothing on standard error. */
const parseJson = (
  ran: { readonly args: ReadonlyArray<string>; readonly code: number; readonly stdout: string; readonly stderr: string }
) => {
  assert.strictEqual(ran.code, 0, `${ran.args.join(" ")}: ${ran.stderr}`)
  assert.strictEqual(ran.stderr, "", ran.args.join(" "))
  // JSON.parse of the whole output: one document, nothing before or after it.
  return JSON.parse(ran.stdout) as Record<string, unknown>
}

describe("--json: exactly one JSON document on standard output", () => {
  it.live("simulate --strategy resilient with faults: the retries are counted in the report, not logged on stdout", () =>
    Effect.gen(function*() {
      const json = parseJson(
        yield* cli([
          "simulate",
          "--strategy",
          "resilient",
          "--json",
          "--requests",
          "150",
          "--failure-rate",
          "0.2",
          "--plan",
          "creator"
        ])
      )
      assert.strictEqual(json["strategy"], "resilient")
      assert.isAbove(json["retries"] as number, 0, "the run met faults and retried")
    }))

  it.live("simulate --compare, capacity and load-test --json", () =>
    Effect.gen(function*() {
      const [compare, capacity, loadTest] = yield* cliAll([
        [
          "simulate",
          "--compare",
          "--json",
          "--pattern",
          "burst",
          "--requests",
          "20",
          "--plan",
          "free",
          "--failure-rate",
          "0.2"
        ],
        ["capacity", "--json", "--duration", "30s", "--max-streams", "4", "--failure-rate", "0.1"],
        [
          "load-test",
          "--json",
          "--requests",
          "6",
          "--chars",
          "20",
          "--model",
          "eleven_flash_v2_5",
          "--failure-rate",
          "0.3"
        ]
      ])
      assert.deepStrictEqual(
        (parseJson(compare!)["runs"] as Array<{ strategy: string }>).map((r) => r.strategy),
        ["resilient", "naive", "p-queue-recipe"]
      )
      assert.isNumber(parseJson(capacity!)["streams"])
      const lt = parseJson(loadTest!)
      assert.strictEqual(lt["strategy"], "resilient")
      assert.strictEqual((lt["succeeded"] as number) + (lt["failed"] as number), 6)
    }), { timeout: 120_000 })
})

describe("--log-level", () => {
  it.live(
    "is honoured by the commands that are quiet by default (their retries go to standard error)",
    () =>
      Effect.gen(function*() {
        const args = [
          "load-test",
          "--json",
          "--requests",
          "6",
          "--chars",
          "20",
          "--model",
          "eleven_flash_v2_5",
          "--failure-rate",
          "0.3"
        ]
        const [quiet, debug] = yield* cliAll([args, [...args, "--log-level", "debug"]])
        assert.strictEqual(quiet!.stderr, "")
        assert.strictEqual(debug!.code, 0, debug!.stderr)
        assert.match(debug!.stderr, /DEBUG .*elevenlabs retry/)
        // Logs on standard error only: standard output is still one JSON document.
        assert.strictEqual((JSON.parse(debug!.stdout) as { requests: number }).requests, 6)
      }),
    { timeout: 120_000 }
  )
})

describe("defaults", () => {
  it.live("--help says the default of every flag of every command", () =>
    Effect.gen(function*() {
      const helps = yield* cliAll(commands.map((c) => [c, "--help"]))
      for (const help of helps) {
        assert.strictEqual(help.code, 0, help.stderr)
        const section = help.stdout.split("\nFLAGS\n")[1]?.split("\nGLOBAL FLAGS")[0]
        assert.isDefined(section, help.stdout)
        const flags = section!.split("\n").filter((l) => /^ {2}-/.test(l))
        assert.isAbove(flags.length, 0, help.args[0])
        for (const line of flags) assert.match(line, /\(default: [^)]|\(required\)/, `${help.args[0]}: ${line}`)
      }
      const [, , , loadTest, simulator, simulate, , validate] = helps
      assert.match(simulate!.stdout, /--strategy string .*\(default: resilient\)/)
      assert.match(loadTest!.stdout, /--strategy string .*\(default: resilient\)/)
      assert.match(simulator!.stdout, /--plan-table string .*\(default: deployment-guide\)/)
      assert.match(validate!.stdout, /--config, --config-file string/)
      // The old names still work (below) but are not offered.
      for (const help of helps) {
        assert.notMatch(help.stdout, /seed-template|seeds|\bdocs\b(?!\/)|old name/, help.args[0])
      }
      // A diurnal load test fits the real-time cap by default, and its help says so.
      assert.match(loadTest!.stdout, /--duration string .*diurnal 10 min/)
      assert.match(simulator!.stdout, /--max-upload-bytes integer .*\(default: 104857600 \(100 MiB\)\)/)
    }), { timeout: 120_000 })

  it.live("simulate rehearses the resilient stack unless told otherwise; naive is asked for by name", () =>
    Effect.gen(function*() {
      const [dflt, naive] = yield* cliAll([
        ["simulate", "--json", "--pattern", "burst", "--requests", "10", "--plan", "free"],
        ["simulate", "--json", "--pattern", "burst", "--requests", "10", "--plan", "free", "--strategy", "naive"]
      ])
      assert.strictEqual(parseJson(dflt!)["strategy"], "resilient")
      assert.strictEqual(parseJson(naive!)["strategy"], "naive")
    }))
})

describe("a mistake is one line on standard error, exit 1, no stack trace, no help", () => {
  it.live(
    "parse errors of effect/cli: a wrong flag type, an unknown flag, a missing value, an unknown command",
    () =>
      Effect.gen(function*() {
        const runs = yield* cliAll([
          ["simulate", "--requests", "abc"],
          ["load-test", "--requests", "1.5"],
          ["simulate", "--requestz", "5"],
          ["simulator", "--plan", "gold"],
          ["simulate", "--seed"],
          ["validate-config"],
          ["simulat"]
        ])
        const [abc, half, unknown, literal, noValue, required, command] = runs
        assertRefused(
          abc!,
          /^simulate: --requests: "abc" is not valid \(expected a number\); see: elevenlabs-resilience simulate --help$/
        )
        assertRefused(
          half!,
          /^load-test: --requests: "1\.5" is not valid \(expected an integer\); see: .* load-test --help$/
        )
        assertRefused(
          unknown!,
          "simulate: unknown flag --requestz (did you mean --requests?); see: elevenlabs-resilience simulate --help"
        )
        assertRefused(literal!, /^simulator: --plan: "gold" is not valid \(expected "free" \| "starter" .*\); see: /)
        assertRefused(noValue!, /^simulate: --seed needs a value/)
        assertRefused(required!, /^validate-config: Missing required flag: --config/)
        assertRefused(
          command!,
          /^elevenlabs-resilience: unknown command "simulat" \(did you mean simulate\?\); see: elevenlabs-resilience --help$/
        )
      }),
    { timeout: 120_000 }
  )

  it.live("unknown plans, models and voices are refused before the run", () =>
    Effect.gen(function*() {
      const runs = yield* cliAll([
        ["simulate", "--model", "eleven_flash_v25", "--requests", "5"],
        ["capacity", "--model", "eleven_nope"],
        ["load-test", "--model", "eleven_nope", "--requests", "2"],
        ["load-test", "--voice", "nope", "--requests", "2"],
        ["smoke", "--model", "eleven_nope"],
        ["smoke", "--voice", "nope"],
        ["simulate", "--plan", "gold"],
        ["load-test", "--plan", "gold"],
        ["capacity", "--plan", "gold"],
        ["demo", "--plan", "gold"],
        ["simulator", "--plan-table", "docs-page"]
      ])
      const [simModel, capModel, ltModel, ltVoice, smokeModel, smokeVoice, ...plans] = runs
      assertRefused(
        simModel!,
        /^simulate: --model: unknown model "eleven_flash_v25" \(did you mean eleven_flash_v2_5\?\); use one of eleven_multilingual_v2, /
      )
      assertRefused(capModel!, /^capacity: --model: unknown model "eleven_nope"/)
      assertRefused(ltModel!, /^load-test: --model: unknown model "eleven_nope"/)
      assertRefused(
        ltVoice!,
        /^load-test: --voice: unknown voice "nope"; the simulator has the premade voices 21m00Tcm4TlvDq8ikWAM \(Rachel\)/
      )
      // smoke's contract: one PASS/FAIL line.
      assertRefused(smokeModel!, /^smoke: FAIL --model: unknown model "eleven_nope"/)
      assertRefused(smokeVoice!, /^smoke: FAIL --voice: unknown voice "nope"/)
      for (
        const [ran, command] of plans.slice(0, 4).map((r, i) =>
          [r!, ["simulate", "load-test", "capacity", "demo"][i]!] as const
        )
      ) {
        assertRefused(ran, `${command}: --plan must be one of free, starter, creator, pro, scale, business; got "gold"`)
      }
      assertRefused(plans[4]!, /^simulator: --plan-table must be one of deployment-guide, models-page; got "docs-page"/)
    }), { timeout: 120_000 })

  it.live(
    "against a target given by --base-url, the target is asked: its model list and its voices",
    () =>
      Effect.gen(function*() {
        const server = yield* Server.serve({ port: 0, plan: "free" })
        const [model, voice] = yield* cliAll([
          ["load-test", "--base-url", server.url, "--api-key", "sim-key", "--model", "eleven_nope", "--requests", "2"],
          ["load-test", "--base-url", server.url, "--api-key", "sim-key", "--voice", "nope", "--requests", "2"]
        ])
        assertRefused(
          model!,
          `load-test: --model: ${server.url} has no model "eleven_nope"; its /v1/models lists eleven_multilingual_v2`
        )
        assertRefused(
          voice!,
          `load-test: --voice: ${server.url} has no voice "nope" (GET /v1/voices/nope answered 404)`
        )
        // Refused before the run: not one TTS request reached the target.
        assert.strictEqual((yield* server.simulator.stats).creditsCharged, 0)
      }),
    { timeout: 120_000 }
  )

  it.live(
    "bad paths: a missing directory, a directory for a file, a missing config file",
    () =>
      Effect.gen(function*() {
        const s = scratch()
        const runs = yield* cliAll([
          ["alerts", "--out", "/no/such/dir/rules.yml"],
          ["alerts", "--out", s.dir],
          ["simulate", "--html", join(s.noDir, "r.html"), "--requests", "5"],
          ["load-test", "--html", join(s.noDir, "r.html"), "--requests", "2"],
          ["demo", "--html", join(s.noDir, "r.html"), "--seconds", "1"],
          ["simulate", "--config", s.missing, "--requests", "5"],
          ["load-test", "--config", s.dir, "--requests", "2"],
          ["capacity", "--config", s.missing],
          ["validate-config", "--config", s.missing]
        ])
        const [out, outDir, simHtml, ltHtml, demoHtml, simConfig, ltConfig, capConfig, validate] = runs
        assertRefused(
          out!,
          "alerts: --out: cannot write /no/such/dir/rules.yml: the directory /no/such/dir does not exist; create it first or choose another path"
        )
        assertRefused(outDir!, `alerts: --out: ${s.dir} is a directory; give the path of a file`)
        for (const [ran, command] of [[simHtml!, "simulate"], [ltHtml!, "load-test"], [demoHtml!, "demo"]] as const) {
          assertRefused(
            ran,
            `${command}: --html: cannot write ${join(s.noDir, "r.html")}: the directory ${s.noDir} does not exist`
          )
        }
        assertRefused(simConfig!, `simulate: --config: cannot read ${s.missing}: no such file; check the path`)
        assertRefused(ltConfig!, `load-test: --config: ${s.dir} is a directory; give the path of a JSON file`)
        assertRefused(capConfig!, `capacity: --config: cannot read ${s.missing}: no such file`)
        assertRefused(validate!, `validate-config: --config: cannot read ${s.missing}: no such file`)
      }),
    { timeout: 120_000 }
  )

  it.live(
    "a config that is not JSON or does not validate: one line naming the problem and validate-config",
    () =>
      Effect.gen(function*() {
        const s = scratch()
        const [notJson, invalid, capacity, smoke] = yield* cliAll([
          ["simulate", "--config", s.notJson, "--requests", "5"],
          ["load-test", "--config", s.invalid, "--requests", "2"],
          ["capacity", "--config", s.invalid],
          ["smoke", "--config", s.invalid]
        ])
        assertRefused(
          notJson!,
          new RegExp(`^simulate: --config: ${s.notJson}: not valid JSON: .*; fix the JSON syntax`)
        )
        assertRefused(
          invalid!,
          `load-test: --config: ${s.invalid}: retyr: unknown key; see every problem and its fix with: elevenlabs-resilience validate-config --config ${s.invalid}`
        )
        assertRefused(capacity!, `capacity: --config: ${s.invalid}: retyr: unknown key`)
        assertRefused(smoke!, /^smoke: FAIL config: retyr: unknown key \(fix: did you mean "retry"/)
      }),
    { timeout: 120_000 }
  )

  it.live("numbers out of range name their flag (not the library's option name)", () =>
    Effect.gen(function*() {
      const runs = yield* cliAll([
        ["simulate", "--requests", "-5"],
        ["simulate", "--rps", "0"],
        ["load-test", "--bursts", "0", "--pattern", "burst"],
        ["capacity", "--chars", "-1"],
        ["capacity", "--failure-rate", "2"],
        ["capacity", "--max-streams", "0"]
      ])
      const [requests, rps, bursts, chars, rate, streams] = runs
      assertRefused(requests!, "simulate: --requests must be a positive integer, got -5")
      assertRefused(rps!, "simulate: --rps must be a positive number, got 0")
      assertRefused(bursts!, "load-test: --bursts must be a positive integer, got 0")
      assertRefused(chars!, "capacity: --chars must be within 1..10000, got -1")
      assertRefused(rate!, "capacity: --failure-rate must be within 0..1, got 2")
      assertRefused(streams!, "capacity: --max-streams must be a positive integer, got 0")
    }), { timeout: 120_000 })

  it.live(
    "URLs are checked before the run: --redis-url, --base-url (load-test and smoke); no stack trace",
    () =>
      Effect.gen(function*() {
        const s = scratch()
        const runs = yield* cliAll([
          ["load-test", "--redis-url", "nope", "--requests", "2"],
          ["load-test", "--redis-url", "nope", "--requests", "2", "--processes", "2"],
          ["load-test", "--redis-url", "http://user:hunter2@cache", "--requests", "2"],
          ["load-test", "--base-url", "nope", "--api-key", "k", "--requests", "2"],
          ["smoke", "--base-url", "nope"],
          ["smoke", "--simulator", "--base-url", "nope"],
          ["smoke", "--config", s.dir]
        ])
        const [redis, redisProcesses, redisScheme, baseUrl, smoke, smokeSimulator, smokeConfig] = runs
        const redisLine =
          `load-test: --redis-url must be a redis or rediss URL such as redis://127.0.0.1:6379; got "nope"`
        assertRefused(redis!, redisLine)
        assertRefused(redisProcesses!, redisLine)
        assert.notInclude(
          assertRefused(redisScheme!, /^load-test: --redis-url must be a redis or rediss URL/),
          "hunter2"
        )
        assertRefused(
          baseUrl!,
          `load-test: --base-url must be a http or https URL such as https://api.elevenlabs.io; got "nope"`
        )
        // smoke's contract: one FAIL line.
        for (const ran of [smoke!, smokeSimulator!]) {
          assertRefused(ran, `smoke: FAIL --base-url must be a http or https URL`)
        }
        assertRefused(smokeConfig!, `smoke: FAIL --config: ${s.dir} is a directory; give the path of a JSON file`)
      }),
    { timeout: 120_000 }
  )

  it.live(
    "an unreachable Redis: its address and the error code, never the password, and what to do (also from a worker)",
    () =>
      Effect.gen(function*() {
        // Port 1 on loopback: nothing listens there.
        const url = "redis://user:hunter2@127.0.0.1:1"
        const [one, two] = yield* cliAll([
          ["load-test", "--redis-url", url, "--requests", "2"],
          ["load-test", "--redis-url", url, "--requests", "2", "--processes", "2"]
        ])
        const message =
          "cannot connect to Redis at 127.0.0.1:1 (ECONNREFUSED): nothing listens there; start redis-server or fix --redis-url"
        assert.strictEqual(assertRefused(one!, `load-test: ${message}`), `load-test: ${message}`)
        assertRefused(
          two!,
          new RegExp(`^load-test: worker [12] of 2 failed \\(exit code 1\\): ${message.replace(/[()]/g, "\\$&")}$`)
        )
        for (const ran of [one!, two!]) assert.notInclude(ran.stderr, "hunter2")
      }),
    { timeout: 120_000 }
  )

  it.live("a port in use: simulator --port and demo --metrics-port", () =>
    Effect.gen(function*() {
      const port = yield* busyPort
      const [simulator, demo] = yield* cliAll([
        ["simulator", "--port", String(port)],
        ["demo", "--seconds", "1", "--metrics-port", String(port), "--html", join(tmpdir(), "unused.html")]
      ])
      assertRefused(
        simulator!,
        `simulator: cannot serve the simulator on 127.0.0.1:${port}: the port is in use; choose another --port (0 picks a free one)`
      )
      assertRefused(
        demo!,
        `demo: cannot serve /health and /metrics on 127.0.0.1:${port}: the port is in use; choose another --metrics-port`
      )
    }), { timeout: 120_000 })
})

describe("names", () => {
  it.live("--config everywhere; validate-config keeps --config-file as an alias", () =>
    Effect.gen(function*() {
      const s = scratch()
      const runs = yield* cliAll([
        ["validate-config", "--config", s.good],
        ["validate-config", "--config-file", s.good],
        ["simulate", "--config", s.good, "--json", "--requests", "5"]
      ])
      for (const ran of runs.slice(0, 2)) {
        assert.strictEqual(ran.code, 0, ran.stderr)
        assert.match(ran.stdout.trim(), /good\.json: config OK$/)
      }
      assert.strictEqual(parseJson(runs[2]!)["strategy"], "resilient")
    }), { timeout: 120_000 })

  it.live(
    "the old names still work: --strategy seed-template is p-queue-recipe, --plan-table docs is models-page",
    () =>
      Effect.gen(function*() {
        const json = parseJson(
          yield* cli(["simulate", "--strategy", "seed-template", "--json", "--pattern", "burst", "--requests", "8"])
        )
        assert.strictEqual(json["strategy"], "p-queue-recipe")
        // The simulator names the table it serves in its banner.
        const banner = yield* Effect.callback<string>((resume) => {
          const child = spawn(process.execPath, [main, "simulator", "--port", "0", "--plan-table", "docs"], {
            stdio: ["ignore", "pipe", "pipe"]
          })
          let out = ""
          const done = () => {
            child.kill("SIGTERM")
            resume(Effect.succeed(out))
          }
          child.stdout.on("data", (d: Buffer) => {
            out += d.toString()
            if (out.includes("Ctrl-C")) done()
          })
          child.stderr.on("data", (d: Buffer) => (out += d.toString()))
          child.on("exit", () => resume(Effect.succeed(out)))
        })
        assert.include(banner, "(models-page table)")
        assert.notMatch(banner, stackFrame)
      }),
    { timeout: 120_000 }
  )
})
