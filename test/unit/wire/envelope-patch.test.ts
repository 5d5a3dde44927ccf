import { describe, expect, it } from 'vitest'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString } from '../../../src/wire/envelope.js'

describe('EnvelopeReader.patchRouting', () => {
  it('rewrites correlation id and reply-to in place and leaves every other byte alone', () => {
    const w = new EnvelopeWriter()
    w.kind = new InternedString('counter')
    w.key = 'k-1'
    w.partition = 7
    w.messageType = 0xdeadbeef
    w.flags = FLAGS.ASK
    w.correlationId = 41
    w.replyTo = 3
    w.payloadBytes = new Uint8Array([4, 9])
    const bytes = w.toBytes()
    const before = bytes.slice()
    const r = new EnvelopeReader().reset(bytes, 0, bytes.length)
    expect(r.patchRouting(0xfffffff0, 0)).toBe(true)
    const again = new EnvelopeReader().reset(bytes, 0, bytes.length)
    expect(again.correlationId).toBe(0xfffffff0)
    expect(again.replyTo).toBe(0)
    expect([again.kind(), again.key(), again.partition, again.messageType, again.flags, [...again.payload()]]).toEqual(['counter', 'k-1', 7, 0xdeadbeef, FLAGS.ASK, [4, 9]])
    const changed = [...bytes].map((b, i) => (b === before[i] ? -1 : i)).filter((i) => i >= 0)
    // Only bytes of the two u32 slots moved.
    expect(changed.length).toBeGreaterThan(0)
    expect(changed.length).toBeLessThanOrEqual(8)
  })
})
