/**
 * Node-to-node transport driver: node:net TCP (optionally node:tls) carrying
 * length-prefixed frames (frame-codec.ts) after an authenticated handshake
 * (handshake.ts). This file owns the sockets, timers and randomness; the
 * protocol decisions live in those two sans-I/O files.
 *
 * - One connection per remote authority. When two nodes dial each other at
 *   the same time both connections complete; each side then keeps the one
 *   dialed by the node with the lower NodeId (string order) and ends the
 *   other gracefully. Both sides compute the same answer from the same two
 *   NodeIds, so they agree without another message. Frames that arrive on
 *   the losing connection before it closes are still delivered.
 * - Writes are batched: send() appends the frame (prefix included) to the
 *   connection's outbound queue (outbound-queue.ts), and one flush per event-loop turn
 *   (setImmediate) writes everything queued under cork()/uncork(), i.e. as
 *   one writev. Small frames are copied into the slab at send(); frames of
 *   LARGE_FRAME_BYTES or more are written by reference, so treat a frame as
 *   handed over once sent.
 * - Received frames are zero-copy views of the socket's chunk when they lie
 *   inside one chunk (see FrameDecoder). A frame stays valid after the
 *   listener returns (chunks are not reused) but keeps its chunk alive.
 * - Authorities passed to connect() are redialed with exponential backoff
 *   and jitter whenever no connection to them is up, until disconnect() or
 *   close(). A refused handshake rejects connect() and waits the maximum
 *   delay before the next attempt (an authority conflict, which clears
 *   once membership removes the old incarnation, keeps the normal backoff).
 * - Bad input never escapes a socket callback: oversized or truncated frames
 *   publish 'transport.frame-rejected', failed handshakes (including frames
 *   before the handshake and peers that vanish mid-handshake) publish
 *   'handshake.refused'; only the offending connection is closed.
 */

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { GrainClusterError, toGrainClusterError } from '../../common/errors.js'
import { utf8Length } from '../../common/utf8.js'
import type { EventStream } from '../../observability/event-stream.js'
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, MAX_ENCODABLE_FRAME_BYTES, encodeFrame } from './frame-codec.js'
import {
  Handshake,
  type HandshakeRefusal,
  type HandshakeResult,
  type HandshakeStep,
  type ConnectionLane,
  MAX_HELLO_STRING_BYTES,
  MAX_UNAUTHENTICATED_FRAME_BYTES,
  NONCE_BYTES,
  type PeerIdentity,
} from './handshake.js'

import type { SchemaVersions } from '../schema-negotiation.js'
import { framesOf, OutboundQueue } from './outbound-queue.js'
import { SlabPool } from './slab-pool.js'
export type { PeerIdentity, HandshakeRefusal } from './handshake.js'

/** Interface bound when `host` is not given. */
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000 // 5 s, TCP/TLS connect included for dials
export const DEFAULT_RECONNECT_MIN_DELAY_MS = 100 // 100 ms
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 10_000 // 10 s
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024 // 64 MiB per connection
export const DEFAULT_MAX_PENDING_HANDSHAKES = 1_024
/** How long a gracefully ended socket may linger before it is destroyed. */
const CLOSE_GRACE_MS = 2_000 // 2 s
/** Outbound slab size: small frames are packed into slabs of this size. */
const SLAB_BYTES = 64 * 1024

/** 'outbound' when this node dialed the connection. */
export type ConnectionDirection = 'inbound' | 'outbound'

/** TLS material; the same options serve the server and the dialed connections. */
export interface TcpTransportTlsOptions {
  /** PEM private key of this node. */
  key: string | Buffer
  /** PEM certificate of this node (server and client side). */
  cert: string | Buffer
  /** Trusted CA certificate(s); default: Node's bundled roots. */
  ca?: string | Buffer | Array<string | Buffer>
  /** Ask inbound peers for a client certificate (mutual TLS). Default false. */
  requestCert?: boolean
  /** Refuse peers whose certificate does not verify. Default true. */
  rejectUnauthorized?: boolean
}

/** Options of TcpTransport.listen(); invalid ones fail with one ERR_CONFIG_INVALID listing every issue. */
export interface TcpTransportOptions {
  /** Cluster name; a peer in another cluster is refused. Same on every node. */
  clusterName: string
  /** This incarnation's NodeId (random per process start). */
  nodeId: string
  /** Shared cluster secret (HMAC key of the handshake). Same on every node. */
  secret: string | Uint8Array
  /** Where refusals, rejections and connection changes are published. */
  events: EventStream
  /** Interface to bind. Default '127.0.0.1'. */
  host?: string
  /** Port to bind; 0 (default) picks an ephemeral port. */
  port?: number
  /** Authority announced to peers; default `host:port` actually bound. */
  advertisedAuthority?: string
  /** Largest frame body accepted or sent, in bytes. Default 4 MiB; at least 4 KiB. */
  maxFrameBytes?: number
  /** Time for a connection to complete connect + TLS + handshake. Default 5 s. */
  handshakeTimeoutMs?: number
  /** First reconnect delay (before jitter). Default 100 ms. */
  reconnectMinDelayMs?: number
  /** Largest reconnect delay, also used after a refused handshake. Default 10 s. */
  reconnectMaxDelayMs?: number
  /** Outbound bytes a connection may buffer before send() returns false. Default 64 MiB. */
  maxBufferedBytes?: number
  /** Inbound connections allowed in the handshake at once; more are dropped. Default 1024. */
  maxPendingHandshakes?: number
  /** Membership hook: refuse a verified peer (e.g. ERR_AUTHORITY_CONFLICT). Throwing refuses too. */
  accept?: (peer: PeerIdentity, direction: ConnectionDirection) => HandshakeRefusal | undefined
  /** Opaque bytes for this side's ACCEPT (the seed's member table, spec 1.5). */
  welcome?: (peer: PeerIdentity, direction: ConnectionDirection) => Uint8Array | undefined
  /** Schema versions per grain kind this node serves, exchanged in the handshake (schema-negotiation.ts). */
  schemas?: SchemaVersions
  /** Frame types declared before the first connection (see acceptFrameType): the layers that subscribe later. */
  frameTypes?: readonly number[]
  /** Use TLS (node:tls) on both the server and the dialed connections. */
  tls?: TcpTransportTlsOptions
  /**
   * Open a control lane to each peer: a second connection, dialed by the
   * side with the lower NodeId once the data connection is up, that carries
   * what sendControl() is given (heartbeats) and is never read-paused. A
   * peer that does not open one still gets its heartbeats over data.
   * Default true.
   */
  controlLane?: boolean
}

/** Second argument of 'peer-up'. */
export interface PeerUpInfo {
  direction: ConnectionDirection
  /** What the peer put in its ACCEPT (empty if nothing). */
  welcome: Uint8Array
  /** The peer's schema versions per kind; undefined when it sent none (an older node). */
  schemas?: SchemaVersions
}

/** One entry of peers(). */
export interface PeerConnectionInfo extends PeerIdentity {
  direction: ConnectionDirection
  /** The peer's schema versions per kind (see PeerUpInfo). */
  schemas?: SchemaVersions
}

/** Listener signatures of TcpTransport.on(). */
export interface TcpTransportEvents {
  frame: [peer: PeerIdentity, frame: Uint8Array]
  'peer-up': [peer: PeerIdentity, info: PeerUpInfo]
  'peer-down': [peer: PeerIdentity, reason: string]
  /**
   * Frames send() accepted for `peer` that were never written: their
   * connection stopped being writable before the flush. Emitted (before
   * 'peer-down' when the connection closed) so the layer above can queue
   * them again, oldest first; without a listener they are dropped
   * (bytesDropped, and a frame-rejected event).
   */
  unsent: [peer: PeerIdentity, frames: Uint8Array[]]
}
/** 'frame' | 'peer-up' | 'peer-down' | 'unsent'. */
export type TcpTransportEventName = keyof TcpTransportEvents

