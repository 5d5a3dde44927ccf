import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { formatPid, parsePid, samePid } from '../../../src/common/pid.js'
import { catchErr } from '../../helpers/catch-error.js'

describe('PID format', () => {
  it('parses the canonical form', () => {
    expect(parsePid('grain://127.0.0.1:4050/counter/user%2F42#9f2c4a1b0d3e5f67')).toEqual({
      host: '127.0.0.1',
      port: 4050,
      authority: '127.0.0.1:4050',
      kind: 'counter',
      key: 'user/42',
      nodeId: '9f2c4a1b0d3e5f67',
    })
    expect(parsePid('grain://[::1]:4051/cart/k')).toMatchObject({ host: '::1', authority: '[::1]:4051', key: 'k' })
    expect(parsePid('grain://node-a.internal:9000/cart/k').nodeId).toBeUndefined()
  })

  it('formats and parses as exact inverses for any key', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 200, unit: 'grapheme' }),
        fc.constantFrom('127.0.0.1:4050', '[::1]:1', 'a.b-c:65535'),
        fc.option(fc.stringMatching(/^[0-9a-f]{1,32}$/), { nil: undefined }),
        (key, authority, nodeId) => {
          const text = formatPid({ authority, kind: 'k1', key, nodeId })
          const p = parsePid(text)
          expect(p.key).toBe(key)
          expect(p.authority).toBe(authority)
          expect(p.nodeId).toBe(nodeId)
          expect(formatPid(p)).toBe(text)
        },
      ),
    )
  })

  it.each([
    [42, 'a PID is a string'],
    ['', 'empty string'],
    ['http://127.0.0.1:4050/counter/k', 'scheme "http" is not grain'],
    ['127.0.0.1:4050/counter/k', 'missing the grain:// scheme'],
    ['grain://127.0.0.1/counter/k', 'has no port'],
    ['grain://127.0.0.1:0/counter/k', 'outside 1–65535'],
    ['grain://127.0.0.1:70000/counter/k', 'outside 1–65535'],
    ['grain://127.0.0.1:abc/counter/k', 'is not a number'],
    ['grain://:4050/counter/k', 'empty host'],
    ['grain://::1:4050/counter/k', 'must be in brackets'],
    ['grain://[::1/counter/k', 'closing "]"'],
    ['grain://bad_host!:4050/counter/k', 'not a valid host name'],
    ['grain://127.0.0.1:4050/counter', 'expected grain://host:port/kind/key'],
    ['grain://127.0.0.1:4050//k', 'empty grain kind'],
    ['grain://127.0.0.1:4050/9lives/k', 'grain kind "9lives"'],
    ['grain://127.0.0.1:4050/counter/', 'empty grain key'],
    ['grain://127.0.0.1:4050/counter/a/b', 'percent-encode "/"'],
    ['grain://127.0.0.1:4050/counter/%E0%A4%A', 'broken percent-encoding'],
    ['grain://127.0.0.1:4050/counter/a b', 'whitespace or control'],
    ['grain://127.0.0.1:4050/counter/%61', 'not in canonical percent-encoding'],
    ['grain://127.0.0.1:4050/counter/k#NOTHEX', 'lower-case hex'],
    ['grain://127.0.0.1:4050/counter/k?x=1', 'no query part'],
    [`grain://127.0.0.1:4050/counter/${'k'.repeat(1100)}`, 'longer than 1024'],
  ])('refuses %j with ERR_PID_INVALID and a reason', (text, reason) => {
    const e = catchErr(() => parsePid(text))
    expect(GrainClusterError.is(e, 'ERR_PID_INVALID')).toBe(true)
    const err = e as GrainClusterError
    expect(err.reason).toContain(reason)
    expect(err.details.reason).toBeTypeOf('string')
    expect(err.details.pid).toBeTypeOf('string')
  })

  it('never throws anything but ERR_PID_INVALID for arbitrary input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string().map((s) => `grain://${s}`), fc.anything()), (u) => {
        const e = catchErr(() => parsePid(u))
        if (e !== undefined) expect(GrainClusterError.is(e, 'ERR_PID_INVALID')).toBe(true)
      }),
    )
  })

  it('samePid ignores a missing nodeId but not a different one', () => {
    const a = parsePid('grain://h:1/k/x#ab')
    expect(samePid(a, parsePid('grain://h:1/k/x'))).toBe(true)
    expect(samePid(a, parsePid('grain://h:1/k/x#cd'))).toBe(false)
  })
})

describe('formatPid', () => {
  it('refuses parts that cannot form a PID, with ERR_PID_INVALID', () => {
    for (const bad of [
      { authority: 'h:1', kind: 'k', key: '\ud800' },
      { authority: 'nohost', kind: 'k', key: 'x' },
      { authority: 'h:1', kind: '1k', key: 'x' },
      { authority: 'h:1', kind: 'k', key: 'x', nodeId: 'XYZ' },
    ]) {
      expect(GrainClusterError.is(catchErr(() => formatPid(bad)), 'ERR_PID_INVALID')).toBe(true)
    }
  })
})
