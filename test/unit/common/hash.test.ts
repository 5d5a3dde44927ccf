import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { hashKey, messageTypeId, partitionOf, workerOfPartition } from '../../../src/common/hash.js'

/** Independent FNV-1a 32 over UTF-16 code units, in BigInt arithmetic. */
function fnv1aRef(s: string): number {
  let h = 0x811c9dc5n
  for (let i = 0; i < s.length; i++) {
    h ^= BigInt(s.charCodeAt(i))
    h = (h * 0x01000193n) & 0xffffffffn
  }
  return Number(h)
}

/** Any sequence of UTF-16 code units, lone surrogates included. */
const codeUnitString = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 64 }).map((cs) => String.fromCharCode(...cs))

describe('hashKey', () => {
  it('matches the published FNV-1a 32-bit vectors (the hash must never change between releases)', () => {
    expect(hashKey('')).toBe(0x811c9dc5)
    expect(hashKey('a')).toBe(0xe40c292c)
    expect(hashKey('foobar')).toBe(0xbf9cf968)
  })

  it('is FNV-1a over UTF-16 code units (not UTF-8 bytes), as an unsigned 32-bit integer', () => {
    fc.assert(
      fc.property(fc.oneof(codeUnitString, fc.string({ unit: 'binary' })), (s) => {
        const h = hashKey(s)
        expect(h).toBe(fnv1aRef(s))
        expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true)
      }),
    )
    // 'é' is one code unit 0xE9 (UTF-8 would be two bytes C3 A9).
    expect(hashKey('é')).toBe(fnv1aRef('\u00e9'))
    expect(hashKey('😀')).toBe(fnv1aRef('\ud83d\ude00'))
  })

  it('messageTypeId is the key hash of the handler name', () => {
    fc.assert(fc.property(fc.string(), (name) => messageTypeId(name) === hashKey(name)))
    expect(messageTypeId('increment')).toBe(fnv1aRef('increment'))
  })
})

describe('partitionOf', () => {
  it('is an integer in [0, partitions) and stable across calls', () => {
    fc.assert(
      fc.property(fc.oneof(codeUnitString, fc.string()), fc.integer({ min: 1, max: 4096 }), (key, partitions) => {
        const p = partitionOf(key, partitions)
        expect(Number.isInteger(p)).toBe(true)
        expect(p).toBeGreaterThanOrEqual(0)
        expect(p).toBeLessThan(partitions)
        expect(partitionOf(key, partitions)).toBe(p)
        expect(p).toBe(fnv1aRef(key) % partitions)
      }),
    )
  })

  it.each([1, 2, 64, 256, 1 << 20, 3, 1000])('is FNV-1a mod %i (power-of-two counts take a mask, with the same answer)', (partitions) => {
    fc.assert(
      fc.property(fc.oneof(codeUnitString, fc.string()), (key) => {
        expect(partitionOf(key, partitions)).toBe(fnv1aRef(key) % partitions)
      }),
    )
  })

  it.each([
    ['user-<i>', (i: number) => `user-${i}`],
    ['<i>', (i: number) => String(i)],
    ['order/<i*7919>', (i: number) => `order/${i * 7919}`],
    ['k<base36 i>', (i: number) => `k${i.toString(36)}`],
  ])('spreads 10k keys of the form %s reasonably evenly over 64 partitions', (_name, keyOf) => {
    const partitions = 64
    const n = 10_000
    const buckets = new Array<number>(partitions).fill(0)
    for (let i = 0; i < n; i++) {
      const p = partitionOf(keyOf(i), partitions)
      buckets[p] = (buckets[p] ?? 0) + 1
    }
    const expected = n / partitions
    const chi2 = buckets.reduce((s, x) => s + (x - expected) ** 2 / expected, 0)
    // 63 degrees of freedom: chi^2 > 103.4 has p < 0.001 for a uniform hash.
    expect(chi2).toBeLessThan(103.4)
    expect(Math.min(...buckets)).toBeGreaterThanOrEqual(0.6 * expected)
    expect(Math.max(...buckets)).toBeLessThanOrEqual(1.4 * expected)
  })
})

describe('workerOfPartition', () => {
  it('gives every worker the same number of partitions when workers divide partitions', () => {
    const perWorker = new Array<number>(4).fill(0)
    for (let p = 0; p < 64; p++) {
      const w = workerOfPartition(p, 4)
      perWorker[w] = (perWorker[w] ?? 0) + 1
    }
    expect(perWorker).toEqual([16, 16, 16, 16])
  })

  it('is always a valid worker index', () => {
    fc.assert(
      fc.property(fc.nat(10_000), fc.integer({ min: 1, max: 64 }), (p, workers) => {
        const w = workerOfPartition(p, workers)
        return Number.isInteger(w) && w >= 0 && w < workers
      }),
    )
  })
})
