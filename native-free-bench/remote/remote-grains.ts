/**
 * Grain kinds of the remote scope (remote.bench.ts): BenchRecorder for the
 * deferred-queue check (part c) records which numbers arrived and whether
 * they arrived in order, in O(1) state (BenchCounter only counts);
 * BenchStreamer sends the grain-to-grain tells of (a''). Every worker of
 * both nodes imports this module, next to grains/bench-grains.ts.
 */

import { defineGrain, type GrainContext } from '../../src/index.js'

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
/**
 * Tells [0, n) in windows of `every`, each after ctx.whenWritable(pid);
 * `send(from, to)` sends one window. Returns the ms spent in the waits.
 */
async function paced(ctx: GrainContext<unknown>, pid: string, p: { n: number; every: number; timeoutMs: number }, send: (from: number, to: number) => void): Promise<number> {
  let waitMs = 0
  for (let i = 0; i < p.n; i += p.every) {
    const t0 = performance.now()
    await ctx.whenWritable(pid, { timeoutMs: p.timeoutMs })
    waitMs += performance.now() - t0
    send(i, Math.min(p.n, i + p.every))
  }
  return waitMs
}

export const BenchStreamer = defineGrain({
  kind: 'bench-streamer',
  state: () => ({}),
  handlers: {
    async stream(ctx, p: { pids: string[]; n: number; every: number; timeoutMs: number }) {
      const mask = p.pids.length - 1
      return paced(ctx, p.pids[0]!, p, (from, to) => {
        for (let i = from; i < to; i++) ctx.tellPid(p.pids[i & mask]!, 'inc', 1)
      })
    },
    /** As stream, addressing the grains by kind and key (ctx.tell: the cluster places each key). `pids`: the same grains' PIDs, for whenWritable. */
    async streamKeys(ctx, p: { kind: string; keys: string[]; pids: string[]; n: number; every: number; timeoutMs: number }) {
      const mask = p.keys.length - 1
      return paced(ctx, p.pids[0]!, p, (from, to) => {
        for (let i = from; i < to; i++) ctx.tell(p.kind, p.keys[i & mask]!, 'inc', 1)
      })
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
