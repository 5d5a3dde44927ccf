import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HeartbeatHistory, PhiAccrualDetector, phiCrossingMs, phiOf } from '../../../../src/cluster/failure-detector/phi-accrual.js'
import type { PhiAccrualOptions } from '../../../../src/cluster/failure-detector/phi-accrual.js'

/*
 * Golden vectors: every expected value in the first two describe blocks is
 * copied from Apache Pekko's spec of the detector this file ports,
 *   apache/pekko remote/src/test/scala/org/apache/pekko/remote/AccrualFailureDetectorSpec.scala
 * (identical in akka/akka akka-remote/src/test/scala/akka/remote/AccrualFailureDetectorSpec.scala),
 * with the same tolerances. The spec drives the detector with a fake clock
 * that returns the running sum of a list of intervals, one value per call
 * of heartbeat()/phi/isAvailable; `pekkoClock` reproduces that.
 */

/** Pekko's `createFailureDetector` defaults. */
function pekkoDetector(overrides: Partial<PhiAccrualOptions> = {}): PhiAccrualDetector {
  return new PhiAccrualDetector({
    threshold: 8,
    maxSampleSize: 1000,
    minStdDeviationMs: 100,
    acceptableHeartbeatPauseMs: 0,
    firstHeartbeatEstimateMs: 1000,
    ...overrides,
  })
}

/** Pekko's `fakeTimeGenerator`: each call returns the next running sum of `intervals`. */
function pekkoClock(intervals: readonly number[]): () => number {
  let t = 0
  let i = 0
  return () => {
    const d = intervals[i++]
    if (d === undefined) throw new Error('fake clock exhausted')
    t += d
    return t
  }
}

/** Pekko's `cdf(phi) = 1 - 10^-phi`. */
const cdf = (phi: number): number => 1 - 10 ** -phi

/** Pekko's phi formula verbatim (two branches, linear space), for comparison. */
function pekkoPhi(timeDiff: number, mean: number, std: number): number {
  const y = (timeDiff - mean) / std
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y))
  return timeDiff > mean ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e))
}

describe('phiOf: Pekko AccrualFailureDetectorSpec golden values', () => {
  it('uses a good enough cumulative distribution function', () => {
    expect(cdf(phiOf(0, 0, 10))).toBeCloseTo(0.5, 3)
    const vectors: [number, number, number][] = [
      [6, 0.7257, 0.001],
      [15, 0.9332, 0.001],
      [20, 0.97725, 0.001],
      [25, 0.99379, 0.001],
      [35, 0.99977, 0.001],
      [40, 0.99997, 0.0001],
    ]
    for (const [timeDiff, expected, tolerance] of vectors) {
      expect(Math.abs(cdf(phiOf(timeDiff, 0, 10)) - expected)).toBeLessThanOrEqual(tolerance)
    }
    for (let x = 0; x < 40; x++) expect(phiOf(x, 0, 10)).toBeLessThan(phiOf(x + 1, 0, 10))
    expect(Math.abs(cdf(phiOf(22, 20, 3)) - 0.7475)).toBeLessThanOrEqual(0.001)
  })

  it('handles outliers without losing precision or hitting exceptions', () => {
    expect(Math.abs(phiOf(10, 0, 1) - 38)).toBeLessThanOrEqual(1)
    expect(phiOf(-25, 0, 1)).toBe(0)
  })

  it('returns realistic phi values (mean 1000 ms, std 100 ms)', () => {
    const expected: [number, number][] = [
      [0, 0.0],
      [500, 0.1],
      [1000, 0.3],
      [1200, 1.6],
      [1400, 4.7],
      [1600, 10.8],
      [1700, 15.3],
    ]
    for (const [timeDiff, phi] of expected) {
      expect(Math.abs(phiOf(timeDiff, 1000, 100) - phi), `timeDiff ${timeDiff}`).toBeLessThanOrEqual(0.1)
    }
    // larger stdDeviation => lower phi
    expect(phiOf(1100, 1000, 500)).toBeLessThan(phiOf(1100, 1000, 100))
  })
})

