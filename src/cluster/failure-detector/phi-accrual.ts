/**
 * The phi accrual failure detector, for one monitored peer. Sans-I/O: time is
 * passed in as monotonic milliseconds; no timers, no clock, no `node:*`.
 *
 * Ported from:
 * - N. Hayashibara, X. Défago, R. Yared, T. Katayama, "The φ Accrual Failure
 *   Detector", SRDS 2004 (JAIST IS-RR-2004-010).
 * - Apache Pekko `PhiAccrualFailureDetector` and `HeartbeatHistory`
 *   (apache/pekko, remote/src/main/scala/org/apache/pekko/remote/PhiAccrualFailureDetector.scala,
 *   itself derived from Akka's `akka.remote.PhiAccrualFailureDetector`).
 *
 * Suspicion is expressed as φ = -log10(1 - F(timeSinceLastHeartbeat)), where F
 * is the CDF of a normal distribution fitted to the recent heartbeat
 * inter-arrival times. As in Pekko:
 *
 * - the mean is shifted right by `acceptableHeartbeatPauseMs` (tolerated
 *   lost/late heartbeats, GC pauses), and the standard deviation is clamped
 *   below by `minStdDeviationMs` (a perfectly regular history would otherwise
 *   make any jitter look fatal);
 * - the first heartbeat seeds the history with two samples,
 *   `estimate ± estimate/4`, so a peer that sends only one heartbeat still
 *   becomes suspect;
 * - an interval is not recorded when the heartbeat arrives while the peer is
 *   already suspect (φ ≥ threshold): the first heartbeat after a failure
 *   would otherwise skew the statistics with the outage itself;
 * - F uses the logistic approximation of the normal CDF,
 *   `F(y) ≈ 1 / (1 + exp(-y (1.5976 + 0.070566 y²)))` (error 0.00014 at ±3.16).
 *
 * Deviations, each for a reason:
 * - φ is computed in log space: with `g(y) = y (1.5976 + 0.070566 y²)`,
 *   Pekko's two branches `-log10(e/(1+e))` and `-log10(1 - 1/(1+e))`
 *   (e = exp(-g)) are the same quantity, `softplus(g) / ln 10`. Evaluated
 *   as a stable softplus it never overflows to Infinity/NaN (Pekko's form
 *   returns Infinity once exp(-g) underflows, from y ≈ 21.6) and it agrees
 *   with Pekko's form to ~1e-12 wherever that form is finite (tested).
 * - Times may be fractional (performance.now()); Pekko uses whole ms.
 * - Two hooks for local-health handling (see local-health.ts): a heartbeat
 *   can update the timestamp without recording a sample, recent samples can
 *   be retracted, and the last-heartbeat timestamp can be moved forward.
 */

/** Parameters of one detector; `FailureDetectorSettings` (profiles.ts) carries them. */
export interface PhiAccrualOptions {
  /** φ at or above which the peer is suspect. Pekko cluster default 8. */
  readonly threshold: number
  /** Inter-arrival samples kept (sliding window). Pekko default 1000. */
  readonly maxSampleSize: number
  /** Lower clamp on the standard deviation, ms. Pekko default 100 ms. */
  readonly minStdDeviationMs: number
  /** Added to the mean: heartbeats that may be lost or late without suspicion, ms. */
  readonly acceptableHeartbeatPauseMs: number
  /** Seeds the history at the first heartbeat (Pekko uses heartbeat-interval), ms. */
  readonly firstHeartbeatEstimateMs: number
}

/** What a heartbeat did to the detector's state. */
export type HeartbeatOutcome =
  /** First heartbeat: the history was (re)seeded from `firstHeartbeatEstimateMs`. */
  | 'first'
  /** The interval since the previous heartbeat was recorded as a sample. */
  | 'sampled'
  /** Only the timestamp moved: the peer was suspect, sampling was disabled, or time went backwards. */
  | 'not-sampled'

const LN10 = Math.LN10

/** Numerically stable `ln(1 + e^x)`. */
function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)))
}

/**
 * φ for a time since the last heartbeat, given the (already shifted and
 * clamped) mean and standard deviation of the inter-arrival distribution.
 * Pekko's `phi(timeDiff, mean, stdDeviation)`.
 *
 * Always finite and ≥ 0 for finite arguments, and non-decreasing in
 * `timeDiffMs`. A non-positive or NaN `stdDeviationMs` is the degenerate
 * (step) distribution: 0 before the mean, log10(2) at it, Infinity after.
 */
export function phiOf(timeDiffMs: number, meanMs: number, stdDeviationMs: number): number {
  if (!(stdDeviationMs > 0)) {
    if (timeDiffMs > meanMs) return Infinity
    return timeDiffMs === meanMs ? Math.log10(2) : 0
  }
  const y = (timeDiffMs - meanMs) / stdDeviationMs
  // softplus(g)/ln10 == -log10(1 - F(y)) with Pekko's logistic F; see header.
  return softplus(y * (1.5976 + 0.070566 * y * y)) / LN10
}

