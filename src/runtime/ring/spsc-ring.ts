/**
 * Single-producer / single-consumer ring of length-prefixed byte frames on a
 * SharedArrayBuffer. One thread owns the RingProducer, another the
 * RingConsumer; neither ever blocks its event loop.
 *
 * SharedArrayBuffer layout (all little-endian, Int32 words):
 *
 *   word  0  kTail             producer's published write position (bytes, u32, wraps)
 *   word 16  kHead             consumer's published read position  (bytes, u32, wraps)
 *   word 32  kConsumerWaiting  1 while the consumer is parked in Atomics.waitAsync
 *   byte 136 kNotifiedAtF64    float64: when the producer last woke the parked consumer (absolute ms)
 *   word 48  kProducerWaiting  1 while the producer waits for free space
 *   byte 256 ... 256+C         data area, C = capacity, a power of two
 *
 * Head and tail live 64 bytes apart so the two threads do not share a cache
 * line. Positions are free-running u32 counters; `index = pos & (C - 1)` and
 * `used = (tail - head) >>> 0`, which stays right across the 2^32 wrap
 * because C divides 2^32.
 *
 * A frame is `[u32 length][length bytes][pad to 4]`. A frame never straddles
 * the end of the data area: when it does not fit before the end, the producer
 * writes kWrapMarker as the length and continues at index 0. That is why the
 * largest frame is C/2 - 4 bytes: it fits on one side of any index.
 *
 * Memory ordering: frame bytes are written with plain stores, then the tail
 * is published with Atomics.store; the consumer reads the tail with
 * Atomics.load before reading frame bytes. Atomics are sequentially
 * consistent, so everything written before the store is visible after the
 * load. The same holds for the head in the other direction.
 */

import { GrainClusterError } from '../../common/errors.js'
import { putU32le, u32le } from '../../wire/le.js'

export const kTail = 0
export const kHead = 16
export const kConsumerWaiting = 32
export const kProducerWaiting = 48
/**
 * Float64 index (byte 136, on the consumer-waiting line) of when the
 * producer last woke a parked consumer: absolute ms, timeOrigin + now(),
 * comparable across the threads of a process.
 */
export const kNotifiedAtF64 = 17
export const HEADER_BYTES = 256
const kWrapMarker = 0xffffffff

export const DEFAULT_RING_BYTES = 1 << 20 // 1 MiB per direction

export function createRingBuffer(capacityBytes: number = DEFAULT_RING_BYTES): SharedArrayBuffer {
  if (!Number.isInteger(capacityBytes) || capacityBytes < 64 || capacityBytes > 2 ** 30 || (capacityBytes & (capacityBytes - 1)) !== 0) {
    throw new GrainClusterError('ERR_CONFIG_INVALID', `ring capacity must be a power of two in [64 B, 1 GiB] (got ${capacityBytes})`, {
      issues: [`ringBytes must be a power of two in [64, 2^30] (got ${capacityBytes})`],
    })
  }
  return new SharedArrayBuffer(HEADER_BYTES + capacityBytes)
}

/** Largest frame payload the ring can hold, in bytes. */
export function maxFrameBytesOf(sab: SharedArrayBuffer): number {
  return (sab.byteLength - HEADER_BYTES) / 2 - 4
}

function align4(n: number): number {
  return (n + 3) & ~3
}

/**
 * The entries of bytes[from, to) in ring frame format ([u32 length][bytes]
 * [pad to 4]), as [offset, length] of each payload, up to the first one that
 * is empty or does not fit (a block of tell-batch entries, a queued block).
 */
export function ringEntries(bytes: Uint8Array, from: number, to: number): Array<[number, number]> {
  const out: Array<[number, number]> = []
  for (let at = from; at + 4 <= to; ) {
    const len = u32le(bytes, at)
    const next = at + 4 + align4(len)
    if (len === 0 || next > to) break
    out.push([at + 4, len])
    at = next
  }
  return out
}

/**
 * Close the ring-format entry whose `len` payload bytes were written at
 * bytes[at + 4, …): store its length prefix and return where the next entry
 * starts. For blocks built outside the ring (tell batches, overflow blocks).
 */
