/**
 * Tell batches (remote/tell-batches.ts): the sender's grouping per
 * partition and the receiver's check before a batch is copied into a ring
 * as one block.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { FRAME_TELL_BATCH, TELL_BATCH_BYTES, TELL_BATCH_HEADER_BYTES, TELL_BATCH_MAX_TELLS, TellBatches, batchEntries, checkTellBatch } from '../../../src/remote/tell-batches.js'
import { forEachTell } from '../../../src/wire/tell-run.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString, peekRouting, peekRoutingGeneral } from '../../../src/wire/envelope.js'

const KIND = new InternedString('counter')

/** An EnvelopeWrite for a tell (or other flags) of `key` in `partition` carrying `payload`. */
function tell(partition: number, key: string, payload: Uint8Array, flags = 0): (buf: Uint8Array, off: number, max: number) => number {
  return (buf, off, max) => {
    const w = new EnvelopeWriter()
    w.kind = KIND
    w.key = key
    w.partition = partition
    w.messageType = 7
    w.flags = flags
    w.payloadBytes = payload
    return w.writeInto(buf, off, max)
  }
}

/** Flush every open group of `authority`, copying each frame (they are views of reused buffers). */
function flushed(b: TellBatches, authority: string): Uint8Array[] {
  const out: Uint8Array[] = []
  b.flush(authority, (f) => out.push(f.slice()))
  return out
}

function keysOf(frame: Uint8Array): string[] {
  const r = new EnvelopeReader()
  return batchEntries(frame).map(([off, len]) => r.reset(frame, off, len).key())
}

describe('TellBatches (sender)', () => {
  it('groups tells per partition and authority, in order, into frames the receiver accepts', () => {
    const b = new TellBatches()
    const sent: Uint8Array[] = []
    for (let i = 0; i < 30; i++) expect(b.append(i % 2 === 0 ? 'a:1' : 'b:2', i % 3, tell(i % 3, `k${i}`, new Uint8Array([i])), (f) => sent.push(f.slice()))).toBe(true)
    expect(sent).toEqual([]) // nothing full yet
    expect(b.has('a:1')).toBe(true)
    const a = flushed(b, 'a:1')
    expect(b.has('a:1')).toBe(false)
    expect(a.map((f) => checkTellBatch(f, 1 << 16))).toEqual([0, 2, 1].map((p) => expect.objectContaining({ partition: p, off: TELL_BATCH_HEADER_BYTES, frames: 5 })))
    for (const f of a) {
      expect(f[0]).toBe(FRAME_TELL_BATCH)
      const p = f[4]!
      expect(keysOf(f)).toEqual(Array.from({ length: 30 }, (_, i) => i).filter((i) => i % 2 === 0 && i % 3 === p).map((i) => `k${i}`))
    }
    expect(flushed(b, 'b:2').flatMap(keysOf).sort()).toEqual(Array.from({ length: 15 }, (_, i) => `k${2 * i + 1}`).sort())
  })

  it('a full group is handed over first and the tell goes into the same, emptied, buffer; an envelope too large for any group is refused', () => {
    const b = new TellBatches()
    const sent: Uint8Array[] = []
    const payload = new Uint8Array(1000)
    let n = 0
    while (sent.length === 0) expect(b.append('a:1', 5, tell(5, `k${n++}`, payload), (f) => sent.push(f.slice()))).toBe(true)
    expect(sent[0]!.length).toBeLessThanOrEqual(TELL_BATCH_BYTES)
    const rest = flushed(b, 'a:1')
    expect([...sent, ...rest].flatMap(keysOf)).toEqual(Array.from({ length: n }, (_, i) => `k${i}`))
    expect(b.append('a:1', 5, tell(5, 'huge', new Uint8Array(TELL_BATCH_BYTES)), () => {})).toBe(false)
    expect(b.has('a:1')).toBe(false)
  })
})

