/**
 * Per-key limits (key-limits.ts), driven the way PartitionHost drives an
 * activation: arrivals go through admit(), completions start queued heads
 * through next(). Every call here is "async" (it stays in flight until the
 * test completes it), which is the only case where calls can overlap.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DEFAULT_KEY_LIMITS, KeyMailbox, type KeyLimits, keyLimitIssues, type QueuePolicy } from '../../../src/runtime/worker/key-limits.js'

interface Call {
  id: number
  shared: boolean
}

class TestMailbox extends KeyMailbox<Call> {
  protected override isShared(c: Call): boolean {
    return c.shared
  }
}

/** A driver with the same rules as PartitionHost.deliver/#run/#drainQueue. */
class Driver {
  readonly box = new TestMailbox()
  readonly running: Call[] = []
  readonly started: number[] = []
  readonly rejected: number[] = []
  readonly dropped: number[] = []
  maxShared = 0
  #next = 0

  constructor(readonly limits: KeyLimits) {}

  arrive(shared: boolean): number {
    const c = { id: this.#next++, shared }
    const a = this.box.admit(shared, this.limits)
    if (a === 'run') this.#start(c)
    else if (a === 'reject') this.rejected.push(c.id)
    else {
      if (a === 'dropOldest') {
        const old = this.box.dropOldest()!
        // The dropped call is older than every call still waiting.
        for (let i = this.box.queueHead; i < (this.box.queue?.length ?? 0); i++) expect(this.box.queue![i]!.id).toBeGreaterThan(old.id)
        this.dropped.push(old.id)
      }
      this.box.enqueue(c)
    }
    this.#check()
    return c.id
  }

  /** Complete the i-th running call (mod the number running). */
  complete(i: number): void {
    if (this.running.length === 0) return
    const [c] = this.running.splice(i % this.running.length, 1)
    if (c!.shared) this.box.sharedRunning--
    else this.box.busy = false
    for (let n = this.box.next(this.limits); n !== undefined; n = this.box.next(this.limits)) this.#start(n)
    this.#check()
  }

  drainAll(): void {
    for (let guard = 0; this.running.length > 0 && guard < 1_000_000; guard++) this.complete(0)
    expect(this.box.queued).toBe(0)
  }

  #start(c: Call): void {
    if (c.shared) this.box.sharedRunning++
    else this.box.busy = true
    this.running.push(c)
    this.started.push(c.id)
    this.maxShared = Math.max(this.maxShared, this.box.sharedRunning)
  }

  #check(): void {
    const b = this.box
    if (b.busy) expect(b.sharedRunning).toBe(0)
    expect(b.sharedRunning).toBeLessThanOrEqual(this.limits.concurrencyLimit)
    expect(b.queued).toBeLessThanOrEqual(this.limits.queueDepth)
    expect(b.queue === null).toBe(b.queued === 0)
  }
}

const limits = (concurrencyLimit: number, queueDepth: number, queuePolicy: QueuePolicy): KeyLimits => ({ concurrencyLimit, queueDepth, queuePolicy })

