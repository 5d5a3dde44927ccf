/**
 * Cluster PubSub (spec 9): topics, subscriptions and delivery, as
 * `node.pubsub`.
 *
 * The registry (pubsub/topic-registry.ts) is replicated to every member on
 * gossip, so a publish needs no lookup round trip: the publishing node reads
 * the topic's settings and subscribers locally and sends one grain call per
 * subscriber, through the same placement as any call (the owner of each
 * subscriber key, on whichever side of a partition this node is).
 *
 * - at-most-once: a tell per subscriber; "delivered" means sent (handed to a
 *   local worker ring, or to the owner's association, whose bounded deferred
 *   queue keeps it while the connection is down).
 * - at-least-once: an ask per subscriber; "delivered" means the subscriber's
 *   handler returned. Retryable failures (owner unreachable, moved key,
 *   timeout, crashed worker) are redelivered with exponential backoff and
 *   full jitter inside the topic's redelivery budget; a handler's own throw
 *   is never redelivered. A redelivered message may arrive after later
 *   ones, and may arrive twice (a timed-out attempt can still run):
 *   subscribers should be idempotent, as with any at-least-once delivery.
 * - Partition policy (spec 9.3), applied by each node to the owners it can
 *   reach from its side: 'defer' keeps an undeliverable delivery for
 *   redelivery, at most `deferLimit` per topic on this node (beyond it the
 *   oldest waiting one is dropped); 'drop' drops a delivery at once when its
 *   subscriber's owner is not connected now or an attempt fails retryably.
 *
 * Every lost delivery is a `pubsub.delivery-lost` event and is counted; a
 * publish to a missing topic or to none fails with a typed error (spec 9.4).
 */

import { MAX_ID } from '../cluster/messages.js'
import { GrainClusterError, toGrainClusterError } from '../common/errors.js'
import type { DeliveryLoss, PublishResult } from '../common/publish-result.js'
import type { EventStream } from '../observability/event-stream.js'
import type { PubSubMetrics } from '../observability/pubsub-metrics.js'
import {
  checkTopicName,
  type DataMap,
  type RegistryChange,
  resolveTopicSettings,
  subscriptionKey,
  type TopicOptions,
  TopicRegistry,
  type TopicSettings,
  type TopicSubscriber,
} from '../pubsub/topic-registry.js'
import { judgeFailedAttempt } from '../pubsub/partition-policy.js'

/** At-least-once deliveries of one publish in flight at once (a topic with more subscribers is delivered in lanes). */
export const MAX_DELIVERIES_IN_FLIGHT = 256

export interface TopicInfo {
  readonly topic: string
  readonly settings: TopicSettings
  readonly subscribers: readonly TopicSubscriber[]
}

/** What the service needs of its GrainNode. */
export interface PubSubHost {
  readonly events: EventStream
  /** The node's default ask timeout: a delivery attempt's timeout when its topic sets none. */
  readonly askTimeoutMs: number
  tell(kind: string, key: string, method: string, payload: unknown): void
  /** One delivery attempt: an ask of at most `timeoutMs`, never retried by the RPC layer. */
  ask(kind: string, key: string, method: string, payload: unknown, timeoutMs: number): Promise<unknown>
  /** The kind's method names, or undefined for an unknown kind. */
  methodsOf(kind: string): { has(method: string): boolean } | undefined
  /** Why a call to kind/key could not leave this node now (owner not connected, node not serving), or undefined when it could. */
  blockedNow(kind: string, key: string): GrainClusterError | undefined
}

