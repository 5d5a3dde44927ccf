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
  return hashKey(key) % partitions
}

export function workerOfPartition(partition: number, workers: number): number {
  return partition % workers
}

/** Stable numeric id of a message type (handler name), shared by every node. */
export function messageTypeId(name: string): number {
  return hashKey(name)
}

/** One string for a grain key of a kind (map keys off the hot path: hand-off, tombstones, churn). */
export function kindKeyOf(kind: string, key: string): string {
  return `${kind}\u0000${key}`
}
