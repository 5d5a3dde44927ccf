/**
 * Tell batches: remote tells, grouped per target partition, carried in one
 * transport frame per group, so the receiving main thread copies a whole
 * group into the owning worker's ring at once instead of handling each
 * envelope (length prefix, listener, validation, relay, copy) on its own.
 *
 *   frame  [0x04][0][0][0][u32 partition][entry]...
 *   entry  [u32 length][envelope bytes][pad to 4]   (the SPSC ring's frame format)
 *
 * An entry is a tell's envelope, or a tell run (wire/tell-run.ts): the
 * node API's tells of one kind and method to one partition share one
 * envelope, ~20 bytes a tell. The sender encodes each envelope or run
 * entry straight into its group's buffer (no scratch copy); groups are flushed once per event-loop turn, when a
 * group is full, and before anything else is sent on the same association
 * (so an ask never overtakes the tells before it: per-PID order holds,
 * because a PID always maps to one partition, hence one group).
 *
 * Only tells travel this way: asks need their routing patched per envelope
 * on the receiving side, and keep their own frames.
 */

import { GrainClusterError } from '../common/errors.js'
import { closeRingEntry, ringEntries } from '../runtime/ring/spsc-ring.js'
import { FLAGS, type InternedString, type PayloadWriter, peekRouting } from '../wire/envelope.js'
import { runTells, TellRunWriter } from '../wire/tell-run.js'
import { putU32le, u32le } from '../wire/le.js'

/** First byte of a transport frame that carries a tell batch. */
export const FRAME_TELL_BATCH = 0x04
/** Bytes before the first entry: frame type, padding, partition. */
export const TELL_BATCH_HEADER_BYTES = 8
/**
 * A batch buffer's size. Below the transport's large-frame threshold
 * (16 KiB), so the transport copies a flushed batch into its write slab and
 * the buffer is reused at once; ~70 tells of a typical 110-byte envelope.
 */
export const TELL_BATCH_BYTES = 15 * 1024
/**
 * Most tells in one batch. Runs pack ~20 bytes a tell, so bytes alone would
 * let a batch carry ~750: the receiver weighs its overflow bound and its
 * inbound flow control in tells, and one frame it has read must fit in the
 * room left above the high-water mark (as batches of ~120-byte envelopes did).
 */
export const TELL_BATCH_MAX_TELLS = 128

/** Encodes one envelope at buf[off, off + max); returns its length, or -1 when it does not fit. */
export type EnvelopeWrite = (buf: Uint8Array, off: number, max: number) => number

/** A group's TELL_BATCH_BYTES of space: `slab[base, base + TELL_BATCH_BYTES)`. */
class Space {
  /** The run of tells of one kind and method open in this space (appendTell); kept with the space when it is recycled. */
  run: TellRunWriter | null = null
  constructor(
    /** The whole slab, one Uint8Array shared by every space carved from it (see #buffer). */
    readonly slab: Uint8Array,
    readonly base: number,
  ) {}
}

class Group {
  /** End of the closed entries; an open run starts here. */
  pos = TELL_BATCH_HEADER_BYTES
  /** Tells in the group, its open run's included. */
  count = 0
  constructor(
    readonly partition: number,
    readonly space: Space,
    /** Its authority's open groups. */
    readonly pending: Pending,
  ) {}
}

/** Open groups of one remote authority, by partition. */
class Pending {
  readonly groups = new Map<number, Group>()
}

export class TellBatches {
  readonly #byAuthority = new Map<string, Pending>()
  /** Spare spaces of flushed groups; bounded, so a burst over many partitions does not pin memory. */
  readonly #spare: Space[] = []
  static readonly maxSpare = 64
  /**
   * Group spaces are carved out of shared slabs and written through the
   * slab's one Uint8Array: the envelope writer recognises that array and
   * reuses its DataView, where an array per group would cost it the
   * `.buffer`/`.byteOffset` getters at every switch between partitions
   * (remote tells to many keys switch at nearly every message).
   */
  #slab = new Uint8Array(0)
  #slabUsed = 0

  #buffer(): Space {
    const spare = this.#spare.pop()
    if (spare !== undefined) return spare
    if (this.#slabUsed + TELL_BATCH_BYTES > this.#slab.length) {
      this.#slab = new Uint8Array(TELL_BATCH_BYTES * TellBatches.maxSpare)
      this.#slabUsed = 0
    }
    const space = new Space(this.#slab, this.#slabUsed)
    this.#slabUsed += TELL_BATCH_BYTES
    return space
  }

