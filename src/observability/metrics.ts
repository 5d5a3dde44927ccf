/**
 * Prometheus metrics, derived from the EventStream (so disabling metrics
 * never disables events) plus a few gauges read at scrape time.
 *
 * Naming follows Prometheus conventions: `graincluster_` prefix, base units
 * (`_seconds`), `_total` on counters, no per-key or per-PID labels (label
 * values are bounded sets: statuses, error codes, categories).
 *
 * One registry per node (never prom-client's global one), so several nodes
 * in one process (tests, the quickstart) do not collide.
 */

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { EventStream } from './event-stream.js'
import type { RuntimeEvent } from './events.js'

/** Read at scrape time by the membership gauges. */
export interface MembershipView {
  /** Active members by status. */
  statusCounts(): Record<string, number>
  unreachableCount(): number
  isMinority(): boolean
  convergenceState(): 'diffusing' | 'reconciling' | 'confirmed'
}

const CONVERGENCE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30]

export class NodeMetrics {
  readonly registry = new Registry()
  readonly #unsubscribe: (() => void)[] = []
  readonly memberTransitions: Counter<'to'>
  readonly rejectedViews: Counter
  readonly handshakesRefused: Counter<'code'>
  readonly controlLanes: Counter<'to'>
  readonly framesRejected: Counter<'code'>
  readonly inboundPauses: Counter<'cause'>
  readonly inboundPausedSeconds: Counter
  readonly convergence: Histogram
  readonly localPauses: Counter
  readonly workerCrashes: Counter
  readonly deadLetters: Counter<'code'>
  readonly ringFull: Counter<'direction'>
  readonly malformedFrames: Counter
  readonly associationTransitions: Counter<'to'>
  readonly quarantines: Counter
  readonly releases: Counter<'reason'>
  readonly drainedMessages: Counter
  readonly withdrawnAsks: Counter
  readonly sendFailures: Counter<'code'>
  readonly grainRejected: Counter<'kind' | 'policy'>
  readonly grainDropped: Counter<'kind'>
  readonly grainExpired: Counter<'kind'>
  readonly schemaMismatches: Counter<'kind' | 'where'>
  readonly serializationFailures: Counter<'direction'>
  readonly handoffs: Counter<'outcome'>
  readonly reactivations: Counter<'kind'>
  readonly passivationChurn: Counter<'kind'>
  readonly rebalancedKeys: Counter