describe('PhiAccrualDetector: Pekko AccrualFailureDetectorSpec sequences', () => {
  it('returns phi 0.0 on startup, when no heartbeats', () => {
    const fd = pekkoDetector()
    expect(fd.phi(0)).toBe(0)
    expect(fd.phi(123_456)).toBe(0)
    expect(fd.isMonitoring).toBe(false)
    expect(fd.lastHeartbeatMs).toBeUndefined()
  })

  it('returns phi based on the first-heartbeat guess when only one heartbeat', () => {
    const clock = pekkoClock([0, 1000, 1000, 1000, 1000])
    const fd = pekkoDetector({ firstHeartbeatEstimateMs: 1000 })
    fd.heartbeat(clock())
    expect(Math.abs(fd.phi(clock()) - 0.3)).toBeLessThanOrEqual(0.2)
    expect(Math.abs(fd.phi(clock()) - 4.5)).toBeLessThanOrEqual(0.3)
    expect(fd.phi(clock())).toBeGreaterThan(15)
  })

  it('returns a phi value using the first interval after the second heartbeat', () => {
    const clock = pekkoClock([0, 100, 100, 100])
    const fd = pekkoDetector()
    fd.heartbeat(clock())
    expect(fd.phi(clock())).toBeGreaterThan(0)
    fd.heartbeat(clock())
    expect(fd.phi(clock())).toBeGreaterThan(0)
  })

  it('marks a node as monitored after a series of successful heartbeats', () => {
    const clock = pekkoClock([0, 1000, 100, 100])
    const fd = pekkoDetector()
    expect(fd.isMonitoring).toBe(false)
    fd.heartbeat(clock())
    fd.heartbeat(clock())
    fd.heartbeat(clock())
    expect(fd.isMonitoring).toBe(true)
    expect(fd.isAvailable(clock())).toBe(true)
  })

  it('marks a node as dead if heartbeats are missed', () => {
    const clock = pekkoClock([0, 1000, 100, 100, 7000])
    const fd = pekkoDetector({ threshold: 3 })
    fd.heartbeat(clock()) // 0
    fd.heartbeat(clock()) // 1000
    fd.heartbeat(clock()) // 1100
    expect(fd.isAvailable(clock())).toBe(true) // 1200
    expect(fd.isAvailable(clock())).toBe(false) // 8200
  })

  it('marks a node as available again if it starts heartbeating after being marked dead', () => {
    // 1000 regular intervals, a 5 minute pause, then a 7 s pause that must trigger again.
    const regular = [0, ...Array.from({ length: 999 }, () => 1000)]
    const clock = pekkoClock([...regular, 5 * 60 * 1000, 100, 900, 100, 7000, 100, 900, 100, 900])
    const fd = pekkoDetector({ threshold: 8, acceptableHeartbeatPauseMs: 3000 })
    for (let i = 0; i < 1000; i++) fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(false) // after the long pause
    expect(fd.heartbeat(clock())).toBe('not-sampled') // the outage is not a sample
    expect(fd.isAvailable(clock())).toBe(true)
    fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(false) // after the 7 s pause
    fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(true)
    fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(true)
  })

  it('accepts some configured missing heartbeats', () => {
    const clock = pekkoClock([0, 1000, 1000, 1000, 4000, 1000, 1000])
    const fd = pekkoDetector({ acceptableHeartbeatPauseMs: 3000 })
    fd.heartbeat(clock())
    fd.heartbeat(clock())
    fd.heartbeat(clock())
    fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(true)
    fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(true)
  })

  it('fails after the configured acceptable missing heartbeats', () => {
    const clock = pekkoClock([0, 1000, 1000, 1000, 1000, 1000, 500, 500, 5000])
    const fd = pekkoDetector({ acceptableHeartbeatPauseMs: 3000 })
    for (let i = 0; i < 6; i++) fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(true)
    fd.heartbeat(clock())
    expect(fd.isAvailable(clock())).toBe(false)
  })

  it('uses maxSampleSize heartbeats', () => {
    const clock = pekkoClock([0, 100, 100, 100, 100, 600, 500, 500, 500, 500, 500])
    const fd = pekkoDetector({ maxSampleSize: 3 })
    // 100 ms interval
    fd.heartbeat(clock()) // 0
    fd.heartbeat(clock()) // 100
    fd.heartbeat(clock()) // 200
    fd.heartbeat(clock()) // 300
    const phi1 = fd.phi(clock()) // 400
    // 500 ms interval: the same phi once the 100 ms intervals have been dropped
    fd.heartbeat(clock()) // 1000
    fd.heartbeat(clock()) // 1500
    fd.heartbeat(clock()) // 2000
    fd.heartbeat(clock()) // 2500
    const phi2 = fd.phi(clock()) // 3000
    expect(Math.abs(phi2 - phi1)).toBeLessThanOrEqual(0.001)
  })
})

