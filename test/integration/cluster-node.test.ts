/**
 * ClusterNode in one process over real loopback sockets: formation through
 * the seeds, metrics, refusal of a wrong secret, graceful leave. The
 * multi-process failure cases (kill -9, SIGSTOP) live in test/cluster/.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ClusterNode, FRAME_CLUSTER } from '../../src/node/cluster-node.js'
import { EventStream } from '../../src/observability/event-stream.js'
import { TcpTransport } from '../../src/remote/transport/tcp-transport.js'
import { binaryCodec, encodeToBytes } from '../../src/wire/payload-codec.js'
import { seededRng } from '../helpers/seeded-rng.js'
import type { RuntimeEvent } from '../../src/observability/events.js'
import { freePorts } from '../helpers/free-port.js'
import { waitUntil } from '../helpers/wait-until.js'

const open: ClusterNode[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((n) => n.close()))
})

async function startCluster(n: number, extra: Partial<Parameters<typeof ClusterNode.start>[0]> = {}): Promise<{ nodes: ClusterNode[]; events: RuntimeEvent[][]; seeds: string[] }> {
  const ports = await freePorts(n)
  const seeds = ports.slice(0, Math.min(2, n)).map((p) => `127.0.0.1:${p}`)
  const events: RuntimeEvent[][] = []
  const nodes = await Promise.all(
    ports.map(async (port, i) => {
      const node = await ClusterNode.start({ clusterName: 'it', secret: 'integration-secret', seeds, port, failureDetector: { profile: 'test' }, ...extra })
      open.push(node)
      events[i] = []
      node.events.subscribe('*', (e) => events[i]!.push(e))
      return node
    }),
  )
  await Promise.all(nodes.map((x) => x.whenUp(30_000)))
  return { nodes, events, seeds }
}

describe('ClusterNode over loopback TCP', () => {
  it('forms a cluster through the seeds; every node holds the same table and reports it in metrics', async () => {
    const { nodes, events } = await startCluster(3)
    await waitUntil(() => nodes.every((n) => n.members().length === 3 && n.members().every((m) => m.status === 'up')), { what: 'all Up everywhere' })
    const tables = nodes.map((n) => JSON.stringify(n.members().map((m) => [m.authority, m.nodeId, m.status])))
    expect(new Set(tables).size).toBe(1)
    await waitUntil(() => events.every((ev) => ev.some((e) => e.type === 'gossip.converged' && e.members === 3)), { what: 'converged with 3 members' })
    const text = await nodes[0]!.metrics!.text()
    expect(text).toMatch(/graincluster_members\{status="up"\} 3/)
    expect(text).toMatch(/graincluster_gossip_convergence_seconds_count [1-9]/)
    expect(text).toMatch(/graincluster_member_transitions_total\{to="up"\} [1-9]/)
  })

  it('refuses a node with the wrong secret, with a reason event, and keeps the cluster intact', async () => {
    const { nodes, events, seeds } = await startCluster(2)
    const intruder = await ClusterNode.start({ clusterName: 'it', secret: 'not-the-secret', seeds, port: 0, failureDetector: { profile: 'test' }, seedJoinTimeoutMs: 500 })
    open.push(intruder)
    const isBadProof = (e: RuntimeEvent): boolean => e.type === 'handshake.refused' && e.code === 'ERR_AUTHORITY_HANDSHAKE_FAILED'
    await waitUntil(() => events[0]!.some(isBadProof), { what: 'refusal on the seed' })
    expect((events[0]!.find(isBadProof) as { reason: string }).reason).toMatch(/proof|secret|HMAC/i)
    expect(intruder.core.self).toBeUndefined()
    expect(nodes[0]!.members()).toHaveLength(2)
    expect(await nodes[0]!.metrics!.text()).toMatch(/graincluster_handshake_refused_total\{code="ERR_AUTHORITY_HANDSHAKE_FAILED"\} [1-9]/)
  })

  it('any fresh serving verdict is a lease transition: a verdict past the lease reports lease-lost, the next good one lease-regained', async () => {
    // A long lease: a stall of this loaded test process must not be what the test sees.
    const { nodes, events } = await startCluster(3, { servingLeaseMs: 60_000 })
    await waitUntil(() => nodes.every((n) => n.members().every((m) => m.status === 'up')), { what: 'all Up everywhere' })
    const n = nodes[1]!
    const ev = events[1]!
    const now = performance.now()
    // Whatever the periodic check last saw, a verdict now holds the lease.
    expect(n.mayServe(now)).toBe(true)
    await waitUntil(() => ev.some((e) => e.type === 'placement.lease-regained'), { what: 'lease-regained' })
    const lostBefore = ev.filter((e) => e.type === 'placement.lease-lost').length
    // The verdict a call would take after a stall longer than the lease, before anything new was heard:
    expect(n.mayServe(now + 120_000)).toBe(false)
    await Promise.resolve() // published in a microtask
    const lost = ev.filter((e) => e.type === 'placement.lease-lost')
    expect(lost.length).toBe(lostBefore + 1)
    expect((lost.at(-1) as { reason: string }).reason).toMatch(/has not heard from a majority within its serving lease of 60000 ms/)
    // Back to the real clock: heard recently, so the lease holds again.
    const regained = ev.filter((e) => e.type === 'placement.lease-regained').length
    expect(n.mayServe(performance.now())).toBe(true)
    await Promise.resolve()
    expect(ev.filter((e) => e.type === 'placement.lease-regained').length).toBe(regained + 1)
  })

  it('graceful leave: Leaving → Exiting → Removed everywhere, no Down', async () => {
    const { nodes, events } = await startCluster(3)
    const leaver = nodes[2]!
    await leaver.leave()
    await waitUntil(() => nodes.slice(0, 2).every((n) => n.core.table.member(leaver.authority)?.status === 'removed'), { what: 'removed on the others' })
    const types = events[0]!.filter((e) => 'authority' in e && e.authority === leaver.authority).map((e) => e.type)
    expect(types).toEqual(expect.arrayContaining(['member.leaving', 'member.exiting', 'member.removed']))
    expect(types).not.toContain('member.downed')
  })

  it('an authenticated peer sending garbage cluster frames changes nothing: each is rejected with an event', async () => {
    const { nodes, events } = await startCluster(2)
    const before = JSON.stringify(nodes[0]!.members())
    const rogue = await TcpTransport.listen({ clusterName: 'it', secret: 'integration-secret', nodeId: 'rogue', events: new EventStream() })
    try {
      await rogue.connect(nodes[0]!.authority, { timeoutMs: 10_000 })
      const rng = seededRng(99)
      const frames: Uint8Array[] = []
      for (let i = 0; i < 300; i++) {
        const junk = new Uint8Array(1 + Math.floor(rng() * 64))
        for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(rng() * 256)
        junk[0] = FRAME_CLUSTER
        frames.push(junk)
      }
      // Well-encoded values that are not valid messages.
      for (const bogus of [{ t: 'delta', vv: {}, changes: [{ kind: 'member', origin: 'x:1', seq: 1, member: { authority: 'evil:1', nodeId: 'e', status: 'zombie', upNumber: 0 } }] }, { t: 'pull', vv: 'everything' }, [1, 2, 3]]) {
        const body = encodeToBytes(binaryCodec, bogus)
        const f = new Uint8Array(body.length + 1)
        f[0] = FRAME_CLUSTER
        f.set(body, 1)
        frames.push(f)
      }
      for (const f of frames) expect(rogue.send(nodes[0]!.authority, f)).toBe(true)
      await waitUntil(() => events[0]!.filter((e) => e.type === 'transport.frame-rejected' && e.code === 'ERR_FRAME_MALFORMED').length >= 3, { what: 'rejections' })
      await waitUntil(() => events[0]!.filter((e) => e.type === 'transport.frame-rejected').length >= 250, { what: 'most junk rejected' })
      expect(JSON.stringify(nodes[0]!.members())).toBe(before)
      expect(nodes[0]!.core.table.member('evil:1')).toBeUndefined()
      // Still healthy: a leave still goes through the normal protocol.
      await nodes[1]!.leave()
      await waitUntil(() => nodes[0]!.core.table.member(nodes[1]!.authority)?.status === 'removed', { what: 'leave after junk' })
    } finally {
      await rogue.close()
    }
  })

  it('refuses invalid options naming every problem', async () => {
    await expect(ClusterNode.start({ clusterName: '', secret: 'short', seeds: [], failureDetector: { threshold: -1 } })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      details: { issues: expect.arrayContaining([expect.stringContaining('seeds'), expect.stringContaining('clusterName'), expect.stringContaining('secret'), expect.stringContaining('threshold')]) },
    })
  })
})
