/**
 * Placement in a cluster (issue 5, first slice): the owner of a grain key is
 * the rendezvous winner among the Up, reachable members; within the owner the
 * worker follows from the partition. Owners are cached per key (PidCache) and
 * the cache is dropped on any membership change or quarantine.
 *
 * Moving state when ownership changes is the HandoffCoordinator's job; this
 * router tells it who may hold a key's state (previousOwners).
 */

import { GrainClusterError } from '../common/errors.js'
import { formatPid, type Pid, pidTextOf } from '../common/pid.js'
import { PidCache } from '../cluster/placement/pid-cache.js'
import { rendezvousOwner } from '../cluster/placement/rendezvous.js'
import type { Member } from '../cluster/membership/member.js'
import type { EventStream } from '../observability/event-stream.js'
import { parseAuthority } from '../remote/transport/tcp-transport.js'
import type { ClusterNode } from './cluster-node.js'

export type Placement = (
  | { readonly local: true }
  | { readonly local: false; readonly pid: Pid; readonly pidText: string }
) & { readonly authority: string; readonly nodeId: string }

export class PlacementRouter {
  readonly cache: PidCache<Placement>
  readonly #cluster: ClusterNode
  #candidates: readonly Member[] = []
  #candidatesAt = ''
  /** Shared by every key this node owns: a local placement allocates nothing. */
  readonly #local: Placement
  readonly #unsubscribe: (() => void)[] = []

  constructor(cluster: ClusterNode, events: EventStream, o: { ttlMs?: number; maxEntries?: number } = {}) {
    this.#cluster = cluster
    this.cache = new PidCache<Placement>(o)
    this.#local = { local: true, authority: cluster.core.authority, nodeId: cluster.core.nodeId }
    // Any membership change can move any key. Placement must agree on every
    // node, so one node's quarantine of an association moves nothing by
    // itself (calls to it fail with ERR_AUTHORITY_QUARANTINED, retryable);
    // the cut heartbeats make the member unreachable, which does. The cache
    // is still dropped on quarantine and release so no cached PID spans either.
    this.#events = events
    this.#unsubscribe.push(
      events.subscribe('member.*', (e) => this.#invalidate(e.type)),
      events.subscribe('association.quarantined', (e) => this.#invalidate(e.type)),
      events.subscribe('association.released', (e) => this.#invalidate(e.type)),
    )
  }
  readonly #events: EventStream

  #invalidate(reason: string): void {
    const entries = this.cache.clear()
    if (entries > 0) this.#events.publish({ type: 'pid.cache-invalidated', entries, reason })
  }

  /** Up and reachable members, cached per membership version (without this node once it is leaving). */
  #eligible(): readonly Member[] {
    const table = this.#cluster.core.table
    const d = table.digest()
    if (d !== this.#candidatesAt || this.#leavingApplied !== this.#leaving) {
      const self = this.#cluster.core.authority
      const next = table.activeMembers().filter((m) => m.status === 'up' && !table.isUnreachable(m.authority) && !(this.#leaving && m.authority === self))
      if (this.#candidates.length > 0 && !sameMembers(next, this.#candidates)) {
        this.#history.unshift(this.#candidates)
        if (this.#history.length > VIEW_HISTORY) this.#history.pop()
      }
      this.#candidates = next
      this.#candidatesAt = d
      this.#leavingApplied = this.#leaving
    }
    return this.#candidates
  }
  /** The members keys are placed on now (same array until the set changes). */
  eligibleMembers(): readonly Member[] {
    return this.#eligible()
  }

  /** Earlier eligible sets, newest first: where a key's state may still be. */
  readonly #history: (readonly Member[])[] = []
  #leaving = false
  #leavingApplied = false

  /**
   * Graceful leave: from now on this node places no key on itself, so
   * calls (and messages bounced by released activations) go to the owners
   * that take over.
   */
  startLeaving(): void {
    this.#leaving = true
    this.#invalidate('leaving')
  }

  get leaving(): boolean {
    return this.#leaving
  }

  /**
   * Other live members that may hold kind/key's activation: its owner
   * under earlier views, and the owner this node displaced (the owner if
   * this node were not a member), newest first, without duplicates.
   */
  previousOwners(kind: string, key: string): Member[] {
    const core = this.#cluster.core
    const self = core.authority
    const current = this.#eligible()
    const out: Member[] = []
    const add = (m: Member | undefined): void => {
      if (m === undefined || m.authority === self || out.some((o) => o.authority === m.authority)) return
      const live = core.table.member(m.authority)
      if (live === undefined || live.nodeId !== m.nodeId || core.table.isUnreachable(m.authority)) return
      // A Leaving member pushed its records before it announced the leave: nothing to pull there.
      if (live.status !== 'up') return
      out.push(live)
    }
    add(rendezvousOwner(current.filter((m) => m.authority !== self), kind, key))
    for (const view of this.#history) add(rendezvousOwner(view, kind, key))
    return out
  }

  /** The owner of kind/key among `members`. */
  ownerAmong(members: readonly Member[], kind: string, key: string): Member | undefined {
    return rendezvousOwner(members, kind, key)
  }

  /** The owner kind/key would have without this node (where a leaving node hands its keys). */
  successorOf(kind: string, key: string): Member | undefined {
    const self = this.#cluster.core.authority
    return rendezvousOwner(this.#eligible().filter((m) => m.authority !== self), kind, key)
  }

  /**
   * Where kind/key lives now. Throws retryable typed errors while this node
   * cannot place anything: not Up yet, or on the minority side of a
   * partition (it stops serving so the majority can take its keys over).
   */
  ownerOf(kind: string, key: string, nowMs: number): Placement {
    if (!this.#cluster.mayServe(nowMs)) throw this.#cluster.servingRefusal(kind, key, nowMs)
    const cached = this.cache.get(kind, key, nowMs)
    if (cached !== undefined) return cached
    const owner = rendezvousOwner(this.#eligible(), kind, key)
    if (owner === undefined) throw new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', 'no Up, reachable member can own grains right now', { kind, key })
    const core = this.#cluster.core
    const placement: Placement =
      owner.authority === core.authority && owner.nodeId === core.nodeId
        ? this.#local
        : {
            local: false,
            authority: owner.authority,
            nodeId: owner.nodeId,
            pid: { ...parseAuthority(owner.authority), authority: owner.authority, kind, key, nodeId: owner.nodeId },
            pidText: pidTextOf(owner.authority, kind, key, owner.nodeId),
          }
    this.cache.set(kind, key, placement, nowMs)
    return placement
  }

  /** The PID a key resolves to from this node (same on every node with the same view). */
  pidOf(kind: string, key: string, nowMs: number): string {
    const p = this.ownerOf(kind, key, nowMs)
    return p.local ? formatPid({ authority: this.#cluster.authority, kind, key, nodeId: this.#cluster.nodeId }) : p.pidText
  }

  close(): void {
    for (const u of this.#unsubscribe) u()
  }
}

/** How many earlier eligible sets previousOwners() consults. */
const VIEW_HISTORY = 4

function sameMembers(a: readonly Member[], b: readonly Member[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i]!.authority !== b[i]!.authority || a[i]!.nodeId !== b[i]!.nodeId) return false
  return true
}