describe('TellBatches: tell runs (appendTell)', () => {
  const byte = (v: number) => (buf: Uint8Array, off: number, max: number): number => (max < 1 ? -1 : ((buf[off] = v), 1))
  /** Every tell of a frame as [key, first payload byte], runs expanded as a node that handles them one by one does. */
  const tellsOf = (frame: Uint8Array): Array<[string, number]> => {
    const r = new EnvelopeReader()
    const out: Array<[string, number]> = []
    for (const [off, len] of batchEntries(frame)) forEachTell(frame, off, len, (e) => void out.push([r.reset(e, 0, e.length).key(), r.payload()[0]!]))
    return out
  }

  it('packs tells of one kind and method into runs, keeps order with envelopes and other methods, and weighs each run by its tells', () => {
    const b = new TellBatches()
    const sent: Uint8Array[] = []
    const push = (f: Uint8Array): void => void sent.push(f.slice())
    const expected: Array<[string, number]> = []
    for (let i = 0; i < 100; i++) {
      const key = `k${i}`
      if (i % 17 === 0) expect(b.append('a:1', 3, tell(3, key, Uint8Array.of(i)), push)).toBe(true) // a grain's envelope
      else expect(b.appendTell('a:1', 3, KIND, i % 40 < 20 ? 7 : 8, 1, key, byte(i), push)).toBe(true)
      expected.push([key, i])
    }
    const frames = [...sent, ...flushed(b, 'a:1')]
    expect(frames.flatMap(tellsOf)).toEqual(expected)
    for (const f of frames) {
      const c = checkTellBatch(f, 1 << 16)
      if (c instanceof GrainClusterError) throw c
      expect(c.frames).toBe(tellsOf(f).length)
      // Runs, not one envelope per tell: far fewer entries than tells.
      expect(batchEntries(f).length).toBeLessThan(c.frames / 2)
    }
  })

  it(`hands a group over at ${TELL_BATCH_MAX_TELLS} tells: the receiver's flow control counts tells`, () => {
    const b = new TellBatches()
    const sent: Uint8Array[] = []
    for (let i = 0; i < 3 * TELL_BATCH_MAX_TELLS + 5; i++) expect(b.appendTell('a:1', 0, KIND, 7, 1, `k${i}`, byte(i & 0xff), (f) => void sent.push(f.slice()))).toBe(true)
    expect(sent.map((f) => (checkTellBatch(f, 1 << 16) as { frames: number }).frames)).toEqual([TELL_BATCH_MAX_TELLS, TELL_BATCH_MAX_TELLS, TELL_BATCH_MAX_TELLS])
    expect(flushed(b, 'a:1').flatMap(tellsOf)).toHaveLength(5)
  })

  it('a run too large for a group on its own is refused; a damaged run fails the check', () => {
    const b = new TellBatches()
    const big = (buf: Uint8Array, off: number, max: number): number => (max < TELL_BATCH_BYTES ? -1 : TELL_BATCH_BYTES)
    expect(b.appendTell('a:1', 0, KIND, 7, 1, 'huge', big, () => {})).toBe(false)
    expect(b.has('a:1')).toBe(false)
    for (let i = 0; i < 3; i++) b.appendTell('a:1', 0, KIND, 7, 1, `k${i}`, byte(i), () => {})
    const [f] = flushed(b, 'a:1')
    const [[off, len]] = batchEntries(f!) as [[number, number]]
    // The last entry ([u16 2][u32 1]['k2'][1 byte]) claims more payload than the run holds.
    const r = new EnvelopeReader().reset(f!, off, len)
    const last = r.payloadOff + r.payloadLen - 9
    expect(f![last]).toBe(2)
    new DataView(f!.buffer).setUint32(last + 2, 200, true)
    expect(checkTellBatch(f!, 1 << 16)).toMatchObject({ code: 'ERR_FRAME_MALFORMED', reason: expect.stringContaining('overruns') })
  })

  it("a run's tells expanded for the one-by-one paths are byte for byte the envelopes the sender would have written there", () => {
    const b = new TellBatches()
    b.appendTell('a:1', 9, KIND, 7, 2, 'deferred', (buf, off, max) => (max < 5 ? -1 : (buf.set([1, 2, 3, 4, 5], off), 5)), () => {})
    const [f] = flushed(b, 'a:1')
    const [[off, len]] = batchEntries(f!) as [[number, number]]
    for (const lead of [0, 1]) {
      const w = new EnvelopeWriter()
      w.kind = KIND
      w.key = 'deferred'
      w.partition = 9
      w.messageType = 7
      w.schemaVersion = 2
      w.payloadBytes = Uint8Array.of(1, 2, 3, 4, 5)
      const direct = new Uint8Array(256)
      const n = w.writeInto(direct, lead, 256 - lead)
      const out: Uint8Array[] = []
      expect(forEachTell(f!, off, len, (e) => void out.push(e.slice()), lead)).toBeUndefined()
      expect(out).toEqual([direct.slice(lead, lead + n)])
    }
  })
})

