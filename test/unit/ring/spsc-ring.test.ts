import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import {
  DEFAULT_RING_BYTES,
  HEADER_BYTES,
  RingConsumer,
  RingProducer,
  createRingBuffer,
  kConsumerWaiting,
  kHead,
  kProducerWaiting,
  kTail,
  maxFrameBytesOf,
} from '../../../src/runtime/ring/spsc-ring.js'
import { randInt, seededRng } from '../../helpers/seeded-rng.js'
import { checkFrame, fillFrame } from '../../fixtures/workers/ring-frames.js'
import { catchErr } from '../../helpers/catch-error.js'

const HEADER_CANARY = 0x5a
/** Byte offsets of the four control words; every other header byte is a canary. */
const CONTROL_BYTES = new Set([kTail, kHead, kConsumerWaiting, kProducerWaiting].flatMap((w) => [0, 1, 2, 3].map((i) => w * 4 + i)))

function paintHeaderCanaries(sab: SharedArrayBuffer): void {
  const h = new Uint8Array(sab, 0, HEADER_BYTES)
  for (let i = 0; i < HEADER_BYTES; i++) if (!CONTROL_BYTES.has(i)) h[i] = HEADER_CANARY
}

function headerCanariesIntact(sab: SharedArrayBuffer): boolean {
  const h = new Uint8Array(sab, 0, HEADER_BYTES)
  for (let i = 0; i < HEADER_BYTES; i++) if (!CONTROL_BYTES.has(i) && h[i] !== HEADER_CANARY) return false
  return true
}

const align4 = (n: number): number => (n + 3) & ~3

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}


function ring(capacity: number, primedPosition?: number): { sab: SharedArrayBuffer; ctl: Int32Array; p: RingProducer; c: RingConsumer } {
  const sab = createRingBuffer(capacity)
  paintHeaderCanaries(sab)
  const ctl = new Int32Array(sab, 0, HEADER_BYTES / 4)
  if (primedPosition !== undefined) {
    Atomics.store(ctl, kTail, primedPosition | 0)
    Atomics.store(ctl, kHead, primedPosition | 0)
  }
  return { sab, ctl, p: new RingProducer(sab), c: new RingConsumer(sab) }
}

interface ModelOptions {
  capacity: number
  frames: number
  primedPosition?: number
  /** Share of frames drawn from the whole 0..maxFrameBytes range (the rest are small). */
  largeShare?: number
}

interface ModelResult {
  wraps: number
  laps: number
  fullRejects: number
  finalTail: number
  sab: SharedArrayBuffer
}

/**
 * Drive producer and consumer in one thread with random interleavings and
 * check every frame against a model: delivered in order, once, only after
 * publish, with its exact length and content; reserve() succeeds exactly when
 * the frame fits; a failed reserve() writes nothing.
 */
