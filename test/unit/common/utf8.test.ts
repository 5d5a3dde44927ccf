import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { encodeUtf8, readUtf8, Utf8StringCache, utf8Length, writeUtf8 } from '../../../src/common/utf8.js'

const te = new TextEncoder()
/** What a string looks like after a trip through UTF-8 (lone surrogates become U+FFFD; a leading BOM is kept). */
const td = new TextDecoder('utf-8', { ignoreBOM: true })
const viaUtf8 = (s: string): string => td.decode(te.encode(s))

/** Any sequence of UTF-16 code units, lone surrogates included. */
const codeUnitString = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 80 }).map((cs) => String.fromCharCode(...cs))
/** Mostly ASCII with some multi-byte characters and surrogates mixed in, short and long. */
const mixedString = fc.string({
  unit: fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.constantFrom('\ud800', '\udfff', '\ufeff', 'é', '€', '😀') },
  ),
  maxLength: 60,
})
const anyString = fc.oneof(codeUnitString, mixedString, fc.string({ unit: 'binary' }))

const CANARY = 0xa5

describe('utf8Length', () => {
  it.each([
    ['', 0],
    ['a', 1],
    ['é', 2],
    ['€', 3],
    ['😀', 4],
    ['\ud800', 3],
    ['\udc00', 3],
    ['\ud800a', 4],
    ['a\ud83d', 4],
    ['\udc00\ud800', 6],
    ['\ud83d\ude00\ud83d', 7],
  ])('of %j is %i', (s, n) => {
    expect(utf8Length(s)).toBe(n)
    expect(te.encode(s).length).toBe(n)
  })

  it('equals the TextEncoder byte length for any string', () => {
    fc.assert(fc.property(anyString, (s) => utf8Length(s) === te.encode(s).length))
  })
})

describe('writeUtf8', () => {
  it('writes exactly the TextEncoder bytes at the offset and touches nothing else', () => {
    fc.assert(
      fc.property(anyString, fc.nat(7), fc.nat(8), (s, off, slack) => {
        const want = te.encode(s)
        const max = want.length + slack
        const buf = new Uint8Array(off + max + 8).fill(CANARY)
        const n = writeUtf8(s, buf, off, max)
        expect(n).toBe(want.length)
        expect(buf.subarray(off, off + n)).toEqual(want)
        expect(buf.subarray(0, off).every((b) => b === CANARY)).toBe(true)
        expect(buf.subarray(off + n).every((b) => b === CANARY)).toBe(true)
      }),
    )
  })

  it('returns -1 when the span is too small and never writes past off+max', () => {
    fc.assert(
      fc.property(
        anyString.filter((s) => s.length > 0),
        fc.nat(7),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (s, off, frac) => {
          const len = utf8Length(s)
          const max = Math.floor(frac * len) // 0 .. len-1
          const buf = new Uint8Array(off + len + 8).fill(CANARY)
          expect(writeUtf8(s, buf, off, max)).toBe(-1)
          expect(buf.subarray(0, off).every((b) => b === CANARY)).toBe(true)
          expect(buf.subarray(off + max).every((b) => b === CANARY)).toBe(true)
        },
      ),
    )
  })

  it('fits exactly when max equals the UTF-8 length', () => {
    for (const s of ['abc', 'é', '😀x', '\ud800', 'a'.repeat(30) + '€']) {
      const n = utf8Length(s)
      expect(writeUtf8(s, new Uint8Array(n), 0, n)).toBe(n)
      if (n > 0) expect(writeUtf8(s, new Uint8Array(n), 0, n - 1)).toBe(-1)
    }
  })
})

