/**
 * Sender-side flow control for remote tells (GrainNode.isWritable /
 * whenWritable with a PID on another node), over real loopback sockets: two
 * GrainNodes in one process, node B's worker blocked so that B stops
 * reading A's connection (inbound flow control) and A's socket backs up.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { GrainClusterError, type GrainNode, type RuntimeEvent } from '../../src/index.js'
import { startPair } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
/** A's mark: past this many bytes waiting in its transport, B's PIDs are not writable. */
const MARK = 256 * 1024
/** ~23 MB of tells: more than the kernel's loopback buffers (a few MB each way) hold. */
const TELLS = 200_000
const BLOCK_MS = 2_000

/** A pair started for one test (closed after it, through `nodes`), and, given a key, B's counter `key` activated from A. */
async function pair(nodes: GrainNode[], key?: string): Promise<{ a: GrainNode; b: GrainNode; events: RuntimeEvent[]; pid: string }> {
  const [a, b] = await startPair('writable-it', {
    grains: GRAINS,
    ringBytes: 1 << 14,
    maxOverflowFrames: 2_048,
    // B never reads past its pause limit during these tests: A alone holds what B cannot take.
    associations: { maxInboundPauseMs: 30_000, writableBufferedBytes: MARK },
  })
  const events: RuntimeEvent[] = []
  for (const n of [a, b]) n.events.subscribe('*', (e) => void events.push(e))
  nodes.push(a, b)
  await waitUntil(() => a.resolve(b.pid('counter', 'probe')).status === 'ready', { what: 'b ready from a' })
  const pid = b.pid('counter', key ?? 'probe')
  // Activated, association warm.
  if (key !== undefined) expect(await a.askPid(pid, 'add', 0)).toBe(0)
  return { a, b, events, pid }
}

/**
 * Block B's grain `pid` and tell it add(1) until A holds more than its mark
 * for B (B's ring, its overflow bound, both kernel buffers, then A's
 * transport); resolves with the number of tells sent.
 */
async function fillPastMark(a: GrainNode, pid: string): Promise<number> {
  // Longer than the fill can take on a loaded machine: the mark must be crossed while B is still stuck.
  a.tellPid(pid, 'block', 2.5 * BLOCK_MS)
  let sent = 0
  await waitUntil(
    async () => {
      for (let i = 0; i < 8_192; i++, sent++) a.tellPid(pid, 'add', 1)
      await new Promise((r) => setImmediate(r))
      return !a.isWritable(pid)
    },
    { timeoutMs: 20_000, intervalMs: 1, what: "A's buffer past its mark" },
  )
  return sent
}

/** Nodes a test started; every test's are closed after it. */
const nodes: GrainNode[] = []
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()))
})

describe('remote isWritable / whenWritable', () => {
  it('holds a stream of tells back while the receiver cannot take them, and loses nothing', async () => {
    const { a, events, pid } = await pair(nodes, 'writable-stream')
    expect(a.isWritable(pid)).toBe(true)
    await a.whenWritable(pid)

    a.tellPid(pid, 'block', BLOCK_MS)
    const t0 = performance.now()
    let notWritable = 0
    let waitedMs = 0
    for (let i = 0; i < TELLS; i++) {
      if (!a.isWritable(pid)) {
        notWritable++
        const w0 = performance.now()
        await a.whenWritable(pid, { timeoutMs: 60_000 })
        waitedMs += performance.now() - w0
        // Resolved means writable now, not merely "something changed".
        expect(a.isWritable(pid)).toBe(true)
      }
      a.tellPid(pid, 'add', 1)
      // Let the transport flush now and then, as a real producer's loop would.
      if ((i & 4095) === 4095) await new Promise((r) => setImmediate(r))
    }
    // The sender was held back, and for most of the time B's worker was blocked.
    expect(notWritable).toBeGreaterThan(0)
    expect(waitedMs).toBeGreaterThan(BLOCK_MS / 4)
    expect(performance.now() - t0).toBeGreaterThan(BLOCK_MS / 2)
    // Per-PID order: this ask arrives after every tell.
    expect(await a.askPid(pid, 'get', undefined, { timeoutMs: 60_000 })).toBe(TELLS)
    expect(events.filter((e) => e.type === 'deadletter')).toEqual([])
    const text = await a.metricsText()
    const waits = Number(/^graincluster_remote_flow_waits_total (\d+)/m.exec(text)?.[1])
    expect(waits).toBeGreaterThan(0)
    expect(waits).toBeLessThanOrEqual(notWritable)
    expect(Number(/^graincluster_remote_flow_wait_seconds_total ([\d.e-]+)/m.exec(text)?.[1])).toBeGreaterThan(BLOCK_MS / 4 / 1000)
  }, 60_000)

  it('gives up after timeoutMs with ERR_AUTHORITY_NOT_WRITABLE naming the authority, and is writable again once the receiver catches up', async () => {
    const { a, b, events, pid } = await pair(nodes, 'writable-timeout')
    const sent = await fillPastMark(a, pid)
    const buffered = Number(/^graincluster_transport_outbound_buffered_bytes (\d+)/m.exec(await a.metricsText())?.[1])
    expect(buffered).toBeGreaterThan(MARK)
    const e = await a.whenWritable(pid, { timeoutMs: 100 }).then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(GrainClusterError.is(e, 'ERR_AUTHORITY_NOT_WRITABLE')).toBe(true)
    expect((e as GrainClusterError).details).toMatchObject({ authority: b.cluster!.authority, pid, key: 'writable-timeout' })
    expect((e as GrainClusterError).reason).toMatch(/bytes wait in the transport/)
    await a.whenWritable(pid, { timeoutMs: 60_000 })
    expect(await a.askPid(pid, 'get', undefined, { timeoutMs: 60_000 })).toBe(sent)
    expect(events.filter((ev) => ev.type === 'deadletter')).toEqual([])
  }, 60_000)

  it('waits out a cut connection: writable again once it is back and the deferred messages have gone out', async () => {
    const { a, b, events, pid } = await pair(nodes, 'writable-cut')
    a.cluster!.transport.disconnect(b.cluster!.authority, 'test cut')
    expect(a.isWritable(pid)).toBe(false)
    for (let i = 0; i < 60; i++) a.tellPid(pid, 'add', 1)
    expect(a.isWritable(pid)).toBe(false)
    await a.whenWritable(pid, { timeoutMs: 30_000 })
    expect(a.isWritable(pid)).toBe(true)
    // Writable means nothing is left deferred: the drain was reported before.
    const drained = events.filter((e) => e.type === 'association.drained')
    expect(drained.reduce((n, e) => n + (e.type === 'association.drained' ? e.drained : 0), 0)).toBe(60)
    expect(await a.askPid(pid, 'get')).toBe(60)
  })

  it('refuses what a send refuses: a PID of no member (removed), a malformed PID, a bad timeout', async () => {
    const { a, b } = await pair(nodes)
    const stranger = b.pid('counter', 'k').replace(b.cluster!.authority, '127.0.0.1:9')
    expect(() => a.isWritable(stranger)).toThrow(expect.objectContaining({ code: 'ERR_AUTHORITY_REMOVED', details: expect.objectContaining({ authority: '127.0.0.1:9', key: 'k' }) }))
    await expect(a.whenWritable(stranger)).rejects.toMatchObject({ code: 'ERR_AUTHORITY_REMOVED' })
    await expect(a.whenWritable('grain://nowhere')).rejects.toMatchObject({ code: 'ERR_PID_INVALID' })
    await expect(a.whenWritable(b.pid('counter', 'k'), { timeoutMs: 0 })).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' })
    // A PID of this node: the local rings.
    expect(a.isWritable(a.pid('counter', 'k'))).toBe(true)
    await a.whenWritable(a.pid('counter', 'k'))
  })
})

