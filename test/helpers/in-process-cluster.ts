import { GrainNode, type GrainNodeOptions } from '../../src/index.js'
import { freePorts } from './free-port.js'

/**
 * Cluster settings for several GrainNodes in one test process. They share
 * one event loop, so a stall of the loaded test process looks like a cut to
 * the serving lease and, past the test profile's 1.5 s pause, to the failure
 * detector. Detection and the lease are exercised by the multi-process tests
 * (test/cluster) and their unit tests.
 */
export const IN_PROCESS_LEASE_MS = 60_000
export const IN_PROCESS_DETECTOR = { profile: 'test', acceptableHeartbeatPauseMs: 10_000 } as const

/**
 * Two GrainNodes in this process forming a cluster on free loopback ports,
 * with one grain worker and 16 partitions each plus `options` (and
 * `cluster` over the cluster options); resolves
 * once both are Up. The caller closes them.
 */
export async function startPair(clusterName: string, options: Omit<GrainNodeOptions, 'cluster'>, cluster: Partial<NonNullable<GrainNodeOptions['cluster']>> = {}): Promise<[GrainNode, GrainNode]> {
  const ports = await freePorts(2)
  const seeds = ports.map((p) => `127.0.0.1:${p}`)
  const start = (port: number): Promise<GrainNode> =>
    GrainNode.start({
      workers: 1,
      partitions: 16,
      audit: () => {},
      ...options,
      cluster: { clusterName, secret: `${clusterName}-secret`, seeds, port, failureDetector: IN_PROCESS_DETECTOR, servingLeaseMs: IN_PROCESS_LEASE_MS, ...cluster },
    })
  const [a, b] = await Promise.all([start(ports[0]!), start(ports[1]!)])
  await Promise.all([a.cluster!.whenUp(), b.cluster!.whenUp()])
  return [a, b]
}

/**
 * The first key `${prefix}<i>` of `kind` that placement, as `viewer` sees it
 * (default: `owner` itself), puts on `owner`.
 */
export function keyPlacedOn(owner: GrainNode, kind: string, prefix: string, viewer: GrainNode = owner): string {
  const at = `//${owner.cluster!.authority}/`
  for (let i = 0; i < 1_000; i++) if (viewer.placementOf(kind, `${prefix}${i}`).includes(at)) return `${prefix}${i}`
  throw new Error(`no key ${prefix}<i> of ${kind} is placed on ${owner.cluster!.authority}`)
}
