import type { Worker } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import { HEADER_BYTES, RingProducer, createRingBuffer, kConsumerWaiting } from '../../../src/runtime/ring/spsc-ring.js'
import { waitUntil } from '../../helpers/wait-until.js'
import { IDLE, type IdleConsumerData } from '../../fixtures/workers/idle-consumer-layout.js'
import { spawnTsWorker } from '../../fixtures/workers/spawn-ts-worker.js'

const CONSUMER = new URL('../../fixtures/workers/idle-consumer.ts', import.meta.url)

let worker: Worker | undefined
afterEach(async () => {
  await worker?.terminate()
  worker = undefined
})

describe('a worker parked on an empty ring', () => {
  it('keeps running its timers, and wakes for a published frame', async () => {
    const ring = createRingBuffer(1024)
    const ctl = new Int32Array(ring, 0, HEADER_BYTES / 4)
    const stateBuf = new SharedArrayBuffer((IDLE.SLOTS + IDLE.MAX_BYTES) * 4)
    const state = new Int32Array(stateBuf)
    const data: IdleConsumerData = { ring, state: stateBuf, tickMs: 5 }
    worker = spawnTsWorker(CONSUMER, data)
    let failure: Error | undefined
    worker.on('error', (e) => (failure = e))
    const alive = (): void => {
      if (failure !== undefined) throw failure
    }

    // Parked on the empty ring ...
    await waitUntil(
      () => {
        alive()
        return Atomics.load(state, IDLE.PARKED) === 1 && Atomics.load(ctl, kConsumerWaiting) === 1
      },
      { timeoutMs: 20_000, what: 'worker parked on the ring' },
    )
    // ... while its interval keeps firing: the event loop is not blocked.
    const ticksAtPark = Atomics.load(state, IDLE.TICKS)
    await waitUntil(
      () => {
        alive()
        return Atomics.load(state, IDLE.TICKS) >= ticksAtPark + 10 && Atomics.load(state, IDLE.TICKS)
      },
      { timeoutMs: 20_000, what: '10 timer ticks while parked' },
    )
    // It parked once and stayed parked (no polling loop), with nothing consumed.
    expect(Atomics.load(state, IDLE.PARKS)).toBe(1)
    expect(Atomics.load(state, IDLE.PARKED)).toBe(1)
    expect(Atomics.load(state, IDLE.FRAMES)).toBe(0)

    // One frame: the producer sees the flag, notifies, and the worker consumes it.
    const p = new RingProducer(ring)
    const frame = Uint8Array.from({ length: 37 }, (_, i) => (i * 13 + 5) & 0xff)
    expect(p.tryWrite(frame)).toBe(true)
    p.publish()
    expect(p.stats.notifies).toBe(1)
    await waitUntil(
      () => {
        alive()
        return Atomics.load(state, IDLE.FRAMES) === 1
      },
      { timeoutMs: 20_000, what: 'worker consumed the frame' },
    )
    expect(Atomics.load(state, IDLE.LAST_LEN)).toBe(37)
    const seen = Array.from(state.subarray(IDLE.SLOTS, IDLE.SLOTS + 37))
    expect(seen).toEqual(Array.from(frame))

    // And it goes back to sleep, timers still running.
    await waitUntil(() => Atomics.load(state, IDLE.PARKS) === 2 && Atomics.load(state, IDLE.PARKED) === 1, {
      timeoutMs: 20_000,
      what: 'worker parked again',
    })
    const ticks = Atomics.load(state, IDLE.TICKS)
    await waitUntil(() => Atomics.load(state, IDLE.TICKS) >= ticks + 3, { timeoutMs: 20_000, what: 'ticks after the wake-up' })

    // Clean shutdown: raise STOP and wake it with a frame; the thread then exits on its own (timer cleared, nothing pending).
    const exited = new Promise<number>((resolve) => worker!.once('exit', resolve))
    Atomics.store(state, IDLE.STOP, 1)
    expect(p.tryWrite(new Uint8Array(0))).toBe(true)
    p.publish()
    expect(await exited).toBe(0)
    expect(Atomics.load(state, IDLE.FRAMES)).toBe(2)
    expect(failure).toBeUndefined()
  })
})
