import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../../src/common/errors.js'
import { AssociationRegistry } from '../../../../src/remote/association/association-registry.js'
import { catchErr } from '../../../helpers/catch-error.js'

const B = '10.0.0.2:4051'
const C = '10.0.0.3:4051'
const WALL0 = Date.UTC(2026, 10, 30, 10, 0, 0)
const frame = (): Uint8Array => new Uint8Array(16)
const tell = (authority: string, key = 'a') => ({ pid: `grain://${authority}/counter/${key}`, kind: 'counter', key, messageType: 1 })

function setup(config: ConstructorParameters<typeof AssociationRegistry>[0] = {}): { reg: AssociationRegistry; clock: { nowMs: number } } {
  const clock = { nowMs: 0 }
  const reg = new AssociationRegistry({ ...config, wallClock: () => WALL0 + clock.nowMs })
  return { reg, clock }
}

describe('AssociationRegistry', () => {
  it('uses the documented defaults', () => {
    const { reg } = setup()
    expect(reg.config).toEqual({ deferredQueueLimit: 10_000, deferredQueueBytes: 64 * 1024 * 1024, quarantineDeadlineMs: 30_000, maxConsecutiveFailures: 5, maxInboundPauseMs: 250, writableBufferedBytes: 4 * 1024 * 1024 })
    expect(Object.isFrozen(reg.config)).toBe(true)
    const a = reg.get(B)
    expect(a.queue.limit).toBe(10_000)
    expect(a.queue.maxBytes).toBe(64 * 1024 * 1024)
  })

  it('creates one association per authority, on first get; peek never creates', () => {
    const { reg } = setup({ config: { deferredQueueLimit: 7 } })
    expect(reg.peek(B)).toBeUndefined()
    expect(reg.size).toBe(0)
    const a = reg.get(B)
    expect(reg.get(B)).toBe(a)
    expect(reg.peek(B)).toBe(a)
    expect(a.authority).toBe(B)
    expect(a.queue.limit).toBe(7)
    expect([...reg.authorities()]).toEqual([B])
  })

  it('refuses invalid config with one ERR_CONFIG_INVALID listing every issue', () => {
    const e = catchErr(() => new AssociationRegistry({ config: { deferredQueueLimit: 0, quarantineDeadlineMs: -5 } }))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).details.issues).toEqual([
      'association.deferredQueueLimit must be an integer ≥ 1 (got 0)',
      'association.quarantineDeadlineMs must be an integer ≥ 1 (got -5)',
    ])
  })

  it('drains the output of every association in the order it happened', () => {
    const { reg, clock } = setup()
    reg.get(B).connected('nb', clock.nowMs)
    clock.nowMs = 1
    reg.get(C).quarantine('operator', clock.nowMs)
    clock.nowMs = 2
    reg.get(B).disconnected('closed', clock.nowMs)
    const out = reg.drain()
    expect(out.events.map((e) => [e.type, (e as { authority?: string }).authority])).toEqual([
      ['association.state', B],
      ['association.state', C],
      ['association.quarantined', C],
      ['association.state', B],
    ])
    expect(out.audit.map((l) => l.split(' ').slice(0, 4).join(' '))).toEqual([
      `2026-11-30T10:00:00.000Z association ${B} connected`,
      `2026-11-30T10:00:00.001Z association ${C} quarantined`,
      `2026-11-30T10:00:00.002Z association ${B} disconnected`,
    ])
    expect(reg.drain()).toEqual({ events: [], audit: [], rejected: [] })
  })

  it('poll releases exactly the quarantines that are due, across all authorities', () => {
    const { reg, clock } = setup({ config: { quarantineDeadlineMs: 1_000 } })
    reg.quarantine(B, 'x', 0)
    reg.quarantine(C, 'y', 500)
    expect(reg.nextDeadlineMs()).toBe(1_000)
    expect(reg.poll(999)).toEqual([])
    expect(reg.poll(1_000)).toEqual([B])
    expect(reg.get(B).state).toBe('disconnected')
    expect(reg.get(C).state).toBe('quarantined')
    expect(reg.nextDeadlineMs()).toBe(1_500)
    clock.nowMs = 1_500
    expect(reg.poll(1_500)).toEqual([C])
    expect(reg.nextDeadlineMs()).toBeUndefined()
    expect(reg.stats.releases).toEqual({ deadline: 2, manual: 0, 'incarnation-ended': 0 })
  })

  it('manual release: true when quarantined, false otherwise, typed error for an unknown authority', () => {
    const { reg } = setup()
    reg.quarantine(B, 'operator', 0)
    reg.drain()
    expect(reg.release(B, 10)).toBe(true)
    expect(reg.get(B).state).toBe('disconnected')
    expect(reg.drain().events).toContainEqual({ type: 'association.released', authority: B, reason: 'manual', at: WALL0 })
    expect(reg.release(B, 20)).toBe(false)
    const e = catchErr(() => reg.release('10.9.9.9:1', 0))
    expect(GrainClusterError.is(e, 'ERR_AUTHORITY_UNREACHABLE')).toBe(true)
    expect((e as GrainClusterError).details).toEqual({ authority: '10.9.9.9:1' })
    expect(reg.peek('10.9.9.9:1')).toBeUndefined()
  })

  it('resolve gives the status for PID resolution, with reason, until and the error to return (spec 2.3)', () => {
    const { reg, clock } = setup()
    expect(reg.resolve(B)).toEqual({ status: 'disconnected', nodeId: undefined })
    expect(reg.peek(B)).toBeUndefined() // resolving does not create
    reg.get(B).connected('nb', 0)
    expect(reg.resolve(B)).toEqual({ status: 'connected', nodeId: 'nb' })
    clock.nowMs = 2_000
    reg.get(B).invalidAssociation('handshake failed', 2_000)
    const q = reg.resolve(B)
    expect(q.status).toBe('quarantined')
    if (q.status !== 'quarantined') throw new Error('unreachable')
    expect(q.reason).toBe('invalid association: handshake failed')
    expect(q.until).toBe(WALL0 + 32_000)
    expect(q.error.code).toBe('ERR_AUTHORITY_QUARANTINED')
    expect(q.error.details).toEqual({ authority: B, nodeId: 'nb', reason: 'invalid association: handshake failed', until: WALL0 + 32_000 })
    reg.release(B, 3_000)
    expect(reg.resolve(B)).toEqual({ status: 'disconnected', nodeId: 'nb' })
    reg.remove(B, 'member removed', 4_000)
    const r = reg.resolve(B)
    expect(r.status).toBe('removed')
    expect(r.status === 'removed' && [r.reason, r.error.code]).toEqual(['member removed', 'ERR_AUTHORITY_REMOVED'])
  })

  it('forget drops a removed association so a new incarnation starts fresh', () => {
    const { reg } = setup()
    reg.remove(B, 'member removed', 0)
    expect(reg.get(B).send(frame(), tell(B), 0).action).toBe('refused')
    expect(reg.forget(B)).toBe(true)
    expect(reg.forget(B)).toBe(false)
    const fresh = reg.get(B)
    expect(fresh.removed).toBe(false)
    expect(fresh.send(frame(), tell(B), 0)).toEqual({ action: 'deferred', evicted: 0 })
  })

  it('counts for metrics across associations: deferred, dropped by reason, quarantines, releases, drained; gauges', () => {
    const { reg } = setup({ config: { deferredQueueLimit: 2 } })
    for (let i = 0; i < 3; i++) reg.get(B).send(frame(), tell(B), 0) // 1 overflow
    for (let i = 0; i < 2; i++) reg.get(C).send(frame(), tell(C), 0)
    expect(reg.gauges()).toEqual({ deferredMessages: 4, deferredBytes: 64, connected: 0, disconnected: 2, quarantined: 0 })
    reg.quarantine(C, 'operator', 0) // 2 rejected
    reg.release(C, 1)
    const c = reg.get(B).connected('nb', 1)
    expect(c.ok && c.drain.length).toBe(2)
    reg.get(C).send(frame(), tell(C), 2)
    expect(reg.gauges()).toEqual({ deferredMessages: 1, deferredBytes: 16, connected: 1, disconnected: 1, quarantined: 0 })
    expect(reg.stats).toMatchObject({
      deferred: 6,
      drained: 2,
      dropped: { overflow: 1, quarantined: 2, removed: 0 },
      quarantines: 1,
      releases: { deadline: 0, manual: 1 },
      connects: 1,
    })
    const out = reg.drain()
    expect(out.rejected.map((r) => [r.authority, r.cause])).toEqual([
      [B, 'overflow'],
      [C, 'quarantined'],
      [C, 'quarantined'],
    ])
    expect(out.events.filter((e) => e.type === 'deadletter')).toHaveLength(3)
    // Forgotten associations keep their counts in the totals.
    reg.forget(C)
    expect(reg.stats.dropped.quarantined).toBe(2)
  })
})
