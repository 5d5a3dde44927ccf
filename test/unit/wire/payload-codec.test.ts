import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { DEFAULT_CODEC, type PayloadCodec, binaryCodec, codecByName, encodeToBytes, jsonCodec } from '../../../src/wire/payload-codec.js'
import { catchErr } from '../../helpers/catch-error.js'

const CANARY = 0xa5
const te = new TextEncoder()
const viaUtf8 = (s: string): string => new TextDecoder('utf-8', { ignoreBOM: true }).decode(te.encode(s))


function expectCode(fn: () => unknown, code: 'ERR_GRAIN_PAYLOAD_ENCODE' | 'ERR_GRAIN_PAYLOAD_DECODE', reason?: RegExp): void {
  const e = catchErr(fn)
  expect(e, `expected ${code}, nothing was thrown`).toBeInstanceOf(GrainClusterError)
  expect((e as GrainClusterError).code).toBe(code)
  if (reason !== undefined) expect((e as GrainClusterError).reason).toMatch(reason)
}

/** Object with the given own enumerable entries, '__proto__' included, without touching any prototype. */
function objectOf(entries: readonly (readonly [string, unknown])[], nullProto = false): Record<string, unknown> {
  const o: Record<string, unknown> = nullProto ? (Object.create(null) as Record<string, unknown>) : {}
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
  return o
}

/**
 * Tagged, order-insensitive description of a value, so -0, NaN, invalid dates,
 * undefined members and byte arrays compare exactly. Strings are normalised
 * as UTF-8 would (lone surrogates become U+FFFD).
 */
function canon(v: unknown): unknown {
  if (v === undefined) return { u: 1 }
  if (v === null) return { null: 1 }
  switch (typeof v) {
    case 'number':
      return { n: Object.is(v, -0) ? '-0' : String(v) }
    case 'string':
      return { s: viaUtf8(v) }
    case 'boolean':
      return { b: v }
    case 'bigint':
      return { big: v.toString() }
    case 'object':
      break
    default:
      throw new Error(`canon: unexpected ${typeof v}`)
  }
  if (Array.isArray(v)) return { a: v.map(canon) }
  if (v instanceof Uint8Array) return { bytes: Array.from(v) }
  if (v instanceof Date) return { date: String(v.getTime()) }
  const entries = Object.keys(v).map((k) => [viaUtf8(k), canon((v as Record<string, unknown>)[k])] as const)
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return { o: entries }
}

const keyArb = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 8 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '0', '17', '') },
)
const leafArb = fc.oneof(
  fc.constant(null),
  fc.constant(undefined),
  fc.boolean(),
  fc.integer(),
  fc.integer({ min: -300, max: 300 }),
  fc.double(), // includes NaN, -0, +-Infinity and subnormals
  fc.constantFrom(0, -0, 255, 256, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }),
  fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }),
  fc.date({ noInvalidDate: false }),
)
const { value: binaryValueArb } = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown> }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leafArb, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  object: fc
    .tuple(fc.array(fc.tuple(keyArb, tie('value')), { maxLength: 6 }), fc.boolean())
    .map(([entries, nullProto]) => objectOf(entries, nullProto)),
}))

function roundTrip(codec: PayloadCodec, v: unknown): unknown {
  const bytes = encodeToBytes(codec, v)
  return codec.decode(bytes, 0, bytes.length)
}

function nest(levels: number, leaf: unknown, asObject = false): unknown {
  let v = leaf
  for (let i = 0; i < levels; i++) v = asObject ? { x: v } : [v]
  return v
}

