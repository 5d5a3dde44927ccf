/**
 * Tell runs (src/wire/tell-run.ts): many tells of one kind and method in
 * one Envelope. The run must read back entry for entry (keys of any
 * script, payloads of any size that fits), stay a valid FlatBuffer for the
 * generated reader, leave no trace of an entry that did not fit or whose
 * payload failed to encode, and its walker must stop at any framing damage
 * without reading outside the run.
 */
import fc from 'fast-check'
import { ByteBuffer } from 'flatbuffers'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { EnvelopeReader, FLAGS, InternedString, type PayloadWriter } from '../../../src/wire/envelope.js'
import { Envelope } from '../../../src/wire/generated/graincluster/wire/envelope.js'
import { binaryCodec } from '../../../src/wire/payload-codec.js'
import { forEachTell, PID_INDEX_BYTES, runTells, TELL_RUN_BYTES, TELL_RUN_ENTRY_HEADER_BYTES, TellRunEntries, TellRunWriter } from '../../../src/wire/tell-run.js'

const KIND = new InternedString('counter')

function payloadOf(value: unknown): PayloadWriter {
  return (buf, off, max) => binaryCodec.encodeInto(value, buf, off, max)
}

/** Read a finished run back: [key, decoded payload] per entry, and the walker's error. */
function readRun(buf: Uint8Array, len: number): { r: EnvelopeReader; entries: Array<[string, unknown]>; error: string | undefined } {
  // The ring prefix holds the envelope's length; the envelope follows it.
  const envLen = new DataView(buf.buffer, buf.byteOffset).getUint32(0, true)
  expect(4 + ((envLen + 3) & ~3)).toBe(len)
  const r = new EnvelopeReader().reset(buf, 4, envLen)
  const it = new TellRunEntries().reset(r.buf, r.payloadOff, r.payloadLen)
  const entries: Array<[string, unknown]> = []
  while (it.next()) entries.push([r.keyAt(it.keyOff, it.keyLen), it.payloadLen === 0 ? undefined : binaryCodec.decode(r.buf, it.payloadOff, it.payloadLen)])
  return { r, entries, error: it.error }
}

