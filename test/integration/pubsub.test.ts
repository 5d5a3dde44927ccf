/**
 * Cluster PubSub (spec 9): a lone node, and two GrainNodes in this process
 * on loopback sockets (the topic registry travels on their gossip, the
 * deliveries on their associations). A quarantine stands in for a
 * partition between the two: sends to the other side are refused until it
 * is released.
 */
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { buildFront, GrainClusterError, GrainNode, type RuntimeEvent, startFront } from '../../src/index.js'
import { catchErr, catchErrAsync } from '../helpers/catch-error.js'
import { keyPlacedOn, startPair } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/pubsub-grains.ts', import.meta.url)]

const nodes: GrainNode[] = []
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()))
})

function record(n: GrainNode): RuntimeEvent[] {
  const out: RuntimeEvent[] = []
  n.events.subscribe('pubsub.*', (e) => void out.push(e))
  return out
}

const inbox = (key: string, method = 'receive') => ({ kind: 'inbox', key, method })

async function lone(): Promise<GrainNode> {
  const n = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8 })
  nodes.push(n)
  return n
}

async function pair(): Promise<[GrainNode, GrainNode]> {
  const p = await startPair('pubsub-it', { grains: GRAINS })
  nodes.push(...p)
  return p
}

describe('PubSub on one node', () => {
  it('delivers each publish to every subscriber, acknowledged (at-least-once) or sent (at-most-once), and counts it', async () => {
    const n = await lone()
    const events = record(n)
    n.pubsub.createTopic('orders')
    n.pubsub.createTopic('ticks', { delivery: 'at-most-once' })
    for (const k of ['a', 'b', 'c']) n.pubsub.subscribe('orders', inbox(k))
    n.pubsub.subscribe('orders', inbox('a')) // idempotent
    n.pubsub.subscribe('ticks', inbox('t'))
    expect(n.pubsub.topic('orders')?.subscribers.map((s) => s.key).sort()).toEqual(['a', 'b', 'c'])

    for (let i = 1; i <= 3; i++) {
      const r = await n.pubsub.publish('orders', { order: i })
      expect(r).toMatchObject({ topic: 'orders', delivery: 'at-least-once', subscribers: 3, delivered: 3, redeliveries: 0, dropped: [], failed: [] })
    }
    // Acknowledged means the handler ran: each inbox holds all three, in publish order.
    for (const k of ['a', 'b', 'c']) expect(await n.ask('inbox', k, 'received')).toEqual([{ order: 1 }, { order: 2 }, { order: 3 }])

    const t = await n.pubsub.publish('ticks', 42)
    expect(t).toMatchObject({ delivery: 'at-most-once', subscribers: 1, delivered: 1 })
    await waitUntil(async () => (await n.ask<unknown[]>('inbox', 't', 'received')).length === 1, { what: 'the tick arrived' })

    expect(events.filter((e) => e.type === 'pubsub.topic-created').map((e) => (e as { topic: string }).topic)).toEqual(['orders', 'ticks'])
    expect(events.filter((e) => e.type === 'pubsub.subscribed')).toHaveLength(4)
    const text = await n.metricsText()
    expect(text).toMatch(/graincluster_pubsub_published_total\{topic="orders"\} 3/)
    expect(text).toMatch(/graincluster_pubsub_deliveries_total\{topic="orders",outcome="delivered"\} 9/)
    expect(text).toMatch(/graincluster_pubsub_delivery_seconds_count\{topic="orders"\} 9/)
    expect(text).toMatch(/graincluster_pubsub_topics 2/)
    expect(text).toMatch(/graincluster_pubsub_subscriptions 4/)
  })

  it('fails a publish that reaches nobody with the reason (spec 9.4), and refuses bad topics and subscribers', async () => {
    const n = await lone()
    const events = record(n)
    const missing = await catchErrAsync(() => n.pubsub.publish('nowhere', 1))
    expect(GrainClusterError.is(missing, 'ERR_PUBSUB_TOPIC_NOT_FOUND')).toBe(true)
    expect((missing as GrainClusterError).details.topic).toBe('nowhere')
    n.pubsub.createTopic('empty')
    const empty = await catchErrAsync(() => n.pubsub.publish('empty', 1))
    expect(GrainClusterError.is(empty, 'ERR_PUBSUB_NO_SUBSCRIBERS')).toBe(true)
    expect(events.filter((e) => e.type === 'pubsub.publish-failed').map((e) => (e as { code: string }).code)).toEqual(['ERR_PUBSUB_TOPIC_NOT_FOUND', 'ERR_PUBSUB_NO_SUBSCRIBERS'])

    const code = (f: () => unknown): string | undefined => (catchErr(f) as GrainClusterError | undefined)?.code
    expect(code(() => n.pubsub.subscribe('nowhere', inbox('a')))).toBe('ERR_PUBSUB_TOPIC_NOT_FOUND')
    expect(code(() => n.pubsub.subscribe('empty', { kind: 'no-such-kind', key: 'a', method: 'receive' }))).toBe('ERR_PUBSUB_INVALID')
    expect(code(() => n.pubsub.subscribe('empty', inbox('a', 'noSuchMethod')))).toBe('ERR_PUBSUB_INVALID')
    expect(code(() => n.pubsub.subscribe('empty', inbox('')))).toBe('ERR_PUBSUB_INVALID')
    expect(code(() => n.pubsub.subscribe('empty', inbox('x'.repeat(600))))).toBe('ERR_PUBSUB_INVALID')
    expect(code(() => n.pubsub.createTopic('bad name'))).toBe('ERR_PUBSUB_INVALID')
    expect(code(() => n.pubsub.createTopic('t', { delivery: 'exactly-once' as 'at-most-once' }))).toBe('ERR_PUBSUB_INVALID')
    expect(code(() => n.pubsub.createTopic('t', { redelivery: { attemptTimeoutMs: 5_000, timeoutMs: 1_000 } }))).toBe('ERR_PUBSUB_INVALID')
    expect(code(() => n.pubsub.createTopic('empty', { delivery: 'at-most-once' }))).toBe('ERR_PUBSUB_TOPIC_CONFLICT')
    expect(code(() => n.pubsub.createTopic('empty'))).toBeUndefined() // same settings: idempotent
    // The node keeps serving.
    n.pubsub.subscribe('empty', inbox('a'))
    expect((await n.pubsub.publish('empty', 'still here')).delivered).toBe(1)
  })

  it('delivers to a topic with more subscribers than one publish keeps in flight', async () => {
    const n = await lone()
    n.pubsub.createTopic('crowd')
    const keys = Array.from({ length: 300 }, (_, i) => `c${i}`)
    for (const k of keys) n.pubsub.subscribe('crowd', inbox(k))
    expect(await n.pubsub.publish('crowd', 'hello')).toMatchObject({ subscribers: 300, delivered: 300, dropped: [], failed: [] })
    for (const k of [keys[0]!, keys[255]!, keys[256]!, keys[299]!]) expect(await n.ask('inbox', k, 'received')).toEqual(['hello'])
  })

  it('redelivers after a timeout, never after a handler throws, and counts both', async () => {
    const n = await lone()
    const events = record(n)
    n.pubsub.createTopic('jobs', { redelivery: { attemptTimeoutMs: 300, timeoutMs: 10_000, minDelayMs: 10, maxDelayMs: 50 } })
    n.pubsub.subscribe('jobs', inbox('slow', 'slowFirst'))
    n.pubsub.subscribe('jobs', inbox('grumpy', 'refuse'))
    const r = await n.pubsub.publish('jobs', 'job-1')
    expect(r.delivered).toBe(1)
    expect(r.redeliveries).toBeGreaterThanOrEqual(1)
    expect(r.failed).toEqual([expect.objectContaining({ kind: 'inbox', key: 'grumpy', method: 'refuse', code: 'ERR_GRAIN_HANDLER_FAILED' })])
    expect(r.dropped).toEqual([])
    // At-least-once: the stalled first attempt still ran, and so did the acknowledged one (attempts
    // that expired while queued behind the stall were skipped), so the message is there 2..1+redeliveries times.
    const got = await n.ask<unknown[]>('inbox', 'slow', 'received')
    expect(got.every((m) => m === 'job-1')).toBe(true)
    expect(got.length).toBeGreaterThanOrEqual(2)
    expect(got.length).toBeLessThanOrEqual(1 + r.redeliveries)
    expect(events.filter((e) => e.type === 'pubsub.delivery-lost')).toEqual([expect.objectContaining({ topic: 'jobs', key: 'grumpy', outcome: 'failed' })])
    const text = await n.metricsText()
    expect(text).toMatch(new RegExp(`graincluster_pubsub_redeliveries_total\\{topic="jobs"\\} ${r.redeliveries}\\b`))
    expect(text).toMatch(/graincluster_pubsub_deliveries_total\{topic="jobs",outcome="failed"\} 1/)
  })
})

