import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ERROR_CODES,
  type ErrorCode,
  type ErrorDetails,
  GrainClusterError,
  fromWire,
  isErrorCode,
  toGrainClusterError,
  toWire,
} from '../../../src/common/errors.js'

const CODES = Object.keys(ERROR_CODES) as ErrorCode[]
const codeArb = fc.constantFrom(...CODES)
const detailsArb: fc.Arbitrary<ErrorDetails> = fc.record(
  {
    kind: fc.string(),
    key: fc.string({ unit: 'binary' }),
    worker: fc.nat(64),
    limit: fc.nat(),
    issues: fc.array(fc.string(), { maxLength: 3 }),
    extra: fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: [] },
)

describe('ERROR_CODES', () => {
  it('pins the number of codes (codes are public API: add or remove deliberately)', () => {
    expect(CODES).toHaveLength(46)
  })

  it.each(CODES)('%s is well named and has an http status, a retryable flag and a summary', (code) => {
    expect(code).toMatch(/^ERR_[A-Z]+_[A-Z_]+$/)
    const c = ERROR_CODES[code]
    expect(Number.isInteger(c.http)).toBe(true)
    expect(c.http).toBeGreaterThanOrEqual(400)
    expect(c.http).toBeLessThanOrEqual(599)
    expect(typeof c.retryable).toBe('boolean')
    expect(c.summary.length).toBeGreaterThan(10)
    expect(c.summary).toMatch(/\.$/)
  })

  it('maps the codes the front and the ring depend on to the expected status and retryability', () => {
    expect(ERROR_CODES.ERR_GRAIN_TIMEOUT).toMatchObject({ http: 504, retryable: true })
    expect(ERROR_CODES.ERR_FRAME_MALFORMED).toMatchObject({ http: 400, retryable: false })
    expect(ERROR_CODES.ERR_RING_FULL).toMatchObject({ http: 503, retryable: true })
    expect(ERROR_CODES.ERR_RING_FRAME_TOO_LARGE).toMatchObject({ http: 413, retryable: false })
    expect(ERROR_CODES.ERR_WORKER_CRASHED).toMatchObject({ http: 503, retryable: true })
    expect(ERROR_CODES.ERR_CONFIG_INVALID).toMatchObject({ http: 500, retryable: false })
  })
})

describe('isErrorCode', () => {
  it('accepts every code', () => {
    for (const c of CODES) expect(isErrorCode(c)).toBe(true)
  })

  it.each([['toString'], ['__proto__'], ['constructor'], ['hasOwnProperty'], [''], ['err_grain_timeout'], ['ERR_NOPE'], [undefined], [null], [504], [{}]])(
    'rejects %j (including Object.prototype names)',
    (v) => {
      expect(isErrorCode(v)).toBe(false)
    },
  )
})

describe('GrainClusterError', () => {
  it('carries code, reason (as message), details, retryable and http status', () => {
    const cause = new Error('root')
    const e = new GrainClusterError('ERR_GRAIN_TIMEOUT', 'no answer in 5000 ms', { kind: 'Counter', key: 'a', limit: 5000 }, { cause })
    expect(e).toBeInstanceOf(Error)
    expect(e.name).toBe('GrainClusterError')
    expect(e.code).toBe('ERR_GRAIN_TIMEOUT')
    expect(e.reason).toBe('no answer in 5000 ms')
    expect(e.message).toBe('no answer in 5000 ms')
    expect(e.details).toEqual({ kind: 'Counter', key: 'a', limit: 5000 })
    expect(e.retryable).toBe(true)
    expect(e.httpStatus).toBe(504)
    expect(e.cause).toBe(cause)
    expect(String(e)).toBe('GrainClusterError [ERR_GRAIN_TIMEOUT]: no answer in 5000 ms')
  })

  it('defaults details to an empty object', () => {
    expect(new GrainClusterError('ERR_NODE_CLOSED', 'closed').details).toEqual({})
  })

  it.each(CODES)('takes retryable and httpStatus of %s from ERROR_CODES', (code) => {
    const e = new GrainClusterError(code, 'x')
    expect(e.retryable).toBe(ERROR_CODES[code].retryable)
    expect(e.httpStatus).toBe(ERROR_CODES[code].http)
  })

  describe('is()', () => {
    const e = new GrainClusterError('ERR_RING_FULL', 'full')

    it('recognises instances, optionally of one code', () => {
      expect(GrainClusterError.is(e)).toBe(true)
      expect(GrainClusterError.is(e, 'ERR_RING_FULL')).toBe(true)
      expect(GrainClusterError.is(e, 'ERR_GRAIN_TIMEOUT')).toBe(false)
    })

    it('recognises the brand of another module copy or realm (no instanceof)', () => {
      const foreign = { [Symbol.for('graincluster.error')]: true, code: 'ERR_GRAIN_TIMEOUT', reason: 'x' }
      expect(GrainClusterError.is(foreign)).toBe(true)
      expect(GrainClusterError.is(foreign, 'ERR_GRAIN_TIMEOUT')).toBe(true)
      expect(GrainClusterError.is(foreign, 'ERR_RING_FULL')).toBe(false)
    })

    it.each([
      ['a plain Error', new Error('x')],
      ['an object with a code but no brand', { code: 'ERR_RING_FULL', reason: 'full' }],
      ['a brand that is not exactly true', { [Symbol.for('graincluster.error')]: 'true', code: 'ERR_RING_FULL' }],
      ['a local (non-registry) symbol brand', { [Symbol('graincluster.error')]: true, code: 'ERR_RING_FULL' }],
      ['null', null],
      ['undefined', undefined],
      ['a string', 'ERR_RING_FULL'],
      ['a number', 503],
    ])('rejects %s', (_name, v) => {
      expect(GrainClusterError.is(v)).toBe(false)
    })

    it('loses the brand through structuredClone (which is why errors travel as toWire data)', () => {
      expect(GrainClusterError.is(structuredClone(e))).toBe(false)
      const back = fromWire(structuredClone(toWire(e)))
      expect(GrainClusterError.is(back, 'ERR_RING_FULL')).toBe(true)
    })
  })
})

