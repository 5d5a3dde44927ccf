/**
 * The parent's handle on one `graincluster node --control` child process:
 * spawn, wait for readiness, send control commands, stop. See
 * control-protocol.ts for the lines exchanged.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { type ControlCommand, type ControlEvent, encodeLine, parseLine } from './control-protocol.js'

export type UpEvent = Extract<ControlEvent, { t: 'up' }>
type Reply = Extract<ControlEvent, { t: 'reply' }>
type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never
export type CommandBody = Distribute<ControlCommand>

export interface SpawnNodeOptions {
  /** 1-based, for names and logs. */
  index: number
  port: number
  command: string
  args: readonly string[]
  env: Record<string, string | undefined>
  /** File descriptor that receives the child's stderr (its log). */
  stderrFd: number
}

export class NodeProcess {
  readonly index: number
  readonly port: number
  readonly child: ChildProcess
  up: UpEvent | undefined
  /** The child's start-up failure, as it reported it. */
  error: { code: string; reason: string } | undefined
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }>()
  readonly #waiters = new Set<() => void>()
  #nextId = 1

  constructor(o: SpawnNodeOptions) {
    this.index = o.index
    this.port = o.port
    this.child = spawn(o.command, [...o.args], { env: o.env, stdio: ['pipe', 'pipe', o.stderrFd] })
    // The parent may exit before the child reads stdin; a write to the closed pipe must not crash it.
    this.child.stdin!.on('error', () => {})
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.#onLine(line))
    this.child.on('exit', (code, signal) => {
      this.exit = { code, signal }
      for (const [, p] of this.#pending) {
        clearTimeout(p.timer)
        p.reject(new Error(`node-${this.index} exited (${signal ?? `code ${code}`}) before replying`))
      }
      this.#pending.clear()
      this.#wake()
    })
    this.child.on('error', (e) => {
      this.error ??= { code: 'SPAWN_FAILED', reason: e.message }
      this.#wake()
    })
  }

  get name(): string {
    return `node-${this.index}`
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  #wake(): void {
    for (const w of this.#waiters) w()
  }

  #onLine(line: string): void {
    const e = parseLine<ControlEvent>(line)
    if (e === undefined) return
    if (e.t === 'up') this.up = e
    else if (e.t === 'error') this.error = { code: e.code, reason: e.issues !== undefined && e.issues.length > 0 ? e.issues.join('; ') : e.reason }
    else if (e.t === 'reply') this.#settle(e)
    this.#wake()
  }

  #settle(r: Reply): void {
    const p = this.#pending.get(r.id)
    if (p === undefined) return
    this.#pending.delete(r.id)
    clearTimeout(p.timer)
    if (r.ok) p.resolve(r.value)
    else p.reject(Object.assign(new Error(`${r.code}: ${r.reason}`), { code: r.code }))
  }

  /** Resolves when the child reports Up; rejects when it fails, exits or the time runs out. */
  waitUp(timeoutMs: number): Promise<UpEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (this.up !== undefined) resolve(this.up)
        else if (this.error !== undefined) reject(new Error(`${this.name}: ${this.error.code}: ${this.error.reason}`))
        else if (this.exit !== undefined) reject(new Error(`${this.name} exited (${this.exit.signal ?? `code ${this.exit.code}`}) before it was Up`))
        else return false
        return true
      }
      if (check()) return
      const done = (): void => {
        if (!check()) return
        clearTimeout(timer)
        this.#waiters.delete(done)
      }
      const timer = setTimeout(() => {
        this.#waiters.delete(done)
        reject(new Error(`${this.name} was not Up within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiters.add(done)
    })
  }

  /** Send a control command; resolves with the reply's value. */
  request<T = unknown>(body: CommandBody, timeoutMs: number): Promise<T> {
    if (this.exit !== undefined) return Promise.reject(new Error(`${this.name} has exited`))
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.name} did not answer "${body.cmd}" within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      this.child.stdin!.write(encodeLine({ ...body, id }))
    })
  }

  /** Close stdin (the child closes its node and exits); SIGKILL if it has not exited within timeoutMs. */
  async stop(timeoutMs: number): Promise<void> {
    if (this.exit !== undefined || this.child.pid === undefined) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.stdin!.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs)
    await exited
    clearTimeout(timer)
  }
}
