/**
 * The frames queued for one connection until the transport's next flush:
 * small frames are copied, length-prefixed, into a shared slab (SlabPool);
 * a large frame is queued by reference behind its prefix. take() hands the
 * queue over as chunks (views of slabs, or large frames) for one writev.
 *
 * A chunk holds its slab from the moment it is cut, not from the moment it
 * is written: a slab can be retired (frames go to a newer one) while one of
 * its chunks still waits for the flush, and an earlier write of the same
 * slab completing meanwhile must not make it reusable. (Before this was so,
 * such a slab went back to the pool, the next frames were packed over the
 * waiting chunk, and the peer read other frames' bytes in its place.)
 */

import { FRAME_HEADER_BYTES, writeFrameHeader } from './frame-codec.js'
import type { Slab, SlabPool } from './slab-pool.js'
import { u32le } from '../../wire/le.js'

/** Frames this large or larger are queued by reference: treat such a frame as handed over. */
export const LARGE_FRAME_BYTES = 16 * 1024

/** Queued chunks and, in parallel, the slab each is a view of (undefined: a large frame by reference). */
export interface Chunks {
  chunks: Uint8Array[]
  slabs: Array<Slab | undefined>
}

/** The frames (copies, without their prefixes) that queued chunks carry, in order. */
export function framesOf(chunks: readonly Uint8Array[]): Uint8Array[] {
  const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  const out: Uint8Array[] = []
  for (let at = 0; at + FRAME_HEADER_BYTES <= all.length; ) {
    const n = u32le(all, at)
    at += FRAME_HEADER_BYTES
    out.push(new Uint8Array(all.subarray(at, at + n)))
    at += n
  }
  return out
}

export class OutboundQueue {
  #chunks: Uint8Array[] = []
  #chunkSlabs: Array<Slab | undefined> = []
  /** Bytes queued (prefixes included) since the last take(). */
  queuedBytes = 0
  #slab: Slab | undefined
  #slabPos = 0
  #slabStart = 0

  constructor(readonly pool: SlabPool) {}

  enqueue(frame: Uint8Array): void {
    const n = frame.length
    if (n >= LARGE_FRAME_BYTES) {
      const at = this.#reserve(FRAME_HEADER_BYTES)
      writeFrameHeader(this.#slab!.buf, at, n)
      this.#slabPos = at + FRAME_HEADER_BYTES
      this.#cut()
      this.#chunks.push(frame)
      this.#chunkSlabs.push(undefined)
    } else {
      const at = this.#reserve(FRAME_HEADER_BYTES + n)
      const slab = this.#slab!.buf
      writeFrameHeader(slab, at, n)
      slab.set(frame, at + FRAME_HEADER_BYTES)
      this.#slabPos = at + FRAME_HEADER_BYTES + n
    }
    this.queuedBytes += FRAME_HEADER_BYTES + n
  }

  /**
   * Everything queued, as chunks in order. Each slab entry holds its slab
   * once: pass the result to release() when the write completed or failed,
   * or when the chunks are dropped. The current slab's unused tail stays
   * for later frames.
   */
  take(): Chunks {
    this.#cut()
    const out = { chunks: this.#chunks, slabs: this.#chunkSlabs }
    this.#chunks = []
    this.#chunkSlabs = []
    this.queuedBytes = 0
    return out
  }

  /** Drop the holds of chunks taken with take(). */
  release(slabs: ReadonlyArray<Slab | undefined>): void {
    for (const s of slabs) if (s !== undefined) this.pool.release(s)
  }

  /** Position in the slab with room for `need` bytes (bytes already cut are never rewritten). */
  #reserve(need: number): number {
    if (this.#slab === undefined || this.#slab.buf.length - this.#slabPos < need) {
      this.#cut()
      if (this.#slab !== undefined) this.pool.retire(this.#slab)
      this.#slab = this.pool.take(need)
      this.#slabPos = 0
      this.#slabStart = 0
    }
    return this.#slabPos
  }

  #cut(): void {
    const s = this.#slab
    if (s !== undefined && this.#slabPos > this.#slabStart) {
      this.pool.hold(s)
      this.#chunks.push(s.buf.subarray(this.#slabStart, this.#slabPos))
      this.#chunkSlabs.push(s)
      this.#slabStart = this.#slabPos
    }
  }
}