  /** True when `authority` has tells waiting in open groups. */
  has(authority: string): boolean {
    const p = this.#byAuthority.get(authority)
    return p !== undefined && p.groups.size > 0
  }

  /**
   * Encode a tell into the open group of (authority, partition). Returns
   * false when the envelope is too large for a group even on its own (the
   * caller sends it as a frame of its own). `flushFull` receives a group
   * that had no room left, before the envelope goes into a fresh one.
   */
  append(authority: string, partition: number, write: EnvelopeWrite, flushFull: (frame: Uint8Array) => void): boolean {
    const g = this.#groupFor(authority, partition, flushFull)
    for (let attempt = 0; ; attempt++) {
      if (this.#putEnvelope(g, write)) return this.#took(g)
      if (!this.#makeRoom(g, attempt, flushFull)) return false
    }
  }

  /**
   * A tell into the open run of (authority, partition) for this kind,
   * method and version, opening one at the end of the group (runs:
   * wire/tell-run.ts; ~20 bytes a tell instead of an envelope). Returns
   * false when it is too large for a group even on its own (the caller
   * sends it as an envelope frame). `flushFull` as for append().
   */
  appendTell(
    authority: string,
    partition: number,
    kind: InternedString,
    messageType: number,
    schemaVersion: number,
    key: string,
    payload: PayloadWriter,
    flushFull: (frame: Uint8Array) => void,
  ): boolean {
    const g = this.#groupFor(authority, partition, flushFull)
    for (let attempt = 0; ; attempt++) {
      if (this.#putTell(g, kind, messageType, schemaVersion, key, payload)) return this.#took(g)
      if (!this.#makeRoom(g, attempt, flushFull)) return false
    }
  }

  /** The open group of (authority, partition), handed over first if it holds TELL_BATCH_MAX_TELLS. */
  #groupFor(authority: string, partition: number, flushFull: (frame: Uint8Array) => void): Group {
    let p = this.#byAuthority.get(authority)
    if (p === undefined) this.#byAuthority.set(authority, (p = new Pending()))
    let g = p.groups.get(partition)
    if (g === undefined) p.groups.set(partition, (g = new Group(partition, this.#buffer(), p)))
    if (g.count >= TELL_BATCH_MAX_TELLS) this.#restart(g, flushFull)
    return g
  }

  #took(g: Group): true {
    g.count++
    return true
  }

  /**
   * A tell did not fit: hand over a group that holds tells and try again in
   * it, emptied (true). False when even an empty group was too small, or
   * this was that second try (an empty group is released).
   */
  #makeRoom(g: Group, attempt: number, flushFull: (frame: Uint8Array) => void): boolean {
    if (g.count > 0 && attempt === 0) {
      this.#restart(g, flushFull)
      return true
    }
    if (g.count === 0) this.#release(g)
    return false
  }

  /** An envelope as the group's next entry (closing its open run first). */
  #putEnvelope(g: Group, write: EnvelopeWrite): boolean {
    closeRun(g)
    const { slab, base } = g.space
    const room = TELL_BATCH_BYTES - g.pos - 4
    const n = room > 0 ? write(slab, base + g.pos + 4, room) : -1
    if (n < 0) return false
    g.pos = closeRingEntry(slab, base + g.pos, n) - base
    return true
  }

  /** A tell into the group's open run for its kind, method and version, or a run opened at the group's end. */
  #putTell(g: Group, kind: InternedString, messageType: number, schemaVersion: number, key: string, payload: PayloadWriter): boolean {
    const space = g.space
    let r = space.run
    if (r === null) r = space.run = new TellRunWriter()
    else if (!r.isFor(kind, messageType, schemaVersion)) closeRun(g)
    if (r.entries === 0 && !r.open(space.slab, space.base + g.pos, space.base + TELL_BATCH_BYTES, kind, messageType, schemaVersion, g.partition)) return false
    return r.append(key, payload)
  }

  /** Send what the group holds and start it over in the same buffer. */
  #restart(g: Group, flushFull: (frame: Uint8Array) => void): void {
    flushFull(this.#seal(g))
    g.pos = TELL_BATCH_HEADER_BYTES
    g.count = 0
  }

  /**
   * Hand every open group of `authority` to `send` as a transport frame (a
   * view of the group's buffer, valid only during the call), then recycle
   * the buffers.
   */
  flush(authority: string, send: (frame: Uint8Array) => void): void {
    const p = this.#byAuthority.get(authority)
    if (p === undefined) return
    this.#byAuthority.delete(authority)
    for (const g of p.groups.values()) {
      if (g.count > 0) send(this.#seal(g))
      if (this.#spare.length < TellBatches.maxSpare) this.#spare.push(g.space)
    }
  }

  /** Authorities with open groups. */
  authorities(): string[] {
    return [...this.#byAuthority.keys()]
  }

  #release(g: Group): void {
    g.pending.groups.delete(g.partition)
    if (this.#spare.length < TellBatches.maxSpare) this.#spare.push(g.space)
  }

  #seal(g: Group): Uint8Array {
    closeRun(g)
    const { slab: b, base } = g.space
    b[base] = FRAME_TELL_BATCH
    b[base + 1] = 0
    b[base + 2] = 0
    b[base + 3] = 0
    putU32le(b, base + 4, g.partition)
    return b.subarray(base, base + g.pos)
  }
}

/** Close the group's open run (if any) into its closed entries. */
function closeRun(g: Group): void {
  const r = g.space.run
  if (r !== null && r.entries > 0) g.pos = r.finish() - g.space.base
}

/** A received tell batch whose entries tile the frame and are all tells of its partition. */
export interface TellBatch {
  partition: number
  /** Offset of the first entry in the frame, and the entries' total length. */
  off: number
  len: number
  frames: number
}

const tellBatchError = (reason: string): GrainClusterError => new GrainClusterError('ERR_FRAME_MALFORMED', `tell batch: ${reason}`)

/**
 * Check a received batch frame before its entries are copied into a ring
 * as a block: the entries must tile the frame exactly, each no longer than
 * `maxEntryBytes` (the ring's frame limit), and each must be a plain tell
 * or a keyed tell run (no ask, reply, control or PID-run flag) of the
 * batch's partition.
 * Only the routing header of each envelope is read, and the framing of a
 * run's entries (to count them): the worker validates the rest. `frames`
 * counts tells.
 * Returns the batch, or the typed error saying what is wrong (the caller
 * then handles the well-framed entries one by one: batchEntries()).
 */
export function checkTellBatch(frame: Uint8Array, maxEntryBytes: number): TellBatch | GrainClusterError {
  const n = frame.length
  if (n < TELL_BATCH_HEADER_BYTES + 4 || frame[0] !== FRAME_TELL_BATCH) return tellBatchError(`frame of ${n} bytes is not a tell batch`)
  const partition = u32le(frame, 4)
  let at = TELL_BATCH_HEADER_BYTES
  let frames = 0
  while (at < n) {
    if (at + 4 > n) return tellBatchError(`truncated entry header at byte ${at}`)
    const len = u32le(frame, at)
    const next = at + 4 + ((len + 3) & ~3)
    if (len === 0 || len > maxEntryBytes || next > n) return tellBatchError(`entry of ${len} bytes at byte ${at} does not fit (frame ${n} bytes, entry limit ${maxEntryBytes})`)
    const r = peekRouting(frame, at + 4, len)
    if (r < 0) return tellBatchError(`entry at byte ${at} has no readable routing header`)
    const flags = r % 65536
    // A PID run's keys index a worker's PID table on its own node: never a peer's to send.
    if ((flags & (FLAGS.ASK | FLAGS.REPLY | FLAGS.CONTROL | FLAGS.PID_RUN)) !== 0) return tellBatchError(`entry at byte ${at} is not a tell (flags ${flags})`)
    if ((r - flags) / 65536 !== partition) return tellBatchError(`entry at byte ${at} is for partition ${(r - flags) / 65536}, the batch for ${partition}`)
    if ((flags & FLAGS.TELL_RUN) === 0) frames++
    else {
      // A run weighs its tells in the receiving ring's overflow bound.
      const tells = runTells(frame, at + 4, len)
      if (typeof tells === 'string') return tellBatchError(`run at byte ${at}: ${tells}`)
      frames += tells
    }
    at = next
  }
  return { partition, off: TELL_BATCH_HEADER_BYTES, len: n - TELL_BATCH_HEADER_BYTES, frames }
}

/** The well-framed entries of a batch frame, as [offset, length], up to the first framing error. */
export function batchEntries(frame: Uint8Array): Array<[number, number]> {
  return ringEntries(frame, TELL_BATCH_HEADER_BYTES, frame.length)
}
