import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../src/common/errors.js'
import { EventStream } from '../../src/observability/event-stream.js'
import type { EventOf, RuntimeEvent } from '../../src/observability/events.js'
import { FrameDecoder, encodeFrame, writeFrameHeader } from '../../src/remote/transport/frame-codec.js'
import { HANDSHAKE_MESSAGE, PROTOCOL_VERSION, decodeHandshakeMessage, encodeHandshakeMessage } from '../../src/remote/transport/handshake.js'
import { type PeerIdentity, TcpTransport, type TcpTransportOptions, parseAuthority, reconnectDelayMs } from '../../src/remote/transport/tcp-transport.js'
import { catchErr } from '../helpers/catch-error.js'
import { randInt, seededRng } from '../helpers/seeded-rng.js'
import { waitUntil } from '../helpers/wait-until.js'

interface Node {
  t: TcpTransport
  events: EventStream
  log: RuntimeEvent[]
  ups: PeerIdentity[]
  downs: Array<{ peer: PeerIdentity; reason: string }>
}

const transports: TcpTransport[] = []
const rawSockets: net.Socket[] = []
const tempDirs: string[] = []

afterEach(async () => {
  for (const s of rawSockets.splice(0)) s.destroy()
  await Promise.all(transports.splice(0).map((t) => t.close()))
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

async function start(over: Partial<TcpTransportOptions> = {}): Promise<Node> {
  const events = new EventStream()
  const log: RuntimeEvent[] = []
  events.subscribe('*', (e) => log.push(e))
  const t = await TcpTransport.listen({
    clusterName: 'test',
    nodeId: `n-${randomBytes(8).toString('hex')}`,
    secret: 'cluster-secret',
    events,
    reconnectMinDelayMs: 20,
    reconnectMaxDelayMs: 200,
    // Off unless a test is about it: the others count connections, dials and accepts of the data connection alone.
    controlLane: false,
    ...over,
  })
  transports.push(t)
  const ups: PeerIdentity[] = []
  const downs: Array<{ peer: PeerIdentity; reason: string }> = []
  t.on('peer-up', (p) => ups.push(p))
  t.on('peer-down', (peer, reason) => downs.push({ peer, reason }))
  return { t, events, log, ups, downs }
}

function eventsOf<T extends RuntimeEvent['type']>(n: Node, type: T): Array<EventOf<T>> {
  return n.log.filter((e): e is EventOf<T> => e.type === type)
}

async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/** Raw socket to a transport's port, closed by afterEach if the test does not. */
async function rawConnect(authority: string): Promise<net.Socket> {
  const { host, port } = parseAuthority(authority)
  const s = net.connect({ host, port })
  rawSockets.push(s)
  s.on('error', () => {})
  // Flowing, so the client notices the transport's FIN and closes.
  s.resume()
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve)
    s.once('close', () => reject(new Error('closed before connect')))
  })
  return s
}

/** Everything a raw socket reads until the transport closes it, decoded as frames. */
function readFramesUntilClose(s: net.Socket): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = []
  const d = new FrameDecoder({ maxFrameBytes: 1 << 20 })
  s.on('data', (chunk: Buffer) => d.push(chunk, (f) => frames.push(f.slice())))
  return new Promise((r) => s.once('close', () => r(frames)))
}

function seqFrame(seq: number): Uint8Array {
  const f = new Uint8Array(16 + (seq % 48))
  new DataView(f.buffer).setUint32(0, seq, true)
  f.fill(seq & 0xff, 4)
  return f
}

function readSeq(f: Uint8Array): number {
  return (f[0]! | (f[1]! << 8) | (f[2]! << 16) | (f[3]! << 24)) >>> 0
}

function connectedPair(a: Node, b: Node): Promise<unknown> {
  return Promise.all([a.t.connect(b.t.authority), waitUntil(() => b.t.isConnected(a.t.authority), { what: 'inbound side established' })])
}

