/**
 * What a PubSub publish reports (node.pubsub.publish, a grain's
 * ctx.publish). In common/ because both threads use it: the main thread
 * builds it, a grain receives it across the ring.
 */

export type DeliveryGuarantee = 'at-least-once' | 'at-most-once'

/** One subscriber a delivery did not reach, and why. */
export interface DeliveryLoss {
  readonly kind: string
  readonly key: string
  readonly method: string
  readonly code: string
  readonly reason: string
}

export interface PublishResult {
  readonly topic: string
  readonly delivery: DeliveryGuarantee
  readonly subscribers: number
  /** at-least-once: acknowledged by the handler; at-most-once: sent. */
  readonly delivered: number
  /** Attempts after the first, summed over subscribers. */
  readonly redeliveries: number
  /** Dropped by the partition policy or the deferLimit. */
  readonly dropped: readonly DeliveryLoss[]
  /** The handler threw, or redelivery ran out of attempts or time. */
  readonly failed: readonly DeliveryLoss[]
}
