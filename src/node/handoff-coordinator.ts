/**
 * State hand-off between owners (spec 5.4, issue 5): the main-thread side.
 *
 * Pull on activation. A worker that activates a key of a kind with
 * snapshot/restore hooks asks for its ActivationRecord first (its messages
 * wait on the busy activation). This node asks every live member that may
 * hold the key (the owner it displaced, owners under recent views) to
 * release it; a holder finishes the messages it accepted, snapshots,
 * deactivates and tombstones the key, and answers with the record. At most
 * one holder can have it, so the activation moves: it never runs in two
 * places. Messages that reach the old owner afterwards bounce back to its
 * main thread and follow placement to the new owner.
 *
 * Push on leave. A leaving node stops placing keys on itself, releases
 * every hand-off activation and pushes each record to the key's successor,
 * which keeps it in an inbox until the key activates there and confirms it
 * ('stored'); the leave waits for the confirmations (handOffAll).
 *
 * Outcomes on the taking side: 'restored' (a record with a snapshot),
 * 'fresh' (no holder had it), 'failed' (a holder could not be asked: it
 * crashed, timed out; the worker then starts fresh or, for kinds with
 * requiresSnapshot, fails with ERR_GRAIN_SNAPSHOT_MISSING). Every outcome
 * is a 'placement.handoff' event.
 *
 * A lost connection loses no record: a holder keeps each answer until the
 * taker acknowledges it ('took'), and a taker asks again (same request id)
 * when a holder it may not have heard from comes back (#pull, #retain).
 *
 * Wire: FRAME_HANDOFF frames on the cluster transport, bodies encoded with
 * the node's payload codec (snapshots are arbitrary codec values):
 * pull → pulled → took, and push → stored.
 */

import { GrainClusterError, toGrainClusterError } from '../common/errors.js'
import { kindKeyOf } from '../common/hash.js'
import type { EventStream } from '../observability/event-stream.js'
import type { TcpTransport } from '../remote/transport/tcp-transport.js'
import type { HandoffAnswer, WorkerHost } from '../runtime/host/worker-host.js'
import type { ReleasedRecord } from '../runtime/worker/activation.js'
import { encodeToBytes, type PayloadCodec } from '../wire/payload-codec.js'
import type { PlacementRouter } from './placement-router.js'

export const FRAME_HANDOFF = 0x03

/** How long a new owner waits for a previous owner to release a key. */
export const DEFAULT_HANDOFF_TIMEOUT_MS = 3_000 // 3 s
/** How long a pushed record waits in the inbox for its key to activate. */
export const DEFAULT_HANDOFF_INBOX_TTL_MS = 120_000 // 2 min

type HandoffMessage =
  | { op: 'pull'; id: number; kind: string; key: string }
  | { op: 'pulled'; id: number; records: ReleasedRecord[]; error?: string }
  | { op: 'push'; seq: number; records: ReleasedRecord[] }
  | { op: 'took'; id: number; kind: string; key: string }
  | { op: 'stored'; seq: number }

interface InboxEntry {
  record: ReleasedRecord
  from: string
  expiresAtMs: number
  /**
   * Only a fallback when the key activates here: parked by this node itself
   * when its serving lease lapsed, or an exclusive answer (below).
   */
  parked?: boolean
  /**
   * An answer to a request (`to`, `id`), kept until its requester
   * acknowledges it ('took'): bytes the kernel accepted are lost with their
   * connection too, and the requester then asks again after the reconnect.
   * `delivered`: it went out, only the acknowledgement is missing.
   * `exclusive` (a kind that starts without its snapshot): only that request
   * may take it; its requester starts fresh once it gives up, so for any
   * other request the record is stale.
   */
  answer?: { to: string; id: number; delivered: boolean; exclusive: boolean }
}

