/**
 * Local grains on real worker threads over SAB rings: activation, one
 * message at a time, tell/ask, grain-to-grain across workers, typed errors
 * for bad input, idle passivation, stateless grains.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { messageTypeId, partitionOf, workerOfPartition } from '../../src/common/hash.js'
import { GrainClusterError, GrainNode, type RuntimeEvent } from '../../src/index.js'
import { Counter, Hasher, Lifecycle } from '../fixtures/grains/test-grains.js'
import { waitUntil } from '../helpers/wait-until.js'
import { EnvelopeReader, InternedString } from '../../src/wire/envelope.js'
import { binaryCodec } from '../../src/wire/payload-codec.js'
import { TELL_RUN_ENTRY_HEADER_BYTES, TellRunEntries, TellRunWriter } from '../../src/wire/tell-run.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
const WORKERS = 2
const PARTITIONS = 64

function keyOnWorker(worker: number, prefix: string): string {
  for (let i = 0; i < 10_000; i++) {
    const k = `${prefix}-${i}`
    if (workerOfPartition(partitionOf(k, PARTITIONS), WORKERS) === worker) return k
  }
  throw new Error('no key found')
}

async function expectCode(p: Promise<unknown>, code: string): Promise<GrainClusterError> {
  try {
    await p
  } catch (e) {
    expect(GrainClusterError.is(e), `expected a GrainClusterError, got ${String(e)}`).toBe(true)
    expect((e as GrainClusterError).code).toBe(code)
    return e as GrainClusterError
  }
  throw new Error(`expected rejection with ${code}, but it resolved`)
}

describe('local grains on worker threads', () => {
  let node: GrainNode
  const events: RuntimeEvent[] = []

  beforeAll(async () => {
    node = await GrainNode.start({ grains: GRAINS, workers: WORKERS, partitions: PARTITIONS, askTimeoutMs: 10_000 })
    node.events.subscribe('*', (e) => events.push(e))
  })
  afterAll(async () => {
    await node?.close()
  })

  it('activates on first message and keeps state per key', async () => {
    expect(await node.ask(Counter, 'state-a', 'add', 2)).toBe(2)
    expect(await node.ask(Counter, 'state-a', 'add', 3)).toBe(5)
    expect(await node.ask(Counter, 'state-b', 'add', 1)).toBe(1)
    await waitUntil(() => events.some((e) => e.type === 'grain.activated' && e.key === 'state-b'), { what: 'activation event' })
    const act = events.filter((e) => e.type === 'grain.activated' && e.key === 'state-a')
    expect(act).toHaveLength(1)
  })

  it('places keys on the worker their partition maps to', async () => {
    const k0 = keyOnWorker(0, 'place')
    const k1 = keyOnWorker(1, 'place')
    const w0 = await node.ask(Counter, k0, 'where')
    const w1 = await node.ask(Counter, k1, 'where')
    const tids = node.workerHost.threadIds
    expect((w0 as { threadId: number }).threadId).toBe(tids[0])
    expect((w1 as { threadId: number }).threadId).toBe(tids[1])
  })

  it('runs one message at a time per activation, in arrival order', async () => {
    // Async handlers that would interleave if the mailbox let them.
    const results = await Promise.all(Array.from({ length: 20 }, () => node.ask(Counter, 'serial', 'slowAdd', { by: 1, ms: 2 })))
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
  })

  it('delivers tells in order', async () => {
    for (let i = 0; i < 5_000; i++) node.tell(Counter, 'order', 'record', i)
    const seen = await node.ask(Counter, 'order', 'seen')
    expect(seen).toEqual(Array.from({ length: 5_000 }, (_, i) => i))
  })

  it('makes grain-to-grain asks and tells across workers', async () => {
    const from = keyOnWorker(0, 'g2g-from')
    const to = keyOnWorker(1, 'g2g-to')
    expect(await node.ask(Counter, from, 'askOther', { key: to, by: 7 })).toBe(7)
    const sameWorker = keyOnWorker(0, 'g2g-same')
    expect(await node.ask(Counter, from, 'askOther', { key: sameWorker, by: 4 })).toBe(4)
    await node.ask(Counter, from, 'tellOther', { key: to, by: 3 })
    await waitUntil(async () => (await node.ask(Counter, to, 'get')) === 10, { what: 'tell across workers' })
    // A burst of tells (they cross the main thread in runs, split by worker there) with asks in between: nothing overtakes.
    const stream = keyOnWorker(1, 'g2g-stream')
    expect(await node.ask(Counter, from, 'recordStreamByKey', { key: stream, n: 2_000, every: 250 })).toEqual([])
    expect(await node.ask(Counter, stream, 'seen')).toEqual(Array.from({ length: 2_000 }, (_, i) => i))
    const err = await expectCode(node.ask(Counter, from, 'askUnknown'), 'ERR_GRAIN_UNKNOWN_KIND')
    expect(err.details.kind).toBe('no-such-kind')
  })

  it('routes PID calls by the index a worker gives each PID, across more PIDs than indexes (65,536)', async () => {
    // Without cluster options every PID call is a DeadLetter naming the PID the main thread read: it must be the one the grain called.
    const n = 70_000
    const lag = 300
    const from = events.length
    await node.grain(Counter, 'many-pids').tellManyPids({ n, lag })
    const mine = (): RuntimeEvent[] => events.slice(from).filter((e) => e.type === 'deadletter' && e.key.startsWith('many-'))
    await waitUntil(() => mine().length === 2 * n - lag, { timeoutMs: 60_000, what: 'a DeadLetter per PID call' })
    const wrong = mine().filter((e) => e.type === 'deadletter' && !(e.code === 'ERR_CONFIG_MISSING' && e.reason.includes(`/counter/${e.key}:`)))
    expect(wrong).toEqual([])
  }, 90_000)

  it("answers a grain's ctx.whenWritable: its own ring without a PID; PIDs need cluster options", async () => {
    const grain = node.grain(Counter, 'writable-local')
    expect(await grain.writableOutcome({})).toBe('writable')
    expect(await grain.writableOutcome({ pid: 'grain://127.0.0.1:7000/counter/k' })).toMatchObject({ code: 'ERR_CONFIG_MISSING' })
    expect(await grain.writableOutcome({ pid: 'not a pid' })).toMatchObject({ code: 'ERR_PID_INVALID' })
  })

  it('refuses unknown kinds, unknown methods and invalid keys with typed errors', async () => {
    const e1 = await expectCode(node.ask('nope', 'k', 'x'), 'ERR_GRAIN_UNKNOWN_KIND')
    expect(e1.details).toMatchObject({ kind: 'nope', key: 'k' })
    const e2 = await expectCode(node.ask('counter', 'k', 'nope'), 'ERR_GRAIN_UNKNOWN_METHOD')
    expect(e2.details).toMatchObject({ kind: 'counter', method: 'nope' })
    await expectCode(node.ask(Counter, '', 'get'), 'ERR_GRAIN_INVALID_KEY')
    await expectCode(node.ask(Counter, 'x'.repeat(2000), 'get'), 'ERR_GRAIN_INVALID_KEY')
    expect(() => node.tell('nope', 'k', 'x')).toThrow(GrainClusterError)
  })

  it('turns handler failures into typed errors and keeps serving', async () => {
    const e = await expectCode(node.ask(Counter, 'failing', 'fail', 'kaput'), 'ERR_GRAIN_HANDLER_FAILED')
    expect(e.details).toMatchObject({ kind: 'counter', key: 'failing', method: 'fail' })
    expect(e.reason).toContain('kaput')
    await expectCode(node.ask(Counter, 'failing', 'failAsync', 'later'), 'ERR_GRAIN_HANDLER_FAILED')
    await waitUntil(() => events.some((x) => x.type === 'grain.handler-failed' && x.key === 'failing' && x.method === 'failAsync'), { what: 'handler-failed event' })
    expect(await node.ask(Counter, 'failing', 'add', 1)).toBe(1)
  })

  it('fails unencodable payloads and results with ERR_GRAIN_PAYLOAD_ENCODE', async () => {
    await expectCode(node.ask(Counter, 'enc', 'echo', () => 1), 'ERR_GRAIN_PAYLOAD_ENCODE')
    await expectCode(node.ask(Counter, 'enc', 'returnsFunction'), 'ERR_GRAIN_PAYLOAD_ENCODE')
    expect(await node.ask(Counter, 'enc', 'echo', { a: [1, 'two', null], b: new Uint8Array([1, 2]) })).toEqual({ a: [1, 'two', null], b: new Uint8Array([1, 2]) })
  })

  it('times out asks with ERR_GRAIN_TIMEOUT naming the grain', async () => {
    const e = await expectCode(node.ask(Counter, 'hanging', 'hang', undefined, { timeoutMs: 100 }), 'ERR_GRAIN_TIMEOUT')
    expect(e.details).toMatchObject({ kind: 'counter', key: 'hanging', method: 'hang', limit: 100 })
    // The hung activation blocks only its own key.
    expect(await node.ask(Counter, 'not-hanging', 'add', 1)).toBe(1)
  })

  it('reports malformed frames and keeps running', async () => {
    node.workerHost.injectFrame(0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]))
    await waitUntil(() => events.some((e) => e.type === 'frame.malformed'), { what: 'frame.malformed event' })
    expect(await node.ask(Counter, keyOnWorker(0, 'after-garbage'), 'add', 1)).toBe(1)
  })

  it('a tell run on the ring: entries run in order; an unknown kind dead-letters each entry; broken framing keeps the entries before it', async () => {
    /** The envelope of a run of record(value) tells (what node.tell batches into the ring), optionally with its last entry's payload length broken. */
    const run = (kind: string, tells: Array<[string, number]>, breakLast = false): Uint8Array => {
      const w = new TellRunWriter()
      const buf = new Uint8Array(4096)
      w.open(buf, 0, buf.length, new InternedString(kind), messageTypeId('record'), 0)
      for (const [key, v] of tells) expect(w.append(key, (b, o, m) => binaryCodec.encodeInto(v, b, o, m))).toBe(true)
      w.finish()
      const env = buf.slice(4, 4 + new DataView(buf.buffer).getUint32(0, true))
      if (breakLast) {
        const r = new EnvelopeReader().reset(env, 0, env.length)
        const it = new TellRunEntries().reset(env, r.payloadOff, r.payloadLen)
        let last = -1
        while (it.next()) last = it.keyOff - TELL_RUN_ENTRY_HEADER_BYTES
        new DataView(env.buffer).setUint32(last + 2, 0xffff, true)
      }
      return env
    }
    const k = keyOnWorker(0, 'run')
    node.workerHost.injectFrame(0, run('counter', [[k, 1], [k, 2], [k, 3]]))
    expect(await node.ask(Counter, k, 'seen')).toEqual([1, 2, 3])

    const before = events.length
    node.workerHost.injectFrame(0, run('no-such-kind', [['u1', 1], ['u2', 2]]))
    const dead = await waitUntil(() => {
      const d = events.slice(before).filter((e) => e.type === 'deadletter')
      return d.length >= 2 ? d : undefined
    }, { what: 'two dead letters' })
    expect(dead.map((e) => e.type === 'deadletter' && [e.key, e.code])).toEqual([
      ['u1', 'ERR_GRAIN_UNKNOWN_KIND'],
      ['u2', 'ERR_GRAIN_UNKNOWN_KIND'],
    ])

    const k2 = keyOnWorker(0, 'run-broken')
    node.workerHost.injectFrame(0, run('counter', [[k2, 10], [k2, 11], [k2, 12]], true))
    expect(await node.ask(Counter, k2, 'seen')).toEqual([10, 11])
    await waitUntil(() => events.slice(before).some((e) => e.type === 'frame.malformed' && e.reason.includes('tell run') && e.reason.includes('overruns')), { what: 'frame.malformed for the run' })

    // A run as a request of its own (from a peer, or relayed for a worker) is refused: runs travel only in rings and tell batches.
    const relayed = run('counter', [[k, 4]])
    expect(() => node.workerHost.relayRequest(relayed, () => {})).toThrow(expect.objectContaining({ code: 'ERR_FRAME_MALFORMED' }))
    expect(await node.ask(Counter, k, 'seen')).toEqual([1, 2, 3])
  })

  it('fails activation with a typed error when state() or onActivate throws', async () => {
    const e1 = await expectCode(node.ask(Lifecycle, 'bad-state-1', 'hit'), 'ERR_GRAIN_ACTIVATION_FAILED')
    expect(e1.reason).toContain('state factory refused')
    const e2 = await expectCode(node.ask(Lifecycle, 'bad-activate-1', 'hit'), 'ERR_GRAIN_ACTIVATION_FAILED')
    expect(e2.details).toMatchObject({ kind: 'lifecycle', key: 'bad-activate-1' })
    await waitUntil(() => events.some((e) => e.type === 'grain.activation-failed' && e.key === 'bad-activate-1'), { what: 'activation-failed event' })
    expect(await node.ask(Lifecycle, 'good-1', 'hit')).toBe(1)
  })

  it('passivates idle activations and re-activates on the next message', async () => {
    expect(await node.ask(Lifecycle, 'idle-1', 'hit')).toBe(1)
    expect(await node.ask(Lifecycle, 'idle-1', 'hit')).toBe(2)
    await waitUntil(() => events.some((e) => e.type === 'grain.deactivated' && e.key === 'idle-1' && e.reason === 'idle'), { what: 'idle passivation', timeoutMs: 30_000 })
    // Fresh activation: state starts over.
    expect(await node.ask(Lifecycle, 'idle-1', 'hit')).toBe(1)
    // The re-activation is reported, with the churn flag an operator tunes idleTtlMs by.
    const re = await waitUntil(() => events.find((e) => e.type === 'placement.reactivated' && e.key === 'idle-1'), { what: 'reactivation event' })
    if (re.type !== 'placement.reactivated') throw new Error('unreachable')
    expect(re.kind).toBe('lifecycle')
    expect(re.afterMs).toBeGreaterThanOrEqual(0)
    expect(re.churn).toBe(re.afterMs < 100)
    const text = await node.metricsText()
    expect(text).toMatch(/graincluster_grain_reactivations_total\{kind="lifecycle"\} [1-9]/)
  })

  it('passivates on request after the current message', async () => {
    expect(await node.ask(Counter, 'asked-to-go', 'add', 5)).toBe(5)
    await node.ask(Counter, 'asked-to-go', 'passivate')
    await waitUntil(() => events.some((e) => e.type === 'grain.deactivated' && e.key === 'asked-to-go' && e.reason === 'requested'), { what: 'requested passivation' })
    expect(await node.ask(Counter, 'asked-to-go', 'get')).toBe(0)
  })

  it('runs stateless grains on the piscina pool', async () => {
    expect(await node.ask(Hasher, 'any', 'sum', [1, 2, 3, 4])).toBe(10)
    const e = await expectCode(node.ask(Hasher, 'any', 'boom'), 'ERR_GRAIN_HANDLER_FAILED')
    expect(e.reason).toContain('stateless failure')
    await expectCode(node.ask('hasher', 'any', 'nope'), 'ERR_GRAIN_UNKNOWN_METHOD')
  })
})

