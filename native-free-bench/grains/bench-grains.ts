/**
 * Grain kinds of the e2e and activation scopes. Every grain worker imports
 * this module; the main thread imports it for the typed definitions only.
 */

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { defineGrain } from '../../src/index.js'

/** A counter: `inc` is sent as a tell (no reply), `add` and `get` as asks. */
export const BenchCounter = defineGrain({
  kind: 'bench-counter',
  state: () => ({ count: 0 }),
  handlers: {
    inc(ctx, by: number) {
      ctx.state.count += by
    },
    add(ctx, by: number) {
      ctx.state.count += by
      return ctx.state.count
    },
    get(ctx) {
      return ctx.state.count
    },
  },
})

export interface HeapSample {
  heapUsed: number
  /** False when no full GC could be forced (then heapUsed includes garbage). */
  gc: boolean
}

let gcFn: (() => void) | null | undefined

/**
 * A full-GC function for this thread. Worker threads reject
 * `execArgv: ['--expose-gc']` (ERR_WORKER_INVALID_EXEC_ARGV) and GrainNode
 * passes no execArgv, so unless the process was started with --expose-gc,
 * turn the V8 flag on at run time and take `gc` from a fresh context. The
 * collection it triggers covers this thread's whole isolate heap.
 */
function fullGc(): (() => void) | null {
  if (gcFn !== undefined) return gcFn
  const g = (globalThis as { gc?: unknown }).gc
  if (typeof g === 'function') return (gcFn = g as () => void)
  try {
    setFlagsFromString('--expose-gc')
    const fromContext = runInNewContext('gc') as unknown
    gcFn = typeof fromContext === 'function' ? (fromContext as () => void) : null
  } catch {
    gcFn = null
  }
  return gcFn
}

/** Heap probe for the activation scope (one activation, different kind, so it never counts itself). */
export const BenchProbe = defineGrain({
  kind: 'bench-probe',
  handlers: {
    heap(): HeapSample {
      const gc = fullGc()
      if (gc !== null) {
        // Twice: the first pass can leave objects freed by finalisation.
        gc()
        gc()
      }
      return { heapUsed: process.memoryUsage().heapUsed, gc: gc !== null }
    },
  },
})
