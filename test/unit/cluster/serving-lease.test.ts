import { describe, expect, it } from 'vitest'
import type { Member } from '../../../src/cluster/membership/member.js'
import { ServingLease } from '../../../src/cluster/placement/serving-lease.js'

const up = (authority: string): Member => ({ authority, nodeId: `n-${authority}`, status: 'up', upNumber: 1 })
const members = ['a:1', 'b:1', 'c:1'].map(up)
const seeds = ['a:1', 'b:1']

describe('ServingLease', () => {
  it('holds while a majority was heard within the lease, and lapses leaseMs after the last majority contact', () => {
    const lease = new ServingLease(1_000)
    lease.heard('b:1', 0)
    lease.heard('c:1', 0)
    expect(lease.valid(members, seeds, 'a:1', 500)).toBe(true)
    // b keeps answering, c went silent: a and b still make a majority.
    lease.heard('b:1', 900)
    expect(lease.valid(members, seeds, 'a:1', 1_500)).toBe(true)
    // Nobody since 900: the lease lapses at 1 900.
    expect(lease.valid(members, seeds, 'a:1', 1_880)).toBe(true)
    expect(lease.valid(members, seeds, 'a:1', 1_930)).toBe(false)
  })

  it('a member not heard from yet counts from when it was first seen; silence past the lease lapses it; hearing again restores it', () => {
    const lease = new ServingLease(1_000)
    expect(lease.valid(members, seeds, 'c:1', 0)).toBe(true)
    expect(lease.valid(members, seeds, 'c:1', 1_100)).toBe(false)
    lease.heard('a:1', 1_200)
    expect(lease.valid(members, seeds, 'c:1', 1_300)).toBe(true)
  })

  it('above directLimit members, judges among the members it has heard from (ring neighbours)', () => {
    const many = Array.from({ length: 20 }, (_, i) => up(`m${String(i).padStart(2, '0')}:1`))
    const lease = new ServingLease(1_000, 11)
    for (const n of ['m01:1', 'm02:1', 'm03:1']) lease.heard(n, 0)
    lease.heard('m04:1', -5_000)
    // 3 of 4 neighbours fresh (+ self): majority of the 5 tracked.
    expect(lease.valid(many, ['m00:1'], 'm00:1', 500)).toBe(true)
    expect(lease.valid(many, ['m00:1'], 'm00:1', 2_000)).toBe(false)
  })

  it('in a two-node cluster the side with the first seed keeps serving alone; the other stops', () => {
    const two = ['a:1', 'b:1'].map(up)
    const onA = new ServingLease(1_000)
    const onB = new ServingLease(1_000)
    onA.heard('b:1', 0)
    onB.heard('a:1', 0)
    expect(onA.valid(two, seeds, 'a:1', 5_000)).toBe(true)
    expect(onB.valid(two, seeds, 'b:1', 5_000)).toBe(false)
  })

  it('time going backwards never extends the lease', () => {
    const lease = new ServingLease(1_000)
    lease.heard('b:1', 1_000)
    lease.heard('b:1', 500)
    expect(lease.lastHeardMs('b:1')).toBe(1_000)
  })
})
