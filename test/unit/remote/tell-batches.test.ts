/**
 * Tell batches (remote/tell-batches.ts): the sender's grouping per
 * partition and the receiver's check before a batch is copied into a ring
 * as one block.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { FRAME_TELL_BATCH, TELL_BATCH_BYTES, TELL_BATCH_HEADER_BYTES, TellBatches, batchEntries, checkTellBatch } from '../../../src/remote/tell-batches.js'
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

describe('checkTellBatch (receiver)', () => {
  function batchOf(entries: Array<(buf: Uint8Array, off: number, max: number) => number>, partition: number): Uint8Array {
    const b = new TellBatches()
    for (const e of entries) b.append('x', partition, e, () => {})
    return flushed(b, 'x')[0]!
  }

  it('refuses asks, replies, control frames and entries of another partition, naming the entry', () => {
    const ok = batchOf([tell(3, 'a', new Uint8Array(2)), tell(3, 'b', new Uint8Array(2))], 3)
    expect(checkTellBatch(ok, 1 << 16)).toEqual({ partition: 3, off: TELL_BATCH_HEADER_BYTES, len: ok.length - TELL_BATCH_HEADER_BYTES, frames: 2 })
    for (const flags of [FLAGS.ASK, FLAGS.REPLY, FLAGS.CONTROL]) {
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
