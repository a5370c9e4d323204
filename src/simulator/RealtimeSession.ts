/**
 * One real-time connection, from its open to its close: authentication, the
 * client's messages, the contexts with their text buffers and generations, the
 * inactivity timer, and the one ending (a close with its code, a drop, or the
 * client's own close).
 *
 * **Details**
 *
 * - Every context has a buffer and a worker that runs its generations one
 *   after the other (`RealtimeGeneration.ts`); contexts of one socket generate
 *   side by side. A generation starts when the buffer reaches the next step of
 *   the chunk schedule (120, then 160, 250, then 290 by default), at a flush,
 *   at end of input and at `close_socket`; `try_trigger_generation` starts one
 *   from 50 characters; `auto_mode=true` at every text message.
 * - `" "` (the init and the single-context keep-alive) and `""` with a
 *   `context_id` (the multi-context keep-alive) are never spoken: they reset the
 *   inactivity timer only. Any client message resets it.
 * - `voice_settings` and `generation_config` are fixed by the first message of
 *   each context (on `stream-input`, of the connection): a later message to
 *   that context may repeat them, not change them (1008). Contexts of one
 *   socket may have settings of their own (the multi-context guide and the
 *   AsyncAPI example open a context "with different settings").
 * - The inactivity timer does not run while a generation is queued or running
 *   (a client waiting for the audio it asked for has no input to send): it
 *   counts from the later of the last message and the end of the last
 *   generation.
 * - The first ending wins; the workers are then interrupted (their slots given
 *   back, the characters already sent charged), and the ending goes out: an
 *   error frame then the close, a close alone, or a drop.
 *
 * @since 0.2.0
 */
import { Clock, Deferred, Duration, Effect, Fiber, FiberSet, Queue } from "effect"
import * as Realtime from "../client/Realtime.ts"
import { characterCount } from "../client/Validation.ts"
import type { Pool } from "../resilience/Plans.ts"
import type { Account } from "./Accounts.ts"
import type * as Counts from "./Counts.ts"
import type { LatencyProfile } from "./Generation.ts"
import * as Generation from "./RealtimeGeneration.ts"
import { canonical, type Message, parseMessage, type Query } from "./RealtimeMessages.ts"

// ============================================================================
// Models
// ============================================================================

/** What a client sends, as a transport hands it over. */
export type Inbound =
  | { readonly _tag: "Text"; readonly data: string }
  | { readonly _tag: "Binary" }
  /** The client closed (its code and reason), or the connection went away (1006). */
  | { readonly _tag: "Closed"; readonly code: number | undefined; readonly reason: string }

/** What the engine does to the connection; a transport implements it. */
export interface Peer {
  /** One text frame to the client. */
  readonly send: (frame: string) => Effect.Effect<void>
  /** A close frame (or, after the client's own close, the echo of it). */
  readonly close: (code: number, reason: string) => Effect.Effect<void>
  /** Ends the connection without a close frame: the client sees 1006. */
  readonly drop: Effect.Effect<void>
}

/** A refusal: the error frame's `error` and `message`. */
export interface Refusal {
  readonly error: string
  readonly message: string
}

/** What a connection generates with, once its key is known. */
export interface Setup {
  readonly account: Account
  readonly modelId: string
  readonly pool: Pool
  readonly profile: LatencyProfile
  readonly format: string
}

/** How a session ended. */
export type Ending =
  | {
    readonly _tag: "Close"
    readonly code: number
    readonly reason: string
    /** The error frame sent before the close, if any. */
    readonly frame?: { readonly error: string; readonly message: string; readonly contextId?: string | undefined }
    /** The name the record counts the close under (the error id, when there is a frame). */
    readonly name?: string | undefined
  }
  | { readonly _tag: "Drop" }
  | { readonly _tag: "ClientClosed"; readonly code: number | undefined; readonly reason: string }