/**
 * The time since the last heartbeat at which φ reaches `threshold`, for the
 * given (shifted, clamped) mean and standard deviation: the inverse of
 * {@link phiOf} in its first argument. With φ = 8 this is `mean + 5.2260·σ`.
 * Used to derive and document the profiles' detection times. Returns
 * `meanMs` for a non-positive threshold or deviation (the step distribution).
 */
export function phiCrossingMs(threshold: number, meanMs: number, stdDeviationMs: number): number {
  if (!(threshold > 0) || !(stdDeviationMs > 0)) return meanMs
  // φ(y) is strictly increasing in y; bisect y on a bracket that always holds
  // the answer (φ(-50) ≈ 0, φ(y) grows like 0.0306·y³).
  let lo = -50
  let hi = 1
  while (softplus(hi * (1.5976 + 0.070566 * hi * hi)) / LN10 < threshold) hi *= 2
  for (let i = 0; i < 200 && hi - lo > 1e-12; i++) {
    const mid = (lo + hi) / 2
    if (softplus(mid * (1.5976 + 0.070566 * mid * mid)) / LN10 < threshold) lo = mid
    else hi = mid
  }
  return meanMs + hi * stdDeviationMs
}

/**
 * A sliding window of heartbeat inter-arrival times with O(1) mean and
 * variance (Pekko's `HeartbeatHistory`, mutable here). Each sample also
 * remembers when it was taken, so samples recorded during a local stall can
 * be retracted newest-first.
 */
export class HeartbeatHistory {
  readonly maxSampleSize: number
  // Ring buffer: the oldest sample is at #start, #size samples follow.
  #intervals: number[] = []
  #takenAtMs: number[] = []
  #start = 0
  #size = 0
  #sum = 0
  #sumOfSquares = 0
  #opsSinceResum = 0

  constructor(maxSampleSize: number) {
    if (!Number.isInteger(maxSampleSize) || maxSampleSize < 1) throw new RangeError(`maxSampleSize must be a positive integer (got ${maxSampleSize})`)
    this.maxSampleSize = maxSampleSize
  }

  /** Samples in the window. */
  get size(): number {
    return this.#size
  }

  /** Mean interval, ms (NaN when empty, as in Pekko). */
  get mean(): number {
    return this.#sum / this.#size
  }

