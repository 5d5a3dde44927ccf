/**
 * pubsub scope (on demand only: `--scope pubsub`, ~50 s): what node.pubsub costs
 * over the same fan-out done by hand, on one GrainNode (no cluster) with two
 * workers, in the same run.
 *
 * Each case is a topic with N subscribers (N = 1 and N = 8; the eight are
 * four keys on each worker) of PubSubSink.recv, and a second set of sinks
 * for the baseline, placed on the same workers:
 *
 *  (a) at-least-once, sequential: `await node.pubsub.publish(topic, seq)`
 *      one after another, each timed; baseline
 *      `await Promise.all(subs.map((s) => node.ask(s.kind, s.key, s.method, seq)))`.
 *  (b) at-least-once, pipelined: the same two calls with PIPELINE of them
 *      in flight (PIPELINE lanes, each awaiting its call before the next);
 *      publishes/s from the first call to the last answer.
 *  (c) at-most-once: `await node.pubsub.publish(topic, seq)` (all tells are
 *      sent inside the call); baseline one `node.tell` per subscriber. The
 *      clock stops when a `stats` ask per sink has answered (asks queue
 *      behind the tells of their ring, so every tell has been handled).
 *      Both sides wait on `node.whenWritable()` whenever `node.isWritable()`
 *      is false before a fan-out (so no tell meets ERR_RING_FULL and no
 *      delivery is dropped) and yield with setImmediate every YIELD_EVERY
 *      deliveries.
 *  (c') info: as (c), but the publishes are not awaited one by one: their
 *      promises are collected and checked at each yield. An awaited call
 *      ends the synchronous burst, so the ring is published (and a parked
 *      worker woken) once per publish instead of once per batch; this row
 *      shows the PubSub layer's own cost without that.
 *
 * Verification: every sink counts what it receives and checks that message
 * numbers only grow (a duplicate or reordering counts as disorder). A
 * warm-up of every case runs first and is verified before any timing;
 * after every timed round of (b) and (c) and after the (a) slices, each
 * sink's count must equal what was sent to it, with no disorder, or the
 * scope fails. Every PublishResult must report `delivered === N`, nothing
 * dropped or failed.
 *
 * Hand-timed (performance.now): the work crosses threads. Candidate and
 * baseline take turns round by round (the order alternates), each after a
 * full GC of the main thread, as in the e2e scope.
 */

import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { partitionOf, workerOfPartition } from '../src/common/hash.js'
import { GrainNode, type PublishResult } from '../src/index.js'
import { PubSubSink, type SinkStats } from './grains/pubsub-bench-grains.js'
import { fullGc } from './lib/gc.js'
import { check, latencySpeedup, speedup, type BenchOptions, type Row, type ScopeResult } from './lib/report.js'
import { summarizeLatencies, type LatencySummary } from './lib/stats.js'

const GRAINS = new URL('./grains/pubsub-bench-grains.ts', import.meta.url)
const WORKERS = 2
const FANOUTS = [1, 8] as const
/** Calls in flight in (b). */
const PIPELINE = 64
/** Deliveries between two setImmediate yields in (c), as e2e yields every 16,384 tells. */
const YIELD_EVERY = 16_384

type Fanout = (typeof FANOUTS)[number]
type Delivery = 'at-least-once' | 'at-most-once'
/** 'pubsub-unawaited' is an info case of (c) only. */
type Side = 'pubsub' | 'pubsub-unawaited' | 'hand'

interface Sizes {
  /** (a): sequential calls per fan-out, over all slices. */
  seq: Record<Fanout, number>
  /** (b): calls per round. */
  pipelined: Record<Fanout, number>
  /** (c): publishes per round. */
  amo: Record<Fanout, number>
  /** Warm-up calls of every case and side (verified before timing). */
  warm: number
}

interface Sub {
  readonly kind: string
  readonly key: string
  readonly method: string
}

/** One topic (candidate) or one set of sinks (baseline) of one case. */
interface Case {
  readonly side: Side
  readonly delivery: Delivery
  readonly n: Fanout
  readonly topic: string
  readonly subs: readonly Sub[]
  /** Next message number: every sink of the case has received 0 … seq-1, in order. */
  seq: number
}

interface Throughput {
  calls: number
  ms: number
  waits: number
}

const callRate = (t: Throughput): number => (t.calls * 1000) / t.ms

