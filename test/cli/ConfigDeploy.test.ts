/**
 * Live configuration across processes, end to end: a real redis-server, the simulator's HTTP server, two
 * worker processes under load (`test/resilience/liveWorker.ts`) following the account's versions, and the
 * real CLI (`config deploy | rollback | history`). The tests run in order and share the workers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import * as RedisConfig from "../../src/distributed/RedisConfig.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"
import { partitionOfApiKey } from "../../src/resilience/FallbackKey.ts"
import * as Server from "../../src/simulator/Server.ts"
import { type Run, runNode } from "../utils/childWorker.ts"
import { assertRefused, cli, main, stackFrame } from "../utils/cli.ts"
import { type RedisServer, startRedisServer } from "../utils/redisServer.ts"

const workerPath = fileURLToPath(new URL("../resilience/liveWorker.ts", import.meta.url))
const key = "sim-key"
const account = partitionOfApiKey(Redacted.make(key))
const env = { ELEVENLABS_API_KEY: key, ELEVENLABS_RESILIENCE_AUTHOR: "ops-test" }

let redis: RedisServer
let simulatorUrl: string
let scope: Scope.Closeable
let dir: string
const workers: Array<Run> = []

beforeAll(async () => {
  redis = await startRedisServer()
  scope = Effect.runSync(Scope.make())
  const running = await Effect.runPromise(Server.serve({ port: 0, plan: "pro", seed: 5 }).pipe(Scope.provide(scope)))
  simulatorUrl = running.url
  dir = mkdtempSync(join(tmpdir(), "config-deploy-"))
  for (let i = 0; i < 2; i++) workers.push(runNode([workerPath], [simulatorUrl, redis.url, key, 8]))
  await Promise.all(workers.map((w) => w.line("READY")))
}, 60_000)

afterAll(async () => {
  for (const w of workers) w.child.kill("SIGTERM")
  await Promise.all(workers.map((w) => w.exit))
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await redis?.close()
  rmSync(dir, { recursive: true, force: true })
})

/** The account's store, for the test's own reads and publishes. */
const withStore = <A, E>(f: (store: RedisConfig.RedisConfigStore["Service"]) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    return yield* f(yield* RedisConfig.RedisConfigStore)
  }).pipe(
    Effect.provide(RedisConfig.layer().pipe(Layer.provide(SharedState.layerConnection(redis.url)))),
    Effect.scoped
  )

const file = (name: string, document: unknown) => {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify(document))
  return path
}

/** `config deploy` of `path` against the shared Redis, smoke-checked against the simulator, then `extra`. */
const deployArgs = (path: string, ...extra: ReadonlyArray<string>) => [
  "config",
  "deploy",
  "--config-file",
  path,
  "--redis-url",
  redis.url,
  "--base-url",
  simulatorUrl,
  ...extra
]

/** A valid file for the refusals that must come before it is read. */
const fivePathOf = () => file("valid.json", { concurrency: { plan: "pro" } })

/** The simulator's Flash pool counters. */
const flashStats = () =>
  Effect.promise(async () => {
    const stats = await (await fetch(`${simulatorUrl}/_simulator/stats`)).json() as {
      pools: { flash: { maxInFlight: number; admitted: number } }
    }
    return stats.pools.flash
  })
const resetStats = () => Effect.promise(() => fetch(`${simulatorUrl}/_simulator/reset`, { method: "POST" }))

/** Waits until every worker printed `line`. */
const allPrinted = (line: string) => Effect.promise(() => Promise.all(workers.map((w) => w.line(line))))

