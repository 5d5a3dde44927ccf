/**
 * Hand-written writer and bounds-checked reader for the FlatBuffers
 * `Envelope` table of schemas/envelope.fbs.
 *
 * Why by hand: the generic flatbuffers Builder allocates per string and per
 * call (~1 M envelopes/s); writing the fixed layout below straight into ring
 * memory is several times faster, and the bytes are still a valid FlatBuffer
 * that the generated code (src/wire/generated) reads — the envelope tests
 * check both directions. The JS runtime has no verifier, so the reader
 * checks every offset and length against the frame before using it.
 *
 * Layout the writer produces (offsets from the frame start, little-endian):
 *
 *    0  u32  root offset = 32
 *    4  vtable: u16 vtsize=26, u16 tblsize=44, then one u16 per field id
 *       0..10, then 2 bytes of padding (0)
 *   32  table:  i32 soffset=28 (vtable = table - 28)
 *       +4 kind(uoff) +8 key(uoff) +12 partition +16 sender(uoff)
 *       +20 correlation_id +24 message_type +28 payload(uoff) +32 reply_to
 *       +36 schema_version(u16) +38 flags(u16) +40 timeout_ms
 *   76  strings kind, key, sender ([u32 len][bytes][0] padded to 4), then
 *       payload ([u32 len][bytes]) — absent fields get vtable entry 0.
 *
 * Envelopes in the layout before timeout_ms (vtable of 10 fields, 68 fixed
 * bytes) still read, through the general path, with timeoutMs 0.
 */

import { GrainClusterError } from '../common/errors.js'
import { u16le, u32le } from './le.js'
import { readUtf8, Utf8StringCache, writeUtf8 } from '../common/utf8.js'

export const FLAGS = {
  ASK: 1,
  REPLY: 2,
  ERROR: 4,
  CONTROL: 8,
  /** Many tells of one kind and method in one envelope (wire/tell-run.ts); in a node's rings and in tell batches between nodes. */
  TELL_RUN: 16,
  /**
   * With TELL_RUN, worker → main rings only: a grain's tells by PID. Each
   * entry's key is the u16 little-endian index of a PID the worker defined
   * with an earlier PID_REQUEST (wire/control.ts), not a grain key.
   */
  PID_RUN: 32,
} as const
export type Flags = (typeof FLAGS)[keyof typeof FLAGS]

/** Field ids of schemas/envelope.fbs, in vtable order. */
const F_KIND = 0
const F_KEY = 1
const F_PARTITION = 2
const F_SENDER = 3
const F_CORRELATION = 4
const F_MESSAGE_TYPE = 5
const F_SCHEMA_VERSION = 6
const F_FLAGS = 7
const F_PAYLOAD = 8
const F_REPLY_TO = 9
const F_TIMEOUT = 10
const FIELD_COUNT = 11

const VTABLE_AT = 4
const VTABLE_BYTES = 4 + 2 * FIELD_COUNT // 26
/** The table's soffset is an i32: 4-aligned, after 2 bytes of padding. */
const TABLE_AT = (VTABLE_AT + VTABLE_BYTES + 3) & ~3 // 32
const TABLE_BYTES = 44
/** Fixed bytes before the variable part. */
export const ENVELOPE_FIXED_BYTES = TABLE_AT + TABLE_BYTES // 76

// Field slot positions inside the table (relative to table start).
const S_KIND = 4
const S_KEY = 8
const S_PARTITION = 12
const S_SENDER = 16
const S_CORRELATION = 20
const S_MESSAGE_TYPE = 24
const S_PAYLOAD = 28
const S_REPLY_TO = 32
const S_SCHEMA_VERSION = 36
const S_FLAGS = 38
const S_TIMEOUT = 40


/**
 * Writes the payload at buf[off, off+max) and returns its length, or -1 if
 * it does not fit. Throwing aborts the envelope (e.g. an unencodable value).
 */
export type PayloadWriter = (buf: Uint8Array, off: number, max: number) => number

/**
 * DataView loads/stores compile to single little-endian accesses; assembling
 * bytes with shifts costs several times more on the per-message path. One
 * view per buffer, reused while the buffer stays the same (the ring's data
 * area always does).
 */
