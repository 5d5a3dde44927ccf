/**
 * The membership protocol of one node, sans-I/O: messages and the current
 * time go in, messages to send and events come out (drain()). The TCP driver
 * and the deterministic simulator run this same code.
 *
 * Gossip (spec 7.1/7.2), push–pull of deltas:
 *   every round   A → B  status{digest, seen}
 *   digests equal        B merges A's seen set (and answers if A lacks some)
 *   digests differ B → A pull{vv_B}
 *                  A → B delta{changes B lacks, vv_A, back: vv_A if A lacks some}
 *                  B → A delta{changes A lacks}            (only if asked)
 *
 * Convergence (design 3.8): a new version starts in Diffusing; when every
 * reachable member has seen it (and more than half of the seed members) it
 * is Confirmed and `gossip.converged` reports the time it took. If the
 * convergence timer (default 1 s) runs out first, Reconciling pushes the
 * missing ranges to every member that has not seen the version, with
 * exponential backoff, at most 3 times; normal gossip continues meanwhile.
 * A rejected view (two incarnations of one authority) goes to Reconciling at
 * once and is reported.
 *
 * Leader actions (Joining→Up, Leaving→Exiting, Exiting/Down→Removed) run on
 * the leader only, only after convergence, and never on a minority side.
 * Downing (Unreachable for downAfterUnreachableMs → Down) needs no
 * convergence but does need a majority (see membership/downing.ts).
 */

import type { EventInit, RuntimeEvent } from '../observability/events.js'
import { leaderOf, sideHasMajority } from './membership/downing.js'
import { type Member, type MemberStatus, compareMembers, isActive } from './membership/member.js'
import { type ApplyResult, type Change, MemberTable, type VersionVector } from './membership/member-table.js'

export type ClusterMessage =
  | { t: 'status'; digest: string; /** null = every active member has seen it */ seen: string[] | null }
  | { t: 'pull'; vv: VersionVector }
  | { t: 'delta'; vv: VersionVector; changes: Change[]; back?: VersionVector }
  | { t: 'join'; nodeId: string }
  | { t: 'welcome'; vv: VersionVector; changes: Change[] }
  | { t: 'join-refused'; code: string; reason: string }
  | { t: 'hb'; n: number }
  | { t: 'hb-ack'; n: number }

/** What the core needs from a failure detector (failure-detector/detector-registry.ts). */
export interface FailureDetector {
  /** Start watching `id` as if it had just sent a heartbeat (so silence from the start is detected). */
  monitor(id: string, nowMs: number): void
  heartbeat(id: string, nowMs: number): void
  remove(id: string): void
  check(nowMs: number): { unreachable: string[]; reachable: string[] }
  onLocalPause(nowMs: number, lagMs: number): void
}

export interface ClusterCoreOptions {
  authority: string
  nodeId: string
  /** Seed authorities in priority order (same list on every node). */
  seeds: readonly string[]
  /** Convergence timer (ms): Diffusing → Reconciling when it runs out. Default 1 000. */
  convergenceTimeoutMs?: number
  /** Reconciling re-sends (with exponential backoff). Default 3. */
  maxReconcileRetries?: number
  /** Stable-after window: Unreachable this long → Down. */
  downAfterUnreachableMs: number
  /** Each member heartbeats this many successors on the ring. Default 5. */
  monitoredByNrOfMembers?: number
  detector: FailureDetector
  /** Seeded randomness for peer selection (the simulator replays it). */
  random: () => number
}

export interface Send {
  to: string
  msg: ClusterMessage
}

export type ConvergenceState = 'diffusing' | 'reconciling' | 'confirmed'

interface ViewEntry {
  nodeId: string
  status: MemberStatus
  unreachable: boolean
}

/** Members pulled per reconcile attempt. */
const RECONCILE_FANOUT = 3

/** Members each node heartbeats (its ring successors), as Pekko's monitored-by-nr-of-members. */
export const DEFAULT_MONITORED_BY = 5

export const memberId = (authority: string, nodeId: string): string => `${authority}#${nodeId}`

/** The authority part of a memberId. */
export const authorityOfMemberId = (id: string): string => {
  const i = id.lastIndexOf('#')
  return i < 0 ? id : id.slice(0, i)
}

