import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../../src/common/errors.js'
import { type DeferredMessage, DeferredQueue } from '../../../../src/remote/association/deferred-queue.js'
import { catchErr } from '../../../helpers/catch-error.js'

/** A message whose frame carries `seq` in its first 4 bytes (little-endian), `bytes` long. */
function msg(seq: number, pid = 'grain://10.0.0.2:4051/counter/a', bytes = 4): DeferredMessage {
  const frame = new Uint8Array(Math.max(bytes, 0))
  if (bytes >= 4) new DataView(frame.buffer).setUint32(0, seq, true)
  return { frame, meta: { pid }, enqueuedAtMs: seq }
}
const seqOf = (m: DeferredMessage | undefined): number => (m === undefined ? -1 : m.enqueuedAtMs)
/** The queue copies frames into its arena: what comes out must still carry the seq it went in with. */
const intact = (m: DeferredMessage): boolean => m.frame.byteLength < 4 || new DataView(m.frame.buffer, m.frame.byteOffset, 4).getUint32(0, true) === m.enqueuedAtMs
const allIntact = (ms: readonly DeferredMessage[]): boolean => ms.every(intact)
const seqs = (ms: readonly DeferredMessage[]): number[] => ms.map(seqOf)

describe('DeferredQueue: FIFO', () => {
  it('shifts in push order and tracks size and bytes', () => {
    const q = new DeferredQueue({ limit: 10 })
    for (let i = 0; i < 5; i++) expect(q.push(msg(i, 'p', 4 + i))).toEqual({ queued: true, evicted: [] })
    expect(q.size).toBe(5)
    expect(q.bytes).toBe(4 + 5 + 6 + 7 + 8)
    expect(seqOf(q.peek())).toBe(0)
    expect(seqs(q.toArray())).toEqual([0, 1, 2, 3, 4])
    const out: number[] = []
    for (let m = q.shift(); m !== undefined; m = q.shift()) out.push(seqOf(m))
    expect(out).toEqual([0, 1, 2, 3, 4])
    expect(q.size).toBe(0)
    expect(q.bytes).toBe(0)
    expect(q.shift()).toBeUndefined()
    expect(q.peek()).toBeUndefined()
    expect(q.dropped).toBe(0)
    expect(q.highWaterMark).toBe(5)
    expect(q.highWaterBytes).toBe(30)
  })

  it('keeps FIFO order across ring wrap-arounds and growth', () => {
    const q = new DeferredQueue({ limit: 100 })
    let next = 0
    let expected = 0
    // Interleave pushes and shifts so head walks around the ring many times while it grows.
    for (let round = 0; round < 500; round++) {
      const pushes = (round * 7) % 13
      for (let i = 0; i < pushes && q.size < q.limit; i++) q.push(msg(next++))
      const shifts = (round * 5) % 11
      for (let i = 0; i < shifts && q.size > 0; i++) expect(seqOf(q.shift())).toBe(expected++)
    }
    expect(seqs(q.drainAll())).toEqual(Array.from({ length: next - expected }, (_, i) => expected + i))
    expect(q.dropped).toBe(0)
  })

  it('drainAll returns everything oldest first, empties the queue and shrinks the storage', () => {
    const q = new DeferredQueue({ limit: 1_000 })
    for (let i = 0; i < 700; i++) q.push(msg(i))
    expect(q.storageSlots).toBeGreaterThanOrEqual(700)
    expect(q.storageSlots).toBeLessThanOrEqual(1_000)
    expect(seqs(q.drainAll())).toEqual(Array.from({ length: 700 }, (_, i) => i))
    expect(q.size).toBe(0)
    expect(q.bytes).toBe(0)
    expect(q.storageSlots).toBe(16)
    // Still usable afterwards.
    q.push(msg(9))
    expect(seqs(q.drainAll())).toEqual([9])
  })

  it('rejects invalid options with ERR_CONFIG_INVALID listing every issue', () => {
    const e = catchErr(() => new DeferredQueue({ limit: 0, maxBytes: -1 }))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).details.issues).toEqual([
      'deferredQueue.limit must be an integer ≥ 1 (got 0)',
      'deferredQueue.maxBytes must be an integer ≥ 1 or Infinity (got -1)',
    ])
    expect(GrainClusterError.is(catchErr(() => new DeferredQueue({ limit: 1.5 })), 'ERR_CONFIG_INVALID')).toBe(true)
    expect(catchErr(() => new DeferredQueue({ limit: 1, maxBytes: Infinity }))).toBeUndefined()
  })
})

