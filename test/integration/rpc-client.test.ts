/**
 * The main thread's RPC client on a real single node (worker threads, SAB
 * rings): timeouts that name kind/key/method and the attempt, retries with
 * backoff for retryable errors only (never for an error the grain threw),
 * the call deadline over all attempts, RPC metrics and the alert signal,
 * metrics disabled (diagnostic, events still flow), typed proxies.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineGrain, GrainClusterError, GrainNode, resolveNodeOptions, type RuntimeEvent } from '../../src/index.js'
import { Counter, Flaky, Hasher, Sentinel } from '../fixtures/grains/test-grains.js'
import { catchErr } from '../helpers/catch-error.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]

async function rejection(p: Promise<unknown>, code: string): Promise<GrainClusterError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  )
  expect(GrainClusterError.is(e), `expected a GrainClusterError ${code}, got ${String(e)}`).toBe(true)
  expect((e as GrainClusterError).code).toBe(code)
  return e as GrainClusterError
}

/** Value of one series in Prometheus text, 0 when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

describe('RPC client on a single node', () => {
  let node: GrainNode
  const rpcEvents: RuntimeEvent[] = []
  const dir = mkdtempSync(join(tmpdir(), 'gc-rpc-'))

  beforeAll(async () => {
    node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8, rpc: { alerts: { windowMs: 600_000, minCalls: 4, errorRate: 0.5, latencyP99Ms: 60_000 } } })
    node.events.subscribe('rpc.*', (e) => rpcEvents.push(e))
  })
  afterAll(async () => {
    await node?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('a timeout names kind, key, method, the limit and the attempt', async () => {
    const e = await rejection(node.ask(Counter, 'stall-1', 'hang', undefined, { timeoutMs: 150 }), 'ERR_GRAIN_TIMEOUT')
    expect(e.reason).toBe('no reply from counter/stall-1.hang within 150 ms (attempt 1 of 1)')
    expect(e.details).toMatchObject({ kind: 'counter', key: 'stall-1', method: 'hang', limit: 150, attempts: 1 })
    expect(rpcEvents.find((x) => x.type === 'rpc.failed' && x.key === 'stall-1')).toMatchObject({ code: 'ERR_GRAIN_TIMEOUT', attempts: 1, final: 'exhausted', method: 'hang' })
  })

  it('retries a stalled call per attempt, inside one call deadline', async () => {
    const t0 = performance.now()
    const e = await rejection(
      node.ask(Counter, 'stall-2', 'hang', undefined, { timeoutMs: 400, attemptTimeoutMs: 100, retries: 10, minDelayMs: 10, maxDelayMs: 20 }),
      'ERR_GRAIN_TIMEOUT',
    )
    const elapsed = performance.now() - t0
    expect(elapsed).toBeGreaterThanOrEqual(300)
    // The deadline covers every attempt and backoff; the slack is timer lateness on a loaded box.
    expect(elapsed).toBeLessThan(400 + 250)
    const attempts = e.details.attempts as number
    expect(attempts).toBeGreaterThanOrEqual(3)
    expect(attempts).toBeLessThan(11)
    expect(e.reason).toMatch(new RegExp(`^no reply from counter/stall-2\\.hang within \\d+ ms \\(attempt ${attempts} of 11; call deadline 400 ms\\)$`))
    const retried = rpcEvents.filter((x) => x.type === 'rpc.retried' && x.key === 'stall-2')
    expect(retried).toHaveLength(attempts - 1)
    expect(retried.every((x) => x.type === 'rpc.retried' && x.code === 'ERR_GRAIN_TIMEOUT' && x.delayMs >= 0 && x.delayMs < 20)).toBe(true)
    expect(rpcEvents.find((x) => x.type === 'rpc.failed' && x.key === 'stall-2')).toMatchObject({ final: 'deadline' })
  })

  it('retries a retryable runtime error (worker crashed) with backoff, by the kind’s own rpc defaults', async () => {
    const file = join(dir, 'crash-2')
    // Flaky declares rpc: { retries: 4, minDelayMs: 5, maxDelayMs: 20 }.
    expect(await node.ask(Flaky, 'f1', 'crashUntil', { file, times: 2 })).toBe(3)
    const retried = rpcEvents.filter((x) => x.type === 'rpc.retried' && x.key === 'f1')
    expect(retried.map((x) => x.type === 'rpc.retried' && [x.attempt, x.code])).toEqual([
      [1, 'ERR_WORKER_CRASHED'],
      [2, 'ERR_WORKER_CRASHED'],
    ])
    expect(retried.every((x) => x.type === 'rpc.retried' && x.delayMs >= 0 && x.delayMs < 20)).toBe(true)
    // Per-call options override the kind's: no retry, the crash surfaces with kind/key/method.
    const e = await rejection(node.ask(Flaky, 'f1b', 'crashUntil', { file: join(dir, 'crash-1'), times: 1 }, { retries: 0 }), 'ERR_WORKER_CRASHED')
    expect(e.details).toMatchObject({ kind: 'flaky', key: 'f1b', method: 'crashUntil', attempts: 1 })
  })

  it('never retries an error the grain threw, even with a retryable code', async () => {
    const e = await rejection(node.ask(Flaky, 'f2', 'throwRetryable', undefined, { retries: 5 }), 'ERR_GRAIN_MOVED')
    expect(e.retryable).toBe(true)
    expect(e.details).toMatchObject({ kind: 'flaky', key: 'f2', method: 'throwRetryable', origin: 'grain', attempts: 1 })
    expect(await node.ask(Flaky, 'f2', 'thrown')).toBe(1)
    expect(rpcEvents.some((x) => x.type === 'rpc.retried' && x.key === 'f2')).toBe(false)
    expect(rpcEvents.find((x) => x.type === 'rpc.failed' && x.key === 'f2')).toMatchObject({ final: 'grain-error' })
    // Same for a plain throw: not retryable anyway, and marked as the grain's.
    const f = await rejection(node.ask(Counter, 'f3', 'fail', 'nope', { retries: 5 }), 'ERR_GRAIN_HANDLER_FAILED')
    expect(f.details.origin).toBe('grain')
  })

  it('exposes the RPC series with bounded labels', async () => {
    const before = await node.metricsText()
    for (let i = 0; i < 3; i++) await node.ask(Counter, 'm-1', 'add', 1)
    await rejection(node.ask('no-such-kind', 'x', 'y'), 'ERR_GRAIN_UNKNOWN_KIND')
    await rejection(node.ask('counter', 'm-1', 'no-such-method'), 'ERR_GRAIN_UNKNOWN_METHOD')
    const after = await node.metricsText()
    const delta = (s: string): number => sample(after, s) - sample(before, s)
    expect(delta('graincluster_rpc_calls_total{kind="counter",method="add",code="ok"}')).toBe(3)
    expect(delta('graincluster_rpc_client_duration_seconds_count{kind="counter",method="add",outcome="ok"}')).toBe(3)
    expect(delta('graincluster_rpc_calls_total{kind="unknown",method="unknown",code="ERR_GRAIN_UNKNOWN_KIND"}')).toBe(1)
    expect(delta('graincluster_rpc_calls_total{kind="counter",method="unknown",code="ERR_GRAIN_UNKNOWN_METHOD"}')).toBe(1)
    expect(sample(after, 'graincluster_rpc_retries_total{kind="flaky",method="crashUntil"}')).toBe(2)
    expect(sample(after, 'graincluster_rpc_client_duration_seconds_count{kind="counter",method="hang",outcome="timeout"}')).toBe(2)
    expect(sample(after, 'graincluster_rpc_calls_total{kind="flaky",method="throwRetryable",code="ERR_GRAIN_MOVED"}')).toBe(1)
    expect(sample(after, 'graincluster_rpc_in_flight{kind="counter"}')).toBe(0)
    expect(after).toContain('# TYPE graincluster_rpc_rejections_total counter')
    expect(after).not.toContain('no-such')
    expect(node.rpcMetricsStatus()).toEqual({ collecting: true })
  })

  it("counts the grains' own calls (ctx.ask) by kind, method and code, reported by the worker", async () => {
    for (let i = 0; i < 3; i++) await node.ask(Counter, 'g2g-caller', 'askMethod', { key: 'g2g-target', method: 'add', payload: 1 })
    await rejection(node.ask(Counter, 'g2g-caller', 'askMethod', { key: 'g2g-target', method: 'fail', payload: 'on purpose' }), 'ERR_GRAIN_HANDLER_FAILED')
    await rejection(node.ask(Counter, 'g2g-caller', 'askMethod', { key: 'g2g-stall', method: 'hang', timeoutMs: 100 }), 'ERR_GRAIN_TIMEOUT')
    const series = (name: string, labels: string): string => `graincluster_rpc_grain_${name}{kind="counter",${labels}}`
    let text = ''
    await waitUntil(
      async () => {
        text = await node.metricsText()
        return sample(text, series('calls_total', 'method="hang",code="ERR_GRAIN_TIMEOUT"')) >= 1
      },
      { what: 'the worker report of its grains calls' },
    )
    expect(sample(text, series('calls_total', 'method="add",code="ok"'))).toBe(3)
    expect(sample(text, series('calls_total', 'method="fail",code="ERR_GRAIN_HANDLER_FAILED"'))).toBe(1)
    expect(sample(text, series('call_duration_seconds_count', 'method="add",outcome="ok"'))).toBe(3)
    expect(sample(text, series('call_duration_seconds_count', 'method="fail",outcome="error"'))).toBe(1)
    expect(sample(text, series('call_duration_seconds_count', 'method="hang",outcome="timeout"'))).toBe(1)
    // The timed-out call waited its 100 ms: it sits above the 0.05 s bucket.
    expect(sample(text, series('call_duration_seconds_bucket', 'method="hang",outcome="timeout",le="0.05"'))).toBe(0)
    expect(sample(text, series('call_duration_seconds_bucket', 'method="hang",outcome="timeout",le="+Inf"'))).toBe(1)
  })

  it('shows the calls waiting in per-key mailboxes per kind, and the gauge falls back when they drain', async () => {
    const hold = node.ask('queue-reject', 'qd', 'hold', undefined, { timeoutMs: 30_000 })
    const waiting = [1, 2, 3].map((n) => node.ask('queue-reject', 'qd', 'record', n, { timeoutMs: 30_000 }))
    const gauge = async (): Promise<number> => sample(await node.metricsText(), 'graincluster_rpc_queued_calls{kind="queue-reject"}')
    await waitUntil(async () => (await gauge()) === 3, { what: 'three calls waiting behind hold' })
    await node.ask('queue-reject', 'opener', 'open', 'qd')
    await hold
    expect(await Promise.all(waiting)).toEqual([1, 2, 3])
    await waitUntil(async () => (await gauge()) === 0, { what: 'the gauge back at 0' })
  })

  it("a grain's call without a timeout of its own takes the called kind's rpc.timeoutMs, not the node's 10 s", async () => {
    const started = performance.now()
    const e = await rejection(node.ask('impatient', 'caller', 'askHang', 'stuck', { timeoutMs: 5_000 }), 'ERR_GRAIN_TIMEOUT')
    expect(e.reason).toContain('within 200 ms')
    expect(performance.now() - started).toBeLessThan(5_000)
  })

  it('raises the alert signal (event + gauge) when the error rate crosses, and clears it', async () => {
    const gauge = 'graincluster_rpc_alert_active{kind="sentinel",signal="error-rate"}'
    for (let i = 0; i < 4; i++) await rejection(node.ask(Sentinel, 's', 'boom'), 'ERR_GRAIN_HANDLER_FAILED')
    const alerts = (): RuntimeEvent[] => rpcEvents.filter((x) => (x.type === 'rpc.alert' || x.type === 'rpc.alert-cleared') && x.kind === 'sentinel')
    expect(alerts()).toMatchObject([{ type: 'rpc.alert', signal: 'error-rate', observed: 1, threshold: 0.5, calls: 4 }])
    expect(sample(await node.metricsText(), gauge)).toBe(1)
    // 4 errors in 8 calls is not above 0.5: cleared exactly once.
    for (let i = 0; i < 6; i++) expect(await node.ask(Sentinel, 's', 'ok')).toBe(true)
    expect(alerts()).toMatchObject([{ type: 'rpc.alert' }, { type: 'rpc.alert-cleared', signal: 'error-rate', observed: 0.5, calls: 8 }])
    expect(sample(await node.metricsText(), gauge)).toBe(0)
  })

  it('typed proxies round-trip, and wrong payloads do not type-check', async () => {
    const c = node.grain(Counter, 'p1')
    const n: number = await c.add(5)
    expect(n).toBe(5)
    expect(await c.get()).toBe(5)
    node.grainTell(Counter, 'p1').add(2)
    await waitUntil(async () => (await c.get()) === 7, { what: 'tell via proxy applied' })
    expect(await node.grain(Hasher, 'any').sum([1, 2, 3])).toBe(6)
    // Untyped: any method name; with noUncheckedIndexedAccess the method may be undefined to the typechecker.
    expect(await node.grain('counter', 'p1').get!()).toBe(7)
    // Options given to the proxy apply to each of its calls.
    const e = await rejection(node.grain(Counter, 'p-stall', { timeoutMs: 100 }).hang(), 'ERR_GRAIN_TIMEOUT')
    expect(e.reason).toBe('no reply from counter/p-stall.hang within 100 ms (attempt 1 of 1)')
    // A proxy is not a thenable (awaiting it must not call a 'then' method).
    expect(await Promise.resolve(c)).toBe(c)
    if (Date.now() < 0) {
      // Never runs: these lines are for the typechecker.
      // @ts-expect-error add takes a number
      void c.add('five')
      // @ts-expect-error no such method
      void c.nope()
      // @ts-expect-error get returns a number
      const s: string = await c.get()
      void s
      // @ts-expect-error sum takes number[]
      void node.grain(Hasher, 'any').sum('x')
    }
  })

  it('refuses bad RPC settings: node options, call options, grain definitions', async () => {
    const bad = catchErr(() => resolveNodeOptions({ grains: GRAINS, rpc: { defaults: { retries: -1 }, alerts: { errorRate: 2 } } }))
    expect(GrainClusterError.is(bad, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((bad as GrainClusterError).details.issues).toEqual(['rpc.defaults.retries must be an integer in [0, 100] (got -1)', 'rpc.alerts.errorRate must be a number in [0, 1) (got 2)'])
    const call = await rejection(node.ask(Counter, 'x', 'add', 1, { retries: 1.5 }), 'ERR_CONFIG_INVALID')
    expect(call.details.issues).toEqual(['call options.retries must be an integer in [0, 100] (got 1.5)'])
    const def = catchErr(() => defineGrain({ kind: 'bad-rpc', rpc: { timeoutMs: 0 }, handlers: {} }))
    expect(GrainClusterError.is(def, 'ERR_GRAIN_DEFINITION_INVALID')).toBe(true)
    expect((def as GrainClusterError).details.issues).toEqual(['bad-rpc.rpc.timeoutMs must be an integer in [1, 86400000] (got 0)'])
  })
})

describe('RPC client with metrics disabled', () => {
  let node: GrainNode
  beforeAll(async () => {
    node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8, metrics: false, rpc: { alerts: { minCalls: 2, errorRate: 0.5 } } })
  })
  afterAll(async () => {
    await node?.close()
  })

  it('reports that metrics are not collected, while RPC events keep flowing', async () => {
    const status = node.rpcMetricsStatus()
    expect(status).toMatchObject({ collecting: false, code: 'ERR_RPC_METRICS_DISABLED' })
    expect(status.collecting === false && status.reason).toContain('not being collected')
    await rejection(node.metricsText(), 'ERR_RPC_METRICS_DISABLED')
    const seen: RuntimeEvent[] = []
    node.events.subscribe('rpc.*', (e) => seen.push(e))
    expect(await node.ask(Counter, 'k', 'add', 1)).toBe(1)
    for (let i = 0; i < 2; i++) await rejection(node.ask(Sentinel, 's', 'boom'), 'ERR_GRAIN_HANDLER_FAILED')
    expect(seen.map((e) => e.type)).toEqual(['rpc.failed', 'rpc.failed', 'rpc.alert'])
  })
})