function runModel(rng: () => number, opts: ModelOptions): ModelResult {
  const { sab, ctl, p, c } = ring(opts.capacity, opts.primedPosition)
  const max = p.maxFrameBytes
  const largeShare = opts.largeShare ?? 0.5
  const lens: number[] = []
  let nextSeq = 0
  let consumed = 0
  let publishedUpTo = 0
  let fullRejects = 0
  let laps = 0
  let lastHeadIdx = Atomics.load(ctl, kHead) & (opts.capacity - 1)
  const lenFor = (): number => (rng() < largeShare ? randInt(rng, 0, max) : randInt(rng, 0, 24))

  const drain = (limit: number): void => {
    const before = consumed
    const n = c.drain((data, off, len) => {
      const seq = consumed
      if (seq >= publishedUpTo) throw new Error(`frame ${seq} delivered before it was published`)
      if (data !== c.data) throw new Error('drain() must hand out the ring memory itself')
      const err = checkFrame(data, off, len, seq, lens[seq]!)
      if (err !== null) throw new Error(err)
      consumed++
    }, limit)
    if (n !== consumed - before || n > limit) throw new Error(`drain(${limit}) returned ${n} after delivering ${consumed - before}`)
    const headIdx = Atomics.load(ctl, kHead) & (opts.capacity - 1)
    if (n > 0 && headIdx <= lastHeadIdx) laps++
    lastHeadIdx = headIdx
  }

  while (consumed < opts.frames) {
    const op = rng()
    if (op < 0.6 && nextSeq < opts.frames) {
      const len = lenFor()
      const how = rng()
      // When everything is published the model knows both positions, so it can say whether the frame must fit.
      let mustFit: boolean | null = null
      if (!p.unpublished) {
        const tail = Atomics.load(ctl, kTail) >>> 0
        const free = opts.capacity - ((tail - (Atomics.load(ctl, kHead) >>> 0)) >>> 0)
        const toEnd = opts.capacity - (tail & (opts.capacity - 1))
        const need = 4 + align4(len)
        mustFit = need <= toEnd ? need <= free : toEnd + need <= free
      }
      let ok: boolean
      if (how < 0.15) {
        // encode straight into ring memory when the contiguous room allows
        // 0 means "no room" (not "room for an empty frame"): only a non-empty payload may use this path.
        const room = p.contiguousRoom()
        if (len > 0 && room >= len) {
          if (room > max) throw new Error(`contiguousRoom() ${room} exceeds maxFrameBytes ${max}`)
          fillFrame(p.data, p.frameOffset(), len, nextSeq)
          p.commit(len)
          ok = true
        } else ok = false
        if (mustFit === false && ok) throw new Error(`contiguousRoom() offered ${len} bytes that do not fit`)
      } else {
        const before = p.data.slice()
        const wrapsBefore = p.stats.wraps
        if (how < 0.3) {
          const src = new Uint8Array(len + 8)
          fillFrame(src, 3, len, nextSeq)
          ok = p.tryWrite(src, 3, len)
        } else {
          const at = p.reserve(len)
          ok = at >= 0
          if (ok) {
            if ((at & 3) !== 0 || at + len > opts.capacity) throw new Error(`reserve(${len}) returned offset ${at}`)
            fillFrame(p.data, at, len, nextSeq)
            p.commit(len)
          }
        }
        if (mustFit !== null && ok !== mustFit) throw new Error(`frame of ${len} bytes: reserve ${ok ? 'succeeded' : 'failed'}, the model says it ${mustFit ? 'fits' : 'does not fit'}`)
        // full: nothing written, no wrap marker, no wrap counted
        if (!ok && (!sameBytes(p.data, before) || p.stats.wraps !== wrapsBefore)) throw new Error(`a failed reserve(${len}) wrote into the ring`)
      }
      if (ok) lens[nextSeq++] = len
      else {
        fullRejects++
        p.publish()
        publishedUpTo = nextSeq
        drain(randInt(rng, 1, 6))
      }
    } else if (op < 0.75) {
      p.publish()
      publishedUpTo = nextSeq
      if (p.unpublished) throw new Error('unpublished frames right after publish()')
    } else {
      if (nextSeq >= opts.frames) {
        p.publish()
        publishedUpTo = nextSeq
      }
      drain(rng() < 0.5 ? randInt(rng, 1, 4) : 4096)
    }
  }
  expect(headerCanariesIntact(sab)).toBe(true)
  expect(p.stats.frames).toBe(opts.frames)
  expect(c.isEmpty()).toBe(true)
  return { wraps: p.stats.wraps, laps, fullRejects, finalTail: Atomics.load(ctl, kTail) >>> 0, sab }
}