class ViewCache {
  view: DataView = new DataView(new ArrayBuffer(0))
  /** byteOffset of the current Uint8Array within `view`'s buffer. */
  delta = 0
  #buffer: ArrayBufferLike | null = null
  #array: Uint8Array | null = null
  of(buf: Uint8Array): DataView {
    // The ring's data array is the same object frame after frame: checking
    // its identity first skips the `.buffer` and `.byteOffset` getters, which
    // V8 does not inline and which cost more than the envelope's stores.
    if (buf === this.#array) return this.view
    // One view per underlying buffer: transport frames and ring slices are
    // different Uint8Arrays over the same memory, and a DataView per frame
    // would be an allocation per message.
    const b = buf.buffer
    if (b !== this.#buffer) {
      this.#buffer = b
      this.view = new DataView(b)
    }
    this.#array = buf
    this.delta = buf.byteOffset
    return this.view
  }
}

/** Pre-encoded kind bytes (kinds are few; encode them once). */
export class InternedString {
  readonly bytes: Uint8Array
  /**
   * `bytes` as little-endian 32-bit words (the tail word zero-padded), for
   * word-wise stores and compares. Signed: a Uint32Array element above 2^31
   * would come out as a float and go back in through a conversion.
   */
  readonly words: Int32Array
  constructor(readonly text: string) {
    this.bytes = new TextEncoder().encode(text)
    const padded = new Uint8Array((this.bytes.length + 3) & ~3)
    padded.set(this.bytes)
    this.words = new Int32Array(padded.length >>> 2)
    const dv = new DataView(padded.buffer)
    for (let i = 0; i < this.words.length; i++) this.words[i] = dv.getInt32(4 * i, true)
  }
}

/**
 * Reusable envelope writer: set the fields, then writeInto(). One instance
 * per thread; nothing here allocates per message.
 */
export class EnvelopeWriter {
  kind: InternedString | null = null
  key: string | null = null
  sender: string | null = null
  partition = 0
  correlationId = 0
  messageType = 0
  schemaVersion = 0
  flags = 0
  replyTo = 0
  /** Asks: the caller's timeout in ms (schemas/envelope.fbs timeout_ms); 0 when not said. */
  timeoutMs = 0
  /** Pre-encoded payload bytes; if null, `payloadWriter` is used. */
  payloadBytes: Uint8Array | null = null
  payloadWriter: PayloadWriter | null = null

  reset(): this {
    this.kind = null
    this.key = null
    this.sender = null
    this.partition = 0
    this.correlationId = 0
    this.messageType = 0
    this.schemaVersion = 0
    this.flags = 0
    this.replyTo = 0
    this.timeoutMs = 0
    this.payloadBytes = null
    this.payloadWriter = null
    return this
  }

