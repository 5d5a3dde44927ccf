/**
 * Bounded FIFO of outbound messages for one remote authority while it is
 * not connected (spec 3.2). Sans-I/O: no timers, no clock; the owner passes
 * enqueue times in with each message.
 *
 * Storage is a ring over a plain array that grows by doubling on demand and
 * never beyond `limit` slots, so an idle authority costs a few slots and a
 * flooded one at most `limit`:
 *
 *   slots  [ m5 | m6 | __ | __ | __ | m2 | m3 | m4 ]      length L ≤ limit
 *                      ^                 ^
 *          (head + size) mod L           head                 size = 5
 *          next push goes here           next shift / oldest
 *
 * Invariants, after every public call:
 *   - 0 ≤ size ≤ limit and 0 ≤ bytes ≤ maxBytes (bytes = Σ frame.byteLength)
 *   - slots.length ≤ limit; a slot outside [head, head + size) holds
 *     undefined, so a shifted or evicted frame is never kept alive here
 *   - messages leave in the order they were pushed (FIFO). FIFO over all
 *     messages implies FIFO per PID, the ordering scope of the spec (§3.8);
 *     an eviction removes the oldest message, which leaves a gap in a PID's
 *     sequence but never reorders what remains.
 *
 * Overflow policy is drop_oldest (spec 3.2): a push that would break either
 * bound evicts the oldest messages until the new one fits and returns them
 * to the owner, which dead-letters them and fails their asks. A message
 * whose frame alone exceeds maxBytes can never fit; it is not queued (and
 * nothing is evicted for it). push and shift are O(1) amortized (a push
 * evicts each message at most once; growth copies at most `limit` slots
 * log₂(limit) times over the queue's life).
 */

import { GrainClusterError } from '../../common/errors.js'

/** What the owner attaches to an outbound frame; the queue itself never looks inside. */
export interface OutboundMeta {
  /** Target PID, canonical string: the ordering scope. */
  readonly pid: string
  /**
   * Present for an ask: the owner's id of the waiting call, failed with the
   * message's error if it is dropped or refused. Absent for a tell.
   */
  readonly askId?: number
  /** Grain kind, key and message type, for the 'deadletter' event. */
  readonly kind?: string
  readonly key?: string
  readonly messageType?: number
}

/** One queued outbound message: an opaque encoded frame plus its metadata. */
export interface DeferredMessage {
  readonly frame: Uint8Array
  readonly meta: OutboundMeta
  /** Owner's clock (ms) when the message entered the queue. */
  readonly enqueuedAtMs: number
}

export interface DeferredQueueOptions {
  /** Most messages held at once; an integer ≥ 1. */
  readonly limit: number
  /** Most frame bytes held at once; an integer ≥ 1 or Infinity (default: no byte bound). */
  readonly maxBytes?: number
}

/** Result of push(). */
export type PushResult =
  | {
      readonly queued: true
      /** Messages evicted to make room, oldest first (empty when none). */
      readonly evicted: readonly DeferredMessage[]
    }
  | {
      readonly queued: false
      /** Why the message was not queued (its frame alone exceeds maxBytes). */
      readonly reason: string
    }

/** Read-only counters of a queue, for owners that must not mutate it. */
export interface DeferredQueueView {
  readonly limit: number
  readonly maxBytes: number
  readonly size: number
  readonly bytes: number
  readonly dropped: number
  readonly droppedBytes: number
  readonly highWaterMark: number
  readonly highWaterBytes: number
  readonly storageSlots: number
}

/** Slots allocated up front (or after a bulk drain); grows by doubling up to `limit`. */
const INITIAL_SLOTS = 16
const NO_EVICTION: readonly DeferredMessage[] = Object.freeze([])
const QUEUED: PushResult = Object.freeze({ queued: true, evicted: NO_EVICTION })

export class DeferredQueue implements DeferredQueueView {
  readonly limit: number
  readonly maxBytes: number
  #slots: Array<DeferredMessage | undefined>
  #head = 0
  #size = 0
  #bytes = 0
  #dropped = 0
  #droppedBytes = 0
  #highWaterMark = 0
  #highWaterBytes = 0

