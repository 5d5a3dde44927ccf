/**
 * Serving lease: a node serves grains only while it has recently heard from
 * enough members to be on the majority side. Sans-I/O (time passed in).
 *
 * Why a lease and not just "am I the minority?": a node cut off from the
 * others learns that it is in the minority from its failure detector, at
 * about the same moment the majority's detectors flag it and start
 * re-activating its keys elsewhere. Without an ordering between the two,
 * both sides could run the same key for a moment. The lease orders them:
 *
 *   the majority flags a member no sooner than (last heartbeat received from
 *   it) + heartbeat interval + acceptable pause (φ reaches its threshold
 *   later still), and that last heartbeat was sent at most one interval
 *   before the cut; the member itself stops serving at most `leaseMs` after
 *   the last acknowledgement it received from a majority, itself no later
 *   than the cut.
 *
 * Any cluster frame from a member (gossip, heartbeat, acknowledgement)
 * counts as hearing from it. Limit: above `directLimit` members (2 × the
 * monitoring fan-out + 1) a node only exchanges frames with its ring
 * neighbours, so the lease is judged among those; the strict ordering
 * argument below holds for clusters up to that size.
 *
 * With `leaseMs` = the acceptable heartbeat pause (the default), the member
 * stops at cut + pause while the majority takes over no sooner than cut +
 * pause + (φ margin, ~0.5 s with the documented profiles). Heard times are
 * real arrival times: a node whose own event loop stalled past its lease
 * (GC, SIGSTOP) finds it expired when it wakes, even though its failure
 * detector forgives the silence it caused.
 */

import { sideHasMajority } from '../membership/downing.js'
import type { Member } from '../membership/member.js'

export class ServingLease {
  readonly leaseMs: number
  readonly #heard = new Map<string, number>()

  /**
   * Up to this many members every node hears from every other directly
   * (gossip, heartbeats both ways); above it, only ring neighbours count.
   */
  readonly directLimit: number

  constructor(leaseMs: number, directLimit = Number.POSITIVE_INFINITY) {
    this.leaseMs = leaseMs
    this.directLimit = directLimit
  }

  /** A heartbeat (or its acknowledgement) arrived from `authority` at `nowMs`; also called when monitoring starts. */
  heard(authority: string, nowMs: number): void {
    const prev = this.#heard.get(authority)
    if (prev === undefined || nowMs > prev) this.#heard.set(authority, nowMs)
  }

  forget(authority: string): void {
    this.#heard.delete(authority)
    this.#firstSeen.delete(authority)
  }

  /** For error reasons: how long ago each other voter was last heard from. */
  describe(members: readonly Member[], self: string, nowMs: number): string {
    const parts: string[] = []
    for (const m of members) {
      if (m.authority === self || (m.status !== 'up' && m.status !== 'leaving')) continue
      const at = this.#heard.get(m.authority)
      parts.push(`${m.authority} ${at === undefined ? 'never heard' : `${Math.round(nowMs - at)} ms ago`}`)
    }
    return parts.join(', ')
  }

  /** When `authority` was last heard from, if ever. */
  lastHeardMs(authority: string): number | undefined {
    return this.#heard.get(authority)
  }

  /**
   * True while this node heard, within the lease, from enough of the Up and
   * Leaving members to be on the majority side (same rule as downing: more
   * than half, ties to the side with the first seed).
   */
  valid(members: readonly Member[], seeds: readonly string[], self: string, nowMs: number): boolean {
    const stale = new Set<string>()
    // In a large cluster a node exchanges frames with its ring neighbours
    // only: judge by those it has ever heard from (documented limit).
    const large = members.length > this.directLimit
    const voters = large ? members.filter((m) => m.authority === self || this.#heard.has(m.authority)) : members
    for (const m of voters) {
      if (m.authority === self) continue
      let at = this.#heard.get(m.authority)
      if (at === undefined) {
        // A member not heard from yet (it just came Up): it counts from when we first saw it.
        at = this.#firstSeen.get(m.authority)
        if (at === undefined) this.#firstSeen.set(m.authority, (at = nowMs))
      }
      if (nowMs - at > this.leaseMs) stale.add(m.authority)
    }
    return sideHasMajority({ members: voters, unreachable: stale, seeds, self })
  }
  readonly #firstSeen = new Map<string, number>()
}
