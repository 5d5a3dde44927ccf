/**
 * ring scope: 64-byte frames from one thread to another through the SPSC
 * SharedArrayBuffer ring, against postMessage between the same two threads.
 *
 * Hand-timed (performance.now on the producing main thread): tinybench times
 * a function on one thread and cannot see when another thread has finished.
 * A run starts when the consumer reports it is armed and ends when it reports
 * that the last frame arrived in order; the figure is the median of several
 * runs, interleaved across cases, after one warm-up run per case.
 *
 * Producer: the main thread. Consumer: one worker (workers/ring-consumer.ts)
 * that serves every case, so all cases use the same pair of threads.
 */

import type { Worker } from 'node:worker_threads'
import { createRingBuffer, DEFAULT_RING_BYTES, RingProducer } from '../src/runtime/ring/spsc-ring.js'
import { check, speedup, type BenchOptions, type Row, type ScopeResult } from './lib/report.js'
import { median } from './lib/stats.js'
import { nextMessage, ofType, spawnTsWorker } from './lib/ts-worker.js'
import { FRAME_BYTES, type FromConsumer, type RingConsumerData, type ToConsumer } from './workers/ring-protocol.js'

const CONSUMER = new URL('./workers/ring-consumer.ts', import.meta.url)
const BATCH_FRAMES = 256
const is = ofType<FromConsumer>()

interface Case {
  name: string
  kind: 'ring' | 'pm'
  /** ring: frames per publish; pm: frames per message. */
  batch: number
  frames: number
  baseline?: boolean
  informational?: boolean
}

interface RunStats {
  ms: number
  framesPerSec: number
  publishes: number
  fullWaits: number
  wakeups: number
}

function writeSeq(d: Uint8Array, at: number, seq: number): void {
  d[at] = seq
  d[at + 1] = seq >>> 8
  d[at + 2] = seq >>> 16
  d[at + 3] = seq >>> 24
}

/**
 * Copy `frames` 64-byte frames into the ring, publishing every `batch`
 * frames. When the ring is full: publish what is committed (the consumer can
 * only free what it can see), then park in waitForSpace (Atomics.waitAsync).
 */
async function produceRing(p: RingProducer, template: Uint8Array, frames: number, batch: number): Promise<number> {
  const data = p.data
  let fullWaits = 0
  let inBatch = 0
  for (let seq = 0; seq < frames; seq++) {
    let at = p.reserve(FRAME_BYTES)
    if (at < 0) {
      p.publish()
      inBatch = 0
      do {
        fullWaits++
        await p.waitForSpace(FRAME_BYTES)
        at = p.reserve(FRAME_BYTES)
      } while (at < 0)
    }
    data.set(template, at)
    writeSeq(data, at, seq)
    p.commit(FRAME_BYTES)
    if (++inBatch === batch) {
      p.publish()
      inBatch = 0
    }
  }
  p.publish()
  return fullWaits
}

/**
 * postMessage the frames, `perMessage` to a message. Each frame is copied
 * from the template and stamped, as in produceRing; the structured clone then
 * copies the message once more (that copy is what postMessage costs).
 */
function producePosted(w: Worker, template: Uint8Array, frames: number, perMessage: number): void {
  if (frames % perMessage !== 0) throw new Error(`frames (${frames}) must be a multiple of frames per message (${perMessage})`)
  const msg = new Uint8Array(FRAME_BYTES * perMessage)
  for (let seq = 0; seq < frames; ) {
    for (let at = 0; at < msg.length; at += FRAME_BYTES) {
      msg.set(template, at)
      writeSeq(msg, at, seq++)
    }
    w.postMessage(msg)
  }
}

