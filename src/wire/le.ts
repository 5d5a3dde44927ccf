/**
 * Little-endian integers read from byte arrays at any offset (DataView needs
 * a view per buffer; these work on any Uint8Array). Tiny, so V8 inlines them.
 */

export function u16le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8)
}

export function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0
}
