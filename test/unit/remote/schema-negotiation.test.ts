import { describe, expect, it } from 'vitest'
import { decodeHandshakeMessage, encodeHandshakeMessage } from '../../../src/remote/transport/handshake.js'
import { negotiateSchemas, PeerSchemas } from '../../../src/remote/schema-negotiation.js'

const map = (o: Record<string, number[]>): Map<string, number[]> => new Map(Object.entries(o))

describe('schema negotiation', () => {
  it('picks the highest common version per kind both serve, and lists kinds with none', () => {
    const n = negotiateSchemas(map({ counter: [1, 2, 3], cart: [1], onlyMine: [1] }), map({ counter: [2, 3, 4], cart: [2, 3], onlyTheirs: [1] }))
    expect([...n.agreed]).toEqual([['counter', 3]])
    expect([...n.mismatched.values()]).toEqual([{ kind: 'cart', local: [1], peer: [2, 3] }])
  })

  it('stamps the agreed version, refuses a mismatched kind naming both sides, and falls back to the own version (or 0) without an agreement', () => {
    const s = new PeerSchemas(map({ counter: [1, 2], cart: [1] }))
    expect(s.peerUp('b:1', map({ counter: [2, 3], cart: [4] })).map((m) => m.kind)).toEqual(['cart'])
    expect(s.versionFor('b:1', 'counter', 1)).toBe(2)
    expect(() => s.versionFor('b:1', 'cart', 1)).toThrow('schema mismatch: caller speaks cart v1; b:1 serves cart v4 (no common version)')
    expect(s.versionFor('b:1', 'unknown', undefined)).toBe(0)
    // An older peer that sent nothing: own version, the serving worker checks.
    expect(s.peerUp('c:1', undefined)).toEqual([])
    expect(s.versionFor('c:1', 'cart', 1)).toBe(1)
  })

  it('the ACCEPT carries the versions after the welcome, and one without them still decodes', () => {
    const welcome = new Uint8Array([9, 8, 7])
    const schemas = map({ counter: [1, 2], 'cart.v': [65535] })
    const m = decodeHandshakeMessage(encodeHandshakeMessage({ type: 'accept', version: 1, welcome, schemas }))
    expect(m).toMatchObject({ type: 'accept', welcome })
    expect(m.type === 'accept' ? [...m.schemas!] : []).toEqual([...schemas])
    const old = decodeHandshakeMessage(encodeHandshakeMessage({ type: 'accept', version: 1, welcome }))
    expect(old.type === 'accept' ? old.schemas : 'x').toBeUndefined()
    const truncated = encodeHandshakeMessage({ type: 'accept', version: 1, welcome, schemas }).subarray(0, -1)
    expect(() => decodeHandshakeMessage(truncated)).toThrow(/truncated schema version/)
  })
})
