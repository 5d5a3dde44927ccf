/**
 * Bounded FIFO of outbound messages for one remote authority while it is
 * not connected (spec 3.2). Sans-I/O: no timers, no clock; the owner passes
 * enqueue times in with each message.
 *
 * Storage is columnar, because a flooded queue holds `limit` messages and a
 * small JS object, typed array and ArrayBuffer per message cost ~3× the
 * frame itself (~430 B for a 113 B tell, measured by the remote bench):
 *
 *  - slots: a ring of `limit` slots at most, growing by doubling, kept as
 *    parallel columns (frame offset and length, enqueue time, the metadata
 *    fields); an idle authority costs a few slots, a flooded one `limit`;
 *
 *      slots  [ m5 | m6 | __ | __ | __ | m2 | m3 | m4 ]      length L ≤ limit
 *                         ^                 ^
 *             (head + size) mod L           head                 size = 5
 *
 *  - bytes: every queued frame is copied into one byte ring (the arena), at
 *    the tail, or at offset 0 when it does not fit before the end (the end
 *    is skipped, as in the SPSC ring). The arena grows by doubling up to
 *    maxBytes + 2 × the largest frame seen, and once there it never needs to
 *    grow again: after the evictions a push makes, the queued frames plus the
 *    new one fit in maxBytes, and the skipped end is smaller than a frame.
 *
 * Messages handed out are rebuilt from the columns: drainAll() returns views
 * of the arena and then lets it go (the views own it from then on); shift()
 * and evictions return copies, since their bytes are reused by later pushes.
 *
 * Invariants, after every public call:
 *   - 0 ≤ size ≤ limit and 0 ≤ bytes ≤ maxBytes (bytes = Σ frame.byteLength)
 *   - slots ≤ limit; a slot outside [head, head + size) holds no metadata,
 *     so nothing evicted or handed out is kept alive here
 *   - messages leave in the order they were pushed (FIFO). FIFO over all
 *     messages implies FIFO per PID, the ordering scope of the spec (§3.8);
 *     an eviction removes the oldest message, which leaves a gap in a PID's
 *     sequence but never reorders what remains.
 *
 * Overflow policy is drop_oldest (spec 3.2): a push that would break either
 * bound evicts the oldest messages until the new one fits and returns them
 * to the owner, which dead-letters them and fails their asks. A message
 * whose frame alone exceeds maxBytes can never fit; it is not queued (and
 * nothing is evicted for it). push and shift are O(frame) amortized (a push
 * evicts each message at most once; growth copies what is queued, and
 * happens O(log) times over the queue's life).
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
/** First arena size; it grows by doubling. */
const INITIAL_ARENA_BYTES = 4 * 1024
const NO_EVICTION: readonly DeferredMessage[] = Object.freeze([])
const QUEUED: PushResult = Object.freeze({ queued: true, evicted: NO_EVICTION })
const EMPTY = new Uint8Array(0)

export class DeferredQueue implements DeferredQueueView {
  readonly limit: number
  readonly maxBytes: number
  // Slot columns (ring of #cap slots).
  #cap = 0
  #pid: Array<string | undefined> = []
  #kind: Array<string | undefined> = []
  #key: Array<string | undefined> = []
  /** Message type, NaN when the metadata had none. */
  #type = new Float64Array(0)
  /** Ask id, NaN for a tell. */
  #ask = new Float64Array(0)
  #enq = new Float64Array(0)
  #off = new Float64Array(0)
  #len = new Uint32Array(0)
  #head = 0
  #size = 0
  // Byte ring: frames live in [#bHead, #bTail) or, wrapped, in [#bHead, end) ∪ [0, #bTail).
  #arena: Uint8Array = EMPTY
  #bHead = 0
  #bTail = 0
  #wrapped = false
  #largestFrame = 0
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
    this.#resize(Math.min(INITIAL_SLOTS, o.limit))
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

  /** Slots of the columns (≤ limit): what the queue costs in memory besides the frames. */
  get storageSlots(): number {
    return this.#cap
  }

  /** Bytes of the arena holding the frames (≤ maxBytes + 2 × the largest frame, once grown). */
  get storageBytes(): number {
    return this.#arena.length
  }

