import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../../src/common/errors.js'
import type { EventInit, RuntimeEvent } from '../../../../src/observability/events.js'
import { Association, type AssociationOptions, type SendOutcome } from '../../../../src/remote/association/association.js'
import type { DeferredMessage, OutboundMeta } from '../../../../src/remote/association/deferred-queue.js'

const AUTH = '127.0.0.1:4051'
const WALL0 = Date.UTC(2026, 10, 30, 10, 0, 0) // 2026-11-30T10:00:00.000Z
const ISO0 = '2026-11-30T10:00:00.000Z'

/** Monotonic owner clock (starts at 0) plus a wall clock offset from it. */
class ManualClock {
  nowMs = 0
  advance(ms: number): number {
    this.nowMs += ms
    return this.nowMs
  }
  readonly wall = (): number => WALL0 + this.nowMs
}

function setup(over: Partial<AssociationOptions['config']> = {}): { a: Association; clock: ManualClock } {
  const clock = new ManualClock()
  const a = new Association({ authority: AUTH, config: over, wallClock: clock.wall })
  return { a, clock }
}

/** A frame carrying `seq` (u32 LE) in its first 4 bytes. */
function frame(seq: number, bytes = 8): Uint8Array {
  const f = new Uint8Array(bytes)
  new DataView(f.buffer).setUint32(0, seq, true)
  return f
}
const seqOfFrame = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(0, true)
const seqs = (ms: readonly DeferredMessage[]): number[] => ms.map((m) => seqOfFrame(m.frame))
const pid = (key: string): string => `grain://${AUTH}/counter/${key}`
const tell = (key = 'a'): OutboundMeta => ({ pid: pid(key), kind: 'counter', key, messageType: 3 })
const ask = (askId: number, key = 'a'): OutboundMeta => ({ pid: pid(key), kind: 'counter', key, messageType: 4, askId })

const types = (events: readonly EventInit<RuntimeEvent>[]): string[] => events.map((e) => e.type)
function expectRefused(r: SendOutcome, code: string): GrainClusterError {
  expect(r.action).toBe('refused')
  if (r.action !== 'refused') throw new Error('unreachable')
  expect(GrainClusterError.is(r.error, code as never)).toBe(true)
  return r.error
}

