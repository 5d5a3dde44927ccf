/**
 * PartitionHost's inbound request path finds activations through the
 * reader's key-cache slot before the activation Map. These tests drive a
 * host directly with encoded frames (no threads) and check that the shortcut
 * never delivers to the wrong or to a dropped activation: more keys than
 * cache slots (slots are reused by other keys), and keys passivated and
 * reactivated between messages.
 */
import { describe, expect, it } from 'vitest'
import { messageTypeId, partitionOf } from '../../../src/common/hash.js'
import { defineGrain, type GrainDefinition } from '../../../src/grains/define-grain.js'
import type { GrainContext } from '../../../src/grains/grain-context.js'
import { KindRegistry } from '../../../src/grains/kind-registry.js'
import type { PartitionHost } from '../../../src/runtime/worker/partition-host.js'
import { EnvelopeReader, EnvelopeWriter, type InternedString } from '../../../src/wire/envelope.js'
import { standalonePartitionHost } from '../../helpers/partition-host.js'

const PARTITIONS = 16

interface Seen {
  /** Activation serial that handled each message, per key, in order. */
  byKey: Map<string, number[]>
  /** Count each activation's state reached. */
  counts: Map<number, number>
  nextSerial: number
}

function setup(): { host: PartitionHost; send: (kind: InternedString, key: string, method: string) => void; seen: Seen; kinds: InternedString[] } {
  const seen: Seen = { byKey: new Map(), counts: new Map(), nextSerial: 1 }
  interface State {
    serial: number
    count: number
  }
  const handlers = {
    inc(ctx: GrainContext<State>) {
      ctx.state.count++
      seen.counts.set(ctx.state.serial, ctx.state.count)
      const list = seen.byKey.get(ctx.key) ?? []
      list.push(ctx.state.serial)
      seen.byKey.set(ctx.key, list)
    },
    stop(ctx: GrainContext<State>) {
      ctx.deactivate()
    },
  }
  const registry = new KindRegistry()
  // Two kinds: the same key of another kind is another activation.
  for (const kind of ['cache-a', 'cache-b']) registry.add(defineGrain<State, typeof handlers>({ kind, state: (): State => ({ serial: seen.nextSerial++, count: 0 }), handlers }) as unknown as GrainDefinition)
  const host = standalonePartitionHost(registry, PARTITIONS)
  const buf = new Uint8Array(new SharedArrayBuffer(1 << 12))
  const w = new EnvelopeWriter()
  let at = 0
  const send = (kind: InternedString, key: string, method: string): void => {
    w.reset()
    w.kind = kind
    w.key = key
    w.partition = partitionOf(key, PARTITIONS)
    w.messageType = messageTypeId(method)
    // The same ring-like buffer, written at moving offsets with stale bytes around each frame.
    if (at > buf.length - 256) at = 0
    const n = w.writeInto(buf, at, 256)
    host.onFrame(buf, at, n)
    at += (n + 7) & ~3
  }
  const kinds = [...registry.kinds.values()].map((e) => e.kindBytes)
  return { host, send, seen, kinds }
}

describe('PartitionHost key-slot shortcut', () => {
  it.each([1, 2])('delivers every message to the live activation of its own kind and key, with more keys than cache slots (%i kind(s))', (kindCount) => {
    const { host, send, seen, kinds: all } = setup()
    const kinds = all.slice(0, kindCount)
    const keys = Array.from({ length: new EnvelopeReader().keyCache.slots + 1_500 }, (_, i) => `k-${i}`)
    const rounds = 3
    for (let r = 0; r < rounds; r++) for (const k of keys) for (const kind of kinds) send(kind, k, 'inc')
    expect(host.activationCount).toBe(keys.length * kinds.length)
    // One activation per (kind, key), and each saw exactly its own messages.
    const serials = new Set<number>()
    for (const k of keys) {
      const list = seen.byKey.get(k)!
      expect(list).toHaveLength(rounds * kinds.length)
      const mine = new Set(list)
      expect(mine.size).toBe(kinds.length)
      for (const s of mine) {
        expect(serials.has(s)).toBe(false)
        serials.add(s)
        expect(seen.counts.get(s)).toBe(rounds)
      }
    }
  })

  it('never hands a message to a passivated activation: the next message starts a fresh one', () => {
    const { host, send, seen, kinds } = setup()
    const kind = kinds[0]!
    const keys = Array.from({ length: 64 }, (_, i) => `p-${i}`)
    for (const k of keys) send(kind, k, 'inc')
    for (let cycle = 0; cycle < 5; cycle++) {
      // Passivate every other key, then message all of them twice.
      for (let i = cycle & 1; i < keys.length; i += 2) send(kind, keys[i]!, 'stop')
      for (const k of keys) send(kind, k, 'inc')
      for (const k of keys) send(kind, k, 'inc')
    }
    expect(host.activationCount).toBe(keys.length)
    for (const k of keys) {
      const list = seen.byKey.get(k)!
      // Serials only ever move forward: once a serial is left behind it never handles a message again.
      const left = new Set<number>()
      for (let i = 1; i < list.length; i++) {
        if (list[i] !== list[i - 1]) left.add(list[i - 1]!)
        expect(left.has(list[i]!)).toBe(false)
      }
      // 1 + 5 cycles x 2 messages, over 1 + (passivations of this key) activations.
      expect(list).toHaveLength(11)
      const passivations = [0, 1, 2, 3, 4].filter((c) => (keys.indexOf(k) & 1) === (c & 1)).length
      expect(new Set(list).size).toBe(1 + passivations)
    }
  })
})