/** Counters since listen() and gauges of now; see TcpTransport.stats. */
export interface TcpTransportStats {
  framesIn: number
  bytesIn: number
  framesOut: number
  bytesOut: number
  /** Oversized or truncated frames; each closed its connection. */
  framesRejected: number
  /** Bytes accepted by send() but never written because their connection closed first, with no 'unsent' listener to take them back. */
  bytesDropped: number
  /** Frames accepted by send() but never written, handed back to the 'unsent' listeners. */
  framesReturned: number
  /** Handshakes that failed, refused by either side or cut short. */
  handshakesRefused: number
  /** send() calls that returned false because the connection's buffer was full. */
  sendsRefused: number
  /** Inbound sockets accepted by the server (TLS: after the TLS handshake). */
  inboundAccepted: number
  dialAttempts: number
  /** Dials that closed before their handshake started (refused, unreachable, TLS failure). */
  dialFailures: number
  /** Times a frame/peer listener threw (isolated, not rethrown). */
  listenerErrors: number
  /** Sockets open now, in any state. */
  openConnections: number
  /** Of which still in the handshake. */
  pendingHandshakes: number
  /** Peers with an established connection. */
  peers: number
  /** Of those, peers with an established control lane as well (see controlLane). */
  controlLanes: number
  /** Bytes waiting to go out on established connections (queued this turn plus the sockets' own buffers). */
  outboundBufferedBytes: number
  /** Outbound slabs allocated, and handed out again once their writes completed (see slab-pool.ts). */
  slabsAllocated: number
  slabsReused: number
}

// ---------------------------------------------------------------- helpers

/** Parse `host:port` or `[ipv6]:port`. Throws ERR_CONFIG_INVALID. */
export function parseAuthority(authority: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(authority)
  const port = m === null ? NaN : Number(m[3])
  if (m === null || !(port >= 1 && port <= 65_535)) {
    throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid authority ${JSON.stringify(authority)}: expected host:port`, {
      authority,
      issues: [`authority must be host:port with a port in 1..65535 (got ${JSON.stringify(authority)})`],
    })
  }
  return { host: m[1] ?? m[2]!, port }
}

/** `host:port`, bracketing IPv6 hosts. */
export function formatAuthority(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/**
 * Reconnect delay for the given attempt (0-based): exponential from `minMs`,
 * capped at `maxMs`, with "equal jitter" (uniform in [d/2, d]) so nodes that
 * lost the same peer do not redial in lockstep.
 */
export function reconnectDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30))
  return Math.round(d / 2 + (random() * d) / 2)
}

interface ResolvedOptions {
  clusterName: string
  nodeId: string
  secret: Uint8Array
  events: EventStream
  host: string
  port: number
  advertisedAuthority: string | undefined
  maxFrameBytes: number
  handshakeTimeoutMs: number
  reconnectMinDelayMs: number
  reconnectMaxDelayMs: number
  maxBufferedBytes: number
  maxPendingHandshakes: number
  accept: TcpTransportOptions['accept']
  welcome: TcpTransportOptions['welcome']
  schemas: SchemaVersions | undefined
  tls: TcpTransportTlsOptions | undefined
  controlLane: boolean
}

function resolveOptions(o: TcpTransportOptions): ResolvedOptions {
  const issues: string[] = []
  const name = (path: string, v: unknown): void => {
    if (typeof v !== 'string' || v.length === 0 || utf8Length(v) > MAX_HELLO_STRING_BYTES) {
      issues.push(`${path} must be a non-empty string of at most ${MAX_HELLO_STRING_BYTES} bytes (got ${JSON.stringify(v)})`)
    }
  }
  const int = (path: string, v: unknown, min: number, max: number): void => {
    if (v !== undefined && !(Number.isInteger(v) && (v as number) >= min && (v as number) <= max)) {
      issues.push(`${path} must be an integer in ${min}..${max} (got ${JSON.stringify(v)})`)
    }
  }
  name('clusterName', o.clusterName)
  name('nodeId', o.nodeId)
  const secret = typeof o.secret === 'string' ? new TextEncoder().encode(o.secret) : o.secret
  if (!(secret instanceof Uint8Array) || secret.length === 0) issues.push('secret must be a non-empty string or Uint8Array')
  if (typeof o.events !== 'object' || o.events === null || typeof (o.events as { publish?: unknown }).publish !== 'function') {
    issues.push('events must be an EventStream')
  }
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host.length === 0)) issues.push(`host must be a non-empty string (got ${JSON.stringify(o.host)})`)
  int('port', o.port, 0, 65_535)
  if (o.advertisedAuthority !== undefined) {
    try {
      parseAuthority(o.advertisedAuthority)
      name('advertisedAuthority', o.advertisedAuthority)
    } catch (e) {
      issues.push(...((e as GrainClusterError).details.issues ?? []).map((s) => `advertisedAuthority: ${s}`))
    }
  }
  int('maxFrameBytes', o.maxFrameBytes, MAX_UNAUTHENTICATED_FRAME_BYTES, MAX_ENCODABLE_FRAME_BYTES)
  int('handshakeTimeoutMs', o.handshakeTimeoutMs, 1, 2 ** 31 - 1)
  int('reconnectMinDelayMs', o.reconnectMinDelayMs, 1, 2 ** 31 - 1)
  int('reconnectMaxDelayMs', o.reconnectMaxDelayMs, 1, 2 ** 31 - 1)
  int('maxBufferedBytes', o.maxBufferedBytes, 1, Number.MAX_SAFE_INTEGER)
  int('maxPendingHandshakes', o.maxPendingHandshakes, 1, 1_000_000)
  const minDelay = o.reconnectMinDelayMs ?? DEFAULT_RECONNECT_MIN_DELAY_MS
  const maxDelay = o.reconnectMaxDelayMs ?? Math.max(DEFAULT_RECONNECT_MAX_DELAY_MS, minDelay)
  if (maxDelay < minDelay) issues.push(`reconnectMaxDelayMs must be at least reconnectMinDelayMs (got ${maxDelay} < ${minDelay})`)
  if (o.tls !== undefined && (o.tls.key === undefined || o.tls.cert === undefined)) issues.push('tls.key and tls.cert are both required when tls is set')
  if (o.controlLane !== undefined && typeof o.controlLane !== 'boolean') issues.push(`controlLane must be a boolean (got ${JSON.stringify(o.controlLane)})`)
  if (issues.length > 0) {
    throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid transport options: ${issues.join('; ')}`, { issues })
  }
  return {
    clusterName: o.clusterName,
    nodeId: o.nodeId,
    secret,
    events: o.events,
    host: o.host ?? DEFAULT_HOST,
    port: o.port ?? 0,
    advertisedAuthority: o.advertisedAuthority,
    maxFrameBytes: o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    handshakeTimeoutMs: o.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    reconnectMinDelayMs: minDelay,
    reconnectMaxDelayMs: maxDelay,
    maxBufferedBytes: o.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
    maxPendingHandshakes: o.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES,
    accept: o.accept,
    welcome: o.welcome,
    schemas: o.schemas,
    tls: o.tls,
    controlLane: o.controlLane ?? true,
  }
}

