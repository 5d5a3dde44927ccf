/**
 * Per-key concurrency and queue limits (spec 6.3, design 3.8 "Grain RPC"),
 * sans-I/O: no `node:*`, no timers; the worker's PartitionHost drives it.
 *
 * Every activation is a KeyMailbox. A call is either exclusive (a write: the
 * default) or shared (a method the kind marks `readOnly`). Invariants:
 *
 *   - an exclusive call runs alone: no other call of the key is in flight;
 *   - shared calls run together, at most `concurrencyLimit` at once, and
 *     never beside an exclusive call;
 *   - calls START in arrival order (strict FIFO, no overtaking: a read
 *     behind a queued write waits for it), so the order of the kept calls
 *     never changes, whatever is rejected or dropped;
 *   - at most `queueDepth` calls wait. Beyond it, `reject` refuses the new
 *     call; `dropOldest` drops the oldest waiting call and queues the new one.
 *
 *   arrival ──► admit() ─┬─ 'run'        queue empty and the call may start now
 *                        ├─ 'queue'      waits (FIFO)
 *                        ├─ 'reject'     queue full, policy reject
 *                        └─ 'dropOldest' queue full: dropOldest(), then queue
 *   completion ──► finish; next() starts queued heads while they may start
 *
 * The queue is materialised only when a call has to wait, so an idle
 * activation costs no array.
 */

export type QueuePolicy = 'reject' | 'dropOldest'

/** Limits of every key of one grain kind. */
export interface KeyLimits {
  /** Calls of one key in flight at once; only shared (readOnly) calls ever overlap. */
  readonly concurrencyLimit: number
  /** Calls of one key that may wait; beyond it `queuePolicy` applies. */
  readonly queueDepth: number
  readonly queuePolicy: QueuePolicy
}

export const DEFAULT_CONCURRENCY_LIMIT = 1
/**
 * 10 000 waiting calls per key: far above any healthy backlog (a key doing
 * 10 k calls/s drains it in a second) yet small enough that one hot key
 * cannot pin more than a few MiB of queued payloads on a worker.
 */
export const DEFAULT_QUEUE_DEPTH = 10_000
export const DEFAULT_QUEUE_POLICY: QueuePolicy = 'reject'

export const DEFAULT_KEY_LIMITS: KeyLimits = Object.freeze({
  concurrencyLimit: DEFAULT_CONCURRENCY_LIMIT,
  queueDepth: DEFAULT_QUEUE_DEPTH,
  queuePolicy: DEFAULT_QUEUE_POLICY,
})

/** Largest accepted concurrencyLimit / queueDepth (a sanity bound, not a tuning hint). */
export const MAX_CONCURRENCY_LIMIT = 65_536
export const MAX_QUEUE_DEPTH = 1 << 24

export type Admission = 'run' | 'queue' | 'reject' | 'dropOldest'

/** Problems with limits as a kind declared them (empty when valid). */
export function keyLimitIssues(l: { concurrencyLimit?: unknown; queueDepth?: unknown; queuePolicy?: unknown }): string[] {
  const issues: string[] = []
  const int = (name: string, v: unknown, max: number): void => {
    if (v === undefined) return
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) issues.push(`${name} must be an integer in [1, ${max}] (got ${JSON.stringify(v)})`)
  }
  int('concurrencyLimit', l.concurrencyLimit, MAX_CONCURRENCY_LIMIT)
  int('queueDepth', l.queueDepth, MAX_QUEUE_DEPTH)
  if (l.queuePolicy !== undefined && l.queuePolicy !== 'reject' && l.queuePolicy !== 'dropOldest') {
    issues.push(`queuePolicy must be 'reject' or 'dropOldest' (got ${JSON.stringify(l.queuePolicy)})`)
  }
  return issues
}

/** Compact a consumed queue prefix once it is this long and at least half the array. */
const COMPACT_AFTER = 1024

/**
 * The mailbox of one key. `T` is whatever the driver queues; `isShared`
 * says whether a queued item is a shared (read-only) call.
 */
export abstract class KeyMailbox<T> {
  /** An exclusive call (or onActivate/onDeactivate) is in flight. */
  busy = false
  /** Shared calls in flight. */
  sharedRunning = 0
  /** Interleaving calls in flight (they hold nothing, but the activation is not idle). */
  interleaved = 0
  /** Waiting calls; null when none wait. queue[queueHead..] are live. */
  queue: T[] | null = null
  queueHead = 0

  protected abstract isShared(item: T): boolean

  /** Calls waiting. */
  get queued(): number {
    return this.queue === null ? 0 : this.queue.length - this.queueHead
  }

  /** Nothing in flight (queued calls may still wait behind a deactivation). */
  get idle(): boolean {
    return !this.busy && this.sharedRunning === 0 && this.interleaved === 0
  }

  /** Could a call start now, ignoring the queue? */
  mayStart(shared: boolean, limits: KeyLimits): boolean {
    if (this.busy) return false
    return shared ? this.sharedRunning < limits.concurrencyLimit : this.sharedRunning === 0
  }

  /** What to do with a new call (no side effects; the driver acts on the answer). */
  admit(shared: boolean, limits: KeyLimits): Admission {
    const q = this.queued
    if (q === 0 && this.mayStart(shared, limits)) return 'run'
    if (q < limits.queueDepth) return 'queue'
    return limits.queuePolicy === 'reject' ? 'reject' : 'dropOldest'
  }

  enqueue(item: T): void {
    if (this.queue === null) {
      this.queue = [item]
      this.queueHead = 0
    } else this.queue.push(item)
  }

  /** Remove and return the oldest waiting call, whether or not it may start. */
  dequeue(): T | undefined {
    const q = this.queue
    if (q === null) return undefined
    const item = q[this.queueHead]!
    q[this.queueHead++] = undefined as unknown as T
    if (this.queueHead >= q.length) {
      this.queue = null
      this.queueHead = 0
    } else if (this.queueHead >= COMPACT_AFTER && this.queueHead * 2 >= q.length) {
      // A queue that never empties (steady overload) must not grow without bound.
      q.copyWithin(0, this.queueHead)
      q.length -= this.queueHead
      this.queueHead = 0
    }
    return item
  }

  /** The oldest waiting call, left in the queue. */
  oldest(): T | undefined {
    return this.queue === null ? undefined : this.queue[this.queueHead]
  }

  /** dropOldest policy: the oldest waiting call, removed to make room. */
  dropOldest(): T | undefined {
    return this.dequeue()
  }

  /**
   * The oldest waiting call if it may start now (removed from the queue),
   * else undefined. The driver marks it running (busy / sharedRunning).
   */
  next(limits: KeyLimits): T | undefined {
    const q = this.queue
    if (q === null) return undefined
    if (!this.mayStart(this.isShared(q[this.queueHead]!), limits)) return undefined
    return this.dequeue()
  }
}
