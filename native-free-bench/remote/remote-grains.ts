/**
 * Grain kinds of the remote scope (remote.bench.ts): BenchRecorder for the
 * deferred-queue check (part c) records which numbers arrived and whether
 * they arrived in order, in O(1) state (BenchCounter only counts);
 * BenchStreamer sends the grain-to-grain tells of (a''). Every worker of
 * both nodes imports this module, next to grains/bench-grains.ts.
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

/**
 * A grain on node A calling grains on node B. stream, (a''): tells inc(1)
 * round-robin to `pids`, held back by ctx.whenWritable every `every` tells
 * (every PID lives on B: one authority, one answer); returns the ms spent in
 * those waits. streamKeys, (a'''): the same by kind and key (ctx.tell).
 * asks, (b''): `n` sequential asks get; returns each one's µs.
 */
export const BenchStreamer = defineGrain({
  kind: 'bench-streamer',
  state: () => ({}),
  handlers: {
    async stream(ctx, p: { pids: string[]; n: number; every: number; timeoutMs: number }) {
      const mask = p.pids.length - 1
      let waitMs = 0
      for (let i = 0; i < p.n; i++) {
        if (i % p.every === 0) {
          const t0 = performance.now()
          await ctx.whenWritable(p.pids[0], { timeoutMs: p.timeoutMs })
          waitMs += performance.now() - t0
        }
        ctx.tellPid(p.pids[i & mask]!, 'inc', 1)
      }
      return waitMs
    },
    /** As stream, addressing the grains by kind and key (ctx.tell: the cluster places each key). `pids`: the same grains' PIDs, for whenWritable. */
    async streamKeys(ctx, p: { kind: string; keys: string[]; pids: string[]; n: number; every: number; timeoutMs: number }) {
      const mask = p.keys.length - 1
      let waitMs = 0
      for (let i = 0; i < p.n; i++) {
        if (i % p.every === 0) {
          const t0 = performance.now()
          await ctx.whenWritable(p.pids[0], { timeoutMs: p.timeoutMs })
          waitMs += performance.now() - t0
        }
        ctx.tell(p.kind, p.keys[i & mask]!, 'inc', 1)
      }
      return waitMs
    },
    async asks(ctx, p: { pids: string[]; n: number; timeoutMs: number }) {
      const mask = p.pids.length - 1
      const us: number[] = []
      for (let i = 0; i < p.n; i++) {
        const t0 = performance.now()
        await ctx.askPid(p.pids[i & mask]!, 'get', undefined, { timeoutMs: p.timeoutMs })
        us.push((performance.now() - t0) * 1000)
      }
      return us
    },
  },
})
