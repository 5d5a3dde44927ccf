/**
 * Little-endian integers read from and written to byte arrays at any offset
 * (DataView needs a view per buffer; these work on any Uint8Array). Tiny, so
 * V8 inlines them.
 */

export function u16le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8)
}

export function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0
}

/** Store the low 32 bits of `v` (signed or unsigned) at b[o, o+4). */
export function putU32le(b: Uint8Array, o: number, v: number): void {
  b[o] = v
  b[o + 1] = v >>> 8
  b[o + 2] = v >>> 16
  b[o + 3] = v >>> 24
}