function medianRound(runs: readonly Throughput[]): Throughput {
  const sorted = [...runs].sort((a, b) => callRate(a) - callRate(b))
  return sorted[(sorted.length - 1) >> 1]!
}

/**
 * Keys for `n` sinks of one case and side: half on each worker for n > 1;
 * the single sink of n = 1 on worker 0 for both sides, so candidate and
 * baseline use the same ring.
 */
function sinkKeys(node: GrainNode, prefix: string, n: number): string[] {
  const workerOf = (key: string): number => workerOfPartition(partitionOf(key, node.options.partitions), WORKERS)
  const want = Array.from({ length: WORKERS }, (_, w) => (n === 1 ? (w === 0 ? 1 : 0) : Math.ceil((n - w) / WORKERS)))
  const keys: string[] = []
  for (let i = 0; keys.length < n; i++) {
    const k = `${prefix}-${i}`
    const w = workerOf(k)
    if (want[w]! > 0) {
      want[w]!--
      keys.push(k)
    }
  }
  return keys
}

function checkResult(c: Case, r: PublishResult): void {
  if (r.delivered !== c.n || r.subscribers !== c.n || r.dropped.length > 0 || r.failed.length > 0 || r.redeliveries > 0) {
    const loss = [...r.dropped, ...r.failed][0]
    throw new Error(
      `${c.topic}: publish reported ${r.delivered}/${r.subscribers} delivered to ${c.n} subscribers, ${r.dropped.length} dropped, ${r.failed.length} failed, ${r.redeliveries} redeliveries` +
        (loss === undefined ? '' : ` (first loss: ${loss.kind}/${loss.key} ${loss.code}: ${loss.reason})`),
    )
  }
}

/** One at-least-once call of either side: a publish, or the same asks by hand. */
function aloCall(node: GrainNode, c: Case): (seq: number) => Promise<void> {
  if (c.side === 'pubsub') {
    return async (seq) => {
      checkResult(c, await node.pubsub.publish(c.topic, seq))
    }
  }
  const subs = c.subs
  return async (seq) => {
    await Promise.all(subs.map((s) => node.ask(s.kind, s.key, s.method, seq)))
  }
}

/** `count` sequential calls, each timed into `us` (µs). */
async function sequential(node: GrainNode, c: Case, count: number, us: Float64Array): Promise<number> {
  const call = aloCall(node, c)
  const t0 = performance.now()
  for (let i = 0; i < count; i++) {
    const s = performance.now()
    await call(c.seq++)
    us[i] = (performance.now() - s) * 1000
  }
  return performance.now() - t0
}

/** `count` calls, PIPELINE in flight; message numbers are taken at send time, so each sink still sees them in order. */
async function pipelined(node: GrainNode, c: Case, count: number): Promise<Throughput> {
  const call = aloCall(node, c)
  const end = c.seq + count
  const lane = async (): Promise<void> => {
    while (c.seq < end) await call(c.seq++)
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: Math.min(PIPELINE, count) }, lane))
  return { calls: count, ms: performance.now() - t0, waits: 0 }
}

/** `count` at-most-once fan-outs, then one stats ask per sink (clock included: the tells must have been handled). */
async function amoRound(node: GrainNode, c: Case, count: number): Promise<Throughput> {
  const subs = c.subs
  const yieldMask = YIELD_EVERY / c.n - 1 // n divides YIELD_EVERY (both powers of two)
  let waits = 0
  const t0 = performance.now()
  if (c.side === 'pubsub') {
    for (let i = 0; i < count; i++) {
      if (!node.isWritable()) {
        waits++
        await node.whenWritable()
      }
      checkResult(c, await node.pubsub.publish(c.topic, c.seq++))
      if ((i & yieldMask) === yieldMask) await yieldToLoop()
    }
  } else if (c.side === 'pubsub-unawaited') {
    let pending: Promise<PublishResult>[] = []
    const settle = async (): Promise<void> => {
      for (const r of await Promise.all(pending)) checkResult(c, r)
      pending = []
    }
    for (let i = 0; i < count; i++) {
      if (!node.isWritable()) {
        waits++
        await node.whenWritable()
      }
      pending.push(node.pubsub.publish(c.topic, c.seq++))
      if ((i & yieldMask) === yieldMask) {
        await settle()
        await yieldToLoop()
      }
    }
    await settle()
  } else {
    for (let i = 0; i < count; i++) {
      if (!node.isWritable()) {
        waits++
        await node.whenWritable()
      }
      const seq = c.seq++
      for (const s of subs) node.tell(s.kind, s.key, s.method, seq)
      if ((i & yieldMask) === yieldMask) await yieldToLoop()
    }
  }
  await verify(node, c)
  return { calls: count, ms: performance.now() - t0, waits }
}

