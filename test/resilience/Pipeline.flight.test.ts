/**
 * Where the pipeline's coalesced flights run, seen through `Resilient.layer`: when the stack's options do not
 * name `coalesce.flight`, an idempotent call (the default) starts its flight inline, so an interrupted starter
 * hands a fresh run over to its joiners (the TTS request is sent again); a call marked `idempotent: false`
 * starts a detached flight, so its one request goes on for the joiners. `coalesce: { flight }` in the stack's
 * options decides for every call.
 *
 * The transport holds every TTS answer on a `Deferred` (so a call stays in flight until the test answers it)
 * and counts the TTS requests sent and those given up.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Redacted } from "effect"
import { HttpClient, HttpClientResponse } from "effect/http"
import * as Client from "../../src/client/ElevenLabs.ts"
import * as Resilient from "../../src/resilience/Resilient.ts"
import type { ResilientOptions } from "../../src/resilience/ResilientOptions.ts"

const voice = "21m00Tcm4TlvDq8ikWAM"
const apiKey = Redacted.make("sk_test_flight_0000000000000000000000000000")

const subscription = {
  tier: "pro",
  character_count: 0,
  character_limit: 1_000_000,
  next_character_count_reset_unix: 4_000_000_000,
  status: "active"
}

/** The audio of the n-th TTS request: its bytes say which request answered. */
const audioOf = (n: number) => new Uint8Array([n + 1, n + 1, n + 1, n + 1])

/** The most TTS requests a test may see. */
const slots = 4

interface Transport {
  readonly client: HttpClient.HttpClient
  /** Settled when the n-th TTS request (from 0) is sent. */
  readonly sent: ReadonlyArray<Deferred.Deferred<void>>
  /** The n-th TTS request is answered once this is settled. */
  readonly answers: ReadonlyArray<Deferred.Deferred<void>>
  /** TTS requests sent so far. */
  readonly requests: () => number
  /** TTS requests given up (interrupted) before their answer. */
  readonly abandoned: () => number
}

/** A transport whose TTS answers wait for the test; the subscription (read by the quota guard) at once. */
const makeTransport = (): Transport => {
  const sent = Array.from({ length: slots }, () => Deferred.makeUnsafe<void>())
  const answers = Array.from({ length: slots }, () => Deferred.makeUnsafe<void>())
  let requests = 0
  let abandoned = 0
  const client = HttpClient.make((request, url) => {
    if (url.pathname === "/v1/user/subscription") {
      return Effect.succeed(HttpClientResponse.fromWeb(request, Response.json(subscription)))
    }
    if (!url.pathname.startsWith("/v1/text-to-speech/")) {
      return Effect.succeed(
        HttpClientResponse.fromWeb(request, new Response(`{"detail":"Not Found"}`, { status: 404 }))
      )
    }
    return Effect.suspend(() => {
      const n = requests++
      if (n >= slots) return Effect.die(new Error(`more than ${slots} TTS requests`))
      return Deferred.succeed(sent[n]!, undefined).pipe(
        Effect.andThen(Deferred.await(answers[n]!)),
        Effect.as(HttpClientResponse.fromWeb(
          request,
          new Response(audioOf(n), {
            status: 200,
            headers: {
              "content-type": "audio/mpeg",
              "request-id": `r${n}`,
              "character-cost": "10",
              "current-concurrent-requests": "1",
              "maximum-concurrent-requests": "10"
            }
          })
        )),
        Effect.onInterrupt(() => Effect.sync(() => void abandoned++))
      )
    })
  })
  return { client, sent, answers, requests: () => requests, abandoned: () => abandoned }
}

const stack = (transport: Transport, options: Omit<ResilientOptions, "apiKey"> = {}) =>
  Resilient.layer({ apiKey, limiter: { plan: "pro" }, ...options }).pipe(
    Layer.provide(Layer.succeed(HttpClient.HttpClient, transport.client))
  )

/** One TTS convert; every caller asks for the same audio (same voice, text and model). */
const tts = Client.ElevenLabs.use((c) =>
  c.textToSpeech.convert(voice, { text: "The same words, wanted twice.", modelId: "eleven_flash_v2_5" })
)
const notIdempotent = tts.pipe(Resilient.withCallOptions({ idempotent: false }))

/**
 * The starter's call is on the wire (its TTS request sent, unanswered); a second identical call joins it; the
 * starter is then interrupted. Returns the joiner's fiber.
 */
const starterInterruptedWhileJoinerWaits = (transport: Transport, starterCall: typeof tts, joinerCall: typeof tts) =>
  Effect.gen(function*() {
    const starter = yield* Effect.forkChild(starterCall, { startImmediately: true })
    yield* Deferred.await(transport.sent[0]!)
    const joiner = yield* Effect.forkChild(joinerCall, { startImmediately: true })
    yield* Effect.yieldNow
    yield* Effect.yieldNow
    assert.strictEqual(transport.requests(), 1, "the joiner joined: it sent nothing of its own")
    yield* Fiber.interrupt(starter)
    assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(starter)))
    return joiner
  })