describe("grains' ctx.whenWritable", () => {
  it('holds a grain streaming tells to another node back while the receiver cannot take them, and loses nothing', async () => {
    const { a, events, pid } = await pair(nodes, 'grain-stream-target')
    // The producer runs on A: a PID of A is served there.
    const producer = a.pid('counter', 'grain-stream-producer')
    a.tellPid(pid, 'block', BLOCK_MS)
    // What piles up in A's transport while B is stuck (this process hosts A's main thread).
    let peakBuffered = 0
    const probe = setInterval(() => {
      peakBuffered = Math.max(peakBuffered, a.cluster!.transport.stats.outboundBufferedBytes)
    }, 2)
    let waitedMs: number
    try {
      waitedMs = await a.askPid<number>(producer, 'streamTo', { pid, n: TELLS, every: 1_024 }, { timeoutMs: 60_000 })
    } finally {
      clearInterval(probe)
    }
    // Held back: at most the mark plus about one burst (1,024 tells, ~140 KB)
    // waited in A's transport; unchecked, the ~23 MB would have piled up there.
    expect(peakBuffered).toBeGreaterThan(0)
    expect(peakBuffered).toBeLessThan(MARK + 1024 * 1024)
    expect(waitedMs).toBeGreaterThan(BLOCK_MS / 4)
    expect(await a.askPid(pid, 'get', undefined, { timeoutMs: 60_000 })).toBe(TELLS)
    expect(events.filter((e) => e.type === 'deadletter')).toEqual([])
    expect(Number(/^graincluster_remote_flow_waits_total (\d+)/m.exec(await a.metricsText())?.[1])).toBeGreaterThan(0)
  }, 60_000)

  it('answers with the typed error a send would get, ERR_AUTHORITY_NOT_WRITABLE after timeoutMs, and resolves for its own rings', async () => {
    const { a, b, pid } = await pair(nodes, 'grain-timeout-target')
    const producer = a.pid('counter', 'grain-timeout-producer')
    const outcome = (p: { pid?: string; timeoutMs?: number }): Promise<unknown> => a.askPid(producer, 'writableOutcome', p, { timeoutMs: 30_000 })
    expect(await outcome({})).toBe('writable')
    expect(await outcome({ pid })).toBe('writable')
    expect(await outcome({ pid: a.pid('counter', 'k') })).toBe('writable')
    expect(await outcome({ pid: 'grain://nowhere' })).toMatchObject({ code: 'ERR_PID_INVALID' })
    const stranger = b.pid('counter', 'k').replace(b.cluster!.authority, '127.0.0.1:9')
    expect(await outcome({ pid: stranger })).toMatchObject({ code: 'ERR_AUTHORITY_REMOVED', details: { authority: '127.0.0.1:9' } })
    expect(await outcome({ pid, timeoutMs: 0 })).toMatchObject({ code: 'ERR_CONFIG_INVALID' })

    // Past A's mark while B is stuck: the grain gets the node's verdict.
    const sent = await fillPastMark(a, pid)
    expect(await outcome({ pid, timeoutMs: 100 })).toMatchObject({ code: 'ERR_AUTHORITY_NOT_WRITABLE', details: { authority: b.cluster!.authority, pid, key: 'grain-timeout-target' } })
    expect(await outcome({ pid, timeoutMs: 60_000 })).toBe('writable')
    expect(await a.askPid(pid, 'get', undefined, { timeoutMs: 60_000 })).toBe(sent)
  }, 60_000)
})