/** What the engine lends a session. */
export interface Deps {
  readonly env: Generation.Env
  readonly counts: Counts.Counts
  readonly authenticate: (key: string | undefined) => Account | Refusal
  readonly setupOf: (query: Query, account: Account) => Setup | Refusal
  /** The engine's count of open contexts. */
  readonly contexts: (delta: 1 | -1) => void
  /** Registers a way to end the session from outside (the server's shutdown); returns its removal. */
  readonly register: (end: (ending: Ending) => Effect.Effect<void>) => () => void
}

type Job = { readonly _tag: "Generate"; readonly text: string } | { readonly _tag: "Final" }

interface Context {
  readonly key: string
  readonly id: string | undefined
  buffer: string
  step: number
  closing: boolean
  /** The settings its first message fixed (canonical JSON; `undefined`: none). */
  readonly voiceSettings: string | undefined
  readonly generationConfig: string | undefined
  readonly schedule: ReadonlyArray<number>
  readonly jobs: Queue.Queue<Job>
  readonly finished: Deferred.Deferred<void>
}

interface Session {
  readonly deps: Deps
  readonly query: Query
  readonly peer: Peer
  readonly end: Deferred.Deferred<Ending>
  readonly fibers: FiberSet.FiberSet<unknown, unknown>
  readonly contexts: Map<string, Context>
  setup: Setup | undefined
  billing: Generation.Billing | undefined
  inputEnded: boolean
  /** The last client message, or the end of the last generation (the inactivity timer counts from it). */
  lastActivity: number
  /** Generations queued or running, over every context (the inactivity timer waits while there are any). */
  generating: number
  timer: Fiber.Fiber<unknown, unknown> | undefined
}

/** The key of the default context (a context without `context_id`). */
const defaultKey = "\u0000default"

const isRefusal = (u: object): u is Refusal => "error" in u && "message" in u

// ============================================================================
// Endings
// ============================================================================

const finish = (session: Session, ending: Ending) => Effect.asVoid(Deferred.succeed(session.end, ending))

/** An error frame, then a close with `code` (1008 unless said) and the message as its reason. */
const refuse = (session: Session, refusal: Refusal, contextId?: string | undefined, code = 1008) =>
  finish(session, {
    _tag: "Close",
    code,
    reason: Realtime.closeReason(refusal.message),
    frame: { error: refusal.error, message: refusal.message, contextId },
    name: refusal.error
  })

/** A close with no error frame (the sources report these closes without one). */
const closeOnly = (session: Session, name: string, message: string, code = 1008) =>
  finish(session, { _tag: "Close", code, reason: Realtime.closeReason(message), name })

const count = (session: Session) => session.deps.counts.realtime

/** Sends the ending to the client and counts it. */
const perform = (session: Session, ending: Ending) =>
  Effect.gen(function*() {
    const realtime = count(session)
    switch (ending._tag) {
      case "Close": {
        if (ending.frame !== undefined) {
          realtime.framesSent["error"] = (realtime.framesSent["error"] ?? 0) + 1
          yield* session.peer.send(
            Realtime.serverFrame.error(ending.frame.error, ending.frame.message, ending.code, ending.frame.contextId)
          )
        }
        if (ending.name !== undefined) realtime.errors[ending.name] = (realtime.errors[ending.name] ?? 0) + 1
        yield* session.peer.close(ending.code, ending.reason)
        bumpClose(realtime, ending.code)
        return
      }
      case "Drop":
        yield* session.peer.drop
        bumpClose(realtime, 1006)
        return
      case "ClientClosed":
        yield* session.peer.close(ending.code ?? 1005, ending.reason)
        bumpClose(realtime, ending.code ?? 1005)
    }
  })

const bumpClose = (realtime: Counts.RealtimeCounts, code: number) => {
  realtime.closedByCode[String(code)] = (realtime.closedByCode[String(code)] ?? 0) + 1
}

// ============================================================================
// Contexts and their generations
// ============================================================================

const sendFrame = (session: Session, kind: "audio" | "final", frame: string) => {
  const realtime = count(session)
  realtime.framesSent[kind] = (realtime.framesSent[kind] ?? 0) + 1
  return session.peer.send(frame)
}