describe('key limits (sans-I/O)', () => {
  it('defaults: one call at a time, 10 000 waiting, reject', () => {
    expect(DEFAULT_KEY_LIMITS).toEqual({ concurrencyLimit: 1, queueDepth: 10_000, queuePolicy: 'reject' })
  })

  it('reject: with one call in flight and depth 5, 12 arrivals keep the first 5 and refuse exactly 7', () => {
    const d = new Driver(limits(1, 5, 'reject'))
    d.arrive(false) // in flight
    for (let i = 0; i < 12; i++) d.arrive(false)
    expect(d.rejected).toEqual([6, 7, 8, 9, 10, 11, 12])
    expect(d.dropped).toEqual([])
    d.drainAll()
    expect(d.started).toEqual([0, 1, 2, 3, 4, 5])
  })

  it('dropOldest: with one call in flight and depth 5, 12 arrivals drop exactly the 7 oldest waiting and keep the newest 5 in order', () => {
    const d = new Driver(limits(1, 5, 'dropOldest'))
    d.arrive(false)
    for (let i = 0; i < 12; i++) d.arrive(false)
    expect(d.dropped).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(d.rejected).toEqual([])
    d.drainAll()
    expect(d.started).toEqual([0, 8, 9, 10, 11, 12])
  })

  it('read-only calls overlap up to concurrencyLimit; a write waits for them and runs alone; later reads wait for the write', () => {
    const d = new Driver(limits(4, 100, 'reject'))
    for (let i = 0; i < 6; i++) d.arrive(true) // 0..3 run, 4..5 wait
    expect(d.box.sharedRunning).toBe(4)
    const w = d.arrive(false) // 6
    d.arrive(true) // 7: behind the write, even though a shared slot frees up
    d.complete(0) // 4 starts
    expect(d.started).toEqual([0, 1, 2, 3, 4])
    d.complete(0)
    d.complete(0)
    d.complete(0)
    d.complete(0) // 5 started on the way; the write still waits for 5
    expect(d.started).toEqual([0, 1, 2, 3, 4, 5])
    d.complete(0) // 5 done → write starts alone
    expect(d.started.at(-1)).toBe(w)
    expect(d.box.busy).toBe(true)
    expect(d.box.sharedRunning).toBe(0)
    d.complete(0) // write done → 7
    expect(d.started).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(d.maxShared).toBe(4)
  })

  it('with concurrencyLimit 1 a read-only call is exclusive too', () => {
    const d = new Driver(limits(1, 10, 'reject'))
    d.arrive(true)
    d.arrive(true)
    expect(d.started).toEqual([0])
    d.drainAll()
    expect(d.maxShared).toBe(1)
  })

  it('a queue that never empties is compacted (bounded memory under steady dropOldest overload)', () => {
    const d = new Driver(limits(1, 8, 'dropOldest'))
    d.arrive(false)
    for (let i = 0; i < 5_000; i++) d.arrive(false)
    expect(d.box.queued).toBe(8)
    expect(d.box.queue!.length).toBeLessThan(2 * 1024 + 8)
    expect(d.dropped.length).toBe(5_000 - 8)
    d.drainAll()
    expect(d.started).toEqual([0, ...Array.from({ length: 8 }, (_, i) => 5_000 - 7 + i)])
  })

  it('fast-check: under random arrivals and completions the kept calls start in arrival order, limits hold, and every call is started, rejected or dropped exactly once', () => {
    const action = fc.oneof(fc.record({ t: fc.constant('arrive' as const), shared: fc.boolean() }), fc.record({ t: fc.constant('complete' as const), i: fc.nat(50) }))
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 8 }), fc.constantFrom<QueuePolicy>('reject', 'dropOldest'), fc.array(action, { maxLength: 300 }), (limit, depth, policy, actions) => {
        const d = new Driver(limits(limit, depth, policy))
        let arrivals = 0
        for (const a of actions) {
          if (a.t === 'arrive') {
            d.arrive(a.shared)
            arrivals++
          } else d.complete(a.i)
        }
        d.drainAll()
        const gone = new Set([...d.rejected, ...d.dropped])
        const kept = Array.from({ length: arrivals }, (_, i) => i).filter((i) => !gone.has(i))
        expect(d.started).toEqual(kept)
        expect(d.started.length + d.rejected.length + d.dropped.length).toBe(arrivals)
        if (policy === 'reject') expect(d.dropped).toEqual([])
        else expect(d.rejected).toEqual([])
        expect(d.maxShared).toBeLessThanOrEqual(limit)
      }),
      { numRuns: 300 },
    )
  })

  it('validates declared limits', () => {
    expect(keyLimitIssues({})).toEqual([])
    expect(keyLimitIssues({ concurrencyLimit: 0, queueDepth: 1.5, queuePolicy: 'dropNewest' })).toEqual([
      'concurrencyLimit must be an integer in [1, 65536] (got 0)',
      'queueDepth must be an integer in [1, 16777216] (got 1.5)',
      `queuePolicy must be 'reject' or 'dropOldest' (got "dropNewest")`,
    ])
  })
})