interface PullWait {
  resolve: (r: { records: ReleasedRecord[]; error?: string }) => void
  timer: ReturnType<typeof setTimeout>
  /** The holder asked, and the request, so it can be asked again after a reconnect. */
  authority: string
  kind: string
  key: string
  /** The request may not have reached the holder (not sent, handed back unwritten, or its connection went down): ask again on peer-up. */
  lost: boolean
}

/** A push not confirmed ('stored') by its new owner yet. */
interface PushWait {
  authority: string
  records: ReleasedRecord[]
  /** It may not have arrived (not sent, handed back unwritten, or its connection went down unconfirmed): push again on peer-up. */
  lost: boolean
}

export interface HandoffCoordinatorOptions {
  /** This node: its NodeId, and whether it may serve (rebalancing waits while it may not). */
  self: { readonly nodeId: string; readonly authority: string; mayServe(nowMs: number): boolean }
  transport: TcpTransport
  host: WorkerHost
  router: PlacementRouter
  events: EventStream
  codec: PayloadCodec
  timeoutMs?: number
  inboxTtlMs?: number
}

export class HandoffCoordinator {
  readonly #o: HandoffCoordinatorOptions
  readonly #timeoutMs: number
  readonly #inboxTtlMs: number
  readonly #inbox = new Map<string, InboxEntry>()
  readonly #pulls = new Map<number, PullWait>()
  /** Requests in flight by key: a push that arrives meanwhile answers them. */
  readonly #waiting = new Map<string, (e: InboxEntry) => void>()
  /** Keys this node is releasing for a request, by kind/key: settles once answered, with whether the answer went out. */
  readonly #releasing = new Map<string, Promise<boolean>>()
  #nextId = 1
  readonly #unsubscribe: () => void
  /**
   * Outcomes as in the events; `pushed`: records a leave's successors
   * confirmed; `views`: membership views the rebalancer took; `retained`:
   * records kept here because they could not be delivered; `pullsRepeated`
   * and `pushesRepeated`: requests and pushes sent again after a reconnect.
   */
  readonly stats = { restored: 0, fresh: 0, failed: 0, released: 0, pushed: 0, rebalanced: 0, views: 0, retained: 0, pullsRepeated: 0, pushesRepeated: 0 }
  /** Pushes not confirmed yet, by seq. */
  readonly #pushes = new Map<number, PushWait>()
  #pushesSettled: (() => void) | undefined
  /** Pushes stored here, by `from#seq` (until when to remember them): a push sent again after its confirmation was lost is confirmed, not stored twice. */
  readonly #stored = new Map<string, number>()

  constructor(o: HandoffCoordinatorOptions) {
    this.#o = o
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_HANDOFF_TIMEOUT_MS
    this.#inboxTtlMs = o.inboxTtlMs ?? DEFAULT_HANDOFF_INBOX_TTL_MS
    o.transport.acceptFrameType(FRAME_HANDOFF)
    const off = [
      o.transport.on('frame', (peer, frame) => {
        if (frame[0] === FRAME_HANDOFF) this.#onFrame(peer.authority, frame)
      }),
      o.transport.on('unsent', (peer, frames) => this.#onUnsent(peer.authority, frames)),
      o.transport.on('peer-down', (peer) => this.#markLost(peer.authority)),
      o.transport.on('peer-up', (peer) => this.#sendAgain(peer.authority)),
    ]
    this.#unsubscribe = () => {
      for (const f of off) f()
    }
    o.host.onHandoffRequest = (kind, key) => this.#request(kind, key)
    // Membership changes move keys: rebalance once the burst of events settles.
    this.#unsubscribeMembers = o.events.subscribe('member.*', () => this.#scheduleRebalance())
  }

  readonly #unsubscribeMembers: () => void
  #rebalanceTimer: ReturnType<typeof setTimeout> | undefined
  #rebalancedFor: readonly unknown[] | undefined
  #rebalancing = false
  #closed = false

  #scheduleRebalance(): void {
    if (this.#rebalanceTimer !== undefined || this.#closed) return
    this.#rebalanceTimer = setTimeout(() => {
      this.#rebalanceTimer = undefined
      void this.#rebalance()
    }, REBALANCE_DEBOUNCE_MS)
    this.#rebalanceTimer.unref()
  }

