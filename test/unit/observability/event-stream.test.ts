import { afterEach, describe, expect, it, vi } from 'vitest'
import { EventStream, categoryBit } from '../../../src/observability/event-stream.js'
import { EVENT_CATEGORIES, type RuntimeEvent, categoryOf } from '../../../src/observability/events.js'

const activated = { type: 'grain.activated', kind: 'Counter', key: 'a', worker: 0 } as const
const crashed = { type: 'worker.crashed', worker: 1, reason: 'exit 1', failedCalls: 2 } as const
const deadletter = { type: 'deadletter', kind: 'Counter', key: 'a', messageType: 7, code: 'ERR_GRAIN_TIMEOUT', reason: 'late' } as const

afterEach(() => {
  vi.useRealTimers()
})

describe('EventStream', () => {
  it('delivers by exact type, by category and to "*", stamping category and time', () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    const s = new EventStream()
    const exact: RuntimeEvent[] = []
    const grain: RuntimeEvent[] = []
    const all: RuntimeEvent[] = []
    s.subscribe('grain.activated', (e) => exact.push(e))
    s.subscribe('grain.*', (e) => grain.push(e))
    s.subscribe('*', (e) => all.push(e))

    s.publish({ ...activated })
    s.publish({ type: 'grain.deactivated', kind: 'Counter', key: 'a', worker: 0, reason: 'idle' })
    s.publish({ ...crashed, at: 5 })

    expect(exact.map((e) => e.type)).toEqual(['grain.activated'])
    expect(grain.map((e) => e.type)).toEqual(['grain.activated', 'grain.deactivated'])
    expect(all.map((e) => e.type)).toEqual(['grain.activated', 'grain.deactivated', 'worker.crashed'])
    expect(exact[0]).toEqual({ ...activated, category: 'grain', at: 1_700_000_000_000 })
    expect(all[2]).toMatchObject({ category: 'worker', at: 5 }) // a given timestamp is kept
  })

  it('types the event for an exact-type subscription', () => {
    const s = new EventStream()
    const keys: string[] = []
    s.subscribe('grain.activated', (e) => keys.push(`${e.kind}/${e.key}@${e.worker}`))
    s.publish({ ...activated })
    expect(keys).toEqual(['Counter/a@0'])
  })

  it('delivers the bare "deadletter" type to "deadletter" and "deadletter.*"', () => {
    const s = new EventStream()
    const seen: string[] = []
    s.subscribe('deadletter', () => seen.push('exact'))
    s.subscribe('deadletter.*', () => seen.push('category'))
    s.subscribe('grain.*', () => seen.push('wrong'))
    s.publish({ ...deadletter })
    expect(seen).toEqual(['exact', 'category'])
  })

  it('delivers exact-type subscribers first, then category, then "*", each in subscription order', () => {
    const s = new EventStream()
    const order: string[] = []
    s.subscribe('*', () => order.push('all-1'))
    s.subscribe('grain.*', () => order.push('grain-1'))
    s.subscribe('grain.activated', () => order.push('exact-1'))
    s.subscribe('grain.activated', () => order.push('exact-2'))
    s.subscribe('*', () => order.push('all-2'))
    s.publish({ ...activated })
    expect(order).toEqual(['exact-1', 'exact-2', 'grain-1', 'all-1', 'all-2'])
  })

  it('unsubscribe stops delivery to that listener only', () => {
    const s = new EventStream()
    const a = vi.fn()
    const b = vi.fn()
    const offA = s.subscribe('grain.*', a)
    s.subscribe('grain.*', b)
    s.publish({ ...activated })
    offA()
    s.publish({ ...activated })
    expect(a).toHaveBeenCalledTimes(1)
    expect(b).toHaveBeenCalledTimes(2)
  })

  it('calling an unsubscribe function twice does not remove anyone else', () => {
    const s = new EventStream()
    const first = vi.fn()
    const later = vi.fn()
    const off = s.subscribe('grain.*', first)
    off()
    s.subscribe('grain.*', later)
    off() // e.g. cleanup running both in a handler and in a finally block
    s.publish({ ...activated })
    expect(first).not.toHaveBeenCalled()
    expect(later).toHaveBeenCalledTimes(1)
    expect(s.wants('grain')).toBe(true)
  })

  it('isolates a throwing listener: others still get the event, listenerErrors counts', () => {
    const s = new EventStream()
    const before = vi.fn()
    const after = vi.fn()
    const all = vi.fn()
    s.subscribe('grain.activated', before)
    s.subscribe('grain.activated', () => {
      throw new Error('listener bug')
    })
    s.subscribe('grain.activated', after)
    s.subscribe('*', all)
    expect(s.listenerErrors).toBe(0)
    expect(() => s.publish({ ...activated })).not.toThrow()
    expect(before).toHaveBeenCalledTimes(1)
    expect(after).toHaveBeenCalledTimes(1)
    expect(all).toHaveBeenCalledTimes(1)
    expect(s.listenerErrors).toBe(1)
    s.publish({ ...activated })
    expect(s.listenerErrors).toBe(2)
  })

  it('publish with no subscribers is a no-op', () => {
    const s = new EventStream()
    expect(() => s.publish({ ...activated })).not.toThrow()
    expect(s.listenerErrors).toBe(0)
  })

  describe('once()', () => {
    it('resolves with the first event that matches the predicate, then unsubscribes', async () => {
      const s = new EventStream()
      const p = s.once('grain.activated', (e) => e.key === 'b')
      expect(s.wants('grain')).toBe(true)
      s.publish({ ...activated, key: 'a' })
      s.publish({ ...activated, key: 'b', worker: 3 })
      s.publish({ ...activated, key: 'b', worker: 4 })
      await expect(p).resolves.toMatchObject({ type: 'grain.activated', key: 'b', worker: 3 })
      expect(s.wants('grain')).toBe(false)
      expect(s.interestMask).toBe(0)
    })

    it('without a predicate takes the first event of the filter', async () => {
      const s = new EventStream()
      const p = s.once('worker.*')
      s.publish({ ...activated })
      s.publish({ ...crashed })
      await expect(p).resolves.toMatchObject({ type: 'worker.crashed', category: 'worker' })
    })

    it('an abort signal ends the wait with its reason and leaves no subscription', async () => {
      const s = new EventStream()
      const ac = new AbortController()
      const p = s.once('grain.activated', (e) => e.key === 'never', { signal: ac.signal })
      expect(s.wants('grain')).toBe(true)
      ac.abort(new Error('gave up'))
      await expect(p).rejects.toThrow('gave up')
      expect(s.wants('grain')).toBe(false)
      await expect(s.once('grain.activated', undefined, { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow('already')
      expect(s.interestMask).toBe(0)
      // A match first: the later abort changes nothing.
      const ac2 = new AbortController()
      const q = s.once('grain.activated', undefined, { signal: ac2.signal })
      s.publish({ ...activated })
      ac2.abort()
      await expect(q).resolves.toMatchObject({ type: 'grain.activated' })
    })
  })

  describe('interest mask', () => {
    it('gives each category its own bit', () => {
      const bits = EVENT_CATEGORIES.map(categoryBit)
      expect(new Set(bits).size).toBe(EVENT_CATEGORIES.length)
      for (const b of bits) expect(b > 0 && (b & (b - 1)) === 0).toBe(true)
      expect(categoryOf('grain.activated')).toBe('grain')
      expect(categoryOf('deadletter')).toBe('deadletter')
    })

    it('reflects subscriptions in wants() and interestMask', () => {
      const s = new EventStream()
      expect(s.interestMask).toBe(0)
      for (const c of EVENT_CATEGORIES) expect(s.wants(c)).toBe(false)

      const offExact = s.subscribe('ring.full', () => undefined)
      expect(s.interestMask).toBe(categoryBit('ring'))
      expect(EVENT_CATEGORIES.filter((c) => s.wants(c))).toEqual(['ring'])

      const offCat = s.subscribe('worker.*', () => undefined)
      expect(s.interestMask).toBe(categoryBit('ring') | categoryBit('worker'))

      const offAll = s.subscribe('*', () => undefined)
      for (const c of EVENT_CATEGORIES) expect(s.wants(c)).toBe(true)

      offAll()
      expect(s.interestMask).toBe(categoryBit('ring') | categoryBit('worker'))
      offExact()
      expect(EVENT_CATEGORIES.filter((c) => s.wants(c))).toEqual(['worker'])
      offCat()
      expect(s.interestMask).toBe(0)
    })

    it('keeps a category while any of its subscribers remains', () => {
      const s = new EventStream()
      const off1 = s.subscribe('grain.activated', () => undefined)
      const off2 = s.subscribe('grain.deactivated', () => undefined)
      off1()
      expect(s.wants('grain')).toBe(true)
      off2()
      expect(s.wants('grain')).toBe(false)
    })

    it('onInterestChange fires with the new mask only when the mask changes', () => {
      const s = new EventStream()
      const masks: number[] = []
      s.onInterestChange((m) => masks.push(m))
      const off1 = s.subscribe('grain.activated', () => undefined)
      const off2 = s.subscribe('grain.*', () => undefined) // same category: no change
      const off3 = s.subscribe('frame.malformed', () => undefined)
      off2()
      off1()
      off3()
      expect(masks).toEqual([categoryBit('grain'), categoryBit('grain') | categoryBit('frame'), categoryBit('frame'), 0])
    })
  })
})
