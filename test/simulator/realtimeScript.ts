/**
 * A scripted WebSocket client for the simulator's real-time endpoints, shared by the in-process tests (virtual
 * time) and the server tests (real time): it plays steps (frames to send, pauses, waits for what the server
 * sent, checks) and reads every frame until the socket closes. Times come from `Clock`, so both faces use it.
 */
import { Effect, Fiber } from "effect"
import { Socket } from "effect/socket"
import * as Realtime from "../../src/client/Realtime.ts"

/** One step of a client's script: a frame to send, a pause, a wait for what the server sent, or a check. */
export type Step =
  | string
  | { readonly sleep: number }
  | { readonly until: (frames: ReadonlyArray<any>) => boolean }
  | { readonly effect: Effect.Effect<void> }
  | { readonly check: (frames: ReadonlyArray<any>) => void }

export interface Conversation {
  readonly raw: ReadonlyArray<string>
  readonly frames: ReadonlyArray<any>
  /** The close code and reason, or the socket error's reason tag when it failed otherwise. */
  readonly close: { readonly code: number; readonly reason: string }
  /** When each frame arrived, in ms after the socket opened. */
  readonly times: ReadonlyArray<number>
}

/** A client message as the wire carries it. */
export const send = (message: Realtime.ClientMessage) => Realtime.encode(message)

/** Opens a socket, plays `steps` (waits poll every `pollMs`), and reads every frame until the socket closes. */
export const converse = (
  url: string,
  headers: Record<string, string> | undefined,
  steps: ReadonlyArray<Step>,
  pollMs = 10
) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* Socket.makeWebSocket(url, headers === undefined ? {} : { headers })
    const reader = yield* socket.reader
    const now = Effect.clockWith((clock) => clock.currentTimeMillis)
    const start = yield* now
    const writer = yield* socket.writer
    const raw: Array<string> = []
    const frames: Array<any> = []
    const times: Array<number> = []
    const reading = yield* Effect.forkChild(Effect.gen(function*() {
      while (true) {
        const pulled = yield* Effect.result(reader.pull)
        if (pulled._tag === "Failure") {
          const reason = pulled.failure.reason
          return reason._tag === "SocketCloseError"
            ? { code: reason.code, reason: reason.closeReason ?? "" }
            : { code: -1, reason: reason._tag }
        }
        for (const frame of pulled.success) {
          const text = typeof frame === "string" ? frame : new TextDecoder().decode(frame)
          raw.push(text)
          frames.push(JSON.parse(text))
          times.push((yield* now) - start)
        }
      }
    }))
    for (const step of steps) {
      if (typeof step === "string") yield* writer.write(step)
      else if ("sleep" in step) yield* Effect.sleep(step.sleep)
      else if ("until" in step) {
        while (!step.until(frames) && reading.pollUnsafe() === undefined) yield* Effect.sleep(pollMs)
      } else if ("check" in step) step.check(frames)
      else yield* step.effect
    }
    const close = yield* Fiber.join(reading)
    return { raw, frames, close, times } satisfies Conversation
  }))

/** The audio frames, of one context or all. */
export const audioOf = (frames: ReadonlyArray<any>, contextId?: string) =>
  frames.filter((f) => typeof f.audio === "string" && (contextId === undefined || f.contextId === contextId))

/** The characters the audio frames say they speak, in order. */
export const spoken = (frames: ReadonlyArray<any>, contextId?: string) =>
  audioOf(frames, contextId).flatMap((f) => f.alignment.chars as Array<string>).join("")

/** `n` distinct words, each followed by a space. */
export const words = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `word${from + i}`).join(" ") + " "
