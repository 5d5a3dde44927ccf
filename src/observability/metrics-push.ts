/**
 * Pushes a node's registry to a Prometheus Pushgateway every intervalMs
 * (GrainNodeOptions.metrics.push), grouped by job and instance, with PUT so
 * each push replaces the node's previous one. A failed push (gateway down,
 * HTTP error, timeout) is published as `node.metrics-push-failed` and the
 * next interval tries again: metrics never hold up the node. Uses
 * prom-client's own Pushgateway client.
 */

import { Pushgateway, type Registry } from 'prom-client'
import { reasonOf } from '../common/errors.js'
import type { EventStream } from './event-stream.js'
import type { ResolvedMetricsOptions } from './metrics-options.js'

/** A push may take this long before it counts as failed. */
const PUSH_TIMEOUT_MS = 5_000

export class MetricsPusher {
  readonly #gateway: Pushgateway<'text/plain; version=0.0.4; charset=utf-8'>
  readonly #params: { jobName: string; groupings: { instance: string } }
  readonly #timer: ReturnType<typeof setInterval>
  readonly #events: EventStream
  readonly #url: string
  #inFlight: Promise<void> | undefined
  /** Pushes that succeeded (tests and the run log read it). */
  pushes = 0

  constructor(registry: Registry, push: NonNullable<ResolvedMetricsOptions['push']>, instance: string, events: EventStream) {
    this.#gateway = new Pushgateway(push.url, { timeout: PUSH_TIMEOUT_MS }, registry)
    this.#params = { jobName: push.job, groupings: { instance } }
    this.#events = events
    this.#url = push.url
    this.#timer = setInterval(() => void this.pushNow(), push.intervalMs)
    // A node with nothing else to do may exit; pushing is no reason to stay.
    this.#timer.unref()
  }

  /** One push now (none while one is under way); resolves when it ended, whatever the outcome. */
  pushNow(): Promise<void> {
    this.#inFlight ??= this.#gateway.push(this.#params).then(
      () => {
        this.pushes++
        this.#inFlight = undefined
      },
      (e: unknown) => {
        this.#inFlight = undefined
        this.#events.publish({ type: 'node.metrics-push-failed', url: this.#url, job: this.#params.jobName, instance: this.#params.groupings.instance, reason: reasonOf(e) })
      },
    )
    return this.#inFlight
  }

  /** Stop, after a last push so the gateway holds the node's final numbers. */
  async close(): Promise<void> {
    clearInterval(this.#timer)
    await this.#inFlight
    await this.pushNow()
  }
}
