/**
 * Runtime events: everything observable in graincluster is one of these,
 * published on the node's EventStream. Types are '<category>.<event>'
 * (plus the bare 'deadletter'); every event carries its category, a wall
 * clock timestamp, and where relevant the grain kind/key, worker and reason.
 */

export type EventCategory = 'grain' | 'worker' | 'ring' | 'deadletter' | 'frame' | 'node' | 'member' | 'handshake' | 'transport' | 'gossip' | 'association' | 'pid' | 'rpc' | 'placement' | 'pubsub'

interface Base<T extends string> {
  type: T
  category: EventCategory
  /** Wall-clock milliseconds since the epoch when the event was recorded. */
  at: number
}

export interface GrainActivated extends Base<'grain.activated'> {
  kind: string
  key: string
  worker: number
}
export interface GrainDeactivated extends Base<'grain.deactivated'> {
  kind: string
  key: string
  worker: number
  reason: 'idle' | 'shutdown' | 'activation-failed' | 'requested' | 'handoff'
}
// Placement events are their own category (not 'grain.*') so that metrics can
// count them without making every worker ship every activation event.

/** A key activated again after it was passivated (spec 5.5); `churn` when sooner than its idle TTL. */
export interface PlacementReactivated extends Base<'placement.reactivated'> {
  kind: string
  key: string
  worker: number
  /** Time since the key was passivated, ms. */
  afterMs: number
  /** Re-activated within one idle TTL of passivation: the TTL is probably too short for this key's traffic. */
  churn: boolean
}
/** After a membership change this node released the activations whose keys another member now owns. */
export interface PlacementRebalanced extends Base<'placement.rebalanced'> {
  /** Activations released (their keys now live elsewhere). */
  released: number
  /** Members keys are placed on now. */
  members: number
}
/** This node's serving lease lapsed: it serves no grains and drops its activations (their keys may be re-activated elsewhere). */
export interface PlacementLeaseLost extends Base<'placement.lease-lost'> {
  authority: string
  reason: string
}
/** This node hears from a majority again and serves grains. */
export interface PlacementLeaseRegained extends Base<'placement.lease-regained'> {
  authority: string
}
/**
 * A state hand-off (spec 5.4/5.5) seen from the node that gives (`released`)
 * or takes (`restored`, `fresh`, `failed`) a key. `retained`: released
 * records that could not be delivered (or arrived after their request timed
 * out, for a kind that requires its snapshot) are kept on this node for the
 * key's next request.
 */
export interface PlacementHandoff extends Base<'placement.handoff'> {
  kind: string
  key: string
  outcome: 'released' | 'restored' | 'fresh' | 'failed' | 'retained'
  /** The other node (authority). */
  peer?: string
  version?: number
  reason?: string
}
export interface GrainActivationFailed extends Base<'grain.activation-failed'> {
  kind: string
  key: string
  worker: number
  reason: string
}
export interface GrainHandlerFailed extends Base<'grain.handler-failed'> {
  kind: string
  key: string
  worker: number
  method: string
  code: string
  reason: string
}
export interface WorkerStarted extends Base<'worker.started'> {
  worker: number
  threadId: number
  restarts: number
}
export interface WorkerCrashed extends Base<'worker.crashed'> {
  worker: number
  reason: string
  /** Calls that were waiting on the worker and failed with ERR_WORKER_CRASHED. */
  failedCalls: number
}
export interface WorkerRestarted extends Base<'worker.restarted'> {
  worker: number
  restarts: number
  delayMs: number
}
export interface RingFull extends Base<'ring.full'> {
  worker: number
  direction: 'to-worker' | 'to-main'
  /** Frames waiting in the bounded overflow queue when the ring filled. */
  queued: number
  reason: string
}
export interface RingDrained extends Base<'ring.drained'> {
  worker: number
  direction: 'to-worker' | 'to-main'
}
export interface DeadLetter extends Base<'deadletter'> {
  kind: string
  key: string
  messageType: number
  code: string
  reason: string
  worker?: number
}
export interface FrameMalformed extends Base<'frame.malformed'> {
  source: string
  reason: string
}
export interface NodeStarted extends Base<'node.started'> {
  workers: number
  partitions: number
}
export interface NodeStopped extends Base<'node.stopped'> {
  reason: string
}
/** A push to the configured Pushgateway failed; the next interval tries again. */
export interface NodeMetricsPushFailed extends Base<'node.metrics-push-failed'> {
  url: string
  job: string
  instance: string
  reason: string
}

// ---------------------------------------------------------------- cluster plane

/** Member status lattice (spec 1.x): Joining → Up → Leaving → Exiting → Removed; Down is a decision that leads to Removed. */
export type MemberStatus = 'joining' | 'up' | 'leaving' | 'exiting' | 'down' | 'removed'

