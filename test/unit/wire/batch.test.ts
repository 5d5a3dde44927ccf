import fc from 'fast-check'
import { Builder, ByteBuffer } from 'flatbuffers'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { decodeBatch, encodeBatch } from '../../../src/wire/batch.js'
import { EnvelopeReader, EnvelopeWriter, InternedString } from '../../../src/wire/envelope.js'
import { Batch } from '../../../src/wire/generated/graincluster/wire/batch.js'
import { Frame } from '../../../src/wire/generated/graincluster/wire/frame.js'
import { catchErr } from '../../helpers/catch-error.js'

const framesArb = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 })


function expectMalformed(fn: () => unknown, reason?: RegExp): void {
  const e = catchErr(fn)
  expect(e, 'expected ERR_FRAME_MALFORMED, nothing was thrown').toBeInstanceOf(GrainClusterError)
  expect((e as GrainClusterError).code).toBe('ERR_FRAME_MALFORMED')
  expect((e as GrainClusterError).reason).toMatch(/^malformed batch: /)
  if (reason !== undefined) expect((e as GrainClusterError).reason).toMatch(reason)
}

/** Decode; anything thrown must be ERR_FRAME_MALFORMED; views must lie inside buf. */
function decodeOrMalformed(buf: Uint8Array): Uint8Array[] | null {
  try {
    const out = decodeBatch(buf)
    for (const v of out) {
      expect(v.buffer).toBe(buf.buffer)
      expect(v.byteOffset).toBeGreaterThanOrEqual(buf.byteOffset)
      expect(v.byteOffset + v.length).toBeLessThanOrEqual(buf.byteOffset + buf.length)
    }
    return out
  } catch (e) {
    if (!GrainClusterError.is(e, 'ERR_FRAME_MALFORMED')) throw new Error(`expected ERR_FRAME_MALFORMED, got ${String(e)}`, { cause: e })
    return null
  }
}

function envelope(i: number): Uint8Array {
  const w = new EnvelopeWriter()
  w.kind = new InternedString('Counter')
  w.key = `key-${i}`
  w.correlationId = i
  w.payloadBytes = Uint8Array.from({ length: i % 17 }, (_, j) => (i + j) & 0xff)
  return w.toBytes()
}

describe('encodeBatch / decodeBatch', () => {
  it('round-trips any list of byte strings, in order', () => {
    fc.assert(
      fc.property(framesArb, (frames) => {
        const out = decodeBatch(encodeBatch(frames))
        expect(out).toEqual(frames)
      }),
    )
  })

  it('round-trips an empty batch', () => {
    expect(decodeBatch(encodeBatch([]))).toEqual([])
  })

  it('hands back zero-copy views that EnvelopeReader reads', () => {
    const envs = Array.from({ length: 50 }, (_, i) => envelope(i))
    const bytes = encodeBatch(envs)
    const views = decodeBatch(bytes)
    expect(views).toHaveLength(50)
    const r = new EnvelopeReader()
    views.forEach((v, i) => {
      expect(v.buffer).toBe(bytes.buffer)
      r.reset(bytes, v.byteOffset - bytes.byteOffset, v.length)
      expect(r.key()).toBe(`key-${i}`)
      expect(r.kind()).toBe('Counter')
      expect(r.correlationId).toBe(i)
      expect(r.payload()).toEqual(Uint8Array.from({ length: i % 17 }, (_, j) => (i + j) & 0xff))
    })
  })

  it('produces a batch the generated Batch/Frame code reads', () => {
    fc.assert(
      fc.property(framesArb, (frames) => {
        const b = Batch.getRootAsBatch(new ByteBuffer(encodeBatch(frames)))
        expect(b.framesLength()).toBe(frames.length)
        frames.forEach((f, i) => {
          const frame = b.frames(i)
          expect(frame).not.toBeNull()
          expect(frame!.envelopeLength()).toBe(f.length)
          expect(frame!.envelopeArray()).toEqual(f)
        })
      }),
      { numRuns: 50 },
    )
  })

  it('reads a batch built directly with the generated builder', () => {
    const b = new Builder(1)
    const frames = [Uint8Array.of(1, 2, 3), new Uint8Array(0), Uint8Array.of(9)]
    const offs = frames.map((f) => Frame.createFrame(b, Frame.createEnvelopeVector(b, f)))
    b.finish(Batch.createBatch(b, Batch.createFramesVector(b, offs)))
    expect(decodeBatch(b.asUint8Array())).toEqual(frames)
  })

  it('returns [] for a batch table without a frames field', () => {
    const b = new Builder(16)
    Batch.startBatch(b)
    b.finish(Batch.endBatch(b))
    expect(decodeBatch(b.asUint8Array())).toEqual([])
  })
})

