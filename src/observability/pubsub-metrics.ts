/**
 * PubSub metrics (spec 9.5: delivery latency, drop count and redelivery
 * count, so a topic's settings can be tuned). Labelled by topic only: a
 * topic exists in the registry before anything is recorded for it (a
 * publish to an unknown topic fails first), so callers cannot grow the
 * label set with made-up names; subscriber keys never become labels.
 * Counters and the histogram are plain-number families (metric-family.ts):
 * they sit on the delivery path. The registry's gauges are
 * NodeMetrics.observePubSub, read at scrape time.
 */

import type { Registry } from 'prom-client'
import { type Cell, type Family, familiesIn } from './metric-family.js'

const DELIVERY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export type DeliveryOutcome = 'delivered' | 'dropped' | 'failed'

/** One topic's cells, resolved once. */
interface TopicCells {
  readonly published: Cell
  readonly outcome: Record<DeliveryOutcome, Cell>
  readonly redelivered: Cell
  readonly latency: Cell
}

export class PubSubMetrics {
  readonly #published: Family
  readonly #deliveries: Family
  readonly #redeliveries: Family
  readonly #latency: Family
  readonly #cells = new Map<string, TopicCells>()

  constructor(registry: Registry, prefix = 'graincluster_') {
    const family = familiesIn(registry, prefix)
    this.#published = family('pubsub_published_total', 'Messages published to a topic from this node, by topic (publishes that failed for want of a topic or subscribers are not counted; see pubsub.publish-failed).', 'counter', ['topic'])
    this.#deliveries = family(
      'pubsub_deliveries_total',
      'Deliveries of published messages to subscribers, by topic and outcome: delivered (at-least-once: acknowledged; at-most-once: sent), dropped (partition policy drop, or the topic deferLimit reached), failed (the handler threw, or redelivery ran out).',
      'counter',
      ['topic', 'outcome'],
    )
    this.#redeliveries = family('pubsub_redeliveries_total', 'At-least-once deliveries sent again after a retryable failure (unreachable owner, timeout, moved key), by topic.', 'counter', ['topic'])
    this.#latency = family('pubsub_delivery_seconds', 'From publish to the acknowledgement of an at-least-once delivery, redeliveries included, by topic.', 'histogram', ['topic'], DELIVERY_BUCKETS)
  }

  #of(topic: string): TopicCells {
    let c = this.#cells.get(topic)
    if (c === undefined) {
      const d = this.#deliveries
      c = {
        published: this.#published.cell(topic),
        outcome: { delivered: d.cell(topic, 'delivered'), dropped: d.cell(topic, 'dropped'), failed: d.cell(topic, 'failed') },
        redelivered: this.#redeliveries.cell(topic),
        latency: this.#latency.cell(topic),
      }
      this.#cells.set(topic, c)
    }
    return c
  }

  published(topic: string): void {
    this.#of(topic).published.value++
  }

  delivery(topic: string, outcome: DeliveryOutcome, seconds?: number): void {
    const c = this.#of(topic)
    c.outcome[outcome].value++
    if (seconds !== undefined) this.#latency.observe(c.latency, seconds)
  }

  redelivered(topic: string): void {
    this.#of(topic).redelivered.value++
  }
}
