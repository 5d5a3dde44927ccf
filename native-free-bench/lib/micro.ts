/**
 * Single-thread micro-benchmarks on tinybench.
 *
 * One tinybench iteration runs the case `opsPerCall` times in a loop, so a
 * sample lasts tens of microseconds and the timer (hrtime, ~50 ns a read)
 * does not dominate operations that take ~100 ns. Reported per-op figures
 * divide by `opsPerCall`. Results flow into `blackhole` so the JIT cannot
 * drop the work.
 */

import { Bench } from 'tinybench'

export interface MicroCase {
  name: string
  /** Operations done by one call of `fn`. */
  opsPerCall: number
  fn: () => void
}

export interface MicroResult {
  name: string
  opsPerSec: number
  /** Mean ns per operation. */
  nsPerOp: number
  /** Median and 99th percentile of per-sample ns/op. */
  p50NsPerOp: number
  p99NsPerOp: number
  /** Relative margin of error of the mean, %. */
  rmePct: number
  samples: number
}

export interface MicroTiming {
  /** Measured time per case, ms. */
  timeMs: number
  warmupMs: number
}

export const FULL_TIMING: MicroTiming = { timeMs: 1_000, warmupMs: 300 }
export const QUICK_TIMING: MicroTiming = { timeMs: 150, warmupMs: 50 }

let sink = 0
/** Keep a value alive so the optimiser cannot remove the code producing it. */
export function blackhole(v: number): void {
  sink = (sink + v) | 0
}
export function sinkValue(): number {
  return sink
}

export async function runMicro(cases: readonly MicroCase[], t: MicroTiming): Promise<MicroResult[]> {
  const bench = new Bench({
    time: t.timeMs,
    warmupTime: t.warmupMs,
    warmupIterations: 16,
    iterations: 16,
    timestampProvider: 'hrtimeNow',
    throws: true,
  })
  for (const c of cases) bench.add(c.name, c.fn)
  await bench.run()
  return cases.map((c, i) => {
    const task = bench.tasks[i]!
    const r = task.result
    if (r.state !== 'completed') throw new Error(`micro-benchmark "${c.name}" ended in state ${r.state}${'error' in r ? `: ${String(r.error)}` : ''}`)
    const lat = r.latency // ms per call
    return {
      name: c.name,
      opsPerSec: (c.opsPerCall * 1_000) / lat.mean,
      nsPerOp: (lat.mean * 1e6) / c.opsPerCall,
      p50NsPerOp: (lat.p50 * 1e6) / c.opsPerCall,
      p99NsPerOp: (lat.p99 * 1e6) / c.opsPerCall,
      rmePct: lat.rme,
      samples: lat.samplesCount,
    }
  })
}
