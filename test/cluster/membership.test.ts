/**
 * Membership with real node processes on loopback (STYLE.md §7, cluster
 * project): joining through the seed, graceful leave, kill -9, SIGSTOP,
 * a blocked event loop, a second incarnation of an authority and a wrong
 * cluster secret. Every node is its own process
 * (test/fixtures/cluster/node-process.ts), driven by
 * test/helpers/cluster-harness.ts; the failure detector runs the 'test'
 * profile (heartbeat 500 ms, kill → Unreachable in ~2.0–2.6 s, Down 5 s later).
 *
 * Times come from the `t` stamp each process puts on its event lines (epoch
 * ms, high resolution) and from the harness clock when it sends a signal;
 * both read the same machine clock. Upper bounds leave room for a loaded
 * 2-core CI machine; lower bounds do not (an early accusation is a bug).
 */

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type MemberView,
  type NodeProcess,
  type TimedEvent,
  describeProcesses,
  forgetSpawned,
  nowMs,
  spawnNode,
  startNode,
  startNodes,
  stopAll,
  survivingPids,
  waitForSameTable,
  waitForSteadyHeartbeats,
} from '../helpers/cluster-harness.js'
import { waitUntil } from '../helpers/wait-until.js'

const TEST_PROFILE = { profile: 'test' } as const
/** Stable-after long enough that a member flagged during a pause is never downed, even on a slow machine. */
const NO_DOWNING = { profile: 'test', downAfterUnreachableMs: 15_000 } as const

const ref = (p: NodeProcess): { authority: string; nodeId: string } => ({ authority: p.addr, nodeId: p.id })
const sameRef = (p: NodeProcess) => (e: { authority: string; nodeId: string }): boolean => e.authority === p.addr && e.nodeId === p.id
const membersOf = (r: { members: MemberView[] }): Array<{ authority: string; nodeId: string }> => r.members.map((m) => ({ authority: m.authority, nodeId: m.nodeId }))
const byAuthority = <T extends { authority: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.authority < b.authority ? -1 : a.authority > b.authority ? 1 : 0))
const allEvents = (nodes: readonly NodeProcess[]): Array<TimedEvent & { on: string }> => nodes.flatMap((n) => n.events.map((e) => ({ ...e, on: n.label })))
/** The lifecycle events about `p` (its incarnation) on `n`, in order, without joined/up. */
const lifecycle = (n: NodeProcess, p: NodeProcess, types: readonly string[]): string[] =>
  n.events.filter((e) => types.includes(e.type) && 'nodeId' in e && e.nodeId === p.id && 'authority' in e && e.authority === p.addr).map((e) => e.type)

function note(line: string): void {
  console.info(`[membership] ${line}`)
}

beforeEach(({ onTestFailed }) => {
  forgetSpawned()
  const t0 = nowMs()
  onTestFailed(() => {
    console.error(`processes of the failed test (times relative to its start):\n${describeProcesses(t0)}`)
  })
})

afterEach(async () => {
  // SIGKILL whatever still runs (stopped processes included), then make sure nothing survived.
  await stopAll()
  expect(survivingPids()).toEqual([])
})

describe('node process fixture', () => {
  it('exits on SIGTERM and when its stdin closes', async () => {
    const { nodes } = await startNodes(2, { failureDetector: TEST_PROFILE })
    const [seed, other] = nodes as [NodeProcess, NodeProcess]
    other.kill('SIGTERM')
    await other.waitExit()
    expect({ code: other.exitCode, reason: other.exitReason }).toEqual({ code: 0, reason: 'SIGTERM' })
    // What happens to every node when the test runner dies: its stdin pipe closes.
    seed.child.stdin.end()
    await seed.waitExit()
    expect({ code: seed.exitCode, reason: seed.exitReason }).toEqual({ code: 0, reason: 'stdin closed' })
  })
})

