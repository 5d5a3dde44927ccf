/** Small, dependency-free statistics for hand-timed benchmarks. */

/** Nearest-rank percentile of an ascending array (p in [0, 100]). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * n)
  return sorted[Math.min(n - 1, Math.max(0, rank - 1))]!
}

export function median(xs: readonly number[]): number {
  return percentile(Float64Array.from(xs).sort(), 50)
}

export interface LatencySummary {
  count: number
  meanUs: number
  minUs: number
  p50Us: number
  p90Us: number
  p99Us: number
  p999Us: number
  maxUs: number
}

/** Summarise per-call latencies given in microseconds. */
export function summarizeLatencies(us: Float64Array): LatencySummary {
  const s = Float64Array.from(us).sort()
  let sum = 0
  for (const v of s) sum += v
  return {
    count: s.length,
    meanUs: sum / s.length,
    minUs: s[0] ?? Number.NaN,
    p50Us: percentile(s, 50),
    p90Us: percentile(s, 90),
    p99Us: percentile(s, 99),
    p999Us: percentile(s, 99.9),
    maxUs: s[s.length - 1] ?? Number.NaN,
  }
}

/** Least-squares slope of y over x (used for heap bytes per activation). */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = Math.min(xs.length, ys.length)
  if (n < 2) return Number.NaN
  let sx = 0
  let sy = 0
  for (let i = 0; i < n; i++) {
    sx += xs[i]!
    sy += ys[i]!
  }
  const mx = sx / n
  const my = sy / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    const dx = xs[i]! - mx
    num += dx * (ys[i]! - my)
    den += dx * dx
  }
  return den === 0 ? Number.NaN : num / den
}
