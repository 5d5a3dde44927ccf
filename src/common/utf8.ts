/**
 * UTF-8 helpers tuned for the short ASCII strings (kinds, keys, field names)
 * that dominate envelopes: a plain byte loop beats TextEncoder/TextDecoder
 * call overhead below a few dozen characters, and anything non-ASCII falls
 * back to the standard codecs.
 */

const encoder = new TextEncoder()
// ignoreBOM: a leading U+FEFF is part of the string (a key or field), not a
// byte-order mark to strip; without it '\uFEFFk' would read back as 'k'.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Write `s` as UTF-8 into buf[off, off+max). Returns bytes written, or -1 if
 * it does not fit (nothing meaningful is left in the span then).
 */
export function writeUtf8(s: string, buf: Uint8Array, off: number, max: number): number {
  const n = s.length
  if (n > max) return -1
  let i = 0
  for (; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80) break
    buf[off + i] = c
  }
  if (i === n) return n
  // Non-ASCII tail: let the engine's encoder do it, bounded by the span.
  const span = buf.subarray(off + i, off + max)
  const r = encoder.encodeInto(i === 0 ? s : s.slice(i), span)
  if (r.read !== n - i) return -1
  return i + r.written
}

/** Exact UTF-8 byte length of `s`. */
export function utf8Length(s: string): number {
  let bytes = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4
        i++
      } else bytes += 3
    } else bytes += 3
  }
  return bytes
}

export function encodeUtf8(s: string): Uint8Array {
  return encoder.encode(s)
}

/** Decode buf[off, off+len) as UTF-8; throws TypeError on invalid UTF-8. */
export function readUtf8(buf: Uint8Array, off: number, len: number): string {
  if (len <= 24) {
    let s = ''
    for (let i = 0; i < len; i++) {
      const b = buf[off + i]!
      if (b >= 0x80) return decoder.decode(buf.subarray(off, off + len))
      s += String.fromCharCode(b)
    }
    return s
  }
  return decoder.decode(buf.subarray(off, off + len))
}

/** Slots per set of a Utf8StringCache (1 << WAY_BITS). */
const WAY_BITS = 2
const WAYS = 1 << WAY_BITS
/** Longest text a Utf8StringCache keeps, in bytes (grain keys are mostly short). */
const CACHED_MAX_BYTES = 64

/**
 * Decodes repeated short ASCII texts to the same string object. A receiver
 * reads the same grain keys over and over: decoding one builds a fresh
 * string char by char, and the Map lookup that follows must hash it again;
 * a hit here costs a hash over 32-bit words and one compare, and returns a
 * string whose hash V8 has already cached. Set-associative and bounded: a
 * miss replaces a slot, so it only costs what decoding always did.
 */
export class Utf8StringCache {
  /**
   * Slot of the text the last read() returned, or -1 when it is not cached.
   * Stable while the text stays cached, so a caller may keep values of its
   * own per slot (checking that they belong to this text).
   */
  slot = -1
  readonly slots: number
  /**
   * Per slot, its text and the caller's value side by side ([text, value,
   * text, value, …]): a hit and its value then share a cache line.
   */
  readonly #entries: unknown[]
  /** Hash of each slot's text: most mismatches are rejected without touching the string. */
  readonly #hashes: Int32Array
  /** Per set: the way the next miss replaces. */
  readonly #nextWay: Uint8Array
  readonly #mask: number

  /**
   * `slots` must be a power of two, at least WAYS. The default keeps 16,384
   * texts in ~130 KB (pointers and hashes; the strings are the keys the
   * caller keeps anyway), so a few thousand live keys rarely share a set
   * beyond its ways.
   */
  constructor(slots = 16_384) {
    this.slots = slots
    this.#entries = new Array<unknown>(2 * slots).fill(undefined)
    this.#hashes = new Int32Array(slots)
    this.#nextWay = new Uint8Array(slots >>> WAY_BITS)
    this.#mask = slots - 1
  }

  /**
   * The text at buf[off, off+len); `dv` is a view of buf's memory with
   * buf[0] at `delta` (the caller's cached view, so nothing allocates).
   */
  read(buf: Uint8Array, off: number, len: number, dv: DataView, delta: number): string {
    if (len > CACHED_MAX_BYTES) {
      this.slot = -1
      return readUtf8(buf, off, len)
    }
    const full = len >>> 2
    const at = delta + off
    let h = 0x811c9dc5 ^ len
    for (let i = 0; i < full; i++) h = Math.imul(h ^ dv.getInt32(at + 4 * i, true), 0x01000193)
    // The tail word, with the bytes past the text zeroed (they are padding or the next field).
    const rest = len & 3
    if (rest !== 0) h = Math.imul(h ^ tailWord(buf, off + 4 * full, rest), 0x01000193)
    // murmur3's finaliser: a multiply carries only upwards, so without it
    // the low (set) bits would ignore the high bytes of each word.
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
    h ^= h >>> 16
    const set = h & this.#mask & ~(WAYS - 1)
    const hashes = this.#hashes
    for (let slot = set; slot < set + WAYS; slot++) {
      if (hashes[slot] !== h) continue
      const s = this.#entries[2 * slot] as string | undefined
      // Only ASCII texts are stored, so a byte >= 0x80 never matches a char code.
      if (s !== undefined && s.length === len && sameAscii(s, buf, off, len)) {
        this.slot = slot
        return s
      }
    }
    // Replace the ways in turn (FIFO per set).
    const si = set >>> WAY_BITS
    const victim = set + this.#nextWay[si]!
    this.#nextWay[si] = (this.#nextWay[si]! + 1) & (WAYS - 1)
    return this.#miss(buf, off, len, victim, h)
  }

  /** Decode, and keep the text in `slot` when it is ASCII (one char per byte). Out of line: read() stays small enough to inline. */
  #miss(buf: Uint8Array, off: number, len: number, slot: number, h: number): string {
    const text = readUtf8(buf, off, len)
    if (text.length !== len) {
      this.slot = -1
      return text
    }
    // A flat copy: readUtf8 builds a rope, and every later use of a rope
    // (Map lookups, compares) pays an indirection.
    const flat = String.fromCharCode.apply(null, buf.subarray(off, off + len) as unknown as number[])
    this.#hashes[slot] = h
    this.#entries[2 * slot] = flat
    this.#entries[2 * slot + 1] = undefined // the value belonged to the text replaced
    this.slot = slot
    return flat
  }

  /** The caller's value for `slot` (see setValue), or undefined. */
  valueAt(slot: number): unknown {
    return this.#entries[2 * slot + 1]
  }

  /** Keep `v` with the text in `slot` until that text leaves the cache. */
  setValue(slot: number, v: unknown): void {
    this.#entries[2 * slot + 1] = v
  }
}

function sameAscii(s: string, buf: Uint8Array, off: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (s.charCodeAt(i) !== buf[off + i]) return false
  return true
}

function tailWord(buf: Uint8Array, off: number, n: number): number {
  let v = buf[off]!
  if (n > 1) v |= buf[off + 1]! << 8
  if (n > 2) v |= buf[off + 2]! << 16
  return v
}
