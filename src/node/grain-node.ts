/**
 * GrainNode: one graincluster node (one process). The composition root for
 * the runtime core: EventStream, grain workers on SAB rings, and the
 * stateless piscina pool. Cluster membership, remote delivery and the HTTP
 * front attach here in later layers.
 */

import { availableParallelism } from 'node:os'
import { setFlagsFromString } from 'node:v8'
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { pathToFileURL } from 'node:url'
import { GrainClusterError, reasonOf, toGrainClusterError } from '../common/errors.js'
import { formatPid, type Pid, parsePid } from '../common/pid.js'
import { TextMemo } from '../common/text-memo.js'
import { type GrainDefinition, type PayloadOf, type ResultOf, type StatelessGrainDefinition } from '../grains/define-grain.js'
import { EventStream } from '../observability/event-stream.js'
import { NodeMetrics } from '../observability/metrics.js'
import { type MetricsOptions, pushInstance, type ResolvedMetricsOptions, resolveMetricsOptions } from '../observability/metrics-options.js'
import { MetricsPusher } from '../observability/metrics-push.js'
import { DEFAULT_MAX_OVERFLOW_FRAMES } from '../runtime/ring/frame-sender.js'
import { DEFAULT_RING_BYTES } from '../runtime/ring/spsc-ring.js'
import { StatelessPool } from '../runtime/host/stateless-pool.js'
import { type KindInfo, WorkerHost } from '../runtime/host/worker-host.js'
import { DEFAULT_CODEC } from '../wire/payload-codec.js'
import type { AssociationConfig } from '../remote/association/association-config.js'
import { AssociationRegistry } from '../remote/association/association-registry.js'
import { FRAME_ENVELOPE, RemoteEndpoint, type ResolveResult } from '../remote/endpoint-manager.js'
import { FRAME_TELL_BATCH } from '../remote/tell-batches.js'
import { schemaVersionsOf } from '../remote/schema-negotiation.js'
import { ClusterNode, type ClusterNodeOptions } from './cluster-node.js'
import { FRAME_HANDOFF, HandoffCoordinator } from './handoff-coordinator.js'
import { PlacementRouter } from './placement-router.js'
import { LocalDataMap, PubSub } from './pubsub-service.js'
import { checkTopicName, resolveTopicSettings, type TopicOptions, type TopicSettings } from '../pubsub/topic-registry.js'
import { PubSubMetrics } from '../observability/pubsub-metrics.js'
import { checkRpcSettings, type RpcCallSettings } from '../common/rpc-settings.js'
import { createGrainProxy, type GrainProxy, type GrainTellProxy, type UntypedGrainProxy, type UntypedGrainTellProxy } from '../rpc/grain-proxy.js'
import { checkAlertSettings, RpcAlerts, type RpcAlertSettings } from '../rpc/rpc-alerts.js'
import { RpcClient } from '../rpc/rpc-client.js'
import { RpcMetrics } from '../rpc/rpc-metrics.js'
import { defaultRpcSettings, mergeRpcSettings, type ResolvedRpcSettings } from '../common/retry-policy.js'

