import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { checkRpcSettings } from '../../../src/common/rpc-settings.js'
import { attemptBudgetMs, backoffDelayMs, decideRetry, defaultRpcSettings, isGrainThrown, mergeRpcSettings, type ResolvedRpcSettings } from '../../../src/common/retry-policy.js'
import { catchErr } from '../../helpers/catch-error.js'

const S: ResolvedRpcSettings = { timeoutMs: 1_000, retries: 3, minDelayMs: 10, maxDelayMs: 50, factor: 2, jitter: false }
const moved = new GrainClusterError('ERR_GRAIN_MOVED', 'moving', { kind: 'counter', key: 'k' })
const one = (): number => 0.999_999
const half = (): number => 0.5

describe('retry policy', () => {
  it('backs off exponentially up to maxDelayMs, with full jitter in [0, backoff)', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffDelayMs(n, S, half))).toEqual([10, 20, 40, 50, 50])
    const j = { ...S, jitter: true }
    expect([1, 2, 3, 4].map((n) => backoffDelayMs(n, j, half))).toEqual([5, 10, 20, 25])
    expect(backoffDelayMs(3, j, () => 0)).toBe(0)
    expect(backoffDelayMs(3, j, one)).toBe(39)
  })

  it('retries retryable errors until retries are used up', () => {
    expect(decideRetry(moved, 1, S, 0, 1_000, half)).toEqual({ retry: true, delayMs: 10 })
    expect(decideRetry(moved, 3, S, 0, 1_000, half)).toEqual({ retry: true, delayMs: 40 })
    expect(decideRetry(moved, 4, S, 0, 1_000, half)).toEqual({ retry: false, why: 'exhausted' })
    expect(decideRetry(moved, 1, { ...S, retries: 0 }, 0, 1_000, half)).toEqual({ retry: false, why: 'exhausted' })
  })

  it('never retries a non-retryable error', () => {
    const e = new GrainClusterError('ERR_GRAIN_HANDLER_FAILED', 'boom')
    expect(decideRetry(e, 1, S, 0, 1_000, half)).toEqual({ retry: false, why: 'not-retryable' })
  })

  it('never retries an error the grain threw, even with a retryable code', () => {
    const e = new GrainClusterError('ERR_GRAIN_MOVED', 'grain says moved', { origin: 'grain' })
    expect(e.retryable).toBe(true)
    expect(isGrainThrown(e)).toBe(true)
    expect(decideRetry(e, 1, S, 0, 1_000, half)).toEqual({ retry: false, why: 'grain-error' })
    expect(isGrainThrown(moved)).toBe(false)
  })

  it('does not start a retry whose backoff ends at or past the deadline', () => {
    // Retry 2 backs off 20 ms and its attempt needs 1 ms: 978 + 20 + 1 <= 1000, 980 + 20 + 1 > 1000.
    expect(decideRetry(moved, 2, S, 978, 1_000, half)).toEqual({ retry: true, delayMs: 20 })
    expect(decideRetry(moved, 2, S, 980, 1_000, half)).toEqual({ retry: false, why: 'deadline' })
    expect(decideRetry(moved, 1, S, 1_000, 1_000, half)).toEqual({ retry: false, why: 'deadline' })
  })

  it('gives each attempt the remaining deadline, capped by attemptTimeoutMs, at least 1 ms', () => {
    expect(attemptBudgetMs(S, 200, 1_000)).toBe(800)
    expect(attemptBudgetMs({ ...S, attemptTimeoutMs: 100 }, 200, 1_000)).toBe(100)
    expect(attemptBudgetMs({ ...S, attemptTimeoutMs: 100 }, 950.5, 1_000)).toBe(50)
    expect(attemptBudgetMs(S, 1_200, 1_000)).toBe(1)
  })

  it('layers settings node < kind < call and validates every layer', () => {
    const node = defaultRpcSettings(10_000)
    expect(node).toEqual({ timeoutMs: 10_000, retries: 0, minDelayMs: 10, maxDelayMs: 1_000, factor: 2, jitter: true })
    const kind = mergeRpcSettings(node, { retries: 2, minDelayMs: 5 }, 'counter.rpc')
    const call = mergeRpcSettings(kind, { timeoutMs: 500 }, 'call options')
    expect(call).toEqual({ timeoutMs: 500, retries: 2, minDelayMs: 5, maxDelayMs: 1_000, factor: 2, jitter: true })
    expect(mergeRpcSettings(node, { minDelayMs: 2_000 }, 'x').maxDelayMs).toBe(2_000)
    const e = catchErr(() => mergeRpcSettings(node, { retries: -1, factor: 0.5, jitter: 'yes' as unknown as boolean, bogus: 1 } as never, 'call options'))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).details.issues).toEqual([
      'call options.bogus is not a setting (known: timeoutMs, attemptTimeoutMs, retries, minDelayMs, maxDelayMs, factor, jitter)',
      'call options.retries must be an integer in [0, 100] (got -1)',
      'call options.factor must be a number in [1, 100] (got 0.5)',
      'call options.jitter must be true or false (got yes)',
    ])
    expect(checkRpcSettings({ timeoutMs: 0, minDelayMs: 20, maxDelayMs: 10 }, 'k.rpc')).toEqual([
      'k.rpc.timeoutMs must be an integer in [1, 86400000] (got 0)',
      'k.rpc.minDelayMs (20) must be <= maxDelayMs (10)',
    ])
    expect(checkRpcSettings(5, 'k.rpc')).toEqual(['k.rpc must be an object (got 5)'])
  })
})