  /** `processMetrics`: also prom-client's default Node.js process metrics, under their standard names. */
  constructor(events: EventStream, prefix = 'graincluster_', o: { processMetrics?: boolean } = {}) {
    const r = this.registry
    if (o.processMetrics === true) collectDefaultMetrics({ register: r })
    this.memberTransitions = new Counter({ name: `${prefix}member_transitions_total`, help: 'Membership transitions seen by this node, by new status (joined, up, leaving, exiting, downed, removed, unreachable, reachable).', labelNames: ['to'], registers: [r] })
    this.rejectedViews = new Counter({ name: `${prefix}gossip_rejected_views_total`, help: 'Conflicting membership views rejected by deterministic conflict resolution.', registers: [r] })
    this.handshakesRefused = new Counter({ name: `${prefix}handshake_refused_total`, help: 'Handshakes or joins refused, by error code.', labelNames: ['code'], registers: [r] })
    this.inboundPauses = new Counter({ name: `${prefix}transport_inbound_pauses_total`, help: 'Times this node stopped reading a peer while its frames waited for a full worker ring (inbound flow control), by what ended the pause.', labelNames: ['cause'], registers: [r] })
    this.inboundPausedSeconds = new Counter({ name: `${prefix}transport_inbound_paused_seconds_total`, help: 'Time peer connections were not read because of inbound flow control, summed over peers.', registers: [r] })
    this.controlLanes = new Counter({ name: `${prefix}transport_control_lane_changes_total`, help: 'Control lanes to peers that came up or went down (heartbeats share the data connection while one is down), by new state.', labelNames: ['to'], registers: [r] })
    this.framesRejected = new Counter({ name: `${prefix}transport_frames_rejected_total`, help: 'Transport frames rejected (oversized, malformed), by error code.', labelNames: ['code'], registers: [r] })
    this.convergence = new Histogram({ name: `${prefix}gossip_convergence_seconds`, help: 'Time from a new membership version to Confirmed convergence.', buckets: CONVERGENCE_BUCKETS, registers: [r] })
    this.localPauses = new Counter({ name: `${prefix}node_pauses_total`, help: 'Times this process found its own event loop had stalled (accusations suppressed).', registers: [r] })
    this.workerCrashes = new Counter({ name: `${prefix}worker_crashes_total`, help: 'Grain worker threads that died and were restarted.', registers: [r] })
    this.deadLetters = new Counter({ name: `${prefix}deadletters_total`, help: 'Messages that could not be delivered, by error code.', labelNames: ['code'], registers: [r] })
    this.ringFull = new Counter({ name: `${prefix}ring_full_total`, help: 'Times a ring filled and frames went to the bounded overflow queue.', labelNames: ['direction'], registers: [r] })
    this.malformedFrames = new Counter({ name: `${prefix}frames_malformed_total`, help: 'Frames that failed bounds or structure checks.', registers: [r] })

    this.associationTransitions = new Counter({ name: `${prefix}association_transitions_total`, help: 'Association state changes, by new state (connected, disconnected, quarantined).', labelNames: ['to'], registers: [r] })
    this.quarantines = new Counter({ name: `${prefix}association_quarantines_total`, help: 'Authorities put into quarantine.', registers: [r] })
    this.releases = new Counter({ name: `${prefix}association_releases_total`, help: 'Quarantines ended, by reason (deadline, manual, incarnation-ended).', labelNames: ['reason'], registers: [r] })
    this.drainedMessages = new Counter({ name: `${prefix}association_drained_messages_total`, help: 'Deferred messages sent after a reconnect.', registers: [r] })
    this.withdrawnAsks = new Counter({
      name: `${prefix}association_withdrawn_asks_total`,
      help: 'Deferred asks not sent on drain because their callers had already given up (timed out or failed).',
      registers: [r],
    })
    this.sendFailures = new Counter({ name: `${prefix}association_send_failures_total`, help: 'Remote sends aborted because the message could not be serialized, by code.', labelNames: ['code'], registers: [r] })

    this.grainRejected = new Counter({ name: `${prefix}grain_rejected_total`, help: 'Calls refused because their key had queueDepth calls waiting, by kind and queue policy.', labelNames: ['kind', 'policy'], registers: [r] })
    this.grainDropped = new Counter({ name: `${prefix}grain_dropped_total`, help: 'Waiting calls dropped for newer ones (queuePolicy dropOldest), by kind.', labelNames: ['kind'], registers: [r] })
    this.grainExpired = new Counter({ name: `${prefix}grain_expired_total`, help: "Queued asks not run because their caller's timeout passed while they waited in the key's queue, by kind.", labelNames: ['kind'], registers: [r] })
    this.schemaMismatches = new Counter({ name: `${prefix}rpc_schema_mismatches_total`, help: 'Schema version mismatches, by kind and where they were found (worker: call refused on arrival; caller: no common version with the peer; handshake: a peer with no common version).', labelNames: ['kind', 'where'], registers: [r] })
    this.serializationFailures = new Counter({ name: `${prefix}rpc_serialization_failures_total`, help: 'RPC payloads that could not be serialized (encode) or deserialized (decode); each failed its call.', labelNames: ['direction'], registers: [r] })

    this.handoffs = new Counter({ name: `${prefix}placement_handoffs_total`, help: 'State hand-offs of grain keys between owners, by outcome (released, restored, fresh, failed, retained).', labelNames: ['outcome'], registers: [r] })
    this.reactivations = new Counter({ name: `${prefix}grain_reactivations_total`, help: 'Keys activated again after being passivated, by kind.', labelNames: ['kind'], registers: [r] })
    this.rebalancedKeys = new Counter({ name: `${prefix}placement_rebalanced_activations_total`, help: 'Activations released after a membership change because another member now owns their keys.', registers: [r] })
    this.passivationChurn = new Counter({ name: `${prefix}grain_passivation_churn_total`, help: 'Re-activations sooner than one idle TTL after passivation (the TTL is short for the traffic), by kind.', labelNames: ['kind'], registers: [r] })

    const on = (filter: Parameters<EventStream['subscribe']>[0]): void => {
      this.#unsubscribe.push(events.subscribe(filter, (e: RuntimeEvent) => this.#record(e)))
    }
    // Categories only: subscribing to '*' would make workers ship every grain event.
    for (const f of ['member.*', 'handshake.*', 'transport.*', 'gossip.*', 'association.*', 'worker.*', 'ring.*', 'frame.*', 'deadletter', 'node.paused'] as const) on(f)
    on('placement.*')
    for (const f of ['rpc.rejected', 'rpc.dropped', 'rpc.expired', 'rpc.schema-mismatch', 'rpc.serialization-failed'] as const) on(f)
  }

