import fc from 'fast-check'
import { Builder, ByteBuffer, Encoding } from 'flatbuffers'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { ENVELOPE_FIXED_BYTES, EnvelopeReader, EnvelopeWriter, FLAGS, InternedString } from '../../../src/wire/envelope.js'
import { Envelope } from '../../../src/wire/generated/graincluster/wire/envelope.js'
import { binaryCodec } from '../../../src/wire/payload-codec.js'
import { catchErr } from '../../helpers/catch-error.js'

const te = new TextEncoder()
const CANARY = 0xa5

interface Fields {
  kind: string | null
  key: string | null
  sender: string | null
  partition: number
  correlationId: number
  messageType: number
  schemaVersion: number
  flags: number
  replyTo: number
  timeoutMs: number
  payload: Uint8Array
  /** Write the payload through payloadWriter instead of payloadBytes. */
  viaWriter: boolean
}

/** Any UTF-16 code units (lone surrogates included), or real code points, short and long. */
const textArb = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 30 }).map((cs) => String.fromCharCode(...cs)),
)
const u32 = fc.integer({ min: 0, max: 0xffffffff })
const u16 = fc.integer({ min: 0, max: 0xffff })
const fieldsArb: fc.Arbitrary<Fields> = fc.record({
  kind: fc.option(textArb, { nil: null }),
  key: fc.option(textArb, { nil: null }),
  sender: fc.option(textArb, { nil: null }),
  partition: u32,
  correlationId: u32,
  messageType: u32,
  schemaVersion: u16,
  flags: u16,
  replyTo: u32,
  timeoutMs: u32,
  payload: fc.uint8Array({ maxLength: 300 }),
  viaWriter: fc.boolean(),
})

const FULL: Fields = {
  kind: 'Counter',
  key: 'user-42/é',
  sender: 'grain://node-1/Caller/x',
  partition: 17,
  correlationId: 0xdeadbeef,
  messageType: 0x12345678,
  schemaVersion: 3,
  flags: FLAGS.ASK | FLAGS.CONTROL,
  replyTo: 5,
  timeoutMs: 30_000,
  payload: Uint8Array.from([1, 2, 3, 4, 5, 6, 7]),
  viaWriter: false,
}

function writer(f: Fields): EnvelopeWriter {
  const w = new EnvelopeWriter()
  w.kind = f.kind === null ? null : new InternedString(f.kind)
  w.key = f.key
  w.sender = f.sender
  w.partition = f.partition
  w.correlationId = f.correlationId
  w.messageType = f.messageType
  w.schemaVersion = f.schemaVersion
  w.flags = f.flags
  w.replyTo = f.replyTo
  w.timeoutMs = f.timeoutMs
  if (f.viaWriter) {
    const p = f.payload
    w.payloadWriter = (buf, off, max) => {
      if (p.length > max) return -1
      buf.set(p, off)
      return p.length
    }
  } else w.payloadBytes = f.payload
  return w
}

/** Generated-builder encoding of the same fields (absent strings stay absent). */
function buildGenerated(f: Fields, opts: { initialSize: number; forceDefaults: boolean; withPayload: boolean }): Uint8Array {
  const b = new Builder(opts.initialSize)
  b.forceDefaults(opts.forceDefaults)
  const kind = f.kind === null ? 0 : b.createString(f.kind)
  const key = f.key === null ? 0 : b.createString(f.key)
  const sender = f.sender === null ? 0 : b.createString(f.sender)
  const payload = opts.withPayload ? Envelope.createPayloadVector(b, f.payload) : 0
  if (opts.forceDefaults) {
    // The start/add/end path, fields added in a different order than the ids.
    Envelope.startEnvelope(b)
    Envelope.addTimeoutMs(b, f.timeoutMs)
    Envelope.addReplyTo(b, f.replyTo)
    if (payload !== 0) Envelope.addPayload(b, payload)
    Envelope.addFlags(b, f.flags)
    Envelope.addSchemaVersion(b, f.schemaVersion)
    Envelope.addMessageType(b, f.messageType)
    Envelope.addCorrelationId(b, f.correlationId)
    if (sender !== 0) Envelope.addSender(b, sender)
    Envelope.addPartition(b, f.partition)
    if (key !== 0) Envelope.addKey(b, key)
    if (kind !== 0) Envelope.addKind(b, kind)
    Envelope.finishEnvelopeBuffer(b, Envelope.endEnvelope(b))
  } else {
    b.finish(Envelope.createEnvelope(b, kind, key, f.partition, sender, f.correlationId, f.messageType, f.schemaVersion, f.flags, payload, f.replyTo, f.timeoutMs))
  }
  return b.asUint8Array()
}

