/**
 * Optional peers: a missing package fails the layer that needs it with a
 * `MissingPeerDependency` naming the install line; other loading errors are
 * defects. node-redis is made missing here by mocking `NodeRedis` with an
 * import that fails as Node's does (the consumer test in test/packaging makes
 * it unresolvable in a real app).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Redacted } from "effect"
import { vi } from "vitest"
import * as SharedState from "../../src/distributed/SharedState.ts"
import { importPeer, MissingPeerDependency } from "../../src/internal/OptionalPeer.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"

const notFound = (specifier: string) =>
  Object.assign(new Error(`Cannot find package '${specifier}' imported from /app/node_modules/x/index.js`), {
    code: "ERR_MODULE_NOT_FOUND"
  })

vi.mock("@effect/platform-node/NodeRedis", () => {
  throw notFound("redis")
})

describe("importPeer", () => {
  it.effect("hands back the module when it loads", () =>
    Effect.gen(function*() {
      const module = yield* importPeer(() => Promise.resolve({ answer: 42 }), "Feature", ["pkg"])
      assert.strictEqual(module.answer, 42)
    }))

  it.effect("a package that is not installed: MissingPeerDependency with the npm install line", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        importPeer(() => Promise.reject(notFound("@opentelemetry/sdk-trace-node/build/x")), "Otel.layerSdk", [
          "@effect/opentelemetry",
          "@opentelemetry/sdk-trace-node"
        ])
      )
      assert.instanceOf(error, MissingPeerDependency)
      assert.strictEqual(error.packageName, "@opentelemetry/sdk-trace-node")
      assert.strictEqual(
        error.message,
        "Otel.layerSdk needs the package @opentelemetry/sdk-trace-node, which is not installed: " +
          "npm install @effect/opentelemetry @opentelemetry/sdk-trace-node"
      )
    }))

  it.effect("any other loading error is a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(importPeer(() => Promise.reject(new SyntaxError("bad module")), "F", ["p"]))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
    }))
})

describe("without node-redis", () => {
  it.effect("SharedState.layerRedis fails with MissingPeerDependency: npm install redis", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(SharedState.layerRedis({ url: "redis://127.0.0.1:1" })))
      assert.strictEqual(error._tag, "MissingPeerDependency")
      assert.match(error.message, /needs the package redis, which is not installed: npm install redis$/)
    }))

  it.effect("Resilient.layer with a redis entry: SharedStateUnavailable at start-up naming the package", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(
        Effect.void,
        Resilient.layer({
          apiKey: Redacted.make("sim-key"),
          limiter: { plan: "creator" },
          redis: { url: "redis://127.0.0.1:1" }
        }).pipe(Layer.provide(NodeHttpClient.layerUndici), Layer.fresh)
      ))
      assert.strictEqual(error.reason._tag, "SharedStateUnavailable")
      assert.strictEqual(error.reason.operation, "startup")
      assert.include(error.message, "npm install redis")
    }))
})
