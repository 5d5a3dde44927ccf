import type { Worker } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import { HEADER_BYTES, RingConsumer, createRingBuffer, kConsumerWaiting, kProducerWaiting } from '../../../src/runtime/ring/spsc-ring.js'
import { waitUntil } from '../../helpers/wait-until.js'
import { checkFrame, frameLenOf } from '../../fixtures/workers/ring-frames.js'
import type { RingProducerData, RingProducerMessage } from '../../fixtures/workers/ring-producer.js'
import { nextMessage, spawnTsWorker } from '../../fixtures/workers/spawn-ts-worker.js'

const PRODUCER = new URL('../../fixtures/workers/ring-producer.ts', import.meta.url)
/**
 * Frames in the stress run (>= 1M; RING_STRESS_FRAMES overrides). 6M frames
 * take about 5 s on a 2-core machine; the test allows 60 s for loaded CI.
 */
const FRAMES = Math.max(1_000_000, Number(process.env.RING_STRESS_FRAMES ?? 6_000_000) || 0)
const MIN_LEN = 8
const MAX_LEN = 200

const workers: Worker[] = []
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()))
})

function startProducer(data: RingProducerData): Worker {
  const w = spawnTsWorker(PRODUCER, data)
  workers.push(w)
  return w
}

const isType =
  <T extends RingProducerMessage['type']>(type: T) =>
  (m: unknown): m is Extract<RingProducerMessage, { type: T }> =>
    typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type

/**
 * Consume on this thread with drain() + waitForData() (Atomics.waitAsync;
 * the event loop is never blocked) until `frames` frames arrived, checking
 * order and content of every one. Returns the next expected sequence number.
 */
async function consume(
  c: RingConsumer,
  from: number,
  frames: number,
  worker: Worker,
  opts: { stallAt?: number[]; ctl?: Int32Array; deadlineMs: number },
): Promise<number> {
  const failure: { error?: Error } = {}
  const onError = (e: Error): void => {
    failure.error = e
  }
  const onExit = (code: number): void => {
    failure.error ??= new Error(`producer exited with code ${code}`)
  }
  worker.on('error', onError)
  worker.on('exit', onExit)
  let next = from
  const onFrame = (data: Uint8Array, off: number, len: number): void => {
    const err = checkFrame(data, off, len, next, frameLenOf(next, MIN_LEN, MAX_LEN))
    if (err !== null) throw new Error(`${err} (lost, reordered or torn)`)
    next++
  }
  try {
    const deadline = Date.now() + opts.deadlineMs
    let busy = 0
    while (next < from + frames) {
      if (failure.error !== undefined) throw failure.error
      if (Date.now() > deadline) throw new Error(`consumer stalled at frame ${next} of ${from + frames}`)
      const stall = opts.stallAt?.[0]
      if (stall !== undefined && next >= stall && opts.ctl !== undefined) {
        // Stop draining until the ring is full and the producer parks in waitForSpace().
        opts.stallAt?.shift()
        const ctl = opts.ctl
        await waitUntil(() => Atomics.load(ctl, kProducerWaiting) === 1, { timeoutMs: 20_000, what: `producer parked at frame ${next}` })
      }
      if (c.drain(onFrame, 1024) === 0) {
        const parked = c.waitForData(1000) // bounded, so a dead producer is noticed
        if (parked !== undefined) await parked
      } else if (++busy % 256 === 0) {
        await new Promise((r) => setImmediate(r)) // let worker events through
      }
    }
    return next
  } finally {
    worker.off('error', onError)
    worker.off('exit', onExit)
  }
}

describe('SPSC ring across two threads', () => {
  it(
    `moves ${FRAMES} frames from a worker thread: none lost, reordered or torn`,
    async () => {
      const sab = createRingBuffer(1 << 16)
      const ctl = new Int32Array(sab, 0, HEADER_BYTES / 4)
      const c = new RingConsumer(sab)
      const w = startProducer({ sab, frames: FRAMES, seed: 20240601, minLen: MIN_LEN, maxLen: MAX_LEN, maxBatch: 300, pauseEvery: Math.floor(FRAMES / 4) })
      const done = nextMessage(w, isType('done'))
      const started = performance.now()
      const stallAt = [1000, Math.floor(FRAMES / 3), Math.floor((2 * FRAMES) / 3)]
      const next = await consume(c, 0, FRAMES, w, { stallAt, ctl, deadlineMs: 55_000 })
      const elapsed = performance.now() - started
      const report = await done

      expect(next).toBe(FRAMES)
      expect(c.isEmpty()).toBe(true)
      expect(c.drain(() => expect.unreachable('no frame beyond the last'))).toBe(0)
      expect(report.stats.frames).toBe(FRAMES)
      expect(stallAt).toEqual([])
      // the producer parked on a full ring at least at each stall, and was woken each time
      expect(report.stats.fullEvents).toBeGreaterThanOrEqual(3)
      // it wrapped around the 64 KiB ring thousands of times
      expect(report.stats.wraps).toBeGreaterThan(1000)
      // the consumer parked at least at each producer pause, and was woken by notify
      expect(report.pauses).toBe(3)
      expect(c.wakeups).toBeGreaterThanOrEqual(3)
      expect(report.stats.notifies).toBeGreaterThanOrEqual(3)
      console.info(
        `[ring-threads] ${FRAMES} frames in ${(elapsed / 1000).toFixed(2)} s; wraps ${report.stats.wraps}, producer parks ${report.stats.fullEvents}, ` +
          `retries ${report.retries}, consumer parks ${c.wakeups}, notifies ${report.stats.notifies}`,
      )
    },
    60_000,
  )

  it('the consumer really sleeps once the producer stops, and a publish wakes it', async () => {
    const frames = 10_000
    const sab = createRingBuffer(1 << 12)
    const ctl = new Int32Array(sab, 0, HEADER_BYTES / 4)
    const c = new RingConsumer(sab)
    const w = startProducer({ sab, frames, seed: 7, minLen: MIN_LEN, maxLen: MAX_LEN, maxBatch: 50, pauseEvery: 0 })
    const done = nextMessage(w, isType('done'))
    expect(await consume(c, 0, frames, w, { deadlineMs: 20_000 })).toBe(frames)
    const { stats } = await done
    expect(c.drain(() => expect.unreachable('the producer stopped'))).toBe(0)

    const parksBefore = c.wakeups
    const parked = c.waitForData()
    expect(parked).toBeInstanceOf(Promise)
    expect(c.wakeups).toBe(parksBefore + 1)
    expect(Atomics.load(ctl, kConsumerWaiting)).toBe(1)
    let woke = false
    void parked!.then(() => (woke = true))

    // The worker publishes one more frame; its notify must wake the parked consumer.
    const extra = nextMessage(w, isType('extra-done'))
    w.postMessage({ type: 'extra', seq: frames })
    const after = await extra
    await expect(parked).resolves.toBe('ok')
    expect(woke).toBe(true)
    expect(after.stats.notifies).toBe(stats.notifies + 1)
    expect(Atomics.load(ctl, kConsumerWaiting)).toBe(0)
    let got = -1
    expect(
      c.drain((data, off, len) => {
        expect(checkFrame(data, off, len, frames, frameLenOf(frames, MIN_LEN, MAX_LEN))).toBeNull()
        got = frames
      }),
    ).toBe(1)
    expect(got).toBe(frames)
  })
})
