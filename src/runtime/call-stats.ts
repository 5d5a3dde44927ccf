/**
 * Calls that grains make (ctx.ask / ctx.askPid), measured where they are
 * made: in the worker, from the ask to its reply, error or timeout. Each
 * worker sums them per kind, method and outcome code in plain numbers and
 * reports the sums to the main thread about once a second (CALL_STATS
 * control frame), which adds them to the node's registry (RpcMetrics
 * .absorbGrainCalls). Sans-I/O: the worker owns the clock and the timer.
 *
 * Buckets are RPC_DURATION_BUCKETS, per bucket (not cumulative), so the
 * main thread adds them as they come.
 */

import { RPC_DURATION_BUCKETS } from '../rpc/rpc-metrics.js'

/** One kind / method / outcome since the last report. */
export interface CallStatsRow {
  readonly kind: string
  readonly method: string
  /** 'ok' or the call's error code. */
  readonly code: string
  count: number
  sumSeconds: number
  /** Calls per bucket of RPC_DURATION_BUCKETS (the last slot: above the largest bound). */
  readonly buckets: number[]
}

/** How often a worker reports (ms): metrics lag the calls by at most about this. */
export const CALL_STATS_INTERVAL_MS = 1_000

/** Rows one worker keeps between reports; past it, new kind/method/code triples share one 'unknown' row. */
export const MAX_CALL_STATS_ROWS = 1_024
const UNKNOWN = 'unknown'
const UNKNOWN_ID = `${UNKNOWN}\u0000${UNKNOWN}\u0000${UNKNOWN}`

export class CallStats {
  readonly #rows = new Map<string, CallStatsRow>()

  /** One finished call: `code` is 'ok' or its error code. */
  record(kind: string, method: string, code: string, seconds: number): void {
    let row = this.#rows.get(`${kind}\u0000${method}\u0000${code}`)
    // Past the bound, new triples share one row rather than grow the report.
    if (row === undefined) row = this.#rows.size < MAX_CALL_STATS_ROWS ? this.#newRow(kind, method, code) : (this.#rows.get(UNKNOWN_ID) ?? this.#newRow(UNKNOWN, UNKNOWN, UNKNOWN))
    add(row, seconds)
  }

  #newRow(kind: string, method: string, code: string): CallStatsRow {
    const row: CallStatsRow = { kind, method, code, count: 0, sumSeconds: 0, buckets: new Array<number>(RPC_DURATION_BUCKETS.length + 1).fill(0) }
    this.#rows.set(`${kind}\u0000${method}\u0000${code}`, row)
    return row
  }

  /** Nothing recorded since the last take(). */
  get empty(): boolean {
    return this.#rows.size === 0
  }

  /** The sums since the last call, and start again from zero. */
  take(): CallStatsRow[] {
    const rows = [...this.#rows.values()]
    this.#rows.clear()
    return rows
  }
}

function add(row: CallStatsRow, seconds: number): void {
  row.count++
  row.sumSeconds += seconds
  const b = RPC_DURATION_BUCKETS
  let i = 0
  while (i < b.length && seconds > b[i]!) i++
  row.buckets[i]!++
}

/**
 * What a worker reports: the calls since its last report, and the calls
 * waiting in its keys' mailboxes now, per kind (every kind it serves, so a
 * count that fell to zero is reported too).
 */
export interface CallStatsReport {
  readonly calls: CallStatsRow[]
  readonly queued: Record<string, number>
}

/** Checks a report that crossed the ring (the main thread trusts no frame). */
export function isCallStatsReport(v: unknown): v is CallStatsReport {
  if (typeof v !== 'object' || v === null) return false
  const r = v as CallStatsReport
  if (!isCallStatsRows(r.calls) || typeof r.queued !== 'object' || r.queued === null) return false
  return Object.values(r.queued).every((n) => Number.isSafeInteger(n) && n >= 0)
}

export function isCallStatsRows(v: unknown): v is CallStatsRow[] {
  if (!Array.isArray(v)) return false
  return v.every(
    (r: unknown) =>
      typeof r === 'object' &&
      r !== null &&
      typeof (r as CallStatsRow).kind === 'string' &&
      typeof (r as CallStatsRow).method === 'string' &&
      typeof (r as CallStatsRow).code === 'string' &&
      Number.isFinite((r as CallStatsRow).count) &&
      Number.isFinite((r as CallStatsRow).sumSeconds) &&
      Array.isArray((r as CallStatsRow).buckets) &&
      (r as CallStatsRow).buckets.length === RPC_DURATION_BUCKETS.length + 1 &&
      (r as CallStatsRow).buckets.every((n) => Number.isFinite(n) && n >= 0),
  )
}
