/**
 * What happens to an at-least-once delivery whose attempt failed (spec
 * 9.2/9.3), sans-I/O: the error, the topic's settings, the attempt number
 * and the current time in; a verdict out. The driver
 * (node/pubsub-service.ts) owns the calls and the timers.
 *
 *   the handler threw, or the error is not retryable   → failed
 *   partition policy 'drop'                             → dropped (nothing waits)
 *   'defer', within redelivery.retries and .timeoutMs   → redeliver after a backoff
 *   'defer', budget spent                               → failed ("gave up after n attempts")
 */

import { ERROR_CODES, GrainClusterError } from '../common/errors.js'
import { decideRetry, isGrainThrown } from '../common/retry-policy.js'
import type { TopicSettings } from './topic-registry.js'

export type DeliveryVerdict =
  | { readonly action: 'redeliver'; readonly delayMs: number }
  | { readonly action: 'dropped' | 'failed'; readonly error: GrainClusterError }

/** After attempt `attempt` (1-based) of a delivery failed with `err` at `nowMs`; `deadlineMs` ends the delivery's redelivery budget. */
export function judgeFailedAttempt(err: GrainClusterError, t: TopicSettings, attempt: number, nowMs: number, deadlineMs: number, random: () => number): DeliveryVerdict {
  if (isGrainThrown(err) || !ERROR_CODES[err.code].retryable) return { action: 'failed', error: err }
  if (t.partitionPolicy === 'drop') return { action: 'dropped', error: err }
  const d = decideRetry(err, attempt, { ...t.redelivery, factor: 2, jitter: true }, nowMs, deadlineMs, random)
  if (d.retry) return { action: 'redeliver', delayMs: d.delayMs }
  const spent = d.why === 'exhausted' ? 'redelivery.retries' : 'redelivery.timeoutMs'
  return { action: 'failed', error: new GrainClusterError(err.code, `gave up after ${attempt} attempt(s) (${spent} reached): ${err.reason}`, { ...err.details }) }
}
