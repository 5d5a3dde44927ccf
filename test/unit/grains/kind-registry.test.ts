import { describe, expect, it } from 'vitest'
import { defineGrain } from '../../../src/grains/define-grain.js'
import { KindRegistry, methodById } from '../../../src/grains/kind-registry.js'

describe('methodById', () => {
  it.each([3, 16, 17, 40])('finds every method of a kind with %i methods by its message type id, and nothing else', (n) => {
    const handlers: Record<string, () => number> = {}
    for (let i = 0; i < n; i++) handlers[`m${i}`] = () => i
    const entry = new KindRegistry().add(defineGrain({ kind: `k${n}`, handlers }))
    for (const [id, m] of entry.methodsById) expect(methodById(entry, id)).toBe(m)
    expect(entry.methodList).toHaveLength(n)
    const unknown = [0, 1, 0xffffffff, 2 ** 31].filter((id) => !entry.methodsById.has(id))
    for (const id of unknown) expect(methodById(entry, id)).toBeUndefined()
  })
})