/** What a string reads back as after UTF-8 (lone surrogates become U+FFFD). */
const viaUtf8 = (s: string): string => new TextDecoder('utf-8', { ignoreBOM: true }).decode(te.encode(s))

function expectFields(r: EnvelopeReader, f: Fields, payloadPresent = true): void {
  expect(r.kind()).toBe(f.kind === null ? '' : viaUtf8(f.kind))
  expect(r.key()).toBe(f.key === null ? '' : viaUtf8(f.key))
  expect(r.sender()).toBe(f.sender === null ? '' : viaUtf8(f.sender))
  expect(r.kindOff < 0).toBe(f.kind === null)
  expect(r.keyOff < 0).toBe(f.key === null)
  expect(r.senderOff < 0).toBe(f.sender === null)
  expect(r.partition).toBe(f.partition)
  expect(r.correlationId).toBe(f.correlationId)
  expect(r.messageType).toBe(f.messageType)
  expect(r.schemaVersion).toBe(f.schemaVersion)
  expect(r.flags).toBe(f.flags)
  expect(r.replyTo).toBe(f.replyTo)
  expect(r.timeoutMs).toBe(f.timeoutMs)
  expect(r.payload()).toEqual(payloadPresent ? f.payload : new Uint8Array(0))
  expect(r.payloadOff < 0).toBe(!payloadPresent)
}


/** The call must throw, and only a GrainClusterError with ERR_FRAME_MALFORMED. */
function expectMalformed(fn: () => unknown, reason?: RegExp): void {
  const e = catchErr(fn)
  expect(e, 'expected ERR_FRAME_MALFORMED, nothing was thrown').toBeInstanceOf(GrainClusterError)
  expect((e as GrainClusterError).code).toBe('ERR_FRAME_MALFORMED')
  if (reason !== undefined) expect((e as GrainClusterError).reason).toMatch(reason)
}

/** Parse and touch every field; anything thrown must be ERR_FRAME_MALFORMED. */
function readAllOrMalformed(buf: Uint8Array, off: number, len: number): boolean {
  const r = new EnvelopeReader()
  try {
    r.reset(buf, off, len)
    r.kind()
    r.key()
    r.sender()
    const end = off + len
    for (const [o, n] of [
      [r.kindOff, r.kindLen],
      [r.keyOff, r.keyLen],
      [r.senderOff, r.senderLen],
      [r.payloadOff, r.payloadLen],
    ] as const) {
      if (o >= 0) {
        expect(o).toBeGreaterThanOrEqual(off)
        expect(o + n).toBeLessThanOrEqual(end)
      }
    }
    return true
  } catch (e) {
    if (!GrainClusterError.is(e, 'ERR_FRAME_MALFORMED')) throw new Error(`expected ERR_FRAME_MALFORMED, got ${String(e)}`, { cause: e })
    return false
  }
}

const r32 = (b: Uint8Array, o: number): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(o, true)
const w32 = (b: Uint8Array, o: number, v: number): void => new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(o, v >>> 0, true)
const w16 = (b: Uint8Array, o: number, v: number): void => new DataView(b.buffer, b.byteOffset, b.byteLength).setUint16(o, v, true)

