/**
 * ClusterNode: the membership protocol (ClusterCore, sans-I/O) driven by real
 * sockets and timers. It owns the TCP transport, the phi-accrual failure
 * detectors and the local-health check, feeds them to the core, and sends
 * what the core asks for.
 *
 *   timers:  gossip every gossipIntervalMs   → core.tick
 *            heartbeat every heartbeatIntervalMs → local health, core.heartbeatTick
 *            check every checkIntervalMs      → core.checkReachability
 *   frames:  [0x01][binary-coded ClusterMessage] → core.onMessage
 *
 * Joining: the first configured seed forms the cluster by itself when no
 * other seed welcomes it within seedJoinTimeoutMs; every other node asks the
 * seeds in turn (with backoff) until one welcomes it.
 */

import { randomBytes } from 'node:crypto'
import { GrainClusterError, toGrainClusterError } from '../common/errors.js'
import { authorityOfMemberId, DEFAULT_MONITORED_BY, type ClusterMessage, ClusterCore, type FailureDetector } from '../cluster/cluster-core.js'
import { FailureDetectorRegistry } from '../cluster/failure-detector/detector-registry.js'
import { ServingLease } from '../cluster/placement/serving-lease.js'
import { LocalHealth, type LocalHealthVerdict } from '../cluster/failure-detector/local-health.js'
import { type FailureDetectorInput, type FailureDetectorSettings, resolveFailureDetectorSettings } from '../cluster/failure-detector/profiles.js'
import type { Member } from '../cluster/membership/member.js'
import { parseClusterMessage } from '../cluster/messages.js'
import { EventStream } from '../observability/event-stream.js'
import { NodeMetrics } from '../observability/metrics.js'
import { TcpTransport, type TcpTransportTlsOptions } from '../remote/transport/tcp-transport.js'
import type { SchemaVersions } from '../remote/schema-negotiation.js'
import { binaryCodec, encodeToBytes } from '../wire/payload-codec.js'

export const FRAME_CLUSTER = 0x01

export const DEFAULT_GOSSIP_INTERVAL_MS = 200 // 0.2 s
export const DEFAULT_CONVERGENCE_TIMEOUT_MS = 1_000 // 1 s (design 3.8)
export const DEFAULT_SEED_JOIN_TIMEOUT_MS = 2_000 // 2 s

export interface ClusterNodeOptions {
  /** Cluster name; nodes of another cluster are refused. */
  clusterName: string
  /** Shared secret for the handshake HMAC. */
  secret: string
  /** Seed authorities (host:port), same list and order on every node; may include this node. */
  seeds: readonly string[]
  host?: string
  /** 0 = ephemeral. */
  port?: number
  advertisedAuthority?: string
  /** 'test' | 'prod' profile plus overrides. Default profile 'prod'. */
  failureDetector?: FailureDetectorInput
  gossipIntervalMs?: number
  convergenceTimeoutMs?: number
  /** How long the first seed waits for another seed before forming the cluster alone. */
  seedJoinTimeoutMs?: number
  events?: EventStream
  /** This incarnation's id; default 16 random hex digits. */
  nodeId?: string
  /** Record Prometheus metrics (node.metrics). Default true; events flow either way. Pass a NodeMetrics to share one registry with the GrainNode. */
  metrics?: boolean | NodeMetrics
  /** Extra handshake check (e.g. refuse quarantined authorities); runs after the membership check. */
  acceptPeer?: (peer: { authority: string; nodeId: string }) => { code: string; reason: string } | undefined
  tls?: TcpTransportTlsOptions
  /**
   * Heartbeats on a second connection per peer (the control lane), so they
   * never wait behind data or a connection paused by inbound flow control.
   * Default true; false sends them on the data connection, and inbound
   * pauses are then bounded by associations.maxInboundPauseMs.
   */
  controlLane?: boolean
  /** Schema versions per grain kind this node serves, exchanged in the handshake (the GrainNode fills it in). */
  schemas?: SchemaVersions
  /**
   * Frame types of the layers the GrainNode adds once this node is started
   * (remote delivery, hand-off): declared before the transport listens, so
   * a peer's frame of one of them is never taken for lost framing.
   */
  frameTypes?: readonly number[]
  /**
   * Serve grains only while a majority was heard from within this window
   * (ms), so a node cut off from the others stops before they re-activate
   * its keys. Default: the failure detector's acceptableHeartbeatPauseMs
   * (prod 2 000, test 1 500); it must stay below the time the others need
   * to flag this node (see serving-lease.ts).
   */
  servingLeaseMs?: number
}