describe('Association: connected / disconnected', () => {
  it('starts Disconnected: sends are deferred and nothing is published', () => {
    const { a, clock } = setup()
    expect(a.state).toBe('disconnected')
    expect(a.mayConnect()).toBe(true)
    expect(a.send(frame(1), tell(), clock.nowMs)).toEqual({ action: 'deferred', evicted: 0 })
    expect(a.queue.size).toBe(1)
    expect(a.queue.bytes).toBe(8)
    expect(a.stats.deferred).toBe(1)
    expect(a.drain()).toEqual({ events: [], audit: [], rejected: [] })
  })

  it('connect drains the deferred queue in order and publishes the drained count (spec 3.5)', () => {
    const { a, clock } = setup()
    for (let i = 0; i < 3; i++) a.send(frame(i), tell(`k${i % 2}`), clock.advance(10))
    const r = a.connected('node-b', clock.nowMs)
    expect(r.ok).toBe(true)
    expect(r.ok && seqs(r.drain)).toEqual([0, 1, 2])
    expect(r.ok && r.drain.map((m) => m.enqueuedAtMs)).toEqual([10, 20, 30])
    expect(a.state).toBe('connected')
    expect(a.nodeId).toBe('node-b')
    expect(a.queue.size).toBe(0)
    const out = a.drain()
    expect(out.events).toEqual([
      { type: 'association.state', authority: AUTH, nodeId: 'node-b', from: 'disconnected', to: 'connected', reason: 'connected', at: WALL0 + 30 },
      { type: 'association.drained', authority: AUTH, drained: 3, at: WALL0 + 30 },
    ])
    expect(out.audit).toEqual(['2026-11-30T10:00:00.030Z association 127.0.0.1:4051 connected nodeId=node-b drained=3'])
    expect(a.stats.drained).toBe(3)
    expect(a.stats.connects).toBe(1)
  })

  it('connect with an empty queue publishes no drained event; a later connect is a reconnect', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    expect(types(a.drain().events)).toEqual(['association.state'])
    expect(a.disconnected('peer closed', clock.advance(5))).toBe('disconnected')
    const d = a.drain()
    expect(d.events).toEqual([
      { type: 'association.state', authority: AUTH, nodeId: 'node-b', from: 'connected', to: 'disconnected', reason: 'peer closed', at: WALL0 + 5 },
    ])
    expect(d.audit).toEqual(['2026-11-30T10:00:00.005Z association 127.0.0.1:4051 disconnected reason="peer closed"'])
    expect(a.nodeId).toBe('node-b') // remembered across the disconnect
    a.connected('node-b', clock.advance(5))
    const r = a.drain()
    expect(r.events).toEqual([
      { type: 'association.state', authority: AUTH, nodeId: 'node-b', from: 'disconnected', to: 'connected', reason: 'reconnected', at: WALL0 + 10 },
    ])
    expect(r.audit).toEqual(['2026-11-30T10:00:00.010Z association 127.0.0.1:4051 reconnected nodeId=node-b drained=0'])
  })

  it('a single deferred message is drained and published with count 1', () => {
    const { a, clock } = setup()
    a.send(frame(7), ask(1), clock.nowMs)
    const r = a.connected('node-b', clock.nowMs)
    expect(r.ok && seqs(r.drain)).toEqual([7])
    expect(a.drain().events).toContainEqual({ type: 'association.drained', authority: AUTH, drained: 1, at: WALL0 })
  })

  it('while Connected, sends are written directly, in call order', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    a.drain()
    for (let i = 0; i < 5; i++) expect(a.send(frame(i), tell(), clock.nowMs)).toEqual({ action: 'write' })
    expect(a.stats.written).toBe(5)
    expect(a.queue.size).toBe(0)
    expect(a.drain().events).toEqual([])
  })

  it('disconnected() when not connected changes nothing and publishes nothing', () => {
    const { a, clock } = setup()
    expect(a.disconnected('again', clock.nowMs)).toBe('disconnected')
    expect(a.drain()).toEqual({ events: [], audit: [], rejected: [] })
    expect(a.stats.disconnects).toBe(0)
  })

  it('a different NodeId without an expectation is a new incarnation: accepted and reported', () => {
    const { a, clock } = setup()
    a.connected('node-b1', clock.nowMs)
    a.disconnected('restart', clock.nowMs)
    a.drain()
    const r = a.connected('node-b2', clock.nowMs)
    expect(r.ok).toBe(true)
    expect(a.nodeId).toBe('node-b2')
    const out = a.drain()
    expect(out.events[0]).toMatchObject({ type: 'association.state', to: 'connected', nodeId: 'node-b2', reason: 'reconnected (new incarnation; was node-b1)' })
    expect(out.audit).toEqual([`${ISO0} association ${AUTH} reconnected nodeId=node-b2 previousNodeId=node-b1 drained=0`])
  })

  it("never drains what was queued for one incarnation into the next: it is rejected as removed", () => {
    const { a, clock } = setup()
    a.connected('node-b1', clock.nowMs)
    a.disconnected('crash', clock.nowMs)
    a.send(frame(1), tell('x'), clock.nowMs)
    a.send(frame(2), ask(7, 'x'), clock.nowMs)
    a.drain()
    const r = a.connected('node-b2', clock.nowMs)
    expect(r.ok && r.drain).toEqual([])
    expect(a.queue.size).toBe(0)
    const out = a.drain()
    expect(out.rejected.map((m) => [m.cause, m.code, m.meta.askId])).toEqual([
      ['removed', 'ERR_AUTHORITY_REMOVED', undefined],
      ['removed', 'ERR_AUTHORITY_REMOVED', 7],
    ])
    expect(out.rejected[1]!.toError().reason).toContain('incarnation node-b1 was replaced by node-b2')
    expect(types(out.events)).toEqual(['deadletter', 'deadletter', 'association.state'])
    expect(out.audit[0]).toBe(`${ISO0} association ${AUTH} incarnation-ended nodeId=node-b1 reason="incarnation node-b1 was replaced by node-b2" refused=2`)
    // The association itself goes on with the new incarnation.
    expect(a.state).toBe('connected')
    expect(a.send(frame(3), tell('x'), clock.nowMs)).toEqual({ action: 'write' })
  })

  it('what is queued after an incarnation ended is for the next one: it drains to it', () => {
    const { a, clock } = setup()
    a.connected('node-b1', clock.nowMs)
    a.disconnected('crash', clock.nowMs)
    a.send(frame(1), tell('x'), clock.nowMs)
    expect(a.incarnationEnded('node-b1', 'was replaced by node-b2', clock.nowMs)).toBe(1)
    // The new member is known before it connects: sends to it wait in the queue.
    a.send(frame(2), tell('x'), clock.nowMs)
    a.drain()
    const r = a.connected('node-b2', clock.nowMs)
    expect(r.ok && seqs(r.drain)).toEqual([2])
    expect(a.drain().rejected).toEqual([])
  })

  it('notWritten: asks the driver withdrew are not counted as drained', () => {
    const { a, clock } = setup()
    for (let i = 0; i < 3; i++) a.send(frame(i), tell(), clock.nowMs)
    a.connected('node-b', clock.nowMs)
    a.notWritten(1)
    expect(a.drain().events.flatMap((e) => (e.type === 'association.drained' ? [e.drained] : []))).toEqual([2])
  })

  it('incarnationEnded rejects the queue of that incarnation (or of none yet), ignores another, and keeps a quarantine', () => {
    const { a, clock } = setup()
    // Never connected: the queue was resolved against the member that is now gone.
    a.send(frame(1), tell(), clock.nowMs)
    expect(a.incarnationEnded('node-b1', 'was downed', clock.nowMs)).toBe(1)
    expect(a.drain().rejected.map((m) => m.details.reason)).toEqual(['was downed'])
    // Connected to b2 since: an event about b1 is stale.
    a.connected('node-b2', clock.nowMs)
    a.disconnected('gone', clock.nowMs)
    a.send(frame(2), tell(), clock.nowMs)
    a.drain()
    expect(a.incarnationEnded('node-b1', 'was removed', clock.nowMs)).toBe(0)
    expect(a.queue.size).toBe(1)
    expect(a.incarnationEnded('node-b2', 'was removed', clock.nowMs)).toBe(1)
    expect(a.state).toBe('disconnected')
    expect(a.removed).toBe(false)
    // A quarantine outlives the incarnation: its deadline still holds.
    a.quarantine('operator', clock.nowMs)
    a.drain()
    expect(a.incarnationEnded('node-b2', 'was removed', clock.nowMs)).toBe(0)
    expect(a.state).toBe('quarantined')
    expect(a.mayConnect()).toBe(false)
  })

  it('without a wall clock, the nowMs passed in is the event time', () => {
    const a = new Association({ authority: AUTH })
    a.connected('n', 1_700_000_000_000)
    const out = a.drain()
    expect(out.events[0]?.at).toBe(1_700_000_000_000)
    expect(out.audit[0]).toBe(`${new Date(1_700_000_000_000).toISOString()} association ${AUTH} connected nodeId=n drained=0`)
  })
})

