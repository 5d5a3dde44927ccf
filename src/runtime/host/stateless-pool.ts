/**
 * Stateless worker grains on a piscina pool. They have no activation and no
 * key affinity, so piscina's queueing and load balancing fit exactly; the
 * grain workers keep the keyed, one-at-a-time activations.
 */

import { Piscina } from 'piscina'
import { fromWire, GrainClusterError, reasonOf } from '../../common/errors.js'
import type { StatelessResult, StatelessTask } from '../worker/stateless-task.js'
import { statelessTaskEntry } from './worker-entry.js'

export interface StatelessPoolOptions {
  grainModules: string[]
  maxThreads: number
  /** Per-call deadline (ms). */
  timeoutMs: number
}

export class StatelessPool {
  readonly #pool: Piscina
  readonly #modules: string[]
  readonly #timeoutMs: number

  constructor(o: StatelessPoolOptions) {
    this.#modules = o.grainModules
    this.#timeoutMs = o.timeoutMs
    this.#pool = new Piscina({
      filename: statelessTaskEntry(o.grainModules).href,
      minThreads: 0,
      maxThreads: Math.max(1, o.maxThreads),
      idleTimeout: 30_000,
    })
  }

  get threads(): number {
    return this.#pool.threads.length
  }

  async call<R>(kind: string, method: string, payload: unknown, timeoutMs?: number): Promise<R> {
    const ms = timeoutMs ?? this.#timeoutMs
    const task: StatelessTask = { modules: this.#modules, kind, method, payload }
    const signal = AbortSignal.timeout(ms)
    let r: StatelessResult
    try {
      r = (await this.#pool.run(task, { signal })) as StatelessResult
    } catch (e) {
      if (signal.aborted) {
        throw new GrainClusterError('ERR_GRAIN_TIMEOUT', `stateless call ${kind}.${method} got no result within ${ms} ms`, { kind, method, limit: ms })
      }
      throw new GrainClusterError('ERR_WORKER_CRASHED', `stateless pool thread failed: ${reasonOf(e)}`, { kind, method })
    }
    if (r.ok) return r.value as R
    throw fromWire(r.error)
  }

  async close(): Promise<void> {
    await this.#pool.destroy()
  }
}