interface MemberRef {
  /** host:port of the member's cluster transport. */
  authority: string
  /** The member's incarnation id (random per process start). */
  nodeId: string
}

export interface MemberJoined extends Base<'member.joined'>, MemberRef {}
export interface MemberUp extends Base<'member.up'>, MemberRef {}
export interface MemberLeaving extends Base<'member.leaving'>, MemberRef {}
export interface MemberExiting extends Base<'member.exiting'>, MemberRef {}
export interface MemberDowned extends Base<'member.downed'>, MemberRef {
  reason: string
  /** Authority of the node whose decision downed it. */
  decidedBy: string
}
export interface MemberRemoved extends Base<'member.removed'>, MemberRef {
  reason: string
}
export interface MemberUnreachable extends Base<'member.unreachable'>, MemberRef {
  /** Authority of the node whose failure detector flagged it. */
  observer: string
  phi?: number
}
export interface MemberReachable extends Base<'member.reachable'>, MemberRef {
  observer: string
}
/** Spec 1.4: same authority, different NodeId, while the old incarnation is a member. */
export interface MemberConflict extends Base<'member.conflict'> {
  authority: string
  existingNodeId: string
  newNodeId: string
  reason: string
}
export interface HandshakeRefused extends Base<'handshake.refused'> {
  /** Remote address as seen on the socket, and the authority it claimed if any. */
  remote: string
  claimedAuthority?: string
  code: string
  reason: string
}
export interface TransportConnected extends Base<'transport.connected'>, MemberRef {
  direction: 'inbound' | 'outbound'
}
export interface TransportDisconnected extends Base<'transport.disconnected'> {
  authority: string
  reason: string
}
/**
 * The control lane to a peer (remote/transport/tcp-transport.ts) is up, or
 * went down; while it is down the peer's heartbeats share the data
 * connection and inbound pauses are bounded by maxInboundPauseMs again.
 */
export interface TransportControlLane extends Base<'transport.control-lane'>, MemberRef {
  state: 'up' | 'down'
  reason: string
}
/** Inbound flow control (remote/inbound-flow.ts): this node stopped reading a peer's connection. */
export interface TransportInboundPaused extends Base<'transport.inbound-paused'> {
  authority: string
  /** Frames waiting in the longest overflow queue in front of a worker ring. */
  backlog: number
  reason: string
}
export interface TransportInboundResumed extends Base<'transport.inbound-resumed'> {
  authority: string
  /** 'drained': the backlog fell to the low-water mark; 'pause-limit': paused for maxInboundPauseMs; 'disconnected' or 'closed': the connection or node went away. */
  cause: 'drained' | 'pause-limit' | 'disconnected' | 'closed'
  pausedMs: number
  backlog: number
}
export interface TransportFrameRejected extends Base<'transport.frame-rejected'> {
  remote: string
  code: string
  reason: string
}
export interface GossipConverged extends Base<'gossip.converged'> {
  /** Membership version every reachable member has seen. */
  version: string
  durationMs: number
  members: number
}
export interface GossipViewRejected extends Base<'gossip.view-rejected'> {
  from: string
  reason: string
}
export interface GossipStateChanged extends Base<'gossip.state'> {
  state: 'diffusing' | 'reconciling' | 'confirmed'
  reason: string
}
export interface NodePaused extends Base<'node.paused'> {
  /** How late the local timers ran: the process itself was not running. */
  lagMs: number
  reason: string
}

// ----------------------------------------------------------------- associations

export type AssociationState = 'connected' | 'disconnected' | 'quarantined'

export interface AssociationStateChanged extends Base<'association.state'> {
  authority: string
  nodeId?: string
  from: AssociationState
  to: AssociationState
  reason: string
}
export interface AssociationQuarantined extends Base<'association.quarantined'> {
  authority: string
  nodeId?: string
  reason: string
  /** Wall-clock ms when the quarantine ends by itself. */
  until: number
  /** Messages refused because the authority went into quarantine (spec 3.4). */
  refused: number
}
export interface AssociationReleased extends Base<'association.released'> {
  authority: string
  /** The incarnation the association last knew, if any. */
  nodeId?: string
  /**
   * 'deadline' (quarantineDeadlineMs passed), 'manual' (releaseQuarantine),
   * or 'incarnation-ended' (a quarantine entered for failed connects alone,
   * ended when membership downed or removed the incarnation they were to).
   */
  reason: 'deadline' | 'manual' | 'incarnation-ended'
}
/** Spec 3.5: the deferred queue was sent after reconnection. */
export interface AssociationDrained extends Base<'association.drained'> {
  authority: string
  drained: number
}
/**
 * Deferred asks whose callers had already given up (timed out, or failed
 * when their member turned unreachable) were not written when the queue
 * drained: running them now could only duplicate a retry, and nobody waits
 * for the reply (Orleans drops expired requests the same way).
 */
