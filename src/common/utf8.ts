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
