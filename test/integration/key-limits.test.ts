/**
 * Per-key limits, schema versions and serialization failures on real nodes
 * (spec 6.1, 6.3, 6.4): a GrainNode with one worker for the limits, and two
 * clustered GrainNodes whose grain modules declare the same kinds with
 * different schema versions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EventStream, type GrainClusterError, GrainNode, type RuntimeEvent } from '../../src/index.js'
import { messageTypeId, partitionOf } from '../../src/common/hash.js'
import { MAIN_THREAD } from '../../src/wire/control.js'
import { EnvelopeWriter, FLAGS, InternedString } from '../../src/wire/envelope.js'
import { encodeToBytes } from '../../src/wire/payload-codec.js'
import { QueueDropOldest, QueueReject, ReadMostly } from '../fixtures/grains/test-grains.js'
import { freePorts } from '../helpers/free-port.js'
import { IN_PROCESS_DETECTOR, IN_PROCESS_LEASE_MS, keyPlacedOn } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
const PARTITIONS = 8

type Outcome = { ok: true; value: unknown } | { ok: false; error: GrainClusterError }
/** The error `p` rejects with (undefined if it resolves). */
const catchError = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  )
const settle = (p: Promise<unknown>): Promise<Outcome> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (e: unknown) => ({ ok: false as const, error: e as GrainClusterError }),
  )

/** Value of one sample line of the Prometheus text, 0 when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

/** A request envelope as another caller would stamp it. */
function envelope(o: { kind: string; key: string; method: string; schemaVersion: number; payload: Uint8Array; ask?: { corr: number } }): Uint8Array {
  const w = new EnvelopeWriter()
  w.kind = new InternedString(o.kind)
  w.key = o.key
  w.partition = partitionOf(o.key, PARTITIONS)
  w.messageType = messageTypeId(o.method)
  w.schemaVersion = o.schemaVersion
  w.payloadBytes = o.payload
  if (o.ask !== undefined) {
    w.flags = FLAGS.ASK
    w.correlationId = o.ask.corr
    w.replyTo = MAIN_THREAD
  }
  return w.toBytes()
}