/** Nothing is left behind once the calls have ended: no flight, permit or reservation. */
const nothingLeft = Effect.gen(function*() {
  const { coalescer, keyId, limiter, quota } = yield* Resilient.Resilience
  assert.strictEqual(yield* coalescer!.inFlight, 0)
  const snapshot = yield* limiter.snapshot(keyId, "flash")
  assert.deepStrictEqual([snapshot.inFlight, snapshot.queueDepth], [0, 0])
  assert.strictEqual((yield* quota!.status).reserved, 0)
})

describe("Pipeline, where a coalesced flight runs", () => {
  // The starter is interrupted while the joiner waits. A hand-over (inline flight) gives the starter's request up
  // and sends a fresh one for the joiner (r1); a detached flight keeps the one request (r0) for the joiner.
  const interrupted: ReadonlyArray<{
    readonly name: string
    readonly call: typeof tts
    readonly options: Omit<ResilientOptions, "apiKey">
    readonly handedOver: boolean
  }> = [
    {
      name:
        "idempotent calls (the default): an interrupted starter's request is given up and sent again for the joiner",
      call: tts,
      options: {},
      handedOver: true
    },
    {
      name:
        "idempotent: false on both callers: one request, which goes on for the joiner after the starter is interrupted",
      call: notIdempotent,
      options: {},
      handedOver: false
    },
    {
      name:
        "coalesce: { flight: \"detached\" } in the options: idempotent calls share one request past the starter's interruption",
      call: tts,
      options: { coalesce: { flight: "detached" } },
      handedOver: false
    },
    {
      name: "coalesce: { flight: \"inline\" } in the options: calls marked idempotent: false are handed over too",
      call: notIdempotent,
      options: { coalesce: { flight: "inline" } },
      handedOver: true
    }
  ]
  for (const { call, handedOver, name, options } of interrupted) {
    it.effect(name, () => {
      const transport = makeTransport()
      const expected = handedOver ? [2, 1] : [1, 0]
      const answered = handedOver ? 1 : 0
      return Effect.gen(function*() {
        const joiner = yield* starterInterruptedWhileJoinerWaits(transport, call, call)
        if (handedOver) yield* Deferred.await(transport.sent[1]!)
        assert.deepStrictEqual([transport.requests(), transport.abandoned()], expected)
        yield* Deferred.succeed(transport.answers[answered]!, undefined)
        const result = yield* Fiber.join(joiner)
        assert.strictEqual(result.meta.coalesced, true)
        assert.strictEqual(result.meta.requestId, `r${answered}`)
        assert.deepStrictEqual(result.audio, audioOf(answered))
        assert.deepStrictEqual(
          [transport.requests(), transport.abandoned()],
          expected,
          "TTS requests sent, and given up"
        )
        yield* nothingLeft
      }).pipe(Effect.provide(stack(transport, options)))
    })
  }

  for (
    const [first, second, name] of [[notIdempotent, tts, "idempotent: false, then the default"], [
      tts,
      notIdempotent,
      "the default, then idempotent: false"
    ]] as const
  ) {
    it.effect(`idempotent and idempotent: false calls never share a flight (${name}): a repeat cannot reach a caller who refused one`, () => {
      const transport = makeTransport()
      return Effect.gen(function*() {
        const a = yield* Effect.forkChild(first, { startImmediately: true })
        yield* Deferred.await(transport.sent[0]!)
        const b = yield* Effect.forkChild(second, { startImmediately: true })
        yield* Deferred.await(transport.sent[1]!)
        assert.strictEqual(transport.requests(), 2, "each sent its own request")
        yield* Deferred.succeed(transport.answers[0]!, undefined)
        yield* Deferred.succeed(transport.answers[1]!, undefined)
        const [ra, rb] = [yield* Fiber.join(a), yield* Fiber.join(b)]
        assert.deepStrictEqual([ra.meta.coalesced, rb.meta.coalesced], [undefined, undefined])
        assert.deepStrictEqual([ra.meta.requestId, rb.meta.requestId], ["r0", "r1"])
        yield* nothingLeft
      }).pipe(Effect.provide(stack(transport)))
    })
  }

  it.effect("without interruption, both flights give one request, the starter's result unmarked and the joiner's coalesced", () => {
    const transport = makeTransport()
    return Effect.gen(function*() {
      for (const [i, call] of [tts, notIdempotent].entries()) {
        const starter = yield* Effect.forkChild(call, { startImmediately: true })
        yield* Deferred.await(transport.sent[i]!)
        const joiner = yield* Effect.forkChild(call, { startImmediately: true })
        yield* Effect.yieldNow
        yield* Deferred.succeed(transport.answers[i]!, undefined)
        const [a, b] = [yield* Fiber.join(starter), yield* Fiber.join(joiner)]
        assert.notStrictEqual(a.meta.coalesced, true)
        assert.strictEqual(b.meta.coalesced, true)
        assert.deepStrictEqual([a.meta.requestId, b.meta.requestId], [`r${i}`, `r${i}`])
        assert.strictEqual(transport.requests(), i + 1)
      }
      assert.strictEqual(transport.abandoned(), 0)
      yield* nothingLeft
    }).pipe(Effect.provide(stack(transport)))
  })
})
