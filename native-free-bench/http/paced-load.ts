/**
 * Open-loop HTTP load at a steady rate, for latency at a given fraction of
 * peak. autocannon's `overallRate` is a per-second quota per connection:
 * every connection sends back to back until it has made its share for the
 * current second, then waits for the next one. At half of peak that is
 * full speed for about half of each second, with all connections restarting
 * together on the second: the p99 of a saturated burst, not of a server
 * at 50 % load.
 *
 * Here request i is due at start + i / rate (a 1 ms tick sends whatever is
 * due), on the next idle keep-alive connection (one request per connection
 * at a time, like autocannon's pipelining 1). Latency runs from the due
 * time, not from the write, so a request that waited for a free connection
 * or a late tick counts its wait (no coordinated omission). Requests are
 * raw HTTP/1.1 bytes over node:net, as autocannon writes them, so the
 * client costs the shared CPU about what autocannon does. The first second
 * (warmupS) runs the same load unrecorded, as the autocannon cases warm up.
 */

import { connect, type Socket } from 'node:net'

export interface PacedOptions {
  host: string
  port: number
  /** Request paths, used in turn. */
  paths: readonly string[]
  connections: number
  rate: number
  durationS: number
  /**
   * Seconds of the same steady load before the measured part, not recorded:
   * fresh connections and the client's own first JIT tiers otherwise land
   * in the measured tail (a transient of tens of ms in the first ~300 ms).
   * Default 1.
   */
  warmupS?: number
}

export interface PacedResult {
  requests: number
  non2xx: number
  errors: number
  /** Requests still unanswered at the end (after a 10 s grace). */
  unanswered: number
  durationS: number
  reqPerSec: number
  p50Ms: number
  p90Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
  /** Largest lag of the 1 ms tick behind the schedule (the client's own stalls). */
  maxTickLagMs: number
}

class Conn {
  busy = false
  dueAt = 0
  /** Request number (those below the warm-up count are not recorded). */
  index = 0
  #buf = ''
  constructor(
    readonly socket: Socket,
    readonly onResponse: (c: Conn, status: number) => void,
  ) {
    socket.setNoDelay(true)
    socket.on('data', (d: Buffer) => this.#onData(d))
  }

  /** Minimal HTTP/1.1 response framing: status line, Content-Length body (Fastify always sends one). */
  #onData(d: Buffer): void {
    this.#buf += d.toString('latin1')
    for (;;) {
      const head = this.#buf.indexOf('\r\n\r\n')
      if (head < 0) return
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(this.#buf.slice(0, head))
      const len = m === null ? 0 : Number(m[1])
      if (this.#buf.length < head + 4 + len) return
      const status = Number(this.#buf.slice(9, 12))
      this.#buf = this.#buf.slice(head + 4 + len)
      this.onResponse(this, status)
    }
  }
}

function open(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port })
    s.once('connect', () => {
      s.off('error', reject)
      resolve(s)
    })
    s.once('error', reject)
  })
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

export async function runPaced(o: PacedOptions): Promise<PacedResult> {
  // The same request autocannon sends in the other cases: a POST with an empty body.
  const requests = o.paths.map((p) => Buffer.from(`POST ${p} HTTP/1.1\r\nHost: ${o.host}:${o.port}\r\nContent-Length: 0\r\n\r\n`, 'latin1'))
  const warm = Math.floor(o.rate * (o.warmupS ?? 1))
  const total = warm + Math.floor(o.rate * o.durationS)
  const latencies = new Float64Array(total - warm)
  let answered = 0
  let recorded = 0
  let non2xx = 0
  let errors = 0
  let sent = 0
  let maxTickLagMs = 0
  const idle: Conn[] = []
  const waiting: { dueAt: number; index: number }[] = [] // requests with no free connection yet
  let nextPath = 0
  let t0 = 0

  const send = (c: Conn, dueAt: number, index: number): void => {
    c.busy = true
    c.dueAt = dueAt
    c.index = index
    c.socket.write(requests[nextPath++ % requests.length]!)
  }
  const onResponse = (c: Conn, status: number): void => {
    answered++
    if (c.index >= warm) latencies[recorded++] = performance.now() - c.dueAt
    if (status < 200 || status >= 300) non2xx++
    c.busy = false
    const next = waiting.shift()
    if (next !== undefined) send(c, next.dueAt, next.index)
    else idle.push(c)
  }
  const conns = await Promise.all(Array.from({ length: o.connections }, () => open(o.host, o.port).then((s) => new Conn(s, onResponse))))
  for (const c of conns) {
    c.socket.on('error', () => void errors++)
    idle.push(c)
  }

  await new Promise<void>((resolve) => {
    t0 = performance.now()
    const tick = (): void => {
      const now = performance.now()
      // Request i is due at t0 + i / rate, so i + 1 of them are due once that time has come (without the + 1 every request waited one extra interval: 0.17 ms at 6,000 req/s, 2 ms at 500).
      const due = Math.min(total, Math.floor(((now - t0) / 1000) * o.rate) + 1)
      if (due > sent && sent >= warm) maxTickLagMs = Math.max(maxTickLagMs, now - (t0 + (sent / o.rate) * 1000))
      for (; sent < due; sent++) {
        const dueAt = t0 + (sent / o.rate) * 1000
        const c = idle.pop()
        if (c !== undefined) send(c, dueAt, sent)
        else waiting.push({ dueAt, index: sent })
      }
      if (sent >= total) {
        clearInterval(timer)
        resolve()
      }
    }
    const timer = setInterval(tick, 1)
  })
  const sendEnd = performance.now()
  const measuredFrom = t0 + (warm / o.rate) * 1000
  const grace = sendEnd + 10_000
  while (answered < total && performance.now() < grace) await new Promise((r) => setTimeout(r, 5))
  for (const c of conns) c.socket.destroy()
  const lat = latencies.slice(0, recorded).sort()
  const durationS = (sendEnd - measuredFrom) / 1000
  return {
    requests: recorded,
    non2xx,
    errors,
    unanswered: total - answered,
    durationS,
    reqPerSec: recorded / durationS,
    p50Ms: percentile(lat, 50),
    p90Ms: percentile(lat, 90),
    p99Ms: percentile(lat, 99),
    p999Ms: percentile(lat, 99.9),
    maxMs: lat.length === 0 ? 0 : lat[lat.length - 1]!,
    maxTickLagMs,
  }
}
