/**
 * The pipeline's entry: the call span is made, the call's overlay set and the exit frame that ends the span
 * and puts the caller's context back pushed, as one region. Effect's run loop may yield between any two steps;
 * a caller interrupted at such a yield must find its span ended and its own context back.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Redacted, Scheduler, Tracer } from "effect"
import { HttpClient, HttpClientResponse } from "effect/http"
import * as Client from "../../src/client/ElevenLabs.ts"
import { type Call, callOf } from "../../src/resilience/PipelineCall.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const apiKey = Redacted.make("sk_test_entry_00000000000000000000000000000")
const subscription = {
  tier: "pro",
  character_count: 0,
  character_limit: 1_000_000,
  next_character_count_reset_unix: 4_000_000_000,
  status: "active"
}
const transport = HttpClient.make((request, url) =>
  Effect.succeed(
    url.pathname === "/v1/user/subscription"
      ? HttpClientResponse.fromWeb(request, Response.json(subscription))
      : HttpClientResponse.fromWeb(
        request,
        new Response(new Uint8Array([1, 2, 3]), {
          status: 200,
          headers: { "content-type": "audio/mpeg", "request-id": "r", "character-cost": "10" }
        })
      )
  )
)
const stack = Resilient.layer({ apiKey, limiter: { plan: "pro" } }).pipe(
  Layer.provide(Layer.succeed(HttpClient.HttpClient, transport))
)
const tts = Client.ElevenLabs.use((c) => c.textToSpeech.convert(voice, { text: "entry", modelId: "eleven_flash_v2_5" }))

/** Yields once, at the first step that finds a call's state in the fiber's context. */
class YieldInsideEntry extends Scheduler.MixedScheduler {
  armed = true
  seen: Call | undefined
  override shouldYield(fiber: Fiber.Fiber<unknown, unknown>) {
    const call = callOf(fiber)
    if (this.armed && call !== undefined) {
      this.armed = false
      this.seen = call
      return true
    }
    return super.shouldYield(fiber)
  }
}

describe("Pipeline entry", () => {
  it.effect("a caller interrupted at a yield right after the overlay is set: span ended, context back", () =>
    Effect.gen(function*() {
      yield* tts // warm: the quota guard's first reading
      const scheduler = new YieldInsideEntry()
      let callInFinalizer: Call | undefined | "unset" = "unset"
      let parentInFinalizer: string | undefined | "unset" = "unset"
      const child = yield* Effect.forkChild(
        tts.pipe(
          Effect.onExit(() =>
            Effect.withFiber((fiber) => {
              callInFinalizer = callOf(fiber)
              const parent = Context.getOption(fiber.context, Tracer.ParentSpan)
              parentInFinalizer = parent._tag === "Some" && parent.value._tag === "Span" ? parent.value.name : undefined
              return Effect.void
            })
          ),
          Effect.provideService(Scheduler.Scheduler, scheduler)
        ),
        { startImmediately: true }
      )
      assert.isFalse(scheduler.armed, "the run loop yielded inside the entry")
      yield* Fiber.interrupt(child)
      const exit = yield* Fiber.await(child)
      assert.isTrue(Exit.hasInterrupts(exit))
      assert.strictEqual(scheduler.seen?.span.status._tag, "Ended", "the call span is ended")
      assert.strictEqual(callInFinalizer, undefined, "the caller's finalizer runs in the caller's context")
      assert.strictEqual(parentInFinalizer, undefined, "no call span as the caller's parent span")
    }).pipe(Effect.provide(stack)))

  it.effect("a call that succeeds leaves the caller's context as it was", () =>
    Effect.gen(function*() {
      const before = yield* Effect.context<never>()
      yield* tts
      const after = yield* Effect.context<never>()
      assert.strictEqual(after, before)
    }).pipe(Effect.provide(stack)))
})
