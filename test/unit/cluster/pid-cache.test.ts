import { describe, expect, it } from 'vitest'
import { PidCache } from '../../../src/cluster/placement/pid-cache.js'

const v = (authority: string, _key: string) => ({ authority, nodeId: 'n' })

describe('PidCache', () => {
  it('hits within the TTL and misses after it', () => {
    const c = new PidCache({ ttlMs: 100 })
    c.set('k', 'a', v('h:1', 'a'), 0)
    expect(c.get('k', 'a', 99)?.authority).toBe('h:1')
    expect(c.get('k', 'a', 100)).toBeUndefined()
    expect(c.stats).toMatchObject({ hits: 1, misses: 1, expired: 1 })
  })

  it('evicts the least recently used entry when full', () => {
    const c = new PidCache({ ttlMs: 1_000, maxEntries: 2 })
    c.set('k', 'a', v('h:1', 'a'), 0)
    c.set('k', 'b', v('h:1', 'b'), 0)
    c.get('k', 'a', 1) // a is now most recent
    expect(c.set('k', 'c', v('h:1', 'c'), 2)).toBe('b')
    expect(c.get('k', 'b', 3)).toBeUndefined()
    expect(c.get('k', 'a', 3)).toBeDefined()
    expect(c.size).toBe(2)
    expect(c.stats.evicted).toBe(1)
  })

  it('invalidates by authority and entirely', () => {
    const c = new PidCache()
    c.set('k', 'a', v('h:1', 'a'), 0)
    c.set('k', 'b', v('h:2', 'b'), 0)
    c.set('k', 'c', v('h:1', 'c'), 0)
    expect(c.invalidateAuthority('h:1')).toBe(2)
    expect(c.get('k', 'b', 1)?.authority).toBe('h:2')
    expect(c.clear()).toBe(1)
    expect(c.size).toBe(0)
    expect(c.stats.invalidated).toBe(3)
  })

  it('stays bounded under many distinct keys', () => {
    const c = new PidCache({ maxEntries: 1_000 })
    for (let i = 0; i < 100_000; i++) c.set('k', `k${i}`, v('h:1', `k${i}`), 0)
    expect(c.size).toBe(1_000)
  })

  it('keeps a key that is hit between insertions (second chance), evicts cold ones', () => {
    const c = new PidCache({ maxEntries: 100 })
    c.set('k', 'hot', v('h:1', 'hot'), 0)
    for (let i = 0; i < 10_000; i++) {
      c.set('k', `cold-${i}`, v('h:1', `cold-${i}`), 0)
      expect(c.get('k', 'hot', 1)).toBeDefined()
    }
    expect(c.size).toBe(100)
    expect(c.get('k', 'cold-0', 1)).toBeUndefined()
    expect(c.get('k', 'cold-9999', 1)).toBeDefined()
    expect(c.stats.evicted).toBe(10_000 + 1 - 100)
  })

  it('keeps kinds apart for the same key, and invalidates within a chain', () => {
    const c = new PidCache({ maxEntries: 10 })
    c.set('counter', 'u1', v('h:1', 'u1'), 0)
    c.set('cart', 'u1', v('h:2', 'u1'), 0)
    c.set('user', 'u1', v('h:1', 'u1'), 0)
    expect(c.size).toBe(3)
    expect(c.get('counter', 'u1', 1)?.authority).toBe('h:1')
    expect(c.get('cart', 'u1', 1)?.authority).toBe('h:2')
    c.set('cart', 'u1', v('h:3', 'u1'), 0) // replace in place
    expect(c.get('cart', 'u1', 1)?.authority).toBe('h:3')
    expect(c.size).toBe(3)
    expect(c.invalidateAuthority('h:1')).toBe(2)
    expect(c.get('counter', 'u1', 1)).toBeUndefined()
    expect(c.get('user', 'u1', 1)).toBeUndefined()
    expect(c.get('cart', 'u1', 1)?.authority).toBe('h:3')
    expect(c.size).toBe(1)
    // An expired entry in the middle of a chain goes; its neighbours stay.
    c.set('a', 'k', v('h:1', 'k'), 0)
    c.set('b', 'k', v('h:1', 'k'), 50)
    c.set('c', 'k', v('h:1', 'k'), 0)
    expect(c.get('b', 'k', 30_000)).toBeDefined()
    expect(c.get('a', 'k', 30_000)).toBeUndefined()
    expect(c.get('c', 'k', 30_000)).toBeUndefined()
    expect(c.get('b', 'k', 30_001)).toBeDefined()
    expect(c.size).toBe(2)
  })
})
