import { createRingBuffer } from '../../src/runtime/ring/spsc-ring.js'
import { FrameSender } from '../../src/runtime/ring/frame-sender.js'
import { PartitionHost } from '../../src/runtime/worker/partition-host.js'
import type { KindRegistry } from '../../src/grains/kind-registry.js'
import { binaryCodec } from '../../src/wire/payload-codec.js'

/** A lone worker's PartitionHost (worker 0 of 1, no cluster, no events) over a fresh ring, for driving it with frames. */
export function standalonePartitionHost(registry: KindRegistry, partitions: number): PartitionHost {
  return new PartitionHost({
    worker: 0,
    workers: 1,
    partitions,
    registry,
    codec: binaryCodec,
    sender: new FrameSender(createRingBuffer(1 << 16)),
    askTimeoutMs: 1_000,
    wants: () => false,
    routeViaMain: () => false,
  })
}
