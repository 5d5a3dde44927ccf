/**
 * Remote delivery between two real processes on 127.0.0.1: node B runs in a
 * child process (test/fixtures/cluster/grain-node-process.ts), node A in the
 * test process: ordering of 100,000 messages across the process boundary,
 * calls in both directions, and a connection cut while messages flow
 * (deferred, then drained in order).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GrainNode, type RuntimeEvent } from '../../src/index.js'
import { freePorts } from '../helpers/free-port.js'
import { waitUntil } from '../helpers/wait-until.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/cluster/grain-node-process.ts', import.meta.url))
const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]

interface Child {
  proc: ChildProcess
  ready: { authority: string; nodeId: string } | undefined
  events: RuntimeEvent[]
  replies: Map<number, { value?: unknown; error?: { code: string; reason: string } }>
}

describe('remote delivery between two processes', () => {
  let a: GrainNode
  let b: Child
  let nextId = 1
  const eventsA: RuntimeEvent[] = []

  const command = async (cmd: Record<string, unknown>): Promise<unknown> => {
    const id = nextId++
    b.proc.stdin!.write(`${JSON.stringify({ id, ...cmd })}\n`)
    const r = await waitUntil(() => b.replies.get(id), { what: `reply to ${String(cmd.cmd)}`, timeoutMs: 60_000 })
    if (r.error !== undefined) throw new Error(`${r.error.code}: ${r.error.reason}`)
    return r.value
  }

  beforeAll(async () => {
    const [pa, pb] = await freePorts(2)
    const seeds = [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`]
    a = await GrainNode.start({
      grains: GRAINS,
      workers: 1,
      partitions: 16,
      audit: () => {},
      associations: { deferredQueueLimit: 200_000 },
      cluster: { clusterName: 'remote-procs', secret: 'remote-procs-secret', seeds, port: pa!, failureDetector: { profile: 'test', downAfterUnreachableMs: 120_000 } },
    })
    a.events.subscribe('*', (e) => eventsA.push(e))
    const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify({ clusterName: 'remote-procs', secret: 'remote-procs-secret', seeds, port: pb })], { stdio: ['pipe', 'pipe', 'inherit'] })
    b = { proc, ready: undefined, events: [], replies: new Map() }
    createInterface({ input: proc.stdout }).on('line', (line) => {
      try {
        const m = JSON.parse(line) as { ready?: Child['ready']; event?: RuntimeEvent; reply?: { id: number; value?: unknown; error?: { code: string; reason: string } } }
        if (m.ready !== undefined) b.ready = m.ready
        if (m.event !== undefined) b.events.push(m.event)
        if (m.reply !== undefined) b.replies.set(m.reply.id, m.reply)
      } catch {
        // not a protocol line
      }
    })
    await a.cluster!.whenUp(60_000)
    await waitUntil(() => b.ready, { what: 'child node Up', timeoutMs: 60_000 })
  })
  afterAll(async () => {
    b?.proc.stdin?.end()
    // A killed child has exitCode null but a signalCode: it has exited already.
    if (b !== undefined && b.proc.exitCode === null && b.proc.signalCode === null) {
      const exited = new Promise((r) => b.proc.once('exit', r))
      b.proc.kill('SIGKILL')
      await exited
    }
    await a?.close()
  })

  it('delivers 100,000 messages over 8 PIDs in order, both directions answer', async () => {
    const pids = Array.from({ length: 8 }, (_, i) => `grain://${b.ready!.authority}/counter/proc-order-${i}#${b.ready!.nodeId}`)
    const n = 12_500
    for (let i = 0; i < n; i++) {
      for (const p of pids) a.tellPid(p, 'record', i)
      if (i % 1_000 === 999) await new Promise((r) => setImmediate(r))
    }
    for (const p of pids) {
      const seen = await a.askPid<number[]>(p, 'seen', undefined, { timeoutMs: 60_000 })
      expect(seen).toHaveLength(n)
      expect(seen.every((v, i) => v === i)).toBe(true)
    }
    // And from the child back to a grain on this node.
    const onA = a.pid('counter', 'from-child')
    expect(await command({ cmd: 'ask', pid: onA, method: 'add', payload: 5 })).toBe(5)
  })
  it('a connection cut by the sender defers its messages, then drains them in order', async () => {
    const pid = a.pid('counter', 'proc-deferred')
    const drainedBefore = b.events.filter((e) => e.type === 'association.drained').length
    // The child cuts its side and sends at once: the messages wait in its deferred queue.
    await command({ cmd: 'cut', authority: a.cluster!.authority, pid, method: 'record', from: 0, count: 500 })
    await waitUntil(() => b.events.filter((e) => e.type === 'association.drained').length > drainedBefore, { what: 'drained on the child', timeoutMs: 60_000 })
    let seen: number[] = []
    await waitUntil(
      async () => {
        seen = await a.askPid<number[]>(pid, 'seen')
        return seen.length === 500
      },
      { what: 'all 500 on A', timeoutMs: 60_000 },
    )
    expect(seen).toEqual(Array.from({ length: 500 }, (_, i) => i))
    expect(b.events.filter((e) => e.type === 'deadletter')).toHaveLength(0)
  })

  it('a call in flight to a node that dies fails as soon as the node is unreachable, not at its timeout', async () => {
    const pid = `grain://${b.ready!.authority}/counter/in-flight-hang#${b.ready!.nodeId}`
    const started = Date.now()
    const call = a.askPid(pid, 'hang', undefined, { timeoutMs: 120_000 }).then(
      () => undefined,
      (e: unknown) => e as { code?: string; reason?: string },
    )
    // The call has reached B (its worker activated the grain and holds the call) before B dies.
    await waitUntil(() => b.events.some((e) => e.type === 'grain.activated' && e.key === 'in-flight-hang'), { what: 'the call reached B', timeoutMs: 60_000 })
    const exited = new Promise((r) => b.proc.once('exit', r))
    b.proc.kill('SIGKILL')
    await exited
    const err = await call
    expect(err).toMatchObject({ code: 'ERR_AUTHORITY_UNREACHABLE' })
    expect(err?.reason).toContain('in flight')
    // Detection with the test profile takes ~2–3 s; the call's own timeout was 120 s.
    expect(Date.now() - started).toBeLessThan(60_000)
  })
})