describe('binaryCodec', () => {
  it('round-trips json-like trees with undefined, Uint8Array, bigint, Date, -0, NaN and Infinity', () => {
    fc.assert(
      fc.property(binaryValueArb, fc.nat(7), (v, off) => {
        const bytes = encodeToBytes(binaryCodec, v)
        // decode from inside a larger buffer (ring memory)
        const buf = new Uint8Array(off + bytes.length + 8).fill(CANARY)
        buf.set(bytes, off)
        const back = binaryCodec.decode(buf, off, bytes.length)
        expect(canon(back)).toEqual(canon(v))
      }),
      { numRuns: 500 },
    )
  })

  it('decodes plain objects with Object.prototype and copies byte arrays out of the source', () => {
    const src = encodeToBytes(binaryCodec, { a: Uint8Array.of(1, 2, 3) })
    const back = binaryCodec.decode(src, 0, src.length) as { a: Uint8Array }
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    expect(back.a).toBeInstanceOf(Uint8Array)
    src.fill(0)
    expect(Array.from(back.a)).toEqual([1, 2, 3])
  })

  it('keeps undefined members of arrays and objects', () => {
    const back = roundTrip(binaryCodec, { a: undefined, list: [undefined, 1, undefined] }) as Record<string, unknown>
    expect(Object.hasOwn(back, 'a')).toBe(true)
    expect(back.a).toBeUndefined()
    expect(back.list).toEqual([undefined, 1, undefined])
    expect((back.list as unknown[]).length).toBe(3)
  })

  it('encodes a Buffer as bytes and decodes a plain Uint8Array', () => {
    const back = roundTrip(binaryCodec, Buffer.from('hi'))
    expect(back).toBeInstanceOf(Uint8Array)
    expect(Array.from(back as Uint8Array)).toEqual([104, 105])
  })

  it('skips function- and symbol-valued object members (like JSON) but rejects them elsewhere', () => {
    expect(roundTrip(binaryCodec, { a: 1, f: () => 1, s: Symbol('x') })).toEqual({ a: 1 })
    expectCode(() => encodeToBytes(binaryCodec, [() => 1]), 'ERR_GRAIN_PAYLOAD_ENCODE', /type function/)
    expectCode(() => encodeToBytes(binaryCodec, Symbol('x')), 'ERR_GRAIN_PAYLOAD_ENCODE', /type symbol/)
  })

  it('pins the byte format of simple values (the format crosses nodes)', () => {
    const enc = (v: unknown): number[] => Array.from(encodeToBytes(binaryCodec, v))
    expect(enc(undefined)).toEqual([0])
    expect(enc(null)).toEqual([1])
    expect(enc(false)).toEqual([2])
    expect(enc(true)).toEqual([3])
    expect(enc(7)).toEqual([4, 7])
    expect(enc(255)).toEqual([4, 255])
    expect(enc(256)).toEqual([5, 0, 1, 0, 0])
    expect(enc(-1)).toEqual([5, 255, 255, 255, 255])
    expect(enc(1.5)).toEqual([6, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f])
    expect(enc(-0)).toEqual([6, 0, 0, 0, 0, 0, 0, 0, 0x80])
    expect(enc('hé')).toEqual([7, 3, 0, 0, 0, 0x68, 0xc3, 0xa9])
    expect(enc([1])).toEqual([8, 1, 0, 0, 0, 4, 1])
    expect(enc({ a: 1 })).toEqual([9, 1, 0, 0, 0, 7, 1, 0, 0, 0, 0x61, 4, 1])
    expect(enc(Uint8Array.of(9, 8))).toEqual([10, 2, 0, 0, 0, 9, 8])
    expect(enc(-10n)).toEqual([11, 3, 0, 0, 0, 0x2d, 0x31, 0x30])
    expect(enc(new Date(0))).toEqual([12, 0, 0, 0, 0, 0, 0, 0, 0])
  })

  it('keeps a string that starts with a BOM and replaces lone surrogates with U+FFFD', () => {
    expect(roundTrip(binaryCodec, '\ufeffhello')).toBe('\ufeffhello')
    expect(roundTrip(binaryCodec, { '\ufeffk': '\ufeff' })).toEqual({ '\ufeffk': '\ufeff' })
    expect(roundTrip(binaryCodec, 'a\ud800b')).toBe('a\ufffdb')
  })

  describe('encodeInto', () => {
    it('returns the exact length when it fits and -1 for every smaller max, never writing past off+max', () => {
      fc.assert(
        fc.property(binaryValueArb, fc.nat(7), (v, off) => {
          const n = encodeToBytes(binaryCodec, v).length
          const exact = new Uint8Array(off + n + 8).fill(CANARY)
          expect(binaryCodec.encodeInto(v, exact, off, n)).toBe(n)
          expect(exact.subarray(off + n).every((b) => b === CANARY)).toBe(true)
          const maxes = new Set([0, 1, n - 1, n >> 1, n - 2, n - 5])
          for (const max of maxes) {
            if (max < 0 || max >= n) continue
            const buf = new Uint8Array(off + n + 8).fill(CANARY)
            expect(binaryCodec.encodeInto(v, buf, off, max)).toBe(-1)
            expect(buf.subarray(0, off).every((b) => b === CANARY)).toBe(true)
            expect(buf.subarray(off + max).every((b) => b === CANARY)).toBe(true)
          }
        }),
        { numRuns: 300 },
      )
    })
  })

  describe('rejects what it cannot carry with ERR_GRAIN_PAYLOAD_ENCODE', () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    it.each([
      ['a class instance', new Point(1, 2), /instance of Point/],
      ['a nested class instance', { p: [new Point(1, 2)] }, /instance of Point/],
      ['a Map', new Map([[1, 2]]), /instance of Map/],
      ['a Set', new Set([1]), /instance of Set/],
      ['another typed array', new Int16Array(2), /instance of Int16Array/],
      ['a RegExp', /x/, /instance of RegExp/],
      ['an Error', new Error('x'), /instance of Error/],
      ['a boxed number', Object(1) as unknown, /instance of Number/],
      ['an object whose prototype is a plain object', Object.create({ inherited: 1 }) as unknown, /instance of/],
      ['a function', () => 1, /type function/],
    ])('%s', (_name, v, reason) => {
      expectCode(() => binaryCodec.encodeInto(v, new Uint8Array(256), 0, 256), 'ERR_GRAIN_PAYLOAD_ENCODE', reason)
    })

    it('accepts null-prototype objects', () => {
      const o = objectOf([['a', 1]], true)
      expect(roundTrip(binaryCodec, o)).toEqual({ a: 1 })
    })
  })

  describe('depth limit (64)', () => {
    it('carries 64 nested arrays or objects and rejects 65', () => {
      expect(canon(roundTrip(binaryCodec, nest(64, 1)))).toEqual(canon(nest(64, 1)))
      expect(canon(roundTrip(binaryCodec, nest(64, 'x', true)))).toEqual(canon(nest(64, 'x', true)))
      expectCode(() => encodeToBytes(binaryCodec, nest(65, 1)), 'ERR_GRAIN_PAYLOAD_ENCODE', /deeper than 64/)
      expectCode(() => encodeToBytes(binaryCodec, nest(65, 1, true)), 'ERR_GRAIN_PAYLOAD_ENCODE', /deeper than 64/)
    })

    it('rejects a cycle with ERR_GRAIN_PAYLOAD_ENCODE, not a stack overflow', () => {
      const a: unknown[] = []
      a.push(a)
      expectCode(() => encodeToBytes(binaryCodec, a), 'ERR_GRAIN_PAYLOAD_ENCODE', /cycle/)
      const o: Record<string, unknown> = {}
      o.self = o
      expectCode(() => encodeToBytes(binaryCodec, o), 'ERR_GRAIN_PAYLOAD_ENCODE', /cycle/)
    })

    it('rejects hand-made bytes nested past the limit with ERR_GRAIN_PAYLOAD_DECODE, even 100k deep', () => {
      const nested = (levels: number): Uint8Array => {
        const b = new Uint8Array(levels * 5 + 2)
        for (let i = 0; i < levels; i++) b.set([8, 1, 0, 0, 0], i * 5)
        b.set([4, 1], levels * 5)
        return b
      }
      expect(canon(binaryCodec.decode(nested(64), 0, 64 * 5 + 2))).toEqual(canon(nest(64, 1)))
      expectCode(() => binaryCodec.decode(nested(65), 0, 65 * 5 + 2), 'ERR_GRAIN_PAYLOAD_DECODE', /nests too deep/)
      expectCode(() => binaryCodec.decode(nested(100_000), 0, 100_000 * 5 + 2), 'ERR_GRAIN_PAYLOAD_DECODE', /nests too deep/)
    })
  })

  describe("'__proto__' keys", () => {
    it('round-trip as own data properties without touching any prototype', () => {
      const evil = objectOf([
        ['__proto__', { polluted: true }],
        ['constructor', { prototype: { polluted: true } }],
        ['nested', objectOf([['__proto__', { polluted: true }]])],
      ])
      const back = roundTrip(binaryCodec, evil) as Record<string, unknown>
      expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
      expect(Object.hasOwn(back, '__proto__')).toBe(true)
      expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ polluted: true })
      const nested = back.nested as Record<string, unknown>
      expect(Object.getPrototypeOf(nested)).toBe(Object.prototype)
      expect(Object.hasOwn(nested, '__proto__')).toBe(true)
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      expect((back as { polluted?: unknown }).polluted).toBeUndefined()
      expect(canon(back)).toEqual(canon(evil))
    })

    it('hand-made bytes with a __proto__ key do not change the prototype', () => {
      const key = te.encode('__proto__')
      const bytes = Uint8Array.from([9, 1, 0, 0, 0, 7, key.length, 0, 0, 0, ...key, 9, 1, 0, 0, 0, 7, 1, 0, 0, 0, 0x70, 3])
      const back = binaryCodec.decode(bytes, 0, bytes.length) as Record<string, unknown>
      expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
      expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ p: true })
      expect((back as { p?: unknown }).p).toBeUndefined()
    })
  })

  describe('decode of bad bytes throws ERR_GRAIN_PAYLOAD_DECODE (never a RangeError/TypeError/SyntaxError)', () => {
    it('decodes an empty payload as undefined', () => {
      expect(binaryCodec.decode(new Uint8Array(0), 0, 0)).toBeUndefined()
    })

    it('every truncation of a valid encoding', () => {
      fc.assert(
        fc.property(binaryValueArb, (v) => {
          const bytes = encodeToBytes(binaryCodec, v)
          // decode truncations in place: the bytes after the cut are still there
          for (let len = 1; len < bytes.length; len += 1 + (len >> 4)) {
            expectCode(() => binaryCodec.decode(bytes, 0, len), 'ERR_GRAIN_PAYLOAD_DECODE')
          }
        }),
        { numRuns: 200 },
      )
    })

    it('trailing bytes after the value', () => {
      const bytes = Uint8Array.from([...encodeToBytes(binaryCodec, [1, 2]), 0])
      expectCode(() => binaryCodec.decode(bytes, 0, bytes.length), 'ERR_GRAIN_PAYLOAD_DECODE', /1 trailing bytes/)
    })

    it.each([
      ['an unknown tag', [13], /unknown value tag 13/],
      ['a truncated uint8', [4], /truncated uint8/],
      ['a truncated int32', [5, 1, 2], /truncated length/],
      ['a truncated float64', [6, 0, 0, 0], /truncated float64/],
      ['a string longer than the payload', [7, 200, 0, 0, 0, 0x61], /string runs past the payload/],
      ['invalid UTF-8', [7, 2, 0, 0, 0, 0xc3, 0x28], /not valid UTF-8/],
      ['an array count beyond the payload', [8, 255, 255, 255, 255], /array count exceeds the payload/],
      ['an object count beyond the payload', [9, 255, 255, 255, 127], /object count exceeds the payload/],
      ['an object key that is not a string', [9, 1, 0, 0, 0, 4, 1, 4, 1], /object key is not a string/],
      ['bytes longer than the payload', [10, 9, 0, 0, 0, 1], /bytes run past the payload/],
      ['invalid bigint text', [11, 3, 0, 0, 0, 0x31, 0x2e, 0x35], /invalid bigint text/],
      ['a truncated date', [12, 0], /truncated float64/],
    ] as const)('%s', (_name, bytes, reason) => {
      // followed by more bytes in the same buffer: the decoder must stop at len
      const b = Uint8Array.from([...bytes, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
      expectCode(() => binaryCodec.decode(b, 0, bytes.length), 'ERR_GRAIN_PAYLOAD_DECODE', reason)
    })

    it('random bytes decode or throw ERR_GRAIN_PAYLOAD_DECODE, nothing else', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(4), (bytes, off) => {
          const buf = new Uint8Array(off + bytes.length + 4).fill(7) // a T_STRING tag right after the payload
          buf.set(bytes, off)
          try {
            binaryCodec.decode(buf, off, bytes.length)
          } catch (e) {
            if (!GrainClusterError.is(e, 'ERR_GRAIN_PAYLOAD_DECODE')) throw new Error(`expected ERR_GRAIN_PAYLOAD_DECODE, got ${String(e)}`, { cause: e })
          }
        }),
        { numRuns: 3000 },
      )
    })

    it('random corruption of valid encodings: same guarantee', () => {
      fc.assert(
        fc.property(binaryValueArb, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 3 }), (v, edits) => {
          const bytes = encodeToBytes(binaryCodec, v)
          for (const [i, x] of edits) bytes[i % bytes.length] = x
          try {
            binaryCodec.decode(bytes, 0, bytes.length)
          } catch (e) {
            if (!GrainClusterError.is(e, 'ERR_GRAIN_PAYLOAD_DECODE')) throw new Error(`expected ERR_GRAIN_PAYLOAD_DECODE, got ${String(e)}`, { cause: e })
          }
        }),
        { numRuns: 1000 },
      )
    })

    it('is usable again after a failed decode', () => {
      expectCode(() => binaryCodec.decode(Uint8Array.of(13), 0, 1), 'ERR_GRAIN_PAYLOAD_DECODE')
      expect(roundTrip(binaryCodec, { ok: [1, 'two'] })).toEqual({ ok: [1, 'two'] })
    })
  })
})