export interface AssociationAsksWithdrawn extends Base<'association.asks-withdrawn'> {
  authority: string
  asks: number
}
/** Spec 3.3: a message could not be serialized; the send was aborted. */
export interface AssociationSendFailed extends Base<'association.send-failed'> {
  authority: string
  pid?: string
  code: string
  reason: string
}
/** Spec 2.5: resolution inputs that contradict or arrive out of order. */
export interface PidResolutionConflict extends Base<'pid.conflict'> {
  pid: string
  authority: string
  reason: string
}
/** The PidCache dropped its entries (design 3.8: on every membership change, quarantine and release). Hits and misses are metrics only. */
export interface PidCacheInvalidated extends Base<'pid.cache-invalidated'> {
  entries: number
  reason: string
}

// ------------------------------------------------------------------------- rpc

/** A grain RPC attempt failed with a retryable error and will be sent again after delayMs. */
export interface RpcRetried extends Base<'rpc.retried'> {
  kind: string
  key: string
  method: string
  /** The attempt that failed (1-based). */
  attempt: number
  delayMs: number
  code: string
  reason: string
}
/** A grain RPC call failed for good (after its last attempt). */
export interface RpcFailed extends Base<'rpc.failed'> {
  kind: string
  key: string
  method: string
  code: string
  reason: string
  attempts: number
  durationMs: number
  /** Why it was not retried: grain-error, not-retryable, exhausted, deadline. */
  final: string
}
interface RpcAlertFields {
  kind: string
  signal: 'latency' | 'error-rate'
  /** Share of the window's calls slower than the threshold (latency) or failing (error-rate). */
  observed: number
  threshold: number
  calls: number
  windowMs: number
}
/** Spec 10.2: an RPC signal of a kind crossed its threshold over the window. */
export interface RpcAlert extends Base<'rpc.alert'>, RpcAlertFields {}
/** The signal went back under its threshold. */
export interface RpcAlertCleared extends Base<'rpc.alert-cleared'>, RpcAlertFields {}

// Per-key limits and schema versions (spec 6.1, 6.3, 6.4). Worker-side ones
// are 'rpc.*', not 'grain.*': metrics subscribe to them, and a 'grain'
// interest would make every worker ship every activation event too.

interface RpcQueuePolicyFields {
  kind: string
  key: string
  method: string
  worker: number
  code: string
  reason: string
}
/** Spec 6.3: a call refused because its key's queue was at queueDepth (policy reject). */
export interface RpcRejected extends Base<'rpc.rejected'>, RpcQueuePolicyFields {
  policy: 'reject'
}
/** Spec 6.3: a waiting call dropped for a newer one (policy dropOldest); a dropped tell is also a deadletter. */
export interface RpcDropped extends Base<'rpc.dropped'>, RpcQueuePolicyFields {
  policy: 'dropOldest'
}
/**
 * A queued ask not run: its caller's timeout (the envelope's timeout_ms)
 * passed while it waited in its key's queue, so its reply would reach
 * nobody. Answered with ERR_GRAIN_TIMEOUT for any relay still waiting.
 */
export interface RpcExpired extends Base<'rpc.expired'> {
  kind: string
  key: string
  method: string
  worker: number
  code: 'ERR_GRAIN_TIMEOUT'
  reason: string
  /** The caller's timeout the ask carried (ms). */
  timeoutMs: number
  /** How long it waited in the queue (ms, from its arrival on the worker). */
  waitedMs: number
}
/** Spec 6.1: a call stamped with a schema version the serving node does not support. */
export interface RpcSchemaMismatch extends Base<'rpc.schema-mismatch'> {
  kind: string
  key: string
  method: string
  /** Version the caller stamped. */
  callerVersion: number
  /** Versions this node serves. */
  servedVersions: number[]
  /** Where it was refused: the serving worker, or the caller's node (no common version with the peer). */
  where: 'worker' | 'caller'
  worker?: number
  authority?: string
  code: string
  reason: string
}
/** Spec 6.4: a request or reply payload could not be serialized or deserialized; the call failed. */
export interface RpcSerializationFailed extends Base<'rpc.serialization-failed'> {
  kind: string
  key: string
  method: string
  direction: 'encode' | 'decode'
  /** 'request' or 'reply' payload. */
  message: 'request' | 'reply'
  worker?: number
  code: string
  reason: string
}
/** Design 3.8 schema negotiation: a kind both nodes serve with no version in common; its calls to that peer fail. */
export interface HandshakeSchemaMismatch extends Base<'handshake.schema-mismatch'> {
  authority: string
  nodeId: string
  kind: string
  localVersions: number[]
  peerVersions: number[]
  reason: string
}

