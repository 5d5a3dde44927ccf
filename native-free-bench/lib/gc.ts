import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

let gcFn: (() => void) | null | undefined

/**
 * A full-GC function for this thread, or null. Worker threads reject
 * `execArgv: ['--expose-gc']` (ERR_WORKER_INVALID_EXEC_ARGV) and GrainNode
 * passes no execArgv, so unless the process was started with --expose-gc,
 * turn the V8 flag on at run time and take `gc` from a fresh context. The
 * collection it triggers covers this thread's whole isolate heap.
 */
export function fullGc(): (() => void) | null {
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
