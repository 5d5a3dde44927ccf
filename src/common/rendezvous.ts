/**
 * Rendezvous (highest-random-weight) placement: the owner of a grain key is
 * the member whose hash(member, key) is highest (Thaler & Ravishankar,
 * "Using name-based mappings to increase hit rates", 1998). Every node with
 * the same member list picks the same owner, and when a member leaves only
 * its keys move (to the member with the next-highest weight); when one joins
 * it takes about 1/N of the keys from the others.
 *
 * Weights mix the member's NodeId (so a restarted incarnation is a new
 * candidate) with the key, through 32-bit FNV-1a and a murmur3 finalizer for
 * avalanche; ties (practically impossible) break on the NodeId.
 */

export interface PlacementCandidate {
  readonly authority: string
  readonly nodeId: string
}

function fnv1a(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Weight of `candidate` for `key`; the highest weight owns the key. */
export function rendezvousWeight(nodeId: string, kind: string, key: string): number {
  return fmix32(fnv1a(key, fnv1a(kind, fnv1a(nodeId)) ^ 0x9e3779b9))
}

/** The owner of kind/key among `candidates` (undefined when there are none). */
export function rendezvousOwner<C extends PlacementCandidate>(candidates: readonly C[], kind: string, key: string): C | undefined {
  let best: C | undefined
  let bestW = -1
  for (const c of candidates) {
    const w = rendezvousWeight(c.nodeId, kind, key)
    if (w > bestW || (w === bestW && best !== undefined && c.nodeId < best.nodeId)) {
      best = c
      bestW = w
    }
  }
  return best
}