  /**
   * Release the activations of keys that another member owns under the
   * current view and push the records of hand-off kinds to their new owners,
   * so a key is live on one node only (spec 5.4, single activation).
   */
  async #rebalance(): Promise<void> {
    if (this.#closed || this.#o.router.leaving) return
    if (this.#rebalancing) {
      this.#scheduleRebalance()
      return
    }
    if (!this.#o.self.mayServe(performance.now())) return // lease lapsed: park() dropped everything already
    const members = this.#o.router.eligibleMembers()
    if (members === this.#rebalancedFor || members.length === 0) return
    const first = this.#rebalancedFor === undefined
    this.#rebalancedFor = members
    this.stats.views++
    if (first) return // the view this node started with: nothing of ours can have moved yet
    this.#rebalancing = true
    try {
      const records = await this.#o.host.rebalance(members, this.#o.self.nodeId, this.#timeoutMs)
      this.stats.rebalanced += records.length
      if (records.length > 0) this.#o.events.publish({ type: 'placement.rebalanced', released: records.length, members: members.length })
      this.#pushTo(records.filter((r) => r.snapshot !== undefined || r.reason !== undefined), (rec) => this.#o.router.ownerAmong(members, rec.kind, rec.key))
    } catch (e) {
      this.#o.events.publish({ type: 'node.stopped', reason: `rebalance failed: ${toGrainClusterError(e).reason}` })
    } finally {
      this.#rebalancing = false
    }
    // The view may have changed again meanwhile.
    if (this.#o.router.eligibleMembers() !== members) this.#scheduleRebalance()
  }

  close(): void {
    this.#closed = true
    clearTimeout(this.#rebalanceTimer)
    this.#unsubscribeMembers()
    this.#unsubscribe()
    this.#o.host.onHandoffRequest = undefined
    for (const w of this.#pulls.values()) {
      clearTimeout(w.timer)
      w.resolve({ records: [], error: 'the node is closing' })
    }
    this.#pulls.clear()
    this.#pushes.clear()
    this.#pushesSettled?.()
  }

  // ------------------------------------------------------------ taking side

  async #request(kind: string, key: string): Promise<HandoffAnswer> {
    const k = kindKeyOf(kind, key)
    const now = performance.now()
    let parked: InboxEntry | undefined
    const boxed = this.#inbox.get(k)
    if (boxed !== undefined) {
      this.#inbox.delete(k)
      // A record pushed by a leaving owner is the state; one this node parked
      // itself (lease lost) is only a fallback: another node may have run
      // the key since, and its activation is newer.
      if (boxed.expiresAtMs > now && !boxed.parked) return this.#taken(boxed.record, boxed.from)
      if (boxed.expiresAtMs > now) parked = boxed
    }
    const holders = this.#o.router.previousOwners(kind, key)
    if (holders.length === 0) return parked === undefined ? this.#fresh(kind, key) : this.#taken(parked.record, parked.from)
    const pushed = new Promise<InboxEntry>((resolve) => this.#waiting.set(k, resolve))
    const pulls = holders.map((m) => this.#pull(m.authority, kind, key).then((r) => ({ from: m.authority, ...r })))
    const settled = Promise.all(pulls).then((rs) => ({ pulled: rs }))
    const first = await Promise.race([settled, pushed.then((e) => ({ pushedEntry: e }))])
    this.#waiting.delete(k)
    if ('pushedEntry' in first) return this.#taken(first.pushedEntry.record, first.pushedEntry.from)
    // A push that raced the pull replies (sent before them on the same connection) wins.
    const late = this.#inbox.get(k)
    if (late !== undefined) {
      this.#inbox.delete(k)
      return this.#taken(late.record, late.from)
    }
    let best: { record: ReleasedRecord; from: string } | undefined
    const errors: string[] = []
    for (const r of first.pulled) {
      if (r.error !== undefined) errors.push(`${r.from}: ${r.error}`)
      for (const rec of r.records) if (best === undefined || rec.version > best.record.version) best = { record: rec, from: r.from }
    }
    if (best !== undefined) return this.#taken(best.record, best.from)
    if (parked !== undefined) return this.#taken(parked.record, parked.from)
    if (errors.length > 0) {
      const reason = `previous owner could not hand over ${kind}/${key}: ${errors.join('; ')}`
      this.stats.failed++
      this.#o.events.publish({ type: 'placement.handoff', kind, key, outcome: 'failed', reason })
      return { outcome: 'unavailable', reason }
    }
    return this.#fresh(kind, key)
  }

  #fresh(kind: string, key: string): HandoffAnswer {
    this.stats.fresh++
    this.#o.events.publish({ type: 'placement.handoff', kind, key, outcome: 'fresh' })
    return { outcome: 'none' }
  }

  #taken(rec: ReleasedRecord, from: string): HandoffAnswer {
    if (rec.snapshot === undefined) {
      // Held elsewhere, but without state to carry (hook threw or could not be encoded).
      const reason = rec.reason ?? `${from} released ${rec.kind}/${rec.key} without a snapshot`
      this.stats.failed++
      this.#o.events.publish({ type: 'placement.handoff', kind: rec.kind, key: rec.key, outcome: 'failed', peer: from, version: rec.version, reason })
      return { outcome: 'unavailable', version: rec.version, reason }
    }
    this.stats.restored++
    this.#o.events.publish({ type: 'placement.handoff', kind: rec.kind, key: rec.key, outcome: 'restored', peer: from, version: rec.version })
    return { outcome: 'record', version: rec.version, snapshot: rec.snapshot }
  }

  /**
   * Ask one holder to release the key. A request that may not have reached
   * it (no connection now, handed back unwritten, or its connection went
   * down before the answer) is asked again when the holder is back, within
   * the same timeout: the holder keeps a record it could not deliver
   * (#retain), so the second request finds it.
   */
  #pull(authority: string, kind: string, key: string): Promise<{ records: ReleasedRecord[]; error?: string }> {
    const id = this.#nextId++
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const w = this.#pulls.get(id)
        this.#pulls.delete(id)
        resolve({ records: [], error: w?.lost === true ? `not connected to it for ${this.#timeoutMs} ms` : `no answer within ${this.#timeoutMs} ms` })
      }, this.#timeoutMs)
      const w: PullWait = { resolve, timer, authority, kind, key, lost: false }
      this.#pulls.set(id, w)
      if (!this.#send(authority, { op: 'pull', id, kind, key })) w.lost = true
    })
  }