  /**
   * Encode into buf[off, off+room). Returns the envelope length, or -1 if it
   * does not fit in `room`.
   */
  writeInto(buf: Uint8Array, off: number, room: number): number {
    if (room < ENVELOPE_FIXED_BYTES + 4) return -1
    const dv = this.#views.of(buf)
    const d = this.#views.delta
    const end = off + room
    const t = off + TABLE_AT
    let p = off + ENVELOPE_FIXED_BYTES

    // vtable header and the table's scalar slots
    dv.setUint32(d + off, TABLE_AT, true)
    const vt = off + VTABLE_AT
    // Adjacent u16 pairs go out as one u32 store (this runs per message).
    dv.setUint32(d + vt, VTABLE_BYTES | (TABLE_BYTES << 16), true)
    dv.setUint16(d + vt + 4 + 2 * F_PARTITION, S_PARTITION, true)
    dv.setUint32(d + vt + 4 + 2 * F_CORRELATION, S_CORRELATION | (S_MESSAGE_TYPE << 16), true) // + F_MESSAGE_TYPE
    dv.setUint32(d + vt + 4 + 2 * F_SCHEMA_VERSION, S_SCHEMA_VERSION | (S_FLAGS << 16), true) // + F_FLAGS
    dv.setUint32(d + vt + 4 + 2 * F_REPLY_TO, S_REPLY_TO | (S_TIMEOUT << 16), true) // + F_TIMEOUT
    dv.setUint16(d + vt + VTABLE_BYTES, 0, true) // padding up to the table
    dv.setUint32(d + t, TABLE_AT - VTABLE_AT, true) // soffset: where the vtable sits before the table
    dv.setUint32(d + t + S_PARTITION, this.partition, true)
    dv.setUint32(d + t + S_CORRELATION, this.correlationId, true)
    dv.setUint32(d + t + S_MESSAGE_TYPE, this.messageType, true)
    dv.setUint32(d + t + S_REPLY_TO, this.replyTo, true)
    dv.setUint32(d + t + S_TIMEOUT, this.timeoutMs, true)
    dv.setUint32(d + t + S_SCHEMA_VERSION, (this.schemaVersion & 0xffff) | ((this.flags & 0xffff) << 16), true) // + flags

    // kind (interned bytes)
    const kind = this.kind
    if (kind !== null) {
      const kb = kind.bytes
      // Room for the padded string: the word stores below fill up to it.
      if (p + 4 + ((kb.length + 1 + 3) & ~3) > end) return -1
      dv.setUint16(d + vt + 4 + 2 * F_KIND, S_KIND, true)
      dv.setUint32(d + t + S_KIND, p - (t + S_KIND), true)
      dv.setUint32(d + p, kb.length, true)
      // Word stores (the last word zero-padded): kinds are a dozen bytes or
      // so, where TypedArray.prototype.set's call overhead dominates and a
      // byte loop costs three times the stores.
      const words = kind.words
      for (let i = 0; i < words.length; i++) dv.setInt32(d + p + 4 + 4 * i, words[i]!, true)
      buf[p + 4 + kb.length] = 0 // the terminator, when the length is a multiple of 4
      p = (p + 4 + kb.length + 1 + 3) & ~3
    } else dv.setUint16(d + vt + 4 + 2 * F_KIND, 0, true)

    // key and sender (strings written in place)
    p = this.#string(buf, dv, d, vt, t, p, end, F_KEY, S_KEY, this.key)
    if (p < 0) return -1
    p = this.#string(buf, dv, d, vt, t, p, end, F_SENDER, S_SENDER, this.sender)
    if (p < 0) return -1

    // payload vector
    if (p + 4 > end) return -1
    let n: number
    const pb = this.payloadBytes
    if (pb !== null) {
      if (p + 4 + pb.length > end) return -1
      buf.set(pb, p + 4)
      n = pb.length
    } else if (this.payloadWriter !== null) {
      n = this.payloadWriter(buf, p + 4, end - p - 4)
      if (n < 0) return -1
    } else n = 0
    dv.setUint16(d + vt + 4 + 2 * F_PAYLOAD, S_PAYLOAD, true)
    dv.setUint32(d + t + S_PAYLOAD, p - (t + S_PAYLOAD), true)
    dv.setUint32(d + p, n, true)
    return p + 4 + n - off
  }

  #string(buf: Uint8Array, dv: DataView, d: number, vt: number, t: number, p: number, end: number, field: number, slot: number, s: string | null): number {
    if (s === null) {
      dv.setUint16(d + vt + 4 + 2 * field, 0, true)
      return p
    }
    const n = writeUtf8(s, buf, p + 4, end - p - 5)
    if (n < 0) return -1
    dv.setUint16(d + vt + 4 + 2 * field, slot, true)
    dv.setUint32(d + t + slot, p - (t + slot), true)
    dv.setUint32(d + p, n, true)
    buf[p + 4 + n] = 0
    return (p + 4 + n + 1 + 3) & ~3
  }

  readonly #views = new ViewCache()

  /** Encode into a fresh, exactly sized buffer (for slow paths and tests). */
  toBytes(initialRoom = 256, maxRoom = 64 << 20): Uint8Array {
    for (let room = initialRoom; room <= maxRoom; room *= 2) {
      const buf = new Uint8Array(room)
      const n = this.writeInto(buf, 0, room)
      if (n >= 0) return buf.slice(0, n)
    }
    throw new GrainClusterError('ERR_GRAIN_PAYLOAD_TOO_LARGE', `envelope does not fit in ${maxRoom} bytes`, { limit: maxRoom })
  }
}

function malformed(reason: string): GrainClusterError {
  return new GrainClusterError('ERR_FRAME_MALFORMED', `malformed envelope: ${reason}`)
}