  /** Population variance, ms² (never negative; NaN when empty). */
  get variance(): number {
    const mean = this.mean
    return Math.max(0, this.#sumOfSquares / this.#size - mean * mean)
  }

  /** Population standard deviation, ms. */
  get stdDeviation(): number {
    return Math.sqrt(this.variance)
  }

  /** When the newest sample was taken (ms), or undefined when empty. */
  get newestTakenAtMs(): number | undefined {
    return this.#size === 0 ? undefined : this.#takenAtMs[this.#index(this.#size - 1)]
  }

  /** The samples, oldest first (for tests and diagnostics). */
  samples(): number[] {
    const out: number[] = []
    for (let i = 0; i < this.#size; i++) out.push(this.#intervals[this.#index(i)] ?? NaN)
    return out
  }

  /** Appends a sample, evicting the oldest when full. */
  push(intervalMs: number, takenAtMs = -Infinity): void {
    if (this.#size === this.maxSampleSize) {
      const oldest = this.#intervals[this.#start] ?? 0
      this.#sum -= oldest
      this.#sumOfSquares -= oldest * oldest
      this.#intervals[this.#start] = intervalMs
      this.#takenAtMs[this.#start] = takenAtMs
      this.#start = (this.#start + 1) % this.maxSampleSize
    } else {
      const at = this.#index(this.#size)
      this.#intervals[at] = intervalMs
      this.#takenAtMs[at] = takenAtMs
      this.#size++
    }
    this.#sum += intervalMs
    this.#sumOfSquares += intervalMs * intervalMs
    this.#bumpOps()
  }

  /** Removes and returns the newest sample. */
  popNewest(): number | undefined {
    if (this.#size === 0) return undefined
    const at = this.#index(this.#size - 1)
    const v = this.#intervals[at] ?? 0
    this.#size--
    this.#sum -= v
    this.#sumOfSquares -= v * v
    if (this.#size === 0) this.clear()
    else this.#bumpOps()
    return v
  }

  /** Empties the window. */
  clear(): void {
    this.#intervals = []
    this.#takenAtMs = []
    this.#start = 0
    this.#size = 0
    this.#sum = 0
    this.#sumOfSquares = 0
    this.#opsSinceResum = 0
  }

  #index(i: number): number {
    return (this.#start + i) % this.maxSampleSize
  }

  // Running sums of fractional values drift by rounding with every
  // add/subtract; recomputing them once per window's worth of updates keeps
  // the error bounded at O(1) amortised cost.
  #bumpOps(): void {
    if (++this.#opsSinceResum < this.maxSampleSize) return
    this.#opsSinceResum = 0
    let sum = 0
    let sumOfSquares = 0
    for (let i = 0; i < this.#size; i++) {
      const v = this.#intervals[this.#index(i)] ?? 0
      sum += v
      sumOfSquares += v * v
    }
    this.#sum = sum
    this.#sumOfSquares = sumOfSquares
  }
}

/**
 * Phi accrual detector for one peer: feed it `heartbeat(nowMs)` on every
 * heartbeat received from that peer and ask `phi(nowMs)` / `isAvailable(nowMs)`.
 * Detection, not decision: what an accusation means (Unreachable, Down) is
 * up to the caller (see detector-registry.ts).
 */
export class PhiAccrualDetector {
  readonly options: PhiAccrualOptions
  #history: HeartbeatHistory
  #lastHeartbeatMs: number | undefined

  constructor(options: PhiAccrualOptions) {
    this.options = options
    this.#history = new HeartbeatHistory(options.maxSampleSize)
  }

  /** True once a first heartbeat has been seen (Pekko `isMonitoring`). */
  get isMonitoring(): boolean {
    return this.#lastHeartbeatMs !== undefined
  }

  /** Time of the last heartbeat (possibly moved forward by {@link shiftLastHeartbeat}), ms. */
  get lastHeartbeatMs(): number | undefined {
    return this.#lastHeartbeatMs
  }

  /** The inter-arrival window (read it, do not mutate it). */
  get history(): HeartbeatHistory {
    return this.#history
  }

  /**
   * Records a heartbeat at `nowMs`. The interval since the previous
   * heartbeat becomes a sample unless the peer is already suspect at
   * `nowMs` (Pekko), `sample` is false (a local stall made the interval
   * meaningless), or time went backwards (the timestamp then stays put).
   */
  heartbeat(nowMs: number, sample = true): HeartbeatOutcome {
    const last = this.#lastHeartbeatMs
    if (last === undefined) {
      this.#seed()
      this.#lastHeartbeatMs = nowMs
      return 'first'
    }
    const intervalMs = nowMs - last
    if (!(intervalMs >= 0)) return 'not-sampled'
    // Decide availability before moving the timestamp: the check is "was the
    // peer already suspect when this heartbeat arrived".
    const record = sample && this.isAvailable(nowMs)
    if (record) this.#history.push(intervalMs, nowMs)
    this.#lastHeartbeatMs = nowMs
    return record ? 'sampled' : 'not-sampled'
  }

  /** Suspicion level at `nowMs`; 0 while not monitoring (no heartbeat yet). */
  phi(nowMs: number): number {
    const last = this.#lastHeartbeatMs
    if (last === undefined) return 0
    const { acceptableHeartbeatPauseMs, minStdDeviationMs } = this.options
    const std = Math.max(this.#history.stdDeviation, minStdDeviationMs)
    return phiOf(nowMs - last, this.#history.mean + acceptableHeartbeatPauseMs, std)
  }

  /** `phi(nowMs) < threshold`. */
  isAvailable(nowMs: number): boolean {
    return this.phi(nowMs) < this.options.threshold
  }

  /**
   * The time since the last heartbeat at which φ will reach the threshold
   * with the current history (undefined while not monitoring).
   */
  silenceToSuspicionMs(): number | undefined {
    if (this.#lastHeartbeatMs === undefined) return undefined
    const { threshold, acceptableHeartbeatPauseMs, minStdDeviationMs } = this.options
    return phiCrossingMs(threshold, this.#history.mean + acceptableHeartbeatPauseMs, Math.max(this.#history.stdDeviation, minStdDeviationMs))
  }

  /**
   * Moves the last-heartbeat timestamp forward by `byMs`, never past `nowMs`
   * and never backwards: the part of the peer's silence during which this
   * node could not have received anything is not held against the peer.
   */
  shiftLastHeartbeat(byMs: number, nowMs: number): void {
    const last = this.#lastHeartbeatMs
    if (last === undefined || !(byMs > 0)) return
    this.#lastHeartbeatMs = Math.max(last, Math.min(nowMs, last + byMs))
  }

  /**
   * Drops samples taken after `afterMs`, newest first (the seed samples are
   * never dropped; an emptied window is reseeded). Returns how many were dropped.
   */
  retractSamplesAfter(afterMs: number): number {
    let n = 0
    for (let at = this.#history.newestTakenAtMs; at !== undefined && at > afterMs; at = this.#history.newestTakenAtMs) {
      this.#history.popNewest()
      n++
    }
    // A small window can lose every sample (seeds included, evicted earlier);
    // start over from the estimate rather than leave the statistics undefined.
    if (this.#history.size === 0) this.#seed()
    return n
  }

  // Pekko's firstHeartbeat: two samples with a rather high deviation (the
  // environment is unknown), so one lone heartbeat still leads to suspicion.
  #seed(): void {
    const mean = this.options.firstHeartbeatEstimateMs
    const std = mean / 4
    this.#history.clear()
    this.#history.push(mean - std)
    this.#history.push(mean + std)
  }
}