describe('HeartbeatHistory: Pekko "Statistics for heartbeats" golden values', () => {
  it('calculates the correct mean and variance', () => {
    const h = new HeartbeatHistory(20)
    for (const v of [100, 200, 125, 340, 130]) h.push(v)
    expect(h.mean).toBeCloseTo(179.0, 5)
    expect(h.variance).toBeCloseTo(7584.0, 5)
  })

  it('has 0.0 variance for one sample', () => {
    const h = new HeartbeatHistory(600)
    h.push(1000)
    expect(h.variance).toBeCloseTo(0, 5)
  })

  it('is capped by maxSampleSize', () => {
    const h = new HeartbeatHistory(3)
    for (const v of [100, 110, 90]) h.push(v)
    expect(h.mean).toBeCloseTo(100.0, 5)
    expect(h.variance).toBeCloseTo(66.6666667, 5)
    h.push(140)
    expect(h.mean).toBeCloseTo(113.333333, 5)
    expect(h.variance).toBeCloseTo(422.222222, 5)
    h.push(80)
    expect(h.mean).toBeCloseTo(103.333333, 5)
    expect(h.variance).toBeCloseTo(688.88888889, 5)
    expect(h.samples()).toEqual([90, 140, 80])
  })

  it('pops newest-first across the ring wrap and keeps its sums exact', () => {
    const h = new HeartbeatHistory(3)
    for (const v of [1, 2, 3, 4, 5]) h.push(v, v) // window [3, 4, 5]
    expect(h.popNewest()).toBe(5)
    expect(h.newestTakenAtMs).toBe(4)
    h.push(10, 10)
    expect(h.samples()).toEqual([3, 4, 10])
    expect(h.mean).toBeCloseTo(17 / 3, 12)
    expect(h.popNewest()).toBe(10)
    expect(h.popNewest()).toBe(4)
    expect(h.popNewest()).toBe(3)
    expect(h.popNewest()).toBeUndefined()
    expect(h.size).toBe(0)
    expect(() => new HeartbeatHistory(0)).toThrow(RangeError)
  })

  it('does not drift over millions of fractional samples', () => {
    const h = new HeartbeatHistory(7)
    for (let i = 0; i < 1_000_000; i++) h.push(1000 + (i % 7) * 0.1 + 1e-3 * Math.sin(i))
    const s = h.samples()
    const mean = s.reduce((a, b) => a + b, 0) / s.length
    const variance = s.reduce((a, b) => a + (b - mean) ** 2, 0) / s.length
    expect(h.mean).toBeCloseTo(mean, 9)
    expect(h.variance).toBeCloseTo(variance, 6)
  })
})