describe('toWire / fromWire', () => {
  it('round-trips code, reason and details through JSON and structuredClone', () => {
    fc.assert(
      fc.property(codeArb, fc.string({ unit: 'binary' }), detailsArb, (code, reason, details) => {
        const e = new GrainClusterError(code, reason, details)
        const wire = toWire(e)
        expect(wire).toEqual({ code, reason, details })
        // structuredClone keeps what JSON normalises (e.g. -0), so each copy
        // is compared with what its own transport preserves.
        const copies: [unknown, unknown][] = [
          [structuredClone(wire), structuredClone(details)],
          [JSON.parse(JSON.stringify(wire)) as unknown, JSON.parse(JSON.stringify(details)) as unknown],
        ]
        for (const [copy, expectedDetails] of copies) {
          const back = fromWire(copy)
          expect(back).toBeInstanceOf(GrainClusterError)
          expect(back.code).toBe(code)
          expect(back.reason).toBe(reason)
          expect(back.message).toBe(reason)
          expect(back.details).toEqual(expectedDetails)
          expect(back.retryable).toBe(ERROR_CODES[code].retryable)
          expect(back.httpStatus).toBe(ERROR_CODES[code].http)
        }
      }),
    )
  })

  it('turns an unknown code into ERR_FRAME_MALFORMED, keeping the reason and details', () => {
    const e = fromWire({ code: 'ERR_FROM_THE_FUTURE', reason: 'new thing', details: { key: 'k' } })
    expect(e.code).toBe('ERR_FRAME_MALFORMED')
    expect(e.reason).toContain('ERR_FROM_THE_FUTURE')
    expect(e.reason).toContain('new thing')
    expect(e.details).toEqual({ key: 'k' })
  })

  it.each([['toString'], ['__proto__'], ['constructor']])('does not accept the inherited name %s as a code', (code) => {
    const e = fromWire({ code, reason: 'r' })
    expect(e.code).toBe('ERR_FRAME_MALFORMED')
    expect(e.reason).toContain(code)
  })

  it('fills in a missing or non-string reason and non-object details', () => {
    const e = fromWire({ code: 'ERR_GRAIN_TIMEOUT', reason: 42, details: 'nope' })
    expect(e.code).toBe('ERR_GRAIN_TIMEOUT')
    expect(e.reason).toBe('no reason given')
    expect(e.details).toEqual({})
    expect(fromWire({ code: 'ERR_GRAIN_TIMEOUT', details: null }).details).toEqual({})
  })

  it.each([[null], [undefined], [42], ['ERR_GRAIN_TIMEOUT'], [true], [Symbol('x')]])('rejects the non-object %s with ERR_FRAME_MALFORMED', (w) => {
    const e = fromWire(w)
    expect(e).toBeInstanceOf(GrainClusterError)
    expect(e.code).toBe('ERR_FRAME_MALFORMED')
    expect(e.reason).toBe('error frame is not an object')
    expect(e.details).toEqual({})
  })

  it('always yields a typed error for arbitrary garbage, never throws', () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withMap: true, withSet: true, withBoxedValues: true }), (w) => {
        const e = fromWire(w)
        expect(GrainClusterError.is(e)).toBe(true)
        expect(isErrorCode(e.code)).toBe(true)
        expect(typeof e.reason).toBe('string')
        expect(typeof e.details).toBe('object')
        const valid = typeof w === 'object' && w !== null && isErrorCode((w as { code?: unknown }).code)
        if (!valid) expect(e.code).toBe('ERR_FRAME_MALFORMED')
      }),
    )
  })
})

describe('toGrainClusterError', () => {
  it('returns a GrainClusterError unchanged (same identity)', () => {
    const e = new GrainClusterError('ERR_WORKER_CRASHED', 'gone', { worker: 2 })
    expect(toGrainClusterError(e, 'ERR_GRAIN_TIMEOUT', { key: 'x' })).toBe(e)
  })

  it('wraps a foreign Error as the fallback code with the message and the original as cause', () => {
    const orig = new RangeError('bad index')
    const e = toGrainClusterError(orig)
    expect(e.code).toBe('ERR_GRAIN_HANDLER_FAILED')
    expect(e.reason).toBe('bad index')
    expect(e.cause).toBe(orig)
    expect(e.details).toEqual({})
  })

  it('uses the given fallback code and details and stringifies non-errors', () => {
    const e = toGrainClusterError('boom', 'ERR_WORKER_CRASHED', { worker: 3 })
    expect(e.code).toBe('ERR_WORKER_CRASHED')
    expect(e.reason).toBe('boom')
    expect(e.details).toEqual({ worker: 3 })
    expect(e.cause).toBe('boom')
    expect(toGrainClusterError(undefined).reason).toBe('undefined')
    expect(toGrainClusterError({ a: 1 }).reason).toBe('[object Object]')
  })
})
