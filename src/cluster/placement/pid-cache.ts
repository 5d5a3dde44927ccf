/**
 * PidCache: grain key → resolved owner (PID) for a short time, so a hot key
 * is placed once, not on every call. Sans-I/O (time is passed in).
 *
 *   Map insertion order = LRU order: a hit re-inserts the entry at the end,
 *   overflow evicts from the front. TTL bounds staleness; membership changes
 *   and quarantine invalidate by authority at once (design 3.8: invalidation
 *   is mandatory on a gossip delta that moves an owner, on Removed/Unreachable,
 *   on quarantine and on release).
 */

export interface CachedPid {
  readonly authority: string
  readonly nodeId: string
  /** Canonical PID text. */
  readonly pid: string
}

interface Entry extends CachedPid {
  expiresAtMs: number
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

export class PidCache {
  readonly ttlMs: number
  readonly maxEntries: number
  readonly stats: PidCacheStats = { hits: 0, misses: 0, expired: 0, evicted: 0, invalidated: 0 }
  readonly #entries = new Map<string, Entry>()

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

  get(cacheKey: string, nowMs: number): CachedPid | undefined {
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
    // Most recently used goes last; skip the re-insert when it already is.
    if (this.#entries.size > 1) {
      this.#entries.delete(cacheKey)
      this.#entries.set(cacheKey, e)
    }
    return e
  }

  /** Returns the evicted (least recently used) key, if the cache was full. */
  set(cacheKey: string, value: CachedPid, nowMs: number): string | undefined {
    this.#entries.delete(cacheKey)
    this.#entries.set(cacheKey, { ...value, expiresAtMs: nowMs + this.ttlMs })
    if (this.#entries.size <= this.maxEntries) return undefined
    const oldest = this.#entries.keys().next().value as string
    this.#entries.delete(oldest)
    this.stats.evicted++
    return oldest
  }

  /** Drop every entry placed on `authority` (any incarnation). Returns how many. */
  invalidateAuthority(authority: string): number {
    let n = 0
    for (const [k, e] of this.#entries) {
      if (e.authority === authority) {
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
