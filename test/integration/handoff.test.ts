/**
 * State hand-off (issue 5, spec 5.4) across in-process GrainNodes on real
 * loopback sockets: a node joins and the keys that move to it carry their
 * state; a node leaves gracefully and its keys carry their state to the
 * survivors; at no point is a key active on two nodes; a kind that requires
 * a snapshot refuses to start from scratch when the snapshot is missing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GrainNode, type RuntimeEvent } from '../../src/index.js'
import { freePorts } from '../helpers/free-port.js'
import { IN_PROCESS_DETECTOR, IN_PROCESS_LEASE_MS } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url), new URL('../fixtures/grains/handoff-grains.ts', import.meta.url)]
const KEYS = Array.from({ length: 120 }, (_, i) => `acct-${i}`)

describe('state hand-off between owners', () => {
  const nodes: GrainNode[] = []
  const events = new Map<GrainNode, RuntimeEvent[]>()
  let ports: number[] = []
  let seeds: string[] = []

  const start = async (port: number): Promise<GrainNode> => {
    const n = await GrainNode.start({
      grains: GRAINS,
      workers: 1,
      partitions: 16,
      audit: () => {},
      cluster: { clusterName: 'handoff-it', secret: 'handoff-secret', seeds, port, failureDetector: IN_PROCESS_DETECTOR, servingLeaseMs: IN_PROCESS_LEASE_MS },
    })
    const list: RuntimeEvent[] = []
    n.events.subscribe('*', (e) => list.push(e))
    events.set(n, list)
    nodes.push(n)
    return n
  }
  const upEverywhere = (live: GrainNode[]): Promise<unknown> =>
    waitUntil(() => live.every((n) => n.cluster!.members().filter((m) => m.status === 'up').length === live.length), { what: `${live.length} members Up everywhere`, timeoutMs: 30_000 })
  /** Keys each node holds an activation of, from its own activation events. */
  const liveKeys = (n: GrainNode, kind: string): Set<string> => {
    const live = new Set<string>()
    for (const e of events.get(n)!) {
      if (e.type === 'grain.activated' && e.kind === kind) live.add(e.key)
      else if (e.type === 'grain.deactivated' && e.kind === kind) live.delete(e.key)
    }
    return live
  }
  const ownerIndex = (via: GrainNode, live: GrainNode[], key: string): number => {
    const pid = via.placementOf('tally', key)
    return live.findIndex((n) => pid.includes(`//${n.cluster!.authority}/`))
  }

  beforeAll(async () => {
    ports = await freePorts(4)
    seeds = ports.slice(0, 2).map((p) => `127.0.0.1:${p}`)
    await Promise.all([start(ports[0]!), start(ports[1]!)])
    await upEverywhere(nodes)
  })
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()))
  })

  it('a joining node takes over its keys with their state; no key is active twice', async () => {
    const [a, b] = nodes as [GrainNode, GrainNode]
    // Each key gets a distinct count: i + 1, in two steps so the history has order.
    for (const [i, key] of KEYS.entries()) {
      await a.ask('tally', key, 'add', 1)
      await b.ask('tally', key, 'add', i)
    }
    const c = await start(ports[2]!)
    await upEverywhere(nodes)
    await waitUntil(() => nodes.every((n) => KEYS.every((k) => ownerIndex(n, nodes, k) === ownerIndex(a, nodes, k))), { what: 'every node agrees on the owners' })
    const moved = KEYS.filter((k) => ownerIndex(a, nodes, k) === 2)
    expect(moved.length).toBeGreaterThan(10)
    // Call every key from every node: each sees the count it had before the join.
    for (const [i, key] of KEYS.entries()) {
      for (const n of nodes) expect(await n.ask('tally', key, 'get', undefined, { timeoutMs: 20_000 })).toBe(i + 1)
    }
    expect(await c.ask('tally', moved[0]!, 'history')).toEqual([1, KEYS.indexOf(moved[0]!)])
    const restored = events.get(c)!.filter((e) => e.type === 'placement.handoff' && e.outcome === 'restored').length
    expect(restored).toBe(moved.length)
    expect(await c.metricsText()).toMatch(new RegExp(`graincluster_placement_handoffs_total\\{outcome="restored"\\} ${moved.length}\\b`))
    // The join invalidated the old owners' caches (an event, not only a metric).
    expect(events.get(a)!.some((e) => e.type === 'pid.cache-invalidated')).toBe(true)
    // Single activation: the three live sets are disjoint and cover every key.
    const sets = nodes.map((n) => liveKeys(n, 'tally'))
    for (const k of KEYS) expect(sets.filter((s) => s.has(k))).toHaveLength(1)
    expect([...sets[2]!].sort()).toEqual([...moved].sort())
  })

  it('keeps per-key order and loses nothing while keys move under concurrent calls (a node leaves, another joins)', async () => {
    const [a, b, c] = nodes as [GrainNode, GrainNode, GrainNode]
    // 20 fresh keys, tells from two nodes interleaved with a leave of the third.
    const keys = Array.from({ length: 40 }, (_, i) => `busy-${i}`)
    for (const k of keys) await a.ask('tally', k, 'add', 0)
    const sending = (async () => {
      for (let round = 1; round <= 30; round++) {
        for (const k of keys) {
          for (;;) {
            try {
              await b.ask('tally', k, 'slowAdd', round, { timeoutMs: 20_000 })
              break
            } catch (e) {
              const err = e as { retryable?: boolean }
              if (err.retryable !== true) throw e
              await new Promise((r) => setTimeout(r, 20))
            }
          }
        }
      }
    })()
    await new Promise((r) => setTimeout(r, 50))
    await c.leave()
    nodes.splice(nodes.indexOf(c), 1)
    // And a new node joins while the calls keep coming.
    const d = await start(ports[3]!)
    await upEverywhere(nodes)
    await sending
    expect(liveKeys(d, 'tally').size).toBeGreaterThan(0)
    await upEverywhere(nodes)
    const expected = Array.from({ length: 30 }, (_, i) => i + 1)
    for (const k of keys) expect(await a.ask('tally', k, 'history')).toEqual([0, ...expected])
    // The keys that lived on the leaver carried their state too.
    for (const [i, key] of KEYS.entries()) expect(await b.ask('tally', key, 'get', undefined, { timeoutMs: 20_000 })).toBe(i + 1)
    const live = nodes.map((n) => liveKeys(n, 'tally'))
    for (const k of [...KEYS, ...keys]) expect(live.filter((s) => s.has(k))).toHaveLength(1)
  })

  it('a kind that requires its snapshot fails activation with ERR_GRAIN_SNAPSHOT_MISSING when the holder cannot give one', async () => {
    const [a, b, d] = nodes as [GrainNode, GrainNode, GrainNode]
    // Back to two nodes first (graceful leave carries d's keys to a and b).
    await d.leave()
    nodes.splice(nodes.indexOf(d), 1)
    await upEverywhere(nodes)
    const keys = Array.from({ length: 40 }, (_, i) => `vault-${i}`)
    for (const k of keys) {
      await a.ask('vault', k, 'deposit', 10)
      await a.ask('vault', k, 'poison')
    }
    const c = await start(ports[2]!)
    await upEverywhere(nodes)
    await waitUntil(() => nodes.every((n) => keys.every((k) => n.placementOf('vault', k) === a.placementOf('vault', k))), { what: 'owners agree' })
    const moved = keys.filter((k) => a.placementOf('vault', k).includes(`//${c.cluster!.authority}/`))
    const stayed = keys.filter((k) => !moved.includes(k))
    expect(moved.length).toBeGreaterThan(0)
    const err: unknown = await c.ask('vault', moved[0]!, 'balance').then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'ERR_GRAIN_SNAPSHOT_MISSING' })
    expect(String((err as Error).message)).toContain('vault snapshot refused')
    expect(events.get(c)!.some((e) => e.type === 'placement.handoff' && e.outcome === 'failed' && e.key === moved[0])).toBe(true)
    // Keys that did not move are untouched.
    expect(await b.ask('vault', stayed[0]!, 'balance')).toBe(10)
  })
})