describe('jsonCodec', () => {
  it('round-trips JSON values as JSON.parse(JSON.stringify(v)) would', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(7), (v, off) => {
        const bytes = encodeToBytes(jsonCodec, v)
        const buf = new Uint8Array(off + bytes.length)
        buf.set(bytes, off)
        expect(jsonCodec.decode(buf, off, bytes.length)).toEqual(JSON.parse(JSON.stringify(v)))
      }),
      { numRuns: 300 },
    )
  })

  it('keeps lone surrogates (JSON.stringify escapes them) and a leading BOM inside strings', () => {
    expect(roundTrip(jsonCodec, 'a\ud800b')).toBe('a\ud800b')
    expect(roundTrip(jsonCodec, '\ufeffx')).toBe('\ufeffx')
  })

  it('carries undefined as an empty payload', () => {
    const buf = new Uint8Array(8).fill(CANARY)
    expect(jsonCodec.encodeInto(undefined, buf, 0, 8)).toBe(0)
    expect(jsonCodec.decode(buf, 0, 0)).toBeUndefined()
  })

  it('returns -1 for every max smaller than the encoding and never writes past off+max', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(7), (v, off) => {
        const n = te.encode(JSON.stringify(v)).length
        expect(jsonCodec.encodeInto(v, new Uint8Array(off + n), off, n)).toBe(n)
        for (const max of new Set([0, n - 1, n >> 1])) {
          if (max < 0 || max >= n) continue
          const buf = new Uint8Array(off + n + 8).fill(CANARY)
          expect(jsonCodec.encodeInto(v, buf, off, max)).toBe(-1)
          expect(buf.subarray(0, off).every((b) => b === CANARY)).toBe(true)
          expect(buf.subarray(off + max).every((b) => b === CANARY)).toBe(true)
        }
      }),
    )
    // multi-byte text whose UTF-16 length fits but whose UTF-8 length does not
    expect(jsonCodec.encodeInto('ééé', new Uint8Array(8), 0, 6)).toBe(-1)
  })

  it('rejects what JSON.stringify cannot handle with ERR_GRAIN_PAYLOAD_ENCODE', () => {
    expectCode(() => jsonCodec.encodeInto(1n, new Uint8Array(64), 0, 64), 'ERR_GRAIN_PAYLOAD_ENCODE', /JSON.stringify failed/)
    const o: Record<string, unknown> = {}
    o.self = o
    expectCode(() => jsonCodec.encodeInto(o, new Uint8Array(64), 0, 64), 'ERR_GRAIN_PAYLOAD_ENCODE', /JSON.stringify failed/)
  })

  it("decodes '__proto__' as an own key, not a prototype", () => {
    const bytes = te.encode('{"__proto__":{"polluted":true},"a":1}')
    const back = jsonCodec.decode(bytes, 0, bytes.length) as Record<string, unknown>
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    expect(Object.hasOwn(back, '__proto__')).toBe(true)
    expect((back as { polluted?: unknown }).polluted).toBeUndefined()
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it.each([
    ['invalid JSON', '{"a":'],
    ['trailing garbage', '1 2'],
    ['invalid UTF-8', null],
  ])('throws ERR_GRAIN_PAYLOAD_DECODE on %s', (_name, text) => {
    const bytes = text === null ? Uint8Array.of(0x22, 0xff, 0x22) : te.encode(text)
    expectCode(() => jsonCodec.decode(bytes, 0, bytes.length), 'ERR_GRAIN_PAYLOAD_DECODE', /invalid JSON payload/)
  })

  it('random bytes decode or throw ERR_GRAIN_PAYLOAD_DECODE, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 32 }), (bytes) => {
        try {
          jsonCodec.decode(bytes, 0, bytes.length)
        } catch (e) {
          if (!GrainClusterError.is(e, 'ERR_GRAIN_PAYLOAD_DECODE')) throw new Error(`expected ERR_GRAIN_PAYLOAD_DECODE, got ${String(e)}`, { cause: e })
        }
      }),
      { numRuns: 1000 },
    )
  })
})