export function closeRingEntry(bytes: Uint8Array, at: number, len: number): number {
  putU32le(bytes, at, len)
  return at + 4 + align4(len)
}

class RingView {
  readonly ctl: Int32Array
  /** The header as float64s: kNotifiedAtF64. */
  readonly ctlF64: Float64Array
  /** Data area as bytes; frame offsets handed out are indices into it. */
  readonly data: Uint8Array
  readonly words: Uint32Array
  readonly capacity: number
  readonly mask: number
  readonly maxFrameBytes: number

  constructor(sab: SharedArrayBuffer) {
    this.ctl = new Int32Array(sab, 0, HEADER_BYTES / 4)
    this.ctlF64 = new Float64Array(sab, 0, HEADER_BYTES / 8)
    this.capacity = sab.byteLength - HEADER_BYTES
    this.data = new Uint8Array(sab, HEADER_BYTES, this.capacity)
    this.words = new Uint32Array(sab, HEADER_BYTES, this.capacity / 4)
    this.mask = this.capacity - 1
    this.maxFrameBytes = this.capacity / 2 - 4
  }
}

export interface ProducerStats {
  frames: number
  wraps: number
  publishes: number
  notifies: number
  fullEvents: number
}

export class RingProducer extends RingView {
  #tail: number // local, unpublished write position
  #cachedHead: number
  readonly stats: ProducerStats = { frames: 0, wraps: 0, publishes: 0, notifies: 0, fullEvents: 0 }

  constructor(sab: SharedArrayBuffer) {
    super(sab)
    this.#tail = Atomics.load(this.ctl, kTail) >>> 0
    this.#cachedHead = Atomics.load(this.ctl, kHead) >>> 0
  }

