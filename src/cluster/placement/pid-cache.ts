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
  readonly kind: string
  value: V
  expiresAtMs: number
  ref: boolean
  /** The entry of another kind with the same key string (rare: kinds rarely share keys). */
  next: Entry<V> | undefined
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

  /** Cached entries (all kinds). */
  get size(): number {
    return this.#size
  }
  #size = 0

  /**
   * Keyed by the key string alone, kinds chained per key: a lookup hashes the
   * caller's key string (its hash is cached on the string) instead of
   * building and hashing a `kind + key` string per call (~250 ns).
   */
  get(kind: string, key: string, nowMs: number): V | undefined {
    let e = this.#entries.get(key)
    while (e !== undefined && e.kind !== kind) e = e.next
    if (e === undefined) {
      this.stats.misses++
      return undefined
    }
    if (e.expiresAtMs <= nowMs) {
      this.#unlink(key, e)
      this.stats.expired++
      this.stats.misses++
      return undefined
    }
    this.stats.hits++
    e.ref = true
    return e.value
  }

  /** Returns the evicted key (its entries of every kind), if the cache was full. */
  set(kind: string, key: string, value: V, nowMs: number): string | undefined {
    const head = this.#entries.get(key)
    for (let e = head; e !== undefined; e = e.next) {
      if (e.kind === kind) {
        e.value = value
        e.expiresAtMs = nowMs + this.ttlMs
        e.ref = false
        return undefined
      }
    }
    // New entries go to the back of the clock, with the key's other kinds.
    if (head !== undefined) this.#entries.delete(key)
    this.#entries.set(key, { kind, value, expiresAtMs: nowMs + this.ttlMs, ref: false, next: head })
    this.#size++
    if (this.#size <= this.maxEntries) return undefined
    // Second chance: at most one pass clears every bit, so this ends.
    for (;;) {
      const [k, e] = this.#entries.entries().next().value as [string, Entry<V>]
      this.#entries.delete(k)
      let referenced = false
      for (let x: Entry<V> | undefined = e; x !== undefined; x = x.next) {
        if (x.ref || k === key) referenced = true
        x.ref = false
      }
      if (referenced) {
        this.#entries.set(k, e)
        if (k !== key) continue
        // Only the new key is left at the front: evict the next one.
        const [k2, e2] = this.#entries.entries().next().value as [string, Entry<V>]
        if (k2 === key) return undefined
        this.#entries.delete(k2)
        this.#dropChain(e2)
        this.stats.evicted++
        return k2
      }
      this.#dropChain(e)
      this.stats.evicted++
      return k
    }
  }

  #dropChain(e: Entry<V> | undefined): void {
    for (; e !== undefined; e = e.next) this.#size--
  }

  #unlink(key: string, target: Entry<V>): void {
    const head = this.#entries.get(key)
    if (head === target) {
      if (target.next === undefined) this.#entries.delete(key)
      else this.#entries.set(key, target.next)
    } else {
      for (let e = head; e !== undefined; e = e.next) {
        if (e.next === target) {
          e.next = target.next
          break
        }
      }
    }
    this.#size--
  }

  /** Drop every entry placed on `authority` (any incarnation). Returns how many. */
  invalidateAuthority(authority: string): number {
    let n = 0
    for (const [k, head] of [...this.#entries]) {
      for (let e: Entry<V> | undefined = head; e !== undefined; e = e.next) {
        if (e.value.authority === authority) {
          this.#unlink(k, e)
          n++
        }
      }
    }
    this.stats.invalidated += n
    return n
  }

  /** Drop everything (a membership change can move any key). Returns how many. */
  clear(): number {
    const n = this.#size
    this.#entries.clear()
    this.#size = 0
    this.stats.invalidated += n
    return n
  }
}