  /**
   * Append `msg` (its frame is copied), evicting the oldest messages while
   * either bound would be exceeded. A frame larger than maxBytes is refused
   * without evicting.
   */
  push(msg: DeferredMessage): PushResult {
    const b = msg.frame.byteLength
    if (b > this.maxBytes) {
      return { queued: false, reason: `frame of ${b} bytes exceeds the deferred queue's byte bound of ${this.maxBytes}` }
    }
    let evicted: DeferredMessage[] | undefined
    // Terminates: size ≥ limit ≥ 1 means non-empty, and bytes + b > maxBytes ≥ b means bytes > 0.
    while (this.#size >= this.limit || this.#bytes + b > this.maxBytes) {
      const old = this.#take(true)
      this.#dropped++
      this.#droppedBytes += old.frame.byteLength
      ;(evicted ??= []).push(old)
    }
    this.#append(msg)
    this.#noteHighWater()
    return evicted === undefined ? QUEUED : { queued: true, evicted }
  }

  /** Remove and return the oldest message (its frame a copy). */
  shift(): DeferredMessage | undefined {
    return this.#size === 0 ? undefined : this.#take(true)
  }

  /** The oldest message, left in place (its frame a copy). */
  peek(): DeferredMessage | undefined {
    return this.#size === 0 ? undefined : this.#message(this.#head, true)
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
    if (skip < msgs.length) {
      // Rare (a refused write): rebuild in order, the handed-back messages first.
      const queued = this.drainAll()
      for (let k = skip; k < msgs.length; k++) this.#append(msgs[k]!)
      for (const m of queued) this.#append(m)
      this.#noteHighWater()
    }
    return skip === 0 ? NO_EVICTION : msgs.slice(0, skip)
  }