describe('readUtf8', () => {
  it('reads back what writeUtf8 wrote, as TextEncoder/TextDecoder would (lone surrogates become U+FFFD)', () => {
    fc.assert(
      fc.property(anyString, fc.nat(7), (s, off) => {
        const buf = new Uint8Array(off + utf8Length(s) + 4).fill(CANARY)
        const n = writeUtf8(s, buf, off, buf.length - off)
        expect(readUtf8(buf, off, n)).toBe(viaUtf8(s))
      }),
    )
  })

  it('round-trips well-formed strings exactly', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const buf = new Uint8Array(utf8Length(s))
        const n = writeUtf8(s, buf, 0, buf.length)
        return readUtf8(buf, 0, n) === s
      }),
    )
  })

  it.each([
    ['a short string starting with a BOM', '\ufeffkey'],
    ['a BOM alone', '\ufeff'],
    ['a long string starting with a BOM', '\ufeff' + 'x'.repeat(40)],
  ])('keeps %s (the BOM is content, not a signature)', (_name, s) => {
    const buf = new Uint8Array(utf8Length(s))
    const n = writeUtf8(s, buf, 0, buf.length)
    expect(readUtf8(buf, 0, n)).toBe(s)
  })

  it('agrees between the short (<= 24 bytes) and the long path', () => {
    for (let len = 0; len <= 60; len++) {
      const s = Array.from({ length: len }, (_, i) => String.fromCharCode(32 + ((i * 7) % 95))).join('')
      const bytes = te.encode(s)
      expect(readUtf8(bytes, 0, bytes.length)).toBe(s)
      const u = s + 'é'
      const ub = te.encode(u)
      expect(readUtf8(ub, 0, ub.length)).toBe(u)
    }
  })

  it('reads only buf[off, off+len)', () => {
    const buf = te.encode('xxhello worldyy')
    expect(readUtf8(buf, 2, 11)).toBe('hello world')
    expect(readUtf8(buf, 2, 0)).toBe('')
  })

  it.each([
    ['a stray continuation byte', [0x80]],
    ['0xFF', [0xff]],
    ['a truncated 2-byte sequence', [0x61, 0xc3]],
    ['an overlong encoding of NUL', [0xc0, 0x80]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
  ])('throws a TypeError on %s, on the short and the long path', (_name, bad) => {
    const short = Uint8Array.from(bad)
    expect(() => readUtf8(short, 0, short.length)).toThrow(TypeError)
    const long = Uint8Array.from([...te.encode('a'.repeat(30)), ...bad])
    expect(() => readUtf8(long, 0, long.length)).toThrow(TypeError)
  })
})

describe('encodeUtf8', () => {
  it('equals TextEncoder.encode', () => {
    fc.assert(
      fc.property(anyString, (s) => {
        expect(encodeUtf8(s)).toEqual(te.encode(s))
      }),
    )
  })
})

describe('Utf8StringCache', () => {
  /** bytes at a random offset of a buffer full of random garbage. */
  const placed = (bytes: Uint8Array, at: number, fill: number): Uint8Array => {
    const buf = new Uint8Array(at + bytes.length + 8).fill(fill)
    buf.set(bytes, at)
    return buf
  }
  const view = (buf: Uint8Array): DataView => new DataView(buf.buffer, buf.byteOffset, buf.byteLength)

  it('reads what TextDecoder reads, at any offset and whatever surrounds the text, hit or miss', () => {
    const cache = new Utf8StringCache(16)
    fc.assert(
      fc.property(fc.array(fc.tuple(mixedString, fc.nat(9), fc.nat(255)), { minLength: 1, maxLength: 30 }), (items) => {
        for (const [s, at, fill] of [...items, ...items]) {
          const bytes = te.encode(s)
          const buf = placed(bytes, at, fill)
          expect(cache.read(buf, at, bytes.length, view(buf), 0)).toBe(td.decode(bytes))
        }
      }),
    )
  })

  it('returns the cached slot for short ASCII texts, the same one on every hit, and -1 for others', () => {
    const cache = new Utf8StringCache(64)
    const texts = ['k', 'key-0001', 'key-0002', 'x'.repeat(64)]
    const first = new Map<string, number>()
    for (let round = 0; round < 3; round++) {
      for (const s of texts) {
        const bytes = te.encode(s)
        const buf = placed(bytes, round, 0xee - round)
        expect(cache.read(buf, round, bytes.length, view(buf), 0)).toBe(s)
        expect(cache.slot).toBeGreaterThanOrEqual(0)
        if (first.has(s)) expect(cache.slot).toBe(first.get(s))
        first.set(s, cache.slot)
      }
    }
    for (const s of ['é', 'y'.repeat(65), '\u20ac-key']) {
      const bytes = te.encode(s)
      expect(cache.read(bytes, 0, bytes.length, view(bytes), 0)).toBe(s)
      expect(cache.slot).toBe(-1)
    }
  })

  it('stays correct when many more texts than slots compete (collisions evict, never confuse)', () => {
    const cache = new Utf8StringCache(8)
    const keys = Array.from({ length: 200 }, (_, i) => `key-${i}`)
    for (let round = 0; round < 5; round++) {
      for (const k of keys) {
        const bytes = te.encode(k)
        const buf = placed(bytes, 4, round)
        expect(cache.read(buf, 4, bytes.length, view(buf), 0)).toBe(k)
      }
    }
  })

  it('throws on invalid UTF-8 like readUtf8', () => {
    const cache = new Utf8StringCache(8)
    const bad = new Uint8Array([0x61, 0xff, 0x62])
    expect(() => cache.read(bad, 0, 3, view(bad), 0)).toThrow(TypeError)
  })
})
