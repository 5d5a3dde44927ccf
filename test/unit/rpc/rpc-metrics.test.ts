import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { RpcMetrics } from '../../../src/rpc/rpc-metrics.js'

describe('RPC metrics labels', () => {
  const known = new Map([['counter', new Set(['add', 'get'])]])
  const make = (): { r: Registry; m: RpcMetrics } => {
    const r = new Registry()
    return { r, m: new RpcMetrics(r, (k) => known.get(k)) }
  }

  it('records calls by kind/method/code and rejections by kind/code', async () => {
    const { r, m } = make()
    const s = m.series('counter', 'add')
    for (let i = 0; i < 3; i++) m.started(s)
    m.succeeded(s, 0.002)
    m.failed(s, 'ERR_GRAIN_QUEUE_FULL', 'error', 0.001)
    m.failed(s, 'ERR_GRAIN_TIMEOUT', 'timeout', 1)
    m.retried(s)
    const text = await r.metrics()
    expect(text).toContain('graincluster_rpc_calls_total{kind="counter",method="add",code="ok"} 1')
    expect(text).toContain('graincluster_rpc_calls_total{kind="counter",method="add",code="ERR_GRAIN_QUEUE_FULL"} 1')
    expect(text).toContain('graincluster_rpc_rejections_total{kind="counter",code="ERR_GRAIN_QUEUE_FULL"} 1')
    expect(text).not.toContain('graincluster_rpc_rejections_total{kind="counter",code="ERR_GRAIN_TIMEOUT"}')
    expect(text).toContain('graincluster_rpc_client_duration_seconds_count{kind="counter",method="add",outcome="timeout"} 1')
    expect(text).toContain('graincluster_rpc_retries_total{kind="counter",method="add"} 1')
    expect(text).toContain('graincluster_rpc_in_flight{kind="counter"} 0')
    expect(text).toContain('graincluster_rpc_client_duration_seconds_bucket{kind="counter",method="add",outcome="ok",le="0.0025"} 1')
  })

  it('maps unknown kinds, methods and codes to "unknown" (bounded labels)', async () => {
    const { r, m } = make()
    for (let i = 0; i < 50; i++) m.failed(m.series(`made-up-${i}`, `m${i}`), 'ERR_GRAIN_UNKNOWN_KIND', 'error', 0)
    m.failed(m.series('counter', 'nope'), 'ERR_NOT_A_CODE', 'error', 0)
    m.alert('made-up', 'latency', true)
    const text = await r.metrics()
    expect(text).toContain('graincluster_rpc_calls_total{kind="unknown",method="unknown",code="ERR_GRAIN_UNKNOWN_KIND"} 50')
    expect(text).toContain('graincluster_rpc_calls_total{kind="counter",method="unknown",code="unknown"} 1')
    expect(text).toContain('graincluster_rpc_alert_active{kind="unknown",signal="latency"} 1')
    expect(text).not.toContain('made-up')
  })
})
