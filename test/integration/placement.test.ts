/**
 * Placement across three GrainNodes (one process, real loopback sockets):
 * every node resolves a key to the same owner, keys spread evenly, calls by
 * key from any node reach the one activation, grain-to-grain calls by key
 * follow placement, and a node that leaves hands its keys to the others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GrainNode, type RuntimeEvent } from '../../src/index.js'
import { freePorts } from '../helpers/free-port.js'
import { IN_PROCESS_DETECTOR, IN_PROCESS_LEASE_MS } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]

describe('placement across three nodes', () => {
  let nodes: GrainNode[] = []
  const events: RuntimeEvent[][] = [[], [], []]

  beforeAll(async () => {
    const ports = await freePorts(3)
    const seeds = ports.slice(0, 2).map((p) => `127.0.0.1:${p}`)
    nodes = await Promise.all(
      ports.map((port) =>
        GrainNode.start({
          grains: GRAINS,
          workers: 1,
          partitions: 16,
          audit: () => {},
          cluster: { clusterName: 'placement-it', secret: 'placement-secret', seeds, port, failureDetector: IN_PROCESS_DETECTOR, servingLeaseMs: IN_PROCESS_LEASE_MS },
        }),
      ),
    )
    nodes.forEach((n, i) => n.events.subscribe('*', (e) => events[i]!.push(e)))
    await Promise.all(nodes.map((n) => n.cluster!.whenUp()))
    await waitUntil(() => nodes.every((n) => n.cluster!.members().filter((m) => m.status === 'up').length === 3), { what: 'all three Up everywhere' })
  })
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()))
  })

  it('resolves every key to the same PID from every node, and spreads 10,000 keys within ±15 %', () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 10_000; i++) {
      const key = `user-${i}`
      const pids = nodes.map((n) => n.placementOf('counter', key))
      expect(new Set(pids).size).toBe(1)
      const authority = pids[0]!.slice('grain://'.length, pids[0]!.indexOf('/', 'grain://'.length))
      counts.set(authority, (counts.get(authority) ?? 0) + 1)
    }
    expect(counts.size).toBe(3)
    for (const c of counts.values()) expect(Math.abs(c - 10_000 / 3) / (10_000 / 3)).toBeLessThan(0.15)
  })

  it('calls by key from any node reach the one activation of that key', async () => {
    for (let k = 0; k < 12; k++) {
      const key = `shared-${k}`
      for (const n of nodes) await n.ask('counter', key, 'add', 1)
      for (const n of nodes) expect(await n.ask('counter', key, 'get')).toBe(3)
    }
    // Tells by key too, in order, from a node that is not the owner.
    const key = 'ordered-by-key'
    const owner = nodes[0]!.placementOf('counter', key)
    const sender = nodes.find((n) => !owner.includes(n.cluster!.authority))!
    for (let i = 0; i < 500; i++) sender.tell('counter', key, 'record', i)
    await waitUntil(async () => (await sender.ask<number[]>('counter', key, 'seen')).length === 500, { what: 'tells by key delivered' })
    expect(await sender.ask('counter', key, 'seen')).toEqual(Array.from({ length: 500 }, (_, i) => i))
    const text = await sender.cluster!.metrics!.text()
    expect(text).toMatch(/graincluster_pid_cache_hits_total [1-9]/)
    expect(text).toMatch(/graincluster_pid_cache_misses_total [1-9]/)
  })

  it('grain-to-grain calls by key follow placement across nodes', async () => {
    // Each caller asks counter/target-k; wherever the callers live, one activation counts every call.
    for (let i = 0; i < 9; i++) await nodes[i % 3]!.ask('counter', `caller-${i}`, 'askOther', { key: 'g2g-target', by: 1 })
    for (const n of nodes) expect(await n.ask('counter', 'g2g-target', 'get')).toBe(9)
  })

  it('when a node leaves, its keys move to the survivors and answer again', async () => {
    const leaver = nodes[2]!
    const survivors = nodes.slice(0, 2)
    const moved = Array.from({ length: 300 }, (_, i) => `move-${i}`).filter((k) => leaver.placementOf('counter', k).includes(leaver.cluster!.authority))
    expect(moved.length).toBeGreaterThan(0)
    await leaver.leave()
    await waitUntil(() => survivors.every((n) => n.cluster!.core.table.member(leaver.cluster!.authority)?.status === 'removed'), { what: 'leaver removed' })
    for (const key of moved.slice(0, 20)) {
      const pids = survivors.map((n) => n.placementOf('counter', key))
      expect(pids[0]).toBe(pids[1])
      expect(pids[0]).not.toContain(leaver.cluster!.authority)
      expect(await survivors[0]!.ask('counter', key, 'add', 1)).toBe(1)
    }
    nodes = survivors
  })
})
