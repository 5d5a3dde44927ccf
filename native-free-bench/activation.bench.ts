/**
 * activation scope: heap cost of idle activations, and how fast they are
 * created.
 *
 * A node with one worker; N activations of BenchCounter (state { count: 0 })
 * are created with one tell each, in batches, each batch closed by an ask
 * (same ring, so it answers after every tell of the batch was handled).
 * Between batches, BenchProbe.heap (a different kind, activated before the
 * first sample) forces two full GCs in the worker and reports the worker
 * isolate's heapUsed. bytes/activation = (last sample − first sample) / N;
 * the least-squares slope over all samples is reported alongside.
 *
 * GC in the worker: Worker rejects execArgv ['--expose-gc'] and GrainNode
 * sets no execArgv, so the probe enables the V8 flag at run time
 * (v8.setFlagsFromString + vm.runInNewContext('gc')); see grains/bench-grains.ts.
 * If that ever fails the probe says so and the scope reports unforced heap
 * deltas (then noisy) with a note.
 *
 * Hand-timed: activations/s counts only the tell+ask batches, not the probes.
 */

import { measureActivationRound, type ActivationRound } from './lib/activation-round.js'
import { check, type BenchOptions, type Row, type ScopeResult } from './lib/report.js'
import { median } from './lib/stats.js'

const TARGET_BYTES = 1_024

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const n = o.quick ? 20_000 : 100_000
  const batches = 10
  const warm = o.quick ? 2_000 : 10_000
  const rounds = o.quick ? 1 : 3
  const results: ActivationRound[] = []
  for (let i = 0; i < rounds; i++) results.push(await measureActivationRound({ n, batches, warm, log: o.log }))

  const gcForced = results.every((r) => r.gcForced)
  const perActivation = median(results.map((r) => r.perActivation))
  const rows: Row[] = [
    {
      case: 'BenchCounter activations',
      activations: n,
      rounds,
      'heap before MiB': median(results.map((r) => r.points[0]!.heapUsed)) / 2 ** 20,
      'heap after MiB': median(results.map((r) => r.points.at(-1)!.heapUsed)) / 2 ** 20,
      'bytes/activation': perActivation,
      'bytes/activation min': Math.min(...results.map((r) => r.perActivation)),
      'bytes/activation max': Math.max(...results.map((r) => r.perActivation)),
      'bytes/activation (fit)': median(results.map((r) => r.fitted)),
      'target bytes': TARGET_BYTES,
      'ratio (target / actual)': TARGET_BYTES / perActivation,
      'activations/s': median(results.map((r) => r.activationsPerSec)),
    },
  ]
  return {
    scope: 'activation',
    title: `heap per idle activation (state { count: 0 }), ${n.toLocaleString('en-US')} activations on 1 worker`,
    method: `worker heapUsed after 2 forced full GCs, sampled every ${(n / batches).toLocaleString('en-US')} activations; median of ${rounds} fresh node(s); hand-timed creation`,
    baseline: `target ${TARGET_BYTES} B/activation (no runtime baseline: the budget is absolute)`,
    params: { activations: n, batches, warmupActivations: warm, rounds, gcForced },
    rows,
    targets: [check('heap per idle activation', `<= ${TARGET_BYTES} B`, perActivation, 'B', perActivation <= TARGET_BYTES)],
    notes: [
      gcForced
        ? 'GC forced in the worker via v8.setFlagsFromString("--expose-gc") + vm.runInNewContext("gc") (Worker execArgv rejects --expose-gc).'
        : 'Could not force GC in the worker: heapUsed deltas include garbage and are an upper bound. Start the process with --expose-gc or let GrainNode pass execArgv.',
      'bytes/activation = (last sample - first sample) / activations; "(fit)" is the least-squares slope over all samples.',
      'Includes everything an activation keeps alive: Activation object, state object, key string, directory Map entry.',
      'activations/s: one tell per new key, creation only (probes excluded), closed by one ask per batch.',
    ],
    startedAt,
    durationMs: performance.now() - t0,
  }
}