describe('per-key limits, schema check and serialization failures (one node, one worker)', () => {
  let node: GrainNode
  const events: RuntimeEvent[] = []

  beforeAll(async () => {
    const stream = new EventStream()
    stream.subscribe('rpc.*', (e) => events.push(e))
    stream.subscribe('deadletter', (e) => events.push(e))
    node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: PARTITIONS }, stream)
  })
  afterAll(async () => {
    await node?.close()
  })

  it('reject: beyond queueDepth 5 the new calls fail fast with ERR_GRAIN_QUEUE_FULL; the kept ones run in order; the counter matches', async () => {
    const hold = node.ask(QueueReject, 'r1', 'hold')
    const calls = Array.from({ length: 12 }, (_, i) => settle(node.ask(QueueReject, 'r1', 'record', i)))
    let settled = 0
    for (const c of calls) void c.then(() => settled++)
    // The 7 refused calls settle while the key is still held; the 5 kept ones wait.
    await waitUntil(() => settled === 7, { what: '7 rejections' })
    await node.ask(QueueReject, 'opener', 'open', 'r1')
    await hold
    const results = await Promise.all(calls)
    expect(results.slice(0, 5)).toEqual([0, 1, 2, 3, 4].map((v) => ({ ok: true, value: v })))
    for (const [i, r] of results.slice(5).entries()) {
      expect(r.ok).toBe(false)
      const e = (r as { error: GrainClusterError }).error
      expect(e.code).toBe('ERR_GRAIN_QUEUE_FULL')
      expect(e.details).toMatchObject({ kind: 'queue-reject', key: 'r1', method: 'record', limit: 5 })
      expect(e.reason).toContain('queueDepth 5')
      expect(i).toBeLessThan(7)
    }
    expect(await node.ask(QueueReject, 'r1', 'seen')).toEqual([0, 1, 2, 3, 4])
    await waitUntil(async () => sample(await node.metricsText(), 'graincluster_grain_rejected_total{kind="queue-reject",policy="reject"}') === 7, { what: 'rejected counter = 7' })
    const rejected = events.filter((e) => e.type === 'rpc.rejected' && e.kind === 'queue-reject')
    expect(rejected).toHaveLength(7)
    expect(rejected[0]).toMatchObject({ key: 'r1', method: 'record', code: 'ERR_GRAIN_QUEUE_FULL', policy: 'reject' })
  })

  it('dropOldest: the oldest waiting calls are dropped (asks fail with ERR_GRAIN_DROPPED, tells become deadletters); the newest 5 run in order', async () => {
    const hold = node.ask(QueueDropOldest, 'd1', 'hold')
    node.tell(QueueDropOldest, 'd1', 'record', 100)
    node.tell(QueueDropOldest, 'd1', 'record', 101)
    const calls = Array.from({ length: 10 }, (_, i) => settle(node.ask(QueueDropOldest, 'd1', 'record', i)))
    let settled = 0
    for (const c of calls) void c.then(() => settled++)
    // 12 arrivals behind the held call, depth 5: 100, 101, 0..4 are dropped.
    await waitUntil(() => settled === 5, { what: '5 asks dropped' })
    await node.ask(QueueDropOldest, 'opener', 'open', 'd1')
    await hold
    const results = await Promise.all(calls)
    for (const r of results.slice(0, 5)) {
      expect(r.ok).toBe(false)
      const e = (r as { error: GrainClusterError }).error
      expect(e.code).toBe('ERR_GRAIN_DROPPED')
      expect(e.details).toMatchObject({ kind: 'queue-drop', key: 'd1', method: 'record', limit: 5 })
    }
    expect(results.slice(5)).toEqual([5, 6, 7, 8, 9].map((v) => ({ ok: true, value: v })))
    expect(await node.ask(QueueDropOldest, 'd1', 'seen')).toEqual([5, 6, 7, 8, 9])
    await waitUntil(async () => sample(await node.metricsText(), 'graincluster_grain_dropped_total{kind="queue-drop"}') === 7, { what: 'dropped counter = 7' })
    await waitUntil(() => events.filter((e) => e.type === 'deadletter' && e.kind === 'queue-drop').length === 2, { what: 'two dropped tells as deadletters' })
    const dl = events.filter((e) => e.type === 'deadletter' && e.kind === 'queue-drop')
    for (const e of dl) expect(e).toMatchObject({ key: 'd1', code: 'ERR_GRAIN_DROPPED' })
    expect(events.filter((e) => e.type === 'rpc.dropped' && e.kind === 'queue-drop')).toHaveLength(7)
    expect(sample(await node.metricsText(), 'graincluster_grain_rejected_total{kind="queue-drop",policy="reject"}')).toBe(0)
  })

  it('read-only calls run concurrently up to concurrencyLimit 4; a write runs alone and in order', async () => {
    const probe = (): Promise<{ inFlight: number; maxInFlight: number; overlaps: number; starts: string[] }> => node.ask(ReadMostly, 'observer', 'probe', 'm1')
    const first = Array.from({ length: 6 }, (_, i) => node.ask(ReadMostly, 'm1', 'peek', `p${i}`))
    const write = node.ask(ReadMostly, 'm1', 'write', { tag: 'w', value: 7 })
    const later = [6, 7].map((i) => node.ask(ReadMostly, 'm1', 'peek', `p${i}`))
    await waitUntil(async () => (await probe()).inFlight === 4, { what: '4 peeks in flight' })
    expect(await probe()).toMatchObject({ inFlight: 4, maxInFlight: 4, starts: ['p0', 'p1', 'p2', 'p3'] })
    await node.ask(ReadMostly, 'observer', 'open', 'm1')
    expect(await Promise.all(first)).toEqual([0, 0, 0, 0, 0, 0])
    await write
    expect(await Promise.all(later)).toEqual([7, 7])
    expect(await probe()).toMatchObject({ inFlight: 0, maxInFlight: 4, overlaps: 0, starts: ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'w', 'p6', 'p7'] })
  })

  it('a call stamped with a schema version the kind does not serve fails with ERR_SCHEMA_MISMATCH naming both sides, plus an event and a metric', async () => {
    const host = node.workerHost
    const corr = host.pending.nextId()
    const asked = host.pending.add(corr, { kind: 'counter', key: 'sv1', method: 'add', worker: 0 }, 10_000)
    const payload = encodeToBytes(node.workerHost.codec, 1)
    host.injectFrame(0, envelope({ kind: 'counter', key: 'sv1', method: 'add', schemaVersion: 3, payload, ask: { corr } }))
    const err = await catchError(asked)
    expect(err).toMatchObject({ code: 'ERR_SCHEMA_MISMATCH', details: { kind: 'counter', key: 'sv1', method: 'add', callerVersion: 3, servedVersions: [1] } })
    expect((err as GrainClusterError).reason).toContain('caller speaks counter v3; this node serves counter v1')
    // A tell becomes a deadletter; version 0 ("unspecified") and the served version are accepted.
    host.injectFrame(0, envelope({ kind: 'counter', key: 'sv1', method: 'add', schemaVersion: 9, payload }))
    host.injectFrame(0, envelope({ kind: 'counter', key: 'sv1', method: 'add', schemaVersion: 0, payload }))
    host.injectFrame(0, envelope({ kind: 'counter', key: 'sv1', method: 'add', schemaVersion: 1, payload }))
    await waitUntil(async () => (await node.ask('counter', 'sv1', 'get')) === 2, { what: 'v0 and v1 tells applied' })
    await waitUntil(() => events.some((e) => e.type === 'deadletter' && e.code === 'ERR_SCHEMA_MISMATCH'), { what: 'deadletter for the v9 tell' })
    await waitUntil(async () => sample(await node.metricsText(), 'graincluster_rpc_schema_mismatches_total{kind="counter",where="worker"}') === 2, { what: 'mismatch counter = 2' })
    expect(events.find((e) => e.type === 'rpc.schema-mismatch')).toMatchObject({ kind: 'counter', callerVersion: 3, servedVersions: [1], where: 'worker' })
  })

  it('serialization failures fail the call with a typed error, are published and counted by direction', async () => {
    const text0 = await node.metricsText()
    const enc0 = sample(text0, 'graincluster_rpc_serialization_failures_total{direction="encode"}')
    const dec0 = sample(text0, 'graincluster_rpc_serialization_failures_total{direction="decode"}')
    // Request that cannot be encoded (main thread).
    const e1 = await catchError(node.ask('counter', 'ser', 'echo', () => 1))
    expect(e1).toMatchObject({ code: 'ERR_GRAIN_PAYLOAD_ENCODE', details: { kind: 'counter', key: 'ser', method: 'echo' } })
    // Reply that cannot be encoded (worker).
    const e2 = await catchError(node.ask('counter', 'ser', 'returnsFunction'))
    expect(e2).toMatchObject({ code: 'ERR_GRAIN_PAYLOAD_ENCODE', details: { kind: 'counter', key: 'ser', method: 'returnsFunction' } })
    // Request that cannot be decoded (worker): an ask with a garbage payload.
    const host = node.workerHost
    const corr = host.pending.nextId()
    const asked = host.pending.add(corr, { kind: 'counter', key: 'ser', method: 'add', worker: 0 }, 10_000)
    host.injectFrame(0, envelope({ kind: 'counter', key: 'ser', method: 'add', schemaVersion: 1, payload: new Uint8Array([0xee, 0xee, 0xee]), ask: { corr } }))
    const e3 = await catchError(asked)
    expect(e3).toMatchObject({ code: 'ERR_GRAIN_PAYLOAD_DECODE', details: { kind: 'counter', key: 'ser', method: 'add' } })
    await waitUntil(
      async () => {
        const t = await node.metricsText()
        return sample(t, 'graincluster_rpc_serialization_failures_total{direction="encode"}') === enc0 + 2 && sample(t, 'graincluster_rpc_serialization_failures_total{direction="decode"}') === dec0 + 1
      },
      { what: 'serialization counters +2 encode, +1 decode' },
    )
    const ser = events.filter((e) => e.type === 'rpc.serialization-failed' && e.key === 'ser')
    expect(ser.map((e) => (e.type === 'rpc.serialization-failed' ? `${e.message}:${e.direction}:${e.method}` : ''))).toEqual(['request:encode:echo', 'reply:encode:returnsFunction', 'request:decode:add'])
  })
})