/**
 * Zero-copy, bounds-checked view of one envelope. reset() validates the
 * structure and caches field positions; strings decode on demand. Reuse one
 * reader per thread: the view is only valid while the frame bytes are.
 */
export class EnvelopeReader {
  buf: Uint8Array = new Uint8Array(0)
  start = 0
  length = 0
  partition = 0
  correlationId = 0
  messageType = 0
  schemaVersion = 0
  flags = 0
  replyTo = 0
  /** Asks: the caller's timeout in ms as of sending; 0 when not said (or an envelope from before the field). */
  timeoutMs = 0

  /** The caller's timeout for a relay to wait, or undefined when not said (the relaying node's default applies). */
  get callerTimeoutMs(): number | undefined {
    return this.timeoutMs === 0 ? undefined : this.timeoutMs
  }
  /** Absolute offsets and lengths into `buf`; offset -1 when absent. */
  kindOff = -1
  kindLen = 0
  keyOff = -1
  keyLen = 0
  senderOff = -1
  senderLen = 0
  payloadOff = -1
  payloadLen = 0

  readonly #views = new ViewCache()

  /** Validate and index buf[off, off+len). Throws ERR_FRAME_MALFORMED. */
  reset(buf: Uint8Array, off: number, len: number): this {
    const dv = this.#views.of(buf)
    const d = this.#views.delta
    this.buf = buf
    this.start = off
    this.length = len
    if (len < 12) throw malformed(`frame of ${len} bytes is shorter than a FlatBuffers header`)
    if (off < 0 || off + len > buf.length) throw malformed('frame lies outside its buffer')
    const end = off + len
    const root = dv.getUint32(d + off, true)
    const t = off + root
    if (root < 4 || (root & 3) !== 0 || t + 4 > end) throw malformed(`root offset ${root} out of range`)
    const so = dv.getUint32(d + t, true) | 0
    const vt = t - so
    if (vt < off || vt + 4 > end || (vt & 1) !== (off & 1)) throw malformed(`vtable offset ${so} out of range`)
    const vtSize = dv.getUint16(d + vt, true)
    const tblSize = dv.getUint16(d + vt + 2, true)
    if (vtSize < 4 || (vtSize & 1) !== 0 || vt + vtSize > end) throw malformed(`vtable size ${vtSize} out of range`)
    if (tblSize < 4 || t + tblSize > end) throw malformed(`table size ${tblSize} out of range`)
    this.#t = t
    this.#vt = vt
    this.#end = end
    this.#tblSize = tblSize
    this.#nFields = (vtSize - 4) >>> 1
    const f = d + vt + 4 // vtable entries, one u16 per field id
    if (
      vtSize === VTABLE_BYTES &&
      tblSize === TABLE_BYTES &&
      writerScalarSlots(dv, f)
    ) {
      // Strings and vectors: in their slot or absent (0); anything else takes the general path.
      const kindAt = dv.getUint16(f + 2 * F_KIND, true)
      const keyAt = dv.getUint16(f + 2 * F_KEY, true)
      const senderAt = dv.getUint16(f + 2 * F_SENDER, true)
      const payloadAt = dv.getUint16(f + 2 * F_PAYLOAD, true)
      if ((kindAt === 0 || kindAt === S_KIND) && (keyAt === 0 || keyAt === S_KEY) && (senderAt === 0 || senderAt === S_SENDER) && (payloadAt === 0 || payloadAt === S_PAYLOAD)) {
        // Fast path: the layout EnvelopeWriter produces. Every slot lies
        // inside the 44-byte table, so only the vector targets need checking.
        // The vtable entries above are read once and serve both the check
        // and the presence of each vector (this runs for every frame).
        this.partition = dv.getUint32(d + t + S_PARTITION, true)
        this.correlationId = dv.getUint32(d + t + S_CORRELATION, true)
        this.messageType = dv.getUint32(d + t + S_MESSAGE_TYPE, true)
        this.replyTo = dv.getUint32(d + t + S_REPLY_TO, true)
        this.timeoutMs = dv.getUint32(d + t + S_TIMEOUT, true)
        this.schemaVersion = dv.getUint16(d + t + S_SCHEMA_VERSION, true)
        this.flags = dv.getUint16(d + t + S_FLAGS, true)
        this.kindOff = kindAt === 0 ? -1 : this.#vecAt(dv, d, t + S_KIND, 'kind')
        this.kindLen = kindAt === 0 ? 0 : this.#vecLen
        this.keyOff = keyAt === 0 ? -1 : this.#vecAt(dv, d, t + S_KEY, 'key')
        this.keyLen = keyAt === 0 ? 0 : this.#vecLen
        this.senderOff = senderAt === 0 ? -1 : this.#vecAt(dv, d, t + S_SENDER, 'sender')
        this.senderLen = senderAt === 0 ? 0 : this.#vecLen
        this.payloadOff = payloadAt === 0 ? -1 : this.#vecAt(dv, d, t + S_PAYLOAD, 'payload')
        this.payloadLen = payloadAt === 0 ? 0 : this.#vecLen
        return this
      }
    }
    this.#scalars()
    this.#vectors()
    return this
  }

