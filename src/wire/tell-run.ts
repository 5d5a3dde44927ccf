/**
 * Tell runs: consecutive tells of one kind and method to one worker ring,
 * carried as a single envelope instead of one envelope each.
 *
 * A tell's envelope is ~110 bytes, ~70 of them the FlatBuffers root, vtable
 * and table that are the same for every tell of a kind and method; the
 * producer's cost per frame grows with the bytes it writes into shared ring
 * memory (the consumer's core keeps taking those cache lines back), and the
 * consumer re-validates the same header per frame. A run pays for the header
 * once: its envelope has flags TELL_RUN, the kind, message type and schema
 * version of every entry, no key, and a payload vector of packed entries:
 *
 *   entry  [u16 key length][u32 payload length][key UTF-8][payload]   (little-endian, unaligned)
 *
 * so a tell costs ~20 bytes. It is still an ordinary Envelope (the generated
 * code reads it). Keyed runs come only from `node.tell`/`node.tellPid`: a
 * ring carries them, and so does a tell batch between nodes; a node refuses
 * one that comes as a frame of its own or relayed from a worker.
 *
 * A PID run (flags TELL_RUN | PID_RUN) carries a grain's `ctx.tellPid`s from
 * its worker to the main thread: each entry's key is the u16 index of a PID
 * the worker already defined (a PID_REQUEST carried its text), so the main
 * thread neither decodes an envelope nor looks a PID up by text per tell; it
 * appends each payload to the open run of the target node's tell batch.
 *
 * The writer builds the run as one ring-format entry ([u32 length][envelope]
 * [pad]) in a side buffer that stays in the producer's cache, and the sender
 * copies it into the ring in one block (see FrameSender.sendTell). Between
 * nodes a run is an entry of a tell batch (remote/tell-batches.ts); the
 * receiving node copies it into the ring as it came.
 */

import { GrainClusterError, reasonOf } from '../common/errors.js'
import { writeUtf8 } from '../common/utf8.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString, type PayloadWriter, peekRouting } from './envelope.js'
import { putU32le, u32le } from './le.js'

/** Bytes of an entry before its key: u16 key length, u32 payload length. */
export const TELL_RUN_ENTRY_HEADER_BYTES = 6
/** The key of a PID run's entry: the PID's u16 index. */
export const PID_INDEX_BYTES = 2
/**
 * A ring sender's run buffer, ring length prefix included: fits the
 * producer's L1 cache, and ~400 tells of a short key and a small payload.
 */
export const TELL_RUN_BYTES = 8 * 1024

const EMPTY = new Uint8Array(0)

/**
 * Builds one run at a time as a ring-format entry ([u32 length][envelope]
 * [pad]) in a region of a buffer: a sender's own side buffer, or the rest of
 * a tell batch. One writer per region; not shared between open runs.
 */
export class TellRunWriter {
  /** The buffer of the open run. */
  buf: Uint8Array = EMPTY
  /** Tells in the open run. A run opened but still empty is not open: nothing of it is kept. */
  entries = 0
  #kind: InternedString | null = null
  #messageType = 0
  #schemaVersion = 0
  /** A PID run (entries keyed by PID index): never shared with keyed tells. */
  #byPid = false
  /** Where the run's ring entry starts, where the payload vector's u32 length sits, where its bytes start, and where the next entry goes. */
  #start = 0
  #lengthAt = 0
  #entriesAt = 0
  #pos = 0
  /** The run may not pass this offset of `buf`. */
  #limit = 0
  readonly #header = new EnvelopeWriter()

  /** True when the open run carries tells of this kind, method and version (keyed, or by PID index). */
  isFor(kind: InternedString, messageType: number, schemaVersion: number, byPid = false): boolean {
    return this.entries > 0 && this.#kind === kind && this.#messageType === messageType && this.#schemaVersion === schemaVersion && this.#byPid === byPid
  }

  /**
   * Start a run at buf[at, limit) (`at` 4-aligned; an empty open run is
   * dropped). False when not even its header fits. `byPid`: a PID run
   * (entries by appendIndex).
   */
  open(buf: Uint8Array, at: number, limit: number, kind: InternedString, messageType: number, schemaVersion: number, partition = 0, byPid = false): boolean {
    const w = this.#header.reset()
    w.kind = kind
    w.messageType = messageType
    w.schemaVersion = schemaVersion
    w.partition = partition
    w.flags = byPid ? FLAGS.TELL_RUN | FLAGS.PID_RUN : FLAGS.TELL_RUN
    w.payloadBytes = EMPTY
    const n = limit - at - 4 > 0 ? w.writeInto(buf, at + 4, limit - at - 4) : -1
    if (n < 0) return false
    this.buf = buf
    this.#kind = kind
    this.#messageType = messageType
    this.#schemaVersion = schemaVersion
    this.#byPid = byPid
    this.#start = at
    this.#limit = limit
    // The payload vector is the envelope's last field: entries extend it.
    this.#lengthAt = at + 4 + n - 4
    this.#entriesAt = this.#pos = at + 4 + n
    this.entries = 0
    return true
  }

