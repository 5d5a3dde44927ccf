/**
 * http scope: the Fastify front against a bare Fastify route, in the same
 * run, with the load generated from a forked process (http/load.ts:
 * autocannon for HTTP, a `ws` client for WebSocket).
 *
 *  (a) baseline: a bare Fastify route (same process, same response schema)
 *      answering the JSON a grain `get` answers, `{"result":0}`;
 *  (b) `POST /rpc/bench-counter/<key>/get` through the front: route, auth
 *      hook (none), kind check, node.ask over the SAB ring to the worker;
 *  (c) WebSocket RPC: one connection keeping IN_FLIGHT calls outstanding;
 *  (c') the same with batch frames of WS_BATCH calls (replies batched per turn);
 *  (d) (b) again at half of (b)'s measured peak (autocannon overallRate):
 *      p99 latency.
 * (a) and (b) run in alternating rounds after a warm-up; req/s is total
 * requests over total time. Every request must be a 2xx and every WS reply
 * a number, or the scope fails.
 */

import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { GrainNode, startFront, type RunningFront } from '../src/index.js'
import type { FromLoad, HttpLoadResult, PacedLoadResult, ToLoad, WsLoadResult } from './http/load.js'
import { check, speedup, type BenchOptions, type Row, type ScopeName, type ScopeResult } from './lib/report.js'

const GRAINS = [new URL('./grains/bench-grains.ts', import.meta.url)]
const LOAD = new URL('./http/load.ts', import.meta.url)
const KIND = 'bench-counter'
const KEYS = Array.from({ length: 64 }, (_, i) => `http-${i}`)
const CONNECTIONS = 64
const IN_FLIGHT = 256
/** Calls per frame in the batched WebSocket case (c'). */
const WS_BATCH = 32

interface Sizes {
  warmS: number
  roundS: number
  rounds: number
  wsMs: number
  halfRateS: number
}

function forkLoad(): ChildProcess {
  return fork(fileURLToPath(LOAD), [], { execArgv: ['--import', import.meta.resolve('tsx')], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' })
}

function ask<T extends FromLoad['type']>(child: ChildProcess, m: ToLoad, expect: T, timeoutMs: number): Promise<Extract<FromLoad, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`http: load process did not answer ${m.type} within ${timeoutMs} ms`)), timeoutMs)
    const onMessage = (r: FromLoad): void => {
      if (r.type === 'failed') finish(new Error(`http: load process failed: ${r.error}`))
      else if (r.type === expect) finish(undefined, r as Extract<FromLoad, { type: T }>)
    }
    const onExit = (code: number | null): void => finish(new Error(`http: load process exited (${code}) during ${m.type}`))
    function finish(e?: Error, r?: Extract<FromLoad, { type: T }>): void {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      if (e !== undefined) reject(e)
      else resolve(r!)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.send(m)
  })
}

function verifyHttp(what: string, r: HttpLoadResult): HttpLoadResult {
  if (r.non2xx + r.errors + r.timeouts > 0 || r.requests === 0) {
    throw new Error(`http ${what}: ${r.requests} requests, ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`)
  }
  return r
}

