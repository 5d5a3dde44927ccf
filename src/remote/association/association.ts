/**
 * The association with one remote authority, sans-I/O: what the transport
 * driver tells it (connected, disconnected, failed, invalid) and the current
 * time go in; what to do with each outbound message comes back from send(),
 * and events, audit lines and rejected messages are collected for drain().
 * The driver owns sockets, timers and the waiting asks.
 *
 * ```
 *                        connected(nodeId)
 *   +--------------+ ---------------------------> +-----------+
 *   | Disconnected |                              | Connected |
 *   +--------------+ <--------------------------- +-----------+
 *       ^     |         disconnected / failure          |
 *       |     |                                         |
 *       |     +--- quarantine(reason),  <---------------+
 *       |          invalidAssociation(reason),
 *       |          maxConsecutiveFailures x failure()
 *       |                     |
 *       |                     v
 *       |              +-------------+
 *       +------------- | Quarantined |   sends and connections refused
 *       |              +-------------+
 *    poll(now >= until) -> 'deadline', release(now, 'manual'),
 *    incarnationEnded(nodeId) of a failures-only quarantine -> 'incarnation-ended'
 *
 *   remove(reason), from any state: terminal; Disconnected, everything refused.
 * ```
 *
 * What happens to an outbound message (send):
 *   - Connected, backlog empty  → { action: 'write' }: the driver writes it now.
 *   - Disconnected, or Connected with a backlog (frames the transport handed
 *     back through unsent()) → { action: 'deferred' } into the bounded
 *     DeferredQueue; if full, the oldest queued messages are evicted
 *     (spec 3.2) and rejected with ERR_AUTHORITY_QUEUE_OVERFLOW.
 *   - Quarantined → { action: 'refused', error: ERR_AUTHORITY_QUARANTINED }
 *     (spec 2.3, 4.2); removed → ERR_AUTHORITY_REMOVED. Refused sends are
 *     not dead-lettered: the caller holds the error.
 *
 * Ordering (spec 3.1, per PID): send order is kept end to end as long as the
 * driver writes 'write' messages in call order and writes the list returned
 * by connected()/flush() in full, in order, before acting on the next send.
 * Deferred messages leave FIFO; sends made while a backlog exists are
 * deferred behind it instead of overtaking it; frames the transport refused
 * go back in front via unsent(). Drops only remove messages, so what a PID
 * receives is always a subsequence of what was sent to it, in order.
 *
 * Quarantine (spec 3.4, 4.1–4.4): entering it rejects every queued message
 * with ERR_AUTHORITY_QUARANTINED. Each rejected message appears once in
 * drain().rejected, with a 'deadletter' event: an ask (meta.askId present)
 * is for the driver to fail with `toError()`; a tell has no one to answer,
 * its dead letter is all. The queue itself stays and is reused after the
 * release. While quarantined, sends and connections are refused
 * (mayConnect() is false); the quarantine ends when poll() sees its
 * deadline (never before) or on release(…, 'manual'), going to Disconnected.
 *
 * Every transition yields an 'association.state' event and one audit line;
 * quarantine, release and a drained backlog also yield their own events.
 * `at` and every time in an audit line are wall-clock ms from the injected
 * `wallClock`; without one, the `nowMs` values passed in are taken to be
 * wall-clock ms. The driver drains after each call so rejected messages and
 * events do not pile up (rejections keep only metadata, never the frame).
 */

import { type ErrorCode, type ErrorDetails, GrainClusterError, toGrainClusterError } from '../../common/errors.js'
import type { AssociationReleased, AssociationState, EventInit, RuntimeEvent } from '../../observability/events.js'
import { type AssociationConfig, resolveAssociationConfig } from './association-config.js'
import { type DeferredMessage, DeferredQueue, type DeferredQueueView, type OutboundMeta } from './deferred-queue.js'

export type { AssociationState } from '../../observability/events.js'

/** Why a queued message was given up on. */
export type DropCause = 'overflow' | 'quarantined' | 'removed'
/** Why a send was refused on the spot. */
export type RefuseCause = 'quarantined' | 'removed' | 'oversize'
/** How a quarantine ended. */
export type ReleaseReason = AssociationReleased['reason']