async function runOnce(w: Worker, p: RingProducer, template: Uint8Array, c: Case): Promise<RunStats> {
  const armed = nextMessage(w, is('armed'))
  w.postMessage((c.kind === 'ring' ? { type: 'ring', frames: c.frames } : { type: 'pm', frames: c.frames, framesPerMessage: c.batch }) satisfies ToConsumer)
  await armed
  const done = nextMessage(w, is('done'))
  const publishes0 = p.stats.publishes
  const t0 = performance.now()
  let fullWaits = 0
  if (c.kind === 'ring') fullWaits = await produceRing(p, template, c.frames, c.batch)
  else producePosted(w, template, c.frames, c.batch)
  const r = await done
  const ms = performance.now() - t0
  if (r.bad !== 0 || r.frames !== c.frames) {
    throw new Error(`${c.name}: consumer saw ${r.bad} bad frames of ${r.frames} (expected ${c.frames} in order)`)
  }
  return { ms, framesPerSec: (c.frames * 1000) / ms, publishes: p.stats.publishes - publishes0, fullWaits, wakeups: r.wakeups }
}

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  // Multiples of BATCH_FRAMES, so the packed postMessage row ends on a whole message.
  const ringFrames = o.quick ? 1 << 19 : 5 << 20 // 524,288 / 5,242,880
  const postFrames = o.quick ? 200 * BATCH_FRAMES : 2_000 * BATCH_FRAMES // 51,200 / 512,000
  const runs = o.quick ? 1 : 5
  const cases: Case[] = [
    { name: `SAB ring, batched (publish per ${BATCH_FRAMES} frames)`, kind: 'ring', batch: BATCH_FRAMES, frames: ringFrames },
    { name: 'SAB ring, unbatched (publish per frame)', kind: 'ring', batch: 1, frames: ringFrames },
    { name: 'postMessage, one Uint8Array(64) per frame', kind: 'pm', batch: 1, frames: postFrames, baseline: true },
    { name: `postMessage, ${BATCH_FRAMES} frames per message (info)`, kind: 'pm', batch: BATCH_FRAMES, frames: ringFrames, informational: true },
  ]
  const baseline = cases.find((c) => c.baseline === true)!

  const sab = createRingBuffer(DEFAULT_RING_BYTES)
  const producer = new RingProducer(sab)
  const template = new Uint8Array(FRAME_BYTES).fill(0x5a)
  const w = spawnTsWorker(CONSUMER, { sab } satisfies RingConsumerData, 'bench-ring-consumer')
  const results = new Map<Case, RunStats[]>(cases.map((c) => [c, []]))
  try {
    await nextMessage(w, is('ready'))
    for (const c of cases) {
      o.log(`ring: warm-up ${c.name}`)
      await runOnce(w, producer, template, { ...c, frames: Math.max(BATCH_FRAMES, Math.round(c.frames / 10 / BATCH_FRAMES) * BATCH_FRAMES) })
    }
    // Interleave the runs so drift on a shared machine hits every case alike.
    for (let i = 0; i < runs; i++) {
      for (const c of cases) {
        const s = await runOnce(w, producer, template, c)
        results.get(c)!.push(s)
        o.log(`ring: run ${i + 1}/${runs} ${c.name}: ${Math.round(s.framesPerSec).toLocaleString('en-US')} frames/s`)
      }
    }
  } finally {
    await w.terminate()
  }

  const medianRate = (c: Case): number => median(results.get(c)!.map((s) => s.framesPerSec))
  const base = medianRate(baseline)
  const rows: Row[] = cases.map((c) => {
    const rs = results.get(c)!
    const rate = medianRate(c)
    return {
      case: c.name + (c.baseline === true ? ' [baseline]' : ''),
      'frames/run': c.frames,
      'frames/s (median)': rate,
      'frames/s min': Math.min(...rs.map((s) => s.framesPerSec)),
      'frames/s max': Math.max(...rs.map((s) => s.framesPerSec)),
      'ns/frame': 1e9 / rate,
      'speedup vs baseline': speedup(rate, base),
      'publishes/run': c.kind === 'ring' ? median(rs.map((s) => s.publishes)) : null,
      'consumer parks/run': c.kind === 'ring' ? median(rs.map((s) => s.wakeups)) : null,
      'ring-full waits/run': c.kind === 'ring' ? median(rs.map((s) => s.fullWaits)) : null,
    }
  })
  const batched = speedup(medianRate(cases[0]!), base)
  return {
    scope: 'ring',
    title: 'SPSC SharedArrayBuffer ring vs postMessage, 64-byte frames, main thread -> worker',
    method: `hand timing (performance.now), median of ${runs} interleaved run(s) after a warm-up run; tinybench cannot time cross-thread throughput`,
    baseline: baseline.name,
    params: { frameBytes: FRAME_BYTES, ringBytes: DEFAULT_RING_BYTES, batchFrames: BATCH_FRAMES, ringFrames, postFrames, runs },
    rows,
    targets: [check('ring batched vs postMessage', '>= 20x', batched, 'x', batched >= 20)],
    notes: [
      'Producer = main thread, consumer = one worker thread for every case; each frame carries its sequence number and is checked for order and length.',
      'Every case does the same producer work per frame: copy a 64-byte payload (TypedArray.set) and stamp its sequence number, into ring memory or into the message buffer.',
      'Baseline: postMessage(u8) of a 64-byte Uint8Array, which structured-clones (copies) the bytes per message: the common form; no transfer list.',
      'Consumer drains with RingConsumer.drain() and parks with waitForData() (Atomics.waitAsync), never Atomics.wait.',
      `The informational row packs ${BATCH_FRAMES} frames into one message: batching on the postMessage side too.`,
    ],
    startedAt,
    durationMs: performance.now() - t0,
  }
}
