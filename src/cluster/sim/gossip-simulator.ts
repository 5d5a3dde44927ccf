/**
 * Deterministic cluster simulator: N ClusterCore instances (the production
 * membership/gossip code, unchanged) on an in-memory network with a virtual
 * clock, seeded randomness, message loss, latency and partitions. Used by
 * the unit tests and by native-free-bench/gossip.bench.ts to measure
 * convergence at 10–1,000 nodes instead of guessing.
 *
 * Same seed, same options → the same run, message for message.
 */

import type { EventInit, RuntimeEvent } from '../../observability/events.js'
import { binaryCodec, encodeToBytes } from '../../wire/payload-codec.js'
import { type ClusterMessage, ClusterCore, type FailureDetector } from '../cluster-core.js'

export interface SimOptions {
  nodes: number
  seed: number
  /** Number of seed nodes (the first ones). Default min(3, nodes). */
  seeds?: number
  /** Probability that any message is lost. Default 0. */
  lossRate?: number
  /** One-way latency range (ms). Default [1, 5]. */
  latencyMs?: [number, number]
  gossipIntervalMs?: number
  /** 0 disables heartbeats (large runs that only measure gossip). Default 500. */
  heartbeatIntervalMs?: number
  /** Simple timeout detector: unreachable after this silence (ms). Default 2 000. */
  detectorTimeoutMs?: number
  downAfterUnreachableMs?: number
  convergenceTimeoutMs?: number
  /** Two extra gossip rounds per interval while a change spreads, as ClusterNode does (Akka's speed-up). Default false: the scale measurements count plain rounds. */
  gossipSpeedup?: boolean
  /** Count encoded bytes of every message (costs CPU). Default true. */
  measureBytes?: boolean
}

/** Deterministic PRNG (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Timeout-based detector for the simulator (the phi detector has its own tests). */
export class TimeoutDetector implements FailureDetector {
  readonly #last = new Map<string, number>()
  readonly #down = new Set<string>()
  constructor(readonly timeoutMs: number) {}
  heartbeat(id: string, nowMs: number): void {
    this.#last.set(id, nowMs)
  }
  monitor(id: string, nowMs: number): void {
    if (!this.#last.has(id)) this.#last.set(id, nowMs)
  }
  remove(id: string): void {
    this.#last.delete(id)
    this.#down.delete(id)
  }
  check(nowMs: number): { unreachable: string[]; reachable: string[] } {
    const unreachable: string[] = []
    const reachable: string[] = []
    for (const [id, t] of this.#last) {
      const dead = nowMs - t > this.timeoutMs
      if (dead && !this.#down.has(id)) {
        this.#down.add(id)
        unreachable.push(id)
      } else if (!dead && this.#down.has(id)) {
        this.#down.delete(id)
        reachable.push(id)
      }
    }
    return { unreachable, reachable }
  }
  onLocalPause(nowMs: number): void {
    for (const id of this.#last.keys()) this.#last.set(id, nowMs)
  }
}

export interface SimNode {
  readonly index: number
  readonly authority: string
  core: ClusterCore
  alive: boolean
  readonly events: EventInit<RuntimeEvent>[]
  /** Replicated data keys reported changed, in order (ClusterCore.drain().data). */
  readonly dataTouched: string[]
  bytesSent: number
  messagesSent: number
  /** Seed this node asks to join (again, every second, until it is in: joins can be lost). */
  joinVia: number | undefined
  lastJoinAt: number
}

type ItemBody = { kind: 'msg'; from: string; to: string; msg: ClusterMessage; at: number } | { kind: 'gossip' | 'heartbeat' | 'speedup'; node: number; at: number }
type Item = ItemBody & { seq: number }

/** Binary min-heap on (at, seq). */
class Agenda {
  readonly #h: Item[] = []
  get size(): number {
    return this.#h.length
  }
  push(x: Item): void {
    const h = this.#h
    h.push(x)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(h[i]!, h[p]!)) break
      ;[h[i], h[p]] = [h[p]!, h[i]!]
      i = p
    }
  }
  peek(): Item | undefined {
    return this.#h[0]
  }
  pop(): Item | undefined {
    const h = this.#h
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last !== undefined) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && before(h[l]!, h[m]!)) m = l
        if (r < h.length && before(h[r]!, h[m]!)) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m]!, h[i]!]
        i = m
      }
    }
    return top
  }
}
function before(a: Item, b: Item): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

