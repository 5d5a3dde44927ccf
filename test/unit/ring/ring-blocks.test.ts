/**
 * Blocks of ring-format frames (tell batches from other nodes): written
 * with one copy, seen by the consumer as ordinary frames, queued whole in
 * the FrameSender's overflow when the ring is full, in order with single
 * frames, and split back into frames when the sender closes.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FrameSender } from '../../../src/runtime/ring/frame-sender.js'
import { RingConsumer, RingProducer, createRingBuffer } from '../../../src/runtime/ring/spsc-ring.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString } from '../../../src/wire/envelope.js'
import { TellRunEntries } from '../../../src/wire/tell-run.js'

const align4 = (n: number): number => (n + 3) & ~3

/** A block of frames: [u32 len][bytes][pad] each; frame i is `len` bytes of value (seed + i) & 0xff. */
function block(lengths: readonly number[], seed: number): Uint8Array {
  const out = new Uint8Array(lengths.reduce((s, n) => s + 4 + align4(n), 0))
  const dv = new DataView(out.buffer)
  let at = 0
  lengths.forEach((n, i) => {
    dv.setUint32(at, n, true)
    out.fill((seed + i) & 0xff, at + 4, at + 4 + n)
    at += 4 + align4(n)
  })
  return out
}

function drainAll(c: RingConsumer): number[][] {
  const seen: number[][] = []
  c.drain((d, off, len) => void seen.push([len, len === 0 ? -1 : d[off]!, len === 0 ? -1 : d[off + len - 1]!]), 1 << 20)
  return seen
}

describe('RingProducer.writeBlock', () => {
  it('the consumer sees the entries as frames, in order, across the wrap point', () => {
    const sab = createRingBuffer(1024)
    const p = new RingProducer(sab)
    const c = new RingConsumer(sab)
    let seed = 0
    // Go round the 1 KiB ring several times with blocks of varied sizes.
    for (let round = 0; round < 40; round++) {
      const lengths = [1 + (round % 7), 13, 40 + (round % 5)]
      expect(p.writeBlock(block(lengths, seed), 0, block(lengths, seed).length, lengths.length)).toBe(true)
      p.publish()
      expect(drainAll(c)).toEqual(lengths.map((n, i) => [n, (seed + i) & 0xff, (seed + i) & 0xff]))
      seed += lengths.length
    }
    expect(p.stats.wraps).toBeGreaterThan(0)
  })

  it('returns false on a full ring and writes nothing; a block that is not whole ring frames is refused', () => {
    const sab = createRingBuffer(256)
    const p = new RingProducer(sab)
    const c = new RingConsumer(sab)
    const b = block([100], 1)
    expect(p.writeBlock(b, 0, b.length, 1)).toBe(true)
    expect(p.writeBlock(b, 0, b.length, 1)).toBe(true)
    expect(p.writeBlock(b, 0, b.length, 1)).toBe(false)
    p.publish()
    expect(drainAll(c)).toHaveLength(2)
    expect(() => p.writeBlock(b, 0, b.length - 1, 1)).toThrow(/not a whole number of ring frames/)
  })
})

/** An envelope whose correlation id carries `seq` and whose payload is `n` bytes (send() path). */
function envelope(w: EnvelopeWriter, seq: number, n: number): EnvelopeWriter {
  w.reset()
  w.key = `k${seq}`
  w.correlationId = seq
  w.payloadBytes = new Uint8Array(n).fill(seq & 0xff)
  return w
}

const TELL_KIND = new InternedString('k')
/** A tell's code in the order checks: apart from raw frames (positive) and envelopes (negative multiples of 1000 minus < 1000). */
const tellCode = (seq: number, method: number, n: number): number => 1e9 + seq * 1000 + method * 200 + n

/** Raw test frames are one repeated byte; an envelope starts with its root offset (32) then three zeros. */
const isEnvelope = (d: Uint8Array, off: number, len: number): boolean => len >= 8 && d[off] === 32 && d[off + 1] === 0 && d[off + 2] === 0 && d[off + 3] === 0

