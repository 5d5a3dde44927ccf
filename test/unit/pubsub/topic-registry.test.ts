import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { MemberTable } from '../../../src/cluster/membership/member-table.js'
import { DEFAULT_TOPIC_SETTINGS, MAX_REGISTRY_BYTES, resolveTopicSettings, subscriptionKey, TopicRegistry, topicKey, type DataMap } from '../../../src/pubsub/topic-registry.js'
import { catchErr } from '../../helpers/catch-error.js'
import { binaryCodec, encodeToBytes } from '../../../src/wire/payload-codec.js'
import { DEFAULT_MAX_FRAME_BYTES } from '../../../src/remote/transport/frame-codec.js'

/** A member table and the registry's data map over it, as a node's ClusterNode offers it. */
function tableMap(self: string): { t: MemberTable; map: DataMap } {
  const t = new MemberTable(self)
  return {
    t,
    map: {
      get dataBytes() {
        return t.dataBytes
      },
      dataBytesWith: (k, v) => t.dataBytesWith(k, v),
      writeData: (k, v) => t.writeData(k, v) !== undefined,
      readData: (k) => t.data(k),
      dataEntries: (p) => t.dataEntries(p),
    },
  }
}
const sync = (to: MemberTable, from: MemberTable): string[] => [...to.apply(from.deltaFor(to.vv()), from.vv()).dataTouched]
const sub = { kind: 'inbox', key: 'k1', method: 'receive' }

describe('topic settings', () => {
  it('fills defaults and lists every problem in one ERR_PUBSUB_INVALID', () => {
    expect(resolveTopicSettings('t', undefined)).toEqual(DEFAULT_TOPIC_SETTINGS)
    expect(resolveTopicSettings('t', { delivery: 'at-most-once', redelivery: { retries: 2 } })).toEqual({ ...DEFAULT_TOPIC_SETTINGS, delivery: 'at-most-once', redelivery: { ...DEFAULT_TOPIC_SETTINGS.redelivery, retries: 2 } })
    const e = catchErr(() => resolveTopicSettings('t', { delivery: 'often', partitionPolicy: 'hope', deferLimit: 0, redelivery: { retries: -1, bogus: 1 }, colour: 'red' } as never))
    expect(GrainClusterError.is(e, 'ERR_PUBSUB_INVALID')).toBe(true)
    expect((e as GrainClusterError).details.issues).toHaveLength(6)
  })
})

describe('TopicRegistry over replicated data', () => {
  it('reports each change once on the node that wrote it and on a node that merged it', () => {
    const { t: a, map: ma } = tableMap('a:1')
    const { t: b, map: mb } = tableMap('b:1')
    const ra = new TopicRegistry(ma)
    const rb = new TopicRegistry(mb)
    expect(ra.create('orders', DEFAULT_TOPIC_SETTINGS)).toEqual([{ type: 'topic-created', topic: 'orders', settings: DEFAULT_TOPIC_SETTINGS }])
    expect(ra.create('orders', DEFAULT_TOPIC_SETTINGS), 'idempotent').toEqual([])
    expect(GrainClusterError.is(catchErr(() => ra.create('orders', { ...DEFAULT_TOPIC_SETTINGS, delivery: 'at-most-once' })), 'ERR_PUBSUB_TOPIC_CONFLICT')).toBe(true)
    expect(ra.subscribe('orders', sub)).toEqual([{ type: 'subscribed', topic: 'orders', subscriber: sub }])
    expect(rb.changed(sync(b, a)).map((c) => c.type).sort()).toEqual(['subscribed', 'topic-created'])
    expect(rb.subscribers('orders')).toEqual([sub])
    expect(rb.delete('orders').map((c) => c.type).sort()).toEqual(['topic-deleted', 'unsubscribed'])
    expect(ra.changed(sync(a, b)).map((c) => c.type).sort()).toEqual(['topic-deleted', 'unsubscribed'])
    expect(ra.topics()).toEqual([])
  })

  it('reports a topic whose settings another write replaced (two members created it at once)', () => {
    const { t: a, map: ma } = tableMap('a:1')
    const { t: b, map: mb } = tableMap('b:1')
    const ra = new TopicRegistry(ma)
    const rb = new TopicRegistry(mb)
    ra.create('race', DEFAULT_TOPIC_SETTINGS)
    const other = { ...DEFAULT_TOPIC_SETTINGS, delivery: 'at-most-once' as const }
    rb.create('race', other)
    // Same clock; origin 'b:1' > 'a:1' wins: a switches and says so, b keeps its own.
    expect(ra.changed(sync(a, b))).toEqual([{ type: 'topic-changed', topic: 'race', settings: other }])
    expect(rb.changed(sync(b, a))).toEqual([])
    expect(ra.topic('race')).toEqual(other)
  })

  it('keeps a subscription that arrives before its topic, and ignores entries of a shape it does not know', () => {
    const { t: a, map } = tableMap('a:1')
    const r = new TopicRegistry(map)
    a.writeData(subscriptionKey('later', sub), sub)
    expect(r.changed([subscriptionKey('later', sub)])).toEqual([{ type: 'subscribed', topic: 'later', subscriber: sub }])
    expect(r.topic('later')).toBeUndefined()
    expect(r.subscriptionCount(), 'not counted until the topic exists').toBe(0)
    a.writeData(topicKey('later'), { delivery: 'exactly-once' })
    expect(r.changed([topicKey('later')]), 'a malformed topic entry is not a topic').toEqual([])
    a.writeData(topicKey('later'), DEFAULT_TOPIC_SETTINGS)
    expect(r.changed([topicKey('later')]).map((c) => c.type)).toEqual(['topic-created'])
    expect(r.subscribers('later')).toEqual([sub])
    // A registry built over a map that already holds entries starts with them.
    expect(new TopicRegistry(map).subscribers('later')).toEqual([sub])
  })
})

describe('registry size', () => {
  it('refuses new entries before a newcomer’s welcome, tombstones included, could outgrow a transport frame', () => {
    const { t, map } = tableMap('127.0.0.1:40001')
    const r = new TopicRegistry(map)
    r.create('big', DEFAULT_TOPIC_SETTINGS)
    let refused: unknown
    let n = 0
    for (; n < 100_000 && refused === undefined; n++) {
      // Long keys, and every other subscription deleted again: tombstones count too.
      const s = { kind: 'some-subscriber-kind', key: `user-${n}-${'k'.repeat(150)}`, method: 'onMessage' }
      refused = catchErr(() => r.subscribe('big', s))
      if (refused === undefined && n % 2 === 1) r.unsubscribe('big', s)
    }
    expect(GrainClusterError.is(refused, 'ERR_PUBSUB_REGISTRY_FULL')).toBe(true)
    expect(n).toBeGreaterThan(1_000)
    expect(t.dataBytes).toBeLessThanOrEqual(MAX_REGISTRY_BYTES)
    // What a newcomer would receive fits in one frame with room for the member table.
    const snap = t.snapshot()
    const welcome = encodeToBytes(binaryCodec, { t: 'welcome', vv: snap.vv, changes: snap.changes })
    expect(welcome.length).toBeLessThan(DEFAULT_MAX_FRAME_BYTES * 0.75)
    // Existing entries can still be rewritten and deleted.
    expect(() => r.unsubscribe('big', { kind: 'some-subscriber-kind', key: `user-0-${'k'.repeat(150)}`, method: 'onMessage' })).not.toThrow()
  })
})
