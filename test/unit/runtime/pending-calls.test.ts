import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { PendingCalls } from '../../../src/runtime/host/pending-calls.js'
import { waitUntil } from '../../helpers/wait-until.js'

const info = (worker: number, authority?: string) => ({ kind: 'k', key: 'x', method: 'm', worker, ...(authority === undefined ? {} : { authority }) })
const err = (): GrainClusterError => new GrainClusterError('ERR_NODE_CLOSED', 'test')

/** Counts per local worker drive the reply pumps' spinning: every way a call ends must release it. */
describe('PendingCalls.onWorker', () => {
  it('lastCallAt: when the latest call to each local worker was registered (remote calls count for none)', async () => {
    const p = new PendingCalls(60_000)
    expect(p.lastCallAt(0)).toBe(Number.NEGATIVE_INFINITY)
    const t0 = performance.now()
    const first = p.add(p.nextId(), info(0), undefined).catch(() => undefined)
    const at0 = p.lastCallAt(0)
    expect(at0).toBeGreaterThanOrEqual(t0)
    expect(at0).toBeLessThanOrEqual(performance.now())
    await waitUntil(() => performance.now() > at0 + 2, { what: 'the clock to move' })
    const remote = p.add(p.nextId(), info(-1, 'peer:1'), undefined).catch(() => undefined)
    expect(p.lastCallAt(0)).toBe(at0)
    const second = p.add(p.nextId(), info(0), undefined).catch(() => undefined)
    expect(p.lastCallAt(0)).toBeGreaterThan(at0)
    expect(p.lastCallAt(1)).toBe(Number.NEGATIVE_INFINITY)
    p.failAll(err)
    await Promise.all([first, remote, second])
  })

  it('counts calls per local worker only, and every way a call ends releases its count', async () => {
    const p = new PendingCalls(60_000)
    const settled: Promise<unknown>[] = []
    const add = (w: number, authority?: string, timeoutMs?: number): number => {
      const id = p.nextId()
      settled.push(p.add(id, info(w, authority), timeoutMs).catch(() => undefined))
      return id
    }
    const a0 = add(0)
    add(0)
    add(1)
    add(-1, 'peer:1') // remote: waits on a socket, counted nowhere
    add(-1, 'peer:2')
    expect([p.onWorker(0), p.onWorker(1), p.onWorker(2), p.size]).toEqual([2, 1, 0, 5])

    p.take(a0)!.resolve(1)
    expect(p.onWorker(0)).toBe(1)
    expect(p.take(a0)).toBeUndefined() // a second take changes nothing
    expect(p.onWorker(0)).toBe(1)

    expect(p.failWorker(0, err)).toBe(1)
    expect([p.onWorker(0), p.onWorker(1)]).toEqual([0, 1])
    expect(p.failAuthority('peer:1', err)).toBe(1)
    expect([p.onWorker(1), p.size]).toEqual([1, 2])

    add(1, undefined, 5) // its own timer
    expect(p.onWorker(1)).toBe(2)
    await waitUntil(() => p.onWorker(1) === 1, { what: 'timed-out call released' })

    expect(p.failAll(err)).toBe(2)
    expect([p.onWorker(0), p.onWorker(1), p.size]).toEqual([0, 0, 0])
    add(1)
    expect(p.onWorker(1)).toBe(1) // counting resumes after failAll
    p.failAll(err)
    await Promise.all(settled)
  })

  it('the shared sweep releases expired calls', async () => {
    const p = new PendingCalls(20) // default timeout: the sweeper, not a timer per call
    const done = p.add(p.nextId(), info(3), undefined).catch((e: unknown) => e)
    expect(p.onWorker(3)).toBe(1)
    const e = await done
    expect(GrainClusterError.is(e, 'ERR_GRAIN_TIMEOUT')).toBe(true)
    expect(p.onWorker(3)).toBe(0)
  })
})