function remoteOf(socket: net.Socket): string {
  return socket.remoteAddress === undefined ? 'unknown' : formatAuthority(socket.remoteAddress, socket.remotePort ?? 0)
}

function describeError(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code
  return code !== undefined && !e.message.includes(code) ? `${code}: ${e.message}` : e.message
}

// ---------------------------------------------------------------- connection

type ConnectionState = 'connecting' | 'handshaking' | 'established' | 'closing' | 'closed'

/** One socket and its framing, handshake and outbound batch. */
class Connection {
  state: ConnectionState
  /** Remote address as seen on the socket (captured early: it is gone after close). */
  remote: string
  handshake: Handshake | undefined
  readonly decoder = new FrameDecoder({ maxFrameBytes: MAX_UNAUTHENTICATED_FRAME_BYTES })
  /** Set once established; frozen and reused for every frame event. */
  peer: PeerIdentity | undefined
  timer: NodeJS.Timeout | undefined
  closeReason: string | undefined
  error: Error | undefined
  tcpConnected = false
  /** The failure of this connection's handshake, once one was published. */
  refusal: Extract<HandshakeResult, { ok: false }> | undefined
  /** The peer's schema versions from its ACCEPT. */
  schemas: SchemaVersions | undefined
  /** A frame was rejected on it (event already published). */
  rejected = false
  /** What it carries: set when dialed, learnt from the dialer's ACCEPT when accepted. */
  lane: ConnectionLane
  /** A control lane closed because a newer one to the same peer replaced it (no 'down' event). */
  replaced = false
  readonly onFrame: (frame: Uint8Array) => void

  /** Frames queued since the last flush. */
  readonly out: OutboundQueue

  constructor(
    readonly socket: net.Socket,
    readonly direction: ConnectionDirection,
    /** Outbound only: the authority we dialed. */
    readonly dialed: string | undefined,
    onFrame: (c: Connection, frame: Uint8Array) => void,
    slabs: SlabPool,
    lane: ConnectionLane,
  ) {
    this.lane = lane
    this.state = direction === 'inbound' ? 'handshaking' : 'connecting'
    this.remote = socket.remoteAddress === undefined ? (dialed ?? 'unknown') : remoteOf(socket)
    this.onFrame = (frame) => onFrame(this, frame)
    this.out = new OutboundQueue(slabs)
  }
}

interface Waiter {
  resolve: (peer: PeerIdentity) => void
  reject: (e: GrainClusterError) => void
}

/** See TcpTransport.bufferedBytes. */
function bufferedOf(c: Connection | undefined): number {
  if (c === undefined || c.state !== 'established' || !c.socket.writable) return -1
  return c.out.queuedBytes + c.socket.writableLength
}

interface DrainWaiter {
  atMost: number
  resolve: () => void
  timer: NodeJS.Timeout
}

type ListenerMap = { [K in TcpTransportEventName]: Array<(...args: TcpTransportEvents[K]) => void> }

// ---------------------------------------------------------------- transport

/**
 * TCP (or TLS) transport between cluster nodes. Create with
 * `TcpTransport.listen(options)`; register listeners right after the await
 * (no socket callback runs before that continuation).
 */
export class TcpTransport {
  readonly #o: ResolvedOptions
  readonly #server: net.Server
  #authority = ''
  #closed = false
  #closePromise: Promise<void> | undefined

  readonly #conns = new Set<Connection>()
  /** Outbound slabs, shared by every connection: at most 2 MiB kept for reuse. */
  readonly #slabs = new SlabPool(SLAB_BYTES, 32)
  /** Inbound connections still in the handshake (bounded by maxPendingHandshakes). */
  readonly #inboundHandshaking = new Set<Connection>()
  /** TLS only: raw sockets whose TLS handshake is still running (not yet a Connection), by remote address. */
  readonly #tlsPending = new Map<string, net.Socket>()
  /** The connection frames to a peer go out on, by peer authority. */
  readonly #active = new Map<string, Connection>()
  /** Outbound connection attempts in flight, by dialed authority. */
  readonly #dialing = new Map<string, Connection>()
  /** The control lane to a peer (see TcpTransportOptions.controlLane), by peer authority. */
  readonly #control = new Map<string, Connection>()
  /** Control lanes being dialed, redial timers and attempts, by authority. */
  readonly #controlDialing = new Map<string, Connection>()
  readonly #controlTimers = new Map<string, NodeJS.Timeout>()
  readonly #controlAttempts = new Map<string, number>()
  /** Authorities connect() was called for: kept connected until disconnect()/close(). */
  readonly #wanted = new Set<string>()
  readonly #reconnectTimers = new Map<string, NodeJS.Timeout>()
  readonly #attempts = new Map<string, number>()
  readonly #waiters = new Map<string, Waiter[]>()
  /** whenBuffered() callers, by authority: woken as writes complete and when the connection goes. */
  readonly #drainWaiters = new Map<string, DrainWaiter[]>()

  readonly #dirty = new Set<Connection>()
  #flushScheduled = false

