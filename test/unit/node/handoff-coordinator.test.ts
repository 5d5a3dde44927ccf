/**
 * HandoffCoordinator when the connection between the new owner (A, which
 * asks) and the previous owner (B, which releases) fails at the worst
 * moments. The transport is a fake link whose deliveries, cuts and
 * reconnects the test drives, so each interleaving is exact; the
 * coordinators, the codec and the event stream are the real ones.
 */
import { describe, expect, it } from 'vitest'
import { HandoffCoordinator } from '../../../src/node/handoff-coordinator.js'
import type { PlacementRouter } from '../../../src/node/placement-router.js'
import { EventStream } from '../../../src/observability/event-stream.js'
import type { RuntimeEvent } from '../../../src/observability/events.js'
import type { TcpTransport } from '../../../src/remote/transport/tcp-transport.js'
import type { HandoffAnswer, WorkerHost } from '../../../src/runtime/host/worker-host.js'
import type { ReleasedRecord } from '../../../src/runtime/worker/activation.js'
import { binaryCodec } from '../../../src/wire/payload-codec.js'
import { waitUntil } from '../../helpers/wait-until.js'

type Listener = (...args: never[]) => void

/** One side of the link: the part of TcpTransport the coordinator uses. */
class FakeTransport {
  readonly listeners: Record<string, Listener[]> = { frame: [], 'peer-up': [], 'peer-down': [], unsent: [] }
  /** Frames sent and not yet delivered (the outbound queue before its flush). */
  queued: Uint8Array[] = []
  peer!: FakeTransport
  up = true
  constructor(readonly authority: string) {}
  acceptFrameType(): void {}
  on(event: string, fn: Listener): () => void {
    this.listeners[event]!.push(fn)
    return () => {
      this.listeners[event] = this.listeners[event]!.filter((f) => f !== fn)
    }
  }
  /** The outbound buffer is over its limit (a flood of tells): only frames sent past the limit go. */
  full = false
  send(authority: string, frame: Uint8Array, pastLimit = false): boolean {
    if (!this.up || authority !== this.peer.authority || (this.full && !pastLimit)) return false
    this.queued.push(frame.slice())
    return true
  }
  emit(event: string, ...args: unknown[]): void {
    for (const f of this.listeners[event]!) (f as (...a: unknown[]) => void)(...args)
  }
}

class Link {
  readonly a = new FakeTransport('127.0.0.1:1001')
  readonly b = new FakeTransport('127.0.0.1:1002')
  constructor() {
    this.a.peer = this.b
    this.b.peer = this.a
  }
  /** Deliver what one side has queued now (one direction, one pass). */
  deliver(from: FakeTransport): number {
    return this.#deliver(from)
  }
  /** Deliver everything queued on both sides, in order, until nothing is left (answers may queue more). */
  flush(): number {
    let n = 0
    for (let i = 0; i < 100; i++) {
      const moved = this.#deliver(this.a) + this.#deliver(this.b)
      if (moved === 0) return n
      n += moved
    }
    throw new Error('the link did not settle')
  }
  #deliver(from: FakeTransport): number {
    const frames = from.queued
    from.queued = []
    for (const f of frames) from.peer.emit('frame', { authority: from.authority, nodeId: `id-${from.authority}` }, f)
    return frames.length
  }
  /** The connection closes: frames not yet written come back ('unsent', before 'peer-down'), then both sides see peer-down. */
  cut(): void {
    for (const side of [this.a, this.b]) {
      side.up = false
      const unsent = side.queued
      side.queued = []
      if (unsent.length > 0) side.emit('unsent', { authority: side.peer.authority, nodeId: `id-${side.peer.authority}` }, unsent)
    }
    for (const side of [this.a, this.b]) side.emit('peer-down', { authority: side.peer.authority, nodeId: `id-${side.peer.authority}` }, 'cut')
  }
  /** The connection dies with frames already written: the kernel took them, the peer never reads them, nothing comes back. */
  lose(): void {
    for (const side of [this.a, this.b]) {
      side.up = false
      side.queued = []
    }
    for (const side of [this.a, this.b]) side.emit('peer-down', { authority: side.peer.authority, nodeId: `id-${side.peer.authority}` }, 'lost')
  }
  reconnect(): void {
    for (const side of [this.a, this.b]) side.up = true
    for (const side of [this.a, this.b]) side.emit('peer-up', { authority: side.peer.authority, nodeId: `id-${side.peer.authority}` }, { direction: 'outbound', welcome: new Uint8Array() })
  }
}

