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
export { FAILURE_DETECTOR_PROFILES, DEFAULT_FAILURE_DETECTOR_PROFILE, type FailureDetectorSettings, type FailureDetectorProfileName } from './cluster/failure-detector/profiles.js'
export type { Member, MemberStatus } from './cluster/membership/member.js'
export { NodeMetrics } from './observability/metrics.js'
