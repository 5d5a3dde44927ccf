/**
 * PartitionHost driven directly with frames and deliver() calls (no
 * threads), for two orderings that real clusters only hit by timing:
 * - interleave calls that arrive while the activation starts run as soon as
 *   it has started, not behind the exclusive calls queued with them;
 * - a key released to a new owner is tombstoned while its in-flight call
 *   finishes; a request of the call chain that holds the released activation
 *   runs inside it (bounced, it would wait at the new owner for the hand-off
 *   that waits for this very call), any other is bounced.
 */
import { describe, expect, it } from 'vitest'
import { defineGrain, type GrainDefinition } from '../../../src/grains/define-grain.js'
import type { GrainContext } from '../../../src/grains/grain-context.js'
import { KindRegistry } from '../../../src/grains/kind-registry.js'
import type { PartitionHost } from '../../../src/runtime/worker/partition-host.js'
import { CONTROL_TYPES } from '../../../src/wire/control.js'
import { EnvelopeWriter, FLAGS } from '../../../src/wire/envelope.js'
import { binaryCodec, encodeToBytes } from '../../../src/wire/payload-codec.js'
import { standalonePartitionHost } from '../../helpers/partition-host.js'

function hostFor(def: GrainDefinition): { host: PartitionHost; entry: ReturnType<KindRegistry['add']> } {
  const registry = new KindRegistry()
  const entry = registry.add(def)
  const host = standalonePartitionHost(registry, 4)
  return { host, entry }
}

describe('interleave calls that arrive while the activation starts', () => {
  it('run as soon as it has started, not behind the exclusive calls queued with them', async () => {
    const log: string[] = []
    let started!: () => void
    const starting = new Promise<void>((r) => (started = r))
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    const { host, entry } = hostFor(
      defineGrain({
        kind: 'slow-start',
        state: () => null,
        interleave: ['status'],
        onActivate: () => starting,
        handlers: {
          async write(_ctx: GrainContext<null>) {
            log.push('write')
            await held
            log.push('write done')
          },
          status(_ctx: GrainContext<null>) {
            log.push('status')
          },
        },
      }) as unknown as GrainDefinition,
    )
    const method = (name: string) => entry.methodsByName.get(name)!
    host.deliver(entry, 'k', method('write'), undefined, -1, 0)
    host.deliver(entry, 'k', method('status'), undefined, -1, 0)
    expect(log).toEqual([])
    expect(entry.load.queued).toBe(2)
    started()
    await starting
    await Promise.resolve()
    // write holds the key; status did not wait for it.
    expect(log).toEqual(['status', 'write'])
    expect(entry.load.queued).toBe(0)
    release()
    await held
    await Promise.resolve()
    expect(log).toEqual(['status', 'write', 'write done'])
  })
})

describe('call-chain reentrancy on a released key', () => {
  it('runs a call of the holding chain inside the released activation, and bounces any other', async () => {
    const log: string[] = []
    let open!: () => void
    const gate = new Promise<void>((r) => (open = r))
    const handlers = {
      async outer(_ctx: GrainContext<null>) {
        log.push('outer')
        await gate
        log.push('outer done')
      },
      inner(_ctx: GrainContext<null>, tag: string) {
        log.push(`inner ${tag}`)
      },
    }
    const { host, entry } = hostFor(defineGrain({ kind: 'released', state: () => null, handlers }) as unknown as GrainDefinition)
    const method = (name: string) => entry.methodsByName.get(name)!
    host.deliver(entry, 'k', method('outer'), undefined, -1, 0, undefined, -1, 'chain-1')
    // The main thread releases the key: tombstoned now, deactivated once outer ends.
    const w = new EnvelopeWriter()
    w.flags = FLAGS.CONTROL
    w.messageType = CONTROL_TYPES.RELEASE_REQUEST
    w.payloadBytes = encodeToBytes(binaryCodec, { id: 1, kind: 'released', key: 'k' })
    const frame = w.toBytes()
    host.onFrame(frame, 0, frame.length)
    host.deliver(entry, 'k', method('inner'), 'same chain', -1, 0, undefined, -1, 'chain-1')
    host.deliver(entry, 'k', method('inner'), 'other chain', -1, 0, undefined, -1, 'chain-2')
    host.deliver(entry, 'k', method('inner'), 'no chain', -1, 0)
    expect(log).toEqual(['outer', 'inner same chain'])
    open()
    await gate
    await Promise.resolve()
    expect(log).toEqual(['outer', 'inner same chain', 'outer done'])
  })
})