/** Every sink of the case holds exactly `c.seq` messages, in order; throws otherwise. */
async function verify(node: GrainNode, c: Case): Promise<void> {
  const stats: SinkStats[] = await Promise.all(c.subs.map((s) => node.ask(PubSubSink, s.key, 'stats')))
  for (const [i, st] of stats.entries()) {
    if (st.count !== c.seq || st.disorder !== 0 || st.last !== c.seq - 1) {
      throw new Error(
        `${label(c)}: sink ${c.subs[i]!.key} received ${st.count} of ${c.seq} messages (last #${st.last}, ${st.disorder} out of order): deliveries were lost, duplicated or reordered`,
      )
    }
  }
}

const SIDE_LABEL: Record<Side, (d: Delivery) => string> = {
  pubsub: () => 'node.pubsub.publish',
  'pubsub-unawaited': () => 'node.pubsub.publish, not awaited one by one',
  hand: (d) => (d === 'at-least-once' ? 'Promise.all of node.ask by hand' : 'node.tell by hand'),
}

function label(c: Case): string {
  return `${c.delivery}, ${c.n} subscriber${c.n === 1 ? '' : 's'}, ${SIDE_LABEL[c.side](c.delivery)}`
}

/** Sides of each delivery, in row order (the baseline last). */
const SIDES: Record<Delivery, readonly Side[]> = { 'at-least-once': ['pubsub', 'hand'], 'at-most-once': ['pubsub', 'pubsub-unawaited', 'hand'] }

