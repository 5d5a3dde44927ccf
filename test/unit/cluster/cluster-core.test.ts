/**
 * Membership, gossip, failure handling and downing, driven through the
 * deterministic simulator (virtual clock, seeded randomness): the same
 * ClusterCore code the TCP driver runs.
 */
import { describe, expect, it } from 'vitest'
import { GossipSimulator, type SimNode } from '../../../src/cluster/sim/gossip-simulator.js'

const statusOf = (n: SimNode, authority: string): string | undefined => n.core.table.member(authority)?.status
const eventsOf = (n: SimNode, type: string, authority?: string) =>
  n.events.filter((e) => e.type === type && (authority === undefined || (e as { authority?: string }).authority === authority))

function formed(nodes: number, seed: number, extra: Partial<ConstructorParameters<typeof GossipSimulator>[0]> = {}): GossipSimulator {
  const sim = new GossipSimulator({ nodes, seed, ...extra })
  sim.bootstrap()
  const t = sim.runUntil(() => sim.allUp() && sim.alive().every((n) => n.core.convergence === 'confirmed'), 30_000)
  expect(t, 'cluster formed').toBeGreaterThanOrEqual(0)
  return sim
}

describe('joining (spec 1.1, 1.5)', () => {
  it.each([3, 5])('forms a %i-node cluster through a seed: every node Up, one table, converged', (n) => {
    const sim = formed(n, 11)
    for (const node of sim.nodes) {
      expect(node.core.members().map((m) => m.status)).toEqual(Array(n).fill('up'))
      expect(eventsOf(node, 'gossip.converged').length).toBeGreaterThan(0)
    }
    // Up numbers give every node the same age order.
    expect(new Set(sim.nodes[0]!.core.members().map((m) => m.upNumber)).size).toBe(n)
  })

  it('hands the newcomer the full table in the welcome', () => {
    const sim = new GossipSimulator({ nodes: 4, seed: 3 })
    sim.nodes[0]!.core.selfJoin()
    sim.join(1)
    sim.join(2)
    const first = sim.nodes.slice(0, 3)
    expect(sim.runUntil(() => sim.allUp(first), 20_000)).toBeGreaterThanOrEqual(0)
    const late = sim.nodes[3]!
    sim.join(3)
    // The instant the newcomer knows itself, it knows everyone: one welcome message carried the table.
    expect(sim.runUntil(() => late.core.self !== undefined, 5_000, 1)).toBeGreaterThanOrEqual(0)
    expect(late.core.table.size).toBe(4)
    for (const n of first) expect(late.core.table.member(n.authority)?.status).toBe('up')
    expect(late.core.self?.status).toBe('joining')
  })

  it('gossip speed-up (Akka): while a change spreads, extra rounds bring a newcomer Up everywhere sooner; none once all have seen it', () => {
    // Median of several seeds: one run's random gossip targets can go either way.
    const joinToAllUp = (speedup: boolean, seed: number): number => {
      const sim = new GossipSimulator({ nodes: 6, seed, gossipSpeedup: speedup })
      sim.nodes[0]!.core.selfJoin()
      for (let i = 1; i < 5; i++) sim.join(i)
      const first = sim.nodes.slice(0, 5)
      expect(sim.runUntil(() => sim.allUp(first) && first.every((n) => n.core.convergence === 'confirmed'), 30_000)).toBeGreaterThanOrEqual(0)
      // Converged and quiet: nobody needs a speed-up.
      expect(first.filter((n) => n.core.gossipSpeedupNeeded()).map((n) => n.authority)).toEqual([])
      sim.join(5)
      const t = sim.runUntil(() => sim.allUp(), 30_000, 1)
      expect(t).toBeGreaterThanOrEqual(0)
      return t
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const seeds = [1, 2, 3, 4, 5, 6, 7]
    const plain = median(seeds.map((s) => joinToAllUp(false, s)))
    const fast = median(seeds.map((s) => joinToAllUp(true, s)))
    expect(fast).toBeLessThan(plain * 0.75)
  })

  it('converges with 5% message loss', () => {
    const sim = formed(8, 21, { lossRate: 0.05 })
    expect(sim.dropped).toBeGreaterThan(0)
    expect(sim.sameView()).toBe(true)
  })
})

describe('leaving and failure (spec 1.2, 1.3)', () => {
  it('graceful leave: Leaving → Exiting → Removed on every node', () => {
    const sim = formed(4, 2)
    const leaver = sim.nodes[3]!
    expect(leaver.core.leave()).toBe(true)
    const t = sim.runUntil(() => sim.nodes.slice(0, 3).every((n) => statusOf(n, leaver.authority) === 'removed'), 20_000)
    expect(t).toBeGreaterThanOrEqual(0)
    expect(eventsOf(sim.nodes[0]!, 'member.leaving', leaver.authority)).toHaveLength(1)
    expect(eventsOf(sim.nodes[0]!, 'member.removed', leaver.authority)[0]).toMatchObject({ reason: 'left the cluster' })
    expect(eventsOf(sim.nodes[0]!, 'member.downed', leaver.authority)).toHaveLength(0)
  })

  it('a killed member becomes Unreachable, then Down and Removed everywhere after the stable-after window', () => {
    const sim = formed(5, 4, { detectorTimeoutMs: 2_000, downAfterUnreachableMs: 5_000 })
    const victim = sim.nodes[4]!
    const killedAt = sim.now
    sim.kill(4)
    expect(sim.runUntil(() => sim.alive().every((n) => statusOf(n, victim.authority) === 'removed'), 30_000)).toBeGreaterThanOrEqual(0)
    for (const n of sim.alive()) {
      const unreachable = eventsOf(n, 'member.unreachable', victim.authority)[0]
      const downed = eventsOf(n, 'member.downed', victim.authority)[0]
      expect(unreachable).toBeDefined()
      expect(downed).toBeDefined()
      // Detection is not decision: Down only after the stable-after window.
      expect(downed!.at! - killedAt).toBeGreaterThanOrEqual(5_000)
    }
  })

  it('Unreachable is reversible: a member that comes back before the window is never downed', () => {
    const sim = formed(4, 8, { detectorTimeoutMs: 1_000, downAfterUnreachableMs: 10_000 })
    const victim = sim.nodes[3]!
    sim.partition([[0, 1, 2], [3]])
    expect(sim.runUntil(() => sim.nodes[0]!.core.table.isUnreachable(victim.authority), 10_000)).toBeGreaterThanOrEqual(0)
    sim.heal()
    expect(sim.runUntil(() => sim.alive().every((n) => !n.core.table.isUnreachable(victim.authority)), 10_000)).toBeGreaterThanOrEqual(0)
    sim.run(15_000)
    for (const n of sim.nodes) {
      expect(statusOf(n, victim.authority)).toBe('up')
      expect(eventsOf(n, 'member.downed')).toHaveLength(0)
    }
    expect(eventsOf(sim.nodes[0]!, 'member.reachable', victim.authority).length).toBeGreaterThan(0)
  })
})

describe('conflicts (spec 1.4, 7.4)', () => {
  it('refuses a second incarnation of an authority that is still a member, with a conflict event', () => {
    const sim = formed(3, 6)
    const seed = sim.nodes[0]!
    const r = seed.core.checkPeer(sim.nodes[2]!.authority, 'another-incarnation')
    expect(r?.code).toBe('ERR_AUTHORITY_CONFLICT')
    expect(r?.reason).toContain('another-incarnation')
    const ev = seed.core.drain().events.find((e) => e.type === 'member.conflict')
    expect(ev).toMatchObject({ authority: sim.nodes[2]!.authority, newNodeId: 'another-incarnation' })
  })

  it('a new incarnation listening at a member\'s address downs the member at once, on any node, and the leader removes it', () => {
    // Detection and the stable-after window far beyond the test: only the proof can down it.
    const sim = formed(3, 12, { detectorTimeoutMs: 60_000, downAfterUnreachableMs: 60_000 })
    const [leader, other, victim] = sim.nodes as [SimNode, SimNode, SimNode]
    const oldId = victim.core.nodeId
    sim.kill(2)
    // Not proof: the member's own NodeId, an unknown authority, this node itself.
    expect(other.core.incarnationReplaced(victim.authority, oldId)).toBe(false)
    expect(other.core.incarnationReplaced('127.0.0.9:1', 'x')).toBe(false)
    expect(other.core.incarnationReplaced(other.authority, 'x')).toBe(false)
    expect(statusOf(other, victim.authority)).toBe('up')

    // A non-leader's dial met NodeId "restarted" at the victim's address.
    expect(other.core.incarnationReplaced(victim.authority, 'restarted')).toBe(true)
    expect(statusOf(other, victim.authority)).toBe('down')
    expect(other.core.incarnationReplaced(victim.authority, 'restarted')).toBe(false) // once
    const t = sim.runUntil(() => [leader, other].every((n) => statusOf(n, victim.authority) === 'removed'), 10_000)
    expect(t, 'removed everywhere long before detection (60 s)').toBeGreaterThanOrEqual(0)
    const downed = eventsOf(other, 'member.downed', victim.authority)
    expect(downed).toHaveLength(1)
    expect(downed[0]).toMatchObject({ nodeId: oldId, decidedBy: other.authority })
    expect((downed[0] as { reason: string }).reason).toContain(`a new incarnation restarted listens at ${victim.authority}`)
    expect(eventsOf(leader, 'member.downed', victim.authority)).toHaveLength(1)
    // Removed: the new incarnation is admitted now.
    expect(leader.core.checkPeer(victim.authority, 'restarted')).toBeUndefined()
    // A removed incarnation answering proves nothing about a later holder.
    expect(leader.core.incarnationReplaced(victim.authority, oldId)).toBe(false)
  })

  it('resolves two incarnations admitted concurrently by different seeds the same way everywhere, and counts the rejected view', () => {
    const sim = formed(4, 9)
    // Node 3 dies; a new incarnation asks seed 0 while a third one asks seed 1, before either side hears of the other.
    sim.kill(3)
    const victim = sim.nodes[3]!.authority
    for (const n of sim.alive()) n.core.table.writeStatus(victim, 'removed') // as after a completed down
    sim.run(2_000)
    sim.restart(3, 1)
    sim.partition([[0, 3], [1, 2]])
    sim.join(3, 0)
    sim.run(500)
    // A competing incarnation reaches seed 1 on the other side.
    const rogue = sim.nodes[1]!.core
    rogue.table.writeMember({ authority: victim, nodeId: 'n3i2', status: 'joining', upNumber: 0 })
    sim.heal()
    expect(sim.runUntil(() => sim.sameView(), 20_000)).toBeGreaterThanOrEqual(0)
    const holders = new Set(sim.alive().map((n) => n.core.table.member(victim)?.nodeId))
    expect(holders.size).toBe(1)
    const rejected = sim.alive().reduce((s, n) => s + n.core.stats.rejectedViews, 0)
    expect(rejected).toBeGreaterThan(0)
    expect(sim.alive().some((n) => eventsOf(n, 'gossip.view-rejected').length > 0)).toBe(true)
  })
})

describe('downing by consensus (spec 7.3)', () => {
  it('a 3+2 partition: only the majority side downs, the minority refuses writes; never two clusters', () => {
    const sim = formed(5, 13, { detectorTimeoutMs: 1_000, downAfterUnreachableMs: 3_000 })
    const majority = [0, 1, 2]
    const minority = [3, 4]
    sim.partition([majority, minority])
    sim.run(15_000)
    for (const i of minority) {
      const n = sim.nodes[i]!
      expect(n.core.isMinority).toBe(true)
      // The minority never downs the majority.
      for (const j of majority) expect(statusOf(n, sim.nodes[j]!.authority)).toBe('up')
    }
    for (const i of majority) {
      const n = sim.nodes[i]!
      expect(n.core.isMinority).toBe(false)
      for (const j of minority) expect(['down', 'removed']).toContain(statusOf(n, sim.nodes[j]!.authority))
    }
    // After healing, the minority learns it was removed and stops.
    sim.heal()
    expect(sim.runUntil(() => minority.every((i) => sim.nodes[i]!.core.isTerminated), 20_000)).toBeGreaterThanOrEqual(0)
  })

  it('an even 2+2 split: the side with the first seed wins the tie, the other does nothing', () => {
    const sim = formed(4, 17, { detectorTimeoutMs: 1_000, downAfterUnreachableMs: 3_000 })
    sim.partition([[0, 3], [1, 2]])
    sim.run(15_000)
    expect(sim.nodes[0]!.core.isMinority).toBe(false)
    expect(sim.nodes[1]!.core.isMinority).toBe(true)
    for (const i of [1, 2]) for (const j of [0, 3]) expect(statusOf(sim.nodes[i]!, sim.nodes[j]!.authority)).toBe('up')
    for (const j of [1, 2]) expect(['down', 'removed']).toContain(statusOf(sim.nodes[0]!, sim.nodes[j]!.authority))
  })
})

describe('gossip at scale', () => {
  it('disseminates one change in a number of rounds that grows slowly with N', () => {
    const rounds: number[] = []
    for (const n of [10, 100]) {
      const sim = formed(n, 1, { heartbeatIntervalMs: 0, measureBytes: false })
      sim.nodes[n - 1]!.core.leave()
      const t = sim.runUntil(() => sim.sameView(), 30_000)
      expect(t).toBeGreaterThanOrEqual(0)
      rounds.push(t / sim.gossipIntervalMs)
    }
    // 10× the nodes costs far less than 10× the rounds (log-like growth).
    expect(rounds[1]!).toBeLessThan(rounds[0]! * 4)
  })
})

describe('replicated data on gossip (the PubSub topic registry rides on it)', () => {
  it('reaches every member, keeps working on both sides of a partition, and merges to one value after the heal', () => {
    const sim = formed(5, 21)
    expect(sim.nodes[4]!.core.writeData('pubsub/t/orders', { delivery: 'at-least-once' })).toBe(true)
    expect(sim.nodes[4]!.core.writeData('pubsub/t/orders', { delivery: 'at-least-once' }), 'same value again').toBe(false)
    expect(sim.runUntil(() => sim.nodes.every((n) => n.core.table.data('pubsub/t/orders') !== undefined), 10_000)).toBeGreaterThanOrEqual(0)
    // Every other node reports the key as changed exactly once.
    for (const n of sim.nodes.slice(0, 4)) expect(n.dataTouched).toEqual(['pubsub/t/orders'])

    sim.partition([[0, 1, 2], [3, 4]])
    sim.nodes[0]!.core.writeData('pubsub/s/orders/a', { side: 'majority' })
    sim.nodes[3]!.core.writeData('pubsub/s/orders/b', { side: 'minority' })
    sim.nodes[1]!.core.writeData('pubsub/t/orders', null)
    sim.nodes[4]!.core.writeData('pubsub/t/orders', { delivery: 'at-most-once' })
    const side = (ids: number[], key: string, value: unknown) => ids.every((i) => JSON.stringify(sim.nodes[i]!.core.table.data(key)) === JSON.stringify(value))
    expect(sim.runUntil(() => side([0, 1, 2], 'pubsub/s/orders/a', { side: 'majority' }) && side([3, 4], 'pubsub/s/orders/b', { side: 'minority' }), 10_000)).toBeGreaterThanOrEqual(0)
    expect(side([3, 4], 'pubsub/s/orders/a', undefined), 'nothing crosses the partition').toBe(true)

    sim.heal()
    // Both topic writes had clock 2; origins order them: 'n4' > 'n1' in authority order, so the re-creation wins.
    const winner = sim.nodes[4]!.authority > sim.nodes[1]!.authority ? { delivery: 'at-most-once' } : undefined
    expect(sim.runUntil(() => [0, 1, 2, 3, 4].every((i) => side([i], 'pubsub/s/orders/a', { side: 'majority' }) && side([i], 'pubsub/s/orders/b', { side: 'minority' }) && side([i], 'pubsub/t/orders', winner)), 20_000)).toBeGreaterThanOrEqual(0)
    expect(new Set(sim.nodes.map((n) => n.core.table.digest())).size).toBe(1)
  })
})
