/**
 * The replicated membership table: member entries and reachability records,
 * each tagged with the dot (origin node, sequence number) of the write that
 * produced it, plus a version vector of the dots seen per origin.
 *
 *   entry                 written by                 merge
 *   member/<auth>/<node>  any node (join, leave,     mergeMember (status
 *                         leader actions, downing)   lattice per incarnation)
 *   reach/<o>/<s>/<node>  observer o only            highest seq of o wins
 *   data/<key>            any node (replicated data, highest (clock, origin)
 *                         e.g. pubsub topics)        wins: a Lamport LWW map
 *
 * Each incarnation (authority + nodeId) is its own entry, so merging stays
 * a lattice even when two incarnations of one authority meet; which one
 * holds the authority is derived (incarnationWins), the others are shadows
 * that the leader eventually marks Removed.
 *
 * Invariant: vv[o] = c means this table holds the effect of every write
 * (o, ≤ c), either the entry itself or one that superseded it. So the delta
 * a peer needs is exactly the entries whose dot is beyond the peer's vv
 * (deltaFor), and after applying it the peer may raise its vv to ours.
 * Two tables with equal version vectors are equal, which is what the digest
 * compares.
 *
 * Sans-I/O: no clocks, no sockets; the caller passes everything in.
 */

import { type Member, type MemberStatus, incarnationWins, isActive, mergeMember, sameMember } from './member.js'

export interface MemberChange {
  readonly kind: 'member'
  readonly origin: string
  readonly seq: number
  readonly member: Member
}

export interface ReachChange {
  readonly kind: 'reach'
  /** The observer; only it writes its own records. */
  readonly origin: string
  readonly seq: number
  readonly subject: string
  readonly subjectNodeId: string
  readonly reachable: boolean
}

/**
 * An entry of the replicated data map that rides on gossip (Proto.Actor's
 * gossip state, Akka's distributed data in its simplest form): a
 * last-writer-wins register per key. `clock` is a Lamport time (one more
 * than the highest clock this node had seen for the key), so a write made
 * after seeing another one always wins over it; concurrent writes are
 * ordered by origin. Entries outlive the node that wrote them, and a
 * delete is a tombstone (value null) so it wins over the value it deleted.
 */
export interface DataChange {
  readonly kind: 'data'
  readonly origin: string
  readonly seq: number
  readonly key: string
  readonly clock: number
  /** A JSON value; null = deleted. */
  readonly value: unknown
}

export type Change = MemberChange | ReachChange | DataChange

export type VersionVector = Record<string, number>

export interface ApplyResult {
  /** True when the table's content changed. */
  changed: boolean
  /** Active incarnations that lost an authority conflict during the merge. */
  rejected: Member[]
  /** Authorities whose member entry or reachability records changed. */
  touched: Set<string>
  /** Keys of the replicated data map whose value changed. */
  dataTouched: Set<string>
}

/** A data entry's size in a gossip message, roughly: key, value as JSON, and the fixed fields with their names (measured with the binary codec). */
function entryBytes(c: DataChange): number {
  return c.key.length + c.origin.length + (c.value === null ? 4 : JSON.stringify(c.value).length) + 104
}

/** (clock, origin) order of data writes: true when `a` wins over `b`. */
function dataWins(a: DataChange, b: DataChange): boolean {
  return a.clock > b.clock || (a.clock === b.clock && a.origin > b.origin)
}

function reachKey(observer: string, subject: string, nodeId: string): string {
  return `${observer}\u0000${subject}\u0000${nodeId}`
}

/** 64-bit FNV-1a over a string, as 16 hex digits (two 32-bit lanes). */
function digestOf(text: string): string {
  let h1 = 0x811c9dc5
  let h2 = 0x050c5d1f
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 0x01000193)
    h2 = Math.imul(h2 ^ c, 0x01000193) ^ (h1 >>> 7)
  }
  return (h1 >>> 0).toString(16).padStart(8, '0') + (h2 >>> 0).toString(16).padStart(8, '0')
}

export class MemberTable {
  readonly self: string
  /** authority → nodeId → latest change of that incarnation. */
  readonly #members = new Map<string, Map<string, MemberChange>>()
  readonly #reach = new Map<string, ReachChange>()
  readonly #data = new Map<string, DataChange>()
  /** Approximate size of the data entries as gossip carries them (dataBytes). */
  #dataBytes = 0
  /** Data keys this table (this incarnation) wrote itself; see #restampOwnData. */
  readonly #ownData = new Set<string>()
  readonly #vv = new Map<string, number>()
  #digest: string | undefined

