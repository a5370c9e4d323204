/**
 * The package as an application installs it. `npm pack` of a copy of this
 * working tree (its `prepare` builds `dist` in the copy, so the repository's
 * own `dist` is never touched), then a fresh app (`"type": "module"`) that
 * installs the tarball with the newest `effect` 4.x and `@effect/platform-node`
 * from the registry, and checks:
 *
 * - one copy of `effect` in the app (two copies break Effect's types and
 *   runtime checks), and the packed `package.json` keeps `effect` and
 *   `@effect/platform-node` in `peerDependencies`, out of `dependencies` (npm
 *   would dedupe a caret dependency today, and install a second copy the day
 *   the app's version falls outside it);
 * - no optional OpenTelemetry peer installed (`@effect/opentelemetry`). `redis`
 *   is installed anyway, and the test says so: `@effect/platform-node`
 *   declares it a required peer, and npm installs required peers. That cannot
 *   be avoided while this library depends on `@effect/platform-node`; it is
 *   never loaded unless a Redis layer is built (checked below with it
 *   unresolvable);
 * - the published files: `dist`, `bin`, `src` (for the source and declaration
 *   maps), `docs`, `README.md`, `package.json`; no tests;
 * - every subpath export and the CLI load with the optional peers (`redis`,
 *   OpenTelemetry) unresolvable, and the layers that need them fail with
 *   `MissingPeerDependency`;
 * - the README's first example (the first `ts` block under "## A first
 *   example") and its SDK snippet (the first `ts` block after the comment
 *   `<!-- consumer-test: sdk`), extracted verbatim, typecheck under a strict
 *   tsconfig and run (Node strips the types) against the simulator.
 *
 * Slow, and it needs the registry at least once: about 30 s with a warm npm
 * cache, 2-3 minutes with a cold one, most of it in `beforeAll` (`npm pack`
 * with a `tsc` build, an install that includes TypeScript and the ElevenLabs
 * SDK). Tarballs and the version lists come from the npm cache when they are
 * there (`--prefer-offline`). One install is shared by every test.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { execFile } from "node:child_process"
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, dirname, join } from "node:path"
import * as Server from "../../src/simulator/Server.ts"

const root = join(import.meta.dirname, "..", "..")
const repoPackage = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  readonly name: string
  readonly devDependencies: Record<string, string>
  readonly exports: Record<string, unknown>
}

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * The environment of the child processes: Node 24 first on the PATH (npm's
 * `#!/usr/bin/env node` runs on it), none of the `npm_*` variables that
 * `npm test` sets for its own project (they would point npm back at this
 * repository), except where npm fetches from; no ElevenLabs variables.
 */
const keptNpmConfig =
  /^npm_config_(cache|registry|userconfig|globalconfig|cafile|strict_ssl|proxy|https_proxy|noproxy)$/i

const childEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key === "INIT_CWD" || key.startsWith("ELEVENLABS_")) continue
    if (/^npm_/i.test(key) && !keptNpmConfig.test(key)) continue
    env[key] = value
  }
  env["PATH"] = `${dirname(process.execPath)}${delimiter}${process.env["PATH"] ?? ""}`
  return { ...env, ...extra }
}

const run = (
  command: string,
  args: ReadonlyArray<string>,
  cwd: string,
  env: NodeJS.ProcessEnv = childEnv(),
  timeout = 240_000
) =>
  new Promise<Result>((resolve) => {
    execFile(command, args, { cwd, env, timeout, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resolve({ code, stdout, stderr })
    })
  })

const ok = async (command: string, args: ReadonlyArray<string>, cwd: string, env?: NodeJS.ProcessEnv) => {
  const result = await run(command, args, cwd, env)
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`)
  }
  return result
}

/** The newest published version matching `range` (`npm view` lists every match). */
const newest = async (name: string, range: string): Promise<string> => {
  const { stdout } = await ok("npm", ["view", "--prefer-offline", `${name}@${range}`, "version", "--json"], tmpdir())
  const versions = [JSON.parse(stdout) as string | ReadonlyArray<string>].flat()
  const key = (v: string) => v.split(/[.+-]/).slice(0, 3).map((n) => n.padStart(6, "0")).join(".")
  const sorted = [...versions].sort((a, b) => key(a).localeCompare(key(b)))
  const last = sorted[sorted.length - 1]
  if (last === undefined) throw new Error(`no version of ${name}@${range}`)
  return last
}

/** The first ```ts block after `marker` in README.md. */
const readmeBlock = (marker: string): string => {
  const readme = readFileSync(join(root, "README.md"), "utf8")
  const at = readme.indexOf(marker)
  assert.isAtLeast(at, 0, `README.md has no ${JSON.stringify(marker)}`)
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(at))?.[1]
  assert.isDefined(block, `README.md has no ts block after ${JSON.stringify(marker)}`)
  return block ?? ""
}

