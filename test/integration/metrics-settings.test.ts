/**
 * Observability settings (spec 10.5): Node.js process metrics on request,
 * the workers' sampling interval, and a Pushgateway as a second export
 * destination. The gateway here is a loopback HTTP server that records the
 * pushes (or fails them): the node pushes its whole registry with PUT to
 * /metrics/job/<job>/instance/<instance>, every interval and once more
 * when it closes; a failed push is an event and the node works on.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { GrainClusterError, GrainNode, type RuntimeEvent } from '../../src/index.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]

interface Push {
  method: string
  url: string
  body: string
}

/** A Pushgateway stand-in on a free loopback port answering `status`. */
async function gateway(status: number): Promise<{ url: string; pushes: Push[]; server: Server }> {
  const pushes: Push[] = []
  const server = createServer((req: IncomingMessage, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => {
      pushes.push({ method: req.method ?? '', url: req.url ?? '', body })
      res.statusCode = status
      res.end(status >= 400 ? 'gateway says no' : '')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pushes, server }
}

describe('metrics settings', () => {
  const cleanup: (() => Promise<unknown>)[] = []
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c()
  })

  it('pushes the registry, process metrics included, to a Pushgateway every interval and once more at close', async () => {
    const g = await gateway(200)
    cleanup.push(() => new Promise((r) => g.server.close(r)))
    const node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 4, metrics: { processMetrics: true, workerStatsIntervalMs: 250, push: { url: g.url, intervalMs: 200, job: 'itest' } } })
    let closed = false
    cleanup.push(() => (closed ? Promise.resolve() : node.close()))
    expect(node.options.callStatsIntervalMs).toBe(250)
    expect(await node.ask('counter', 'pushed', 'add', 1)).toBe(1)
    const counted = (p: Push): boolean => p.body.includes('graincluster_rpc_calls_total{kind="counter",method="add",code="ok"} 1')
    await waitUntil(() => g.pushes.some(counted), { what: 'a push with the call counted', timeoutMs: 20_000 })
    const p = g.pushes.find(counted)!
    expect(p.method).toBe('PUT')
    expect(p.url).toBe(`/metrics/job/itest/instance/${encodeURIComponent(`${(await import('node:os')).hostname()}:${process.pid}`)}`)
    // Process metrics under their standard names, alongside the node's own.
    expect(p.body).toMatch(/^process_cpu_user_seconds_total \d/m)
    expect(p.body).toContain('nodejs_eventloop_lag_seconds')
    expect(node.metricsPushes).toBeGreaterThanOrEqual(1)
    const before = g.pushes.length
    await node.close()
    closed = true
    // The last push went out as the node closed.
    expect(g.pushes.length).toBeGreaterThan(before)
  })

  it('reports a failed push as an event and keeps serving; without process metrics there are none', async () => {
    const g = await gateway(500)
    cleanup.push(() => new Promise((r) => g.server.close(r)))
    const node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 4, metrics: { push: { url: g.url, intervalMs: 200 } } })
    cleanup.push(() => node.close())
    const failed: RuntimeEvent[] = []
    node.events.subscribe('node.metrics-push-failed', (e) => failed.push(e))
    await waitUntil(() => failed.length >= 2, { what: 'two failed pushes', timeoutMs: 20_000 })
    expect(failed[0]).toMatchObject({ type: 'node.metrics-push-failed', url: g.url, job: 'graincluster' })
    expect(failed[0]!.type === 'node.metrics-push-failed' && failed[0].reason).toContain('500')
    expect(node.metricsPushes).toBe(0)
    expect(await node.ask('counter', 'still', 'add', 2)).toBe(2)
    expect(await node.metricsText()).not.toContain('process_cpu_user_seconds_total')
  })

  it('refuses bad settings, every problem at once', async () => {
    const e = await GrainNode.start({ grains: GRAINS, workers: 1, metrics: { workerStatsIntervalMs: 5, push: { url: 'ftp://gateway', intervalMs: 0, job: 'no spaces' } } }).then(
      (n) => n.close().then(() => undefined),
      (x: unknown) => x,
    )
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).details.issues).toEqual([
      expect.stringContaining('metrics.workerStatsIntervalMs'),
      expect.stringContaining('metrics.push.url'),
      expect.stringContaining('metrics.push.job'),
      expect.stringContaining('metrics.push.intervalMs'),
    ])
  })
})
