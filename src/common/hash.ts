/**
 * Key → partition → worker. The hash must be identical on every node and
 * thread, so it is defined over the key's UTF-16 code units (what a JS string
 * is), not over a locale- or encoder-dependent byte form.
 *
 * FNV-1a 32-bit: tiny, allocation-free and good enough to spread keys over
 * partitions; placement between nodes (rendezvous) uses its own mixing.
 */

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

export function hashKey(key: string): number {
  let h = FNV_OFFSET
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  return h >>> 0
}

export function partitionOf(key: string, partitions: number): number {
  const h = hashKey(key)
  // Same answer either way; the mask avoids a floating-point modulo (a
  // uint32 above 2^31 is not a small integer to V8), which costs more than
  // the hash itself on the per-message path.
  return (partitions & (partitions - 1)) === 0 ? (h & (partitions - 1)) >>> 0 : h % partitions
}

export function workerOfPartition(partition: number, workers: number): number {
  return workers === 1 ? 0 : partition % workers
}

/** Stable numeric id of a message type (handler name), shared by every node. */
export function messageTypeId(name: string): number {
  return hashKey(name)
}

/** One string for a grain key of a kind (map keys off the hot path: hand-off, tombstones, churn). */
export function kindKeyOf(kind: string, key: string): string {
  return `${kind}\u0000${key}`
}
