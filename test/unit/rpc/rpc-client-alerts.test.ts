import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { EventStream } from '../../../src/observability/event-stream.js'
import type { RuntimeEvent } from '../../../src/observability/events.js'
import { RpcAlerts } from '../../../src/rpc/rpc-alerts.js'
import { RpcClient } from '../../../src/rpc/rpc-client.js'
import { defaultRpcSettings } from '../../../src/common/retry-policy.js'

const SETTINGS = defaultRpcSettings(1_000)

describe('RpcClient alert windows', () => {
  it('count calls to kinds nobody registered under one "unknown" window', async () => {
    const events = new EventStream()
    const seen: RuntimeEvent[] = []
    events.subscribe('rpc.alert', (e) => seen.push(e))
    const alerts = new RpcAlerts({ windowMs: 60_000, minCalls: 4, errorRate: 0.5, latencyP99Ms: 60_000 })
    let now = 0
    const client = new RpcClient({ events, defaults: SETTINGS, kinds: (k) => (k === 'counter' ? { rpc: undefined } : undefined), alerts, now: () => now })
    const fail = (): Promise<never> => Promise.reject(new GrainClusterError('ERR_GRAIN_UNKNOWN_KIND', 'no such kind'))
    // Four made-up names: one window, so the fourth failure crosses minCalls there.
    for (let i = 0; i < 4; i++) {
      now += 10
      await client.call({ kind: `made-up-${i}`, key: 'k', method: 'm' }, SETTINGS, fail).catch(() => undefined)
    }
    client.close()
    expect(seen.map((e) => (e.type === 'rpc.alert' ? [e.kind, e.signal] : []))).toEqual([['unknown', 'error-rate']])
  })
})
