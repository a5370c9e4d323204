/**
 * 08: a voice agent on the real-time socket: text streamed in as a language model writes it, audio written to
 * a file as it arrives, and the connection dropped mid-answer without a word lost or said twice.
 *
 * A session (`RealtimeSession`, over `stream-input`) holds one socket for the conversation. Each agent turn
 * arrives token by token (a stand-in for an LLM's stream) and is flushed at its end; the audio stream is
 * appended to `agent.mp3` with the characters each chunk speaks. Between turns the agent is silent for longer
 * than half the socket's inactivity timeout (6 s here; 20 s by default), so the session's keep-alives hold it. On the simulator, the
 * second turn's connection drops halfway: the session reconnects with the stack's retry schedule and resends
 * exactly what was not yet spoken. At the end the characters spoken are compared with the text sent.
 *
 * Runs against a local ElevenLabs simulator (plan `creator`) by default; set ELEVENLABS_API_KEY to use the
 * real API (about 400 characters of Flash, about 200 credits).
 *
 *   node_modules/.bin/node examples/08-voice-agent-realtime.ts
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { Clock, Effect, Fiber, Layer, Stream } from "effect"
import { appendFileSync, mkdtempSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as RealtimeSession from "../src/resilience/RealtimeSession.ts"
import * as Resilient from "../src/resilience/Resilient.ts"
import { flash, main, ms, target, voice } from "./_shared.ts"

/** A stand-in for a language model: the answer's words, one every 40 ms. */
const llm = (answer: string): Stream.Stream<string> =>
  Stream.fromIterable(answer.split(/(?<= )/)).pipe(Stream.tap(() => Effect.sleep("40 millis")))

const turns = [
  "Thanks for calling. I can see your order from Tuesday. ",
  "It left our warehouse this morning, and the courier expects to deliver it tomorrow before noon. ",
  "Is there anything else I can help you with today? "
]

main(Effect.gen(function*() {
  const { mode, baseUrl, apiKey, simulator } = yield* target({ plan: "creator" })
  const stack = RealtimeSession.layer({ apiKey, baseUrl }).pipe(
    Layer.provideMerge(Resilient.layer({ apiKey, baseUrl, limiter: { plan: "creator" } })),
    Layer.provide(Layer.mergeAll(NodeHttpClient.layerUndici, NodeSocket.layerWebSocketConstructor))
  )
  const file = join(mkdtempSync(join(tmpdir(), "voice-agent-")), "agent.mp3")
  writeFileSync(file, new Uint8Array())

  const result = yield* Effect.scoped(Effect.gen(function*() {
    const realtime = yield* RealtimeSession.RealtimeTts
    const session = yield* realtime.open({ voiceId: voice, modelId: flash, inactivityTimeout: "6 seconds" })
    let spoken = ""
    const firstAudio: Array<number> = []
    let turnStart: number | undefined
    const player = yield* Effect.forkScoped(
      Stream.runForEach(session.audio, (chunk) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            appendFileSync(file, chunk.audio)
            spoken += chunk.alignment?.chars.join("") ?? ""
            if (turnStart !== undefined) {
              firstAudio.push(now - turnStart)
              turnStart = undefined
            }
          })))
    )
    let sent = ""
    for (const [i, answer] of turns.entries()) {
      // The second answer's connection drops halfway through its audio (the simulator's one-shot fault).
      if (i === 1) simulator?.realtime.configure({ next: ["drop"] })
      turnStart = yield* Clock.currentTimeMillis
      yield* Stream.runForEach(llm(answer), (token) => session.send(token))
      yield* session.flush
      sent += answer
      // The caller talks for 4 s: more than half the 6 s inactivity timeout, so a keep-alive goes out (without
      // it the server would close the input after 6 s of silence).
      if (i < turns.length - 1) yield* Effect.sleep("4 seconds")
    }
    yield* session.end
    yield* Fiber.join(player)
    return { sent, spoken, firstAudio, reconnects: yield* session.reconnects, stats: yield* session.stats }
  })).pipe(Effect.provide(stack))

  const visible = (s: string) => s.replace(/\s+/g, "")
  console.log(`target: ${mode}`)
  console.log(`turns: ${turns.length}, characters sent ${result.stats.sent}, answered ${result.stats.answered}`)
  console.log(`time to first audio per turn: ${result.firstAudio.map(ms).join(", ")}`)
  console.log(`reconnects: ${result.reconnects}, characters resent: ${result.stats.resent}`)
  console.log(`spoken exactly once: ${visible(result.spoken) === visible(result.sent) ? "yes" : "NO"}`)
  console.log(`audio: ${statSync(file).size} bytes in ${file}`)
}))