describe("config deploy, rollback and history across processes", () => {
  it.live(
    "two processes under load apply a lowered Flash limit within a second; the server then never sees more",
    () =>
      Effect.gen(function*() {
        // Under load at the plan's limit first: the server sees more than the new limit will allow.
        yield* resetStats()
        yield* Effect.sleep("1500 millis")
        const before = yield* flashStats()
        assert.isAbove(before.maxInFlight, 6, "both workers' callers in flight before the change")

        const published = yield* withStore((store) =>
          store.publish(account, {
            document: { concurrency: { plan: "pro", caps: { flash: 3 } } },
            author: "test",
            kind: "deploy",
            reason: "incident: lower Flash"
          })
        )
        const publishedAt = Date.now()
        yield* allPrinted(`APPLIED ${published.version} `)
        for (const w of workers) {
          const at = Number(new RegExp(`APPLIED ${published.version} (\\d+)`).exec(w.output())![1])
          assert.isAtMost(at - publishedAt, 1000, "applied within a second of the publish")
        }
        // The permits granted before the change drain (a Flash answer takes ~0.2 s), then the new limit holds.
        yield* Effect.sleep("700 millis")
        yield* resetStats()
        yield* Effect.sleep("2500 millis")
        const after = yield* flashStats()
        assert.isAtMost(after.maxInFlight, 3)
        assert.isAtLeast(after.maxInFlight, 2, "the load goes on under the new limit")
        assert.isAbove(after.admitted, 10)
      }),
    30_000
  )

  it.live("an invalid version is refused by every process and the running one stays", () =>
    Effect.gen(function*() {
      const current = yield* withStore((store) => store.current(account))
      const bad = yield* withStore((store) =>
        store.publish(account, {
          document: { concurrency: { caps: { flash: 0 } }, retry: { maxAttempts: "many" } },
          author: "test",
          kind: "deploy",
          reason: "a typo"
        })
      )
      yield* allPrinted(`REFUSED ${bad.version}`)
      yield* resetStats()
      yield* Effect.sleep("1500 millis")
      assert.isAtMost((yield* flashStats()).maxInFlight, 3, `v${current!.version}'s limit still holds`)
    }), 20_000)

  it.live("a deploy whose settings raise the error rate is rolled back by itself", () =>
    Effect.gen(function*() {
      // The current version is the refused one: the processes run v1, and a rollback must restore v1.
      const before = (yield* withStore((store) => store.get(account, 1)))!
      // One permit and a queue of one for eight callers per process: most calls are refused (QueueFull).
      const path = file("bad.json", { concurrency: { plan: "pro", caps: { flash: 1 }, maxQueue: 1 } })
      const ran = yield* cli(
        deployArgs(path, "--watch", "30s", "--max-error-rate", "0.3", "--min-calls", "20", "--reason", "tighter queue"),
        env
      )
      assert.strictEqual(ran.code, 4, `${ran.stdout}\n${ran.stderr}`)
      assert.match(ran.stdout, /^config deploy: published v\d+ \(was v1\); watching 30s\n$/)
      assert.match(ran.stderr, /rolled back v\d+ to v1 \(as v\d+\): error rate \d+(\.\d)? %/)
      const now = (yield* withStore((store) => store.current(account)))!
      assert.strictEqual(now.kind, "rollback")
      assert.strictEqual(now.restores, before.version)
      assert.deepStrictEqual(now.document, before.document)
      assert.strictEqual(now.author, "ops-test")
      yield* allPrinted(`APPLIED ${now.version} `)
    }), 60_000)

  it.live(
    "rollback --to restores an older version; history says who, what, when and the diff",
    () =>
      Effect.gen(function*() {
        // A healthy deploy without a watch first: exit 0, applied by both processes.
        const fivePath = file("five.json", { concurrency: { plan: "pro", caps: { flash: 5 } } })
        const deployed = yield* cli(deployArgs(fivePath, "--watch", "0", "--reason", "more Flash", "--json"), env)
        assert.strictEqual(deployed.code, 0, deployed.stdout + deployed.stderr)
        // --json: one JSON document on stdout, nothing else.
        const result = JSON.parse(deployed.stdout) as { result: string; version: number; account: string }
        assert.strictEqual(result.result, "deployed")
        assert.strictEqual(result.account, account)
        const five = (yield* withStore((store) => store.current(account)))!
        assert.strictEqual(five.version, result.version)
        yield* allPrinted(`APPLIED ${five.version} `)
        // The rollback the error rate made restored v1, not the refused v2 (the processes never ran it).
        assert.strictEqual((yield* withStore((store) => store.get(account, five.version - 1)))!.restores, 1)

        const restored = yield* cli([
          "config",
          "rollback",
          "--redis-url",
          redis.url,
          "--to",
          "1",
          "--reason",
          "back to the first",
          "--json"
        ], env)
        assert.strictEqual(restored.code, 0, restored.stderr)
        const doc = JSON.parse(restored.stdout) as { version: number; restores: number }
        assert.strictEqual(doc.restores, 1)
        yield* allPrinted(`APPLIED ${doc.version} `)
        const v1 = (yield* withStore((store) => store.get(account, 1)))!
        const now = (yield* withStore((store) => store.current(account)))!
        assert.deepStrictEqual(now.document, v1.document)

        const history = yield* cli(["config", "history", "--redis-url", redis.url], env)
        assert.strictEqual(history.code, 0, history.stderr)
        assert.match(history.stdout, new RegExp(`^\\* v${doc.version} rollback of v1 by ops-test at \\d{4}-`, "m"))
        assert.match(history.stdout, /v1 deploy by test at .*: incident: lower Flash/)
        // The diff is from the version current before each one.
        assert.match(
          history.stdout,
          new RegExp(`v${doc.version} rollback[^\\n]*\\n    concurrency\\.caps\\.flash: 5 -> 3\\n`)
        )
        assert.match(history.stdout, new RegExp(`v${five.version} deploy by ops-test at [^\\n]*: more Flash\\n`))
        const asJson = yield* cli(["config", "history", "--redis-url", redis.url, "--json", "--limit", "2"], env)
        const parsed = JSON.parse(asJson.stdout) as { versions: ReadonlyArray<{ version: number }> }
        assert.lengthOf(parsed.versions, 2)
        assert.strictEqual(parsed.versions[0]!.version, doc.version)
      }),
    30_000
  )

  it.live("interrupting a deploy during its watch puts back the version that ran before", () =>
    Effect.gen(function*() {
      const before = (yield* withStore((store) => store.current(account)))!
      const path = file("good.json", { concurrency: { plan: "pro", caps: { flash: 4 } } })
      const child = spawn(process.execPath, [main, ...deployArgs(path, "--watch", "2m")], {
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (c) => (stdout += c))
      child.stderr.on("data", (c) => (stderr += c))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      yield* Effect.promise(async () => {
        while (!stdout.includes("watching")) await new Promise((r) => setTimeout(r, 50))
      })
      const published = (yield* withStore((store) => store.current(account)))!
      assert.strictEqual(published.previous, before.version)
      child.kill("SIGINT")
      const code = yield* Effect.promise(() => exited)
      assert.strictEqual(code, 130, `${stdout}\n${stderr}`)
      assert.match(stderr, /interrupted; rolled back to v\d+ as v\d+/)
      assert.notMatch(stderr, stackFrame)
      const now = (yield* withStore((store) => store.current(account)))!
      assert.strictEqual(now.kind, "rollback")
      assert.strictEqual(now.restores, before.version)
      assert.deepStrictEqual(now.document, before.document)
      yield* allPrinted(`APPLIED ${now.version} `)
    }), 60_000)

  it.live(
    "nothing is published from an invalid file or a failed smoke check; mistakes are one line",
    () =>
      Effect.gen(function*() {
        const before = (yield* withStore((store) => store.current(account)))!
        const invalid = yield* cli(deployArgs(file("invalid.json", { concurrency: { caps: { flash: -2 } } })), env)
        assert.strictEqual(invalid.code, 2, invalid.stdout + invalid.stderr)
        assert.match(invalid.stderr, /refused .*invalid\.json: concurrency\.caps\.flash/)
        assert.strictEqual(invalid.stdout, "")
        // Flash answers in ~75 ms: a 1 ms headers timeout fails the smoke check's one request.
        const slow = file("slow.json", { timeouts: { headers: "1 millis" }, retry: { maxAttempts: 1 } })
        const smoke = yield* cli(deployArgs(slow), env)
        assert.strictEqual(smoke.code, 3, smoke.stdout + smoke.stderr)
        assert.match(smoke.stderr, /nothing published: smoke: FAIL tts Timeout/)
        assert.strictEqual((yield* withStore((store) => store.current(account)))!.version, before.version)

        assertRefused(
          yield* cli(["config", "deploy", "--config-file", join(dir, "missing.json"), "--redis-url", redis.url], env),
          "config deploy: --config-file"
        )
        assertRefused(
          yield* cli(["config", "history", "--redis-url", "http://nope"], env),
          "--redis-url must be a redis or rediss URL"
        )
        // An unreachable Redis is one line, before the smoke check spends a request.
        assertRefused(
          yield* cli(
            ["config", "deploy", "--config-file", fivePathOf(), "--redis-url", "redis://127.0.0.1:1", "--simulator"],
            env
          ),
          /config deploy: .*127\.0\.0\.1:1/
        )
        assertRefused(
          yield* cli(["config", "history", "--redis-url", "redis://127.0.0.1:1"], env),
          /config history: .*127\.0\.0\.1:1/
        )
        assertRefused(
          yield* cli(["config", "history", "--redis-url", redis.url], {}),
          "set ELEVENLABS_API_KEY or --account"
        )
        assertRefused(
          yield* cli(["config", "rollback", "--redis-url", redis.url, "--to", "999"], env),
          "--to 999: no such version"
        )
      }),
    60_000
  )
})