describe('Association: deferred-queue overflow (spec 3.2)', () => {
  it('drops the oldest to DeadLetter with a reason; the rest drain in order', () => {
    const { a, clock } = setup({ deferredQueueLimit: 3 })
    const outcomes = [0, 1, 2, 3, 4].map((i) => a.send(frame(i), i === 0 ? ask(70) : tell(), clock.advance(1)))
    expect(outcomes.map((o) => (o.action === 'deferred' ? o.evicted : -1))).toEqual([0, 0, 0, 1, 1])
    const out = a.drain()
    expect(out.rejected).toHaveLength(2)
    const [r0, r1] = out.rejected
    expect(r0).toMatchObject({ authority: AUTH, cause: 'overflow', code: 'ERR_AUTHORITY_QUEUE_OVERFLOW', enqueuedAtMs: 1, bytes: 8, meta: ask(70) })
    expect(r1).toMatchObject({ cause: 'overflow', enqueuedAtMs: 2, meta: tell() })
    expect(r0!.reason).toBe(`deferred queue of ${AUTH} is full (3 messages, 67108864 bytes): dropped the oldest message, to ${pid('a')}`)
    expect(Object.keys(r0!)).not.toContain('frame') // rejected messages do not keep frames alive
    const err = r0!.toError()
    expect(GrainClusterError.is(err, 'ERR_AUTHORITY_QUEUE_OVERFLOW')).toBe(true)
    expect(err.details).toEqual({ authority: AUTH, pid: pid('a'), limit: 3 })
    expect(err.retryable).toBe(true)
    expect(out.events).toEqual([
      { type: 'deadletter', kind: 'counter', key: 'a', messageType: 4, code: 'ERR_AUTHORITY_QUEUE_OVERFLOW', reason: r0!.reason, at: WALL0 + 4 },
      { type: 'deadletter', kind: 'counter', key: 'a', messageType: 3, code: 'ERR_AUTHORITY_QUEUE_OVERFLOW', reason: r1!.reason, at: WALL0 + 5 },
    ])
    expect(a.stats.dropped.overflow).toBe(2)
    expect(a.queue.dropped).toBe(2)
    const c = a.connected('n', clock.nowMs)
    expect(c.ok && seqs(c.drain)).toEqual([2, 3, 4])
  })

  it('refuses a frame larger than the byte bound without dropping anything', () => {
    const { a, clock } = setup({ deferredQueueBytes: 100 })
    a.send(frame(0, 60), tell(), clock.nowMs)
    const err = expectRefused(a.send(frame(1, 101), tell('big'), clock.nowMs), 'ERR_AUTHORITY_QUEUE_OVERFLOW')
    expect(err.details).toEqual({ authority: AUTH, pid: pid('big'), size: 101, limit: 100 })
    expect(a.queue.size).toBe(1)
    expect(a.stats.refused.oversize).toBe(1)
    expect(a.drain().rejected).toEqual([])
    // The byte bound also evicts: 60 + 50 > 100 drops #0.
    expect(a.send(frame(2, 50), tell(), clock.nowMs)).toEqual({ action: 'deferred', evicted: 1 })
    expect(a.queue.bytes).toBe(50)
  })

  it('memory stays bounded under a 10× overload: size and bytes never exceed the configured bounds', () => {
    const limit = 1_000
    const maxBytes = 64 * 1024
    const { a, clock } = setup({ deferredQueueLimit: limit, deferredQueueBytes: maxBytes })
    let seed = 1
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24
    let sentBytes = 0
    let rejected = 0
    for (let i = 0; i < 10 * limit; i++) {
      const bytes = 4 + Math.floor(rand() * 200)
      sentBytes += bytes
      const r = a.send(frame(i, bytes), tell(`k${i % 13}`), clock.advance(1))
      expect(r.action).toBe('deferred')
      expect(a.queue.size).toBeLessThanOrEqual(limit)
      expect(a.queue.bytes).toBeLessThanOrEqual(maxBytes)
      expect(a.queue.storageSlots).toBeLessThanOrEqual(limit)
      rejected += a.drain().rejected.length // the driver drains after each call
    }
    expect(sentBytes).toBeGreaterThan(10 * maxBytes) // it really was an overload in bytes too
    expect(a.queue.highWaterMark).toBeLessThanOrEqual(limit)
    expect(a.queue.highWaterBytes).toBeLessThanOrEqual(maxBytes)
    expect(rejected).toBe(a.stats.dropped.overflow)
    expect(rejected + a.queue.size).toBe(10 * limit)
    const c = a.connected('n', clock.nowMs)
    const drained = c.ok ? seqs(c.drain) : []
    expect(drained).toEqual(Array.from({ length: drained.length }, (_, i) => 10 * limit - drained.length + i))
  })
})

