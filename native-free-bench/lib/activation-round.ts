/**
 * Creating activations and weighing them, shared by the activation and
 * placement scopes.
 *
 * One fresh node; N activations of BenchCounter (state { count: 0 }) are
 * created with one tell each, in batches, each batch closed by an ask (same
 * ring, so it answers after every tell of the batch was handled). Between
 * batches, BenchProbe.heap (a different kind, activated before the first
 * sample) forces two full GCs in the worker and reports the worker isolate's
 * heapUsed. bytes/activation = (last sample − first sample) / N; the
 * least-squares slope over all samples is reported alongside.
 *
 * Hand-timed: activations/s counts only the tell+ask batches, not the probes.
 */

import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { GrainClusterError, GrainNode, type GrainNodeOptions } from '../../src/index.js'
import { BenchCounter, BenchProbe, type HeapSample } from '../grains/bench-grains.js'
import { slope } from './stats.js'

export const BENCH_GRAINS = new URL('../grains/bench-grains.ts', import.meta.url)
const YIELD_EVERY = 16_384 // power of two

/** One tell `inc(1)` per key in [from, to), waiting out ERR_RING_FULL. */
export async function tellEach(node: GrainNode, keys: readonly string[], from: number, to: number): Promise<void> {
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

export interface ActivationRound {
  points: { activations: number; heapUsed: number }[]
  perActivation: number
  fitted: number
  activationsPerSec: number
  gcForced: boolean
  /** Wall time of the whole round (start, creation, probes, checks, close), ms. */
  wallMs: number
}

export interface RoundOptions {
  /** Activations to create. */
  n: number
  batches: number
  /** Warm-up activations (other keys) before the first sample. */
  warm: number
  log: (line: string) => void
  /** Label of the progress line. */
  label?: string
  /** Start options of the node, merged over { grains, workers: 1 } (e.g. a one-member cluster). */
  node?: Partial<GrainNodeOptions>
  /** Key prefix (distinct keys per round are not needed: every round has a fresh node). */
  prefix?: string
}

/** One fresh node: warm up, then create `n` activations in `batches` batches, sampling the heap after each. */
export async function measureActivationRound(o: RoundOptions): Promise<ActivationRound> {
  const { n, batches, warm, log } = o
  const started = performance.now()
  const per = Math.floor(n / batches)
  if (per * batches !== n) throw new Error(`activation round: ${n} activations do not split into ${batches} batches`)
  const prefix = o.prefix ?? 'act-'
  const keys = Array.from({ length: n }, (_, i) => `${prefix}${i}`)
  const warmKeys = Array.from({ length: warm }, (_, i) => `warm-${i}`)
  const node = await GrainNode.start({ grains: [BENCH_GRAINS], workers: 1, ...o.node })
  const points: { activations: number; heapUsed: number }[] = []
  let gcForced = true
  let createMs = 0
  try {
    if (node.cluster !== undefined) await node.cluster.whenUp()
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
      if (last !== 1) throw new Error(`activation round: last key of batch ${b} counted ${last}, expected 1`)
      await probe((b + 1) * per)
    }
    // Spot-check that every activation is a separate one holding its own count.
    for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 97))) {
      const c = await node.ask(BenchCounter, keys[i]!, 'get')
      if (c !== 1) throw new Error(`activation round: ${keys[i]} counted ${c}, expected 1`)
    }
  } finally {
    await node.close()
  }
  const first = points[0]!
  const last = points.at(-1)!
  const r: ActivationRound = {
    points,
    perActivation: (last.heapUsed - first.heapUsed) / n,
    fitted: slope(
      points.map((p) => p.activations),
      points.map((p) => p.heapUsed),
    ),
    activationsPerSec: (n * 1000) / createMs,
    gcForced,
    wallMs: performance.now() - started,
  }
  log(
    `${o.label ?? 'activation'}: ${n} activations, heap ${(first.heapUsed / 2 ** 20).toFixed(1)} -> ${(last.heapUsed / 2 ** 20).toFixed(1)} MiB, ` +
      `${r.perActivation.toFixed(0)} B each, ${Math.round(r.activationsPerSec)} /s`,
  )
  return r
}
