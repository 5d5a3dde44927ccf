/**
 * GET /dashboard on a clustered node: the page's own script runs (in a vm
 * context with a stub DOM and fetch pointed at the node's front) against
 * the live /metrics, /readyz and /cluster/members, and renders the members,
 * the RPC rates and latencies of the calls made between its scrapes, and
 * the node's health; every series the page reads exists on the node. And
 * the Grafana dashboard shipped in grafana/dashboard.json (ECOSYSTEM.md's
 * dashboard row): every expression names series and labels the node exports.
 */
import { readFileSync } from 'node:fs'
import { runInNewContext, Script } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GrainNode, type RunningFront, startFront } from '../../src/index.js'
import { DASHBOARD_METRICS } from '../../src/rpc/routes/dashboard.js'
import { startPair } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]

/** The page's script in a context of its own: elements by id, fetch relative to the page, the interval captured. */
function runPage(html: string, base: string): { el: Map<string, { innerHTML: string; textContent: string }>; tick: () => void; ticks: () => number } {
  const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1]
  if (script === undefined) throw new Error('no script in the page')
  const el = new Map<string, { innerHTML: string; textContent: string }>()
  let tick: (() => void) | undefined
  let ticks = 0
  runInNewContext(script, {
    document: {
      getElementById: (id: string) => {
        let e = el.get(id)
        if (e === undefined) el.set(id, (e = { innerHTML: '', textContent: '' }))
        return e
      },
    },
    fetch: (u: string) => {
      ticks++
      return fetch(new URL(u, base))
    },
    setInterval: (fn: () => void) => void (tick = fn),
    Date,
    Map,
    Number,
    JSON,
    String,
    Object,
  })
  return { el, tick: () => tick!(), ticks: () => ticks }
}

