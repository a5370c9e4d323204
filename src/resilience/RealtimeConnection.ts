/**
 * One WebSocket connection of a real-time session (`RealtimeSession.ts`): the handshake (the API key only in
 * the `xi-api-key` header), the frames read and decoded with the protocol module (`client/Realtime.ts`), and
 * its ending mapped through `Realtime.classifyClose` to one reason of the error table. The session decides
 * what to write and what a message means; this module only carries them.
 *
 * @since 0.2.0
 */
import { Duration, Effect, Redacted, Result, type Scope } from "effect"
import { Socket } from "effect/socket"
import { ElevenLabsError } from "../client/Errors.ts"
import * as Realtime from "../client/Realtime.ts"

/** How long a close may take to follow an error frame before the frame's code is taken as the close. */
const errorGrace = Duration.seconds(5)

/** The write side of a live connection: `false` when the socket refused the frame (the reader sees why). */
export type Write = (message: Realtime.ClientMessage) => Effect.Effect<boolean>

/** What the reader does with a message: go on, or end the connection cleanly (the session is complete). */
export type Handle = (message: Realtime.ServerMessage) => Effect.Effect<"continue" | "complete">

/** One connection's parts. */
export interface ConnectionOptions {
  readonly url: string
  readonly apiKey: Redacted.Redacted<string>
  readonly openTimeout: Duration.Duration
  readonly operation: string
  /** The `inactivity_timeout` asked for, in seconds (what an inactivity close reports). */
  readonly inactivitySeconds: number
  /** Runs once the socket is open, with its writer (the init messages, the resend, the keep-alive fiber). */
  readonly onOpen: (write: Write) => Effect.Effect<void, never, Scope.Scope>
  readonly onMessage: Handle
  /** Whether a normal close (1000) now ends the session cleanly (the input was ended and answered). */
  readonly cleanClose: () => boolean
}

/** The text of a frame. */
const textOf = (frame: Uint8Array | string): string =>
  typeof frame === "string" ? frame : new TextDecoder().decode(frame)

/** The ending of a connection that failed at the socket level, as the protocol module reads it. */
const endingOf = (
  operation: string,
  error: Socket.SocketError,
  lastError: { readonly error: string | undefined; readonly message: string } | undefined
): Realtime.Ending => {
  const reason = error.reason
  switch (reason._tag) {
    case "SocketCloseError":
      // A close our own scope made (1006 with no reason) is a drop as far as the session knows.
      return {
        operation,
        code: reason.code === 1006 ? undefined : reason.code,
        reason: reason.closeReason,
        error: lastError
      }
    case "SocketOpenError":
      return {
        operation,
        code: undefined,
        reason: reason.kind === "Timeout" ? "the WebSocket handshake timed out" : "the WebSocket could not be opened",
        error: lastError
      }
    default:
      return { operation, code: undefined, reason: "the connection dropped", error: lastError }
  }
}

/** The failure of an ending. */
export const failureOf = (ending: Realtime.Ending): ElevenLabsError =>
  new ElevenLabsError({ reason: Realtime.classifyClose(ending) })

/** The failure of an ending on a connection that asked for `inactivitySeconds`. */
const failureAfter = (ending: Realtime.Ending, inactivitySeconds: number): ElevenLabsError =>
  failureOf({ ...ending, inactivitySeconds })

/**
 * Runs one connection until the session is complete (`"complete"`) or the connection ends otherwise (the
 * classified failure). Closing the scope closes the socket (a normal close from our side).
 */
export const run = (
  options: ConnectionOptions
): Effect.Effect<"complete", ElevenLabsError, Socket.WebSocketConstructor> =>
  Effect.scoped(Effect.gen(function*() {
    const { inactivitySeconds, operation } = options
    const socket = yield* Socket.makeWebSocket(options.url, {
      headers: { "xi-api-key": Redacted.value(options.apiKey) },
      openTimeout: options.openTimeout
    })
    const opened = yield* Effect.result(socket.reader)
    if (Result.isFailure(opened)) {
      return yield* Effect.fail(failureAfter(endingOf(operation, opened.failure, undefined), inactivitySeconds))
    }
    const reader = opened.success
    const writer = yield* socket.writer
    const write: Write = (message) =>
      Effect.match(writer.write(Realtime.encode(message)), { onFailure: () => false, onSuccess: () => true })
    yield* options.onOpen(write)

    let lastError: { readonly error: string | undefined; readonly message: string; readonly code?: number } | undefined
    while (true) {
      const pulled = yield* Effect.result(
        lastError === undefined ?
          reader.pull :
          reader.pull.pipe(Effect.timeoutOption(errorGrace), Effect.map((o) => o._tag === "Some" ? o.value : undefined))
      )
      if (Result.isFailure(pulled)) {
        const ending = endingOf(operation, pulled.failure, lastError)
        if (ending.code === 1000 && lastError === undefined && options.cleanClose()) return "complete" as const
        return yield* Effect.fail(failureAfter(ending, inactivitySeconds))
      }
      const frames = pulled.success
      if (frames === undefined) {
        // An error frame and no close within the grace: its code is the close.
        return yield* Effect.fail(
          failureAfter({ operation, code: lastError?.code ?? 1008, error: lastError }, inactivitySeconds)
        )
      }
      for (const frame of frames) {
        const message = Realtime.decodeServerMessage(textOf(frame))
        // Frames that are none of audio, final or error (a future message type) are skipped.
        if (message === undefined) continue
        if (message._tag === "Error") {
          lastError = {
            error: message.error,
            message: message.message,
            ...(message.code === undefined ? {} : { code: message.code })
          }
          continue
        }
        if ((yield* options.onMessage(message)) === "complete") return "complete" as const
      }
    }
  }))
