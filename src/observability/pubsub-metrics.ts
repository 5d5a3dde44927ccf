/**
 * PubSub metrics (spec 9.5: delivery latency, drop count and redelivery
 * count, so a topic's settings can be tuned). Labelled by topic only: a
 * topic exists in the registry before anything is recorded for it (a
 * publish to an unknown topic fails first), so callers cannot grow the
 * label set with made-up names; subscriber keys never become labels.
 */

import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

const DELIVERY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export type DeliveryOutcome = 'delivered' | 'dropped' | 'failed'

/** One topic's series, resolved once: prom-client hashes the label set on every labelled call. */
interface TopicCells {
  readonly published: { inc(): void }
  readonly outcome: Record<DeliveryOutcome, { inc(): void }>
  readonly redelivered: { inc(): void }
  readonly latency: { observe(v: number): void }
}

export class PubSubMetrics {
  readonly #cells = new Map<string, TopicCells>()
  readonly #published: Counter<'topic'>
  readonly #deliveries: Counter<'topic' | 'outcome'>
  readonly #redeliveries: Counter<'topic'>
  readonly #latency: Histogram<'topic'>

  constructor(registry: Registry, read: () => { topics: number; subscriptions: number; waiting: number }, prefix = 'graincluster_') {
    const registers = [registry]
    this.#published = new Counter({ name: `${prefix}pubsub_published_total`, help: 'Messages published to a topic from this node, by topic (publishes that failed for want of a topic or subscribers are not counted; see pubsub.publish-failed).', labelNames: ['topic'], registers })
    this.#deliveries = new Counter({
      name: `${prefix}pubsub_deliveries_total`,
      help: 'Deliveries of published messages to subscribers, by topic and outcome: delivered (at-least-once: acknowledged; at-most-once: sent), dropped (partition policy drop, or the topic deferLimit reached), failed (the handler threw, or redelivery ran out).',
      labelNames: ['topic', 'outcome'],
      registers,
    })
    this.#redeliveries = new Counter({ name: `${prefix}pubsub_redeliveries_total`, help: 'At-least-once deliveries sent again after a retryable failure (unreachable owner, timeout, moved key), by topic.', labelNames: ['topic'], registers })
    this.#latency = new Histogram({ name: `${prefix}pubsub_delivery_seconds`, help: 'From publish to the acknowledgement of an at-least-once delivery, redeliveries included, by topic.', labelNames: ['topic'], buckets: DELIVERY_BUCKETS, registers })
    const gauge = (name: string, help: string, pick: (s: ReturnType<typeof read>) => number): void => {
      new Gauge({
        name: `${prefix}${name}`,
        help,
        registers,
        collect() {
          this.set(pick(read()))
        },
      })
    }
    gauge('pubsub_topics', 'Topics in this node’s view of the cluster registry.', (s) => s.topics)
    gauge('pubsub_subscriptions', 'Subscriptions of existing topics in this node’s view of the registry.', (s) => s.subscriptions)
    gauge('pubsub_deliveries_waiting', 'At-least-once deliveries from this node waiting to be sent again (bounded per topic by deferLimit).', (s) => s.waiting)
  }

  #of(topic: string): TopicCells {
    let c = this.#cells.get(topic)
    if (c === undefined) {
      const d = (outcome: DeliveryOutcome) => this.#deliveries.labels({ topic, outcome })
      c = { published: this.#published.labels({ topic }), outcome: { delivered: d('delivered'), dropped: d('dropped'), failed: d('failed') }, redelivered: this.#redeliveries.labels({ topic }), latency: this.#latency.labels({ topic }) }
      this.#cells.set(topic, c)
    }
    return c
  }

  published(topic: string): void {
    this.#of(topic).published.inc()
  }

  delivery(topic: string, outcome: DeliveryOutcome, seconds?: number): void {
    const c = this.#of(topic)
    c.outcome[outcome].inc()
    if (seconds !== undefined) c.latency.observe(seconds)
  }

  redelivered(topic: string): void {
    this.#of(topic).redelivered.inc()
  }
}