export interface GrainNodeOptions {
  /** Grain modules (paths or file URLs) every worker imports. Required. */
  grains: readonly (string | URL)[]
  /** Grain worker threads. Default: cores − 1, at least 1. */
  workers?: number
  /** Partitions of the key space; same on every node. Default 256. */
  partitions?: number
  /** Payload codec, same on every node: 'binary' (default) or 'json'. */
  codec?: 'binary' | 'json'
  /** Default ask timeout (ms). Default 10 000. */
  askTimeoutMs?: number
  /** Bytes per ring direction, a power of two. Default 1 MiB. */
  ringBytes?: number
  /**
   * Frames that may wait outside a full ring before tell/ask fail with
   * ERR_RING_FULL. At half of it, frames from other nodes make this node stop
   * reading their connection for a while (remote/inbound-flow.ts). Default 65 536.
   */
  maxOverflowFrames?: number
  /**
   * Busy-poll an empty ring this long (µs) before parking with
   * Atomics.waitAsync: workers after each batch, the main thread only while
   * calls wait on that worker. A parked thread takes tens of µs to wake; a short
   * spin keeps a request/reply exchange hot. 0 disables. Default 25.
   */
  spinMicros?: number
  /**
   * Ceiling (µs) of the adaptive spin. When a ring's data came back soon
   * after its thread parked (a conversation: a remote ask every few hundred
   * µs, a reply a worker takes tens of µs to send), that thread's next spin
   * covers 1.5× that gap, up to this; a longer gap resets it to spinMicros.
   * It keeps both hops of a remote ask on the serving node awake: each
   * parked hop costs a thread wake-up (tens of µs on a VM). The price is CPU
   * while such traffic lasts. Equal to spinMicros: no adaptation. Default
   * max(500, spinMicros).
   */
  spinMaxMicros?: number
  /**
   * Keep V8's memory reducer (process-wide). Default false: the node turns it
   * off when it starts. The reducer runs full, compacting GCs on an isolate
   * whose allocation rate is low, which is what a busy grain worker looks
   * like (it allocates almost nothing per message): under steady load it
   * paused the worker 5–15 ms every ~0.6 s, and every call in flight with it.
   * The price: an idle node keeps the heap it grew instead of shrinking it.
   */
  memoryReducer?: boolean
  /** piscina threads for stateless grains (started on first use). Default: same as workers. */
  statelessThreads?: number
  /** Fail start-up when workers are not ready by then (ms). Default 30 000. */
  startTimeoutMs?: number
  /** Join a cluster: membership, transport and remote delivery. Omit for a single node. */
  cluster?: Omit<ClusterNodeOptions, 'events' | 'acceptPeer' | 'schemas'>
  /** Remote associations: deferred queue, quarantine, inbound and sender-side flow control (see AssociationConfig). */
  associations?: Partial<AssociationConfig>
  /** How long a new owner waits for the previous owner to hand a key's state over (ms). Default 3 000. */
  handoffTimeoutMs?: number
  /** Where audit lines (quarantine, release, reconnect) go. Default: stderr. */
  audit?: (line: string) => void
  /**
   * Record Prometheus metrics (node.metrics, node.metricsText()). Default
   * true. When false, events still flow and metricsText() rejects with
   * ERR_RPC_METRICS_DISABLED, a diagnostic rather than a silent zero. An
   * object sets what is recorded and where it goes (MetricsOptions:
   * process metrics, the workers' sampling interval, a Pushgateway).
   */
  metrics?: boolean | MetricsOptions
  /**
   * Grain RPC (README "Grain RPC"): `defaults` are every call's timeout and
   * retry settings under the kind's own and the call's (timeoutMs defaults
   * to askTimeoutMs); `alerts` sets the latency/error-rate alert signal, or
   * false to turn it off.
   */
  rpc?: { defaults?: RpcCallSettings; alerts?: RpcAlertSettings | false }
  /**
   * PubSub (README "Cluster PubSub"): `topics` are created when the node
   * starts (idempotent: give every node the same ones; in a cluster the
   * registry is shared, so the same name with other settings on two nodes
   * ends with one of them).
   */
  pubsub?: { topics?: Readonly<Record<string, TopicOptions>> }
}

export const DEFAULT_PARTITIONS = 256
export const DEFAULT_ASK_TIMEOUT_MS = 10_000 // 10 s
export const DEFAULT_START_TIMEOUT_MS = 30_000 // 30 s
export const DEFAULT_SPIN_MICROS = 25 // µs
export const DEFAULT_SPIN_MAX_MICROS = 500 // µs

export type ResolvedNodeOptions = Required<Omit<GrainNodeOptions, 'grains' | 'cluster' | 'associations' | 'audit' | 'metrics' | 'rpc' | 'handoffTimeoutMs' | 'pubsub'>> & {
  grains: string[]
  /** Topics created at start, settings resolved. */
  pubsubTopics: Readonly<Record<string, TopicSettings>>
  rpc: ResolvedRpcOptions
  /** From `metrics` (MetricsOptions): whether metrics are recorded, with Node.js process metrics, how often workers report their call stats (ms), and where pushes go. */
  metrics: boolean
  processMetrics: boolean
  callStatsIntervalMs: number
  metricsPush: ResolvedMetricsOptions['push']
}

export interface ResolvedRpcOptions {
  readonly defaults: ResolvedRpcSettings
  readonly alerts: RpcAlertSettings | false
}

/** Per-call settings; unset fields come from the kind's `rpc`, then the node's `rpc.defaults`. */
export interface CallOptions extends RpcCallSettings {
  /** Deadline for the whole call, retries included (ms); default the node's askTimeoutMs. */
  timeoutMs?: number
}

type AnyGrain = GrainDefinition<any, any>
type AnyStateless = StatelessGrainDefinition<any>
type KindRef = string | AnyGrain | AnyStateless

function metricsDisabled(): GrainClusterError {
  return new GrainClusterError('ERR_RPC_METRICS_DISABLED', 'metrics are not being collected on this node (started with metrics: false); events still flow on node.events', {})
}

function toModuleUrl(m: string | URL): string {
  if (m instanceof URL) return m.href
  if (/^(file|data):/.test(m)) return m
  return pathToFileURL(isAbsolute(m) ? m : resolvePath(m)).href
}

