/**
 * Client-side RPC metrics on the node's prom-client registry (spec 6.5,
 * 10.2). Label values are bounded: `kind` and `method` come from the kinds
 * the workers registered (anything else is recorded as 'unknown', so a
 * caller cannot grow the registry by calling made-up names), `code` from
 * ERROR_CODES. Never a key or a PID.
 *
 * The hot path resolves its cells once per kind/method and keeps them, so
 * a call costs a map lookup plus a few additions.
 */

import type { Registry } from 'prom-client'
import { type ErrorCode, isErrorCode } from '../common/errors.js'
import { type Cell, type Family, familiesIn } from '../observability/metric-family.js'
import type { CallStatsRow } from '../runtime/call-stats.js'
import type { RpcAlertSignal } from './rpc-alerts.js'

export const RPC_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
export const UNKNOWN_LABEL = 'unknown'

/** Outcomes that the front-side limits produce; counted apart as rejections. */
const REJECTION_CODES: ReadonlySet<string> = new Set<ErrorCode>(['ERR_GRAIN_QUEUE_FULL', 'ERR_GRAIN_DROPPED', 'ERR_SCHEMA_MISMATCH'])

export type RpcOutcome = 'ok' | 'error' | 'timeout'

/** Which kinds and methods exist (read at call time: workers report kinds after start). */
export type KnownMethods = (kind: string) => { has(method: string): boolean } | undefined

interface Series {
  readonly kind: string
  readonly method: string
  readonly ok: Cell
  readonly okCount: Cell
  readonly inFlight: Cell
}

export class RpcMetrics {
  readonly #duration: Family
  readonly #calls: Family
  readonly #inFlight: Family
  readonly #retries: Family
  readonly #rejections: Family
  readonly #alertActive: Family
  readonly #grainDuration: Family
  readonly #grainCalls: Family
  readonly #queued: Family
  /** Waiting calls per worker and kind, as each worker last reported them. */
  readonly #queuedByWorker = new Map<number, Record<string, number>>()
  readonly #known: KnownMethods
  readonly #series = new Map<string, Map<string, Series>>()