describe('TellRunWriter and TellRunEntries', () => {
  it('round-trips entries of any key and payload, and the run is an Envelope flagged TELL_RUN', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }), fc.oneof(fc.integer(), fc.string(), fc.constant(undefined), fc.array(fc.integer(), { maxLength: 20 }))), { minLength: 1, maxLength: 60 }),
        (tells) => {
          const w = new TellRunWriter()
          expect(w.open(new Uint8Array(4096), 0, 4096, KIND, 7, 3)).toBe(true)
          const taken: Array<[string, unknown]> = []
          for (const [key, value] of tells) {
            const writer: PayloadWriter = value === undefined ? () => 0 : payloadOf(value)
            if (!w.append(key, writer)) break
            taken.push([key, value])
          }
          expect(w.entries).toBe(taken.length)
          const len = w.finish()
          expect(w.entries).toBe(0)
          const { r, entries, error } = readRun(w.buf, len)
          expect(error).toBeUndefined()
          expect(r.flags).toBe(FLAGS.TELL_RUN)
          expect(r.kind()).toBe('counter')
          expect(r.messageType).toBe(7)
          expect(r.schemaVersion).toBe(3)
          expect(r.keyOff).toBe(-1)
          expect(entries).toEqual(taken)
          // The flatc-generated reader sees the same envelope.
          const g = Envelope.getRootAsEnvelope(new ByteBuffer(w.buf.slice(4, 4 + r.length)))
          expect(g.flags()).toBe(FLAGS.TELL_RUN)
          expect(g.messageType()).toBe(7)
          expect(g.payloadLength()).toBe(r.payloadLen)
        },
      ),
      { numRuns: 200 },
    )
  })

  it('refuses an entry that does not fit, leaving the run as it was; a fresh run takes it', () => {
    const w = new TellRunWriter()
    const buf = new Uint8Array(256)
    w.open(buf, 0, 256, KIND, 1, 1)
    let n = 0
    while (w.append(`key-${n}`, payloadOf('x'.repeat(20)))) n++
    expect(n).toBeGreaterThan(2)
    const len = w.finish()
    expect(len).toBeLessThanOrEqual(256)
    expect(readRun(w.buf, len).entries.map(([k]) => k)).toEqual(Array.from({ length: n }, (_, i) => `key-${i}`))
    w.open(buf, 0, 256, KIND, 1, 1)
    expect(w.append(`key-${n}`, payloadOf('x'.repeat(20)))).toBe(true)
    expect(readRun(w.buf, w.finish()).entries).toEqual([[`key-${n}`, 'x'.repeat(20)]])
    // Too large for any run of this size.
    w.open(buf, 0, 256, KIND, 1, 1)
    expect(w.append('big', payloadOf('y'.repeat(300)))).toBe(false)
    expect(w.entries).toBe(0)
  })

  it('a payload writer that throws leaves no trace of its entry', () => {
    const w = new TellRunWriter()
    w.open(new Uint8Array(TELL_RUN_BYTES), 0, TELL_RUN_BYTES, KIND, 2, 1)
    expect(w.append('a', payloadOf(1))).toBe(true)
    expect(() =>
      w.append('b', () => {
        throw new Error('unencodable')
      }),
    ).toThrow('unencodable')
    expect(w.append('c', payloadOf(3))).toBe(true)
    expect(readRun(w.buf, w.finish()).entries).toEqual([
      ['a', 1],
      ['c', 3],
    ])
  })

  it('isFor names the kind, method and version of the open run only', () => {
    const w = new TellRunWriter()
    w.open(new Uint8Array(TELL_RUN_BYTES), 0, TELL_RUN_BYTES, KIND, 2, 1)
    expect(w.isFor(KIND, 2, 1)).toBe(false) // open but empty: nothing to join
    w.append('a', payloadOf(1))
    expect(w.isFor(KIND, 2, 1)).toBe(true)
    expect(w.isFor(KIND, 3, 1)).toBe(false)
    expect(w.isFor(KIND, 2, 2)).toBe(false)
    expect(w.isFor(new InternedString('counter'), 2, 1)).toBe(false)
    w.finish()
    expect(w.isFor(KIND, 2, 1)).toBe(false)
  })

  it('a PID run keys each tell by its u16 PID index, is flagged TELL_RUN | PID_RUN, and never mixes with keyed tells', () => {
    const w = new TellRunWriter()
    const buf = new Uint8Array(TELL_RUN_BYTES)
    expect(w.open(buf, 0, buf.length, KIND, 5, 2, 0, true)).toBe(true)
    const indexes = [0, 1, 255, 256, 4097, 65_535]
    for (const [i, index] of indexes.entries()) expect(w.appendIndex(index, payloadOf(i))).toBe(true)
    expect(w.isFor(KIND, 5, 2, true)).toBe(true)
    expect(w.isFor(KIND, 5, 2)).toBe(false) // a keyed tell of the same kind and method opens its own run
    const len = w.finish()
    const envLen = new DataView(buf.buffer).getUint32(0, true)
    const r = new EnvelopeReader().reset(buf, 4, envLen)
    expect(r.flags).toBe(FLAGS.TELL_RUN | FLAGS.PID_RUN)
    expect(4 + ((envLen + 3) & ~3)).toBe(len)
    const it = new TellRunEntries().reset(r.buf, r.payloadOff, r.payloadLen)
    const read: Array<[number, unknown]> = []
    while (it.next()) {
      expect(it.keyLen).toBe(PID_INDEX_BYTES)
      read.push([buf[it.keyOff]! | (buf[it.keyOff + 1]! << 8), binaryCodec.decode(buf, it.payloadOff, it.payloadLen)])
    }
    expect(it.error).toBeUndefined()
    expect(read).toEqual(indexes.map((index, i) => [index, i]))
    expect(runTells(buf, 4, envLen)).toBe(indexes.length)
    // Its keys mean nothing off its node: the one-by-one paths refuse it rather than invent grain keys.
    expect(() => forEachTell(buf, 4, envLen, () => {})).toThrow(GrainClusterError)
    // Full: the entry is refused and the run stays as it was.
    w.open(new Uint8Array(128), 0, 128, KIND, 5, 2, 0, true)
    let n = 0
    while (w.appendIndex(n, payloadOf('x'.repeat(10)))) n++
    expect(n).toBeGreaterThan(0)
    expect(w.entries).toBe(n)
  })

  it('the walker stops at a truncated header, an empty key or an overrun, after the good entries', () => {
    const w = new TellRunWriter()
    w.open(new Uint8Array(TELL_RUN_BYTES), 0, TELL_RUN_BYTES, KIND, 1, 1)
    for (const k of ['k1', 'k2', 'k3']) w.append(k, payloadOf(k))
    const len = w.finish()
    const { r } = readRun(w.buf, len)
    const entryBytes = TELL_RUN_ENTRY_HEADER_BYTES + 2 + binaryCodec.encodeInto('k1', new Uint8Array(64), 0, 64)
    const walk = (buf: Uint8Array, off: number, n: number): { keys: string[]; error: string | undefined } => {
      const it = new TellRunEntries().reset(buf, off, n)
      const keys: string[] = []
      while (it.next()) keys.push(new TextDecoder().decode(buf.subarray(it.keyOff, it.keyOff + it.keyLen)))
      expect(it.next()).toBe(false)
      return { keys, error: it.error }
    }
    expect(walk(r.buf, r.payloadOff, r.payloadLen)).toEqual({ keys: ['k1', 'k2', 'k3'], error: undefined })
    // Cut inside the third entry's header, then inside its key.
    expect(walk(r.buf, r.payloadOff, 2 * entryBytes + 3)).toMatchObject({ keys: ['k1', 'k2'], error: expect.stringContaining('truncated entry header') })
    expect(walk(r.buf, r.payloadOff, 2 * entryBytes + TELL_RUN_ENTRY_HEADER_BYTES + 1)).toMatchObject({ keys: ['k1', 'k2'], error: expect.stringContaining('overruns') })
    // A second entry claiming an empty key, then one claiming a huge payload.
    const bad = r.buf.slice(r.payloadOff, r.payloadOff + r.payloadLen)
    bad[entryBytes] = 0
    bad[entryBytes + 1] = 0
    expect(walk(bad, 0, bad.length)).toMatchObject({ keys: ['k1'], error: expect.stringContaining('empty key') })
    const huge = r.buf.slice(r.payloadOff, r.payloadOff + r.payloadLen)
    new DataView(huge.buffer).setUint32(entryBytes + 2, 0xffffffff, true)
    expect(walk(huge, 0, huge.length)).toMatchObject({ keys: ['k1'], error: expect.stringContaining('overruns') })
  })

  it('no damage to a run makes the walker read outside it', () => {
    const w = new TellRunWriter()
    w.open(new Uint8Array(TELL_RUN_BYTES), 0, TELL_RUN_BYTES, KIND, 1, 1)
    for (let i = 0; i < 20; i++) w.append(`key-${i}`, payloadOf(i))
    const { r } = readRun(w.buf, w.finish())
    const run = r.buf.slice(r.payloadOff, r.payloadOff + r.payloadLen)
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(run.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const b = run.slice()
        for (const [at, v] of edits) b[at] = v
        // Embedded in a larger buffer: every reported entry must lie inside [8, 8 + length).
        const host = new Uint8Array(b.length + 16)
        host.set(b, 8)
        const it = new TellRunEntries().reset(host, 8, b.length)
        let n = 0
        while (it.next()) {
          n++
          expect(it.keyLen).toBeGreaterThan(0)
          expect(it.keyOff).toBeGreaterThanOrEqual(8)
          expect(it.payloadOff + it.payloadLen).toBeLessThanOrEqual(8 + b.length)
        }
        expect(n).toBeLessThanOrEqual(20 + b.length)
      }),
      { numRuns: 300 },
    )
  })
})