export class GossipSimulator {
  readonly nodes: SimNode[] = []
  readonly seeds: string[]
  now = 0
  readonly #o: Required<SimOptions>
  readonly #rng: () => number
  readonly #agenda = new Agenda()
  #seq = 0
  /** Node index → partition group; messages between different groups are dropped. */
  #group: number[] | undefined
  dropped = 0
  delivered = 0
  /** Count encoded bytes of every message from now on (off during a bootstrap you do not measure). */
  measureBytes: boolean

  constructor(o: SimOptions) {
    this.#o = {
      seeds: Math.min(3, o.nodes),
      lossRate: 0,
      latencyMs: [1, 5],
      gossipIntervalMs: 200,
      heartbeatIntervalMs: 500,
      detectorTimeoutMs: 2_000,
      downAfterUnreachableMs: 5_000,
      convergenceTimeoutMs: 1_000,
      gossipSpeedup: false,
      measureBytes: true,
      ...o,
    }
    this.measureBytes = this.#o.measureBytes
    this.#rng = mulberry32(o.seed)
    this.seeds = Array.from({ length: this.#o.seeds }, (_, i) => authorityOf(i))
    for (let i = 0; i < o.nodes; i++) this.#addNode(i)
  }

  #addNode(i: number): SimNode {
    const authority = authorityOf(i)
    const node: SimNode = { index: i, authority, core: this.#newCore(authority, i), alive: true, events: [], dataTouched: [], bytesSent: 0, messagesSent: 0, joinVia: undefined, lastJoinAt: 0 }
    this.nodes[i] = node
    const g = this.#o.gossipIntervalMs
    this.#schedule({ kind: 'gossip', node: i, at: this.now + this.#rng() * g })
    if (this.#o.heartbeatIntervalMs > 0) this.#schedule({ kind: 'heartbeat', node: i, at: this.now + this.#rng() * this.#o.heartbeatIntervalMs })
    return node
  }

  #newCore(authority: string, i: number, incarnation = 0): ClusterCore {
    return new ClusterCore({
      authority,
      nodeId: `n${i.toString(16)}i${incarnation}`,
      seeds: this.seeds,
      downAfterUnreachableMs: this.#o.downAfterUnreachableMs,
      convergenceTimeoutMs: this.#o.convergenceTimeoutMs,
      detector: new TimeoutDetector(this.#o.detectorTimeoutMs),
      random: this.#rng,
    })
  }

  #schedule(x: ItemBody): void {
    this.#agenda.push({ ...x, seq: this.#seq++ })
  }

  /** Node 0 forms the cluster; every other node asks a seed to join. */
  bootstrap(): void {
    this.nodes[0]!.core.selfJoin()
    this.#flush(this.nodes[0]!)
    for (const n of this.nodes.slice(1)) this.join(n.index)
  }

  join(i: number, via = 0): void {
    const n = this.nodes[i]!
    n.joinVia = via
    n.lastJoinAt = this.now
    n.core.requestJoin(authorityOf(via))
    this.#flush(n)
  }

  /** kill -9: the node stops sending and receiving. */
  kill(i: number): void {
    this.nodes[i]!.alive = false
  }

  /** Restart a killed node as a new incarnation. */
  restart(i: number, incarnation: number): void {
    const n = this.nodes[i]!
    n.core = this.#newCore(n.authority, i, incarnation)
    n.alive = true
  }

  partition(groups: number[][]): void {
    const g: number[] = new Array<number>(this.nodes.length).fill(-1)
    groups.forEach((members, gi) => {
      for (const m of members) g[m] = gi
    })
    this.#group = g
  }

  heal(): void {
    this.#group = undefined
  }

  #flush(n: SimNode): void {
    const { sends, events, data } = n.core.drain()
    for (const e of events) n.events.push({ ...e, at: this.now })
    n.dataTouched.push(...data)
    for (const s of sends) {
      n.messagesSent++
      if (this.measureBytes) n.bytesSent += encodeToBytes(binaryCodec, s.msg).length
      const to = indexOf(s.to)
      if (to < 0 || to >= this.nodes.length) continue
      if (this.#rng() < this.#o.lossRate || (this.#group !== undefined && this.#group[n.index] !== this.#group[to])) {
        this.dropped++
        continue
      }
      const [lo, hi] = this.#o.latencyMs
      this.#schedule({ kind: 'msg', from: n.authority, to: s.to, msg: s.msg, at: this.now + lo + this.#rng() * (hi - lo) })
    }
  }

