/**
 * Asks issued by the main thread that wait for a reply, keyed by
 * correlation id.
 *
 * Timeouts without a timer per call: one periodic sweep fails the calls
 * with the default timeout whose deadline passed (a scan of the table's
 * slots, a few thousand at most). Calls with their own timeout get their
 * own timer. A call therefore fails between its deadline and deadline +
 * sweep interval.
 */

import { GrainClusterError } from '../../common/errors.js'
import { monotonicMs } from '../../common/deadline.js'
import { IdTable } from '../../common/id-table.js'
import type { EnvelopeReader } from '../../wire/envelope.js'

export interface CallInfo {
  readonly kind: string
  readonly key: string
  readonly method: string
  readonly worker: number
  /** The node a remote call went to (worker is -1 then). */
  readonly authority?: string
}

interface Call extends CallInfo {
  /** Relayed asks take the reply envelope itself instead of its decoded value. */
  raw: ((r: EnvelopeReader) => void) | undefined
  resolve: (v: unknown) => void
  reject: (e: GrainClusterError) => void
  deadline: number
  timeoutMs: number
  timer: ReturnType<typeof setTimeout> | undefined
}

export class PendingCalls {
  readonly #calls = new IdTable<Call>()
  /** Calls waiting on each local worker (index = worker): what its ring pump may spin for. */
  #onWorker: number[] = []
  /** When the latest call to each local worker was registered (monotonic ms). */
  #lastCallAt: number[] = []
  #sweeper: ReturnType<typeof setInterval> | undefined
  readonly defaultTimeoutMs: number
  readonly #sweepMs: number

  constructor(defaultTimeoutMs: number) {
    this.defaultTimeoutMs = defaultTimeoutMs
    this.#sweepMs = Math.min(Math.max(Math.floor(defaultTimeoutMs / 10), 5), 1000)
  }

  get size(): number {
    return this.#calls.size
  }

  /** Calls waiting on a reply from local worker `worker` (remote calls wait on a socket, not a ring). */
  onWorker(worker: number): number {
    return this.#onWorker[worker] ?? 0
  }

  /** When the latest call to local worker `worker` was registered (monotonic ms; -Infinity before any). */
  lastCallAt(worker: number): number {
    return this.#lastCallAt[worker] ?? Number.NEGATIVE_INFINITY
  }

  /** Next correlation id (never 0, wraps at 2^32). */
  nextId(): number {
    return this.#calls.reserve()
  }

  /** Register call `id`; the promise settles on complete/fail/timeout. */
  add<R>(id: number, info: CallInfo, timeoutMs: number | undefined): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const ms = timeoutMs ?? this.defaultTimeoutMs
      const now = monotonicMs()
      const call: Call = {
        kind: info.kind,
        key: info.key,
        method: info.method,
        worker: info.worker,
        ...(info.authority === undefined ? {} : { authority: info.authority }),
        resolve: resolve as (v: unknown) => void,
        reject,
        deadline: now + ms,
        timeoutMs: ms,
        timer: undefined,
        raw: undefined,
      }
      if (timeoutMs !== undefined && timeoutMs !== this.defaultTimeoutMs) {
        call.timer = setTimeout(() => this.#expire(id), ms)
      } else if (this.#sweeper === undefined) {
        this.#sweeper = setInterval(this.#sweep, this.#sweepMs)
        this.#sweeper.unref()
      }
      this.#calls.set(id, call)
      if (info.worker >= 0) {
        this.#onWorker[info.worker] = (this.#onWorker[info.worker] ?? 0) + 1
        this.#lastCallAt[info.worker] = now
      }
    })
  }

  /**
   * Register a relayed ask: `raw` gets the reply envelope (valid only during
   * the call), `fail` a typed error on timeout or worker crash.
   */
  addRaw(id: number, info: CallInfo, timeoutMs: number | undefined, raw: (r: EnvelopeReader) => void, fail: (e: GrainClusterError) => void): void {
    void this.add(id, info, timeoutMs).catch(fail)
    const c = this.#calls.get(id)
    if (c !== undefined) c.raw = raw
  }

  /** Is call `id` still waiting (not completed, failed or timed out)? */
  has(id: number): boolean {
    return this.#calls.get(id) !== undefined
  }

  /** Remove and return call `id` (undefined when it already timed out). */
  take(id: number): (CallInfo & { raw: ((r: EnvelopeReader) => void) | undefined; resolve: (v: unknown) => void; reject: (e: GrainClusterError) => void }) | undefined {
    const c = this.#calls.get(id)
    if (c === undefined) return undefined
    this.#remove(id, c)
    return c
  }

  #remove(id: number, c: Call): void {
    this.#calls.delete(id)
    if (c.timer !== undefined) clearTimeout(c.timer)
    if (c.worker >= 0) this.#onWorker[c.worker]!--
  }

  /** Fail every call waiting on a reply from `authority` (it became unreachable). Returns how many. */
  failAuthority(authority: string, makeError: (c: CallInfo) => GrainClusterError): number {
    let n = 0
    this.#calls.forEach((c, id) => {
      if (c.authority !== authority) return
      this.#remove(id, c)
      c.reject(makeError(c))
      n++
    })
    return n
  }

  /** Fail every call waiting on `worker` (it crashed). Returns how many. */
  failWorker(worker: number, makeError: (c: CallInfo) => GrainClusterError): number {
    let n = 0
    this.#calls.forEach((c, id) => {
      if (c.worker !== worker) return
      this.#remove(id, c)
      c.reject(makeError(c))
      n++
    })
    return n
  }

  failAll(makeError: (c: CallInfo) => GrainClusterError): number {
    const calls = this.#calls.takeAll()
    for (const c of calls) {
      if (c.timer !== undefined) clearTimeout(c.timer)
      c.reject(makeError(c))
    }
    this.#onWorker = []
    this.#lastCallAt = []
    this.#stopSweeper()
    return calls.length
  }

  #expire(id: number): void {
    const c = this.#calls.get(id)
    if (c === undefined) return
    this.#remove(id, c)
    c.reject(timeoutError(c))
  }

  readonly #sweep = (): void => {
    const now = monotonicMs()
    this.#calls.forEach((c, id) => {
      if (c.timer !== undefined || c.deadline > now) return
      this.#remove(id, c)
      c.reject(timeoutError(c))
    })
    if (this.#calls.size === 0) this.#stopSweeper()
  }

  #stopSweeper(): void {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper)
    this.#sweeper = undefined
  }
}

function timeoutError(c: Call): GrainClusterError {
  return new GrainClusterError('ERR_GRAIN_TIMEOUT', `ask ${c.kind}.${c.method} to key ${c.key} got no reply within ${c.timeoutMs} ms`, {
    kind: c.kind,
    key: c.key,
    method: c.method,
    worker: c.worker,
    limit: c.timeoutMs,
  })
}
