/**
 * A node that dies and comes back at the same address is a new incarnation
 * (new NodeId): what the survivors had queued for the old one must never run
 * on the new one. Node A runs in the test process, node B in a child process
 * (test/fixtures/cluster/grain-node-process.ts) that is killed and started
 * again on the same port.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { messageTypeId } from '../../src/common/hash.js'
import type { GrainClusterError} from '../../src/index.js';
import { GrainNode, type RuntimeEvent } from '../../src/index.js'
import { freePorts } from '../helpers/free-port.js'
import { waitUntil } from '../helpers/wait-until.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/cluster/grain-node-process.ts', import.meta.url))
const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
const NAME = 'incarnations'
const SECRET = 'incarnations-secret'

interface Child {
  proc: ChildProcess
  ready: { authority: string; nodeId: string } | undefined
}

function spawnChild(seeds: string[], port: number): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify({ clusterName: NAME, secret: SECRET, seeds, port })], { stdio: ['pipe', 'pipe', 'inherit'] })
  const c: Child = { proc, ready: undefined }
  createInterface({ input: proc.stdout }).on('line', (line) => {
    try {
      const m = JSON.parse(line) as { ready?: Child['ready'] }
      if (m.ready !== undefined) c.ready = m.ready
    } catch {
      // not a protocol line
    }
  })
  return c
}

async function stopChild(c: Child | undefined): Promise<void> {
  if (c === undefined || c.proc.exitCode !== null || c.proc.signalCode !== null) return
  const exited = new Promise((r) => c.proc.once('exit', r))
  c.proc.kill('SIGKILL')
  await exited
}

/**
 * Node A in this process and node B in a child process, both Up. Unless
 * `associations` says otherwise, A's failed dials to a dead B never
 * quarantine it (a quarantine would reject the queue itself, tested
 * elsewhere); `downAfterUnreachableMs` is A's stable-after. Events of A go
 * to `eventsA`.
 */
