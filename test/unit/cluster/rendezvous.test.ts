import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { rendezvousOwner } from '../../../src/cluster/placement/rendezvous.js'

const members = (n: number) => Array.from({ length: n }, (_, i) => ({ authority: `127.0.0.1:${4050 + i}`, nodeId: (0x1000 + i * 7919).toString(16) }))

describe('rendezvous placement', () => {
  it('spreads 10,000 keys over 3 nodes within ±15 % of even', () => {
    const ms = members(3)
    const counts = new Map<string, number>()
    for (let i = 0; i < 10_000; i++) {
      const o = rendezvousOwner(ms, 'counter', `user-${i}`)!
      counts.set(o.authority, (counts.get(o.authority) ?? 0) + 1)
    }
    for (const c of counts.values()) expect(Math.abs(c - 10_000 / 3) / (10_000 / 3)).toBeLessThan(0.15)
  })

  it('is independent of member order and moves only the leaving member’s keys', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 8 }), fc.array(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 50, maxLength: 200 }), (n, keys) => {
        const ms = members(n)
        const shuffled = [...ms].reverse()
        const leaving = ms[n - 1]!
        const rest = ms.slice(0, n - 1)
        for (const k of keys) {
          const owner = rendezvousOwner(ms, 'kind', k)!
          expect(rendezvousOwner(shuffled, 'kind', k)).toBe(owner)
          const after = rendezvousOwner(rest, 'kind', k)!
          if (owner !== leaving) expect(after).toBe(owner)
        }
      }),
    )
  })

  it('a new incarnation (new NodeId) at the same authority is a different candidate', () => {
    const ms = members(3)
    const restarted = [...ms.slice(0, 2), { ...ms[2]!, nodeId: 'ffff' }]
    let moved = 0
    for (let i = 0; i < 3_000; i++) if (rendezvousOwner(ms, 'k', `x${i}`)!.nodeId !== rendezvousOwner(restarted, 'k', `x${i}`)!.nodeId) moved++
    expect(moved).toBeGreaterThan(0)
    expect(moved).toBeLessThan(3_000 * 0.6)
  })

  it('has no owner without candidates', () => {
    expect(rendezvousOwner([], 'k', 'x')).toBeUndefined()
  })
})
