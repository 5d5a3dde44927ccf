/**
 * Multi-process cluster harness (nats `nst` launcher style): every node is a
 * real process (test/fixtures/cluster/node-process.ts) on 127.0.0.1,
 * driven over its stdin/stdout JSON lines.
 *
 *   const c = await startNodes(3, { failureDetector: { profile: 'test' } })
 *   await waitForSameTable(c.nodes)
 *   const killedAt = c.nodes[2]!.kill('SIGKILL')
 *   ...
 *   afterEach(async () => { await stopAll(); expect(survivingPids()).toEqual([]) })
 *
 * - Ports: seeds get a port that was free a moment ago (freePort); the
 *   others bind port 0 and report their authority in the ready line. A seed
 *   that loses the race for its port is restarted on another one.
 * - Every spawned process is registered; stopAll() SIGKILLs whatever still
 *   runs (stopped ones included) and waits for each exit. On top of that a
 *   node process exits by itself when its stdin closes, and this module
 *   SIGKILLs every child when the test process exits.
 * - Every stdout line is kept: events (with `t`, epoch ms high-res, stamped
 *   in the node process), welcome tables and command replies.
 *
 * No vitest import: the membership benchmark uses this module too.
 */

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { RuntimeEvent, RuntimeEventType, EventOf } from '../../src/observability/events.js'
import type { MemberView, MembersReply, NodeProcessOptions } from '../fixtures/cluster/node-process.js'
import { freePort } from './free-port.js'
import { withTimeout, waitUntil } from './wait-until.js'

export type { MemberView, MembersReply, NodeProcessOptions } from '../fixtures/cluster/node-process.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ENTRY = fileURLToPath(new URL('../fixtures/cluster/node-process.ts', import.meta.url))

export const DEFAULT_CLUSTER_NAME = 'harness'
export const DEFAULT_SECRET = 'harness-secret-0123456789'
/** How long a process may take from spawn to its ready line (tsx compile on a loaded 2-core box). */
export const DEFAULT_READY_TIMEOUT_MS = 30_000

/** An event as printed by a node process, with the time it was published there. */
export type TimedEvent<T extends RuntimeEventType = RuntimeEventType> = EventOf<T> & {
  /** Epoch ms (high resolution) at which the node process printed it. */
  t: number
}

export interface WelcomeRecord {
  t: number
  from: string
  members: MemberView[]
}

/** Epoch ms, high resolution; comparable with the `t` of every line a node prints. */
export const nowMs = (): number => performance.timeOrigin + performance.now()

/** Processes that have not exited yet. */
const registry = new Set<NodeProcess>()
/** Every process spawned since the last forgetSpawned(), running or not. */
const spawned: NodeProcess[] = []

// Last line of defence: the test process is going away, its children go with it.
process.once('exit', () => {
  for (const p of registry) if (!p.exited) p.child.kill('SIGKILL')
})

export type NodeSignal = 'SIGKILL' | 'SIGSTOP' | 'SIGCONT' | 'SIGTERM'

/** One node process. */
export class NodeProcess {
  readonly child: ChildProcessWithoutNullStreams
  readonly pid: number
  readonly options: NodeProcessOptions
  readonly label: string
  /** Every event the node printed, in order. */
  readonly events: TimedEvent[] = []
  readonly welcomes: WelcomeRecord[] = []
  /** Unparseable stdout lines and stderr output, for failure messages. */
  stderr = ''
  readonly junk: string[] = []
  authority: string | undefined
  nodeId: string | undefined
  exited = false
  exitCode: number | null = null
  exitSignal: NodeJS.Signals | null = null
  exitReason: string | undefined
  readonly exitedPromise: Promise<void>
  readonly ready: Promise<{ authority: string; nodeId: string }>
  #nextId = 1
  readonly #pending = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>()
  #buf = ''

