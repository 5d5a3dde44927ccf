/**
 * Placement in a cluster (issue 5, first slice): the owner of a grain key is
 * the rendezvous winner among the Up, reachable members; within the owner the
 * worker follows from the partition. Owners are cached per key (PidCache) and
 * the cache is dropped on any membership change or quarantine.
 *
 * Not yet here (issue 5 remains open): moving state when ownership changes,
 * and holding calls to a key while it moves. Today a key whose owner changes
 * is re-activated on the new owner with fresh state.
 */

import { GrainClusterError } from '../common/errors.js'
import { formatPid, type Pid } from '../common/pid.js'
import { PidCache } from '../cluster/placement/pid-cache.js'
import { rendezvousOwner } from '../cluster/placement/rendezvous.js'
import type { Member } from '../cluster/membership/member.js'
import type { EventStream } from '../observability/event-stream.js'
import type { ClusterNode } from './cluster-node.js'

export type Placement = { readonly local: true } | { readonly local: false; readonly pid: Pid; readonly pidText: string }

const LOCAL: Placement = { local: true }

export class PlacementRouter {
  readonly cache: PidCache
  readonly #cluster: ClusterNode
  #candidates: readonly Member[] = []
  #candidatesAt = ''
  readonly #placements = new Map<string, Placement>()
  readonly #unsubscribe: (() => void)[] = []

  constructor(cluster: ClusterNode, events: EventStream, o: { ttlMs?: number; maxEntries?: number } = {}) {
    this.#cluster = cluster
    this.cache = new PidCache(o)
    // Any membership change can move any key; quarantine moves the keys of one authority.
    this.#unsubscribe.push(
      events.subscribe('member.*', () => this.#invalidate()),
      events.subscribe('association.quarantined', () => this.#invalidate()),
      events.subscribe('association.released', () => this.#invalidate()),
    )
  }

  #invalidate(): void {
    this.cache.clear()
    this.#placements.clear()
  }

  /** Up and reachable members, cached per membership version. */
  #eligible(): readonly Member[] {
    const table = this.#cluster.core.table
    const d = table.digest()
    if (d !== this.#candidatesAt) {
      this.#candidates = table.activeMembers().filter((m) => m.status === 'up' && !table.isUnreachable(m.authority))
      this.#candidatesAt = d
    }
    return this.#candidates
  }

  /**
   * Where kind/key lives now. Throws retryable typed errors while this node
   * cannot place anything: not Up yet, or on the minority side of a
   * partition (it stops serving so the majority can take its keys over).
   */
  ownerOf(kind: string, key: string, nowMs: number): Placement {
    const core = this.#cluster.core
    if (!core.isUp) throw new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', `${core.authority} is not an Up member of the cluster yet`, { kind, key, authority: core.authority })
    if (core.isMinority) throw new GrainClusterError('ERR_AUTHORITY_MINORITY', `${core.authority} is on the minority side of a partition and serves no grains until it rejoins the majority`, { kind, key, authority: core.authority })
    const cacheKey = PidCache.keyOf(kind, key)
    const cached = this.cache.get(cacheKey, nowMs)
    if (cached !== undefined) {
      const p = this.#placements.get(cacheKey)
      if (p !== undefined) return p
    }
    const owner = rendezvousOwner(this.#eligible(), kind, key)
    if (owner === undefined) throw new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', 'no Up, reachable member can own grains right now', { kind, key })
    const pidText = formatPid({ authority: owner.authority, kind, key, nodeId: owner.nodeId })
    const placement: Placement = owner.authority === core.authority && owner.nodeId === core.nodeId ? LOCAL : { local: false, pid: { ...splitAuthority(owner.authority), authority: owner.authority, kind, key, nodeId: owner.nodeId }, pidText }
    const evicted = this.cache.set(cacheKey, { authority: owner.authority, nodeId: owner.nodeId, pid: pidText }, nowMs)
    if (evicted !== undefined) this.#placements.delete(evicted)
    this.#placements.set(cacheKey, placement)
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

function splitAuthority(authority: string): { host: string; port: number } {
  const i = authority.lastIndexOf(':')
  const host = authority.slice(0, i)
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(authority.slice(i + 1)) }
}
