import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { judgeFailedAttempt } from '../../../src/pubsub/partition-policy.js'
import { DEFAULT_TOPIC_SETTINGS, type TopicSettings } from '../../../src/pubsub/topic-registry.js'

const defer: TopicSettings = { ...DEFAULT_TOPIC_SETTINGS, redelivery: { timeoutMs: 10_000, retries: 3, minDelayMs: 100, maxDelayMs: 1_000 } }
const drop: TopicSettings = { ...defer, partitionPolicy: 'drop' }
const unreachable = new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', 'b:1 is not connected')
const thrown = new GrainClusterError('ERR_GRAIN_HANDLER_FAILED', 'boom', { origin: 'grain' })
const halfway = (): number => 0.5

describe('judgeFailedAttempt (what a failed at-least-once attempt leads to)', () => {
  it("redelivers a retryable failure under 'defer', after a jittered exponential backoff", () => {
    expect(judgeFailedAttempt(unreachable, defer, 1, 0, 10_000, halfway)).toEqual({ action: 'redeliver', delayMs: 50 })
    expect(judgeFailedAttempt(unreachable, defer, 3, 0, 10_000, halfway)).toEqual({ action: 'redeliver', delayMs: 200 })
  })

  it("drops a retryable failure under 'drop' at once", () => {
    expect(judgeFailedAttempt(unreachable, drop, 1, 0, 10_000, halfway)).toEqual({ action: 'dropped', error: unreachable })
  })

  it('fails what the handler threw, and what is not retryable, under either policy', () => {
    for (const t of [defer, drop]) {
      expect(judgeFailedAttempt(thrown, t, 1, 0, 10_000, halfway)).toEqual({ action: 'failed', error: thrown })
      const full = new GrainClusterError('ERR_GRAIN_QUEUE_FULL', 'queue full')
      expect(judgeFailedAttempt(full, t, 1, 0, 10_000, halfway)).toEqual({ action: 'failed', error: full })
    }
  })

  it('gives up once redelivery.retries or redelivery.timeoutMs is spent, naming which', () => {
    const spent = judgeFailedAttempt(unreachable, defer, 4, 0, 10_000, halfway)
    expect(spent.action).toBe('failed')
    expect(spent.action !== 'redeliver' && spent.error.code).toBe('ERR_AUTHORITY_UNREACHABLE')
    expect(spent.action !== 'redeliver' && spent.error.reason).toMatch(/^gave up after 4 attempt\(s\) \(redelivery.retries reached\)/)
    const late = judgeFailedAttempt(unreachable, defer, 1, 9_990, 10_000, halfway)
    expect(late.action !== 'redeliver' && late.error.reason).toMatch(/redelivery.timeoutMs reached/)
  })
})
