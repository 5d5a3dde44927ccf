import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { IdTable } from '../../../src/common/id-table.js'

type Op = { t: 'reserve' } | { t: 'put'; id: number } | { t: 'del'; pick: number } | { t: 'get'; id: number }

describe('IdTable', () => {
  it('behaves as a Map of ids under any mix of reserved ids, foreign ids (overflow), deletes and growth', () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.constant({ t: 'reserve' as const }) },
      // Foreign ids land on slots reserved ids use: the overflow path.
      { weight: 2, arbitrary: fc.integer({ min: 1, max: 200 }).map((id) => ({ t: 'put' as const, id })) },
      { weight: 4, arbitrary: fc.nat().map((pick) => ({ t: 'del' as const, pick })) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 300 }).map((id) => ({ t: 'get' as const, id })) },
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const table = new IdTable<{ id: number }>(16)
        const model = new Map<number, { id: number }>()
        for (const o of ops) {
          if (o.t === 'reserve') {
            const id = table.reserve()
            expect(id).toBeGreaterThan(0)
            expect(model.has(id)).toBe(false) // never an id in use
            const v = { id }
            table.set(id, v)
            model.set(id, v)
          } else if (o.t === 'put') {
            const v = { id: o.id }
            table.set(o.id, v)
            model.set(o.id, v)
          } else if (o.t === 'del') {
            const ids = [...model.keys()]
            const id = ids.length === 0 ? 7 : ids[o.pick % ids.length]!
            expect(table.delete(id)).toBe(model.delete(id))
          } else {
            expect(table.get(o.id)).toBe(model.get(o.id))
          }
          expect(table.size).toBe(model.size)
        }
        const seen = new Map<number, { id: number }>()
        table.forEach((v, id) => seen.set(id, v))
        expect(seen).toEqual(model)
        for (const [id, v] of model) expect(table.get(id)).toBe(v)
      }),
    )
  })

  it('grows past half full and keeps every entry', () => {
    const table = new IdTable<number>(16)
    const ids = Array.from({ length: 100 }, () => {
      const id = table.reserve()
      table.set(id, id * 10)
      return id
    })
    expect(table.capacity).toBeGreaterThanOrEqual(200)
    for (const id of ids) expect(table.get(id)).toBe(id * 10)
  })

  it('reserve skips the slot of a call still in flight, so a long call never shares a slot with a new one', () => {
    const table = new IdTable<string>(16)
    const long = table.reserve()
    table.set(long, 'long')
    for (let i = 0; i < 100; i++) {
      const id = table.reserve()
      expect(id).not.toBe(long)
      table.set(id, 'short')
      table.delete(id)
    }
    expect(table.capacity).toBe(16) // one call in flight: no growth, ids went round the table several times
    expect(table.get(long)).toBe('long')
  })

  it('forEach lets the visitor delete the entry it is given', () => {
    const table = new IdTable<number>(16)
    for (let i = 0; i < 10; i++) table.set(table.reserve(), i)
    table.set(3 + table.capacity, 99) // lands on the slot of reserved id 3: overflow
    const seen: number[] = []
    table.forEach((v, id) => {
      seen.push(v)
      table.delete(id)
    })
    expect(seen.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99])
    expect(table.size).toBe(0)
  })

  it('wraps ids at 2^32 and never hands out 0', () => {
    const table = new IdTable<number>(16, 0xffff_fffe)
    const ids: number[] = []
    for (let i = 0; i < 4; i++) {
      const id = table.reserve()
      table.set(id, i)
      ids.push(id)
    }
    expect(ids).toEqual([0xffff_fffe, 0xffff_ffff, 1, 2])
    for (let i = 0; i < 4; i++) expect(table.get(ids[i]!)).toBe(i)
  })
})
