import { describe, expect, it } from 'vitest'
import { checkAlertSettings, RpcAlerts } from '../../../src/rpc/rpc-alerts.js'

describe('RPC alerts (sliding window, time passed in)', () => {
  it('raises error-rate once when crossed with enough calls, clears once when back under', () => {
    const a = new RpcAlerts({ windowMs: 10_000, errorRate: 0.2, minCalls: 10, latencyP99Ms: 1_000 })
    let t = 0
    // 5 failures of 5: over the rate but below minCalls.
    for (let i = 0; i < 5; i++) expect(a.record('counter', t++, 1, false)).toBeUndefined()
    for (let i = 0; i < 4; i++) expect(a.record('counter', t++, 1, true)).toBeUndefined()
    const raised = a.record('counter', t++, 1, true)
    expect(raised).toEqual([{ kind: 'counter', signal: 'error-rate', active: true, observed: 0.5, threshold: 0.2, calls: 10, windowMs: 10_000 }])
    // Still over: no repeat.
    expect(a.record('counter', t++, 1, false)).toBeUndefined()
    expect(a.active()).toEqual([{ kind: 'counter', signal: 'error-rate' }])
    // 6 errors: 'over' means strictly above, so at 30 calls (6/30 = 0.2) it is back under, and not before.
    const cleared: unknown[] = []
    let calls = 11
    while (cleared.length === 0 && calls < 100) {
      const r = a.record('counter', t++, 1, true)
      calls++
      if (r !== undefined) cleared.push(...r)
    }
    expect(calls).toBe(30)
    expect(cleared).toEqual([{ kind: 'counter', signal: 'error-rate', active: false, observed: 6 / 30, threshold: 0.2, calls: 30, windowMs: 10_000 }])
    expect(a.active()).toEqual([])
    // Another kind has its own window.
    expect(a.record('other', t++, 1, false)).toBeUndefined()
  })

  it('latency: p99 over the threshold means more than 1% of the window slower than it', () => {
    const a = new RpcAlerts({ windowMs: 1_000, latencyP99Ms: 100, minCalls: 100, errorRate: 0.99 })
    for (let i = 0; i < 99; i++) a.record('k', 0, 5, true)
    // 1 slow of 100 = p99 is still a fast call.
    expect(a.record('k', 0, 150, true)).toBeUndefined()
    const r = a.record('k', 0, 150, true)
    expect(r).toEqual([{ kind: 'k', signal: 'latency', active: true, observed: 2 / 101, threshold: 100, calls: 101, windowMs: 1_000 }])
  })

  it('slides: old slots expire, and a window with no calls left clears the signal on tick', () => {
    const a = new RpcAlerts({ windowMs: 1_000, errorRate: 0.5, minCalls: 2 })
    expect(a.record('k', 0, 1, false)).toBeUndefined()
    expect(a.record('k', 50, 1, false)?.[0]).toMatchObject({ signal: 'error-rate', active: true, calls: 2 })
    // 950 ms later both still count (slots of 100 ms: the slot of t=0 leaves at t=1000).
    expect(a.tick(950)).toEqual([])
    // Successes after the failures expired: 2 calls, 0 errors.
    expect(a.tick(1_099)).toEqual([{ kind: 'k', signal: 'error-rate', active: false, observed: 0, threshold: 0.5, calls: 0, windowMs: 1_000 }])
    expect(a.record('k', 1_100, 1, true)).toBeUndefined()
    expect(a.record('k', 1_150, 1, false)).toBeUndefined()
    // A long gap drops everything at once.
    expect(a.record('k', 60_000, 1, false)).toBeUndefined()
    expect(a.record('k', 60_001, 1, false)?.[0]).toMatchObject({ active: true, calls: 2, observed: 1 })
  })

  it('a clock that steps back keeps counting in the newest slot', () => {
    const a = new RpcAlerts({ windowMs: 1_000, errorRate: 0.5, minCalls: 3 })
    a.record('k', 500, 1, false)
    a.record('k', 400, 1, false)
    expect(a.record('k', 300, 1, false)?.[0]).toMatchObject({ active: true, calls: 3 })
  })

  it('validates its settings', () => {
    expect(checkAlertSettings(undefined, 'rpc.alerts')).toEqual([])
    expect(checkAlertSettings(false, 'rpc.alerts')).toEqual([])
    expect(checkAlertSettings({ windowMs: 5, errorRate: 1, minCalls: 0, extra: 1 }, 'rpc.alerts')).toEqual([
      'rpc.alerts.extra is not a setting (known: windowMs, latencyP99Ms, errorRate, minCalls)',
      'rpc.alerts.windowMs must be an integer in [10, 86400000] (got 5)',
      'rpc.alerts.minCalls must be an integer in [1, 1000000] (got 0)',
      'rpc.alerts.errorRate must be a number in [0, 1) (got 1)',
    ])
  })
})
