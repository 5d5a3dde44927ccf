import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { EventStream, type RuntimeEvent } from '../../../src/index.js'
import { InboundFlow } from '../../../src/remote/inbound-flow.js'

/** A flow controller over a backlog the test sets, with a clock the fake timers drive. */
function setup(maxPauseMs = 100, bounded?: (authority: string) => boolean) {
  const events = new EventStream()
  const seen: RuntimeEvent[] = []
  events.subscribe('transport.*', (e) => void seen.push(e))
  const calls: string[] = []
  const state = { backlog: 0 }
  const flow = new InboundFlow({
    highWater: 50,
    lowWater: 10,
    maxPauseMs,
    backlog: () => state.backlog,
    setPaused: (a, p) => void calls.push(`${p ? 'pause' : 'resume'} ${a}`),
    events,
    now: () => Date.now(),
    ...(bounded === undefined ? {} : { bounded }),
  })
  return { flow, state, calls, seen }
}

describe('InboundFlow', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('pauses the sending peer at the high-water mark and resumes it once the backlog drains to the low-water mark', () => {
    const { flow, state, calls, seen } = setup()
    state.backlog = 49
    flow.afterFrame('b:1')
    expect(calls).toEqual([])
    state.backlog = 50
    flow.afterFrame('b:1')
    flow.afterFrame('b:1') // already paused: nothing more
    expect(calls).toEqual(['pause b:1'])
    expect(flow.paused).toEqual(['b:1'])
    expect(seen).toMatchObject([{ type: 'transport.inbound-paused', authority: 'b:1', backlog: 50 }])
    expect((seen[0] as { reason: string }).reason).toContain('high water 50')

    state.backlog = 11
    vi.advanceTimersByTime(20)
    expect(calls).toEqual(['pause b:1']) // above low water: still paused
    state.backlog = 10
    vi.advanceTimersByTime(5)
    expect(calls).toEqual(['pause b:1', 'resume b:1'])
    expect(flow.paused).toEqual([])
    expect(seen[1]).toMatchObject({ type: 'transport.inbound-resumed', authority: 'b:1', cause: 'drained', backlog: 10 })
    expect((seen[1] as { pausedMs: number }).pausedMs).toBeGreaterThanOrEqual(20)
    expect(vi.getTimerCount()).toBe(0) // nothing paused: no polling
  })

  it('does not bound the pause of a peer whose heartbeats have a control lane, and does again once the lane is gone', () => {
    const lanes = new Set(['b:1'])
    const { flow, state, calls, seen } = setup(100, (a) => !lanes.has(a))
    state.backlog = 1_000
    flow.afterFrame('b:1')
    flow.afterFrame('c:1')
    expect((seen[0] as { reason: string }).reason).toContain('heartbeats go on over the control lane')
    expect((seen[1] as { reason: string }).reason).toContain('for at most 100 ms')
    vi.advanceTimersByTime(500)
    // c:1 (no lane) was read again at the limit; b:1 stays paused while the backlog lasts.
    expect(calls).toEqual(['pause b:1', 'pause c:1', 'resume c:1'])
    lanes.delete('b:1') // its lane went down: its heartbeats wait behind the data again
    vi.advanceTimersByTime(5)
    expect(calls.at(-1)).toBe('resume b:1')
    expect(seen.at(-1)).toMatchObject({ type: 'transport.inbound-resumed', authority: 'b:1', cause: 'pause-limit' })
  })

  it('ends a pause at maxPauseMs and then reads that peer for as long before it may pause it again', () => {
    const { flow, state, calls, seen } = setup(100)
    state.backlog = 1_000 // a worker stuck in a long handler
    flow.afterFrame('b:1')
    vi.advanceTimersByTime(99)
    expect(calls).toEqual(['pause b:1'])
    vi.advanceTimersByTime(5)
    expect(calls).toEqual(['pause b:1', 'resume b:1'])
    expect(seen.at(-1)).toMatchObject({ type: 'transport.inbound-resumed', cause: 'pause-limit' })

    flow.afterFrame('b:1') // within the hold-off: read on, frames over the bound are dead-lettered as before
    vi.advanceTimersByTime(50)
    flow.afterFrame('b:1')
    expect(calls).toHaveLength(2)
    vi.advanceTimersByTime(60)
    flow.afterFrame('b:1') // hold-off over
    expect(calls).toEqual(['pause b:1', 'resume b:1', 'pause b:1'])
  })

  it('pauses each peer on its own; a disconnect or close resumes what is paused', () => {
    const { flow, state, calls, seen } = setup()
    state.backlog = 60
    flow.afterFrame('b:1')
    flow.afterFrame('c:2')
    expect(flow.paused).toEqual(['b:1', 'c:2'])
    flow.disconnected('b:1')
    flow.disconnected('x:9') // never paused: nothing
    expect(flow.paused).toEqual(['c:2'])
    flow.close()
    expect(flow.paused).toEqual([])
    expect(calls).toEqual(['pause b:1', 'pause c:2', 'resume b:1', 'resume c:2'])
    expect(seen.filter((e) => e.type === 'transport.inbound-resumed').map((e) => (e as { cause: string }).cause)).toEqual(['disconnected', 'closed'])
    flow.afterFrame('b:1') // closed: never pauses again
    expect(calls).toHaveLength(4)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('a connection that pauses again while it resumes (held frames handed over at once) stays paused until the backlog drains again', () => {
    const events = new EventStream()
    const seen: RuntimeEvent[] = []
    events.subscribe('transport.*', (e) => void seen.push(e))
    const state = { backlog: 0 }
    const calls: string[] = []
    const flow: InboundFlow = new InboundFlow({
      highWater: 50,
      lowWater: 10,
      maxPauseMs: 10_000,
      backlog: () => state.backlog,
      // Resuming hands over held frames synchronously, as the transport does: they fill the backlog again.
      setPaused: (a, p) => {
        calls.push(`${p ? 'pause' : 'resume'} ${a}`)
        if (!p) {
          state.backlog = 60
          flow.afterFrame(a)
        }
      },
      events,
      now: () => Date.now(),
    })
    state.backlog = 50
    flow.afterFrame('b:1')
    state.backlog = 5
    vi.advanceTimersByTime(10)
    // Resumed once, paused again by its own held frames, and not resumed a second time on a stale "drained".
    expect(calls).toEqual(['pause b:1', 'resume b:1', 'pause b:1'])
    expect(flow.paused).toEqual(['b:1'])
    expect(seen.map((e) => e.type)).toEqual(['transport.inbound-paused', 'transport.inbound-resumed', 'transport.inbound-paused'])
    flow.close()
  })

  it('refuses marks that cannot work', () => {
    const events = new EventStream()
    const o = { maxPauseMs: 1, backlog: () => 0, setPaused: () => {}, events }
    expect(() => new InboundFlow({ ...o, highWater: 10, lowWater: 10 })).toThrow(RangeError)
    expect(() => new InboundFlow({ ...o, highWater: 10, lowWater: -1 })).toThrow(RangeError)
  })
})