describe('EnvelopeWriter -> EnvelopeReader', () => {
  it('round-trips every field at any offset, leaving the bytes around the frame alone', () => {
    fc.assert(
      fc.property(fieldsArb, fc.nat(9), (f, off) => {
        const w = writer(f)
        const room = 2048
        const buf = new Uint8Array(off + room + 16).fill(CANARY)
        const n = w.writeInto(buf, off, room)
        expect(n).toBeGreaterThanOrEqual(ENVELOPE_FIXED_BYTES + 4)
        expect(buf.subarray(0, off).every((b) => b === CANARY)).toBe(true)
        expect(buf.subarray(off + n).every((b) => b === CANARY)).toBe(true)
        const r = new EnvelopeReader().reset(buf, off, n)
        expect(r.start).toBe(off)
        expect(r.length).toBe(n)
        expectFields(r, f)
        expect(r.copy()).toEqual(buf.slice(off, off + n))
      }),
      { numRuns: 300 },
    )
  })

  it('toBytes() gives the same bytes as writeInto() at offset 0', () => {
    fc.assert(
      fc.property(fieldsArb, (f) => {
        const w = writer(f)
        const buf = new Uint8Array(4096)
        const n = w.writeInto(buf, 0, buf.length)
        expect(w.toBytes()).toEqual(buf.subarray(0, n))
      }),
    )
  })

  it('reads absent fields as defaults after reset(), and the writer is reusable', () => {
    const w = writer(FULL)
    const first = w.toBytes()
    w.reset()
    w.key = 'only-key'
    const r = new EnvelopeReader().reset(w.toBytes(), 0, w.toBytes().length)
    expectFields(r, { ...FULL, kind: null, key: 'only-key', sender: null, partition: 0, correlationId: 0, messageType: 0, schemaVersion: 0, flags: 0, replyTo: 0, timeoutMs: 0, payload: new Uint8Array(0) })
    // The first envelope is still intact (toBytes copies).
    expectFields(new EnvelopeReader().reset(first, 0, first.length), FULL)
  })

  it('encodes a payload through a payload codec straight into the frame', () => {
    const value = { n: 1, list: ['a', 2n, new Date(5)], bytes: Uint8Array.of(9) }
    const w = new EnvelopeWriter()
    w.key = 'k'
    w.payloadWriter = (buf, off, max) => binaryCodec.encodeInto(value, buf, off, max)
    const bytes = w.toBytes(80) // forces a few retries with a larger room
    const r = new EnvelopeReader().reset(bytes, 0, bytes.length)
    expect(binaryCodec.decode(r.buf, r.payloadOff, r.payloadLen)).toEqual(value)
  })

  it('propagates a throwing payload writer (e.g. an unencodable value)', () => {
    const w = new EnvelopeWriter()
    w.payloadWriter = (buf, off, max) => binaryCodec.encodeInto(new Map(), buf, off, max)
    const e = catchErr(() => w.toBytes())
    expect(GrainClusterError.is(e, 'ERR_GRAIN_PAYLOAD_ENCODE')).toBe(true)
  })

  it('toBytes grows to fit a large payload and gives up past maxRoom with ERR_GRAIN_PAYLOAD_TOO_LARGE', () => {
    const w = new EnvelopeWriter()
    w.payloadBytes = new Uint8Array(100_000).fill(7)
    const bytes = w.toBytes()
    expect(new EnvelopeReader().reset(bytes, 0, bytes.length).payload()).toEqual(w.payloadBytes)
    const e = catchErr(() => w.toBytes(64, 4096))
    expect(GrainClusterError.is(e, 'ERR_GRAIN_PAYLOAD_TOO_LARGE')).toBe(true)
    expect((e as GrainClusterError).details).toEqual({ limit: 4096 })
  })

  it('keyEquals compares the raw key bytes', () => {
    const bytes = writer(FULL).toBytes()
    const r = new EnvelopeReader().reset(bytes, 0, bytes.length)
    const key = te.encode(FULL.key!)
    expect(r.keyEquals(key, key.length)).toBe(true)
    expect(r.keyEquals(key, key.length - 1)).toBe(false)
    const other = key.slice()
    other[0] = other[0]! ^ 1
    expect(r.keyEquals(other, other.length)).toBe(false)
    const noKey = writer({ ...FULL, key: null }).toBytes()
    expect(new EnvelopeReader().reset(noKey, 0, noKey.length).keyEquals(new Uint8Array(0), 0)).toBe(false)
  })

  it('kindEquals compares the kind bytes word by word and then the tail, for every kind length', () => {
    for (let len = 1; len <= 19; len++) {
      const kind = 'abcdefghijklmnopqrs'.slice(0, len)
      const bytes = writer({ ...FULL, kind }).toBytes()
      const r = new EnvelopeReader().reset(bytes, 0, bytes.length)
      expect(r.kindEquals(new InternedString(kind))).toBe(true)
      // Differs in one byte, wherever that byte falls (a full word or the tail).
      for (let i = 0; i < len; i++) {
        const other = `${kind.slice(0, i)}Z${kind.slice(i + 1)}`
        expect(r.kindEquals(new InternedString(other))).toBe(false)
      }
      expect(r.kindEquals(new InternedString(`${kind}x`))).toBe(false)
      if (len > 1) expect(r.kindEquals(new InternedString(kind.slice(0, -1)))).toBe(false)
    }
    const noKind = writer({ ...FULL, kind: null }).toBytes()
    expect(new EnvelopeReader().reset(noKind, 0, noKind.length).kindEquals(new InternedString('x'))).toBe(false)
  })

  it('key() returns the same text for the same key bytes whatever follows them, and keyCache.slot names its cache slot', () => {
    const r = new EnvelopeReader()
    const buf = new Uint8Array(512)
    const slots = new Map<string, number>()
    for (let round = 0; round < 3; round++) {
      for (const key of ['a', 'ab', 'abc', 'abcd', 'user-42', 'é-key', 'x'.repeat(64), 'y'.repeat(65), 'z'.repeat(200)]) {
        buf.fill(round * 85 + 1) // different padding bytes after the key each round
        const n = writer({ ...FULL, key }).writeInto(buf, 0, buf.length)
        r.reset(buf, 0, n)
        expect(r.key()).toBe(key)
        const ascii = [...key].every((c) => c.charCodeAt(0) < 0x80)
        // Short ASCII keys are cached (same slot every time); others are not.
        if (ascii && key.length <= 64) {
          expect(r.keyCache.slot).toBeGreaterThanOrEqual(0)
          expect(r.keyCache.slot).toBeLessThan(r.keyCache.slots)
          if (slots.has(key)) expect(r.keyCache.slot).toBe(slots.get(key))
          slots.set(key, r.keyCache.slot)
        } else expect(r.keyCache.slot).toBe(-1)
      }
    }
  })

  it('exposes the flags bit set', () => {
    expect(FLAGS).toEqual({ ASK: 1, REPLY: 2, ERROR: 4, CONTROL: 8, TELL_RUN: 16, PID_RUN: 32 })
    const bytes = writer({ ...FULL, flags: FLAGS.REPLY | FLAGS.ERROR }).toBytes()
    const r = new EnvelopeReader().reset(bytes, 0, bytes.length)
    expect(r.hasFlag(FLAGS.REPLY)).toBe(true)
    expect(r.hasFlag(FLAGS.ERROR)).toBe(true)
    expect(r.hasFlag(FLAGS.ASK)).toBe(false)
    expect(r.hasFlag(FLAGS.CONTROL)).toBe(false)
  })
})

