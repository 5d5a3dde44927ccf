/**
 * Remote delivery (spec 2–4): grain messages between nodes, through one
 * Association per remote authority and the node transport.
 *
 *   ask(pid) ─ resolve (membership + association) ─ encode envelope once ─┐
 *            Ready:        association.send → write now, or defer (Disconnected)
 *            Unreachable:  refused, ERR_AUTHORITY_UNREACHABLE (spec 2.2)
 *            Quarantined:  refused, ERR_AUTHORITY_QUARANTINED (spec 2.3)
 *            Removed:      refused, ERR_AUTHORITY_REMOVED
 *
 *   frame [0x02][envelope] from peer A
 *     request → WorkerHost.relayRequest: the same bytes go to the owning
 *               worker (routing patched in place); the reply bytes come back
 *               and go to A through A's association
 *     reply   → WorkerHost.acceptReply settles the waiting ask
 *
 * An envelope is encoded once, by the sender; relays only patch the
 * correlation id and reply-to in place. Order per PID holds because one
 * association is FIFO and one connection is ordered.
 */

import { type ErrorDetails, GrainClusterError, toGrainClusterError } from '../common/errors.js'
import { messageTypeId, partitionOf } from '../common/hash.js'
import { formatPid, type Pid, parsePid } from '../common/pid.js'
import { TextMemo } from '../common/text-memo.js'
import type { EventStream } from '../observability/event-stream.js'
import type { MemberStatus } from '../observability/events.js'
import type { WorkerHost } from '../runtime/host/worker-host.js'
import { MAIN_THREAD } from '../wire/control.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString, type PayloadWriter } from '../wire/envelope.js'
import type { Association } from './association/association.js'
import type { AssociationRegistry } from './association/association-registry.js'
import type { DeferredMessage, OutboundMeta } from './association/deferred-queue.js'
import type { PeerIdentity, TcpTransport } from './transport/tcp-transport.js'
import { PeerSchemas, type SchemaVersions, mismatchReason, schemaVersionsOf } from './schema-negotiation.js'
import { InboundFlow } from './inbound-flow.js'
import { FRAME_TELL_BATCH, TellBatches, batchEntries, checkTellBatch } from './tell-batches.js'
import { LARGE_FRAME_BYTES } from './transport/outbound-queue.js'
import { PayloadCopy } from '../wire/payload-copy.js'
import { forEachTell } from '../wire/tell-run.js'

/** How long one connection attempt for deferred traffic may take before it counts as a failure. */
const CONNECT_TIMEOUT_MS = 2_000

/** Pause before handing a backlog to a transport that refused writes for backpressure. */
const BACKPRESSURE_RETRY_MS = 5
/** whenWritable: how often it looks again while the association (not the transport buffer) is in the way. */
const WRITABLE_RECHECK_MS = 5

const EMPTY = new Uint8Array(0)

/** First byte of a transport frame that carries one grain envelope. */
export const FRAME_ENVELOPE = 0x02

/** What remote delivery needs to know about the membership. */
export interface MembershipPort {
  /** The incarnation holding `authority`, or undefined when it is not a member. */
  memberOf(authority: string): { nodeId: string; status: MemberStatus; unreachable: boolean } | undefined
  /** Changes whenever membership or reachability does (the table digest): a verdict taken at one version holds until it moves. */
  version(): string
}

export interface RemoteEndpointOptions {
  transport: TcpTransport
  host: WorkerHost
  associations: AssociationRegistry
  membership: MembershipPort
  events: EventStream
  /** Writes one audit line (quarantine, release, reconnect). */
  audit: (line: string) => void
}

interface EncodeTarget {
  readonly kind: InternedString
  readonly partition: number
  readonly schemaVersion: number
  readonly epoch: number
  /** Membership version at which this PID last resolved 'ready': until it changes, a send asks only the association. */
  readyAt: string | undefined
  assoc: Association | undefined
}

export type ResolveResult =
  | { status: 'ready'; pid: Pid; nodeId: string }
  | { status: 'unreachable'; authority: string; reason: string }
  | { status: 'quarantined'; authority: string; reason: string; error: GrainClusterError }
  | { status: 'removed'; authority: string; reason: string }

function safeKind(r: EnvelopeReader): string {
  try {
    return r.kind()
  } catch {
    return ''
  }
}
function safeKey(r: EnvelopeReader): string {
  try {
    return r.key()
  } catch {
    return ''
  }
}

export class RemoteEndpoint {
  readonly #o: RemoteEndpointOptions
  readonly #writer = new EnvelopeWriter()
  readonly #reader = new EnvelopeReader()
  readonly #kinds = new Map<string, InternedString>()
  readonly #unsubscribe: (() => void)[] = []
  readonly #poller: ReturnType<typeof setInterval>
  #scratch = new Uint8Array(64 * 1024)
  #payloadValue: unknown
  readonly #encodePayload = (buf: Uint8Array, off: number, max: number): number => this.#o.host.codec.encodeInto(this.#payloadValue, buf, off, max)
  #closed = false
  /** Schema versions negotiated with each peer in the handshake (schema-negotiation.ts). */
  readonly #schemas: PeerSchemas
  readonly #flow: InboundFlow