describe('Association: quarantine (spec 3.4, 4.1–4.4)', () => {
  it('rejects every queued message, refuses sends and connections, and reports it', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    a.disconnected('peer closed', clock.nowMs)
    a.send(frame(1), tell('x'), clock.advance(100))
    a.send(frame(2), ask(42, 'y'), clock.advance(100))
    a.send(frame(3), tell('x'), clock.advance(100))
    a.drain()
    expect(a.quarantine('operator', clock.advance(700))).toBe('quarantined')
    const out = a.drain()
    expect(types(out.events)).toEqual(['association.state', 'association.quarantined', 'deadletter', 'deadletter', 'deadletter'])
    expect(out.events[0]).toEqual({
      type: 'association.state',
      authority: AUTH,
      nodeId: 'node-b',
      from: 'disconnected',
      to: 'quarantined',
      reason: 'operator',
      at: WALL0 + 1_000,
    })
    expect(out.events[1]).toEqual({
      type: 'association.quarantined',
      authority: AUTH,
      nodeId: 'node-b',
      reason: 'operator',
      until: WALL0 + 31_000,
      refused: 3,
      at: WALL0 + 1_000,
    })
    expect(out.audit).toEqual([
      '2026-11-30T10:00:01.000Z association 127.0.0.1:4051 quarantined nodeId=node-b reason="operator" until=2026-11-30T10:00:31.000Z refused=3',
    ])
    // Every queued message is returned with a quarantine status; the ask can be failed by id.
    expect(out.rejected.map((r) => [r.cause, r.code, r.meta.askId, r.enqueuedAtMs])).toEqual([
      ['quarantined', 'ERR_AUTHORITY_QUARANTINED', undefined, 100],
      ['quarantined', 'ERR_AUTHORITY_QUARANTINED', 42, 200],
      ['quarantined', 'ERR_AUTHORITY_QUARANTINED', undefined, 300],
    ])
    const askErr = out.rejected[1]!.toError()
    expect(askErr.code).toBe('ERR_AUTHORITY_QUARANTINED')
    expect(askErr.details).toEqual({ authority: AUTH, pid: pid('y'), reason: 'operator', until: WALL0 + 31_000 })
    expect(a.queue.size).toBe(0)
    expect(a.stats.dropped.quarantined).toBe(3)
    expect(a.stats.quarantines).toBe(1)

    // Sends are refused with a typed error carrying authority, reason and until (spec 2.3, 4.2).
    const err = expectRefused(a.send(frame(4), tell('z'), clock.nowMs), 'ERR_AUTHORITY_QUARANTINED')
    expect(err.details).toEqual({ authority: AUTH, pid: pid('z'), nodeId: 'node-b', reason: 'operator', until: WALL0 + 31_000 })
    expect(err.reason).toBe(`authority ${AUTH} is quarantined until 2026-11-30T10:00:31.000Z: operator`)
    expect(a.stats.refused.quarantined).toBe(1)
    expect(a.queue.size).toBe(0)
    // Connections are refused.
    expect(a.mayConnect()).toBe(false)
    const c = a.connected('node-b', clock.nowMs)
    expect(c.ok).toBe(false)
    expect(!c.ok && c.error.code).toBe('ERR_AUTHORITY_QUARANTINED')
    expect(a.state).toBe('quarantined')
    expect(a.stats.connectionsRefused).toBe(1)
    // Failures during the quarantine do not count and change nothing.
    expect(a.failure('dial refused', clock.nowMs)).toBe('quarantined')
    expect(a.consecutiveFailures).toBe(0)
    expect(a.drain()).toEqual({ events: [], audit: [], rejected: [] })
  })

  it('quarantining a Connected association goes straight to Quarantined', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    a.drain()
    a.quarantine('bad frames', clock.nowMs)
    expect(a.drain().events[0]).toMatchObject({ type: 'association.state', from: 'connected', to: 'quarantined', reason: 'bad frames' })
    expect(a.refusal()?.code).toBe('ERR_AUTHORITY_QUARANTINED')
  })

  it('auto-releases at exactly the deadline via poll, not before (spec 4.3)', () => {
    const { a, clock } = setup({ quarantineDeadlineMs: 30_000 })
    clock.advance(1_000)
    a.quarantine('handshake failed', clock.nowMs)
    a.drain()
    expect(a.nextDeadlineMs).toBe(31_000)
    expect(a.quarantineInfo).toEqual({ reason: 'handshake failed', cause: 'manual', untilMs: 31_000, untilWallMs: WALL0 + 31_000 })
    clock.advance(29_999)
    expect(a.poll(clock.nowMs)).toBe(false)
    expect(a.state).toBe('quarantined')
    expect(a.drain().events).toEqual([])
    clock.advance(1)
    expect(a.poll(clock.nowMs)).toBe(true)
    expect(a.state).toBe('disconnected')
    expect(a.mayConnect()).toBe(true)
    expect(a.quarantineInfo).toBeUndefined()
    expect(a.nextDeadlineMs).toBeUndefined()
    const out = a.drain()
    expect(out.events).toEqual([
      { type: 'association.state', authority: AUTH, from: 'quarantined', to: 'disconnected', reason: 'quarantine released (deadline)', at: WALL0 + 31_000 },
      { type: 'association.released', authority: AUTH, reason: 'deadline', at: WALL0 + 31_000 },
    ])
    expect(out.audit).toEqual(['2026-11-30T10:00:31.000Z association 127.0.0.1:4051 released reason="deadline"'])
    expect(a.stats.releases).toEqual({ deadline: 1, manual: 0, 'incarnation-ended': 0 })
    expect(a.poll(clock.advance(100_000))).toBe(false)
  })

  it('manual release returns to Disconnected at once (spec 4.4); releasing when not quarantined is a no-op', () => {
    const { a, clock } = setup()
    expect(a.release(clock.nowMs, 'manual')).toBe(false)
    a.quarantine('x', clock.nowMs)
    a.drain()
    expect(a.release(clock.advance(5), 'manual')).toBe(true)
    expect(a.state).toBe('disconnected')
    const out = a.drain()
    expect(out.events).toEqual([
      { type: 'association.state', authority: AUTH, from: 'quarantined', to: 'disconnected', reason: 'quarantine released (manual)', at: WALL0 + 5 },
      { type: 'association.released', authority: AUTH, reason: 'manual', at: WALL0 + 5 },
    ])
    expect(out.audit).toEqual(['2026-11-30T10:00:00.005Z association 127.0.0.1:4051 released reason="manual"'])
    expect(a.release(clock.nowMs)).toBe(false)
    // The old deadline does not fire after a manual release.
    expect(a.poll(clock.advance(60_000))).toBe(false)
    expect(a.stats.releases).toEqual({ deadline: 0, manual: 1, 'incarnation-ended': 0 })
  })

  it('the deferred queue is reusable after a release: deferred → connect → drained in order with the right count', () => {
    const { a, clock } = setup()
    a.send(frame(100), tell(), clock.nowMs) // rejected by the quarantine below
    a.quarantine('operator', clock.nowMs)
    a.release(clock.advance(1), 'manual')
    a.drain()
    for (let i = 0; i < 4; i++) expect(a.send(frame(i), tell(`k${i % 2}`), clock.advance(1))).toEqual({ action: 'deferred', evicted: 0 })
    const c = a.connected('node-b', clock.advance(1))
    expect(c.ok && seqs(c.drain)).toEqual([0, 1, 2, 3])
    const out = a.drain()
    expect(out.events).toContainEqual({ type: 'association.drained', authority: AUTH, drained: 4, at: WALL0 + 6 })
    expect(out.rejected).toEqual([])
  })

  it('a second quarantine extends the deadline (never shortens it) without counting a new quarantine', () => {
    const { a, clock } = setup({ quarantineDeadlineMs: 30_000 })
    a.quarantine('first', clock.nowMs)
    a.drain()
    a.quarantine('second', clock.advance(10_000))
    const out = a.drain()
    expect(out.events).toEqual([{ type: 'association.quarantined', authority: AUTH, reason: 'second', until: WALL0 + 40_000, refused: 0, at: WALL0 + 10_000 }])
    expect(out.audit).toEqual(['2026-11-30T10:00:10.000Z association 127.0.0.1:4051 quarantine-extended reason="second" until=2026-11-30T10:00:40.000Z'])
    expect(a.stats.quarantines).toBe(1)
    expect(a.poll(30_000)).toBe(false)
    expect(a.poll(40_000)).toBe(true)
  })
})

