import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer, Redacted, Schema, SchemaAST } from "effect"
import { readFileSync } from "node:fs"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Client from "../../src/client/ElevenLabs.ts"
import { defaultHeadersTimeout, defaultIdleTimeout } from "../../src/client/ElevenLabs.ts"
import * as AdaptiveLimit from "../../src/resilience/AdaptiveLimit.ts"
import { defaultMaxQueue } from "../../src/resilience/ConcurrencyLimiter.ts"
import * as Fallback from "../../src/resilience/Fallback.ts"
import * as Jitter from "../../src/resilience/Jitter.ts"
import { deploymentGuidePlans, modelsPagePlans } from "../../src/resilience/Plans.ts"
import * as RC from "../../src/resilience/ResilienceConfig.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import { stackDefaults } from "../../src/resilience/ResilientOptions.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"
import * as Simulator from "../../src/simulator/Simulator.ts"
import { runVirtual } from "../utils/virtualTime.ts"

const fixture = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`../fixtures/config/${name}.json`, import.meta.url), "utf8"))
const fixturePath = (name: string): string => new URL(`../fixtures/config/${name}.json`, import.meta.url).pathname
const key = Redacted.make("sk_00000000000000000000000000000000000000000000000a")
const decoded = (raw: unknown): RC.ResilienceConfig => {
  const v = RC.validate(raw)
  assert.isDefined(v.config, JSON.stringify(v.problems))
  return v.config!
}
const paths = (problems: ReadonlyArray<RC.Problem>) => problems.map((p) => p.path)
const millis = (
  d: Duration.Input | undefined
) => (d === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(d)))

/** A stable rendering of options (durations as milliseconds) to compare two mappings. */
const render = (u: unknown): string =>
  JSON.stringify(u, (_k, v) => {
    if (Duration.isDuration(v)) return `${Duration.toMillis(v)}ms`
    if (Redacted.isRedacted(v)) return "<redacted>"
    return v
  })

