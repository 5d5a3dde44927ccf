import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LocalHealth } from '../../../../src/cluster/failure-detector/local-health.js'
import { seededRng } from '../../../helpers/seeded-rng.js'

const TICK_MS = 100

describe('LocalHealth', () => {
  it('starts the clock on the first tick and stays healthy under ordinary timer jitter', () => {
    const lh = new LocalHealth({ lagThresholdMs: 250, graceMs: 1000 })
    expect(lh.tick(5_000, TICK_MS)).toEqual({ status: 'healthy', lagMs: 0 })
    const rng = seededRng(7)
    let now = 5_000
    for (let i = 0; i < 10_000; i++) {
      now += TICK_MS + rng() * 40 // timers fire up to 40 ms late
      const v = lh.tick(now, TICK_MS)
      expect(v.status).toBe('healthy')
    }
    expect(lh.pauseCount).toBe(0)
    expect(lh.maxLagMs).toBeLessThanOrEqual(40)
    expect(lh.isPaused(now)).toBe(false)
  })

  it('reports a 3 s blocked event loop as a pause with its lag, blind gap and grace window', () => {
    const lh = new LocalHealth({ lagThresholdMs: 250, graceMs: 1000 })
    lh.tick(0, TICK_MS)
    lh.tick(100, TICK_MS)
    const v = lh.tick(3_200, TICK_MS) // the timer due at 200 fired at 3200
    expect(v).toEqual({ status: 'paused', lagMs: 3_000, blindMs: 3_100, pausedUntilMs: 4_200 })
    expect(lh.lastLagMs).toBe(3_000)
    expect(lh.pauseCount).toBe(1)
    expect(lh.isPaused(4_199)).toBe(true)
    expect(lh.isPaused(4_200)).toBe(false)
    expect(lh.tick(3_300, TICK_MS)).toEqual({ status: 'healthy', lagMs: 0 })
    expect(lh.pausedUntilMs).toBe(4_200)
  })

  it('counts a lag equal to the threshold as healthy and anything above as a pause', () => {
    const lh = new LocalHealth({ lagThresholdMs: 250, graceMs: 0 })
    lh.tick(0, TICK_MS)
    expect(lh.tick(350, TICK_MS)).toEqual({ status: 'healthy', lagMs: 250 })
    expect(lh.tick(700.5, TICK_MS).status).toBe('paused')
  })

  it('a 1 s SIGSTOP is a pause for any tick period up to the 250 ms threshold below it', () => {
    for (const period of [50, 100, 250, 500, 750]) {
      const lh = new LocalHealth({ lagThresholdMs: 250, graceMs: 500 })
      lh.tick(0, period)
      const v = lh.tick(period + 1_000, period) // the next firing came 1 s late
      expect(v.status, `period ${period}`).toBe('paused')
    }
  })

  it('extends, never shortens, the grace window on back-to-back pauses', () => {
    const lh = new LocalHealth({ lagThresholdMs: 250, graceMs: 1000 })
    lh.tick(0, TICK_MS)
    lh.tick(1_000, TICK_MS)
    expect(lh.pausedUntilMs).toBe(2_000)
    lh.tick(1_500, TICK_MS)
    expect(lh.pausedUntilMs).toBe(2_500)
  })

  it('never reports a negative or NaN lag, whatever the timestamps (early firings, clock going backwards)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.double({ min: -1e4, max: 1e5, noNaN: true }), fc.double({ min: -10, max: 1e4, noNaN: true })), { maxLength: 50 }), (steps) => {
        const lh = new LocalHealth({ lagThresholdMs: 250, graceMs: 100 })
        let now = 0
        for (const [dt, expected] of steps) {
          const v = lh.tick((now += dt), expected)
          expect(v.lagMs).toBeGreaterThanOrEqual(0)
          expect(v.lagMs).not.toBeNaN()
          if (v.status === 'paused') expect(v.blindMs).toBeGreaterThanOrEqual(v.lagMs)
        }
      }),
    )
  })
})