describe('PubSub topics from the node options', () => {
  it('creates the configured topics at start, and refuses bad ones before starting', async () => {
    const n = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8, pubsub: { topics: { boot: { delivery: 'at-most-once' }, 'boot.audit': {} } } })
    nodes.push(n)
    expect(n.pubsub.topics().map((t) => [t.topic, t.settings.delivery])).toEqual([
      ['boot', 'at-most-once'],
      ['boot.audit', 'at-least-once'],
    ])
    const bad = await catchErrAsync(() => GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8, pubsub: { topics: { ok: {}, 'bad name': {}, t: { deferLimit: 0 } } } }))
    expect(GrainClusterError.is(bad, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((bad as GrainClusterError).details.issues).toEqual([expect.stringContaining('pubsub.topics.bad name'), expect.stringContaining('pubsub.topics.t: invalid settings of topic t: deferLimit')])
  })
})

describe('PubSub across two nodes', () => {
  it('announces a topic to the other member, which then takes subscriptions and publishes to subscribers on both nodes', async () => {
    const [a, b] = await pair()
    const bEvents = record(b)
    a.pubsub.createTopic('news')
    // Spec 9.1: the other member hears of the topic (gossip) and accepts subscriptions from then on.
    await waitUntil(() => bEvents.some((e) => e.type === 'pubsub.topic-created'), { what: 'b learns of the topic' })
    const onA = keyPlacedOn(a, 'inbox', 'on-a-', b)
    const onB = keyPlacedOn(b, 'inbox', 'on-b-', b)
    b.pubsub.subscribe('news', inbox(onA))
    b.pubsub.subscribe('news', inbox(onB))
    await waitUntil(() => a.pubsub.topic('news')?.subscribers.length === 2, { what: 'a learns of both subscriptions' })

    const r = await a.pubsub.publish('news', { headline: 'up' })
    expect(r).toMatchObject({ subscribers: 2, delivered: 2, dropped: [], failed: [] })
    expect(await a.ask('inbox', onA, 'received')).toEqual([{ headline: 'up' }])
    expect(await a.ask('inbox', onB, 'received')).toEqual([{ headline: 'up' }])

    // A grain subscribes itself (ctx.subscribe), here one placed on b, and the registry spreads it to a.
    const selfSub = keyPlacedOn(b, 'inbox', 'self-', b)
    await a.ask('inbox', selfSub, 'join', 'news')
    expect(await a.ask('inbox', selfSub, 'joinBadly', 'news')).toBe('ERR_PUBSUB_INVALID')
    await waitUntil(() => a.pubsub.topic('news')?.subscribers.length === 3, { what: 'a learns of the grain’s own subscription' })
    expect((await a.pubsub.publish('news', { headline: 'three' })).delivered).toBe(3)
    expect(await a.ask('inbox', selfSub, 'received')).toEqual([{ headline: 'three' }])
    expect(await a.ask('inbox', selfSub, 'leave', 'news')).toBe(true)
    await waitUntil(() => a.pubsub.topic('news')?.subscribers.length === 2, { what: 'a learns of the unsubscription' })

    // A grain publishes too (ctx.publish, through its node's main thread), here from the other node.
    const publisherOnB = keyPlacedOn(b, 'publisher', 'pub-', b)
    const fromGrain = await a.ask<{ delivered: number; subscribers: number }>('publisher', publisherOnB, 'announce', { topic: 'news', msg: { headline: 'from a grain' } })
    expect(fromGrain).toMatchObject({ topic: 'news', subscribers: 2, delivered: 2, dropped: [], failed: [] })
    expect(await a.ask('inbox', onA, 'received')).toEqual([{ headline: 'up' }, { headline: 'three' }, { headline: 'from a grain' }])
    expect(await a.ask('publisher', publisherOnB, 'announce', { topic: 'no-such-topic', msg: 1 })).toEqual({ error: 'ERR_PUBSUB_TOPIC_NOT_FOUND' })

    expect(b.pubsub.deleteTopic('news')).toBe(true)
    await waitUntil(() => a.pubsub.topic('news') === undefined, { what: 'a learns of the delete' })
    const gone = await catchErrAsync(() => a.pubsub.publish('news', 'late'))
    expect(GrainClusterError.is(gone, 'ERR_PUBSUB_TOPIC_NOT_FOUND')).toBe(true)
  })

  it("partition policy 'drop' drops deliveries to the unreachable side at once and delivers on its own side", async () => {
    const [a, b] = await pair()
    const events = record(a)
    a.pubsub.createTopic('quotes', { partitionPolicy: 'drop' })
    const onA = keyPlacedOn(a, 'inbox', 'qa-')
    const onB = keyPlacedOn(b, 'inbox', 'qb-', a)
    a.pubsub.subscribe('quotes', inbox(onA))
    a.pubsub.subscribe('quotes', inbox(onB))
    expect((await a.pubsub.publish('quotes', 1)).delivered).toBe(2)

    a.quarantine(b.cluster!.authority, 'test: cut off b')
    const r = await a.pubsub.publish('quotes', 2)
    expect(r.delivered).toBe(1)
    expect(r.dropped).toEqual([expect.objectContaining({ key: onB, code: 'ERR_AUTHORITY_UNREACHABLE' })])
    expect(r.redeliveries).toBe(0)
    expect(events.filter((e) => e.type === 'pubsub.delivery-lost')).toEqual([expect.objectContaining({ key: onB, outcome: 'dropped' })])
    expect(await a.ask('inbox', onA, 'received')).toEqual([1, 2])
    expect(await a.metricsText()).toMatch(/graincluster_pubsub_deliveries_total\{topic="quotes",outcome="dropped"\} 1/)
  })

  it("partition policy 'defer' keeps deliveries to the unreachable side (at most deferLimit) and delivers them after the heal", async () => {
    const [a, b] = await pair()
    a.pubsub.createTopic('ledger', { deferLimit: 1, redelivery: { attemptTimeoutMs: 1_000, timeoutMs: 60_000, retries: 100, minDelayMs: 50, maxDelayMs: 200 } })
    const onB = keyPlacedOn(b, 'inbox', 'lb-', a)
    a.pubsub.subscribe('ledger', inbox(onB))
    expect((await a.pubsub.publish('ledger', 'before')).delivered).toBe(1)

    a.quarantine(b.cluster!.authority, 'test: cut off b')
    const first = a.pubsub.publish('ledger', 'during-1')
    // A second delivery waiting for the same topic goes past deferLimit 1: the oldest waiting one is dropped.
    await waitUntil(async () => ((await a.metricsText()).match(/graincluster_pubsub_deliveries_waiting 1/) ?? null) !== null, { what: 'the first delivery waits for redelivery' })
    const second = a.pubsub.publish('ledger', 'during-2')
    const r1 = await first
    expect(r1.dropped).toEqual([expect.objectContaining({ key: onB, code: 'ERR_PUBSUB_DEFERRED_FULL' })])

    // Heal: the waiting delivery goes through on its next redelivery.
    expect(a.releaseQuarantine(b.cluster!.authority)).toBe(true)
    const r2 = await second
    expect(r2).toMatchObject({ delivered: 1, dropped: [], failed: [] })
    expect(r2.redeliveries).toBeGreaterThanOrEqual(1)
    expect(await a.ask('inbox', onB, 'received')).toEqual(['before', 'during-2'])
  })
})