/** Every installed copy of the package `name` under `dir`'s node_modules (nested ones included). */
const copiesOf = (name: string, dir: string): Array<string> => {
  const found: Array<string> = []
  const visitPackage = (pkg: string) => {
    const manifest = join(pkg, "package.json")
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === name) {
      found.push(pkg)
    }
    visitModules(join(pkg, "node_modules"))
  }
  const visitModules = (modules: string) => {
    if (!existsSync(modules)) return
    for (const entry of readdirSync(modules, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith(".")) continue
      const path = join(modules, entry.name)
      if (entry.name.startsWith("@")) { for (const scoped of readdirSync(path)) visitPackage(join(path, scoped)) }
      else visitPackage(path)
    }
  }
  visitModules(join(dir, "node_modules"))
  return found
}

/** Makes the optional peers unresolvable (as in an app that did not install them). */
const blockOptionalPeers = `
import { registerHooks } from "node:module"
const optional = /^(redis|@redis\\/|@opentelemetry\\/|@effect\\/opentelemetry)/
registerHooks({
  resolve(specifier, context, next) {
    if (!optional.test(specifier)) return next(specifier, context)
    const name = specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/")
    throw Object.assign(new Error(\`Cannot find package '\${name}' imported from \${context.parentURL}\`), {
      code: "ERR_MODULE_NOT_FOUND"
    })
  }
})
`

/** Loads every subpath export, then builds the two layers that need optional peers. */
const loadEntries = (subpaths: ReadonlyArray<string>) => `
import { Cause, Effect, Exit, Layer } from "effect"
const loaded = []
for (const subpath of ${JSON.stringify(subpaths)}) {
  await import(subpath === "." ? "${repoPackage.name}" : "${repoPackage.name}" + subpath.slice(1))
  loaded.push(subpath)
}
const { Distributed, Otel } = await import("${repoPackage.name}")
const failure = async (layer) => {
  const exit = await Effect.runPromiseExit(Effect.scoped(Layer.build(layer)))
  const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
  return { tag: error?._tag, message: error?.message }
}
console.log(JSON.stringify({
  loaded,
  otel: await failure(Otel.layerSdk({})),
  redis: await failure(Distributed.SharedState.layerRedis({ url: "redis://127.0.0.1:1" }))
}))
`

