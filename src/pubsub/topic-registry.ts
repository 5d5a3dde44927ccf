/**
 * The cluster's PubSub topic registry (spec 9.1), sans-I/O: topics and their
 * subscriptions as entries of the replicated data map that gossip carries
 * (ClusterCore.writeData, a Lamport last-writer-wins map), so every member
 * holds the whole registry, learns of a new topic within a few gossip
 * rounds, and keeps serving it on its side of a partition. Entries outlive
 * the node that wrote them: a subscription is a grain identity, not a
 * process, and stays valid wherever the grain is placed.
 *
 *   pubsub/t/<topic>                      TopicSettings, null = deleted
 *   pubsub/s/<topic>\0<kind>\0<key>\0<method>   TopicSubscriber, null = unsubscribed
 *
 * This file names and checks the entries and turns changed keys into the
 * registry's events; the driver (node/pubsub-service.ts) writes and reads
 * the map.
 */

import { GrainClusterError } from '../common/errors.js'
import type { DeliveryGuarantee } from '../common/publish-result.js'
import { checkRpcSettings } from '../common/rpc-settings.js'

export type { DeliveryGuarantee }
/** While a subscriber's owner cannot be reached: keep the delivery for redelivery (bounded), or drop it at once (spec 9.3). */
export type PartitionPolicy = 'defer' | 'drop'

/** Redelivery of at-least-once deliveries: an RpcCallSettings subset, all decided. */
export interface RedeliverySettings {
  /** Deadline of one delivery, redeliveries included (ms). */
  readonly timeoutMs: number
  /**
   * Wait for one attempt's acknowledgement (ms). Unset (the default): the
   * publishing node's askTimeoutMs, whose calls share the node's timeout
   * sweep; another value costs a timer per delivery attempt.
   */
  readonly attemptTimeoutMs?: number
  /** Redeliveries after the first attempt, for retryable failures only. */
  readonly retries: number
  readonly minDelayMs: number
  readonly maxDelayMs: number
}

export interface TopicSettings {
  readonly delivery: DeliveryGuarantee
  readonly partitionPolicy: PartitionPolicy
  /** Deliveries of this topic one publishing node keeps waiting for redelivery; beyond it the oldest is dropped. */
  readonly deferLimit: number
  readonly redelivery: RedeliverySettings
}

export interface TopicOptions {
  delivery?: DeliveryGuarantee
  partitionPolicy?: PartitionPolicy
  deferLimit?: number
  redelivery?: Partial<RedeliverySettings>
}

export interface TopicSubscriber {
  readonly kind: string
  readonly key: string
  readonly method: string
}

export const DEFAULT_TOPIC_SETTINGS: TopicSettings = Object.freeze({
  // The upstream design's default (spec 2.1: "AtLeastOnce").
  delivery: 'at-least-once',
  partitionPolicy: 'defer',
  deferLimit: 10_000,
  redelivery: Object.freeze({ timeoutMs: 30_000, retries: 10, minDelayMs: 100, maxDelayMs: 5_000 }),
})

export const TOPIC_PREFIX = 'pubsub/t/'
export const SUBSCRIPTION_PREFIX = 'pubsub/s/'
const TOPIC_RE = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/
const MAX_DEFER_LIMIT = 10_000_000
/**
 * Size the replicated map may reach before new registry entries are
 * refused (ERR_PUBSUB_REGISTRY_FULL): a newcomer's welcome carries the
 * whole map, tombstones included, in one frame of at most 4 MiB (the
 * transport's default), beside the member table. About 10 000 short
 * subscriptions.
 */
export const MAX_REGISTRY_BYTES = 2 * 1024 * 1024

export const topicKey = (topic: string): string => TOPIC_PREFIX + topic
export const subscriptionKey = (topic: string, s: TopicSubscriber): string => `${SUBSCRIPTION_PREFIX}${topic}\u0000${s.kind}\u0000${s.key}\u0000${s.method}`

function invalid(reason: string, topic?: string): GrainClusterError {
  return new GrainClusterError('ERR_PUBSUB_INVALID', reason, topic === undefined ? {} : { topic })
}

export function checkTopicName(topic: unknown): string {
  if (typeof topic !== 'string' || !TOPIC_RE.test(topic)) throw invalid(`a topic name must match ${TOPIC_RE} (got ${JSON.stringify(topic)?.slice(0, 140)})`)
  return topic
}