describe('phiOf: log-space evaluation of Pekko formula', () => {
  it('agrees with the verbatim two-branch formula wherever that one is finite', () => {
    fc.assert(
      fc.property(fc.double({ min: -1e5, max: 1e5, noNaN: true }), fc.double({ min: 0, max: 1e4, noNaN: true }), fc.double({ min: 1, max: 1e4, noNaN: true }), (timeDiff, mean, std) => {
        const reference = pekkoPhi(timeDiff, mean, std)
        const ours = phiOf(timeDiff, mean, std)
        expect(Number.isFinite(ours)).toBe(true)
        if (Number.isFinite(reference)) expect(Math.abs(ours - reference)).toBeLessThanOrEqual(1e-9 * Math.max(1, reference))
      }),
    )
  })

  it('stays finite where the verbatim formula overflows (y above ~21.6)', () => {
    expect(Number.isFinite(pekkoPhi(21, 0, 1))).toBe(true)
    expect(pekkoPhi(22, 0, 1)).toBe(Infinity)
    expect(phiOf(22, 0, 1)).toBeGreaterThan(pekkoPhi(21, 0, 1))
    expect(Number.isFinite(phiOf(1e9, 0, 1))).toBe(true)
  })

  it('treats a zero or NaN deviation as the step distribution, never NaN', () => {
    expect(phiOf(5, 10, 0)).toBe(0)
    expect(phiOf(10, 10, 0)).toBeCloseTo(Math.log10(2), 12)
    expect(phiOf(11, 10, 0)).toBe(Infinity)
    expect(phiOf(11, 10, Number.NaN)).toBe(Infinity)
    expect(phiOf(10, 10, -1)).not.toBeNaN()
  })

  it('phiCrossingMs inverts phiOf (φ = 8 at mean + 5.226σ)', () => {
    expect(phiCrossingMs(8, 0, 1)).toBeCloseTo(5.22599, 4)
    fc.assert(
      fc.property(fc.double({ min: 0.5, max: 300, noNaN: true }), fc.double({ min: 0, max: 1e4, noNaN: true }), fc.double({ min: 1, max: 1e3, noNaN: true }), (threshold, mean, std) => {
        const t = phiCrossingMs(threshold, mean, std)
        expect(phiOf(t, mean, std)).toBeCloseTo(threshold, 6)
        expect(phiOf(t - 1e-3 * std, mean, std)).toBeLessThan(threshold)
      }),
    )
  })
})

/** Arbitrary detector options, including a one-sample window and no pause allowance. */
const optionsArb = fc.record({
  threshold: fc.double({ min: 0.5, max: 20, noNaN: true }),
  maxSampleSize: fc.integer({ min: 1, max: 50 }),
  minStdDeviationMs: fc.double({ min: 1e-3, max: 500, noNaN: true }),
  acceptableHeartbeatPauseMs: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 5000, noNaN: true })),
  firstHeartbeatEstimateMs: fc.double({ min: 1, max: 5000, noNaN: true }),
})

/** Inter-arrival times, often all equal (zero measured deviation). */
const intervalsArb = fc.oneof(
  fc.array(fc.double({ min: 0, max: 5000, noNaN: true }), { maxLength: 60 }),
  fc.tuple(fc.double({ min: 0, max: 5000, noNaN: true }), fc.integer({ min: 0, max: 60 })).map(([v, n]) => Array.from({ length: n }, () => v)),
)

describe('PhiAccrualDetector: properties', () => {
  it('phi is ≥ 0, never NaN, and non-decreasing in the time since the last heartbeat', () => {
    fc.assert(
      fc.property(optionsArb, intervalsArb, fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 2, maxLength: 20 }), (options, intervals, probes) => {
        const fd = new PhiAccrualDetector(options)
        let t = 0
        fd.heartbeat(t)
        for (const d of intervals) fd.heartbeat((t += d))
        const sorted = [...probes].sort((a, b) => a - b)
        let previous = -Infinity
        for (const since of sorted) {
          const phi = fd.phi(t + since)
          expect(phi).not.toBeNaN()
          expect(phi).toBeGreaterThanOrEqual(0)
          expect(phi).toBeGreaterThanOrEqual(previous)
          previous = phi
        }
      }),
    )
  })

  it('never yields NaN under any interleaving of heartbeats (even out of order), shifts and retractions', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('heartbeat' as const), dt: fc.double({ min: -100, max: 10_000, noNaN: true }), sample: fc.boolean() }),
      fc.record({ kind: fc.constant('shift' as const), by: fc.double({ min: -100, max: 10_000, noNaN: true }) }),
      fc.record({ kind: fc.constant('retract' as const), back: fc.double({ min: 0, max: 20_000, noNaN: true }) }),
    )
    fc.assert(
      fc.property(optionsArb, fc.array(op, { maxLength: 80 }), (options, ops) => {
        const fd = new PhiAccrualDetector(options)
        let now = 0
        for (const o of ops) {
          if (o.kind === 'heartbeat') fd.heartbeat((now += o.dt), o.sample)
          else if (o.kind === 'shift') fd.shiftLastHeartbeat(o.by, now)
          else fd.retractSamplesAfter(now - o.back)
          for (const probe of [now, now + 1, now + 1e4]) {
            const phi = fd.phi(probe)
            expect(phi).not.toBeNaN()
            expect(phi).toBeGreaterThanOrEqual(0)
          }
          const s = fd.silenceToSuspicionMs()
          if (s !== undefined) expect(s).not.toBeNaN()
          if (fd.isMonitoring) expect(fd.history.size).toBeGreaterThan(0)
        }
      }),
    )
  })
})