/** The end of a context: its final frame; on `stream-input`, the end of the session (1000). */
const final = (session: Session, context: Context) =>
  Effect.gen(function*() {
    yield* sendFrame(session, "final", Realtime.serverFrame.final(context.id))
    if (session.contexts.get(context.key) === context) {
      session.contexts.delete(context.key)
      session.deps.contexts(-1)
    }
    yield* Deferred.succeed(context.finished, undefined)
    if (session.query.kind === "single") yield* finish(session, { _tag: "Close", code: 1000, reason: "" })
  })

/** A context's worker: its generations in order, then its final frame. */
const worker = (session: Session, context: Context): Effect.Effect<void> =>
  Effect.gen(function*() {
    const setup = session.setup!
    while (true) {
      const job = yield* Queue.take(context.jobs)
      if (job._tag === "Final") return yield* final(session, context)
      const ending = yield* Generation.run(session.deps.env, {
        account: setup.account,
        pool: setup.pool,
        profile: setup.profile,
        format: setup.format,
        text: job.text,
        contextId: context.id,
        billing: session.billing!,
        send: (frame) => sendFrame(session, "audio", frame)
      })
      if (--session.generating === 0) session.lastActivity = yield* Clock.currentTimeMillis
      if (ending._tag === "Refused") return yield* refuse(session, ending, context.id)
      if (ending._tag === "Fault") {
        return yield* ending.fault === "drop"
          ? finish(session, { _tag: "Drop" })
          : closeOnly(session, "close1011", "Internal server error", 1011)
      }
    }
  })

/** A new context (its worker started), with the settings of its first message, `msg`. */
const open = (session: Session, id: string | undefined, msg: Message) =>
  Effect.gen(function*() {
    const context: Context = {
      key: id ?? defaultKey,
      id,
      buffer: "",
      step: 0,
      closing: false,
      voiceSettings: canonical(msg.voiceSettings),
      generationConfig: canonical(msg.generationConfig),
      schedule: msg.schedule ?? Realtime.limits.chunkSchedule,
      jobs: yield* Queue.unbounded<Job>(),
      finished: yield* Deferred.make<void>()
    }
    session.contexts.set(context.key, context)
    session.deps.contexts(1)
    count(session).contextsOpened++
    yield* FiberSet.run(session.fibers, worker(session, context))
    return context
  })

const generate = (session: Session, context: Context, text: string) => {
  if (text.length === 0) return
  session.generating++
  Queue.offerUnsafe(context.jobs, { _tag: "Generate", text })
}

/** Everything buffered, now (a flush, end of input, `close_socket`). */
const flush = (session: Session, context: Context) => {
  if (context.buffer.length === 0) return
  generate(session, context, context.buffer)
  context.buffer = ""
  context.step = Math.min(context.step + 1, context.schedule.length - 1)
}

/** Cuts the buffer at its last word boundary into a generation. */
const cut = (session: Session, context: Context) => {
  const at = Generation.wordCut(context.buffer)
  generate(session, context, context.buffer.slice(0, at))
  context.buffer = context.buffer.slice(at)
  context.step = Math.min(context.step + 1, context.schedule.length - 1)
}

/** Starts the generations the buffer calls for: auto mode, `try_trigger_generation`, the chunk schedule. */
const trigger = (session: Session, context: Context, tryTrigger: boolean) => {
  if (context.buffer.length === 0) return
  if (session.query.autoMode) return cut(session, context)
  if (tryTrigger && characterCount(context.buffer) >= Realtime.limits.chunkMin) cut(session, context)
  while (context.buffer.length > 0 && characterCount(context.buffer) >= context.schedule[context.step]!) {
    cut(session, context)
  }
}

/** Text into a context's buffer. */
const append = (session: Session, context: Context, text: string) => {
  context.buffer += text
  count(session).charactersReceived += characterCount(text)
}