/** Settings of a new topic: defaults under `o`; every problem listed in one ERR_PUBSUB_INVALID. */
export function resolveTopicSettings(topic: string, o: TopicOptions | undefined, defaults: TopicSettings = DEFAULT_TOPIC_SETTINGS): TopicSettings {
  const issues: string[] = []
  const u: Record<string, unknown> = typeof o === 'object' && o !== null ? (o as Record<string, unknown>) : {}
  if (o !== undefined && (typeof o !== 'object' || o === null)) issues.push('options must be an object')
  for (const k of Object.keys(u)) if (!['delivery', 'partitionPolicy', 'deferLimit', 'redelivery'].includes(k)) issues.push(`${k} is not a topic option`)
  const delivery = u.delivery ?? defaults.delivery
  if (delivery !== 'at-least-once' && delivery !== 'at-most-once') issues.push(`delivery must be 'at-least-once' or 'at-most-once' (got ${JSON.stringify(delivery)})`)
  const partitionPolicy = u.partitionPolicy ?? defaults.partitionPolicy
  if (partitionPolicy !== 'defer' && partitionPolicy !== 'drop') issues.push(`partitionPolicy must be 'defer' or 'drop' (got ${JSON.stringify(partitionPolicy)})`)
  const deferLimit = u.deferLimit ?? defaults.deferLimit
  if (typeof deferLimit !== 'number' || !Number.isSafeInteger(deferLimit) || deferLimit < 1 || deferLimit > MAX_DEFER_LIMIT) issues.push(`deferLimit must be an integer in 1..${MAX_DEFER_LIMIT} (got ${JSON.stringify(deferLimit)})`)
  issues.push(...checkRpcSettings(u.redelivery, 'redelivery'))
  const r = (typeof u.redelivery === 'object' && u.redelivery !== null ? u.redelivery : {}) as Partial<RedeliverySettings>
  // checkRpcSettings names unknown fields; these two are call settings a topic does not take (its backoff doubles, with full jitter).
  for (const k of ['factor', 'jitter']) if (k in r) issues.push(`redelivery.${k} is not a redelivery setting`)
  const redelivery: RedeliverySettings = { ...defaults.redelivery, ...r }
  if (redelivery.attemptTimeoutMs !== undefined && redelivery.attemptTimeoutMs > redelivery.timeoutMs) issues.push(`redelivery.attemptTimeoutMs (${redelivery.attemptTimeoutMs}) must not exceed redelivery.timeoutMs (${redelivery.timeoutMs})`)
  if (issues.length > 0) throw new GrainClusterError('ERR_PUBSUB_INVALID', `invalid settings of topic ${topic}: ${issues.join('; ')}`, { topic, issues })
  return { delivery: delivery as DeliveryGuarantee, partitionPolicy: partitionPolicy as PartitionPolicy, deferLimit: deferLimit as number, redelivery }
}

/** A registry entry's settings as written by resolveTopicSettings, or undefined when the entry is not one (a newer peer's shape, or garbage: ignored, not trusted). */
function readTopicSettings(topic: string, u: unknown): TopicSettings | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  try {
    return resolveTopicSettings(topic, u)
  } catch {
    return undefined
  }
}

function readSubscriber(u: unknown): TopicSubscriber | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  const { kind, key, method } = u as Record<string, unknown>
  if (typeof kind !== 'string' || typeof key !== 'string' || typeof method !== 'string') return undefined
  return { kind, key, method }
}

/** What the driver needs of the replicated data map (ClusterNode has it; a lone node uses a local map). */
export interface DataMap {
  /** About how many bytes the whole map takes in a gossip message, tombstones included (0 for a map that is not gossiped). */
  readonly dataBytes: number
  /** dataBytes after writing `value` under `key`: the map's own estimate, so the registry does not keep a second one. */
  dataBytesWith(key: string, value: unknown): number
  writeData(key: string, value: unknown): boolean
  /** The live value of a key (undefined when absent or deleted). */
  readData(key: string): unknown
  dataEntries(prefix: string): [string, unknown][]
}

export type RegistryChange =
  | { type: 'topic-created'; topic: string; settings: TopicSettings }
  | { type: 'topic-deleted'; topic: string }
  /** Another write of the topic won (two members created it at once with different settings, or a node declared other settings). */
  | { type: 'topic-changed'; topic: string; settings: TopicSettings }
  | { type: 'subscribed'; topic: string; subscriber: TopicSubscriber }
  | { type: 'unsubscribed'; topic: string; subscriber: TopicSubscriber }

interface TopicEntry {
  settings: TopicSettings | undefined
  /** subscription key → subscriber */
  subscribers: Map<string, TopicSubscriber>
  /** subscribers' values, built on the first read after a change (publishes read it, changes are rare) */
  list: readonly TopicSubscriber[] | undefined
}

/**
 * The registry as this node sees it. Reads are served from a cache that
 * `changed(keys)` keeps in step with the data map, so publishing never scans
 * the map. A subscription whose topic is deleted (or not yet known here:
 * gossip may bring the subscription first) is kept but not delivered to.
 */
export class TopicRegistry {
  readonly #map: DataMap
  readonly #topics = new Map<string, TopicEntry>()

  constructor(map: DataMap) {
    this.#map = map
    const keys = [...map.dataEntries(TOPIC_PREFIX), ...map.dataEntries(SUBSCRIPTION_PREFIX)].map(([k]) => k)
    this.changed(keys)
  }

  topic(name: string): TopicSettings | undefined {
    return this.#topics.get(name)?.settings
  }

