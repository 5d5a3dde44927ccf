import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { resolveNodeOptions } from '../../../src/node/grain-node.js'
import { catchErr } from '../../helpers/catch-error.js'

const grains = [new URL('../../fixtures/grains/test-grains.ts', import.meta.url)]

describe('resolveNodeOptions: memoryReducer', () => {
  it('is off unless asked for (the node turns V8’s memory reducer off for its workers)', () => {
    expect(resolveNodeOptions({ grains }).memoryReducer).toBe(false)
    expect(resolveNodeOptions({ grains, memoryReducer: true }).memoryReducer).toBe(true)
  })

  it('refuses a value that is not a boolean, naming it', () => {
    const e = catchErr(() => resolveNodeOptions({ grains, memoryReducer: 'yes' as unknown as boolean }))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).details.issues).toEqual(['memoryReducer must be a boolean (got "yes")'])
  })
})

describe('resolveNodeOptions: spinMaxMicros', () => {
  it('defaults to max(500, spinMicros), and takes any value >= spinMicros', () => {
    expect(resolveNodeOptions({ grains }).spinMaxMicros).toBe(500)
    expect(resolveNodeOptions({ grains, spinMicros: 800 }).spinMaxMicros).toBe(800)
    expect(resolveNodeOptions({ grains, spinMicros: 25, spinMaxMicros: 25 }).spinMaxMicros).toBe(25)
  })

  it('refuses a ceiling below spinMicros, naming both', () => {
    const e = catchErr(() => resolveNodeOptions({ grains, spinMicros: 100, spinMaxMicros: 50 }))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    expect((e as GrainClusterError).details.issues).toEqual(['spinMaxMicros (50) must be >= spinMicros (100)'])
  })
})