  constructor(registry: Registry, known: KnownMethods, prefix = 'graincluster_') {
    this.#known = known
    const family = familiesIn(registry, prefix)
    this.#duration = family('rpc_client_duration_seconds', 'Grain RPC calls as the caller saw them (all attempts and backoff), by kind, method and outcome (ok, error, timeout).', 'histogram', ['kind', 'method', 'outcome'], RPC_DURATION_BUCKETS)
    this.#calls = family('rpc_calls_total', "Finished grain RPC calls by kind, method and code ('ok' or the error code).", 'counter', ['kind', 'method', 'code'])
    this.#inFlight = family('rpc_in_flight', 'Grain RPC calls started and not finished yet, by kind.', 'gauge', ['kind'])
    this.#retries = family('rpc_retries_total', 'Grain RPC attempts repeated after a retryable error, by kind and method.', 'counter', ['kind', 'method'])
    this.#rejections = family('rpc_rejections_total', 'Grain RPC calls refused by per-key limits or schema checks (ERR_GRAIN_QUEUE_FULL, ERR_GRAIN_DROPPED, ERR_SCHEMA_MISMATCH), by kind and code.', 'counter', ['kind', 'code'])
    this.#alertActive = family('rpc_alert_active', "1 while an RPC alert signal ('latency', 'error-rate') is raised for a kind.", 'gauge', ['kind', 'signal'])
    this.#grainDuration = family(
      'rpc_grain_call_duration_seconds',
      'Calls grains made to grains (ctx.ask, ctx.askPid) as the calling grain saw them, by kind and method called and outcome (ok, error, timeout); reported by the workers about once a second.',
      'histogram',
      ['kind', 'method', 'outcome'],
      RPC_DURATION_BUCKETS,
    )
    this.#queued = family('rpc_queued_calls', "Calls waiting in their keys' mailboxes on this node (per-key concurrency and queue limits), by kind; reported by the workers about once a second.", 'gauge', ['kind'])
    this.#grainCalls = family('rpc_grain_calls_total', "Calls grains made to grains by kind and method called and code ('ok' or the error code); reported by the workers about once a second.", 'counter', ['kind', 'method', 'code'])
  }

  /** A worker's waiting calls per kind now (it replaces that worker's last report). */
  queuedOn(worker: number, queued: Readonly<Record<string, number>>): void {
    this.#queuedByWorker.set(worker, { ...queued })
    this.#sumQueued()
  }

  /** A worker died: its mailboxes are gone with it. */
  workerGone(worker: number): void {
    if (this.#queuedByWorker.delete(worker)) this.#sumQueued()
  }

  #sumQueued(): void {
    const sums = new Map<string, number>()
    for (const byKind of this.#queuedByWorker.values()) {
      for (const [kind, n] of Object.entries(byKind)) {
        const k = this.#known(kind) === undefined ? UNKNOWN_LABEL : kind
        sums.set(k, (sums.get(k) ?? 0) + n)
      }
    }
    // A kind no worker reports any more (its worker died) falls back to 0.
    for (const k of this.#queuedKinds) if (!sums.has(k)) this.#queued.cell(k).value = 0
    for (const [k, n] of sums) {
      this.#queued.cell(k).value = n
      this.#queuedKinds.add(k)
    }
  }
  readonly #queuedKinds = new Set<string>()

  /** Add a worker's report of the calls its grains made (runtime/call-stats.ts). Labels are bounded as for the node's own calls. */
  absorbGrainCalls(rows: readonly CallStatsRow[]): void {
    for (const r of rows) {
      const s = this.series(r.kind, r.method)
      const code = r.code === 'ok' || isErrorCode(r.code) ? r.code : UNKNOWN_LABEL
      const outcome = code === 'ok' ? 'ok' : code === 'ERR_GRAIN_TIMEOUT' ? 'timeout' : 'error'
      const d = this.#grainDuration.cell(s.kind, s.method, outcome)
      d.value += r.count
      d.sum += r.sumSeconds
      for (let i = 0; i < RPC_DURATION_BUCKETS.length; i++) d.buckets![i]! += r.buckets[i]!
      this.#grainCalls.cell(s.kind, s.method, code).value += r.count
    }
  }

  /** Bounded labels and cached cells for `kind`/`method`. */
  series(kind: string, method: string): Series {
    let byMethod = this.#series.get(kind)
    let s = byMethod?.get(method)
    if (s !== undefined) return s
    const methods = this.#known(kind)
    const k = methods === undefined ? UNKNOWN_LABEL : kind
    const m = methods?.has(method) === true ? method : UNKNOWN_LABEL
    // Unknown names share one cache slot so the cache stays bounded too.
    if (k !== kind || m !== method) return this.series(k === kind ? kind : UNKNOWN_LABEL, UNKNOWN_LABEL)
    s = { kind: k, method: m, ok: this.#duration.cell(k, m, 'ok'), okCount: this.#calls.cell(k, m, 'ok'), inFlight: this.#inFlight.cell(k) }
    if (byMethod === undefined) this.#series.set(kind, (byMethod = new Map()))
    byMethod.set(method, s)
    return s
  }

  started(s: Series): void {
    s.inFlight.value++
  }

  succeeded(s: Series, seconds: number): void {
    s.inFlight.value--
    this.#duration.observe(s.ok, seconds)
    s.okCount.value++
  }

  failed(s: Series, code: string, outcome: Exclude<RpcOutcome, 'ok'>, seconds: number): void {
    s.inFlight.value--
    const c = isErrorCode(code) ? code : UNKNOWN_LABEL
    this.#duration.observe(this.#duration.cell(s.kind, s.method, outcome), seconds)
    this.#calls.cell(s.kind, s.method, c).value++
    if (REJECTION_CODES.has(c)) this.#rejections.cell(s.kind, c).value++
  }

  retried(s: Series): void {
    this.#retries.cell(s.kind, s.method).value++
  }

  alert(kind: string, signal: RpcAlertSignal, active: boolean): void {
    this.#alertActive.cell(this.#known(kind) === undefined ? UNKNOWN_LABEL : kind, signal).value = active ? 1 : 0
  }
}