export class ClusterCore {
  readonly authority: string
  readonly nodeId: string
  readonly seeds: readonly string[]
  readonly table: MemberTable
  readonly #o: Required<Omit<ClusterCoreOptions, 'authority' | 'nodeId' | 'seeds'>>
  #sends: Send[] = []
  #events: EventInit<RuntimeEvent>[] = []
  #dataTouched = new Set<string>()
  readonly #view = new Map<string, ViewEntry>()
  #seen = new Set<string>()
  #seenDigest = ''
  #conv: ConvergenceState = 'confirmed'
  #convDigest = ''
  #convSince = 0
  #convDeadline = 0
  #retries = 0
  readonly #unreachableSince = new Map<string, number>()
  #hbSeq = 0
  readonly #monitored = new Set<string>()
  /** Sequence number of the latest heartbeat request per member. */
  readonly #lastHbTo = new Map<string, number>()
  /** Answers with a sequence number up to this are stale. */
  readonly #ackFloor = new Map<string, number>()
  /** Counters the driver exports as metrics. */
  readonly stats = { rejectedViews: 0, conflictsRefused: 0, convergences: 0, reconciles: 0, gossipSent: 0 }
  /** Seeds that refused our join, with the code (ERR_AUTHORITY_UNREACHABLE = not Up themselves). */
  readonly joinRefusals = new Map<string, string>()