describe('checkTellBatch (receiver)', () => {
  function batchOf(entries: Array<(buf: Uint8Array, off: number, max: number) => number>, partition: number): Uint8Array {
    const b = new TellBatches()
    for (const e of entries) b.append('x', partition, e, () => {})
    return flushed(b, 'x')[0]!
  }

  it('refuses asks, replies, control frames, PID runs and entries of another partition, naming the entry', () => {
    const ok = batchOf([tell(3, 'a', new Uint8Array(2)), tell(3, 'b', new Uint8Array(2))], 3)
    expect(checkTellBatch(ok, 1 << 16)).toEqual({ partition: 3, off: TELL_BATCH_HEADER_BYTES, len: ok.length - TELL_BATCH_HEADER_BYTES, frames: 2 })
    // A PID run's keys index a worker's table on its own node: a peer never sends one.
    for (const flags of [FLAGS.ASK, FLAGS.REPLY, FLAGS.CONTROL, FLAGS.PID_RUN, FLAGS.TELL_RUN | FLAGS.PID_RUN]) {
      const bad = batchOf([tell(3, 'a', new Uint8Array(2)), tell(3, 'b', new Uint8Array(2), flags)], 3)
      const e = checkTellBatch(bad, 1 << 16)
      expect(e).toBeInstanceOf(GrainClusterError)
      expect((e as GrainClusterError).code).toBe('ERR_FRAME_MALFORMED')
      expect((e as GrainClusterError).reason).toMatch(/is not a tell/)
      expect(batchEntries(bad)).toHaveLength(2) // the caller can still handle the good one
    }
    const other = batchOf([tell(4, 'a', new Uint8Array(2))], 3)
    expect((checkTellBatch(other, 1 << 16) as GrainClusterError).reason).toMatch(/partition 4, the batch for 3/)
    expect((checkTellBatch(ok, 10) as GrainClusterError).reason).toMatch(/does not fit/)
  })

  it('fast-check: whatever bytes arrive, the check returns a batch or ERR_FRAME_MALFORMED, and an accepted batch tiles exactly', () => {
    const good = batchOf([tell(9, 'a', new Uint8Array(3)), tell(9, 'bb', new Uint8Array(0)), tell(9, 'c', new Uint8Array(40))], 9)
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })).map(([i, v]) => {
        const f = good.slice()
        f[i] = v
        return f
      }), fc.nat(good.length).map((n) => good.slice(0, n))), (frame) => {
        const r = checkTellBatch(frame, 1 << 16)
        if (r instanceof GrainClusterError) expect(r.code).toBe('ERR_FRAME_MALFORMED')
        else {
          let at = r.off
          for (let i = 0; i < r.frames; i++) at += 4 + ((new DataView(frame.buffer, frame.byteOffset).getUint32(at, true) + 3) & ~3)
          expect(at).toBe(frame.length)
          expect(r.off + r.len).toBe(frame.length)
        }
      }),
      { numRuns: 2_000 },
    )
  })

  it('peekRouting reads partition and flags without validating the rest, and -1 for bytes it cannot read', () => {
    const buf = new Uint8Array(256)
    const n = tell(77, 'key', new Uint8Array(5), FLAGS.ASK)(buf, 4, 252)
    expect(peekRouting(buf, 4, n)).toBe(77 * 65536 + FLAGS.ASK)
    expect(peekRouting(buf, 4, 8)).toBe(-1)
    expect(peekRouting(new Uint8Array(64).fill(0xff), 0, 64)).toBe(-1)
  })

  it("peekRouting's fast path for the writer's layout answers as the general path, for intact and damaged headers", () => {
    fc.assert(
      fc.property(
        fc.nat(0xffff_ffff),
        fc.constantFrom(0, FLAGS.ASK, FLAGS.REPLY, FLAGS.CONTROL, FLAGS.ASK | FLAGS.ERROR),
        fc.string({ maxLength: 12 }),
        fc.nat(3),
        fc.array(fc.tuple(fc.nat(80), fc.nat(255)), { maxLength: 3 }),
        fc.nat(80),
        (partition, flags, key, lead, damage, cut) => {
          const buf = new Uint8Array(256)
          const n = tell(partition, key, Uint8Array.of(1, 2, 3), flags)(buf, lead * 4, 256 - lead * 4)
          const off = lead * 4
          expect(peekRouting(buf, off, n)).toBe(partition * 65536 + flags)
          for (const [at, v] of damage) buf[off + at] = v
          // Damaged bytes, and frames cut short: both paths agree (the fast one only recognises, never widens, what is accepted).
          expect(peekRouting(buf, off, n)).toBe(peekRoutingGeneral(buf, off, n))
          const short = Math.min(n, cut)
          expect(peekRouting(buf, off, short)).toBe(peekRoutingGeneral(buf, off, short))
        },
      ),
      { numRuns: 3_000 },
    )
  })
})