interface Results {
  seq: Map<Case, { lat: LatencySummary; callsPerSec: number }>
  pipelined: Map<Case, Throughput[]>
  amo: Map<Case, Throughput[]>
}

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const s: Sizes = o.quick
    ? { seq: { 1: 1_000, 8: 500 }, pipelined: { 1: 2_000, 8: 500 }, amo: { 1: 20_000, 8: 5_000 }, warm: 200 }
    : { seq: { 1: 10_000, 8: 2_000 }, pipelined: { 1: 20_000, 8: 5_000 }, amo: { 1: 200_000, 8: 50_000 }, warm: 2_000 }
  const rounds = o.quick ? 1 : 5

  const node = await GrainNode.start({ grains: [GRAINS], spinMicros: o.spinMicros, workers: WORKERS })
  const res: Results = { seq: new Map(), pipelined: new Map(), amo: new Map() }
  const cases: Case[] = []
  const pick = (delivery: Delivery, n: Fanout, side: Side): Case => cases.find((c) => c.delivery === delivery && c.n === n && c.side === side)!
  try {
    for (const delivery of ['at-least-once', 'at-most-once'] as const) {
      for (const n of FANOUTS) {
        for (const side of SIDES[delivery]) {
          const tag = `${delivery === 'at-least-once' ? 'alo' : 'amo'}-n${n}-${side}`
          const subs = sinkKeys(node, `sink-${tag}`, n).map((key) => ({ kind: PubSubSink.kind, key, method: 'recv' }))
          const topic = `bench.${tag}`
          if (side !== 'hand') {
            node.pubsub.createTopic(topic, { delivery })
            for (const sub of subs) node.pubsub.subscribe(topic, sub)
          }
          cases.push({ side, delivery, n, topic, subs, seq: 0 })
        }
      }
    }
    /** The cases of each fan-out that take turns. */
    const groups = (delivery: Delivery): Case[][] => FANOUTS.map((n) => SIDES[delivery].map((side) => pick(delivery, n, side)))
    // Interleaved: each round runs a group's cases, in reverse order every other round.
    const inTurn = (group: readonly Case[], r: number): Case[] => (r % 2 === 0 ? [...group] : [...group].reverse())

    // Warm-up, verified before anything is timed.
    for (const c of cases) {
      if (c.delivery === 'at-least-once') {
        o.log(`pubsub: warm-up ${label(c)}: ${s.warm} sequential calls, ${s.warm} pipelined`)
        await sequential(node, c, s.warm, new Float64Array(s.warm))
        await pipelined(node, c, s.warm)
      } else {
        o.log(`pubsub: warm-up ${label(c)}: ${s.warm * 10} calls`)
        await amoRound(node, c, s.warm * 10)
      }
      await verify(node, c)
    }

    const gc = fullGc()
    for (let r = 0; r < rounds; r++) {
      for (const group of groups('at-least-once')) {
        for (const c of inTurn(group, r)) {
          gc?.()
          const t = await pipelined(node, c, s.pipelined[c.n])
          await verify(node, c)
          res.pipelined.set(c, [...(res.pipelined.get(c) ?? []), t])
          o.log(`pubsub: round ${r + 1}/${rounds} (b) ${label(c)}: ${Math.round(callRate(t)).toLocaleString('en-US')} calls/s`)
        }
      }
      for (const group of groups('at-most-once')) {
        for (const c of inTurn(group, r)) {
          gc?.()
          const t = await amoRound(node, c, s.amo[c.n])
          res.amo.set(c, [...(res.amo.get(c) ?? []), t])
          o.log(`pubsub: round ${r + 1}/${rounds} (c) ${label(c)}: ${Math.round(callRate(t) * c.n).toLocaleString('en-US')} deliveries/s`)
        }
      }
    }

    // (a) in interleaved slices of the same sequence; latencies pooled per case.
    for (const group of groups('at-least-once')) {
      const n = group[0]!.n
      const us = new Map(group.map((c) => [c, new Float64Array(s.seq[n])]))
      const ms = new Map(group.map((c) => [c, 0]))
      for (let k = 0; k < rounds; k++) {
        const from = Math.floor((k * s.seq[n]) / rounds)
        const to = Math.floor(((k + 1) * s.seq[n]) / rounds)
        for (const c of inTurn(group, k)) {
          gc?.()
          ms.set(c, ms.get(c)! + (await sequential(node, c, to - from, us.get(c)!.subarray(from, to))))
        }
      }
      for (const c of group) {
        await verify(node, c)
        res.seq.set(c, { lat: summarizeLatencies(us.get(c)!), callsPerSec: (s.seq[n] * 1000) / ms.get(c)! })
        o.log(`pubsub: (a) ${label(c)}: p50 ${res.seq.get(c)!.lat.p50Us.toFixed(1)} µs, p99 ${res.seq.get(c)!.lat.p99Us.toFixed(1)} µs`)
      }
    }
    for (const c of cases) await verify(node, c)
  } finally {
    await node.close()
  }

  const emptyRow = (name: string): Row => ({
    case: name,
    'calls/s': null,
    'deliveries/s': null,
    'deliveries/s min': null,
    'deliveries/s max': null,
    'p50 µs': null,
    'p99 µs': null,
    'p99.9 µs': null,
    'mean µs': null,
    'bp waits': null,
    'speedup vs baseline': null,
    'p99 speedup': null,
  })
  const seqRow = (c: Case): Row => {
    const me = res.seq.get(c)!
    const base = res.seq.get(pick(c.delivery, c.n, 'hand'))!
    return {
      ...emptyRow(`(a) sequential: ${label(c)}${c.side === 'hand' ? ' [baseline]' : ''}`),
      'calls/s': me.callsPerSec,
      'deliveries/s': me.callsPerSec * c.n,
      'p50 µs': me.lat.p50Us,
      'p99 µs': me.lat.p99Us,
      'p99.9 µs': me.lat.p999Us,
      'mean µs': me.lat.meanUs,
      'speedup vs baseline': latencySpeedup(me.lat.p50Us, base.lat.p50Us),
      'p99 speedup': latencySpeedup(me.lat.p99Us, base.lat.p99Us),
    }
  }
  const rateRow = (part: string, runs: Map<Case, Throughput[]>, c: Case): Row => {
    const mine = runs.get(c)!
    const med = medianRound(mine)
    const base = medianRound(runs.get(pick(c.delivery, c.n, 'hand'))!)
    return {
      ...emptyRow(`${c.side === 'pubsub-unawaited' ? `${part.replace(')', "')")} info` : part}: ${label(c)}${c.side === 'hand' ? ' [baseline]' : ''}`),
      'calls/s': callRate(med),
      'deliveries/s': callRate(med) * c.n,
      'deliveries/s min': Math.min(...mine.map(callRate)) * c.n,
      'deliveries/s max': Math.max(...mine.map(callRate)) * c.n,
      'bp waits': c.delivery === 'at-most-once' ? med.waits : null,
      'speedup vs baseline': speedup(callRate(med), callRate(base)),
    }
  }
  const rows: Row[] = []
  for (const n of FANOUTS) for (const side of SIDES['at-least-once']) rows.push(seqRow(pick('at-least-once', n, side)))
  for (const n of FANOUTS) for (const side of SIDES['at-least-once']) rows.push(rateRow(`(b) ${PIPELINE} in flight`, res.pipelined, pick('at-least-once', n, side)))
  for (const n of FANOUTS) for (const side of SIDES['at-most-once']) rows.push(rateRow('(c)', res.amo, pick('at-most-once', n, side)))

  const seqRatio = (n: Fanout): number => latencySpeedup(res.seq.get(pick('at-least-once', n, 'pubsub'))!.lat.p50Us, res.seq.get(pick('at-least-once', n, 'hand'))!.lat.p50Us)
  const rateRatio = (runs: Map<Case, Throughput[]>, delivery: Delivery, n: Fanout): number =>
    speedup(callRate(medianRound(runs.get(pick(delivery, n, 'pubsub'))!)), callRate(medianRound(runs.get(pick(delivery, n, 'hand'))!)))
  const target = (name: string, want: number, actual: number) => check(name, `>= ${want}x`, actual, 'x', actual >= want)
  return {
    scope: 'pubsub',
    title: 'node.pubsub.publish vs the same fan-out by hand (node.ask / node.tell), one node, two workers',
    method: `hand timing (performance.now); (a) per call, sequential, pooled over ${rounds} slice(s); (b) ${PIPELINE} calls in flight, first call to last answer; (c) first publish to the last verification reply; (b) and (c) median of ${rounds} round(s); both sides interleaved, order alternating`,
    baseline: 'the same fan-out by hand on the same node: Promise.all of node.ask per subscriber (at-least-once), node.tell per subscriber (at-most-once)',
    params: {
      seq1: s.seq[1],
      seq8: s.seq[8],
      pipelined1: s.pipelined[1],
      pipelined8: s.pipelined[8],
      amo1: s.amo[1],
      amo8: s.amo[8],
      warm: s.warm,
      rounds,
      pipeline: PIPELINE,
      yieldEvery: YIELD_EVERY,
      workers: WORKERS,
      spinMicros: o.spinMicros,
    },
    rows,
    targets: [
      target('(a) at-least-once publish p50, 1 subscriber, vs a raw ask', 0.8, seqRatio(1)),
      target('(a) at-least-once publish p50, 8 subscribers, vs Promise.all of 8 asks', 0.8, seqRatio(8)),
      target('(b) at-least-once publishes/s, 8 subscribers, 64 in flight, vs Promise.all of 8 asks', 0.5, rateRatio(res.pipelined, 'at-least-once', 8)),
      target('(c) at-most-once deliveries/s, 8 subscribers, awaited, vs 8 tells', 0.3, rateRatio(res.amo, 'at-most-once', 8)),
    ],
    notes: [
      'Speed-ups: calls/s candidate/baseline for (b) and (c); baseline/candidate latency for (a) (p50 in "speedup vs baseline", p99 in "p99 speedup").',
      'One call = one publish, or the baseline fan-out of N asks or tells; deliveries/s = calls/s × N. Both sides send the same payload (the message number) to sinks on the same workers.',
      'Verified, or the scope fails: every sink received every message exactly once and in order (counted in the grain), after the warm-up and after every timed round; every PublishResult reported N delivered, nothing dropped, failed or redelivered.',
      '(c) awaits each publish (it returns a Promise even when all tells are sent inside the call); both sides wait on node.whenWritable() when node.isWritable() is false before a fan-out ("bp waits" counts them in the median round), so nothing meets ERR_RING_FULL: an at-most-once publish drops a delivery whose tell is refused.',
      'Targets: (a) a publish is its N asks plus bookkeeping, so within 0.8× of them; (b) and (c) are throughput bounds the layer should stay within (for (c), awaiting each publish by itself halves the rate: compare (c) with (c\')); missed targets are reported, not failed.',
      'Topics use the default settings apart from delivery (at-least-once: redelivery.attemptTimeoutMs 5,000 ms per delivery attempt); the node runs with metrics on (the default), so the candidate also records the pubsub metrics.',
    ],
    startedAt,
    durationMs: performance.now() - t0,
  }
}