/** Validate options in one pass; every problem is listed in details.issues. */
export function resolveNodeOptions(o: GrainNodeOptions): ResolvedNodeOptions {
  const issues: string[] = []
  if (!Array.isArray(o?.grains) || o.grains.length === 0) {
    throw new GrainClusterError('ERR_CONFIG_MISSING', 'grains is required: pass the grain module paths or URLs every worker imports', {
      issues: ['grains: required, e.g. grains: [new URL("./counter.js", import.meta.url)]'],
    })
  }
  const int = (name: string, v: number | undefined, dflt: number, min: number, max: number): number => {
    if (v === undefined) return dflt
    if (!Number.isInteger(v) || v < min || v > max) issues.push(`${name} must be an integer in [${min}, ${max}] (got ${String(v)})`)
    return v
  }
  const workers = int('workers', o.workers, Math.max(1, availableParallelism() - 1), 1, 256)
  const partitions = int('partitions', o.partitions, DEFAULT_PARTITIONS, 1, 1 << 20)
  if (partitions < workers) issues.push(`partitions (${partitions}) must be >= workers (${workers}) or some workers own nothing`)
  const codec = o.codec ?? DEFAULT_CODEC
  if (codec !== 'binary' && codec !== 'json') issues.push(`codec must be 'binary' or 'json' (got ${String(codec)})`)
  const ringBytes = int('ringBytes', o.ringBytes, DEFAULT_RING_BYTES, 1 << 12, 1 << 30)
  if ((ringBytes & (ringBytes - 1)) !== 0) issues.push(`ringBytes must be a power of two (got ${ringBytes})`)
  const spinMicros = int('spinMicros', o.spinMicros, DEFAULT_SPIN_MICROS, 0, 10_000)
  if (o.spinMaxMicros !== undefined && Number.isInteger(o.spinMaxMicros) && o.spinMaxMicros < spinMicros) {
    issues.push(`spinMaxMicros (${o.spinMaxMicros}) must be >= spinMicros (${spinMicros})`)
  }
  const metricsOptions = resolveMetricsOptions(o.metrics, issues)
  const resolved: ResolvedNodeOptions = {
    grains: o.grains.map(toModuleUrl),
    workers,
    partitions,
    codec: codec,
    askTimeoutMs: int('askTimeoutMs', o.askTimeoutMs, DEFAULT_ASK_TIMEOUT_MS, 1, 24 * 3_600_000),
    ringBytes,
    maxOverflowFrames: int('maxOverflowFrames', o.maxOverflowFrames, DEFAULT_MAX_OVERFLOW_FRAMES, 0, 1 << 26),
    spinMicros,
    spinMaxMicros: int('spinMaxMicros', o.spinMaxMicros, Math.max(DEFAULT_SPIN_MAX_MICROS, spinMicros), 0, 10_000),
    memoryReducer: o.memoryReducer ?? false,
    statelessThreads: int('statelessThreads', o.statelessThreads, workers, 1, 256),
    startTimeoutMs: int('startTimeoutMs', o.startTimeoutMs, DEFAULT_START_TIMEOUT_MS, 1, 600_000),
    metrics: metricsOptions.enabled,
    processMetrics: metricsOptions.processMetrics,
    callStatsIntervalMs: metricsOptions.workerStatsIntervalMs,
    metricsPush: metricsOptions.push,
    rpc: { defaults: defaultRpcSettings(DEFAULT_ASK_TIMEOUT_MS), alerts: {} },
    pubsubTopics: resolveStartTopics(o.pubsub, issues),
  }
  if (o.memoryReducer !== undefined && typeof o.memoryReducer !== 'boolean') issues.push(`memoryReducer must be a boolean (got ${JSON.stringify(o.memoryReducer)})`)
  if (o.rpc !== undefined && (typeof o.rpc !== 'object' || o.rpc === null)) issues.push(`rpc must be an object (got ${JSON.stringify(o.rpc)})`)
  issues.push(...checkRpcSettings(o.rpc?.defaults, 'rpc.defaults'), ...checkAlertSettings(o.rpc?.alerts, 'rpc.alerts'))
  if (issues.length > 0) throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid node options: ${issues.join('; ')}`, { issues })
  resolved.rpc = Object.freeze({ defaults: mergeRpcSettings(defaultRpcSettings(resolved.askTimeoutMs), o.rpc?.defaults, 'rpc.defaults'), alerts: o.rpc?.alerts ?? {} })
  return Object.freeze(resolved)
}

/** The topics of `pubsub.topics`, each checked as createTopic would; problems go to `issues`. */
function resolveStartTopics(o: GrainNodeOptions['pubsub'], issues: string[]): Record<string, TopicSettings> {
  const out: Record<string, TopicSettings> = {}
  if (o === undefined) return out
  if (typeof o !== 'object' || o === null || (o.topics !== undefined && (typeof o.topics !== 'object' || o.topics === null))) {
    issues.push('pubsub must be { topics?: { [name]: topic options } }')
    return out
  }
  for (const [name, options] of Object.entries(o.topics ?? {})) {
    try {
      out[checkTopicName(name)] = resolveTopicSettings(name, options)
    } catch (e) {
      issues.push(`pubsub.topics.${name}: ${reasonOf(e)}`)
    }
  }
  return out
}

export class GrainNode {
  /** Every runtime event of this node. */
  readonly events: EventStream
  readonly options: ResolvedNodeOptions
  readonly #host: WorkerHost
  #stateless: StatelessPool | undefined
  #closed = false
  /** Membership of the cluster this node joined (undefined for a single node). */
  readonly cluster: ClusterNode | undefined
  readonly #remote: RemoteEndpoint | undefined
  readonly #placement: PlacementRouter | undefined
  /** Prometheus metrics of this node (runtime, cluster, RPC); undefined when `metrics: false`. */
  readonly metrics: NodeMetrics | undefined

  private constructor(options: ResolvedNodeOptions, events: EventStream, host: WorkerHost, metrics: NodeMetrics | undefined, cluster?: ClusterNode, remote?: RemoteEndpoint, placement?: PlacementRouter) {
    this.options = options
    this.events = events
    this.metrics = metrics
    this.#host = host
    this.cluster = cluster
    this.#remote = remote
    this.#placement = placement
    this.#rpcMetrics = metrics === undefined ? undefined : new RpcMetrics(metrics.registry, (kind) => host.kinds.get(kind)?.methods)
    const rpcMetrics = this.#rpcMetrics
    if (rpcMetrics !== undefined) {
      host.onCallStats = (worker, report) => {
        rpcMetrics.absorbGrainCalls(report.calls)
        rpcMetrics.queuedOn(worker, report.queued)
      }
      events.subscribe('worker.crashed', (e) => rpcMetrics.workerGone(e.worker))
    }
    this.#rpc = new RpcClient({
      events,
      defaults: options.rpc.defaults,
      kinds: (kind) => host.kinds.get(kind),
      metrics: this.#rpcMetrics,
      alerts: options.rpc.alerts === false ? undefined : new RpcAlerts(options.rpc.alerts),
    })
    this.pubsub = new PubSub({
      host: {
        events,
        askTimeoutMs: options.askTimeoutMs,
        tell: (kind, key, method, payload) => this.tell(kind, key, method, payload),
        // PubSub redelivers by its own policy: no RPC retries under it.
        ask: (kind, key, method, payload, timeoutMs) => this.ask(kind, key, method, payload, { timeoutMs, retries: 0 }),
        methodsOf: (kind) => host.kinds.get(kind)?.methods,
        blockedNow: (kind, key) => this.#blockedNow(kind, key),
      },
      map: cluster ?? new LocalDataMap(),
      onDataChange: cluster === undefined ? undefined : (fn) => cluster.onDataChange(fn),
      metrics:
        metrics === undefined
          ? undefined
          : (read) => {
              metrics.observePubSub(read)
              return new PubSubMetrics(metrics.registry)
            },
    })
  }
  /** Cluster PubSub (spec 9): topics replicated to every member on gossip, delivered to subscriber grains. */
  readonly pubsub: PubSub


  /** Why a call to kind/key could not leave this node now (PubSub's partition policy 'drop'), or undefined when it could. */
  #blockedNow(kind: string, key: string): GrainClusterError | undefined {
    if (this.#placement === undefined) return undefined
    let p
    try {
      p = this.#placement.ownerOf(kind, key, performance.now())
    } catch (e) {
      return toGrainClusterError(e)
    }
    if (p.local || this.#remote!.isConnected(p.authority)) return undefined
    return new GrainClusterError('ERR_AUTHORITY_UNREACHABLE', `${p.authority}, the owner of ${kind}/${key}, is not connected now`, { kind, key, authority: p.authority })
  }
  readonly #rpc: RpcClient
  readonly #rpcMetrics: RpcMetrics | undefined
  /** Pushes the registry to a Pushgateway (metrics.push); undefined without one. */
  #pusher: MetricsPusher | undefined

  /** Successful pushes to the configured Pushgateway (0 without one). */
  get metricsPushes(): number {
    return this.#pusher?.pushes ?? 0
  }

  /** Whether RPC metrics are being collected; when not, why (spec 10.4: a diagnostic, not a silent zero). Events flow either way. */
  rpcMetricsStatus(): { collecting: true } | { collecting: false; reason: string; code: 'ERR_RPC_METRICS_DISABLED' } {
    if (this.#rpcMetrics !== undefined) return { collecting: true }
    return { collecting: false, reason: metricsDisabled().reason, code: 'ERR_RPC_METRICS_DISABLED' }
  }

  /** Typed proxy: `await node.grain(Counter, 'k1').add(5)`; each method is one `ask` with `options`. */
  grain<D extends AnyGrain | AnyStateless>(grain: D, key: string, options?: CallOptions): GrainProxy<D>
  grain(kind: string, key: string, options?: CallOptions): UntypedGrainProxy
  grain(grain: KindRef, key: string, options?: CallOptions): unknown {
    return createGrainProxy((method, payload) => this.ask(grain as string, key, method, payload, options))
  }

  /** Fire-and-forget proxy: `node.grainTell(Counter, 'k1').add(5)`; each method is one `tell`. */
  grainTell<D extends AnyGrain | AnyStateless>(grain: D, key: string): GrainTellProxy<D>
  grainTell(kind: string, key: string): UntypedGrainTellProxy
  grainTell(grain: KindRef, key: string): unknown {
    return createGrainProxy((method, payload) => this.tell(grain as string, key, method, payload))
  }

  /** Start the workers and load the grain modules; resolves when every worker is ready (and, with `cluster`, the node has joined). */
  static async start(options: GrainNodeOptions, events: EventStream = new EventStream()): Promise<GrainNode> {
    const o = resolveNodeOptions(options)
    // Before the workers exist: V8 reads the flag when it sets up an
    // isolate's heap, so it reaches every worker (the main thread's heap,
    // set up already, keeps its reducer; it allocates enough not to trip it).
    if (!o.memoryReducer) setFlagsFromString('--no-memory-reducer')
    const host = new WorkerHost({ ...o, grainModules: o.grains, events })
    await host.start()
    const metrics = o.metrics ? new NodeMetrics(events, undefined, { processMetrics: o.processMetrics }) : undefined
    let cluster: ClusterNode | undefined
    let remote: RemoteEndpoint | undefined
    let placement: PlacementRouter | undefined
    let handoff: HandoffCoordinator | undefined
    if (options.cluster !== undefined) {
      try {
        const associations = new AssociationRegistry({ config: options.associations ?? {}, wallClock: Date.now })
        cluster = await ClusterNode.start({ ...options.cluster, metrics: metrics ?? false, events, acceptPeer: RemoteEndpoint.acceptHook(associations), schemas: schemaVersionsOf(host.kinds), frameTypes: [FRAME_ENVELOPE, FRAME_TELL_BATCH, FRAME_HANDOFF] })
        const core = cluster.core
        remote = new RemoteEndpoint({
          transport: cluster.transport,
          host,
          associations,
          events,
          audit: options.audit ?? ((line) => process.stderr.write(`${line}\n`)),
          membership: {
            memberOf: (authority) => {
              const m = core.table.member(authority)
              return m === undefined ? undefined : { nodeId: m.nodeId, status: m.status, unreachable: core.table.isUnreachable(authority) }
            },
            version: () => core.table.digest(),
          },
        })
        cluster.metrics?.observeAssociations(() => associations.gauges())
        const endpoint = remote
        const transport = cluster.transport
        cluster.metrics?.observeRemoteFlow(() => ({ ...endpoint.flowStats, outboundBufferedBytes: transport.stats.outboundBufferedBytes }))
        const self = cluster
        const isSelf = (p: Pid): boolean => p.authority === self.authority && (p.nodeId === undefined || p.nodeId === self.nodeId)
        host.onPidRequest = (pid, envelope) => endpoint.fromWorker(pid, envelope, isSelf)
        host.onPidTell = (pid, messageType, schemaVersion, buf, off, len) => endpoint.fromWorkerTell(pid, messageType, schemaVersion, buf, off, len, isSelf)
        const router = new PlacementRouter(cluster, events)
        placement = router
        cluster.metrics?.observePidCache(() => ({ ...router.cache.stats, size: router.cache.size }))
        host.routeCallsViaMain(true)
        host.placeRequest = (kind, key) => {
          const p = router.ownerOf(kind, key, performance.now())
          return p.local ? undefined : p.pidText
        }
        const servingCluster = cluster
        // Asked for every relayed envelope: one verdict per synchronous run (a socket
        // chunk carries hundreds), not a clock read and a digest per envelope.
        let verdict: boolean | undefined
        const forget = (): void => {
          verdict = undefined
        }
        host.mayServe = () => {
          if (verdict === undefined) {
            verdict = servingCluster.mayServe(performance.now())
            queueMicrotask(forget)
          }
          return verdict
        }
        host.servingRefusal = (kind, key) => {
          const now = performance.now()
          return servingCluster.mayServe(now) ? undefined : servingCluster.servingRefusal(kind, key, now)
        }
        handoff = new HandoffCoordinator({ self: cluster, transport: cluster.transport, host, router, events, codec: host.codec, ...(options.handoffTimeoutMs === undefined ? {} : { timeoutMs: options.handoffTimeoutMs }) })
      } catch (e) {
        handoff?.close()
        await cluster?.close()
        await host.close(1_000)
        metrics?.close()
        throw e
      }
    }
    events.publish({ type: 'node.started', workers: o.workers, partitions: o.partitions })
    const node = new GrainNode(o, events, host, metrics, cluster, remote, placement)
    host.onWritableRequest = (pid, timeoutMs) => node.whenWritable(pid, timeoutMs === undefined ? undefined : { timeoutMs })
    host.onPubSubRequest = async (r) => {
      if (r.op === 'publish') return node.pubsub.publish(r.topic, r.payload)
      const s = { kind: r.kind, key: r.key, method: r.method }
      if (r.op === 'unsubscribe') return node.pubsub.unsubscribe(r.topic, s)
      node.pubsub.subscribe(r.topic, s)
      return undefined
    }
    for (const [topic, settings] of Object.entries(o.pubsubTopics)) node.pubsub.createResolvedTopic(topic, settings)
    node.#handoff = handoff
    const push = o.metricsPush
    if (metrics !== undefined && push !== undefined) {
      node.#pusher = new MetricsPusher(metrics.registry, push, pushInstance(cluster?.authority), events)
      void node.#pusher.pushNow()
    }
    if (handoff !== undefined && cluster !== undefined) {
      const parker = handoff
      const self = cluster.authority
      events.subscribe('placement.lease-lost', () => {
        void parker.park(self).catch(() => {})
      })
    }
    return node
  }

  /** Prometheus text exposition of every metric of this node; rejects with ERR_RPC_METRICS_DISABLED when metrics are off. */
  async metricsText(): Promise<string> {
    if (this.metrics === undefined) throw metricsDisabled()
    return this.metrics.registry.metrics()
  }

  /** Content-Type of metricsText(). */
  get metricsContentType(): string {
    return this.metrics?.registry.contentType ?? 'text/plain; version=0.0.4; charset=utf-8'
  }

  /** The canonical PID of `kind`/`key` on this node (requires `cluster`). */
  pid(kind: string, key: string): string {
    const c = this.#requireCluster()
    return formatPid({ authority: c.authority, kind, key, nodeId: c.nodeId })
  }

  #requireCluster(): ClusterNode {
    if (this.cluster === undefined) throw new GrainClusterError('ERR_CONFIG_MISSING', 'this node was started without `cluster` options; PIDs and remote calls need them', { issues: ['cluster: set clusterName, secret and seeds'] })
    return this.cluster
  }

  #parse(pid: string | Pid): Pid {
    return typeof pid === 'string' ? this.#parsed.get(pid) : pid
  }
  /** Hot PIDs are few: each is parsed once. */
  readonly #parsed = new TextMemo(parsePid)

  /**
   * A PID call served here skips placement, so it checks the serving lease
   * itself (calls by key are checked by placement; calls from other nodes by
   * the worker host's relay).
   */
  #checkServing(p: Pid): void {
    const c = this.cluster!
    const now = performance.now()
    if (!c.mayServe(now)) throw c.servingRefusal(p.kind, p.key, now)
  }

  /** A PID names this node when its authority does (and its nodeId, if any, is ours). */
  #isLocal(p: Pid): boolean {
    const c = this.#requireCluster()
    return p.authority === c.authority && (p.nodeId === undefined || p.nodeId === c.nodeId)
  }

  /** Spec 2.1–2.3: where `pid` can be reached now. */
  resolve(pid: string | Pid): ResolveResult {
    const p = this.#parse(pid)
    if (this.#isLocal(p)) return { status: 'ready', pid: p, nodeId: this.cluster!.nodeId }
    return this.#remote!.resolve(p)
  }

  /** Fire-and-forget to a grain on any node. Throws typed errors (PID, unreachable, quarantined, removed). */
  tellPid(pid: string | Pid, method: string, payload?: unknown): void {
    const p = this.#parse(pid)
    // A PID names a node: a local one is served here, whatever placement would pick.
    if (this.#isLocal(p)) {
      this.#checkServing(p)
      this.#host.tell(p.kind, p.key, method, payload)
    } else this.#remote!.tell(p, method, payload, typeof pid === 'string' ? pid : undefined)
  }

  /** Request/response to a grain on any node; rejects with a typed error. */
  askPid<R = unknown>(pid: string | Pid, method: string, payload?: unknown, options?: CallOptions): Promise<R> {
    let p: Pid
    let s: ResolvedRpcSettings
    try {
      p = this.#parse(pid)
      s = this.#rpc.settingsFor(p.kind, options)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e))
    }
    // A PID names a node, so a retry goes to the same node: it helps only while that node is briefly unreachable.
    return this.#rpc.call({ kind: p.kind, key: p.key, method }, s, (timeoutMs) => this.#askPidOnce<R>(pid, method, payload, timeoutMs))
  }

  #askPidOnce<R>(pid: string | Pid, method: string, payload: unknown, timeoutMs: number): Promise<R> {
    let p: Pid
    try {
      p = this.#parse(pid)
      if (this.#isLocal(p)) {
        this.#checkServing(p)
        return this.#host.ask<R>(p.kind, p.key, method, payload, timeoutMs)
      }
    } catch (e) {
      return Promise.reject(toGrainClusterError(e))
    }
    return this.#remote!.ask<R>(p, method, payload, timeoutMs, typeof pid === 'string' ? pid : undefined)
  }

  /** Release a quarantined authority now (spec 4.4); false if it was not quarantined. */
  releaseQuarantine(authority: string): boolean {
    this.#requireCluster()
    return this.#remote!.release(authority)
  }

  /** Quarantine an authority (operator action): sends and connections are refused until the deadline or a release. */
  quarantine(authority: string, reason: string): void {
    this.#requireCluster()
    this.#remote!.quarantine(authority, reason)
  }

  /** Kinds served by this node, as the workers reported them. */
  get kinds(): ReadonlyMap<string, KindInfo> {
    return this.#host.kinds
  }

  /** Internal view for tests and the CLI: worker threads and restarts. */
  get workerHost(): WorkerHost {
    return this.#host
  }

  /** Fire-and-forget message. Throws a GrainClusterError for bad input or backpressure. */
  tell<D extends AnyGrain, M extends keyof D['handlers'] & string>(grain: D, key: string, method: M, payload?: PayloadOf<D['handlers'][M]>): void
  tell(grain: string, key: string, method: string, payload?: unknown): void
  tell(grain: KindRef, key: string, method: string, payload?: unknown): void {
    const kind = typeof grain === 'string' ? grain : grain.kind
    if (this.#host.kindInfo(kind)?.stateless === true) {
      void this.#statelessPool().call(kind, method, payload).catch((e: unknown) => {
        const err = GrainClusterError.is(e) ? e : new GrainClusterError('ERR_GRAIN_HANDLER_FAILED', String(e))
        this.events.publish({ type: 'deadletter', kind, key, messageType: 0, code: err.code, reason: err.reason })
      })
      return
    }
    if (this.#placement !== undefined) {
      const p = this.#placement.ownerOf(kind, key, performance.now())
      if (!p.local) {
        this.#remote!.tell(p.pid, method, payload, p.pidText)
        return
      }
    }
    this.#host.tell(kind, key, method, payload)
  }

  /** Request/response call; rejects with a GrainClusterError (code, reason, kind/key/method). */
  ask<D extends AnyGrain, M extends keyof D['handlers'] & string>(
    grain: D,
    key: string,
    method: M,
    payload?: PayloadOf<D['handlers'][M]>,
    options?: CallOptions,
  ): Promise<ResultOf<D['handlers'][M]>>
  ask<D extends AnyStateless, M extends keyof D['handlers'] & string>(
    grain: D,
    key: string,
    method: M,
    payload?: PayloadOf<D['handlers'][M]>,
    options?: CallOptions,
  ): Promise<ResultOf<D['handlers'][M]>>
  ask<R = unknown>(grain: string, key: string, method: string, payload?: unknown, options?: CallOptions): Promise<R>
  ask(grain: KindRef, key: string, method: string, payload?: unknown, options?: CallOptions): Promise<unknown> {
    const kind = typeof grain === 'string' ? grain : grain.kind
    let s: ResolvedRpcSettings
    try {
      s = this.#rpc.settingsFor(kind, options, typeof grain === 'string' ? undefined : (grain as AnyGrain).rpc)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e, 'ERR_CONFIG_INVALID', { kind, key, method }))
    }
    return this.#rpc.call({ kind, key, method }, s, (timeoutMs) => this.#askOnce(kind, key, method, payload, timeoutMs))
  }

  /** One attempt of `ask`: stateless pool, remote owner or local worker. */
  #askOnce(kind: string, key: string, method: string, payload: unknown, timeoutMs: number): Promise<unknown> {
    const info = this.#host.kinds.get(kind)
    if (info?.stateless === true) {
      if (!info.methods.has(method)) {
        return Promise.reject(new GrainClusterError('ERR_GRAIN_UNKNOWN_METHOD', `stateless grain ${kind} has no method "${method}"`, { kind, key, method }))
      }
      return this.#statelessPool().call(kind, method, payload, timeoutMs)
    }
    if (this.#placement !== undefined) {
      let p
      try {
        p = this.#placement.ownerOf(kind, key, performance.now())
      } catch (e) {
        return Promise.reject(toGrainClusterError(e))
      }
      if (!p.local) return this.#remote!.ask(p.pid, method, payload, timeoutMs, p.pidText)
    }
    return this.#host.ask(kind, key, method, payload, timeoutMs)
  }

  /** In a cluster: the PID that kind/key resolves to (the same from every node with the same view). */
  placementOf(kind: string, key: string): string {
    if (this.#placement === undefined) return this.pid(kind, key)
    return this.#placement.pidOf(kind, key, performance.now())
  }

  /**
   * Backpressure, without sending anything. With no PID (or a PID of this
   * node): true while no local ring has frames waiting in its overflow
   * queue. With a PID on another node: true while a tell to it goes straight
   * out with room (its authority connected, nothing deferred, at most
   * `associations.writableBufferedBytes` waiting in the transport); throws
   * what a send would (ERR_PID_INVALID, ERR_AUTHORITY_UNREACHABLE,
   * _QUARANTINED, _REMOVED).
   */
  isWritable(pid?: string | Pid): boolean {
    const remote = this.#remotePid(pid)
    return remote === undefined ? this.#host.ringBacklog === 0 : this.#remote!.isWritable(remote)
  }

  /**
   * Resolves once isWritable(pid) holds. No PID: every local ring's
   * overflow queue has drained (use after ERR_RING_FULL). A remote PID:
   * end-to-end flow control for a stream of tells (a slow receiver stops
   * reading, its socket fills, the mark is crossed); rejects with what a
   * send would throw, or ERR_AUTHORITY_NOT_WRITABLE after `timeoutMs`
   * (default askTimeoutMs).
   */
  async whenWritable(pid?: string | Pid, options?: { timeoutMs?: number }): Promise<void> {
    const remote = this.#remotePid(pid)
    if (remote === undefined) return this.#host.whenWritable()
    // The same bounds as a call's timeoutMs.
    const issues = checkRpcSettings(options, 'whenWritable options')
    if (issues.length > 0) throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid whenWritable options: ${issues.join('; ')}`, { issues })
    return this.#remote!.whenWritable(remote, options?.timeoutMs ?? this.options.askTimeoutMs)
  }

  /** The parsed PID when it names another node; undefined for no PID or one of this node (the local rings). */
  #remotePid(pid: string | Pid | undefined): Pid | undefined {
    if (pid === undefined) return undefined
    const p = this.#parse(pid)
    return this.#isLocal(p) ? undefined : p
  }

  #statelessPool(): StatelessPool {
    if (this.#closed) throw new GrainClusterError('ERR_NODE_CLOSED', 'the node is closed')
    this.#stateless ??= new StatelessPool({ grainModules: this.options.grains, maxThreads: this.options.statelessThreads, timeoutMs: this.options.askTimeoutMs })
    return this.#stateless
  }

  /**
   * Leave the cluster gracefully (spec 1.2), then close. Keys move first:
   * this node stops placing keys on itself, requests from other nodes follow
   * placement to the successors, and every activation of a kind with
   * snapshot/restore hooks is released and its record pushed to the key's
   * new owner (spec 5.4).
   */
  async leave(timeoutMs = 10_000): Promise<void> {
    if (this.cluster !== undefined && !this.#closed) {
      if (this.#handoff !== undefined) {
        this.#host.redirectInbound = true
        try {
          await this.#handoff.handOffAll()
        } catch (e) {
          this.events.publish({ type: 'node.stopped', reason: `hand-off before leaving failed: ${toGrainClusterError(e).reason}` })
        }
      }
      await this.cluster.leave(timeoutMs)
    }
    await this.close()
  }

  /** State hand-off counters of this node (cluster mode). */
  get handoffStats(): Readonly<HandoffCoordinator['stats']> | undefined {
    return this.#handoff?.stats
  }
  #handoff: HandoffCoordinator | undefined

  /** Deactivate every activation (bounded by timeoutMs), stop the workers. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.pubsub.close()
    this.#rpc.close()
    this.#handoff?.close()
    this.#remote?.close()
    this.#placement?.close()
    await this.cluster?.close()
    await Promise.all([this.#host.close(timeoutMs), this.#stateless?.close()])
    // The gateway keeps the last numbers of a node that stopped, as a scrape cannot.
    await this.#pusher?.close()
    this.metrics?.close()
    this.events.publish({ type: 'node.stopped', reason: 'close() called' })
  }
}
