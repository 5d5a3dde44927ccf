/**
 * PubSub through a real partition (spec 9.3), three node processes on
 * 127.0.0.1 with the `test` profile: one is stopped (SIGSTOP) past
 * detection while the others publish. Policy 'drop' loses the deliveries
 * to the stopped node's keys at once; policy 'defer' keeps them and
 * delivers them inside the majority's segment once its keys are placed
 * there. The topics and subscriptions were made through another member
 * than the one that publishes (the registry travels on gossip).
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PlacementCluster, startPlacementCluster, stopPlacementNodes } from '../helpers/placement-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const SUBSCRIBERS = 24
const subscriber = (i: number) => ({ kind: 'placed', key: `sub-${i}`, method: 'serve' })

interface Result {
  subscribers: number
  delivered: number
  redeliveries: number
  dropped: { key: string; code: string }[]
  failed: { key: string; code: string }[]
}

describe('PubSub while a member is cut off', () => {
  let c: PlacementCluster

  beforeAll(async () => {
    c = await startPlacementCluster(3, { failureDetector: { profile: 'test', downAfterUnreachableMs: 120_000 }, clusterName: 'pubsub-partition' })
  })
  afterAll(async () => {
    for (const n of c?.nodes ?? []) if (n.running) n.child.kill('SIGCONT')
    await stopPlacementNodes()
  })

  it("drops deliveries to the cut-off side with 'drop' and delivers them inside the majority with 'defer'", async () => {
    const [n0, n1, n2] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0], (typeof c.nodes)[0]]
    const redelivery = { attemptTimeoutMs: 1_000, timeoutMs: 60_000, retries: 100, minDelayMs: 50, maxDelayMs: 500 }
    await n1.command({ cmd: 'pubsub', op: 'create', topic: 'ticks', options: { partitionPolicy: 'drop', redelivery } })
    await n1.command({ cmd: 'pubsub', op: 'create', topic: 'ledger', options: { partitionPolicy: 'defer', redelivery } })
    await waitUntil(async () => (await n2.command({ cmd: 'pubsub', op: 'topic', topic: 'ledger' })).info !== null, { what: 'n2 learns of the topics', timeoutMs: 30_000 })
    for (let i = 0; i < SUBSCRIBERS; i++) {
      await n2.command({ cmd: 'pubsub', op: 'subscribe', topic: 'ticks', subscriber: subscriber(i) })
      await n2.command({ cmd: 'pubsub', op: 'subscribe', topic: 'ledger', subscriber: subscriber(i) })
    }
    const known = async (topic: string): Promise<number> => ((await n0.command({ cmd: 'pubsub', op: 'topic', topic })).info as { subscribers: unknown[] } | null)?.subscribers.length ?? 0
    await waitUntil(async () => (await known('ticks')) === SUBSCRIBERS && (await known('ledger')) === SUBSCRIBERS, { what: 'n0 learns every subscription', timeoutMs: 30_000 })

    const publish = async (topic: string): Promise<Result> => (await n0.command({ cmd: 'pubsub', op: 'publish', topic, payload: topic }, 90_000)).result as Result
    expect(await publish('ticks')).toMatchObject({ subscribers: SUBSCRIBERS, delivered: SUBSCRIBERS, dropped: [], failed: [] })
    // Which subscriber keys the soon-stopped node serves.
    const where = await n0.command({ cmd: 'ask', prefix: 'sub-', count: SUBSCRIBERS, timeoutMs: 10_000, concurrency: 8 })
    const onVictim = (where.served as number[]).flatMap((pid, i) => (pid === n2.pid ? [`sub-${i}`] : []))
    expect(onVictim.length).toBeGreaterThan(0)

    n2.child.kill('SIGSTOP')
    try {
      // Both publishes start while n2 still looks reachable (its connection is open; it just does not answer).
      const [ticks, ledger] = await Promise.all([publish('ticks'), publish('ledger')])
      expect(ticks.failed).toEqual([])
      expect(ticks.dropped.map((d) => d.key).sort()).toEqual([...onVictim].sort())
      expect(ticks.delivered).toBe(SUBSCRIBERS - onVictim.length)
      expect(ticks.redeliveries).toBe(0)
      // 'defer' waited for the failure detector, then delivered to the keys' new owners on the majority side.
      expect(ledger).toMatchObject({ delivered: SUBSCRIBERS, dropped: [], failed: [] })
      expect(ledger.redeliveries).toBeGreaterThanOrEqual(onVictim.length)
      const after = await n0.command({ cmd: 'ask', prefix: 'sub-', count: SUBSCRIBERS, timeoutMs: 10_000, concurrency: 8 })
      expect((after.served as number[]).every((pid) => pid === n0.pid || pid === n1.pid)).toBe(true)
    } finally {
      n2.child.kill('SIGCONT')
    }
  })
})