describe('EnvelopeWriter.writeInto bounds', () => {
  it('returns -1 for every room smaller than the envelope and never writes past off+room', () => {
    fc.assert(
      fc.property(fieldsArb, fc.nat(7), (f, off) => {
        const w = writer(f)
        const big = new Uint8Array(off + 4096)
        const n = w.writeInto(big, off, 4096) // length depends on off % 4 (padding is absolute)
        // Every room below n, densely near the answer and sparsely below.
        const rooms = new Set<number>([0, 1, ENVELOPE_FIXED_BYTES + 3, ENVELOPE_FIXED_BYTES + 4, n - 1, n - 2, n - 5])
        for (let room = n - 1; room >= 0; room -= 1 + (n - room) * 2) rooms.add(room)
        for (const room of rooms) {
          if (room < 0 || room >= n) continue
          const buf = new Uint8Array(off + n + 16).fill(CANARY)
          expect(w.writeInto(buf, off, room)).toBe(-1)
          expect(buf.subarray(0, off).every((b) => b === CANARY)).toBe(true)
          expect(buf.subarray(off + room).every((b) => b === CANARY)).toBe(true)
        }
        const exact = new Uint8Array(off + n + 16).fill(CANARY)
        expect(w.writeInto(exact, off, n)).toBe(n)
        expect(exact.subarray(off + n).every((b) => b === CANARY)).toBe(true)
      }),
      { numRuns: 150 },
    )
  })

  it('is exhaustive for one full envelope: every room in [0, n) fails cleanly', () => {
    for (const viaWriter of [false, true]) {
      const w = writer({ ...FULL, viaWriter })
      const n = w.toBytes().length
      for (let room = 0; room < n; room++) {
        const buf = new Uint8Array(n + 16).fill(CANARY)
        expect(w.writeInto(buf, 0, room)).toBe(-1)
        expect(buf.subarray(room).every((b) => b === CANARY)).toBe(true)
      }
    }
  })
})

