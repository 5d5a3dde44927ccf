/** Monotonic milliseconds, for deadlines and durations (never wall clock). */
export function monotonicMs(): number {
  return performance.now()
}