describe('DeferredQueue: overflow drops the oldest (spec 3.2)', () => {
  it('message bound: each push past the limit evicts exactly the oldest and counts it', () => {
    const q = new DeferredQueue({ limit: 3 })
    for (let i = 0; i < 3; i++) expect(q.push(msg(i)).queued).toBe(true)
    const r3 = q.push(msg(3))
    expect(r3.queued && seqs(r3.evicted)).toEqual([0])
    const r4 = q.push(msg(4))
    expect(r4.queued && seqs(r4.evicted)).toEqual([1])
    expect(seqs(q.toArray())).toEqual([2, 3, 4])
    expect(q.size).toBe(3)
    expect(q.dropped).toBe(2)
    expect(q.droppedBytes).toBe(8)
    expect(q.highWaterMark).toBe(3)
  })

  it('byte bound: evicts oldest messages until the new frame fits', () => {
    const q = new DeferredQueue({ limit: 100, maxBytes: 10 })
    q.push(msg(0, 'p', 4))
    q.push(msg(1, 'p', 4))
    expect(q.bytes).toBe(8)
    const r = q.push(msg(2, 'p', 4)) // 12 > 10: drop #0
    expect(r.queued && seqs(r.evicted)).toEqual([0])
    expect(q.bytes).toBe(8)
    const big = q.push(msg(3, 'p', 9)) // needs 9: drop #1 and #2
    expect(big.queued && seqs(big.evicted)).toEqual([1, 2])
    expect(seqs(q.toArray())).toEqual([3])
    expect(q.bytes).toBe(9)
    expect(q.dropped).toBe(3)
    expect(q.droppedBytes).toBe(12)
    expect(q.highWaterBytes).toBe(9)
  })

  it('a frame larger than maxBytes is refused without evicting anything', () => {
    const q = new DeferredQueue({ limit: 10, maxBytes: 10 })
    q.push(msg(0, 'p', 6))
    const r = q.push(msg(1, 'p', 11))
    expect(r.queued).toBe(false)
    expect(!r.queued && r.reason).toBe("frame of 11 bytes exceeds the deferred queue's byte bound of 10")
    expect(seqs(q.toArray())).toEqual([0])
    expect(q.dropped).toBe(0)
    // Exactly maxBytes fits (after evicting the rest).
    const exact = q.push(msg(2, 'p', 10))
    expect(exact.queued && seqs(exact.evicted)).toEqual([0])
    expect(q.bytes).toBe(10)
  })

  it('1,000,000 pushes at limit 1,000: storage stays at ≤ 1,000 slots, the newest 1,000 remain in order', () => {
    const q = new DeferredQueue({ limit: 1_000 })
    const frame = new Uint8Array(4)
    let maxSlots = 0
    for (let i = 0; i < 1_000_000; i++) {
      q.push({ frame, meta: { pid: 'p' }, enqueuedAtMs: i })
      if ((i & 1023) === 0 && q.storageSlots > maxSlots) maxSlots = q.storageSlots
    }
    maxSlots = Math.max(maxSlots, q.storageSlots)
    expect(maxSlots).toBeLessThanOrEqual(1_000)
    expect(q.size).toBe(1_000)
    expect(q.bytes).toBe(4_000)
    expect(q.dropped).toBe(999_000)
    expect(q.highWaterMark).toBe(1_000)
    expect(seqs(q.drainAll())).toEqual(Array.from({ length: 1_000 }, (_, i) => 999_000 + i))
  })

  it('10× overload: size and bytes never exceed their bounds at any point', () => {
    const limit = 500
    const maxBytes = 16 * 1024
    const q = new DeferredQueue({ limit, maxBytes })
    let seed = 7
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24
    let evictedTotal = 0
    let maxSize = 0
    let maxSeenBytes = 0
    for (let i = 0; i < 10 * limit; i++) {
      const r = q.push(msg(i, `p${i % 7}`, 4 + Math.floor(rand() * 120)))
      expect(r.queued).toBe(true)
      if (r.queued) evictedTotal += r.evicted.length
      maxSize = Math.max(maxSize, q.size)
      maxSeenBytes = Math.max(maxSeenBytes, q.bytes)
      expect(q.size).toBeLessThanOrEqual(limit)
      expect(q.bytes).toBeLessThanOrEqual(maxBytes)
      expect(q.storageSlots).toBeLessThanOrEqual(limit)
    }
    expect(q.highWaterMark).toBe(maxSize)
    expect(q.highWaterBytes).toBe(maxSeenBytes)
    expect(q.dropped).toBe(evictedTotal)
    expect(q.dropped + q.size).toBe(10 * limit)
    // The survivors are the newest messages, contiguous and in order.
    const left = seqs(q.toArray())
    expect(left).toEqual(Array.from({ length: left.length }, (_, i) => 10 * limit - left.length + i))
  })
})