describe('Association: failures and invalid associations (spec 4.1)', () => {
  it('maxConsecutiveFailures failures quarantine; not one fewer', () => {
    const { a, clock } = setup({ maxConsecutiveFailures: 5 })
    for (let i = 1; i <= 4; i++) expect(a.failure(`dial failed #${i}`, clock.advance(100))).toBe('disconnected')
    expect(a.consecutiveFailures).toBe(4)
    expect(a.drain().events).toEqual([])
    expect(a.failure('dial failed #5', clock.advance(100))).toBe('quarantined')
    const out = a.drain()
    expect(out.events[0]).toMatchObject({ type: 'association.state', from: 'disconnected', to: 'quarantined', reason: '5 consecutive failures (last: dial failed #5)' })
    expect(out.events[1]).toMatchObject({ type: 'association.quarantined', reason: '5 consecutive failures (last: dial failed #5)', until: WALL0 + 500 + 30_000 })
    expect(a.stats.failures).toBe(5)
  })

  it('a successful connection in between resets the count', () => {
    const { a, clock } = setup({ maxConsecutiveFailures: 5 })
    for (let i = 0; i < 4; i++) a.failure('dial failed', clock.advance(1))
    a.connected('node-b', clock.advance(1))
    expect(a.consecutiveFailures).toBe(0)
    a.disconnected('peer closed', clock.advance(1))
    for (let i = 0; i < 4; i++) expect(a.failure('dial failed', clock.advance(1))).toBe('disconnected')
    expect(a.failure('dial failed', clock.advance(1))).toBe('quarantined')
  })

  it('a failure while Connected disconnects and counts', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    a.drain()
    expect(a.failure('write EPIPE', clock.advance(3))).toBe('disconnected')
    expect(a.consecutiveFailures).toBe(1)
    const out = a.drain()
    expect(out.events).toEqual([
      { type: 'association.state', authority: AUTH, nodeId: 'node-b', from: 'connected', to: 'disconnected', reason: 'failure: write EPIPE', at: WALL0 + 3 },
    ])
    expect(out.audit).toEqual(['2026-11-30T10:00:00.003Z association 127.0.0.1:4051 disconnected reason="failure: write EPIPE"'])
  })

  it('a NodeId other than the expected one is an invalid association: quarantined at once', () => {
    const { a, clock } = setup()
    a.send(frame(1), ask(9), clock.nowMs)
    const c = a.connected('node-x', clock.advance(2), { expectedNodeId: 'node-b' })
    expect(c.ok).toBe(false)
    expect(!c.ok && c.error.code).toBe('ERR_AUTHORITY_QUARANTINED')
    expect(!c.ok && c.error.details.reason).toBe('invalid association: NodeId mismatch: expected node-b, got node-x')
    expect(a.state).toBe('quarantined')
    expect(a.nodeId).toBeUndefined() // the impostor's NodeId is not adopted
    const out = a.drain()
    expect(out.events[1]).toMatchObject({ type: 'association.quarantined', reason: 'invalid association: NodeId mismatch: expected node-b, got node-x', refused: 1 })
    expect(out.rejected.map((r) => r.meta.askId)).toEqual([9])
    expect(a.stats.connectionsRefused).toBe(1)
  })

  it('the expected NodeId connects normally', () => {
    const { a, clock } = setup()
    const c = a.connected('node-b', clock.nowMs, { expectedNodeId: 'node-b' })
    expect(c.ok).toBe(true)
    expect(a.state).toBe('connected')
  })

  it('a quarantine for failed connects ends when the incarnation they were to ends, so its successor can connect', () => {
    const { a, clock } = setup({ maxConsecutiveFailures: 2 })
    a.connected('node-b1', clock.nowMs)
    a.disconnected('peer closed', clock.advance(1))
    a.failure('ECONNREFUSED', clock.advance(1))
    expect(a.failure('ECONNREFUSED', clock.advance(1))).toBe('quarantined')
    expect(a.quarantineInfo).toMatchObject({ cause: 'failures', nodeId: 'node-b1' })
    a.drain()
    // Another incarnation's end says nothing about these failures.
    expect(a.incarnationEnded('node-b0', 'was removed', clock.advance(1))).toBe(0)
    expect(a.state).toBe('quarantined')
    a.incarnationEnded('node-b1', 'was downed', clock.advance(1))
    expect(a.state).toBe('disconnected')
    expect(a.mayConnect()).toBe(true)
    const out = a.drain()
    expect(out.events).toEqual([
      { type: 'association.state', authority: AUTH, nodeId: 'node-b1', from: 'quarantined', to: 'disconnected', reason: 'quarantine released (incarnation-ended)', at: WALL0 + 5 },
      { type: 'association.released', authority: AUTH, nodeId: 'node-b1', reason: 'incarnation-ended', at: WALL0 + 5 },
    ])
    expect(out.audit).toEqual(['2026-11-30T10:00:00.005Z association 127.0.0.1:4051 released reason="incarnation-ended"'])
    expect(a.stats.releases).toEqual({ deadline: 0, manual: 0, 'incarnation-ended': 1 })
    // The successor connects; the old deadline does not fire later.
    expect(a.connected('node-b2', clock.advance(1)).ok).toBe(true)
    expect(a.poll(clock.advance(60_000))).toBe(false)
  })

  it('a failure quarantine before any incarnation was known ends with the first one that ends', () => {
    const { a, clock } = setup({ maxConsecutiveFailures: 1 })
    a.failure('ECONNREFUSED', clock.nowMs)
    expect(a.quarantineInfo).toMatchObject({ cause: 'failures', nodeId: undefined })
    a.incarnationEnded('node-b1', 'was removed', clock.advance(1))
    expect(a.state).toBe('disconnected')
  })

  it('an invalid association or an operator extending a failure quarantine makes it hold to its deadline', () => {
    for (const extend of ['invalid', 'manual'] as const) {
      const { a, clock } = setup({ maxConsecutiveFailures: 1 })
      a.connected('node-b1', clock.nowMs)
      a.disconnected('peer closed', clock.nowMs)
      a.failure('ECONNREFUSED', clock.advance(1))
      if (extend === 'invalid') a.invalidAssociation('handshake failed', clock.advance(1))
      else a.quarantine('operator', clock.advance(1))
      expect(a.quarantineInfo?.cause).toBe(extend)
      a.incarnationEnded('node-b1', 'was downed', clock.advance(1))
      expect(a.state).toBe('quarantined')
      expect(a.poll(clock.advance(30_000))).toBe(true)
    }
  })

  it('invalidAssociation (e.g. failed handshake) quarantines from Disconnected', () => {
    const { a, clock } = setup()
    expect(a.invalidAssociation('handshake failed: bad proof', clock.nowMs)).toBe('quarantined')
    expect(a.drain().audit).toEqual([
      `${ISO0} association ${AUTH} quarantined reason="invalid association: handshake failed: bad proof" until=2026-11-30T10:00:30.000Z refused=0`,
    ])
  })
})