  constructor(o: RemoteEndpointOptions) {
    this.#o = o
    // Pause at half the overflow bound: a pause stops at the next frame (FrameDecoder.pause), so at most
    // one more frame lands (a tell batch: up to TELL_BATCH_MAX_TELLS tells).
    const bound = o.host.maxOverflowFrames
    this.#flow = new InboundFlow({
      highWater: Math.max(1, bound >>> 1),
      lowWater: bound >>> 3,
      maxPauseMs: o.associations.config.maxInboundPauseMs,
      // With a control lane, heartbeats do not wait for the pause to end.
      bounded: (authority) => !o.transport.hasControlLane(authority),
      backlog: () => o.host.ringBacklog,
      setPaused: (authority, paused) => void o.transport.setReadPaused(authority, paused),
      events: o.events,
    })
    this.#schemas = new PeerSchemas(schemaVersionsOf(o.host.kinds))
    const t = o.transport
    t.acceptFrameType(FRAME_ENVELOPE)
    t.acceptFrameType(FRAME_TELL_BATCH)
    this.#unsubscribe.push(
      t.on('frame', (peer, frame) => {
        // Only requests feed the worker rings: a peer that sends us replies is never paused for it.
        if (frame[0] === FRAME_ENVELOPE) {
          if (!this.#onEnvelope(peer, frame.subarray(1), false)) return
        } else if (frame[0] === FRAME_TELL_BATCH) this.#onTellBatch(peer, frame)
        else return
        this.#flow.afterFrame(peer.authority)
      }),
      t.on('peer-up', (peer, info) => {
        this.#negotiate(peer, info.schemas)
        this.#onPeerUp(peer)
      }),
      // Accepted by the transport, never written (the connection went first): older than anything queued.
      t.on('unsent', (peer, frames) => this.#requeue(peer.authority, frames)),
      t.on('peer-down', (peer, reason) => {
        this.#flow.disconnected(peer.authority)
        // Tells still in open batches were accepted: they join the deferred queue first, in order.
        this.#flushBatches(peer.authority)
        o.associations.get(peer.authority).disconnected(reason, performance.now())
        // A downed or removed incarnation's last connection: what its open batches just queued is for nobody.
        const m = o.membership.memberOf(peer.authority)
        if (m === undefined || m.status === 'down' || m.status === 'removed') this.#incarnationEnded(peer.authority, peer.nodeId, m === undefined ? 'is no member' : `was ${m.status}`)
        else this.#flushOutputs()
      }),
    )
    // Calls in flight to a member that turned unreachable (or was downed or
    // removed) fail now with a retryable error instead of waiting out their
    // timeout: the caller can retry at once, and placement sends the key to
    // a reachable owner. So do calls to an authority just quarantined: its
    // connections are refused, so no reply can come (spec 3.4).
    const failInFlight = (e: { authority: string }, why: string, code: 'ERR_AUTHORITY_UNREACHABLE' | 'ERR_AUTHORITY_QUARANTINED' = 'ERR_AUTHORITY_UNREACHABLE', extra: ErrorDetails = {}): void => {
      o.host.pending.failAuthority(e.authority, (c) => new GrainClusterError(code, `${e.authority} ${why} while the call was in flight`, { kind: c.kind, key: c.key, method: c.method, authority: e.authority, ...extra }))
    }
    this.#unsubscribe.push(
      o.events.subscribe('member.unreachable', (e) => failInFlight(e, 'became unreachable')),
      o.events.subscribe('association.quarantined', (e) => failInFlight(e, `was quarantined (${e.reason})`, 'ERR_AUTHORITY_QUARANTINED', { reason: e.reason, until: e.until })),
      // A new incarnation at a known authority (gossip may bring its join and the old one's removal in one merge, with no removed event).
      o.events.subscribe('member.joined', (e) => {
        const known = o.associations.peek(e.authority)?.nodeId
        if (known !== undefined && known !== e.nodeId) this.#incarnationEnded(e.authority, known, `was replaced by ${e.nodeId}`)
      }),
      o.events.subscribe('member.downed', (e) => {
        failInFlight(e, 'was downed')
        this.#incarnationEnded(e.authority, e.nodeId, 'was downed')
      }),
      o.events.subscribe('member.removed', (e) => {
        failInFlight(e, 'was removed')
        this.#incarnationEnded(e.authority, e.nodeId, 'was removed')
      }),
    )
    t.beforeFlush = () => {
      for (const a of this.#batches.authorities()) this.#flushBatches(a)
    }
    for (const p of t.peers()) {
      this.#negotiate(p, p.schemas)
      this.#onPeerUp(p)
    }
    // Quarantine deadlines (spec 4.3) are checked once a second.
    this.#poller = setInterval(() => {
      o.associations.poll(performance.now())
      this.#flushOutputs()
    }, 1_000)
    this.#poller.unref()
  }

  /** The transport's handshake hook: refuse connections while quarantined (spec 4.2). */
  static acceptHook(associations: AssociationRegistry): (peer: PeerIdentity) => { code: 'ERR_AUTHORITY_QUARANTINED'; reason: string } | undefined {
    return (peer) => {
      const a = associations.peek(peer.authority)
      if (a === undefined || a.mayConnect()) return undefined
      return { code: 'ERR_AUTHORITY_QUARANTINED', reason: a.refusal()?.reason ?? `${peer.authority} is quarantined` }
    }
  }

  /** Pick the highest common schema version per kind with a peer; report kinds with none (their calls to it will fail). */
  #negotiate(peer: PeerIdentity, schemas: SchemaVersions | undefined): void {
    this.#schemaEpoch++
    for (const m of this.#schemas.peerUp(peer.authority, schemas)) {
      this.#o.events.publish({
        type: 'handshake.schema-mismatch',
        authority: peer.authority,
        nodeId: peer.nodeId,
        kind: m.kind,
        localVersions: [...m.local],
        peerVersions: [...m.peer],
        reason: mismatchReason(m, peer.authority),
      })
    }
  }

  /**
   * Schema version for a call of `kind` to `pid`'s node (the one agreed in
   * the handshake); throws ERR_SCHEMA_MISMATCH, and records it, when the
   * peer serves the kind with no version in common with this node.
   */
  #versionFor(pid: Pid, method: string): number {
    try {
      return this.#schemas.versionFor(pid.authority, pid.kind, this.#o.host.kinds.get(pid.kind)?.schemaVersion)
    } catch (e) {
      const err = toGrainClusterError(e)
      const m = this.#schemas.mismatchFor(pid.authority, pid.kind)
      this.#o.events.publish({
        type: 'rpc.schema-mismatch',
        kind: pid.kind,
        key: pid.key,
        method,
        callerVersion: this.#o.host.kinds.get(pid.kind)?.schemaVersion ?? 0,
        servedVersions: m === undefined ? [] : [...m.peer],
        where: 'caller',
        authority: pid.authority,
        code: err.code,
        reason: err.reason,
      })
      throw new GrainClusterError(err.code, err.reason, { ...err.details, key: pid.key, method, pid: formatPid(pid) })
    }
  }

  // --------------------------------------------------------------- resolve

  /** Spec 2.1–2.3: where a PID can be reached now, from the latest membership and association state. */
  resolve(pid: Pid): ResolveResult {
    const m = this.#o.membership.memberOf(pid.authority)
    if (m === undefined || m.status === 'removed' || m.status === 'down') {
      return { status: 'removed', authority: pid.authority, reason: m === undefined ? `${pid.authority} is not a member of the cluster` : `${pid.authority} is ${m.status}` }
    }
    if (pid.nodeId !== undefined && pid.nodeId !== m.nodeId) {
      // Spec 2.5: a PID from an older (or foreign) incarnation; the latest membership wins.
      const reason = `incarnation ${pid.nodeId} of ${pid.authority} is gone (now ${m.nodeId})`
      const key = `${pid.authority}#${pid.nodeId}`
      if (!this.#conflictsSeen.has(key)) {
        if (this.#conflictsSeen.size > 10_000) this.#conflictsSeen.clear()
        this.#conflictsSeen.add(key)
        this.#o.events.publish({ type: 'pid.conflict', pid: formatPid(pid), authority: pid.authority, reason })
      }
      return { status: 'removed', authority: pid.authority, reason }
    }
    const assoc = this.#o.associations.peek(pid.authority)
    const refusal = assoc === undefined || assoc.mayConnect() ? undefined : assoc.refusal(formatPid(pid))
    if (refusal?.code === 'ERR_AUTHORITY_QUARANTINED') return { status: 'quarantined', authority: pid.authority, reason: refusal.reason, error: refusal }
    if (refusal !== undefined) return { status: 'removed', authority: pid.authority, reason: refusal.reason }
    if (m.unreachable) return { status: 'unreachable', authority: pid.authority, reason: `${pid.authority} is unreachable (failure detector)` }
    return { status: 'ready', pid, nodeId: m.nodeId }
  }

  /** True while the association with `authority` is Connected (a send goes out now rather than into its deferred queue). */
  isConnected(authority: string): boolean {
    return this.#o.associations.peek(authority)?.state === 'connected'
  }

  /** Throws the typed error a send to `pid` gets now; otherwise returns its association. */
  #refuse(pid: Pid, method: string): Association {
    // Per call: reuse a 'ready' verdict while the membership version stands (the association is asked live).
    const version = this.#o.membership.version()
    // Hot path: this very PID was ready at this version (its target remembers it, and #targetOf reuses the lookup).
    const t = this.#targets.get(pid)
    this.#lastPid = pid
    this.#lastTarget = t
    if (t !== undefined && t.readyAt === version && t.assoc!.mayConnect()) return t.assoc!
    let assoc: Association | undefined
    const known = this.#ready.get(pid.authority)
    if (known !== undefined && known.version === version && (pid.nodeId === undefined || pid.nodeId === known.nodeId)) {
      const a = this.#o.associations.get(pid.authority)
      if (a.mayConnect()) assoc = a
    }
    if (assoc === undefined) {
      const r = this.resolve(pid)
      if (r.status === 'ready') {
        // Only members get here, so the map is bounded by the cluster's size.
        this.#ready.set(pid.authority, { version, nodeId: r.nodeId })
        assoc = this.#o.associations.get(pid.authority)
      } else this.#refused(pid, method, r)
    }
    if (t !== undefined) {
      t.readyAt = version
      t.assoc = assoc
    }
    return assoc
  }
  /** The PID #refuse looked up last and its target (undefined: none yet), so #targetOf need not look it up again. */
  #lastPid: Pid | undefined
  #lastTarget: EncodeTarget | undefined

  #refused(pid: Pid, method: string, r: Exclude<ResolveResult, { status: 'ready' }>): never {
    // method '': a flow-control check (isWritable), not a call.
    const details: ErrorDetails = { pid: formatPid(pid), authority: pid.authority, kind: pid.kind, key: pid.key, ...(method === '' ? {} : { method }) }
    switch (r.status) {
      case 'unreachable':
        throw new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', r.reason, details)
      case 'quarantined':
        throw new GrainClusterError('ERR_AUTHORITY_QUARANTINED', r.reason, { ...r.error.details, ...details })
      case 'removed':
        throw new GrainClusterError('ERR_AUTHORITY_REMOVED', r.reason, details)
    }
  }

  // -------------------------------------------------------------- outbound

  #kindBytes(kind: string): InternedString {
    let k = this.#kinds.get(kind)
    if (k === undefined) this.#kinds.set(kind, (k = new InternedString(kind)))
    return k
  }

  /**
   * What encoding a call to `pid` needs besides the call itself: kind bytes,
   * partition and the negotiated schema version. Kept per PID object (the
   * node caches parsed PIDs) until the schemas are renegotiated.
   */
  #targetOf(pid: Pid, method: string): EncodeTarget {
    let t = pid === this.#lastPid ? this.#lastTarget : this.#targets.get(pid)
    if (t === undefined || t.epoch !== this.#schemaEpoch) {
      // Throws on a schema mismatch; nothing is cached then.
      const schemaVersion = this.#versionFor(pid, method)
      t = { kind: this.#kindBytes(pid.kind), partition: partitionOf(pid.key, this.#o.host.partitions), schemaVersion, epoch: this.#schemaEpoch, readyAt: undefined, assoc: undefined }
      if (this.#targets.size >= 10_000) this.#targets.clear()
      this.#targets.set(pid, t)
      this.#lastPid = pid
      this.#lastTarget = t
    }
    return t
  }
  readonly #targets = new Map<Pid, EncodeTarget>()
  /** The method #prepare hashed last, and its id. */
  #lastMethod = ''
  #lastMethodId = messageTypeId('')
  /** Bumped whenever a peer's schema versions are (re)negotiated: cached targets are stale then. */
  #schemaEpoch = 0

  /** Set the writer up for a call to `pid` (the payload is encoded by writeInto, through #encodePayload). */
  #prepare(pid: Pid, method: string, payload: unknown, flags: number, corr: number): EncodeTarget {
    const t = this.#targetOf(pid, method)
    const w = this.#writer.reset()
    w.schemaVersion = t.schemaVersion
    w.kind = t.kind
    w.key = pid.key
    w.partition = t.partition
    // Senders mostly repeat one method: hash its name once.
    if (method !== this.#lastMethod) {
      this.#lastMethodId = messageTypeId(method)
      this.#lastMethod = method
    }
    w.messageType = this.#lastMethodId
    w.flags = flags
    w.correlationId = corr
    w.replyTo = MAIN_THREAD
    this.#payloadValue = payload
    w.payloadWriter = this.#encodePayload
    return t
  }

  /** Spec 3.3: a message that could not be encoded is aborted, reported, and thrown to the caller. */
  #encodeFailed(pid: Pid, method: string, e: unknown, assoc: Association): GrainClusterError {
    return assoc.sendFailed(formatPid(pid), toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { kind: pid.kind, key: pid.key, method }), performance.now())
  }

  /**
   * Fast path of a tell: encode it straight into the open batch of its
   * partition (tell-batches.ts). False when it must travel on its own (the
   * association is not writable now, or the envelope is too large for a
   * batch); throws what encoding throws.
   */
  #batchTell(pid: Pid, method: string, payload: unknown, assoc: Association): boolean {
    if (!assoc.writableNow()) return false
    // Outside the try: a schema mismatch is the caller's error as it is, not a failed encoding.
    const t = this.#prepare(pid, method, payload, 0, 0)
    try {
      return this.#appendTellToBatch(assoc, t, this.#writer.messageType, pid.key, this.#encodePayload)
    } catch (e) {
      throw this.#encodeFailed(pid, method, e, assoc)
    } finally {
      this.#payloadValue = undefined
    }
  }

  /** One tell (its payload written by `payload`) into the open run of its partition's batch to assoc's node; false when it must travel on its own. */
  #appendTellToBatch(assoc: Association, t: EncodeTarget, messageType: number, key: string, payload: PayloadWriter): boolean {
    this.#batchAuthority = assoc.authority
    if (!this.#batches.appendTell(assoc.authority, t.partition, t.kind, messageType, t.schemaVersion, key, payload, this.#sendFullBatch)) return false
    this.#wroteBatch(assoc)
    return true
  }

  /** One envelope (written by `write`) into the open batch of `partition` to assoc's node; false when it must travel on its own. */
  #appendToBatch(assoc: Association, partition: number, write: (buf: Uint8Array, off: number, max: number) => number): boolean {
    this.#batchAuthority = assoc.authority
    if (!this.#batches.append(assoc.authority, partition, write, this.#sendFullBatch)) return false
    this.#wroteBatch(assoc)
    return true
  }

  #wroteBatch(assoc: Association): void {
    assoc.wrote()
    this.#o.transport.requestFlush()
  }
  readonly #batches = new TellBatches()
  #batchAuthority = ''
  /** An envelope encoded elsewhere (a worker's tell), copied in by #copyEncoded. */
  #encoded: Uint8Array = EMPTY
  readonly #copyEncoded = (buf: Uint8Array, off: number, max: number): number => {
    const e = this.#encoded
    if (e.length > max) return -1
    buf.set(e, off)
    return e.length
  }
  readonly #sendFullBatch = (frame: Uint8Array): void => this.#sendBatch(this.#batchAuthority, frame)

  /** Send the open batches of `authority` now (before anything else goes to it, and at each transport flush). */
  #flushBatches(authority: string): void {
    if (!this.#batches.has(authority)) return
    this.#batchAuthority = authority
    this.#batches.flush(authority, this.#sendFullBatch)
  }

  /**
   * One batch frame to the transport. If it will not take it (the
   * connection went away, or backpressure), its tells go to the
   * association's backlog one by one, in order, as ordinary envelope frames.
   */
  #sendBatch(authority: string, frame: Uint8Array): void {
    if (this.#o.transport.send(authority, frame)) return
    const assoc = this.#o.associations.get(authority)
    const now = performance.now()
    const msgs: DeferredMessage[] = []
    this.#tellsOfBatch(authority, frame, msgs, now)
    // Newer than anything queued (every other send flushed the batches first): to the back, in order.
    assoc.deferAll(msgs, now)
    this.#sendLater(assoc)
    this.#flushOutputs()
  }

  /**
   * This node's own tell batch to `authority`, as the messages the queue
   * keeps (appended to `msgs`): a run expands to the envelopes of its tells
   * (the queue counts and drops tells one by one), each laid out as #encode
   * lays it out behind the frame type byte.
   */
  #tellsOfBatch(authority: string, frame: Uint8Array, msgs: DeferredMessage[], now: number): void {
    const r = this.#reader
    // Runs of tells to one PID share their metadata, so the queue keeps one set of strings for them.
    let meta: OutboundMeta | undefined
    const defer = (tell: Uint8Array): void => {
      const env = new Uint8Array(tell.length + 1)
      env[0] = FRAME_ENVELOPE
      env.set(tell, 1)
      r.reset(env, 1, tell.length)
      const kind = r.kind()
      const key = r.key()
      const messageType = r.messageType
      if (meta === undefined || meta.kind !== kind || meta.key !== key || meta.messageType !== messageType) {
        meta = { pid: formatPid({ authority, kind, key }), kind, key, messageType }
      }
      msgs.push({ frame: env, meta, enqueuedAtMs: now })
    }
    for (const [off, len] of batchEntries(frame)) forEachTell(frame, off, len, defer, 1)
  }

  /**
   * Frames the transport accepted for `authority` but never wrote (the
   * connection stopped being writable before its flush): back to the front
   * of the association's queue, in order. Every frame queued there was
   * refused after these were accepted, so they go first. Other layers'
   * frames (membership, hand-off) are theirs to repeat.
   */
  #requeue(authority: string, frames: readonly Uint8Array[]): void {
    if (this.#closed) return
    const now = performance.now()
    const msgs: DeferredMessage[] = []
    const r = this.#reader
    for (const f of frames) {
      if (f[0] === FRAME_TELL_BATCH) this.#tellsOfBatch(authority, f, msgs, now)
      else if (f[0] === FRAME_ENVELOPE) {
        r.reset(f, 1, f.length - 1)
        const flags = r.flags
        let meta: OutboundMeta = { pid: `reply:${authority}` }
        if ((flags & FLAGS.REPLY) === 0) {
          const kind = r.kind()
          const key = r.key()
          meta = { pid: formatPid({ authority, kind, key }), kind, key, messageType: r.messageType }
          // This node's asks wait on the main thread under their correlation id (ask(), fromWorker()).
          if ((flags & FLAGS.ASK) !== 0 && r.replyTo === MAIN_THREAD) meta = { ...meta, askId: r.correlationId }
        }
        msgs.push({ frame: f, meta, enqueuedAtMs: now })
      }
    }
    if (msgs.length === 0) return
    this.#unsent(this.#o.associations.get(authority), msgs, now)
    this.#flushOutputs()
  }

  /** Encode the request once: [0x02][envelope]. */
  #encode(pid: Pid, method: string, payload: unknown, flags: number, corr: number, assoc: Association, timeoutMs = 0): Uint8Array {
    this.#prepare(pid, method, payload, flags, corr)
    const w = this.#writer
    w.timeoutMs = timeoutMs
    try {
      for (;;) {
        const n = w.writeInto(this.#scratch, 1, this.#scratch.length - 1)
        if (n >= 0) {
          // A view of the scratch buffer: #submit copies it if it must keep it.
          const frame = this.#scratch.subarray(0, n + 1)
          frame[0] = FRAME_ENVELOPE
          if (frame.length > this.#o.transport.maxFrameBytes) {
            throw new GrainClusterError('ERR_GRAIN_PAYLOAD_TOO_LARGE', `message of ${frame.length} bytes exceeds the transport's maximum frame of ${this.#o.transport.maxFrameBytes}`, { size: frame.length, limit: this.#o.transport.maxFrameBytes })
          }
          return frame
        }
        if (this.#scratch.length >= this.#o.transport.maxFrameBytes) {
          throw new GrainClusterError('ERR_GRAIN_PAYLOAD_TOO_LARGE', `message exceeds the transport's maximum frame of ${this.#o.transport.maxFrameBytes} bytes`, { limit: this.#o.transport.maxFrameBytes })
        }
        this.#scratch = new Uint8Array(this.#scratch.length * 2)
      }
    } catch (e) {
      throw this.#encodeFailed(pid, method, e, assoc)
    } finally {
      this.#payloadValue = undefined
      this.#flushOutputs()
    }
  }

  /**
   * Sender-side flow control: would a tell to `pid` go straight out now,
   * with room? True while its authority is connected, nothing waits in its
   * deferred queue and at most `writableBufferedBytes` wait in the
   * transport. Throws what a send would (unreachable, quarantined, removed).
   */
  isWritable(pid: Pid): boolean {
    this.#checkOpen()
    const assoc = this.#refuse(pid, '')
    if (!assoc.writableNow()) {
      // A send would dial; so does asking, or a waiter would wait for nothing.
      if (!this.#o.transport.isConnected(assoc.authority)) this.#connect(assoc)
      return false
    }
    const b = this.#o.transport.bufferedBytes(assoc.authority)
    return b >= 0 && b <= this.#o.associations.config.writableBufferedBytes
  }

  /**
   * Resolves once isWritable(pid) holds; rejects with what a send would
   * throw, or ERR_AUTHORITY_NOT_WRITABLE after `timeoutMs`. While only the
   * transport's buffer is in the way, completed writes wake it; otherwise
   * (connecting, deferred messages draining) it looks again every few ms.
   */
  async whenWritable(pid: Pid, timeoutMs: number): Promise<void> {
    if (this.isWritable(pid)) return
    const start = performance.now()
    this.flowStats.waits++
    try {
      await this.#waitWritable(pid, start + timeoutMs, timeoutMs)
    } finally {
      this.flowStats.waitedMs += performance.now() - start
    }
  }

  /** Sender-side flow control: whenWritable calls that had to wait, and how long they waited in all. */
  readonly flowStats = { waits: 0, waitedMs: 0 }

  /** Called once isWritable(pid) said no; returns once it says yes. */
  async #waitWritable(pid: Pid, deadline: number, timeoutMs: number): Promise<void> {
    do {
      const left = deadline - performance.now()
      const assoc = this.#o.associations.get(pid.authority)
      const mark = this.#o.associations.config.writableBufferedBytes
      const buffered = this.#o.transport.bufferedBytes(pid.authority)
      if (left <= 0) {
        const why = !assoc.writableNow()
          ? `association ${assoc.state}, ${assoc.queue.size} message(s) deferred`
          : buffered < 0
            ? 'no connection is established'
            : `${buffered} bytes wait in the transport (mark ${mark})`
        throw new GrainClusterError('ERR_AUTHORITY_NOT_WRITABLE', `${pid.authority} did not become writable within ${timeoutMs} ms: ${why}`, {
          pid: formatPid(pid),
          authority: pid.authority,
          kind: pid.kind,
          key: pid.key,
        })
      }
      // Only a buffer over the mark is worth waiting on; anything else (no
      // connection at the moment, messages deferred) is looked at again soon.
      if (assoc.writableNow() && buffered > mark) await this.#o.transport.whenBuffered(pid.authority, mark, Math.min(left, WRITABLE_RECHECK_MS * 10))
      else await new Promise((r) => setTimeout(r, Math.min(left, WRITABLE_RECHECK_MS)))
    } while (!this.isWritable(pid))
  }

  /** `pidText`: the canonical text of `pid` when the caller has it (saves formatting it again). */
  tell(pid: Pid, method: string, payload: unknown, pidText?: string): void {
    this.#checkOpen()
    const assoc = this.#refuse(pid, method)
    if (this.#batchTell(pid, method, payload, assoc)) return
    const frame = this.#encode(pid, method, payload, 0, 0, assoc)
    // The metadata (for deferral and dead letters) is built only off the fast path.
    const r = this.#submit(assoc, frame, () => ({ pid: pidText ?? formatPid(pid), kind: pid.kind, key: pid.key, messageType: messageTypeId(method) }), true)
    if (r !== undefined) throw r
  }

  ask<R>(pid: Pid, method: string, payload: unknown, timeoutMs?: number, pidText?: string): Promise<R> {
    let assoc: Association
    let frame: Uint8Array
    const host = this.#o.host
    const corr = host.pending.nextId()
    try {
      this.#checkOpen()
      assoc = this.#refuse(pid, method)
      // The callee's relay waits as long as this node does (its own default may be shorter).
      frame = this.#encode(pid, method, payload, FLAGS.ASK, corr, assoc, timeoutMs ?? host.pending.defaultTimeoutMs)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e))
    }
    const p = host.pending.add<R>(corr, { kind: pid.kind, key: pid.key, method, worker: -1, authority: pid.authority }, timeoutMs)
    const refused = this.#submit(assoc, frame, { pid: pidText ?? formatPid(pid), askId: corr, kind: pid.kind, key: pid.key, messageType: messageTypeId(method) }, true)
    if (refused !== undefined) host.pending.take(corr)?.reject(refused)
    return p
  }

  /** PIDs grains address, parsed once each. */
  readonly #pids = new TextMemo(parsePid)
  readonly #toThread = (reply: Uint8Array): void => this.#o.host.deliverToThread(reply)

  /** A worker's call that cannot go out: an error reply to the asking thread (`thread` ≥ 0), else a DeadLetter for the tell. */
  #failWorkerCall(thread: number, corr: number, kind: string, key: string, messageType: number, err: GrainClusterError): void {
    if (thread >= 0) this.#o.host.sendErrorReply(thread, corr, err)
    else this.#o.events.publish({ type: 'deadletter', kind, key, messageType, code: err.code, reason: err.reason })
  }
  #lastType = -1
  #lastTypeName = ''

  /** A message type's name in errors and events (`#<id>`: the name is not on the wire), the last one reused. */
  #methodName(messageType: number): string {
    if (messageType !== this.#lastType) {
      this.#lastTypeName = `#${messageType}`
      this.#lastType = messageType
    }
    return this.#lastTypeName
  }

  /**
   * A grain on a worker of this node called `pidText` (PID_REQUEST): route
   * its envelope — to a local worker, or to the remote node through the
   * association (a tell in the open batch of its partition), relaying the
   * reply back to the asking worker. The envelope is patched in place, never
   * re-encoded; it may be a view of ring memory, so what is kept is copied.
   */
  fromWorker(pidText: string, envelope: Uint8Array, isLocal: (pid: Pid) => boolean): void {
    const host = this.#o.host
    const r = this.#reader.reset(envelope, 0, envelope.length)
    const isAsk = (r.flags & FLAGS.ASK) !== 0
    const thread = r.replyTo
    const workerCorr = r.correlationId
    // The asking grain's timeout (unsaid: this node's default).
    const timeoutMs = r.callerTimeoutMs
    // Where a failure is answered: the asking thread, or -1 (a tell: a DeadLetter).
    const failTo = isAsk ? thread : -1
    const messageType = r.messageType
    const method = this.#methodName(messageType)
    let pid: Pid
    let assoc: Association
    try {
      pid = this.#pids.get(pidText)
      if (isLocal(pid)) {
        host.relayRequest(envelope, this.#toThread)
        return
      }
      this.#checkOpen()
      assoc = this.#refuse(pid, method)
      r.patchSchemaVersion(this.#targetOf(pid, method).schemaVersion)
    } catch (e) {
      this.#failWorkerCall(failTo, workerCorr, safeKind(r), safeKey(r), messageType, toGrainClusterError(e))
      return
    }
    // A grain's tell rides the open batch of its partition, as node.tellPid's do.
    if (!isAsk && assoc.writableNow()) {
      this.#encoded = envelope
      const batched = this.#appendToBatch(assoc, r.partition, this.#copyEncoded)
      this.#encoded = EMPTY
      if (batched) return
    }
    const meta: OutboundMeta = { pid: formatPid(pid), kind: pid.kind, key: pid.key, messageType }
    // Failures from here on may come when r (this.#reader) holds another envelope.
    const failCaller = (err: GrainClusterError): void => this.#failWorkerCall(failTo, workerCorr, pid.kind, pid.key, messageType, err)
    let askId: number | undefined
    if (isAsk) {
      askId = host.pending.nextId()
      r.patchRouting(askId, MAIN_THREAD)
      const back = (reply: EnvelopeReader): void => {
        const out = reply.copy()
        this.#reader.reset(out, 0, out.length).patchRouting(workerCorr, thread)
        host.deliverToThread(out)
      }
      host.pending.addRaw(askId, { kind: pid.kind, key: pid.key, method, worker: -1, authority: pid.authority }, timeoutMs, back, failCaller)
    }
    const frame = new Uint8Array(envelope.length + 1)
    frame[0] = FRAME_ENVELOPE
    frame.set(envelope, 1)
    const refused = this.#submit(assoc, frame, askId === undefined ? meta : { ...meta, askId })
    if (refused !== undefined) {
      if (askId !== undefined) host.pending.take(askId)
      failCaller(refused)
    }
  }

  /**
   * A grain's tell by PID from a worker's PID run (wire/tell-run.ts): the
   * payload buf[off, off + len) of message type `messageType`. To a remote
   * node that may be written to now, it joins the open run of that node's
   * tell batch, as node.tellPid's tells do. Everything else (this node, a
   * refusal, an association not writable now) takes fromWorker's way as the
   * envelope the worker would have sent, so it meets the same rules.
   */
  fromWorkerTell(pidText: string, messageType: number, schemaVersion: number, buf: Uint8Array, off: number, len: number, isLocal: (pid: Pid) => boolean): void {
    if (this.#batchWorkerTell(pidText, messageType, buf, off, len, isLocal)) return
    let pid: Pid
    try {
      pid = this.#pids.get(pidText)
    } catch (e) {
      // The worker parsed it before numbering it: only a broken worker gets here.
      this.#o.events.publish({ type: 'frame.malformed', source: 'worker PID run', reason: toGrainClusterError(e, 'ERR_PID_INVALID').reason })
      return
    }
    const w = (this.#workerTellWriter ??= new EnvelopeWriter()).reset()
    w.kind = this.#kindBytes(pid.kind)
    w.key = pid.key
    w.partition = partitionOf(pid.key, this.#o.host.partitions)
    w.messageType = messageType
    w.schemaVersion = schemaVersion
    w.payloadBytes = buf.subarray(off, off + len)
    this.fromWorker(pidText, w.toBytes(), isLocal)
  }
  /** Rebuilds a worker's tell off the fast path (made on first use). */
  #workerTellWriter: EnvelopeWriter | undefined

  /** fromWorkerTell's fast path; false, having done nothing, when the tell must take the slow one. */
  #batchWorkerTell(pidText: string, messageType: number, buf: Uint8Array, off: number, len: number, isLocal: (pid: Pid) => boolean): boolean {
    let pid: Pid
    let assoc: Association
    let t: EncodeTarget
    try {
      pid = this.#pids.get(pidText)
      if (isLocal(pid) || this.#closed) return false
      const method = this.#methodName(messageType)
      assoc = this.#refuse(pid, method)
      if (!assoc.writableNow()) return false
      t = this.#targetOf(pid, method)
    } catch {
      // The slow path meets the same error and reports it.
      return false
    }
    const copy = this.#tellPayload.from(buf, off, len)
    try {
      return this.#appendTellToBatch(assoc, t, messageType, pid.key, copy.write)
    } finally {
      copy.clear()
    }
  }
  /** The payload of the tell #batchWorkerTell appends (a view of a worker's ring during the call). */
  readonly #tellPayload = new PayloadCopy()

  /**
   * Hand a frame to its association; returns the error when refused.
   * `borrowed`: the frame is a view of a reused buffer, so anything that
   * keeps it (deferred queue, large-frame writes) must copy it first.
   */
  #submit(assoc: Association, frame: Uint8Array, metaOf: OutboundMeta | (() => OutboundMeta), borrowed = false): GrainClusterError | undefined {
    // Nothing overtakes the tells already batched for this node (per-PID order).
    this.#flushBatches(assoc.authority)
    // Fast path: connected, nothing deferred, a frame the transport copies
    // (small) or may keep (owned): write now, with no metadata and no clock.
    if (assoc.writableNow() && (!borrowed || frame.length < LARGE_FRAME_BYTES)) {
      assoc.wrote()
      // The deferred queue copies what it keeps, so a borrowed frame can go back as it is.
      if (this.#o.transport.send(assoc.authority, frame)) return undefined
      const now = performance.now()
      this.#unsent(assoc, [{ frame, meta: typeof metaOf === 'function' ? metaOf() : metaOf, enqueuedAtMs: now }], now)
      this.#flushOutputs()
      return undefined
    }
    const meta = typeof metaOf === 'function' ? metaOf() : metaOf
    const now = performance.now()
    const out = assoc.send(frame, meta, now)
    let refused: GrainClusterError | undefined
    if (out.action === 'write') {
      // The transport may keep a large frame it cannot write at once: not a view of a reused buffer, then.
      if (borrowed) frame = frame.slice()
      if (!this.#o.transport.send(assoc.authority, frame)) this.#unsent(assoc, [{ frame, meta, enqueuedAtMs: now }], now)
    } else if (out.action === 'deferred') this.#connect(assoc)
    else refused = out.error
    this.#flushOutputs()
    return refused
  }

  /** The transport would not take these (not connected after all, or backpressure), or took them but never wrote them: keep them in front, in order, and retry. */
  #unsent(assoc: Association, msgs: DeferredMessage[], now: number): void {
    assoc.unsent(msgs, now)
    this.#sendLater(assoc)
  }

  /** The association holds a backlog: write it again shortly if connected (backpressure), else (re)connect first. */
  #sendLater(assoc: Association): void {
    if (this.#o.transport.isConnected(assoc.authority)) this.#retryLater(assoc)
    else this.#connect(assoc)
  }

  /**
   * (Re)connect for deferred traffic. A failed handshake is an invalid
   * association (quarantine now, spec 4.1); other failures count towards
   * maxConsecutiveFailures. An authority conflict (the peer there is another
   * incarnation than the member) is neither: membership refuses that
   * incarnation by NodeId and downs the old one (ClusterNode's conflict
   * check), and quarantining the authority would shut the new incarnation
   * out for quarantineDeadlineMs after it is admitted. What waits here is
   * rejected when the old incarnation ends, or drains to the new one. A
   * quarantine for failures alone ends with the incarnation they were to
   * (Association.incarnationEnded).
   */
  #connect(assoc: Association): void {
    if (this.#closed) return
    // Already connected (the peer-up may have raced with a disconnect): resync instead of dialing.
    if (this.#resync(assoc)) return
    if (this.#connecting.has(assoc.authority)) return
    this.#connecting.add(assoc.authority)
    this.#o.transport.connect(assoc.authority, { timeoutMs: CONNECT_TIMEOUT_MS }).then(
      () => {
        this.#connecting.delete(assoc.authority)
        this.#resync(assoc)
      },
      (e: unknown) => {
        this.#connecting.delete(assoc.authority)
        if (this.#closed || this.#resync(assoc)) return
        const err = toGrainClusterError(e, 'ERR_AUTHORITY_UNREACHABLE')
        const now = performance.now()
        if (err.code === 'ERR_AUTHORITY_CONFLICT') return
        // A dial that outlived the incarnation it was for (downed, removed)
        // says nothing new: counting it could quarantine the address its
        // successor will come back at.
        const m = this.#o.membership.memberOf(assoc.authority)
        if (m === undefined || m.status === 'down' || m.status === 'removed') return
        if (err.code === 'ERR_AUTHORITY_HANDSHAKE_FAILED') assoc.invalidAssociation(err.reason, now)
        else assoc.failure(err.reason, now)
        this.#flushOutputs()
      },
    )
  }
  readonly #connecting = new Set<string>()

  /**
   * If the transport holds an established connection but the association
   * missed its peer-up, mark it connected now and write its backlog.
   * Returns true when the transport is connected.
   */
  #resync(assoc: Association): boolean {
    if (!this.#o.transport.isConnected(assoc.authority)) return false
    const peer = this.#o.transport.peers().find((p) => p.authority === assoc.authority)
    if (peer === undefined) return false
    if (assoc.state !== 'connected') this.#onPeerUp(peer)
    else if (assoc.queue.size > 0) {
      const now = performance.now()
      this.#write(assoc, assoc.flush(now), now)
      this.#flushOutputs()
    }
    return true
  }

  /**
   * The transport refused a write for backpressure (its buffer is full):
   * the association holds the backlog; hand it out again shortly, in order.
   */
  #retryLater(assoc: Association): void {
    if (this.#retrying.has(assoc.authority) || this.#closed) return
    this.#retrying.add(assoc.authority)
    const t = setTimeout(() => {
      this.#retrying.delete(assoc.authority)
      if (this.#closed) return
      const now = performance.now()
      this.#write(assoc, assoc.flush(now), now)
      if (assoc.queue.size > 0) this.#sendLater(assoc)
      this.#flushOutputs()
    }, BACKPRESSURE_RETRY_MS)
    t.unref()
  }
  readonly #retrying = new Set<string>()

  /**
   * The incarnation `nodeId` at `authority` was downed or removed. Its
   * deferred messages are rejected (ERR_AUTHORITY_REMOVED), never drained
   * into whoever holds the authority next; asks among them fail. Once the
   * member is gone for good and nothing holds its association (no
   * connection, no quarantine), the association is dropped, so a cluster
   * whose members come and go at new addresses keeps no association per
   * address it ever saw.
   */
  #incarnationEnded(authority: string, nodeId: string, why: string): void {
    const assoc = this.#o.associations.peek(authority)
    if (assoc === undefined) return
    assoc.incarnationEnded(nodeId, `incarnation ${nodeId} of ${authority} ${why}`, performance.now())
    this.#flushOutputs()
    const m = this.#o.membership.memberOf(authority)
    const gone = m === undefined || (m.status === 'removed' && m.nodeId === nodeId)
    if (gone && assoc.state === 'disconnected' && assoc.queue.size === 0 && !this.#o.transport.isConnected(authority) && !this.#retrying.has(authority) && !this.#connecting.has(authority)) {
      this.#o.associations.forget(authority)
    }
  }

  /** Authorities resolved 'ready', with the membership version and incarnation it was decided at. */
  readonly #ready = new Map<string, { version: string; nodeId: string }>()
  /** PID incarnations already reported as conflicting (one event each, bounded). */
  readonly #conflictsSeen = new Set<string>()

  #onPeerUp(peer: PeerIdentity): void {
    const assoc = this.#o.associations.get(peer.authority)
    const expected = this.#o.membership.memberOf(peer.authority)
    const now = performance.now()
    const r = assoc.connected(peer.nodeId, now, expected === undefined || expected.status === 'removed' ? {} : { expectedNodeId: expected.nodeId })
    if (!r.ok) {
      this.#o.transport.disconnect(peer.authority, r.error.reason)
      this.#flushOutputs()
      return
    }
    this.#write(assoc, r.drain, now)
    this.#flushOutputs()
  }

  /**
   * Write drained messages in order; what the transport will not take goes
   * back in front. An ask whose caller already gave up (timed out, or failed
   * when the member turned unreachable) is withdrawn instead: its caller may
   * have retried elsewhere, and nobody waits for its reply.
   */
  #write(assoc: Association, msgs: DeferredMessage[], now: number): void {
    const pending = this.#o.host.pending
    let withdrawn = 0
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i]!
      if (m.meta.askId !== undefined && !pending.has(m.meta.askId)) {
        withdrawn++
        continue
      }
      if (!this.#o.transport.send(assoc.authority, m.frame)) {
        // Not connected (e.g. peer-up fired before the transport made the
        // connection current): reconnect/resync, never strand them.
        this.#unsent(assoc, msgs.slice(i), now)
        break
      }
    }
    if (withdrawn > 0) {
      assoc.notWritten(withdrawn)
      this.#o.events.publish({ type: 'association.asks-withdrawn', authority: assoc.authority, asks: withdrawn })
    }
  }

  // --------------------------------------------------------------- inbound

  /**
   * A tell batch (tell-batches.ts): checked, then copied into the owning
   * worker's ring as one block. A batch that fails the check, or that this
   * node may not take as a block (leaving, not serving), is handled entry
   * by entry, so every well-formed tell still gets its delivery, redirect
   * or dead letter, and the bad ones their events.
   */
  #onTellBatch(peer: PeerIdentity, frame: Uint8Array): void {
    const host = this.#o.host
    const b = checkTellBatch(frame, host.maxRingFrameBytes)
    if (b instanceof GrainClusterError) {
      this.#o.events.publish({ type: 'transport.frame-rejected', remote: peer.authority, code: b.code, reason: `${b.reason}; its entries are handled one by one` })
    } else {
      try {
        if (host.relayTellBlock(frame, b.off, b.len, b.frames, b.partition)) return
      } catch (e) {
        const err = toGrainClusterError(e, 'ERR_FRAME_MALFORMED')
        this.#o.events.publish({ type: 'transport.frame-rejected', remote: peer.authority, code: err.code, reason: `tell batch: ${err.reason}` })
        return
      }
    }
    for (const [off, len] of batchEntries(frame)) {
      let broken: string | undefined
      try {
        // A run goes tell by tell too: each is delivered, redirected or refused on its own.
        broken = forEachTell(frame, off, len, (tell) => void this.#onEnvelope(peer, tell, true))
      } catch {
        // Not a readable envelope: reported as any bad entry is.
        this.#onEnvelope(peer, frame.subarray(off, off + len), true)
        continue
      }
      if (broken !== undefined) this.#o.events.publish({ type: 'transport.frame-rejected', remote: peer.authority, code: 'ERR_FRAME_MALFORMED', reason: `tell run: ${broken}` })
    }
  }

  /**
   * One envelope from `peer`. `tellsOnly`: an entry of a tell batch, where
   * anything but a tell is rejected. True when it was a request (headed for
   * a worker ring), false for a reply.
   */
  #onEnvelope(peer: PeerIdentity, bytes: Uint8Array, tellsOnly: boolean): boolean {
    try {
      const r = this.#reader.reset(bytes, 0, bytes.length)
      if (tellsOnly && (r.flags & (FLAGS.ASK | FLAGS.REPLY | FLAGS.CONTROL)) !== 0) throw new GrainClusterError('ERR_FRAME_MALFORMED', `a tell batch entry has flags ${r.flags}: only tells may be batched`)
      if ((r.flags & FLAGS.REPLY) !== 0) {
        this.#o.host.acceptReply(bytes)
        return false
      }
      this.#o.host.relayRequest(bytes, (reply) => this.#sendReply(peer.authority, reply), undefined, r)
      return true
    } catch (e) {
      const err = toGrainClusterError(e, 'ERR_FRAME_MALFORMED')
      if (err.code === 'ERR_FRAME_MALFORMED') {
        this.#o.events.publish({ type: 'transport.frame-rejected', remote: peer.authority, code: err.code, reason: err.reason })
        return false
      }
      // A valid message this node could not take (ring full, closing): never silent.
      const r = this.#reader
      this.#o.events.publish({ type: 'deadletter', kind: safeKind(r), key: safeKey(r), messageType: r.messageType, code: err.code, reason: `from ${peer.authority}: ${err.reason}` })
      return true
    }
  }

  #sendReply(authority: string, reply: Uint8Array): void {
    if (this.#closed) return
    const frame = new Uint8Array(reply.length + 1)
    frame[0] = FRAME_ENVELOPE
    frame.set(reply, 1)
    const assoc = this.#o.associations.get(authority)
    const refused = this.#submit(assoc, frame, { pid: `reply:${authority}` })
    // Refused sends are the caller's to report; here the caller is the far node, so the reply is a dead letter.
    if (refused !== undefined) this.#o.events.publish({ type: 'deadletter', kind: '', key: '', messageType: 0, code: refused.code, reason: `a reply to ${authority} was dropped: ${refused.reason}` })
  }

  /** Publish association events and audit lines; fail asks whose messages were dropped. */
  #flushOutputs(): void {
    if (!this.#o.associations.hasOutput) return
    const out = this.#o.associations.drain()
    for (const e of out.events) this.#o.events.publish(e)
    for (const line of out.audit) this.#o.audit(line)
    for (const m of out.rejected) if (m.meta.askId !== undefined) this.#o.host.pending.take(m.meta.askId)?.reject(m.toError())
  }

  /** Manual release of a quarantined authority (spec 4.4). */
  release(authority: string): boolean {
    const ok = this.#o.associations.release(authority, performance.now())
    this.#flushOutputs()
    return ok
  }

  /** Quarantine an authority now (operator action or an invalid association). */
  quarantine(authority: string, reason: string): void {
    this.#o.associations.quarantine(authority, reason, performance.now())
    this.#o.transport.disconnect(authority, `quarantined: ${reason}`)
    this.#flushOutputs()
  }

  #checkOpen(): void {
    if (this.#closed) throw new GrainClusterError('ERR_NODE_CLOSED', 'the node is closed')
  }

  close(): void {
    this.#closed = true
    clearInterval(this.#poller)
    this.#flow.close()
    for (const u of this.#unsubscribe) u()
  }
}
