/**
 * The peer process of the remote scope: node B (a GrainNode that serves the
 * bench grains) and the receiving end of the raw node:net baseline, in one
 * process separate from the sender, so the candidate and the baseline cross
 * the same process boundary over loopback. Started by remote.bench.ts with
 * fork() and driven over IPC (protocol.ts); exits when told to close or
 * when the parent goes away.
 */

import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { formatPid } from '../../src/common/pid.js'
import { GrainNode } from '../../src/index.js'
import { summarizeLatencies } from '../lib/stats.js'
import type { FromPeer, PeerStats, ToPeer } from './protocol.js'
import { type LifecycleLog, lifecycleLog } from './lifecycle-log.js'
import { serveRawConnection } from './raw-frames.js'

const GRAINS = [new URL('../grains/bench-grains.ts', import.meta.url), new URL('./remote-grains.ts', import.meta.url)]

let node: GrainNode | undefined
let server: Server | undefined
const rawSockets = new Set<Socket>()
let closing: Promise<void> | undefined
let log: LifecycleLog | undefined
const stats: Omit<PeerStats, 'framesIn' | 'bytesIn' | 'framesReturned' | 'heapUsed' | 'upMembers' | 'log'> = { deadletters: 0, framesRejected: 0, released: 0, ringFull: 0, problems: [] }
const note = (e: { code: string; reason: string }): void => {
  if (stats.problems.length < 5) stats.problems.push(`${e.code}: ${e.reason}`)
}

function upMembers(n: GrainNode | undefined): number {
  return n?.cluster?.members().filter((m) => m.status === 'up').length ?? 0
}

function send(m: FromPeer): void {
  if (process.connected) process.send?.(m)
}

async function start(m: Extract<ToPeer, { type: 'start' }>): Promise<void> {
  server = createServer((socket) => {
    rawSockets.add(socket)
    socket.on('close', () => rawSockets.delete(socket))
    serveRawConnection(socket)
  })
  const srv = server
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => resolve())
  })
  node = await GrainNode.start({
    grains: GRAINS,
    workers: m.workers,
    partitions: m.partitions,
    spinMicros: m.spinMicros,
    audit: () => {},
    cluster: {
      clusterName: m.clusterName,
      secret: m.secret,
      seeds: m.seeds,
      port: m.port,
      failureDetector: m.failureDetector,
      // A measurement harness must not drop its activations when a send loop blocks the event loop.
      servingLeaseMs: 3_600_000,
    },
  })
  log = lifecycleLog(node.events)
  node.events.subscribe('deadletter', (e) => {
    stats.deadletters++
    note(e)
  })
  node.events.subscribe('transport.frame-rejected', (e) => {
    stats.framesRejected++
    note(e)
  })
  node.events.subscribe('ring.full', () => void stats.ringFull++)
  node.events.subscribe('placement.rebalanced', (e) => void (stats.released += e.released))
  await node.cluster!.whenUp()
  send({ type: 'ready', authority: node.cluster!.authority, nodeId: node.cluster!.nodeId, rawPort: (srv.address() as AddressInfo).port, workers: node.options.workers })
}

function close(): Promise<void> {
  closing ??= (async () => {
    const srv = server
    for (const s of rawSockets) s.destroy()
    await Promise.allSettled([node?.close(), srv === undefined ? undefined : new Promise<void>((r) => srv.close(() => r()))])
  })()
  return closing
}

async function handle(m: ToPeer): Promise<void> {
  switch (m.type) {
    case 'start':
      await start(m)
      return
    case 'stats': {
      const t = node?.cluster?.transport.stats
      send({ type: 'stats', ...stats, framesIn: t?.framesIn ?? 0, bytesIn: t?.bytesIn ?? 0, framesReturned: t?.framesReturned ?? 0, heapUsed: process.memoryUsage().heapUsed, upMembers: upMembers(node), log: log?.lines() ?? [] })
      return
    }
    case 'local-asks': {
      const b = node!
      // PIDs on B itself: by key, placement would send about two thirds of them to A or A2.
      const pids = Array.from({ length: 16 }, (_, i) => formatPid({ authority: b.cluster!.authority, nodeId: b.cluster!.nodeId, kind: 'bench-counter', key: `local-${i}` }))
      const us = new Float64Array(m.n)
      for (let i = -m.warm; i < m.n; i++) {
        const t0 = performance.now()
        await b.askPid(pids[i & 15]!, 'add', 1)
        if (i >= 0) us[i] = (performance.now() - t0) * 1000
      }
      send({ type: 'local-asks', ...summarizeLatencies(us) })
      return
    }
    case 'close':
      await close()
      // Disconnect once the reply is out; the 'disconnect' handler then exits.
      if (process.connected) process.send?.({ type: 'closed' } satisfies FromPeer, () => process.disconnect())
      return
  }
}

process.on('message', (m: ToPeer) => {
  handle(m).catch((e: unknown) => send({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) }))
})
// The parent went away (crashed or killed): do not linger.
process.on('disconnect', () => {
  void close().finally(() => process.exit(0))
})