describe('Association: removal', () => {
  it('rejects queued messages with ERR_AUTHORITY_REMOVED and refuses everything afterwards', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    a.disconnected('gone', clock.nowMs)
    a.send(frame(1), ask(5), clock.nowMs)
    a.drain()
    expect(a.remove('member removed', clock.nowMs)).toBe(true)
    const out = a.drain()
    expect(out.events.map((e) => [e.type, 'code' in e ? e.code : undefined])).toEqual([['deadletter', 'ERR_AUTHORITY_REMOVED']]) // already Disconnected: no state event
    expect(out.audit).toEqual([`${ISO0} association ${AUTH} removed nodeId=node-b reason="member removed" refused=1`])
    expect(out.rejected[0]?.toError().details).toEqual({ authority: AUTH, pid: pid('a'), reason: 'member removed' })
    const err = expectRefused(a.send(frame(2), tell(), clock.nowMs), 'ERR_AUTHORITY_REMOVED')
    expect(err.details).toMatchObject({ authority: AUTH, nodeId: 'node-b', reason: 'member removed' })
    expect(a.mayConnect()).toBe(false)
    const c = a.connected('node-b', clock.nowMs)
    expect(!c.ok && c.error.code).toBe('ERR_AUTHORITY_REMOVED')
    a.quarantine('late', clock.nowMs)
    expect(a.state).toBe('disconnected')
    expect(a.remove('again', clock.nowMs)).toBe(false)
    expect(a.stats.dropped.removed).toBe(1)
    expect(a.stats.refused.removed).toBe(1)
  })

  it('removing a Connected association publishes the transition', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    a.drain()
    a.remove('downed', clock.nowMs)
    expect(a.drain().events).toEqual([
      { type: 'association.state', authority: AUTH, nodeId: 'node-b', from: 'connected', to: 'disconnected', reason: 'removed: downed', at: WALL0 },
    ])
  })
})

