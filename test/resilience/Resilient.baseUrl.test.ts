/**
 * A `baseUrl` that is not a URL is a typed failure of `Resilient.make` (and of
 * building `Resilient.layer`), not a `TypeError` thrown from the pipeline. The
 * SDK door, which only labels spans with it, ignores one that does not parse.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted } from "effect"
import * as Resilient from "../../src/resilience/Resilient.ts"
import * as WithResilience from "../../src/resilience/WithResilience.ts"
import * as InProcess from "../../src/simulator/InProcess.ts"

const apiKey = Redacted.make("sim-key")

describe("Resilient: baseUrl", () => {
  it.effect("an unparsable baseUrl fails make with InvalidRequest (operation startup, field baseUrl)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Resilient.make({ apiKey, baseUrl: "nope" }))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.strictEqual(error.reason.operation, "startup")
      assert.strictEqual(error.reason._tag === "InvalidRequest" ? error.reason.field : undefined, "baseUrl")
      assert.include(error.message, `baseUrl "nope" is not a URL`)
      // The layer fails to build the same way; a good URL builds.
      const exit = yield* Effect.exit(Layer.build(Resilient.layer({ apiKey, baseUrl: "http://[" })))
      assert.isTrue(Exit.isFailure(exit))
      yield* Resilient.make({ apiKey, baseUrl: "http://127.0.0.1:8787" })
    }).pipe(Effect.scoped, Effect.provide(InProcess.layerSimulated())))

  it("the SDK door takes the base URL for span labels only: an unparsable one neither throws nor fails calls", async () => {
    const runner = WithResilience.makeResilientRunner({ baseUrl: "nope", quota: false })
    try {
      assert.strictEqual(await runner.run(() => Promise.resolve("ok"), { operation: "user.get" }), "ok")
    } finally {
      await runner.dispose()
    }
  })
})