describe('decodeBatch rejects malformed bytes with ERR_FRAME_MALFORMED', () => {
  const frames = [Uint8Array.of(1, 2, 3, 4, 5), Uint8Array.of(6), new Uint8Array(40).fill(7)]
  const good = encodeBatch(frames)

  it('shorter than a header', () => {
    for (let n = 0; n < 8; n++) expectMalformed(() => decodeBatch(good.slice(0, n)), /shorter than a header/)
  })

  it('truncations: malformed once any referenced byte is cut, never different data', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 6 }), (fs) => {
        const bytes = encodeBatch(fs)
        const views = decodeBatch(bytes)
        const lastUsed = Math.max(...views.map((v) => v.byteOffset - bytes.byteOffset + v.length))
        for (let n = 0; n < bytes.length; n++) {
          const out = decodeOrMalformed(bytes.slice(0, n))
          if (n < lastUsed) expect(out, `truncated to ${n} of ${bytes.length}`).toBeNull()
          else if (out !== null) expect(out).toEqual(fs)
        }
      }),
      { numRuns: 60 },
    )
  })

  it('random bytes: decodes to in-bounds views or throws ERR_FRAME_MALFORMED, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        decodeOrMalformed(bytes)
      }),
      { numRuns: 2000 },
    )
  })

  it('random corruption of a valid batch: same guarantee', () => {
    let rejected = 0
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.nat(255)), { minLength: 1, maxLength: 4 }), (edits) => {
        const bytes = good.slice()
        for (const [i, v] of edits) bytes[i] = v
        if (decodeOrMalformed(bytes) === null) rejected++
      }),
      { numRuns: 3000 },
    )
    expect(rejected).toBeGreaterThan(0)
  })

  it('root offset past the end', () => {
    const bytes = good.slice()
    new DataView(bytes.buffer).setUint32(0, 0xfffffff0, true)
    expectMalformed(() => decodeBatch(bytes), /table out of range/)
  })

  it('a vtable outside the buffer', () => {
    const bytes = good.slice()
    const dv = new DataView(bytes.buffer)
    const root = dv.getUint32(0, true)
    dv.setInt32(root, 0x7fff0000, true)
    expectMalformed(() => decodeBatch(bytes), /vtable out of range/)
  })

  it('a frames vector whose count runs past the end', () => {
    const bytes = good.slice()
    const dv = new DataView(bytes.buffer)
    const root = dv.getUint32(0, true)
    const vt = root - dv.getInt32(root, true)
    const slot = root + dv.getUint16(vt + 4, true)
    const vec = slot + dv.getUint32(slot, true)
    dv.setUint32(vec, 0x40000000, true)
    expectMalformed(() => decodeBatch(bytes), /vector runs past the end/)
  })

  it('a frame without an envelope', () => {
    const b = new Builder(16)
    Frame.startFrame(b)
    const empty = Frame.endFrame(b)
    b.finish(Batch.createBatch(b, Batch.createFramesVector(b, [empty])))
    expectMalformed(() => decodeBatch(b.asUint8Array()), /frame 0 has no envelope/)
  })
})