/** The consumer's tsconfig: the repository's strictness. */
const tsconfig = {
  compilerOptions: {
    target: "ES2023",
    lib: ["ES2023"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    noFallthroughCasesInSwitch: true,
    verbatimModuleSyntax: true,
    erasableSyntaxOnly: true,
    // Declarations are checked too, so that this package's .d.ts files must resolve every
    // import; errors in other packages' declarations are filtered out below (not ours).
    skipLibCheck: false,
    noEmit: true,
    types: ["node"]
  },
  include: ["*.ts"]
}

const scope = Effect.runSync(Scope.make())
let work = ""
let app = ""
let installed = ""
let simulatorUrl = ""
let effectVersion = ""

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "elevenlabs-resilience-consumer-"))
  app = join(work, "app")
  installed = join(app, "node_modules", repoPackage.name)
  // A copy of the working tree (no node_modules, dist or .git); node_modules is linked for the build.
  const stage = join(work, "stage")
  const skip = new Set(["node_modules", "dist", ".git", "coverage", ".tmp", ".scratch"])
  const topLevel = (path: string) => path.slice(root.length + 1).split(/[\\/]/)[0] ?? ""
  cpSync(root, stage, { recursive: true, filter: (path) => path === root || !skip.has(topLevel(path)) })
  symlinkSync(join(root, "node_modules"), join(stage, "node_modules"), "dir")
  await ok("npm", ["pack", "--pack-destination", work, "--loglevel=error"], stage)
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"))
  assert.isDefined(tarball, "npm pack wrote no tarball")

  effectVersion = await newest("effect", "^4")
  const platformVersion = await newest("@effect/platform-node", "^4")
  mkdirSync(app)
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "consumer-app", private: true, type: "module" }))
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify(tsconfig, null, 2))
  await ok("npm", [
    "install",
    "--no-audit",
    "--no-fund",
    "--prefer-offline",
    "--loglevel=error",
    join(work, tarball ?? ""),
    `effect@${effectVersion}`,
    `@effect/platform-node@${platformVersion}`,
    `typescript@${repoPackage.devDependencies["typescript"]}`,
    `@types/node@${repoPackage.devDependencies["@types/node"]}`,
    `@elevenlabs/elevenlabs-js@${repoPackage.devDependencies["@elevenlabs/elevenlabs-js"]}`
  ], app)

  writeFileSync(join(app, "first-example.ts"), readmeBlock("\n## A first example\n"))
  writeFileSync(join(app, "sdk-snippet.ts"), readmeBlock("<!-- consumer-test: sdk"))
  writeFileSync(join(app, "block-optional-peers.mjs"), blockOptionalPeers)
  const subpaths = Object.keys(repoPackage.exports).filter((s) => s !== "./package.json")
  writeFileSync(join(app, "load-entries.mjs"), loadEntries(subpaths))

  const running = await Effect.runPromise(Server.serve({ port: 0, seed: 21 }).pipe(Scope.provide(scope)))
  simulatorUrl = running.url
}, 420_000)

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  if (work !== "") rmSync(work, { recursive: true, force: true })
}, 180_000)

/** Runs one of the app's programs with Node 24, against the simulator. */
const runProgram = (file: string, nodeArgs: ReadonlyArray<string> = [], args: ReadonlyArray<string> = []) =>
  run(
    process.execPath,
    [...nodeArgs, file, ...args],
    app,
    childEnv({ ELEVENLABS_API_KEY: "sim-key", ELEVENLABS_BASE_URL: simulatorUrl }),
    45_000
  )

