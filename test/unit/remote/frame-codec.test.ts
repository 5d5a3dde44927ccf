import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { FRAME_HEADER_BYTES, FrameDecoder, encodeFrame, writeFrameHeader } from '../../../src/remote/transport/frame-codec.js'
import { catchErr } from '../../helpers/catch-error.js'

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Cut `bytes` at the given (sorted, deduplicated) offsets. */
function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const chunks: Uint8Array[] = []
  let prev = 0
  for (const p of points) {
    chunks.push(bytes.slice(prev, p))
    prev = p
  }
  chunks.push(bytes.slice(prev))
  return chunks
}

function decodeAll(chunks: Uint8Array[], maxFrameBytes: number): Uint8Array[] {
  const d = new FrameDecoder({ maxFrameBytes })
  const out: Uint8Array[] = []
  for (const c of chunks) d.push(c, (f) => out.push(f))
  expect(d.partial).toBeUndefined()
  return out
}

describe('FrameDecoder', () => {
  it('reassembles any sequence of frames under any split of the stream', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (frames, cuts) => {
          const stream = concat(frames.map(encodeFrame))
          const got = decodeAll(splitAt(stream, cuts), 1024)
          expect(got.map((f) => Array.from(f))).toEqual(frames.map((f) => Array.from(f)))
        },
      ),
      { numRuns: 500 },
    )
  })

  it('reassembles a stream fed one byte at a time', () => {
    const frames = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(70).fill(9)]
    const stream = concat(frames.map(encodeFrame))
    const chunks = Array.from(stream, (b) => new Uint8Array([b]))
    expect(decodeAll(chunks, 100).map((f) => Array.from(f))).toEqual(frames.map((f) => Array.from(f)))
  })

  it('hands out zero-copy views for frames that lie inside one chunk', () => {
    const chunk = concat([encodeFrame(new Uint8Array([1, 2])), encodeFrame(new Uint8Array([3, 4, 5]))])
    const got: Uint8Array[] = []
    new FrameDecoder({ maxFrameBytes: 16 }).push(chunk, (f) => got.push(f))
    expect(got.map((f) => Array.from(f))).toEqual([[1, 2], [3, 4, 5]])
    for (const f of got) expect(f.buffer).toBe(chunk.buffer)
    // Also for Buffer chunks (what sockets deliver), and the views are plain Uint8Arrays.
    const fromBuffer: Uint8Array[] = []
    const buf = Buffer.from(chunk)
    new FrameDecoder({ maxFrameBytes: 16 }).push(buf, (f) => fromBuffer.push(f))
    for (const f of fromBuffer) {
      expect(f.buffer).toBe(buf.buffer)
      expect(Buffer.isBuffer(f)).toBe(false)
    }
    expect(got[0]!.byteOffset).toBe(FRAME_HEADER_BYTES)
    expect(got[1]!.byteOffset).toBe(2 * FRAME_HEADER_BYTES + 2)
  })

  it('rejects an oversized length as soon as the header is read, before any body byte arrives', () => {
    const d = new FrameDecoder({ maxFrameBytes: 1000 })
    const header = new Uint8Array(4)
    writeFrameHeader(header, 0, 1001)
    const seen: Uint8Array[] = []
    // Header split across chunks: the error comes with its last byte.
    d.push(header.subarray(0, 3), (f) => seen.push(f))
    expect(d.bufferedBytes).toBe(3)
    const e = catchErr(() => d.push(header.subarray(3), (f) => seen.push(f)))
    expect(GrainClusterError.is(e, 'ERR_FRAME_TOO_LARGE')).toBe(true)
    expect((e as GrainClusterError).details).toMatchObject({ size: 1001, limit: 1000 })
    expect(seen).toEqual([])
    expect(d.bufferedBytes).toBe(0)
    // Failed for good: the stream position is lost.
    expect(catchErr(() => d.push(new Uint8Array([0]), () => {}))).toBe(e)
  })

  it('rejects a huge announced length without allocating it', () => {
    const d = new FrameDecoder({ maxFrameBytes: 4 * 1024 * 1024 })
    const e = catchErr(() => d.push(new Uint8Array([0xff, 0xff, 0xff, 0xff]), () => {}))
    expect(GrainClusterError.is(e, 'ERR_FRAME_TOO_LARGE')).toBe(true)
    expect((e as GrainClusterError).details).toMatchObject({ size: 0xffff_ffff, limit: 4 * 1024 * 1024 })
  })

  it('delivers the frames before an oversized one, then fails (any split)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 50 }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
        const big = new Uint8Array(4)
        writeFrameHeader(big, 0, 51)
        const stream = concat([...frames.map(encodeFrame), big, new Uint8Array(51)])
        const d = new FrameDecoder({ maxFrameBytes: 50 })
        const got: Uint8Array[] = []
        let err: unknown
        for (const c of splitAt(stream, cuts)) {
          err = catchErr(() => d.push(c, (f) => got.push(f)))
          if (err !== undefined) break
        }
        expect(GrainClusterError.is(err, 'ERR_FRAME_TOO_LARGE')).toBe(true)
        expect(got.map((f) => Array.from(f))).toEqual(frames.map((f) => Array.from(f)))
      }),
      { numRuns: 200 },
    )
  })

  it('applies a raised limit from the next header, within the same chunk', () => {
    const stream = concat([encodeFrame(new Uint8Array(3)), encodeFrame(new Uint8Array(10))])
    const d = new FrameDecoder({ maxFrameBytes: 4 })
    const got: number[] = []
    d.push(stream, (f) => {
      got.push(f.length)
      d.maxFrameBytes = 100
    })
    expect(got).toEqual([3, 10])
  })

  it('reports a partial frame and ignores input after close()', () => {
    const d = new FrameDecoder({ maxFrameBytes: 100 })
    const frame = encodeFrame(new Uint8Array(10))
    d.push(frame.subarray(0, 7), () => {})
    expect(d.partial).toEqual({ received: 7, expected: 14 })
    d.close()
    const got: Uint8Array[] = []
    d.push(frame.subarray(7), (f) => got.push(f))
    expect(got).toEqual([])
    expect(d.closed).toBe(true)
  })

  it('stops mid-chunk when the handler closes the decoder', () => {
    const stream = concat([encodeFrame(new Uint8Array([1])), encodeFrame(new Uint8Array([2]))])
    const d = new FrameDecoder({ maxFrameBytes: 100 })
    const got: number[] = []
    d.push(stream, (f) => {
      got.push(f[0]!)
      d.close()
    })
    expect(got).toEqual([1])
  })

  it('pause() from inside a frame holds the rest of the chunk and later chunks; resume() hands them over in order (any split, any pause points)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.nat(2_000), { maxLength: 8 }),
        fc.array(fc.nat(29), { maxLength: 10 }),
        (sizes, cuts, pauseAt) => {
          const frames = sizes.map((n, i) => new Uint8Array(n).fill(i))
          const d = new FrameDecoder({ maxFrameBytes: 100 })
          const got: number[] = []
          const pauses = new Set(pauseAt)
          const onFrame = (f: Uint8Array): void => {
            // Nothing is handed over while paused, not even the rest of the chunk that paused it.
            expect(d.paused).toBe(false)
            got.push(got.length)
            expect(f.every((b) => b === got.length - 1)).toBe(true)
            if (pauses.delete(got.length - 1)) d.pause()
          }
          for (const c of splitAt(concat(frames.map(encodeFrame)), cuts)) {
            d.push(c, onFrame)
            // Nothing is handed over while paused.
            const before = got.length
            if (d.paused) d.push(new Uint8Array(0), onFrame)
            expect(got.length).toBe(before)
          }
          for (let i = 0; i < 40 && got.length < frames.length; i++) d.resume(onFrame)
          expect(got).toEqual(frames.map((_, i) => i))
          expect(d.heldBytes).toBe(0)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('a paused decoder hands over nothing, however much arrives, and counts what it holds', () => {
    const d = new FrameDecoder({ maxFrameBytes: 100 })
    const got: number[] = []
    const first = concat([encodeFrame(Uint8Array.of(1)), encodeFrame(Uint8Array.of(2))])
    d.push(first, (f) => {
      got.push(f[0]!)
      d.pause()
    })
    expect(got).toEqual([1])
    d.push(encodeFrame(Uint8Array.of(3)), (f) => got.push(f[0]!))
    expect(got).toEqual([1])
    expect(d.heldBytes).toBe(2 * (FRAME_HEADER_BYTES + 1))
    d.resume((f) => got.push(f[0]!))
    expect(got).toEqual([1, 2, 3])
    expect([d.paused, d.heldBytes]).toEqual([false, 0])
    d.push(encodeFrame(Uint8Array.of(4)), (f) => got.push(f[0]!))
    expect(got).toEqual([1, 2, 3, 4])
  })

  it('encodes the u32 little-endian prefix and refuses lengths that do not fit', () => {
    expect(Array.from(encodeFrame(new Uint8Array([7, 8])))).toEqual([2, 0, 0, 0, 7, 8])
    const b = new Uint8Array(4)
    writeFrameHeader(b, 0, 0x01020304)
    expect(Array.from(b)).toEqual([4, 3, 2, 1])
    const e = catchErr(() => writeFrameHeader(b, 0, 2 ** 32))
    expect(GrainClusterError.is(e, 'ERR_FRAME_TOO_LARGE')).toBe(true)
  })
})