  /** Advance the virtual clock by `ms`, running every tick and delivery in order. */
  run(ms: number): void {
    const end = this.now + ms
    for (;;) {
      const next = this.#agenda.peek()
      if (next === undefined || next.at > end) break
      this.#agenda.pop()
      this.now = next.at
      if (next.kind === 'msg') {
        const n = this.nodes[indexOf(next.to)]
        if (n === undefined || !n.alive) continue
        this.delivered++
        n.core.onMessage(next.from, next.msg, this.now)
        this.#flush(n)
        continue
      }
      const n = this.nodes[next.node]!
      if (next.kind === 'gossip') {
        if (n.alive && n.joinVia !== undefined && n.core.self === undefined && this.now - n.lastJoinAt >= 1_000) this.join(n.index, n.joinVia)
        if (n.alive) {
          n.core.tick(this.now)
          this.#flush(n)
        }
        this.#schedule({ kind: 'gossip', node: next.node, at: this.now + this.#o.gossipIntervalMs })
        if (n.alive && this.#o.gossipSpeedup && n.core.gossipSpeedupNeeded()) {
          const g = this.#o.gossipIntervalMs
          this.#schedule({ kind: 'speedup', node: next.node, at: this.now + g / 3 })
          this.#schedule({ kind: 'speedup', node: next.node, at: this.now + (2 * g) / 3 })
        }
      } else if (next.kind === 'speedup') {
        if (n.alive) {
          n.core.speedupTick()
          this.#flush(n)
        }
      } else {
        if (n.alive) {
          n.core.heartbeatTick(this.now)
          n.core.checkReachability(this.now)
          this.#flush(n)
        }
        this.#schedule({ kind: 'heartbeat', node: next.node, at: this.now + this.#o.heartbeatIntervalMs })
      }
    }
    this.now = end
  }

  /** Run in steps of `stepMs` until `pred` holds; returns the virtual ms it took, or -1. */
  runUntil(pred: () => boolean, maxMs: number, stepMs = 10): number {
    const start = this.now
    while (this.now - start <= maxMs) {
      if (pred()) return this.now - start
      this.run(stepMs)
    }
    return pred() ? this.now - start : -1
  }

  alive(): SimNode[] {
    return this.nodes.filter((n) => n.alive)
  }

  /** Every live node holds the same table (equal digests). */
  sameView(nodes: SimNode[] = this.alive()): boolean {
    const d = nodes[0]?.core.table.digest()
    return nodes.every((n) => n.core.table.digest() === d)
  }

  /** Every live node sees every live node as Up, with one shared view. */
  allUp(nodes: SimNode[] = this.alive()): boolean {
    if (!this.sameView(nodes)) return false
    const table = nodes[0]!.core.table
    return nodes.every((n) => table.member(n.authority)?.status === 'up')
  }

  get gossipIntervalMs(): number {
    return this.#o.gossipIntervalMs
  }
}

/** In-memory names only: the simulator never opens a socket. */
export function authorityOf(i: number): string {
  return `sim-${i}:4050`
}

function indexOf(authority: string): number {
  const m = /^sim-(\d+):4050$/.exec(authority)
  return m === null ? -1 : Number(m[1])
}