describe('createRingBuffer', () => {
  it('allocates header + capacity; 1 MiB by default', () => {
    expect(createRingBuffer().byteLength).toBe(HEADER_BYTES + DEFAULT_RING_BYTES)
    expect(DEFAULT_RING_BYTES).toBe(1 << 20)
    expect(createRingBuffer(64).byteLength).toBe(HEADER_BYTES + 64)
    expect(maxFrameBytesOf(createRingBuffer(1024))).toBe(508)
  })

  it.each([[0], [32], [63], [96], [100], [1000], [65.5], [-64], [Number.NaN], [Number.POSITIVE_INFINITY], [3 * 1024], [2 ** 31], [3 * 2 ** 32]])(
    'rejects %s with ERR_CONFIG_INVALID and an issue',
    (cap) => {
      const e = catchErr(() => createRingBuffer(cap))
      expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
      expect((e as GrainClusterError).details).toEqual({ issues: [`ringBytes must be a power of two in [64, 2^30] (got ${cap})`] })
    },
  )

  it('accepts exactly the powers of two >= 64', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1 << 20 }), (cap) => {
        const pow2 = cap >= 64 && (cap & (cap - 1)) === 0
        const e = catchErr(() => createRingBuffer(cap))
        if (pow2) expect(e).toBeUndefined()
        else expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
      }),
    )
  })
})