describe('Association: frames the transport handed back (unsent / flush)', () => {
  it('a refused write goes back in front and later sends queue behind it until flush', () => {
    const { a, clock } = setup()
    a.connected('node-b', clock.nowMs)
    a.drain()
    expect(a.send(frame(0), tell(), clock.nowMs)).toEqual({ action: 'write' })
    expect(a.send(frame(1), tell(), clock.nowMs)).toEqual({ action: 'write' })
    // The transport refused #1 (backpressure): hand it back.
    a.unsent([{ frame: frame(1), meta: tell(), enqueuedAtMs: clock.nowMs }], clock.nowMs)
    expect(a.stats.requeued).toBe(1)
    // #2 must not overtake #1.
    expect(a.send(frame(2), tell(), clock.advance(1))).toEqual({ action: 'deferred', evicted: 0 })
    const flushed = a.flush(clock.advance(1))
    expect(seqs(flushed)).toEqual([1, 2])
    expect(a.drain().events).toEqual([{ type: 'association.drained', authority: AUTH, drained: 2, at: WALL0 + 2 }])
    expect(a.send(frame(3), tell(), clock.nowMs)).toEqual({ action: 'write' })
    expect(a.flush(clock.nowMs)).toEqual([])
  })

  it('part of a reconnect drain handed back is re-queued ahead of newer sends', () => {
    const { a, clock } = setup()
    for (let i = 0; i < 4; i++) a.send(frame(i), tell(), clock.nowMs)
    const c = a.connected('node-b', clock.nowMs)
    const drain = c.ok ? c.drain : []
    // Transport took #0 and #1, then refused.
    a.unsent(drain.slice(2), clock.nowMs)
    a.disconnected('peer closed', clock.nowMs)
    a.send(frame(4), tell(), clock.nowMs)
    const again = a.connected('node-b', clock.nowMs)
    expect(again.ok && seqs(again.drain)).toEqual([2, 3, 4])
  })

  it('the drained event counts what was written: a part handed back at once is not counted, nor counted twice later', () => {
    const { a, clock } = setup()
    for (let i = 0; i < 4; i++) a.send(frame(i), tell(), clock.nowMs)
    const c = a.connected('node-b', clock.nowMs)
    a.unsent((c.ok ? c.drain : []).slice(1), clock.nowMs)
    const drained = (): number[] => a.drain().events.flatMap((e) => (e.type === 'association.drained' ? [e.drained] : []))
    expect(drained()).toEqual([1])
    // All three handed back again: the flush's event goes away entirely.
    a.unsent(a.flush(clock.nowMs), clock.nowMs)
    expect(drained()).toEqual([])
    a.flush(clock.nowMs)
    expect(drained()).toEqual([3])
  })

  it('handed back while quarantined: rejected with the quarantine status', () => {
    const { a, clock } = setup()
    a.quarantine('x', clock.nowMs)
    a.drain()
    a.unsent([{ frame: frame(1), meta: ask(3), enqueuedAtMs: 0 }], clock.nowMs)
    const out = a.drain()
    expect(out.rejected.map((r) => [r.cause, r.meta.askId])).toEqual([['quarantined', 3]])
    expect(a.queue.size).toBe(0)
  })

  it('handed back beyond the limit: the oldest handed-back messages are dropped', () => {
    const { a, clock } = setup({ deferredQueueLimit: 2 })
    a.send(frame(9), tell(), clock.nowMs)
    a.unsent([0, 1, 2].map((i) => ({ frame: frame(i), meta: tell(), enqueuedAtMs: 0 })), clock.nowMs)
    expect(a.drain().rejected.map((r) => r.cause)).toEqual(['overflow', 'overflow'])
    const c = a.connected('n', clock.nowMs)
    expect(c.ok && seqs(c.drain)).toEqual([2, 9])
  })
})