  constructor(self: string) {
    this.self = self
  }

  // ------------------------------------------------------------------ reads

  /** The incarnation that holds `authority` (see incarnationWins). */
  member(authority: string): Member | undefined {
    return this.#holder(authority)?.member
  }

  #holder(authority: string): MemberChange | undefined {
    const incs = this.#members.get(authority)
    if (incs === undefined) return undefined
    if (incs.size === 1) return incs.values().next().value
    let best: MemberChange | undefined
    for (const c of incs.values()) if (best === undefined || incarnationWins(c.member, best.member)) best = c
    return best
  }

  // Derived lists, rebuilt after a member write (reads vastly outnumber writes).
  #allCache: readonly Member[] | undefined
  #activeCache: readonly Member[] | undefined

  /** A specific incarnation, holder or not. */
  incarnation(authority: string, nodeId: string): Member | undefined {
    return this.#members.get(authority)?.get(nodeId)?.member
  }

  /** Active incarnations that do not hold their authority (conflict losers). */
  shadows(): Member[] {
    const out: Member[] = []
    for (const [a, incs] of this.#members) {
      if (incs.size < 2) continue
      const holder = this.member(a)
      for (const c of incs.values()) if (c.member !== holder && isActive(c.member)) out.push(c.member)
    }
    return out
  }

  /** The holder of every authority, Removed tombstones included. Do not mutate. */
  members(): readonly Member[] {
    if (this.#allCache === undefined) {
      const out: Member[] = []
      for (const a of this.#members.keys()) out.push(this.member(a)!)
      this.#allCache = out
    }
    return this.#allCache
  }

  /** Members not Down or Removed. Do not mutate. */
  activeMembers(): readonly Member[] {
    this.#activeCache ??= this.members().filter(isActive)
    return this.#activeCache
  }

  get size(): number {
    return this.#members.size
  }

  /**
   * Unreachable in the merged view: some active observer's latest record
   * about this incarnation says so. Records of observers that are Down or
   * Removed no longer count.
   */
  isUnreachable(authority: string): boolean {
    return this.unreachable().has(authority)
  }

  /** Every authority unreachable in the merged view; cached per table version. */
  unreachable(): ReadonlySet<string> {
    const d = this.digest()
    if (this.#unreachableAt !== d) {
      const out = new Set<string>()
      for (const r of this.#reach.values()) {
        if (r.reachable || out.has(r.subject)) continue
        if (this.unreachableObservers(r.subject).length > 0) out.add(r.subject)
      }
      this.#unreachableSet = out
      this.#unreachableAt = d
    }
    return this.#unreachableSet
  }
  #unreachableSet: ReadonlySet<string> = new Set()
  #unreachableAt = ''

  unreachableObservers(authority: string): string[] {
    const m = this.member(authority)
    if (m === undefined) return []
    const out: string[] = []
    for (const r of this.#reach.values()) {
      if (r.subject !== authority || r.subjectNodeId !== m.nodeId || r.reachable) continue
      const obs = this.member(r.origin)
      if (obs !== undefined && isActive(obs)) out.push(r.origin)
    }
    return out
  }

  /** Node whose write produced the current entry of `authority`. */
  originOf(authority: string): string | undefined {
    return this.#holder(authority)?.origin
  }

  /** This observer's own latest record about `authority` (undefined = never written). */
  ownRecord(authority: string, nodeId: string): boolean | undefined {
    return this.#reach.get(reachKey(this.self, authority, nodeId))?.reachable
  }

  vv(): VersionVector {
    const out: VersionVector = {}
    for (const [o, s] of this.#vv) out[o] = s
    return out
  }

  /** Equal digests ⇔ equal version vectors ⇔ equal tables. */
  digest(): string {
    if (this.#digest === undefined) {
      const parts = [...this.#vv].map(([o, s]) => `${o}=${s}`)
      parts.sort()
      this.#digest = digestOf(parts.join(','))
    }
    return this.#digest
  }

  /** True when `peer` holds writes this table lacks. */
  isBehind(peer: VersionVector): boolean {
    for (const o in peer) if ((peer[o] ?? 0) > (this.#vv.get(o) ?? 0)) return true
    return false
  }

  /**
   * This table has seen writes the peer has not. Not the same as a non-empty
   * deltaFor(peer): a write whose entry was later superseded by another
   * origin's write leaves no change to send, yet the peer must still learn
   * the version, or the two digests never agree.
   */
  isAheadOf(peer: VersionVector): boolean {
    for (const [o, s] of this.#vv) if (s > (peer[o] ?? 0)) return true
    return false
  }

  /** Entries a peer with version vector `peer` has not seen. */
  deltaFor(peer: VersionVector): Change[] {
    const out: Change[] = []
    for (const incs of this.#members.values()) for (const c of incs.values()) if (c.seq > (peer[c.origin] ?? 0)) out.push(c)
    for (const c of this.#reach.values()) if (c.seq > (peer[c.origin] ?? 0)) out.push(c)
    for (const c of this.#data.values()) if (c.seq > (peer[c.origin] ?? 0)) out.push(c)
    return out
  }

  /** Everything, for a newcomer (spec 1.5: the handshake hands over the latest table). */
  snapshot(): { changes: Change[]; vv: VersionVector } {
    return { changes: this.deltaFor({}), vv: this.vv() }
  }

  // ----------------------------------------------------------------- writes

  #nextSeq(): number {
    const s = (this.#vv.get(this.self) ?? 0) + 1
    this.#vv.set(this.self, s)
    this.#digest = undefined
    return s
  }

  /**
   * Local write of a member entry, merged with what this incarnation has (a
   * write can only move it forward in the status lattice). Returns the
   * change, or undefined when it changed nothing.
   */
  writeMember(m: Member): MemberChange | undefined {
    const cur = this.#members.get(m.authority)?.get(m.nodeId)
    const next = cur === undefined ? m : mergeMember(cur.member, m)
    if (cur !== undefined && sameMember(cur.member, next)) return undefined
    const c: MemberChange = { kind: 'member', origin: this.self, seq: this.#nextSeq(), member: next }
    this.#put(c)
    return c
  }

  #put(c: MemberChange): void {
    this.#allCache = undefined
    this.#activeCache = undefined
    let incs = this.#members.get(c.member.authority)
    if (incs === undefined) this.#members.set(c.member.authority, (incs = new Map()))
    incs.set(c.member.nodeId, c)
  }

  /** Set a member's status (convenience over writeMember). */
  writeStatus(authority: string, status: MemberStatus, upNumber?: number, nodeId?: string): MemberChange | undefined {
    const cur = nodeId === undefined ? this.member(authority) : this.incarnation(authority, nodeId)
    if (cur === undefined) return undefined
    return this.writeMember({ ...cur, status, upNumber: upNumber ?? cur.upNumber })
  }

  /** This node's observation of a member's reachability. */
  writeReachability(subject: string, subjectNodeId: string, reachable: boolean): ReachChange | undefined {
    const key = reachKey(this.self, subject, subjectNodeId)
    const cur = this.#reach.get(key)
    // No record means reachable: only write the first "reachable" after an "unreachable".
    if ((cur === undefined && reachable) || cur?.reachable === reachable) return undefined
    const c: ReachChange = { kind: 'reach', origin: this.self, seq: this.#nextSeq(), subject, subjectNodeId, reachable }
    this.#reach.set(key, c)
    return c
  }

  /**
   * Local write of a replicated data entry (null deletes it). Returns the
   * change, or undefined when the key already holds an equal value (values
   * compare by their JSON text, so keep key order stable).
   */
  writeData(key: string, value: unknown): DataChange | undefined {
    const cur = this.#data.get(key)
    if (cur === undefined ? value === null : JSON.stringify(cur.value) === JSON.stringify(value)) return undefined
    const c: DataChange = { kind: 'data', origin: this.self, seq: this.#nextSeq(), key, clock: (cur?.clock ?? 0) + 1, value }
    this.#putData(c, cur)
    this.#ownData.add(key)
    return c
  }

  #putData(c: DataChange, cur: DataChange | undefined): void {
    if (cur !== undefined) this.#dataBytes -= entryBytes(cur)
    this.#dataBytes += entryBytes(c)
    this.#data.set(c.key, c)
  }

  /**
   * About how many bytes the data entries take in a full gossip message (a
   * newcomer's welcome carries them all), tombstones included: writers keep
   * it well under the transport's frame limit.
   */
  get dataBytes(): number {
    return this.#dataBytes
  }

  /** dataBytes after this table wrote `value` under `key` (null: the tombstone). */
  dataBytesWith(key: string, value: unknown): number {
    const cur = this.#data.get(key)
    return this.#dataBytes - (cur === undefined ? 0 : entryBytes(cur)) + entryBytes({ kind: 'data', origin: this.self, seq: 0, key, clock: 0, value })
  }

  /** The value of a replicated data key (undefined when absent or deleted). */
  data(key: string): unknown {
    const v = this.#data.get(key)?.value
    return v === null ? undefined : v
  }

  /** Live (not deleted) data entries whose key starts with `prefix`. */
  dataEntries(prefix: string): [string, unknown][] {
    const out: [string, unknown][] = []
    for (const [k, c] of this.#data) if (c.value !== null && k.startsWith(prefix)) out.push([k, c.value])
    return out
  }

  /** Merge a peer's changes, then take its version vector (see the invariant above). */
  apply(changes: readonly Change[], senderVV: VersionVector): ApplyResult {
    const result: ApplyResult = { changed: false, rejected: [], touched: new Set(), dataTouched: new Set() }
    for (const c of changes) {
      if (c.seq <= (this.#vv.get(c.origin) ?? 0)) continue
      if (c.kind === 'member') this.#applyMember(c, result)
      else if (c.kind === 'reach') this.#applyReach(c, result)
      else this.#applyData(c, result)
    }
    const ownBefore = this.#vv.get(this.self) ?? 0
    for (const o in senderVV) {
      const s = senderVV[o] ?? 0
      if (s > (this.#vv.get(o) ?? 0)) {
        this.#vv.set(o, s)
        this.#digest = undefined
        result.changed = true
      }
    }
    if ((this.#vv.get(this.self) ?? 0) > ownBefore) this.#restampOwnData(this.#vv.get(this.self)!)
    return result
  }

  #applyMember(c: MemberChange, result: ApplyResult): void {
    const a = c.member.authority
    const holderBefore = this.member(a)
    const cur = this.#members.get(a)?.get(c.member.nodeId)
    if (cur === undefined) this.#put(c)
    else {
      const merged = mergeMember(cur.member, c.member)
      if (sameMember(merged, cur.member)) {
        // Same value under two dots: keep one deterministically so tables agree.
        if (sameMember(cur.member, c.member) && (c.origin > cur.origin || (c.origin === cur.origin && c.seq > cur.seq))) this.#put(c)
        return
      }
      if (sameMember(merged, c.member)) this.#put(c)
      else this.#put({ kind: 'member', origin: this.self, seq: this.#nextSeq(), member: merged })
    }
    result.changed = true
    result.touched.add(a)
    // Two active incarnations of one authority: report the one that lost.
    const holder = this.member(a)!
    for (const inc of this.#members.get(a)!.values()) {
      if (inc.member.nodeId === holder.nodeId || !isActive(inc.member)) continue
      if (inc.member.nodeId === c.member.nodeId || holderBefore?.nodeId !== holder.nodeId) result.rejected.push(inc.member)
    }
  }

  #applyReach(c: ReachChange, result: ApplyResult): void {
    const key = reachKey(c.origin, c.subject, c.subjectNodeId)
    const cur = this.#reach.get(key)
    if (cur !== undefined && cur.seq >= c.seq) return
    this.#reach.set(key, c)
    if (cur?.reachable !== c.reachable) {
      result.changed = true
      result.touched.add(c.subject)
    }
  }

  /**
   * A peer has seen writes of this authority up to `seen`: an earlier
   * incarnation at the same address made them (origins are authorities).
   * Data this incarnation wrote before it learned that carries dots the
   * peers take for already seen, so it would never spread: give those
   * entries new dots (same clock and value, so the same write).
   */
  #restampOwnData(seen: number): void {
    for (const k of this.#ownData) {
      const c = this.#data.get(k)
      if (c !== undefined && c.origin === this.self && c.seq <= seen) this.#data.set(k, { ...c, seq: this.#nextSeq() })
    }
  }

  #applyData(c: DataChange, result: ApplyResult): void {
    const cur = this.#data.get(c.key)
    if (cur !== undefined && !dataWins(c, cur)) return
    this.#putData(c, cur)
    result.changed = true
    if (cur === undefined ? c.value !== null : JSON.stringify(cur.value) !== JSON.stringify(c.value)) result.dataTouched.add(c.key)
  }
}