  constructor(options: NodeProcessOptions, label: string) {
    this.options = options
    this.label = label
    this.child = spawn(process.execPath, ['--import', 'tsx', ENTRY, JSON.stringify(options)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    if (this.child.pid === undefined) throw new Error(`${label}: spawn failed`)
    this.pid = this.child.pid
    spawned.push(this)
    registry.add(this)
    this.child.on('error', (e) => {
      this.stderr += `\nspawn/kill error: ${e.message}`
    })
    this.child.stdin.on('error', () => {}) // EPIPE after the process died
    this.child.stderr.setEncoding('utf8')
    this.child.stderr.on('data', (s: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += s
    })
    this.child.stdout.setEncoding('utf8')
    let readyResolve!: (v: { authority: string; nodeId: string }) => void
    let readyReject!: (e: Error) => void
    this.ready = new Promise((res, rej) => {
      readyResolve = res
      readyReject = rej
    })
    this.ready.catch(() => {})
    this.child.stdout.on('data', (s: string) => {
      this.#buf += s
      for (let i = this.#buf.indexOf('\n'); i >= 0; i = this.#buf.indexOf('\n')) {
        const line = this.#buf.slice(0, i)
        this.#buf = this.#buf.slice(i + 1)
        this.#onLine(line, readyResolve)
      }
    })
    this.exitedPromise = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exited = true
        this.exitCode = code
        this.exitSignal = signal
        registry.delete(this)
        readyReject(new Error(`${this.label} exited (code ${code}, signal ${signal}) before it was ready; stderr: ${this.stderr.slice(-1000)}`))
        for (const p of this.#pending.values()) p.reject(new Error(`${this.label} exited (code ${code}, signal ${signal}) before replying`))
        this.#pending.clear()
        resolve()
      })
    })
  }

  #onLine(line: string, readyResolve: (v: { authority: string; nodeId: string }) => void): void {
    if (line.trim() === '') return
    let m: Record<string, unknown>
    try {
      m = JSON.parse(line) as Record<string, unknown>
    } catch {
      this.junk.push(line)
      return
    }
    const t = typeof m['t'] === 'number' ? m['t'] : nowMs()
    if (m['event'] !== undefined) this.events.push({ ...(m['event'] as RuntimeEvent), t })
    else if (m['welcome'] !== undefined) this.welcomes.push({ ...(m['welcome'] as Omit<WelcomeRecord, 't'>), t })
    else if (m['reply'] !== undefined) {
      const r = m['reply'] as Record<string, unknown>
      const id = typeof r['id'] === 'number' ? r['id'] : -1
      const p = this.#pending.get(id)
      this.#pending.delete(id)
      p?.resolve({ ...r, t })
    } else if (m['ready'] !== undefined) {
      const r = m['ready'] as { authority: string; nodeId: string }
      this.authority = r.authority
      this.nodeId = r.nodeId
      readyResolve({ authority: r.authority, nodeId: r.nodeId })
    } else if (m['exit'] !== undefined) {
      this.exitReason = (m['exit'] as { reason: string }).reason
    } else this.junk.push(line)
  }

  /** Authority once ready (throws before). */
  get addr(): string {
    if (this.authority === undefined) throw new Error(`${this.label} is not ready yet`)
    return this.authority
  }

  get id(): string {
    if (this.nodeId === undefined) throw new Error(`${this.label} is not ready yet`)
    return this.nodeId
  }

  /** Send a command and wait for its reply (rejects on timeout or exit). */
  command<R = Record<string, unknown>>(cmd: Record<string, unknown>, timeoutMs = 10_000): Promise<R & { t: number }> {
    if (this.exited) return Promise.reject(new Error(`${this.label} has exited`))
    const id = this.#nextId++
    return new Promise<R & { t: number }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.label}: no reply to ${JSON.stringify(cmd)} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer)
          resolve(r as R & { t: number })
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.child.stdin.write(`${JSON.stringify({ ...cmd, id })}\n`)
    })
  }

  /** The node's view of the cluster (members, unreachable, detectors, ...). */
  members(timeoutMs = 10_000): Promise<MembersReply & { t: number }> {
    return this.command<MembersReply>({ cmd: 'members' }, timeoutMs)
  }

  /** Graceful leave; the process exits afterwards. Resolves with the reply. */
  leave(timeoutMs = 30_000): Promise<Record<string, unknown>> {
    return this.command({ cmd: 'leave' }, timeoutMs)
  }

  /** Busy-wait the node's event loop for `ms`; resolves with the reply ({from, to} epoch ms). */
  block(ms: number): Promise<{ from: number; to: number; t: number }> {
    return this.command<{ from: number; to: number }>({ cmd: 'block', ms }, ms + 30_000)
  }

  /** Send a signal; returns the epoch ms just before it was sent. */
  kill(signal: NodeSignal): number {
    const at = nowMs()
    if (!this.exited) this.child.kill(signal)
    return at
  }

  /** Wait for the process to exit (bounded). */
  async waitExit(timeoutMs = 15_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.label} (pid ${this.pid}) did not exit within ${timeoutMs} ms`)), timeoutMs)
    })
    try {
      await Promise.race([this.exitedPromise, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  eventsOf<T extends RuntimeEventType>(type: T, pred: (e: TimedEvent<T>) => boolean = () => true): TimedEvent<T>[] {
    return this.events.filter((e): e is TimedEvent<T> => e.type === type && pred(e as TimedEvent<T>))
  }

  /** First event of `type` matching `pred`, waiting for it (bounded). */
  waitEvent<T extends RuntimeEventType>(type: T, pred: (e: TimedEvent<T>) => boolean = () => true, timeoutMs = 20_000): Promise<TimedEvent<T>> {
    return waitUntil(() => this.eventsOf(type, pred)[0], { timeoutMs, what: `${this.label}: ${type}` })
  }

  /** Member events about `authority`, in order, as 'type' strings (compact for assertions). */
  memberTrail(authority: string): string[] {
    return this.events.filter((e) => e.type.startsWith('member.') && 'authority' in e && e.authority === authority).map((e) => e.type)
  }
}

export interface SpawnOptions extends Partial<NodeProcessOptions> {
  label?: string
}

/** Spawn one node process (not waiting for it to be ready). */
export function spawnNode(o: SpawnOptions & { seeds: string[] }): NodeProcess {
  const { label, ...rest } = o
  const options: NodeProcessOptions = { clusterName: DEFAULT_CLUSTER_NAME, secret: DEFAULT_SECRET, host: '127.0.0.1', port: 0, ...rest }
  return new NodeProcess(options, label ?? `node:${options.port === 0 ? 'ephemeral' : String(options.port)}`)
}

/** Spawn a node and wait for its ready line. */
export async function startNode(o: SpawnOptions & { seeds: string[] }, readyTimeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<NodeProcess> {
  const p = spawnNode(o)
  await withTimeout(p.ready, readyTimeoutMs, `${p.label} ready`)
  return p
}


export interface ClusterOptions extends Omit<SpawnOptions, 'label' | 'seeds' | 'port'> {
  /** How many of the nodes are seeds (the first ones). Default 1. */
  seedCount?: number
  /** Per-node overrides (index → options). */
  perNode?: Record<number, Partial<NodeProcessOptions>>
  /** Wait until every node is Up with the same table. Default true. */
  waitConverged?: boolean
  timeoutMs?: number
}

export interface Cluster {
  nodes: NodeProcess[]
  seeds: string[]
}

/**
 * Start `n` node processes: the seeds first (on pre-picked free ports), the
 * others concurrently once the seeds listen (ephemeral ports), then (by
 * default) wait until all n are Up with one table.
 */
export async function startNodes(n: number, o: ClusterOptions = {}): Promise<Cluster> {
  const { seedCount = 1, perNode = {}, waitConverged = true, timeoutMs = 60_000, ...common } = o
  const k = Math.max(1, Math.min(seedCount, n))
  let seedNodes: NodeProcess[] = []
  let seeds: string[] = []
  for (let attempt = 0; ; attempt++) {
    const ports: number[] = []
    for (let i = 0; i < 10 * k && ports.length < k; i++) {
      const p = await freePort()
      if (!ports.includes(p)) ports.push(p)
    }
    if (ports.length < k) throw new Error(`could not find ${k} distinct free ports`)
    seeds = ports.map((p) => `127.0.0.1:${p}`)
    seedNodes = ports.map((port, i) => spawnNode({ ...common, ...perNode[i], seeds, port, label: `n${i}` }))
    const started = await Promise.allSettled(seedNodes.map((p) => withTimeout(p.ready, DEFAULT_READY_TIMEOUT_MS, `${p.label} ready`)))
    if (started.every((s) => s.status === 'fulfilled')) break
    // Lost the port race (or worse): kill this attempt's seeds and try other ports.
    for (const p of seedNodes) p.kill('SIGKILL')
    await Promise.all(seedNodes.map((p) => p.waitExit()))
    const err = started.find((s): s is PromiseRejectedResult => s.status === 'rejected')?.reason as Error
    if (attempt >= 2 || !/EADDRINUSE|listen on/.test(err.message)) throw err
  }
  const rest: NodeProcess[] = []
  for (let i = k; i < n; i++) rest.push(spawnNode({ ...common, ...perNode[i], seeds, port: 0, label: `n${i}` }))
  await Promise.all(rest.map((p) => withTimeout(p.ready, DEFAULT_READY_TIMEOUT_MS, `${p.label} ready`)))
  const nodes = [...seedNodes, ...rest]
  if (waitConverged) await waitForSameTable(nodes, { timeoutMs, size: n })
  return { nodes, seeds }
}

/** A comparable form of a node's active members. */
export function tableKey(r: Pick<MembersReply, 'members'>): string {
  return JSON.stringify([...r.members].sort((a, b) => (a.authority < b.authority ? -1 : 1)).map((m) => [m.authority, m.nodeId, m.status, m.upNumber]))
}

/**
 * Wait until every given node reports the same active members (authority,
 * nodeId, status, upNumber), all Up, `size` of them (default: the number of
 * nodes), none unreachable. Resolves with the replies.
 */
export async function waitForSameTable(nodes: readonly NodeProcess[], o: { timeoutMs?: number; size?: number; status?: MemberView['status'] } = {}): Promise<MembersReply[]> {
  const size = o.size ?? nodes.length
  const status = o.status ?? 'up'
  let last: unknown
  return waitUntil(
    async () => {
      const replies = await Promise.all(nodes.map((p) => p.members()))
      last = replies.map((r) => ({ node: r.authority, members: r.members.map((m) => `${m.authority}:${m.status}`), unreachable: r.unreachable }))
      const key = tableKey(replies[0]!)
      const same = replies.every(
        (r) => tableKey(r) === key && r.members.length === size && r.members.every((m) => m.status === status) && r.unreachable.length === 0,
      )
      return same ? replies : undefined
    },
    { timeoutMs: o.timeoutMs ?? 60_000, intervalMs: 50, what: 'same table on every node' },
  ).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; views: ${JSON.stringify(last)}`)
  })
}

