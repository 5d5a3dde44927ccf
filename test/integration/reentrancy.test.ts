/**
 * Call-chain reentrancy on a real node (two workers): a call that the call
 * holding a key caused (a grain asking itself, A → B → A across workers)
 * runs inside that call instead of waiting behind it until the ask times
 * out, while calls from other chains still wait for the key; a kind with
 * `callChainReentrancy: false` refuses such a call with ERR_GRAIN_DEADLOCK.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GrainClusterError, GrainNode, type RuntimeEvent } from '../../src/index.js'
import { partitionOf } from '../../src/common/hash.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
const PARTITIONS = 8
const WORKERS = 2
/** Outer calls get this long; a call stuck behind its own caller would wait the node's 10 s ask timeout. */
const CALL = { timeoutMs: 5_000 }

/** A fresh key with this prefix that worker `w` owns. */
function keyOnWorker(prefix: string, w: number): string {
  for (let i = 0; i < 10_000; i++) {
    const key = `${prefix}-${i}`
    if (partitionOf(key, PARTITIONS) % WORKERS === w) return key
  }
  throw new Error(`no key for worker ${w}`)
}

describe('call-chain reentrancy', () => {
  let node: GrainNode
  const events: RuntimeEvent[] = []

  beforeAll(async () => {
    node = await GrainNode.start({ grains: GRAINS, workers: WORKERS, partitions: PARTITIONS })
    node.events.subscribe('grain.activated', (e) => events.push(e))
  })
  afterAll(async () => {
    await node?.close()
  })

  it('a grain that asks itself is answered inside its own call', async () => {
    expect(await node.ask('chain', 'self-1', 'self', undefined, CALL)).toBe(10)
    expect(await node.ask('chain', 'self-1', 'log')).toEqual(['self', 'bump:10'])
  })

  it('A → B → A across workers, and a ping-pong three levels deep, re-enter both keys', async () => {
    const a = keyOnWorker('cycle-a', 0)
    const b = keyOnWorker('cycle-b', 1)
    expect(await node.ask('chain', a, 'ping', { peer: b, depth: 0 }, CALL)).toBe(1)
    expect(await node.ask('chain', a, 'log')).toEqual(['ping:0', 'bump:1', 'done:0'])
    const a2 = keyOnWorker('deep-a', 0)
    const b2 = keyOnWorker('deep-b', 1)
    expect(await node.ask('chain', a2, 'ping', { peer: b2, depth: 3 }, CALL)).toBe(1)
    expect(await node.ask('chain', a2, 'log')).toEqual(['ping:3', 'ping:2', 'ping:1', 'ping:0', 'bump:1', 'done:0', 'done:1', 'done:2', 'done:3'])
    expect(await node.ask('chain', b2, 'log')).toEqual(['pong:3', 'pong:2', 'pong:1', 'pong:0'])
  })

  it('a call from another chain still waits for the key: it runs after the whole chain', async () => {
    const a = keyOnWorker('excl-a', 0)
    const b = keyOnWorker('excl-b', 1)
    let settled = false
    // B pauses 1.5 s before it calls back into A, while A's ping holds A.
    const ping = node.ask('chain', a, 'ping', { peer: b, depth: 0, pauseMs: 1_500 }, CALL).finally(() => {
      settled = true
    })
    await waitUntil(() => events.some((e) => e.type === 'grain.activated' && e.key === b), { what: 'pong started on B' })
    const outside = node.ask('chain', a, 'bump', 100, CALL)
    expect(settled).toBe(false)
    expect(await ping).toBe(1)
    expect(await outside).toBe(101)
    expect(await node.ask('chain', a, 'log')).toEqual(['ping:0', 'bump:1', 'done:0', 'bump:100'])
  })

  it('without call-chain reentrancy a cycle fails at once with ERR_GRAIN_DEADLOCK, and the key stays usable', async () => {
    const started = performance.now()
    const e = await node.ask('chain-strict', 'strict-1', 'self', undefined, CALL).then(
      () => undefined,
      (x: unknown) => x,
    )
    expect(GrainClusterError.is(e, 'ERR_GRAIN_DEADLOCK'), String(e)).toBe(true)
    expect((e as GrainClusterError).reason).toContain('call cycle')
    expect((e as GrainClusterError).details).toMatchObject({ kind: 'chain-strict', key: 'strict-1', method: 'bump' })
    // Refused on arrival, not after the 10 s ask timeout.
    expect(performance.now() - started).toBeLessThan(CALL.timeoutMs)
    expect(await node.ask('chain-strict', 'strict-1', 'bump', 2, CALL)).toBe(2)
    const a = keyOnWorker('strict-a', 0)
    const b = keyOnWorker('strict-b', 1)
    const e2 = await node.ask('chain-strict', a, 'ping', { peer: b, depth: 0 }, CALL).then(
      () => undefined,
      (x: unknown) => x,
    )
    expect(GrainClusterError.is(e2, 'ERR_GRAIN_DEADLOCK'), String(e2)).toBe(true)
  })

  it('an interleave method answers while another call holds the key, ahead of the calls queued behind it', async () => {
    const hold = node.ask('interleaving', 'il-1', 'hold', undefined, CALL)
    const status = (): Promise<{ busy: boolean; log: string[] }> => node.ask('interleaving', 'il-1', 'status', undefined, { timeoutMs: 1_000 })
    await waitUntil(async () => (await status()).busy, { what: 'status while hold runs' })
    const write = node.ask('interleaving', 'il-1', 'write', 'w1', CALL)
    // The write waits for hold; status waits for neither.
    // Sent after the write (same ring, in order): the write is queued behind hold by the time status runs.
    expect(await status()).toEqual({ busy: true, log: ['hold'] })
    await node.ask('interleaving', 'opener', 'open', 'il-1')
    await Promise.all([hold, write])
    expect(await status()).toEqual({ busy: false, log: ['hold', 'held', 'w1'] })
  })

  it("an interleave call's asks carry its own call chain, not the holder's: what they cause waits for the key", async () => {
    const key = keyOnWorker('il-chain', 0)
    const via = keyOnWorker('il-via', 1)
    // hold keeps the key as part of a chain (it asked another key first).
    const hold = node.ask('interleaving', key, 'holdChained', undefined, CALL)
    const status = (): Promise<{ busy: boolean; log: string[] }> => node.ask('interleaving', key, 'status', undefined, { timeoutMs: 1_000 })
    await waitUntil(async () => (await status()).busy, { what: 'status while holdChained runs' })
    // poke runs beside hold and asks `via` to write into this key: that call is not hold's, so it waits.
    const poke = node.ask('interleaving', key, 'poke', via, CALL)
    // The write reaches the key: run inside hold (its log), or queued behind it (the workers' report, about once a second).
    const queued = async (): Promise<boolean> => /graincluster_rpc_queued_calls\{kind="interleaving"\} 1\b/.test(await node.metricsText())
    await waitUntil(async () => (await status()).log.includes('poked') || (await queued()), { what: "poke's write at the key", timeoutMs: 10_000 })
    expect((await status()).log).toEqual(['hold'])
    await node.ask('interleaving', 'opener', 'open', key)
    await Promise.all([hold, poke])
    expect(await status()).toEqual({ busy: false, log: ['hold', 'held', 'poked'] })
  })

  it('rejects a callChainReentrancy that is not a boolean, and bad interleave lists', async () => {
    const { defineGrain } = await import('../../src/index.js')
    expect(() => defineGrain({ kind: 'bad-reentrancy', callChainReentrancy: 'yes' as unknown as boolean, handlers: { m: () => 1 } })).toThrow(/callChainReentrancy must be a boolean/)
    expect(() => defineGrain({ kind: 'bad-interleave', interleave: ['nope' as 'm'], handlers: { m: () => 1 } })).toThrow(/interleave names "nope", which is not a handler/)
    expect(() => defineGrain({ kind: 'both', readOnly: ['m'], interleave: ['m'], handlers: { m: () => 1 } })).toThrow(/both readOnly and interleave/)
  })

  it('rejects payload and result schemas that name no handler or are not plain JSON Schema objects', async () => {
    const { defineGrain } = await import('../../src/index.js')
    expect(() => defineGrain({ kind: 'bad-schemas', payloadSchemas: { nope: { type: 'string' } } as never, handlers: { m: () => 1 } })).toThrow(/payloadSchemas names "nope", which is not a handler/)
    expect(() => defineGrain({ kind: 'bad-schemas', payloadSchemas: { m: 'string' as never }, handlers: { m: () => 1 } })).toThrow(/payloadSchemas.m must be a JSON Schema object/)
    expect(() => defineGrain({ kind: 'bad-schemas', payloadSchemas: { m: { type: 'string', format: () => 1 } }, handlers: { m: () => 1 } })).toThrow(/payloadSchemas.m must be a JSON Schema object/)
    expect(defineGrain({ kind: 'good-schemas', payloadSchemas: { m: { type: 'array', items: { type: 'number' } } }, handlers: { m: () => 1 } }).payloadSchemas).toBeDefined()
    const { defineStatelessGrain } = await import('../../src/index.js')
    expect(() => defineStatelessGrain({ kind: 'bad-stateless', payloadSchemas: { nope: {} } as never, handlers: { m: () => 1 } })).toThrow(/payloadSchemas names "nope"/)
    // resultSchemas are checked the same way, and both lists' problems are named together.
    expect(() => defineGrain({ kind: 'bad-results', payloadSchemas: { nope: {} } as never, resultSchemas: { m: [] as never }, handlers: { m: () => 1 } })).toThrow(
      /payloadSchemas names "nope", which is not a handler; resultSchemas.m must be a JSON Schema object/,
    )
    expect(() => defineStatelessGrain({ kind: 'bad-stateless', resultSchemas: { nope: {} } as never, handlers: { m: () => 1 } })).toThrow(/resultSchemas names "nope"/)
  })
})