describe('wire compatibility with the flatc-generated code', () => {
  it('hand-written bytes read correctly with the generated Envelope', () => {
    fc.assert(
      fc.property(fieldsArb, fc.nat(9), (f, off) => {
        const w = writer(f)
        const buf = new Uint8Array(off + 2048)
        const n = w.writeInto(buf, off, 2048)
        const e = Envelope.getRootAsEnvelope(new ByteBuffer(buf.subarray(off, off + n)))
        const str = (s: string | null): Uint8Array | null => (s === null ? null : te.encode(s))
        expect(e.kind(Encoding.UTF8_BYTES)).toEqual(str(f.kind))
        expect(e.key(Encoding.UTF8_BYTES)).toEqual(str(f.key))
        expect(e.sender(Encoding.UTF8_BYTES)).toEqual(str(f.sender))
        expect(e.partition()).toBe(f.partition)
        expect(e.correlationId()).toBe(f.correlationId)
        expect(e.messageType()).toBe(f.messageType)
        expect(e.schemaVersion()).toBe(f.schemaVersion)
        expect(e.flags()).toBe(f.flags)
        expect(e.replyTo()).toBe(f.replyTo)
        expect(e.payloadLength()).toBe(f.payload.length)
        expect(e.payloadArray()).toEqual(f.payload)
      }),
      { numRuns: 300 },
    )
  })

  it('hand-written strings decode to the same text with the generated reader', () => {
    const bytes = writer(FULL).toBytes()
    const e = Envelope.getRootAsEnvelope(new ByteBuffer(bytes))
    expect(e.kind()).toBe(FULL.kind)
    expect(e.key()).toBe(FULL.key)
    expect(e.sender()).toBe(FULL.sender)
  })

  it('generated-builder bytes read correctly with EnvelopeReader (createEnvelope and start/add/end, at any offset)', () => {
    fc.assert(
      fc.property(
        fieldsArb,
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom(1, 16, 1024),
        fc.nat(9),
        (f, forceDefaults, withPayload, initialSize, off) => {
          const bytes = buildGenerated(f, { initialSize, forceDefaults, withPayload })
          const r = new EnvelopeReader().reset(bytes, 0, bytes.length)
          expectFields(r, f, withPayload)
          // Copied into a larger buffer at an arbitrary offset (as in ring memory).
          const buf = new Uint8Array(off + bytes.length + 8).fill(CANARY)
          buf.set(bytes, off)
          expectFields(new EnvelopeReader().reset(buf, off, bytes.length), f, withPayload)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('reads an envelope written before timeout_ms (a vtable of 10 fields, 68 fixed bytes) with timeoutMs 0', () => {
    // The hand-written layout as it was: root 28, vtable 24 bytes at 4, table of 40 bytes at 28.
    const f = { ...FULL, timeoutMs: 0 }
    const now = writer(f).toBytes()
    const old = new Uint8Array(now.length - 8)
    const dv = new DataView(old.buffer)
    dv.setUint32(0, 28, true)
    dv.setUint16(4, 24, true)
    dv.setUint16(6, 40, true)
    old.set(now.subarray(8, 8 + 20), 8) // entries of fields 0..9 (offsets within the table are unchanged)
    dv.setInt32(28, 24, true)
    old.set(now.subarray(36, 72), 32) // table slots +4..+40
    // Strings and payload follow 8 bytes earlier; their uoffsets are relative to their slots, which moved by 4 less than they did.
    old.set(now.subarray(76), 68)
    for (const slot of [4, 8, 16, 28]) dv.setUint32(28 + slot, new DataView(now.buffer).getUint32(32 + slot, true) - 4, true)
    expect(Envelope.getRootAsEnvelope(new ByteBuffer(old)).replyTo()).toBe(f.replyTo)
    expectFields(new EnvelopeReader().reset(old, 0, old.length), f)
  })

  it('reads all-default fields that the builder omitted as zero / absent', () => {
    const b = new Builder(1)
    Envelope.startEnvelope(b)
    b.finish(Envelope.endEnvelope(b))
    const bytes = b.asUint8Array()
    const r = new EnvelopeReader().reset(bytes, 0, bytes.length)
    expectFields(r, { ...FULL, kind: null, key: null, sender: null, partition: 0, correlationId: 0, messageType: 0, schemaVersion: 0, flags: 0, replyTo: 0, timeoutMs: 0, payload: new Uint8Array(0) }, false)
  })
})

describe('EnvelopeReader rejects malformed frames with ERR_FRAME_MALFORMED', () => {
  const good = writer(FULL).toBytes()
  const n = good.length
  const T = r32(good, 0) // table position
  const VT = T - r32(good, T) // vtable position
  const keyLenAt = new EnvelopeReader().reset(good, 0, n).keyOff - 4

  it('sanity: the frame being corrupted is valid', () => {
    expect(T).toBe(32)
    expect(VT).toBe(4)
    expect(readAllOrMalformed(good, 0, n)).toBe(true)
  })

  it('every truncation of a valid frame', () => {
    for (const [name, f] of [
      ['full', FULL],
      ['empty', { ...FULL, kind: null, key: null, sender: null, payload: new Uint8Array(0) }],
      ['payload only', { ...FULL, kind: null, key: null, sender: null }],
    ] as const) {
      const bytes = writer(f).toBytes()
      for (let len = 0; len < bytes.length; len++) {
        expectMalformed(() => new EnvelopeReader().reset(bytes, 0, len))
        expectMalformed(() => new EnvelopeReader().reset(bytes.slice(0, len), 0, len))
      }
      expect(readAllOrMalformed(bytes, 0, bytes.length), name).toBe(true)
    }
  })

  it('truncations of generated-builder frames never read outside the frame', () => {
    fc.assert(
      fc.property(fieldsArb, (f) => {
        const bytes = buildGenerated(f, { initialSize: 64, forceDefaults: false, withPayload: true })
        for (let len = 0; len < bytes.length; len += 1 + (len >> 3)) readAllOrMalformed(bytes.slice(0, len), 0, len)
      }),
      { numRuns: 50 },
    )
  })

  it('random bytes: parses or throws ERR_FRAME_MALFORMED, nothing else, never out of bounds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.nat(8), (bytes, off) => {
        const buf = new Uint8Array(off + bytes.length)
        buf.set(bytes, off)
        readAllOrMalformed(buf, off, bytes.length)
      }),
      { numRuns: 2000 },
    )
  })

  it('random corruption of a valid frame: parses or throws ERR_FRAME_MALFORMED, nothing else', () => {
    let rejected = 0
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(n - 1), fc.nat(255)), { minLength: 1, maxLength: 6 }), (edits) => {
        const bytes = good.slice()
        for (const [i, v] of edits) bytes[i] = v
        if (!readAllOrMalformed(bytes, 0, n)) rejected++
      }),
      { numRuns: 3000 },
    )
    expect(rejected).toBeGreaterThan(0)
  })

  it.each([
    ['beyond the frame', 0xfffffff0],
    ['equal to the length', n],
    ['unaligned', 30],
    ['inside the header', 0],
  ])('root offset %s', (_name, root) => {
    const bytes = good.slice()
    w32(bytes, 0, root)
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /root offset/)
  })

  it('frames shorter than a header or outside their buffer', () => {
    expectMalformed(() => new EnvelopeReader().reset(good, 0, 11), /shorter/)
    expectMalformed(() => new EnvelopeReader().reset(good, 1, n), /outside/)
    expectMalformed(() => new EnvelopeReader().reset(good, -1, n), /outside/)
  })

  it.each([
    ['before the frame', 1000],
    ['past the frame end', -1000],
    ['at an odd position', 1],
  ])('vtable %s', (_name, soffset) => {
    const bytes = good.slice()
    w32(bytes, T, soffset | 0)
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /vtable offset/)
  })

  it.each([
    ['too small', 2],
    ['odd', 25],
    ['past the frame end', 0xfffe],
  ])('vtable size %s', (_name, size) => {
    const bytes = good.slice()
    w16(bytes, VT, size)
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /vtable size/)
  })

  it('table size past the frame end', () => {
    const bytes = good.slice()
    w16(bytes, VT + 2, 0xfff0)
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /table size/)
  })

  it('a field slot outside the table', () => {
    const bytes = good.slice()
    w16(bytes, VT + 4 + 2 * 2, 42) // partition (4 bytes) at 42 of a 44-byte table
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /field 2/)
  })

  it('a string offset pointing past the end', () => {
    const bytes = good.slice()
    w32(bytes, T + 8, 0x7ffffff0) // key uoffset
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /key offset/)
  })

  it.each([
    ['huge', 0xffffffff],
    ['one byte too long', n - keyLenAt - 4 + 1],
  ])('a string length that runs past the end (%s)', (_name, len) => {
    const bytes = good.slice()
    w32(bytes, keyLenAt, len)
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /key length/)
  })

  it('a payload length that runs past the end', () => {
    const bytes = good.slice()
    w32(bytes, n - FULL.payload.length - 4, FULL.payload.length + 1)
    expectMalformed(() => new EnvelopeReader().reset(bytes, 0, n), /payload length/)
  })

  it.each([
    ['kind', 'Counter', (r: EnvelopeReader) => r.kind()],
    ['key', 'short-key', (r: EnvelopeReader) => r.key()],
    ['key', 'a-key-longer-than-twenty-four-bytes', (r: EnvelopeReader) => r.key()],
    ['sender', 'grain://n/k/x', (r: EnvelopeReader) => r.sender()],
  ])('invalid UTF-8 in %s (%s) fails on access, not with a TypeError', (field, text, get) => {
    const bytes = writer({ ...FULL, [field]: text }).toBytes()
    const probe = new EnvelopeReader().reset(bytes, 0, bytes.length)
    const at = field === 'kind' ? probe.kindOff : field === 'key' ? probe.keyOff : probe.senderOff
    bytes[at + 3] = 0xff
    const r = new EnvelopeReader().reset(bytes, 0, bytes.length) // structure is still fine
    expectMalformed(() => get(r), new RegExp(`${field} is not valid UTF-8`))
  })
})