/** What the driver must do with one outbound message. */
export type SendOutcome =
  | { readonly action: 'write' }
  | {
      readonly action: 'deferred'
      /** Oldest messages evicted to make room; they are in drain().rejected. */
      readonly evicted: number
    }
  | { readonly action: 'refused'; readonly error: GrainClusterError }

/** Result of connected(). */
export type ConnectOutcome =
  | {
      readonly ok: true
      /** Deferred messages to write now, in this order, before any later send. */
      readonly drain: DeferredMessage[]
    }
  | {
      /** The connection must be closed (quarantined, removed, or the wrong NodeId). */
      readonly ok: false
      readonly error: GrainClusterError
    }

/** A queued message the association gave up on. Holds metadata only: the frame is released. */
export class RejectedMessage {
  readonly authority: string
  readonly meta: OutboundMeta
  readonly enqueuedAtMs: number
  /** Size of the dropped frame. */
  readonly bytes: number
  readonly cause: DropCause
  readonly code: ErrorCode
  readonly reason: string
  readonly details: ErrorDetails

  constructor(init: Omit<RejectedMessage, 'toError'>) {
    this.authority = init.authority
    this.meta = init.meta
    this.enqueuedAtMs = init.enqueuedAtMs
    this.bytes = init.bytes
    this.cause = init.cause
    this.code = init.code
    this.reason = init.reason
    this.details = init.details
  }

  /** The typed error for a waiting ask, built on demand (tells need none). */
  toError(): GrainClusterError {
    return new GrainClusterError(this.code, this.reason, this.details)
  }
}

/** Counters for metrics; the registry shares one object between all its associations. */
export interface AssociationStats {
  /** Sends answered 'write'. */
  written: number
  /** Messages accepted into a deferred queue (unsent() re-queues are counted in `requeued`). */
  deferred: number
  /** Messages handed out for writing by connected() and flush(). */
  drained: number
  /** Messages handed back through unsent() and queued again. */
  requeued: number
  /** Queued messages given up on (dead-lettered), by cause. */
  dropped: Record<DropCause, number>
  /** Sends refused on the spot, by cause. */
  refused: Record<RefuseCause, number>
  /** connected() calls refused (quarantined, removed, NodeId mismatch). */
  connectionsRefused: number
  /** Serialization failures reported through sendFailed() (spec 3.3). */
  sendFailures: number
  /** failure() calls that counted. */
  failures: number
  /** Transitions into Quarantined (an extension does not count). */
  quarantines: number
  releases: Record<ReleaseReason, number>
  /** Transitions into Connected. */
  connects: number
  /** Transitions out of Connected other than quarantine and removal. */
  disconnects: number
}

export function createAssociationStats(): AssociationStats {
  return {
    written: 0,
    deferred: 0,
    drained: 0,
    requeued: 0,
    dropped: { overflow: 0, quarantined: 0, removed: 0 },
    refused: { quarantined: 0, removed: 0, oversize: 0 },
    connectionsRefused: 0,
    sendFailures: 0,
    failures: 0,
    quarantines: 0,
    releases: { deadline: 0, manual: 0, 'incarnation-ended': 0 },
    connects: 0,
    disconnects: 0,
  }
}

/** What drain() hands the driver. */
export interface AssociationOutput {
  /** To publish on the EventStream, in order. */
  events: EventInit<RuntimeEvent>[]
  /** Audit log lines, in order, without trailing newline. */
  audit: string[]
  /** Queued messages given up on, in order: fail the asks (toError()); tells are already dead-lettered. */
  rejected: RejectedMessage[]
}

/** Collects output; one per association, or one shared by a registry. */
export class AssociationSink {
  #out: AssociationOutput = { events: [], audit: [], rejected: [] }

  get pending(): Readonly<AssociationOutput> {
    return this.#out
  }

  drain(): AssociationOutput {
    const out = this.#out
    this.#out = { events: [], audit: [], rejected: [] }
    return out
  }
}

