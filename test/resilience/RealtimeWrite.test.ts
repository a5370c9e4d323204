/**
 * What a real-time session writes, and when a write waits for the permit (`RealtimeWrite`), on an engine with
 * a recording connection and a limiter of one permit: no socket, no simulator, every message written seen.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Redacted, Scope } from "effect"
import type * as Realtime from "../../src/client/Realtime.ts"
import * as ConcurrencyLimiter from "../../src/resilience/ConcurrencyLimiter.ts"
import type { Account } from "../../src/resilience/RealtimeContext.ts"
import { makeCtx } from "../../src/resilience/RealtimeContext.ts"
import { Engine } from "../../src/resilience/RealtimeEngine.ts"
import * as Model from "../../src/resilience/RealtimeModel.ts"
import { pump } from "../../src/resilience/RealtimeWrite.ts"

const key = "k"

/** An engine with one single-context context and a live "connection" that records what is written. */
const setup = (options: Partial<Model.SessionOptions> = {}) =>
  Effect.gen(function*() {
    const limiter = yield* ConcurrencyLimiter.make({ plan: { flash: 1 } })
    const settings = Model.settingsOf("single", { voiceId: "21m00Tcm4TlvDq8ikWAM", ...options })
    if (!("kind" in settings)) return yield* Effect.die(settings)
    const account: Account = {
      operation: settings.operation,
      keyId: key,
      pool: "flash",
      lane: "default",
      modelId: settings.modelId,
      limiter,
      quota: undefined,
      scope: yield* Scope.Scope,
      connected: () => engine.connected
    }
    const engine: Engine = new Engine({
      settings,
      url: "ws://unused",
      apiKey: Redacted.make("unused"),
      openTimeout: Duration.seconds(1),
      account,
      retry: false,
      budget: undefined,
      breaker: undefined
    })
    const ctx = yield* makeCtx(undefined, undefined)
    engine.contexts.set("", ctx)
    const written: Array<Realtime.ClientMessage> = []
    const connect = (scope: Scope.Scope) =>
      Effect.sync(() => {
        ctx.reset(0)
        engine.write = (message) =>
          Effect.sync(() => {
            written.push(message)
            return true
          })
        engine.connectionScope = scope
        engine.connected = true
      })
    const texts = () => written.flatMap((m) => ("text" in m && m.text.trim() !== "" ? [m.text] : []))
    const permits = Effect.map(limiter.snapshot(key, "flash"), (s) => s.inFlight)
    return { engine, ctx, limiter, written, texts, connect, permits }
  })

describe("RealtimeWrite", () => {
  it.effect("text below the step is written without a permit; the text that reaches it waits for one", () =>
    Effect.gen(function*() {
      const { connect, ctx, engine, limiter, permits, texts } = yield* setup()
      yield* connect(yield* Scope.Scope)
      ctx.ledger.append(`${"a".repeat(99)} `)
      yield* pump(engine)
      assert.deepStrictEqual(texts(), [`${"a".repeat(99)} `])
      assert.isFalse(ctx.blocked)
      // The only permit taken elsewhere: 20 more characters reach 120, so they wait.
      const holder = yield* Scope.make()
      yield* limiter.acquire({ key, pool: "flash" }).pipe(Scope.provide(holder))
      ctx.ledger.append(`${"b".repeat(19)} `)
      yield* pump(engine)
      assert.isTrue(ctx.blocked)
      assert.strictEqual(texts().length, 1, "not written without the permit")
      yield* Scope.close(holder, Exit.void)
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(texts(), [`${"a".repeat(99)} `, `${"b".repeat(19)} `])
      assert.isDefined(ctx.permit, "held until the server answers the 120")
      assert.strictEqual(yield* permits, 1)
      assert.strictEqual(ctx.triggered, 120)
    }))

  it.effect("a blocked context whose acquisition was forked into a connection's closed scope gets one on the next", () =>
    Effect.gen(function*() {
      const { connect, ctx, engine, texts } = yield* setup()
      // The connection's scope has closed; its finalizer has not yet cleared it from the engine.
      const closed = yield* Scope.make()
      yield* Scope.close(closed, Exit.void)
      yield* connect(closed)
      ctx.ledger.append(`${"c".repeat(129)} `)
      yield* pump(engine)
      assert.isTrue(ctx.blocked)
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(texts(), [], "the acquisition never ran in the closed scope")
      // The next connection: its resend needs the permit, and a new acquisition takes it.
      yield* connect(yield* Scope.Scope)
      yield* pump(engine)
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.deepStrictEqual(texts(), [`${"c".repeat(129)} `])
      assert.isDefined(ctx.permit)
    }))

  it.effect("a flush, or the end, of text buffered at the server waits for the permit; of nothing, it does not", () =>
    Effect.gen(function*() {
      const { connect, ctx, engine, limiter, written } = yield* setup()
      yield* connect(yield* Scope.Scope)
      const holder = yield* Scope.make()
      yield* limiter.acquire({ key, pool: "flash" }).pipe(Scope.provide(holder))
      ctx.ledger.append("Hello. ")
      ctx.flushAt = ctx.ledger.sent
      yield* pump(engine)
      assert.isTrue(ctx.blocked, "the flush of 7 buffered characters generates")
      assert.isFalse(written.some((m) => "flush" in m), "so it is not written yet")
      yield* Scope.close(holder, Exit.void)
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.isTrue(written.some((m) => "flush" in m))
      assert.strictEqual(ctx.triggered, 7)
      // Answered: the permit goes back; an end with nothing buffered needs none.
      ctx.ledger.answer([..."Hello. "])
      ctx.permit = yield* Effect.andThen(Scope.close(ctx.permit!, Exit.void), Effect.succeed(undefined))
      ctx.ended = true
      yield* pump(engine)
      assert.isFalse(ctx.blocked)
      assert.isTrue(ctx.endSent)
    }))
})
