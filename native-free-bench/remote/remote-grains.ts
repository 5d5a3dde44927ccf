/**
 * Grain kind of the remote scope's deferred-queue check (remote.bench.ts,
 * part c): records which numbers arrived and whether they arrived in order,
 * in O(1) state (BenchCounter only counts). Every worker of both nodes
 * imports this module, next to grains/bench-grains.ts.
 */

import { defineGrain } from '../../src/index.js'

export interface RecorderSummary {
  /** Messages recorded. */
  count: number
  /** First and last value recorded (-1 before any). */
  first: number
  last: number
  /** Times a value was not the previous one + 1 (0 = one contiguous run, in order). */
  gaps: number
}

export const BenchRecorder = defineGrain({
  kind: 'bench-recorder',
  state: (): RecorderSummary => ({ count: 0, first: -1, last: -1, gaps: 0 }),
  handlers: {
    record(ctx, n: number) {
      const s = ctx.state
      if (s.count === 0) s.first = n
      else if (n !== s.last + 1) s.gaps++
      s.last = n
      s.count++
    },
    summary(ctx): RecorderSummary {
      return { ...ctx.state }
    },
  },
})
