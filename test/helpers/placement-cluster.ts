/**
 * Drives GrainNode processes (test/fixtures/cluster/placement-node-process.ts)
 * on 127.0.0.1 for the failover test and benchmark: spawn, JSON-line
 * commands, events with the `t` stamps the processes print, kill.
 *
 * Every process is registered; stopPlacementNodes() SIGKILLs whatever still
 * runs and waits for each exit, and a process also exits by itself when its
 * stdin closes (the test runner died). No vitest import: the failover
 * benchmark uses this module too.
 */

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { PlacementNodeOptions } from '../fixtures/cluster/placement-node-process.js'
import { freePort } from './free-port.js'
import { withTimeout, waitUntil } from './wait-until.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ENTRY = fileURLToPath(new URL('../fixtures/cluster/placement-node-process.ts', import.meta.url))
const READY_TIMEOUT_MS = 60_000

export interface PrintedEvent {
  type: string
  authority?: string
  t: number
  [k: string]: unknown
}

export type Reply = Record<string, unknown> & { t: number; error?: { code: string; reason: string } }

const live = new Set<PlacementProc>()
process.once('exit', () => {
  for (const p of live) p.child.kill('SIGKILL')
})

export class PlacementProc {
  readonly child: ChildProcessWithoutNullStreams
  readonly label: string
  readonly events: PrintedEvent[] = []
  readonly ready: Promise<{ authority: string; nodeId: string; pid: number }>
  readonly exited: Promise<void>
  authority = ''
  pid = 0
  stderr = ''
  #buf = ''
  #nextId = 1
  readonly #pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>()

  constructor(o: PlacementNodeOptions, label: string) {
    this.label = label
    this.child = spawn(process.execPath, ['--import', 'tsx', ENTRY, JSON.stringify(o)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    live.add(this)
    let onReady!: (r: { authority: string; nodeId: string; pid: number }) => void
    let onFail!: (e: Error) => void
    this.ready = new Promise((res, rej) => {
      onReady = res
      onFail = rej
    })
    this.ready.catch(() => {})
    this.child.stdin.on('error', () => {}) // EPIPE after a kill
    this.child.stderr.setEncoding('utf8')
    this.child.stderr.on('data', (s: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += s
    })
    this.child.stdout.setEncoding('utf8')
    this.child.stdout.on('data', (s: string) => {
      this.#buf += s
      for (let i = this.#buf.indexOf('\n'); i >= 0; i = this.#buf.indexOf('\n')) {
        const line = this.#buf.slice(0, i)
        this.#buf = this.#buf.slice(i + 1)
        let m: { t: number; ready?: { authority: string; nodeId: string; pid: number }; event?: { type: string; authority?: string }; reply?: Reply & { id: number } }
        try {
          m = JSON.parse(line) as typeof m
        } catch {
          continue
        }
        if (m.ready !== undefined) {
          this.authority = m.ready.authority
          this.pid = m.ready.pid
          onReady(m.ready)
        } else if (m.event !== undefined) this.events.push({ ...m.event, t: m.t })
        else if (m.reply !== undefined) {
          const p = this.#pending.get(m.reply.id)
          this.#pending.delete(m.reply.id)
          p?.resolve({ ...m.reply, t: m.t })
        }
      }
    })
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this)
        onFail(new Error(`${label} exited (code ${code}, signal ${signal}) before it was ready; stderr: ${this.stderr.slice(-1500)}`))
        for (const p of this.#pending.values()) p.reject(new Error(`${label} exited (code ${code}, signal ${signal}) before replying`))
        this.#pending.clear()
        resolve()
      })
    })
  }

  get running(): boolean {
    return live.has(this)
  }

  /** Send a command; resolves with its reply, rejects on an error reply, timeout or exit. */
  command(cmd: Record<string, unknown>, timeoutMs = 30_000): Promise<Reply> {
    if (!this.running) return Promise.reject(new Error(`${this.label} has exited`))
    const id = this.#nextId++
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.label}: no reply to ${String(cmd['cmd'])} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer)
          if (r.error !== undefined) reject(new Error(`${this.label}: ${String(cmd['cmd'])} failed: ${r.error.code}: ${r.error.reason}`))
          else resolve(r)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.child.stdin.write(`${JSON.stringify({ ...cmd, id })}\n`)
    })
  }

  /** SIGKILL; returns the epoch ms just before the signal. */
  kill(): number {
    const at = performance.timeOrigin + performance.now()
    if (this.running) this.child.kill('SIGKILL')
    return at
  }

  /** The live Placed keys of this node. */
  async active(): Promise<string[]> {
    return (await this.command({ cmd: 'active' })).keys as string[]
  }

  /** First event of `type` about `authority` (any authority when omitted). */
  eventAbout(type: string, authority?: string): PrintedEvent | undefined {
    return this.events.find((e) => e.type === type && (authority === undefined || e.authority === authority))
  }
}

