/**
 * Entry point of a grain worker thread. Imports the grain modules, attaches
 * to its two rings, and pumps frames until the main thread asks it to shut
 * down. Start-up and shutdown use the MessagePort; every grain message uses
 * the rings.
 */

import { parentPort, threadId, workerData } from 'node:worker_threads'
import { GrainClusterError, toGrainClusterError, toWire } from '../../common/errors.js'
import { KindRegistry } from '../../grains/kind-registry.js'
import { codecByName } from '../../wire/payload-codec.js'
import { CpuHeadroom } from '../ring/cpu-headroom.js'
import { FramePump } from '../ring/frame-pump.js'
import { FrameSender } from '../ring/frame-sender.js'
import { RingConsumer } from '../ring/spsc-ring.js'
import { PartitionHost } from './partition-host.js'
import type { GrainWorkerData, MainToWorker, WorkerToMain } from './worker-data.js'

const port = parentPort
if (port === null) throw new Error('worker-main.ts must run in a worker thread')
const data = workerData as GrainWorkerData

function post(m: WorkerToMain): void {
  port!.postMessage(m)
}

async function main(): Promise<void> {
  let registry: KindRegistry
  try {
    registry = await KindRegistry.load(data.grainModules)
  } catch (e) {
    post({ type: 'fatal', error: toWire(toGrainClusterError(e, 'ERR_GRAIN_DEFINITION_INVALID')) })
    return
  }
  const interest = new Int32Array(data.interest)
  const sender = new FrameSender(data.toMain, { maxOverflowFrames: data.maxOverflowFrames })
  const host = new PartitionHost({
    worker: data.worker,
    workers: data.workers,
    partitions: data.partitions,
    registry,
    codec: codecByName(data.codec),
    sender,
    askTimeoutMs: data.askTimeoutMs,
    wants: (bit) => (Atomics.load(interest, 0) & bit) !== 0,
    routeViaMain: () => Atomics.load(interest, 1) === 1,
  })
  const pump = new FramePump(new RingConsumer(data.toWorker), host.onFrame, {
    beforeBatch: () => {
      host.nowMs = performance.now()
    },
    afterBatch: sender.flush,
    // Backpressure chain: while our outbound ring is backed up, stop taking
    // new work, so a slow main thread slows the producers instead of growing
    // queues here.
    gate: () => (sender.backlog > 0 ? sender.whenDrained() : undefined),
    spinMicros: data.spinMicros,
    spinMaxMicros: data.spinMaxMicros,
    headroom: new CpuHeadroom(),
  })

  const ttl = host.minIdleTtlMs
  const sweep = ttl > 0 ? setInterval(() => host.sweepIdle(), Math.min(Math.max(ttl / 4, 10), 10_000)) : undefined
  // The grains' own calls, for the node's RPC metrics (runtime/call-stats.ts).
  const callStats = setInterval(() => host.reportCallStats(), data.callStatsIntervalMs)
  callStats.unref()

  port!.on('message', (m: MainToWorker) => {
    if (m.type !== 'shutdown') return
    void (async () => {
      if (sweep !== undefined) clearInterval(sweep)
      clearInterval(callStats)
      await pump.stop()
      const n = host.activationCount
      const bound = new Promise((r) => setTimeout(r, m.timeoutMs))
      await Promise.race([host.deactivateAll(), bound])
      host.failPending((p) => new GrainClusterError('ERR_NODE_CLOSED', 'the node is shutting down', p))
      sender.flush()
      post({ type: 'closed', activations: n })
      port!.close()
    })()
  })

  pump.start()
  post({ type: 'ready', kinds: registry.describe(), threadId })
}

void main()
