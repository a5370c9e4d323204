import { assert, describe, it } from "@effect/vitest"
import { Effect, PlatformError } from "effect"
import * as CliFailure from "../../src/cli/CliFailure.ts"

const errno = (code: string, message = `${code}: something`) => Object.assign(new Error(message), { code })

describe("CliFailure", () => {
  it.effect("a typed error: tag and one line `<command>: <message>`", () =>
    Effect.gen(function*() {
      const failure = yield* Effect.flip(CliFailure.make("alerts", "--out: cannot write x;\n  choose another path"))
      assert.strictEqual(failure._tag, "CliFailure")
      assert.isTrue(CliFailure.isCliFailure(failure))
      assert.strictEqual(failure.line, "alerts: --out: cannot write x; choose another path")
      const mapped = CliFailure.from("simulate")({ message: "--plan must be one of free" })
      assert.deepStrictEqual([mapped.command, mapped.line], ["simulate", "simulate: --plan must be one of free"])
      // A CliFailure passes through `from` unchanged (its command is kept).
      assert.strictEqual(CliFailure.from("simulate")(failure), failure)
    }))

  it("errnoOf finds the code on the error or down its causes", () => {
    assert.strictEqual(CliFailure.errnoOf(errno("EADDRINUSE")), "EADDRINUSE")
    assert.strictEqual(CliFailure.errnoOf({ cause: { cause: errno("ENOENT") } }), "ENOENT")
    assert.isUndefined(CliFailure.errnoOf(new Error("plain")))
    assert.isUndefined(CliFailure.errnoOf(undefined))
  })

  it("file problems say what is wrong and what to do", () => {
    const notFound = PlatformError.systemError({
      _tag: "NotFound",
      module: "FileSystem",
      method: "writeFile",
      pathOrDescriptor: "/no/dir/x"
    })
    assert.strictEqual(
      CliFailure.fileProblem("/no/dir/x.yml", "write", notFound),
      "cannot write /no/dir/x.yml: the directory /no/dir does not exist; create it first or choose another path"
    )
    assert.strictEqual(
      CliFailure.fileProblem("/x.json", "read", errno("ENOENT")),
      "cannot read /x.json: no such file; check the path"
    )
    assert.strictEqual(
      CliFailure.fileProblem("/tmp", "write", errno("EISDIR")),
      "/tmp is a directory; give the path of a file"
    )
    assert.strictEqual(
      CliFailure.fileProblem("/etc/x", "write", errno("EACCES")),
      "cannot write /etc/x: permission denied; choose a path you can write"
    )
    assert.match(
      CliFailure.fileProblem("/f/x", "read", errno("ENOTDIR")),
      /a part of the path is a file, not a directory/
    )
    const failure = CliFailure.fileFailure("demo", "--html", "/no/dir/r.html", "write", errno("ENOENT"))
    assert.match(failure.line, /^demo: --html: cannot write \/no\/dir\/r\.html: the directory \/no\/dir does not exist/)
  })

  it("listen problems: in use, privileged, not an address here, other", () => {
    const serveError = (code: string) => ({ _tag: "ServeError", message: "", cause: errno(code, `listen ${code}: x`) })
    assert.strictEqual(
      CliFailure.listenProblem("the simulator", "127.0.0.1", 8787, "--port", serveError("EADDRINUSE")),
      "cannot serve the simulator on 127.0.0.1:8787: the port is in use; choose another --port (0 picks a free one)"
    )
    assert.match(
      CliFailure.listenProblem("x", "0.0.0.0", 80, "--port", serveError("EACCES")),
      /permission denied .* choose a --port above 1023$/
    )
    assert.match(
      CliFailure.listenProblem("x", "10.9.9.9", 1, "--port", serveError("EADDRNOTAVAIL")),
      /10\.9\.9\.9 is not an address of this machine/
    )
    assert.strictEqual(
      CliFailure.listenProblem("x", "127.0.0.1", 0, undefined, serveError("EMFILE")),
      "cannot serve x on 127.0.0.1:0 (listen EMFILE: x); stop what holds it and retry"
    )
    const failure = CliFailure.listenFailure(
      "simulator",
      "the simulator",
      "127.0.0.1",
      1,
      "--port",
      serveError("EADDRINUSE")
    )
    assert.match(failure.line, /^simulator: cannot serve the simulator on 127\.0\.0\.1:1: the port is in use/)
  })

  it("redis problems: the address and the error code, never the password, and what to do", () => {
    const url = "redis://user:hunter2@cache.internal:6380"
    const redisError = (cause: unknown) => ({ _tag: "RedisError", message: "", cause })
    assert.strictEqual(CliFailure.redisAddress(url), "cache.internal:6380")
    assert.strictEqual(CliFailure.redisAddress("redis://localhost"), "localhost:6379")
    assert.strictEqual(
      CliFailure.redisProblem(url, "--redis-url", redisError(errno("ECONNREFUSED"))),
      "cannot connect to Redis at cache.internal:6380 (ECONNREFUSED): nothing listens there; start redis-server or fix --redis-url"
    )
    assert.match(
      CliFailure.redisProblem(url, "--redis-url", redisError(errno("ENOTFOUND"))),
      /\(ENOTFOUND\): no such host; fix --redis-url$/
    )
    // No code: node-redis's own message, with the password masked.
    const auth = CliFailure.redisProblem(url, "--redis-url", redisError(new Error("WRONGPASS for hunter2")))
    assert.strictEqual(
      auth,
      "cannot use Redis at cache.internal:6380 (WRONGPASS for ***); check that redis-server runs there and --redis-url"
    )
  })
})
