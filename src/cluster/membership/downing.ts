/**
 * Downing by consensus (spec 7.3): who may down an unreachable member.
 *
 * Rule ("keep majority, seeds break ties"): only a side that can reach a
 * strict majority of the voting members (Up and Leaving) may down the
 * members it cannot reach. With exactly half on each side, the side that
 * holds the first configured seed (among the voters) wins. The two sides of
 * any partition therefore never both down each other, so the cluster never
 * splits into two. The price: when no side has a majority (e.g. three ways,
 * none above half) nobody downs anyone until the partition heals or an
 * operator downs members by hand. A minority side also refuses membership
 * writes (joins, leader actions) until it can reach a majority again.
 */

import type { Member } from './member.js'

export interface SideInput {
  /** Active members (not Down/Removed) in the local merged view. */
  members: readonly Member[]
  /** Authorities this side cannot reach (merged reachability). */
  unreachable: ReadonlySet<string>
  /** Configured seed authorities, in priority order. */
  seeds: readonly string[]
  /** The deciding node: always counted on its own side. */
  self: string
}

/** True when the deciding node's side may make membership decisions. */
export function sideHasMajority(i: SideInput): boolean {
  const voters = i.members.filter((m) => m.status === 'up' || m.status === 'leaving')
  if (voters.length === 0) return true
  const reachable = voters.filter((m) => m.authority === i.self || !i.unreachable.has(m.authority))
  if (reachable.length * 2 > voters.length) return true
  if (reachable.length * 2 < voters.length) return false
  const voterSet = new Set(voters.map((v) => v.authority))
  const tieBreaker = i.seeds.find((s) => voterSet.has(s)) ?? [...voterSet].sort()[0]
  return reachable.some((m) => m.authority === tieBreaker)
}

/**
 * The leader: the first reachable Up/Leaving member by seed priority, then
 * by age (upNumber), then authority. Every node that has the same view picks
 * the same leader. Undefined while nobody is Up.
 */
export function leaderOf(members: readonly Member[], unreachable: ReadonlySet<string>, seeds: readonly string[]): Member | undefined {
  let best: Member | undefined
  let bestRank: [number, number, string] | undefined
  for (const m of members) {
    if ((m.status !== 'up' && m.status !== 'leaving') || unreachable.has(m.authority)) continue
    const seedIdx = seeds.indexOf(m.authority)
    const rank: [number, number, string] = [seedIdx < 0 ? Number.MAX_SAFE_INTEGER : seedIdx, m.upNumber === 0 ? Number.MAX_SAFE_INTEGER : m.upNumber, m.authority]
    if (bestRank === undefined || rank[0] < bestRank[0] || (rank[0] === bestRank[0] && (rank[1] < bestRank[1] || (rank[1] === bestRank[1] && rank[2] < bestRank[2])))) {
      best = m
      bestRank = rank
    }
  }
  return best
}