describe('dashboard', () => {
  let a: GrainNode
  let b: GrainNode
  let front: RunningFront

  beforeAll(async () => {
    ;[a, b] = await startPair('dashboard', { grains: GRAINS })
    front = await startFront(a)
  })
  afterAll(async () => {
    await front?.close()
    await Promise.all([a?.close(), b?.close()])
  })

  it('serves one self-contained page whose script compiles', async () => {
    const res = await fetch(`${front.url}/dashboard`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    const html = await res.text()
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\//)
    expect(() => new Script(/<script>([\s\S]*)<\/script>/.exec(html)![1]!)).not.toThrow()
  })

  it('reads only series the node exports', async () => {
    const text = await a.metricsText()
    for (const name of Object.values(DASHBOARD_METRICS)) expect(text, name).toContain(`# TYPE ${name} `)
  })

  it('ships a Grafana dashboard whose every expression reads series and labels the node exports', () => {
    interface Panel {
      id: number
      type: string
      targets?: { expr: string; refId: string }[]
    }
    const dash = JSON.parse(readFileSync(new URL('../../grafana/dashboard.json', import.meta.url), 'utf8')) as { __inputs: { name: string }[]; panels: Panel[] }
    expect(dash.__inputs.map((i) => i.name)).toEqual(['DS_PROMETHEUS'])
    expect(new Set(dash.panels.map((p) => p.id)).size).toBe(dash.panels.length)
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))
    expect(exprs.length).toBeGreaterThan(20)
    // Labels Prometheus adds at scrape time, and histogram bounds.
    const scrapeLabels = new Set(['instance', 'job', 'le'])
    for (const expr of exprs) {
      const names = [...new Set(expr.match(/graincluster_[a-z_]+/g) ?? [])]
      expect(names, expr).toHaveLength(1)
      const base = names[0]!.replace(/_bucket$/, '')
      const metric = a.metrics!.registry.getSingleMetric(base) as unknown as { labelNames?: string[] } | undefined
      expect(metric, `${base} (in ${expr})`).toBeDefined()
      const used = [...expr.matchAll(/by \(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim()))
      used.push(...[...expr.matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)\s*"/g)].map((m) => m[1]!))
      for (const label of used) if (!scrapeLabels.has(label)) expect(metric!.labelNames ?? [], `label ${label} of ${base} (in ${expr})`).toContain(label)
    }
  })

  it("renders the members, the calls made between two scrapes with their latency, and the node's health", async () => {
    const page = runPage(await (await fetch(`${front.url}/dashboard`)).text(), `${front.url}/dashboard`)
    await waitUntil(() => page.el.get('status')?.innerHTML.includes('scraped') === true, { what: 'the first scrape', timeoutMs: 20_000 })
    expect(page.el.get('title')!.textContent).toBe(`graincluster ${a.cluster!.authority}`)
    const members = page.el.get('members')!.innerHTML
    expect(members).toContain(`${a.cluster!.authority} (this node)`)
    expect(members).toContain(b.cluster!.authority)
    expect(members.match(/<td>up<\/td>/g)).toHaveLength(2)
    expect(page.el.get('status')!.innerHTML).toContain('ready')

    // Calls between the scrapes: ten adds and one unknown method (an error).
    for (let i = 0; i < 10; i++) await a.ask('counter', `dash-${i}`, 'add', 1)
    await a.ask('counter', 'dash-0', 'nope').catch(() => undefined)
    // And two publishes to a topic whose subscriber is a counter.
    a.pubsub.createTopic('dash-topic')
    a.pubsub.subscribe('dash-topic', { kind: 'counter', key: 'dash-sub', method: 'add' })
    for (let i = 0; i < 2; i++) expect((await a.pubsub.publish('dash-topic', 1)).delivered).toBe(1)
    const addRow = (): string[] => {
      const row = /<tr><td>counter\.add<\/td>(.*?)<\/tr>/.exec(page.el.get('rpc')!.innerHTML)?.[1] ?? ''
      return [...row.matchAll(/<td>(.*?)<\/td>/g)].map((m) => m[1]!)
    }
    // Before: no call of counter.add yet, so no row.
    expect(addRow()).toEqual([])
    await new Promise((r) => setTimeout(r, 20)) // the rates divide by the time between scrapes
    page.tick()
    await waitUntil(() => Number(addRow()[0]) > 0, { what: 'the second scrape to show the adds', timeoutMs: 20_000 })
    const cells = addRow()
    // calls/s > 0, no errors, a p50 and p99 in ms.
    expect(cells[1]).toBe('0.0')
    expect(Number(cells[3])).toBeGreaterThan(0)
    expect(Number(cells[4])).toBeGreaterThanOrEqual(Number(cells[3]))
    expect(page.el.get('rpc')!.innerHTML).toMatch(/<td>counter\.unknown<\/td><td>[\d.]+<\/td><td>[1-9][\d.]*<\/td>/)
    expect(page.el.get('health')!.innerHTML).toContain('associations connected / disconnected / quarantined</td><td>1 / 0 / 0')
    // topic, published/s, delivered/s, dropped/s, failed/s, redelivered/s, p99 ms.
    const topic = [...(/<tr><td>dash-topic<\/td>(.*?)<\/tr>/.exec(page.el.get('pubsub')!.innerHTML)?.[1] ?? '').matchAll(/<td>(.*?)<\/td>/g)].map((m) => m[1]!)
    expect(Number(topic[0])).toBeGreaterThan(0)
    expect(Number(topic[1])).toBeGreaterThan(0)
    expect(topic.slice(2, 5)).toEqual(['0.0', '0.0', '0.0'])
    expect(Number(topic[5])).toBeGreaterThan(0)
  })
})

describe('dashboard on a node without metrics', () => {
  it("shows the node's diagnostic instead of numbers", async () => {
    const node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 4, metrics: false })
    const front = await startFront(node)
    try {
      const page = runPage(await (await fetch(`${front.url}/dashboard`)).text(), `${front.url}/dashboard`)
      await waitUntil(() => page.el.get('status')?.innerHTML.includes('ERR_RPC_METRICS_DISABLED') === true, { what: 'the diagnostic', timeoutMs: 20_000 })
      expect(page.el.get('status')!.innerHTML).toContain('class="bad"')
      // Not a cluster member: no members, and no table rendered from numbers that are not collected.
      expect(page.el.get('members')!.innerHTML).toContain('nothing yet')
      expect(page.el.get('rpc')).toBeUndefined()
    } finally {
      await front.close()
      await node.close()
    }
  })
})
