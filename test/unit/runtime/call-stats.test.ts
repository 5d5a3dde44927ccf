import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { CallStats, isCallStatsRows, MAX_CALL_STATS_ROWS } from '../../../src/runtime/call-stats.js'
import { RPC_DURATION_BUCKETS, RpcMetrics } from '../../../src/rpc/rpc-metrics.js'

describe("CallStats: a worker's sums of its grains' calls", () => {
  it('sums per kind, method and code into per-bucket counts, and starts again after take()', () => {
    const s = new CallStats()
    expect(s.empty).toBe(true)
    s.record('counter', 'add', 'ok', 0.0004)
    s.record('counter', 'add', 'ok', 0.003)
    s.record('counter', 'add', 'ok', 99)
    s.record('counter', 'add', 'ERR_GRAIN_TIMEOUT', 0.1)
    const rows = s.take()
    expect(s.empty).toBe(true)
    expect(isCallStatsRows(rows)).toBe(true)
    const ok = rows.find((r) => r.code === 'ok')!
    expect(ok.count).toBe(3)
    expect(ok.sumSeconds).toBeCloseTo(99.0034)
    expect(ok.buckets[0]).toBe(1) // ≤ 0.5 ms
    expect(ok.buckets[RPC_DURATION_BUCKETS.indexOf(0.005)]).toBe(1)
    expect(ok.buckets[RPC_DURATION_BUCKETS.length]).toBe(1) // above 10 s
    expect(rows.find((r) => r.code === 'ERR_GRAIN_TIMEOUT')!.buckets[RPC_DURATION_BUCKETS.indexOf(0.1)]).toBe(1)
    expect(s.take()).toEqual([])
  })

  it('keeps at most MAX_CALL_STATS_ROWS rows; the rest share one unknown row', () => {
    const s = new CallStats()
    for (let i = 0; i < MAX_CALL_STATS_ROWS + 50; i++) s.record('k', `m${i}`, 'ok', 0.001)
    const rows = s.take()
    expect(rows).toHaveLength(MAX_CALL_STATS_ROWS + 1)
    expect(rows.find((r) => r.kind === 'unknown')!.count).toBe(50)
  })

  it('refuses reports that are not rows', () => {
    expect(isCallStatsRows({})).toBe(false)
    expect(isCallStatsRows([{ kind: 'k', method: 'm', code: 'ok', count: 1, sumSeconds: 1, buckets: [1] }])).toBe(false)
    expect(isCallStatsRows([{ kind: 'k', method: 'm', code: 'ok', count: 1, sumSeconds: Number.NaN, buckets: new Array(RPC_DURATION_BUCKETS.length + 1).fill(0) }])).toBe(false)
  })

  it('the main thread adds reports to the registry with bounded labels', async () => {
    const r = new Registry()
    const m = new RpcMetrics(r, (k) => (k === 'counter' ? new Set(['add']) : undefined))
    const s = new CallStats()
    s.record('counter', 'add', 'ok', 0.002)
    s.record('counter', 'add', 'ERR_GRAIN_HANDLER_FAILED', 0.002)
    s.record('made-up', 'x', 'ok', 0.002)
    s.record('counter', 'add', 'NOT_A_CODE', 0.002)
    m.absorbGrainCalls(s.take())
    s.record('counter', 'add', 'ok', 0.02)
    m.absorbGrainCalls(s.take())
    const text = await r.metrics()
    expect(text).toContain('graincluster_rpc_grain_calls_total{kind="counter",method="add",code="ok"} 2')
    expect(text).toContain('graincluster_rpc_grain_calls_total{kind="counter",method="add",code="ERR_GRAIN_HANDLER_FAILED"} 1')
    expect(text).toContain('graincluster_rpc_grain_calls_total{kind="counter",method="add",code="unknown"} 1')
    expect(text).toContain('graincluster_rpc_grain_calls_total{kind="unknown",method="unknown",code="ok"} 1')
    expect(text).not.toContain('made-up')
    expect(text).toContain('graincluster_rpc_grain_call_duration_seconds_bucket{kind="counter",method="add",outcome="ok",le="0.0025"} 1')
    expect(text).toContain('graincluster_rpc_grain_call_duration_seconds_bucket{kind="counter",method="add",outcome="ok",le="0.025"} 2')
    expect(text).toContain('graincluster_rpc_grain_call_duration_seconds_count{kind="counter",method="add",outcome="error"} 2')
  })

  it('sums the waiting calls the workers report per kind; a dead worker counts no more', async () => {
    const r = new Registry()
    const m = new RpcMetrics(r, (k) => (k === 'counter' ? new Set(['add']) : undefined))
    m.queuedOn(0, { counter: 3, 'made-up': 1 })
    m.queuedOn(1, { counter: 2 })
    let text = await r.metrics()
    expect(text).toContain('graincluster_rpc_queued_calls{kind="counter"} 5')
    expect(text).toContain('graincluster_rpc_queued_calls{kind="unknown"} 1')
    m.queuedOn(1, { counter: 0 })
    m.workerGone(0)
    text = await r.metrics()
    expect(text).toContain('graincluster_rpc_queued_calls{kind="counter"} 0')
    expect(text).toContain('graincluster_rpc_queued_calls{kind="unknown"} 0')
  })
})