function sumHttp(runs: readonly HttpLoadResult[]): { requests: number; durationS: number; reqPerSec: number } {
  const requests = runs.reduce((x, r) => x + r.requests, 0)
  const durationS = runs.reduce((x, r) => x + r.durationS, 0)
  return { requests, durationS, reqPerSec: requests / durationS }
}

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const s: Sizes = o.quick ? { warmS: 1, roundS: 1, rounds: 1, wsMs: 1_000, halfRateS: 2 } : { warmS: 3, roundS: 5, rounds: 2, wsMs: 10_000, halfRateS: 10 }

  const child = forkLoad()
  let node: GrainNode | undefined
  let front: RunningFront | undefined
  const bare = Fastify({ logger: false })
  try {
    node = await GrainNode.start({ grains: GRAINS, workers: 1, partitions: 16, spinMicros: o.spinMicros })
    front = await startFront(node, { port: 0 })
    // Same response schema as the RPC route, so both serialise the same way.
    bare.post('/bare/:kind/:key/:method', { schema: { response: { 200: { type: 'object', properties: { result: {} } } } } }, async () => ({ result: 0 }))
    await bare.listen({ host: '127.0.0.1', port: 0 })
    const addr = bare.server.address()
    const bareUrl = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
    for (const k of KEYS) {
      const v = await node.ask(KIND, k, 'get')
      if (v !== 0) throw new Error(`http: ${KIND}/${k} get returned ${String(v)}, expected 0`)
    }
    const httpRun = (url: string, pathTemplate: string, durationS: number, overallRate?: number): Promise<HttpLoadResult> =>
      ask(child, { type: 'http', url, pathTemplate, keys: KEYS, connections: CONNECTIONS, durationS, ...(overallRate === undefined ? {} : { overallRate }) }, 'http', (durationS + 60) * 1000)
    const bareRun = (d: number): Promise<HttpLoadResult> => httpRun(bareUrl, `/bare/${KIND}/{key}/get`, d).then((r) => verifyHttp('(a) bare route', r))
    const rpcRun = (d: number, rate?: number): Promise<HttpLoadResult> => httpRun(front!.url, `/rpc/${KIND}/{key}/get`, d, rate).then((r) => verifyHttp('(b) /rpc', r))

    o.log(`http: warm-up ${s.warmS} s each`)
    await bareRun(s.warmS)
    await rpcRun(s.warmS)
    const a: HttpLoadResult[] = []
    const b: HttpLoadResult[] = []
    for (let r = 0; r < s.rounds; r++) {
      a.push(await bareRun(s.roundS))
      b.push(await rpcRun(s.roundS))
      o.log(`http: round ${r + 1}/${s.rounds}: bare ${Math.round(a[r]!.reqPerSec).toLocaleString('en-US')} req/s, /rpc ${Math.round(b[r]!.reqPerSec).toLocaleString('en-US')} req/s`)
    }
    const A = sumHttp(a)
    const B = sumHttp(b)

    o.log(`http: WebSocket, ${IN_FLIGHT} calls in flight, ${s.wsMs} ms`)
    const c: WsLoadResult = await ask(child, { type: 'ws', url: front.url, kind: KIND, method: 'get', keys: KEYS, sockets: 1, inFlight: IN_FLIGHT, durationMs: s.wsMs }, 'ws', s.wsMs + 60_000)
    if (c.errors > 0 || c.calls === 0) throw new Error(`http (c) ws: ${c.calls} calls ok, ${c.errors} errors; first: ${c.firstError}`)
    o.log(`http: WebSocket batches of ${WS_BATCH}, ${IN_FLIGHT} calls in flight, ${s.wsMs} ms`)
    const cb: WsLoadResult = await ask(child, { type: 'ws', url: front.url, kind: KIND, method: 'get', keys: KEYS, sockets: 1, inFlight: IN_FLIGHT, durationMs: s.wsMs, batch: WS_BATCH }, 'ws', s.wsMs + 60_000)
    if (cb.errors > 0 || cb.calls === 0) throw new Error(`http (c') ws batched: ${cb.calls} calls ok, ${cb.errors} errors; first: ${cb.firstError}`)

    const half = Math.max(1, Math.floor(B.reqPerSec / 2))
    // (d)/(e): steady arrivals at half of (b)'s peak (http/paced-load.ts), the latency target's load.
    const pacedRun = async (what: string, url: string, pathTemplate: string): Promise<PacedLoadResult> => {
      const r: PacedLoadResult = await ask(child, { type: 'paced', url, pathTemplate, keys: KEYS, connections: CONNECTIONS, durationS: s.halfRateS, rate: half }, 'paced', (s.halfRateS + 60) * 1000)
      if (r.non2xx + r.errors + r.unanswered > 0) throw new Error(`http ${what}: ${r.non2xx} non-2xx, ${r.errors} socket errors, ${r.unanswered} unanswered of ${r.requests + r.unanswered}`)
      return r
    }
    o.log(`http: /rpc at half of its peak, steady: ${half.toLocaleString('en-US')} req/s for ${s.halfRateS} s`)
    const d = await pacedRun('(d) /rpc at half rate', front.url, `/rpc/${KIND}/{key}/get`)
    // The same rate on the bare route: what the machine and the load generator alone cost in tail latency.
    const e = await pacedRun('(e) bare route at half rate', bareUrl, `/bare/${KIND}/{key}/get`)
    // For comparison with earlier runs: autocannon's overallRate (bursts: see paced-load.ts).
    o.log(`http: /rpc at half of its peak, autocannon overallRate: ${half.toLocaleString('en-US')} req/s for ${s.halfRateS} s`)
    const dq = await rpcRun(s.halfRateS, half)
    const eq = await httpRun(bareUrl, `/bare/${KIND}/{key}/get`, s.halfRateS, half).then((r) => verifyHttp('(e\') bare route, autocannon overallRate', r))

    const ratioB = speedup(B.reqPerSec, A.reqPerSec)
    const ratioC = speedup(c.callsPerSec, B.reqPerSec)
    const ratioCb = speedup(cb.callsPerSec, B.reqPerSec)
    const httpRow = (name: string, runs: readonly HttpLoadResult[], agg: { reqPerSec: number }, vs: number | null): Row => ({
      case: name,
      'calls/s': agg.reqPerSec,
      'calls/s min': Math.min(...runs.map((r) => r.reqPerSec)),
      'calls/s max': Math.max(...runs.map((r) => r.reqPerSec)),
      'p50 ms': Math.max(...runs.map((r) => r.p50Ms)),
      'p99 ms': Math.max(...runs.map((r) => r.p99Ms)),
      'p99.9 ms': Math.max(...runs.map((r) => r.p999Ms)),
      'ratio vs (a)': vs,
    })
    const rows: Row[] = [
      httpRow(`(a) bare Fastify route, ${CONNECTIONS} connections [baseline]`, a, A, 1),
      httpRow(`(b) POST /rpc/${KIND}/<key>/get, ${CONNECTIONS} connections`, b, B, ratioB),
      { case: `(c) WebSocket RPC, 1 socket, ${IN_FLIGHT} in flight`, 'calls/s': c.callsPerSec, 'calls/s min': null, 'calls/s max': null, 'p50 ms': null, 'p99 ms': null, 'p99.9 ms': null, 'ratio vs (a)': speedup(c.callsPerSec, A.reqPerSec) },
      { case: `(c') WebSocket RPC, batches of ${WS_BATCH}, 1 socket, ${IN_FLIGHT} in flight`, 'calls/s': cb.callsPerSec, 'calls/s min': null, 'calls/s max': null, 'p50 ms': null, 'p99 ms': null, 'p99.9 ms': null, 'ratio vs (a)': speedup(cb.callsPerSec, A.reqPerSec) },
      { case: `(d) (b) at half its peak, steady ${half} req/s`, 'calls/s': d.reqPerSec, 'calls/s min': null, 'calls/s max': null, 'p50 ms': d.p50Ms, 'p99 ms': d.p99Ms, 'p99.9 ms': d.p999Ms, 'ratio vs (a)': null },
      { case: `(e) bare route at the same steady rate (baseline for (d))`, 'calls/s': e.reqPerSec, 'calls/s min': null, 'calls/s max': null, 'p50 ms': e.p50Ms, 'p99 ms': e.p99Ms, 'p99.9 ms': e.p999Ms, 'ratio vs (a)': null },
      { case: `(d') (b) with autocannon overallRate ${half} (per-second bursts)`, 'calls/s': dq.reqPerSec, 'calls/s min': null, 'calls/s max': null, 'p50 ms': dq.p50Ms, 'p99 ms': dq.p99Ms, 'p99.9 ms': dq.p999Ms, 'ratio vs (a)': null },
      { case: `(e') bare route, autocannon overallRate ${half}`, 'calls/s': eq.reqPerSec, 'calls/s min': null, 'calls/s max': null, 'p50 ms': eq.p50Ms, 'p99 ms': eq.p99Ms, 'p99.9 ms': eq.p999Ms, 'ratio vs (a)': null },
    ]
    const scope: ScopeName = 'http'
    return {
      scope,
      title: 'HTTP and WebSocket front vs a bare Fastify route',
      method: `autocannon 8 in a forked load process (POST, pipelining 1, ${CONNECTIONS} connections, keys rotated over ${KEYS.length}); ${s.rounds} alternating round(s) of ${s.roundS} s per HTTP case after a ${s.warmS} s warm-up each, calls/s = all requests / all round time (min/max: single rounds; latency: worst round); WebSocket: the same process keeps ${IN_FLIGHT} calls in flight on one socket for ${s.wsMs} ms; (d)/(e): open-loop steady arrivals at half of (b) over ${CONNECTIONS} keep-alive connections for ${s.halfRateS} s after 1 s of the same load unrecorded (http/paced-load.ts, latency from each request's due time); (d')/(e'): autocannon overallRate, the same rate as per-second quotas`,
      baseline: 'bare Fastify 5 route in this process, same response schema, answering {"result":0}',
      params: { ...s, connections: CONNECTIONS, wsInFlight: IN_FLIGHT, keys: KEYS.length, workers: 1, spinMicros: o.spinMicros, halfRate: half },
      rows,
      targets: [
        check('(b) /rpc vs bare route', '>= 0.7x', ratioB, 'x', ratioB >= 0.7),
        check('(d) /rpc p99 at half of peak', '<= 5 ms', d.p99Ms, 'ms', d.p99Ms <= 5),
        check('(c) WebSocket vs HTTP /rpc, one call per frame', '>= 3x', ratioC, 'x', ratioC >= 3),
        check(`(c') WebSocket vs HTTP /rpc, batches of ${WS_BATCH}`, '>= 3x', ratioCb, 'x', ratioCb >= 3),
      ],
      notes: [
        'One process serves both (a) and (b) (the node with 1 grain worker, the front and the bare app); the load generator is a separate process, so on a 2-core box it competes with the server for the cores in every case alike.',
        `(b) per call: Fastify routing + params/header validation + kind/method check + node.ask (ring hop to the worker and back) + response serialisation; (a) is the same minus the grain call. (c) amortises the HTTP request/response cost: many calls per TCP read and write.`,
        `Verification: every HTTP request must be 2xx (autocannon non2xx = errors = timeouts = 0; paced: non-2xx = socket errors = unanswered = 0) and every WebSocket reply a number; (d) achieved ${Math.round(d.reqPerSec)} req/s of the ${half} requested (the client's 1 ms tick lagged its schedule by at most ${d.maxTickLagMs.toFixed(1)} ms; (e): ${e.maxTickLagMs.toFixed(1)} ms).`,
        `Why two half-rate measurements: autocannon's overallRate is a per-second quota per connection, so every connection sends back to back until it has its share of the second, then idles until the next: (d') is the p99 of ~0.5 s bursts at full speed with all ${CONNECTIONS} connections restarting together each second. (d) spreads the same requests evenly over time, the load the target describes; its latency is counted from each request's due time, so queueing in the client counts too.`,
      ],
      startedAt,
      durationMs: performance.now() - t0,
    }
  } finally {
    await Promise.allSettled([front?.close(), bare.close()])
    await node?.close()
    if (child.connected) child.send({ type: 'exit' } satisfies ToLoad)
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    if (child.exitCode === null && child.signalCode === null) await new Promise<void>((r) => child.once('exit', () => r()))
    clearTimeout(timer)
  }
}