interface Deferred<T> {
  promise: Promise<T>
  resolve: (v: T) => void
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** The worker host of one node: its kinds, and the activations it can release (each once: releasing tombstones the key). */
function fakeHost(opts: { live?: Map<string, ReleasedRecord>; release?: () => Promise<void> } = {}) {
  const live = opts.live ?? new Map<string, ReleasedRecord>()
  const host = {
    kinds: new Map([
      ['tally', { kind: 'tally', requiresSnapshot: false }],
      ['ledger', { kind: 'ledger', requiresSnapshot: true }],
    ]),
    onHandoffRequest: undefined as ((kind: string, key: string) => Promise<HandoffAnswer>) | undefined,
    releases: 0,
    /** Leave: every hand-off activation is released. */
    async releaseAll(): Promise<ReleasedRecord[]> {
      const out = [...live.values()]
      live.clear()
      return out
    },
    /** Rebalance: every live activation leaves (the view moved them all). */
    async rebalance(): Promise<ReleasedRecord[]> {
      const out = [...live.values()]
      live.clear()
      return out
    },
    async releaseKey(kind: string, key: string): Promise<ReleasedRecord[]> {
      host.releases++
      await opts.release?.()
      const rec = live.get(`${kind}/${key}`)
      live.delete(`${kind}/${key}`)
      return rec === undefined ? [] : [rec]
    },
  }
  return host
}

function node(transport: FakeTransport, host: ReturnType<typeof fakeHost>, holder: string | undefined, timeoutMs: number) {
  const events = new EventStream()
  const seen: RuntimeEvent[] = []
  events.subscribe('*', (e) => seen.push(e))
  const router = {
    leaving: false,
    previousOwners: () => (holder === undefined ? [] : [{ authority: holder, nodeId: `id-${holder}`, status: 'up' }]),
    members: [] as { authority: string; nodeId: string }[],
    eligibleMembers: () => router.members,
    // Every key moves to the peer (the new owner) under the later view, and when this node leaves.
    ownerAmong: () => ({ authority: transport.peer.authority }),
    successorOf: () => ({ authority: transport.peer.authority }),
    startLeaving: () => {
      router.leaving = true
    },
  }
  const coordinator = new HandoffCoordinator({
    self: { nodeId: `id-${transport.authority}`, authority: transport.authority, mayServe: () => true },
    transport: transport as unknown as TcpTransport,
    host: host as unknown as WorkerHost,
    router: router as unknown as PlacementRouter,
    events,
    codec: binaryCodec,
    timeoutMs,
  })
  return { coordinator, host, seen, events, router, request: (kind: string, key: string) => host.onHandoffRequest!(kind, key) }
}

const handoffs = (seen: RuntimeEvent[], outcome: string) => seen.filter((e): e is Extract<RuntimeEvent, { type: 'placement.handoff' }> => e.type === 'placement.handoff' && e.outcome === outcome)

/** A: the new owner, asking. B: the previous owner, holding `kind/key` with `snapshot`. */
function pair(o: { kind?: string; timeoutMs?: number; release?: () => Promise<void>; noSnapshot?: string } = {}) {
  const kind = o.kind ?? 'tally'
  const link = new Link()
  const record: ReleasedRecord = o.noSnapshot === undefined ? { kind, key: 'k1', version: 4, snapshot: { count: 41, history: [1, 40] } } : { kind, key: 'k1', version: 4, reason: o.noSnapshot }
  const a = node(link.a, fakeHost(), link.b.authority, o.timeoutMs ?? 10_000)
  const b = node(link.b, fakeHost({ live: new Map([[`${kind}/k1`, record]]), ...(o.release ? { release: o.release } : {}) }), undefined, o.timeoutMs ?? 10_000)
  return { link, a, b, record, kind }
}

/** B takes its starting view, then A joins, so B rebalances k1 to A; `beforeJoin` runs in between (e.g. cut the link). */
async function rebalanceToA({ link, b }: ReturnType<typeof pair>, beforeJoin: () => void = () => {}): Promise<void> {
  b.router.members = [{ authority: link.b.authority, nodeId: 'id-b' }]
  b.events.publish({ type: 'member.up', authority: link.b.authority, nodeId: 'id-b' })
  await waitUntil(() => b.coordinator.stats.views === 1, { what: 'the first view is taken' })
  beforeJoin()
  b.router.members = [...b.router.members, { authority: link.a.authority, nodeId: 'id-a' }]
  b.events.publish({ type: 'member.up', authority: link.a.authority, nodeId: 'id-a' })
}

describe('HandoffCoordinator across a failing connection', () => {
  it('keeps an answer its connection dropped before writing it, and hands it over when the new owner asks again after the reconnect', async () => {
    const { link, a, b, record, kind } = pair()
    const answer = a.request(kind, 'k1')
    expect(link.flush()).toBe(1) // the pull reaches B
    await waitUntil(() => link.b.queued.length === 1, { what: "B's answer queued" })
    link.cut() // B's answer is handed back unwritten
    expect(handoffs(b.seen, 'retained')).toHaveLength(1)
    expect(handoffs(b.seen, 'retained')[0]!.reason).toContain('its connection closed before they were written')
    link.reconnect() // A asks again
    expect(a.coordinator.stats.pullsRepeated).toBe(1)
    link.flush()
    await expect(answer).resolves.toEqual({ outcome: 'record', version: record.version, snapshot: record.snapshot })
    expect(b.host.releases).toBe(1) // released once; the second answer came from what B kept
    expect(handoffs(a.seen, 'restored')).toHaveLength(1)
  })

  it('keeps an answer without a snapshot too, so the new owner reports why there is no state, not a timeout', async () => {
    const { link, a, kind } = pair({ noSnapshot: 'snapshot hook threw: disk full' })
    const answer = a.request(kind, 'k1')
    link.flush()
    await waitUntil(() => link.b.queued.length === 1, { what: "B's answer queued" })
    link.cut()
    link.reconnect()
    link.flush()
    await expect(answer).resolves.toMatchObject({ outcome: 'unavailable', version: 4, reason: 'snapshot hook threw: disk full' })
  })

  it('hands over while both outbound buffers are full (a flood of tells): its frames are not refused', async () => {
    const { link, a, record, kind } = pair()
    link.a.full = true
    link.b.full = true
    const answer = a.request(kind, 'k1')
    link.flush()
    await waitUntil(() => link.b.queued.length === 1, { what: "B's answer queued" })
    link.flush()
    await expect(answer).resolves.toEqual({ outcome: 'record', version: record.version, snapshot: record.snapshot })
  })

  it('keeps an answer that finds no connection, and hands it over when asked again', async () => {
    const gate = deferred<void>()
    const { link, a, b, record, kind } = pair({ release: () => gate.promise })
    const answer = a.request(kind, 'k1')
    link.flush()
    link.cut() // while B releases the key
    gate.resolve()
    await waitUntil(() => b.coordinator.stats.retained === 1, { what: 'B keeps the record it could not send' })
    link.reconnect()
    link.flush()
    await expect(answer).resolves.toMatchObject({ outcome: 'record', snapshot: record.snapshot })
    expect(b.host.releases).toBe(1)
  })

  it('answers a request asked again while the key is still releasing once the release is done, releasing it once', async () => {
    const gate = deferred<void>()
    const { link, a, b, record, kind } = pair({ release: () => gate.promise })
    const answer = a.request(kind, 'k1')
    link.flush()
    link.cut()
    link.reconnect() // A asks again: B is still releasing
    link.flush()
    gate.resolve()
    await waitUntil(() => link.b.queued.length >= 1, { what: "B's answer" })
    link.flush()
    await expect(answer).resolves.toMatchObject({ outcome: 'record', version: record.version, snapshot: record.snapshot })
    await waitUntil(() => link.flush() === 0 && b.host.releases >= 1, { what: 'the link settles' })
    expect(b.host.releases).toBe(1)
    expect(handoffs(a.seen, 'failed')).toHaveLength(0)
  })

  it('fails the request after its timeout while the holder stays unreachable, naming the lost connection', async () => {
    const { link, a, kind } = pair({ timeoutMs: 50 })
    link.cut()
    await expect(a.request(kind, 'k1')).resolves.toMatchObject({ outcome: 'unavailable', reason: expect.stringContaining('not connected to it for 50 ms') })
  })

  it('keeps a late answer for a kind that requires its snapshot (its activation failed), and the next activation takes it', async () => {
    const gate = deferred<void>()
    const { link, a, record } = pair({ kind: 'ledger', timeoutMs: 50, release: () => gate.promise })
    const first = a.request('ledger', 'k1')
    link.flush()
    await expect(first).resolves.toMatchObject({ outcome: 'unavailable' })
    gate.resolve()
    await waitUntil(() => link.b.queued.length === 1, { what: "B's late answer" })
    link.flush()
    expect(handoffs(a.seen, 'retained')).toHaveLength(1)
    await expect(a.request('ledger', 'k1')).resolves.toEqual({ outcome: 'record', version: record.version, snapshot: record.snapshot })
  })

  it('drops a late answer for a kind that started without it, as a failed event', async () => {
    const gate = deferred<void>()
    const { link, a, kind } = pair({ timeoutMs: 50, release: () => gate.promise })
    await Promise.all([a.request(kind, 'k1'), Promise.resolve().then(() => link.flush())])
    gate.resolve()
    await waitUntil(() => link.b.queued.length === 1, { what: "B's late answer" })
    link.flush()
    const failed = handoffs(a.seen, 'failed')
    expect(failed.at(-1)).toMatchObject({ kind, key: 'k1', reason: expect.stringContaining('answered after the request timed out') })
    expect(handoffs(a.seen, 'retained')).toHaveLength(0)
  })

  it('hands a kept answer only to the request it answered, for a kind that starts without its snapshot: a later request gets no stale state', async () => {
    const { link, a, b, kind } = pair({ timeoutMs: 100 })
    const first = a.request(kind, 'k1')
    link.flush()
    await waitUntil(() => link.b.queued.length === 1, { what: "B's answer queued" })
    link.cut()
    expect(b.coordinator.stats.retained).toBe(1)
    await expect(first).resolves.toMatchObject({ outcome: 'unavailable' }) // A gave up and starts fresh
    link.reconnect()
    const later = a.request(kind, 'k1')
    link.flush()
    await waitUntil(() => link.flush() === 0 && b.host.releases === 2, { what: 'B answers the later request' })
    link.flush()
    await expect(later).resolves.toEqual({ outcome: 'none' })
    expect(handoffs(b.seen, 'failed').at(-1)?.reason).toContain('gave up the request this record answered')
  })

  it('keeps records a rebalance could not push to the new owner, and hands them over when the new owner asks', async () => {
    const p = pair()
    const { link, a, b, record, kind } = p
    await rebalanceToA(p, () => link.cut())
    await waitUntil(() => b.coordinator.stats.retained === 1, { what: 'B keeps the record it could not push' })
    expect(handoffs(b.seen, 'retained')[0]!.reason).toContain(`not delivered to ${link.a.authority}: not connected`)
    link.reconnect()
    const answer = a.request(kind, 'k1')
    link.flush()
    await expect(answer).resolves.toEqual({ outcome: 'record', version: record.version, snapshot: record.snapshot })
  })

  it('hands an answer over again when its connection lost it after it was written (it is kept until the new owner acknowledges it)', async () => {
    const { link, a, b, record, kind } = pair()
    const answer = a.request(kind, 'k1')
    link.flush()
    await waitUntil(() => link.b.queued.length === 1, { what: "B's answer written" })
    link.lose()
    expect(b.coordinator.stats.retained).toBe(0) // B cannot know
    link.reconnect()
    link.flush()
    await expect(answer).resolves.toEqual({ outcome: 'record', version: record.version, snapshot: record.snapshot })
    expect(b.host.releases).toBe(1)
  })

  it('forgets an answer once the new owner acknowledged it: a later request gets nothing from it', async () => {
    // 'ledger' requires its snapshot, so a kept answer would go to any request.
    const { link, a, b, record } = pair({ kind: 'ledger' })
    const first = a.request('ledger', 'k1')
    link.flush()
    await waitUntil(() => link.b.queued.length === 1, { what: "B's answer" })
    link.flush() // the answer, then A's acknowledgement
    await expect(first).resolves.toMatchObject({ outcome: 'record', version: record.version })
    const later = a.request('ledger', 'k1')
    link.flush()
    await waitUntil(() => b.host.releases === 2, { what: 'B releases for the later request' })
    await waitUntil(() => link.flush() === 0 && link.b.queued.length === 0, { what: 'the link settles' })
    await expect(later).resolves.toEqual({ outcome: 'none' })
  })

  it('keeps a rebalance push its connection lost before the new owner confirmed it, and hands it over when the new owner asks', async () => {
    const p = pair()
    const { link, a, b, record, kind } = p
    await rebalanceToA(p)
    await waitUntil(() => link.b.queued.length === 1, { what: "B's push written" })
    link.lose() // written, never read, never confirmed
    expect(handoffs(b.seen, 'retained')[0]?.reason).toContain(`not confirmed by ${link.a.authority}: its connection went down first`)
    link.reconnect()
    const answer = a.request(kind, 'k1')
    link.flush()
    await expect(answer).resolves.toEqual({ outcome: 'record', version: record.version, snapshot: record.snapshot })
  })

  describe('a leaving node', () => {
    it('pushes again a push its connection handed back, and leaves once the new owner confirmed it', async () => {
      // A timeout far longer than the wait below: the leave must end on the confirmation, not on the timeout.
      const { link, a, b, record, kind } = pair({ timeoutMs: 120_000 })
      let left = false
      const leaving = b.coordinator.handOffAll().finally(() => {
        left = true
      })
      await waitUntil(() => link.b.queued.length === 1, { what: "B's push queued" })
      link.cut() // handed back unwritten
      link.reconnect() // B pushes again
      expect(b.coordinator.stats.pushesRepeated).toBe(1)
      link.flush() // the push, then A's confirmation
      await waitUntil(() => left, { what: 'the leave ends on the confirmation', timeoutMs: 10_000 })
      await expect(leaving).resolves.toBe(1)
      await expect(a.request(kind, 'k1')).resolves.toEqual({ outcome: 'record', version: record.version, snapshot: record.snapshot })
    })

    it('pushes again when the confirmation is lost, and the new owner stores the record once', async () => {
      const { link, a, b, record, kind } = pair()
      const leaving = b.coordinator.handOffAll()
      await waitUntil(() => link.b.queued.length === 1, { what: "B's push queued" })
      link.deliver(link.b) // A stores it; its confirmation is queued
      // The key activates on A from the pushed record, then the confirmation is lost.
      await expect(a.request(kind, 'k1')).resolves.toMatchObject({ outcome: 'record', version: record.version })
      link.lose()
      link.reconnect()
      link.flush() // the same push again: confirmed, not stored
      await expect(leaving).resolves.toBe(1)
      // A second activation finds no stale copy in A's inbox: it asks B, which has nothing left.
      const again = a.request(kind, 'k1')
      link.flush()
      await waitUntil(() => b.host.releases === 1, { what: 'B asked' })
      link.flush()
      await expect(again).resolves.toEqual({ outcome: 'none' })
    })

    it('gives up after the hand-off timeout when the new owner stays unreachable, with failed events naming it', async () => {
      const { link, b, kind } = pair({ timeoutMs: 50 })
      link.cut()
      await expect(b.coordinator.handOffAll()).resolves.toBe(0)
      expect(handoffs(b.seen, 'failed').at(-1)).toMatchObject({ kind, key: 'k1', peer: link.a.authority, reason: expect.stringContaining('did not confirm the record within 50 ms (not connected)') })
    })
  })
})