describe('RingProducer / RingConsumer (one thread)', () => {
  it('makes frames visible only on publish(), in order', () => {
    const { p, c } = ring(256)
    expect(c.isEmpty()).toBe(true)
    expect(p.tryWrite(Uint8Array.of(1, 2, 3))).toBe(true)
    expect(p.tryWrite(new Uint8Array(0))).toBe(true)
    expect(p.unpublished).toBe(true)
    expect(c.isEmpty()).toBe(true)
    expect(c.drain(() => expect.unreachable('nothing is published yet'))).toBe(0)
    p.publish()
    expect(p.unpublished).toBe(false)
    const got: number[][] = []
    expect(c.drain((d, off, len) => got.push(Array.from(d.subarray(off, off + len))))).toBe(2)
    expect(got).toEqual([[1, 2, 3], []])
    expect(c.isEmpty()).toBe(true)
    expect(p.stats).toMatchObject({ frames: 2, publishes: 1, notifies: 0 })
  })

  it('rejects a frame above maxFrameBytes (and a negative length) with ERR_RING_FRAME_TOO_LARGE', () => {
    const { p } = ring(1024)
    expect(p.maxFrameBytes).toBe(508)
    expect(p.reserve(508)).toBeGreaterThanOrEqual(0)
    for (const len of [509, 4096, -1]) {
      const e = catchErr(() => p.reserve(len))
      expect(GrainClusterError.is(e, 'ERR_RING_FRAME_TOO_LARGE')).toBe(true)
      expect((e as GrainClusterError).details).toEqual({ size: len, limit: 508 })
    }
    const e = catchErr(() => p.tryWrite(new Uint8Array(509)))
    expect(GrainClusterError.is(e, 'ERR_RING_FRAME_TOO_LARGE')).toBe(true)
    expect((e as GrainClusterError).details).toEqual({ size: 509, limit: 508 })
  })

  it('a maximum-size frame fits an empty ring at any position', () => {
    for (let start = 0; start < 256; start += 4) {
      const { p, c } = ring(256, start)
      const len = p.maxFrameBytes
      const at = p.reserve(len)
      expect(at, `start ${start}`).toBeGreaterThanOrEqual(0)
      fillFrame(p.data, at, len, start)
      p.commit(len)
      p.publish()
      let seen = 0
      c.drain((d, off, n) => {
        expect(checkFrame(d, off, n, start, len)).toBeNull()
        seen++
      })
      expect(seen).toBe(1)
    }
  })

  it('reserve returns -1 when full and never overwrites unread data', () => {
    for (const base of [20, 60, 116]) {
      const { sab, p, c } = ring(1024)
      // start somewhere in the middle so the full ring straddles the end of the data area
      expect(p.tryWrite(new Uint8Array(300))).toBe(true)
      p.publish()
      c.drain(() => undefined)
      const lens: number[] = []
      for (let seq = 0; ; seq++) {
        const len = base + (seq % 5) * 3
        const at = p.reserve(len)
        if (at < 0) break
        fillFrame(p.data, at, len, seq)
        p.commit(len)
        lens.push(len)
      }
      p.publish()
      const snapshot = p.data.slice()
      const wraps = p.stats.wraps
      // no size that does not fit may write anything (not even a wrap marker)
      for (let len = 0; len <= p.maxFrameBytes; len++) {
        if (4 + align4(len) > 1024 - lens.reduce((s, l) => s + 4 + align4(l), 0)) {
          expect(p.reserve(len), `reserve(${len})`).toBe(-1)
          expect(p.tryWrite(new Uint8Array(len).fill(0xee))).toBe(false)
        }
      }
      expect(p.reserve(p.maxFrameBytes)).toBe(-1)
      expect(p.data).toEqual(snapshot)
      expect(p.stats.wraps).toBe(wraps)
      expect(p.stats.frames).toBe(lens.length + 1)
      let i = 0
      c.drain((d, off, len) => {
        expect(checkFrame(d, off, len, i, lens[i]!)).toBeNull()
        i++
      })
      expect(i).toBe(lens.length)
      expect(headerCanariesIntact(sab)).toBe(true)
    }
  })

  it('drain() honours maxFrames and does not count skipped wrap markers as frames', () => {
    const { p, c } = ring(256)
    for (let i = 0; i < 3; i++) {
      expect(p.tryWrite(new Uint8Array(76).fill(i))).toBe(true)
    }
    p.publish()
    expect(c.drain(() => undefined, 3)).toBe(3) // tail now at 240
    // the next 100-byte frame does not fit the last 16 bytes: a wrap marker, then the frame at 0
    expect(p.tryWrite(new Uint8Array(100).fill(9))).toBe(true)
    expect(p.stats.wraps).toBe(1)
    expect(p.tryWrite(Uint8Array.of(1))).toBe(true)
    p.publish()
    const lens: number[] = []
    expect(c.drain((_d, _o, len) => lens.push(len), 1)).toBe(1)
    expect(lens).toEqual([100])
    expect(c.drain((_d, _o, len) => lens.push(len), 1)).toBe(1)
    expect(lens).toEqual([100, 1])
    expect(c.drain(() => undefined)).toBe(0)
  })

  it('drain() stops once maxBytes of frames have gone (at least one frame per call)', () => {
    const { p, c } = ring(1024)
    for (let i = 0; i < 6; i++) expect(p.tryWrite(new Uint8Array(60).fill(i))).toBe(true) // 64 ring bytes each
    p.publish()
    const seen: number[] = []
    const on = (d: Uint8Array, o: number): void => void seen.push(d[o]!)
    expect(c.drain(on, 100, 128)).toBe(2)
    expect(c.drain(on, 100, 129)).toBe(3)
    expect(c.drain(on, 100, 1)).toBe(1)
    expect(c.drain(on, 100, 1)).toBe(0)
    expect(seen).toEqual([0, 1, 2, 3, 4, 5])
  })

  it('a throwing frame handler loses only its own frame', () => {
    const { p, c } = ring(256)
    for (let i = 0; i < 3; i++) p.tryWrite(Uint8Array.of(i))
    p.publish()
    const seen: number[] = []
    expect(() =>
      c.drain((d, off) => {
        seen.push(d[off]!)
        if (d[off] === 0) throw new Error('handler failed')
      }),
    ).toThrow('handler failed')
    expect(c.drain((d, off) => seen.push(d[off]!))).toBe(2)
    expect(seen).toEqual([0, 1, 2])
  })

  it('detects a corrupted frame length with ERR_FRAME_MALFORMED instead of reading garbage', () => {
    const { p, c } = ring(256)
    p.tryWrite(Uint8Array.of(1, 2, 3))
    p.publish()
    new Uint32Array(p.data.buffer, HEADER_BYTES, 1)[0] = 200 // > maxFrameBytes (124)
    const e = catchErr(() => c.drain(() => expect.unreachable('a corrupted frame must not be delivered')))
    expect(GrainClusterError.is(e, 'ERR_FRAME_MALFORMED')).toBe(true)
    expect((e as GrainClusterError).details).toEqual({ size: 200 })
  })

  it('a new producer/consumer pair resumes from the positions in the buffer', () => {
    const { sab, p, c } = ring(128)
    for (let i = 0; i < 20; i++) {
      p.tryWrite(Uint8Array.of(i, i))
      p.publish()
      c.drain(() => undefined)
    }
    p.tryWrite(Uint8Array.of(42))
    p.publish()
    const c2 = new RingConsumer(sab)
    const got: number[] = []
    c2.drain((d, off) => got.push(d[off]!))
    expect(got).toEqual([42])
    const p2 = new RingProducer(sab)
    p2.tryWrite(Uint8Array.of(43))
    p2.publish()
    c2.drain((d, off) => got.push(d[off]!))
    expect(got).toEqual([42, 43])
  })

  it.each([
    [1, 1024],
    [2, 1024],
    [3, 256],
    [4, 4096],
    [5, 64],
  ])('seeded random interleavings (seed %i, %i-byte ring): >= 100 wrap-arounds, every frame verified', (seed, capacity) => {
    const r = runModel(seededRng(seed), { capacity, frames: capacity <= 256 ? 6000 : 4000 })
    expect(r.wraps).toBeGreaterThanOrEqual(100)
    expect(r.laps).toBeGreaterThanOrEqual(100)
    expect(r.fullRejects).toBeGreaterThan(0)
  })

  it('fast-check: random frame sizes and drains on small rings', () => {
    fc.assert(
      fc.property(fc.integer(), fc.constantFrom(64, 128, 256, 512), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 400 }), (seed, capacity, largeShare, frames) => {
        runModel(seededRng(seed), { capacity, frames, largeShare })
      }),
      { numRuns: 100 },
    )
  })

  it.each([[0xfffffff0], [0xffffff00], [0x7ffffff0]])('keeps working when the free-running positions cross a 32-bit boundary (primed at %s)', (start) => {
    const r = runModel(seededRng(start), { capacity: 1024, frames: 3000, primedPosition: start })
    expect(r.wraps).toBeGreaterThanOrEqual(100)
    if (start > 0x80000000) expect(r.finalTail).toBeLessThan(start) // went past 2^32 and came round
    else expect(r.finalTail).toBeGreaterThan(0x80000000) // went past 2^31 (sign flip of the Int32 word)
  })
})

