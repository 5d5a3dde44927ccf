/**
 * The Fastify front over real sockets: HTTP round trips and error mapping
 * against a real GrainNode (one worker), a real `ws` client multiplexing
 * calls, the token, the body limit, /metrics with and without metrics, and
 * the probes (readiness edge cases on a stub node, where they can be driven).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { buildFront, EventStream, GrainNode, startFront, type FrontNode, type Member, type RunningFront, type RuntimeEvent } from '../../src/index.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
const TOKEN = 'front-test-token'

interface ErrorBody {
  error: { code: string; reason: string; details: Record<string, unknown> }
}

async function post(base: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body }),
  })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

function expectError(r: { status: number; json: any }, status: number, code: string): ErrorBody {
  expect(r.status, JSON.stringify(r.json)).toBe(status)
  const b = r.json as ErrorBody
  expect(b.error.code).toBe(code)
  expect(typeof b.error.reason).toBe('string')
  expect(typeof b.error.details).toBe('object')
  return b
}

/** A `ws` client that records every reply by id, in arrival order. */
class WsClient {
  readonly replies: any[] = []
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => this.replies.push(JSON.parse(d.toString('utf8'))))
  }

  static open(url: string, headers: Record<string, string> = {}): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws', { headers })
      ws.once('open', () => resolve(new WsClient(ws)))
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)))
      ws.once('error', reject)
    })
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg))
  }

  reply(id: unknown): Promise<any> {
    return waitUntil(() => this.replies.find((r) => r.id === id), { what: `ws reply ${JSON.stringify(id)}`, timeoutMs: 20_000 })
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve()
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve())
      this.ws.close()
    })
  }
}

