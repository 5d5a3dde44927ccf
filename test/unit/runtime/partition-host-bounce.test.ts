/**
 * A request for a key this worker released to another owner goes back to
 * the main thread as the same request (#bounce), which routes it to the new
 * owner. An ask keeps its reply route and carries what is left of its
 * caller's timeout, so the relay to the new owner waits that long and no
 * longer; a tell or an ask without a timeout carries none.
 */
import { describe, expect, it } from 'vitest'
import { messageTypeId, partitionOf } from '../../../src/common/hash.js'
import { defineGrain } from '../../../src/grains/define-grain.js'
import { KindRegistry } from '../../../src/grains/kind-registry.js'
import { createRingBuffer, RingConsumer } from '../../../src/runtime/ring/spsc-ring.js'
import { CONTROL_TYPES } from '../../../src/wire/control.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS } from '../../../src/wire/envelope.js'
import { binaryCodec, encodeToBytes } from '../../../src/wire/payload-codec.js'
import { standalonePartitionHost } from '../../helpers/partition-host.js'

const PARTITIONS = 8

interface Bounced {
  flags: number
  key: string
  messageType: number
  replyTo: number
  correlationId: number
  timeoutMs: number
  payload: unknown
}

function setup() {
  const registry = new KindRegistry()
  const ran: string[] = []
  registry.add(defineGrain({ kind: 'movable', handlers: { put: (_ctx, v: string) => void ran.push(v) } }))
  const entry = registry.kinds.get('movable')!
  const toMain = createRingBuffer(1 << 16)
  const host = standalonePartitionHost(registry, PARTITIONS, { toMain, routeViaMain: true })
  const consumer = new RingConsumer(toMain)
  const w = new EnvelopeWriter()
  const buf = new Uint8Array(1 << 12)
  const frame = (fill: (w: EnvelopeWriter) => void): void => {
    w.reset()
    fill(w)
    const n = w.writeInto(buf, 0, buf.length)
    host.onFrame(buf, 0, n)
  }
  const call = (key: string, v: string, ask: { corr: number; timeoutMs: number } | undefined): void =>
    frame((w) => {
      w.kind = entry.kindBytes
      w.key = key
      w.partition = partitionOf(key, PARTITIONS)
      w.messageType = messageTypeId('put')
      w.payloadBytes = encodeToBytes(binaryCodec, v)
      if (ask !== undefined) {
        w.flags = FLAGS.ASK
        w.replyTo = 0 // the main thread
        w.correlationId = ask.corr
        w.timeoutMs = ask.timeoutMs
      }
    })
  const release = (key: string): void =>
    frame((w) => {
      w.flags = FLAGS.CONTROL
      w.messageType = CONTROL_TYPES.RELEASE_REQUEST
      w.payloadBytes = encodeToBytes(binaryCodec, { id: 1, kind: 'movable', key })
    })
  /** Every request frame the host wrote to the main thread (control frames left out). */
  const bounced = (): Bounced[] => {
    host.sender.flush()
    const out: Bounced[] = []
    const r = new EnvelopeReader()
    consumer.drain((data, off, len) => {
      r.reset(data, off, len)
      if ((r.flags & FLAGS.CONTROL) !== 0) return
      out.push({ flags: r.flags, key: r.key(), messageType: r.messageType, replyTo: r.replyTo, correlationId: r.correlationId, timeoutMs: r.timeoutMs, payload: binaryCodec.decode(r.buf, r.payloadOff, r.payloadLen) })
    })
    return out
  }
  return { call, release, bounced, ran }
}

describe('PartitionHost bounce of a released key', () => {
  it('sends asks back with their reply route and what is left of their timeout; tells and asks without one carry none', () => {
    const { call, release, bounced, ran } = setup()
    call('k1', 'before', undefined)
    expect(ran).toEqual(['before'])
    release('k1')
    bounced() // the release reply
    const t0 = performance.now()
    call('k1', 'ask', { corr: 7, timeoutMs: 5_000 })
    call('k1', 'no-timeout', { corr: 8, timeoutMs: 0 })
    call('k1', 'tell', undefined)
    const elapsed = performance.now() - t0
    const out = bounced()
    // None ran here: all three went back, in order, as the same requests.
    expect(ran).toEqual(['before'])
    expect(out.map((b) => b.payload)).toEqual(['ask', 'no-timeout', 'tell'])
    expect(out.every((b) => b.key === 'k1' && b.messageType === messageTypeId('put'))).toBe(true)
    const [ask, noTimeout, tell] = out as [Bounced, Bounced, Bounced]
    expect(ask).toMatchObject({ flags: FLAGS.ASK, replyTo: 0, correlationId: 7 })
    expect(ask.timeoutMs).toBeLessThanOrEqual(5_000)
    expect(ask.timeoutMs).toBeGreaterThanOrEqual(5_000 - Math.ceil(elapsed) - 1)
    expect(noTimeout).toMatchObject({ flags: FLAGS.ASK, correlationId: 8, timeoutMs: 0 })
    expect(tell).toMatchObject({ flags: 0, correlationId: 0, timeoutMs: 0 })
  })

  it('does not bounce keys it did not release', () => {
    const { call, release, bounced, ran } = setup()
    release('k1')
    bounced()
    call('k2', 'here', { corr: 1, timeoutMs: 1_000 })
    expect(ran).toEqual(['here'])
    expect(bounced().filter((b) => b.flags !== FLAGS.REPLY)).toEqual([])
  })
})