  #markLost(authority: string): void {
    for (const w of this.#pulls.values()) if (w.authority === authority) w.lost = true
    for (const [seq, p] of this.#pushes) if (p.authority === authority) this.#pushLost(seq, p, `not confirmed by ${authority}: its connection went down first`)
  }

  /**
   * A push that may not have arrived. A leaving node pushes it again on
   * peer-up (its leave waits for that). Any other keeps the records here
   * (#retain): the new owner asks this node, a previous owner, when the key
   * activates there. Had the push arrived after all, the new owner took it
   * from its inbox and asks nobody; a later owner asking both gets the newer
   * version from it.
   */
  #pushLost(seq: number, p: PushWait, what: string): void {
    if (this.#o.router.leaving) {
      p.lost = true
      return
    }
    this.#pushes.delete(seq)
    this.#retain(p.authority, p.records, what, 'push')
  }

  /** Send again the requests and pushes to `authority` that may not have arrived (same id or seq, so answers still match). */
  #sendAgain(authority: string): void {
    for (const [id, w] of this.#pulls) {
      if (w.authority === authority && w.lost && this.#send(authority, { op: 'pull', id, kind: w.kind, key: w.key })) {
        w.lost = false
        this.stats.pullsRepeated++
      }
    }
    for (const [seq, p] of this.#pushes) {
      if (p.authority === authority && p.lost && this.#send(authority, { op: 'push', seq, records: p.records })) {
        p.lost = false
        this.stats.pushesRepeated++
      }
    }
  }

  /**
   * Frames the transport accepted but never wrote (their connection closed
   * first). They go out again at once when another connection to the peer
   * is up (a duplicate connection that lost); otherwise a request is asked
   * again on peer-up, and records this node released stay here (#retain),
   * where that request finds them: this node already deactivated and
   * tombstoned the key, so these records are the only copy of its state.
   */
  #onUnsent(authority: string, frames: readonly Uint8Array[]): void {
    const why = 'its connection closed before they were written'
    for (const frame of frames) {
      if (frame[0] !== FRAME_HANDOFF) continue
      const m = this.#decode(authority, frame)
      if (m === undefined) continue
      if (m.op === 'pull') {
        const w = this.#pulls.get(m.id)
        if (w !== undefined) w.lost = true
      } else if (m.op === 'pulled') this.#answer(authority, m.id, Array.isArray(m.records) ? m.records : [], why)
      else if (m.op === 'push') {
        // Out again at once on another connection; else lost (#pushLost).
        const p = this.#pushes.get(m.seq)
        if (p !== undefined && !this.#send(authority, m)) this.#pushLost(m.seq, p, `not delivered to ${authority}: ${why}`)
      }
    }
    this.#sendAgain(authority)
  }

  /**
   * Keep released records this node could not deliver, as if pushed here:
   * a later request for the key, from any node (or this one activating it
   * again), takes them.
   *
   * Answers are kept until acknowledged (InboxEntry.answer), and only those
   * that could not go out are events.
   */
  #retain(peer: string, records: readonly ReleasedRecord[], what: string, kept: 'push' | 'late answer' | { answering: number; delivered: boolean }): void {
    const now = performance.now()
    const delivered = typeof kept === 'object' && kept.delivered
    for (const record of records) {
      if (this.#o.router.leaving) {
        if (delivered) continue
        // Nobody asks a Leaving member: kept here, the records would go when it stops.
        this.stats.failed++
        this.#o.events.publish({ type: 'placement.handoff', kind: record.kind, key: record.key, outcome: 'failed', peer, version: record.version, reason: `${what}; this node is leaving` })
        continue
      }
      // The record came from `peer` when it answered late; otherwise this node released it.
      // One without a snapshot is kept too: its reason (the hook threw) is what the taker should report.
      const entry: InboxEntry = { record, from: kept === 'late answer' ? peer : this.#o.self.authority, expiresAtMs: now + this.#inboxTtlMs }
      if (typeof kept === 'object') {
        const exclusive = this.#o.host.kinds.get(record.kind)?.requiresSnapshot !== true
        entry.answer = { to: peer, id: kept.answering, delivered, exclusive }
        if (exclusive) entry.parked = true
      }
      if (!this.#box(entry) || delivered) continue
      this.stats.retained++
      this.#o.events.publish({ type: 'placement.handoff', kind: record.kind, key: record.key, outcome: 'retained', peer, version: record.version, reason: `${what}; kept for the next request` })
    }
    this.#sweepInbox()
  }

  /** Put a record in the inbox unless a newer one of its key is there; false when not kept. */
  #box(entry: InboxEntry): boolean {
    const k = kindKeyOf(entry.record.kind, entry.record.key)
    const old = this.#inbox.get(k)
    if (old !== undefined && old.record.version > entry.record.version) return false
    this.#inbox.set(k, entry)
    return true
  }

  // ----------------------------------------------------------- giving side

  #decode(from: string, frame: Uint8Array): HandoffMessage | undefined {
    try {
      const m = this.#o.codec.decode(frame, 1, frame.length - 1) as HandoffMessage
      if (typeof m !== 'object' || m === null || typeof (m as { op?: unknown }).op !== 'string') throw new Error('not a hand-off message')
      return m
    } catch (e) {
      this.#o.events.publish({ type: 'transport.frame-rejected', remote: from, code: 'ERR_FRAME_MALFORMED', reason: `hand-off frame: ${toGrainClusterError(e).reason}` })
      return undefined
    }
  }

  #onFrame(from: string, frame: Uint8Array): void {
    const m = this.#decode(from, frame)
    if (m === undefined) return
    if (m.op === 'pull') this.#onPull(from, m)
    else if (m.op === 'pulled') {
      const records = Array.isArray(m.records) ? m.records : []
      for (const r of records) this.#send(from, { op: 'took', id: m.id, kind: r.kind, key: r.key })
      const w = this.#pulls.get(m.id)
      if (w === undefined) {
        this.#late(from, records)
        return
      }
      this.#pulls.delete(m.id)
      clearTimeout(w.timer)
      w.resolve({ records, ...(m.error === undefined ? {} : { error: m.error }) })
    } else if (m.op === 'took') {
      if (typeof m.kind !== 'string' || typeof m.key !== 'string') return
      const k = kindKeyOf(m.kind, m.key)
      const a = this.#inbox.get(k)?.answer
      if (a !== undefined && a.to === from && a.id === m.id) this.#inbox.delete(k)
    } else if (m.op === 'stored') {
      const p = this.#pushes.get(m.seq)
      if (p === undefined || p.authority !== from) return
      this.#pushes.delete(m.seq)
      if (this.#pushes.size === 0) this.#pushesSettled?.()
    } else if (m.op === 'push' && Array.isArray(m.records)) {
      const now = performance.now()
      const expiresAtMs = now + this.#inboxTtlMs
      if (typeof m.seq === 'number') {
        this.#send(from, { op: 'stored', seq: m.seq })
        const seen = `${from}#${m.seq}`
        if ((this.#stored.get(seen) ?? 0) > now) return
        this.#stored.set(seen, expiresAtMs)
        if (this.#stored.size > 10_000) for (const [k, until] of this.#stored) if (until <= now) this.#stored.delete(k)
      }
      for (const record of m.records) {
        const k = kindKeyOf(record.kind, record.key)
        const entry: InboxEntry = { record, from, expiresAtMs }
        const waiter = this.#waiting.get(k)
        if (waiter !== undefined) {
          this.#waiting.delete(k)
          waiter(entry)
        } else this.#box(entry)
      }
      this.#sweepInbox()
    }
  }

  /**
   * An answer that came after its request timed out. The holder released the
   * key for it, so its records are the state. A kind that requires its
   * snapshot failed that activation, and its next activation takes them from
   * the inbox. Any other kind started without them and is live now: a late
   * record would overwrite newer state, so it is dropped, as an event.
   */
  #late(from: string, records: readonly ReleasedRecord[]): void {
    for (const record of records) {
      if (record.snapshot === undefined) continue
      if (this.#o.host.kinds.get(record.kind)?.requiresSnapshot === true) {
        this.#retain(from, [record], `${from} answered after the request timed out (${this.#timeoutMs} ms)`, 'late answer')
        continue
      }
      this.stats.failed++
      const reason = `${from} answered after the request timed out (${this.#timeoutMs} ms); the key started without the record, which is dropped`
      this.#o.events.publish({ type: 'placement.handoff', kind: record.kind, key: record.key, outcome: 'failed', peer: from, version: record.version, reason })
    }
  }

  #onPull(from: string, m: { id: number; kind: string; key: string }): void {
    const { id, kind, key } = m
    if (typeof kind !== 'string' || typeof key !== 'string' || !this.#o.host.kinds.has(kind)) {
      this.#send(from, { op: 'pulled', id, records: [] })
      return
    }
    const k = kindKeyOf(kind, key)
    // A request again (the requester reconnected) while this node still
    // releases the key for it: the first answer settles it when it goes out;
    // when it could not, ask again once it is kept here (the inbox).
    const releasing = this.#releasing.get(k)
    if (releasing !== undefined) {
      void releasing.then((sent) => {
        if (!sent) this.#onPull(from, m)
      })
      return
    }
    // A record pushed here (or parked, or kept) that never activated: it moves on as it is.
    const boxed = this.#inbox.get(k)
    if (boxed !== undefined) {
      this.#inbox.delete(k)
      const a = boxed.answer
      if (a !== undefined && a.exclusive && (a.to !== from || a.id !== id)) {
        // Delivered: its requester has it and only the acknowledgement went missing.
        if (!a.delivered) {
          this.stats.failed++
          const reason = `${a.to} gave up the request this record answered (it could not be delivered); the key started without it there, so it is dropped`
          this.#o.events.publish({ type: 'placement.handoff', kind, key, outcome: 'failed', peer: a.to, version: boxed.record.version, reason })
        }
      } else if (boxed.expiresAtMs > performance.now()) {
        this.stats.released++
        this.#o.events.publish({ type: 'placement.handoff', kind, key, outcome: 'released', peer: from, version: boxed.record.version })
        this.#answer(from, id, [boxed.record])
        return
      }
    }
    const done = this.#o.host
      .releaseKey(kind, key, this.#timeoutMs)
      .then(
        (records) => {
          if (records.length > 0) {
            this.stats.released++
            this.#o.events.publish({ type: 'placement.handoff', kind, key, outcome: 'released', peer: from, version: records[0]!.version })
          }
          return this.#answer(from, id, records)
        },
        (e: unknown) => this.#send(from, { op: 'pulled', id, records: [], error: toGrainClusterError(e).reason }),
      )
      .finally(() => this.#releasing.delete(k))
    this.#releasing.set(k, done)
  }

  /**
   * Answer a request, and keep its records until the requester acknowledges
   * them: when the answer is lost (not sent, or with its connection), the
   * requester asks again once connected and finds them here.
   */
  #answer(to: string, id: number, records: ReleasedRecord[], why = 'not connected'): boolean {
    const sent = this.#send(to, { op: 'pulled', id, records })
    this.#retain(to, records, `not delivered to ${to}: ${why}`, { answering: id, delivered: sent })
    return sent
  }

  /**
   * The serving lease lapsed: other nodes may re-activate this node's keys
   * any moment, so drop every activation here now. Records with snapshots
   * are parked in the inbox as a fallback for when keys come back and no
   * other node has run them meanwhile. Resolves with the number parked.
   */
  async park(self: string): Promise<number> {
    const records = await this.#o.host.releaseAll(this.#timeoutMs, { park: true })
    const expiresAtMs = performance.now() + this.#inboxTtlMs
    let n = 0
    for (const record of records) {
      if (record.snapshot === undefined) continue
      this.#inbox.set(kindKeyOf(record.kind, record.key), { record, from: self, expiresAtMs, parked: true })
      n++
    }
    this.#sweepInbox()
    return n
  }

  /**
   * Graceful leave: place nothing here any more, release every hand-off
   * activation and push each record to its successor, then wait (at most
   * the hand-off timeout) until the successors confirmed them, pushing again
   * over a reconnect, as Akka's sharding waits for its regions' hand-off
   * before the node leaves. Resolves with the number of records confirmed.
   */
  async handOffAll(): Promise<number> {
    this.#o.router.startLeaving()
    const records = await this.#o.host.releaseAll(this.#timeoutMs)
    const sent = this.#pushTo(records, (rec) => this.#o.router.successorOf(rec.kind, rec.key))
    const pushed = sent - (await this.#confirmed(this.#timeoutMs))
    this.stats.pushed += pushed
    return pushed
  }

  /**
   * Wait until the new owners confirmed every push of the leave, pushing
   * again over a reconnect, at most `timeoutMs`; then every record still
   * unconfirmed is a failed hand-off. Resolves with their number.
   */
  async #confirmed(timeoutMs: number): Promise<number> {
    if (this.#pushes.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined
      await new Promise<void>((resolve) => {
        this.#pushesSettled = resolve
        timer = setTimeout(resolve, timeoutMs)
      })
      clearTimeout(timer)
      this.#pushesSettled = undefined
    }
    let n = 0
    for (const p of this.#pushes.values()) {
      for (const rec of p.records) {
        n++
        this.stats.failed++
        const reason = `${p.authority} did not confirm the record within ${timeoutMs} ms${p.lost ? ' (not connected)' : ''}; this node is leaving`
        this.#o.events.publish({ type: 'placement.handoff', kind: rec.kind, key: rec.key, outcome: 'failed', peer: p.authority, version: rec.version, reason })
      }
    }
    this.#pushes.clear()
    return n
  }

  /** Push records to the owners `ownerOf` names, in bounded frames; returns how many went out. */
  #pushTo(records: readonly ReleasedRecord[], ownerOf: (rec: ReleasedRecord) => { authority: string } | undefined): number {
    const byOwner = new Map<string, ReleasedRecord[]>()
    for (const rec of records) {
      const owner = ownerOf(rec)
      if (owner === undefined) {
        this.#o.events.publish({ type: 'placement.handoff', kind: rec.kind, key: rec.key, outcome: 'failed', reason: 'no member left to take the key' })
        continue
      }
      let list = byOwner.get(owner.authority)
      if (list === undefined) byOwner.set(owner.authority, (list = []))
      list.push(rec)
    }
    let pushed = 0
    for (const [authority, list] of byOwner) {
      // Bounded frames: a few hundred records each.
      for (let i = 0; i < list.length; i += PUSH_BATCH) {
        const batch = list.slice(i, i + PUSH_BATCH)
        // Each push stays here until the new owner confirms it; a leave waits for that (#confirmed).
        const seq = this.#nextId++
        const p: PushWait = { authority, records: batch, lost: false }
        this.#pushes.set(seq, p)
        if (!this.#send(authority, { op: 'push', seq, records: batch })) this.#pushLost(seq, p, `not delivered to ${authority}: not connected`)
        if (this.#pushes.has(seq)) {
          pushed += batch.length
          for (const rec of batch) this.#o.events.publish({ type: 'placement.handoff', kind: rec.kind, key: rec.key, outcome: 'released', peer: authority, version: rec.version })
        }
      }
    }
    return pushed
  }

  #send(authority: string, m: HandoffMessage): boolean {
    let body: Uint8Array
    try {
      body = encodeToBytes(this.#o.codec, m)
    } catch (e) {
      if (m.op === 'pull' || m.op === 'took' || m.op === 'stored') throw e
      // A snapshot the codec cannot carry: send the records without it, with the reason.
      const err = toGrainClusterError(e)
      const strip = (rs: ReleasedRecord[]): ReleasedRecord[] => rs.map((r) => ({ kind: r.kind, key: r.key, version: r.version, reason: `snapshot could not be encoded: ${err.reason}` }))
      body = encodeToBytes(this.#o.codec, { ...m, records: strip(m.records) })
    }
    const frame = new Uint8Array(body.length + 1)
    frame[0] = FRAME_HANDOFF
    frame.set(body, 1)
    try {
      // Past the buffer limit: a refusal while connected would never be retried (#sendAgain runs on peer-up).
      return this.#o.transport.send(authority, frame, true)
    } catch (e) {
      if (GrainClusterError.is(e)) return false
      throw e
    }
  }

  #sweepInbox(): void {
    if (this.#inbox.size < 1_000) return
    const now = performance.now()
    for (const [k, e] of this.#inbox) if (e.expiresAtMs <= now) this.#inbox.delete(k)
  }
}

const PUSH_BATCH = 256
/** Membership events come in bursts; one rebalance per burst. */
const REBALANCE_DEBOUNCE_MS = 50
