import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../../src/common/errors.js'
import {
  ASSOCIATION_DEFAULTS,
  DEFAULT_QUARANTINE_DEADLINE_MS,
  resolveAssociationConfig,
  validateAssociationConfig,
} from '../../../../src/remote/association/association-config.js'
import { catchErr } from '../../../helpers/catch-error.js'

describe('association config', () => {
  it('defaults: 10 000 messages, 64 MiB, 30 s quarantine (spec §3.13), 5 failures', () => {
    expect(ASSOCIATION_DEFAULTS).toEqual({ deferredQueueLimit: 10_000, deferredQueueBytes: 67_108_864, quarantineDeadlineMs: 30_000, maxConsecutiveFailures: 5, maxInboundPauseMs: 250, writableBufferedBytes: 4 * 1024 * 1024 })
    expect(DEFAULT_QUARANTINE_DEADLINE_MS).toBe(30_000)
    expect(resolveAssociationConfig()).toEqual(ASSOCIATION_DEFAULTS)
    expect(resolveAssociationConfig({})).toEqual(ASSOCIATION_DEFAULTS)
  })

  it('merges given values over the defaults and freezes the result', () => {
    const c = resolveAssociationConfig({ deferredQueueLimit: 5, quarantineDeadlineMs: 1_000 })
    expect(c).toEqual({ ...ASSOCIATION_DEFAULTS, deferredQueueLimit: 5, quarantineDeadlineMs: 1_000 })
    expect(Object.isFrozen(c)).toBe(true)
  })

  it('validate returns nothing for valid input', () => {
    expect(validateAssociationConfig(undefined)).toEqual([])
    expect(validateAssociationConfig({})).toEqual([])
    expect(validateAssociationConfig({ deferredQueueLimit: 1, deferredQueueBytes: 1, quarantineDeadlineMs: 1, maxConsecutiveFailures: 1 })).toEqual([])
  })

  it('lists every problem as `path.key must be … (got …)`', () => {
    expect(
      validateAssociationConfig({ deferredQueueLimit: 0, deferredQueueBytes: 1.5, quarantineDeadlineMs: '30s', maxConsecutiveFailures: Number.NaN, deferedQueueLimit: 3 }),
    ).toEqual([
      'association.deferedQueueLimit is not a known setting (known: deferredQueueLimit, deferredQueueBytes, quarantineDeadlineMs, maxConsecutiveFailures, maxInboundPauseMs, writableBufferedBytes)',
      'association.deferredQueueLimit must be an integer ≥ 1 (got 0)',
      'association.deferredQueueBytes must be an integer ≥ 1 (got 1.5)',
      'association.quarantineDeadlineMs must be an integer ≥ 1 (got "30s")',
      'association.maxConsecutiveFailures must be an integer ≥ 1 (got NaN)',
    ])
    expect(validateAssociationConfig(null, 'remote.association')).toEqual(['remote.association must be an object (got null)'])
    expect(validateAssociationConfig({ maxConsecutiveFailures: -1 }, 'remote.association')).toEqual([
      'remote.association.maxConsecutiveFailures must be an integer ≥ 1 (got -1)',
    ])
  })

  it('resolve throws one ERR_CONFIG_INVALID carrying the issues', () => {
    const e = catchErr(() => resolveAssociationConfig({ deferredQueueLimit: 0, maxConsecutiveFailures: 0 }))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).details).toEqual({
      issues: ['association.deferredQueueLimit must be an integer ≥ 1 (got 0)', 'association.maxConsecutiveFailures must be an integer ≥ 1 (got 0)'],
    })
    expect((e as GrainClusterError).reason).toBe(
      'invalid association settings: association.deferredQueueLimit must be an integer ≥ 1 (got 0); association.maxConsecutiveFailures must be an integer ≥ 1 (got 0)',
    )
  })
})
