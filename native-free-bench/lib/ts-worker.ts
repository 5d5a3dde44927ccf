/**
 * Start a benchmark worker written in TypeScript. A Node 20 worker cannot
 * load .ts, and `execArgv: ['--import', 'tsx']` does not apply to the
 * worker's entry module, so every bench worker starts from the runtime's own
 * src/runtime/host/tsx-bootstrap.mjs, which registers tsx and imports
 * `workerData.tsEntry`.
 * All bench workers (candidate and baseline) start the same way, so the
 * bootstrap costs neither side anything inside a measurement.
 */

import { Worker } from 'node:worker_threads'

const BOOTSTRAP = new URL('../../src/runtime/host/tsx-bootstrap.mjs', import.meta.url)

/** `entry` is the .ts module; it reads its input from `workerData.data`. */
export function spawnTsWorker(entry: URL, data: unknown, name?: string): Worker {
  return new Worker(BOOTSTRAP, { workerData: { tsEntry: entry.href, data }, ...(name === undefined ? {} : { name }) })
}

/**
 * Resolves with the first message that satisfies `pred`; rejects if the
 * worker errors or exits first, or after `timeoutMs` (a stuck benchmark
 * fails instead of hanging).
 */
export function nextMessage<T>(w: Worker, pred: (m: unknown) => m is T, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`no expected message from worker ${w.threadId} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (m: unknown): void => {
      if (!pred(m)) return
      cleanup()
      resolve(m)
    }
    const onError = (e: Error): void => {
      cleanup()
      reject(e)
    }
    const onExit = (code: number): void => {
      cleanup()
      reject(new Error(`worker exited with code ${code} before sending the expected message`))
    }
    const cleanup = (): void => {
      clearTimeout(timer)
      w.off('message', onMessage)
      w.off('error', onError)
      w.off('exit', onExit)
    }
    w.on('message', onMessage)
    w.on('error', onError)
    w.on('exit', onExit)
  })
}

/** Type guards for `{ type: T, ... }` messages: `const is = ofType<Msg>(); is('done')`. */
export function ofType<M extends { type: string }>(): <T extends M['type']>(type: T) => (m: unknown) => m is Extract<M, { type: T }> {
  return <T extends M['type']>(type: T) =>
    (m: unknown): m is Extract<M, { type: T }> =>
      typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type
}
