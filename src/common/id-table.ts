/**
 * A table of values keyed by u32 correlation ids, for calls in flight.
 *
 * Why not a Map: a Map's backing table is replaced as entries come and go,
 * and a replaced table that had reached the old generation keeps pointing
 * at the entries it held until the next full GC. Every young-generation GC
 * treats those pointers as live, so each finished call (its promise, its
 * closures and whatever they hold: a whole HTTP request) is copied and then
 * promoted, and the old generation fills with garbage that only a full GC
 * frees (measured on the HTTP front: ~0.5 MB promoted per scavenge at
 * 9.5 k calls/s with a Map, ~5 KB without). Here one slot array lives as
 * long as the table, and a finished call's slot is cleared at once.
 *
 * Ids are placed at `id & mask`; `reserve` hands out sequential ids whose
 * slot is free, so a lookup is one index and one compare. An id whose slot
 * is taken anyway (reserved but added later, after ids wrapped past it)
 * goes to a small overflow Map.
 */
export class IdTable<V> {
  #ids: Uint32Array
  #vals: (V | undefined)[]
  #mask: number
  #size = 0
  readonly #overflow = new Map<number, V>()
  #next = 1

  /** `firstId`: where ids start (tests start near the wrap). */
  constructor(initialCapacity = 1024, firstId = 1) {
    this.#next = firstId >>> 0 || 1
    let cap = 16
    while (cap < initialCapacity) cap *= 2
    this.#ids = new Uint32Array(cap)
    this.#vals = new Array<V | undefined>(cap).fill(undefined)
    this.#mask = cap - 1
  }

  get size(): number {
    return this.#size + this.#overflow.size
  }

  get capacity(): number {
    return this.#mask + 1
  }

  /** The next id (never 0, wraps at 2^32) whose slot is free, growing the table past half full. */
  reserve(): number {
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#grow()
    for (;;) {
      const id = this.#next
      this.#next = (id + 1) >>> 0 || 1
      if (this.#vals[id & this.#mask] === undefined) return id
    }
  }

  get(id: number): V | undefined {
    const i = id & this.#mask
    if (this.#ids[i] === id) {
      const v = this.#vals[i]
      if (v !== undefined) return v
    }
    return this.#overflow.size === 0 ? undefined : this.#overflow.get(id)
  }

  set(id: number, v: V): void {
    const i = id & this.#mask
    const cur = this.#vals[i]
    if (cur === undefined || this.#ids[i] === id) {
      if (cur === undefined) this.#size++
      this.#ids[i] = id
      this.#vals[i] = v
      return
    }
    this.#overflow.set(id, v)
  }

  delete(id: number): boolean {
    const i = id & this.#mask
    if (this.#ids[i] === id && this.#vals[i] !== undefined) {
      this.#vals[i] = undefined
      this.#size--
      return true
    }
    return this.#overflow.delete(id)
  }

  /** Visit every entry (the visitor may delete the one it is given). */
  forEach(visit: (v: V, id: number) => void): void {
    const vals = this.#vals
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i]
      if (v !== undefined) visit(v, this.#ids[i]!)
    }
    if (this.#overflow.size > 0) for (const [id, v] of [...this.#overflow]) visit(v, id)
  }

  /** Remove every entry and return them (shutdown and fail-all paths settle them after). */
  takeAll(): V[] {
    const all: V[] = []
    this.forEach((v) => all.push(v))
    this.#vals.fill(undefined)
    this.#size = 0
    this.#overflow.clear()
    return all
  }

  #grow(): void {
    const oldIds = this.#ids
    const oldVals = this.#vals
    const cap = (this.#mask + 1) * 2
    this.#ids = new Uint32Array(cap)
    this.#vals = new Array<V | undefined>(cap).fill(undefined)
    this.#mask = cap - 1
    this.#size = 0
    const moved = [...this.#overflow]
    this.#overflow.clear()
    for (let i = 0; i < oldVals.length; i++) if (oldVals[i] !== undefined) this.set(oldIds[i]!, oldVals[i]!)
    for (const [id, v] of moved) this.set(id, v)
    // The old slot array may sit in the old generation: clear it so it cannot keep the values alive.
    oldVals.fill(undefined)
  }
}