  /**
   * Offset of the bytes of the vector whose uoffset sits at `at` (inside the
   * table), leaving its length in #vecLen; throws when it runs outside the
   * frame.
   */
  #vecAt(dv: DataView, d: number, at: number, name: string): number {
    const target = at + dv.getUint32(d + at, true)
    if (target + 4 > this.#end || target < at) throw malformed(`${name} offset out of range`)
    const n = dv.getUint32(d + target, true)
    if (n > this.#end - target - 4) throw malformed(`${name} length ${n} runs past the frame end`)
    this.#vecLen = n
    return target + 4
  }

  /** Length of the vector the last #vecAt found. */
  #vecLen = 0

  #scalars(): void {
    const dv = this.#views.view
    const d = this.#views.delta
    let s: number
    this.partition = (s = this.#slot(F_PARTITION, 4)) < 0 ? 0 : dv.getUint32(d + s, true)
    this.correlationId = (s = this.#slot(F_CORRELATION, 4)) < 0 ? 0 : dv.getUint32(d + s, true)
    this.messageType = (s = this.#slot(F_MESSAGE_TYPE, 4)) < 0 ? 0 : dv.getUint32(d + s, true)
    this.replyTo = (s = this.#slot(F_REPLY_TO, 4)) < 0 ? 0 : dv.getUint32(d + s, true)
    this.timeoutMs = (s = this.#slot(F_TIMEOUT, 4)) < 0 ? 0 : dv.getUint32(d + s, true)
    this.schemaVersion = (s = this.#slot(F_SCHEMA_VERSION, 2)) < 0 ? 0 : dv.getUint16(d + s, true)
    this.flags = (s = this.#slot(F_FLAGS, 2)) < 0 ? 0 : dv.getUint16(d + s, true)
  }

  #vectors(): void {
    let v = this.#vec(F_KIND, 'kind')
    this.kindOff = v
    this.kindLen = v < 0 ? 0 : this.#vecLen
    v = this.#vec(F_KEY, 'key')
    this.keyOff = v
    this.keyLen = v < 0 ? 0 : this.#vecLen
    v = this.#vec(F_SENDER, 'sender')
    this.senderOff = v
    this.senderLen = v < 0 ? 0 : this.#vecLen
    v = this.#vec(F_PAYLOAD, 'payload')
    this.payloadOff = v
    this.payloadLen = v < 0 ? 0 : this.#vecLen
  }

  // Table geometry of the current frame (methods, not closures: reset() is
  // the hot path and must not allocate).
  #t = 0
  #vt = 0
  #end = 0
  #tblSize = 0
  #nFields = 0

  /** Absolute position of a scalar field, or -1 when absent. */
  #slot(field: number, width: number): number {
    const dv = this.#views.view
    const d = this.#views.delta
    if (field >= this.#nFields) return -1
    const fo = dv.getUint16(d + this.#vt + 4 + 2 * field, true)
    if (fo === 0) return -1
    if (fo < 4 || fo + width > this.#tblSize) throw malformed(`field ${field} offset ${fo} outside the table`)
    return this.#t + fo
  }

  /** Offset of a vector/string's bytes (its length in #vecLen), or -1 when absent. */
  #vec(field: number, name: string): number {
    const dv = this.#views.view
    const d = this.#views.delta
    const at = this.#slot(field, 4)
    return at < 0 ? -1 : this.#vecAt(dv, d, at, name)
  }

  #str(off: number, len: number, name: string): string {
    if (off < 0) return ''
    try {
      return readUtf8(this.buf, off, len)
    } catch {
      throw malformed(`${name} is not valid UTF-8`)
    }
  }

  kind(): string {
    return this.#str(this.kindOff, this.kindLen, 'kind')
  }
  /**
   * The key cache itself: `keyCache.slot` is the slot of the last key() (or
   * -1), for a receiver that keeps a value per key (Utf8StringCache.setValue).
   */
  get keyCache(): Utf8StringCache {
    return this.#keys
  }
  key(): string {
    if (this.keyOff < 0) {
      this.#keys.slot = -1
      return ''
    }
    return this.keyAt(this.keyOff, this.keyLen)
  }
  /** A key stored elsewhere in this frame (a tell run's entry), through the same cache. */
  keyAt(off: number, len: number): string {
    try {
      return this.#keys.read(this.buf, off, len, this.#views.view, this.#views.delta)
    } catch {
      throw malformed('key is not valid UTF-8')
    }
  }
  /** A reader sees the same keys again and again (see Utf8StringCache). */
  readonly #keys = new Utf8StringCache()
  sender(): string {
    return this.#str(this.senderOff, this.senderLen, 'sender')
  }
  hasFlag(f: number): boolean {
    return (this.flags & f) !== 0
  }
  /** Copy of the whole envelope's bytes. */
  copy(): Uint8Array {
    return this.buf.slice(this.start, this.start + this.length)
  }
  /** Zero-copy view of the payload bytes (valid while the frame is). */
  payload(): Uint8Array {
    return this.payloadOff < 0 ? new Uint8Array(0) : this.buf.subarray(this.payloadOff, this.payloadOff + this.payloadLen)
  }
  /**
   * Rewrite the routing fields of the current envelope in place (the bytes
   * must be writable): how a node relays a request or reply for another
   * node without re-encoding it. False when a field is absent from this
   * envelope's table (not written by EnvelopeWriter): re-encode then.
   */
  patchRouting(correlationId: number, replyTo: number): boolean {
    const dv = this.#views.view
    const d = this.#views.delta
    const corr = this.#slot(F_CORRELATION, 4)
    const reply = this.#slot(F_REPLY_TO, 4)
    if (corr < 0 || reply < 0) return false
    dv.setUint32(d + corr, correlationId >>> 0, true)
    dv.setUint32(d + reply, replyTo >>> 0, true)
    this.correlationId = correlationId >>> 0
    this.replyTo = replyTo >>> 0
    return true
  }

  /** Rewrite schema_version in place (a relay stamps the version negotiated with the peer); false if the field is absent. */
  patchSchemaVersion(version: number): boolean {
    const slot = this.#slot(F_SCHEMA_VERSION, 2)
    if (slot < 0) return false
    this.#views.view.setUint16(this.#views.delta + slot, version, true)
    this.schemaVersion = version
    return true
  }

  /** True when the kind bytes equal `kind`'s (lets a receiver skip decoding a repeated kind). */
  kindEquals(kind: InternedString): boolean {
    const len = kind.bytes.length
    const off = this.kindOff
    if (this.kindLen !== len || off < 0) return false
    // Whole words through the view, then the tail bytes: kinds run to a
    // dozen bytes or more and this runs for every request.
    const dv = this.#views.view
    const at = this.#views.delta + off
    const words = kind.words
    const full = len >>> 2
    for (let i = 0; i < full; i++) if (dv.getInt32(at + 4 * i, true) !== words[i]) return false
    const b = this.buf
    const bytes = kind.bytes
    for (let i = full << 2; i < len; i++) if (b[off + i] !== bytes[i]) return false
    return true
  }
  /** True when the key bytes equal `bytes` (used to skip re-decoding a repeated key). */
  keyEquals(bytes: Uint8Array, len: number): boolean {
    return this.#equals(this.keyOff, this.keyLen, bytes, len)
  }

  /** buf[off, off+fieldLen) equals bytes[0, len); false when the field is absent. */
  #equals(off: number, fieldLen: number, bytes: Uint8Array, len: number): boolean {
    if (fieldLen !== len || off < 0) return false
    const b = this.buf
    for (let i = 0; i < len; i++) if (b[off + i] !== bytes[i]) return false
    return true
  }
}

/**
 * Routing header of the envelope at buf[off, off+len) without validating
 * the rest (strings, payload): its partition and flags, or undefined when
 * even these lie outside the bytes. For paths that hand the envelope to a
 * worker whose own EnvelopeReader validates it fully (tell batches).
 * Returned as one number, `partition * 65536 + flags` (48 bits: exact), or
 * -1: the hot path allocates nothing.
 */
export function peekRouting(buf: Uint8Array, off: number, len: number): number {
  const end = off + len
  if (len < 12 || off < 0 || end > buf.length) return -1
  if (len >= ENVELOPE_FIXED_BYTES) {
    // Fast path: the layout EnvelopeWriter produces, recognised by its fixed
    // header words (a batch's entries share one buffer, so one DataView
    // serves them all). It reads what the general path below would: with
    // this header every offset it checks is in range.
    const dv = routingViews.of(buf)
    const d = routingViews.delta + off
    if (
      dv.getUint32(d, true) === TABLE_AT &&
      dv.getUint32(d + VTABLE_AT, true) === (VTABLE_BYTES | (TABLE_BYTES << 16)) &&
      dv.getInt32(d + TABLE_AT, true) === TABLE_AT - VTABLE_AT &&
      writerScalarSlots(dv, d + VTABLE_AT + 4)
    ) {
      return dv.getUint32(d + TABLE_AT + S_PARTITION, true) * 65536 + dv.getUint16(d + TABLE_AT + S_FLAGS, true)
    }
  }
  return peekRoutingGeneral(buf, off, len)
}

/** peekRouting for any table layout (exported for the test that holds the fast path to it). */
export function peekRoutingGeneral(buf: Uint8Array, off: number, len: number): number {
  const end = off + len
  if (len < 12 || off < 0 || end > buf.length) return -1
  const root = u32le(buf, off)
  const t = off + root
  if (root < 4 || t + 4 > end) return -1
  const vt = t - (u32le(buf, t) | 0)
  if (vt < off || vt + 4 > end) return -1
  const vtSize = u16le(buf, vt)
  const tblSize = u16le(buf, vt + 2)
  if (vtSize < 4 || vt + vtSize > end || t + tblSize > end) return -1
  const p = slotAt(buf, vt, vtSize, t, tblSize, F_PARTITION, 4)
  const fl = slotAt(buf, vt, vtSize, t, tblSize, F_FLAGS, 2)
  if (p === -2 || fl === -2) return -1
  return (p < 0 ? 0 : u32le(buf, p)) * 65536 + (fl < 0 ? 0 : u16le(buf, fl))
}

const routingViews = new ViewCache()

/**
 * True when the vtable entries starting at `f` (one u16 per field id, in
 * `dv`'s coordinates) put the scalars in EnvelopeWriter's slots: the check
 * both fast paths (EnvelopeReader.reset, peekRouting) build on. Adjacent
 * entries are compared two per word.
 */
function writerScalarSlots(dv: DataView, f: number): boolean {
  return (
    dv.getUint32(f + 2 * F_CORRELATION, true) === (S_CORRELATION | (S_MESSAGE_TYPE << 16)) &&
    dv.getUint32(f + 2 * F_SCHEMA_VERSION, true) === (S_SCHEMA_VERSION | (S_FLAGS << 16)) &&
    dv.getUint16(f + 2 * F_PARTITION, true) === S_PARTITION &&
    dv.getUint32(f + 2 * F_REPLY_TO, true) === (S_REPLY_TO | (S_TIMEOUT << 16)) // + F_TIMEOUT
  )
}

/** Absolute position of `field` (`width` bytes) of the table at `t`; -1 when absent, -2 when outside the table. */
function slotAt(buf: Uint8Array, vt: number, vtSize: number, t: number, tblSize: number, field: number, width: number): number {
  if (4 + 2 * field + 2 > vtSize) return -1
  const fo = u16le(buf, vt + 4 + 2 * field)
  if (fo === 0) return -1
  return fo < 4 || fo + width > tblSize ? -2 : t + fo
}
