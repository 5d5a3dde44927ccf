/**
 * Rebalance on join (issue 5, single activation): a node that held every key
 * alone releases the ones a newcomer now owns, even when they are many (the
 * worker's answer comes in parts), and calls reach the one live activation.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { GrainNode, type RuntimeEvent } from '../../src/index.js'
import { freePorts } from '../helpers/free-port.js'
import { IN_PROCESS_DETECTOR, IN_PROCESS_LEASE_MS } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
const KEYS = 6_000
const IN_PROCESS = { failureDetector: IN_PROCESS_DETECTOR, servingLeaseMs: IN_PROCESS_LEASE_MS }

describe('rebalance when a node joins', () => {
  const nodes: GrainNode[] = []
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()))
  })

  it('releases every activation whose key moved, in parts, and keeps one live activation per key', async () => {
    const [pa, pb] = await freePorts(2)
    const seeds = [`127.0.0.1:${pa}`]
    const start = (port: number): Promise<GrainNode> =>
      GrainNode.start({ grains: GRAINS, workers: 1, partitions: 16, audit: () => {}, cluster: { clusterName: 'rebalance-it', secret: 'rebalance-secret', seeds, port, ...IN_PROCESS } })
    const a = await start(pa!)
    nodes.push(a)
    await a.cluster!.whenUp()
    const eventsA: RuntimeEvent[] = []
    a.events.subscribe('grain.deactivated', (e) => eventsA.push(e))
    a.events.subscribe('placement.rebalanced', (e) => eventsA.push(e))
    const keys = Array.from({ length: KEYS }, (_, i) => `r-${i}`)
    for (let i = 0; i < keys.length; i += 500) await Promise.all(keys.slice(i, i + 500).map((k) => a.ask('counter', k, 'add', 1)))

    const b = await start(pb!)
    nodes.push(b)
    await waitUntil(() => nodes.every((n) => n.cluster!.members().filter((m) => m.status === 'up').length === 2), { what: 'both Up', timeoutMs: 30_000 })
    const moved = keys.filter((k) => a.placementOf('counter', k).includes(`//${b.cluster!.authority}/`))
    expect(moved.length).toBeGreaterThan(KEYS / 3)
    // More keys than one reply part (1,024): the worker answers in several.
    await waitUntil(() => eventsA.filter((e) => e.type === 'grain.deactivated' && e.reason === 'handoff').length === moved.length, { what: 'moved keys released on a', timeoutMs: 30_000 })
    const rebalanced = eventsA.filter((e) => e.type === 'placement.rebalanced').reduce((n, e) => n + (e.type === 'placement.rebalanced' ? e.released : 0), 0)
    expect(rebalanced).toBe(moved.length)
    // Every key answers from both nodes; a moved key runs on b (a fresh activation: `counter` has no hooks).
    for (let i = 0; i < keys.length; i += 500) {
      const batch = keys.slice(i, i + 500)
      const fromA = await Promise.all(batch.map((k) => a.ask<number>('counter', k, 'get')))
      const fromB = await Promise.all(batch.map((k) => b.ask<number>('counter', k, 'get')))
      expect(fromA).toEqual(fromB)
      batch.forEach((k, j) => expect(fromA[j]).toBe(moved.includes(k) ? 0 : 1))
    }
    expect(await a.metricsText()).toMatch(new RegExp(`graincluster_placement_rebalanced_activations_total ${moved.length}\\b`))
  })
})