describe('PubSub over HTTP', () => {
  it('creates, subscribes, publishes, lists and deletes through /pubsub, with typed errors and the token', async () => {
    const n = await lone()
    const app = buildFront(n, { token: 's3cret' })
    const auth = { authorization: 'Bearer s3cret' }
    try {
      expect((await app.inject({ method: 'PUT', url: '/pubsub/alerts' })).statusCode).toBe(401)
      const created = await app.inject({ method: 'PUT', url: '/pubsub/alerts', headers: auth, payload: { delivery: 'at-least-once', partitionPolicy: 'drop' } })
      expect(created.statusCode).toBe(200)
      expect(created.json()).toMatchObject({ topic: 'alerts', settings: { delivery: 'at-least-once', partitionPolicy: 'drop' } })
      const conflict = await app.inject({ method: 'PUT', url: '/pubsub/alerts', headers: auth, payload: { delivery: 'at-most-once' } })
      expect([conflict.statusCode, conflict.json().error.code]).toEqual([409, 'ERR_PUBSUB_TOPIC_CONFLICT'])

      const none = await app.inject({ method: 'POST', url: '/pubsub/alerts/publish', headers: auth, payload: { level: 'high' } })
      expect([none.statusCode, none.json().error.code]).toEqual([409, 'ERR_PUBSUB_NO_SUBSCRIBERS'])
      const badSub = await app.inject({ method: 'POST', url: '/pubsub/alerts/subscriptions', headers: auth, payload: { kind: 'inbox', key: 'ops', method: 'nope' } })
      expect([badSub.statusCode, badSub.json().error.code]).toEqual([400, 'ERR_PUBSUB_INVALID'])
      expect((await app.inject({ method: 'POST', url: '/pubsub/alerts/subscriptions', headers: auth, payload: inbox('ops') })).statusCode).toBe(200)

      const pub = await app.inject({ method: 'POST', url: '/pubsub/alerts/publish', headers: auth, payload: { level: 'high' } })
      expect(pub.statusCode).toBe(200)
      expect(pub.json()).toMatchObject({ topic: 'alerts', subscribers: 1, delivered: 1, dropped: [], failed: [] })
      expect(await n.ask('inbox', 'ops', 'received')).toEqual([{ level: 'high' }])

      const list = await app.inject({ method: 'GET', url: '/pubsub/topics', headers: auth })
      expect(list.json()).toEqual({ topics: [expect.objectContaining({ topic: 'alerts', subscribers: [inbox('ops')] })] })
      expect((await app.inject({ method: 'DELETE', url: '/pubsub/alerts/subscriptions/inbox/ops/receive', headers: auth })).json()).toEqual({ topic: 'alerts', unsubscribed: true })
      expect((await app.inject({ method: 'DELETE', url: '/pubsub/alerts', headers: auth })).statusCode).toBe(200)
      const gone = await app.inject({ method: 'POST', url: '/pubsub/alerts/publish', payload: '1', headers: { ...auth, 'content-type': 'application/json' } })
      expect([gone.statusCode, gone.json().error.code]).toEqual([404, 'ERR_PUBSUB_TOPIC_NOT_FOUND'])
    } finally {
      await app.close()
    }
  })
})