  constructor(o: ClusterCoreOptions) {
    this.authority = o.authority
    this.nodeId = o.nodeId
    this.seeds = o.seeds
    this.table = new MemberTable(o.authority)
    this.#o = {
      convergenceTimeoutMs: o.convergenceTimeoutMs ?? 1_000,
      maxReconcileRetries: o.maxReconcileRetries ?? 3,
      downAfterUnreachableMs: o.downAfterUnreachableMs,
      monitoredByNrOfMembers: o.monitoredByNrOfMembers ?? DEFAULT_MONITORED_BY,
      detector: o.detector,
      random: o.random,
    }
  }

  // ------------------------------------------------------------------ state

  get self(): Member | undefined {
    const m = this.table.member(this.authority)
    return m?.nodeId === this.nodeId ? m : undefined
  }

  /** True once this node is in the table as Up (or later, while still active). */
  get isUp(): boolean {
    const s = this.self?.status
    return s === 'up' || s === 'leaving' || s === 'exiting'
  }

  /** True when this incarnation has been Downed or Removed: the process should stop. */
  get isTerminated(): boolean {
    const mine = this.table.incarnation(this.authority, this.nodeId)
    if (mine !== undefined && (mine.status === 'down' || mine.status === 'removed')) return true
    const holder = this.table.member(this.authority)
    return holder !== undefined && holder.nodeId !== this.nodeId && this.#wasMember
  }
  #wasMember = false

  get convergence(): ConvergenceState {
    return this.#conv
  }

  unreachableSet(): Set<string> {
    // The table caches its unreachable set per version; keep only active holders.
    const out = new Set<string>()
    for (const a of this.table.unreachable()) {
      const m = this.table.member(a)
      if (m !== undefined && isActive(m)) out.add(a)
    }
    return out
  }

  /** Active members in a stable order (oldest first). */
  members(): Member[] {
    return [...this.table.activeMembers()].sort(compareMembers)
  }

  get leader(): Member | undefined {
    return leaderOf(this.table.activeMembers(), this.unreachableSet(), this.seeds)
  }

  /** On the minority side of a partition: no membership writes. */
  get isMinority(): boolean {
    return !sideHasMajority({ members: this.table.activeMembers(), unreachable: this.unreachableSet(), seeds: this.seeds, self: this.authority })
  }

  /** Every reachable active member has seen this node's current version. */
  isConverged(): boolean {
    this.#refreshSeen()
    for (const m of this.table.activeMembers()) {
      if (this.table.isUnreachable(m.authority)) {
        if (m.status !== 'exiting') return false
      } else if (!this.#seen.has(m.authority)) return false
    }
    return true
  }

  #seedQuorum(): boolean {
    const seedMembers = this.table.activeMembers().filter((m) => this.seeds.includes(m.authority) && !this.table.isUnreachable(m.authority))
    if (seedMembers.length <= 1) return true
    const agreeing = seedMembers.filter((m) => this.#seen.has(m.authority)).length
    return agreeing * 2 > seedMembers.length
  }

  /** Take what the core wants sent and published, and the replicated data keys that changed, since the last call. */
  drain(): { sends: Send[]; events: EventInit<RuntimeEvent>[]; data: string[] } {
    const out = { sends: this.#sends, events: this.#events, data: [...this.#dataTouched] }
    this.#sends = []
    this.#events = []
    this.#dataTouched.clear()
    return out
  }

  /**
   * Write a replicated data entry (null deletes it); gossip spreads it like
   * a membership change and it counts toward convergence. Allowed on either
   * side of a partition: the register merges when the sides meet again.
   * Returns false when the key already held an equal value.
   */
  writeData(key: string, value: unknown): boolean {
    if (this.table.writeData(key, value) === undefined) return false
    this.#dataTouched.add(key)
    return true
  }

  #send(to: string, msg: ClusterMessage): void {
    this.#sends.push({ to, msg })
  }

  #emit(e: EventInit<RuntimeEvent>): void {
    this.#events.push(e)
  }

  // ----------------------------------------------------------------- joining

  /** The first seed forms the cluster on its own (only when no other seed answers). */
  selfJoin(): void {
    if (this.self !== undefined) return
    this.table.writeMember({ authority: this.authority, nodeId: this.nodeId, status: 'up', upNumber: 1 })
    this.#sync([this.authority])
  }

  /** Ask `seed` to let this node in; the answer is a welcome or a join-refused message. */
  requestJoin(seed: string): void {
    this.#send(seed, { t: 'join', nodeId: this.nodeId })
  }

  /**
   * May a peer with this identity talk to us? Refuses a second incarnation
   * of an authority that is still a member (spec 1.4), and an incarnation
   * that has been removed. Used by the transport's handshake.
   */
  checkPeer(authority: string, nodeId: string): { code: string; reason: string } | undefined {
    const m = this.table.member(authority)
    if (m === undefined) return undefined
    if (m.nodeId !== nodeId && m.status !== 'removed') {
      this.stats.conflictsRefused++
      const reason = `authority ${authority} is held by incarnation ${m.nodeId} (${m.status}); incarnation ${nodeId} may join once the old one is removed`
      this.#emit({ type: 'member.conflict', authority, existingNodeId: m.nodeId, newNodeId: nodeId, reason })
      return { code: 'ERR_AUTHORITY_CONFLICT', reason }
    }
    if (m.nodeId === nodeId && m.status === 'removed') {
      return { code: 'ERR_AUTHORITY_CONFLICT', reason: `incarnation ${nodeId} of ${authority} was removed from the cluster; restart it to join again` }
    }
    return undefined
  }

  /**
   * This node dialed `authority` and a verified peer with NodeId `nodeId`
   * answered, while the member at that authority is another incarnation:
   * the member's process no longer holds its address, so it has stopped (a
   * restart on the same host:port). Down it now rather than after failure
   * detection plus downAfterUnreachableMs, as Akka downs an existing member
   * when a new incarnation of its address asks to join. This is proof, not
   * suspicion, so any member may write the Down (no leader, no majority);
   * gossip spreads it and the leader removes it, after which the new
   * incarnation is admitted. Returns whether it downed the member.
   */
  incarnationReplaced(authority: string, nodeId: string): boolean {
    if (this.self === undefined || authority === this.authority) return false
    const m = this.table.member(authority)
    if (m === undefined || m.nodeId === nodeId || !isActive(m)) return false
    // The listener is an incarnation already removed (a zombie): it proves nothing about the member.
    if (this.table.incarnation(authority, nodeId)?.status === 'removed') return false
    if (this.table.writeStatus(authority, 'down', undefined, m.nodeId) === undefined) return false
    this.#downReasons.set(authority, `a new incarnation ${nodeId} listens at ${authority}: incarnation ${m.nodeId} has stopped (restarted at the same address)`)
    this.#sync([authority])
    return true
  }

  #handleJoin(from: string, nodeId: string): void {
    const refuse = (code: string, reason: string): void => this.#send(from, { t: 'join-refused', code, reason })
    if (!this.isUp) return refuse('ERR_AUTHORITY_UNREACHABLE', `${this.authority} is not an Up member yet`)
    if (this.isMinority) return refuse('ERR_AUTHORITY_MINORITY', `${this.authority} is on the minority side of a partition and accepts no joins`)
    const conflict = this.checkPeer(from, nodeId)
    if (conflict !== undefined) return refuse(conflict.code, conflict.reason)
    if (this.table.incarnation(from, nodeId) === undefined) {
      this.table.writeMember({ authority: from, nodeId, status: 'joining', upNumber: 0 })
      this.#sync([from])
    }
    const snap = this.table.snapshot()
    this.#send(from, { t: 'welcome', vv: snap.vv, changes: snap.changes })
  }

  // -------------------------------------------------------------- messages

  onMessage(from: string, msg: ClusterMessage, nowMs: number): void {
    switch (msg.t) {
      case 'status':
        this.#onStatus(from, msg.digest, msg.seen)
        return
      case 'pull': {
        const changes = this.table.deltaFor(msg.vv)
        const behind = this.table.isBehind(msg.vv)
        // Ahead with no changes to send (superseded writes): the vv alone brings the peer level.
        if (changes.length > 0 || behind || this.table.isAheadOf(msg.vv)) this.#send(from, { t: 'delta', vv: this.table.vv(), changes, ...(behind ? { back: this.table.vv() } : {}) })
        return
      }
      case 'delta':
        this.#merge(from, msg.changes, msg.vv, nowMs)
        if (msg.back !== undefined) {
          const changes = this.table.deltaFor(msg.back)
          if (changes.length > 0 || this.table.isAheadOf(msg.back)) this.#send(from, { t: 'delta', vv: this.table.vv(), changes })
        }
        return
      case 'join':
        this.#handleJoin(from, msg.nodeId)
        return
      case 'welcome':
        this.#merge(from, msg.changes, msg.vv, nowMs)
        return
      case 'join-refused':
        this.joinRefusals.set(from, msg.code)
        this.#emit({ type: 'handshake.refused', remote: from, claimedAuthority: from, code: msg.code, reason: `join refused by ${from}: ${msg.reason}` })
        return
      case 'hb':
        this.#send(from, { t: 'hb-ack', n: msg.n })
        return
      case 'hb-ack': {
        // A peer resuming from a stop answers its backlog of requests at once;
        // those near-zero intervals would skew its detector's history. Count
        // one answer, then only answers to requests sent after it (which
        // still works when answers are slower than the heartbeat interval).
        if (msg.n <= (this.#ackFloor.get(from) ?? 0)) return
        this.#ackFloor.set(from, this.#lastHbTo.get(from) ?? msg.n)
        const m = this.table.member(from)
        if (m !== undefined && this.#monitored.has(memberId(from, m.nodeId))) this.#o.detector.heartbeat(memberId(from, m.nodeId), nowMs)
        return
      }
    }
  }

  #onStatus(from: string, digest: string, seen: string[] | null): void {
    this.#refreshSeen()
    if (digest !== this.table.digest()) {
      this.#send(from, { t: 'pull', vv: this.table.vv() })
      return
    }
    const before = this.#seen.size
    this.#seen.add(from)
    if (seen === null) for (const m of this.table.activeMembers()) this.#seen.add(m.authority)
    else for (const a of seen) this.#seen.add(a)
    // Push-pull: tell the sender what it does not know yet.
    const theirs = seen === null ? Number.POSITIVE_INFINITY : seen.length
    if (this.#seen.size > before || theirs < this.#seen.size) this.#sendStatus(from)
  }

  #merge(from: string, changes: Change[], vv: VersionVector, nowMs: number): void {
    const r: ApplyResult = this.table.apply(changes, vv)
    for (const lost of r.rejected) {
      this.stats.rejectedViews++
      this.#emit({ type: 'gossip.view-rejected', from, reason: `two incarnations of ${lost.authority}: kept the older, rejected ${lost.nodeId} (${lost.status})` })
      this.#enterReconciling(nowMs, `conflicting view from ${from}`)
    }
    if (r.touched.size > 0) this.#sync(r.touched)
    for (const k of r.dataTouched) this.#dataTouched.add(k)
    this.#refreshSeen()
    // The sender had exactly this version when it sent: it has seen it.
    if (this.table.digest() === digestOfVV(vv, this.table)) this.#seen.add(from)
  }

  // ----------------------------------------------------------------- ticks

  /** One gossip round plus leader duties and the convergence timer. */
  tick(nowMs: number): void {
    if (this.self === undefined) return
    this.#trackUnreachable(nowMs)
    this.#gossipRound()
    if (this.#isLeader() && !this.isMinority) {
      this.#downUnreachable(nowMs)
      if (this.isConverged()) this.#leaderActions()
    }
    this.#convergenceTimer(nowMs)
  }

  /**
   * Akka's gossip speed-up (ClusterCoreDaemon.isGossipSpeedupNeeded): while
   * fewer than half of the active members have seen this node's current
   * view, a change is still spreading, and the node gossips three times per
   * interval instead of once. Joining → Up then takes one or two intervals
   * instead of about five (the Joining entry must reach everyone before the
   * leader promotes, then the Up entry must spread).
   */
  gossipSpeedupNeeded(): boolean {
    if (this.self === undefined) return false
    this.#refreshSeen()
    return this.#seen.size < this.table.activeMembers().length / 2
  }

  /**
   * An extra round between ticks while a change spreads: gossip, and the
   * leader's promotions once converged (the same idempotent leader actions
   * as tick(); downing and the convergence timer stay on the tick).
   */
  speedupTick(): void {
    if (this.self === undefined) return
    this.#gossipRound()
    if (this.#isLeader() && !this.isMinority && this.isConverged()) this.#leaderActions()
  }

  #isLeader(): boolean {
    return this.leader?.authority === this.authority && this.self?.nodeId === this.nodeId
  }

  #sendStatus(to: string): void {
    this.#refreshSeen()
    const active = this.table.activeMembers()
    const all = active.every((m) => this.#seen.has(m.authority))
    this.#send(to, { t: 'status', digest: this.table.digest(), seen: all ? null : [...this.#seen] })
    this.stats.gossipSent++
  }

  #gossipRound(): void {
    const unreachable = this.unreachableSet()
    const targets = this.table.activeMembers().filter((m) => m.authority !== this.authority && !unreachable.has(m.authority))
    if (targets.length === 0) return
    this.#refreshSeen()
    const unseen = targets.filter((m) => !this.#seen.has(m.authority))
    const pool = unseen.length > 0 && this.#o.random() < 0.8 ? unseen : targets
    const pick = pool[Math.floor(this.#o.random() * pool.length)] ?? pool[0]!
    this.#sendStatus(pick.authority)
  }

  #trackUnreachable(nowMs: number): void {
    const now = this.unreachableSet()
    for (const a of now) if (!this.#unreachableSince.has(a)) this.#unreachableSince.set(a, nowMs)
    for (const a of [...this.#unreachableSince.keys()]) if (!now.has(a)) this.#unreachableSince.delete(a)
  }

  #downUnreachable(nowMs: number): void {
    for (const [a, since] of this.#unreachableSince) {
      if (a === this.authority || nowMs - since < this.#o.downAfterUnreachableMs) continue
      const m = this.table.member(a)
      if (m === undefined || !isActive(m)) continue
      if (this.table.writeStatus(a, 'down') !== undefined) {
        this.#downReasons.set(a, `unreachable for ${Math.round(nowMs - since)} ms (stable-after ${this.#o.downAfterUnreachableMs} ms)`)
        this.#sync([a])
      }
    }
  }
  readonly #downReasons = new Map<string, string>()

  /** The reason this node downed `a` (once: the entry is not kept), or a generic one. */
  #takeDownReason(a: string): string {
    const r = this.#downReasons.get(a) ?? 'downed by the leader'
    this.#downReasons.delete(a)
    return r
  }

  #leaderActions(): void {
    const touched: string[] = []
    let maxUp = 0
    for (const m of this.table.members()) maxUp = Math.max(maxUp, m.upNumber)
    const joining = this.table.activeMembers().filter((m) => m.status === 'joining').sort((a, b) => (a.authority < b.authority ? -1 : 1))
    for (const m of joining) if (this.table.writeStatus(m.authority, 'up', ++maxUp) !== undefined) touched.push(m.authority)
    // Incarnations that lost an authority conflict leave the table for good.
    for (const m of this.table.shadows()) if (this.table.writeStatus(m.authority, 'removed', undefined, m.nodeId) !== undefined) touched.push(m.authority)
    for (const m of this.table.members()) {
      const next: MemberStatus | undefined = m.status === 'leaving' ? 'exiting' : m.status === 'exiting' || m.status === 'down' ? 'removed' : undefined
      if (next === undefined) continue
      // Removing the leader itself would leave nobody to finish the job: let the next leader do it.
      if (next === 'removed' && m.authority === this.authority) continue
      if (this.table.writeStatus(m.authority, next) !== undefined) touched.push(m.authority)
    }
    if (touched.length > 0) this.#sync(touched)
  }

  #convergenceTimer(nowMs: number): void {
    const d = this.table.digest()
    if (d !== this.#convDigest) {
      if (this.#conv === 'confirmed') {
        this.#conv = 'diffusing'
        this.#convSince = nowMs
        this.#emit({ type: 'gossip.state', state: 'diffusing', reason: 'new membership version' })
      }
      this.#convDigest = d
      if (this.#conv === 'diffusing') {
        this.#convDeadline = nowMs + this.#o.convergenceTimeoutMs
        this.#retries = 0
      }
    }
    if (this.#conv === 'confirmed') return
    if (this.isConverged() && this.#seedQuorum()) {
      this.#conv = 'confirmed'
      const durationMs = nowMs - this.#convSince
      this.stats.convergences++
      this.#emit({ type: 'gossip.converged', version: d, durationMs, members: this.table.activeMembers().length })
      return
    }
    if (nowMs < this.#convDeadline) return
    if (this.#conv === 'diffusing') this.#enterReconciling(nowMs, `not confirmed within ${this.#o.convergenceTimeoutMs} ms`)
    else if (this.#retries < this.#o.maxReconcileRetries) {
      this.#retries++
      this.#convDeadline = nowMs + this.#o.convergenceTimeoutMs * 2 ** this.#retries
      this.#reconcile()
    }
  }

  #enterReconciling(nowMs: number, reason: string): void {
    if (this.#conv !== 'reconciling') {
      if (this.#conv === 'confirmed') this.#convSince = nowMs
      this.#conv = 'reconciling'
      this.#emit({ type: 'gossip.state', state: 'reconciling', reason })
    }
    this.#retries = 0
    this.#convDeadline = nowMs + this.#o.convergenceTimeoutMs
    this.#reconcile()
  }

  /**
   * Missing-range re-send: a few members that have not seen our version get
   * a pull (push–pull follows). A few, not all: when every node of a large
   * cluster reconciles at once, pulling from everyone would cost N² messages.
   */
  #reconcile(): void {
    this.stats.reconciles++
    const unreachable = this.unreachableSet()
    const laggards = this.table.activeMembers().filter((m) => m.authority !== this.authority && !unreachable.has(m.authority) && !this.#seen.has(m.authority))
    const vv = this.table.vv()
    for (let k = 0; k < RECONCILE_FANOUT && laggards.length > 0; k++) {
      const i = Math.floor(this.#o.random() * laggards.length)
      const [m] = laggards.splice(i, 1)
      this.#send(m!.authority, { t: 'pull', vv })
    }
  }

  // ------------------------------------------------------------ heartbeats

  /**
   * Heartbeat the monitored successors. Judging them is checkReachability's
   * job, on its own timer after the local-health check: a heartbeat timer
   * that fires first after a stall must not accuse anyone.
   */
  heartbeatTick(nowMs: number): void {
    if (this.self === undefined) return
    const targets = this.#monitorTargets()
    const ids = new Set<string>()
    for (const m of targets) {
      const id = memberId(m.authority, m.nodeId)
      ids.add(id)
      const n = ++this.#hbSeq
      this.#lastHbTo.set(m.authority, n)
      this.#send(m.authority, { t: 'hb', n })
    }
    for (const id of this.#monitored) if (!ids.has(id)) this.#o.detector.remove(id)
    // Monitoring starts now: a member that never answers is still detected.
    for (const id of ids) if (!this.#monitored.has(id)) this.#o.detector.monitor(id, nowMs)
    this.#monitored.clear()
    for (const id of ids) this.#monitored.add(id)
  }

  /** Turn the detector's verdicts into this observer's reachability records. */
  checkReachability(nowMs: number): void {
    if (this.self === undefined) return
    const { unreachable, reachable } = this.#o.detector.check(nowMs)
    const touched: string[] = []
    for (const id of unreachable) {
      const [authority, nodeId] = splitId(id)
      if (this.table.writeReachability(authority, nodeId, false) !== undefined) touched.push(authority)
    }
    for (const id of reachable) {
      const [authority, nodeId] = splitId(id)
      if (this.table.writeReachability(authority, nodeId, true) !== undefined) touched.push(authority)
    }
    if (touched.length > 0) this.#sync(touched)
  }

  /** Our own process was paused (timer lag): do not accuse peers for it. */
  onLocalPause(nowMs: number, lagMs: number): void {
    this.#o.detector.onLocalPause(nowMs, lagMs)
    this.#emit({ type: 'node.paused', lagMs, reason: 'local timers ran late; peer heartbeat histories were given a fresh grace period' })
  }

  /** The successors of this node on the ring of active members (sorted by authority). */
  #monitorTargets(): Member[] {
    const ring = this.table
      .activeMembers()
      .filter((m) => m.status !== 'joining' || m.authority === this.authority)
      .sort((a, b) => (a.authority < b.authority ? -1 : a.authority > b.authority ? 1 : 0))
    const i = ring.findIndex((m) => m.authority === this.authority)
    if (i < 0) return []
    const out: Member[] = []
    for (let k = 1; k < ring.length && out.length < this.#o.monitoredByNrOfMembers; k++) out.push(ring[(i + k) % ring.length]!)
    return out
  }

  // ----------------------------------------------------------------- leave

  /** Graceful leave (spec 1.2): Leaving now; the leader moves us to Exiting, then Removed. */
  leave(): boolean {
    const me = this.self
    if (me === undefined || !isActive(me)) return false
    if (me.status === 'leaving' || me.status === 'exiting') return true
    this.table.writeStatus(this.authority, 'leaving')
    this.#sync([this.authority])
    return true
  }

  // ---------------------------------------------------------------- events

  #refreshSeen(): void {
    const d = this.table.digest()
    if (d !== this.#seenDigest) {
      this.#seenDigest = d
      this.#seen = new Set([this.authority])
    }
  }

  /** Publish the transitions of the given members since we last looked. */
  #sync(authorities: Iterable<string>): void {
    for (const a of authorities) {
      const m = this.table.member(a)
      if (m === undefined) continue
      let prev = this.#view.get(a)
      if (prev !== undefined && prev.nodeId !== m.nodeId) prev = undefined
      const unreachable = isActive(m) && this.table.isUnreachable(a)
      const ref = { authority: a, nodeId: m.nodeId }
      if (prev?.status !== m.status) {
        switch (m.status) {
          case 'joining':
            this.#emit({ type: 'member.joined', ...ref })
            break
          case 'up':
            if (prev === undefined) this.#emit({ type: 'member.joined', ...ref })
            this.#emit({ type: 'member.up', ...ref })
            break
          case 'leaving':
            this.#emit({ type: 'member.leaving', ...ref })
            break
          case 'exiting':
            this.#emit({ type: 'member.exiting', ...ref })
            break
          case 'down':
            this.#emit({ type: 'member.downed', ...ref, reason: this.#takeDownReason(a), decidedBy: this.table.originOf(a) ?? 'unknown' })
            break
          case 'removed':
            this.#emit({ type: 'member.removed', ...ref, reason: prev?.status === 'exiting' || prev?.status === 'leaving' ? 'left the cluster' : 'downed' })
            break
        }
      }
      if ((prev?.unreachable ?? false) !== unreachable) {
        if (unreachable) this.#emit({ type: 'member.unreachable', ...ref, observer: this.table.unreachableObservers(a)[0] ?? this.authority })
        else if (isActive(m)) this.#emit({ type: 'member.reachable', ...ref, observer: this.authority })
      }
      this.#view.set(a, { nodeId: m.nodeId, status: m.status, unreachable })
      if (a === this.authority && m.nodeId === this.nodeId && isActive(m)) this.#wasMember = true
    }
  }
}

function splitId(id: string): [string, string] {
  const i = id.lastIndexOf('#')
  return [id.slice(0, i), id.slice(i + 1)]
}

/** Digest a version vector the way MemberTable does, to compare a sender's version with ours. */
function digestOfVV(vv: VersionVector, table: MemberTable): string {
  const local = table.vv()
  for (const o in vv) if (vv[o] !== local[o]) return ''
  for (const o in local) if (vv[o] !== local[o]) return ''
  return table.digest()
}