  /**
   * Free bytes, at least `need` if the consumer has made room. The
   * consumer's position is re-read (an atomic load on a cache line the other
   * thread writes) only when the cached one says we are short.
   */
  #free(need: number): number {
    let free = this.capacity - ((this.#tail - this.#cachedHead) >>> 0)
    if (free < need) {
      this.#cachedHead = Atomics.load(this.ctl, kHead) >>> 0
      free = this.capacity - ((this.#tail - this.#cachedHead) >>> 0)
    }
    return free
  }

  /**
   * Contiguous room for a frame at the current write position, or 0.
   * Returns the payload room in bytes; the payload goes at `frameOffset()`.
   * Used to encode straight into ring memory without knowing the size first.
   */
  contiguousRoom(want = 256): number {
    const idx = this.#tail & this.mask
    const toEnd = this.capacity - idx
    // Re-read the consumer's head only when the cached one leaves less than
    // `want` bytes: that load pulls a cache line the consumer keeps writing,
    // and a typical envelope is ~120 bytes. FrameSender asks again with more
    // when a frame does not fit.
    const room = Math.min(toEnd, this.#free(Math.min(toEnd, want))) - 4
    return room > 0 ? Math.min(room, this.maxFrameBytes) : 0
  }

  /** Data-area offset where the next frame's payload starts (valid after contiguousRoom()). */
  frameOffset(): number {
    return (this.#tail & this.mask) + 4
  }

  /** Commit a frame of `len` bytes written at frameOffset(). Not visible until publish(). */
  commit(len: number): void {
    const idx = this.#tail & this.mask
    this.words[idx >>> 2] = len
    this.#tail = (this.#tail + 4 + align4(len)) >>> 0
    this.stats.frames++
  }

  /**
   * Reserve `len` contiguous payload bytes, wrapping to the start if needed.
   * Returns the data-area offset to write at, or -1 if there is no room now.
   * Follow with commit(len).
   */
  reserve(len: number): number {
    if (len > this.maxFrameBytes || len < 0) {
      throw new GrainClusterError('ERR_RING_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds the ring's maximum of ${this.maxFrameBytes}`, {
        size: len,
        limit: this.maxFrameBytes,
      })
    }
    const at = this.#claim(4 + align4(len))
    return at < 0 ? -1 : at + 4
  }

  /**
   * Data-area offset of `need` contiguous free bytes at the write position,
   * or -1 when there is no room now. When they do not fit before the end,
   * the rest is marked as skipped and the write starts over at 0.
   */
  #claim(need: number): number {
    const idx = this.#tail & this.mask
    const toEnd = this.capacity - idx
    const free = this.#free(need <= toEnd ? need : toEnd + need)
    if (need <= toEnd) return need <= free ? idx : -1
    if (toEnd + need > free) return -1
    this.words[idx >>> 2] = kWrapMarker
    this.#tail = (this.#tail + toEnd) >>> 0
    this.stats.wraps++
    return 0
  }

  /**
   * Copy in a block that is already in ring format: `frames` entries of
   * [u32 length][bytes][pad to 4], `len` bytes in all (a multiple of 4, at
   * most maxFrameBytes + 4 so it fits on one side of any index). The caller
   * has checked that the entries tile the block exactly; the consumer then
   * sees `frames` ordinary frames. False when there is no room right now.
   */
  writeBlock(src: Uint8Array, off: number, len: number, frames: number): boolean {
    if ((len & 3) !== 0 || len < 4 || len > this.maxFrameBytes + 4) {
      throw new GrainClusterError('ERR_RING_FRAME_TOO_LARGE', `block of ${len} bytes is not a whole number of ring frames within ${this.maxFrameBytes + 4} bytes`, { size: len, limit: this.maxFrameBytes + 4 })
    }
    const at = this.#claim(len)
    if (at < 0) return false
    this.data.set(src.subarray(off, off + len), at)
    this.#tail = (this.#tail + len) >>> 0
    this.stats.frames += frames
    return true
  }

  /** Copy a whole frame in; false when the ring is full right now. */
  tryWrite(src: Uint8Array, off = 0, len = src.length - off): boolean {
    const at = this.reserve(len)
    if (at < 0) return false
    this.data.set(len === src.length && off === 0 ? src : src.subarray(off, off + len), at)
    this.commit(len)
    return true
  }

  /** True when the consumer has read every frame written so far (published or not). One atomic load. */
  consumerCaughtUp(): boolean {
    return Atomics.load(this.ctl, kHead) >>> 0 === this.#tail
  }

  /** Bytes committed but not yet published. */
  get unpublished(): boolean {
    return this.#tail !== (Atomics.load(this.ctl, kTail) >>> 0)
  }

  /**
   * Make committed frames visible. Wakes the consumer only if it announced it
   * is parked, so a busy consumer costs the producer one atomic load.
   */
  publish(): void {
    Atomics.store(this.ctl, kTail, this.#tail | 0)
    this.stats.publishes++
    // The consumer sets kConsumerWaiting before re-checking the tail; with
    // seq-cst atomics either it sees our tail or we see its flag.
    if (Atomics.load(this.ctl, kConsumerWaiting) === 1 && Atomics.compareExchange(this.ctl, kConsumerWaiting, 1, 0) === 1) {
      // Before the notify (which orders it for the woken consumer): when the data came, for its idle-gap measure.
      this.ctlF64[kNotifiedAtF64] = performance.timeOrigin + performance.now()
      Atomics.notify(this.ctl, kConsumerWaiting, 1)
      this.stats.notifies++
    }
  }

  /**
   * Resolve once the consumer has freed at least `bytes` (or has moved at
   * all). Never blocks the thread: it parks with Atomics.waitAsync.
   */
  async waitForSpace(bytes: number, timeoutMs = 1000): Promise<void> {
    // What reserve(bytes) needs: a frame that does not fit before the end of
    // the data area also uses up the skipped rest (see reserve()). Waiting for
    // less would resolve while reserve() still fails and send the caller into
    // a hot retry loop that starves its event loop.
    const frame = 4 + align4(bytes)
    const toEnd = this.capacity - (this.#tail & this.mask)
    const need = Math.min(frame <= toEnd ? frame : toEnd + frame, this.capacity)
    while (this.#free(need) < need) {
      Atomics.store(this.ctl, kProducerWaiting, 1)
      if (this.#free(need) >= need) break
      this.stats.fullEvents++
      const r = Atomics.waitAsync(this.ctl, kProducerWaiting, 1, timeoutMs)
      if (r.async) await r.value
      else return
      // Timed out or woken: loop re-checks free space; a timeout only bounds
      // how long a lost wake-up could stall us.
    }
    Atomics.store(this.ctl, kProducerWaiting, 0)
  }
}

export type FrameHandler = (data: Uint8Array, offset: number, length: number) => void

export class RingConsumer extends RingView {
  #head: number
  #wakeups = 0

  constructor(sab: SharedArrayBuffer) {
    super(sab)
    this.#head = Atomics.load(this.ctl, kHead) >>> 0
  }

  get wakeups(): number {
    return this.#wakeups
  }

  /** When the producer last woke this consumer from a park (absolute ms: timeOrigin + now()); 0 if never. */
  get notifiedAt(): number {
    return this.ctlF64[kNotifiedAtF64]!
  }

  /** True when no published frame is waiting. */
  isEmpty(): boolean {
    return (Atomics.load(this.ctl, kTail) >>> 0) === this.#head
  }

  /**
   * Hand up to `maxFrames` published frames to `onFrame`, in order, then
   * release their space; stop early once `maxBytes` of frames have gone
   * (a tell run carries hundreds of messages in one frame). The frame bytes
   * are only valid during the callback. Returns the number of frames
   * delivered.
   */
  drain(onFrame: FrameHandler, maxFrames = 4096, maxBytes = Number.MAX_SAFE_INTEGER): number {
    const tail = Atomics.load(this.ctl, kTail) >>> 0
    const start = this.#head
    let head = start
    let n = 0
    while (head !== tail && n < maxFrames && ((head - start) >>> 0) < maxBytes) {
      const idx = head & this.mask
      const len = this.words[idx >>> 2]!
      if (len === kWrapMarker) {
        head = (head + (this.capacity - idx)) >>> 0
        continue
      }
      if (len > this.maxFrameBytes) {
        // Only possible if someone else wrote into the buffer: fail loudly
        // rather than read garbage. The ring cannot be trusted any more.
        this.#head = head
        throw new GrainClusterError('ERR_FRAME_MALFORMED', `ring frame length ${len} exceeds the maximum ${this.maxFrameBytes}: ring corrupted`, {
          size: len,
        })
      }
      // Advance before the callback so a throwing handler skips only this frame.
      this.#head = head = (head + 4 + align4(len)) >>> 0
      n++
      onFrame(this.data, idx + 4, len)
    }
    this.#head = head
    this.#release()
    return n
  }

  #release(): void {
    Atomics.store(this.ctl, kHead, this.#head | 0)
    if (Atomics.load(this.ctl, kProducerWaiting) === 1 && Atomics.compareExchange(this.ctl, kProducerWaiting, 1, 0) === 1) {
      Atomics.notify(this.ctl, kProducerWaiting, 1)
    }
  }

  /**
   * Park until the producer publishes, without blocking the event loop.
   * Resolves at once if frames are already waiting. `timeoutMs` bounds how
   * long we park (Infinity by default; the producer's notify wakes us).
   */
  waitForData(timeoutMs = Number.POSITIVE_INFINITY): Promise<unknown> | undefined {
    Atomics.store(this.ctl, kConsumerWaiting, 1)
    // Re-check after announcing: a publish that raced with the store above
    // either sees the flag (and notifies) or is visible here.
    if (!this.isEmpty()) {
      Atomics.store(this.ctl, kConsumerWaiting, 0)
      return undefined
    }
    const r = Atomics.waitAsync(this.ctl, kConsumerWaiting, 1, timeoutMs)
    this.#wakeups++
    return r.async ? r.value : undefined
  }

  /** Withdraw a park announcement (used when shutting down). */
  cancelWait(): void {
    if (Atomics.compareExchange(this.ctl, kConsumerWaiting, 1, 0) === 1) Atomics.notify(this.ctl, kConsumerWaiting)
  }
}
