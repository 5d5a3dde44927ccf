import { describe, expect, it } from 'vitest'
import { PidCache } from '../../../src/cluster/placement/pid-cache.js'

const v = (authority: string, _key: string) => ({ authority, nodeId: 'n' })

describe('PidCache', () => {
  it('hits within the TTL and misses after it', () => {
    const c = new PidCache({ ttlMs: 100 })
    c.set('a', v('h:1', 'a'), 0)
    expect(c.get('a', 99)?.authority).toBe('h:1')
    expect(c.get('a', 100)).toBeUndefined()
    expect(c.stats).toMatchObject({ hits: 1, misses: 1, expired: 1 })
  })

  it('evicts the least recently used entry when full', () => {
    const c = new PidCache({ ttlMs: 1_000, maxEntries: 2 })
    c.set('a', v('h:1', 'a'), 0)
    c.set('b', v('h:1', 'b'), 0)
    c.get('a', 1) // a is now most recent
    expect(c.set('c', v('h:1', 'c'), 2)).toBe('b')
    expect(c.get('b', 3)).toBeUndefined()
    expect(c.get('a', 3)).toBeDefined()
    expect(c.size).toBe(2)
    expect(c.stats.evicted).toBe(1)
  })

  it('invalidates by authority and entirely', () => {
    const c = new PidCache()
    c.set('a', v('h:1', 'a'), 0)
    c.set('b', v('h:2', 'b'), 0)
    c.set('c', v('h:1', 'c'), 0)
    expect(c.invalidateAuthority('h:1')).toBe(2)
    expect(c.get('b', 1)?.authority).toBe('h:2')
    expect(c.clear()).toBe(1)
    expect(c.size).toBe(0)
    expect(c.stats.invalidated).toBe(3)
  })

  it('stays bounded under many distinct keys', () => {
    const c = new PidCache({ maxEntries: 1_000 })
    for (let i = 0; i < 100_000; i++) c.set(`k${i}`, v('h:1', `k${i}`), 0)
    expect(c.size).toBe(1_000)
  })

  it('keeps a key that is hit between insertions (second chance), evicts cold ones', () => {
    const c = new PidCache({ maxEntries: 100 })
    c.set('hot', v('h:1', 'hot'), 0)
    for (let i = 0; i < 10_000; i++) {
      c.set(`cold-${i}`, v('h:1', `cold-${i}`), 0)
      expect(c.get('hot', 1)).toBeDefined()
    }
    expect(c.size).toBe(100)
    expect(c.get('cold-0', 1)).toBeUndefined()
    expect(c.get('cold-9999', 1)).toBeDefined()
    expect(c.stats.evicted).toBe(10_000 + 1 - 100)
  })
})