describe('DeferredQueue: frame storage (one byte arena)', () => {
  it('10× overload with mixed frame sizes: the arena stops at maxBytes + 2 × the largest frame, frames come out intact', () => {
    const limit = 1_000
    const maxBytes = 64 * 1024
    const q = new DeferredQueue({ limit, maxBytes })
    let largest = 0
    let maxArena = 0
    for (let i = 0; i < 10 * limit; i++) {
      const bytes = 4 + ((i * 37) % 150)
      largest = Math.max(largest, bytes)
      q.push(msg(i, `p${i % 5}`, bytes))
      maxArena = Math.max(maxArena, q.storageBytes)
    }
    expect(q.bytes).toBeLessThanOrEqual(maxBytes)
    expect(maxArena).toBeLessThanOrEqual(maxBytes + 2 * largest)
    const out = q.drainAll()
    expect(out.length).toBeGreaterThan(400)
    expect(allIntact(out)).toBe(true)
    expect(seqs(out)).toEqual(Array.from({ length: out.length }, (_, i) => 10 * limit - out.length + i))
    expect(q.storageBytes).toBe(0)
  })

  it('drained frames are views the queue never writes again; shifted and evicted frames are copies', () => {
    // A byte bound keeps the arena small (96 B), so it wraps many times below.
    const q = new DeferredQueue({ limit: 4, maxBytes: 64 })
    for (let i = 0; i < 4; i++) q.push(msg(i, 'p', 16))
    const drained = q.drainAll()
    const shifted: DeferredMessage[] = []
    const evicted: DeferredMessage[] = []
    for (let i = 100; i < 140; i++) {
      const r = q.push(msg(i, 'p', 16))
      if (r.queued) evicted.push(...r.evicted)
      if (i % 3 === 0) shifted.push(q.shift()!)
    }
    expect(seqs(drained)).toEqual([0, 1, 2, 3])
    expect(allIntact(drained)).toBe(true)
    expect(shifted.length).toBeGreaterThan(10)
    expect(allIntact(shifted)).toBe(true)
    expect(evicted.length).toBeGreaterThan(10)
    expect(allIntact(evicted)).toBe(true)
  })

  it('keeps the metadata of each message: ask ids, kinds, keys and message types, or their absence', () => {
    const q = new DeferredQueue({ limit: 8 })
    q.push({ frame: new Uint8Array(3), meta: { pid: 'a', askId: 7, kind: 'counter', key: 'k1', messageType: 0xfffffff0 }, enqueuedAtMs: 1 })
    q.push({ frame: new Uint8Array(0), meta: { pid: 'b' }, enqueuedAtMs: 2 })
    q.push({ frame: new Uint8Array(5), meta: { pid: 'c', askId: 0, messageType: 0 }, enqueuedAtMs: 3 })
    expect(q.toArray().map((m) => [m.meta, m.frame.byteLength])).toEqual([
      [{ pid: 'a', askId: 7, kind: 'counter', key: 'k1', messageType: 0xfffffff0 }, 3],
      [{ pid: 'b' }, 0],
      [{ pid: 'c', askId: 0, messageType: 0 }, 5],
    ])
    expect(q.drainAll().map((m) => m.meta)).toEqual([
      { pid: 'a', askId: 7, kind: 'counter', key: 'k1', messageType: 0xfffffff0 },
      { pid: 'b' },
      { pid: 'c', askId: 0, messageType: 0 },
    ])
  })
})

