import { createRingBuffer } from '../../src/runtime/ring/spsc-ring.js'
import { FrameSender } from '../../src/runtime/ring/frame-sender.js'
import { PartitionHost } from '../../src/runtime/worker/partition-host.js'
import type { KindRegistry } from '../../src/grains/kind-registry.js'
import { binaryCodec } from '../../src/wire/payload-codec.js'

/**
 * A lone worker's PartitionHost (worker 0 of 1, no events) over a fresh
 * ring, for driving it with frames. `toMain`: the ring it writes to (read it
 * with a RingConsumer); `routeViaMain`: as in a cluster (default: no cluster).
 */
export function standalonePartitionHost(registry: KindRegistry, partitions: number, o: { toMain?: SharedArrayBuffer; routeViaMain?: boolean } = {}): PartitionHost {
  return new PartitionHost({
    worker: 0,
    workers: 1,
    partitions,
    registry,
    codec: binaryCodec,
    sender: new FrameSender(o.toMain ?? createRingBuffer(1 << 16)),
    askTimeoutMs: 1_000,
    wants: () => false,
    routeViaMain: () => o.routeViaMain === true,
  })
}