  /** Topics that exist, by name. */
  topics(): string[] {
    const out: string[] = []
    for (const [name, t] of this.#topics) if (t.settings !== undefined) out.push(name)
    return out.sort()
  }

  /** The topic's subscribers; the same frozen array until they change. */
  subscribers(topic: string): readonly TopicSubscriber[] {
    const t = this.#topics.get(topic)
    if (t === undefined) return []
    t.list ??= Object.freeze([...t.subscribers.values()])
    return t.list
  }

  isSubscribed(topic: string, s: TopicSubscriber): boolean {
    return this.#topics.get(topic)?.subscribers.has(subscriptionKey(topic, s)) ?? false
  }

  subscriptionCount(): number {
    let n = 0
    for (const t of this.#topics.values()) if (t.settings !== undefined) n += t.subscribers.size
    return n
  }

  #entry(topic: string): TopicEntry {
    let t = this.#topics.get(topic)
    if (t === undefined) this.#topics.set(topic, (t = { settings: undefined, subscribers: new Map(), list: undefined }))
    return t
  }

  /** Bring the cache in step with these changed keys of the data map; returns what changed, for events. */
  changed(keys: Iterable<string>): RegistryChange[] {
    const out: RegistryChange[] = []
    for (const k of keys) {
      if (k.startsWith(TOPIC_PREFIX)) {
        const topic = k.slice(TOPIC_PREFIX.length)
        const v = this.#map.readData(k)
        const t = this.#entry(topic)
        const settings = v === undefined ? undefined : readTopicSettings(topic, v)
        if (t.settings === undefined && settings !== undefined) out.push({ type: 'topic-created', topic, settings })
        else if (t.settings !== undefined && settings === undefined) out.push({ type: 'topic-deleted', topic })
        else if (t.settings !== undefined && settings !== undefined && JSON.stringify(t.settings) !== JSON.stringify(settings)) out.push({ type: 'topic-changed', topic, settings })
        t.settings = settings
      } else if (k.startsWith(SUBSCRIPTION_PREFIX)) {
        const [topic] = k.slice(SUBSCRIPTION_PREFIX.length).split('\u0000', 1)
        if (topic === undefined) continue
        const v = this.#map.readData(k)
        const sub = v === undefined ? undefined : readSubscriber(v)
        const t = this.#entry(topic)
        const had = t.subscribers.get(k)
        if (sub !== undefined && had === undefined) out.push({ type: 'subscribed', topic, subscriber: sub })
        if (sub === undefined && had !== undefined) out.push({ type: 'unsubscribed', topic, subscriber: had })
        if (sub === undefined) t.subscribers.delete(k)
        else t.subscribers.set(k, sub)
        t.list = undefined
      }
    }
    return out
  }

  /** Write a topic (idempotent for equal settings; other settings of an existing topic are refused). */
  create(topic: string, settings: TopicSettings): RegistryChange[] {
    const cur = this.topic(topic)
    if (cur !== undefined) {
      if (JSON.stringify(cur) === JSON.stringify(settings)) return []
      throw new GrainClusterError('ERR_PUBSUB_TOPIC_CONFLICT', `topic ${topic} exists with other settings (${JSON.stringify(cur)}); delete it first to change them`, { topic })
    }
    return this.declare(topic, settings)
  }

  /** Write a topic whatever the registry holds for it now (a node's configured topics). */
  declare(topic: string, settings: TopicSettings): RegistryChange[] {
    this.#write(topic, topicKey(topic), settings)
    return this.changed([topicKey(topic)])
  }

  /** Write an entry, unless it would grow the replicated map past MAX_REGISTRY_BYTES (rewrites that do not grow it always pass). */
  #write(topic: string, key: string, value: unknown): void {
    const after = this.#map.dataBytesWith(key, value)
    if (after > MAX_REGISTRY_BYTES && after > this.#map.dataBytes) {
      throw new GrainClusterError('ERR_PUBSUB_REGISTRY_FULL', `the replicated registry holds about ${this.#map.dataBytes} bytes (tombstones included) and may hold ${MAX_REGISTRY_BYTES}: delete topics or subscriptions first`, { topic, limit: MAX_REGISTRY_BYTES, size: this.#map.dataBytes })
    }
    this.#map.writeData(key, value)
  }

  /** Delete a topic and the subscriptions this node knows of (a subscription made concurrently elsewhere may survive, unused until the topic is created again). */
  delete(topic: string): RegistryChange[] {
    const keys = [topicKey(topic), ...(this.#topics.get(topic)?.subscribers.keys() ?? [])]
    for (const k of keys) this.#map.writeData(k, null)
    return this.changed(keys)
  }

  subscribe(topic: string, s: TopicSubscriber): RegistryChange[] {
    const k = subscriptionKey(topic, s)
    this.#write(topic, k, { kind: s.kind, key: s.key, method: s.method })
    return this.changed([k])
  }

  unsubscribe(topic: string, s: TopicSubscriber): RegistryChange[] {
    const k = subscriptionKey(topic, s)
    this.#map.writeData(k, null)
    return this.changed([k])
  }
}
