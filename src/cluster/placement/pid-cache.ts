/**
 * PidCache: grain key → resolved owner for a short time, so a hot key is
 * placed once, not on every call. Sans-I/O (time is passed in).
 *
 *   Eviction is CLOCK (second chance) over the Map's insertion order: a hit
 *   only sets the entry's reference bit, so the hot path is one Map lookup
 *   and no re-insert; when the cache is full, referenced entries at the
 *   front get their bit cleared and move to the back, and the first
 *   unreferenced one is evicted (an approximation of LRU with O(1)
 *   amortised cost). TTL bounds staleness; membership changes and
 *   quarantine invalidate at once (design 3.8: invalidation is mandatory on
 *   a gossip delta that moves an owner, on Removed/Unreachable, on
 *   quarantine and on release).
 *
 * The cached value is the caller's (the placement router keeps its routing
 * decision there), plus the owner's authority and NodeId for invalidation.
 */

export interface CachedPid {
  readonly authority: string
  readonly nodeId: string
}

interface Entry<V> {
  readonly value: V
  readonly expiresAtMs: number
  ref: boolean
}

export interface PidCacheStats {
  hits: number
  misses: number
  expired: number
  evicted: number
  invalidated: number
}

export const DEFAULT_PID_CACHE_TTL_MS = 30_000
export const DEFAULT_PID_CACHE_MAX_ENTRIES = 100_000

export class PidCache<V extends CachedPid = CachedPid> {
  readonly ttlMs: number
  readonly maxEntries: number
  readonly stats: PidCacheStats = { hits: 0, misses: 0, expired: 0, evicted: 0, invalidated: 0 }
  readonly #entries = new Map<string, Entry<V>>()

  constructor(o: { ttlMs?: number; maxEntries?: number } = {}) {
    this.ttlMs = o.ttlMs ?? DEFAULT_PID_CACHE_TTL_MS
    this.maxEntries = o.maxEntries ?? DEFAULT_PID_CACHE_MAX_ENTRIES
  }

  get size(): number {
    return this.#entries.size
  }

  static keyOf(kind: string, key: string): string {
    return `${kind}\u0000${key}`
  }

  get(cacheKey: string, nowMs: number): V | undefined {
    const e = this.#entries.get(cacheKey)
    if (e === undefined) {
      this.stats.misses++
      return undefined
    }
    if (e.expiresAtMs <= nowMs) {
      this.#entries.delete(cacheKey)
      this.stats.expired++
      this.stats.misses++
      return undefined
    }
    this.stats.hits++
    e.ref = true
    return e.value
  }

  /** Returns the evicted key, if the cache was full. */
  set(cacheKey: string, value: V, nowMs: number): string | undefined {
    this.#entries.delete(cacheKey)
    this.#entries.set(cacheKey, { value, expiresAtMs: nowMs + this.ttlMs, ref: false })
    if (this.#entries.size <= this.maxEntries) return undefined
    // Second chance: at most one pass clears every bit, so this ends.
    for (;;) {
      const [k, e] = this.#entries.entries().next().value as [string, Entry<V>]
      this.#entries.delete(k)
      if (e.ref && k !== cacheKey) {
        e.ref = false
        this.#entries.set(k, e)
        continue
      }
      if (k === cacheKey) {
        // Only the new entry is unreferenced at the front: keep it, evict the next.
        this.#entries.set(k, e)
        continue
      }
      this.stats.evicted++
      return k
    }
  }

  /** Drop every entry placed on `authority` (any incarnation). Returns how many. */
  invalidateAuthority(authority: string): number {
    let n = 0
    for (const [k, e] of this.#entries) {
      if (e.value.authority === authority) {
        this.#entries.delete(k)
        n++
      }
    }
    this.stats.invalidated += n
    return n
  }

  /** Drop everything (a membership change can move any key). Returns how many. */
  clear(): number {
    const n = this.#entries.size
    this.#entries.clear()
    this.stats.invalidated += n
    return n
  }
}