describe('node options and start-up failures', () => {
  it('refuses missing and invalid options, naming every problem', async () => {
    await expectCode(GrainNode.start({ grains: [] }), 'ERR_CONFIG_MISSING')
    const e = await expectCode(GrainNode.start({ grains: GRAINS, workers: 0, ringBytes: 5000, codec: 'xml' as 'json' }), 'ERR_CONFIG_INVALID')
    expect(e.details.issues).toEqual(
      expect.arrayContaining([expect.stringContaining('workers'), expect.stringContaining('ringBytes'), expect.stringContaining('codec')]),
    )
  })

  it('fails start-up with a typed error when a grain module cannot load', async () => {
    const e = await expectCode(GrainNode.start({ grains: [new URL('../fixtures/grains/does-not-exist.ts', import.meta.url)], workers: 1 }), 'ERR_GRAIN_DEFINITION_INVALID')
    expect(e.reason).toContain('does-not-exist')
  })
})

describe('bad input at the ring boundary', () => {
  let node: GrainNode
  const events: RuntimeEvent[] = []
  beforeAll(async () => {
    node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8, ringBytes: 4096, maxOverflowFrames: 8 })
    node.events.subscribe('*', (e) => events.push(e))
  })
  afterAll(async () => {
    await node?.close()
  })

  it('refuses a frame larger than the ring with ERR_RING_FRAME_TOO_LARGE', async () => {
    const e = await expectCode(node.ask(Counter, 'big', 'echo', 'x'.repeat(10_000)), 'ERR_RING_FRAME_TOO_LARGE')
    expect(e.details.limit).toBe(4096 / 2 - 4)
    expect(e.details.size).toBeGreaterThan(10_000)
    expect(await node.ask(Counter, 'big', 'echo', 'small')).toBe('small')
  })

  it('applies backpressure when the ring and its overflow queue are full', async () => {
    const blocked = node.ask(Counter, 'blocker', 'block', 1_500)
    let accepted = 0
    let refused: GrainClusterError | undefined
    for (let i = 0; i < 10_000 && refused === undefined; i++) {
      try {
        node.tell(Counter, 'flood', 'record', i)
        accepted++
      } catch (e) {
        refused = e as GrainClusterError
      }
    }
    expect(refused?.code).toBe('ERR_RING_FULL')
    expect(refused?.details.limit).toBe(8)
    await waitUntil(() => events.some((e) => e.type === 'ring.full'), { what: 'ring.full event' })
    await blocked
    await node.whenWritable()
    await waitUntil(() => events.some((e) => e.type === 'ring.drained'), { what: 'ring.drained event' })
    // Nothing accepted was lost, and order held.
    const seen = await node.ask(Counter, 'flood', 'seen')
    expect(seen).toEqual(Array.from({ length: accepted }, (_, i) => i))
  })

  it("delivers a grain's reply even when its worker's ring to the main thread and that ring's overflow queue are full", async () => {
    const lost = (): number => events.filter((e) => e.type === 'deadletter' && e.reason.includes('reply lost')).length
    const lost0 = lost()
    const reply = node.ask(Counter, 'flooder', 'floodRing', 2_000, { timeoutMs: 10_000 })
    // Let the ask reach the worker, then keep the main thread from reading
    // the worker's ring while the grain floods it and replies.
    await new Promise((r) => setImmediate(r))
    const until = performance.now() + 1_500
    while (performance.now() < until) {
      /* the main thread reads nothing meanwhile */
    }
    const refused = await reply
    expect(refused).toBeGreaterThan(0) // the ring and its overflow were full when the grain replied
    expect(lost()).toBe(lost0)
  })
})

