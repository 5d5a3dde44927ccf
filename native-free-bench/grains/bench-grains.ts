/**
 * Grain kinds of the e2e and activation scopes. Every grain worker imports
 * this module; the main thread imports it for the typed definitions only.
 */

import { defineGrain } from '../../src/index.js'
import { fullGc } from '../lib/gc.js'

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

/** A grain asking other grains in sequence (e2e's grain-to-grain rows): `n` asks `get` round-robin over `keys`; returns each one's µs. */
export const BenchAsker = defineGrain({
  kind: 'bench-asker',
  handlers: {
    async asks(ctx, p: { keys: string[]; n: number }) {
      const mask = p.keys.length - 1
      const us: number[] = []
      for (let i = 0; i < p.n; i++) {
        const t0 = performance.now()
        await ctx.ask<number>('bench-counter', p.keys[i & mask]!, 'get')
        us.push((performance.now() - t0) * 1000)
      }
      return us
    },
  },
})

export interface HeapSample {
  heapUsed: number
  /** False when no full GC could be forced (then heapUsed includes garbage). */
  gc: boolean
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
