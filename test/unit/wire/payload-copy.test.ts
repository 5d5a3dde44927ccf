/**
 * PayloadCopy (src/wire/payload-copy.ts): copies an encoded payload out of
 * other bytes (a run's entry) into a new run or envelope, small ones byte by
 * byte and large ones in one set(); refuses (-1) what does not fit.
 */
import { describe, expect, it } from 'vitest'
import { PayloadCopy } from '../../../src/wire/payload-copy.js'

describe('PayloadCopy', () => {
  it('copies exactly the slice it was given, short or long, and refuses one that does not fit', () => {
    const src = Uint8Array.from({ length: 300 }, (_, i) => (i * 7 + 3) & 0xff)
    const c = new PayloadCopy()
    for (const [off, len] of [
      [0, 0],
      [5, 1],
      [10, 64],
      [17, 65],
      [1, 299],
    ] as const) {
      const out = new Uint8Array(400).fill(0xee)
      expect(c.from(src, off, len).write(out, 40, 360)).toBe(len)
      expect(out.subarray(40, 40 + len)).toEqual(src.subarray(off, off + len))
      // Nothing around it is touched.
      expect(out[39]).toBe(0xee)
      expect(out[40 + len]).toBe(0xee)
      if (len > 0) expect(c.write(out, 0, len - 1)).toBe(-1)
    }
  })
})
