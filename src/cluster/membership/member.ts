/**
 * A cluster member as the replicated membership table holds it, and the
 * merge rule that makes the table a join-semilattice: merging is
 * commutative, associative and idempotent, so every node that has seen the
 * same set of changes holds the same table, whatever order they came in.
 *
 *   status precedence   joining < up < leaving < exiting < down < removed
 *
 * Same incarnation (nodeId): the later status wins and the earliest
 * upNumber is kept. Two incarnations of one authority (spec 1.4) are kept
 * side by side; the one that holds the authority is chosen by
 * incarnationWins (a removed one always gives way to a new one, otherwise
 * the older member wins). A losing active incarnation is a rejected view.
 */

import type { MemberStatus } from '../../observability/events.js'

export type { MemberStatus }

export interface Member {
  readonly authority: string
  readonly nodeId: string
  readonly status: MemberStatus
  /** Order in which members became Up (1 = first); 0 while joining. The leader assigns it. */
  readonly upNumber: number
}

const PRECEDENCE: Record<MemberStatus, number> = { joining: 0, up: 1, leaving: 2, exiting: 3, down: 4, removed: 5 }

export function statusPrecedence(s: MemberStatus): number {
  return PRECEDENCE[s]
}

/** Members that still take part: not Down, not Removed. */
export function isActive(m: Member): boolean {
  return m.status !== 'down' && m.status !== 'removed'
}

export function sameMember(a: Member, b: Member): boolean {
  return a.authority === b.authority && a.nodeId === b.nodeId && a.status === b.status && a.upNumber === b.upNumber
}

function minUp(a: number, b: number): number {
  if (a === 0) return b
  if (b === 0) return a
  return Math.min(a, b)
}

/**
 * True when incarnation `a` should hold the authority rather than `b`:
 * an active incarnation beats a removed one; otherwise the older member
 * (lower upNumber; one that is not Up yet loses to one that is), then the
 * smaller nodeId.
 */
export function incarnationWins(a: Member, b: Member): boolean {
  const aGone = a.status === 'removed'
  const bGone = b.status === 'removed'
  if (aGone !== bGone) return bGone
  if (a.upNumber !== b.upNumber) {
    if (a.upNumber === 0) return false
    if (b.upNumber === 0) return true
    return a.upNumber < b.upNumber
  }
  return a.nodeId < b.nodeId
}

/**
 * Merge two views of ONE incarnation (same authority and nodeId): the later
 * status wins and the earliest upNumber is kept. Different incarnations are
 * never merged: the table keeps each and picks the holder with
 * incarnationWins, which keeps the whole table a lattice.
 */
export function mergeMember(a: Member, b: Member): Member {
  const status = PRECEDENCE[a.status] >= PRECEDENCE[b.status] ? a.status : b.status
  const upNumber = minUp(a.upNumber, b.upNumber)
  if (status === a.status && upNumber === a.upNumber) return a
  if (status === b.status && upNumber === b.upNumber) return b
  return { authority: a.authority, nodeId: a.nodeId, status, upNumber }
}

/** Stable order of members: by upNumber (oldest first, joining last), then authority. */
export function compareMembers(a: Member, b: Member): number {
  const ua = a.upNumber === 0 ? Number.MAX_SAFE_INTEGER : a.upNumber
  const ub = b.upNumber === 0 ? Number.MAX_SAFE_INTEGER : b.upNumber
  if (ua !== ub) return ua - ub
  return a.authority < b.authority ? -1 : a.authority > b.authority ? 1 : 0
}
