/**
 * The simulator's running counts: requests, answers by status and by
 * `detail.status`, faults and credits charged, and the real-time sockets'
 * own record ({@link RealtimeCounts}). Answers, faults, accounts and the
 * real-time engine add to them; `GET /_simulator/stats` reads them and
 * `POST /_simulator/reset` clears them.
 *
 * @since 0.1.0
 */

/** The counts of the real-time WebSocket endpoints (mutable: the engine adds to them). */
export interface RealtimeCounts {
  /** Sockets whose handshake succeeded. */
  sessionsOpened: number
  /** Sessions ended, by close code (`1006` for a drop, the client's code when it closed first). */
  closedByCode: Record<string, number>
  contextsOpened: number
  /** Characters of text taken into a context's buffer (not the init or keep-alive spaces). */
  charactersReceived: number
  /** Characters whose audio frames went out (the aligned characters). */
  charactersGenerated: number
  /** Credits charged for those characters (also in the model's `creditsCharged`). */
  creditsCharged: number
  generationsStarted: number
  generationsCompleted: number
  /** Generations refused before a slot (quota, concurrency, load). */
  generationsRefused: number
  /** Client frames received. */
  framesReceived: number
  /** Server frames sent: `audio`, `final`, `error`. */
  framesSent: Record<string, number>
  /** Error frames and error closes, by error id (or the close's own name when it has no frame). */
  errors: Record<string, number>
  /** Injected faults that happened: `drop`, `close1011`, `stall`. */
  faults: Record<string, number>
}

/** The counts of a run (mutable: the model's modules add to them as they answer). */
export interface Counts {
  requests: number
  creditsCharged: number
  byStatus: Record<string, number>
  byDetailStatus: Record<string, number>
  faults: Record<string, number>
  realtime: RealtimeCounts
}

/** Every fault at 0; `systemBusyLoad` counts the `system_busy` answers of a full system (not drawn). */
const zeroFaults = (): Record<string, number> => ({
  systemBusy: 0,
  systemBusyLoad: 0,
  serverError: 0,
  internalServerError: 0,
  serviceUnavailable: 0,
  connectionReset: 0,
  hang: 0,
  streamCut: 0
})

/** Empty real-time counts. */
export const makeRealtime = (): RealtimeCounts => ({
  sessionsOpened: 0,
  closedByCode: {},
  contextsOpened: 0,
  charactersReceived: 0,
  charactersGenerated: 0,
  creditsCharged: 0,
  generationsStarted: 0,
  generationsCompleted: 0,
  generationsRefused: 0,
  framesReceived: 0,
  framesSent: { audio: 0, final: 0, error: 0 },
  errors: {},
  faults: { drop: 0, close1011: 0, stall: 0 }
})

/** Empty counts. */
export const make = (): Counts => ({
  requests: 0,
  creditsCharged: 0,
  byStatus: {},
  byDetailStatus: {},
  faults: zeroFaults(),
  realtime: makeRealtime()
})

/** Back to empty, in place (the modules hold the same object). */
export const clear = (counts: Counts): void => {
  counts.requests = 0
  counts.creditsCharged = 0
  counts.byStatus = {}
  counts.byDetailStatus = {}
  counts.faults = zeroFaults()
  counts.realtime = makeRealtime()
}

/** Adds one to `key` of `record`. */
export const bump = (record: Record<string, number>, key: string): void => {
  record[key] = (record[key] ?? 0) + 1
}