  #record(e: RuntimeEvent): void {
    switch (e.type) {
      case 'member.joined':
        this.memberTransitions.inc({ to: 'joined' })
        break
      case 'member.up':
      case 'member.leaving':
      case 'member.exiting':
      case 'member.removed':
      case 'member.unreachable':
      case 'member.reachable':
        this.memberTransitions.inc({ to: e.type.slice('member.'.length) })
        break
      case 'member.downed':
        this.memberTransitions.inc({ to: 'downed' })
        break
      case 'member.conflict':
        this.handshakesRefused.inc({ code: 'ERR_AUTHORITY_CONFLICT' })
        break
      case 'handshake.refused':
        this.handshakesRefused.inc({ code: e.code })
        break
      case 'transport.frame-rejected':
        this.framesRejected.inc({ code: e.code })
        break
      case 'transport.control-lane':
        this.controlLanes.inc({ to: e.state })
        break
      case 'transport.inbound-resumed':
        this.inboundPauses.inc({ cause: e.cause })
        this.inboundPausedSeconds.inc(e.pausedMs / 1000)
        break
      case 'gossip.view-rejected':
        this.rejectedViews.inc()
        break
      case 'gossip.converged':
        this.convergence.observe(e.durationMs / 1000)
        break
      case 'node.paused':
        this.localPauses.inc()
        break
      case 'worker.crashed':
        this.workerCrashes.inc()
        break
      case 'deadletter':
        this.deadLetters.inc({ code: e.code })
        break
      case 'ring.full':
        this.ringFull.inc({ direction: e.direction })
        break
      case 'frame.malformed':
        this.malformedFrames.inc()
        break
      case 'association.state':
        this.associationTransitions.inc({ to: e.to })
        break
      case 'association.quarantined':
        this.quarantines.inc()
        break
      case 'association.released':
        this.releases.inc({ reason: e.reason })
        break
      case 'placement.handoff':
        this.handoffs.inc({ outcome: e.outcome })
        break
      case 'placement.rebalanced':
        this.rebalancedKeys.inc(e.released)
        break
      case 'placement.reactivated':
        this.reactivations.inc({ kind: e.kind })
        if (e.churn) this.passivationChurn.inc({ kind: e.kind })
        break
      case 'association.drained':
        this.drainedMessages.inc(e.drained)
        break
      case 'association.asks-withdrawn':
        this.withdrawnAsks.inc(e.asks)
        break
      case 'association.send-failed':
        this.sendFailures.inc({ code: e.code })
        if (e.code === 'ERR_GRAIN_PAYLOAD_ENCODE') this.serializationFailures.inc({ direction: 'encode' })
        break
      case 'rpc.rejected':
        this.grainRejected.inc({ kind: e.kind, policy: e.policy })
        break
      case 'rpc.dropped':
        this.grainDropped.inc({ kind: e.kind })
        break
      case 'rpc.expired':
        this.grainExpired.inc({ kind: e.kind })
        break
      case 'rpc.schema-mismatch':
        this.schemaMismatches.inc({ kind: e.kind, where: e.where })
        break
      case 'handshake.schema-mismatch':
        this.schemaMismatches.inc({ kind: e.kind, where: 'handshake' })
        break
      case 'rpc.serialization-failed':
        this.serializationFailures.inc({ direction: e.direction })
        break
      default:
        break
    }
  }

  /** Gauges of the membership, read at scrape time. */
  observeMembership(view: MembershipView, prefix = 'graincluster_'): void {
    new Gauge({
      name: `${prefix}members`,
      help: 'Active members in this node’s view, by status.',
      labelNames: ['status'],
      registers: [this.registry],
      collect() {
        this.reset()
        for (const [status, n] of Object.entries(view.statusCounts())) this.set({ status }, n)
      },
    })
    this.#followGauge(`${prefix}members_unreachable`, 'Active members flagged unreachable in this node’s merged view.', () => view.unreachableCount())
    this.#followGauge(`${prefix}minority`, '1 while this node is on the minority side of a partition (membership writes refused).', () => view.isMinority() ? 1 : 0)
    this.#followGauge(`${prefix}gossip_confirmed`, '1 when the latest membership version is Confirmed, 0 while Diffusing or Reconciling.', () => view.convergenceState() === 'confirmed' ? 1 : 0)
  }

  /** Gauges of the remote associations, read at scrape time. */
  observeAssociations(read: () => { deferredMessages: number; deferredBytes: number; connected: number; disconnected: number; quarantined: number }, prefix = 'graincluster_'): void {
    this.#followGauge(`${prefix}association_deferred_messages`, 'Messages waiting in deferred queues of disconnected authorities.', () => read().deferredMessages)
    this.#followGauge(`${prefix}association_deferred_bytes`, 'Bytes waiting in deferred queues.', () => read().deferredBytes)
    new Gauge({
      name: `${prefix}associations`,
      help: 'Associations by state.',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const g = read()
        this.set({ state: 'connected' }, g.connected)
        this.set({ state: 'disconnected' }, g.disconnected)
        this.set({ state: 'quarantined' }, g.quarantined)
      },
    })
  }

  /** Sender-side flow control and the transport's outbound buffers, read at scrape time. */
  observeRemoteFlow(read: () => { waits: number; waitedMs: number; outboundBufferedBytes: number }, prefix = 'graincluster_'): void {
    this.#followCounter(`${prefix}remote_flow_waits_total`, 'whenWritable(pid) calls that had to wait for a remote authority to take more (sender-side flow control).', () => read().waits)
    this.#followCounter(`${prefix}remote_flow_wait_seconds_total`, 'Time whenWritable(pid) callers spent waiting, in all.', () => read().waitedMs, 1 / 1000)
    this.#followGauge(`${prefix}transport_outbound_buffered_bytes`, "Bytes waiting to go out to other nodes (queued this turn plus the sockets' own buffers).", () => read().outboundBufferedBytes)
  }

  /** PidCache counters (placement), read at scrape time. */
  observePidCache(read: () => { hits: number; misses: number; expired: number; evicted: number; invalidated: number; size: number }, prefix = 'graincluster_'): void {
    const counter = (field: 'hits' | 'misses' | 'evicted' | 'invalidated', help: string): void => this.#followCounter(`${prefix}pid_cache_${field}_total`, help, () => read()[field])
    counter('hits', 'Placement lookups answered from the PidCache.')
    counter('misses', 'Placement lookups that had to compute the owner (includes expired entries).')
    counter('evicted', 'PidCache entries evicted because the cache was full (LRU).')
    counter('invalidated', 'PidCache entries dropped by membership changes or quarantine.')
    this.#followGauge(`${prefix}pid_cache_entries`, 'Keys whose owner is cached.', () => read().size)
  }

  /** The PubSub registry's size and the deliveries waiting for redelivery, read at scrape time. */
  observePubSub(read: () => { topics: number; subscriptions: number; waiting: number }, prefix = 'graincluster_'): void {
    this.#followGauge(`${prefix}pubsub_topics`, 'Topics in this node’s view of the cluster registry.', () => read().topics)
    this.#followGauge(`${prefix}pubsub_subscriptions`, 'Subscriptions of existing topics in this node’s view of the registry.', () => read().subscriptions)
    this.#followGauge(`${prefix}pubsub_deliveries_waiting`, 'At-least-once deliveries from this node waiting to be sent again (bounded per topic by deferLimit).', () => read().waiting)
  }

  /** An unlabelled Gauge set from `value` at scrape time. */
  #followGauge(name: string, help: string, value: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(value())
      },
    })
  }

  /** A Counter that follows a running total kept elsewhere, read at scrape time (`scale` converts its unit). */
  #followCounter(name: string, help: string, total: () => number, scale = 1): void {
    let last = 0
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        const now = total()
        if (now > last) this.inc((now - last) * scale)
        last = now
      },
    })
  }

  /** Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  close(): void {
    for (const u of this.#unsubscribe) u()
  }
}