  /**
   * Append one tell to the open run. False, having taken nothing, when it
   * does not fit in what is left. A throwing payload writer (an unencodable
   * value) also leaves the run as it was.
   */
  append(key: string, payload: PayloadWriter): boolean {
    const b = this.buf
    const keyAt = this.#pos + TELL_RUN_ENTRY_HEADER_BYTES
    // Entries end 4-aligned once finished; keep room for the pad.
    const max = this.#limit - 3 - keyAt
    if (key.length > max) return false
    const kl = writeUtf8(key, b, keyAt, max)
    return kl >= 0 && this.#entry(kl, payload(b, keyAt + kl, max - kl))
  }

  /** Append one tell of a PID run: its key is the PID's u16 index. False, having taken nothing, as append(). */
  appendIndex(index: number, payload: PayloadWriter): boolean {
    const b = this.buf
    const keyAt = this.#pos + TELL_RUN_ENTRY_HEADER_BYTES
    const max = this.#limit - 3 - keyAt - PID_INDEX_BYTES
    if (max < 0) return false
    b[keyAt] = index
    b[keyAt + 1] = index >>> 8
    return this.#entry(PID_INDEX_BYTES, payload(b, keyAt + PID_INDEX_BYTES, max))
  }

  /** Complete the entry at #pos whose key (kl bytes) and payload (pl bytes, or -1: did not fit) are written. */
  #entry(kl: number, pl: number): boolean {
    if (pl < 0) return false
    const b = this.buf
    const at = this.#pos
    b[at] = kl
    b[at + 1] = kl >>> 8
    b[at + 2] = pl
    b[at + 3] = pl >>> 8
    b[at + 4] = pl >>> 16
    b[at + 5] = pl >>> 24
    this.#pos = at + TELL_RUN_ENTRY_HEADER_BYTES + kl + pl
    this.entries++
    return true
  }

  /** Close the open run (entries > 0): returns where its ring entry ends in `buf` (4-aligned). Leaves no run open. */
  finish(): number {
    const b = this.buf
    putU32le(b, this.#lengthAt, this.#pos - this.#entriesAt)
    this.entries = 0
    this.#kind = null
    let end = this.#pos
    // Zero the pad (the bytes are a FlatBuffer, and end up in shared memory).
    while (((end - this.#start) & 3) !== 0) b[end++] = 0
    putU32le(b, this.#start, this.#pos - this.#start - 4)
    return end
  }
}

/**
 * Bounds-checked walk over a run's entries (the payload of a TELL_RUN
 * envelope). After next() returns false, `error` says why it stopped early
 * (undefined at the clean end); entries before a framing error are good.
 */
export class TellRunEntries {
  keyOff = 0
  keyLen = 0
  payloadOff = 0
  payloadLen = 0
  error: string | undefined = undefined
  #buf: Uint8Array = EMPTY
  #start = 0
  #at = 0
  #end = 0

  reset(buf: Uint8Array, off: number, len: number): this {
    this.#buf = buf
    this.#start = this.#at = off
    this.#end = off + len
    this.error = undefined
    return this
  }

  next(): boolean {
    const b = this.#buf
    const at = this.#at
    const end = this.#end
    if (at >= end) return false
    if (at + TELL_RUN_ENTRY_HEADER_BYTES > end) return this.#stop(`truncated entry header at byte ${at - this.#start}`)
    const kl = b[at]! | (b[at + 1]! << 8)
    const pl = u32le(b, at + 2)
    const keyAt = at + TELL_RUN_ENTRY_HEADER_BYTES
    const next = keyAt + kl + pl
    if (kl === 0) return this.#stop(`entry at byte ${at - this.#start} has an empty key`)
    if (next > end) return this.#stop(`entry at byte ${at - this.#start} (key ${kl} bytes, payload ${pl} bytes) overruns the run's ${end - this.#start} bytes`)
    this.keyOff = keyAt
    this.keyLen = kl
    this.payloadOff = keyAt + kl
    this.payloadLen = pl
    this.#at = next
    return true
  }

  #stop(reason: string): false {
    this.error = reason
    this.#at = this.#end
    return false
  }
}

/**
 * Readers for runTells and forEachTell, made on first use: a reader builds a
 * 16,384-slot key cache (~300 KB), and every thread imports this module.
 */
let probe: EnvelopeReader | undefined
let expandReader: EnvelopeReader | undefined
const probeEntries = new TellRunEntries()

/**
 * The number of tells in the run envelope buf[off, off + len), walking its
 * entries (a receiving node weighs a run by its tells in its ring's
 * overflow bound), or the reason it is not a well-framed run.
 */
export function runTells(buf: Uint8Array, off: number, len: number): number | string {
  let r: EnvelopeReader
  try {
    r = (probe ??= new EnvelopeReader()).reset(buf, off, len)
  } catch (e) {
    return reasonOf(e)
  }
  if ((r.flags & FLAGS.TELL_RUN) === 0) return 'not a tell run'
  const it = probeEntries.reset(r.buf, r.payloadOff, r.payloadLen)
  let n = 0
  while (it.next()) n++
  if (it.error !== undefined) return it.error
  return n === 0 ? 'an empty tell run' : n
}

/**
 * Each tell of an envelope as an envelope of its own: a plain envelope as
 * it is (a view), a run as one freshly encoded envelope per entry, in order
 * (for the paths that handle tells one by one: a deferred queue, a node
 * that redirects or refuses). Returns the reason a run's framing broke
 * (the entries before it were handed over), else undefined. Throws
 * ERR_FRAME_MALFORMED for bytes that are not an envelope.
 *
 * `lead`: where the caller will place the envelope in its own buffer, mod 4
 * (1 behind a transport frame's type byte). The writer pads strings to
 * absolute multiples of 4, so a run's tell then comes out byte for byte as
 * the same tell encoded there directly (a deferred queue bounded in bytes
 * sees the same sizes either way). The bytes are valid only during `each`.
 */
export function forEachTell(buf: Uint8Array, off: number, len: number, each: (envelope: Uint8Array) => void, lead = 0): string | undefined {
  // A plain envelope (the common case) is handed over as it is, without building a reader.
  const routing = peekRouting(buf, off, len)
  if (routing >= 0 && (routing % 65_536 & FLAGS.TELL_RUN) === 0) {
    each(buf.subarray(off, off + len))
    return undefined
  }
  // One reader for all runs, unless `each` expands another run meanwhile.
  const nested = expanding++ > 0
  try {
    return expand((nested ? new EnvelopeReader() : (expandReader ??= new EnvelopeReader())).reset(buf, off, len), buf, off, len, each, lead)
  } finally {
    expanding--
  }
}

let expanding = 0

function expand(r: EnvelopeReader, buf: Uint8Array, off: number, len: number, each: (envelope: Uint8Array) => void, lead: number): string | undefined {
  if ((r.flags & FLAGS.TELL_RUN) === 0) {
    each(buf.subarray(off, off + len))
    return undefined
  }
  if ((r.flags & (FLAGS.ASK | FLAGS.REPLY | FLAGS.CONTROL)) !== 0) throw new GrainClusterError('ERR_FRAME_MALFORMED', `a tell run has flags ${r.flags}: runs carry tells only`)
  // Its keys are indexes into a worker's PID table, meaningless anywhere else.
  if ((r.flags & FLAGS.PID_RUN) !== 0) throw new GrainClusterError('ERR_FRAME_MALFORMED', 'a PID run goes from a worker to its main thread only')
  const w = new EnvelopeWriter()
  const kind = new InternedString(r.kind())
  const it = new TellRunEntries().reset(r.buf, r.payloadOff, r.payloadLen)
  let out = new Uint8Array(1024)
  while (it.next()) {
    w.reset()
    w.kind = kind
    w.key = r.keyAt(it.keyOff, it.keyLen)
    w.partition = r.partition
    w.messageType = r.messageType
    w.schemaVersion = r.schemaVersion
    w.replyTo = r.replyTo
    w.payloadBytes = r.buf.subarray(it.payloadOff, it.payloadOff + it.payloadLen)
    let n = w.writeInto(out, lead, out.length - lead)
    while (n < 0) {
      out = new Uint8Array(out.length * 2)
      n = w.writeInto(out, lead, out.length - lead)
    }
    each(out.subarray(lead, lead + n))
  }
  return it.error
}
