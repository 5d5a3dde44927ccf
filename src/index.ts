/**
 * graincluster public API. Everything a user imports comes from here.
 */

export { ERROR_CODES, GrainClusterError, type ErrorCode, type ErrorDetails, type WireError } from './common/errors.js'
export { defineGrain, defineStatelessGrain, type GrainDefinition, type StatelessGrainDefinition, type PayloadOf, type ResultOf } from './grains/define-grain.js'
export type { GrainContext } from './grains/grain-context.js'
export { EventStream, type EventFilter } from './observability/event-stream.js'
export type { RuntimeEvent, RuntimeEventType, EventCategory, EventOf } from './observability/events.js'
export { GrainNode, resolveNodeOptions, type GrainNodeOptions, type CallOptions, DEFAULT_PARTITIONS, DEFAULT_ASK_TIMEOUT_MS } from './node/grain-node.js'
export { binaryCodec, jsonCodec, type PayloadCodec } from './wire/payload-codec.js'
export { ClusterNode, type ClusterNodeOptions, DEFAULT_GOSSIP_INTERVAL_MS, DEFAULT_CONVERGENCE_TIMEOUT_MS } from './node/cluster-node.js'
export { resolveConfig, redactedConfig, toGrainNodeOptions, NodeConfigSchema, SETTINGS, type NodeConfig, type ResolveConfigInput, type SettingDoc } from './node/config.js'
export { FAILURE_DETECTOR_PROFILES, DEFAULT_FAILURE_DETECTOR_PROFILE, type FailureDetectorSettings, type FailureDetectorProfileName } from './cluster/failure-detector/profiles.js'
export type { Member, MemberStatus } from './cluster/membership/member.js'
export { NodeMetrics } from './observability/metrics.js'
export { buildFront, startFront, type FrontOptions, type FrontNode, type RunningFront, DEFAULT_BODY_LIMIT_BYTES, DEFAULT_WS_MAX_IN_FLIGHT } from './rpc/build-front.js'
export type { RpcCallSettings } from './common/rpc-settings.js'
export type { GrainProxy, GrainTellProxy, UntypedGrainProxy, UntypedGrainTellProxy } from './rpc/grain-proxy.js'
export type { RpcAlertSettings, RpcAlertSignal } from './rpc/rpc-alerts.js'
export { DEFAULT_CONCURRENCY_LIMIT, DEFAULT_QUEUE_DEPTH, DEFAULT_QUEUE_POLICY, type KeyLimits, type QueuePolicy } from './runtime/worker/key-limits.js'
export type { PubSub, TopicInfo } from './node/pubsub-service.js'
export type { PublishResult, DeliveryLoss } from './common/publish-result.js'
export { DEFAULT_TOPIC_SETTINGS, type TopicOptions, type TopicSettings, type TopicSubscriber, type DeliveryGuarantee, type PartitionPolicy, type RedeliverySettings } from './pubsub/topic-registry.js'