describe('FrameSender.sendBlock', () => {
  it('fast-check: blocks, single frames, encoded envelopes and tells (keyed and PID runs), sent in any mix on a small ring with a lagging consumer, arrive in order', async () => {
    const reader = new EnvelopeReader()
    const entries = new TellRunEntries()
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 6 }),
            fc.integer({ min: 1, max: 90 }),
            fc.record({ env: fc.integer({ min: 0, max: 150 }) }),
            // Tells of two methods: a change of method closes the run.
            fc.record({ tell: fc.integer({ min: 0, max: 120 }), method: fc.constantFrom(1, 2) }),
            // A grain's tells by PID, of the same methods: a PID run never takes a keyed tell, or the reverse.
            fc.record({ pidTell: fc.integer({ min: 0, max: 120 }), method: fc.constantFrom(1, 2) }),
          ),
          { minLength: 1, maxLength: 80 },
        ),
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom(512, 4096),
        async (sends, drainEvery, ringBytes) => {
          const sab = createRingBuffer(ringBytes)
          const s = new FrameSender(sab, { maxOverflowFrames: 10_000 })
          const c = new RingConsumer(sab)
          const w = new EnvelopeWriter()
          const expected: number[] = []
          const seen: number[] = []
          let seq = 0
          const collect = (): void => {
            s.flush()
            c.drain((d, off, len) => {
              if (!isEnvelope(d, off, len)) return void seen.push(d[off]! | (len << 8))
              reader.reset(d, off, len)
              if ((reader.flags & FLAGS.TELL_RUN) !== 0) {
                entries.reset(d, reader.payloadOff, reader.payloadLen)
                const byPid = (reader.flags & FLAGS.PID_RUN) !== 0
                while (entries.next()) {
                  const tellSeq = byPid ? d[entries.keyOff]! | (d[entries.keyOff + 1]! << 8) : Number(reader.keyAt(entries.keyOff, entries.keyLen).slice(1))
                  if (byPid !== (entries.keyLen === 2 && pidTells.has(tellSeq))) throw new Error(`tell ${tellSeq} in the wrong kind of run`)
                  if (d.subarray(entries.payloadOff, entries.payloadOff + entries.payloadLen).some((b) => b !== (tellSeq & 0xff))) throw new Error(`tell ${tellSeq}: payload torn`)
                  seen.push(tellCode(tellSeq, reader.messageType, entries.payloadLen))
                }
                if (entries.error !== undefined) throw new Error(entries.error)
                return
              }
              const p = reader.payload()
              // Negative: never collides with a raw frame's code.
              seen.push(-(reader.correlationId + 1) * 1000 - p.length)
              if (p.some((b) => b !== (reader.correlationId & 0xff))) throw new Error(`envelope ${reader.correlationId}: payload torn`)
            }, 1 << 20)
          }
          const pidTells = new Set<number>()
          sends.forEach((x, k) => {
            if (typeof x === 'object' && 'pidTell' in x) {
              const n = x.pidTell
              const fill = seq & 0xff
              const payload = (buf: Uint8Array, off: number, max: number): number => (n > max ? -1 : (buf.fill(fill, off, off + n), n))
              // The PID index stands for the PID here: the tell's sequence number.
              if (s.sendPidTell(TELL_KIND, x.method, 1, seq, payload)) {
                pidTells.add(seq)
                expected.push(tellCode(seq, x.method, n))
              } else {
                expected.push(-(seq + 1) * 1000 - n)
                s.send(envelope(w, seq, n))
              }
              seq++
            } else if (typeof x === 'object' && 'tell' in x) {
              const n = x.tell
              const fill = seq & 0xff
              const payload = (buf: Uint8Array, off: number, max: number): number => (n > max ? -1 : (buf.fill(fill, off, off + n), n))
              // A tell too large for a run goes as an envelope (as WorkerHost.tell does); so does its code here.
              if (s.sendTell(TELL_KIND, x.method, 1, `t${seq}`, payload)) expected.push(tellCode(seq, x.method, n))
              else {
                expected.push(-(seq + 1) * 1000 - n)
                s.send(envelope(w, seq, n))
              }
              seq++
            } else if (typeof x === 'object' && !Array.isArray(x)) {
              expected.push(-(seq + 1) * 1000 - x.env)
              s.send(envelope(w, seq, x.env))
              seq++
            } else if (typeof x === 'number') {
              const f = new Uint8Array(x).fill(seq & 0xff)
              expected.push((seq & 0xff) | (x << 8))
              seq++
              s.sendBytes(f, 0, f.length)
            } else {
              const b = block(x, seq)
              x.forEach((n, i) => expected.push(((seq + i) & 0xff) | (n << 8)))
              seq += x.length
              // Over half the ring: the caller sends its frames one by one (as the relay does).
              if (!s.sendBlock(b, 0, b.length, x.length)) {
                expect(b.length).toBeGreaterThan(s.maxFrameBytes + 4)
                for (let at = 0, i = 0; i < x.length; i++) {
                  s.sendBytes(b, at + 4, x[i]!)
                  at += 4 + align4(x[i]!)
                }
              }
            }
            if (k % drainEvery === 0) collect()
          })
          // What is still queued moves as the consumer frees room (the sender's async pump).
          for (let i = 0; i < 2_000 && seen.length < expected.length; i++) {
            collect()
            await new Promise((r) => setImmediate(r))
          }
          collect()
          expect(seen).toEqual(expected)
        },
      ),
      { numRuns: 100 },
    )
  })

  it('idle: true only while nothing waits, in the ring (published or not) or outside it', async () => {
    const sab = createRingBuffer(4096)
    const s = new FrameSender(sab, { maxOverflowFrames: 1_000 })
    const c = new RingConsumer(sab)
    const w = new EnvelopeWriter()
    const drainAll = (): void => {
      while (c.drain(() => {}, 1_000) > 0);
    }
    expect(s.idle).toBe(true)
    s.send(envelope(w, 1, 40)) // committed, not yet published
    expect(s.idle).toBe(false)
    s.flush()
    expect(s.idle).toBe(false)
    drainAll()
    expect(s.idle).toBe(true)
    let seq = 2
    while (s.backlog === 0) s.send(envelope(w, seq++, 40)) // ring full, one queued outside
    s.flush()
    drainAll() // the ring is empty, the queued frame is not in it yet
    expect(s.backlog).toBeGreaterThan(0)
    expect(s.idle).toBe(false)
    for (let i = 0; i < 10_000 && !s.idle; i++) {
      s.flush()
      drainAll()
      await new Promise((res) => setImmediate(res)) // the backlog moves in asynchronously
    }
    expect([s.backlog, s.idle]).toEqual([0, true])
  })

  it('send() on a full ring queues envelopes (counted in backlog, ERR_RING_FULL at the bound), and close() hands them back in order', () => {
    const sab = createRingBuffer(4096)
    const s = new FrameSender(sab, { maxOverflowFrames: 50 })
    const w = new EnvelopeWriter()
    let seq = 0
    while (s.backlog === 0) s.send(envelope(w, seq++, 40)) // until the ring is full
    const inRing = seq - 1
    while (s.backlog < 50) s.send(envelope(w, seq++, 40))
    expect(() => s.send(envelope(w, seq, 40))).toThrow(expect.objectContaining({ code: 'ERR_RING_FULL' }))
    expect(s.backlog).toBe(50)
    const left = s.close()
    const r = new EnvelopeReader()
    expect(left.map((f) => r.reset(f, 0, f.length).correlationId)).toEqual(Array.from({ length: 50 }, (_, i) => inRing + i))
  })

  it('tells in runs count one by one against the bound; close() hands back the open and the queued runs', () => {
    const sab = createRingBuffer(4096)
    const s = new FrameSender(sab, { maxOverflowFrames: 50 })
    const r = new EnvelopeReader()
    const entries = new TellRunEntries()
    const one = (buf: Uint8Array, off: number, max: number): number => (max < 1 ? -1 : ((buf[off] = 1), 1))
    let seq = 0
    // A run stays outside the ring until something closes it: not idle meanwhile.
    expect(s.sendTell(TELL_KIND, 1, 1, `t${seq++}`, one)).toBe(true)
    expect(s.idle).toBe(false)
    // Fill the ring and 50 queued tells, one run after another (small payloads: many per run).
    let thrown: unknown
    try {
      for (; seq < 100_000; seq++) expect(s.sendTell(TELL_KIND, 1, 1, `t${seq}`, one)).toBe(true)
    } catch (e) {
      thrown = e
    }
    expect(thrown).toMatchObject({ code: 'ERR_RING_FULL' })
    // Accepted: every tell before the refused one; at most the bound wait outside the ring.
    expect(s.backlog).toBeLessThanOrEqual(50)
    const keys: number[] = []
    const collect = (d: Uint8Array, off: number, len: number): void => {
      r.reset(d, off, len)
      expect(r.flags).toBe(FLAGS.TELL_RUN)
      entries.reset(d, r.payloadOff, r.payloadLen)
      while (entries.next()) keys.push(Number(r.keyAt(entries.keyOff, entries.keyLen).slice(1)))
    }
    new RingConsumer(sab).drain(collect, 1 << 20)
    const inRing = keys.length
    expect(inRing).toBeGreaterThan(0)
    for (const f of s.close()) collect(f, 0, f.length)
    expect(keys).toEqual(Array.from({ length: seq }, (_, i) => i))
    expect(keys.length - inRing).toBeGreaterThan(40) // the queue held tells up to about its bound
    expect(keys.length - inRing).toBeLessThanOrEqual(50)
  })

  it('replies (send and sendBytes) queue past the bound, in order behind what waits; requests get ERR_RING_FULL', () => {
    const sab = createRingBuffer(4096)
    const s = new FrameSender(sab, { maxOverflowFrames: 5 })
    const w = new EnvelopeWriter()
    const reply = (seq: number): EnvelopeWriter => {
      envelope(w, seq, 40).flags = FLAGS.REPLY
      return w
    }
    let seq = 0
    while (s.backlog < 5) s.send(envelope(w, seq++, 40))
    expect(() => s.send(envelope(w, seq, 40))).toThrow(expect.objectContaining({ code: 'ERR_RING_FULL' }))
    s.send(reply(seq++))
    const request = envelope(w, seq, 40).toBytes()
    expect(() => s.sendBytes(request, 0, request.length)).toThrow(expect.objectContaining({ code: 'ERR_RING_FULL' }))
    const bytes = reply(seq++).toBytes()
    s.sendBytes(bytes, 0, bytes.length)
    expect(s.backlog).toBe(7)
    const r = new EnvelopeReader()
    const left = s.close().map((f) => r.reset(f, 0, f.length).correlationId)
    expect(left.slice(-2)).toEqual([seq - 2, seq - 1])
    expect(left).toEqual([...left].sort((x, y) => x - y))
  })

  it('send() on a full ring: the queued envelopes reach the consumer in order once it frees room', async () => {
    const sab = createRingBuffer(4096)
    const s = new FrameSender(sab)
    const c = new RingConsumer(sab)
    const w = new EnvelopeWriter()
    const r = new EnvelopeReader()
    const n = 2_000 // ~60 ring-fulls
    for (let i = 0; i < n; i++) s.send(envelope(w, i, i % 97))
    expect(s.backlog).toBeGreaterThan(n / 2)
    const seen: number[] = []
    for (let i = 0; i < 10_000 && seen.length < n; i++) {
      s.flush()
      c.drain((d, off, len) => void seen.push(r.reset(d, off, len).correlationId), 1 << 20)
      await new Promise((res) => setImmediate(res))
    }
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i))
    await s.whenDrained()
    expect(s.backlog).toBe(0)
  })

  it('takes nothing and returns false when the overflow cannot hold the whole block, or the block is over half the ring', () => {
    const sab = createRingBuffer(512)
    const s = new FrameSender(sab, { maxOverflowFrames: 3 })
    const b = block([100, 100], 7)
    expect(s.sendBlock(b, 0, b.length, 2)).toBe(true) // into the ring (208 of 512 B)
    expect(s.sendBlock(b, 0, b.length, 2)).toBe(true) // into the ring (416 of 512 B)
    expect(s.backlog).toBe(0)
    expect(s.sendBlock(b, 0, b.length, 2)).toBe(true) // no room: queued whole
    expect(s.backlog).toBe(2)
    expect(s.sendBlock(b, 0, b.length, 2)).toBe(false) // 2 + 2 > 3
    expect(s.backlog).toBe(2)
    const big = block([130, 130], 1) // 268 B > 512 / 2
    expect(new FrameSender(createRingBuffer(512)).sendBlock(big, 0, big.length, 2)).toBe(false)
  })

  it('close() hands back the frames of a queued block one by one', () => {
    const sab = createRingBuffer(512)
    const s = new FrameSender(sab)
    const b = block([100, 100], 7)
    s.sendBlock(b, 0, b.length, 2)
    s.sendBlock(b, 0, b.length, 2)
    s.sendBlock(block([100, 100], 20), 0, b.length, 2) // no room: queued
    const queued = block([5, 6, 7], 40)
    expect(s.sendBlock(queued, 0, queued.length, 3)).toBe(true) // behind the backlog: queued
    s.sendBytes(new Uint8Array([99]), 0, 1)
    const left = s.close()
    expect(left.map((f) => [f.length, f[0]])).toEqual([
      [100, 20],
      [100, 21],
      [5, 40],
      [6, 41],
      [7, 42],
      [1, 99],
    ])
  })
})