  #listeners: ListenerMap = { frame: [], 'peer-up': [], 'peer-down': [], unsent: [] }
  readonly #stats = {
    framesIn: 0,
    bytesIn: 0,
    framesOut: 0,
    bytesOut: 0,
    framesRejected: 0,
    bytesDropped: 0,
    framesReturned: 0,
    handshakesRefused: 0,
    sendsRefused: 0,
    inboundAccepted: 0,
    dialAttempts: 0,
    dialFailures: 0,
    listenerErrors: 0,
  }

  /** Bind and listen; resolves once listening. Throws ERR_CONFIG_INVALID for bad options or a failed bind. */
  static async listen(options: TcpTransportOptions): Promise<TcpTransport> {
    const t = new TcpTransport(resolveOptions(options))
    for (const type of options.frameTypes ?? []) t.acceptFrameType(type)
    await t.#listen()
    return t
  }

  private constructor(o: ResolvedOptions) {
    this.#o = o
    const onSocket = (socket: net.Socket): void => this.#onInbound(socket)
    if (o.tls !== undefined) {
      const server = tls.createServer(
        {
          key: o.tls.key,
          cert: o.tls.cert,
          ...(o.tls.ca !== undefined ? { ca: o.tls.ca } : {}),
          requestCert: o.tls.requestCert ?? false,
          rejectUnauthorized: o.tls.rejectUnauthorized ?? true,
          handshakeTimeout: o.handshakeTimeoutMs,
        },
        onSocket,
      )
      server.on('connection', (raw: net.Socket) => {
        // Tracked so close() need not wait out the TLS handshake timeout of a half-open client.
        const key = remoteOf(raw)
        this.#tlsPending.set(key, raw)
        raw.once('close', () => {
          if (this.#tlsPending.get(key) === raw) this.#tlsPending.delete(key)
        })
      })
      server.on('tlsClientError', (err, socket) => {
        // Garbage or a plain-TCP client on a TLS port: refuse it like any other bad handshake.
        const remote = remoteOf(socket)
        this.#stats.handshakesRefused++
        this.#o.events.publish({ type: 'handshake.refused', remote, code: 'ERR_AUTHORITY_HANDSHAKE_FAILED', reason: `TLS handshake failed: ${describeError(err)}` })
      })
      this.#server = server
    } else {
      this.#server = net.createServer(onSocket)
    }
  }

  /** This node's authority: the advertised one, else `host:port` actually bound. */
  get authority(): string {
    return this.#authority
  }

  /** This incarnation's NodeId. */
  get nodeId(): string {
    return this.#o.nodeId
  }

  /** Largest frame body accepted or sent. */
  get maxFrameBytes(): number {
    return this.#o.maxFrameBytes
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed
  }

  /** Counters and gauges (a fresh snapshot per call). */
  get stats(): TcpTransportStats {
    let pending = 0
    for (const c of this.#conns) if (c.state === 'handshaking' || c.state === 'connecting') pending++
    let buffered = 0
    for (const c of this.#active.values()) buffered += Math.max(0, bufferedOf(c))
    let controlLanes = 0
    for (const c of this.#control.values()) if (c.state === 'established') controlLanes++
    return { ...this.#stats, openConnections: this.#conns.size, pendingHandshakes: pending, peers: this.#active.size, controlLanes, outboundBufferedBytes: buffered, slabsAllocated: this.#slabs.allocated, slabsReused: this.#slabs.reused }
  }

  /** Subscribe; returns the unsubscribe function. A throwing listener is counted in stats.listenerErrors, never rethrown. */
  on<K extends TcpTransportEventName>(event: K, fn: (...args: TcpTransportEvents[K]) => void): () => void {
    // Copy on write: emitting iterates a snapshot, so listeners may unsubscribe while called.
    const list = this.#listeners[event] as Array<(...args: TcpTransportEvents[K]) => void>
    ;(this.#listeners as Record<K, unknown>)[event] = [...list, fn]
    return () => {
      const now = this.#listeners[event] as Array<(...args: TcpTransportEvents[K]) => void>
      ;(this.#listeners as Record<K, unknown>)[event] = now.filter((f) => f !== fn)
    }
  }

  /**
   * Declare that a layer handles frames whose first byte is `type`. Once
   * any type is declared, an established connection that delivers a frame
   * of an undeclared type is cut (frame-rejected, ERR_FRAME_MALFORMED): on
   * an authenticated stream that means its framing was lost, and every
   * length read after it is garbage that could swallow real frames unseen.
   */
  acceptFrameType(type: number): void {
    this.#frameTypes[type & 0xff] = 1
    this.#anyFrameType = true
  }
  readonly #frameTypes = new Uint8Array(256)
  #anyFrameType = false

  /**
   * Stop (paused = true) or resume reading every connection established with
   * `authority`. While a connection is not read, the kernel's buffers fill
   * and TCP flow control holds the sender back. The frames left in a chunk
   * already read wait too (from the next frame on: this may be called from
   * a frame listener), so a pause holds the reader to what it has taken.
   */
  setReadPaused(authority: string, paused: boolean): void {
    for (const c of this.#conns) {
      // The control lane is always read: its heartbeats are what tells a pause from a failure.
      if (c.peer?.authority !== authority || c.state === 'closed' || c.lane === 'control') continue
      if (paused) {
        c.decoder.pause()
        c.socket.pause()
        continue
      }
      c.socket.resume()
      try {
        c.decoder.resume(c.onFrame)
      } catch (e) {
        this.#rejectFrame(c, e)
      }
    }
  }

  /** True when a control lane to `authority` is established (heartbeats then skip the data connection). */
  hasControlLane(authority: string): boolean {
    return this.#control.get(authority)?.state === 'established'
  }

  /** True when an established connection to `authority` can take frames. */
  isConnected(authority: string): boolean {
    const c = this.#active.get(authority)
    return c?.state === 'established' && c.socket.writable
  }

  /** Established peers and the direction of the connection kept for each. */
  peers(): PeerConnectionInfo[] {
    const out: PeerConnectionInfo[] = []
    for (const c of this.#active.values()) if (c.peer !== undefined) out.push({ ...c.peer, direction: c.direction, ...(c.schemas === undefined ? {} : { schemas: c.schemas }) })
    return out
  }

  /**
   * Keep a connection to `authority` (idempotent). Resolves with the peer
   * once a connection (either direction) is established and writable (not
   * one the peer already ended); rejects with the
   * handshake error if the handshake is refused (either side), with
   * ERR_AUTHORITY_UNREACHABLE after `timeoutMs` (if given), on disconnect()
   * or close(), and with ERR_CONFIG_INVALID for a malformed authority.
   * Redialing goes on after a rejection until disconnect()/close(). The
   * returned promise may be ignored: its rejection is never unhandled.
   */
  connect(authority: string, options: { timeoutMs?: number } = {}): Promise<PeerIdentity> {
    const p = this.#connect(authority, options.timeoutMs)
    p.catch(() => {})
    return p
  }

  #connect(authority: string, timeoutMs: number | undefined): Promise<PeerIdentity> {
    if (this.#closed) return Promise.reject(this.#unreachable(authority, 'the transport is closed'))
    try {
      parseAuthority(authority)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e, 'ERR_CONFIG_INVALID'))
    }
    if (authority === this.#authority) {
      return Promise.reject(new GrainClusterError('ERR_CONFIG_INVALID', `cannot connect to this node's own authority ${authority}`, { authority }))
    }
    this.#wanted.add(authority)
    const active = this.#active.get(authority)
    // Not one the peer already ended: the caller wants to write, so it waits for the next one.
    if (active?.peer !== undefined && active.state === 'established' && active.socket.writable) return Promise.resolve(active.peer)
    const p = new Promise<PeerIdentity>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const w: Waiter = {
        resolve: (peer) => {
          clearTimeout(timer)
          resolve(peer)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      let list = this.#waiters.get(authority)
      if (list === undefined) this.#waiters.set(authority, (list = []))
      list.push(w)
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const l = this.#waiters.get(authority)
          if (l !== undefined) {
            const i = l.indexOf(w)
            if (i >= 0) l.splice(i, 1)
            if (l.length === 0) this.#waiters.delete(authority)
          }
          w.reject(this.#unreachable(authority, `no connection to ${authority} within ${timeoutMs} ms`))
        }, timeoutMs)
      }
    })
    if (!this.#dialing.has(authority) && !this.#reconnectTimers.has(authority)) this.#dial(authority)
    return p
  }

  /**
   * Dial `authority` now, skipping the backoff of a pending redial: for a
   * caller that has news the wait does not know about (membership checking
   * who listens at an address another process claims). Only for an
   * authority already wanted (connect()) with no connection up or dialing;
   * returns whether it dialed.
   */
  redialNow(authority: string): boolean {
    if (this.#closed || !this.#wanted.has(authority) || this.#active.has(authority) || this.#dialing.has(authority)) return false
    const t = this.#reconnectTimers.get(authority)
    if (t !== undefined) clearTimeout(t)
    this.#reconnectTimers.delete(authority)
    this.#dial(authority)
    return true
  }

  /** Stop keeping `authority` connected: cancels redials and ends its connection (peer-down follows). */
  disconnect(authority: string, reason = 'disconnected locally'): void {
    this.#wanted.delete(authority)
    this.#attempts.delete(authority)
    const t = this.#reconnectTimers.get(authority)
    if (t !== undefined) clearTimeout(t)
    this.#reconnectTimers.delete(authority)
    this.#rejectWaiters(authority, this.#unreachable(authority, reason))
    const dialing = this.#dialing.get(authority)
    if (dialing !== undefined) this.#destroy(dialing, reason)
    const active = this.#active.get(authority)
    if (active !== undefined) this.#closeGracefully(active, reason)
    this.#dropControl(authority, `data connection down: ${reason}`)
  }

  /**
   * Queue `frame` for `authority`. Returns false, and queues nothing, when
   * no established connection to it exists or its outbound buffer is over
   * maxBufferedBytes (backpressure); the caller (association layer) defers
   * or drops. Throws ERR_FRAME_TOO_LARGE for a frame over maxFrameBytes:
   * that is the caller's bug, and the peer would cut the connection for it.
   *
   * `pastLimit`: queue it even over maxBufferedBytes. For the few frames a
   * layer cannot afford to have refused while the connection is up and
   * has no other way to retry (state hand-off): under a flood of tells the
   * buffer sits at its limit, and a refused hand-off request would only be
   * asked again after a reconnect that never comes.
   */
  send(authority: string, frame: Uint8Array, pastLimit = false): boolean {
    const c = this.#active.get(authority)
    // A socket the peer already ended would drop the frames at flush time:
    // refuse them now so the caller keeps them for the next connection.
    if (c === undefined || c.state !== 'established' || !c.socket.writable) return false
    return this.#enqueue(c, authority, frame, pastLimit)
  }

  /**
   * As send(), on the control lane to `authority` when one is established,
   * else on the data connection. For frames that must not wait behind data
   * or a read-paused connection (heartbeats), and that may be lost: frames
   * still queued when a control lane closes are dropped, not handed back.
   */
  sendControl(authority: string, frame: Uint8Array): boolean {
    const c = this.#control.get(authority)
    if (c === undefined || c.state !== 'established' || !c.socket.writable) return this.send(authority, frame)
    return this.#enqueue(c, authority, frame, false)
  }

  #enqueue(c: Connection, authority: string, frame: Uint8Array, pastLimit: boolean): boolean {
    if (frame.length > this.#o.maxFrameBytes) {
      throw new GrainClusterError('ERR_FRAME_TOO_LARGE', `frame of ${frame.length} bytes exceeds the limit of ${this.#o.maxFrameBytes} bytes`, {
        authority,
        size: frame.length,
        limit: this.#o.maxFrameBytes,
      })
    }
    if (!pastLimit && c.out.queuedBytes + c.socket.writableLength > this.#o.maxBufferedBytes) {
      this.#stats.sendsRefused++
      return false
    }
    c.out.enqueue(frame)
    this.#stats.framesOut++
    this.#dirty.add(c)
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.#flushAll)
    }
    return true
  }

  /**
   * Bytes waiting to go out to `authority`: queued this turn plus what the
   * socket still holds (not yet taken by the kernel). -1 without an
   * established, writable connection.
   */
  bufferedBytes(authority: string): number {
    return bufferedOf(this.#active.get(authority))
  }

  /**
   * Resolves once at most `atMost` bytes wait for `authority` (looked at as
   * its writes complete), once its connection goes away, or after
   * `timeoutMs`, whichever comes first: the caller looks again.
   */
  whenBuffered(authority: string, atMost: number, timeoutMs: number): Promise<void> {
    const b = this.bufferedBytes(authority)
    if (b <= atMost) return Promise.resolve()
    return new Promise((resolve) => {
      let list = this.#drainWaiters.get(authority)
      if (list === undefined) this.#drainWaiters.set(authority, (list = []))
      const w: DrainWaiter = {
        atMost,
        resolve,
        timer: setTimeout(() => {
          const l = this.#drainWaiters.get(authority)
          const i = l?.indexOf(w) ?? -1
          if (i >= 0) l!.splice(i, 1)
          if (l?.length === 0) this.#drainWaiters.delete(authority)
          resolve()
        }, timeoutMs),
      }
      w.timer.unref()
      list.push(w)
    })
  }

  /** Wake the whenBuffered() callers of `authority` whose mark is met (all of them when `all`). */
  #wakeDrainWaiters(authority: string, all: boolean): void {
    const list = this.#drainWaiters.get(authority)
    if (list === undefined) return
    const b = all ? -1 : this.bufferedBytes(authority)
    const keep: DrainWaiter[] = []
    for (const w of list) {
      if (b <= w.atMost) {
        clearTimeout(w.timer)
        w.resolve()
      } else keep.push(w)
    }
    if (keep.length === 0) this.#drainWaiters.delete(authority)
    else this.#drainWaiters.set(authority, keep)
  }

  /** End every connection and the server, cancel redials; resolves when all sockets are closed. */
  close(): Promise<void> {
    this.#closePromise ??= this.#close()
    return this.#closePromise
  }

  async #close(): Promise<void> {
    this.#closed = true
    for (const t of this.#reconnectTimers.values()) clearTimeout(t)
    this.#reconnectTimers.clear()
    for (const t of this.#controlTimers.values()) clearTimeout(t)
    this.#controlTimers.clear()
    for (const authority of [...this.#waiters.keys()]) this.#rejectWaiters(authority, this.#unreachable(authority, 'the transport is closed'))
    for (const authority of [...this.#drainWaiters.keys()]) this.#wakeDrainWaiters(authority, true)
    this.#flushAll()
    const closed: Array<Promise<unknown>> = []
    for (const c of this.#conns) {
      if (c.state !== 'closed') closed.push(new Promise((r) => c.socket.once('close', r)))
      if (c.state === 'established') this.#closeGracefully(c, 'the transport is closed')
      else this.#destroy(c, 'the transport is closed')
    }
    for (const raw of this.#tlsPending.values()) raw.destroy()
    closed.push(new Promise<void>((r) => this.#server.close(() => r())))
    await Promise.all(closed)
  }

  // ---------------------------------------------------------------- listening and dialing

  async #listen(): Promise<void> {
    const o = this.#o
    const server = this.#server
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        reject(toGrainClusterError(e, 'ERR_CONFIG_INVALID', { authority: formatAuthority(o.host, o.port), issues: [`listen on ${formatAuthority(o.host, o.port)} failed: ${describeError(e)}`] }))
      }
      server.once('error', onError)
      server.listen(o.port, o.host, () => {
        server.off('error', onError)
        resolve()
      })
    })
    // Later server errors (e.g. EMFILE on accept) must not crash the process; connections carry on.
    server.on('error', () => {})
    const addr = server.address() as net.AddressInfo
    this.#authority = o.advertisedAuthority ?? formatAuthority(o.host, addr.port)
  }

  #onInbound(socket: net.Socket): void {
    this.#stats.inboundAccepted++
    this.#tlsPending.delete(remoteOf(socket))
    if (this.#closed) {
      socket.destroy()
      return
    }
    if (this.#inboundHandshaking.size >= this.#o.maxPendingHandshakes) {
      const remote = remoteOf(socket)
      socket.on('error', () => {})
      socket.destroy()
      this.#stats.handshakesRefused++
      this.#o.events.publish({ type: 'handshake.refused', remote, code: 'ERR_AUTHORITY_HANDSHAKE_FAILED', reason: `too many pending handshakes (limit ${this.#o.maxPendingHandshakes})` })
      return
    }
    const c = this.#track(socket, 'inbound', undefined)
    c.tcpConnected = true
    this.#inboundHandshaking.add(c)
    this.#startHandshake(c)
  }

  #dial(authority: string, lane: ConnectionLane = 'data'): void {
    const { host, port } = parseAuthority(authority)
    this.#stats.dialAttempts++
    const t = this.#o.tls
    const socket =
      t === undefined
        ? net.connect({ host, port })
        : tls.connect({
            host,
            port,
            key: t.key,
            cert: t.cert,
            ...(t.ca !== undefined ? { ca: t.ca } : {}),
            rejectUnauthorized: t.rejectUnauthorized ?? true,
            // SNI must be a host name, never an IP address.
            ...(net.isIP(host) === 0 ? { servername: host } : {}),
          })
    const c = this.#track(socket, 'outbound', authority, lane)
    ;(lane === 'control' ? this.#controlDialing : this.#dialing).set(authority, c)
    socket.once('connect', () => {
      c.tcpConnected = true
      if (socket.remoteAddress !== undefined) c.remote = formatAuthority(socket.remoteAddress, socket.remotePort ?? port)
    })
    socket.once(t === undefined ? 'connect' : 'secureConnect', () => {
      if (c.state === 'connecting') this.#startHandshake(c)
    })
  }

  /** Wire a socket's events to the connection logic. */
  #track(socket: net.Socket, direction: ConnectionDirection, dialed: string | undefined, lane: ConnectionLane = 'data'): Connection {
    const c = new Connection(socket, direction, dialed, (conn, frame) => this.#onFrame(conn, frame), this.#slabs, lane)
    this.#conns.add(c)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.#onData(c, chunk))
    socket.on('error', (e) => {
      c.error ??= e
    })
    socket.on('close', () => this.#onClose(c))
    c.timer = setTimeout(() => this.#onHandshakeTimeout(c), this.#o.handshakeTimeoutMs)
    return c
  }

  #startHandshake(c: Connection): void {
    const o = this.#o
    c.state = 'handshaking'
    const direction = c.direction
    const accept = o.accept
    // A control lane's ACCEPT needs no welcome (nothing reads it); the acceptor cannot tell yet.
    const welcome = c.lane === 'control' ? undefined : o.welcome
    c.handshake = new Handshake({
      role: direction === 'outbound' ? 'dialer' : 'acceptor',
      clusterName: o.clusterName,
      authority: this.#authority,
      nodeId: o.nodeId,
      nonce: randomBytes(NONCE_BYTES),
      mac: (input) => createHmac('sha256', o.secret).update(input).digest(),
      macEquals: (a, b) => a.length === b.length && timingSafeEqual(a, b),
      ...(c.dialed !== undefined ? { expectedAuthority: c.dialed } : {}),
      ...(accept !== undefined ? { accept: (peer: PeerIdentity) => accept(peer, direction) } : {}),
      ...(welcome !== undefined ? { welcome: (peer: PeerIdentity) => welcome(peer, direction) } : {}),
      ...(o.schemas !== undefined ? { schemas: o.schemas } : {}),
      ...(c.lane === 'control' ? { lane: 'control' as const } : {}),
    })
    this.#apply(c, c.handshake.start())
  }

  // ---------------------------------------------------------------- reading

  #onData(c: Connection, chunk: Buffer): void {
    this.#stats.bytesIn += chunk.length
    try {
      c.decoder.push(chunk, c.onFrame)
    } catch (e) {
      this.#rejectFrame(c, e)
    }
  }

  #onFrame(c: Connection, frame: Uint8Array): void {
    const peer = c.peer
    if (peer !== undefined) {
      // Established (possibly the losing duplicate, still draining): an authenticated frame.
      if (this.#closed) return
      if (this.#anyFrameType && (frame.length === 0 || this.#frameTypes[frame[0]!] === 0)) {
        const what = frame.length === 0 ? 'an empty frame' : `a frame of unknown type 0x${frame[0]!.toString(16).padStart(2, '0')} (${frame.length} bytes)`
        this.#rejectFrame(c, new GrainClusterError('ERR_FRAME_MALFORMED', `${what}: the stream's framing is lost`, { authority: peer.authority }))
        return
      }
      this.#stats.framesIn++
      const ls = this.#listeners.frame
      for (let i = 0; i < ls.length; i++) {
        try {
          ls[i]!(peer, frame)
        } catch {
          this.#stats.listenerErrors++
        }
      }
      return
    }
    if (c.state !== 'handshaking' || c.handshake === undefined) return
    this.#apply(c, c.handshake.receive(frame))
  }

  /** Write what the handshake produced and act on its outcome. */
  #apply(c: Connection, step: HandshakeStep): void {
    const socket = c.socket
    for (const m of step.send) {
      if (socket.destroyed || !socket.writable) break
      const framed = encodeFrame(m)
      this.#stats.bytesOut += framed.length
      socket.write(framed)
    }
    // Once the peer proved the secret, its ACCEPT and later frames may use the full limit.
    if (c.handshake?.peerVerified === true) c.decoder.maxFrameBytes = this.#o.maxFrameBytes
    const r = step.result
    if (r === undefined) return
    if (r.ok) {
      c.schemas = r.schemas
      // The dialer's ACCEPT names the lane.
      if (c.direction === 'inbound') c.lane = r.lane
      this.#onEstablished(c, Object.freeze({ authority: r.peer.authority, nodeId: r.peer.nodeId }), r.welcome)
    }
    else this.#onHandshakeFailed(c, r)
  }

  #onHandshakeTimeout(c: Connection): void {
    c.timer = undefined
    if (c.state === 'connecting') {
      this.#destroy(c, `connect to ${c.dialed ?? c.remote} timed out after ${this.#o.handshakeTimeoutMs} ms`)
    } else if (c.state === 'handshaking' && c.handshake !== undefined) {
      this.#apply(c, c.handshake.expire(this.#o.handshakeTimeoutMs))
    }
  }

  #onHandshakeFailed(c: Connection, r: Extract<HandshakeResult, { ok: false }>): void {
    this.#inboundHandshaking.delete(c)
    clearTimeout(c.timer)
    c.timer = undefined
    c.refusal = r
    c.decoder.close()
    this.#stats.handshakesRefused++
    const claimed = c.handshake?.claimedPeer?.authority ?? c.dialed
    this.#o.events.publish({
      type: 'handshake.refused',
      remote: c.remote,
      ...(claimed !== undefined ? { claimedAuthority: claimed } : {}),
      code: r.error.code,
      reason: r.error.reason,
    })
    if (c.dialed !== undefined && c.lane === 'data') this.#rejectWaiters(c.dialed, r.error)
    if (r.by === 'local') this.#endThenDestroy(c, r.error.reason)
    else this.#destroy(c, r.error.reason)
  }

  #rejectFrame(c: Connection, e: unknown): void {
    if (c.state === 'closed' || c.rejected) return
    const err = toGrainClusterError(e, 'ERR_FRAME_MALFORMED', { authority: c.peer?.authority ?? c.dialed ?? c.remote })
    c.rejected = true
    this.#stats.framesRejected++
    this.#o.events.publish({ type: 'transport.frame-rejected', remote: c.remote, code: err.code, reason: err.reason })
    this.#destroy(c, `frame rejected: ${err.reason}`)
  }

  // ---------------------------------------------------------------- connection lifecycle

  #onEstablished(c: Connection, peer: PeerIdentity, welcome: Uint8Array): void {
    this.#inboundHandshaking.delete(c)
    clearTimeout(c.timer)
    c.timer = undefined
    c.state = 'established'
    c.peer = peer
    if (c.dialed !== undefined && this.#dialing.get(c.dialed) === c) this.#dialing.delete(c.dialed)
    if (this.#closed) {
      this.#closeGracefully(c, 'the transport is closed')
      return
    }
    if (c.lane === 'control') {
      this.#onControlEstablished(c, peer)
      return
    }
    const existing = this.#active.get(peer.authority)
    if (existing === undefined || existing.peer === undefined) {
      this.#activate(c, welcome)
      return
    }
    if (existing.peer.nodeId !== peer.nodeId) {
      // A new incarnation at the same authority: the old process is gone, so is its connection.
      // (Membership refuses conflicts through the accept hook before we get here.)
      const reason = `superseded by a new incarnation ${peer.nodeId} at ${peer.authority}`
      this.#active.delete(peer.authority)
      this.#peerDown(existing, reason)
      this.#closeGracefully(existing, reason)
      this.#activate(c, welcome)
      return
    }
    // Same peer twice (simultaneous dial): both sides keep the connection dialed by the lower NodeId.
    const reason = `duplicate connection to ${peer.authority}: keeping the one dialed by the lower NodeId`
    if (this.#prefer(c, existing)) {
      this.#active.set(peer.authority, c)
      this.#closeGracefully(existing, reason)
      // Callers of connect() may be waiting because the other one stopped being writable.
      this.#resolveWaiters(peer)
    } else {
      this.#closeGracefully(c, reason)
    }
  }

  /** True if connection `a` should be kept over `b` (same peer, both established). */
  #prefer(a: Connection, b: Connection): boolean {
    const dialer = (c: Connection): string => (c.direction === 'outbound' ? this.#o.nodeId : c.peer!.nodeId)
    const da = dialer(a)
    const db = dialer(b)
    // Same dialer can only happen if one side dialed twice; keep the newer (a).
    return da === db || da < db
  }

  #activate(c: Connection, welcome: Uint8Array): void {
    const peer = c.peer!
    this.#active.set(peer.authority, c)
    this.#attempts.delete(peer.authority)
    const t = this.#reconnectTimers.get(peer.authority)
    if (t !== undefined) clearTimeout(t)
    this.#reconnectTimers.delete(peer.authority)
    this.#o.events.publish({ type: 'transport.connected', authority: peer.authority, nodeId: peer.nodeId, direction: c.direction })
    this.#emit('peer-up', peer, { direction: c.direction, welcome, ...(c.schemas === undefined ? {} : { schemas: c.schemas }) })
    this.#resolveWaiters(peer)
    this.#ensureControl(peer.authority)
  }

  // ---------------------------------------------------------------- control lane

  /**
   * Dial the control lane to `authority` if this side is the one to (the
   * lower NodeId, so the two sides never race to open two) and none is up,
   * dialing or waiting for a redial. Akka's Artery keeps its control stream
   * apart from ordinary messages for the same reason: heartbeats that queue
   * behind a flood, or behind a connection inbound flow control stopped
   * reading, make a busy peer look dead.
   */
  #ensureControl(authority: string): void {
    if (!this.#dialsControl(authority) || this.#control.has(authority) || this.#controlDialing.has(authority) || this.#controlTimers.has(authority)) return
    this.#dial(authority, 'control')
  }

  /** This side opens the control lane to `authority`: lanes on, the data connection up, and this node's NodeId the lower. */
  #dialsControl(authority: string): boolean {
    if (!this.#o.controlLane || this.#closed) return false
    const data = this.#active.get(authority)
    return data?.peer !== undefined && data.state === 'established' && this.#o.nodeId < data.peer.nodeId
  }

  #onControlEstablished(c: Connection, peer: PeerIdentity): void {
    if (c.dialed !== undefined && this.#controlDialing.get(c.dialed) === c) this.#controlDialing.delete(c.dialed)
    const old = this.#control.get(peer.authority)
    this.#control.set(peer.authority, c)
    this.#controlAttempts.delete(peer.authority)
    // One lane per peer: a newer one (the peer redialed, or restarted) replaces the old.
    if (old !== undefined && old !== c) {
      old.replaced = true
      this.#closeGracefully(old, `control lane to ${peer.authority} replaced by a newer one`)
    }
    this.#o.events.publish({ type: 'transport.control-lane', authority: peer.authority, nodeId: peer.nodeId, state: 'up', reason: c.direction === 'outbound' ? 'dialed by this node' : 'dialed by the peer' })
  }

  /** A control lane closed (or never came up): redial it, with backoff, while its data connection lasts. */
  #onControlClosed(c: Connection): void {
    const authority = c.peer?.authority ?? c.dialed
    if (c.peer !== undefined && !c.replaced) {
      const reason = c.closeReason ?? (c.error !== undefined ? `connection lost: ${describeError(c.error)}` : 'closed by the peer')
      this.#o.events.publish({ type: 'transport.control-lane', authority: c.peer.authority, nodeId: c.peer.nodeId, state: 'down', reason })
    }
    if (c.peer !== undefined && this.#control.get(c.peer.authority) === c) this.#control.delete(c.peer.authority)
    if (c.dialed !== undefined && this.#controlDialing.get(c.dialed) === c) this.#controlDialing.delete(c.dialed)
    if (authority !== undefined && this.#dialsControl(authority)) this.#retryLater(this.#controlTimers, this.#controlAttempts, authority, false, () => this.#ensureControl(authority))
  }

  /** The data connection to `authority` went (or is going) away: its control lane goes with it. */
  #dropControl(authority: string, reason: string): void {
    const t = this.#controlTimers.get(authority)
    if (t !== undefined) clearTimeout(t)
    this.#controlTimers.delete(authority)
    this.#controlAttempts.delete(authority)
    const dialing = this.#controlDialing.get(authority)
    this.#controlDialing.delete(authority)
    if (dialing !== undefined) this.#destroy(dialing, reason)
    const ctl = this.#control.get(authority)
    this.#control.delete(authority)
    if (ctl !== undefined) this.#closeGracefully(ctl, reason)
  }

  #resolveWaiters(peer: PeerIdentity): void {
    const waiters = this.#waiters.get(peer.authority)
    this.#waiters.delete(peer.authority)
    if (waiters !== undefined) for (const w of waiters) w.resolve(peer)
  }

  #peerDown(c: Connection, reason: string): void {
    const peer = c.peer!
    this.#dropControl(peer.authority, `data connection down: ${reason}`)
    this.#o.events.publish({ type: 'transport.disconnected', authority: peer.authority, reason })
    this.#emit('peer-down', peer, reason)
    this.#wakeDrainWaiters(peer.authority, true)
  }

  #onClose(c: Connection): void {
    const prev = c.state
    c.state = 'closed'
    clearTimeout(c.timer)
    c.timer = undefined
    this.#conns.delete(c)
    this.#inboundHandshaking.delete(c)
    this.#dirty.delete(c)
    // Closed between a send() and the flush (the peer reset it, or it was destroyed).
    this.#dropQueued(c)
    const partial = c.decoder.partial
    c.decoder.close()
    const reason =
      c.closeReason ??
      (c.error !== undefined ? `connection lost: ${describeError(c.error)}` : 'connection closed by the peer')

    const peer = c.peer
    if (peer !== undefined && this.#active.get(peer.authority) === c) {
      this.#active.delete(peer.authority)
      if (partial !== undefined && !c.rejected && !this.#closed) {
        this.#stats.framesRejected++
        this.#o.events.publish({
          type: 'transport.frame-rejected',
          remote: c.remote,
          code: 'ERR_FRAME_MALFORMED',
          reason: `connection closed mid-frame (${partial.received} of ${partial.expected ?? 'at least 4'} bytes)`,
        })
      }
      this.#peerDown(c, this.#closed ? 'the transport is closed' : reason)
    } else if (prev === 'handshaking' && c.refusal === undefined && !c.rejected && !this.#closed && c.closeReason === undefined) {
      // The peer vanished (or sent part of a frame) before finishing the handshake.
      this.#stats.handshakesRefused++
      const claimed = c.handshake?.claimedPeer?.authority ?? c.dialed
      const mid = partial === undefined ? '' : ` mid-frame (${partial.received} of ${partial.expected ?? 'at least 4'} bytes)`
      this.#o.events.publish({
        type: 'handshake.refused',
        remote: c.remote,
        ...(claimed !== undefined ? { claimedAuthority: claimed } : {}),
        code: partial === undefined ? 'ERR_AUTHORITY_HANDSHAKE_FAILED' : 'ERR_FRAME_MALFORMED',
        reason: `connection closed before the handshake completed${mid}${c.error !== undefined ? `: ${describeError(c.error)}` : ''}`,
      })
    } else if (prev === 'connecting') {
      this.#stats.dialFailures++
      if (c.tcpConnected && this.#o.tls !== undefined && !this.#closed) {
        // TCP came up but TLS did not: an authentication failure worth an event, not a silent retry.
        this.#stats.handshakesRefused++
        this.#o.events.publish({
          type: 'handshake.refused',
          remote: c.remote,
          ...(c.dialed !== undefined ? { claimedAuthority: c.dialed } : {}),
          code: 'ERR_AUTHORITY_HANDSHAKE_FAILED',
          reason: `TLS handshake failed${c.error !== undefined ? `: ${describeError(c.error)}` : ''}`,
        })
      }
    }

    if (c.lane === 'control') {
      this.#onControlClosed(c)
      return
    }
    if (c.dialed !== undefined && this.#dialing.get(c.dialed) === c) this.#dialing.delete(c.dialed)
    // An authority conflict is a refusal that clears itself (the old incarnation
    // is being removed), so it redials on the normal backoff, not the longest.
    const refused = c.refusal !== undefined && c.refusal.kind !== 'timeout' && c.refusal.error.code !== 'ERR_AUTHORITY_CONFLICT'
    for (const authority of [c.dialed, peer?.authority]) {
      if (authority !== undefined) this.#maybeRedial(authority, refused)
    }
  }

  #maybeRedial(authority: string, refused: boolean): void {
    if (this.#closed || !this.#wanted.has(authority) || this.#active.has(authority) || this.#dialing.has(authority)) return
    this.#retryLater(this.#reconnectTimers, this.#attempts, authority, refused, () => {
      if (!this.#closed && this.#wanted.has(authority) && !this.#active.has(authority) && !this.#dialing.has(authority)) this.#dial(authority)
    })
  }

  /**
   * Run `retry` after the backoff of `authority`'s next attempt (counted in
   * `attempts`), unless a timer in `timers` already waits for it; the timer
   * stays in `timers` until it fires. Data connections and control lanes
   * each keep their own pair.
   */
  #retryLater(timers: Map<string, NodeJS.Timeout>, attempts: Map<string, number>, authority: string, refused: boolean, retry: () => void): void {
    if (timers.has(authority)) return
    const o = this.#o
    const attempt = attempts.get(authority) ?? 0
    attempts.set(authority, attempt + 1)
    // After a refusal, wait the longest delay: retrying a misconfigured peer quickly only floods its events.
    const delay = reconnectDelayMs(refused ? 30 : attempt, o.reconnectMinDelayMs, o.reconnectMaxDelayMs)
    const timer = setTimeout(() => {
      timers.delete(authority)
      retry()
    }, delay)
    timer.unref()
    timers.set(authority, timer)
  }

  /** Flush, send FIN, and destroy if the peer has not closed within the grace period. */
  #closeGracefully(c: Connection, reason: string): void {
    if (c.state === 'closing' || c.state === 'closed') return
    c.state = 'closing'
    c.closeReason ??= reason
    this.#flush(c)
    this.#endThenDestroy(c, reason)
  }

  #endThenDestroy(c: Connection, reason: string): void {
    if (c.state !== 'closed') c.state = 'closing'
    c.closeReason ??= reason
    clearTimeout(c.timer)
    c.socket.end()
    c.timer = setTimeout(() => c.socket.destroy(), CLOSE_GRACE_MS)
    c.timer.unref()
  }

  #destroy(c: Connection, reason: string): void {
    if (c.state === 'closed') return
    c.state = 'closing'
    c.closeReason ??= reason
    c.decoder.close()
    c.socket.destroy()
  }

  // ---------------------------------------------------------------- writing

  /**
   * Called at the start of every flush, before the queued frames are
   * written: a layer that gathers frames of its own (tell batches) hands
   * them over here, so they leave in the same write.
   */
  beforeFlush: (() => void) | undefined

  /** Make sure a flush runs at the end of this event-loop turn (see beforeFlush). */
  requestFlush(): void {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.#flushAll)
    }
  }

  readonly #flushAll = (): void => {
    // Still "scheduled" while beforeFlush sends: its frames join this flush.
    this.beforeFlush?.()
    this.#flushScheduled = false
    for (const c of this.#dirty) this.#flush(c)
    this.#dirty.clear()
  }

  /** Frames accepted by send() that can no longer be written: back to the layer above, else dropped, never silently. */
  #dropQueued(c: Connection): void {
    const lost = c.out.queuedBytes
    if (lost === 0) return
    const { chunks, slabs } = c.out.take()
    if (c.lane === 'control') {
      // Heartbeats: repeated by design, and stale once late. Not handed back to the data layers.
      c.out.release(slabs)
      this.#stats.bytesDropped += lost
      return
    }
    const peer = c.peer
    // Copied out before the slabs are released.
    const frames = peer !== undefined && this.#listeners.unsent.length > 0 ? framesOf(chunks) : undefined
    c.out.release(slabs)
    if (frames !== undefined && peer !== undefined) {
      this.#stats.framesReturned += frames.length
      this.#emit('unsent', peer, frames)
      return
    }
    this.#stats.bytesDropped += lost
    this.#o.events.publish({
      type: 'transport.frame-rejected',
      remote: peer?.authority ?? c.dialed ?? 'unknown',
      code: 'ERR_AUTHORITY_UNREACHABLE',
      reason: `${lost} queued bytes were not sent: the connection closed first`,
    })
  }

  #flush(c: Connection): void {
    const socket = c.socket
    if (socket.destroyed || !socket.writable) {
      this.#dropQueued(c)
      return
    }
    const { chunks, slabs } = c.out.take()
    if (chunks.length === 0) return
    // Called once the last chunk (hence every chunk: writes complete in order) left for the kernel, or failed.
    const written = (): void => {
      c.out.release(slabs)
      const authority = c.peer?.authority
      if (authority !== undefined && this.#drainWaiters.size > 0) this.#wakeDrainWaiters(authority, false)
    }
    let bytes = 0
    if (chunks.length === 1) {
      bytes = chunks[0]!.length
      socket.write(chunks[0]!, written)
    } else {
      // One writev for everything queued this turn.
      socket.cork()
      const last = chunks.length - 1
      for (let i = 0; i < last; i++) {
        bytes += chunks[i]!.length
        socket.write(chunks[i]!)
      }
      bytes += chunks[last]!.length
      socket.write(chunks[last]!, written)
      socket.uncork()
    }
    this.#stats.bytesOut += bytes
  }

  // ---------------------------------------------------------------- misc

  #emit<K extends TcpTransportEventName>(event: K, ...args: TcpTransportEvents[K]): void {
    const ls = this.#listeners[event] as Array<(...a: TcpTransportEvents[K]) => void>
    for (const l of ls) {
      try {
        l(...args)
      } catch {
        this.#stats.listenerErrors++
      }
    }
  }

  #rejectWaiters(authority: string, e: GrainClusterError): void {
    const waiters = this.#waiters.get(authority)
    this.#waiters.delete(authority)
    if (waiters !== undefined) for (const w of waiters) w.reject(e)
  }

  #unreachable(authority: string, reason: string): GrainClusterError {
    return new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', reason, { authority })
  }
}
