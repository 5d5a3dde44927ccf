/**
 * What the front needs from a node. A structural type rather than an import
 * of GrainNode: the front (L3) sits below the composition root (L4), and
 * tests can hand it a stub.
 */

import type { Member } from '../cluster/membership/member.js'
import type { MethodSchemas } from '../grains/kind-registry.js'
import type { EventInit, RpcSerializationFailed, RuntimeEvent } from '../observability/events.js'
import type { EventFilter } from '../observability/event-stream.js'

/** A kind as the workers reported it: its method names and the JSON Schemas of their payloads and results. */
export interface FrontKindInfo {
  readonly stateless: boolean
  /** The method names (a Map by name or a Set of names). */
  readonly methods: { has(method: string): boolean; keys(): Iterable<string> }
  readonly payloadSchemas?: MethodSchemas | undefined
  readonly resultSchemas?: MethodSchemas | undefined
  /** Schema versions the kind serves (for /openapi.json). */
  readonly supportedSchemaVersions?: readonly number[]
}

/** The node's PubSub (GrainNode.pubsub), as the /pubsub routes use it. */
export interface FrontPubSub {
  topics(): unknown[]
  createTopic(topic: string, options?: Record<string, unknown>): unknown
  deleteTopic(topic: string): boolean
  subscribe(topic: string, subscriber: { kind: string; key: string; method: string }): void
  unsubscribe(topic: string, subscriber: { kind: string; key: string; method: string }): boolean
  publish(topic: string, payload?: unknown): Promise<unknown>
}

export interface FrontNode {
  ask(kind: string, key: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<unknown>
  readonly kinds: ReadonlyMap<string, FrontKindInfo>
  metricsText(): Promise<string>
  readonly metricsContentType: string
  readonly events: { subscribe(filter: EventFilter, fn: (e: RuntimeEvent) => void): () => void; publish(e: EventInit<RpcSerializationFailed>): void }
  readonly options: { readonly workers: number }
  /** Absent on nodes without PubSub (test stubs): the /pubsub routes then answer ERR_PUBSUB_INVALID. */
  readonly pubsub?: FrontPubSub
  readonly cluster:
    | {
        readonly authority: string
        readonly core: {
          readonly isUp: boolean
          readonly isMinority: boolean
          members(): Member[]
          unreachableSet(): Set<string>
        }
      }
    | undefined
}
