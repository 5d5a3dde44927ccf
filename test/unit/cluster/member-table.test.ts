import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type Member, incarnationWins, mergeMember } from '../../../src/cluster/membership/member.js'
import { MemberTable } from '../../../src/cluster/membership/member-table.js'

const STATUSES = ['joining', 'up', 'leaving', 'exiting', 'down', 'removed'] as const
const memberArb: fc.Arbitrary<Member> = fc.record({
  authority: fc.constant('a:1'),
  nodeId: fc.constant('n1'),
  status: fc.constantFrom(...STATUSES),
  upNumber: fc.nat(5),
})

describe('mergeMember is a join-semilattice', () => {
  it('is commutative, associative and idempotent', () => {
    fc.assert(
      fc.property(memberArb, memberArb, memberArb, (a, b, c) => {
        const m = (x: Member, y: Member): Member => mergeMember(x, y)
        expect(m(a, b)).toEqual(m(b, a))
        expect(m(m(a, b), c)).toEqual(m(a, m(b, c)))
        expect(m(a, a)).toEqual(a)
      }),
    )
  })

  it('moves one incarnation forward only', () => {
    expect(mergeMember({ authority: 'a:1', nodeId: 'n1', status: 'up', upNumber: 2 }, { authority: 'a:1', nodeId: 'n1', status: 'joining', upNumber: 0 }).status).toBe('up')
    expect(mergeMember({ authority: 'a:1', nodeId: 'n1', status: 'leaving', upNumber: 0 }, { authority: 'a:1', nodeId: 'n1', status: 'up', upNumber: 3 })).toEqual({ authority: 'a:1', nodeId: 'n1', status: 'leaving', upNumber: 3 })
  })

  it('lets the older incarnation hold an authority, and a removed one give way', () => {
    const old: Member = { authority: 'a:1', nodeId: 'old', status: 'up', upNumber: 1 }
    const fresh: Member = { authority: 'a:1', nodeId: 'new', status: 'joining', upNumber: 0 }
    expect(incarnationWins(old, fresh)).toBe(true)
    expect(incarnationWins({ ...old, status: 'removed' }, fresh)).toBe(false)
    const t = new MemberTable('x:1')
    t.writeMember(old)
    const r = new MemberTable('y:1')
    r.writeMember(fresh)
    const res = t.apply(r.deltaFor(t.vv()), r.vv())
    expect(t.member('a:1')?.nodeId).toBe('old')
    expect(res.rejected.map((m) => m.nodeId)).toEqual(['new'])
    expect(t.shadows().map((m) => m.nodeId)).toEqual(['new'])
    t.writeStatus('a:1', 'removed', undefined, 'old')
    expect(t.member('a:1')?.nodeId).toBe('new')
  })
})

describe('MemberTable delta anti-entropy', () => {
  it('converges to equal tables and digests whatever order deltas arrive in', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 4 }), fc.constantFrom(...STATUSES)), { maxLength: 30 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })), { maxLength: 40 }), (writes, syncs) => {
        const tables = [new MemberTable('t0:1'), new MemberTable('t1:1'), new MemberTable('t2:1')]
        for (const [t, a, status] of writes) tables[t]!.writeMember({ authority: `m${a % 3}:1`, nodeId: `x${a}`, status, upNumber: status === 'joining' ? 0 : 1 + a })
        // Random pairwise pull syncs, then a full round so everyone has everything.
        const sync = (from: MemberTable, to: MemberTable): void => {
          to.apply(from.deltaFor(to.vv()), from.vv())
        }
        for (const [x, y] of syncs) sync(tables[x]!, tables[y]!)
        for (let k = 0; k < 2; k++) for (const x of tables) for (const y of tables) if (x !== y) sync(x, y)
        const d = tables[0]!.digest()
        for (const t of tables) {
          expect(t.digest()).toBe(d)
          expect([...t.members()].sort((p, q) => (p.authority < q.authority ? -1 : 1))).toEqual([...tables[0]!.members()].sort((p, q) => (p.authority < q.authority ? -1 : 1)))
        }
      }),
    )
  })

  it('sends only what the peer lacks', () => {
    const a = new MemberTable('a:1')
    const b = new MemberTable('b:1')
    a.writeMember({ authority: 'a:1', nodeId: 'na', status: 'up', upNumber: 1 })
    a.writeMember({ authority: 'b:1', nodeId: 'nb', status: 'joining', upNumber: 0 })
    b.apply(a.deltaFor(b.vv()), a.vv())
    expect(a.deltaFor(b.vv())).toEqual([])
    a.writeStatus('b:1', 'up', 2)
    const delta = a.deltaFor(b.vv())
    expect(delta).toHaveLength(1)
    expect(delta[0]).toMatchObject({ kind: 'member', member: { authority: 'b:1', status: 'up' } })
  })

  it('counts reachability only from active observers, about the current incarnation', () => {
    const t = new MemberTable('a:1')
    t.writeMember({ authority: 'a:1', nodeId: 'na', status: 'up', upNumber: 1 })
    t.writeMember({ authority: 'b:1', nodeId: 'nb', status: 'up', upNumber: 2 })
    t.writeReachability('b:1', 'nb', false)
    expect(t.isUnreachable('b:1')).toBe(true)
    expect(t.unreachableObservers('b:1')).toEqual(['a:1'])
    t.writeReachability('b:1', 'nb', true)
    expect(t.isUnreachable('b:1')).toBe(false)
    // A record about an older incarnation does not make the new one unreachable.
    t.writeReachability('b:1', 'old', false)
    expect(t.isUnreachable('b:1')).toBe(false)
  })
})