describe("ResilienceConfig", () => {
  describe("defaults", () => {
    it("an empty file is valid, even in strict mode", () => {
      assert.deepStrictEqual(RC.validate({}, { strict: true }).problems, [])
    })

    it("the mapped defaults are those of docs/design.md and equal the policies' own defaults", () => {
      const o = RC.toResilientOptions(decoded({}), key)
      assert.strictEqual(o.apiKey, key)
      assert.strictEqual(millis(o.headersTimeout), Duration.toMillis(defaultHeadersTimeout))
      assert.strictEqual(millis(o.idleTimeout), Duration.toMillis(defaultIdleTimeout))
      assert.strictEqual(millis(o.deadline), millis(stackDefaults.deadline))
      assert.strictEqual(millis(o.deadline), 180_000)
      const l = o.limiter!
      assert.strictEqual(l.plan, "unknown")
      assert.strictEqual(l.table, deploymentGuidePlans)
      assert.strictEqual(l.minLimit, AdaptiveLimit.defaultConfig.minLimit)
      assert.strictEqual(l.maxLimit, AdaptiveLimit.defaultConfig.maxLimit)
      assert.strictEqual(l.decreaseFactor, AdaptiveLimit.defaultConfig.decreaseFactor)
      assert.strictEqual(l.additiveIncrease, AdaptiveLimit.defaultConfig.additiveIncrease)
      assert.strictEqual(millis(l.queueTimeout), 120_000)
      assert.strictEqual(l.maxQueue, 50_000)
      assert.strictEqual(l.maxQueue, defaultMaxQueue)
      assert.deepStrictEqual(
        [millis(l.laneAging?.interactive), millis(l.laneAging?.default), millis(l.laneAging?.batch)],
        [0, 5000, 30_000]
      )
      assert(o.retry !== false && o.retry !== undefined)
      const e = o.retry.exponential!
      assert.deepStrictEqual([millis(e.base), e.factor, millis(e.cap), e.maxRetries], [1000, 2, 32_000, 5])
      assert.deepStrictEqual(e.jitter, Jitter.full)
      assert(o.budget !== false && o.budget !== undefined)
      assert.deepStrictEqual([o.budget.ratio, millis(o.budget.window), o.budget.minRetriesInFlight], [0.2, 10_000, 3])
      assert(o.breaker !== false && o.breaker !== undefined)
      assert.deepStrictEqual(o.breaker.policy, { _tag: "consecutive", failures: 5 })
      assert.strictEqual(millis(o.breaker.openDuration), 60_000)
      assert(o.quota !== false && o.quota !== undefined)
      assert.deepStrictEqual([millis(o.quota.refreshInterval), o.quota.warningPercent, o.quota.alertPercent], [
        60_000,
        80,
        90
      ])
      assert.deepStrictEqual(o.coalesce, { onAllWaitersGone: "interrupt" })
      assert.strictEqual(o.cache, false)
      assert.strictEqual(o.redis, undefined)
      assert.deepStrictEqual(RC.toTelemetryOptions(decoded({})), {
        logs: { minimumLevel: "Info" },
        otlp: "env",
        server: false
      })
    })

    it("the cache defaults are the AudioCache's", () => {
      const o = RC.toResilientOptions(decoded({ cache: {} }), key)
      assert(o.cache !== false && o.cache !== undefined)
      assert.deepStrictEqual(
        [o.cache.maxEntries, o.cache.maxBytes, o.cache.prefix],
        [Fallback.defaults.maxEntries, Fallback.defaults.maxBytes, Fallback.defaults.prefix]
      )
      assert.deepStrictEqual(o.cache.store, { _tag: "memory" })
    })
  })

  describe("the complete example (good.json)", () => {
    it("has no problem, even in strict mode", () => {
      assert.deepStrictEqual(RC.validate(fixture("good"), { strict: true }).problems, [])
    })

    it("maps to the policies' options", () => {
      const o = RC.toResilientOptions(decoded(fixture("good")), key)
      assert.deepStrictEqual(o.limiter?.plan, { standard: 8, flash: 16, stt: 30, music: 1 })
      assert.strictEqual(o.limiter?.table, modelsPagePlans)
      assert.deepStrictEqual(o.limiter?.maxQueue, { standard: 500, flash: 800, stt: 200, music: 50 })
      assert(o.retry !== false && o.retry !== undefined)
      assert.deepStrictEqual(o.retry.exponential?.jitter, Jitter.proportional(0.3))
      assert.strictEqual(millis(o.retry.linear?.step), 750)
      assert(o.breaker !== false && o.breaker !== undefined)
      assert.deepStrictEqual(o.breaker.policy, { _tag: "rate", threshold: 0.6, size: 30, minimumCalls: 12 })
      assert(o.cache !== false && o.cache !== undefined)
      assert.deepStrictEqual(o.cache.store, { _tag: "file", directory: "/var/cache/elevenlabs" })
      assert.deepStrictEqual(o.redis, {
        url: "redis://redis.internal:6379",
        onUnavailable: "fail-closed",
        expectedProcesses: 3,
        leaseTime: "20 seconds"
      })
      assert.deepStrictEqual(RC.toTelemetryOptions(decoded(fixture("good"))), {
        logs: { minimumLevel: "Debug" },
        otlp: false,
        server: { port: 9464, host: "127.0.0.1" }
      })
    })

    it("a named plan with some custom pools keeps the plan's other numbers; an unknown plan learns them", () => {
      assert.deepStrictEqual(
        RC.toResilientOptions(decoded({ concurrency: { plan: "pro", pools: { stt: 30 } } }), key).limiter?.plan,
        { ...deploymentGuidePlans.pro, stt: 30 }
      )
      assert.deepStrictEqual(
        RC.toResilientOptions(decoded({ concurrency: { pools: { flash: 7 } } }), key).limiter?.plan,
        { flash: 7 }
      )
      assert.strictEqual(RC.toResilientOptions(decoded({ concurrency: { plan: "scale" } }), key).limiter?.plan, "scale")
    })
  })

  describe("every field reaches the options", () => {
    // Variants for the fields that good.json cannot hold at once (each policy shape has its own fields).
    const variants: ReadonlyArray<unknown> = [
      fixture("good"),
      {
        retry: { exponential: { jitter: "additive", jitterMax: "300 millis" } },
        breaker: { policy: "consecutive", failures: 3 },
        coalesce: true,
        concurrency: {
          plan: "pro",
          pools: { stt: 30 },
          caps: { standard: 4, flash: 6, stt: 8, music: 1 },
          maxQueue: 300
        },
        budget: false,
        quota: false,
        cache: false
      }
    ]
    // Read by the checks only, not by the stack.
    const checkOnly = new Set(["$schema", "concurrency.poolsInUse"])

    const leavesOfSchema = (ast: SchemaAST.AST, prefix: string): Array<string> => {
      if (ast._tag === "Union") {
        // `X | false` and `n | { per pool }`: the object member's fields are the leaves.
        const objects = ast.types.filter((t) => t._tag === "Objects")
        return [...new Set((objects.length > 0 ? objects : ast.types).flatMap((t) => leavesOfSchema(t, prefix)))]
      }
      if (ast._tag !== "Objects" || ast.propertySignatures.length === 0) return prefix === "" ? [] : [prefix]
      return ast.propertySignatures.flatMap((p) =>
        leavesOfSchema(p.type, prefix === "" ? String(p.name) : `${prefix}.${String(p.name)}`)
      )
    }
    const leavesOfValue = (u: unknown, prefix: string, stopAt: Set<string>): Array<string> =>
      typeof u === "object" && u !== null && !Array.isArray(u) && !stopAt.has(prefix)
        ? Object.entries(u).flatMap(([k, v]) => leavesOfValue(v, prefix === "" ? k : `${prefix}.${k}`, stopAt))
        : [prefix]
    const schemaLeaves = leavesOfSchema(RC.ResilienceConfig.ast, "")
    const records = new Set(["characterLimits", "quota.keyCaps"])

    const get = (u: unknown, path: string): unknown =>
      path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], u)
    const set = (u: unknown, path: string, value: unknown): unknown => {
      const copy = structuredClone(u) as Record<string, unknown>
      const keys = path.split(".")
      let node = copy
      for (const k of keys.slice(0, -1)) node = node[k] as Record<string, unknown>
      node[keys[keys.length - 1]!] = value
      return copy
    }
    /** Another value of the same field (valid or not: only the mapping is looked at). */
    const other = (path: string, v: unknown): unknown => {
      if (records.has(path)) return { other: 1 }
      if (v === false && path !== "coalesce" && !path.includes(".")) return {} // a policy switched back on
      if (Array.isArray(v)) return [...v].reverse()
      if (typeof v === "boolean") return !v
      if (typeof v === "number") return v === 0 ? 1 : v * 2
      if (typeof v === "string" && RC.millisOf(v) !== undefined) return 12_345
      const literals = ({
        "concurrency.plan": ["scale", "free"],
        "concurrency.planTable": ["deployment-guide", "models-page"],
        "retry.exponential.jitter": ["equal", "full"],
        "breaker.policy": ["consecutive", "rate"],
        "breaker.onStoreError": ["allow", "fail"],
        "quota.whenUnknown": ["allow", "deny"],
        "coalesce.onAllWaitersGone": ["interrupt", "finish"],
        "cache.store": ["memory", "file"],
        "telemetry.logLevel": ["Warn", "Error"],
        "redis.onUnavailable": ["local-fallback", "fail-closed"]
      } as Record<string, ReadonlyArray<string>>)[path]
      return literals?.find((l) => l !== v) ?? `${String(v)}x`
    }
    const mapped = (raw: unknown) => {
      const c = Schema.decodeUnknownSync(RC.ResilienceConfig)(raw)
      return render({ options: RC.toResilientOptions(c, key), telemetry: RC.toTelemetryOptions(c) })
    }

    it("the variants set every field of the schema", () => {
      const covered = new Set(variants.flatMap((v) => leavesOfValue(v, "", records)))
      const missing = schemaLeaves.filter((p) => !covered.has(p) && !checkOnly.has(p) && p !== "coalesce")
      assert.deepStrictEqual(missing, [])
    })

    it("changing any field changes the mapped options", () => {
      // A field may be moot in one variant (the plan, when every pool has a custom number), never in all.
      const reached = new Set<string>()
      const tried = new Set<string>()
      for (const variant of variants) {
        const before = mapped(variant)
        for (const path of leavesOfValue(variant, "", records)) {
          if (checkOnly.has(path)) continue
          tried.add(path)
          if (before !== mapped(set(variant, path, other(path, get(variant, path))))) reached.add(path)
        }
      }
      assert.deepStrictEqual([...tried].filter((p) => !reached.has(p)), [])
      assert.isAbove(reached.size, 70)
    })

    it("false switches a policy off", () => {
      const o = RC.toResilientOptions(
        decoded({ retry: false, budget: false, breaker: false, quota: false, coalesce: false, cache: false }),
        key
      )
      assert.deepStrictEqual([o.retry, o.budget, o.breaker, o.quota, o.coalesce, o.cache], [
        false,
        false,
        false,
        false,
        false,
        false
      ])
    })
  })

  describe("schema errors", () => {
    it("unknown keys are errors with their path and the nearest known key", () => {
      const { config, problems } = RC.validate({ retyr: {}, breaker: { failurs: 3 }, timeouts: { idel: 1 } })
      assert.isUndefined(config)
      assert.deepStrictEqual(paths(problems), ["retyr", "breaker.failurs", "timeouts.idel"])
      assert.include(problems[0]!.fix, `did you mean "retry"`)
      assert.include(problems[1]!.fix, `did you mean "failures"`)
      assert.include(problems[2]!.fix, `did you mean "idle"`)
      for (const p of problems) assert.strictEqual(p.severity, "error")
    })

    it("bad values are reported at their paths", () => {
      const { problems } = RC.validate(fixture("bad"))
      assert.sameMembers(paths(problems), [
        "retyr",
        "concurrency.plan",
        "retry.exponential.base",
        "retry.exponential.maxRetries",
        "retry.exponential.jitter",
        "breaker.failurs",
        "timeouts.deadline"
      ])
      const base = problems.find((p) => p.path === "retry.exponential.base")!
      assert.include(base.message, "duration")
      assert.include(base.fix, "30 seconds")
      assert.include(problems.find((p) => p.path === "concurrency.plan")!.message, `"unknown"`)
    })

    it("durations: strings with a unit or milliseconds; Infinity only where a bound may be switched off", () => {
      assert.deepStrictEqual(
        RC.validate({ timeouts: { deadline: "2 minutes", headers: 5000, idle: "Infinity" } }).problems,
        []
      )
      assert.deepStrictEqual(paths(RC.validate({ timeouts: { deadline: "Infinity" } }).problems), ["timeouts.deadline"])
      for (const bad of ["30", "30 secs", "-1 seconds", -5, "soon", "1.5seconds"]) {
        assert.deepStrictEqual(paths(RC.validate({ concurrency: { queueTimeout: bad } }).problems), [
          "concurrency.queueTimeout"
        ], String(bad))
      }
    })

    it.effect.prop(
      "any non-negative number of milliseconds or seconds is a duration of that length",
      [Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 10_000_000 }))],
      ([n]) =>
        Effect.sync(() => {
          assert.strictEqual(RC.millisOf(n), n)
          assert.strictEqual(RC.millisOf(`${n} seconds`), n * 1000)
          assert.deepStrictEqual(RC.validate({ budget: { window: n } }).problems, [])
          assert.deepStrictEqual(RC.validate({ budget: { window: `${n} millis` } }).problems, [])
        })
    )
  })

  describe("cross-field checks", () => {
    it("reports every inconsistency with a fix", () => {
      const { config, problems } = RC.validate(fixture("bad-cross"))
      assert.isDefined(config)
      assert.sameMembers(paths(problems), [
        "concurrency.minLimit",
        "concurrency.initialLimit",
        "concurrency.pools.music",
        "retry.exponential.cap",
        "retry.exponential.jitterRatio",
        "budget.ratio",
        "quota.alertPercent",
        "cache.directory"
      ])
      for (const p of problems) {
        assert.strictEqual(p.severity, "error")
        assert.isAbove(p.fix.length, 5)
      }
    })

    it("a custom pool limit of 0 for a pool in use is an error; unused, a warning", () => {
      const used = RC.validate({ concurrency: { pools: { flash: 0 }, poolsInUse: ["flash"] } }).problems
      assert.deepStrictEqual(used.map((p) => [p.path, p.severity]), [["concurrency.pools.flash", "error"]])
      const unknown = RC.validate({ concurrency: { pools: { flash: 0 } } }).problems
      assert.deepStrictEqual(unknown.map((p) => [p.path, p.severity]), [["concurrency.pools.flash", "warning"]])
      assert.deepStrictEqual(RC.validate({ concurrency: { pools: { music: 0 }, poolsInUse: ["flash"] } }).problems, [])
    })

    it("fields another choice ignores are warnings", () => {
      const { problems } = RC.validate({
        retry: { exponential: { jitter: "full", jitterRatio: 0.5 } },
        breaker: { policy: "consecutive", threshold: 0.5 },
        cache: { directory: "/tmp/x" }
      })
      assert.deepStrictEqual(problems.map((p) => [p.path, p.severity]), [
        ["retry.exponential.jitterRatio", "warning"],
        ["breaker.threshold", "warning"],
        ["cache.directory", "warning"]
      ])
    })
  })

  describe("strict checks", () => {
    it("risky settings are flagged only in strict mode", () => {
      const risky = fixture("risky")
      assert.deepStrictEqual(paths(RC.validate(risky).problems), ["apiKey"])
      const strict = RC.validate(risky, { strict: true }).problems
      assert.sameMembers(paths(strict), [
        "apiKey",
        "concurrency.pools.standard",
        "concurrency.maxQueue",
        "concurrency.queueTimeout",
        "timeouts.idle",
        "retry.exponential.jitter",
        "retry.exponential.maxRetries",
        "budget",
        "breaker"
      ])
      assert.include(strict.find((p) => p.path === "concurrency.pools.standard")!.message, `"creator" plan's 5`)
    })

    it("the limit above the plan is judged against the chosen table", () => {
      const stt = { concurrency: { plan: "pro", pools: { stt: 50 } } }
      assert.deepStrictEqual(paths(RC.validate(stt, { strict: true }).problems), ["concurrency.pools.stt"])
      assert.deepStrictEqual(
        RC.validate({ concurrency: { ...stt.concurrency, planTable: "models-page" } }, { strict: true }).problems,
        []
      )
    })

    it("the deprecated table names seeds and docs still select their tables, with a warning naming the new one", () => {
      for (
        const [old, current, table] of [["seeds", "deployment-guide", deploymentGuidePlans], [
          "docs",
          "models-page",
          modelsPagePlans
        ]] as const
      ) {
        const { config, problems } = RC.validate({ concurrency: { planTable: old } })
        assert.deepStrictEqual(problems.map((p) => [p.severity, p.path]), [["warning", "concurrency.planTable"]])
        assert.include(problems[0]!.message, `"${old}" is the deprecated name of the "${current}" plan table`)
        assert.include(problems[0]!.fix, `"planTable": "${current}"`)
        assert.isFalse(RC.isBlocking(problems))
        assert.strictEqual(RC.toResilientOptions(config!, key).limiter?.table, table)
      }
      assert.deepStrictEqual(RC.validate({ concurrency: { planTable: "guide" } }).problems.map((p) => p.severity), [
        "error"
      ])
    })

    it("quota off, very long idle timeout, no queue deadline, huge attempt caps", () => {
      const strict = RC.validate({
        quota: false,
        timeouts: { idle: "10 minutes", deadline: "1 hour" },
        concurrency: { queueTimeout: "Infinity" },
        retry: { maxAttempts: 1000, linear: { maxRetries: 40 }, requeue: { maxRetries: 500 } }
      }, { strict: true }).problems
      assert.sameMembers(paths(strict), [
        "quota",
        "timeouts.idle",
        "concurrency.queueTimeout",
        "retry.maxAttempts",
        "retry.linear.maxRetries",
        "retry.requeue.maxRetries"
      ])
    })
  })

  describe("secrets", () => {
    const secret = "sk_3c1e9f0a5b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5f"

    it("a key written in the file: a warning, an error in strict mode; never its value", () => {
      for (const field of ["apiKey", "api_key", "xi-api-key", "ELEVENLABS_API_KEY"]) {
        const raw = { concurrency: { plan: "pro", [field]: secret } }
        const lax = RC.validate(raw)
        assert.deepStrictEqual(lax.problems.map((p) => [p.path, p.severity]), [[`concurrency.${field}`, "warning"]])
        assert.isDefined(lax.config)
        const strict = RC.validate(raw, { strict: true })
        assert.deepStrictEqual(strict.problems.map((p) => p.severity), ["error"])
        const text = JSON.stringify([lax.problems, strict.problems])
        assert.notInclude(text, secret)
        assert.notInclude(text, secret.slice(3, 20))
        assert.include(text, RC.redact(secret))
      }
    })

    it("a key-shaped value anywhere is found, even where the schema rejects the field", () => {
      const { problems } = RC.validate({ breaker: { keyPrefix: secret }, redis: { url: secret } }, { strict: true })
      assert.includeMembers(paths(problems), ["breaker.keyPrefix", "redis.url"])
      assert.notInclude(JSON.stringify(problems), secret)
    })

    it("a long secret-looking string and a password in a URL are found", () => {
      const token = "Zx81Qw0pLmN4vB7rT2yU9iO3kJ6hG5fDs"
      const { problems } = RC.validate({
        breaker: { keyPrefix: token },
        redis: { url: "redis://:hunter2hunter2@cache:6379" }
      })
      assert.deepStrictEqual(paths(problems), ["breaker.keyPrefix", "redis.url"])
      assert.notInclude(JSON.stringify(problems), token)
      assert.notInclude(JSON.stringify(problems), "hunter2hunter2")
    })

    it("ordinary values are not taken for secrets", () => {
      assert.deepStrictEqual(RC.validate(fixture("good"), { strict: true }).problems, [])
      assert.deepStrictEqual(
        RC.validate({ cache: { store: "file", directory: "/var/cache/0123456789abcdef0123456789abcdef0" } }).problems,
        []
      )
    })
  })

  describe("loaders", () => {
    const env = (vars: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnv({ env: vars }))

    it.effect("fromJsonFile: a good file", () =>
      Effect.gen(function*() {
        const config = yield* RC.fromJsonFile(fixturePath("good"))
        assert.strictEqual(config.concurrency?.plan, "pro")
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("fromJsonFile: missing file, invalid JSON and bad content fail with one ConfigError", () =>
      Effect.gen(function*() {
        const missing = yield* Effect.flip(RC.fromJsonFile(fixturePath("nope")))
        assert.strictEqual(missing._tag, "ConfigError")
        assert.include(missing.problems[0]!.message, "no such file")
        const invalid = yield* Effect.flip(RC.fromJsonFile(fixturePath("invalid")))
        assert.include(invalid.problems[0]!.message, "not valid JSON")
        assert.include(invalid.problems[0]!.message, "line 2")
        const bad = yield* Effect.flip(RC.fromJsonFile(fixturePath("bad")))
        assert.lengthOf(bad.problems, 7)
        assert.include(bad.message, "retry.exponential.base")
        const risky = yield* Effect.flip(RC.fromJsonFile(fixturePath("risky"), { strict: true }))
        assert.lengthOf(risky.problems, 9)
        assert.notInclude(risky.message, "sk_3c1e9f0a5b")
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("a JSON syntax error never quotes the text (which may hold a key)", () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "rc-"))
        try {
          const file = join(dir, "c.json")
          writeFileSync(file, `{"apiKey": sk_3c1e9f0a5b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f}`)
          const e = yield* Effect.flip(RC.fromJsonFile(file))
          assert.include(e.problems[0]!.message, "not valid JSON")
          assert.notInclude(JSON.stringify(e.problems), "3c1e9f0a5b")
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("fromEnv: the documented variables", () =>
      Effect.gen(function*() {
        const config = yield* RC.fromEnv()
        assert.deepStrictEqual(config, {
          concurrency: { plan: "scale", queueTimeout: "30 seconds", pools: { stt: 40 } },
          retry: { exponential: { jitter: "decorrelated", maxRetries: 3 } },
          timeouts: { deadline: 90_000 },
          cache: false,
          coalesce: false,
          redis: { url: "redis://cache:6379", onUnavailable: "fail-closed" }
        })
      }).pipe(Effect.provide(env({
        ELEVENLABS_PLAN: "scale",
        ELEVENLABS_QUEUE_TIMEOUT: "30 seconds",
        ELEVENLABS_LIMIT_STT: "40",
        ELEVENLABS_JITTER: "decorrelated",
        ELEVENLABS_MAX_RETRIES: "3",
        ELEVENLABS_DEADLINE: "90000",
        ELEVENLABS_CACHE: "off",
        ELEVENLABS_COALESCE: "false",
        ELEVENLABS_REDIS_URL: "redis://cache:6379",
        ELEVENLABS_REDIS_ON_UNAVAILABLE: "fail-closed"
      }))))

    it.effect("load: the environment overrides the file field by field", () =>
      Effect.gen(function*() {
        const config = yield* RC.load({ file: fixturePath("good") })
        assert.strictEqual(config.concurrency?.plan, "creator")
        assert.strictEqual(config.concurrency?.queueTimeout, "90 seconds")
        assert(config.retry !== false && config.retry !== undefined)
        assert.strictEqual(config.retry.exponential?.jitter, "full")
        assert.strictEqual(config.retry.exponential?.base, "500 millis")
        const noEnv = yield* RC.load({ file: fixturePath("good"), env: false })
        assert.strictEqual(noEnv.concurrency?.plan, "pro")
      }).pipe(
        Effect.provide(env({ ELEVENLABS_PLAN: "creator", ELEVENLABS_JITTER: "full" })),
        Effect.provide(NodeServices.layer)
      ))

    it.effect("load: a bad environment value names its variable", () =>
      Effect.gen(function*() {
        const e = yield* Effect.flip(RC.load({ file: fixturePath("minimal") }))
        assert.deepStrictEqual(paths(e.problems), ["retry.exponential.jitter", "timeouts.deadline"])
        assert.include(e.problems[0]!.message, "(from ELEVENLABS_JITTER)")
        assert.include(e.problems[1]!.message, "(from ELEVENLABS_DEADLINE)")
        assert.strictEqual(e.source, `${fixturePath("minimal")} + environment`)
      }).pipe(
        Effect.provide(env({ ELEVENLABS_JITTER: "wild", ELEVENLABS_DEADLINE: "later" })),
        Effect.provide(NodeServices.layer)
      ))

    it.effect("load: strict mode fails on risky settings", () =>
      Effect.gen(function*() {
        yield* RC.load({ file: fixturePath("minimal") })
        const e = yield* Effect.flip(RC.load({ file: fixturePath("minimal"), strict: true }))
        assert.deepStrictEqual(paths(e.problems), ["retry.exponential.jitter"])
      }).pipe(Effect.provide(env({ ELEVENLABS_JITTER: "none" })), Effect.provide(NodeServices.layer)))
  })

  describe("drives the real stack (Resilient over the in-process simulator)", () => {
    const burst = (env: Record<string, string>) =>
      Effect.gen(function*() {
        const config = yield* RC.load({ file: fixturePath("minimal") })
        const options = RC.toResilientOptions(config, Redacted.make("sim-key"))
        return yield* Effect.gen(function*() {
          const sim = yield* Simulator.Simulator
          const results = yield* runVirtual(
            Effect.forEach(
              Array.from({ length: 60 }, (_, i) => i),
              (i) =>
                Client.ElevenLabs.use((c) =>
                  c.textToSpeech.convert("21m00Tcm4TlvDq8ikWAM", {
                    text: `line ${i} `.repeat(4),
                    modelId: "eleven_flash_v2_5"
                  })
                ).pipe(Effect.match({ onSuccess: () => "ok", onFailure: (e) => e.reason._tag })),
              { concurrency: "unbounded" }
            )
          )
          return { results, stats: yield* sim.stats }
        }).pipe(
          Effect.provide(
            Resilient.layer(options).pipe(Layer.provideMerge(InProcess.layerSimulated({ seed: 2, plan: "creator" })))
          )
        )
      }).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))),
        Effect.provide(NodeServices.layer)
      )

    it.effect("creator from the file: 60 Flash calls all succeed, 10 at a time, no concurrency 429", () =>
      Effect.gen(function*() {
        const { results, stats } = yield* burst({})
        assert.deepStrictEqual(results.filter((o) => o !== "ok"), [])
        assert.strictEqual(stats.pools.flash.maxInFlight, 10)
        assert.strictEqual(stats.byDetailStatus["too_many_concurrent_requests"] ?? 0, 0)
      }))

    it.effect("the same file with ELEVENLABS_MAX_QUEUE=5: the bounded queue turns the excess away", () =>
      Effect.gen(function*() {
        const { results } = yield* burst({ ELEVENLABS_MAX_QUEUE: "5" })
        const ok = results.filter((o) => o === "ok").length
        assert.strictEqual(ok, 15, JSON.stringify(results))
      }))
  })
})
