// How much a busy thread loses to the machine itself: spins on performance.now()
// for N seconds (default 10) and reports the gaps between successive reads
// (over 50 µs, over 1 ms, over 5 ms, the longest, and the share of time lost).
// On a quiet dedicated core the gaps are a few µs; on a shared VM they bound
// every latency percentile a benchmark can show. Run several at once
// (`node scripts/vm-stalls.mjs & node scripts/vm-stalls.mjs & wait`) to see
// what CPU contention adds.
import { performance } from 'node:perf_hooks'

const seconds = Number(process.argv[2] ?? 10)
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error('usage: node scripts/vm-stalls.mjs [seconds]')
  process.exit(2)
}
const durationMs = seconds * 1000
const t0 = performance.now()
let last = t0
const gaps = []
for (let n = 1; ; n++) {
  const t = performance.now()
  if (t - last > 0.05) gaps.push(t - last)
  last = t
  if ((n & 1023) === 0 && t - t0 > durationMs) break
}
gaps.sort((a, b) => b - a)
const lost = gaps.reduce((a, b) => a + b, 0)
console.log(
  JSON.stringify({
    seconds,
    gapsOver50us: gaps.length,
    over1ms: gaps.filter((g) => g > 1).length,
    over5ms: gaps.filter((g) => g > 5).length,
    longestMs: gaps.slice(0, 8).map((g) => Number(g.toFixed(2))),
    lostPct: Number(((100 * lost) / durationMs).toFixed(2)),
  }),
)