describe('version vectors with superseded writes', () => {
  it('a peer that lacks only a superseded write is "behind" though no change is left to send; the vv alone levels it', () => {
    // a writes X joining (seq 1) and X's reachability-free status twice; b's
    // same-value write then wins the dot tie-break, so a's latest write to X
    // leaves a's store, but a's vv still counts it.
    const a = new MemberTable('a:1')
    const b = new MemberTable('b:1')
    const x: Member = { authority: 'x:1', nodeId: 'nx', status: 'joining', upNumber: 0 }
    a.writeMember(x)
    b.apply(a.deltaFor(b.vv()), a.vv())
    a.writeMember({ ...x, status: 'up', upNumber: 1 }) // a: seq 2
    b.writeMember({ ...x, status: 'up', upNumber: 1 }) // b: same value under its own dot (origin b > a wins)
    a.apply(b.deltaFor(a.vv()), b.vv())
    // a's seq-2 entry was superseded by b's: nothing of origin a is newer than what b has...
    expect(a.deltaFor(b.vv()).filter((c) => c.origin === 'a:1')).toHaveLength(0)
    // ...yet b has not seen a's seq 2, so the digests differ until the vv is sent.
    expect(a.isAheadOf(b.vv())).toBe(true)
    expect(a.digest()).not.toBe(b.digest())
    b.apply(a.deltaFor(b.vv()), a.vv())
    expect(a.isAheadOf(b.vv())).toBe(false)
    expect(b.digest()).toBe(a.digest())
  })
})

describe('replicated data entries (a Lamport last-writer-wins map on gossip)', () => {
  const sync = (to: MemberTable, from: MemberTable): Set<string> => to.apply(from.deltaFor(to.vv()), from.vv()).dataTouched

  it('spreads a write, reports the touched key once, and skips a rewrite of the same value', () => {
    const a = new MemberTable('a:1')
    const b = new MemberTable('b:1')
    expect(a.writeData('k', { v: 1 })).toBeDefined()
    expect(a.writeData('k', { v: 1 })).toBeUndefined()
    expect([...sync(b, a)]).toEqual(['k'])
    expect(b.data('k')).toEqual({ v: 1 })
    expect([...sync(b, a)]).toEqual([])
    expect(b.digest()).toBe(a.digest())
  })

  it('lets a write made after seeing another win, wherever it was made', () => {
    const a = new MemberTable('a:1')
    const z = new MemberTable('z:1')
    z.writeData('k', 'first')
    sync(a, z)
    a.writeData('k', 'second') // 'a' < 'z', so only the clock can make it win
    sync(z, a)
    expect(z.data('k')).toBe('second')
  })

  it('keeps a delete (tombstone) over the value it deleted, and lists only live entries', () => {
    const a = new MemberTable('a:1')
    const b = new MemberTable('b:1')
    a.writeData('p/x', 1)
    a.writeData('p/y', 2)
    a.writeData('q/z', 3)
    sync(b, a)
    b.writeData('p/x', null)
    sync(a, b)
    expect(a.data('p/x')).toBeUndefined()
    expect(a.dataEntries('p/')).toEqual([['p/y', 2]])
    // A stale copy of the old value arriving later changes nothing.
    const stale = new MemberTable('c:1')
    sync(stale, a)
    expect(stale.dataEntries('p/')).toEqual([['p/y', 2]])
  })

  it('converges whatever the order of concurrent writes and merges', () => {
    const origins = ['a:1', 'b:1', 'c:1']
    const op = fc.record({ node: fc.nat(2), key: fc.constantFrom('k1', 'k2'), value: fc.constantFrom<unknown>(null, 1, 'two', { three: 3 }), syncFrom: fc.nat(2) })
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const t = origins.map((o) => new MemberTable(o))
        for (const o of ops) {
          t[o.node]!.writeData(o.key, o.value)
          if (o.syncFrom !== o.node) sync(t[o.node]!, t[o.syncFrom]!)
        }
        for (let round = 0; round < 2; round++) for (const x of t) for (const y of t) if (x !== y) sync(x, y)
        for (const x of t.slice(1)) {
          expect(x.digest()).toBe(t[0]!.digest())
          expect(x.dataEntries('')).toEqual(expect.arrayContaining(t[0]!.dataEntries('')))
          expect(x.dataEntries('').length).toBe(t[0]!.dataEntries('').length)
        }
      }),
    )
  })
})

describe('replicated data written by a restarted incarnation of an authority', () => {
  it('spreads data written before the node learned of its previous incarnation', () => {
    const sync = (to: MemberTable, from: MemberTable): void => void to.apply(from.deltaFor(to.vv()), from.vv())
    const old = new MemberTable('x:1')
    const peer = new MemberTable('y:1')
    old.writeData('a', 1)
    old.writeData('b', 2)
    old.writeData('c', 3)
    sync(peer, old) // the peer has seen x:1 up to seq 3
    const fresh = new MemberTable('x:1') // restarted at the same address: its sequence starts again
    fresh.writeData('new-topic', 'made before the welcome') // seq 1, which the peer takes for seen
    sync(fresh, peer) // the welcome: fresh learns x:1 was at 3
    sync(peer, fresh)
    expect(peer.data('new-topic')).toBe('made before the welcome')
    expect(peer.digest()).toBe(fresh.digest())
  })
})
