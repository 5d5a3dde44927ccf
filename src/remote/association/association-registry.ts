/**
 * Every association of a node, keyed by remote authority (host:port), with
 * one shared config, one set of counters and one output collector, so the
 * driver drains events, audit lines and rejected messages of all
 * authorities in the order they happened. Sans-I/O: time is passed in.
 *
 * Typical driver:
 *
 * ```ts
 * const a = registry.get(authority)
 * const r = a.send(frame, meta, now)          // 'write' → transport.send(...)
 * handle(registry.drain())                    // publish events, write audit, fail asks
 * // on a timer at registry.nextDeadlineMs():
 * registry.poll(now); handle(registry.drain())
 * ```
 */

import { GrainClusterError } from '../../common/errors.js'
import { type AssociationConfig, resolveAssociationConfig } from './association-config.js'
import { Association, type AssociationOutput, AssociationSink, type AssociationStats, createAssociationStats } from './association.js'

export interface AssociationRegistryOptions {
  /** Shared settings; absent keys take their defaults. Invalid ones throw one ERR_CONFIG_INVALID listing every issue. */
  config?: Partial<AssociationConfig>
  /** Wall clock (ms since the epoch) for event times and audit lines; default: the nowMs passed in. */
  wallClock?: () => number
}

/** Status of an authority for PID resolution (design §3.8 ResolveResult). */
export type AuthorityResolution =
  | { readonly status: 'connected'; readonly nodeId: string | undefined }
  /** Not connected (or never used): sends are deferred. */
  | { readonly status: 'disconnected'; readonly nodeId: string | undefined }
  | {
      readonly status: 'quarantined'
      readonly reason: string
      /** Wall-clock ms when the quarantine ends by itself. */
      readonly until: number
      /** ERR_AUTHORITY_QUARANTINED to return to the requester (spec 2.3). */
      readonly error: GrainClusterError
    }
  | { readonly status: 'removed'; readonly reason: string; readonly error: GrainClusterError }

export class AssociationRegistry {
  readonly config: AssociationConfig
  /** Counters across all associations, forgotten ones included. */
  readonly stats: AssociationStats = createAssociationStats()
  readonly #byAuthority = new Map<string, Association>()
  readonly #sink = new AssociationSink()
  readonly #wallClock: (() => number) | undefined

  constructor(o: AssociationRegistryOptions = {}) {
    this.config = resolveAssociationConfig(o.config)
    this.#wallClock = o.wallClock
  }

  /** The association for `authority`, created Disconnected on first use. */
  get(authority: string): Association {
    let a = this.#byAuthority.get(authority)
    if (a === undefined) {
      a = new Association({
        authority,
        config: this.config,
        stats: this.stats,
        sink: this.#sink,
        ...(this.#wallClock === undefined ? {} : { wallClock: this.#wallClock }),
      })
      this.#byAuthority.set(authority, a)
    }
    return a
  }

  /** The association for `authority` if one exists; never creates. */
  peek(authority: string): Association | undefined {
    return this.#byAuthority.get(authority)
  }

  get size(): number {
    return this.#byAuthority.size
  }

  authorities(): IterableIterator<string> {
    return this.#byAuthority.keys()
  }

  /** True when drain() would return anything (cheap: checked on every send). */
  get hasOutput(): boolean {
    const p = this.#sink.pending
    return p.events.length > 0 || p.audit.length > 0 || p.rejected.length > 0
  }

  /** Take the events, audit lines and rejected messages of every association since the last call. */
  drain(): AssociationOutput {
    return this.#sink.drain()
  }

  /** Release every quarantine whose deadline has come; returns the released authorities. */
  poll(nowMs: number): string[] {
    const released: string[] = []
    for (const [authority, a] of this.#byAuthority) if (a.poll(nowMs)) released.push(authority)
    return released
  }

  /** Earliest quarantine deadline (owner clock), for the driver's timer; undefined when nothing is quarantined. */
  nextDeadlineMs(): number | undefined {
    let min: number | undefined
    for (const a of this.#byAuthority.values()) {
      const d = a.nextDeadlineMs
      if (d !== undefined && (min === undefined || d < min)) min = d
    }
    return min
  }

  /**
   * Manual release (spec 4.4): the authority goes back to Disconnected now.
   * False if it was not quarantined. Throws ERR_AUTHORITY_UNREACHABLE (with
   * `details.authority`) for an authority this node has no association with.
   */
  release(authority: string, nowMs: number): boolean {
    const a = this.#byAuthority.get(authority)
    if (a === undefined) {
      throw new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', `no association with authority ${authority}: nothing to release`, { authority })
    }
    return a.release(nowMs, 'manual')
  }

  /** Manual quarantine of an authority (created if unknown). */
  quarantine(authority: string, reason: string, nowMs: number): void {
    this.get(authority).quarantine(reason, nowMs)
  }

  /** The incarnation at `authority` was removed from the cluster (see Association.remove). */
  remove(authority: string, reason: string, nowMs: number): boolean {
    return this.get(authority).remove(reason, nowMs)
  }

  /**
   * Drop the association entirely; the next get() starts a fresh Disconnected
   * one. For a new incarnation admitted after a removal. Queued messages of a
   * live association are not rejected here: call remove() first.
   */
  forget(authority: string): boolean {
    return this.#byAuthority.delete(authority)
  }

  /** Status for PID resolution; an unknown authority is 'disconnected' (sends to it would be deferred). */
  resolve(authority: string): AuthorityResolution {
    const a = this.#byAuthority.get(authority)
    if (a === undefined) return { status: 'disconnected', nodeId: undefined }
    const error = a.refusal()
    if (a.removed) return { status: 'removed', reason: a.removedReason ?? 'removed', error: error! }
    switch (a.state) {
      case 'connected':
        return { status: 'connected', nodeId: a.nodeId }
      case 'disconnected':
        return { status: 'disconnected', nodeId: a.nodeId }
      case 'quarantined': {
        const q = a.quarantineInfo!
        return { status: 'quarantined', reason: q.reason, until: q.untilWallMs, error: error! }
      }
    }
  }

  /** Gauges: messages and bytes waiting in deferred queues now, and how many authorities are in each state. */
  gauges(): { deferredMessages: number; deferredBytes: number; connected: number; disconnected: number; quarantined: number } {
    const g = { deferredMessages: 0, deferredBytes: 0, connected: 0, disconnected: 0, quarantined: 0 }
    for (const a of this.#byAuthority.values()) {
      g.deferredMessages += a.queue.size
      g.deferredBytes += a.queue.bytes
      g[a.state]++
    }
    return g
  }
}