function encodeMessage(msg: ClusterMessage): Uint8Array {
  const body = encodeToBytes(binaryCodec, msg)
  const frame = new Uint8Array(body.length + 1)
  frame[0] = FRAME_CLUSTER
  frame.set(body, 1)
  return frame
}

export class ClusterNode {
  readonly events: EventStream
  readonly transport: TcpTransport
  readonly core: ClusterCore
  readonly detectorSettings: FailureDetectorSettings
  readonly #o: ClusterNodeOptions
  /** Serving lease (see serving-lease.ts): grains are served only while it holds. */
  lease: ServingLease = new ServingLease(0)

  /**
   * May this node serve grains now? Up, not on the minority side, and the
   * serving lease holds (it heard from a majority within servingLeaseMs).
   */
  mayServe(nowMs: number): boolean {
    // Asked per call: reuse the verdict briefly (the lease's margin is ~0.5 s).
    // Any membership or reachability change is a new digest and recomputes at once.
    const core = this.core
    const digest = core.table.digest()
    // A verdict holds for 10 ms from when it was taken (never for an earlier clock).
    if (nowMs < this.#serveUntilMs && nowMs >= this.#serveUntilMs - 10 && digest === this.#serveDigest) return this.#serve
    this.#serve = core.isUp && !core.isMinority && this.lease.valid(core.table.activeMembers(), core.seeds, core.authority, nowMs)
    this.#serveUntilMs = nowMs + 10
    this.#serveDigest = digest
    // Every fresh verdict is a possible transition, not only the periodic check's: a node
    // that served a call before its first check must still learn that the lease lapsed.
    if (this.#serve !== this.#leaseHeld) this.#leaseTransition(this.#serve, nowMs)
    return this.#serve
  }
  #serve = false
  #serveUntilMs = -Infinity
  #serveDigest = ''

  /** The error a call gets while mayServe() says no. */
  servingRefusal(kind: string, key: string, nowMs: number): GrainClusterError {
    const core = this.core
    if (!core.isUp) return new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', `${core.authority} is not an Up member of the cluster yet`, { kind, key, authority: core.authority })
    return new GrainClusterError('ERR_AUTHORITY_MINORITY', `${this.refusalReason(nowMs)}: it serves no grains until it hears from a majority again`, { kind, key, authority: core.authority })
  }

  /** Why mayServe() said no (for error reasons; computed fresh). */
  refusalReason(nowMs: number): string {
    const core = this.core
    if (!core.isUp) return `${core.authority} is not an Up member of the cluster`
    if (core.isMinority) return `${core.authority} is on the minority side of a partition (unreachable: ${[...core.unreachableSet()].join(', ') || 'none'})`
    return `${core.authority} has not heard from a majority within its serving lease of ${this.lease.leaseMs} ms (last heard: ${this.lease.describe(core.table.activeMembers(), core.authority, nowMs) || 'nobody'})`
  }
  #leaseHeld = false
  /** When #watchLease last ran (every checkIntervalMs while the event loop is healthy). */
  #leaseCheckedAt = Number.POSITIVE_INFINITY

  /** The periodic lease check: a fresh verdict (mayServe publishes the transitions). */
  #watchLease(nowMs: number): void {
    this.#leaseCheckedAt = nowMs
    this.#serveUntilMs = Number.NEGATIVE_INFINITY
    this.mayServe(nowMs)
  }

  /**
   * Publish a serving-lease transition: on 'placement.lease-lost' the node
   * drops its activations (another node may take its keys). The flag flips
   * at once; the event goes out in a microtask, since a verdict can be taken
   * in the middle of routing a call.
   */
  #leaseTransition(held: boolean, nowMs: number): void {
    this.#leaseHeld = held
    const authority = this.core.authority
    const reason = held ? '' : this.refusalReason(nowMs)
    queueMicrotask(() => {
      if (this.#closed) return
      if (held) this.events.publish({ type: 'placement.lease-regained', authority })
      else this.events.publish({ type: 'placement.lease-lost', authority, reason })
    })
  }

  /** Phi-accrual detectors of the monitored members (introspection, metrics). */
  readonly detectors: FailureDetectorRegistry
  readonly #health: LocalHealth
  #verdict: LocalHealthVerdict | undefined
  readonly #timers: ReturnType<typeof setInterval>[] = []
  #closed = false
  #joinLoop: Promise<void> | undefined
  #terminatedResolve: (() => void) | undefined
  /** Prometheus metrics of this node; undefined when disabled by options. */
  readonly metrics: NodeMetrics | undefined
  /** Resolves when this node has been removed or downed (and has stopped). */
  readonly terminated: Promise<void>

  private constructor(o: ClusterNodeOptions, events: EventStream, transport: TcpTransport, core: ClusterCore, settings: FailureDetectorSettings, registry: FailureDetectorRegistry) {
    this.#o = o
    this.events = events
    this.transport = transport
    this.core = core
    this.detectorSettings = settings
    this.detectors = registry
    this.#health = new LocalHealth({ lagThresholdMs: settings.localPauseThresholdMs, graceMs: settings.localPauseGraceMs })
    this.terminated = new Promise((resolve) => (this.#terminatedResolve = resolve))
    if (o.metrics === false) this.metrics = undefined
    else {
      this.metrics = o.metrics instanceof NodeMetrics ? o.metrics : new NodeMetrics(events)
      this.metrics.observeMembership({
        statusCounts: () => {
          const out: Record<string, number> = {}
          for (const m of core.members()) out[m.status] = (out[m.status] ?? 0) + 1
          return out
        },
        unreachableCount: () => core.unreachableSet().size,
        isMinority: () => core.isMinority,
        convergenceState: () => core.convergence,
      })
    }
  }

  static async start(o: ClusterNodeOptions): Promise<ClusterNode> {
    const { settings, issues } = resolveFailureDetectorSettings(o.failureDetector ?? {})
    if (!Array.isArray(o.seeds) || o.seeds.length === 0) issues.push('seeds: at least one seed authority (host:port) is required')
    if (typeof o.clusterName !== 'string' || o.clusterName === '') issues.push('clusterName is required')
    if (typeof o.secret !== 'string' || o.secret.length < 8) issues.push('secret must be a string of at least 8 characters')
    if (issues.length > 0) throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid cluster options: ${issues.join('; ')}`, { issues })
    const events = o.events ?? new EventStream()
    const nodeId = o.nodeId ?? randomBytes(8).toString('hex')
    const registry = new FailureDetectorRegistry(settings)
    // The handshake hook and the detector need the core and node, which need the bound port.
    const ref: { core?: ClusterCore; node?: ClusterNode } = {}
    const transport = await TcpTransport.listen({
      clusterName: o.clusterName,
      nodeId,
      secret: o.secret,
      events,
      ...(o.host === undefined ? {} : { host: o.host }),
      ...(o.port === undefined ? {} : { port: o.port }),
      ...(o.advertisedAuthority === undefined ? {} : { advertisedAuthority: o.advertisedAuthority }),
      ...(o.tls === undefined ? {} : { tls: o.tls }),
      ...(o.schemas === undefined ? {} : { schemas: o.schemas }),
      ...(o.controlLane === undefined ? {} : { controlLane: o.controlLane }),
      frameTypes: [FRAME_CLUSTER, ...(o.frameTypes ?? [])],
      // Spec 1.4: a second incarnation of a member's authority is refused in the handshake.
      accept: (peer, direction) => {
        const r = ref.core?.checkPeer(peer.authority, peer.nodeId) ?? o.acceptPeer?.(peer)
        if (r?.code === 'ERR_AUTHORITY_CONFLICT' && ref.node !== undefined) ref.node.#onConflict(peer.authority, peer.nodeId, direction)
        return r === undefined ? undefined : { code: r.code as 'ERR_AUTHORITY_CONFLICT', reason: r.reason }
      },
    })
    // The lease counts real arrival times of cluster frames (the detector registry shifts its own after a local pause).
    const lease = new ServingLease(o.servingLeaseMs ?? settings.acceptableHeartbeatPauseMs, 2 * DEFAULT_MONITORED_BY + 1)
    const detector: FailureDetector = {
      monitor: (id, now) => void registry.monitor(id, now),
      heartbeat: (id, now) => void registry.heartbeat(id, now),
      remove: (id) => {
        registry.remove(id)
        lease.forget(authorityOfMemberId(id))
      },
      check: (now) => registry.check(now, ref.node?.takeVerdict()),
      onLocalPause: () => {},
    }
    const core = new ClusterCore({
      authority: transport.authority,
      nodeId,
      seeds: o.seeds,
      convergenceTimeoutMs: o.convergenceTimeoutMs ?? DEFAULT_CONVERGENCE_TIMEOUT_MS,
      downAfterUnreachableMs: settings.downAfterUnreachableMs,
      detector,
      random: Math.random,
    })
    ref.core = core
    const node = new ClusterNode(o, events, transport, core, settings, registry)
    node.lease = lease
    ref.node = node
    node.#run()
    return node
  }

  get authority(): string {
    return this.core.authority
  }

  get nodeId(): string {
    return this.core.nodeId
  }

  /** Active members, oldest first. */
  members(): Member[] {
    return this.core.members()
  }

  /** @internal the local-health verdict for the next check (set by the check timer). */
  takeVerdict(): LocalHealthVerdict | undefined {
    const v = this.#verdict
    this.#verdict = undefined
    return v
  }

  #run(): void {
    const o = this.#o
    const s = this.detectorSettings
    this.transport.on('frame', (peer, frame) => {
      if (frame[0] !== FRAME_CLUSTER) return // other frame types belong to other layers
      const now = performance.now()
      // After a stall of our own (GC, SIGSTOP) the poll phase runs before the timers and
      // hands us frames sent long ago: judge the lease on what was heard before the
      // stall first, or they would renew it and the lapse would never be noticed.
      if (now - this.#leaseCheckedAt > 2 * s.checkIntervalMs) this.#watchLease(now)
      this.lease.heard(peer.authority, now)
      let msg: ClusterMessage
      try {
        msg = parseClusterMessage(binaryCodec.decode(frame, 1, frame.length - 1))
      } catch (e) {
        const err = toGrainClusterError(e, 'ERR_FRAME_MALFORMED')
        this.events.publish({ type: 'transport.frame-rejected', remote: peer.authority, code: err.code, reason: err.reason })
        return
      }
      try {
        this.core.onMessage(peer.authority, msg, performance.now())
      } catch (e) {
        this.events.publish({ type: 'transport.frame-rejected', remote: peer.authority, code: 'ERR_FRAME_MALFORMED', reason: `bad cluster message: ${toGrainClusterError(e).reason}` })
      }
      this.#pump()
    })
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(() => {
        if (this.#closed) return
        fn()
        this.#pump()
      }, ms)
      this.#timers.push(t)
    }
    const gossipMs = o.gossipIntervalMs ?? DEFAULT_GOSSIP_INTERVAL_MS
    every(gossipMs, () => {
      this.core.tick(performance.now())
      this.#keepConnections()
      if (this.core.gossipSpeedupNeeded()) {
        this.#speedup(gossipMs / 3)
        this.#speedup((gossipMs * 2) / 3)
      }
    })
    every(s.heartbeatIntervalMs, () => this.core.heartbeatTick(performance.now()))
    // Local health first, then judge: a stall of our own is forgiven before anyone is accused.
    this.#leaseCheckedAt = performance.now()
    every(s.checkIntervalMs, () => {
      const now = performance.now()
      const v = this.#health.tick(now, s.checkIntervalMs)
      if (v.status === 'paused') {
        this.#verdict = v
        this.core.onLocalPause(now, v.lagMs)
      }
      this.core.checkReachability(now)
      this.#watchLease(now)
    })
    this.#joinLoop = this.#join()
  }

  /** One extra gossip round (Akka's GossipSpeedupTick) after `ms`; unref'd, skipped once closed. */
  #speedup(ms: number): void {
    const t = setTimeout(() => {
      if (this.#closed) return
      this.core.speedupTick()
      this.#pump()
    }, ms)
    t.unref()
  }

  /**
   * Write an entry of the replicated data map that gossip carries to every
   * member (ClusterCore.writeData; null deletes). Listeners of this node
   * hear of it at once, other members once gossip brings it.
   */
  writeData(key: string, value: unknown): boolean {
    const changed = this.core.writeData(key, value)
    if (changed) this.#pump()
    return changed
  }

  /** About how many bytes the replicated data map takes in a gossip message (MemberTable.dataBytes). */
  get dataBytes(): number {
    return this.core.table.dataBytes
  }

  /** dataBytes after writing `value` under `key` (MemberTable.dataBytesWith). */
  dataBytesWith(key: string, value: unknown): number {
    return this.core.table.dataBytesWith(key, value)
  }

  /** The live value of a replicated data key (undefined when absent or deleted). */
  readData(key: string): unknown {
    return this.core.table.data(key)
  }

  /** Live replicated data entries whose key starts with `prefix`. */
  dataEntries(prefix: string): [string, unknown][] {
    return this.core.table.dataEntries(prefix)
  }

  /** Call `fn` with the keys of replicated data entries that changed (written here or merged from gossip). Returns the unsubscribe. */
  onDataChange(fn: (keys: readonly string[]) => void): () => void {
    this.#dataListeners.add(fn)
    return () => void this.#dataListeners.delete(fn)
  }
  readonly #dataListeners = new Set<(keys: readonly string[]) => void>()

  /** Send what the core produced; publish its events and data changes; stop if we were removed. */
  #pump(): void {
    const { sends, events, data } = this.core.drain()
    for (const e of events) this.events.publish(e)
    if (data.length > 0) for (const fn of this.#dataListeners) fn(data)
    for (const s of sends) {
      let frame: Uint8Array
      try {
        frame = encodeMessage(s.msg)
      } catch (e) {
        this.events.publish({ type: 'transport.frame-rejected', remote: s.to, code: 'ERR_GRAIN_PAYLOAD_ENCODE', reason: toGrainClusterError(e).reason })
        continue
      }
      // Gossip and heartbeats are repeated by design: while disconnected they
      // are dropped and the connection is (re)established for the next one.
      // Heartbeats take the control lane: behind a flood of tells, or on a
      // connection paused by inbound flow control, they would arrive late
      // and make a busy peer look unreachable.
      const t = s.msg.t
      const sent = t === 'hb' || t === 'hb-ack' ? this.transport.sendControl(s.to, frame) : this.transport.send(s.to, frame)
      if (!sent) void this.transport.connect(s.to)
    }
    if (!this.#closed && this.core.isTerminated) {
      this.events.publish({ type: 'node.stopped', reason: `${this.authority} was removed from the cluster` })
      void this.close()
    }
  }

  /**
   * A verified peer claims a member's authority with another
   * NodeId (refused: spec 1.4). When this node dialed that authority, the
   * claim is proven: whoever listens there now is the new incarnation, so
   * the member is downed (ClusterCore.incarnationReplaced). A claim that
   * only arrived inbound proves nothing (a misconfigured node may advertise
   * any address), so it is checked by dialing the authority now rather than
   * after the redial backoff; at most once a second per authority.
   */
  #onConflict(authority: string, nodeId: string, direction: 'inbound' | 'outbound'): void {
    if (this.#closed) return
    if (direction === 'outbound') {
      // Inside the transport's handshake: publish and gossip on the next turn.
      if (this.core.incarnationReplaced(authority, nodeId)) setImmediate(() => this.#pump())
      return
    }
    const now = performance.now()
    if ((this.#conflictChecks.get(authority) ?? -Infinity) > now - 1_000) return
    this.#conflictChecks.set(authority, now)
    if (this.#conflictChecks.size > 64) for (const [a, t] of this.#conflictChecks) if (t <= now - 1_000) this.#conflictChecks.delete(a)
    setImmediate(() => {
      if (!this.#closed) this.transport.redialNow(authority)
    })
  }
  readonly #conflictChecks = new Map<string, number>()

  /** Keep connections to active members; drop those to removed ones. */
  #keepConnections(): void {
    const wanted = new Set<string>()
    for (const m of this.core.members()) if (m.authority !== this.authority) wanted.add(m.authority)
    for (const a of wanted) if (!this.transport.isConnected(a)) void this.transport.connect(a)
    for (const p of this.transport.peers()) {
      const m = this.core.table.member(p.authority)
      if (m !== undefined && (m.status === 'removed' || m.nodeId !== p.nodeId) && !this.#o.seeds.includes(p.authority)) this.transport.disconnect(p.authority, 'member removed')
    }
  }

  async #join(): Promise<void> {
    const o = this.#o
    const others = o.seeds.filter((s) => s !== this.authority)
    const first = o.seeds[0] === this.authority
    const deadline = performance.now() + (o.seedJoinTimeoutMs ?? DEFAULT_SEED_JOIN_TIMEOUT_MS)
    for (let round = 0; !this.#closed && this.core.self === undefined; round++) {
      // Ask every reachable seed at once; the first welcome wins.
      this.core.joinRefusals.clear()
      const dials = await Promise.allSettled(others.map((seed) => this.transport.connect(seed, { timeoutMs: 1_000 })))
      const conflict = dials.some((d) => d.status === 'rejected' && GrainClusterError.is(d.reason, 'ERR_AUTHORITY_CONFLICT'))
      const asked = others.filter((_, i) => dials[i]!.status === 'fulfilled')
      for (const seed of asked) this.core.requestJoin(seed)
      this.#pump()
      await this.#until(() => this.core.self !== undefined || asked.every((seed) => this.core.joinRefusals.has(seed)), 1_000)
      if (this.core.self !== undefined || this.#closed) return
      // Only the first seed may form a new cluster: when every other seed is
      // alive but not Up itself (nobody has formed one), or none answered in
      // time. A conflict refusal means a cluster exists that still holds our
      // old incarnation: wait for it to be removed instead.
      const noClusterYet = asked.length === others.length && others.every((seed) => this.core.joinRefusals.get(seed) === 'ERR_AUTHORITY_UNREACHABLE')
      if (first && !conflict && (others.length === 0 || noClusterYet || performance.now() >= deadline)) {
        this.core.selfJoin()
        this.#pump()
        return
      }
      await this.#sleep(Math.min(100 * 2 ** Math.min(round, 4), 1_000))
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms)
      t.unref()
    })
  }

  async #until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const end = performance.now() + timeoutMs
    while (!pred()) {
      if (performance.now() > end || this.#closed) return false
      await this.#sleep(10)
    }
    return true
  }

  /** Resolves once this node is Up (welcomed and promoted by the leader). */
  async whenUp(timeoutMs = 30_000): Promise<void> {
    if (!(await this.#until(() => this.core.isUp, timeoutMs))) {
      throw new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', `${this.authority} did not become Up within ${timeoutMs} ms (seeds: ${this.#o.seeds.join(', ')})`, { authority: this.authority })
    }
  }

  /** Graceful leave (spec 1.2): Leaving → Exiting → Removed, then stop. */
  async leave(timeoutMs = 10_000): Promise<void> {
    if (this.core.leave()) {
      this.#pump()
      await this.#until(() => {
        const s = this.core.self?.status
        return s === 'exiting' || s === 'removed' || this.core.isTerminated
      }, timeoutMs)
      // Give the Exiting status one gossip round to reach the others.
      await this.#sleep(this.#o.gossipIntervalMs ?? DEFAULT_GOSSIP_INTERVAL_MS)
    }
    await this.close()
  }

  /** Stop at once (timers, sockets); others will detect it as unreachable. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const t of this.#timers) clearInterval(t)
    this.metrics?.close()
    await this.transport.close()
    await this.#joinLoop?.catch(() => {})
    this.#terminatedResolve?.()
  }
}