describe('PubSub over the WebSocket', () => {
  it('publishes with { id, publish, payload } frames, one by one and in a batch, with typed errors', async () => {
    const n = await lone()
    n.pubsub.createTopic('ws-topic')
    n.pubsub.subscribe('ws-topic', inbox('w1'))
    const front = await startFront(n)
    const ws = new WebSocket(`${front.url.replace(/^http/, 'ws')}/ws`)
    const replies: { id: unknown; result?: { delivered: number }; error?: { code: string } }[] = []
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString('utf8')) as typeof replies | (typeof replies)[number]
      replies.push(...(Array.isArray(m) ? m : [m]))
    })
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
      ws.send(JSON.stringify({ id: 1, publish: 'ws-topic', payload: 'one' }))
      ws.send(JSON.stringify([{ id: 2, publish: 'ws-topic', payload: 'two' }, { id: 3, publish: 'no-such-topic', payload: 'x' }, { id: 4, publish: 7 }]))
      await waitUntil(() => replies.length === 4, { what: 'four replies' })
      const byId = new Map(replies.map((r) => [r.id, r]))
      expect(byId.get(1)?.result?.delivered).toBe(1)
      expect(byId.get(2)?.result?.delivered).toBe(1)
      expect(byId.get(3)?.error?.code).toBe('ERR_PUBSUB_TOPIC_NOT_FOUND')
      expect(byId.get(4)?.error?.code).toBe('ERR_RPC_BAD_REQUEST')
      expect(await n.ask('inbox', 'w1', 'received')).toEqual(['one', 'two'])
    } finally {
      ws.close()
      await front.close()
    }
  })
})
