/**
 * The simulator's running counts: requests, answers by status and by
 * `detail.status`, faults and credits charged. Answers, faults and accounts add
 * to them; `GET /_simulator/stats` reads them and `POST /_simulator/reset`
 * clears them.
 *
 * @since 0.1.0
 */

/** The counts of a run (mutable: the model's modules add to them as they answer). */
export interface Counts {
  requests: number
  creditsCharged: number
  byStatus: Record<string, number>
  byDetailStatus: Record<string, number>
  faults: Record<string, number>
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

/** Empty counts. */
export const make = (): Counts => ({
  requests: 0,
  creditsCharged: 0,
  byStatus: {},
  byDetailStatus: {},
  faults: zeroFaults()
})

/** Back to empty, in place (the modules hold the same object). */
export const clear = (counts: Counts): void => {
  counts.requests = 0
  counts.creditsCharged = 0
  counts.byStatus = {}
  counts.byDetailStatus = {}
  counts.faults = zeroFaults()
}

/** Adds one to `key` of `record`. */
export const bump = (record: Record<string, number>, key: string): void => {
  record[key] = (record[key] ?? 0) + 1
}