describe('schema negotiation between two nodes', () => {
  const nodes: GrainNode[] = []
  const events: RuntimeEvent[][] = [[], []]

  beforeAll(async () => {
    const ports = await freePorts(2)
    const seeds = ports.map((p) => `127.0.0.1:${p}`)
    const modules = [new URL('../fixtures/grains/schema-a.ts', import.meta.url), new URL('../fixtures/grains/schema-b.ts', import.meta.url)]
    const started = await Promise.all(
      ports.map((port, i) => {
        const stream = new EventStream()
        stream.subscribe('rpc.*', (e) => events[i]!.push(e))
        stream.subscribe('handshake.*', (e) => events[i]!.push(e))
        stream.subscribe('association.*', (e) => events[i]!.push(e))
        return GrainNode.start(
          {
            grains: [modules[i]!],
            workers: 1,
            partitions: PARTITIONS,
            audit: () => {},
            cluster: { clusterName: 'schema-it', secret: 'schema-secret', seeds, port, failureDetector: IN_PROCESS_DETECTOR, servingLeaseMs: IN_PROCESS_LEASE_MS },
          },
          stream,
        )
      }),
    )
    nodes.push(...started)
    await Promise.all(nodes.map((n) => n.cluster!.whenUp()))
    await waitUntil(() => nodes.every((n) => n.cluster!.members().filter((m) => m.status === 'up').length === 2), { what: 'both Up everywhere' })
  })
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()))
  })

  /** A key of `kind` that placement puts on `owner`. */
  const keyOn = (kind: string, owner: GrainNode): string => keyPlacedOn(owner, kind, 'k', nodes[0])

  it('reports a kind with no common version in the handshake, on both sides, naming both versions', async () => {
    const [a, b] = nodes as [GrainNode, GrainNode]
    await waitUntil(() => events.every((es) => es.some((e) => e.type === 'handshake.schema-mismatch')), { what: 'handshake.schema-mismatch on both nodes' })
    expect(events[1]!.find((e) => e.type === 'handshake.schema-mismatch')).toMatchObject({ authority: a.cluster!.authority, kind: 'versioned', localVersions: [3], peerVersions: [1, 2] })
    expect(events[0]!.find((e) => e.type === 'handshake.schema-mismatch')).toMatchObject({ authority: b.cluster!.authority, kind: 'versioned', localVersions: [1, 2], peerVersions: [3] })
    // The kind with a common version (v2) is not reported.
    expect(events.flat().filter((e) => e.type === 'handshake.schema-mismatch' && e.kind === 'evolving')).toEqual([])
    expect(sample(await b.metricsText(), 'graincluster_rpc_schema_mismatches_total{kind="versioned",where="handshake"}')).toBeGreaterThanOrEqual(1)
  })

  it('calls of that kind to the peer fail with ERR_SCHEMA_MISMATCH naming both sides; calls of the kind with a common version work', async () => {
    const [a, b] = nodes as [GrainNode, GrainNode]
    const key = keyOn('versioned', a)
    const err = await catchError(b.ask('versioned', key, 'ping'))
    expect(err).toMatchObject({ code: 'ERR_SCHEMA_MISMATCH', details: { kind: 'versioned', key, authority: a.cluster!.authority, callerVersions: [3], servedVersions: [1, 2] } })
    expect((err as GrainClusterError).reason).toBe(`schema mismatch: caller speaks versioned v3; ${a.cluster!.authority} serves versioned v1,v2 (no common version)`)
    expect(() => b.tell('versioned', key, 'ping')).toThrow(/caller speaks versioned v3/)
    expect(() => b.tellPid(a.pid('versioned', key), 'ping')).toThrow(/caller speaks versioned v3/)
    expect(events[1]!.filter((e) => e.type === 'rpc.schema-mismatch' && e.where === 'caller')).toHaveLength(3)
    expect(sample(await b.metricsText(), 'graincluster_rpc_schema_mismatches_total{kind="versioned",where="caller"}')).toBe(3)
    // Same kind, key owned by the caller's own node: served locally.
    expect(await b.ask('versioned', keyOn('versioned', b), 'ping')).toBe('b')
    // `evolving`: A serves v2, B serves v2,v3 → both stamp v2 and the serving workers accept it.
    expect(await b.ask('evolving', keyOn('evolving', a), 'ping')).toBe('a')
    expect(await a.ask('evolving', keyOn('evolving', b), 'ping')).toBe('b')
    expect(events.flat().filter((e) => e.type === 'rpc.schema-mismatch' && e.kind === 'evolving')).toEqual([])
    // The refused tells were refusals before encoding, not failed encodings (the remote asks above published any association output).
    expect(events[1]!.filter((e) => e.type === 'association.send-failed')).toEqual([])
  })
})