export interface PlacementCluster {
  nodes: PlacementProc[]
  seeds: string[]
}

/**
 * Start `n` node processes: n0 is the seed (on a port that was free a moment
 * ago; retried on another port if it lost the race), the others bind port 0.
 * Resolves when every node sees n Up members and none unreachable.
 */
export async function startPlacementCluster(n: number, o: Pick<PlacementNodeOptions, 'failureDetector'> & { clusterName?: string } = {}): Promise<PlacementCluster> {
  const base = { clusterName: o.clusterName ?? 'placement', secret: 'placement-secret-0123456789', ...(o.failureDetector === undefined ? {} : { failureDetector: o.failureDetector }) }
  let seed: PlacementProc | undefined
  let seeds: string[] = []
  for (let attempt = 0; seed === undefined; attempt++) {
    const port = await freePort()
    seeds = [`127.0.0.1:${port}`]
    const p = new PlacementProc({ ...base, seeds, port }, 'n0')
    try {
      await p.ready
      seed = p
    } catch (e) {
      p.kill()
      await p.exited
      if (attempt >= 2 || !/EADDRINUSE|listen/.test((e as Error).message)) throw e
    }
  }
  const rest = Array.from({ length: n - 1 }, (_, i) => new PlacementProc({ ...base, seeds, port: 0 }, `n${i + 1}`))
  await Promise.all(rest.map((p) => withTimeout(p.ready, READY_TIMEOUT_MS, `${p.label} ready`)))
  const nodes = [seed, ...rest]
  await waitForMembers(nodes, n)
  return { nodes, seeds }
}

/** Every given node sees exactly `size` members, all Up, none unreachable. */
export async function waitForMembers(nodes: readonly PlacementProc[], size: number, timeoutMs = 60_000): Promise<void> {
  let last: unknown
  await waitUntil(
    async () => {
      const replies = await Promise.all(nodes.map((p) => p.command({ cmd: 'members' })))
      last = replies.map((r) => ({ members: r.members, unreachable: r.unreachable }))
      return replies.every((r) => {
        const ms = r.members as { status: string }[]
        return r.up === true && ms.length === size && ms.every((m) => m.status === 'up') && (r.unreachable as string[]).length === 0
      })
    },
    { timeoutMs, intervalMs: 100, what: `${nodes.length} node(s) see ${size} Up members` },
  ).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; views: ${JSON.stringify(last)}`)
  })
}

/** SIGKILL every process this module started that still runs; wait for each exit. */
export async function stopPlacementNodes(): Promise<void> {
  const procs = [...live]
  for (const p of procs) p.kill()
  await Promise.all(procs.map((p) => withTimeout(p.exited, 15_000, `${p.label} exit`)))
}


/** The result of the fixture's untilAll command. */
export interface UntilAllReply {
  startedAt: number
  allAt: number | null
  firstAt: number[]
  served: number[]
  calls: number[]
  attempts: number
  errors: Record<string, number>
  pending: number
  t: number
}

/**
 * The failover scenario shared by the test and the benchmark: `keys` keys
 * called once from n0 (who serves what), SIGKILL of the last node, then n0
 * calls every key until all answer (or `deadlineMs`). The victim is not the
 * seed, so the survivors keep the node that formed the cluster.
 */
export async function killAndRecover(
  c: PlacementCluster,
  o: { keys: number; prefix: string; askTimeoutMs: number; deadlineMs: number; concurrency?: number; beforeKill?: () => Promise<void> },
): Promise<{ before: number[]; beforeErrors: Record<string, number>; killedAt: number; victim: PlacementProc; survivors: PlacementProc[]; after: UntilAllReply }> {
  const caller = c.nodes[0]!
  const concurrency = o.concurrency ?? 256
  const first = await caller.command({ cmd: 'ask', prefix: o.prefix, count: o.keys, timeoutMs: 30_000, concurrency }, 300_000)
  await o.beforeKill?.()
  const victim = c.nodes.at(-1)!
  const survivors = c.nodes.slice(0, -1)
  const killedAt = victim.kill()
  const after = (await caller.command(
    { cmd: 'untilAll', prefix: o.prefix, count: o.keys, timeoutMs: o.askTimeoutMs, concurrency, deadlineMs: o.deadlineMs },
    o.deadlineMs + 120_000,
  )) as unknown as UntilAllReply
  await victim.exited
  return { before: first.served as number[], beforeErrors: first.errors as Record<string, number>, killedAt, victim, survivors, after }
}