describe('Association: serialization failures (spec 3.3)', () => {
  it('publishes association.send-failed and returns ERR_GRAIN_PAYLOAD_ENCODE', () => {
    const { a, clock } = setup()
    const err = a.sendFailed(pid('a'), new TypeError('cyclic structure'), clock.nowMs)
    expect(err.code).toBe('ERR_GRAIN_PAYLOAD_ENCODE')
    expect(err.details).toEqual({ authority: AUTH, pid: pid('a') })
    expect(err.cause).toBeInstanceOf(TypeError)
    expect(a.drain().events).toEqual([
      { type: 'association.send-failed', authority: AUTH, pid: pid('a'), code: 'ERR_GRAIN_PAYLOAD_ENCODE', reason: 'cyclic structure', at: WALL0 },
    ])
    const typed = new GrainClusterError('ERR_GRAIN_PAYLOAD_TOO_LARGE', 'too big')
    expect(a.sendFailed(undefined, typed, clock.nowMs)).toBe(typed)
    expect(a.drain().events).toEqual([{ type: 'association.send-failed', authority: AUTH, code: 'ERR_GRAIN_PAYLOAD_TOO_LARGE', reason: 'too big', at: WALL0 }])
    expect(a.stats.sendFailures).toBe(2)
  })
})

describe('Association: ordering and conservation under random driving (fast-check)', () => {
  type Op =
    | { t: 'send'; pid: number; ask: boolean }
    | { t: 'connect' }
    | { t: 'disconnect' }
    | { t: 'failure' }
    | { t: 'refuseNextWrites'; n: number }
    | { t: 'flush' }
    | { t: 'quarantine' }
    | { t: 'release' }
    | { t: 'tick'; ms: number }
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 10, arbitrary: fc.record({ t: fc.constant('send' as const), pid: fc.integer({ min: 0, max: 3 }), ask: fc.boolean() }) },
    { weight: 2, arbitrary: fc.constant({ t: 'connect' as const }) },
    { weight: 2, arbitrary: fc.constant({ t: 'disconnect' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'failure' as const }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('refuseNextWrites' as const), n: fc.integer({ min: 1, max: 4 }) }) },
    { weight: 1, arbitrary: fc.constant({ t: 'flush' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'quarantine' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'release' as const }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 20_000 }) }) },
  )

  it('per-PID delivery order is send order; every message is delivered, rejected or refused exactly once', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 200 }), (limit, ops) => {
        const clock = new ManualClock()
        const a = new Association({ authority: AUTH, config: { deferredQueueLimit: limit, maxConsecutiveFailures: 3 }, wallClock: clock.wall })
        const delivered: number[] = []
        const pidOf = new Map<number, string>()
        const refused = new Set<number>()
        const rejected: number[] = []
        let refuseWrites = 0
        let seq = 0
        /** The driver's transport: takes frames in order until it refuses; hands the rest back. */
        const write = (msgs: DeferredMessage[]): void => {
          for (let i = 0; i < msgs.length; i++) {
            if (refuseWrites > 0) {
              refuseWrites--
              a.unsent(msgs.slice(i), clock.nowMs)
              return
            }
            delivered.push(seqOfFrame(msgs[i]!.frame))
          }
        }
        const take = (): void => {
          for (const r of a.drain().rejected) {
            expect(r.meta.askId === undefined || r.meta.askId === Number(r.meta.key)).toBe(true)
            rejected.push(Number(r.meta.key))
          }
        }
        for (const o of ops) {
          switch (o.t) {
            case 'send': {
              const s = seq++
              const p = `grain://${AUTH}/k/${o.pid}`
              pidOf.set(s, p)
              const f = frame(s)
              // key carries the sequence number: rejections keep metadata only.
              const meta: OutboundMeta = o.ask ? { pid: p, key: String(s), askId: s } : { pid: p, key: String(s) }
              const r = a.send(f, meta, clock.nowMs)
              if (r.action === 'write') write([{ frame: f, meta, enqueuedAtMs: clock.nowMs }])
              else if (r.action === 'refused') refused.add(s)
              break
            }
            case 'connect': {
              const c = a.connected('node-b', clock.nowMs)
              if (c.ok) write(c.drain)
              break
            }
            case 'disconnect':
              a.disconnected('closed', clock.nowMs)
              break
            case 'failure':
              a.failure('dial failed', clock.nowMs)
              break
            case 'refuseNextWrites':
              refuseWrites += o.n
              break
            case 'flush':
              write(a.flush(clock.nowMs))
              break
            case 'quarantine':
              a.quarantine('test', clock.nowMs)
              break
            case 'release':
              a.release(clock.nowMs, 'manual')
              break
            case 'tick':
              a.poll(clock.advance(o.ms))
              break
          }
          take()
          expect(a.queue.size).toBeLessThanOrEqual(limit)
        }
        // Settle: end any quarantine, connect, and let the transport take everything.
        refuseWrites = 0
        a.release(clock.nowMs, 'manual')
        const c = a.connected('node-b', clock.nowMs)
        if (c.ok) write(c.drain)
        write(a.flush(clock.nowMs))
        take()
        expect(a.queue.size).toBe(0)

        // Per PID, delivered in send order.
        const last = new Map<string, number>()
        for (const s of delivered) {
          const p = pidOf.get(s)!
          expect(s).toBeGreaterThan(last.get(p) ?? -1)
          last.set(p, s)
        }
        // Conservation: each sent message ends in exactly one place.
        const all = [...delivered, ...rejected, ...refused].sort((x, y) => x - y)
        expect(all).toEqual(Array.from({ length: seq }, (_, i) => i))
      }),
      { numRuns: 300 },
    )
  })
})