describe("consumer app", () => {
  it("has one copy of effect (the newest 4.x), shared as a peer; no optional OpenTelemetry peer installed", () => {
    const copies = copiesOf("effect", app)
    assert.deepStrictEqual(copies, [join(app, "node_modules", "effect")], `copies of effect: ${copies.join(", ")}`)
    const version = (JSON.parse(readFileSync(join(copies[0] ?? "", "package.json"), "utf8")) as { version: string })
      .version
    assert.strictEqual(version, effectVersion)
    // One copy by declaration, not by npm's deduping: peers, never dependencies.
    const packed = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as {
      readonly dependencies?: Record<string, string>
      readonly peerDependencies?: Record<string, string>
    }
    for (const name of ["effect", "@effect/platform-node"]) {
      assert.property(packed.peerDependencies ?? {}, name, `${name} is not a peer dependency`)
      assert.notProperty(packed.dependencies ?? {}, name, `${name} is a dependency`)
    }
    assert.deepStrictEqual(copiesOf("@effect/opentelemetry", app), [])
    assert.isFalse(existsSync(join(app, "node_modules", "@opentelemetry")))
    // redis is there although the app does not use it: @effect/platform-node requires it as a peer
    // and npm installs required peers. It cannot be left out while this library depends on
    // @effect/platform-node; it is loaded only by a Redis layer (the next test makes it unresolvable).
    assert.isNotEmpty(copiesOf("redis", app), "redis is no longer installed: update this test and the README")
  })

  it("gets the published files: dist, bin, src, docs, README, package.json; no tests", () => {
    const top = readdirSync(installed).filter((f) => f !== "node_modules").sort()
    assert.includeMembers(["LICENSE", "README.md", "bin", "dist", "docs", "package.json", "src"], top)
    const expected = ["dist/index.js", "dist/index.d.ts", "dist/index.d.ts.map", "dist/cli/main.js", "src/index.ts"]
    for (const file of expected) {
      assert.isTrue(existsSync(join(installed, file)), `${file} is not in the package`)
    }
    const dist = readdirSync(join(installed, "dist"), { recursive: true }).map(String)
    assert.isEmpty(dist.filter((f) => /\.test\./.test(f)), "tests in dist")
  })

  it("loads every entry and the CLI without the optional peers; their layers fail naming them", async () => {
    const entries = await runProgram("load-entries.mjs", ["--import", "./block-optional-peers.mjs"])
    assert.strictEqual(entries.code, 0, `${entries.stdout}\n${entries.stderr}`)
    const report = JSON.parse(entries.stdout) as {
      loaded: Array<string>
      otel: { tag?: string; message?: string }
      redis: { tag?: string; message?: string }
    }
    assert.deepStrictEqual(report.loaded, Object.keys(repoPackage.exports).filter((s) => s !== "./package.json"))
    assert.strictEqual(report.otel.tag, "MissingPeerDependency")
    assert.match(report.otel.message ?? "", /npm install @effect\/opentelemetry .*@opentelemetry\/sdk-trace-node/)
    assert.strictEqual(report.redis.tag, "MissingPeerDependency")
    assert.match(report.redis.message ?? "", /npm install redis$/)

    const help = await runProgram(
      join("node_modules", ".bin", "elevenlabs-resilience"),
      ["--import", "./block-optional-peers.mjs"],
      ["--help"]
    )
    assert.strictEqual(help.code, 0, `${help.stdout}\n${help.stderr}`)
    assert.match(help.stdout, /elevenlabs-resilience <subcommand>/)
  })

  it("the HTML report's charting library is an optional peer: without it --html is one line naming it", async () => {
    assert.deepStrictEqual(copiesOf("uplot", app), [])
    const html = join(app, "report.html")
    const simulate = await runProgram(join("node_modules", ".bin", "elevenlabs-resilience"), [], [
      "simulate",
      "--requests",
      "20",
      "--html",
      html
    ])
    assert.notStrictEqual(simulate.code, 0)
    const lines = simulate.stderr.trim().split("\n")
    assert.strictEqual(lines.length, 1, simulate.stderr)
    assert.match(lines[0] ?? "", /needs the "uplot" package.*npm install uplot/)
    assert.isFalse(existsSync(html))
  })

  it("typechecks the README's programs under a strict tsconfig", async () => {
    const { code, stdout, stderr } = await run(join(app, "node_modules", ".bin", "tsc"), [
      "-p",
      ".",
      "--singleThreaded"
    ], app)
    const output = `${stdout}\n${stderr}`
    const errors = output.split("\n").filter((line) => /\berror TS\d+/.test(line))
    // Errors in other packages' declarations are theirs (today: the SDK's wrapper classes, and
    // effect/rpc wanting the DOM lib); the README's programs and this package's .d.ts must be clean.
    const theirs = (file: string) =>
      file.startsWith("node_modules/") && !file.startsWith(`node_modules/${repoPackage.name}/`)
    const ours = errors.filter((line) => {
      const file = /^([^(]+)\(\d+,\d+\): error TS/.exec(line)?.[1]
      return file === undefined || !theirs(file)
    })
    assert.deepStrictEqual(ours, [], output)
    if (errors.length === 0) assert.strictEqual(code, 0, output)
  }, 120_000)

  it("runs the README's first example against the simulator", async () => {
    const { code, stdout, stderr } = await runProgram("first-example.ts")
    assert.strictEqual(code, 0, `exit code ${code}\n${stdout}\n${stderr}`)
    const bytes = Number(/(\d+) bytes, \d+ credits/.exec(`${stdout}\n${stderr}`)?.[1] ?? 0)
    assert.isAbove(bytes, 0, `${stdout}\n${stderr}`)
  })

  it("runs the README's SDK snippet against the simulator", async () => {
    const { code, stdout, stderr } = await runProgram("sdk-snippet.ts")
    assert.strictEqual(code, 0, `exit code ${code}\n${stdout}\n${stderr}`)
    const bytes = Number(/^(\d+) bytes$/m.exec(stdout)?.[1] ?? 0)
    assert.isAbove(bytes, 0, `${stdout}\n${stderr}`)
  })
})