/** No more input: the inactivity timer stops. */
const endInput = (session: Session) =>
  Effect.suspend(() => {
    session.inputEnded = true
    const timer = session.timer
    session.timer = undefined
    return timer === undefined ? Effect.void : Fiber.interrupt(timer)
  })

// ============================================================================
// Messages
// ============================================================================

/**
 * The settings rule: fixed by a context's first message (see `open`), then repeated or left out. `false`
 * when broken (the connection is then closed).
 */
const settingsKept = (session: Session, context: Context, msg: Message) =>
  Effect.gen(function*() {
    if (msg.voiceSettings !== undefined && canonical(msg.voiceSettings) !== context.voiceSettings) {
      yield* closeOnly(session, "voice_settings_changed", Realtime.serverMessages.voiceSettingsChanged)
      return false
    }
    if (msg.generationConfig !== undefined && canonical(msg.generationConfig) !== context.generationConfig) {
      yield* closeOnly(
        session,
        "generation_config_changed",
        "generation_config field must be provided in the first message and then either be not provided or not change."
      )
      return false
    }
    return true
  })

const onSingle = (session: Session, msg: Message) =>
  Effect.gen(function*() {
    const found = session.contexts.get(defaultKey)
    if (found !== undefined && !(yield* settingsKept(session, found, msg))) return
    const context = found ?? (yield* open(session, undefined, msg))
    const text = msg.text
    if (text === "" && !msg.flush) {
      // End of input: speak what is buffered, then the final frame, then 1000.
      flush(session, context)
      Queue.offerUnsafe(context.jobs, { _tag: "Final" })
      return yield* endInput(session)
    }
    if (text !== undefined && text !== "" && text !== " ") append(session, context, text)
    if (msg.flush) flush(session, context)
    else trigger(session, context, msg.tryTrigger)
  })

const closeSocket = (session: Session) =>
  Effect.gen(function*() {
    yield* endInput(session)
    const waits: Array<Deferred.Deferred<void>> = []
    for (const context of session.contexts.values()) {
      waits.push(context.finished)
      if (context.closing) continue
      flush(session, context)
      context.closing = true
      Queue.offerUnsafe(context.jobs, { _tag: "Final" })
    }
    yield* FiberSet.run(
      session.fibers,
      Effect.andThen(
        Effect.forEach(waits, Deferred.await, { discard: true }),
        finish(session, { _tag: "Close", code: 1000, reason: "" })
      )
    )
  })

const onMulti = (session: Session, msg: Message) =>
  Effect.gen(function*() {
    if (msg.closeSocket) return yield* closeSocket(session)
    const key = msg.contextId ?? defaultKey
    let context = session.contexts.get(key)
    if (msg.closeContext) {
      // No more audio for it: the unflushed text is dropped, pending generations complete, then its final.
      if (context === undefined || context.closing) return
      context.closing = true
      context.buffer = ""
      Queue.offerUnsafe(context.jobs, { _tag: "Final" })
      return
    }
    if (context === undefined) {
      if (session.contexts.size >= Realtime.limits.contextsPerConnection) {
        return yield* refuse(
          session,
          { error: "max_active_conversations", message: Realtime.serverMessages.maxActiveConversations },
          msg.contextId
        )
      }
      context = yield* open(session, msg.contextId, msg)
    } else if (context.closing || !(yield* settingsKept(session, context, msg))) return
    const text = msg.text
    if (text !== undefined && text !== "" && text !== " ") append(session, context, text)
    if (msg.flush) flush(session, context)
    else trigger(session, context, msg.tryTrigger)
  })

/** Authenticates with `key` and sets the connection up; `false` when the session is refused. */
const authenticate = (session: Session, key: string | undefined) =>
  Effect.gen(function*() {
    const account = session.deps.authenticate(key)
    if (isRefusal(account)) {
      yield* refuse(session, account)
      return false
    }
    const setup = session.deps.setupOf(session.query, account)
    if (isRefusal(setup)) {
      yield* refuse(session, setup)
      return false
    }
    session.setup = setup
    session.billing = { modelId: setup.modelId, characters: 0 }
    return true
  })