describe('DeferredQueue: unshiftAll (frames the transport handed back)', () => {
  it('puts messages back in front, oldest first', () => {
    const q = new DeferredQueue({ limit: 10 })
    q.push(msg(3))
    q.push(msg(4))
    expect(q.unshiftAll([msg(1), msg(2)])).toEqual([])
    expect(seqs(q.toArray())).toEqual([1, 2, 3, 4])
    expect(q.bytes).toBe(16)
    expect(seqs(q.drainAll())).toEqual([1, 2, 3, 4])
  })

  it('when over a bound, drops the oldest of the handed-back messages', () => {
    const q = new DeferredQueue({ limit: 4 })
    q.push(msg(5))
    q.push(msg(6))
    const evicted = q.unshiftAll([msg(1), msg(2), msg(3), msg(4)])
    expect(seqs(evicted)).toEqual([1, 2])
    expect(seqs(q.toArray())).toEqual([3, 4, 5, 6])
    expect(q.dropped).toBe(2)

    const b = new DeferredQueue({ limit: 100, maxBytes: 12 })
    b.push(msg(9, 'p', 4))
    expect(seqs(b.unshiftAll([msg(1, 'p', 4), msg(2, 'p', 4), msg(3, 'p', 4)]))).toEqual([1])
    expect(seqs(b.toArray())).toEqual([2, 3, 9])
    expect(b.bytes).toBe(12)
  })

  it('wraps around the ring head and grows when needed', () => {
    const q = new DeferredQueue({ limit: 64 })
    for (let i = 10; i < 20; i++) q.push(msg(i))
    for (let i = 10; i < 15; i++) expect(seqOf(q.shift())).toBe(i) // head is now mid-array
    q.unshiftAll(Array.from({ length: 30 }, (_, i) => msg(i - 20)))
    expect(seqs(q.toArray())).toEqual([...Array.from({ length: 30 }, (_, i) => i - 20), 15, 16, 17, 18, 19])
    expect(q.storageSlots).toBeLessThanOrEqual(64)
  })
})

describe('DeferredQueue: model check (fast-check)', () => {
  type Op = { t: 'push'; pid: number; bytes: number } | { t: 'shift' } | { t: 'drain' } | { t: 'unshift'; n: number }
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ t: fc.constant('push' as const), pid: fc.integer({ min: 0, max: 4 }), bytes: fc.integer({ min: 0, max: 40 }) }) },
    { weight: 2, arbitrary: fc.constant({ t: 'shift' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'drain' as const }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('unshift' as const), n: fc.integer({ min: 1, max: 6 }) }) },
  )

  it('matches a reference FIFO with drop-oldest; per-PID order is preserved; bounds always hold', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 40, max: 200 }), fc.array(op, { maxLength: 300 }), (limit, maxBytes, ops) => {
        const q = new DeferredQueue({ limit, maxBytes })
        let model: DeferredMessage[] = []
        const modelBytes = (): number => model.reduce((s, m) => s + m.frame.byteLength, 0)
        const delivered: DeferredMessage[] = []
        let seq = 0
        let dropped = 0
        for (const o of ops) {
          switch (o.t) {
            case 'push': {
              const m = msg(seq++, `p${o.pid}`, o.bytes)
              const r = q.push(m)
              const evicted: DeferredMessage[] = []
              while (model.length >= limit || modelBytes() + o.bytes > maxBytes) evicted.push(model.shift()!)
              model.push(m)
              expect(r.queued && seqs(r.evicted)).toEqual(seqs(evicted))
              dropped += evicted.length
              break
            }
            case 'shift': {
              const m = q.shift()
              expect(seqOf(m)).toBe(seqOf(model.shift()))
              if (m !== undefined) delivered.push(m)
              break
            }
            case 'drain': {
              const all = q.drainAll()
              expect(seqs(all)).toEqual(seqs(model))
              model = []
              delivered.push(...all)
              break
            }
            case 'unshift': {
              // Hand back the last n delivered (as a driver would after a refused write).
              const back = delivered.splice(Math.max(0, delivered.length - o.n))
              const evicted = q.unshiftAll(back)
              let keep = [...back, ...model]
              let skip = 0
              while (keep.length > limit || keep.reduce((s, m) => s + m.frame.byteLength, 0) > maxBytes) {
                keep = keep.slice(1)
                skip++
              }
              expect(seqs(evicted)).toEqual(seqs(back.slice(0, skip)))
              model = keep
              dropped += skip
              break
            }
          }
          const now = q.toArray()
          expect(seqs(now)).toEqual(seqs(model))
          expect(allIntact(now)).toBe(true)
          expect(q.size).toBeLessThanOrEqual(limit)
          expect(q.bytes).toBeLessThanOrEqual(maxBytes)
          expect(q.bytes).toBe(modelBytes())
          expect(q.storageSlots).toBeLessThanOrEqual(limit)
          expect(q.dropped).toBe(dropped)
        }
        delivered.push(...q.drainAll())
        // Drained views and shifted copies are untouched by everything the queue did afterwards.
        expect(allIntact(delivered)).toBe(true)
        // Per PID, what came out is in send order (a subsequence: drops leave gaps, never swaps).
        const lastByPid = new Map<string, number>()
        for (const m of delivered) {
          const last = lastByPid.get(m.meta.pid) ?? -1
          expect(seqOf(m)).toBeGreaterThan(last)
          lastByPid.set(m.meta.pid, seqOf(m))
        }
      }),
      { numRuns: 300 },
    )
  })
})