describe('TcpTransport', () => {
  it('exchanges 100,000 frames each way, in order, with batched writes', async () => {
    const a = await start({ nodeId: 'node-a' })
    const b = await start({ nodeId: 'node-b' })
    await connectedPair(a, b)
    const N = 100_000
    const next = { a: 0, b: 0 }
    const bad: string[] = []
    const check = (at: 'a' | 'b') => (peer: PeerIdentity, f: Uint8Array) => {
      const seq = readSeq(f)
      const want = next[at]
      // Every byte: outbound slabs are reused once written, so a premature reuse would show as corrupted frames.
      if (seq !== want || f.length !== 16 + (want % 48) || f.subarray(4).some((x) => x !== (want & 0xff))) {
        if (bad.length < 5) bad.push(`${at}: got seq ${seq} (len ${f.length}) expected ${next[at]} from ${peer.nodeId}`)
      }
      next[at]++
    }
    a.t.on('frame', check('a'))
    b.t.on('frame', check('b'))
    // Encoded up front, as the envelope layer would hand them over: the timing is the transport's.
    const frames = Array.from({ length: N }, (_, i) => seqFrame(i))
    const t0 = performance.now()
    // Bursts of 2,000 per turn: each burst leaves in one flush per connection.
    let refused = 0
    for (let i = 0; i < N; i += 2_000) {
      for (let j = i; j < i + 2_000; j++) {
        if (!a.t.send(b.t.authority, frames[j]!)) refused++
        if (!b.t.send(a.t.authority, frames[j]!)) refused++
      }
      await new Promise((r) => setImmediate(r))
    }
    expect(refused).toBe(0)
    await waitUntil(() => next.a === N && next.b === N, { timeoutMs: 60_000, what: `all frames received (${JSON.stringify(next)})` })
    const seconds = (performance.now() - t0) / 1000
    console.log(`[tcp-transport] ${2 * N} frames (${N} each way, 16-63 B) in ${seconds.toFixed(2)} s: ${Math.round((2 * N) / seconds).toLocaleString('en')} frames/s`)
    expect(bad).toEqual([])
    expect(a.t.stats).toMatchObject({ framesOut: N, framesIn: N, framesRejected: 0, peers: 1 })
    expect(b.t.stats).toMatchObject({ framesOut: N, framesIn: N, framesRejected: 0, peers: 1 })
    // Batched: far fewer socket reads than frames reached the receiver.
    expect(b.t.stats.bytesIn).toBeGreaterThan(N * 20)
    // ~4 MB each way in 64 KiB slabs: written slabs were handed out again instead of allocated.
    expect(a.t.stats.slabsReused).toBeGreaterThan(0)
    expect(a.t.stats.slabsAllocated).toBeLessThan(a.t.stats.slabsReused)
    expect(eventsOf(a, 'transport.connected')).toMatchObject([{ authority: b.t.authority, nodeId: 'node-b', direction: 'outbound' }])
    expect(eventsOf(b, 'transport.connected')).toMatchObject([{ authority: a.t.authority, nodeId: 'node-a', direction: 'inbound' }])
  })

  it('send() returns false when not connected and throws ERR_FRAME_TOO_LARGE over the limit', async () => {
    const a = await start({ maxFrameBytes: 8 * 1024 })
    const b = await start()
    expect(a.t.send(b.t.authority, new Uint8Array(1))).toBe(false)
    await connectedPair(a, b)
    const e = catchErr(() => a.t.send(b.t.authority, new Uint8Array(8 * 1024 + 1)))
    expect(GrainClusterError.is(e, 'ERR_FRAME_TOO_LARGE')).toBe(true)
    expect((e as GrainClusterError).details).toMatchObject({ authority: b.t.authority, size: 8 * 1024 + 1, limit: 8 * 1024 })
    expect(a.t.send(b.t.authority, new Uint8Array(8 * 1024))).toBe(true)
  })

  it('refuses a frame over maxBufferedBytes (backpressure) unless it is sent past the limit', async () => {
    const a = await start({ maxBufferedBytes: 1 })
    const b = await start()
    await connectedPair(a, b)
    const frame = new Uint8Array([0x01, 1, 2, 3])
    expect(a.t.send(b.t.authority, frame)).toBe(true) // the buffer was empty
    expect(a.t.send(b.t.authority, frame)).toBe(false) // 8 bytes queued this turn > 1
    expect(a.t.stats.sendsRefused).toBe(1)
    expect(a.t.send(b.t.authority, frame, true)).toBe(true)
    expect(a.t.stats.sendsRefused).toBe(1)
  })

  it('refuses invalid options with every issue listed', async () => {
    const e = await TcpTransport.listen({ clusterName: '', nodeId: 'x', secret: '', events: new EventStream(), port: 70_000, reconnectMinDelayMs: 500, reconnectMaxDelayMs: 100, maxFrameBytes: 10 }).catch((x: unknown) => x)
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    const issues = (e as GrainClusterError).details.issues ?? []
    expect(issues).toHaveLength(5)
    expect(issues.join('\n')).toMatch(/clusterName must be a non-empty string/)
    expect(issues.join('\n')).toMatch(/port must be an integer in 0\.\.65535 \(got 70000\)/)
    expect(issues.join('\n')).toMatch(/reconnectMaxDelayMs must be at least reconnectMinDelayMs/)
    // A port in use fails listen() with a typed error too.
    const a = await start()
    const taken = await start({ port: parseAuthority(a.t.authority).port }).catch((x: unknown) => x)
    expect(GrainClusterError.is(taken, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((taken as GrainClusterError).reason).toMatch(/EADDRINUSE/)
  })

  it('resolves a simultaneous connect to one connection, the one dialed by the lower NodeId', async () => {
    for (let round = 0; round < 5; round++) {
      const a = await start()
      const b = await start()
      const [pa, pb] = await Promise.all([a.t.connect(b.t.authority), b.t.connect(a.t.authority)])
      expect(pa).toEqual({ authority: b.t.authority, nodeId: b.t.nodeId })
      expect(pb).toEqual({ authority: a.t.authority, nodeId: a.t.nodeId })
      await waitUntil(() => a.t.stats.openConnections === 1 && b.t.stats.openConnections === 1, {
        what: `one connection left (a: ${JSON.stringify(a.t.stats)}, b: ${JSON.stringify(b.t.stats)})`,
      })
      // Both sides really dialed and accepted: there were two connections to resolve.
      for (const n of [a, b]) expect(n.t.stats).toMatchObject({ dialAttempts: 1, inboundAccepted: 1, peers: 1, handshakesRefused: 0 })
      const lower = a.t.nodeId < b.t.nodeId ? a : b
      const higher = lower === a ? b : a
      expect(lower.t.peers()).toEqual([{ authority: higher.t.authority, nodeId: higher.t.nodeId, direction: 'outbound' }])
      expect(higher.t.peers()).toEqual([{ authority: lower.t.authority, nodeId: lower.t.nodeId, direction: 'inbound' }])
      // One peer-up each, never a peer-down, and frames flow both ways on the survivor.
      expect([a.ups.length, b.ups.length, a.downs.length, b.downs.length]).toEqual([1, 1, 0, 0])
      const got: string[] = []
      a.t.on('frame', (_p, f) => got.push(`a:${f[0]}`))
      b.t.on('frame', (_p, f) => got.push(`b:${f[0]}`))
      expect(a.t.send(b.t.authority, new Uint8Array([1]))).toBe(true)
      expect(b.t.send(a.t.authority, new Uint8Array([2]))).toBe(true)
      await waitUntil(() => got.length === 2, { what: 'frames on the surviving connection' })
      expect(got.sort()).toEqual(['a:2', 'b:1'])
      await Promise.all([a.t.close(), b.t.close()])
    }
  })

  it('refuses a node with the wrong secret: an event with the reason on the accepting side, a refusal on the dialing side', async () => {
    const a = await start({ secret: 'right' })
    const b = await start({ secret: 'wrong' })
    const e = await b.t.connect(a.t.authority).catch((x: unknown) => x)
    expect(GrainClusterError.is(e, 'ERR_AUTHORITY_HANDSHAKE_FAILED')).toBe(true)
    expect((e as GrainClusterError).reason).toMatch(/proof/)
    await waitUntil(() => eventsOf(a, 'handshake.refused').length === 1, { what: 'refusal event on the acceptor' })
    const [ev] = eventsOf(a, 'handshake.refused')
    expect(ev).toMatchObject({ category: 'handshake', code: 'ERR_AUTHORITY_HANDSHAKE_FAILED', claimedAuthority: b.t.authority })
    expect(ev!.reason).toBe(`bad proof from ${b.t.authority}: it does not hold this cluster's secret`)
    expect(ev!.remote).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(eventsOf(b, 'handshake.refused')[0]).toMatchObject({ code: 'ERR_AUTHORITY_HANDSHAKE_FAILED', claimedAuthority: a.t.authority })
    expect([a.ups, b.ups, a.t.stats.peers, b.t.stats.peers]).toEqual([[], [], 0, 0])
    await waitUntil(() => a.t.stats.openConnections === 0 && b.t.stats.openConnections === 0, { what: 'refused connection closed' })
    b.t.disconnect(a.t.authority)
  })

  it('refuses a node of another cluster, naming both clusters', async () => {
    const a = await start({ clusterName: 'blue' })
    const b = await start({ clusterName: 'green' })
    const e = await b.t.connect(a.t.authority).catch((x: unknown) => x)
    expect(GrainClusterError.is(e, 'ERR_AUTHORITY_HANDSHAKE_FAILED')).toBe(true)
    await waitUntil(() => eventsOf(a, 'handshake.refused').length >= 1, { what: 'refusal event' })
    const reason = eventsOf(a, 'handshake.refused')[0]!.reason
    expect(reason).toContain('"blue"')
    expect(reason).toContain('"green"')
  })

  it('hands the acceptor’s welcome payload to the dialer and lets the accept hook refuse', async () => {
    const a = await start({
      welcome: (peer) => new TextEncoder().encode(`members for ${peer.nodeId}`),
      accept: (peer) => (peer.nodeId === 'intruder' ? { code: 'ERR_AUTHORITY_CONFLICT', reason: `${peer.authority} already held by another incarnation` } : undefined),
    })
    const b = await start({ nodeId: 'newcomer' })
    const welcomes: string[] = []
    b.t.on('peer-up', (_p, info) => welcomes.push(new TextDecoder().decode(info.welcome)))
    await b.t.connect(a.t.authority)
    expect(welcomes).toEqual(['members for newcomer'])
    const c = await start({ nodeId: 'intruder' })
    const e = await c.t.connect(a.t.authority).catch((x: unknown) => x)
    expect(GrainClusterError.is(e, 'ERR_AUTHORITY_CONFLICT')).toBe(true)
    await waitUntil(() => eventsOf(a, 'handshake.refused').some((x) => x.code === 'ERR_AUTHORITY_CONFLICT'), { what: 'conflict refusal event' })
    c.t.disconnect(a.t.authority)
    expect(a.t.isConnected(b.t.authority)).toBe(true)
  })

  it('reconnects with backoff after the peer’s server restarts on the same port', async () => {
    const port = await freePort()
    const b1 = await start({ port, nodeId: 'b-first' })
    const a = await start({ nodeId: 'a' })
    await a.t.connect(b1.t.authority)
    const authority = b1.t.authority
    await b1.t.close()
    await waitUntil(() => a.downs.length === 1, { what: 'peer-down after the peer closed' })
    expect(a.downs[0]!.peer).toEqual({ authority, nodeId: 'b-first' })
    expect(eventsOf(a, 'transport.disconnected')).toMatchObject([{ authority }])
    // Nothing listens now: redials fail, and keep going.
    await waitUntil(() => a.t.stats.dialFailures >= 2, { what: `failed redials (${JSON.stringify(a.t.stats)})` })
    const b2 = await start({ port, nodeId: 'b-second' })
    await waitUntil(() => a.ups.length === 2, { timeoutMs: 10_000, what: 'peer-up for the restarted peer' })
    expect(a.ups[1]).toEqual({ authority, nodeId: 'b-second' })
    const got: number[] = []
    b2.t.on('frame', (_p, f) => got.push(f[0]!))
    expect(a.t.send(authority, new Uint8Array([42]))).toBe(true)
    await waitUntil(() => got.length === 1, { what: 'frame to the restarted peer' })
    expect(got).toEqual([42])
  })

  it('backoff grows exponentially to the cap, with jitter in [d/2, d]', () => {
    expect([0, 1, 2, 3, 10].map((n) => reconnectDelayMs(n, 100, 1_000, () => 1))).toEqual([100, 200, 400, 800, 1_000])
    expect([0, 1, 2, 3, 10].map((n) => reconnectDelayMs(n, 100, 1_000, () => 0))).toEqual([50, 100, 200, 400, 500])
  })

  it('rejects an oversized frame, closes only that connection, and keeps the others', async () => {
    const b = await start({ maxFrameBytes: 64 * 1024, nodeId: 'b' })
    const a = await start({ maxFrameBytes: 1024 * 1024, nodeId: 'a' })
    const c = await start({ nodeId: 'c' })
    await connectedPair(a, b)
    await connectedPair(c, b)
    const atB: string[] = []
    b.t.on('frame', (p, f) => atB.push(`${p.nodeId}:${f.length}`))
    expect(a.t.send(b.t.authority, new Uint8Array(100 * 1024))).toBe(true)
    await waitUntil(() => eventsOf(b, 'transport.frame-rejected').length === 1, { what: 'frame-rejected event' })
    expect(eventsOf(b, 'transport.frame-rejected')[0]).toMatchObject({
      code: 'ERR_FRAME_TOO_LARGE',
      reason: `frame of ${100 * 1024} bytes exceeds the limit of ${64 * 1024} bytes`,
    })
    await waitUntil(() => b.downs.length === 1, { what: 'peer-down for the offender' })
    expect(b.downs[0]!.peer.nodeId).toBe('a')
    expect(b.downs[0]!.reason).toMatch(/^frame rejected: frame of 102400 bytes/)
    expect(atB).toEqual([])
    // c is unaffected.
    expect(b.t.isConnected(c.t.authority)).toBe(true)
    expect(c.t.send(b.t.authority, new Uint8Array(10))).toBe(true)
    await waitUntil(() => atB.includes('c:10'), { what: 'frame from the unaffected peer' })
    expect(c.downs).toEqual([])
    // a wanted b, so it comes back (and may send legal frames again).
    await waitUntil(() => a.t.isConnected(b.t.authority) && b.t.isConnected(a.t.authority), { timeoutMs: 10_000, what: 'offender reconnected' })
    expect(a.t.send(b.t.authority, new Uint8Array(64 * 1024))).toBe(true)
    await waitUntil(() => atB.includes(`a:${64 * 1024}`), { what: 'legal frame after reconnect' })
  })

  it('cuts a connection that delivers a frame of a type no layer declared (its framing is lost), after the frames before it', async () => {
    const b = await start({ nodeId: 'b', frameTypes: [0x07] })
    const a = await start({ nodeId: 'a' })
    await connectedPair(a, b)
    const atB: number[] = []
    b.t.on('frame', (_p, f) => atB.push(f[1]!))
    // One flush, so all three leave in one write and arrive in one read.
    expect(a.t.send(b.t.authority, Uint8Array.of(0x07, 1))).toBe(true)
    expect(a.t.send(b.t.authority, Uint8Array.of(0x2d, 2, 3))).toBe(true)
    expect(a.t.send(b.t.authority, Uint8Array.of(0x07, 3))).toBe(true)
    await waitUntil(() => b.downs.length === 1, { what: 'peer-down for the desynchronised connection' })
    expect(eventsOf(b, 'transport.frame-rejected')).toMatchObject([{ code: 'ERR_FRAME_MALFORMED', reason: "a frame of unknown type 0x2d (3 bytes): the stream's framing is lost" }])
    expect(atB).toEqual([1])
    expect(b.t.stats.framesRejected).toBe(1)
    // a wanted b: it reconnects, and declared frames flow again.
    await waitUntil(() => a.t.isConnected(b.t.authority) && b.t.isConnected(a.t.authority), { timeoutMs: 10_000, what: 'reconnected' })
    expect(a.t.send(b.t.authority, Uint8Array.of(0x07, 4))).toBe(true)
    await waitUntil(() => atB.includes(4), { what: 'a declared frame after the reconnect' })
  })

  describe('control lane', () => {
    it('the lower NodeId dials it once the data connection is up; sendControl frames take it and arrive while the data connection is read-paused', async () => {
      const a = await start({ nodeId: 'a', controlLane: true })
      const b = await start({ nodeId: 'b', controlLane: true })
      // b dials the data connection; a, the lower NodeId, dials the control lane.
      await b.t.connect(a.t.authority)
      await waitUntil(() => a.t.hasControlLane(b.t.authority) && b.t.hasControlLane(a.t.authority), { what: 'control lane up on both sides' })
      expect(a.t.stats).toMatchObject({ dialAttempts: 1, inboundAccepted: 1, openConnections: 2, peers: 1, controlLanes: 1, handshakesRefused: 0 })
      expect(b.t.stats).toMatchObject({ dialAttempts: 1, inboundAccepted: 1, openConnections: 2, peers: 1, controlLanes: 1 })
      // One peer each: the lane is no second peer-up, and peers() lists the data connection.
      expect([a.ups.length, b.ups.length]).toEqual([1, 1])
      expect(b.t.peers()).toEqual([{ authority: a.t.authority, nodeId: 'a', direction: 'outbound' }])

      const atB: number[] = []
      b.t.on('frame', (_p, f) => atB.push(f[0]!))
      b.t.setReadPaused(a.t.authority, true)
      for (let i = 1; i <= 5; i++) expect(a.t.send(b.t.authority, Uint8Array.of(i))).toBe(true)
      expect(a.t.sendControl(b.t.authority, Uint8Array.of(99))).toBe(true)
      await waitUntil(() => atB.includes(99), { what: 'the control frame, past the paused data connection' })
      expect(atB).toEqual([99])
      b.t.setReadPaused(a.t.authority, false)
      await waitUntil(() => atB.length === 6, { what: 'the data frames once read again' })
      expect(atB).toEqual([99, 1, 2, 3, 4, 5])
      // Both ways: b's control frames reach a on the lane a dialed.
      const atA: number[] = []
      a.t.on('frame', (_p, f) => atA.push(f[0]!))
      expect(b.t.sendControl(a.t.authority, Uint8Array.of(42))).toBe(true)
      await waitUntil(() => atA.includes(42), { what: "b's control frame at a" })
    })

    it('a lane cut on its own is redialed with no peer-down; it goes with its data connection, and comes back with the next', async () => {
      const a = await start({ nodeId: 'a', controlLane: true })
      const b = await start({ nodeId: 'b', controlLane: true, frameTypes: [0x07] })
      await connectedPair(a, b)
      await waitUntil(() => a.t.hasControlLane(b.t.authority) && b.t.hasControlLane(a.t.authority), { what: 'control lane up' })
      // A frame of a type b never declared cuts the connection it came on: here the control lane alone.
      expect(a.t.sendControl(b.t.authority, Uint8Array.of(0x2d))).toBe(true)
      await waitUntil(() => eventsOf(b, 'transport.frame-rejected').length === 1, { what: 'the lane cut' })
      await waitUntil(() => a.t.stats.dialAttempts >= 3 && a.t.hasControlLane(b.t.authority) && b.t.hasControlLane(a.t.authority), {
        timeoutMs: 10_000,
        what: 'control lane redialed by a',
      })
      expect([a.downs.length, b.downs.length, a.ups.length, b.ups.length]).toEqual([0, 0, 1, 1])
      expect(a.t.isConnected(b.t.authority)).toBe(true)
      // Each side saw the lane go down (b: the frame it rejected) and come up again.
      const lane = (n: Node) => eventsOf(n, 'transport.control-lane').map((e) => `${e.state} ${e.authority === (n === a ? b : a).t.authority}`)
      await waitUntil(() => lane(a).length === 3 && lane(b).length === 3, { what: 'control-lane events on both sides' })
      expect(lane(a)).toEqual(['up true', 'down true', 'up true'])
      expect(lane(b)).toEqual(['up true', 'down true', 'up true'])
      expect(eventsOf(b, 'transport.control-lane')[1]!.reason).toMatch(/frame rejected: a frame of unknown type 0x2d/)
      expect(eventsOf(a, 'transport.control-lane')[0]).toMatchObject({ nodeId: 'b', reason: 'dialed by this node' })
      const atB: number[] = []
      b.t.on('frame', (_p, f) => atB.push(f[1]!))
      expect(a.t.sendControl(b.t.authority, Uint8Array.of(0x07, 1))).toBe(true)
      await waitUntil(() => atB.includes(1), { what: 'a control frame on the new lane' })

      a.t.disconnect(b.t.authority, 'test')
      await waitUntil(() => b.downs.length === 1 && a.t.stats.openConnections === 0 && b.t.stats.openConnections === 0, { what: 'both connections gone' })
      expect([a.t.stats.controlLanes, b.t.stats.controlLanes]).toEqual([0, 0])
      expect(eventsOf(a, 'transport.control-lane').at(-1)).toMatchObject({ state: 'down', reason: 'data connection down: test' })
      // No control lane: sendControl takes the data connection (or reports false without one).
      expect(a.t.sendControl(b.t.authority, Uint8Array.of(0x07, 2))).toBe(false)
      await a.t.connect(b.t.authority)
      await waitUntil(() => a.t.hasControlLane(b.t.authority) && b.t.hasControlLane(a.t.authority), { what: 'control lane back with the new data connection' })
    })

    it('sendControl falls back to the data connection when the lower NodeId does not open a lane', async () => {
      const a = await start({ nodeId: 'a', controlLane: false })
      const b = await start({ nodeId: 'b', controlLane: true })
      await connectedPair(a, b)
      const atB: number[] = []
      b.t.on('frame', (_p, f) => atB.push(f[0]!))
      expect(a.t.sendControl(b.t.authority, Uint8Array.of(7))).toBe(true)
      expect(b.t.sendControl(a.t.authority, Uint8Array.of(8))).toBe(true)
      await waitUntil(() => atB.includes(7), { what: 'control frame over data' })
      expect([a.t.stats.openConnections, b.t.stats.openConnections, a.t.stats.controlLanes, b.t.stats.controlLanes]).toEqual([1, 1, 0, 0])
    })
  })

  it('hands the frames it accepted but could not write back to its unsent listeners, in order; with none it counts them dropped', async () => {
    const a = await start({ nodeId: 'a' })
    const b = await start({ nodeId: 'b' })
    a.t.acceptFrameType(0x07)
    await connectedPair(a, b)
    const returned: number[][] = []
    const offUnsent = a.t.on('unsent', (peer, frames) => {
      expect(peer.nodeId).toBe('b')
      returned.push(frames.map((f) => f[1]!))
    })
    // A legal frame then one that cuts the connection, in one chunk: a's listener sends
    // in between, so its frames are queued when the connection is destroyed.
    let sendFrom = 1
    a.t.on('frame', () => {
      for (let i = 0; i < 3; i++) expect(a.t.send(b.t.authority, Uint8Array.of(0x07, sendFrom++, 0, 0))).toBe(true)
    })
    const cut = (): void => {
      expect(b.t.send(a.t.authority, Uint8Array.of(0x07))).toBe(true)
      expect(b.t.send(a.t.authority, Uint8Array.of(0x66))).toBe(true)
    }
    cut()
    await waitUntil(() => returned.length === 1, { what: 'unsent frames handed back' })
    expect(returned).toEqual([[1, 2, 3]])
    expect(a.t.stats).toMatchObject({ framesReturned: 3, bytesDropped: 0 })
    expect(eventsOf(a, 'transport.frame-rejected').filter((e) => e.code === 'ERR_AUTHORITY_UNREACHABLE')).toEqual([])

    // No listener: dropped, counted and reported.
    offUnsent()
    await waitUntil(() => a.t.isConnected(b.t.authority) && b.t.isConnected(a.t.authority), { timeoutMs: 10_000, what: 'reconnected' })
    cut()
    await waitUntil(() => a.t.stats.bytesDropped > 0, { what: 'dropped bytes counted' })
    expect(a.t.stats).toMatchObject({ framesReturned: 3, bytesDropped: 3 * (4 + 4) })
    expect(eventsOf(a, 'transport.frame-rejected').filter((e) => e.code === 'ERR_AUTHORITY_UNREACHABLE')).toMatchObject([{ reason: '24 queued bytes were not sent: the connection closed first' }])
  })

  it('answers a frame before the handshake, and an unknown protocol version, with a REFUSE and an event', async () => {
    const a = await start()
    // 1. An application frame first.
    const s1 = await rawConnect(a.t.authority)
    const replies1 = readFramesUntilClose(s1)
    s1.write(encodeFrame(new Uint8Array([0x77, 1, 2, 3, 4])))
    const r1 = (await replies1).map((f) => decodeHandshakeMessage(f))
    expect(r1.map((m) => m.type)).toEqual(['hello', 'refuse'])
    expect(r1[1]).toMatchObject({ code: 'ERR_AUTHORITY_HANDSHAKE_FAILED', reason: 'frame before handshake: expected HELLO, got a frame of unknown type 0x77' })
    // 2. A HELLO of protocol version 7.
    const s2 = await rawConnect(a.t.authority)
    const replies2 = readFramesUntilClose(s2)
    const hello = encodeHandshakeMessage({ type: 'hello', version: PROTOCOL_VERSION, clusterName: 'test', authority: '127.0.0.1:1', nodeId: 'x', nonce: new Uint8Array(32) })
    hello[1] = 7
    s2.write(encodeFrame(hello))
    const r2 = (await replies2).map((f) => decodeHandshakeMessage(f))
    expect(r2[1]).toMatchObject({ type: 'refuse', reason: `protocol version mismatch: the peer speaks version 7, ${a.t.authority} speaks version 1` })
    const refused = eventsOf(a, 'handshake.refused')
    expect(refused.map((e) => e.reason)).toEqual([r1[1]!.type === 'refuse' ? r1[1]!.reason : '', r2[1]!.type === 'refuse' ? r2[1]!.reason : ''])
    await waitUntil(() => a.t.stats.openConnections === 0, { what: 'refused connections closed on the server side' })
    expect(a.t.stats.handshakesRefused).toBe(2)
  })

  it('refuses a silent peer after the handshake timeout and caps pending handshakes', async () => {
    const a = await start({ handshakeTimeoutMs: 300, maxPendingHandshakes: 2 })
    const s1 = await rawConnect(a.t.authority)
    const replies = readFramesUntilClose(s1)
    await rawConnect(a.t.authority)
    await waitUntil(() => a.t.stats.pendingHandshakes === 2, { what: 'two pending handshakes' })
    // A third is over the cap: dropped at once, with an event.
    const s3 = await rawConnect(a.t.authority)
    await new Promise((r) => s3.once('close', r))
    expect(eventsOf(a, 'handshake.refused')[0]).toMatchObject({ code: 'ERR_AUTHORITY_HANDSHAKE_FAILED', reason: 'too many pending handshakes (limit 2)' })
    // The silent ones time out with a REFUSE saying so.
    const r1 = (await replies).map((f) => decodeHandshakeMessage(f))
    expect(r1.map((m) => m.type)).toEqual(['hello', 'refuse'])
    expect(r1[1]).toMatchObject({ reason: 'handshake timed out after 300 ms (waiting for HELLO)' })
    await waitUntil(() => a.t.stats.openConnections === 0 && eventsOf(a, 'handshake.refused').length === 3, { what: 'both timed out' })
    // And the node takes a real peer afterwards.
    const b = await start()
    await b.t.connect(a.t.authority)
  })

  it('close() ends every connection, reports peer-down, rejects pending connects and stops redialing', async () => {
    const a = await start({ nodeId: 'a' })
    const b = await start({ nodeId: 'b' })
    await connectedPair(a, b)
    const dead = `127.0.0.1:${await freePort()}`
    const pending = a.t.connect(dead)
    await waitUntil(() => a.t.stats.dialFailures >= 1, { what: 'a failed dial to a dead port' })
    await a.t.close()
    const e = await pending.catch((x: unknown) => x)
    expect(GrainClusterError.is(e, 'ERR_AUTHORITY_UNREACHABLE')).toBe(true)
    expect((e as GrainClusterError).details).toMatchObject({ authority: dead })
    expect(a.downs).toEqual([{ peer: { authority: b.t.authority, nodeId: 'b' }, reason: 'the transport is closed' }])
    expect(a.t.stats).toMatchObject({ openConnections: 0, peers: 0 })
    await waitUntil(() => b.downs.length === 1, { what: 'peer-down on the other side' })
    expect(b.downs[0]!.reason).toBe('connection closed by the peer')
    const dials = a.t.stats.dialAttempts
    expect(a.t.send(b.t.authority, new Uint8Array(1))).toBe(false)
    const after = await a.t.connect(b.t.authority).catch((x: unknown) => x)
    expect(GrainClusterError.is(after, 'ERR_AUTHORITY_UNREACHABLE')).toBe(true)
    expect(a.t.stats.dialAttempts).toBe(dials)
    // b never wanted a, so it does not redial either.
    expect(b.t.stats.dialAttempts).toBe(0)
  })

  it('survives 2,000 connections of random bytes and stays healthy', async () => {
    const t = await start({ nodeId: 'target' })
    const friend = await start({ nodeId: 'friend' })
    await connectedPair(friend, t)
    const gc = exposeGc()
    gc()
    const heapBefore = process.memoryUsage().heapUsed
    const logBefore = t.log.length
    const { host, port } = parseAuthority(t.t.authority)
    const rng = seededRng(20_240_601)
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => randInt(rng, 0, 255)))
    const header = (n: number): Buffer => {
      const h = Buffer.alloc(4)
      writeFrameHeader(h, 0, n)
      return h
    }
    /** One hostile client: what it sends, and whether it ends politely or resets. */
    const payload = (): Buffer => {
      switch (randInt(rng, 0, 8)) {
        case 0: // pure noise
          return bytes(randInt(rng, 1, 600))
        case 1: // a well-framed random body
          return Buffer.concat([header(64), bytes(64)])
        case 2: {
          // a HELLO type byte and version, then noise
          const body = bytes(randInt(rng, 3, 120))
          body[0] = HANDSHAKE_MESSAGE.HELLO
          body[1] = PROTOCOL_VERSION
          body[2] = 0
          return Buffer.concat([header(body.length), body])
        }
        case 3: {
          // handshake messages of unknown versions
          const body = bytes(40)
          body[0] = randInt(rng, 1, 4)
          return Buffer.concat([header(40), body])
        }
        case 4: // oversized length header
          return Buffer.concat([header(randInt(rng, 4097, 0xffffffff)), bytes(randInt(rng, 0, 50))])
        case 5: // truncated frame, then gone
          return Buffer.concat([header(200), bytes(randInt(rng, 0, 150))])
        case 6: // nothing at all
          return Buffer.alloc(0)
        case 7: {
          // a valid HELLO of another cluster
          const hello = encodeHandshakeMessage({ type: 'hello', version: PROTOCOL_VERSION, clusterName: 'evil', authority: '10.9.9.9:1', nodeId: 'evil', nonce: bytes(32) })
          return Buffer.from(encodeFrame(hello))
        }
        default: {
          // a valid HELLO, then a forged PROOF
          const hello = encodeHandshakeMessage({ type: 'hello', version: PROTOCOL_VERSION, clusterName: 'test', authority: '10.9.9.9:1', nodeId: 'forger', nonce: bytes(32) })
          const proof = encodeHandshakeMessage({ type: 'proof', version: PROTOCOL_VERSION, mac: bytes(32) })
          return Buffer.concat([encodeFrame(hello), encodeFrame(proof)])
        }
      }
    }
    const attack = (): Promise<void> =>
      new Promise((resolve) => {
        const data = payload()
        const reset = rng() < 0.3
        const s = net.connect({ host, port })
        s.on('error', () => {})
        s.on('close', () => resolve())
        s.on('data', () => {})
        s.once('connect', () => {
          if (data.length > 0) s.write(data)
          if (reset) s.destroy()
          else s.end()
        })
        // Bound each client: a stuck one is destroyed (the target must still clean up).
        setTimeout(() => s.destroy(), 5_000).unref()
      })

    const TOTAL = 2_000
    const CONCURRENCY = 50
    const deadline = Date.now() + 60_000
    let launched = 0
    const worker = async (): Promise<void> => {
      while (launched < TOTAL && Date.now() < deadline) {
        launched++
        await attack()
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    expect(launched).toBe(TOTAL)

    // Every hostile connection is gone, each produced exactly one typed event, and nothing threw.
    await waitUntil(() => t.t.stats.openConnections === 1 && t.t.stats.pendingHandshakes === 0, {
      timeoutMs: 20_000,
      what: `hostile connections closed (${JSON.stringify(t.t.stats)})`,
    })
    await waitUntil(() => t.t.stats.inboundAccepted - 1 === TOTAL && t.log.length - logBefore === TOTAL, {
      what: `one event per hostile connection (accepted ${t.t.stats.inboundAccepted - 1}, events ${t.log.length - logBefore})`,
    })
    const hostile = t.log.slice(logBefore)
    for (const e of hostile) {
      expect(['handshake.refused', 'transport.frame-rejected']).toContain(e.type)
      expect(['ERR_AUTHORITY_HANDSHAKE_FAILED', 'ERR_FRAME_MALFORMED', 'ERR_FRAME_TOO_LARGE']).toContain((e as { code: string }).code)
    }
    expect(hostile.some((e) => e.type === 'transport.frame-rejected')).toBe(true)
    expect(t.t.stats.listenerErrors).toBe(0)
    expect(t.events.listenerErrors).toBe(0)

    // The existing peer never noticed, and frames still flow.
    expect([t.downs, friend.downs]).toEqual([[], []])
    const got: number[] = []
    t.t.on('frame', (_p, f) => got.push(f.length))
    expect(friend.t.send(t.t.authority, new Uint8Array(123))).toBe(true)
    // A legitimate newcomer still gets in and exchanges frames.
    const late = await start({ nodeId: 'late' })
    await late.t.connect(t.t.authority)
    const back: number[] = []
    late.t.on('frame', (_p, f) => back.push(f.length))
    expect(late.t.send(t.t.authority, new Uint8Array(77))).toBe(true)
    await waitUntil(() => t.t.isConnected(late.t.authority), { what: 'newcomer established on the target' })
    expect(t.t.send(late.t.authority, new Uint8Array(55))).toBe(true)
    await waitUntil(() => got.includes(123) && got.includes(77) && back.includes(55), { what: `frames after the fuzz (${JSON.stringify({ got, back })})` })
    expect(t.t.stats.peers).toBe(2)

    // Memory back near the baseline (no per-connection leftovers).
    gc()
    const grownMiB = (process.memoryUsage().heapUsed - heapBefore) / (1024 * 1024)
    expect(grownMiB).toBeLessThan(32)
  })

  it('runs over TLS with a self-signed certificate, and refuses a plain-TCP peer on the TLS port', async () => {
    const { key, cert } = selfSignedCert()
    const tlsOptions = { key, cert, ca: cert }
    const a = await start({ tls: tlsOptions, nodeId: 'tls-a', handshakeTimeoutMs: 30_000, controlLane: true })
    const b = await start({ tls: tlsOptions, nodeId: 'tls-b', controlLane: true })
    await connectedPair(b, a)
    // The control lane is dialed over TLS too.
    await waitUntil(() => a.t.hasControlLane(b.t.authority) && b.t.hasControlLane(a.t.authority), { what: 'control lane over TLS' })
    const got: string[] = []
    a.t.on('frame', (p, f) => got.push(`${p.nodeId}:${new TextDecoder().decode(f)}`))
    b.t.on('frame', (p, f) => got.push(`${p.nodeId}:${new TextDecoder().decode(f)}`))
    for (let i = 0; i < 1_000; i++) b.t.send(a.t.authority, new TextEncoder().encode(`m${i}`))
    a.t.send(b.t.authority, new TextEncoder().encode('back'))
    await waitUntil(() => got.length === 1_001, { what: 'frames over TLS' })
    expect(got.filter((g) => g.startsWith('tls-b:'))).toEqual(Array.from({ length: 1_000 }, (_, i) => `tls-b:m${i}`))
    expect(got).toContain('tls-a:back')
    expect(a.t.sendControl(b.t.authority, new TextEncoder().encode('hb'))).toBe(true)
    await waitUntil(() => got.includes('tls-a:hb'), { what: 'a control frame over TLS' })

    const plain = await start({ nodeId: 'plain' })
    const e = await plain.t.connect(a.t.authority, { timeoutMs: 1_000 }).catch((x: unknown) => x)
    expect(GrainClusterError.is(e, 'ERR_AUTHORITY_UNREACHABLE')).toBe(true)
    plain.t.disconnect(a.t.authority)
    await waitUntil(() => eventsOf(a, 'handshake.refused').some((x) => x.reason.startsWith('TLS handshake failed')), { what: 'TLS refusal event' })
    expect(a.t.isConnected(b.t.authority)).toBe(true)
    // A client stuck before its TLS handshake does not hold up close().
    const silent = await rawConnect(a.t.authority)
    const started = Date.now()
    await a.t.close()
    expect(Date.now() - started).toBeLessThan(4_000)
    await waitUntil(() => silent.destroyed, { what: 'silent TLS client cut' })
  })
})

/** A usable global.gc without starting node with --expose-gc. */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

/**
 * A throwaway self-signed certificate for 127.0.0.1. node:crypto makes keys
 * but not certificates, so this shells out to openssl (Debian's base image
 * ships it); without it the TLS test fails here, saying so.
 */
function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'graincluster-tls-'))
  tempDirs.push(dir)
  const keyPath = join(dir, 'key.pem')
  const certPath = join(dir, 'cert.pem')
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=graincluster-test', '-addext', 'subjectAltName=IP:127.0.0.1'],
      { stdio: 'pipe' },
    )
  } catch (e) {
    throw new Error(`the TLS test needs the openssl CLI to make a self-signed certificate: ${(e as Error).message}`)
  }
  return { key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8') }
}