describe('worker supervision', () => {
  let node: GrainNode
  const events: RuntimeEvent[] = []
  beforeAll(async () => {
    node = await GrainNode.start({ grains: GRAINS, workers: WORKERS, partitions: PARTITIONS })
    node.events.subscribe('*', (e) => events.push(e))
  })
  afterAll(async () => {
    await node?.close()
  })

  it('fails in-flight calls with ERR_WORKER_CRASHED, restarts the worker, re-activates on demand', async () => {
    const victim = keyOnWorker(1, 'victim')
    const survivor = keyOnWorker(0, 'survivor')
    expect(await node.ask(Counter, victim, 'add', 41)).toBe(41)
    expect(await node.ask(Counter, survivor, 'add', 1)).toBe(1)
    const oldThread = node.workerHost.threadIds[1]

    const inFlight = node.ask(Counter, keyOnWorker(1, 'waiting'), 'hang')
    await waitUntil(() => events.some((e) => e.type === 'grain.activated' && e.key === keyOnWorker(1, 'waiting')), { what: 'hang activation' })
    node.tell(Counter, victim, 'crash')

    const e = await expectCode(inFlight, 'ERR_WORKER_CRASHED')
    expect(e.details).toMatchObject({ worker: 1, kind: 'counter', method: 'hang' })
    expect(e.retryable).toBe(true)
    await waitUntil(() => events.some((x) => x.type === 'worker.crashed' && x.worker === 1), { what: 'worker.crashed' })
    const crashed = events.find((x) => x.type === 'worker.crashed')
    expect(crashed).toMatchObject({ worker: 1, failedCalls: 1 })
    expect((crashed as { reason: string }).reason).toContain('deliberate worker crash')
    await waitUntil(() => events.some((x) => x.type === 'worker.started' && x.worker === 1 && x.restarts === 1), { what: 'restarted worker ready' })

    // Re-activated on demand with fresh state; the other worker kept its activations.
    expect(await node.ask(Counter, victim, 'add', 1)).toBe(1)
    expect(await node.ask(Counter, survivor, 'add', 1)).toBe(2)
    expect(node.workerHost.threadIds[1]).not.toBe(oldThread)
    expect(node.workerHost.restartsOf(1)).toBe(1)
  })

  it('dead-letters tells left unread by a worker that died', async () => {
    const k = keyOnWorker(1, 'dl')
    expect(await node.ask(Counter, k, 'add', 1)).toBe(1)
    const before = events.filter((e) => e.type === 'deadletter').length
    // Published together: the worker exits on the first, the rest stay unread.
    node.tell(Counter, k, 'crashNow')
    for (let i = 0; i < 100; i++) node.tell(Counter, k, 'record', i)
    await waitUntil(() => events.filter((e) => e.type === 'worker.crashed').length >= 2, { what: 'second crash' })
    const dead = events.filter((e) => e.type === 'deadletter').slice(before)
    // The message the worker died on was never released from the ring either.
    expect(dead).toHaveLength(101)
    expect(dead[0]).toMatchObject({ kind: 'counter', key: k, code: 'ERR_WORKER_CRASHED', worker: 1, messageType: messageTypeId('crashNow') })
    expect(dead.slice(1).every((d) => d.type === 'deadletter' && d.messageType === messageTypeId('record'))).toBe(true)
    await waitUntil(() => events.some((x) => x.type === 'worker.started' && x.worker === 1 && x.restarts === 2), { what: 'restart 2' })
    expect(await node.ask(Counter, k, 'add', 1)).toBe(1)
  })

  it('fails grain-to-grain asks whose target worker crashes', async () => {
    const from = keyOnWorker(0, 'g2g-crash-from')
    const to = keyOnWorker(1, 'g2g-crash-to')
    const crashesBefore = events.filter((e) => e.type === 'worker.crashed').length
    // A grain on worker 0 asks a grain on worker 1 that never answers; worker 1 dies.
    const call = node.ask(Counter, from, 'askHang', to)
    await waitUntil(() => events.some((e) => e.type === 'grain.activated' && e.key === to), { what: 'target activation' })
    node.tell(Counter, keyOnWorker(1, 'g2g-crash-bomb'), 'crash')
    const e = await expectCode(call, 'ERR_WORKER_CRASHED')
    expect(e.details).toMatchObject({ worker: 1 })
    expect(events.filter((x) => x.type === 'worker.crashed').length).toBe(crashesBefore + 1)
  })
})