export interface AssociationOptions {
  /** host:port of the remote node. */
  authority: string
  /** Shared settings; absent keys take their defaults. Invalid ones throw ERR_CONFIG_INVALID. */
  config?: Partial<AssociationConfig>
  /** Wall clock (ms since the epoch) for event times and audit lines; default: the nowMs passed in. */
  wallClock?: () => number
  /** Counters to add to (a registry passes its shared object). */
  stats?: AssociationStats
  /** Output collector (a registry passes its shared one). */
  sink?: AssociationSink
}

/**
 * What entered (or extended) a quarantine. Only one entered for failed
 * connects alone ends with the incarnation it was about; an invalid
 * association or an operator's quarantine holds to its deadline.
 */
export type QuarantineCause = 'failures' | 'invalid' | 'manual'

interface Quarantine {
  readonly reason: string
  readonly cause: QuarantineCause
  /** Owner's clock (ms) at which poll() releases it. */
  readonly untilMs: number
  /** The same instant in wall-clock ms, for events, errors and audit lines. */
  readonly untilWallMs: number
}

/** Quarantine facts for errors and PID resolution. */
export interface QuarantineInfo {
  readonly reason: string
  readonly cause: QuarantineCause
  /** The incarnation the association knows, if any: while quarantined no connection can bring another one. */
  readonly nodeId: string | undefined
  readonly untilMs: number
  readonly untilWallMs: number
}

const WRITE: SendOutcome = Object.freeze({ action: 'write' })

/** ISO-8601 for audit lines; a non-finite time is written as is rather than throwing. */
function iso(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms)
}

export class Association {
  readonly authority: string
  readonly config: AssociationConfig
  readonly stats: AssociationStats
  readonly #queue: DeferredQueue
  readonly #wallClock: (() => number) | undefined
  readonly #sink: AssociationSink
  #state: AssociationState = 'disconnected'
  #nodeId: string | undefined
  #everConnected = false
  #failures = 0
  #quarantine: Quarantine | undefined
  #removedReason: string | undefined

  constructor(o: AssociationOptions) {
    this.authority = o.authority
    this.config = resolveAssociationConfig(o.config)
    this.stats = o.stats ?? createAssociationStats()
    this.#sink = o.sink ?? new AssociationSink()
    this.#wallClock = o.wallClock
    this.#queue = new DeferredQueue({ limit: this.config.deferredQueueLimit, maxBytes: this.config.deferredQueueBytes })
  }

  // ------------------------------------------------------------------ state

  get state(): AssociationState {
    return this.#state
  }

  /** True once remove() was called: this incarnation left the cluster; everything is refused. */
  get removed(): boolean {
    return this.#removedReason !== undefined
  }

  get removedReason(): string | undefined {
    return this.#removedReason
  }

  /** NodeId of the remote incarnation last connected (kept across disconnects). */
  get nodeId(): string | undefined {
    return this.#nodeId
  }

  /** Failures since the last successful connection (or quarantine). */
  get consecutiveFailures(): number {
    return this.#failures
  }

