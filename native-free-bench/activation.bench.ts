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

import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { GrainClusterError, GrainNode } from '../src/index.js'
import { BenchCounter, BenchProbe, type HeapSample } from './grains/bench-grains.js'
import { check, type BenchOptions, type Row, type ScopeResult } from './lib/report.js'
import { median, slope } from './lib/stats.js'

const GRAINS = new URL('./grains/bench-grains.ts', import.meta.url)
const YIELD_EVERY = 16_384 // power of two
const TARGET_BYTES = 1_024

async function tellEach(node: GrainNode, keys: readonly string[], from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    try {
      node.tell(BenchCounter, keys[i]!, 'inc', 1)
    } catch (e) {
      if (!GrainClusterError.is(e, 'ERR_RING_FULL')) throw e
      await node.whenWritable()
      i--
      continue
    }
    if ((i & (YIELD_EVERY - 1)) === YIELD_EVERY - 1) await yieldToLoop()
  }
}

interface Round {
  points: { activations: number; heapUsed: number }[]
  perActivation: number
  fitted: number
  activationsPerSec: number
  gcForced: boolean
}

/** One fresh node: warm up, then create `n` activations in `batches` batches, sampling the heap after each. */
async function measureRound(n: number, batches: number, warm: number, log: (line: string) => void): Promise<Round> {
  const per = n / batches
  const keys = Array.from({ length: n }, (_, i) => `act-${i}`)
  const warmKeys = Array.from({ length: warm }, (_, i) => `warm-${i}`)
  const node = await GrainNode.start({ grains: [GRAINS], workers: 1 })
  const points: { activations: number; heapUsed: number }[] = []
  let gcForced = true
  let createMs = 0
  try {
    const probe = async (activations: number): Promise<void> => {
      const h: HeapSample = await node.ask(BenchProbe, 'probe', 'heap')
      gcForced &&= h.gc
      points.push({ activations, heapUsed: h.heapUsed })
    }
    // Warm the activation path (JIT, map growth of the first entries) and the probe.
    await tellEach(node, warmKeys, 0, warm)
    await node.ask(BenchCounter, warmKeys[warm - 1]!, 'get')
    await probe(0)
    for (let b = 0; b < batches; b++) {
      const s = performance.now()
      await tellEach(node, keys, b * per, (b + 1) * per)
      const last = await node.ask(BenchCounter, keys[(b + 1) * per - 1]!, 'get')
      createMs += performance.now() - s
      if (last !== 1) throw new Error(`activation bench: last key of batch ${b} counted ${last}, expected 1`)
      await probe((b + 1) * per)
    }
    // Spot-check that every activation is a separate one holding its own count.
    for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 97))) {
      const c = await node.ask(BenchCounter, keys[i]!, 'get')
      if (c !== 1) throw new Error(`activation bench: ${keys[i]} counted ${c}, expected 1`)
    }
  } finally {
    await node.close()
  }
  const first = points[0]!
  const last = points.at(-1)!
  const r: Round = {
    points,
    perActivation: (last.heapUsed - first.heapUsed) / n,
    fitted: slope(
      points.map((p) => p.activations),
      points.map((p) => p.heapUsed),
    ),
    activationsPerSec: (n * 1000) / createMs,
    gcForced,
  }
  log(`activation: ${n} activations, heap ${(first.heapUsed / 2 ** 20).toFixed(1)} -> ${(last.heapUsed / 2 ** 20).toFixed(1)} MiB, ${r.perActivation.toFixed(0)} B each, ${Math.round(r.activationsPerSec)} /s`)
  return r
}

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const n = o.quick ? 20_000 : 100_000
  const batches = 10
  const warm = o.quick ? 2_000 : 10_000
  const rounds = o.quick ? 1 : 3
  const results: Round[] = []
  for (let i = 0; i < rounds; i++) results.push(await measureRound(n, batches, warm, o.log))

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
