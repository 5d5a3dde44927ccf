import type { WireError } from '../../common/errors.js'
import type { KindDescriptor } from '../../grains/kind-registry.js'

/** Start-up data of a grain worker thread (structured-cloned by postMessage). */
export interface GrainWorkerData {
  worker: number
  workers: number
  partitions: number
  /** URLs of the grain modules to import (same list on every worker). */
  grainModules: string[]
  codec: string
  /** main → worker ring. */
  toWorker: SharedArrayBuffer
  /** worker → main ring. */
  toMain: SharedArrayBuffer
  /** Int32 word 0: bit mask of event categories someone subscribes to; word 1: route calls via main. */
  interest: SharedArrayBuffer
  askTimeoutMs: number
  maxOverflowFrames: number
  spinMicros: number
  spinMaxMicros: number
  /** ms between reports of the grains' own calls to the main thread (metrics' worker-side sampling interval). */
  callStatsIntervalMs: number
  /** Module to import after registering tsx (when running from TypeScript sources). */
  tsEntry?: string
}

/** Rare control traffic on the worker's MessagePort (never per message). */
export type WorkerToMain =
  | { type: 'ready'; kinds: KindDescriptor[]; threadId: number }
  | { type: 'fatal'; error: WireError }
  | { type: 'closed'; activations: number }

export type MainToWorker = { type: 'shutdown'; timeoutMs: number }