describe('cluster membership with real node processes on 127.0.0.1', () => {
  it('3 nodes join through the seed and agree on one table; a 4th gets the whole table in its welcome', async () => {
    const { nodes, seeds } = await startNodes(3, { failureDetector: TEST_PROFILE })
    const [seed, a, b] = nodes as [NodeProcess, NodeProcess, NodeProcess]
    const views = await waitForSameTable(nodes)
    for (const v of views) {
      expect(byAuthority(membersOf(v))).toEqual(byAuthority(nodes.map(ref)))
      expect(v.leader).toBe(seed.addr)
      expect(v.members.map((m) => m.upNumber).sort()).toEqual([1, 2, 3])
    }
    expect(views[0]!.members.find((m) => m.authority === seed.addr)?.upNumber).toBe(1)
    // Joined through the seed: each newcomer's first welcome came from it.
    for (const n of [a, b]) expect(n.welcomes[0]?.from).toBe(seed.addr)

    const newcomer = await startNode({ seeds, failureDetector: TEST_PROFILE, label: 'n3' })
    const after = await waitForSameTable([...nodes, newcomer])
    expect(after[0]!.members).toHaveLength(4)

    // The welcome carried the table: every member that was Up before, and the newcomer as Joining.
    const welcome = newcomer.welcomes[0]!
    expect(welcome.from).toBe(seed.addr)
    for (const p of nodes) expect(welcome.members).toContainEqual(expect.objectContaining({ ...ref(p), status: 'up' }))
    expect(welcome.members).toContainEqual(expect.objectContaining({ ...ref(newcomer), status: 'joining' }))
    // ... and the newcomer's first member events (published while it merged the welcome,
    // before the welcome line itself) already name every one of them as Up.
    const firstBatch = newcomer.events.filter((e) => e.type.startsWith('member.') && e.t <= welcome.t)
    for (const p of nodes) expect(firstBatch).toContainEqual(expect.objectContaining({ type: 'member.up', ...ref(p) }))
    expect(firstBatch).toContainEqual(expect.objectContaining({ type: 'member.joined', ...ref(newcomer) }))
    expect(firstBatch.filter((e) => e.type === 'member.up' && sameRef(newcomer)(e as TimedEvent<'member.up'>))).toEqual([])
  })

  it('5 nodes join concurrently through the seed; every node ends with the same table', async () => {
    const { nodes } = await startNodes(5, { failureDetector: TEST_PROFILE })
    const [seed] = nodes as [NodeProcess]
    const views = await waitForSameTable(nodes)
    for (const v of views) {
      expect(byAuthority(membersOf(v))).toEqual(byAuthority(nodes.map(ref)))
      expect(v.members.map((m) => m.upNumber).sort()).toEqual([1, 2, 3, 4, 5])
      expect(v.leader).toBe(seed.addr)
      expect(v.minority).toBe(false)
    }
    for (const n of nodes.slice(1)) {
      const w = n.welcomes[0]!
      expect(w.from).toBe(seed.addr)
      expect(w.members).toContainEqual(expect.objectContaining({ ...ref(seed), status: 'up' }))
      expect(w.members).toContainEqual(expect.objectContaining({ ...ref(n), status: 'joining' }))
      // Everything the welcome listed as Up was known as Up right at the merge.
      const upAtWelcome = n.events.filter((e) => e.type === 'member.up' && e.t <= w.t)
      for (const m of w.members.filter((x) => x.status === 'up')) {
        expect(upAtWelcome).toContainEqual(expect.objectContaining({ type: 'member.up', authority: m.authority, nodeId: m.nodeId }))
      }
    }
    // Every node saw every incarnation come Up exactly once, and nobody was suspected.
    for (const n of nodes) {
      for (const p of nodes) expect(n.eventsOf('member.up', sameRef(p)), `${n.label} about ${p.label}`).toHaveLength(1)
    }
    expect(allEvents(nodes).filter((e) => e.type === 'member.unreachable' || e.type === 'member.downed')).toEqual([])
  })

  it('graceful leave: Leaving → Exiting → Removed on every remaining node, never Down', async () => {
    const { nodes } = await startNodes(3, { failureDetector: TEST_PROFILE })
    const leaver = nodes[2]!
    const rest = nodes.slice(0, 2)
    const t0 = nowMs()
    const reply = await leaver.leave()
    // leave() waits for Exiting, then one gossip interval for it to spread; with the gossip
    // speed-up the leader may remove the leaver within that interval.
    expect(['exiting', 'removed']).toContain(reply['status'])
    await leaver.waitExit()
    expect(leaver.exitCode).toBe(0)
    expect(leaver.exitReason).toBe('left the cluster')
    await waitUntil(() => rest.every((n) => n.eventsOf('member.removed', sameRef(leaver)).length > 0), { timeoutMs: 30_000, what: 'leaver removed on every node' })
    const removedAfterMs = Math.max(...rest.map((n) => n.eventsOf('member.removed', sameRef(leaver))[0]!.t)) - t0
    note(`graceful leave: Removed on every remaining node ${removedAfterMs.toFixed(0)} ms after the leave command`)

    for (const n of rest) {
      expect(lifecycle(n, leaver, ['member.leaving', 'member.exiting', 'member.downed', 'member.removed']), n.label).toEqual(['member.leaving', 'member.exiting', 'member.removed'])
      expect(n.eventsOf('member.removed', sameRef(leaver))[0]!.reason).toBe('left the cluster')
    }
    // The leaver saw its own Leaving and Exiting before it stopped.
    expect(lifecycle(leaver, leaver, ['member.leaving', 'member.exiting'])).toEqual(['member.leaving', 'member.exiting'])
    expect(allEvents(nodes).filter((e) => e.type === 'member.downed')).toEqual([])
    const views = await waitForSameTable(rest)
    expect(byAuthority(membersOf(views[0]!))).toEqual(byAuthority(rest.map(ref)))
  })

  it('kill -9: Unreachable, then Down, then Removed on every other node; detection within the test profile window', async () => {
    const { nodes } = await startNodes(3, { failureDetector: TEST_PROFILE })
    await waitForSteadyHeartbeats(nodes)
    const [seed] = nodes as [NodeProcess]
    const victim = nodes[2]!
    const rest = nodes.slice(0, 2)
    const killedAt = victim.kill('SIGKILL')
    await victim.waitExit()
    await waitUntil(() => rest.every((n) => n.eventsOf('member.removed', sameRef(victim)).length > 0), { timeoutMs: 40_000, what: 'victim removed on every node' })

    const detection = rest.map((n) => n.eventsOf('member.unreachable', sameRef(victim))[0]!.t - killedAt)
    note(`kill -9 → member.unreachable (test profile, 3 nodes): ${detection.map((d) => d.toFixed(0)).join(', ')} ms`)
    for (const d of detection) {
      expect(d).toBeGreaterThan(1_500)
      expect(d).toBeLessThanOrEqual(5_000)
    }
    for (const n of rest) {
      expect(lifecycle(n, victim, ['member.unreachable', 'member.reachable', 'member.downed', 'member.removed']), n.label).toEqual(['member.unreachable', 'member.downed', 'member.removed'])
      expect(n.eventsOf('member.removed', sameRef(victim))[0]!.reason).toBe('downed')
    }
    // The leader (the seed) downed it, after the stable-after window (5 s) of its own view.
    const downed = seed.eventsOf('member.downed', sameRef(victim))[0]!
    expect(downed.decidedBy).toBe(seed.addr)
    expect(downed.reason).toMatch(/^unreachable for \d+ ms/)
    expect(downed.t - seed.eventsOf('member.unreachable', sameRef(victim))[0]!.t).toBeGreaterThanOrEqual(5_000 - 5)
    note(`kill -9 → member.downed on the leader: ${(downed.t - killedAt).toFixed(0)} ms`)
    const views = await waitForSameTable(rest)
    expect(byAuthority(membersOf(views[0]!))).toEqual(byAuthority(rest.map(ref)))
  })

  it('SIGSTOP beyond the detection time: Unreachable, then Reachable again after SIGCONT; never downed', async () => {
    const { nodes } = await startNodes(3, { failureDetector: NO_DOWNING })
    await waitForSteadyHeartbeats(nodes)
    const frozen = nodes[2]!
    const rest = nodes.slice(0, 2)
    const stoppedAt = frozen.kill('SIGSTOP')
    await waitUntil(() => rest.every((n) => n.eventsOf('member.unreachable', sameRef(frozen)).length > 0), { timeoutMs: 20_000, what: 'frozen member unreachable on the others' })
    const detection = rest.map((n) => n.eventsOf('member.unreachable', sameRef(frozen))[0]!.t - stoppedAt)
    for (const d of detection) expect(d).toBeGreaterThan(1_500)
    // Keep it stopped for 3.5 s in all (the stimulus, not a wait for a result).
    await waitUntil(() => nowMs() - stoppedAt >= 3_500, { timeoutMs: 10_000, intervalMs: 5 })
    const contAt = frozen.kill('SIGCONT')
    await waitUntil(() => rest.every((n) => n.eventsOf('member.reachable', (e) => sameRef(frozen)(e) && e.t > contAt).length > 0), {
      timeoutMs: 20_000,
      what: 'frozen member reachable again on the others',
    })
    const recovery = rest.map((n) => n.eventsOf('member.reachable', (e) => sameRef(frozen)(e) && e.t > contAt)[0]!.t - contAt)
    note(`SIGSTOP 3.5 s: unreachable after ${detection.map((d) => d.toFixed(0)).join(', ')} ms; reachable ${recovery.map((d) => d.toFixed(0)).join(', ')} ms after SIGCONT`)
    await waitForSameTable(nodes)

    // The frozen process noticed its own pause and accused nobody for it.
    const paused = await frozen.waitEvent('node.paused')
    expect(paused.lagMs).toBeGreaterThan(2_500)
    // Its serving lease lapsed during the stop, and it noticed although heartbeats sent during
    // the stop were waiting in its sockets and were read before its timers ran.
    const lost = await frozen.waitEvent('placement.lease-lost', (e) => e.t >= contAt)
    expect(lost.reason).toMatch(/has not heard from a majority/)
    expect(frozen.eventsOf('member.unreachable', (e) => e.observer === frozen.addr)).toEqual([])
    expect(allEvents(nodes).filter((e) => e.type === 'member.unreachable' && e.authority !== frozen.addr)).toEqual([])
    expect(allEvents(nodes).filter((e) => e.type === 'member.downed' || e.type === 'member.removed')).toEqual([])
    for (const n of rest) expect(lifecycle(n, frozen, ['member.unreachable', 'member.reachable']), n.label).toEqual(['member.unreachable', 'member.reachable'])
  })

  it('SIGSTOP of 1 s: no member is ever flagged unreachable', async () => {
    const { nodes } = await startNodes(3, { failureDetector: TEST_PROFILE })
    await waitForSteadyHeartbeats(nodes)
    const frozen = nodes[1]!
    const rest = [nodes[0]!, nodes[2]!]
    const stoppedAt = frozen.kill('SIGSTOP')
    await waitUntil(() => nowMs() - stoppedAt >= 1_000, { timeoutMs: 10_000, intervalMs: 5 })
    const contAt = frozen.kill('SIGCONT')
    // Done when the silence is over everywhere: the frozen node ran again (it reports its
    // pause) and every other node has a heartbeat from it received after SIGCONT.
    await frozen.waitEvent('node.paused', (e) => e.t > contAt)
    await waitUntil(
      async () => {
        const views = await Promise.all(rest.map((n) => n.members()))
        return views.every((v) => v.detectors.some((d) => d.id === `${frozen.addr}#${frozen.id}` && d.lastHeartbeatAt !== null && d.lastHeartbeatAt > contAt))
      },
      { timeoutMs: 20_000, what: 'heartbeats from the resumed node' },
    )
    note(`SIGSTOP 1 s: stopped for ${(contAt - stoppedAt).toFixed(0)} ms`)
    expect(allEvents(nodes).filter((e) => e.type === 'member.unreachable')).toEqual([])
    await waitForSameTable(nodes)
  })

  it('a node whose event loop was blocked for 3 s accuses no one afterwards', async () => {
    const { nodes } = await startNodes(3, { failureDetector: NO_DOWNING })
    await waitForSteadyHeartbeats(nodes)
    const blocked = nodes[1]!
    const others = [nodes[0]!, nodes[2]!]
    const block = await blocked.block(3_000)
    expect(block.to - block.from).toBeGreaterThanOrEqual(2_999)
    const paused = await blocked.waitEvent('node.paused', (e) => e.t >= block.to)
    expect(paused.lagMs).toBeGreaterThan(2_500)
    // Past the post-pause grace window, with fresh heartbeats from every peer: any accusation would have happened by now.
    await waitUntil(
      async () => {
        const v = await blocked.members()
        const grace = v.suppressedUntil
        return grace !== null && v.t > grace + 300 && v.detectors.length === others.length && v.detectors.every((d) => d.lastHeartbeatAt !== null && d.lastHeartbeatAt > grace)
      },
      { timeoutMs: 20_000, what: 'blocked node past its grace window with fresh heartbeats' },
    )
    const flaggedBlocked = others.filter((n) => n.eventsOf('member.unreachable', sameRef(blocked)).length > 0).map((n) => n.label)
    note(`blocked 3 s: lag ${paused.lagMs.toFixed(0)} ms; others that flagged it meanwhile: [${flaggedBlocked.join(', ')}]`)

    // What the blocked node itself did: no accusation, neither in events nor in the merged records.
    expect(blocked.eventsOf('member.unreachable', (e) => e.observer === blocked.addr)).toEqual([])
    expect(allEvents(nodes).filter((e) => e.type === 'member.unreachable' && e.observer === blocked.addr)).toEqual([])
    expect(allEvents(nodes).filter((e) => e.type === 'member.unreachable' && e.authority !== blocked.addr)).toEqual([])
    for (const v of await Promise.all(nodes.map((n) => n.members()))) {
      for (const obs of Object.values(v.observers)) expect(obs).not.toContain(blocked.addr)
    }
    expect(allEvents(nodes).filter((e) => e.type === 'member.downed' || e.type === 'member.removed')).toEqual([])
    await waitForSameTable(nodes)
  })

  it('same authority, new NodeId: refused while the old incarnation is a member, which is downed on proof of the restart; admitted once it is removed', async () => {
    const { nodes, seeds } = await startNodes(3, { failureDetector: TEST_PROFILE })
    const [seed, other] = nodes as [NodeProcess, NodeProcess]
    const old = nodes[2]!
    const port = Number(old.addr.slice(old.addr.lastIndexOf(':') + 1))
    const killedAt = old.kill('SIGKILL')
    await old.waitExit()
    const fresh = spawnNode({ seeds, port, failureDetector: TEST_PROFILE, label: 'n2-new' })
    await fresh.ready
    expect(fresh.addr).toBe(old.addr)
    expect(fresh.id).not.toBe(old.id)

    // Refused while the old incarnation is still a member (its status is in the reason), with the reason on both sides.
    const conflict = await seed.waitEvent('member.conflict', (e) => e.authority === old.addr && e.newNodeId === fresh.id)
    expect(conflict.existingNodeId).toBe(old.id)
    expect(conflict.reason).toContain(`held by incarnation ${old.id} (up)`)
    const refused = await fresh.waitEvent('handshake.refused', (e) => e.code === 'ERR_AUTHORITY_CONFLICT')
    expect(refused.reason).toContain(`held by incarnation ${old.id}`)
    const freshView = await fresh.members()
    expect(freshView.up).toBe(false)
    expect(freshView.self).toBeNull()

    const removed = await seed.waitEvent('member.removed', sameRef(old), 40_000)
    expect(conflict.t).toBeLessThan(seed.eventsOf('member.downed', sameRef(old))[0]!.t)
    const views = await waitForSameTable([seed, other, fresh], { timeoutMs: 60_000 })
    expect(byAuthority(membersOf(views[0]!))).toEqual(byAuthority([seed, other, fresh].map(ref)))
    const freshUp = fresh.eventsOf('member.up', sameRef(fresh))[0]!
    const seedJoined = seed.eventsOf('member.joined', sameRef(fresh))[0]!
    note(
      `restart on the same port: old incarnation removed ${(removed.t - killedAt).toFixed(0)} ms after kill -9, ` +
        `new one Up ${(freshUp.t - killedAt).toFixed(0)} ms after (conflict refusals on the seed: ${seed.eventsOf('member.conflict').length})`,
    )
    expect(seedJoined.t).toBeGreaterThan(removed.t)
    expect(freshUp.t).toBeGreaterThan(removed.t)
    // Downed when a dial to its address met the new incarnation (usually before the
    // detector even flagged it: then there is no member.unreachable at all).
    expect(lifecycle(seed, old, ['member.downed', 'member.removed'])).toEqual(['member.downed', 'member.removed'])
    const downed = [seed, other].flatMap((n) => n.eventsOf('member.downed', sameRef(old)))
    if ((removed.t - killedAt) < 7_000) expect(downed.some((e) => e.reason.includes(`a new incarnation ${fresh.id} listens at ${old.addr}`))).toBe(true)
    expect(allEvents(nodes).filter((e) => e.type === 'gossip.view-rejected')).toEqual([])
  })

  it('wrong cluster secret: refused in the handshake, and the node never joins', async () => {
    const { nodes, seeds } = await startNodes(2, { failureDetector: TEST_PROFILE })
    const [seed] = nodes as [NodeProcess]
    const intruder = await startNode({ seeds, secret: 'not-the-cluster-secret', failureDetector: TEST_PROFILE, label: 'intruder' })
    const fromIntruder = (e: TimedEvent<'handshake.refused'>): boolean => e.claimedAuthority === intruder.addr && /bad proof/.test(e.reason)
    await seed.waitEvent('handshake.refused', fromIntruder)
    expect(await intruder.waitEvent('handshake.refused', (e) => /bad proof/.test(e.reason))).toMatchObject({ code: 'ERR_AUTHORITY_HANDSHAKE_FAILED' })
    // It keeps trying (redial after a refusal waits 5–10 s) and keeps being refused.
    await waitUntil(() => seed.eventsOf('handshake.refused', fromIntruder).length >= 2, { timeoutMs: 30_000, what: 'second refusal' })

    const [seedView, intruderView] = await Promise.all([seed.members(), intruder.members()])
    expect(byAuthority(membersOf(seedView))).toEqual(byAuthority(nodes.map(ref)))
    expect(intruderView.up).toBe(false)
    expect(intruderView.self).toBeNull()
    expect(intruderView.members).toEqual([])
    expect(allEvents(nodes).filter((e) => (e.type === 'transport.connected' || e.type.startsWith('member.')) && 'authority' in e && e.authority === intruder.addr)).toEqual([])
    expect(intruder.eventsOf('transport.connected')).toEqual([])
  })
})
