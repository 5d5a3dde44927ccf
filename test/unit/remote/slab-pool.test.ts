import { describe, expect, it } from 'vitest'
import { SlabPool } from '../../../src/remote/transport/slab-pool.js'

describe('SlabPool', () => {
  it('reuses a slab only once it is retired and its last write completed', () => {
    const pool = new SlabPool(1024, 4)
    const s = pool.take(100)
    expect(s.buf.length).toBe(1024)
    s.writes += 2 // two flushes hold views of it
    pool.release(s)
    s.retired = true // frames go to another slab now
    expect(pool.spare).toBe(0) // one write still in flight
    pool.release(s)
    expect(pool.spare).toBe(1)
    expect(pool.take(10)).toBe(s)
    expect(s.retired).toBe(false)
    expect({ allocated: pool.allocated, reused: pool.reused }).toEqual({ allocated: 1, reused: 1 })
  })

  it('does not pool the current slab when its writes complete, nor odd-sized slabs, nor beyond maxSpare', () => {
    const pool = new SlabPool(1024, 2)
    const current = pool.take(1)
    current.writes = 1
    pool.release(current) // not retired: it is still being packed
    expect(pool.spare).toBe(0)

    const big = pool.take(4096) // one frame larger than a slab
    expect(big.buf.length).toBe(4096)
    big.writes = 1
    big.retired = true
    pool.release(big)
    expect(pool.spare).toBe(0)

    const slabs = [pool.take(1), pool.take(1), pool.take(1)]
    for (const s of slabs) {
      s.writes = 1
      s.retired = true
      pool.release(s)
    }
    expect(pool.spare).toBe(2)
    // A request larger than a slab never gets a spare one.
    expect(pool.take(2048).buf.length).toBe(2048)
    expect(pool.spare).toBe(2)
  })
})