  get quarantineInfo(): QuarantineInfo | undefined {
    const q = this.#quarantine
    return q === undefined ? undefined : { ...q, nodeId: this.#nodeId }
  }

  /** Owner-clock time at which poll() must next be called, if a quarantine is running. */
  get nextDeadlineMs(): number | undefined {
    return this.#quarantine?.untilMs
  }

  /** Size, bytes, drops and high-water marks of the deferred queue. */
  get queue(): DeferredQueueView {
    return this.#queue
  }

  /** May the driver dial or accept a connection for this authority now? (spec 4.2) */
  mayConnect(): boolean {
    return this.#state !== 'quarantined' && this.#removedReason === undefined
  }

  /** The error a send or a PID resolution gets now: ERR_AUTHORITY_REMOVED, ERR_AUTHORITY_QUARANTINED, or undefined. */
  refusal(pid?: string): GrainClusterError | undefined {
    if (this.#removedReason !== undefined) return this.#removedError(pid)
    if (this.#state === 'quarantined') return this.#quarantinedError(pid)
    return undefined
  }

  /** Take the events, audit lines and rejected messages collected since the last call. */
  drain(): AssociationOutput {
    return this.#sink.drain()
  }

  // ------------------------------------------------------------------ sends

  /** Decide what to do with an outbound frame addressed to `meta.pid`. */
  /**
   * The hot path's question: would send() say 'write' now (connected,
   * nothing deferred, not removed)? Then the caller may write without
   * building the message's metadata, and reports it with wrote().
   */
  writableNow(): boolean {
    return this.#state === 'connected' && this.#queue.size === 0 && this.#removedReason === undefined
  }

  /** Count a message written on the writableNow() path. */
  wrote(): void {
    this.stats.written++
  }

  send(frame: Uint8Array, meta: OutboundMeta, nowMs: number): SendOutcome {
    if (this.#removedReason !== undefined) {
      this.stats.refused.removed++
      return { action: 'refused', error: this.#removedError(meta.pid) }
    }
    switch (this.#state) {
      case 'quarantined':
        this.stats.refused.quarantined++
        return { action: 'refused', error: this.#quarantinedError(meta.pid) }
      case 'connected':
        if (this.#queue.size === 0) {
          this.stats.written++
          return WRITE
        }
        // A backlog exists (unsent()): writing now would overtake it.
        return this.#defer(frame, meta, nowMs)
      case 'disconnected':
        return this.#defer(frame, meta, nowMs)
    }
  }

  #defer(frame: Uint8Array, meta: OutboundMeta, nowMs: number): SendOutcome {
    const r = this.#queue.push({ frame, meta, enqueuedAtMs: nowMs })
    if (!r.queued) {
      this.stats.refused.oversize++
      return {
        action: 'refused',
        error: new GrainClusterError('ERR_AUTHORITY_QUEUE_OVERFLOW', `cannot defer a message to ${meta.pid} for ${this.authority}: ${r.reason}`, {
          authority: this.authority,
          pid: meta.pid,
          size: frame.byteLength,
          limit: this.#queue.maxBytes,
        }),
      }
    }
    this.stats.deferred++
    for (const m of r.evicted) this.#reject(m, 'overflow', nowMs)
    return { action: 'deferred', evicted: r.evicted.length }
  }

  /**
   * Messages the driver accepted on the writableNow() path but could not
   * write, that are newer than everything already queued (a tell batch the
   * transport refused: every other send flushes open batches first, so
   * nothing queued can be newer). They join the back of the queue in order,
   * like deferred sends, evicting the oldest on overflow. Quarantined or
   * removed: they are rejected.
   */
  deferAll(msgs: readonly DeferredMessage[], nowMs: number): void {
    if (this.#removedReason !== undefined || this.#state === 'quarantined') {
      const cause = this.#removedReason !== undefined ? 'removed' : 'quarantined'
      for (const m of msgs) this.#reject(m, cause, nowMs)
      return
    }
    for (const m of msgs) {
      const r = this.#defer(m.frame, m.meta, m.enqueuedAtMs)
      // Larger than the byte bound on its own: as good as evicted at once.
      if (r.action === 'refused') this.#reject(m, 'overflow', nowMs)
    }
  }

  /**
   * The driver could not write messages this association handed out (the
   * transport refused them: backpressure, or the connection just dropped).
   * They go back in front of the queue, oldest first, and later sends wait
   * behind them. For a refused 'write' send, pass `{ frame, meta,
   * enqueuedAtMs: nowMs }`. Quarantined or removed: they are rejected.
   */
  unsent(msgs: readonly DeferredMessage[], nowMs: number): void {
    if (msgs.length === 0) return
    if (this.#removedReason !== undefined || this.#state === 'quarantined') {
      const cause = this.#removedReason !== undefined ? 'removed' : 'quarantined'
      for (const m of msgs) this.#reject(m, cause, nowMs)
      return
    }
    const evicted = this.#queue.unshiftAll(msgs)
    this.stats.requeued += msgs.length - evicted.length
    for (const m of evicted) this.#reject(m, 'overflow', nowMs)
    this.#uncountDrained(msgs.length)
  }

  /**
   * Handed out by connected()/flush() but handed back unwritten before the
   * driver published the output: 'association.drained' reports what was
   * sent (spec 3.5), so the pending event shrinks (or goes) instead of
   * counting these again at the next drain.
   */
  #uncountDrained(n: number): void {
    const events = this.#sink.pending.events
    for (let i = events.length - 1; i >= 0; i--) {
      const e = events[i]!
      if (e.type !== 'association.drained' || e.authority !== this.authority) continue
      e.drained -= Math.min(n, e.drained)
      if (e.drained === 0) events.splice(i, 1)
      return
    }
  }

  /**
   * While connected with a backlog (after unsent()), hand the backlog out for
   * writing, oldest first; call when the transport can take frames again.
   * Empty in any other case.
   */
  flush(nowMs: number): DeferredMessage[] {
    if (this.#state !== 'connected' || this.#removedReason !== undefined || this.#queue.size === 0) return []
    const out = this.#queue.drainAll()
    this.stats.drained += out.length
    this.#emit({ type: 'association.drained', authority: this.authority, drained: out.length, at: this.#wall(nowMs) })
    return out
  }

  /**
   * Serialization of a message failed (spec 3.3): the send is aborted and an
   * 'association.send-failed' event recorded. Returns the typed error for the
   * caller (ERR_GRAIN_PAYLOAD_ENCODE unless `cause` already is a graincluster error).
   */
  sendFailed(pid: string | undefined, cause: unknown, nowMs: number): GrainClusterError {
    const err = toGrainClusterError(cause, 'ERR_GRAIN_PAYLOAD_ENCODE', pid === undefined ? { authority: this.authority } : { authority: this.authority, pid })
    this.stats.sendFailures++
    this.#emit({
      type: 'association.send-failed',
      authority: this.authority,
      ...(pid === undefined ? {} : { pid }),
      code: err.code,
      reason: err.reason,
      at: this.#wall(nowMs),
    })
    return err
  }

  // ------------------------------------------------------------ connections

  /**
   * A connection to `nodeId` is established (handshake done). Refused while
   * quarantined or removed. If `expectedNodeId` is given and differs, the
   * association is invalid and is quarantined at once (spec 4.1). Otherwise
   * the failure count resets and the deferred backlog is returned for
   * writing, oldest first; 'association.drained' is published only when at
   * least one message was handed out (an idle reconnect says so in its
   * 'association.state' event already).
   */
  connected(nodeId: string, nowMs: number, opts: { expectedNodeId?: string } = {}): ConnectOutcome {
    if (this.#removedReason !== undefined) {
      this.stats.connectionsRefused++
      return { ok: false, error: this.#removedError() }
    }
    if (this.#state === 'quarantined') {
      this.stats.connectionsRefused++
      return { ok: false, error: this.#quarantinedError() }
    }
    if (opts.expectedNodeId !== undefined && opts.expectedNodeId !== nodeId) {
      this.stats.connectionsRefused++
      this.invalidAssociation(`NodeId mismatch: expected ${opts.expectedNodeId}, got ${nodeId}`, nowMs)
      return { ok: false, error: this.#quarantinedError() }
    }
    const previous = this.#nodeId
    const from = this.#state
    // Whatever is still queued was resolved against the incarnation we knew:
    // it must never run on its successor (Akka: a new UID is a new system).
    if (previous !== undefined && previous !== nodeId) this.incarnationEnded(previous, `incarnation ${previous} was replaced by ${nodeId}`, nowMs)
    this.#nodeId = nodeId
    this.#failures = 0
    const at = this.#wall(nowMs)
    if (from === 'connected' && previous === nodeId) return { ok: true, drain: this.flush(nowMs) }
    const verb = this.#everConnected ? 'reconnected' : 'connected'
    const incarnation = previous !== undefined && previous !== nodeId ? ` (new incarnation; was ${previous})` : ''
    this.#state = 'connected'
    this.#everConnected = true
    this.stats.connects++
    const drain = this.#queue.drainAll()
    this.stats.drained += drain.length
    this.#emit({ type: 'association.state', authority: this.authority, nodeId, from, to: 'connected', reason: `${verb}${incarnation}`, at })
    if (drain.length > 0) this.#emit({ type: 'association.drained', authority: this.authority, drained: drain.length, at })
    this.#audit(at, `${verb} nodeId=${nodeId}${previous !== undefined && previous !== nodeId ? ` previousNodeId=${previous}` : ''} drained=${drain.length}`)
    return { ok: true, drain }
  }

  /** The connection closed (not a failure). Connected → Disconnected; ignored otherwise. */
  disconnected(reason: string, nowMs: number): AssociationState {
    if (this.#state !== 'connected' || this.#removedReason !== undefined) return this.#state
    this.#toDisconnected(reason, nowMs)
    return this.#state
  }

  /**
   * A connection attempt failed or a connection broke. Counts towards
   * maxConsecutiveFailures (reset by a successful connection); reaching it
   * quarantines the authority. Ignored while quarantined or removed.
   */
  failure(reason: string, nowMs: number): AssociationState {
    if (this.#state === 'quarantined' || this.#removedReason !== undefined) return this.#state
    this.#failures++
    this.stats.failures++
    if (this.#state === 'connected') this.#toDisconnected(`failure: ${reason}`, nowMs)
    if (this.#failures >= this.config.maxConsecutiveFailures) {
      this.quarantine(`${this.#failures} consecutive failures (last: ${reason})`, nowMs, 'failures')
    }
    return this.#state
  }

  /** An invalid association (NodeId mismatch, failed handshake): quarantine now (spec 4.1). */
  invalidAssociation(reason: string, nowMs: number): AssociationState {
    this.quarantine(`invalid association: ${reason}`, nowMs, 'invalid')
    return this.#state
  }

  /**
   * Quarantine for quarantineDeadlineMs from now. Every queued message is
   * rejected with ERR_AUTHORITY_QUARANTINED (spec 3.4). When already
   * quarantined the deadline is extended if the new one is later (events and
   * audit line again, refused=0); an extension for another cause than
   * failures makes it one that holds to its deadline. Ignored once removed.
   */
  quarantine(reason: string, nowMs: number, cause: QuarantineCause = 'manual'): AssociationState {
    if (this.#removedReason !== undefined) return this.#state
    const at = this.#wall(nowMs)
    const untilMs = nowMs + this.config.quarantineDeadlineMs
    const untilWallMs = at + this.config.quarantineDeadlineMs
    const from = this.#state
    const nodeId = this.#nodeId === undefined ? {} : { nodeId: this.#nodeId }
    const nodeIdText = this.#nodeId === undefined ? '' : ` nodeId=${this.#nodeId}`
    if (from === 'quarantined') {
      const q = this.#quarantine!
      const kept = q.cause === 'failures' ? cause : q.cause
      this.#quarantine = untilMs > q.untilMs ? { reason, cause: kept, untilMs, untilWallMs } : { ...q, cause: kept }
      const cur = this.#quarantine
      this.#emit({ type: 'association.quarantined', authority: this.authority, ...nodeId, reason, until: cur.untilWallMs, refused: 0, at })
      this.#audit(at, `quarantine-extended${nodeIdText} reason=${JSON.stringify(reason)} until=${iso(cur.untilWallMs)}`)
      return this.#state
    }
    // State first, then the rejections: a driver failing an ask from the
    // rejected list and retrying at once must see the quarantine, not re-queue.
    this.#state = 'quarantined'
    this.#quarantine = { reason, cause, untilMs, untilWallMs }
    this.#failures = 0
    this.stats.quarantines++
    const queued = this.#queue.drainAll()
    this.#emit({ type: 'association.state', authority: this.authority, ...nodeId, from, to: 'quarantined', reason, at })
    this.#emit({ type: 'association.quarantined', authority: this.authority, ...nodeId, reason, until: untilWallMs, refused: queued.length, at })
    this.#audit(at, `quarantined${nodeIdText} reason=${JSON.stringify(reason)} until=${iso(untilWallMs)} refused=${queued.length}`)
    for (const m of queued) this.#reject(m, 'quarantined', nowMs)
    return this.#state
  }

  /**
   * End the quarantine now (spec 4.4): back to Disconnected, connections
   * allowed, the deferred queue usable again. False if not quarantined.
   */
  release(nowMs: number, reason: ReleaseReason = 'manual'): boolean {
    if (this.#state !== 'quarantined' || this.#removedReason !== undefined) return false
    const at = this.#wall(nowMs)
    this.#state = 'disconnected'
    this.#quarantine = undefined
    this.#failures = 0
    this.stats.releases[reason]++
    const nodeId = this.#nodeId === undefined ? {} : { nodeId: this.#nodeId }
    this.#emit({ type: 'association.state', authority: this.authority, ...nodeId, from: 'quarantined', to: 'disconnected', reason: `quarantine released (${reason})`, at })
    this.#emit({ type: 'association.released', authority: this.authority, ...nodeId, reason, at })
    this.#audit(at, `released reason=${JSON.stringify(reason)}`)
    return true
  }

  /** Release the quarantine once its deadline has come (spec 4.3): at `untilMs`, not before. True if released. */
  poll(nowMs: number): boolean {
    const q = this.#quarantine
    if (q === undefined || nowMs < q.untilMs) return false
    return this.release(nowMs, 'deadline')
  }

  /**
   * This incarnation of the authority was removed from the cluster: reject
   * everything queued with ERR_AUTHORITY_REMOVED and refuse sends and
   * connections from now on. Terminal; a new incarnation gets a new
   * association (AssociationRegistry.forget). False if already removed.
   */
  remove(reason: string, nowMs: number): boolean {
    if (this.#removedReason !== undefined) return false
    const at = this.#wall(nowMs)
    const from = this.#state
    this.#removedReason = reason
    this.#state = 'disconnected'
    this.#quarantine = undefined
    const queued = this.#queue.drainAll()
    const nodeId = this.#nodeId === undefined ? {} : { nodeId: this.#nodeId }
    if (from !== 'disconnected') this.#emit({ type: 'association.state', authority: this.authority, ...nodeId, from, to: 'disconnected', reason: `removed: ${reason}`, at })
    this.#audit(at, `removed${this.#nodeId === undefined ? '' : ` nodeId=${this.#nodeId}`} reason=${JSON.stringify(reason)} refused=${queued.length}`)
    for (const m of queued) this.#reject(m, 'removed', nowMs)
    return true
  }

  /**
   * The incarnation `nodeId` left the cluster (downed, removed, or replaced
   * by a new NodeId at this authority). Messages still queued were resolved
   * against it, so none may reach a later incarnation: each is rejected
   * with ERR_AUTHORITY_REMOVED (asks fail, tells are dead-lettered). Unlike
   * remove(), the association stays usable for the next incarnation. A
   * quarantine entered for failed connects alone, to this incarnation (or
   * before any was known), is released ('incarnation-ended'): the failures
   * were its death, and holding the authority shut would only keep out its
   * successor (Akka quarantines a UID, never an address). Any other
   * quarantine keeps its deadline. Ignored (returns 0) when the association
   * already knows a different incarnation. Returns how many messages were
   * rejected.
   */
  incarnationEnded(nodeId: string, reason: string, nowMs: number): number {
    if (this.#nodeId !== undefined && this.#nodeId !== nodeId) return 0
    // A quarantine is about the incarnation the association knows (no connection can bring another while it lasts): this one, or none.
    if (this.#quarantine?.cause === 'failures') this.release(nowMs, 'incarnation-ended')
    // What is queued from now on is for whoever holds the authority next, so
    // the next connection must not take it for this incarnation's (connected:
    // the close that follows ends it again).
    if (this.#state !== 'connected') this.#nodeId = undefined
    if (this.#queue.size === 0) return 0
    const queued = this.#queue.drainAll()
    const at = this.#wall(nowMs)
    this.#audit(at, `incarnation-ended nodeId=${nodeId} reason=${JSON.stringify(reason)} refused=${queued.length}`)
    for (const m of queued) this.#reject(m, 'removed', nowMs, reason)
    return queued.length
  }

  // --------------------------------------------------------------- helpers

  #toDisconnected(reason: string, nowMs: number): void {
    const at = this.#wall(nowMs)
    this.#state = 'disconnected'
    this.stats.disconnects++
    const nodeId = this.#nodeId === undefined ? {} : { nodeId: this.#nodeId }
    this.#emit({ type: 'association.state', authority: this.authority, ...nodeId, from: 'connected', to: 'disconnected', reason, at })
    this.#audit(at, `disconnected reason=${JSON.stringify(reason)}`)
  }

  /**
   * The driver wrote fewer of the messages connected()/flush() handed out
   * than it was given (asks it withdrew): the pending 'association.drained'
   * event counts only what was sent.
   */
  notWritten(n: number): void {
    this.#uncountDrained(n)
  }

  /** `why` overrides the removal reason (an ended incarnation, not this association's removal). */
  #reject(m: DeferredMessage, cause: DropCause, nowMs: number, why?: string): void {
    const pid = m.meta.pid
    let code: ErrorCode
    let reason: string
    let details: ErrorDetails
    switch (cause) {
      case 'overflow':
        code = 'ERR_AUTHORITY_QUEUE_OVERFLOW'
        reason = `deferred queue of ${this.authority} is full (${this.#queue.limit} messages, ${this.#queue.maxBytes} bytes): dropped the oldest message, to ${pid}`
        details = { authority: this.authority, pid, limit: this.#queue.limit }
        break
      case 'quarantined': {
        const q = this.#quarantine
        code = 'ERR_AUTHORITY_QUARANTINED'
        reason = `authority ${this.authority} was quarantined before a message to ${pid} could be sent: ${q?.reason ?? 'quarantined'}`
        details = { authority: this.authority, pid, reason: q?.reason ?? 'quarantined', ...(q === undefined ? {} : { until: q.untilWallMs }) }
        break
      }
      case 'removed': {
        const r = why ?? this.#removedReason ?? 'removed'
        code = 'ERR_AUTHORITY_REMOVED'
        reason = `authority ${this.authority} was removed before a message to ${pid} could be sent: ${r}`
        details = { authority: this.authority, pid, reason: r }
        break
      }
    }
    this.stats.dropped[cause]++
    this.#sink.pending.rejected.push(
      new RejectedMessage({ authority: this.authority, meta: m.meta, enqueuedAtMs: m.enqueuedAtMs, bytes: m.frame.byteLength, cause, code, reason, details }),
    )
    this.#emit({
      type: 'deadletter',
      kind: m.meta.kind ?? '',
      key: m.meta.key ?? '',
      messageType: m.meta.messageType ?? 0,
      code,
      reason,
      at: this.#wall(nowMs),
    })
  }

  #quarantinedError(pid?: string): GrainClusterError {
    const q = this.#quarantine!
    return new GrainClusterError('ERR_AUTHORITY_QUARANTINED', `authority ${this.authority} is quarantined until ${iso(q.untilWallMs)}: ${q.reason}`, {
      authority: this.authority,
      ...(pid === undefined ? {} : { pid }),
      ...(this.#nodeId === undefined ? {} : { nodeId: this.#nodeId }),
      reason: q.reason,
      until: q.untilWallMs,
    })
  }

  #removedError(pid?: string): GrainClusterError {
    return new GrainClusterError('ERR_AUTHORITY_REMOVED', `authority ${this.authority} was removed from the cluster: ${this.#removedReason ?? 'removed'}`, {
      authority: this.authority,
      ...(pid === undefined ? {} : { pid }),
      ...(this.#nodeId === undefined ? {} : { nodeId: this.#nodeId }),
      reason: this.#removedReason ?? 'removed',
    })
  }

  #wall(nowMs: number): number {
    return this.#wallClock === undefined ? nowMs : this.#wallClock()
  }

  #emit(e: EventInit<RuntimeEvent>): void {
    this.#sink.pending.events.push(e)
  }

  #audit(atWallMs: number, rest: string): void {
    this.#sink.pending.audit.push(`${iso(atWallMs)} association ${this.authority} ${rest}`)
  }
}