/** A data map for a node without a cluster: the registry lives in this process only. */
export class LocalDataMap implements DataMap {
  readonly #m = new Map<string, unknown>()
  /** Not gossiped: no frame to fit in. */
  readonly dataBytes = 0
  dataBytesWith(): number {
    return 0
  }
  writeData(key: string, value: unknown): boolean {
    if (JSON.stringify(this.#m.get(key) ?? null) === JSON.stringify(value)) return false
    if (value === null) this.#m.delete(key)
    else this.#m.set(key, value)
    return true
  }
  readData(key: string): unknown {
    return this.#m.get(key)
  }
  dataEntries(prefix: string): [string, unknown][] {
    return [...this.#m].filter(([k]) => k.startsWith(prefix))
  }
}

/** A publish's result while its deliveries run. */
type Tally = { -readonly [K in keyof PublishResult]: PublishResult[K] } & { dropped: DeliveryLoss[]; failed: DeliveryLoss[] }

interface Waiting {
  /** Ends the wait early: the delivery is dropped with this error. */
  evict(e: GrainClusterError): void
}

export class PubSub {
  readonly #host: PubSubHost
  readonly #registry: TopicRegistry
  readonly #metrics: PubSubMetrics | undefined
  readonly #random: () => number
  /** topic → deliveries waiting for redelivery, oldest first. */
  readonly #waiting = new Map<string, Set<Waiting>>()
  #closed = false
  readonly #stop: () => void

  constructor(o: {
    host: PubSubHost
    map: DataMap
    /** Changes of the data map made elsewhere (gossip); undefined for a local map. */
    onDataChange: ((fn: (keys: readonly string[]) => void) => () => void) | undefined
    metrics: ((read: () => { topics: number; subscriptions: number; waiting: number }) => PubSubMetrics) | undefined
    random?: () => number
  }) {
    this.#host = o.host
    this.#registry = new TopicRegistry(o.map)
    this.#random = o.random ?? Math.random
    this.#metrics = o.metrics?.(() => ({ topics: this.#registry.topics().length, subscriptions: this.#registry.subscriptionCount(), waiting: this.#waitingCount() }))
    this.#stop = o.onDataChange?.((keys) => this.#announce(this.#registry.changed(keys))) ?? (() => {})
  }

  #waitingCount(): number {
    let n = 0
    for (const w of this.#waiting.values()) n += w.size
    return n
  }

  /** Registry changes as events: on every member, as gossip brings them (spec 9.1). */
  #announce(changes: readonly RegistryChange[]): void {
    const ev = this.#host.events
    for (const c of changes) {
      if (c.type === 'topic-created' || c.type === 'topic-changed') ev.publish({ type: `pubsub.${c.type}`, topic: c.topic, delivery: c.settings.delivery, partitionPolicy: c.settings.partitionPolicy })
      else if (c.type === 'topic-deleted') ev.publish({ type: 'pubsub.topic-deleted', topic: c.topic })
      else ev.publish({ type: c.type === 'subscribed' ? 'pubsub.subscribed' : 'pubsub.unsubscribed', topic: c.topic, ...c.subscriber })
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new GrainClusterError('ERR_NODE_CLOSED', 'the node is closed')
  }

  /**
   * Create a topic in the cluster's registry; gossip announces it to every
   * member, which then accepts subscriptions and publishes. Idempotent for
   * equal settings; an existing topic with other settings is refused
   * (ERR_PUBSUB_TOPIC_CONFLICT). Two members creating one topic at once
   * with different settings end with one of them (last writer wins).
   */
  createTopic(topic: string, options?: TopicOptions): TopicSettings {
    this.#checkOpen()
    checkTopicName(topic)
    const settings = resolveTopicSettings(topic, options)
    this.#announce(this.#registry.create(topic, settings))
    return settings
  }

  /**
   * A node's start-up topic (GrainNodeOptions.pubsub.topics, checked when
   * the options were resolved). Unlike createTopic, other settings already
   * in the registry do not fail the start: every node writes the same
   * declaration, and the registry keeps one (last writer wins).
   */
  createResolvedTopic(topic: string, settings: TopicSettings): void {
    this.#announce(this.#registry.declare(topic, settings))
  }

  /** Delete a topic and its subscriptions; deliveries waiting for redelivery are dropped. */
  deleteTopic(topic: string): boolean {
    this.#checkOpen()
    checkTopicName(topic)
    if (this.#registry.topic(topic) === undefined) return false
    this.#announce(this.#registry.delete(topic))
    for (const w of this.#waiting.get(topic) ?? []) w.evict(new GrainClusterError('ERR_PUBSUB_TOPIC_NOT_FOUND', `topic ${topic} was deleted while this delivery waited for redelivery`, { topic }))
    return true
  }

  /** Subscribe a grain's method to a topic: every message published to it is delivered to kind/key as `method(payload)`. Idempotent. */
  subscribe(topic: string, subscriber: TopicSubscriber): void {
    this.#checkOpen()
    const s = this.#checkSubscriber(topic, subscriber)
    if (this.#registry.topic(topic) === undefined) throw notFound(topic, 'subscribe to')
    this.#announce(this.#registry.subscribe(topic, s))
  }

  unsubscribe(topic: string, subscriber: TopicSubscriber): boolean {
    this.#checkOpen()
    const s = this.#checkSubscriber(topic, subscriber)
    // In a cluster the write's own listener announces the change, so the return value cannot come from it.
    if (!this.#registry.isSubscribed(topic, s)) return false
    this.#announce(this.#registry.unsubscribe(topic, s))
    return true
  }

  #checkSubscriber(topic: string, u: TopicSubscriber): TopicSubscriber {
    checkTopicName(topic)
    if (typeof u !== 'object' || u === null) throw new GrainClusterError('ERR_PUBSUB_INVALID', 'a subscriber is { kind, key, method }', { topic })
    const { kind, key, method } = u
    const methods = typeof kind === 'string' ? this.#host.methodsOf(kind) : undefined
    if (methods === undefined) throw new GrainClusterError('ERR_PUBSUB_INVALID', `cannot subscribe unknown grain kind ${JSON.stringify(kind)} to topic ${topic}`, { topic, kind: String(kind) })
    if (typeof key !== 'string' || key.length === 0) throw new GrainClusterError('ERR_PUBSUB_INVALID', `a subscriber's key must be a non-empty string (got ${JSON.stringify(key)})`, { topic, kind })
    if (typeof method !== 'string' || !methods.has(method)) throw new GrainClusterError('ERR_PUBSUB_INVALID', `grain kind ${kind} has no method ${JSON.stringify(method)} to deliver topic ${topic} to`, { topic, kind, key })
    const s = { kind, key, method }
    // Every peer's gossip check (cluster/messages.ts) refuses a longer data key.
    if (subscriptionKey(topic, s).length > MAX_ID) throw new GrainClusterError('ERR_PUBSUB_INVALID', `topic, kind, key and method of a subscription must fit in ${MAX_ID - subscriptionKey('', { kind: '', key: '', method: '' }).length} characters together`, { topic, kind, key })
    return s
  }

  /** Topics in this node's view of the registry. */
  topics(): TopicInfo[] {
    return this.#registry.topics().map((topic) => this.topic(topic)!)
  }

  topic(topic: string): TopicInfo | undefined {
    const settings = this.#registry.topic(topic)
    return settings === undefined ? undefined : { topic, settings, subscribers: this.#registry.subscribers(topic) }
  }

  /**
   * Publish `payload` to every subscriber of `topic` (spec 9.2). Resolves
   * once each delivery has ended (at-least-once: acknowledged, dropped or
   * failed; at-most-once: sent or dropped). Rejects with
   * ERR_PUBSUB_TOPIC_NOT_FOUND or ERR_PUBSUB_NO_SUBSCRIBERS when it reaches
   * nobody (spec 9.4).
   */
  async publish(topic: string, payload?: unknown): Promise<PublishResult> {
    this.#checkOpen()
    checkTopicName(topic)
    const settings = this.#registry.topic(topic)
    const subs = settings === undefined ? [] : this.#registry.subscribers(topic)
    if (settings === undefined || subs.length === 0) {
      const e = settings === undefined ? notFound(topic, 'publish to') : new GrainClusterError('ERR_PUBSUB_NO_SUBSCRIBERS', `topic ${topic} has no subscribers: the message was not delivered`, { topic })
      this.#host.events.publish({ type: 'pubsub.publish-failed', topic, code: e.code, reason: e.reason })
      throw e
    }
    this.#metrics?.published(topic)
    const r: Tally = { topic, delivery: settings.delivery, subscribers: subs.length, delivered: 0, redeliveries: 0, dropped: [], failed: [] }
    if (settings.delivery === 'at-most-once') {
      for (const s of subs) this.#tellOne(topic, settings, s, payload, r)
      return r
    }
    const startedAt = performance.now()
    if (subs.length <= MAX_DELIVERIES_IN_FLIGHT) await Promise.all(subs.map((s) => this.#askOne(topic, settings, s, payload, r, startedAt)))
    else {
      // A large topic: a bounded number of lanes, so one publish does not put thousands of calls in flight at once.
      let next = 0
      const lane = async (): Promise<void> => {
        while (next < subs.length) await this.#askOne(topic, settings, subs[next++]!, payload, r, startedAt)
      }
      await Promise.all(Array.from({ length: MAX_DELIVERIES_IN_FLIGHT }, lane))
    }
    return r
  }

  #lost(topic: string, s: TopicSubscriber, outcome: 'dropped' | 'failed', e: GrainClusterError, r: Tally): void {
    const loss: DeliveryLoss = { kind: s.kind, key: s.key, method: s.method, code: e.code, reason: e.reason }
    r[outcome].push(loss)
    this.#metrics?.delivery(topic, outcome)
    this.#host.events.publish({ type: 'pubsub.delivery-lost', topic, ...s, outcome, code: e.code, reason: e.reason })
  }

  /** Partition policy 'drop': a delivery whose owner cannot be reached now is dropped before it is sent. Returns whether it was. */
  #droppedNow(topic: string, t: TopicSettings, s: TopicSubscriber, r: Tally): boolean {
    if (t.partitionPolicy !== 'drop') return false
    const blocked = this.#host.blockedNow(s.kind, s.key)
    if (blocked === undefined) return false
    this.#lost(topic, s, 'dropped', blocked, r)
    return true
  }

  #tellOne(topic: string, t: TopicSettings, s: TopicSubscriber, payload: unknown, r: Tally): void {
    if (this.#droppedNow(topic, t, s, r)) return
    try {
      this.#host.tell(s.kind, s.key, s.method, payload)
    } catch (e) {
      return this.#lost(topic, s, 'dropped', toGrainClusterError(e), r)
    }
    r.delivered++
    this.#metrics?.delivery(topic, 'delivered')
  }

  async #askOne(topic: string, t: TopicSettings, s: TopicSubscriber, payload: unknown, r: Tally, startedAt: number): Promise<void> {
    const deadline = startedAt + t.redelivery.timeoutMs
    for (let attempt = 1; ; attempt++) {
      if (this.#droppedNow(topic, t, s, r)) return
      let err: GrainClusterError
      try {
        const budget = Math.max(1, Math.min(t.redelivery.attemptTimeoutMs ?? this.#host.askTimeoutMs, Math.ceil(deadline - performance.now())))
        await this.#host.ask(s.kind, s.key, s.method, payload, budget)
        r.delivered++
        this.#metrics?.delivery(topic, 'delivered', (performance.now() - startedAt) / 1000)
        return
      } catch (e) {
        err = toGrainClusterError(e)
      }
      if (this.#closed) return this.#lost(topic, s, 'failed', new GrainClusterError('ERR_NODE_CLOSED', `the node closed while delivering to ${s.kind}/${s.key}: ${err.reason}`, { topic }), r)
      const v = judgeFailedAttempt(err, t, attempt, performance.now(), deadline, this.#random)
      if (v.action !== 'redeliver') return this.#lost(topic, s, v.action, v.error, r)
      const evicted = await this.#wait(topic, t.deferLimit, v.delayMs)
      if (evicted !== undefined) return this.#lost(topic, s, 'dropped', evicted, r)
      r.redeliveries++
      this.#metrics?.redelivered(topic)
    }
  }

  /** Wait `ms` among the topic's waiting deliveries; resolves with an error when evicted (deferLimit reached, topic deleted, node closed). */
  #wait(topic: string, limit: number, ms: number): Promise<GrainClusterError | undefined> {
    let set = this.#waiting.get(topic)
    if (set === undefined) this.#waiting.set(topic, (set = new Set()))
    if (set.size >= limit) {
      const oldest = set.values().next().value!
      oldest.evict(new GrainClusterError('ERR_PUBSUB_DEFERRED_FULL', `topic ${topic} has deferLimit (${limit}) deliveries waiting for redelivery on this node: the oldest was dropped`, { topic }))
    }
    return new Promise((resolve) => {
      const w: Waiting = {
        evict: (e) => {
          clearTimeout(timer)
          set.delete(w)
          resolve(e)
        },
      }
      const timer = setTimeout(() => {
        set.delete(w)
        resolve(undefined)
      }, ms)
      set.add(w)
    })
  }

  /** Stop: deliveries waiting for redelivery end as dropped (ERR_NODE_CLOSED); no new calls. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#stop()
    for (const set of this.#waiting.values()) for (const w of [...set]) w.evict(new GrainClusterError('ERR_NODE_CLOSED', 'the node closed while this delivery waited for redelivery'))
  }
}

function notFound(topic: string, what: string): GrainClusterError {
  return new GrainClusterError('ERR_PUBSUB_TOPIC_NOT_FOUND', `cannot ${what} topic ${topic}: it does not exist (create it with pubsub.createTopic; a topic created on another member arrives with gossip)`, { topic })
}