async function startSurvivorAndChild(
  downAfterUnreachableMs: number,
  eventsA: RuntimeEvent[],
  associations: { maxConsecutiveFailures: number; quarantineDeadlineMs?: number } = { maxConsecutiveFailures: 1_000 },
): Promise<{ a: GrainNode; b: Child; seeds: string[]; portB: number }> {
  const [pa, pb] = await freePorts(2)
  const seeds = [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`]
  const a = await GrainNode.start({
    grains: GRAINS,
    workers: 1,
    partitions: 16,
    audit: () => {},
    associations,
    cluster: { clusterName: NAME, secret: SECRET, seeds, port: pa!, failureDetector: { profile: 'test', downAfterUnreachableMs } },
  })
  a.events.subscribe('*', (e) => eventsA.push(e))
  const b = spawnChild(seeds, pb!)
  await a.cluster!.whenUp(60_000)
  await waitUntil(() => b.ready, { what: 'child node Up', timeoutMs: 60_000 })
  return { a, b, seeds, portB: pb! }
}

interface Scene {
  a: GrainNode
  b: Child
  eventsA: RuntimeEvent[]
  /** Start B again on its port (a new incarnation); stopped with the suite. */
  restart(): Child
}

/** The suite's survivor A and child B (startSurvivorAndChild in beforeAll), stopped in afterAll; fields are set once beforeAll ran. */
function survivorScene(downAfterUnreachableMs: number, associations?: Parameters<typeof startSurvivorAndChild>[2]): Scene {
  const children: Child[] = []
  const scene = { eventsA: [] as RuntimeEvent[] } as Scene
  beforeAll(async () => {
    const { a, b, seeds, portB } = await startSurvivorAndChild(downAfterUnreachableMs, scene.eventsA, associations)
    children.push(b)
    Object.assign(scene, { a, b, restart: () => children[children.push(spawnChild(seeds, portB)) - 1]! })
  })
  afterAll(async () => {
    await Promise.all(children.map(stopChild))
    await scene.a?.close()
  })
  return scene
}

/** B's grain `key` answers A once, then B is SIGKILLed; resolves once A sees the association down. The old incarnation and that PID. */
async function killAfterOneCall(a: GrainNode, b: Child, key: string): Promise<{ old: NonNullable<Child['ready']>; pid: string }> {
  const old = b.ready!
  const pid = `grain://${old.authority}/counter/${key}#${old.nodeId}`
  expect(await a.askPid(pid, 'add', 1, { timeoutMs: 30_000 })).toBe(1)
  await stopChild(b)
  await waitUntil(() => !a.isWritable(pid), { what: 'the association down on A', timeoutMs: 30_000 })
  return { old, pid }
}

describe('a new incarnation at the same authority', () => {
  const scene = survivorScene(1_000)

  it("rejects what was queued for a downed incarnation and never delivers it to the restarted one", async () => {
    const { a, eventsA } = scene
    const { old, pid } = await killAfterOneCall(a, scene.b, 'stale')
    // Sends find the association down (B is still a member): they wait in the deferred queue.
    for (let i = 0; i < 20; i++) a.tellPid(pid, 'record', i)
    const ask = a.askPid(pid, 'add', 100, { timeoutMs: 120_000 }).then(
      () => undefined,
      (e: unknown) => e as GrainClusterError,
    )

    await waitUntil(() => eventsA.some((e) => e.type === 'member.downed' && e.nodeId === old.nodeId), { what: 'B downed on A', timeoutMs: 60_000 })
    const removed = (): RuntimeEvent[] => eventsA.filter((e) => e.type === 'deadletter' && e.code === 'ERR_AUTHORITY_REMOVED' && e.key === 'stale')
    // The 20 tells and the ask's frame (its caller was failed when B turned unreachable).
    await waitUntil(() => removed().length === 21, { what: 'the queued messages dead-lettered as removed', timeoutMs: 30_000 })
    expect(removed().filter((e) => e.type === 'deadletter' && e.messageType === messageTypeId('record'))).toHaveLength(20)
    expect(['ERR_AUTHORITY_UNREACHABLE', 'ERR_AUTHORITY_REMOVED']).toContain((await ask)?.code)
    expect(await a.cluster!.metrics!.text()).toMatch(/graincluster_association_deferred_messages 0\b/)

    // B comes back on the same port: a new NodeId, which A admits once the old one is removed.
    const b2 = scene.restart()
    await waitUntil(() => b2.ready, { what: 'restarted B Up', timeoutMs: 90_000 })
    expect(b2.ready!.nodeId).not.toBe(old.nodeId)
    const fresh = `grain://${old.authority}/counter/stale#${b2.ready!.nodeId}`
    await waitUntil(() => a.resolve(fresh).status === 'ready', { what: 'the new incarnation ready on A', timeoutMs: 60_000 })
    // Nothing of the old queue reached it: the grain starts from nothing.
    expect(await a.askPid(fresh, 'seen', undefined, { timeoutMs: 30_000 })).toEqual([])
    expect(await a.askPid(fresh, 'get', undefined, { timeoutMs: 30_000 })).toBe(0)
    expect(removed()).toHaveLength(21)
  })
})

describe('a restart at the same authority before the old incarnation is detected', () => {
  // Downing an unreachable member takes 2 minutes here: only the proof of
  // the restart can let the new incarnation in within the test's bounds.
  const scene = survivorScene(120_000)

  it('downs the old incarnation as soon as the new one answers at its address, admits the new one, and quarantines nothing', async () => {
    const { a, eventsA } = scene
    const { old, pid } = await killAfterOneCall(a, scene.b, 'fast')
    // Queued for the old incarnation, and kept coming (so a connect for them is
    // pending when the new one appears), until the failure detector flags it
    // (ERR_AUTHORITY_UNREACHABLE, on a slow start of the new process) or it is
    // downed (ERR_AUTHORITY_REMOVED): then sends to it are refused, not queued.
    let queued = 0
    const refused: string[] = []
    const sender = setInterval(() => {
      try {
        a.tellPid(pid, 'record', queued)
        queued++
      } catch (e) {
        refused.push((e as GrainClusterError).code)
      }
    }, 20)
    const b2 = scene.restart()
    try {
      await waitUntil(() => b2.ready, { what: 'restarted B Up (without the proof: after 2 minutes)', timeoutMs: 60_000 })
    } finally {
      clearInterval(sender)
    }
    expect(queued).toBeGreaterThan(0)
    for (const code of new Set(refused)) expect(['ERR_AUTHORITY_UNREACHABLE', 'ERR_AUTHORITY_REMOVED']).toContain(code)
    expect(b2.ready!.nodeId).not.toBe(old.nodeId)

    const downed = eventsA.filter((e) => e.type === 'member.downed' && e.nodeId === old.nodeId)
    expect(downed).toHaveLength(1)
    expect(downed[0]).toMatchObject({ decidedBy: a.cluster!.authority })
    expect(downed[0]!.type === 'member.downed' && downed[0].reason).toContain(`a new incarnation ${b2.ready!.nodeId} listens at ${old.authority}`)
    expect(eventsA.filter((e) => e.type === 'member.conflict' && e.newNodeId === b2.ready!.nodeId).length).toBeGreaterThan(0)
    // The conflict refused the new incarnation by NodeId only: the authority itself was never quarantined.
    expect(eventsA.filter((e) => e.type === 'association.quarantined')).toEqual([])

    const removed = (): RuntimeEvent[] => eventsA.filter((e) => e.type === 'deadletter' && e.code === 'ERR_AUTHORITY_REMOVED' && e.key === 'fast')
    await waitUntil(() => removed().length === queued, { what: "the old incarnation's queue dead-lettered as removed", timeoutMs: 30_000 })
    const fresh = `grain://${old.authority}/counter/fast#${b2.ready!.nodeId}`
    await waitUntil(() => a.resolve(fresh).status === 'ready', { what: 'the new incarnation ready on A', timeoutMs: 60_000 })
    expect(await a.askPid(fresh, 'seen', undefined, { timeoutMs: 30_000 })).toEqual([])
    expect(await a.askPid(fresh, 'add', 2, { timeoutMs: 30_000 })).toBe(2)
    expect(removed()).toHaveLength(queued)
  })
})

describe('a restart after failed dials to the dead incarnation quarantined its address', () => {
  // One failed dial quarantines, for 5 minutes: only the end of the
  // incarnation the failures were about can let the restart in within the
  // test's bounds. B is downed 5 s after it is flagged, after that dial failed.
  const scene = survivorScene(5_000, { maxConsecutiveFailures: 1, quarantineDeadlineMs: 300_000 })

  it('releases the quarantine when that incarnation is downed and admits the restarted node', async () => {
    const { a, eventsA } = scene
    const { old, pid } = await killAfterOneCall(a, scene.b, 'shut')
    // Deferred: A dials the dead address until the dial fails and quarantines it.
    a.tellPid(pid, 'record', 1)
    const quarantined = (): RuntimeEvent[] => eventsA.filter((e) => e.type === 'association.quarantined' && e.authority === old.authority)
    await waitUntil(() => quarantined().length > 0, { what: 'the failed dial quarantining B on A', timeoutMs: 30_000 })
    expect(quarantined()[0]).toMatchObject({ nodeId: old.nodeId, reason: expect.stringContaining('1 consecutive failures') })

    const b2 = scene.restart()
    await waitUntil(() => b2.ready, { what: 'restarted B Up (without the release: after 5 minutes)', timeoutMs: 60_000 })
    expect(b2.ready!.nodeId).not.toBe(old.nodeId)
    const released = eventsA.filter((e) => e.type === 'association.released' && e.authority === old.authority)
    expect(released).toEqual([expect.objectContaining({ nodeId: old.nodeId, reason: 'incarnation-ended' })])
    // Released by the downing (it is published from the downing's own handler), not by a deadline.
    const downed = eventsA.find((e) => e.type === 'member.downed' && e.nodeId === old.nodeId)
    expect(downed).toBeDefined()
    expect(released[0]!.at).toBeGreaterThanOrEqual(downed!.at)
    expect(released[0]!.at - downed!.at).toBeLessThan(1_000)
    expect(await a.cluster!.metrics!.text()).toMatch(/graincluster_association_releases_total\{reason="incarnation-ended"\} 1\b/)

    const fresh = `grain://${old.authority}/counter/shut#${b2.ready!.nodeId}`
    await waitUntil(() => a.resolve(fresh).status === 'ready', { what: 'the new incarnation ready on A', timeoutMs: 60_000 })
    expect(await a.askPid(fresh, 'add', 3, { timeoutMs: 30_000 })).toBe(3)
  })
})