/** SIGKILL every registered process that still runs and wait for each to exit. */
export async function stopAll(timeoutMs = 15_000): Promise<void> {
  const live = [...registry]
  for (const p of live) p.kill('SIGKILL')
  await Promise.all(live.map((p) => p.waitExit(timeoutMs)))
}

/** PIDs spawned since the last forgetSpawned() that still exist (signal 0 succeeds). */
export function survivingPids(): number[] {
  return spawned
    .map((p) => p.pid)
    .filter((pid) => {
      try {
        process.kill(pid, 0)
        return true
      } catch (e) {
        return (e as NodeJS.ErrnoException).code === 'EPERM'
      }
    })
}

/** Every process spawned since the last forgetSpawned(). */
export function spawnedProcesses(): readonly NodeProcess[] {
  return spawned
}

/** Start a new bookkeeping period (e.g. in beforeEach). Running processes stay registered for stopAll(). */
export function forgetSpawned(): void {
  spawned.length = 0
}

/** A compact account of every process spawned since forgetSpawned(): for failure messages. */
export function describeProcesses(since = 0): string {
  const lines: string[] = []
  for (const p of spawned) {
    lines.push(`${p.label} pid ${p.pid} ${p.authority ?? '?'} #${p.nodeId ?? '?'} exit=${p.exited ? `${p.exitCode ?? p.exitSignal} (${p.exitReason ?? 'no exit line'})` : 'running'}`)
    for (const e of p.events) {
      if (!/^(member|handshake|node)\./.test(e.type)) continue
      const f = e as unknown as Record<string, unknown>
      const str = (k: string, prefix = ''): string | undefined => (typeof f[k] === 'string' ? `${prefix}${f[k]}` : undefined)
      const lag = typeof f['lagMs'] === 'number' ? `lag ${Math.round(f['lagMs'])}ms` : undefined
      const who = [str('authority'), str('nodeId'), str('observer', 'obs '), str('code'), lag].filter((x) => x !== undefined).join(' ')
      lines.push(`  ${since === 0 ? new Date(e.t).toISOString().slice(11, 23) : `+${Math.round(e.t - since)}ms`} ${e.type} ${who}`)
    }
    if (p.stderr !== '') lines.push(`  stderr: ${p.stderr.slice(-500)}`)
    if (p.junk.length > 0) lines.push(`  other stdout: ${p.junk.slice(-5).join(' | ')}`)
  }
  return lines.join('\n')
}

/**
 * Wait until every node monitors every other one and each detector holds at
 * least `minSamples` inter-arrival samples (2 of them are the seed
 * estimates), so detection times reflect a steady heartbeat history, not the
 * start of monitoring. Assumes n ≤ 6 (each node monitors up to 5 others).
 */
export async function waitForSteadyHeartbeats(nodes: readonly NodeProcess[], o: { minSamples?: number; timeoutMs?: number } = {}): Promise<void> {
  const min = o.minSamples ?? 5
  let last: unknown
  await waitUntil(
    async () => {
      const replies = await Promise.all(nodes.map((p) => p.members()))
      last = replies.map((r) => ({ node: r.authority, detectors: r.detectors.map((d) => `${d.id}:${d.samples}`) }))
      return replies.every((r) => r.detectors.length === nodes.length - 1 && r.detectors.every((d) => d.samples >= min))
    },
    { timeoutMs: o.timeoutMs ?? 30_000, intervalMs: 100, what: 'steady heartbeats' },
  ).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; detectors: ${JSON.stringify(last)}`)
  })
}