/** Spec 9.1: a topic reached this node's registry (created here, or brought by gossip from the member that created it). */
export interface PubSubTopicCreated extends Base<'pubsub.topic-created'> {
  topic: string
  delivery: 'at-least-once' | 'at-most-once'
  partitionPolicy: 'defer' | 'drop'
}
/** The topic's settings changed under this node: another write won (two members created it at once with different settings, or a node declared other settings at start). */
export interface PubSubTopicChanged extends Base<'pubsub.topic-changed'> {
  topic: string
  delivery: 'at-least-once' | 'at-most-once'
  partitionPolicy: 'defer' | 'drop'
}
export interface PubSubTopicDeleted extends Base<'pubsub.topic-deleted'> {
  topic: string
}
export interface PubSubSubscribed extends Base<'pubsub.subscribed'> {
  topic: string
  kind: string
  key: string
  method: string
}
export interface PubSubUnsubscribed extends Base<'pubsub.unsubscribed'> {
  topic: string
  kind: string
  key: string
  method: string
}
/**
 * A delivery to one subscriber ended without reaching it. `dropped`: by the
 * partition policy ('drop': its owner could not be reached now) or because
 * the topic's deferLimit was reached; `failed`: the subscriber's handler
 * threw, or redelivery ran out of attempts or time.
 */
export interface PubSubDeliveryLost extends Base<'pubsub.delivery-lost'> {
  topic: string
  kind: string
  key: string
  method: string
  outcome: 'dropped' | 'failed'
  code: string
  reason: string
}
/** Spec 9.4: a publish that reached nobody because the topic does not exist here or has no subscribers. */
export interface PubSubPublishFailed extends Base<'pubsub.publish-failed'> {
  topic: string
  code: string
  reason: string
}

export type RuntimeEvent =
  | GrainActivated
  | GrainDeactivated
  | PlacementReactivated
  | PlacementHandoff
  | PlacementLeaseLost
  | PlacementRebalanced
  | PlacementLeaseRegained
  | GrainActivationFailed
  | GrainHandlerFailed
  | WorkerStarted
  | WorkerCrashed
  | WorkerRestarted
  | RingFull
  | RingDrained
  | DeadLetter
  | FrameMalformed
  | NodeStarted
  | NodeStopped
  | NodeMetricsPushFailed
  | MemberJoined
  | MemberUp
  | MemberLeaving
  | MemberExiting
  | MemberDowned
  | MemberRemoved
  | MemberUnreachable
  | MemberReachable
  | MemberConflict
  | HandshakeRefused
  | TransportConnected
  | TransportDisconnected
  | TransportControlLane
  | TransportFrameRejected
  | TransportInboundPaused
  | TransportInboundResumed
  | GossipConverged
  | GossipViewRejected
  | GossipStateChanged
  | NodePaused
  | AssociationStateChanged
  | AssociationQuarantined
  | AssociationReleased
  | AssociationDrained
  | AssociationAsksWithdrawn
  | AssociationSendFailed
  | PidResolutionConflict
  | PidCacheInvalidated
  | RpcRetried
  | RpcFailed
  | RpcAlert
  | RpcAlertCleared
  | RpcRejected
  | RpcDropped
  | RpcExpired
  | RpcSchemaMismatch
  | RpcSerializationFailed
  | HandshakeSchemaMismatch
  | PubSubTopicCreated
  | PubSubTopicChanged
  | PubSubTopicDeleted
  | PubSubSubscribed
  | PubSubUnsubscribed
  | PubSubDeliveryLost
  | PubSubPublishFailed

export type RuntimeEventType = RuntimeEvent['type']
export type EventOf<T extends RuntimeEventType> = Extract<RuntimeEvent, { type: T }>

/** Distributive Omit so each union member keeps its own fields. */
export type EventInit<E> = E extends RuntimeEvent ? Omit<E, 'category' | 'at'> & { at?: number } : never

export function categoryOf(type: string): EventCategory {
  const dot = type.indexOf('.')
  return (dot < 0 ? type : type.slice(0, dot)) as EventCategory
}

// Order fixes each category's interest bit (workers hard-code the first six): append only.
export const EVENT_CATEGORIES: readonly EventCategory[] = ['grain', 'worker', 'ring', 'deadletter', 'frame', 'node', 'member', 'handshake', 'transport', 'gossip', 'association', 'pid', 'rpc', 'placement', 'pubsub']
