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
 * code reads it); only a ring's own two ends produce and accept runs.
 *
 * The writer builds the run as one ring-format entry ([u32 length][envelope]
 * [pad]) in a side buffer that stays in the producer's cache, and the sender
 * copies it into the ring in one block (see FrameSender.sendTell).
 */


import { writeUtf8 } from '../common/utf8.js'
import { EnvelopeWriter, FLAGS, type InternedString, type PayloadWriter } from './envelope.js'
import { putU32le, u32le } from './le.js'

/** Bytes of an entry before its key: u16 key length, u32 payload length. */
export const TELL_RUN_ENTRY_HEADER_BYTES = 6
/**
 * A run's buffer, ring length prefix included: fits the producer's L1
 * cache, and ~400 tells of a short key and a small payload.
 */
export const TELL_RUN_BYTES = 8 * 1024

const EMPTY = new Uint8Array(0)

export class TellRunWriter {
  /** The run as a ring-format entry: [u32 length][envelope][pad]. */
  readonly buf: Uint8Array
  /** Tells in the open run (0: none open). */
  entries = 0
  #kind: InternedString | null = null
  #messageType = 0
  #schemaVersion = 0
  /** Where the payload vector's u32 length sits, and where its bytes start. */
  #lengthAt = 0
  #entriesAt = 0
  #pos = 0
  readonly #header = new EnvelopeWriter()

  /** `bytes`: the buffer's size, at most the ring's largest block (its largest frame + 4). */
  constructor(bytes = TELL_RUN_BYTES) {
    this.buf = new Uint8Array(bytes)
  }

  /** True when the open run carries tells of this kind, method and version. */
  isFor(kind: InternedString, messageType: number, schemaVersion: number): boolean {
    return this.#kind === kind && this.#messageType === messageType && this.#schemaVersion === schemaVersion
  }

  /** Start a run (dropping an open one: finish() it first). False when the buffer cannot hold even the header. */
  open(kind: InternedString, messageType: number, schemaVersion: number): boolean {
    const w = this.#header.reset()
    w.kind = kind
    w.messageType = messageType
    w.schemaVersion = schemaVersion
    w.flags = FLAGS.TELL_RUN
    w.payloadBytes = EMPTY
    const n = w.writeInto(this.buf, 4, this.buf.length - 4)
    if (n < 0) return false
    this.#kind = kind
    this.#messageType = messageType
    this.#schemaVersion = schemaVersion
    // The payload vector is the envelope's last field: entries extend it.
    this.#lengthAt = 4 + n - 4
    this.#entriesAt = this.#pos = 4 + n
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
    const at = this.#pos
    const keyAt = at + TELL_RUN_ENTRY_HEADER_BYTES
    // Entries end 4-aligned once finished; keep room for the pad.
    const max = b.length - 3 - keyAt
    if (key.length > max) return false
    const kl = writeUtf8(key, b, keyAt, max)
    if (kl < 0) return false
    const pl = payload(b, keyAt + kl, max - kl)
    if (pl < 0) return false
    b[at] = kl
    b[at + 1] = kl >>> 8
    b[at + 2] = pl
    b[at + 3] = pl >>> 8
    b[at + 4] = pl >>> 16
    b[at + 5] = pl >>> 24
    this.#pos = keyAt + kl + pl
    this.entries++
    return true
  }

  /** Close the open run: its ring-format length in `buf` (a multiple of 4). Leaves no run open. */
  finish(): number {
    const b = this.buf
    putU32le(b, this.#lengthAt, this.#pos - this.#entriesAt)
    this.entries = 0
    this.#kind = null
    let end = this.#pos
    // Zero the pad (the bytes are a FlatBuffer, and end up in shared memory).
    while ((end & 3) !== 0) b[end++] = 0
    putU32le(b, 0, this.#pos - 4)
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
