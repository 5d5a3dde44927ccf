/**
 * Load generator of the http scope, in its own process (forked with tsx) so
 * the client's CPU is not charged to the server's event loop:
 *   - HTTP: autocannon, POST to `path` with the key rotated over `keys`;
 *   - WebSocket: one connection per `sockets`, each keeping `inFlight`
 *     calls outstanding (a new call as each reply arrives), for `durationMs`.
 * Replies with a summary over IPC; verification is counted here (non-2xx,
 * socket errors, replies that are not the expected number) and checked by
 * the parent.
 */

import autocannon from 'autocannon'
import WebSocket from 'ws'
import { type PacedResult, runPaced } from './paced-load.js'

/** Parent → load process. HTTP paths are a template: `{key}` is replaced (URL-encoded) per request. */
export type ToLoad =
  | { type: 'http'; url: string; pathTemplate: string; keys: string[]; connections: number; durationS: number; overallRate?: number }
  | { type: 'ws'; url: string; kind: string; method: string; keys: string[]; sockets: number; inFlight: number; durationMs: number; batch?: number }
  | { type: 'paced'; url: string; pathTemplate: string; keys: string[]; connections: number; durationS: number; rate: number }
  | { type: 'exit' }

export interface HttpLoadResult {
  type: 'http'
  requests: number
  durationS: number
  reqPerSec: number
  non2xx: number
  errors: number
  timeouts: number
  p50Ms: number
  p90Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
}

export interface WsLoadResult {
  type: 'ws'
  calls: number
  ms: number
  callsPerSec: number
  errors: number
  firstError: string | null
}

export type PacedLoadResult = { type: 'paced' } & PacedResult

export type FromLoad = HttpLoadResult | WsLoadResult | PacedLoadResult | { type: 'failed'; error: string }

async function runHttp(m: Extract<ToLoad, { type: 'http' }>): Promise<HttpLoadResult> {
  let next = 0
  const r = await autocannon({
    url: m.url,
    method: 'POST',
    connections: m.connections,
    pipelining: 1,
    duration: m.durationS,
    ...(m.overallRate === undefined ? {} : { overallRate: m.overallRate }),
    requests: [
      {
        method: 'POST',
        setupRequest: (req) => {
          const key = m.keys[next++ % m.keys.length]!
          return { ...req, path: m.pathTemplate.replace('{key}', encodeURIComponent(key)) }
        },
      },
    ],
  })
  return {
    type: 'http',
    requests: r.requests.total,
    durationS: r.duration,
    reqPerSec: r.requests.total / r.duration,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    p50Ms: r.latency.p50,
    p90Ms: r.latency.p90,
    p99Ms: r.latency.p99,
    p999Ms: r.latency.p99_9,
    maxMs: r.latency.max,
  }
}

async function runWs(m: Extract<ToLoad, { type: 'ws' }>): Promise<WsLoadResult> {
  const sockets = await Promise.all(
    Array.from(
      { length: m.sockets },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(`${m.url.replace(/^http/, 'ws')}/ws`)
          ws.once('open', () => resolve(ws))
          ws.once('error', reject)
        }),
    ),
  )
  let calls = 0
  let errors = 0
  let firstError: string | null = null
  let k = 0
  const frames = m.keys.map((key) => (id: number) => `{"id":${id},"kind":"${m.kind}","key":${JSON.stringify(key)},"method":"${m.method}"}`)
  const t0 = performance.now()
  const end = t0 + m.durationMs
  let stopped = false
  const done = sockets.map(
    (ws) =>
      new Promise<void>((resolve) => {
        let outstanding = 0
        let id = 0
        const batch = m.batch ?? 1
        const sendOne = (): void => {
          outstanding++
          ws.send(frames[k++ % frames.length]!(id++))
        }
        // Batched: whole frames of `batch` calls, a new frame once a batch's worth of replies came back.
        let owed = 0
        const sendBatch = (): void => {
          const parts: string[] = []
          for (let i = 0; i < batch; i++) parts.push(frames[k++ % frames.length]!(id++))
          outstanding += batch
          ws.send(`[${parts.join(',')}]`)
        }
        const onReply = (r: { id: number; result?: unknown; error?: { code: string; reason: string } }): void => {
          outstanding--
          if (r.error !== undefined || typeof r.result !== 'number') {
            errors++
            firstError ??= JSON.stringify(r)
          } else calls++
          if (!stopped && performance.now() < end) {
            if (batch === 1) sendOne()
            else if (++owed >= batch) {
              owed -= batch
              sendBatch()
            }
          } else stopped = true
        }
        ws.on('message', (d: Buffer) => {
          const parsed = JSON.parse(d.toString('utf8')) as Parameters<typeof onReply>[0] | Parameters<typeof onReply>[0][]
          if (Array.isArray(parsed)) for (const r of parsed) onReply(r)
          else onReply(parsed)
          if (stopped && outstanding === 0) resolve()
        })
        ws.on('close', () => resolve())
        if (batch === 1) for (let i = 0; i < m.inFlight; i++) sendOne()
        else for (let i = 0; i < m.inFlight; i += batch) sendBatch()
      }),
  )
  await Promise.all(done)
  const ms = performance.now() - t0
  for (const ws of sockets) ws.close()
  return { type: 'ws', calls, ms, callsPerSec: (calls * 1000) / ms, errors, firstError }
}

async function runPacedHttp(m: Extract<ToLoad, { type: 'paced' }>): Promise<PacedLoadResult> {
  const u = new URL(m.url)
  const paths = m.keys.map((k) => m.pathTemplate.replace('{key}', encodeURIComponent(k)))
  return { type: 'paced', ...(await runPaced({ host: u.hostname, port: Number(u.port), paths, connections: m.connections, rate: m.rate, durationS: m.durationS })) }
}

process.on('message', (m: ToLoad) => {
  if (m.type === 'exit') {
    process.disconnect()
    return
  }
  const run: Promise<FromLoad> = m.type === 'http' ? runHttp(m) : m.type === 'ws' ? runWs(m) : runPacedHttp(m)
  run.then(
    (r) => process.send!(r satisfies FromLoad),
    (e: unknown) => process.send!({ type: 'failed', error: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies FromLoad),
  )
})