describe('PhiAccrualDetector: local-pause hooks', () => {
  const options: PhiAccrualOptions = { threshold: 8, maxSampleSize: 100, minStdDeviationMs: 100, acceptableHeartbeatPauseMs: 0, firstHeartbeatEstimateMs: 1000 }

  it('heartbeat(now, false) moves the timestamp without recording a sample', () => {
    const fd = new PhiAccrualDetector(options)
    expect(fd.heartbeat(0)).toBe('first')
    expect(fd.heartbeat(1000)).toBe('sampled')
    expect(fd.heartbeat(1010, false)).toBe('not-sampled')
    expect(fd.lastHeartbeatMs).toBe(1010)
    expect(fd.history.samples()).toEqual([750, 1250, 1000])
  })

  it('ignores a heartbeat from the past (the timestamp never moves backwards)', () => {
    const fd = new PhiAccrualDetector(options)
    fd.heartbeat(1000)
    expect(fd.heartbeat(500)).toBe('not-sampled')
    expect(fd.lastHeartbeatMs).toBe(1000)
    expect(fd.history.size).toBe(2)
  })

  it('shiftLastHeartbeat moves forward by at most the shift and never past now', () => {
    const fd = new PhiAccrualDetector(options)
    fd.shiftLastHeartbeat(100, 50) // not monitoring: no-op
    expect(fd.lastHeartbeatMs).toBeUndefined()
    fd.heartbeat(1000)
    fd.shiftLastHeartbeat(500, 5000)
    expect(fd.lastHeartbeatMs).toBe(1500)
    fd.shiftLastHeartbeat(10_000, 5000)
    expect(fd.lastHeartbeatMs).toBe(5000)
    fd.shiftLastHeartbeat(-100, 9000)
    expect(fd.lastHeartbeatMs).toBe(5000)
  })

  it('retractSamplesAfter drops recent samples newest-first and keeps the seeds', () => {
    const fd = new PhiAccrualDetector(options)
    for (const t of [0, 1000, 2000, 3000, 4100, 4101]) fd.heartbeat(t)
    expect(fd.history.samples()).toEqual([750, 1250, 1000, 1000, 1000, 1100, 1])
    expect(fd.retractSamplesAfter(3000)).toBe(2)
    expect(fd.history.samples()).toEqual([750, 1250, 1000, 1000, 1000])
    expect(fd.retractSamplesAfter(-Infinity)).toBe(3)
    expect(fd.history.samples()).toEqual([750, 1250])
  })

  it('reseeds a window emptied by retraction instead of leaving undefined statistics', () => {
    const fd = new PhiAccrualDetector({ ...options, maxSampleSize: 2 })
    for (const t of [0, 100, 200, 300]) fd.heartbeat(t) // seeds evicted: [100, 100]
    expect(fd.history.samples()).toEqual([100, 100])
    fd.retractSamplesAfter(0)
    expect(fd.history.samples()).toEqual([750, 1250])
    expect(fd.phi(1000)).not.toBeNaN()
  })
})
