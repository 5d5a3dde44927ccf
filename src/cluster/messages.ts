/**
 * Shape checks for cluster messages arriving from the network. A peer that
 * passed the handshake can still be buggy or malicious: a message that does
 * not have exactly the expected shape is refused as a whole (typed
 * ERR_FRAME_MALFORMED) before it can touch the member table.
 */

import { GrainClusterError } from '../common/errors.js'
import type { ClusterMessage } from './cluster-core.js'
import type { MemberStatus } from './membership/member.js'
import type { Change, VersionVector } from './membership/member-table.js'

const STATUSES: ReadonlySet<string> = new Set<MemberStatus>(['joining', 'up', 'leaving', 'exiting', 'down', 'removed'])
/** Longest id a cluster message may carry (authorities, node ids, replicated data keys). */
export const MAX_ID = 512
/** Entries a single message may carry (a table of 100 k members still fits). */
const MAX_ENTRIES = 1_000_000

function bad(reason: string): GrainClusterError {
  return new GrainClusterError('ERR_FRAME_MALFORMED', `malformed cluster message: ${reason}`)
}

function isObj(u: unknown): u is Record<string, unknown> {
  return typeof u === 'object' && u !== null && !Array.isArray(u)
}

function str(u: unknown, what: string): string {
  if (typeof u !== 'string' || u.length === 0 || u.length > MAX_ID) throw bad(`${what} must be a non-empty string of at most ${MAX_ID} characters`)
  return u
}

function seq(u: unknown, what: string): number {
  if (typeof u !== 'number' || !Number.isSafeInteger(u) || u < 0) throw bad(`${what} must be a non-negative integer`)
  return u
}

function vv(u: unknown, what: string): VersionVector {
  if (!isObj(u)) throw bad(`${what} must be a version vector object`)
  const out: VersionVector = {}
  let n = 0
  for (const [k, v] of Object.entries(u)) {
    if (++n > MAX_ENTRIES) throw bad(`${what} has too many entries`)
    out[str(k, `${what} key`)] = seq(v, `${what}[${k}]`)
  }
  return out
}

/** Nesting a replicated data value may have (topic specs need 2). */
const MAX_DATA_DEPTH = 8

/** A replicated data value must be plain JSON, so every node merges and compares the same thing. */
function jsonValue(u: unknown, what: string, depth = 0): unknown {
  if (u === null || typeof u === 'boolean' || typeof u === 'string') return u
  if (typeof u === 'number') {
    if (!Number.isFinite(u)) throw bad(`${what} must be a finite number`)
    return u
  }
  if (depth >= MAX_DATA_DEPTH) throw bad(`${what} nests deeper than ${MAX_DATA_DEPTH}`)
  if (Array.isArray(u)) return u.map((v, i) => jsonValue(v, `${what}[${i}]`, depth + 1))
  const proto = isObj(u) ? Object.getPrototypeOf(u) : undefined
  if (proto !== Object.prototype && proto !== null) throw bad(`${what} must be JSON`)
  // fromEntries defines own properties, so a '__proto__' key stays data.
  return Object.fromEntries(Object.entries(u as object).map(([k, v]) => [k, jsonValue(v, `${what}.${k}`, depth + 1)]))
}

function change(u: unknown, i: number): Change {
  if (!isObj(u)) throw bad(`changes[${i}] must be an object`)
  const origin = str(u.origin, `changes[${i}].origin`)
  const s = seq(u.seq, `changes[${i}].seq`)
  if (s === 0) throw bad(`changes[${i}].seq must be ≥ 1`)
  if (u.kind === 'member') {
    const m = u.member
    if (!isObj(m)) throw bad(`changes[${i}].member must be an object`)
    if (typeof m.status !== 'string' || !STATUSES.has(m.status)) throw bad(`changes[${i}].member.status is not a member status`)
    return {
      kind: 'member',
      origin,
      seq: s,
      member: { authority: str(m.authority, `changes[${i}].member.authority`), nodeId: str(m.nodeId, `changes[${i}].member.nodeId`), status: m.status as MemberStatus, upNumber: seq(m.upNumber, `changes[${i}].member.upNumber`) },
    }
  }
  if (u.kind === 'reach') {
    if (typeof u.reachable !== 'boolean') throw bad(`changes[${i}].reachable must be a boolean`)
    return { kind: 'reach', origin, seq: s, subject: str(u.subject, `changes[${i}].subject`), subjectNodeId: str(u.subjectNodeId, `changes[${i}].subjectNodeId`), reachable: u.reachable }
  }
  if (u.kind === 'data') {
    const clock = seq(u.clock, `changes[${i}].clock`)
    if (clock === 0) throw bad(`changes[${i}].clock must be ≥ 1`)
    if (!('value' in u)) throw bad(`changes[${i}].value is missing`)
    return { kind: 'data', origin, seq: s, key: str(u.key, `changes[${i}].key`), clock, value: jsonValue(u.value, `changes[${i}].value`) }
  }
  throw bad(`changes[${i}].kind must be 'member', 'reach' or 'data'`)
}

function changes(u: unknown): Change[] {
  if (!Array.isArray(u)) throw bad('changes must be an array')
  if (u.length > MAX_ENTRIES) throw bad('too many changes')
  return u.map(change)
}

/** Validate and normalise a decoded cluster message (copies only the known fields). */
export function parseClusterMessage(u: unknown): ClusterMessage {
  if (!isObj(u) || typeof u.t !== 'string') throw bad('not a message object with a type')
  switch (u.t) {
    case 'status': {
      const digest = str(u.digest, 'digest')
      if (u.seen === null) return { t: 'status', digest, seen: null }
      if (!Array.isArray(u.seen) || u.seen.length > MAX_ENTRIES) throw bad('seen must be null or an array')
      return { t: 'status', digest, seen: u.seen.map((a, i) => str(a, `seen[${i}]`)) }
    }
    case 'pull':
      return { t: 'pull', vv: vv(u.vv, 'vv') }
    case 'delta': {
      const m: ClusterMessage = { t: 'delta', vv: vv(u.vv, 'vv'), changes: changes(u.changes) }
      return u.back === undefined ? m : { ...m, back: vv(u.back, 'back') }
    }
    case 'welcome':
      return { t: 'welcome', vv: vv(u.vv, 'vv'), changes: changes(u.changes) }
    case 'join':
      return { t: 'join', nodeId: str(u.nodeId, 'nodeId') }
    case 'join-refused':
      return { t: 'join-refused', code: str(u.code, 'code'), reason: typeof u.reason === 'string' ? u.reason.slice(0, 2_000) : 'no reason given' }
    case 'hb':
    case 'hb-ack':
      return { t: u.t, n: seq(u.n, 'n') }
    default:
      throw bad(`unknown message type ${JSON.stringify(u.t).slice(0, 40)}`)
  }
}