const onText = (session: Session, data: string) =>
  Effect.gen(function*() {
    const msg = parseMessage(data)
    if (msg === undefined) {
      return yield* refuse(session, { error: "invalid_input_message", message: Realtime.serverMessages.invalidInput })
    }
    if (session.setup === undefined && !(yield* authenticate(session, msg.key))) return
    yield* session.query.kind === "multi" ? onMulti(session, msg) : onSingle(session, msg)
  })

// ============================================================================
// The session
// ============================================================================

const reader = (session: Session, inbound: Queue.Dequeue<Inbound>) =>
  Effect.gen(function*() {
    while (!Deferred.isDoneUnsafe(session.end)) {
      const event = yield* Queue.take(inbound)
      if (event._tag === "Closed") {
        return yield* finish(session, { _tag: "ClientClosed", code: event.code, reason: event.reason })
      }
      count(session).framesReceived++
      session.lastActivity = yield* Clock.currentTimeMillis
      if (session.inputEnded) continue
      if (event._tag === "Binary") {
        return yield* refuse(session, { error: "invalid_input_message", message: Realtime.serverMessages.invalidInput })
      }
      yield* onText(session, event.data)
    }
  })

/**
 * `input_timeout_exceeded` once no message came for the inactivity timeout, counted from the last message
 * or the end of the last generation; never while a generation is queued or running.
 */
const inactivity = (session: Session) =>
  Effect.gen(function*() {
    const seconds = session.query.inactivitySeconds
    while (true) {
      const now = yield* Clock.currentTimeMillis
      if (session.generating > 0) {
        yield* Effect.sleep(Duration.seconds(seconds))
        continue
      }
      const due = session.lastActivity + seconds * 1000
      if (now >= due) {
        return yield* refuse(session, {
          error: "input_timeout_exceeded",
          message: Realtime.serverMessages.inputTimeout(seconds)
        })
      }
      yield* Effect.sleep(Duration.millis(due - now))
    }
  })

/**
 * Runs one connection until it ends, and sends its ending. `key` is the key of the handshake (the
 * `xi-api-key` header or the `authorization` query parameter), if any; without one, the first message
 * must carry it.
 */
export const run = (deps: Deps, query: Query, key: string | undefined, peer: Peer, inbound: Queue.Dequeue<Inbound>) =>
  Effect.suspend(() => {
    let performed = false
    const contexts = new Map<string, Context>()
    const body = Effect.gen(function*() {
      const session: Session = {
        deps,
        query,
        peer,
        end: yield* Deferred.make<Ending>(),
        fibers: yield* FiberSet.make(),
        contexts,
        setup: undefined,
        billing: undefined,
        inputEnded: false,
        lastActivity: yield* Clock.currentTimeMillis,
        generating: 0,
        timer: undefined
      }
      deps.counts.realtime.sessionsOpened++
      const unregister = deps.register((ending) => finish(session, ending))
      yield* Effect.addFinalizer(() => Effect.sync(unregister))
      if (key !== undefined) yield* authenticate(session, key)
      if (!Deferred.isDoneUnsafe(session.end)) {
        session.timer = yield* FiberSet.run(session.fibers, inactivity(session))
        yield* FiberSet.run(session.fibers, reader(session, inbound))
      }
      const ending = yield* Deferred.await(session.end)
      // Nothing more goes out after the ending: generations stop (their slots and credits settled).
      yield* FiberSet.clear(session.fibers)
      performed = true
      yield* perform(session, ending)
      return ending
    })
    return Effect.scoped(body).pipe(Effect.onExit(() =>
      Effect.sync(() => {
        for (let i = 0; i < contexts.size; i++) deps.contexts(-1)
        contexts.clear()
        // Interrupted before its ending went out (the transport went away): a lost connection.
        if (!performed) bumpClose(deps.counts.realtime, 1006)
      })
    ))
  })
