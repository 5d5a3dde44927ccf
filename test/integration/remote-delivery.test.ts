/**
 * Remote delivery between two GrainNodes in one process over real loopback
 * sockets: PID addressing, ordered delivery, deferred queues while
 * disconnected, overflow to DeadLetter, quarantine and release.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { messageTypeId } from '../../src/common/hash.js'
import { GrainClusterError, GrainNode, type RuntimeEvent } from '../../src/index.js'
import { freePorts } from '../helpers/free-port.js'
import { IN_PROCESS_DETECTOR, IN_PROCESS_LEASE_MS, keyPlacedOn } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]

async function expectCode(p: Promise<unknown>, code: string): Promise<GrainClusterError> {
  try {
    await p
  } catch (e) {
    expect(GrainClusterError.is(e), String(e)).toBe(true)
    expect((e as GrainClusterError).code).toBe(code)
    return e as GrainClusterError
  }
  throw new Error(`expected ${code}, but it resolved`)
}

describe('remote delivery between two nodes', () => {
  let a: GrainNode
  let b: GrainNode
  const eventsA: RuntimeEvent[] = []
  const auditA: string[] = []

  beforeAll(async () => {
    const ports = await freePorts(2)
    const seeds = ports.map((p) => `127.0.0.1:${p}`)
    const start = (port: number, audit: (l: string) => void): Promise<GrainNode> =>
      GrainNode.start({
        grains: GRAINS,
        workers: 1,
        partitions: 16,
        associations: { deferredQueueLimit: 100, quarantineDeadlineMs: 1_500 },
        audit,
        // Long stable-after: quarantine cuts heartbeats, and these tests must not down anyone.
        cluster: { clusterName: 'remote-it', secret: 'remote-secret', seeds, port, failureDetector: { ...IN_PROCESS_DETECTOR, downAfterUnreachableMs: 120_000 }, servingLeaseMs: IN_PROCESS_LEASE_MS },
      })
    ;[a, b] = await Promise.all([start(ports[0]!, (l) => auditA.push(l)), start(ports[1]!, () => {})])
    a.events.subscribe('*', (e) => eventsA.push(e))
    await Promise.all([a.cluster!.whenUp(), b.cluster!.whenUp()])
    await waitUntil(() => a.resolve(b.pid('counter', 'probe')).status === 'ready', { what: 'b ready from a' })
  })
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()])
  })

  it('asks and tells grains on the other node in both directions, with the PID of the activation', async () => {
    const onB = b.pid('counter', 'both-ways')
    expect(onB).toMatch(/^grain:\/\/127\.0\.0\.1:\d+\/counter\/both-ways#[0-9a-f]+$/)
    expect(await a.askPid(onB, 'add', 2)).toBe(2)
    a.tellPid(onB, 'add', 3)
    expect(await a.askPid(onB, 'get')).toBe(5)
    expect(await b.askPid(a.pid('counter', 'other-way'), 'add', 7)).toBe(7)
    // Remote failures keep their code and name the grain.
    const e = await expectCode(a.askPid(onB, 'fail', 'far away'), 'ERR_GRAIN_HANDLER_FAILED')
    expect(e.reason).toContain('far away')
    expect(e.details).toMatchObject({ kind: 'counter', key: 'both-ways' })
  })

  it('lets grains call grains on other nodes by PID, both ways, and on their own node', async () => {
    // Keys each node also owns by placement: a membership event mid-test
    // (a loaded CI box) triggers a rebalance, which would release a PID's
    // activation on a node that does not own its key, and its state with it.
    const onB = b.pid('counter', keyPlacedOn(b, 'counter', 'g2g-remote-'))
    const onA = a.pid('counter', keyPlacedOn(a, 'counter', 'g2g-back-'))
    // A grain on node a asks a grain on node b...
    expect(await a.ask('counter', 'caller-1', 'askByPid', { pid: onB, method: 'add', payload: 4 })).toBe(4)
    // ...and a grain on node b asks one on node a.
    expect(await b.ask('counter', 'caller-2', 'askByPid', { pid: onA, method: 'add', payload: 6 })).toBe(6)
    // A PID on the grain's own node.
    expect(await a.ask('counter', 'caller-3', 'askByPid', { pid: onA, method: 'get' })).toBe(6)
    // Tells by PID, in order.
    for (let i = 0; i < 20; i++) await a.ask('counter', 'caller-4', 'tellByPid', { pid: b.pid('counter', 'g2g-order'), method: 'record', payload: i })
    await waitUntil(async () => (await a.askPid<number[]>(b.pid('counter', 'g2g-order'), 'seen')).length === 20, { what: 'tells by PID' })
    expect(await a.askPid(b.pid('counter', 'g2g-order'), 'seen')).toEqual(Array.from({ length: 20 }, (_, i) => i))
    // A burst of tells by PID (they share the node's tell batches), asks in between: nothing overtakes.
    const stream = b.pid('counter', 'g2g-stream')
    expect(await a.askPid(a.pid('counter', 'caller-8'), 'recordStream', { pid: stream, n: 3_000, every: 250 })).toEqual([])
    expect(await a.askPid(stream, 'seen')).toEqual(Array.from({ length: 3_000 }, (_, i) => i))
    // The same to a PID on the grain's own node (its tells by PID leave the worker in PID runs all the same).
    const local = a.pid('counter', keyPlacedOn(a, 'counter', 'g2g-local-stream-'))
    expect(await a.askPid(a.pid('counter', 'caller-9'), 'recordStream', { pid: local, n: 600, every: 150 })).toEqual([])
    expect(await a.askPid(local, 'seen')).toEqual(Array.from({ length: 600 }, (_, i) => i))
    // By kind and key (the main thread places each tell of the worker's run), to a key on b and to one on a.
    for (const key of [keyPlacedOn(b, 'counter', 'g2g-key-far-', a), keyPlacedOn(a, 'counter', 'g2g-key-near-')]) {
      expect(await a.askPid(a.pid('counter', 'caller-10'), 'recordStreamByKey', { key, n: 1_500, every: 250 })).toEqual([])
      expect(await a.ask('counter', key, 'seen')).toEqual(Array.from({ length: 1_500 }, (_, i) => i))
    }
    // Errors cross both hops with their codes.
    const e = await expectCode(a.ask('counter', 'caller-5', 'askByPid', { pid: onB, method: 'fail', payload: 'two hops' }), 'ERR_GRAIN_HANDLER_FAILED')
    expect(e.reason).toContain('two hops')
    await expectCode(a.ask('counter', 'caller-6', 'askByPid', { pid: 'grain://bad', method: 'get' }), 'ERR_PID_INVALID')
    await expectCode(a.ask('counter', 'caller-7', 'askByPid', { pid: 'grain://127.0.0.1:1/counter/x', method: 'get' }), 'ERR_AUTHORITY_REMOVED')
  })

  it('a call chain that comes back to its grains across nodes re-enters them instead of waiting for itself', async () => {
    const onA = keyPlacedOn(a, 'chain', 'x-node-a-')
    const onB = keyPlacedOn(b, 'chain', 'x-node-b-', a)
    // ping on A asks pong on B by PID; pong asks ping on A by key (placement), and so on.
    expect(await a.ask('chain', onA, 'ping', { peer: onB, depth: 2, pid: b.pid('chain', onB) }, { timeoutMs: 5_000 })).toBe(1)
    expect(await a.ask('chain', onA, 'log')).toEqual(['ping:2', 'ping:1', 'ping:0', 'bump:1', 'done:0', 'done:1', 'done:2'])
    expect(await b.ask('chain', onB, 'log')).toEqual(['pong:2', 'pong:1', 'pong:0'])
  })

  it('keeps per-PID order for many senders and PIDs while connected', async () => {
    // 100,000 messages over one association, interleaved across 8 PIDs.
    const pids = Array.from({ length: 8 }, (_, i) => b.pid('counter', `order-${i}`))
    const n = 12_500
    for (let i = 0; i < n; i++) {
      for (const p of pids) a.tellPid(p, 'record', i)
      if (i % 1_000 === 999) await new Promise((r) => setImmediate(r))
    }
    for (const p of pids) {
      const seen = await a.askPid<number[]>(p, 'seen', undefined, { timeoutMs: 30_000 })
      expect(seen).toHaveLength(n)
      expect(seen.every((v, i) => v === i)).toBe(true)
    }
  })

  it('defers messages while disconnected and drains them in order on reconnect, reporting the count', async () => {
    const p = b.pid('counter', 'deferred')
    const drainedBefore = eventsA.filter((e) => e.type === 'association.drained').length
    a.cluster!.transport.disconnect(b.cluster!.authority, 'test cut')
    for (let i = 0; i < 60; i++) a.tellPid(p, 'record', i)
    await waitUntil(() => eventsA.filter((e) => e.type === 'association.drained').length > drainedBefore, { what: 'drained event', timeoutMs: 30_000 })
    const drained = eventsA.filter((e) => e.type === 'association.drained').slice(drainedBefore)
    expect(drained.reduce((s, e) => s + (e.type === 'association.drained' ? e.drained : 0), 0)).toBe(60)
    expect(await a.askPid(p, 'seen')).toEqual(Array.from({ length: 60 }, (_, i) => i))
    expect(auditA.some((l) => /association .* connected/.test(l))).toBe(true)
  })

  it("defers a grain's tells by PID while disconnected too, and drains them in order with its ask behind them", async () => {
    const p = b.pid('counter', 'deferred-by-grain')
    const drainedBefore = eventsA.filter((e) => e.type === 'association.drained').length
    a.cluster!.transport.disconnect(b.cluster!.authority, 'test cut')
    // Once A knows, the grain's tells find the association down (not just a socket that hands them back).
    await waitUntil(() => !a.isWritable(p), { what: 'the association down' })
    // 60 tells (the first defines the PID's index, the rest ride PID runs), then an ask that must see them all.
    const bad = a.askPid<string[]>(a.pid('counter', 'deferring-caller'), 'recordStream', { pid: p, n: 60, every: 60 }, { timeoutMs: 30_000 })
    await waitUntil(() => eventsA.filter((e) => e.type === 'association.drained').length > drainedBefore, { what: 'drained event', timeoutMs: 30_000 })
    expect(await bad).toEqual([])
    expect(await a.askPid(p, 'seen')).toEqual(Array.from({ length: 60 }, (_, i) => i))
  })

  it('sends again, in order, the tells and the ask its transport accepted but could not write before the connection was cut', async () => {
    const p = b.pid('counter', 'unwritten')
    const ta = a.cluster!.transport
    const returnedBefore = ta.stats.framesReturned
    let ask: Promise<number[]> | undefined
    // B sends a marker frame and, in the same write, one that makes A cut the connection.
    // Between the two, A queues tells (a batch) and an ask: accepted, never written.
    const off = ta.on('frame', (_peer, f) => {
      if (f.length !== 2 || f[0] !== 0x01 || f[1] !== 0xfe || ask !== undefined) return
      for (let i = 0; i < 60; i++) a.tellPid(p, 'record', i)
      ask = a.askPid<number[]>(p, 'seen', undefined, { timeoutMs: 30_000 })
    })
    try {
      const tb = b.cluster!.transport
      expect(tb.send(a.cluster!.authority, Uint8Array.of(0x01, 0xfe))).toBe(true)
      expect(tb.send(a.cluster!.authority, Uint8Array.of(0x66))).toBe(true)
      await waitUntil(() => ask !== undefined, { what: 'the marker frame on A' })
      expect(await ask).toEqual(Array.from({ length: 60 }, (_, i) => i))
      // The batch and the ask went back to the association (not dropped), and nothing was dead-lettered.
      expect(ta.stats.framesReturned - returnedBefore).toBe(2)
      expect(eventsA.some((e) => e.type === 'transport.frame-rejected' && e.code === 'ERR_AUTHORITY_UNREACHABLE')).toBe(false)
    } finally {
      off()
    }
  })

  it('withdraws a deferred ask whose caller gave up instead of running it when the queue drains', async () => {
    const p = b.pid('counter', 'withdrawn')
    const withdrawnBefore = eventsA.filter((e) => e.type === 'association.asks-withdrawn').length
    // B refuses A's connections while it holds A quarantined: A's messages wait in its deferred queue.
    b.quarantine(a.cluster!.authority, 'withdraw test')
    await waitUntil(() => !a.isWritable(p), { what: 'the association down on A' })
    for (let i = 0; i < 10; i++) a.tellPid(p, 'record', i)
    // The caller gives up (its timeout, or the failure detector flags B) while the ask is still queued.
    const failed = await a.askPid(p, 'add', 1, { timeoutMs: 300 }).then(
      () => undefined,
      (e: unknown) => e as GrainClusterError,
    )
    expect(['ERR_GRAIN_TIMEOUT', 'ERR_AUTHORITY_UNREACHABLE']).toContain(failed?.code)
    b.releaseQuarantine(a.cluster!.authority)
    await waitUntil(() => eventsA.filter((e) => e.type === 'association.asks-withdrawn').length > withdrawnBefore, { what: 'the ask withdrawn on drain', timeoutMs: 30_000 })
    const w = eventsA.filter((e) => e.type === 'association.asks-withdrawn').slice(withdrawnBefore)
    expect(w.reduce((n, e) => n + (e.type === 'association.asks-withdrawn' ? e.asks : 0), 0)).toBe(1)
    // The tells around it were delivered in order; the withdrawn 'add' never ran.
    await waitUntil(async () => (await a.askPid<number[]>(p, 'seen', undefined, { timeoutMs: 2_000 }).catch(() => [])).length === 10, { what: 'the tells on B', timeoutMs: 30_000 })
    expect(await a.askPid(p, 'seen')).toEqual(Array.from({ length: 10 }, (_, i) => i))
    expect(await a.askPid(p, 'get')).toBe(0)
    expect(await a.cluster!.metrics!.text()).toMatch(/graincluster_association_withdrawn_asks_total [1-9]/)
  })

  it('drops exactly the oldest overflow to DeadLetter when the deferred queue is full', async () => {
    const p = b.pid('counter', 'overflow')
    const deadBefore = eventsA.filter((e) => e.type === 'deadletter').length
    const drainedBefore = eventsA.filter((e) => e.type === 'association.drained').length
    a.cluster!.transport.disconnect(b.cluster!.authority, 'test cut')
    for (let i = 0; i < 150; i++) a.tellPid(p, 'record', i)
    // The cut reaches the association a moment later: tells sent before that wait in the open
    // tell batch and are deferred (oldest first dropped) when it is flushed and refused.
    await waitUntil(() => eventsA.filter((e) => e.type === 'deadletter').length - deadBefore >= 50, { what: '50 dead letters' })
    const dead = eventsA.filter((e) => e.type === 'deadletter').slice(deadBefore)
    expect(dead).toHaveLength(50)
    expect(dead.every((d) => d.type === 'deadletter' && d.code === 'ERR_AUTHORITY_QUEUE_OVERFLOW' && d.messageType === messageTypeId('record'))).toBe(true)
    // No asks until the queue has drained: an ask queued behind a full queue would evict more.
    await waitUntil(() => eventsA.filter((e) => e.type === 'association.drained').length > drainedBefore, { what: 'drained after reconnect', timeoutMs: 30_000 })
    expect(await a.askPid(p, 'seen')).toEqual(Array.from({ length: 100 }, (_, i) => i + 50))
    const text = await a.cluster!.metrics!.text()
    expect(text).toMatch(/graincluster_deadletters_total\{code="ERR_AUTHORITY_QUEUE_OVERFLOW"\} ([5-9]\d|\d{3,})/)
  })

  it('quarantine refuses sends; it ends at the deadline and the association works again', async () => {
    const p = b.pid('counter', 'quarantine')
    // Several sends first, so the refusal below comes through the per-PID 'ready' cache of the send path.
    expect(await a.askPid(p, 'add', 1)).toBe(1)
    a.tellPid(p, 'add', 1)
    expect(await a.askPid(p, 'add', 1)).toBe(3)
    a.quarantine(b.cluster!.authority, 'operator test')
    const e = await expectCode(a.askPid(p, 'add', 1), 'ERR_AUTHORITY_QUARANTINED')
    expect(e.details).toMatchObject({ authority: b.cluster!.authority })
    expect(() => a.tellPid(p, 'add', 1)).toThrow(/quarantine/)
    expect(a.resolve(p).status).toBe('quarantined')
    await waitUntil(() => eventsA.some((x) => x.type === 'association.released' && x.reason === 'deadline'), { what: 'released at the deadline', timeoutMs: 30_000 })
    // (In a two-node cluster the quarantine also cuts the non-seed node off: it may
    // drop its activations when its serving lease lapses, so only liveness is asserted.)
    await waitUntil(async () => (await a.askPid<number>(p, 'add', 1, { timeoutMs: 2_000 }).catch(() => -1)) >= 1, { what: 'works after release', timeoutMs: 30_000 })
    expect(auditA.some((l) => l.includes('quarantined') && l.includes('operator test'))).toBe(true)
    const text = await a.cluster!.metrics!.text()
    expect(text).toMatch(/graincluster_association_quarantines_total [1-9]/)
    expect(text).toMatch(/graincluster_association_releases_total\{reason="deadline"\} [1-9]/)
    expect(text).toMatch(/graincluster_associations\{state="connected"\} 1/)
  })

  it('a quarantine fails the asks already in flight to that authority at once, not at their timeout', async () => {
    const p = b.pid('counter', 'in-flight-quarantine')
    const started = performance.now()
    expect(a.isWritable(p)).toBe(true)
    const call = a.askPid(p, 'hang', undefined, { timeoutMs: 60_000 })
    // Connected and writable: askPid wrote it at once, so nothing is queued for the quarantine to reject.
    a.quarantine(b.cluster!.authority, 'in-flight test')
    const e = await expectCode(call, 'ERR_AUTHORITY_QUARANTINED')
    expect(e.reason).toContain('in flight')
    expect(e.details).toMatchObject({ authority: b.cluster!.authority, method: 'hang' })
    expect(performance.now() - started).toBeLessThan(30_000)
    expect(a.releaseQuarantine(b.cluster!.authority)).toBe(true)
    await waitUntil(async () => (await a.askPid<number>(b.pid('counter', 'after-in-flight'), 'add', 1, { timeoutMs: 2_000 }).catch(() => -1)) >= 1, { what: 'works after release', timeoutMs: 30_000 })
  })

  it('manual release ends a quarantine at once', async () => {
    const p = b.pid('counter', 'manual')
    a.quarantine(b.cluster!.authority, 'manual test')
    await expectCode(a.askPid(p, 'add', 1), 'ERR_AUTHORITY_QUARANTINED')
    expect(a.releaseQuarantine(b.cluster!.authority)).toBe(true)
    expect(eventsA.some((x) => x.type === 'association.released' && x.reason === 'manual')).toBe(true)
    await waitUntil(async () => (await a.askPid<number>(p, 'add', 1, { timeoutMs: 2_000 }).catch(() => -1)) >= 1, { what: 'works after manual release', timeoutMs: 30_000 })
  })

  it('refuses malformed PIDs, unknown authorities and gone incarnations with typed errors', async () => {
    await expectCode(a.askPid('grain://nope', 'get'), 'ERR_PID_INVALID')
    expect(() => a.tellPid('http://x:1/counter/k', 'get')).toThrow(GrainClusterError)
    await expectCode(a.askPid('grain://127.0.0.1:1/counter/k', 'get'), 'ERR_AUTHORITY_REMOVED')
    const stale = `grain://${b.cluster!.authority}/counter/k#0123456789abcdef`
    const e = await expectCode(a.askPid(stale, 'get'), 'ERR_AUTHORITY_REMOVED')
    expect(e.reason).toContain('0123456789abcdef')
    expect(eventsA.filter((x) => x.type === 'pid.conflict' && x.pid === stale)).toHaveLength(1)
  })
})