  constructor(o: DeferredQueueOptions) {
    const issues: string[] = []
    if (!Number.isSafeInteger(o.limit) || o.limit < 1) issues.push(`deferredQueue.limit must be an integer ≥ 1 (got ${String(o.limit)})`)
    const maxBytes = o.maxBytes ?? Infinity
    if (maxBytes !== Infinity && (!Number.isSafeInteger(maxBytes) || maxBytes < 1)) {
      issues.push(`deferredQueue.maxBytes must be an integer ≥ 1 or Infinity (got ${String(o.maxBytes)})`)
    }
    if (issues.length > 0) throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid deferred queue options: ${issues.join('; ')}`, { issues })
    this.limit = o.limit
    this.maxBytes = maxBytes
    this.#slots = new Array<DeferredMessage | undefined>(Math.min(INITIAL_SLOTS, o.limit)).fill(undefined)
  }

  /** Messages queued now. */
  get size(): number {
    return this.#size
  }

  /** Frame bytes queued now. */
  get bytes(): number {
    return this.#bytes
  }

  /** Messages evicted by overflow since creation (drains do not count). */
  get dropped(): number {
    return this.#dropped
  }

  /** Frame bytes evicted by overflow since creation. */
  get droppedBytes(): number {
    return this.#droppedBytes
  }

  /** Largest size ever reached. */
  get highWaterMark(): number {
    return this.#highWaterMark
  }

  /** Largest byte total ever reached. */
  get highWaterBytes(): number {
    return this.#highWaterBytes
  }

  /** Slots of the backing array (≤ limit): what the queue costs in memory besides the frames. */
  get storageSlots(): number {
    return this.#slots.length
  }

  /**
   * Append `msg`, evicting the oldest messages while either bound would be
   * exceeded. A frame larger than maxBytes is refused without evicting.
   */
  push(msg: DeferredMessage): PushResult {
    const b = msg.frame.byteLength
    if (b > this.maxBytes) {
      return { queued: false, reason: `frame of ${b} bytes exceeds the deferred queue's byte bound of ${this.maxBytes}` }
    }
    let evicted: DeferredMessage[] | undefined
    // Terminates: size ≥ limit ≥ 1 means non-empty, and bytes + b > maxBytes ≥ b means bytes > 0.
    while (this.#size >= this.limit || this.#bytes + b > this.maxBytes) {
      const old = this.#take()
      this.#dropped++
      this.#droppedBytes += old.frame.byteLength
      ;(evicted ??= []).push(old)
    }
    if (this.#size === this.#slots.length) this.#grow(this.#size + 1)
    let i = this.#head + this.#size
    if (i >= this.#slots.length) i -= this.#slots.length
    this.#slots[i] = msg
    this.#size++
    this.#bytes += b
    this.#noteHighWater()
    return evicted === undefined ? QUEUED : { queued: true, evicted }
  }

  /** Remove and return the oldest message. */
  shift(): DeferredMessage | undefined {
    return this.#size === 0 ? undefined : this.#take()
  }

  /** The oldest message, left in place. */
  peek(): DeferredMessage | undefined {
    return this.#size === 0 ? undefined : this.#slots[this.#head]
  }

  /**
   * Put `msgs` (oldest first) back in front of everything queued, as the
   * oldest messages: for frames handed out for writing that the transport
   * did not take. Evicts from the front of `msgs` while a bound would be
   * exceeded (they are the oldest) and returns the evicted ones, oldest
   * first; the messages already queued always fit.
   */
  unshiftAll(msgs: readonly DeferredMessage[]): readonly DeferredMessage[] {
    let incomingBytes = 0
    for (const m of msgs) incomingBytes += m.frame.byteLength
    let skip = 0
    while (skip < msgs.length && (this.#size + msgs.length - skip > this.limit || this.#bytes + incomingBytes > this.maxBytes)) {
      const m = msgs[skip++]!
      incomingBytes -= m.frame.byteLength
      this.#dropped++
      this.#droppedBytes += m.frame.byteLength
    }
    const keep = msgs.length - skip
    if (keep > 0) {
      if (this.#size + keep > this.#slots.length) this.#grow(this.#size + keep)
      const len = this.#slots.length
      this.#head = (this.#head - keep + len) % len
      for (let k = 0; k < keep; k++) {
        let i = this.#head + k
        if (i >= len) i -= len
        this.#slots[i] = msgs[skip + k]
      }
      this.#size += keep
      this.#bytes += incomingBytes
      this.#noteHighWater()
    }
    return skip === 0 ? NO_EVICTION : msgs.slice(0, skip)
  }

  /** Remove and return every message, oldest first; the storage shrinks back to its initial size. */
  drainAll(): DeferredMessage[] {
    const out = new Array<DeferredMessage>(this.#size)
    for (let k = 0; k < out.length; k++) out[k] = this.#take()
    // A burst should not pin a `limit`-slot array for the rest of the association's life.
    if (this.#slots.length > INITIAL_SLOTS) this.#slots = new Array<DeferredMessage | undefined>(Math.min(INITIAL_SLOTS, this.limit)).fill(undefined)
    this.#head = 0
    return out
  }

  /** Snapshot of the queued messages, oldest first, without removing them. */
  toArray(): DeferredMessage[] {
    const out = new Array<DeferredMessage>(this.#size)
    const len = this.#slots.length
    for (let k = 0; k < this.#size; k++) {
      let i = this.#head + k
      if (i >= len) i -= len
      out[k] = this.#slots[i]!
    }
    return out
  }

  #take(): DeferredMessage {
    const m = this.#slots[this.#head]!
    this.#slots[this.#head] = undefined // release the frame for GC
    this.#head = this.#head + 1 === this.#slots.length ? 0 : this.#head + 1
    this.#size--
    this.#bytes -= m.frame.byteLength
    if (this.#size === 0) this.#head = 0
    return m
  }

  /** Reallocate to at least `need` slots (doubling, capped at limit), copying the ring in order to index 0. */
  #grow(need: number): void {
    let len = this.#slots.length
    while (len < need) len = Math.min(len * 2, this.limit)
    const next = new Array<DeferredMessage | undefined>(len).fill(undefined)
    const old = this.#slots
    for (let k = 0; k < this.#size; k++) {
      let i = this.#head + k
      if (i >= old.length) i -= old.length
      next[k] = old[i]
    }
    this.#slots = next
    this.#head = 0
  }

  #noteHighWater(): void {
    if (this.#size > this.#highWaterMark) this.#highWaterMark = this.#size
    if (this.#bytes > this.#highWaterBytes) this.#highWaterBytes = this.#bytes
  }
}