describe('HTTP and WebSocket front on a real node', () => {
  let node: GrainNode
  let front: RunningFront
  let guarded: RunningFront
  let small: RunningFront

  beforeAll(async () => {
    node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8 })
    front = await startFront(node, { port: 0 })
    guarded = await startFront(node, { token: TOKEN })
    small = await startFront(node, { bodyLimitBytes: 1_024, wsMaxInFlight: 4 })
  })
  afterAll(async () => {
    await Promise.allSettled([front?.close(), guarded?.close(), small?.close()])
    await node?.close()
  })

  it('binds to loopback on a free port by default', () => {
    expect(front.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(front.url).not.toMatch(/:0$/)
  })

  it('round-trips grain calls: JSON body is the payload, reply is { result }', async () => {
    expect(await post(front.url, '/rpc/counter/http-a/add', '2')).toEqual({ status: 200, json: { result: 2 } })
    expect(await post(front.url, '/rpc/counter/http-a/add', '3')).toEqual({ status: 200, json: { result: 5 } })
    // Empty body = no payload.
    expect(await post(front.url, '/rpc/counter/http-a/get')).toEqual({ status: 200, json: { result: 5 } })
    expect(await post(front.url, '/rpc/counter/http-a/get', '')).toEqual({ status: 200, json: { result: 5 } })
    const v = { s: 'x', n: [1, 2.5, null], o: { deep: true } }
    expect(await post(front.url, '/rpc/counter/http-a/echo', JSON.stringify(v))).toEqual({ status: 200, json: { result: v } })
    // A key with URL-encoded characters reaches the grain decoded.
    const r = await post(front.url, `/rpc/counter/${encodeURIComponent('a/b c')}/where`)
    expect(r.json.result.key).toBe('a/b c')
  })

  it('maps unknown kinds and methods to 404 with the typed code', async () => {
    const k = expectError(await post(front.url, '/rpc/no-such-kind/k/get'), 404, 'ERR_GRAIN_UNKNOWN_KIND')
    expect(k.error.details).toMatchObject({ kind: 'no-such-kind', key: 'k', method: 'get' })
    expectError(await post(front.url, '/rpc/counter/k/nope'), 404, 'ERR_GRAIN_UNKNOWN_METHOD')
  })

  it('maps a throwing grain to 500 and a stalled one to 504', async () => {
    const f = expectError(await post(front.url, '/rpc/counter/http-f/fail', JSON.stringify('kaboom')), 500, 'ERR_GRAIN_HANDLER_FAILED')
    expect(f.error.reason).toContain('kaboom')
    const t = expectError(await post(front.url, '/rpc/counter/http-hang/hang', undefined, { 'x-timeout-ms': '150' }), 504, 'ERR_GRAIN_TIMEOUT')
    expect(t.error.details).toMatchObject({ kind: 'counter', key: 'http-hang', method: 'hang' })
  })

  it('rejects bad JSON, bad params and bad headers with 400 ERR_RPC_BAD_REQUEST', async () => {
    expectError(await post(front.url, '/rpc/counter/k/add', '{"by": '), 400, 'ERR_RPC_BAD_REQUEST')
    expectError(await post(front.url, '/rpc/counter/k/echo', '{"__proto__": {"x": 1}}'), 400, 'ERR_RPC_BAD_REQUEST')
    expectError(await post(front.url, '/rpc/9bad/k/get'), 400, 'ERR_RPC_BAD_REQUEST')
    expectError(await post(front.url, `/rpc/counter/${'k'.repeat(1_025)}/get`), 400, 'ERR_RPC_BAD_REQUEST')
    expectError(await post(front.url, `/rpc/counter/${'k'.repeat(10_000)}/get`), 400, 'ERR_RPC_BAD_REQUEST')
    expectError(await post(front.url, '/rpc/counter/%E0%A4%A/get'), 400, 'ERR_RPC_BAD_REQUEST')
    // The longest key, all multi-byte characters, still reaches the grain.
    const long = 'é'.repeat(1_024)
    expect((await post(front.url, `/rpc/counter/${encodeURIComponent(long)}/where`)).json.result.key).toBe(long)
    const h = expectError(await post(front.url, '/rpc/counter/k/get', undefined, { 'x-timeout-ms': 'soon' }), 400, 'ERR_RPC_BAD_REQUEST')
    expect(h.error.reason).toContain('x-timeout-ms')
    const res = await fetch(`${front.url}/rpc/counter/k/add`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '1' })
    expect(res.status).toBe(400)
    expect(((await res.json()) as ErrorBody).error.code).toBe('ERR_RPC_BAD_REQUEST')
  })

  it("checks payloads against their method's schema with Fastify's validator, over HTTP and WebSocket", async () => {
    // Valid: defaults filled in, types coerced (Fastify's ajv settings), extra properties removed (additionalProperties: false).
    expect(await post(front.url, '/rpc/typed-account/t1/deposit', '{"amount": 5}')).toEqual({ status: 200, json: { result: { balance: 5, seen: { amount: 5, memo: 'none' } } } })
    expect(await post(front.url, '/rpc/typed-account/t1/deposit', '{"amount": "2", "memo": "m", "extra": true}')).toEqual({
      status: 200,
      json: { result: { balance: 7, seen: { amount: 2, memo: 'm' } } },
    })
    // A top-level value is coerced too.
    expect((await post(front.url, '/rpc/typed-account/t1/setLimit', '"12"')).json).toEqual({ result: { limit: 12, type: 'number' } })
    // Invalid: 400 with every problem named; the grain never ran.
    const low = expectError(await post(front.url, '/rpc/typed-account/t1/deposit', '{"amount": 0}'), 400, 'ERR_RPC_BAD_REQUEST')
    expect(low.error.reason).toContain('typed-account.deposit')
    expect(low.error.details).toMatchObject({ kind: 'typed-account', key: 't1', method: 'deposit', issues: ['payload/amount: must be >= 1'] })
    expect(expectError(await post(front.url, '/rpc/typed-account/t1/deposit', '{"memo": "m"}'), 400, 'ERR_RPC_BAD_REQUEST').error.reason).toContain("must have required property 'amount'")
    expect(expectError(await post(front.url, '/rpc/typed-account/t1/deposit'), 400, 'ERR_RPC_BAD_REQUEST').error.details.issues).toEqual(['payload is missing (the method declares a payload schema)'])
    expectError(await post(front.url, '/rpc/typed-account/t1/setLimit', '-1'), 400, 'ERR_RPC_BAD_REQUEST')
    expectError(await post(front.url, '/rpc/typed-account/t1/setLimit', '"many"'), 400, 'ERR_RPC_BAD_REQUEST')
    // A method without a schema takes any JSON.
    expect(await post(front.url, '/rpc/typed-account/t1/balance', '{"anything": [1]}')).toEqual({ status: 200, json: { result: 7 } })
    // Stateless kinds declare them the same way.
    expect(await post(front.url, '/rpc/hasher/any/sum', '[1, 2, "3"]')).toEqual({ status: 200, json: { result: 6 } })
    expect(expectError(await post(front.url, '/rpc/hasher/any/sum', '[1, "x"]'), 400, 'ERR_RPC_BAD_REQUEST').error.details.issues).toEqual(['payload/1: must be number'])

    const ws = await WsClient.open(front.url)
    try {
      ws.send({ id: 'ok', kind: 'typed-account', key: 't1', method: 'deposit', payload: { amount: '3' } })
      expect(await ws.reply('ok')).toEqual({ id: 'ok', result: { balance: 10, seen: { amount: 3, memo: 'none' } } })
      ws.send({ id: 'bad', kind: 'typed-account', key: 't1', method: 'deposit', payload: { amount: 1.5 } })
      ws.send({ id: 'none', kind: 'typed-account', key: 't1', method: 'deposit' })
      const bad = await ws.reply('bad')
      expect(bad.error).toMatchObject({ code: 'ERR_RPC_BAD_REQUEST', details: { kind: 'typed-account', method: 'deposit', issues: ['payload/amount: must be integer'] } })
      expect((await ws.reply('none')).error.code).toBe('ERR_RPC_BAD_REQUEST')
    } finally {
      await ws.close()
    }
    expect((await post(front.url, '/rpc/typed-account/t1/balance')).json).toEqual({ result: 10 })
  })

  it("writes results with their method's result schema: undeclared fields stay home, a result that does not fit is ERR_RPC_RESULT_INVALID", async () => {
    const failed: RuntimeEvent[] = []
    const off = node.events.subscribe('rpc.serialization-failed', (e) => failed.push(e))
    const encodeFailures = async (): Promise<number> => Number(/graincluster_rpc_serialization_failures_total\{direction="encode"\} (\d+)/.exec(await node.metricsText())?.[1] ?? 0)
    try {
      const before = await encodeFailures()
      expect(await post(front.url, '/rpc/typed-account/r1/deposit', '{"amount": 4}')).toMatchObject({ status: 200 })
      const ok = await fetch(`${front.url}/rpc/typed-account/r1/statement`, { method: 'POST' })
      expect(ok.status).toBe(200)
      expect(ok.headers.get('content-type')).toMatch(/^application\/json/)
      expect(await ok.text()).toBe('{"result":{"balance":4,"owner":"r1"}}')
      const bad = expectError(await post(front.url, '/rpc/typed-account/r1/badStatement'), 500, 'ERR_RPC_RESULT_INVALID')
      expect(bad.error.details).toEqual({ kind: 'typed-account', key: 'r1', method: 'badStatement' })
      expect(bad.error.reason).toContain('"balance" is required')

      const ws = await WsClient.open(front.url)
      try {
        ws.send([
          { id: 1, kind: 'typed-account', key: 'r1', method: 'statement' },
          { id: 2, kind: 'typed-account', key: 'r1', method: 'badStatement' },
        ])
        ws.send({ id: 3, kind: 'typed-account', key: 'r1', method: 'statement' })
        // The first two come back in one array frame.
        const inBatch = (id: number): Promise<any> => waitUntil(() => ws.replies.flat().find((r) => r.id === id), { what: `ws reply ${id}`, timeoutMs: 20_000 })
        expect(await inBatch(1)).toEqual({ id: 1, result: { balance: 4, owner: 'r1' } })
        expect((await inBatch(2)).error).toMatchObject({ code: 'ERR_RPC_RESULT_INVALID', details: { kind: 'typed-account', key: 'r1', method: 'badStatement' } })
        expect(await ws.reply(3)).toEqual({ id: 3, result: { balance: 4, owner: 'r1' } })
      } finally {
        await ws.close()
      }
      // Published and counted as reply encode failures; a method without a result schema is written as it is.
      expect(failed.map((e) => e.type === 'rpc.serialization-failed' && [e.method, e.direction, e.message, e.code])).toEqual([
        ['badStatement', 'encode', 'reply', 'ERR_RPC_RESULT_INVALID'],
        ['badStatement', 'encode', 'reply', 'ERR_RPC_RESULT_INVALID'],
      ])
      expect(await encodeFailures()).toBe(before + 2)
      expect(await post(front.url, '/rpc/typed-account/r1/deposit', '{"amount": 1}')).toEqual({ status: 200, json: { result: { balance: 5, seen: { amount: 1, memo: 'none' } } } })
    } finally {
      off()
    }
  })

  it('describes every kind and method in /openapi.json, with declared payload schemas as request bodies', async () => {
    const res = await fetch(`${front.url}/openapi.json`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    const doc = (await res.json()) as { openapi: string; paths: Record<string, { post: any }>; components: any; security?: unknown }
    expect(doc.openapi).toBe('3.1.0')
    expect(doc.security).toBeUndefined()
    // One operation per method of every kind the node serves.
    for (const [kind, info] of node.kinds) for (const m of info.methods.keys()) expect(doc.paths[`/rpc/${kind}/{key}/${m}`]?.post.operationId).toBe(`${kind}.${m}`)
    expect(Object.keys(doc.paths)).toHaveLength([...node.kinds.values()].reduce((n, k) => n + k.methods.size, 0))
    const deposit = doc.paths['/rpc/typed-account/{key}/deposit']!.post
    expect(deposit.requestBody).toMatchObject({ required: true, content: { 'application/json': { schema: node.kinds.get('typed-account')!.payloadSchemas!.deposit } } })
    expect(deposit.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual(['path:key', 'header:x-timeout-ms'])
    expect(deposit['x-schema-versions']).toEqual([1])
    expect(doc.paths['/rpc/counter/{key}/add']!.post.requestBody).toMatchObject({ required: false, content: { 'application/json': { schema: {} } } })
    // A declared result schema describes the reply's result.
    const statement = doc.paths['/rpc/typed-account/{key}/statement']!.post.responses['200'].content['application/json'].schema
    expect(statement).toEqual({ type: 'object', properties: { result: node.kinds.get('typed-account')!.resultSchemas!.statement }, required: ['result'] })
    expect(deposit.responses['200'].content['application/json'].schema).toEqual({ type: 'object', properties: { result: {} } })
    expect(doc.components.schemas.Error.required).toEqual(['error'])
    // Behind the token, like the calls it describes.
    expect((await fetch(`${guarded.url}/openapi.json`)).status).toBe(401)
    const withToken = (await (await fetch(`${guarded.url}/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as typeof doc
    expect(withToken.security).toEqual([{ bearer: [] }])
    expect(withToken.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' })
  })

  it('refuses a body over the limit with 413 ERR_RPC_BODY_TOO_LARGE', async () => {
    const b = expectError(await post(small.url, '/rpc/counter/k/echo', JSON.stringify('x'.repeat(2_000))), 413, 'ERR_RPC_BODY_TOO_LARGE')
    expect(b.error.details.limit).toBe(1_024)
    expect(await post(small.url, '/rpc/counter/small/echo', JSON.stringify('x'.repeat(500)))).toEqual({ status: 200, json: { result: 'x'.repeat(500) } })
  })

  it('requires the bearer token on /rpc and /ws only', async () => {
    expectError(await post(guarded.url, '/rpc/counter/tok/get'), 401, 'ERR_RPC_UNAUTHORIZED')
    expectError(await post(guarded.url, '/rpc/counter/tok/get', undefined, { authorization: 'Bearer wrong' }), 401, 'ERR_RPC_UNAUTHORIZED')
    expectError(await post(guarded.url, '/rpc/counter/tok/get', undefined, { authorization: `Basic ${TOKEN}` }), 401, 'ERR_RPC_UNAUTHORIZED')
    expect(await post(guarded.url, '/rpc/counter/tok/get', undefined, { authorization: `Bearer ${TOKEN}` })).toEqual({ status: 200, json: { result: 0 } })
    await expect(WsClient.open(guarded.url)).rejects.toThrow(/HTTP 401/)
    await expect(WsClient.open(guarded.url, { authorization: 'Bearer wrong' })).rejects.toThrow(/HTTP 401/)
    const c = await WsClient.open(guarded.url, { authorization: `Bearer ${TOKEN}` })
    try {
      c.send({ id: 1, kind: 'counter', key: 'tok', method: 'get' })
      expect(await c.reply(1)).toEqual({ id: 1, result: 0 })
    } finally {
      await c.close()
    }
    expect((await fetch(`${guarded.url}/healthz`)).status).toBe(200)
    expect((await fetch(`${guarded.url}/metrics`)).status).toBe(200)
  })

  it('multiplexes many concurrent WebSocket calls; replies come back as calls complete', async () => {
    const c = await WsClient.open(front.url)
    try {
      // A slow call first, then a fast one on another key: the fast reply must overtake it.
      c.send({ id: 'slow', kind: 'counter', key: 'ws-slow', method: 'slowAdd', payload: { by: 7, ms: 400 } })
      c.send({ id: 'fast', kind: 'counter', key: 'ws-fast', method: 'add', payload: 1 })
      const N = 300
      for (let i = 0; i < N; i++) c.send({ id: i, kind: 'counter', key: `ws-k${i % 10}`, method: 'add', payload: 1 })
      await waitUntil(() => c.replies.length >= N + 2, { what: `${N + 2} ws replies`, timeoutMs: 30_000 })
      const order = c.replies.map((r) => r.id)
      expect(order.indexOf('fast')).toBeLessThan(order.indexOf('slow'))
      expect(c.replies.find((r) => r.id === 'slow')).toEqual({ id: 'slow', result: 7 })
      expect(c.replies.every((r) => r.error === undefined)).toBe(true)
      // Each key saw 30 calls; the last one to answer per key reports 30.
      const perKey = new Map<string, number>()
      for (const r of c.replies) if (typeof r.id === 'number') perKey.set(`ws-k${r.id % 10}`, Math.max(perKey.get(`ws-k${r.id % 10}`) ?? 0, r.result as number))
      expect([...perKey.values()]).toEqual(Array(10).fill(N / 10))
    } finally {
      await c.close()
    }
  })

  it('takes batches of calls in one frame and answers them in batches, each call on its own', async () => {
    const c = await WsClient.open(front.url)
    try {
      const N = 200
      const batch = Array.from({ length: N }, (_, i) => ({ id: `b${i}`, kind: 'counter', key: `wsb-${i % 5}`, method: 'add', payload: 1 }))
      c.send([...batch.slice(0, 100), { id: 'b-bad', kind: '9x', key: 'k', method: 'get' }, 7])
      c.send(batch.slice(100))
      c.send({ id: 'single', kind: 'counter', key: 'wsb-single', method: 'add', payload: 2 })
      c.send([])
      await waitUntil(() => c.replies.flat().length >= N + 4, { what: 'batched replies', timeoutMs: 30_000 })
      // Batched calls come back in array frames; the single call in its own frame.
      expect(c.replies.some((r) => Array.isArray(r) && r.length > 1)).toBe(true)
      expect(c.replies.find((r) => !Array.isArray(r) && r.id === 'single')).toEqual({ id: 'single', result: 2 })
      const flat = c.replies.flat()
      const ok = flat.filter((r) => typeof r.id === 'string' && r.id.startsWith('b') && r.id !== 'b-bad')
      expect(ok).toHaveLength(N)
      expect(ok.every((r) => typeof r.result === 'number')).toBe(true)
      // Each key got 40 calls, in order: the largest count per key is 40.
      expect(Math.max(...ok.map((r) => r.result as number))).toBe(N / 5)
      expect(flat.find((r) => r.id === 'b-bad').error.code).toBe('ERR_RPC_BAD_REQUEST')
      expect(flat.filter((r) => r.id === null).map((r) => r.error.code)).toEqual(['ERR_RPC_BAD_REQUEST', 'ERR_RPC_BAD_REQUEST'])
      expect(c.ws.readyState).toBe(WebSocket.OPEN)
    } finally {
      await c.close()
    }
  })

  it('answers malformed WebSocket messages with an error and keeps the connection', async () => {
    const c = await WsClient.open(front.url)
    try {
      c.send('not json')
      c.send('"just a string"')
      c.send({ kind: 'counter', key: 'k', method: 'get' }) // no id
      c.send({ id: 'bad-kind', kind: '9x', key: 'k', method: 'get' })
      c.send({ id: 'bad-timeout', kind: 'counter', key: 'k', method: 'get', timeoutMs: -5 })
      c.send({ id: 'unknown', kind: 'nope', key: 'k', method: 'get' })
      c.send({ id: 'proto', kind: 'counter', key: 'k', method: 'echo', payload: JSON.parse('{"__proto__": {"x": 1}}') })
      c.ws.send(Buffer.from([1, 2, 3]), { binary: true })
      c.send({ id: 'throws', kind: 'counter', key: 'k', method: 'fail', payload: 'ws boom' })
      c.send({ id: 'timeout', kind: 'counter', key: 'ws-hang', method: 'hang', timeoutMs: 100 })
      c.send({ id: 'ok', kind: 'counter', key: 'ws-ok', method: 'add', payload: 4 })
      await waitUntil(() => c.replies.length >= 11, { what: '11 ws replies' })
      const nulls = c.replies.filter((r) => r.id === null)
      expect(nulls).toHaveLength(4)
      for (const r of nulls) expect(r.error.code).toBe('ERR_RPC_BAD_REQUEST')
      expect((await c.reply('bad-kind')).error.code).toBe('ERR_RPC_BAD_REQUEST')
      expect((await c.reply('bad-timeout')).error.details.issues).toEqual([expect.stringContaining('timeoutMs')])
      expect((await c.reply('unknown')).error.code).toBe('ERR_GRAIN_UNKNOWN_KIND')
      expect((await c.reply('proto')).error.code).toBe('ERR_RPC_BAD_REQUEST')
      expect((await c.reply('throws')).error).toMatchObject({ code: 'ERR_GRAIN_HANDLER_FAILED', reason: expect.stringContaining('ws boom') })
      expect((await c.reply('timeout')).error).toMatchObject({ code: 'ERR_GRAIN_TIMEOUT', details: { key: 'ws-hang', method: 'hang' } })
      expect(await c.reply('ok')).toEqual({ id: 'ok', result: 4 })
      expect(c.ws.readyState).toBe(WebSocket.OPEN)
    } finally {
      await c.close()
    }
  })

  it('bounds calls in flight per connection and refuses duplicate ids', async () => {
    const c = await WsClient.open(small.url)
    try {
      for (let i = 0; i < 4; i++) c.send({ id: i, kind: 'counter', key: `inflight-${i}`, method: 'slowAdd', payload: { by: 1, ms: 500 } })
      c.send({ id: 0, kind: 'counter', key: 'dup', method: 'get' })
      c.send({ id: 'over', kind: 'counter', key: 'over', method: 'get' })
      const over = await c.reply('over')
      expect(over.error).toMatchObject({ code: 'ERR_RPC_TOO_MANY_IN_FLIGHT', details: { limit: 4 } })
      const dup = c.replies.find((r) => r.id === 0 && r.error !== undefined)
      expect(dup?.error.code).toBe('ERR_RPC_BAD_REQUEST')
      await waitUntil(() => [0, 1, 2, 3].every((i) => c.replies.some((r) => r.id === i && r.result === 1)), { what: 'the 4 slow calls' })
      // Room again once they answered.
      c.send({ id: 'after', kind: 'counter', key: 'over', method: 'get' })
      expect(await c.reply('after')).toEqual({ id: 'after', result: 0 })
    } finally {
      await c.close()
    }
  })

  it('serves /metrics as Prometheus text and the liveness/readiness probes', async () => {
    const m = await fetch(`${front.url}/metrics`)
    expect(m.status).toBe(200)
    expect(m.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(await m.text()).toMatch(/^# HELP graincluster_/m)
    for (const p of ['/healthz', '/livez']) expect((await fetch(`${front.url}${p}`)).status).toBe(200)
    const r = await fetch(`${front.url}/readyz`)
    expect(r.status).toBe(200)
    expect(await r.json()).toEqual({ status: 'ready', reasons: [] })
    // Not clustered: no membership route.
    expect((await fetch(`${front.url}/cluster/members`)).status).toBe(404)
  })

  it('reports the metrics-disabled diagnostic when the node runs without metrics', async () => {
    const quiet = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 8, metrics: false })
    const f = await startFront(quiet)
    try {
      const res = await fetch(`${f.url}/metrics`)
      expect(res.status).toBe(404)
      const b = (await res.json()) as ErrorBody
      expect(b.error.code).toBe('ERR_RPC_METRICS_DISABLED')
      expect(b.error.reason).toMatch(/not being collected/)
      // Calls still work.
      expect(await post(f.url, '/rpc/counter/quiet/add', '1')).toEqual({ status: 200, json: { result: 1 } })
    } finally {
      await f.close()
      await quiet.close()
    }
  })
})

describe('readiness and membership on a stub node', () => {
  function stubNode(cluster?: { isUp: boolean; isMinority: boolean; members: Member[]; unreachable: string[] }): FrontNode & { events: EventStream } {
    const events = new EventStream()
    return {
      ask: () => Promise.resolve(undefined),
      kinds: new Map(),
      metricsText: () => Promise.resolve(''),
      metricsContentType: 'text/plain',
      events,
      options: { workers: 2 },
      cluster:
        cluster === undefined
          ? undefined
          : {
              authority: '127.0.0.1:7001',
              core: { isUp: cluster.isUp, isMinority: cluster.isMinority, members: () => cluster.members, unreachableSet: () => new Set(cluster.unreachable) },
            },
    }
  }

  it('is not ready while a worker is down or after the node stopped', async () => {
    const node = stubNode()
    const app = buildFront(node)
    try {
      expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200)
      node.events.publish({ type: 'worker.crashed', worker: 1, reason: 'test', failedCalls: 0 })
      const down = await app.inject({ url: '/readyz' })
      expect(down.statusCode).toBe(503)
      expect(down.json()).toEqual({ status: 'not-ready', reasons: [expect.stringContaining('worker(s) 1 down')] })
      node.events.publish({ type: 'worker.started', worker: 1, threadId: 9, restarts: 1 })
      expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200)
      node.events.publish({ type: 'node.stopped', reason: 'close() called' })
      expect((await app.inject({ url: '/readyz' })).json().reasons).toEqual([expect.stringContaining('node stopped')])
      expect((await app.inject({ url: '/livez' })).statusCode).toBe(200)
    } finally {
      await app.close()
    }
  })

  it('in a cluster: ready only when Up and not in the minority; lists members with reachability', async () => {
    const members: Member[] = [
      { authority: '127.0.0.1:7001', nodeId: 'aa', status: 'up', upNumber: 1 },
      { authority: '127.0.0.1:7002', nodeId: 'bb', status: 'up', upNumber: 2 },
    ]
    const cases = [
      { isUp: true, isMinority: false, status: 200, reason: undefined },
      { isUp: false, isMinority: false, status: 503, reason: 'not Up' },
      { isUp: true, isMinority: true, status: 503, reason: 'minority' },
    ]
    for (const k of cases) {
      const app = buildFront(stubNode({ isUp: k.isUp, isMinority: k.isMinority, members, unreachable: ['127.0.0.1:7002'] }))
      try {
        const r = await app.inject({ url: '/readyz' })
        expect(r.statusCode, JSON.stringify(k)).toBe(k.status)
        if (k.reason !== undefined) expect(r.json().reasons.join(' ')).toContain(k.reason)
        const m = await app.inject({ url: '/cluster/members' })
        expect(m.json()).toEqual({
          self: '127.0.0.1:7001',
          members: [
            { authority: '127.0.0.1:7001', nodeId: 'aa', status: 'up', reachable: true },
            { authority: '127.0.0.1:7002', nodeId: 'bb', status: 'up', reachable: false },
          ],
        })
      } finally {
        await app.close()
      }
    }
  })

  it('does not start with a payload schema that does not compile', async () => {
    const node = { ...stubNode(), kinds: new Map([['broken', { stateless: false, methods: new Set(['m']), payloadSchemas: { m: { type: 'no-such-type' } } }]]) }
    const err = await startFront(node).then(
      (f) => f.close().then(() => undefined),
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'ERR_GRAIN_DEFINITION_INVALID', details: { kind: 'broken', method: 'm' } })
    expect((err as Error).message).toContain('payloadSchemas.m is not a valid JSON Schema')
  })

  it('does not start with a result schema that does not compile', async () => {
    const node = { ...stubNode(), kinds: new Map([['broken', { stateless: false, methods: new Set(['m']), resultSchemas: { m: { type: 'object', required: 5 } } }]]) }
    const err = await startFront(node).then(
      (f) => f.close().then(() => undefined),
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'ERR_GRAIN_DEFINITION_INVALID', details: { kind: 'broken', method: 'm' } })
    expect((err as Error).message).toContain('resultSchemas.m is not a valid JSON Schema')
  })

  it('validates its options in one pass', () => {
    expect(() => buildFront(stubNode(), { bodyLimitBytes: 0, wsMaxInFlight: 1.5, token: '' })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID', details: { issues: [expect.stringContaining('bodyLimitBytes'), expect.stringContaining('wsMaxInFlight'), expect.stringContaining('token')] } }),
    )
  })
})