describe('wake-ups', () => {
  it('publish() notifies only a consumer that announced it is parked', async () => {
    const { ctl, p, c } = ring(256)
    for (let i = 0; i < 100; i++) {
      p.tryWrite(Uint8Array.of(i))
      p.publish()
      expect(c.drain(() => undefined)).toBe(1)
    }
    expect(p.stats.notifies).toBe(0)
    expect(c.wakeups).toBe(0)

    const parked = c.waitForData()
    expect(parked).toBeInstanceOf(Promise)
    expect(Atomics.load(ctl, kConsumerWaiting)).toBe(1)
    expect(c.wakeups).toBe(1)
    p.tryWrite(Uint8Array.of(7))
    expect(p.stats.notifies).toBe(0) // commit alone does not wake
    p.publish()
    expect(p.stats.notifies).toBe(1)
    expect(Atomics.load(ctl, kConsumerWaiting)).toBe(0)
    await expect(parked).resolves.toBe('ok')
    expect(c.drain(() => undefined)).toBe(1)

    // the flag was consumed: the next publish does not notify again
    p.tryWrite(Uint8Array.of(8))
    p.publish()
    expect(p.stats.notifies).toBe(1)
  })

  it('waitForData() returns undefined without parking when frames are waiting', () => {
    const { ctl, p, c } = ring(256)
    p.tryWrite(Uint8Array.of(1))
    p.publish()
    expect(c.waitForData()).toBeUndefined()
    expect(Atomics.load(ctl, kConsumerWaiting)).toBe(0)
    expect(c.wakeups).toBe(0)
  })

  it('a publish that sees the flag before the consumer parks makes the park return at once', () => {
    const { ctl, p, c } = ring(256)
    // The consumer announced itself (first half of waitForData) ...
    Atomics.store(ctl, kConsumerWaiting, 1)
    // ... the producer publishes and takes the flag ...
    p.tryWrite(Uint8Array.of(1))
    p.publish()
    expect(p.stats.notifies).toBe(1)
    // ... and the consumer's re-check sees the data: no lost wake-up.
    expect(c.waitForData()).toBeUndefined()
  })

  it('waitForData(timeoutMs) resolves with timed-out when nothing comes', async () => {
    const { c } = ring(256)
    const w = c.waitForData(5)
    expect(w).toBeInstanceOf(Promise)
    await expect(w).resolves.toBe('timed-out')
  })

  it('cancelWait() releases a parked consumer and clears the announcement', async () => {
    const { ctl, p, c } = ring(256)
    const w = c.waitForData()
    c.cancelWait()
    expect(Atomics.load(ctl, kConsumerWaiting)).toBe(0)
    await expect(w).resolves.toBe('ok')
    p.tryWrite(Uint8Array.of(1))
    p.publish()
    expect(p.stats.notifies).toBe(0)
  })

  it('waitForSpace() resolves at once when there is room', async () => {
    const { ctl, p } = ring(256)
    await p.waitForSpace(100)
    expect(p.stats.fullEvents).toBe(0)
    expect(Atomics.load(ctl, kProducerWaiting)).toBe(0)
  })

  it('waitForSpace() parks a producer on a full ring until the consumer frees space', async () => {
    const { ctl, p, c } = ring(256)
    while (p.tryWrite(new Uint8Array(40))) {
      /* fill */
    }
    p.publish()
    expect(p.reserve(40)).toBe(-1)
    const w = p.waitForSpace(40)
    expect(Atomics.load(ctl, kProducerWaiting)).toBe(1)
    expect(p.stats.fullEvents).toBe(1)
    expect(c.drain(() => undefined, 1)).toBe(1)
    await w
    expect(Atomics.load(ctl, kProducerWaiting)).toBe(0)
    expect(p.reserve(40)).toBeGreaterThanOrEqual(0)
  })

  it('waitForSpace() keeps waiting while the free space is not contiguous (a frame that must wrap)', async () => {
    const { ctl, p, c } = ring(256) // maxFrameBytes 124
    expect(p.tryWrite(new Uint8Array(96))).toBe(true) // [0, 100)
    expect(p.tryWrite(new Uint8Array(36))).toBe(true) // [100, 140)
    expect(p.tryWrite(new Uint8Array(96))).toBe(true) // [140, 240)
    p.publish()
    expect(c.drain(() => undefined, 1)).toBe(1) // head 100: 116 bytes free, only 16 of them before the end
    expect(p.reserve(100)).toBe(-1) // needs 16 (skipped) + 104
    const w = p.waitForSpace(100)
    // It must park: resolving now would send the caller straight back to a failing reserve (a hot loop).
    expect(Atomics.load(ctl, kProducerWaiting)).toBe(1)
    expect(p.stats.fullEvents).toBe(1)
    expect(c.drain(() => undefined, 1)).toBe(1) // head 140: 156 free
    await w
    expect(p.reserve(100)).toBe(4)
    expect(p.stats.wraps).toBe(1)
  })

  it('after waitForSpace(len) resolves, reserve(len) succeeds (random ring states)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 124 }), { minLength: 1, maxLength: 40 }), fc.nat(20), fc.integer({ min: 0, max: 124 }), async (lens, drains, len) => {
        const { ctl, p, c } = ring(256)
        for (const l of lens) {
          if (!p.tryWrite(new Uint8Array(l))) {
            p.publish()
            c.drain(() => undefined)
            p.tryWrite(new Uint8Array(l))
          }
        }
        p.publish()
        c.drain(() => undefined, Math.max(1, drains))
        const fits = p.reserve(len) >= 0
        if (fits) return // reserve already took the space; nothing to wait for
        const w = p.waitForSpace(len)
        expect(Atomics.load(ctl, kProducerWaiting)).toBe(1)
        // free one frame at a time until the producer is released
        let released = false
        void w.then(() => (released = true))
        while (!released) {
          expect(c.drain(() => undefined, 1)).toBeLessThanOrEqual(1)
          await new Promise((r) => setImmediate(r))
          if (c.isEmpty()) break
        }
        await w
        expect(p.reserve(len)).toBeGreaterThanOrEqual(0)
      }),
      { numRuns: 150 },
    )
  })
})
