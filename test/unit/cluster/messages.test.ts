import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { type ClusterMessage } from '../../../src/cluster/cluster-core.js'
import { parseClusterMessage } from '../../../src/cluster/messages.js'
import { catchErr } from '../../helpers/catch-error.js'

const valid: ClusterMessage[] = [
  { t: 'status', digest: 'abc', seen: null },
  { t: 'status', digest: 'abc', seen: ['a:1', 'b:1'] },
  { t: 'pull', vv: { 'a:1': 3 } },
  { t: 'delta', vv: { 'a:1': 3 }, changes: [{ kind: 'member', origin: 'a:1', seq: 3, member: { authority: 'b:1', nodeId: 'n', status: 'up', upNumber: 2 } }], back: {} },
  { t: 'welcome', vv: {}, changes: [{ kind: 'reach', origin: 'a:1', seq: 1, subject: 'b:1', subjectNodeId: 'n', reachable: false }] },
  { t: 'delta', vv: { 'a:1': 4 }, changes: [{ kind: 'data', origin: 'a:1', seq: 4, key: 'pubsub/t/orders', clock: 2, value: { delivery: 'at-least-once', tags: ['x', 1, true, null] } }] },
  { t: 'delta', vv: { 'a:1': 5 }, changes: [{ kind: 'data', origin: 'a:1', seq: 5, key: 'pubsub/t/orders', clock: 3, value: null }] },
  { t: 'join', nodeId: 'n' },
  { t: 'join-refused', code: 'ERR_AUTHORITY_MINORITY', reason: 'minority' },
  { t: 'hb', n: 1 },
  { t: 'hb-ack', n: 1 },
]

describe('parseClusterMessage', () => {
  it.each(valid.map((m) => [m.t, m] as const))('accepts a well-formed %s message unchanged', (_t, m) => {
    expect(parseClusterMessage(structuredClone(m))).toEqual(m)
  })

  it.each([
    ['not an object', 42],
    ['unknown type', { t: 'nuke' }],
    ['status without digest', { t: 'status', seen: null }],
    ['pull with a negative sequence', { t: 'pull', vv: { 'a:1': -1 } }],
    ['delta with a bogus status', { t: 'delta', vv: {}, changes: [{ kind: 'member', origin: 'a:1', seq: 1, member: { authority: 'b:1', nodeId: 'n', status: 'zombie', upNumber: 0 } }] }],
    ['delta with seq 0', { t: 'delta', vv: {}, changes: [{ kind: 'reach', origin: 'a:1', seq: 0, subject: 'b:1', subjectNodeId: 'n', reachable: true }] }],
    ['changes not an array', { t: 'welcome', vv: {}, changes: 'all of them' }],
    ['an empty authority', { t: 'join', nodeId: '' }],
    ['a fractional heartbeat', { t: 'hb', n: 1.5 }],
    ['a data entry without a value', { t: 'delta', vv: {}, changes: [{ kind: 'data', origin: 'a:1', seq: 1, key: 'k', clock: 1 }] }],
    ['a data entry with clock 0', { t: 'delta', vv: {}, changes: [{ kind: 'data', origin: 'a:1', seq: 1, key: 'k', clock: 0, value: 1 }] }],
    ['a data value that is not JSON', { t: 'delta', vv: {}, changes: [{ kind: 'data', origin: 'a:1', seq: 1, key: 'k', clock: 1, value: { at: new Date(0) } }] }],
    ['a data value with NaN', { t: 'delta', vv: {}, changes: [{ kind: 'data', origin: 'a:1', seq: 1, key: 'k', clock: 1, value: [Number.NaN] }] }],
    ['a data value nested too deep', { t: 'delta', vv: {}, changes: [{ kind: 'data', origin: 'a:1', seq: 1, key: 'k', clock: 1, value: [[[[[[[[[1]]]]]]]]] }] }],
  ])('refuses %s with ERR_FRAME_MALFORMED', (_name, input) => {
    const e = catchErr(() => parseClusterMessage(input))
    expect(GrainClusterError.is(e, 'ERR_FRAME_MALFORMED')).toBe(true)
    expect((e as GrainClusterError).reason).toMatch(/^malformed cluster message: /)
  })

  it('never throws anything but ERR_FRAME_MALFORMED, whatever arrives', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.record({ t: fc.constantFrom('status', 'pull', 'delta', 'welcome', 'join', 'hb'), vv: fc.anything(), changes: fc.anything(), digest: fc.anything(), seen: fc.anything() })), (u) => {
        const e = catchErr(() => parseClusterMessage(u))
        if (e !== undefined) expect(GrainClusterError.is(e, 'ERR_FRAME_MALFORMED')).toBe(true)
      }),
    )
  })
})
