import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FRAME_HEADER_BYTES, FrameDecoder } from '../../../src/remote/transport/frame-codec.js'
import { LARGE_FRAME_BYTES, OutboundQueue } from '../../../src/remote/transport/outbound-queue.js'
import { SlabPool } from '../../../src/remote/transport/slab-pool.js'

const frame = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

/** The frames a peer would read from these chunks, in order. */
function decode(chunks: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = []
  const d = new FrameDecoder({ maxFrameBytes: 1 << 20 })
  for (const c of chunks) d.push(Buffer.from(c), (f) => void out.push(f.slice()))
  return out
}

describe('OutboundQueue', () => {
  it('keeps a chunk of a retired slab intact while it waits for the flush, though an earlier write of that slab completes', () => {
    const pool = new SlabPool(64, 4)
    const q = new OutboundQueue(pool)
    q.enqueue(frame(20, 1))
    const first = q.take() // written; its write is in flight
    q.enqueue(frame(20, 2)) // same slab, behind the written part, not yet flushed
    q.enqueue(frame(30, 3)) // does not fit: the slab is retired, the frame goes to a new one
    q.release(first.slabs) // the first write completes before the flush
    // Another connection packs frames now: it must not get the slab the waiting chunk views.
    const other = new OutboundQueue(pool)
    other.enqueue(frame(50, 9))
    const second = q.take()
    expect(decode(second.chunks)).toEqual([frame(20, 2), frame(30, 3)])
    q.release(second.slabs)
    other.release(other.take().slabs)
  })

  it('returns a retired slab to the pool once every chunk of it is written or dropped', () => {
    const pool = new SlabPool(64, 4)
    const q = new OutboundQueue(pool)
    q.enqueue(frame(40, 1))
    const a = q.take()
    q.enqueue(frame(40, 2)) // a new slab; the first is retired while its write is in flight
    expect(pool.spare).toBe(0)
    q.release(a.slabs)
    expect(pool.spare).toBe(1)
    const b = q.take()
    q.enqueue(frame(40, 3)) // retires the second slab while its chunk is held
    expect(pool.spare).toBe(0) // the first was reused for this frame
    q.release(b.slabs) // dropped (connection closed): reusable too
    expect(pool.spare).toBe(1)
  })

  it('queues a large frame by reference between the chunks of small ones, in order', () => {
    const pool = new SlabPool(1024, 4)
    const q = new OutboundQueue(pool)
    const big = frame(LARGE_FRAME_BYTES, 7)
    q.enqueue(frame(10, 1))
    q.enqueue(big)
    q.enqueue(frame(10, 2))
    expect(q.queuedBytes).toBe(3 * FRAME_HEADER_BYTES + LARGE_FRAME_BYTES + 20)
    const t = q.take()
    expect(t.chunks).toContain(big)
    expect(t.slabs.filter((s) => s === undefined)).toHaveLength(1)
    expect(decode(t.chunks)).toEqual([frame(10, 1), big, frame(10, 2)])
    expect(q.queuedBytes).toBe(0)
  })

  it('every frame reaches the peer intact whatever the order of enqueues, takes and write completions (two queues, one pool)', () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('enqueue' as const), q: fc.integer({ min: 0, max: 1 }), n: fc.integer({ min: 1, max: 200 }) }),
      fc.record({ t: fc.constant('take' as const), q: fc.integer({ min: 0, max: 1 }) }),
      fc.record({ t: fc.constant('complete' as const), q: fc.integer({ min: 0, max: 1 }) }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const pool = new SlabPool(256, 4)
        const queues = [new OutboundQueue(pool), new OutboundQueue(pool)]
        const sent: Uint8Array[][] = [[], []]
        // Chunks taken, their bytes copied only when the write completes (as the kernel would read them then).
        const inFlight: Array<Array<ReturnType<OutboundQueue['take']>>> = [[], []]
        const wire: Uint8Array[][] = [[], []]
        let fill = 0
        const complete = (i: number): void => {
          const w = inFlight[i]!.shift()
          if (w === undefined) return
          for (const c of w.chunks) wire[i]!.push(Uint8Array.from(c)) // a copy: a Buffer view's slice() is a view
          queues[i]!.release(w.slabs)
        }
        for (const o of ops) {
          const q = queues[o.q]!
          if (o.t === 'enqueue') {
            const f = frame(o.n, (fill = (fill % 250) + 1))
            sent[o.q]!.push(f)
            q.enqueue(f)
          } else if (o.t === 'take') inFlight[o.q]!.push(q.take())
          else complete(o.q)
        }
        for (let i = 0; i < 2; i++) {
          inFlight[i]!.push(queues[i]!.take())
          while (inFlight[i]!.length > 0) complete(i)
          expect(decode(wire[i]!)).toEqual(sent[i])
        }
      }),
      { numRuns: 300 },
    )
  })
})
