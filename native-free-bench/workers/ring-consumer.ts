/**
 * Consumer thread of the ring scope. The same thread receives both the SAB
 * ring frames and the postMessage baseline, so both paths cross the same
 * pair of threads.
 *
 * Every frame is FRAME_BYTES long and starts with its sequence number
 * (u32 LE); the consumer checks length and order of every frame, so a lost,
 * reordered or torn frame shows up as `bad > 0` and fails the run.
 *
 * Ring mode drains with RingConsumer.drain() and parks with waitForData()
 * (Atomics.waitAsync): the thread's event loop is never blocked, as in the
 * runtime. It never uses Atomics.wait.
 */

import { parentPort, workerData } from 'node:worker_threads'
import { RingConsumer } from '../../src/runtime/ring/spsc-ring.js'
import { FRAME_BYTES, type FromConsumer, type RingConsumerData, type ToConsumer } from './ring-protocol.js'

const port = parentPort!
const { sab } = (workerData as { data: RingConsumerData }).data
const consumer = new RingConsumer(sab)

let next = 0
let bad = 0

function seqAt(d: Uint8Array, off: number): number {
  return (d[off]! | (d[off + 1]! << 8) | (d[off + 2]! << 16) | (d[off + 3]! << 24)) >>> 0
}

const onFrame = (d: Uint8Array, off: number, len: number): void => {
  if (len !== FRAME_BYTES || seqAt(d, off) !== next) bad++
  next++
}

async function consumeRing(frames: number): Promise<void> {
  next = 0
  bad = 0
  const wakeups0 = consumer.wakeups
  port.postMessage({ type: 'armed' } satisfies FromConsumer)
  while (next < frames) {
    if (consumer.drain(onFrame, 4096) > 0) continue
    const parked = consumer.waitForData()
    if (parked !== undefined) await parked
  }
  port.postMessage({ type: 'done', frames: next, bad, wakeups: consumer.wakeups - wakeups0 } satisfies FromConsumer)
}

let pmExpected = -1

function onPostedFrames(m: Uint8Array): void {
  for (let off = 0; off < m.length; off += FRAME_BYTES) onFrame(m, off, FRAME_BYTES)
  if ((m.length & (FRAME_BYTES - 1)) !== 0) bad++
  if (pmExpected >= 0 && next >= pmExpected) {
    pmExpected = -1
    port.postMessage({ type: 'done', frames: next, bad, wakeups: 0 } satisfies FromConsumer)
  }
}

// Registered before anything else: a pending Atomics.waitAsync does not keep
// a worker's event loop alive, a listening port does.
port.on('message', (m: Uint8Array | ToConsumer) => {
  if (m instanceof Uint8Array) {
    onPostedFrames(m)
    return
  }
  switch (m.type) {
    case 'ring':
      void consumeRing(m.frames)
      return
    case 'pm':
      next = 0
      bad = 0
      pmExpected = m.frames
      port.postMessage({ type: 'armed' } satisfies FromConsumer)
      return
  }
})

port.postMessage({ type: 'ready' } satisfies FromConsumer)