  /**
   * Remove and return every message, oldest first; the storage shrinks back
   * to its initial size. The frames are views of the old arena, which no
   * later push touches.
   */
  drainAll(): DeferredMessage[] {
    const out = new Array<DeferredMessage>(this.#size)
    for (let k = 0; k < out.length; k++) out[k] = this.#take(false)
    // A burst should not pin `limit` slots or its arena for the rest of the association's life.
    this.#arena = EMPTY
    if (this.#cap > INITIAL_SLOTS) this.#resize(Math.min(INITIAL_SLOTS, this.limit))
    this.#head = 0
    return out
  }

  /** Snapshot of the queued messages, oldest first, without removing them (frames are copies). */
  toArray(): DeferredMessage[] {
    const out = new Array<DeferredMessage>(this.#size)
    for (let k = 0; k < this.#size; k++) {
      let i = this.#head + k
      if (i >= this.#cap) i -= this.#cap
      out[k] = this.#message(i, true)
    }
    return out
  }

  /** Append without bound checks (the caller made room). */
  #append(m: DeferredMessage): void {
    if (this.#size === this.#cap) this.#resize(Math.min(this.#cap * 2, this.limit))
    let i = this.#head + this.#size
    if (i >= this.#cap) i -= this.#cap
    this.#put(i, m, this.#place(m.frame.byteLength))
    this.#size++
  }

  #put(i: number, m: DeferredMessage, at: number): void {
    const f = m.frame
    this.#arena.set(f, at)
    this.#off[i] = at
    this.#len[i] = f.byteLength
    this.#bytes += f.byteLength
    this.#enq[i] = m.enqueuedAtMs
    const meta = m.meta
    this.#pid[i] = meta.pid
    this.#kind[i] = meta.kind
    this.#key[i] = meta.key
    this.#type[i] = meta.messageType ?? Number.NaN
    this.#ask[i] = meta.askId ?? Number.NaN
  }

  /** The message in slot `i`, its frame copied or a view of the arena. */
  #message(i: number, copy: boolean): DeferredMessage {
    const at = this.#off[i]!
    const end = at + this.#len[i]!
    const meta: { pid: string; askId?: number; kind?: string; key?: string; messageType?: number } = { pid: this.#pid[i]! }
    const ask = this.#ask[i]!
    if (ask === ask) meta.askId = ask
    const kind = this.#kind[i]
    if (kind !== undefined) meta.kind = kind
    const key = this.#key[i]
    if (key !== undefined) meta.key = key
    const type = this.#type[i]!
    if (type === type) meta.messageType = type
    return { frame: copy ? this.#arena.slice(at, end) : this.#arena.subarray(at, end), meta, enqueuedAtMs: this.#enq[i]! }
  }

  #take(copy: boolean): DeferredMessage {
    const i = this.#head
    const m = this.#message(i, copy)
    // Release the metadata strings for GC.
    this.#pid[i] = undefined
    this.#kind[i] = undefined
    this.#key[i] = undefined
    this.#head = i + 1 === this.#cap ? 0 : i + 1
    this.#size--
    this.#bytes -= m.frame.byteLength
    if (this.#size === 0) {
      this.#head = 0
      this.#bHead = 0
      this.#bTail = 0
      this.#wrapped = false
    } else {
      const next = this.#off[this.#head]!
      // Every frame takes at least one arena byte, so offsets rise strictly within a segment:
      // a next frame below the old head is in the wrapped segment, which is now the only one.
      if (this.#wrapped && next < this.#bHead) this.#wrapped = false
      this.#bHead = next
    }
    return m
  }

  /** Reserve `b` contiguous arena bytes (at least one) for a new tail frame; returns their offset. */
  #place(b: number): number {
    const n = b === 0 ? 1 : b
    if (n > this.#largestFrame) this.#largestFrame = n
    for (;;) {
      const cap = this.#arena.length
      if (this.#size === 0) {
        if (n <= cap) return this.#advance(0, n)
      } else if (this.#wrapped) {
        if (this.#bHead - this.#bTail >= n) return this.#advance(this.#bTail, n)
      } else if (cap - this.#bTail >= n) {
        return this.#advance(this.#bTail, n)
      } else if (this.#bHead >= n) {
        this.#wrapped = true
        return this.#advance(0, n)
      }
      this.#growArena(n)
    }
  }

  #advance(at: number, n: number): number {
    this.#bTail = at + n
    return at
  }

  /** A larger arena holding the queued frames from offset 0, in order, with room for `n` more bytes. */
  #growArena(n: number): void {
    let used = 0
    for (let k = 0; k < this.#size; k++) {
      let i = this.#head + k
      if (i >= this.#cap) i -= this.#cap
      used += this.#len[i]! === 0 ? 1 : this.#len[i]!
    }
    // Enough for any queue the bounds allow, with the skipped end of a wrap: see the file comment.
    const ceiling = this.maxBytes === Infinity ? Infinity : this.maxBytes + 2 * this.#largestFrame
    const cap = Math.max(used + n, Math.min(Math.max(INITIAL_ARENA_BYTES, 2 * this.#arena.length), ceiling))
    const next = new Uint8Array(cap)
    let at = 0
    for (let k = 0; k < this.#size; k++) {
      let i = this.#head + k
      if (i >= this.#cap) i -= this.#cap
      const from = this.#off[i]!
      const len = this.#len[i]!
      next.set(this.#arena.subarray(from, from + len), at)
      this.#off[i] = at
      at += len === 0 ? 1 : len
    }
    this.#arena = next
    this.#bHead = 0
    this.#bTail = at
    this.#wrapped = false
  }

  /** Reallocate the columns to `cap` slots (≥ size), copying the ring in order to index 0. */
  #resize(cap: number): void {
    const pid = new Array<string | undefined>(cap).fill(undefined)
    const kind = new Array<string | undefined>(cap).fill(undefined)
    const key = new Array<string | undefined>(cap).fill(undefined)
    const type = new Float64Array(cap)
    const ask = new Float64Array(cap)
    const enq = new Float64Array(cap)
    const off = new Float64Array(cap)
    const len = new Uint32Array(cap)
    for (let k = 0; k < this.#size; k++) {
      let i = this.#head + k
      if (i >= this.#cap) i -= this.#cap
      pid[k] = this.#pid[i]
      kind[k] = this.#kind[i]
      key[k] = this.#key[i]
      type[k] = this.#type[i]!
      ask[k] = this.#ask[i]!
      enq[k] = this.#enq[i]!
      off[k] = this.#off[i]!
      len[k] = this.#len[i]!
    }
    this.#pid = pid
    this.#kind = kind
    this.#key = key
    this.#type = type
    this.#ask = ask
    this.#enq = enq
    this.#off = off
    this.#len = len
    this.#cap = cap
    this.#head = 0
  }

  #noteHighWater(): void {
    if (this.#size > this.#highWaterMark) this.#highWaterMark = this.#size
    if (this.#bytes > this.#highWaterBytes) this.#highWaterBytes = this.#bytes
  }
}