describe('codecByName / encodeToBytes', () => {
  it('finds the built-in codecs; binary is the default', () => {
    expect(codecByName('binary')).toBe(binaryCodec)
    expect(codecByName('json')).toBe(jsonCodec)
    expect(DEFAULT_CODEC).toBe('binary')
    expect(codecByName(DEFAULT_CODEC)).toBe(binaryCodec)
  })

  it('rejects an unknown codec name with ERR_CONFIG_INVALID and an issue', () => {
    const e = catchErr(() => codecByName('msgpack'))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).reason).toContain('msgpack')
    expect((e as GrainClusterError).details).toEqual({ issues: ['codec must be one of binary, json (got msgpack)'] })
  })

  it('encodes into an exactly sized buffer and enforces maxBytes with ERR_GRAIN_PAYLOAD_TOO_LARGE', () => {
    const v = new Uint8Array(1000).fill(1)
    expect(encodeToBytes(binaryCodec, v)).toHaveLength(1005)
    expect(encodeToBytes(binaryCodec, v, 1005)).toHaveLength(1005)
    for (const [codec, max] of [
      [binaryCodec, 1004],
      [binaryCodec, 300],
      [jsonCodec, 512],
    ] as const) {
      const e = catchErr(() => encodeToBytes(codec, v, max))
      expect(GrainClusterError.is(e, 'ERR_GRAIN_PAYLOAD_TOO_LARGE')).toBe(true)
      expect((e as GrainClusterError).details).toEqual({ limit: max })
    }
  })
})
